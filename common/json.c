/* json: strict RFC 8259 parser. See json.h.
 *
 * Design notes:
 * - The parser is iterative (an explicit stack of open containers), so even a
 *   caller-raised max_depth cannot overflow the C stack.
 * - Every node and decoded string comes from one arena of big blocks owned by
 *   the doc; the json_doc struct itself lives in the first block, so a small
 *   document costs one malloc.
 * - Strings are scanned once to validate and measure, then copied with memcpy
 *   (no escapes) or decoded (escapes) into an exactly-sized arena slot.
 * - Line/column are computed only when an error is reported, by rescanning
 *   the prefix; the hot path never tracks them.
 */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEFAULT_DEPTH 64
#define ARENA_FIRST        4096u
#define ARENA_FIRST_MAX    (1u << 20)   /* big inputs start with a bigger block */
#define FRAMES_LOCAL       64

/* ---- arena ---------------------------------------------------------------- */

typedef struct block {
    struct block *next;
    size_t cap, used;
} block;

/* Block payload starts at a max-aligned offset so nodes are always aligned. */
#define BLOCK_HDR ((sizeof(block) + 15u) & ~(size_t)15u)

struct json_doc {
    block      *blocks;
    json_value *root;
};

typedef struct parser {
    const unsigned char *s;
    size_t n;
    block *head;            /* current block for small allocations */
    json_error *err;
    int failed;
} parser;

/* One spare first-size block, for single-threaded processes that ask for it
 * (gateway workers): parsing a request and then its usage object would
 * otherwise malloc and free 4 KiB twice per request, which also keeps
 * triggering malloc_consolidate. Off by default: the control plane parses
 * on several threads. */
static int spare_enabled;
static block *spare_block;

void json_enable_block_cache(void) { spare_enabled = 1; }

static void blocks_free(block *b)
{
    while (b) {
        block *next = b->next;
        if (spare_enabled && b->cap == ARENA_FIRST && !spare_block) spare_block = b;
        else free(b);
        b = next;
    }
}

static block *block_new(size_t cap)
{
    if (spare_enabled && cap == ARENA_FIRST && spare_block) {
        block *b = spare_block;
        spare_block = NULL;
        b->next = NULL;
        b->used = 0;
        return b;
    }
    if (cap > (size_t)-1 - BLOCK_HDR) return NULL;
    block *b = malloc(BLOCK_HDR + cap);
    if (!b) return NULL;
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

/* Slow path: the current block is full. Large requests get a dedicated block
 * spliced in behind the head so the head keeps serving small allocations;
 * otherwise a new head twice the size replaces it, keeping mallocs logarithmic. */
static void *arena_grow(parser *ps, size_t size)
{
    block *h = ps->head;
    if (size > h->cap / 4) {
        block *b = block_new(size);
        if (!b) return NULL;
        b->used = size;
        b->next = h->next;
        h->next = b;
        return (char *)b + BLOCK_HDR;
    }
    size_t cap = h->cap > (size_t)-1 / 4 ? h->cap : h->cap * 2;
    block *b = block_new(cap);
    if (!b) return NULL;
    b->used = size;
    b->next = h;
    ps->head = b;
    return (char *)b + BLOCK_HDR;
}

static inline void *arena_alloc(parser *ps, size_t size, size_t align)
{
    block *h = ps->head;
    size_t off = (h->used + (align - 1)) & ~(align - 1);
    if (off <= h->cap && size <= h->cap - off) {
        h->used = off + size;
        return (char *)h + BLOCK_HDR + off;
    }
    return arena_grow(ps, size);
}

/* ---- errors --------------------------------------------------------------- */

static void fail(parser *ps, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(parser *ps, size_t off, const char *fmt, ...)
{
    if (ps->failed) return;     /* keep the first (leftmost) error */
    ps->failed = 1;
    if (!ps->err) return;
    json_error *e = ps->err;
    if (off > ps->n) off = ps->n;
    int line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < off; i++)
        if (ps->s[i] == '\n') { line++; line_start = i + 1; }
    e->offset = off;
    e->line = line;
    e->column = (int)(off - line_start + 1);   /* in bytes, not code points */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

static void fail_char(parser *ps, size_t off)
{
    unsigned c = ps->s[off];
    if (c >= 0x20 && c < 0x7f)
        fail(ps, off, "unexpected character '%c'", (int)c);
    else
        fail(ps, off, "unexpected byte 0x%02X", c);
}

static void fail_oom(parser *ps, size_t off) { fail(ps, off, "out of memory"); }

/* ---- lexing helpers -------------------------------------------------------- */

static inline size_t skip_ws(const unsigned char *s, size_t p, size_t n)
{
    while (p < n && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) p++;
    return p;
}

static inline int hexdig(unsigned c)
{
    if (c - '0' < 10u) return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6u) return (int)(c - 'a' + 10);
    return -1;
}

/* Four hex digits at s[p..p+4), or -1 (bad digit) / -2 (input ends first). */
static inline long hex4(const unsigned char *s, size_t p, size_t n)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        if (p + i >= n) return -2;
        int d = hexdig(s[p + i]);
        if (d < 0) return -1;
        v = (v << 4) | d;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at s (avail bytes), or 0. Follows
 * RFC 3629's table: no overlongs, no surrogates, nothing above U+10FFFF. */
static inline size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    if (c < 0xC2) return 0;                     /* stray continuation or overlong C0/C1 */
    if (c < 0xE0) return (avail >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3) return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (avail < 4) return 0;
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        return 4;
    }
    return 0;
}

