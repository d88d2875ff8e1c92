/* fields: input checking shared by the resource handlers.
 * Every message names the offending field, so a 400 says what to fix. */
#include "api.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *api_source(const api_req *r, const json_value *v)
{
    return strndup(r->body + v->start, v->end - v->start);
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!is_digit(s[i])) return 0;
    return 1;
}

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM). Ranges
 * like February 30 are left to Postgres, which answers 22008 (mapped to 400). */
static int rfc3339(const char *s)
{
    size_t n = strlen(s);
    if (n < 20 || n > 40) return 0;
    if (!digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2) ||
        (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) ||
        s[16] != ':' || !digits(s + 17, 2))
        return 0;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!is_digit(*p)) return 0;
        while (is_digit(*p)) p++;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') return 1;
    if ((*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' && digits(p + 4, 2) && p[6] == '\0')
        return 1;
    return 0;
}

char *api_pg_text_array(const json_value *arr)
{
    buf_t b;
    buf_init(&b);
    buf_putc(&b, '{');
    for (const json_value *e = arr->first; e; e = e->next) {
        if (e != arr->first) buf_putc(&b, ',');
        buf_putc(&b, '"');
        for (size_t i = 0; i < e->str_len; i++) {
            char c = e->str[i];
            if (c == '"' || c == '\\') buf_putc(&b, '\\');
            buf_putc(&b, c);
        }
        buf_putc(&b, '"');
    }
    buf_putc(&b, '}');
    if (b.oom) { buf_free(&b); return NULL; }
    return buf_steal(&b);
}

static int check_text_array(api_req *r, const char *name, const json_value *v)
{
    if (v->type != JSON_ARRAY) {
        api_error(r, 400, "invalid_request_error", "%s must be an array of strings", name);
        return -1;
    }
    size_t i = 0;
    for (const json_value *e = v->first; e; e = e->next, i++) {
        if (e->type != JSON_STRING || e->str_len == 0 || e->str_len > API_NAME_MAX ||
            memchr(e->str, '\0', e->str_len)) {
            api_error(r, 400, "invalid_request_error", "%s[%zu] must be a non-empty string", name, i);
            return -1;
        }
    }
    return 0;
}

/* Checks one present, non-null value; sets *text (malloc'd) and *cast. */
static int check_value(api_req *r, const api_field *f, const json_value *v, char **text, const char **cast)
{
    char tmp[32];
    *text = NULL;
    *cast = "";
    switch (f->type) {
    case API_F_TEXT:
        if (v->type != JSON_STRING || v->str_len == 0 || v->str_len > API_NAME_MAX ||
            memchr(v->str, '\0', v->str_len)) {
            api_error(r, 400, "invalid_request_error",
                      "%s must be a non-empty string of at most %d bytes", f->name, API_NAME_MAX);
            return -1;
        }
        *text = strdup(v->str);
        break;
    case API_F_COUNT:
        if (v->type != JSON_NUMBER || !v->is_int || v->i64 < 0) {
            api_error(r, 400, "invalid_request_error", "%s must be a non-negative integer", f->name);
            return -1;
        }
        snprintf(tmp, sizeof tmp, "%" PRId64, v->i64);
        *text = strdup(tmp);
        *cast = "::bigint";
        break;
    case API_F_USD:
        if (v->type != JSON_NUMBER || !isfinite(v->num) || v->num < 0 || v->num > 1e15) {
            api_error(r, 400, "invalid_request_error", "%s must be a non-negative number", f->name);
            return -1;
        }
        *text = api_source(r, v);          /* the exact decimal the client wrote */
        *cast = "::numeric";
        break;
    case API_F_PERIOD:
        if (v->type != JSON_STRING || (strcmp(v->str, "daily") && strcmp(v->str, "weekly") &&
                                       strcmp(v->str, "monthly") && strcmp(v->str, "total"))) {
            api_error(r, 400, "invalid_request_error",
                      "%s must be one of daily, weekly, monthly, total", f->name);
            return -1;
        }
        *text = strdup(v->str);
        break;
    case API_F_TIME:
        if (v->type != JSON_STRING || !rfc3339(v->str)) {
            api_error(r, 400, "invalid_request_error",
                      "%s must be an RFC 3339 timestamp such as 2030-01-31T00:00:00Z", f->name);
            return -1;
        }
        *text = strdup(v->str);
        *cast = "::timestamptz";
        break;
    case API_F_TEXT_ARRAY:
        if (check_text_array(r, f->name, v) < 0) return -1;
        *text = api_pg_text_array(v);
        *cast = "::text[]";
        break;
    case API_F_OBJECT:
        if (v->type != JSON_OBJECT) {
            api_error(r, 400, "invalid_request_error", "%s must be an object", f->name);
            return -1;
        }
        *text = api_source(r, v);
        *cast = "::jsonb";
        break;
    case API_F_UUID:
        if (v->type != JSON_STRING || !cp_uuid_valid(v->str)) {
            api_error(r, 400, "invalid_request_error", "%s must be a UUID", f->name);
            return -1;
        }
        *text = strdup(v->str);
        *cast = "::uuid";
        break;
    }
    if (!*text) {
        api_error(r, 500, "server_error", "out of memory");
        return -1;
    }
    return 0;
}

int api_only_fields(api_req *r, const json_value *obj, const char *const *allowed)
{
    for (const json_value *m = obj->first; m; m = m->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(m->key, *a) == 0;
        if (!ok) {
            api_error(r, 400, "invalid_request_error", "unknown field '%.100s'", m->key);
            return -1;
        }
    }
    return 0;
}

int api_collect(api_req *r, const json_value *obj, const api_field *fields, size_t nfields,
                int creating, api_values *out)
{
    memset(out, 0, sizeof *out);
    for (const json_value *m = obj->first; m; m = m->next) {
        size_t i = 0;
        while (i < nfields && strcmp(m->key, fields[i].name) != 0) i++;
        if (i == nfields) {
            api_error(r, 400, "invalid_request_error", "unknown field '%.100s'", m->key);
            return -1;
        }
        for (const json_value *p = obj->first; p != m; p = p->next) {
            if (strcmp(p->key, m->key) == 0) {
                api_error(r, 400, "invalid_request_error", "field '%.100s' appears twice", m->key);
                return -1;
            }
        }
    }
    for (size_t i = 0; i < nfields; i++) {
        const api_field *f = &fields[i];
        const json_value *v = json_get(obj, f->name);
        if (!v || v->type == JSON_NULL) {
            if (creating && f->required) {
                api_error(r, 400, "invalid_request_error", "%s is required", f->name);
                goto fail;
            }
            if (!v) continue;
            if (!f->nullable) {
                api_error(r, 400, "invalid_request_error", "%s cannot be null", f->name);
                goto fail;
            }
            if (out->n == API_MAX_FIELDS) goto fail;
            out->name[out->n] = f->name;
            out->cast[out->n] = "";
            out->val[out->n++] = NULL;
            continue;
        }
        char *text;
        const char *cast;
        if (check_value(r, f, v, &text, &cast) < 0) goto fail;
        if (out->n == API_MAX_FIELDS) { free(text); goto fail; }
        out->name[out->n] = f->name;
        out->cast[out->n] = cast;
        out->val[out->n++] = text;
    }
    return 0;
fail:
    if (r->status == 0) api_error(r, 500, "server_error", "too many fields");
    api_values_free(out);
    return -1;
}

void api_values_free(api_values *v)
{
    for (int i = 0; i < v->n; i++) free(v->val[i]);
    v->n = 0;
}

void api_values_insert_sql(const api_values *v, int first, buf_t *cols, buf_t *vals)
{
    for (int i = 0; i < v->n; i++) {
        buf_printf(cols, ", %s", v->name[i]);
        buf_printf(vals, ", $%d%s", first + i, v->cast[i]);
    }
}

void api_values_update_sql(const api_values *v, int first, buf_t *set)
{
    for (int i = 0; i < v->n; i++) buf_printf(set, ", %s = $%d%s", v->name[i], first + i, v->cast[i]);
}

static int parse_uint(const char *s, long max, long *out)
{
    if (!s || !*s) return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (!is_digit(*p)) return -1;
        v = v * 10 + (*p - '0');
        if (v > max) return -1;
    }
    *out = v;
    return 0;
}

