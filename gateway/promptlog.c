/* promptlog: sampled prompts and completions (promptlog.h). */
#include "promptlog.h"

#include <string.h>

#include "accesslog.h"

int promptlog_sampled(double ratio, uint64_t seq)
{
    if (!(ratio > 0)) return 0;
    if (ratio >= 1) return 1;
    uint64_t h = seq * 0x9E3779B97F4A7C15ull;   /* spreads consecutive requests over [0, 1) */
    return (double)(h >> 11) * 0x1.0p-53 < ratio;
}

static void put_text(buf_t *b, const char *name, const char *s, size_t n)
{
    size_t keep = s ? utf8_prefix(s, n, PROMPTLOG_MAX) : 0;
    buf_puts(b, name);
    buf_json_str(b, s ? s : "", keep);
    if (keep < n) buf_puts(b, name[2] == 'p' ? ",\"prompt_truncated\":true" : ",\"completion_truncated\":true");
}

void promptlog_write(struct accesslog *a, buf_t *b, const char *ts, const char *request_id, const char *model,
                     const char *prompt, size_t plen, const char *completion, size_t clen, int stream)
{
    if (!a || !accesslog_enabled(a)) return;
    buf_reset(b);
    buf_puts(b, "{\"ts\":\"");
    buf_puts(b, ts);
    buf_puts(b, "\",\"level\":\"info\",\"type\":\"prompt\",\"request_id\":\"");
    buf_puts(b, request_id);
    buf_puts(b, "\",\"model\":");
    buf_json_str(b, model ? model : "", model ? strlen(model) : 0);
    buf_puts(b, stream ? ",\"stream\":true" : ",\"stream\":false");
    put_text(b, ",\"prompt\":", prompt, plen);
    put_text(b, ",\"completion\":", completion, clen);
    buf_puts(b, "}\n");
    if (!b->oom) accesslog_write(a, b->data, b->len);
    else { buf_free(b); buf_init(b); }
}