static inline size_t utf8_put(char *o, unsigned long cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Nonzero if any of the 8 bytes is '"', '\\', < 0x20 or >= 0x80. Word-level
 * exact (the per-byte positions may be off, which we never use). */
static inline int swar_special(uint64_t w)
{
    uint64_t q = w ^ (ONES * '"');
    uint64_t b = w ^ (ONES * '\\');
    uint64_t t = ((q - ONES) & ~q) | ((b - ONES) & ~b) | ((w - ONES * 0x20) & ~w) | w;
    return (t & HIGHS) != 0;
}

/* ---- strings --------------------------------------------------------------- */

/* Parses the string whose opening quote is at q. On success stores the decoded
 * copy and returns the offset just past the closing quote; on error returns 0
 * (a string can never end at offset 0, so 0 is unambiguous). */
static size_t parse_string(parser *ps, size_t q, const char **out, size_t *out_len)
{
    const unsigned char *s = ps->s;
    const size_t n = ps->n;
    size_t p = q + 1;
    size_t saved = 0;           /* raw bytes minus decoded bytes, from escapes */
    int esc = 0;

    /* Pass 1: find the closing quote, validating everything on the way. */
    for (;;) {
        while (p + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + p, 8);
            if (swar_special(w)) break;
            p += 8;
        }
        while (p < n && (unsigned)(s[p] - 0x20) < 0x60u && s[p] != '"' && s[p] != '\\') p++;
        if (p >= n) { fail(ps, q, "unterminated string"); return 0; }
        unsigned c = s[p];
        if (c == '"') break;
        if (c < 0x20) { fail(ps, p, "control character in string"); return 0; }
        if (c >= 0x80) {
            size_t k = utf8_len(s + p, n - p);
            if (!k) { fail(ps, p, "invalid UTF-8"); return 0; }
            p += k;
            continue;
        }
        /* backslash */
        esc = 1;
        if (p + 1 >= n) { fail(ps, q, "unterminated string"); return 0; }
        switch (s[p + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            saved += 1;
            p += 2;
            continue;
        case 'u':
            break;
        default:
            fail(ps, p, "invalid escape");
            return 0;
        }
        long cp = hex4(s, p + 2, n);
        if (cp == -2) { fail(ps, q, "unterminated string"); return 0; }
        if (cp < 0) { fail(ps, p, "invalid escape"); return 0; }
        if (cp >= 0xDC00 && cp <= 0xDFFF) { fail(ps, p, "lone surrogate in \\u escape"); return 0; }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* A high surrogate is only valid directly followed by \u low surrogate. */
            long lo = -1;
            if (p + 6 >= n || (s[p + 6] == '\\' && p + 7 >= n)) {
                fail(ps, q, "unterminated string");
                return 0;
            }
            if (s[p + 6] == '\\' && s[p + 7] == 'u') {
                lo = hex4(s, p + 8, n);
                if (lo == -2) { fail(ps, q, "unterminated string"); return 0; }
                if (lo == -1) { fail(ps, p + 6, "invalid escape"); return 0; }
            }
            if (lo < 0xDC00 || lo > 0xDFFF) { fail(ps, p, "lone surrogate in \\u escape"); return 0; }
            saved += 12 - 4;
            p += 12;
            continue;
        }
        saved += 6 - (cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3);
        p += 6;
    }

    /* Pass 2: copy. The raw content is [q+1, p). */
    size_t raw = p - (q + 1);
    size_t len = raw - saved;
    char *dst = arena_alloc(ps, len + 1, 1);
    if (!dst) { fail_oom(ps, q); return 0; }
    if (!esc) {
        memcpy(dst, s + q + 1, raw);
    } else {
        /* Already validated, so decode without checks. */
        size_t i = q + 1, o = 0;
        while (i < p) {
            const unsigned char *bs = memchr(s + i, '\\', p - i);
            size_t run = bs ? (size_t)(bs - (s + i)) : p - i;
            memcpy(dst + o, s + i, run);
            o += run;
            i += run;
            if (i >= p) break;
            unsigned char e = s[i + 1];
            i += 2;
            switch (e) {
            case 'b': dst[o++] = '\b'; break;
            case 'f': dst[o++] = '\f'; break;
            case 'n': dst[o++] = '\n'; break;
            case 'r': dst[o++] = '\r'; break;
            case 't': dst[o++] = '\t'; break;
            case 'u': {
                unsigned long cp = (unsigned long)hex4(s, i, n);
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned long lo = (unsigned long)hex4(s, i + 2, n);
                    i += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                o += utf8_put(dst + o, cp);
                break;
            }
            default: dst[o++] = (char)e; break;   /* " \ / */
            }
        }
    }
    dst[len] = '\0';
    *out = dst;
    *out_len = len;
    return p + 1;
}

