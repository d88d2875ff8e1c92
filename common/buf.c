#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf_t *b) { memset(b, 0, sizeof *b); }

void buf_free(buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

int buf_reserve(buf_t *b, size_t extra)
{
    if (b->oom) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) { b->oom = 1; return -1; }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) { b->oom = 1; return -1; }
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append_slow(buf_t *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, cp);
    va_end(cp);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n) < 0) return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int buf_json_str(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(b, n + 2) < 0) return -1;
    buf_putc(b, '"');
    size_t run = 0; /* bytes that need no escaping are copied in runs */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6];
        switch (c) {
        case '"':  esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
                u[4] = hex[c >> 4]; u[5] = hex[c & 15];
            }
        }
        if (!esc && c >= 0x20) { run++; continue; }
        buf_append(b, s + i - run, run);
        run = 0;
        if (esc) buf_puts(b, esc);
        else buf_append(b, u, 6);
    }
    buf_append(b, s + n - run, run);
    return buf_putc(b, '"');
}

/* Two digits per division: span timestamps have 19 of them. */
static const char digit_pairs[] =
    "0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849"
    "5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

int buf_put_u64(buf_t *b, unsigned long long v)
{
    char tmp[24];
    int i = sizeof tmp;
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        tmp[--i] = digit_pairs[d + 1];
        tmp[--i] = digit_pairs[d];
    }
    if (v >= 10) {
        unsigned d = (unsigned)v * 2;
        tmp[--i] = digit_pairs[d + 1];
        tmp[--i] = digit_pairs[d];
    } else {
        tmp[--i] = (char)('0' + v);
    }
    return buf_append(b, tmp + i, sizeof tmp - (size_t)i);
}

int buf_put_i64(buf_t *b, long long v)
{
    if (v < 0) {
        buf_putc(b, '-');
        return buf_put_u64(b, 0ULL - (unsigned long long)v);
    }
    return buf_put_u64(b, (unsigned long long)v);
}

int buf_put_fixed3(buf_t *b, double v)
{
    if (!(v >= 0) || v > 1e15) return buf_puts(b, "0.000");
    unsigned long long milli = (unsigned long long)(v * 1000.0 + 0.5);
    buf_put_u64(b, milli / 1000);
    char frac[4] = { '.', (char)('0' + milli / 100 % 10), (char)('0' + milli / 10 % 10), (char)('0' + milli % 10) };
    return buf_append(b, frac, 4);
}

size_t utf8_prefix(const char *s, size_t n, size_t max)
{
    if (n <= max) return n;
    size_t cut = max;
    /* back off over continuation bytes (10xxxxxx) to a sequence start */
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    return cut;
}

char *buf_steal(buf_t *b)
{
    char *p = b->data;
    if (!p) p = calloc(1, 1);
    memset(b, 0, sizeof *b);
    return p;
}

/* 4 bytes -> 8 hex digits in one 64-bit word: spread each nibble into a
 * byte, then add '0', plus 'a' - '0' - 10 where the nibble is above 9. */
static uint64_t hex_word(uint32_t w)   /* w: the 4 bytes, first byte most significant */
{
    uint64_t x = w;
    x = (x | x << 16) & 0x0000FFFF0000FFFFull;
    x = (x | x << 8) & 0x00FF00FF00FF00FFull;
    x = (x | x << 4) & 0x0F0F0F0F0F0F0F0Full;
    uint64_t above9 = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    x += 0x3030303030303030ull + above9 * ('a' - '0' - 10);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    x = __builtin_bswap64(x);   /* the most significant nibble first in memory */
#endif
    return x;
}

void hex_lower(char *out, const void *in, size_t n)
{
    const uint8_t *p = in;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t w;
        memcpy(&w, p + i, 4);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        w = __builtin_bswap32(w);   /* the first byte most significant */
#endif
        uint64_t h = hex_word(w);
        memcpy(out + 2 * i, &h, 8);
    }
    static const char d[] = "0123456789abcdef";
    for (; i < n; i++) { out[2 * i] = d[p[i] >> 4]; out[2 * i + 1] = d[p[i] & 15]; }
}
