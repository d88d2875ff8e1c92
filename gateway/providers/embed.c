#include "embed.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int embed_inputs(const json_value *root, const json_value **items, size_t *n, char *err, size_t errlen)
{
    const json_value *in = json_get(root, "input");
    if (in && in->type == JSON_STRING) { *items = in; *n = 1; return 0; }
    if (!in || in->type != JSON_ARRAY || in->count == 0 || in->count > EMBED_MAX_INPUTS) {
        if (errlen) snprintf(err, errlen, "'input' must be a string or an array of 1 to %d strings for this model's provider.", EMBED_MAX_INPUTS);
        return -1;
    }
    for (const json_value *e = in->first; e; e = e->next)
        if (e->type != JSON_STRING) {
            snprintf(err, errlen, "'input' must hold strings (not token arrays) for this model's provider.");
            return -1;
        }
    *items = in->first;
    *n = in->count;
    return 0;
}

int embed_wants_base64(const json_value *root)
{
    const char *f = json_get_str(root, "encoding_format");
    return f && !strcmp(f, "base64");
}

void embed_begin(buf_t *out) { buf_puts(out, "{\"object\":\"list\",\"data\":["); }

static void base64(buf_t *out, const unsigned char *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";   /* [64]: padding */
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        char q[4] = { t[v >> 18 & 63], t[v >> 12 & 63], t[i + 1 < n ? (v >> 6 & 63) : 64], t[i + 2 < n ? (v & 63) : 64] };
        buf_append(out, q, 4);
    }
}

int embed_vector(buf_t *out, size_t index, const json_value *values, int b64)
{
    if (!values || values->type != JSON_ARRAY) return -1;
    for (const json_value *v = values->first; v; v = v->next)
        if (v->type != JSON_NUMBER) return -1;
    buf_puts(out, index ? ",{\"object\":\"embedding\",\"index\":" : "{\"object\":\"embedding\",\"index\":");
    buf_put_u64(out, index);
    buf_puts(out, ",\"embedding\":");
    if (b64) {
        /* little-endian float32s, as OpenAI sends them */
        buf_t raw; buf_init(&raw);
        for (const json_value *v = values->first; v; v = v->next) {
            float f = (float)v->num;
            uint32_t u;
            memcpy(&u, &f, 4);
            unsigned char le[4] = { (unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16), (unsigned char)(u >> 24) };
            buf_append(&raw, le, 4);
        }
        buf_putc(out, '"');
        base64(out, (const unsigned char *)(raw.data ? raw.data : ""), raw.len);
        buf_putc(out, '"');
        if (raw.oom) out->oom = 1;
        buf_free(&raw);
    } else {
        buf_putc(out, '[');
        for (const json_value *v = values->first; v; v = v->next) {
            if (v != values->first) buf_putc(out, ',');
            buf_printf(out, "%.9g", v->num);
        }
        buf_putc(out, ']');
    }
    buf_putc(out, '}');
    return out->oom ? -1 : 0;
}

void embed_end(buf_t *out, const char *model, long prompt_tokens)
{
    buf_puts(out, "],\"model\":");
    buf_json_str(out, model, strlen(model));
    buf_puts(out, ",\"usage\":{\"prompt_tokens\":");
    buf_put_i64(out, prompt_tokens);
    buf_puts(out, ",\"total_tokens\":");
    buf_put_i64(out, prompt_tokens);
    buf_puts(out, "}}");
}
