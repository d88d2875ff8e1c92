/* the SSE parser behind stream relaying, and the usage extraction */
#include <string.h>

#include "sse.h"
#include "test.h"
#include "usage.h"

typedef struct seen { int n; char data[8][256]; char event[8][32]; } seen;

static void collect(void *ud, const char *event, const char *data, size_t len)
{
    seen *s = ud;
    if (s->n >= 8) return;
    snprintf(s->data[s->n], sizeof s->data[0], "%.*s", (int)len, data);
    snprintf(s->event[s->n], sizeof s->event[0], "%s", event);
    s->n++;
}

static const char stream[] =
    "data: {\"a\":1}\n\n"
    ": keep-alive comment\n\n"
    "event: message_start\r\ndata: {\"b\":2}\r\n\r\n"
    "data: line1\ndata: line2\n\n"
    "data: [DONE]\n\n";

static void check_stream(seen *s)
{
    CHECK(s->n == 4);
    CHECK_STR(s->data[0], "{\"a\":1}");
    CHECK_STR(s->data[1], "{\"b\":2}");
    CHECK_STR(s->event[1], "message_start");
    CHECK_STR(s->data[2], "line1\nline2");
    CHECK_STR(s->data[3], "[DONE]");
}

static void test_whole(void)
{
    seen s = { 0 };
    sse_parser p;
    sse_init(&p, 4096, collect, &s);
    sse_feed(&p, stream, sizeof stream - 1);
    check_stream(&s);
    sse_free(&p);
}

/* Network reads split anywhere, including inside "\r\n": every split point gives the same events. */
static void test_every_split(void)
{
    size_t n = sizeof stream - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        seen s = { 0 };
        sse_parser p;
        sse_init(&p, 4096, collect, &s);
        sse_feed(&p, stream, cut);
        sse_feed(&p, stream + cut, n - cut);
        check_stream(&s);
        sse_free(&p);
        if (t_cur_failed) { fprintf(stderr, "  at cut %zu\n", cut); return; }
    }
}

static void test_byte_at_a_time(void)
{
    seen s = { 0 };
    sse_parser p;
    sse_init(&p, 4096, collect, &s);
    for (size_t i = 0; i < sizeof stream - 1; i++) sse_feed(&p, stream + i, 1);
    check_stream(&s);
    sse_free(&p);
}

static void test_oversized_event_dropped(void)
{
    seen s = { 0 };
    sse_parser p;
    sse_init(&p, 64, collect, &s);
    char big[300];
    memset(big, 'x', sizeof big);
    sse_feed(&p, "data: ", 6);
    sse_feed(&p, big, sizeof big);
    sse_feed(&p, "\n\ndata: ok\n\n", 12);
    CHECK(s.n == 1);
    CHECK_STR(s.data[0], "ok");
    CHECK(p.dropped == 1);
    sse_free(&p);
}

static void test_usage(void)
{
    usage_t u = { 0 };
    const char *chunk = "{\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":4}}}";
    CHECK(usage_from_bytes(chunk, strlen(chunk), &u) == 0);
    CHECK(u.present && u.prompt_tokens == 12 && u.completion_tokens == 5 && u.cached_tokens == 4);
    usage_t v = { 0 };
    const char *none = "{\"choices\":[{\"delta\":{}}],\"usage\":null}";
    CHECK(usage_from_bytes(none, strlen(none), &v) < 0);
    CHECK(!v.present);
    CHECK(usage_from_bytes("{\"usage\":", 9, &v) < 0);   /* truncated JSON is ignored, not trusted */
}

int main(void)
{
    RUN(test_whole);
    RUN(test_every_split);
    RUN(test_byte_at_a_time);
    RUN(test_oversized_event_dropped);
    RUN(test_usage);
    TEST_MAIN_END();
}
