#include "structout.h"

#include <stdio.h>
#include <string.h>

#include "jschema.h"
#include "log.h"

#define ANSWER_MAX_DEPTH 64

const json_value *structout_schema(const json_value *root)
{
    const json_value *rf = json_get(root, "response_format");
    const char *t = rf ? json_get_str(rf, "type") : NULL;
    if (!t || strcmp(t, "json_schema")) return NULL;
    const json_value *js = json_get(rf, "json_schema");
    if (!js || !json_get_bool(js, "strict")) return NULL;
    const json_value *s = json_get(js, "schema");
    return s && (s->type == JSON_OBJECT || s->type == JSON_TRUE || s->type == JSON_FALSE) ? s : NULL;
}

int structout_check_text(const json_value *schema, const char *text, size_t len, char *msg, size_t msglen)
{
    json_limits lim = { .max_depth = ANSWER_MAX_DEPTH, .max_bytes = 0 };
    json_error jerr;
    json_doc *d = json_parse(text ? text : "", len, &lim, &jerr);
    if (!d) {
        snprintf(msg, msglen, "$: the answer is not valid JSON (%s at byte %zu)", jerr.message, jerr.offset);
        return STRUCTOUT_VIOLATION;
    }
    char path[256], why[200];
    int rc = jschema_validate(schema, json_root(d), path, sizeof path, why, sizeof why);
    json_doc_free(d);
    if (rc == JSCHEMA_UNCHECKED) {
        log_debug("structured output not checked: %s", why);
        return STRUCTOUT_OK;
    }
    if (rc == JSCHEMA_INVALID) {
        snprintf(msg, msglen, "%s: %s", path, why);
        return STRUCTOUT_VIOLATION;
    }
    return STRUCTOUT_OK;
}

int structout_check(const provider *p, const json_value *schema, const char *body, size_t len,
                    char *msg, size_t msglen)
{
    if (!p->parse_response) return STRUCTOUT_OK;
    chat_resp cr;
    chat_resp_init(&cr);
    char err[160];
    int rc = STRUCTOUT_OK;
    if (p->parse_response(body ? body : "", len, &cr, err, sizeof err) == 0 && !(cr.ncalls && !cr.text.len))
        rc = structout_check_text(schema, cr.text.data, cr.text.len, msg, msglen);
    chat_resp_free(&cr);
    return rc;
}
