/* trace: the W3C traceparent parser and formatter. */
#include <string.h>

#include "test.h"
#include "trace.h"

static void test_traceparent(void)
{
    uint8_t t[16], p[8];
    int s = -1;
    CHECK(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t, p, &s) == 0);
    CHECK(s == 1 && t[0] == 0x4b && t[15] == 0x36 && p[0] == 0x00 && p[7] == 0xb7);
    char out[56];
    trace_format_traceparent(t, p, 0, out);
    CHECK_STR(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    CHECK(trace_parse_traceparent(out, t, p, &s) == 0 && s == 0);
    /* a later version may add fields; version 00 may not */
    CHECK(trace_parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-zz", t, p, &s) == 0);
    CHECK(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-zz", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("", t, p, &s) < 0);
    CHECK(trace_parse_traceparent(NULL, t, p, &s) < 0);
}

int main(void)
{
    RUN(test_traceparent);
    TEST_MAIN_END();
}
