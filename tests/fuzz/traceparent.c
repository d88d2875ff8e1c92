/* fuzz target: gateway/trace.c's W3C traceparent parser (a client header).
 *
 * Invariants: an accepted header has non-zero ids; formatting what was
 * parsed and parsing it again gives the same ids and sampled flag; the
 * formatted form is exactly 55 bytes of version 00. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    CHECK(s);
    memcpy(s, data, size);
    s[size] = '\0';
    uint8_t tid[16], pid[8], tid2[16], pid2[8];
    static const uint8_t zero[16];
    int sampled = -1, sampled2 = -1;
    if (trace_parse_traceparent(s, tid, pid, &sampled) == 0) {
        CHECK(memcmp(tid, zero, 16) != 0 && memcmp(pid, zero, 8) != 0);
        CHECK(sampled == 0 || sampled == 1);
        char out[56];
        trace_format_traceparent(tid, pid, sampled, out);
        CHECK(strlen(out) == 55 && out[0] == '0' && out[1] == '0');
        CHECK(trace_parse_traceparent(out, tid2, pid2, &sampled2) == 0);
        CHECK(!memcmp(tid, tid2, 16) && !memcmp(pid, pid2, 8) && sampled == sampled2);
    }
    free(s);
    return 0;
}
