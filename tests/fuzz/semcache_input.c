/* fuzz target: the semantic cache's outside input: an embeddings answer from
 * a provider (semembed_parse), a request body turned into the prompt text and
 * partition (semprompt), and the opt-out header values.
 *
 * Input: first byte picks the route; then header value, NUL, a JSON body.
 * Invariants: a parsed vector has 1..HNSW_MAX_DIM finite components of unit
 * length; the prompt text stays under its bound plus one message's text;
 * the partition of a body is stable. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"
#include "json.h"
#include "providers/provider.h"
#include "semembed.h"
#include "semprompt.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int route = data[0] & 1 ? ROUTE_MESSAGES : ROUTE_CHAT;
    char *s = malloc(size + 1);
    CHECK(s);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    const char *hdr = s;
    size_t hl = strlen(hdr);
    const char *body = hl + 1 < size ? s + hl + 1 : s;
    size_t blen = (size_t)(s + size - 1 - body);

    int o = semprompt_optout(hdr, hdr, hdr);
    CHECK(o == 0 || o == 1);

    uint32_t dim = 0;
    float *v = semembed_parse(body, blen, &dim);
    if (v) {
        CHECK(dim >= 1 && dim <= HNSW_MAX_DIM);
        double n = 0;
        for (uint32_t i = 0; i < dim; i++) { CHECK(isfinite(v[i])); n += (double)v[i] * v[i]; }
        CHECK(fabs(n - 1) < 1e-3);
        free(v);
    }

    json_limits lim = { .max_depth = 64, .max_bytes = 1 << 20 };
    json_error err;
    json_doc *d = json_parse(body, blen, &lim, &err);
    if (d) {
        buf_t t;
        buf_init(&t);
        int why = semprompt_text(json_root(d), route, 1.0, &t);
        CHECK(why >= SEM_SKIP_NONE && why < SEM_SKIP_KINDS);
        CHECK(t.len <= SEMPROMPT_MAX_TEXT + blen + 64);
        buf_free(&t);
        uint8_t k1[32], k2[32];
        semprompt_partition(json_root(d), route, 0, "alias", "t:team", k1);
        semprompt_partition(json_root(d), route, 0, "alias", "t:team", k2);
        CHECK(memcmp(k1, k2, 32) == 0);
        json_doc_free(d);
    }
    free(s);
    return 0;
}
