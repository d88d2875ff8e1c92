/* fuzz target: common/json.c (json_parse) on hostile bytes.
 *
 * Beyond "no crash": every value's byte span must lie inside its parent's
 * and after its previous sibling's, start and end on the right characters,
 * counts must match the children, numbers must agree with strtod/strtoll of
 * their span, and re-serializing the tree and parsing that must give the
 * same tree (so decoded strings are exactly what the escapes meant and are
 * valid UTF-8). A parse that fails reports an offset inside the input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static size_t depth_of(const json_value *v)
{
    size_t d = 0;
    if (v->type != JSON_ARRAY && v->type != JSON_OBJECT) return 0;
    for (const json_value *c = v->first; c; c = c->next) {
        size_t k = depth_of(c);
        if (k > d) d = k;
    }
    return d + 1;
}

static void check_value(const unsigned char *s, size_t n, const json_value *v, int in_object)
{
    CHECK(v->start < v->end && v->end <= n);
    unsigned char a = s[v->start], z = s[v->end - 1];
    switch (v->type) {
    case JSON_NULL:  CHECK(v->end - v->start == 4 && !memcmp(s + v->start, "null", 4)); break;
    case JSON_TRUE:  CHECK(v->end - v->start == 4 && !memcmp(s + v->start, "true", 4)); break;
    case JSON_FALSE: CHECK(v->end - v->start == 5 && !memcmp(s + v->start, "false", 5)); break;
    case JSON_STRING:
        CHECK(a == '"' && z == '"' && v->end - v->start >= 2);
        CHECK(v->str && v->str[v->str_len] == '\0');
        CHECK(v->str_len <= v->end - v->start - 2);
        break;
    case JSON_NUMBER: {
        CHECK(a == '-' || (a >= '0' && a <= '9'));
        CHECK(z >= '0' && z <= '9');
        char tmp[512];
        size_t len = v->end - v->start;
        if (len < sizeof tmp) {
            memcpy(tmp, s + v->start, len);
            tmp[len] = '\0';
            double d = strtod(tmp, NULL);
            if (v->is_int) {
                CHECK(!memchr(tmp, '.', len) && !memchr(tmp, 'e', len) && !memchr(tmp, 'E', len));
                long long ll = strtoll(tmp, NULL, 10);
                CHECK((long long)v->i64 == ll);
            } else {
                CHECK(isfinite(v->num));
                CHECK(d == v->num);
            }
        }
        break;
    }
    case JSON_ARRAY:
    case JSON_OBJECT: {
        CHECK(a == (v->type == JSON_ARRAY ? '[' : '{'));
        CHECK(z == (v->type == JSON_ARRAY ? ']' : '}'));
        size_t cnt = 0, prev_end = v->start + 1;
        for (const json_value *c = v->first; c; c = c->next) {
            cnt++;
            if (v->type == JSON_OBJECT) {
                CHECK(c->key && c->key[c->key_len] == '\0');
                CHECK(c->key_start >= prev_end && c->key_start < c->start && s[c->key_start] == '"');
            } else {
                CHECK(c->key == NULL);
            }
            CHECK(c->start >= prev_end && c->end <= v->end - 1);
            check_value(s, n, c, v->type == JSON_OBJECT);
            prev_end = c->end;
        }
        CHECK(cnt == v->count);
        for (size_t i = prev_end; i < v->end - 1; i++) CHECK(is_ws(s[i]));
        break;
    }
    }
    (void)in_object;
}

/* Canonical JSON of v (numbers by their source text). */
static void emit(buf_t *b, const unsigned char *s, const json_value *v)
{
    switch (v->type) {
    case JSON_NULL: buf_puts(b, "null"); break;
    case JSON_TRUE: buf_puts(b, "true"); break;
    case JSON_FALSE: buf_puts(b, "false"); break;
    case JSON_NUMBER: buf_append(b, s + v->start, v->end - v->start); break;
    case JSON_STRING: buf_json_str(b, v->str, v->str_len); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        buf_putc(b, v->type == JSON_ARRAY ? '[' : '{');
        for (const json_value *c = v->first; c; c = c->next) {
            if (c != v->first) buf_putc(b, ',');
            if (v->type == JSON_OBJECT) {
                buf_json_str(b, c->key, c->key_len);
                buf_putc(b, ':');
            }
            emit(b, s, c);
        }
        buf_putc(b, v->type == JSON_ARRAY ? ']' : '}');
        break;
    }
}

static void same_tree(const json_value *x, const json_value *y)
{
    CHECK(x->type == y->type);
    CHECK(x->key_len == y->key_len && (!x->key || !memcmp(x->key, y->key, x->key_len)));
    switch (x->type) {
    case JSON_STRING:
        CHECK(x->str_len == y->str_len && !memcmp(x->str, y->str, x->str_len));
        break;
    case JSON_NUMBER:
        CHECK(x->is_int == y->is_int);
        if (x->is_int) CHECK(x->i64 == y->i64);
        else CHECK(x->num == y->num);
        break;
    case JSON_ARRAY:
    case JSON_OBJECT: {
        CHECK(x->count == y->count);
        const json_value *a = x->first, *b = y->first;
        for (; a && b; a = a->next, b = b->next) same_tree(a, b);
        CHECK(!a && !b);
        break;
    }
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *s = data;
    json_error err;
    json_doc *d = json_parse((const char *)data, size, NULL, &err);
    if (!d) {
        CHECK(err.offset <= size && err.line >= 1 && err.column >= 1 && err.message[0]);
        return 0;
    }
    const json_value *root = json_root(d);
    CHECK(root);
    size_t lead = 0;
    while (lead < size && is_ws(s[lead])) lead++;
    size_t tail = size;
    while (tail > 0 && is_ws(s[tail - 1])) tail--;
    CHECK(root->start == lead && root->end == tail);
    check_value(s, size, root, 0);

    size_t depth = depth_of(root);
    CHECK(depth <= 64);
    /* a tighter limit fails exactly when the document is deeper */
    if (depth > 0) {
        json_limits lim = { .max_depth = depth, .max_bytes = 0 };
        json_doc *d2 = json_parse((const char *)data, size, &lim, NULL);
        CHECK(d2);
        json_doc_free(d2);
        lim.max_depth = depth - 1 ? depth - 1 : 0;
        if (lim.max_depth) {
            d2 = json_parse((const char *)data, size, &lim, &err);
            CHECK(!d2 && strstr(err.message, "deep"));
        }
    }
    /* round trip */
    buf_t b;
    buf_init(&b);
    emit(&b, s, root);
    if (!b.oom) {
        char *copy = malloc(b.len ? b.len : 1);   /* exact size: ASan sees any over-read */
        CHECK(copy);
        memcpy(copy, b.data, b.len);
        json_doc *d3 = json_parse(copy, b.len, NULL, &err);
        if (!d3) fprintf(stderr, "re-parse failed: %s at %zu\n", err.message, err.offset);
        CHECK(d3);
        same_tree(root, json_root(d3));
        json_doc_free(d3);
        free(copy);
    }
    buf_free(&b);
    json_doc_free(d);
    return 0;
}
