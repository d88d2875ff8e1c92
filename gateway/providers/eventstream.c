#include "eventstream.h"

#include <stdio.h>
#include <string.h>

uint32_t es_crc32(const void *p, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {   /* IEEE 802.3, reflected: what zlib's crc32 computes */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const unsigned char *s = p;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ s[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

void es_init(es_decoder *d, size_t max_message)
{
    buf_init(&d->buf);
    d->max_message = max_message;
    d->failed = 0;
}

void es_free(es_decoder *d) { buf_free(&d->buf); }

static void copy_value(char *dst, size_t cap, const unsigned char *v, size_t n)
{
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Headers: name length (1), name, value type (1), value. */
static int parse_headers(const unsigned char *h, size_t n, es_message *m)
{
    size_t i = 0;
    while (i < n) {
        size_t nl = h[i++];
        if (nl == 0 || i + nl + 1 > n) return -1;
        const unsigned char *name = h + i;
        i += nl;
        unsigned type = h[i++];
        size_t vl;
        switch (type) {
        case 0: case 1: vl = 0; break;            /* true, false */
        case 2: vl = 1; break;                    /* byte */
        case 3: vl = 2; break;                    /* short */
        case 4: vl = 4; break;                    /* int */
        case 5: case 8: vl = 8; break;            /* long, timestamp */
        case 9: vl = 16; break;                   /* uuid */
        case 6: case 7:                           /* bytes, string: 2-byte length */
            if (i + 2 > n) return -1;
            vl = (size_t)h[i] << 8 | h[i + 1];
            i += 2;
            break;
        default: return -1;
        }
        if (i + vl > n) return -1;
        if (type == 7) {
            if (nl == 11 && !memcmp(name, ":event-type", 11)) copy_value(m->event_type, sizeof m->event_type, h + i, vl);
            else if (nl == 13 && !memcmp(name, ":message-type", 13)) copy_value(m->message_type, sizeof m->message_type, h + i, vl);
            else if ((nl == 15 && !memcmp(name, ":exception-type", 15)) || (nl == 11 && !memcmp(name, ":error-code", 11)))
                copy_value(m->exception_type, sizeof m->exception_type, h + i, vl);
        }
        i += vl;
    }
    return 0;
}

int es_feed(es_decoder *d, const char *p, size_t n, es_message_cb cb, void *ud)
{
    if (d->failed) return -1;
    if (buf_append(&d->buf, p, n) < 0) { d->failed = 1; return -1; }
    size_t off = 0;
    while (!d->failed && d->buf.len - off >= 12) {
        const unsigned char *m = (const unsigned char *)d->buf.data + off;
        uint32_t total = be32(m), hlen = be32(m + 4);
        if (total < 16 || total > d->max_message || hlen > total - 16 || es_crc32(m, 8) != be32(m + 8)) { d->failed = 1; break; }
        if (d->buf.len - off < total) break;
        if (es_crc32(m, total - 4) != be32(m + total - 4)) { d->failed = 1; break; }
        es_message msg;
        memset(&msg, 0, sizeof msg);
        if (parse_headers(m + 12, hlen, &msg) < 0) { d->failed = 1; break; }
        msg.payload = (const char *)m + 12 + hlen;
        msg.payload_len = total - 16 - hlen;
        cb(ud, &msg);
        off += total;
    }
    if (off) {
        memmove(d->buf.data, d->buf.data + off, d->buf.len - off);
        d->buf.len -= off;
        d->buf.data[d->buf.len] = '\0';
    }
    return d->failed ? -1 : 0;
}
