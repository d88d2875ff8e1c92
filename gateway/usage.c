#include "usage.h"

#include <limits.h>
#include <string.h>

static long int_member(const json_value *o, const char *k)
{
    const json_value *v = json_get(o, k);
    return v && v->type == JSON_NUMBER && v->is_int && v->i64 >= 0 ? (long)v->i64 : 0;
}

static int usage_from_object(const json_value *us, usage_t *u)
{
    if (!us || us->type != JSON_OBJECT) return -1;
    u->prompt_tokens = int_member(us, "prompt_tokens");
    u->completion_tokens = int_member(us, "completion_tokens");
    const json_value *d = json_get(us, "prompt_tokens_details");
    u->cached_tokens = d && d->type == JSON_OBJECT ? int_member(d, "cached_tokens") : 0;
    u->present = 1;
    return 0;
}

int usage_from_json(const json_value *root, usage_t *u)
{
    return usage_from_object(json_get(root, "usage"), u);
}

/* ---- a scanner for one usage object in raw bytes ----
 * Cheaper than a parse into a tree (this runs on every response before the
 * reply goes out): it walks the object once, keeps the three counts, skips
 * every other value, and gives up (-1) on anything that is not JSON. */

#define SCAN_MAX_DEPTH 8

typedef struct scan {
    const char *p, *end;
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

/* A string; *k / *klen: its raw bytes (escapes undecoded, so an escaped key
 * matches no name we look for). */
static int scan_string(scan *s, const char **k, size_t *klen)
{
    if (s->p >= s->end || *s->p != '"') return -1;
    const char *b = ++s->p;
    for (;;) {
        /* the closing quote, then a check of the bytes before it: one pass
         * each with vectorised memchr in the common case of no escapes */
        const char *q = memchr(s->p, '"', (size_t)(s->end - s->p));
        if (!q) return -1;
        const char *bs = memchr(s->p, '\\', (size_t)(q - s->p));
        const char *stop = bs ? bs : q;
        for (const char *c = s->p; c < stop; c++)
            if ((unsigned char)*c < 0x20) return -1;
        if (!bs) {
            *k = b;
            *klen = (size_t)(q - b);
            s->p = q + 1;
            return 0;
        }
        s->p = bs + 2;   /* the escaped byte may be the quote we found */
        if (s->p > s->end) return -1;
    }
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A number (JSON grammar); *v: its value when it is a non-negative integer
 * that fits a long, else 0 (what a count that is not one means). */
static int scan_number(scan *s, long *v)
{
    int neg = s->p < s->end && *s->p == '-';
    if (neg) s->p++;
    if (s->p >= s->end || !is_digit(*s->p)) return -1;
    long n = 0;
    int exact = !neg;
    if (*s->p == '0') s->p++;
    else
        for (; s->p < s->end && is_digit(*s->p); s->p++) {
            int d = *s->p - '0';
            if (n > (LONG_MAX - d) / 10) exact = 0;   /* beyond a long: not a count */
            else n = n * 10 + d;
        }
    if (s->p < s->end && *s->p == '.') {
        exact = 0;
        if (++s->p >= s->end || !is_digit(*s->p)) return -1;
        while (s->p < s->end && is_digit(*s->p)) s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        exact = 0;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (s->p >= s->end || !is_digit(*s->p)) return -1;
        while (s->p < s->end && is_digit(*s->p)) s->p++;
    }
    *v = exact ? n : 0;
    return 0;
}

static int scan_literal(scan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n)) return -1;
    s->p += n;
    return 0;
}

typedef int (*member_fn)(scan *s, const char *k, size_t klen, int depth, void *arg);

static int scan_value(scan *s, int depth);

/* An object at s->p: on_member handles (consumes) each value, or NULL to skip them all. */
static int scan_object(scan *s, int depth, member_fn on_member, void *arg)
{
    if (depth > SCAN_MAX_DEPTH || s->p >= s->end || *s->p != '{') return -1;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') { s->p++; return 0; }
    for (;;) {
        const char *k;
        size_t klen;
        skip_ws(s);
        if (scan_string(s, &k, &klen) < 0) return -1;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') return -1;
        s->p++;
        skip_ws(s);
        if ((on_member ? on_member(s, k, klen, depth, arg) : scan_value(s, depth + 1)) < 0) return -1;
        skip_ws(s);
        if (s->p >= s->end) return -1;
        if (*s->p == '}') { s->p++; return 0; }
        if (*s->p++ != ',') return -1;
    }
}

static int scan_array(scan *s, int depth)
{
    if (depth > SCAN_MAX_DEPTH) return -1;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') { s->p++; return 0; }
    for (;;) {
        skip_ws(s);
        if (scan_value(s, depth + 1) < 0) return -1;
        skip_ws(s);
        if (s->p >= s->end) return -1;
        if (*s->p == ']') { s->p++; return 0; }
        if (*s->p++ != ',') return -1;
    }
}

