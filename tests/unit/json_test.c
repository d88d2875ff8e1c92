/* Unit tests for common/json.c. Every input is copied into an exact-size heap
 * buffer first, so AddressSanitizer catches any read past len. */
#include "test.h"
#include "buf.h"
#include "json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static json_doc *parse_n(const char *text, size_t len, const json_limits *lim, json_error *err)
{
    if (!text) return json_parse(NULL, len, lim, err);
    char *copy = malloc(len ? len : 1);
    if (!copy) return NULL;
    memcpy(copy, text, len);
    json_doc *d = json_parse(copy, len, lim, err);
    free(copy);     /* the doc must not point into the source */
    return d;
}

static json_doc *parse(const char *text) { return parse_n(text, strlen(text), NULL, NULL); }

/* Parse must fail with msg at line:col. */
static void expect_err_n(const char *in, size_t len, const json_limits *lim,
                         const char *msg, int line, int col)
{
    json_error e;
    json_doc *d = parse_n(in, len, lim, &e);
    CHECK(d == NULL);
    json_doc_free(d);
    if (d) { fprintf(stderr, "    input accepted: %.*s\n", (int)len, in); return; }
    CHECK_STR(e.message, msg);
    CHECK(e.line == line);
    CHECK(e.column == col);
    if (strcmp(e.message, msg) || e.line != line || e.column != col)
        fprintf(stderr, "    input %.*s -> \"%s\" at %d:%d\n", (int)len, in, e.message, e.line, e.column);
}

static void expect_err(const char *in, const char *msg, int line, int col)
{
    expect_err_n(in, strlen(in), NULL, msg, line, col);
}

/* ---- valid documents -------------------------------------------------------- */

static void test_scalars(void)
{
    json_doc *d = parse("null");
    CHECK(d && json_root(d)->type == JSON_NULL);
    json_doc_free(d);
    d = parse(" true ");
    CHECK(d && json_root(d)->type == JSON_TRUE && json_root(d)->start == 1 && json_root(d)->end == 5);
    json_doc_free(d);
    d = parse("false");
    CHECK(d && json_root(d)->type == JSON_FALSE);
    json_doc_free(d);
    d = parse("\t\r\n 42 \n");
    CHECK(d && json_root(d)->type == JSON_NUMBER && json_root(d)->is_int && json_root(d)->i64 == 42);
    json_doc_free(d);
    d = parse("\"hi\"");
    CHECK(d && json_root(d)->type == JSON_STRING);
    if (d) {
        CHECK_STR(json_root(d)->str, "hi");
        CHECK(json_root(d)->str_len == 2);
        CHECK(json_root(d)->start == 0 && json_root(d)->end == 4);
    }
    json_doc_free(d);
}

static void test_object_access(void)
{
    const char *in = "{\"model\":\"gpt-4o\",\"stream\":true,\"n\":2,\"off\":false,\"x\":null}";
    json_doc *d = parse(in);
    CHECK(d != NULL);
    if (!d) return;
    json_value *r = json_root(d);
    CHECK(r->type == JSON_OBJECT && r->count == 5);
    CHECK_STR(json_get_str(r, "model"), "gpt-4o");
    CHECK(json_get_bool(r, "stream") == 1);
    CHECK(json_get_bool(r, "off") == 0);
    CHECK(json_get_bool(r, "missing") == 0);
    CHECK(json_get_bool(r, "n") == 0);
    CHECK(json_get_str(r, "n") == NULL);     /* not a string */
    CHECK(json_get_str(r, "nope") == NULL);
    json_value *n = json_get(r, "n");
    CHECK(n && n->is_int && n->i64 == 2 && n->num == 2.0);
    CHECK(n && n->key_len == 1 && n->key_start == 32 && in[n->key_start] == '"');
    CHECK(json_get(r, "x") && json_get(r, "x")->type == JSON_NULL);
    CHECK(json_get(r, "mode") == NULL && json_get(r, "modelx") == NULL);   /* exact key length */
    json_doc_free(d);
}

