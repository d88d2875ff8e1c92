/* jschema: the structured-output validator, valid and invalid instances,
 * first-violation paths, hostile schemas (bounded) and its cost per KB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "jschema.h"
#include "json.h"
#include "test.h"

static char last_path[256], last_why[200];

/* 1 valid, 0 invalid, -1 unchecked, -2 bad test JSON */
static int check(const char *schema, const char *inst)
{
    json_limits lim = { .max_depth = 200 };
    json_doc *s = json_parse(schema, strlen(schema), &lim, NULL);
    json_doc *i = json_parse(inst, strlen(inst), &lim, NULL);
    int rc = -2;
    if (s && i) rc = jschema_validate(json_root(s), json_root(i), last_path, sizeof last_path, last_why, sizeof last_why);
    json_doc_free(s);
    json_doc_free(i);
    return rc;
}

#define VALID(s, i) CHECK(check(s, i) == JSCHEMA_VALID)
#define INVALID_AT(s, i, p) do { CHECK(check(s, i) == JSCHEMA_INVALID); CHECK_STR(last_path, p); } while (0)

static const char *PERSON =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":5},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"email\":{\"type\":[\"string\",\"null\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]},\"maxItems\":2},"
    "\"kind\":{\"const\":\"person\"}},"
    "\"required\":[\"name\",\"age\",\"email\",\"tags\",\"kind\"],\"additionalProperties\":false}";

static void test_types_and_objects(void)
{
    VALID(PERSON, "{\"name\":\"Ann\",\"age\":3,\"email\":null,\"tags\":[\"a\"],\"kind\":\"person\"}");
    VALID(PERSON, "{\"name\":\"Ann\",\"age\":3.0,\"email\":\"x@y\",\"tags\":[],\"kind\":\"person\"}");
    INVALID_AT(PERSON, "{\"name\":\"Ann\",\"age\":3.5,\"email\":null,\"tags\":[],\"kind\":\"person\"}", "$.age");
    CHECK(strstr(last_why, "expected integer, got number") != NULL);
    INVALID_AT(PERSON, "{\"name\":\"Ann\",\"age\":3,\"tags\":[],\"kind\":\"person\"}", "$");
    CHECK(strstr(last_why, "\"email\"") != NULL);
    INVALID_AT(PERSON, "{\"name\":\"Ann\",\"age\":3,\"email\":null,\"tags\":[],\"kind\":\"person\",\"x\":1}", "$.x");
    INVALID_AT(PERSON, "{\"name\":\"Ann\",\"age\":3,\"email\":5,\"tags\":[],\"kind\":\"person\"}", "$.email");
    CHECK(strstr(last_why, "string or null") != NULL);
    INVALID_AT(PERSON, "{\"name\":\"Ann\",\"age\":3,\"email\":null,\"tags\":[\"a\",\"c\"],\"kind\":\"person\"}", "$.tags[1]");
    INVALID_AT(PERSON, "{\"name\":\"Ann\",\"age\":3,\"email\":null,\"tags\":[\"a\",\"b\",\"a\"],\"kind\":\"person\"}", "$.tags");
    INVALID_AT(PERSON, "{\"name\":\"Ann\",\"age\":3,\"email\":null,\"tags\":[],\"kind\":\"robot\"}", "$.kind");
    INVALID_AT(PERSON, "{\"name\":\"\",\"age\":3,\"email\":null,\"tags\":[],\"kind\":\"person\"}", "$.name");
    INVALID_AT(PERSON, "{\"name\":\"Annabel\",\"age\":3,\"email\":null,\"tags\":[],\"kind\":\"person\"}", "$.name");
    VALID(PERSON, "{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\",\"age\":3,\"email\":null,\"tags\":[],\"kind\":\"person\"}");   /* code points, not bytes */
    INVALID_AT(PERSON, "{\"name\":\"Ann\",\"age\":-1,\"email\":null,\"tags\":[],\"kind\":\"person\"}", "$.age");
    INVALID_AT(PERSON, "[]", "$");
    VALID("{\"type\":\"boolean\"}", "false");
    INVALID_AT("{\"type\":\"null\"}", "0", "$");
    VALID("{}", "{\"anything\":[1,2,{}]}");
}

static void test_numbers_enum_const(void)
{
    const char *s = "{\"type\":\"number\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":10,\"multipleOf\":0.5}";
    VALID(s, "2.5");
    INVALID_AT(s, "0", "$");
    INVALID_AT(s, "10", "$");
    INVALID_AT(s, "2.3", "$");
    VALID("{\"enum\":[1,\"x\",null,{\"a\":[1,2]},true]}", "{\"a\":[1,2]}");
    VALID("{\"enum\":[1,\"x\",null,{\"a\":[1,2]},true]}", "1.0");
    INVALID_AT("{\"enum\":[1,\"x\",null,{\"a\":[1,2]},true]}", "{\"a\":[2,1]}", "$");
    INVALID_AT("{\"enum\":[true]}", "false", "$");
    VALID("{\"const\":{\"a\":1,\"b\":2}}", "{\"b\":2,\"a\":1}");
    INVALID_AT("{\"const\":{\"a\":1,\"b\":2}}", "{\"b\":2,\"a\":1,\"c\":3}", "$");
}