int api_paging(api_req *r, char limit[24], char offset[24])
{
    long l = 50, o = 0;
    const char *ls = api_query(r, "limit"), *os = api_query(r, "offset");
    if (ls && (parse_uint(ls, API_PAGE_MAX, &l) < 0 || l < 1)) {
        api_error(r, 400, "invalid_request_error", "limit must be an integer between 1 and %d", API_PAGE_MAX);
        return -1;
    }
    if (os && parse_uint(os, 1000000000L, &o) < 0) {
        api_error(r, 400, "invalid_request_error", "offset must be a non-negative integer");
        return -1;
    }
    snprintf(limit, 24, "%ld", l);
    snprintf(offset, 24, "%ld", o);
    return 0;
}

char *api_like_pattern(const char *s)
{
    buf_t b;
    buf_init(&b);
    buf_putc(&b, '%');
    for (; *s; s++) {
        if (*s == '%' || *s == '_' || *s == '\\') buf_putc(&b, '\\');
        buf_putc(&b, *s);
    }
    buf_putc(&b, '%');
    if (b.oom) { buf_free(&b); return NULL; }
    return buf_steal(&b);
}

int api_param_uuid(api_req *r, const char *what)
{
    if (r->param && cp_uuid_valid(r->param)) return 0;
    api_error(r, 404, "not_found", "no %s with id '%.64s'", what, r->param ? r->param : "");
    return -1;
}

void api_reply_page(api_req *r, PGresult *res, const char *limit, const char *offset)
{
    buf_reset(&r->out);
    buf_printf(&r->out, "{\"data\":%s,\"total\":%s,\"limit\":%s,\"offset\":%s}",
               PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0), limit, offset);
    r->status = 200;
}

void api_reply_one(api_req *r, const char *sql, const char *what)
{
    const char *params[] = { r->param };
    PGresult *res = cp_db_exec(r->db, sql, 1, params);
    if (!res) { api_db_error(r, NULL); return; }
    if (PQntuples(res) == 1) api_reply(r, 200, PQgetvalue(res, 0, 0));
    else api_error(r, 404, "not_found", "no %s '%.200s'", what, r->param);
    PQclear(res);
}

PGresult *api_lock_one(api_req *r, const char *sql, const char *what)
{
    const char *params[] = { r->param };
    PGresult *res = cp_db_exec(r->db, sql, 1, params);
    if (!res) { api_db_error(r, NULL); return NULL; }
    if (PQntuples(res) != 1) {
        PQclear(res);
        cp_db_rollback(r->db);
        api_error(r, 404, "not_found", "no %s '%.200s'", what, r->param);
        return NULL;
    }
    return res;
}