/* ---- numbers --------------------------------------------------------------- */

static inline int is_digit(unsigned c) { return c - '0' < 10u; }

/* Parses the number starting at p into v; returns the offset past it, or 0. */
static size_t parse_number(parser *ps, size_t p, json_value *v)
{
    const unsigned char *s = ps->s;
    const size_t n = ps->n;
    const size_t st = p;
    int neg = 0, integral = 1, ovf = 0;
    uint64_t u = 0;

    if (s[p] == '-') { neg = 1; p++; }
    if (p >= n || !is_digit(s[p])) { fail(ps, p, "invalid number"); return 0; }
    if (s[p] == '0') {
        p++;
        if (p < n && is_digit(s[p])) { fail(ps, p, "invalid number"); return 0; }  /* leading zero */
    } else {
        while (p < n && is_digit(s[p])) {
            unsigned d = s[p] - '0';
            if (u > (UINT64_MAX - d) / 10) ovf = 1;
            else u = u * 10 + d;
            p++;
        }
    }
    if (p < n && s[p] == '.') {
        integral = 0;
        p++;
        if (p >= n || !is_digit(s[p])) { fail(ps, p, "invalid number"); return 0; }
        while (p < n && is_digit(s[p])) p++;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        integral = 0;
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-')) p++;
        if (p >= n || !is_digit(s[p])) { fail(ps, p, "invalid number"); return 0; }
        while (p < n && is_digit(s[p])) p++;
    }

    v->type = JSON_NUMBER;
    if (integral && !ovf && u <= (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX)) {
        v->is_int = 1;
        v->i64 = neg ? (int64_t)(0 - u) : (int64_t)u;   /* two's complement wrap covers INT64_MIN */
        v->num = (neg && u == 0) ? -0.0 : (double)v->i64;
        return p;
    }

    /* strtod needs a NUL-terminated copy; the source is not terminated. This
     * assumes LC_NUMERIC is "C" (the process never calls setlocale for it). */
    size_t len = p - st;
    char local[128];
    char *tmp = len < sizeof local ? local : malloc(len + 1);
    if (!tmp) { fail_oom(ps, st); return 0; }
    memcpy(tmp, s + st, len);
    tmp[len] = '\0';
    int saved_errno = errno;
    double d = strtod(tmp, NULL);
    errno = saved_errno;
    if (tmp != local) free(tmp);
    if (isinf(d)) { fail(ps, st, "invalid number"); return 0; }   /* overflow: reject, don't round to inf */
    v->num = d;
    return p;
}

