/* fuzz target: gateway/cache.c's handling of outside input: the request's
 * Cache-Control and X-Gateway-Cache values, and the cache key of a request
 * body (the canonical form walks the whole parsed document).
 *
 * Input: Cache-Control, NUL, X-Gateway-Cache, NUL, a JSON body. Invariants:
 * the mode is one of the four, a stored entry's ttl is within 1 s .. 30 days
 * whatever max-age said, and the key of a body is stable (same input, same
 * key). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "json.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 2);
    CHECK(s);
    memcpy(s, data, size);
    s[size] = s[size + 1] = '\0';
    const char *cc = s;
    size_t n1 = strlen(cc);
    const char *xg = s + n1 + 1 <= s + size ? s + n1 + 1 : NULL;
    size_t n2 = xg ? strlen(xg) : 0;
    const char *body = xg && xg + n2 + 1 <= s + size ? xg + n2 + 1 : NULL;

    for (long alias_ttl = 0; alias_ttl <= 600; alias_ttl += 600) {
        long ttl = -1;
        int mode = cache_parse_directives(*cc ? cc : NULL, xg, alias_ttl, 300, &ttl);
        CHECK(mode == CACHE_OFF || mode == CACHE_USE || mode == CACHE_REFRESH || mode == CACHE_NO_STORE);
        CHECK(ttl >= 1 && ttl <= 30L * 86400);
    }
    if (body) {
        size_t blen = size - (size_t)(body - s);
        json_limits lim = { .max_depth = 64, .max_bytes = 1 << 20 };
        json_error err;
        json_doc *d = json_parse(body, blen, &lim, &err);
        if (d) {
            uint8_t k1[32], k2[32];
            cache_key(json_root(d), 0, 0, "alias", "t:team", k1);
            cache_key(json_root(d), 0, 0, "alias", "t:team", k2);
            CHECK(memcmp(k1, k2, 32) == 0);
            json_doc_free(d);
        }
    }
    free(s);
    return 0;
}