static void test_array_access(void)
{
    json_doc *d = parse("[1, \"two\", [3], {\"four\":4}, true]");
    CHECK(d != NULL);
    if (!d) return;
    json_value *r = json_root(d);
    CHECK(r->type == JSON_ARRAY && r->count == 5);
    CHECK(json_at(r, 0) && json_at(r, 0)->i64 == 1);
    CHECK_STR(json_at(r, 1)->str, "two");
    CHECK(json_at(r, 2)->type == JSON_ARRAY && json_at(json_at(r, 2), 0)->i64 == 3);
    CHECK(json_get(json_at(r, 3), "four")->i64 == 4);
    CHECK(json_at(r, 4)->type == JSON_TRUE && json_at(r, 4)->next == NULL);
    CHECK(json_at(r, 5) == NULL);
    CHECK(json_at(r, (size_t)-1) == NULL);
    CHECK(json_get(r, "four") == NULL);          /* not an object */
    CHECK(json_at(json_at(r, 3), 0) == NULL);    /* not an array */
    CHECK(json_get(NULL, "a") == NULL && json_at(NULL, 0) == NULL);
    CHECK(json_get_str(NULL, "a") == NULL && json_get_bool(NULL, "a") == 0);
    CHECK(json_root(NULL) == NULL);
    json_doc_free(NULL);
    json_doc_free(d);
}

static void test_nested_access(void)
{
    const char *in =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello\"}]}],"
        "\"opts\":{\"a\":{\"b\":{\"c\":[[],{}]}}}}";
    json_doc *d = parse(in);
    CHECK(d != NULL);
    if (!d) return;
    json_value *r = json_root(d);
    json_value *msgs = json_get(r, "messages");
    CHECK(msgs && msgs->count == 2);
    CHECK_STR(json_get_str(json_at(msgs, 0), "role"), "system");
    json_value *parts = json_get(json_at(msgs, 1), "content");
    CHECK(parts && parts->type == JSON_ARRAY && parts->count == 1);
    CHECK_STR(json_get_str(json_at(parts, 0), "text"), "hello");
    json_value *c = json_get(json_get(json_get(json_get(r, "opts"), "a"), "b"), "c");
    CHECK(c && c->count == 2);
    CHECK(json_at(c, 0)->type == JSON_ARRAY && json_at(c, 0)->count == 0 && json_at(c, 0)->first == NULL);
    CHECK(json_at(c, 1)->type == JSON_OBJECT && json_at(c, 1)->count == 0);
    CHECK(r->start == 0 && r->end == strlen(in));
    json_doc_free(d);
}

static void test_span_rewrite(void)
{
    const char *in = "{\"model\":\"gpt-4o\",\"x\":1}";
    json_doc *d = parse(in);
    CHECK(d != NULL);
    if (!d) return;
    json_value *m = json_get(json_root(d), "model");
    CHECK(m && m->start == 9 && m->end == 17);
    CHECK(m && in[m->key_start] == '"' && m->key_start == 1);
    char out[64];
    snprintf(out, sizeof out, "%.*s\"%s\"%s", (int)m->start, in, "claude-x", in + m->end);
    CHECK_STR(out, "{\"model\":\"claude-x\",\"x\":1}");
    json_value *x = json_get(json_root(d), "x");
    CHECK(x && x->start == 22 && x->end == 23);
    json_doc_free(d);

    /* Spans of containers with inner whitespace. */
    d = parse(" { \"a\" : [ 1 , 2 ] } ");
    CHECK(d != NULL);
    if (!d) return;
    json_value *a = json_get(json_root(d), "a");
    CHECK(json_root(d)->start == 1 && json_root(d)->end == 20);
    CHECK(a && a->start == 9 && a->end == 18 && a->key_start == 3);
    json_doc_free(d);
}