/* ---- parser ---------------------------------------------------------------- */

typedef struct frame {
    json_value *c;          /* open container */
    json_value *last;       /* its last child so far */
} frame;

static size_t literal(parser *ps, size_t p, const char *lit, size_t llen)
{
    for (size_t i = 0; i < llen; i++) {
        if (p + i >= ps->n) { fail(ps, ps->n, "unexpected end of input"); return 0; }
        if (ps->s[p + i] != (unsigned char)lit[i]) { fail_char(ps, p + i); return 0; }
    }
    return p + llen;
}

json_doc *json_parse(const char *src, size_t len, const json_limits *lim, json_error *err)
{
    parser ps = { (const unsigned char *)src, src ? len : 0, NULL, err, 0 };
    const unsigned char *s = ps.s;
    const size_t n = ps.n;
    size_t max_depth = lim && lim->max_depth ? lim->max_depth : JSON_DEFAULT_DEPTH;

    if (err) memset(err, 0, sizeof *err);
    if (lim && lim->max_bytes && n > lim->max_bytes) {
        fail(&ps, lim->max_bytes, "input too large");
        return NULL;
    }

    size_t first = ARENA_FIRST;
    while (first < n && first < ARENA_FIRST_MAX) first *= 2;
    ps.head = block_new(first);
    if (!ps.head) { fail_oom(&ps, 0); return NULL; }
    json_doc *doc = arena_alloc(&ps, sizeof *doc, _Alignof(json_doc));

    frame local[FRAMES_LOCAL];
    frame *fr = local;
    size_t fr_cap = FRAMES_LOCAL, depth = 0;
    json_value *root = NULL;
    const char *key = NULL;
    size_t key_len = 0, key_start = 0;
    size_t p = 0;

value:
    p = skip_ws(s, p, n);
    if (p >= n) { fail(&ps, n, "unexpected end of input"); goto fail; }
    {
        json_value *v = arena_alloc(&ps, sizeof *v, _Alignof(json_value));
        if (!v) { fail_oom(&ps, p); goto fail; }
        memset(v, 0, sizeof *v);
        v->start = p;
        if (depth == 0) {
            root = v;
        } else {
            frame *f = &fr[depth - 1];
            if (f->last) f->last->next = v;
            else f->c->first = v;
            f->last = v;
            f->c->count++;
            if (f->c->type == JSON_OBJECT) {
                v->key = key;
                v->key_len = key_len;
                v->key_start = key_start;
            }
        }
        unsigned c = s[p];
        switch (c) {
        case '{':
        case '[':
            if (depth >= max_depth) { fail(&ps, p, "nesting too deep"); goto fail; }
            if (depth == fr_cap) {
                size_t nc = fr_cap * 2 < max_depth ? fr_cap * 2 : max_depth;
                frame *nf = fr == local ? malloc(nc * sizeof *nf) : realloc(fr, nc * sizeof *nf);
                if (!nf) { fail_oom(&ps, p); goto fail; }
                if (fr == local) memcpy(nf, local, sizeof local);
                fr = nf;
                fr_cap = nc;
            }
            v->type = c == '{' ? JSON_OBJECT : JSON_ARRAY;
            fr[depth].c = v;
            fr[depth].last = NULL;
            depth++;
            p = skip_ws(s, p + 1, n);
            if (p < n && s[p] == (c == '{' ? '}' : ']')) {
                v->end = ++p;
                depth--;
                goto after;
            }
            if (c == '[') goto value;
            goto key;
        case '"':
            v->type = JSON_STRING;
            p = parse_string(&ps, p, &v->str, &v->str_len);
            if (!p) goto fail;
            break;
        case 't':
            v->type = JSON_TRUE;
            if (!(p = literal(&ps, p, "true", 4))) goto fail;
            break;
        case 'f':
            v->type = JSON_FALSE;
            if (!(p = literal(&ps, p, "false", 5))) goto fail;
            break;
        case 'n':
            v->type = JSON_NULL;
            if (!(p = literal(&ps, p, "null", 4))) goto fail;
            break;
        default:
            if (c == '-' || is_digit(c)) {
                if (!(p = parse_number(&ps, p, v))) goto fail;
                break;
            }
            fail_char(&ps, p);
            goto fail;
        }
        v->end = p;
    }

after:
    if (depth == 0) goto done;
    p = skip_ws(s, p, n);
    if (p >= n) { fail(&ps, n, "unexpected end of input"); goto fail; }
    {
        json_value *c = fr[depth - 1].c;
        if (c->type == JSON_ARRAY) {
            if (s[p] == ',') { p++; goto value; }
            if (s[p] == ']') { c->end = ++p; depth--; goto after; }
            fail(&ps, p, "expected ',' or ']'");
            goto fail;
        }
        if (s[p] == ',') { p = skip_ws(s, p + 1, n); goto key; }
        if (s[p] == '}') { c->end = ++p; depth--; goto after; }
        fail(&ps, p, "expected ',' or '}'");
        goto fail;
    }

key:    /* p is at the (expected) opening quote of a member name */
    if (p >= n) { fail(&ps, n, "unexpected end of input"); goto fail; }
    if (s[p] != '"') { fail(&ps, p, "expected string key"); goto fail; }
    key_start = p;
    p = parse_string(&ps, p, &key, &key_len);
    if (!p) goto fail;
    p = skip_ws(s, p, n);
    if (p >= n) { fail(&ps, n, "unexpected end of input"); goto fail; }
    if (s[p] != ':') { fail(&ps, p, "expected ':'"); goto fail; }
    p++;
    goto value;

done:
    p = skip_ws(s, p, n);
    if (p < n) { fail(&ps, p, "trailing characters after the JSON value"); goto fail; }
    if (fr != local) free(fr);
    doc->root = root;
    doc->blocks = ps.head;
    return doc;

fail:
    if (fr != local) free(fr);
    blocks_free(ps.head);
    return NULL;
}

void json_doc_free(json_doc *doc)
{
    /* doc lives inside one of its own blocks; blocks_free reads each next
     * pointer before freeing, and doc->blocks is read before anything is freed. */
    if (doc) blocks_free(doc->blocks);
}

json_value *json_root(const json_doc *doc) { return doc ? doc->root : NULL; }

json_value *json_get(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (json_value *m = obj->first; m; m = m->next)
        if (m->key_len == kl && memcmp(m->key, key, kl) == 0) return m;
    return NULL;
}

json_value *json_at(const json_value *arr, size_t i)
{
    if (!arr || arr->type != JSON_ARRAY || i >= arr->count) return NULL;
    json_value *v = arr->first;
    while (i-- && v) v = v->next;
    return v;
}

const char *json_get_str(const json_value *obj, const char *key)
{
    json_value *v = json_get(obj, key);
    return v && v->type == JSON_STRING ? v->str : NULL;
}

int json_get_bool(const json_value *obj, const char *key)
{
    json_value *v = json_get(obj, key);
    return v && v->type == JSON_TRUE;
}
