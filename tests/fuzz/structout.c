/* fuzz target: the outside input of structured outputs, prompt decoration
 * and the A/B judge. The input is split at the first 0xff byte into a JSON
 * Schema (the client's) and a document (a provider's answer content, or a
 * client body); the whole input is also read as a judge's answer.
 *
 * Invariants: the validator always ends with valid / invalid / unchecked and
 * an invalid answer names a JSON path starting with "$"; a decorated body is
 * valid JSON whose first message is a system message; a verdict is -1..2;
 * a stream transcript's text stays within its bound. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abjudge.h"
#include "buf.h"
#include "decorate.h"
#include "jschema.h"
#include "json.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static void check_decorated(const char *src, size_t n, const json_value *root, int anthropic)
{
    static gw_prompt p;
    if (!p.system_prefix) {
        char err[128];
        p.system_prefix = strdup("prefix \"quoted\" \xc3\xa9");
        p.system_suffix = strdup("suffix\n");
        CHECK(p.system_prefix && p.system_suffix);
        CHECK(prompt_set(&p, "defaults.temperature", "0.25", err, sizeof err) == 0);
        CHECK(prompt_set(&p, "defaults.max_tokens", "100", err, sizeof err) == 0);
    }
    buf_t out; buf_init(&out);
    int rc = decorate_body(&p, anthropic, src, n, root, &out);
    CHECK(rc >= 0);
    if (rc == 1) {
        json_error err;
        json_doc *d = json_parse(out.data, out.len, NULL, &err);
        if (!d) fprintf(stderr, "decorated body is not JSON: %s: %.*s\n", err.message, (int)(out.len > 400 ? 400 : out.len), out.data);
        CHECK(d);
        const json_value *r = json_root(d);
        CHECK(r->type == JSON_OBJECT);
        if (!anthropic) {
            const json_value *m = json_get(r, "messages");
            if (m && m->type == JSON_ARRAY) {
                const char *role = json_get_str(json_at(m, 0), "role");
                CHECK(role && (!strcmp(role, "system") || !strcmp(role, "developer")));
            }
        } else CHECK(json_get(r, "system"));
        CHECK(json_get(r, "temperature"));
        json_doc_free(d);
    }
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int v = abjudge_parse_verdict((const char *)data, size);
    CHECK(v >= -1 && v <= 2);
    buf_t text; buf_init(&text);   /* a judged stream's transcript, either dialect */
    CHECK(abjudge_stream_text(ROUTE_CHAT, (const char *)data, size, &text) == 0 && text.len <= ABJUDGE_TEXT_MAX);
    CHECK(abjudge_stream_text(ROUTE_MESSAGES, (const char *)data, size, &text) == 0 && text.len <= ABJUDGE_TEXT_MAX);
    buf_free(&text);
    const uint8_t *sep = memchr(data, 0xff, size);
    if (!sep) return 0;
    size_t sn = (size_t)(sep - data);
    json_limits lim = { .max_depth = 64, .max_bytes = 1 << 20 };
    json_doc *s = json_parse((const char *)data, sn, &lim, NULL);
    json_doc *i = json_parse((const char *)sep + 1, size - sn - 1, &lim, NULL);
    if (s && i) {
        char path[256], why[200];
        int rc = jschema_validate(json_root(s), json_root(i), path, sizeof path, why, sizeof why);
        CHECK(rc == JSCHEMA_VALID || rc == JSCHEMA_INVALID || rc == JSCHEMA_UNCHECKED);
        CHECK(memchr(path, 0, sizeof path) && memchr(why, 0, sizeof why));
        if (rc == JSCHEMA_INVALID) CHECK(path[0] == '$' && why[0]);
    }
    if (i) {
        check_decorated((const char *)sep + 1, size - sn - 1, json_root(i), 0);
        check_decorated((const char *)sep + 1, size - sn - 1, json_root(i), 1);
    }
    json_doc_free(s);
    json_doc_free(i);
    return 0;
}