static void test_escapes(void)
{
    json_doc *d = parse("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"");
    CHECK(d != NULL);
    if (d) {
        CHECK_STR(json_root(d)->str, "a\"b\\c/d\be\ff\ng\rh\ti");
        CHECK(json_root(d)->str_len == 17);
    }
    json_doc_free(d);
    /* Escaped key. */
    d = parse("{\"k\\u0065y\":1}");
    CHECK(d && json_get(json_root(d), "key") && json_get(json_root(d), "key")->key_len == 3);
    json_doc_free(d);
}

static void test_unicode_escapes(void)
{
    json_doc *d = parse("[\"\\u00e9\", \"\\u20AC\", \"\\ud83d\\ude00\", \"x\\uDBFF\\uDFFFy\", \"\\u0041\"]");
    CHECK(d != NULL);
    if (!d) return;
    json_value *r = json_root(d);
    CHECK_STR(json_at(r, 0)->str, "\xC3\xA9");
    CHECK_STR(json_at(r, 1)->str, "\xE2\x82\xAC");
    CHECK_STR(json_at(r, 2)->str, "\xF0\x9F\x98\x80");
    CHECK(json_at(r, 2)->str_len == 4);
    CHECK_STR(json_at(r, 3)->str, "x\xF4\x8F\xBF\xBFy");
    CHECK_STR(json_at(r, 4)->str, "A");
    json_doc_free(d);
}

static void test_u0000(void)
{
    json_doc *d = parse("{\"a\\u0000b\":\"x\\u0000y\"}");
    CHECK(d != NULL);
    if (!d) return;
    json_value *v = json_root(d)->first;
    CHECK(v->str_len == 3 && memcmp(v->str, "x\0y", 4) == 0);
    CHECK(v->key_len == 3 && memcmp(v->key, "a\0b", 4) == 0);
    CHECK(json_get(json_root(d), "a") == NULL);     /* key_len must match */
    json_doc_free(d);
}

static void test_raw_utf8_valid(void)
{
    /* 2, 3 and 4 byte forms, the highest code point, and the edges around the surrogates. */
    json_doc *d = parse("\"\xC2\x80 \xDF\xBF \xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 \xF0\x90\x80\x80 \xF4\x8F\xBF\xBF \x7F\"");
    CHECK(d && json_root(d)->str_len == 2 + 2 + 3 + 3 + 3 + 4 + 4 + 1 + 7);
    json_doc_free(d);
}

/* ---- errors ------------------------------------------------------------------ */

static void test_invalid_utf8(void)
{
    expect_err("\"\xC0\x80\"", "invalid UTF-8", 1, 2);              /* overlong NUL */
    expect_err("\"ab\xC1\xBF\"", "invalid UTF-8", 1, 4);            /* overlong */
    expect_err("\"\xE0\x80\x80\"", "invalid UTF-8", 1, 2);          /* overlong 3-byte */
    expect_err("\"\xF0\x80\x80\x80\"", "invalid UTF-8", 1, 2);      /* overlong 4-byte */
    expect_err("\"\xED\xA0\x80\"", "invalid UTF-8", 1, 2);          /* lone surrogate U+D800 */
    expect_err("\"\xED\xBF\xBF\"", "invalid UTF-8", 1, 2);          /* U+DFFF */
    expect_err("\"\xF4\x90\x80\x80\"", "invalid UTF-8", 1, 2);      /* > U+10FFFF */
    expect_err("\"\xF5\x80\x80\x80\"", "invalid UTF-8", 1, 2);
    expect_err("\"\xE2\x82\"", "invalid UTF-8", 1, 2);              /* truncated */
    expect_err("\"\xF0\x9F\x98\"", "invalid UTF-8", 1, 2);
    expect_err("\"x\x80\"", "invalid UTF-8", 1, 3);                 /* stray continuation */
    expect_err("\"\xFF\"", "invalid UTF-8", 1, 2);
    expect_err("{\"k\xC3\":1}", "invalid UTF-8", 1, 4);             /* in a key */
    expect_err_n("\"\xE2\x82", 3, NULL, "invalid UTF-8", 1, 2);     /* truncated by end of input */
    /* Long ASCII run so the bad byte sits past the word-at-a-time fast loop. */
    expect_err("\"0123456789abcdef0123\xC0\x80\"", "invalid UTF-8", 1, 22);
}

static void test_lone_surrogate_escapes(void)
{
    expect_err("\"\\ud800\"", "lone surrogate in \\u escape", 1, 2);
    expect_err("\"\\udc00\"", "lone surrogate in \\u escape", 1, 2);
    expect_err("\"ab\\ud800\\u0041\"", "lone surrogate in \\u escape", 1, 4);
    expect_err("\"\\ud800x\"", "lone surrogate in \\u escape", 1, 2);
    expect_err("\"\\ud800\\ud800\"", "lone surrogate in \\u escape", 1, 2);
    expect_err("\"\\ud800\\n\"", "lone surrogate in \\u escape", 1, 2);
    expect_err("\"\\ud800\\uZZZZ\"", "invalid escape", 1, 8);
}

static void test_invalid_escape_and_control(void)
{
    expect_err("\"a\\x\"", "invalid escape", 1, 3);
    expect_err("\"\\U0041\"", "invalid escape", 1, 2);
    expect_err("\"\\u12G4\"", "invalid escape", 1, 2);
    expect_err("\"\\u12\"", "invalid escape", 1, 2);
    expect_err("\"\\'\"", "invalid escape", 1, 2);
    expect_err("\"a\nb\"", "control character in string", 1, 3);
    expect_err("\"a\tb\"", "control character in string", 1, 3);
    expect_err("[\"ok\",\"\x1f\"]", "control character in string", 1, 8);
    expect_err_n("\"a\0b\"", 5, NULL, "control character in string", 1, 3);
}

static void test_unterminated_and_eof(void)
{
    expect_err("", "unexpected end of input", 1, 1);
    expect_err_n(NULL, 0, NULL, "unexpected end of input", 1, 1);
    expect_err("  \n ", "unexpected end of input", 2, 2);
    expect_err("[", "unexpected end of input", 1, 2);
    expect_err("[1,", "unexpected end of input", 1, 4);
    expect_err("{", "unexpected end of input", 1, 2);
    expect_err("{\"a\"", "unexpected end of input", 1, 5);
    expect_err("{\"a\":", "unexpected end of input", 1, 6);
    expect_err("{\"a\":1", "unexpected end of input", 1, 7);
    expect_err("tru", "unexpected end of input", 1, 4);
    expect_err("[\"abc", "unterminated string", 1, 2);
    expect_err("\"abc\\", "unterminated string", 1, 1);
    expect_err("\"\\u12", "unterminated string", 1, 1);
    expect_err("\"\\ud83d", "unterminated string", 1, 1);
    expect_err("\"\\ud83d\\", "unterminated string", 1, 1);
    expect_err("\"\\ud83d\\ude0", "unterminated string", 1, 1);
    expect_err("{\"abcdefghijklmnop", "unterminated string", 1, 2);
}

static void test_structure_errors(void)
{
    expect_err("{\"a\":1,}", "expected string key", 1, 8);
    expect_err("[1,]", "unexpected character ']'", 1, 4);
    expect_err("[,1]", "unexpected character ','", 1, 2);
    expect_err("{,}", "expected string key", 1, 2);
    expect_err("{a:1}", "expected string key", 1, 2);
    expect_err("{\"a\" 1}", "expected ':'", 1, 6);
    expect_err("{\"a\":1 \"b\":2}", "expected ',' or '}'", 1, 8);
    expect_err("{\"a\":1]", "expected ',' or '}'", 1, 7);
    expect_err("[1 2]", "expected ',' or ']'", 1, 4);
    expect_err("[1}", "expected ',' or ']'", 1, 3);
    expect_err("{\"a\":}", "unexpected character '}'", 1, 6);
    expect_err("'a'", "unexpected character '''", 1, 1);
    expect_err("\xEF\xBB\xBF{}", "unexpected byte 0xEF", 1, 1);   /* BOM is not JSON */
    expect_err("[\x01]", "unexpected byte 0x01", 1, 2);
    /* Multi-line: the line counts newlines, the column restarts after each. */
    expect_err("{\n  \"a\": 1,\n  \"b\": [1, 2,,]\n}", "unexpected character ','", 3, 14);
    expect_err("{\r\n\"a\":1,\r\n}", "expected string key", 3, 1);
}

static void test_literals(void)
{
    json_doc *d = parse("[true,false,null]");
    CHECK(d && json_root(d)->count == 3);
    CHECK(d && json_at(json_root(d), 2)->start == 12 && json_at(json_root(d), 2)->end == 16);
    json_doc_free(d);
    expect_err("True", "unexpected character 'T'", 1, 1);
    expect_err("nul", "unexpected end of input", 1, 4);
    expect_err("nulL", "unexpected character 'L'", 1, 4);
    expect_err("[fals]", "unexpected character ']'", 1, 6);
    expect_err("nulls", "trailing characters after the JSON value", 1, 5);
    expect_err("[truex]", "expected ',' or ']'", 1, 6);
}

static void test_numbers_valid(void)
{
    json_doc *d = parse("[0, -0, 1.5, -1.5e3, 1E+2, 1e-2, 0.5, 123456789, 2.5E-1, -0.0, 1e-400]");
    CHECK(d != NULL);
    if (!d) return;
    json_value *r = json_root(d);
    json_value *z = json_at(r, 0);
    CHECK(z->type == JSON_NUMBER && z->is_int && z->i64 == 0 && z->num == 0.0 && !signbit(z->num));
    json_value *nz = json_at(r, 1);
    CHECK(nz->is_int && nz->i64 == 0 && nz->num == 0.0 && signbit(nz->num));
    CHECK(json_at(r, 2)->num == 1.5 && !json_at(r, 2)->is_int);
    CHECK(json_at(r, 3)->num == -1500.0 && !json_at(r, 3)->is_int);
    CHECK(json_at(r, 4)->num == 100.0 && !json_at(r, 4)->is_int);
    CHECK(json_at(r, 5)->num == 0.01);
    CHECK(json_at(r, 6)->num == 0.5);
    CHECK(json_at(r, 7)->is_int && json_at(r, 7)->i64 == 123456789);
    CHECK(json_at(r, 8)->num == 0.25);
    CHECK(signbit(json_at(r, 9)->num) && !json_at(r, 9)->is_int);
    CHECK(json_at(r, 10)->num == 0.0);           /* underflow is fine, only overflow is rejected */
    CHECK(json_at(r, 3)->start == 13 && json_at(r, 3)->end == 19);
    json_doc_free(d);
}

static void test_numbers_invalid(void)
{
    expect_err("01", "invalid number", 1, 2);
    expect_err("-01", "invalid number", 1, 3);
    expect_err("[00]", "invalid number", 1, 3);
    expect_err("+1", "unexpected character '+'", 1, 1);
    expect_err(".5", "unexpected character '.'", 1, 1);
    expect_err("1.", "invalid number", 1, 3);
    expect_err("[1.]", "invalid number", 1, 4);
    expect_err("1.e5", "invalid number", 1, 3);
    expect_err("-", "invalid number", 1, 2);
    expect_err("-a", "invalid number", 1, 2);
    expect_err("1e", "invalid number", 1, 3);
    expect_err("1e+", "invalid number", 1, 4);
    expect_err("[1E-x]", "invalid number", 1, 5);
    expect_err("NaN", "unexpected character 'N'", 1, 1);
    expect_err("Infinity", "unexpected character 'I'", 1, 1);
    expect_err("-Infinity", "invalid number", 1, 2);
    expect_err("0x10", "trailing characters after the JSON value", 1, 2);
    expect_err("1 2", "trailing characters after the JSON value", 1, 3);
    /* Overflow to infinity is rejected at the number's first byte. */
    expect_err("1e400", "invalid number", 1, 1);
    expect_err("[1, -1e400]", "invalid number", 1, 5);
    expect_err("1.8e308", "invalid number", 1, 1);
}

static void test_int64_bounds(void)
{
    json_doc *d = parse("[9223372036854775807, -9223372036854775808, 9223372036854775808,"
                        " -9223372036854775809, 18446744073709551615, 18446744073709551616,"
                        " 99999999999999999999999, 1.0, 1e2, -1]");
    CHECK(d != NULL);
    if (!d) return;
    json_value *r = json_root(d);
    CHECK(json_at(r, 0)->is_int && json_at(r, 0)->i64 == INT64_MAX);
    CHECK(json_at(r, 1)->is_int && json_at(r, 1)->i64 == INT64_MIN);
    CHECK(json_at(r, 1)->num == -9223372036854775808.0);
    CHECK(!json_at(r, 2)->is_int && json_at(r, 2)->num == 9223372036854775808.0);
    CHECK(!json_at(r, 3)->is_int && json_at(r, 3)->num == -9223372036854775808.0);
    CHECK(!json_at(r, 4)->is_int && json_at(r, 4)->num == 18446744073709551616.0);
    CHECK(!json_at(r, 5)->is_int && json_at(r, 5)->num == 18446744073709551616.0);
    CHECK(!json_at(r, 6)->is_int && json_at(r, 6)->num > 9.99e22 && json_at(r, 6)->num < 1.01e23);
    CHECK(!json_at(r, 7)->is_int && json_at(r, 7)->num == 1.0);
    CHECK(!json_at(r, 8)->is_int);
    CHECK(json_at(r, 9)->is_int && json_at(r, 9)->i64 == -1);
    json_doc_free(d);
}

static void test_long_numbers(void)
{
    /* Longer than the parser's local strtod buffer. */
    char big[420];
    big[0] = '1';
    memset(big + 1, '0', 300);
    big[301] = '\0';
    json_doc *d = parse(big);
    CHECK(d && !json_root(d)->is_int && json_root(d)->num == 1e300);
    json_doc_free(d);
    memset(big + 1, '0', 400);
    big[401] = '\0';
    expect_err(big, "invalid number", 1, 1);
    char frac[300] = "0.";
    memset(frac + 2, '0', 250);
    strcpy(frac + 252, "5");
    d = parse(frac);
    CHECK(d && json_root(d)->num == 5e-251);
    json_doc_free(d);
}

static void test_trailing(void)
{
    expect_err("{} x", "trailing characters after the JSON value", 1, 4);
    expect_err("{}}", "trailing characters after the JSON value", 1, 3);
    expect_err("[]\n\n[]", "trailing characters after the JSON value", 3, 1);
    expect_err("\"a\"\"b\"", "trailing characters after the JSON value", 1, 4);
    json_doc *d = parse("{} \n\t\r ");
    CHECK(d != NULL);
    json_doc_free(d);
}

static void test_depth_limit(void)
{
    char buf[200];
    for (int i = 0; i < 64; i++) { buf[i] = '['; buf[128 - 1 - i] = ']'; }
    json_doc *d = parse_n(buf, 128, NULL, NULL);
    CHECK(d != NULL);
    json_doc_free(d);

    for (int i = 0; i < 65; i++) { buf[i] = '['; buf[130 - 1 - i] = ']'; }
    expect_err_n(buf, 130, NULL, "nesting too deep", 1, 65);

    /* Objects count too, and a custom limit applies. */
    json_limits lim = { 2, 0 };
    d = parse_n("{\"a\":[1]}", 9, &lim, NULL);
    CHECK(d != NULL);
    json_doc_free(d);
    expect_err_n("{\"a\":[{}]}", 10, &lim, "nesting too deep", 1, 7);
    /* Unclosed nesting fails on depth before running out of input. */
    memset(buf, '[', 100);
    expect_err_n(buf, 100, NULL, "nesting too deep", 1, 65);
}

static void test_deep_raised_limit(void)
{
    /* A raised limit must not turn into C stack depth: the parser is iterative. */
    size_t depth = 200000;
    char *buf = malloc(depth * 2 + 1);
    CHECK(buf != NULL);
    if (!buf) return;
    memset(buf, '[', depth);
    memset(buf + depth, ']', depth);
    json_limits lim = { depth, 0 };
    json_doc *d = json_parse(buf, depth * 2, &lim, NULL);
    CHECK(d != NULL);
    json_value *v = json_root(d);
    size_t levels = 0;
    while (v && v->type == JSON_ARRAY) { levels++; v = v->first; }
    CHECK(levels == depth);
    json_doc_free(d);
    lim.max_depth = depth - 1;
    json_error e;
    CHECK(json_parse(buf, depth * 2, &lim, &e) == NULL);
    CHECK_STR(e.message, "nesting too deep");
    CHECK(e.offset == depth - 1);
    free(buf);
}

static void test_not_nul_terminated(void)
{
    /* The byte right after len is garbage that would change the result if read. */
    const char *src = "{\"a\":\"b\"}xyz";
    json_doc *d = json_parse(src, 9, NULL, NULL);
    CHECK(d && json_get_str(json_root(d), "a") && strcmp(json_get_str(json_root(d), "a"), "b") == 0);
    json_doc_free(d);

    d = json_parse("123456", 2, NULL, NULL);
    CHECK(d && json_root(d)->i64 == 12 && json_root(d)->end == 2);
    json_doc_free(d);

    d = json_parse("1.5e10", 3, NULL, NULL);
    CHECK(d && json_root(d)->num == 1.5);
    json_doc_free(d);

    json_error e;
    CHECK(json_parse("\"abc\"", 4, NULL, &e) == NULL);
    CHECK_STR(e.message, "unterminated string");
    CHECK(json_parse("truex", 3, NULL, &e) == NULL);
    CHECK_STR(e.message, "unexpected end of input");
    CHECK(json_parse("1.5", 2, NULL, &e) == NULL);
    CHECK_STR(e.message, "invalid number");
    CHECK(e.offset == 2);
}

static void test_truncations_and_mutations(void)
{
    /* Every proper prefix of a document (that isn't itself a number) must be
     * rejected; exact-size copies let ASan catch any over-read. */
    const char *doc = "{\"a\":[1,-2.5e3,{\"b\":\"c\\u00e9\\ud83d\\ude00\xE2\x82\xAC\"}],\"d\":true,\"e\":null}";
    size_t n = strlen(doc);
    json_doc *d = parse(doc);
    CHECK(d != NULL);
    json_doc_free(d);
    for (size_t i = 0; i < n; i++) {
        json_error e;
        d = parse_n(doc, i, NULL, &e);
        CHECK(d == NULL);
        json_doc_free(d);
        if (!d) CHECK(e.offset <= i && e.line == 1 && e.message[0]);
    }
    /* Replacing any byte with each of a few troublesome values must not crash. */
    static const unsigned char evil[] = { 0, '"', '\\', '{', '[', ']', '}', ',', ':', 0x80, 0xC3, 0xED, 0xF4, 0xFF };
    char *m = malloc(n);
    CHECK(m != NULL);
    if (!m) return;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof evil; k++) {
            memcpy(m, doc, n);
            m[i] = (char)evil[k];
            json_error e;
            d = json_parse(m, n, NULL, &e);
            if (!d) CHECK(e.offset <= n && e.line >= 1 && e.column >= 1);
            json_doc_free(d);
        }
    }
    free(m);
}