static int scan_value(scan *s, int depth)
{
    if (s->p >= s->end) return -1;
    const char *k;
    size_t klen;
    long v;
    switch (*s->p) {
    case '{': return scan_object(s, depth, NULL, NULL);
    case '[': return scan_array(s, depth);
    case '"': return scan_string(s, &k, &klen);
    case 't': return scan_literal(s, "true", 4);
    case 'f': return scan_literal(s, "false", 5);
    case 'n': return scan_literal(s, "null", 4);
    default: return scan_number(s, &v);
    }
}

static int hexdigit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The raw key equals name once decoded (the names are ASCII, so only
 * escapes of ASCII characters can match). */
static int key_is(const char *k, size_t klen, const char *name)
{
    size_t n = strlen(name);
    if (klen == n && !memcmp(k, name, n)) return 1;
    if (klen < n || !memchr(k, '\\', klen)) return 0;   /* no escape: no other way to match */
    const char *end = k + klen;
    for (; k < end; name++) {
        int c = (unsigned char)*k++;
        if (c == '\\') {
            if (k >= end) return 0;
            c = (unsigned char)*k++;
            if (c == 'u') {
                if (end - k < 4) return 0;
                int cp = 0;
                for (int i = 0; i < 4; i++) {
                    int h = hexdigit(k[i]);
                    if (h < 0) return 0;
                    cp = cp * 16 + h;
                }
                k += 4;
                c = cp;
            } else if (c != '"' && c != '\\' && c != '/') {
                return 0;   /* \n, \t...: no name holds those */
            }
        }
        if (!*name || c != (unsigned char)*name) return 0;
    }
    return !*name;
}

/* A count: a number's value, anything else (null, a string...) skipped as 0. */
static int scan_count(scan *s, int depth, long *out)
{
    if (s->p < s->end && (*s->p == '-' || is_digit(*s->p))) return scan_number(s, out);
    *out = 0;
    return scan_value(s, depth + 1);
}

/* The first occurrence of a key counts, as json_get has it. */
enum { SEEN_PROMPT = 1, SEEN_COMPLETION = 2, SEEN_DETAILS = 4, SEEN_CACHED = 8 };

typedef struct usage_scan {
    usage_t  u;
    unsigned seen;
} usage_scan;

static int first(usage_scan *us, unsigned bit)
{
    if (us->seen & bit) return 0;
    us->seen |= bit;
    return 1;
}

static int on_details_member(scan *s, const char *k, size_t klen, int depth, void *arg)
{
    usage_scan *us = arg;
    if (key_is(k, klen, "cached_tokens") && first(us, SEEN_CACHED)) return scan_count(s, depth, &us->u.cached_tokens);
    return scan_value(s, depth + 1);
}

static int on_usage_member(scan *s, const char *k, size_t klen, int depth, void *arg)
{
    usage_scan *us = arg;
    if (key_is(k, klen, "prompt_tokens") && first(us, SEEN_PROMPT)) return scan_count(s, depth, &us->u.prompt_tokens);
    if (key_is(k, klen, "completion_tokens") && first(us, SEEN_COMPLETION))
        return scan_count(s, depth, &us->u.completion_tokens);
    if (key_is(k, klen, "prompt_tokens_details") && first(us, SEEN_DETAILS) && s->p < s->end && *s->p == '{')
        return scan_object(s, depth + 1, on_details_member, us);
    return scan_value(s, depth + 1);
}

/* The scanner gave up (nesting past SCAN_MAX_DEPTH, or bytes that are not
 * JSON): a whole parse decides, so a legal but odd answer is
 * still priced. Rare, so its cost does not matter. */
static int usage_from_parse(const char *p, size_t n, usage_t *u)
{
    json_limits lim = { .max_depth = 64, .max_bytes = n };
    json_doc *d = json_parse(p, n, &lim, NULL);
    if (!d) return -1;
    usage_t got = { 0 };
    int rc = usage_from_json(json_root(d), &got);
    json_doc_free(d);
    if (rc == 0) *u = got;
    return rc;
}

/* The usage object is small and near the end of a response: find the last
 * "usage" key and scan only the object after it, not the whole completion. */
int usage_from_bytes(const char *p, size_t n, usage_t *u)
{
    /* the last "usage", searched from the end: on the rare 'g' (vectorised
     * memrchr), then the 7 bytes around it */
    const char *k = NULL;
    for (size_t end = n; end > 0 && !k;) {
        const char *g = memrchr(p, 'g', end);
        if (!g) break;
        size_t i = (size_t)(g - p);
        if (i >= 4 && i + 2 < n && !memcmp(g - 4, "\"usage\"", 7)) k = g - 4;
        end = i;
    }
    if (!k) return -1;
    scan s = { k + 7, p + n };
    skip_ws(&s);
    if (s.p >= s.end || *s.p != ':') return -1;
    s.p++;
    skip_ws(&s);
    /* "usage":null is how every chunk of an OpenAI stream but the last says
     * "none yet": no usage, and no reason for the whole parse below */
    if ((size_t)(s.end - s.p) >= 4 && !memcmp(s.p, "null", 4)) return -1;
    usage_scan got = { { 0 }, 0 };
    if (s.p >= s.end || *s.p != '{' || scan_object(&s, 1, on_usage_member, &got) < 0) return usage_from_parse(p, n, u);
    got.u.present = 1;
    *u = got.u;
    return 0;
}
