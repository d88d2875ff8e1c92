#include "promptcfg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* The parameters a default may be given for, their bounds and dialects. */
static const struct {
    const char *name;
    int         integer;
    double      min, max;
    int         dialects;
} params[] = {
    { "temperature",           0, 0, 2,     PROMPT_FOR_CHAT | PROMPT_FOR_MESSAGES },
    { "top_p",                 0, 0, 1,     PROMPT_FOR_CHAT | PROMPT_FOR_MESSAGES },
    { "top_k",                 1, 1, 1e6,   PROMPT_FOR_CHAT | PROMPT_FOR_MESSAGES },
    { "max_tokens",            1, 1, 1e7,   PROMPT_FOR_CHAT | PROMPT_FOR_MESSAGES },
    { "max_completion_tokens", 1, 1, 1e7,   PROMPT_FOR_CHAT },
    { "presence_penalty",      0, -2, 2,    PROMPT_FOR_CHAT },
    { "frequency_penalty",     0, -2, 2,    PROMPT_FOR_CHAT },
    { "seed",                  1, -9e15, 9e15, PROMPT_FOR_CHAT },
};
#define NPARAMS (sizeof params / sizeof params[0])

int prompt_set(gw_prompt *p, const char *key, const char *value, char *err, size_t errlen)
{
    if (!strcmp(key, "system_prefix") || !strcmp(key, "system_suffix")) {
        char **dst = key[7] == 'p' ? &p->system_prefix : &p->system_suffix;
        if (strlen(value) > PROMPT_TEXT_MAX) { snprintf(err, errlen, "longer than %d bytes", PROMPT_TEXT_MAX); return -1; }
        char *copy = strdup(value);
        if (!copy) { snprintf(err, errlen, "out of memory"); return -1; }
        free(*dst);
        *dst = copy;
        return 0;
    }
    if (strncmp(key, "defaults.", 9)) { snprintf(err, errlen, "unknown field"); return -1; }
    size_t i = 0;
    while (i < NPARAMS && strcmp(params[i].name, key + 9)) i++;
    if (i == NPARAMS) {
        snprintf(err, errlen, "unknown parameter (temperature, top_p, top_k, max_tokens, max_completion_tokens, "
                              "presence_penalty, frequency_penalty, seed)");
        return -1;
    }
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (errno || end == value || *end || !(x >= params[i].min && x <= params[i].max) ||
        (params[i].integer && x != floor(x))) {
        snprintf(err, errlen, "must be %s from %g to %g", params[i].integer ? "an integer" : "a number",
                 params[i].min, params[i].max);
        return -1;
    }
    size_t j = 0;
    while (j < p->ndefaults && p->defaults[j].id != (int)i) j++;
    if (j == PROMPT_MAX_DEFAULTS) { snprintf(err, errlen, "too many defaults"); return -1; }
    if (j == p->ndefaults) p->ndefaults++;
    p->defaults[j].id = (int)i;
    p->defaults[j].value = x;
    return 0;
}

void prompt_free(gw_prompt *p)
{
    if (!p) return;
    free(p->system_prefix);
    free(p->system_suffix);
    free(p);
}

gw_prompt *prompt_from_json(const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!text || !text[0]) return NULL;
    json_limits lim = { .max_depth = 3, .max_bytes = 4 * PROMPT_TEXT_MAX };
    json_error jerr;
    json_doc *doc = json_parse(text, strlen(text), &lim, &jerr);
    const json_value *o = doc ? json_root(doc) : NULL;
    gw_prompt *p = calloc(1, sizeof *p);
    if (!p) { snprintf(err, errlen, "out of memory"); goto fail; }
    if (!o || o->type != JSON_OBJECT) { snprintf(err, errlen, "not a JSON object"); goto fail; }
    for (const json_value *v = o->first; v; v = v->next) {
        char why[200], key[64], num[40];
        if (!strcmp(v->key, "defaults") && v->type == JSON_OBJECT) {
            for (const json_value *d = v->first; d; d = d->next) {
                snprintf(key, sizeof key, "defaults.%.50s", d->key);
                snprintf(num, sizeof num, "%.17g", d->num);
                if (d->type != JSON_NUMBER || prompt_set(p, key, num, why, sizeof why) < 0) {
                    snprintf(err, errlen, "prompt.%s: %s", key, d->type != JSON_NUMBER ? "must be a number" : why);
                    goto fail;
                }
            }
        } else if (v->type != JSON_STRING || strlen(v->str) != v->str_len || prompt_set(p, v->key, v->str, why, sizeof why) < 0) {
            snprintf(err, errlen, "prompt.%.40s: %s", v->key, v->type != JSON_STRING ? "must be a string" : "bad value");
            goto fail;
        }
    }
    json_doc_free(doc);
    return p;
fail:
    if (!err[0]) snprintf(err, errlen, "out of memory");
    json_doc_free(doc);
    prompt_free(p);
    return NULL;
}

const char *prompt_param_name(int id) { return params[id].name; }
int prompt_param_integer(int id) { return params[id].integer; }
int prompt_param_dialects(int id) { return params[id].dialects; }