static void test_anyof_and_refs(void)
{
    const char *s =
        "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
        "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\",\"kids\"],"
        "\"additionalProperties\":false}},"
        "\"type\":\"object\",\"properties\":{\"root\":{\"$ref\":\"#/$defs/node\"},"
        "\"x\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\"}},"
        "\"required\":[\"n\"]}]}},\"required\":[\"root\",\"x\"]}";
    VALID(s, "{\"root\":{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]}]},\"x\":\"s\"}");
    VALID(s, "{\"root\":{\"v\":1,\"kids\":[]},\"x\":{\"n\":3}}");
    INVALID_AT(s, "{\"root\":{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"v\":\"no\",\"kids\":[]}]}]},\"x\":\"s\"}",
               "$.root.kids[0].kids[0].v");
    INVALID_AT(s, "{\"root\":{\"v\":1,\"kids\":[]},\"x\":{\"n\":\"3\"}}", "$.x");
    CHECK(strstr(last_why, "anyOf") != NULL);
    VALID("{\"definitions\":{\"a~b\":{\"type\":\"string\"}},\"$ref\":\"#/definitions/a~0b\"}", "\"s\"");
    VALID("{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}", "[[[]],[]]");
    INVALID_AT("{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}", "[[[1]]]", "$[0][0][0]");
    CHECK(check("{\"$ref\":\"#/$defs/missing\"}", "1") == JSCHEMA_UNCHECKED);
    CHECK(check("{\"allOf\":[{\"type\":\"number\"},{\"minimum\":5}]}", "4") == JSCHEMA_INVALID);
}

/* Hostile schemas end as "unchecked", quickly, never a crash or a hang. */
static void test_hostile(void)
{
    CHECK(check("{\"$ref\":\"#\"}", "1") == JSCHEMA_UNCHECKED);                       /* a cycle */
    CHECK(check("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", "1")
          == JSCHEMA_UNCHECKED);
    buf_t s; buf_init(&s);
    for (int i = 0; i < 150; i++) buf_puts(&s, "{\"items\":");
    buf_puts(&s, "{}");
    for (int i = 0; i < 150; i++) buf_putc(&s, '}');
    buf_t v; buf_init(&v);
    for (int i = 0; i < 150; i++) buf_putc(&v, '[');
    for (int i = 0; i < 150; i++) buf_putc(&v, ']');
    CHECK(check(s.data, v.data) == JSCHEMA_UNCHECKED);                                 /* deep nesting */
    /* a huge enum of large values against a large instance: the step budget ends it */
    buf_reset(&s);
    buf_puts(&s, "{\"enum\":[");
    for (int i = 0; i < 2000; i++) {
        if (i) buf_putc(&s, ',');
        buf_puts(&s, "[");
        for (int j = 0; j < 200; j++) buf_puts(&s, j ? ",0" : "0");
        buf_puts(&s, ",1]");
    }
    buf_puts(&s, "]}");
    buf_reset(&v);
    buf_puts(&v, "[");
    for (int j = 0; j < 200; j++) buf_puts(&v, j ? ",0" : "0");
    buf_puts(&v, ",2]");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(check(s.data, v.data) == JSCHEMA_UNCHECKED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("  hostile enum (2000 x 201 values): unchecked after %.2f ms\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    /* anyOf of anyOf ...: exponential branching is capped too */
    buf_reset(&s);
    for (int i = 0; i < 40; i++) buf_puts(&s, "{\"anyOf\":[{\"type\":\"string\"},");
    buf_puts(&s, "{\"type\":\"string\"}");
    for (int i = 0; i < 40; i++) buf_puts(&s, "]}");
    CHECK(check(s.data, "1") != JSCHEMA_VALID);
    buf_free(&s);
    buf_free(&v);
}

/* The cost of checking a typical answer, per KB (printed; not asserted). */
static void test_cost_per_kb(void)
{
    const char *schema = "{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
        "\"properties\":{\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"},\"price\":{\"type\":\"number\","
        "\"minimum\":0},\"tag\":{\"enum\":[\"a\",\"b\",\"c\"]}},\"required\":[\"id\",\"name\",\"price\",\"tag\"],"
        "\"additionalProperties\":false}}},\"required\":[\"items\"],\"additionalProperties\":false}";
    buf_t v; buf_init(&v);
    buf_puts(&v, "{\"items\":[");
    for (int i = 0; i < 200; i++) buf_printf(&v, "%s{\"id\":%d,\"name\":\"item number %d\",\"price\":%d.5,\"tag\":\"b\"}",
                                             i ? "," : "", i, i, i);
    buf_puts(&v, "]}");
    json_doc *s = json_parse(schema, strlen(schema), NULL, NULL);
    CHECK(s != NULL);
    struct timespec t0, t1;
    int rounds = 200, ok = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds && s; i++) {   /* parse + validate: what the gateway does per answer */
        json_doc *d = json_parse(v.data, v.len, NULL, NULL);
        ok &= d && jschema_validate(json_root(s), json_root(d), last_path, sizeof last_path, last_why, sizeof last_why) == JSCHEMA_VALID;
        json_doc_free(d);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(ok);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / rounds;
    printf("  parse + validate a %zu-byte answer: %.1f us (%.2f us per KB)\n", v.len, us, us / ((double)v.len / 1024));
    json_doc *d = json_parse(v.data, v.len, NULL, NULL);   /* the validator alone */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds && s && d; i++)
        ok &= jschema_validate(json_root(s), json_root(d), last_path, sizeof last_path, last_why, sizeof last_why) == JSCHEMA_VALID;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(ok);
    us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / rounds;
    printf("  validate alone: %.1f us (%.2f us per KB)\n", us, us / ((double)v.len / 1024));
    json_doc_free(d);
    json_doc_free(s);
    buf_free(&v);
}

int main(void)
{
    RUN(test_types_and_objects);
    RUN(test_numbers_enum_const);
    RUN(test_anyof_and_refs);
    RUN(test_hostile);
    RUN(test_cost_per_kb);
    TEST_MAIN_END();
}