static void test_max_bytes(void)
{
    json_limits lim = { 0, 8 };
    json_doc *d = parse_n("[1,2,3] ", 8, &lim, NULL);
    CHECK(d != NULL);
    json_doc_free(d);
    expect_err_n("[1,2,3,4]", 9, &lim, "input too large", 1, 9);
}

static void test_large_document(void)
{
    /* Many nodes (several arena blocks), a string bigger than any block, and
     * escapes at every alignment relative to the word-at-a-time scan. */
    size_t items = 20000, big = 100000;
    size_t cap = items * 40 + big + 64;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    if (!buf) return;
    size_t n = 0;
    n += (size_t)sprintf(buf + n, "{\"big\":\"");
    for (size_t i = 0; i < big; i++) buf[n++] = (char)('a' + i % 26);
    n += (size_t)sprintf(buf + n, "\",\"list\":[");
    for (size_t i = 0; i < items; i++) {
        char pad[17];
        memset(pad, 'p', i % 16);
        pad[i % 16] = '\0';
        n += (size_t)sprintf(buf + n, "%s{\"i\":%zu,\"s\":\"%s\\n\"}", i ? "," : "", i, pad);
    }
    n += (size_t)sprintf(buf + n, "]}");
    json_doc *d = json_parse(buf, n, NULL, NULL);
    CHECK(d != NULL);
    if (d) {
        json_value *b = json_get(json_root(d), "big");
        CHECK(b && b->str_len == big && b->str[0] == 'a' && b->str[big - 1] == (char)('a' + (big - 1) % 26));
        json_value *list = json_get(json_root(d), "list");
        CHECK(list && list->count == items);
        size_t i = 0, bad = 0;
        for (json_value *it = list ? list->first : NULL; it; it = it->next, i++) {
            json_value *iv = json_get(it, "i"), *sv = json_get(it, "s");
            if (!iv || iv->i64 != (int64_t)i || !sv || sv->str_len != i % 16 + 1 || sv->str[i % 16] != '\n')
                bad++;
        }
        CHECK(i == items && bad == 0);
    }
    json_doc_free(d);
    free(buf);
}

