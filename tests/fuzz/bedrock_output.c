/* fuzz target: the bedrock provider's Converse answer parser and its
 * ConverseStream decoder (binary event stream frames with CRCs, then JSON
 * payloads); see provider_fuzz.h. Also the frame decoder alone: whole and
 * split feeding must see the same messages. */
#include "provider_fuzz.h"
#include "providers/eventstream.h"

static void on_message(void *ud, const es_message *m)
{
    buf_t *log = ud;
    CHECK(strlen(m->event_type) < sizeof m->event_type && strlen(m->message_type) < sizeof m->message_type);
    buf_printf(log, "[%s|%s|%s|%zu]", m->event_type, m->message_type, m->exception_type, m->payload_len);
    buf_append(log, m->payload, m->payload_len);
}

static int frames(const uint8_t *data, size_t size)
{
    buf_t a, b;
    buf_init(&a); buf_init(&b);
    es_decoder d1, d2;
    es_init(&d1, 4096);
    es_init(&d2, 4096);
    int r1 = es_feed(&d1, (const char *)data, size, on_message, &a);
    int r2 = 0;
    for (size_t i = 0; i < size && r2 == 0; i += 3) r2 = es_feed(&d2, (const char *)data + i, size - i < 3 ? size - i : 3, on_message, &b);
    if (r1 == 0 && r2 == 0) CHECK(a.len == b.len && (a.len == 0 || !memcmp(a.data, b.data, a.len)));
    es_free(&d1); es_free(&d2);
    buf_free(&a); buf_free(&b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && data[0] == 0xEE) return frames(data + 1, size - 1);
    return fuzz_provider(&provider_bedrock, data, size, (size_t)-1);
}
