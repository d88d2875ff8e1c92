/* json: a strict, bounded JSON parser (RFC 8259) for hostile input.
 *
 * One call parses a whole document into an arena owned by the returned
 * json_doc; every value remembers the byte span it came from, so a caller can
 * forward the original bytes and rewrite only one field (the pass-through
 * path rewrites "model" this way). Errors give the byte offset, line and
 * column and a short reason, so a client gets "400: ... at line 1 column 17".
 */
#ifndef GW_JSON_H
#define GW_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

typedef struct json_value json_value;

struct json_value {
    json_type   type;
    size_t      start, end;     /* byte span [start, end) of this value in the source */
    const char *str;            /* JSON_STRING: decoded UTF-8, NUL-terminated (may contain \0 from \u0000) */
    size_t      str_len;
    double      num;            /* JSON_NUMBER */
    int         is_int;         /* JSON_NUMBER: written without fraction/exponent and fits int64 */
    int64_t     i64;            /* JSON_NUMBER when is_int */
    size_t      count;          /* JSON_ARRAY / JSON_OBJECT: number of elements / members */
    json_value *first;          /* first element / member value */
    json_value *next;           /* next sibling in the parent array / object */
    const char *key;            /* member of an object: decoded key, NUL-terminated */
    size_t      key_len;
    size_t      key_start;      /* member of an object: offset of the key's opening quote */
};

typedef struct json_limits {
    size_t max_depth;           /* nesting of arrays/objects; 0 = default 64 */
    size_t max_bytes;           /* 0 = no limit beyond the input length */
} json_limits;

typedef struct json_error {
    size_t offset;              /* byte offset of the error */
    int    line, column;        /* 1-based */
    char   message[96];         /* e.g. "expected ',' or '}'", "invalid UTF-8", "nesting too deep" */
} json_error;

typedef struct json_doc json_doc;

/* Parses src[0..len). NULL on error (err filled if non-NULL) or out of memory
 * (err->message "out of memory"). Trailing whitespace is allowed, anything
 * else after the value is an error. Strings must be valid UTF-8 (no overlong
 * forms, no surrogates); \u escapes with lone surrogates are an error. */
json_doc   *json_parse(const char *src, size_t len, const json_limits *lim, json_error *err);
void        json_doc_free(json_doc *doc);
json_value *json_root(const json_doc *doc);

/* Object member by key (first match), or NULL if v is not an object or has no such key. */
json_value *json_get(const json_value *obj, const char *key);
/* Array element i, or NULL. */
json_value *json_at(const json_value *arr, size_t i);
/* Convenience: string value of member key or NULL if absent / not a string. */
const char *json_get_str(const json_value *obj, const char *key);
/* 1 if member key is true, 0 if false/absent/other. */
int         json_get_bool(const json_value *obj, const char *key);

/* Single-threaded processes may let the parser keep one freed arena block
 * for the next document (saves a malloc/free pair per parse). */
void        json_enable_block_cache(void);

#endif