static void test_duplicate_keys(void)
{
    json_doc *d = parse("{\"a\":1,\"ab\":2,\"a\":3,\"\":4}");
    CHECK(d != NULL);
    if (!d) return;
    json_value *r = json_root(d);
    CHECK(r->count == 4);
    CHECK(json_get(r, "a")->i64 == 1);           /* first match wins */
    CHECK(json_get(r, "ab")->i64 == 2);
    CHECK(json_get(r, "")->i64 == 4);
    CHECK(json_at(r, 0) == NULL);
    json_doc_free(d);
}

static void test_error_struct_cleared(void)
{
    json_error e;
    memset(&e, 0x5a, sizeof e);
    json_doc *d = json_parse("{}", 2, NULL, &e);
    CHECK(d != NULL && e.message[0] == '\0' && e.offset == 0);
    json_doc_free(d);
    d = json_parse("{}", 2, NULL, NULL);     /* err is optional on both paths */
    CHECK(d != NULL);
    json_doc_free(d);
    CHECK(json_parse("{", 1, NULL, NULL) == NULL);
}

/* buf_put_u64 / buf_put_i64 against snprintf at every digit count and sign. */
static void test_integer_formatting(void)
{
    const long long vals[] = { 0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12345, 99999, 100000, 1234567890123LL,
                               1700000000123456789LL, 9223372036854775807LL, -1, -10, -99, -100, -12345,
                               -9223372036854775807LL - 1 };
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        buf_t b; buf_init(&b);
        char want[32];
        snprintf(want, sizeof want, "%lld", vals[i]);
        CHECK(buf_put_i64(&b, vals[i]) == 0 && b.len == strlen(want) && !strcmp(b.data, want));
        buf_free(&b);
    }
    buf_t b; buf_init(&b);
    CHECK(buf_put_u64(&b, 18446744073709551615ULL) == 0 && !strcmp(b.data, "18446744073709551615"));
    buf_free(&b);
}

int main(void)
{
    RUN(test_integer_formatting);
    RUN(test_scalars);
    RUN(test_object_access);
    RUN(test_array_access);
    RUN(test_nested_access);
    RUN(test_span_rewrite);
    RUN(test_escapes);
    RUN(test_unicode_escapes);
    RUN(test_u0000);
    RUN(test_raw_utf8_valid);
    RUN(test_invalid_utf8);
    RUN(test_lone_surrogate_escapes);
    RUN(test_invalid_escape_and_control);
    RUN(test_unterminated_and_eof);
    RUN(test_structure_errors);
    RUN(test_literals);
    RUN(test_numbers_valid);
    RUN(test_numbers_invalid);
    RUN(test_int64_bounds);
    RUN(test_long_numbers);
    RUN(test_trailing);
    RUN(test_depth_limit);
    RUN(test_deep_raised_limit);
    RUN(test_not_nul_terminated);
    RUN(test_truncations_and_mutations);
    RUN(test_max_bytes);
    RUN(test_large_document);
    RUN(test_duplicate_keys);
    RUN(test_error_struct_cleared);
    TEST_MAIN_END();
}
