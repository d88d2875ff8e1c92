/* fuzz target: gateway/usage.c. usage_from_bytes scans a whole upstream
 * response (or one stream chunk) for the last "usage" object and parses only
 * it with a scanner; when the whole input is a JSON document whose root has
 * a usage object and "usage" appears once, the scanner must agree with
 * usage_from_json on the full parse. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "usage.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    usage_t a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int ra = usage_from_bytes((const char *)data, size, &a);
    if (ra == 0) {
        CHECK(a.present);
        CHECK(a.prompt_tokens >= 0 && a.completion_tokens >= 0 && a.cached_tokens >= 0);
    } else {
        CHECK(ra == -1);
    }
    json_doc *d = json_parse((const char *)data, size, NULL, NULL);
    if (d) {
        const json_value *root = json_root(d);
        int rb = usage_from_json(root, &b);
        if (rb == 0) CHECK(b.prompt_tokens >= 0 && b.completion_tokens >= 0 && b.cached_tokens >= 0);
        const char *first = memmem(data, size, "\"usage\"", 7);
        int once = first && !memmem(first + 1, size - (size_t)(first + 1 - (const char *)data), "\"usage\"", 7);
        if (rb == 0 && once && json_get(root, "usage") && json_get(root, "usage")->type == JSON_OBJECT) {
            CHECK(ra == 0);
            CHECK(a.prompt_tokens == b.prompt_tokens && a.completion_tokens == b.completion_tokens &&
                  a.cached_tokens == b.cached_tokens);
        }
        json_doc_free(d);
    }
    return 0;
}
