/* api: what an admin API handler sees.
 *
 * http.c routes a request, authenticates it, borrows a database connection
 * and calls one handler (one file per resource). A handler reads the request,
 * talks to Postgres and fills in the response with the helpers below. It
 * must not keep pointers into the request after it returns.
 *
 * Every mutation runs in one transaction: the change, its audit_log row and
 * the config_version bump commit together or not at all. Resource JSON is
 * built by Postgres (json_build_object) from a per-resource column list that
 * never includes a secret, so what the API shows and what the audit log
 * records are the same masked view.
 */
#ifndef CP_API_H
#define CP_API_H

#include <stddef.h>

#include "buf.h"
#include "json.h"
#include "../audit.h"
#include "../crypto.h"
#include "../db.h"

#define API_MAX_BODY   (1024 * 1024)
#define API_NAME_MAX   200
#define API_PAGE_MAX   500

typedef struct api_req {
    /* request */
    const char      *method;
    const char      *path;
    const char      *param;        /* the {id} / {alias} part of the path, or NULL */
    const char      *body;         /* NUL-terminated; NULL when empty */
    size_t           body_len;
    cp_dbconn       *db;
    const cp_actor  *actor;
    const unsigned char *master_key;
    const char      *master_key_fp;
    void            *conn;         /* struct MHD_Connection * */
    /* response */
    int              status;
    buf_t            out;
    const char      *content_type; /* default application/json */
} api_req;

typedef void (*api_handler)(api_req *r);

/* ---- responses (http.c) ---- */
void api_reply(api_req *r, int status, const char *json);
void api_error(api_req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Answers for the last database failure: 503 when the connection is gone,
 * 409 for a unique violation (conflict_what names the duplicate, e.g.
 * "a team with this name already exists"), 400 for invalid input values,
 * 500 otherwise. Rolls back an open transaction. */
void api_db_error(api_req *r, const char *conflict_what);
/* Query-string argument, URL-decoded, or NULL. */
const char *api_query(const api_req *r, const char *name);
/* Parses the body as a JSON object; on failure answers 400 and returns NULL. */
json_value *api_body_object(api_req *r, json_doc **doc);

/* ---- input checking (fields.c); each returns -1 after answering 400 ---- */
typedef enum {
    API_F_TEXT,         /* non-empty string, at most API_NAME_MAX bytes */
    API_F_COUNT,        /* non-negative integer */
    API_F_USD,          /* non-negative number */
    API_F_PERIOD,       /* daily | weekly | monthly | total */
    API_F_TIME,         /* RFC 3339 timestamp */
    API_F_TEXT_ARRAY,   /* array of non-empty strings */
    API_F_OBJECT,       /* JSON object, stored as jsonb */
    API_F_UUID          /* canonical UUID */
} api_ftype;

typedef struct api_field {
    const char *name;      /* JSON member and column name */
    api_ftype   type;
    int         required;  /* must be present (and not null) on create */
    int         nullable;  /* null clears the column */
} api_field;

#define API_MAX_FIELDS 16

typedef struct api_values {
    int         n;
    const char *name[API_MAX_FIELDS];
    const char *cast[API_MAX_FIELDS];      /* e.g. "::bigint" */
    char       *val[API_MAX_FIELDS];       /* malloc'd text; NULL = SQL NULL */
} api_values;

/* Checks obj against fields (unknown members are rejected) and collects the
 * present ones as SQL text parameters. creating: enforce required. */
int  api_collect(api_req *r, const json_value *obj, const api_field *fields, size_t nfields,
                 int creating, api_values *out);
void api_values_free(api_values *v);
/* Adds ", col" for each value to cols and ", $N<cast>" to vals, numbering
 * parameters from first. */
void api_values_insert_sql(const api_values *v, int first, buf_t *cols, buf_t *vals);
/* Adds ", col = $N<cast>" for each value to set. */
void api_values_update_sql(const api_values *v, int first, buf_t *set);

/* Rejects members of obj not in allowed (NULL-terminated). */
int  api_only_fields(api_req *r, const json_value *obj, const char *const *allowed);
/* limit/offset from the query string (defaults 50/0). */
int  api_paging(api_req *r, char limit[24], char offset[24]);
/* An ILIKE pattern matching s anywhere, with % _ \ escaped; caller frees. */
char *api_like_pattern(const char *s);
/* The path parameter as a UUID, or 404 (an id that is not a UUID names nothing). */
int  api_param_uuid(api_req *r, const char *what);
/* Postgres text[] literal for a JSON array of strings; caller frees. */
char *api_pg_text_array(const json_value *arr);
/* The source text of a value inside the request body; caller frees. */
char *api_source(const api_req *r, const json_value *v);
/* Writes a paged list response {"data":..., "total":N, "limit":L, "offset":O}
 * from a result whose row 0 holds (total, data JSON). */
void api_reply_page(api_req *r, PGresult *res, const char *limit, const char *offset);
/* One resource by r->param: sql selects its JSON with $1 = r->param; replies
 * 200 with it, or 404 "no <what> '<param>'" (what: "key with id"). */
void api_reply_one(api_req *r, const char *sql, const char *what);
/* Inside a transaction: runs a SELECT ... FOR UPDATE with $1 = r->param and
 * returns its one row, or rolls back, answers 404 as above and returns NULL. */
PGresult *api_lock_one(api_req *r, const char *sql, const char *what);

/* ---- handlers, one file per resource ---- */
void api_keys_create(api_req *r);
void api_keys_list(api_req *r);
void api_keys_get(api_req *r);
void api_keys_update(api_req *r);
void api_keys_revoke(api_req *r);
void api_keys_rotate(api_req *r);

void api_teams_create(api_req *r);
void api_teams_list(api_req *r);
void api_teams_get(api_req *r);
void api_teams_update(api_req *r);
void api_teams_delete(api_req *r);

void api_models_create(api_req *r);
void api_models_list(api_req *r);
void api_models_get(api_req *r);
void api_models_update(api_req *r);
void api_models_delete(api_req *r);

void api_credentials_create(api_req *r);
void api_credentials_list(api_req *r);
void api_credentials_get(api_req *r);
void api_credentials_delete(api_req *r);

void api_admin_tokens_create(api_req *r);
void api_admin_tokens_list(api_req *r);
void api_admin_tokens_revoke(api_req *r);

void api_dataplanes_list(api_req *r);
void api_spend_summary(api_req *r);
void api_spend_logs(api_req *r);
void api_dataplanes_get(api_req *r);

void api_audit_list(api_req *r);

/* overview.c: who is calling, and the dashboard's aggregates. */
void api_me(api_req *r);
void api_overview(api_req *r);
void api_ab(api_req *r);          /* evaluated A/B win rates (ab.c) */

void api_healthz(api_req *r);

/* Decrypts credential id into a malloc'd NUL-terminated string (for the
 * config push to data planes). NULL if missing, undecryptable or on error. */
char *api_credential_plaintext(cp_dbconn *c, const unsigned char master_key[CP_MASTER_KEY_LEN],
                               const char *id);

#endif
