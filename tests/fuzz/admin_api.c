/* fuzz target: the admin API's input handling, without a database.
 *
 * Input: one byte picks a handler of controlplane/http.c's route table, then
 * "<path param>\n<query string>\n<body>". The handler runs as an admin with
 * a fake database whose every call fails, so what runs is what runs before
 * SQL: api_body_object, the field validators of controlplane/api/fields.c
 * (api_collect, api_paging, api_like_pattern, api_param_uuid...) and each
 * resource's own checks (models' deployments, credentials, tokens). Query
 * arguments reach the handlers through MHD_lookup_connection_value, which
 * this file interposes (percent-decoded like libmicrohttpd does).
 *
 * Invariants: every request gets a status, and an error body is valid JSON
 * in the documented shape. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "api/api.h"
#include "json.h"
#include "log.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

/* ---- a database where everything fails (db.h) ---- */
cp_db *cp_db_open(const char *conninfo, int size) { (void)conninfo; (void)size; return NULL; }
void cp_db_close(cp_db *db) { (void)db; }
cp_dbconn *cp_db_acquire(cp_db *db) { (void)db; return NULL; }
void cp_db_release(cp_db *db, cp_dbconn *c) { (void)db; (void)c; }
int cp_db_ensure(cp_dbconn *c) { (void)c; return -1; }
PGresult *cp_db_exec(cp_dbconn *c, const char *sql, int nparams, const char *const *params)
{
    (void)c;
    CHECK(sql);
    for (int i = 0; i < nparams; i++) (void)(params[i] ? strlen(params[i]) : 0);   /* readable */
    return NULL;
}
PGresult *cp_db_exec_script(cp_dbconn *c, const char *sql) { (void)c; (void)sql; return NULL; }
int cp_db_begin(cp_dbconn *c) { (void)c; return -1; }
int cp_db_commit(cp_dbconn *c) { (void)c; return -1; }
void cp_db_rollback(cp_dbconn *c) { (void)c; }
const char *cp_db_sqlstate(const cp_dbconn *c) { (void)c; return "XX000"; }
const char *cp_db_errmsg(const cp_dbconn *c) { (void)c; return "fuzz: no database"; }
int cp_db_lost(const cp_dbconn *c) { (void)c; return 0; }
int cp_db_commit_sent(const cp_dbconn *c) { (void)c; return 0; }
void cp_db_request_start(cp_dbconn *c) { (void)c; }
unsigned long cp_db_error_count(void) { return 0; }
unsigned long cp_db_reconnect_count(void) { return 0; }
const char *cp_db_value(const PGresult *r) { (void)r; return NULL; }

/* ---- query arguments ---- */
#define MAXQ 16
static char *q_name[MAXQ], *q_val[MAXQ];
static int nq;

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static char *unescape(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    CHECK(o);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') o[k++] = ' ';
        else if (s[i] == '%' && i + 2 < n + 0 && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
            o[k++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
        } else o[k++] = s[i];
    }
    o[k] = '\0';
    return o;
}

static void parse_query(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && nq < MAXQ) {
        size_t j = i;
        while (j < n && s[j] != '&') j++;
        const char *eq = memchr(s + i, '=', j - i);
        size_t kl = eq ? (size_t)(eq - (s + i)) : j - i;
        q_name[nq] = unescape(s + i, kl);
        q_val[nq] = eq ? unescape(eq + 1, (size_t)(s + j - eq - 1)) : NULL;
        nq++;
        i = j + 1;
    }
}

static void free_query(void)
{
    for (int i = 0; i < nq; i++) { free(q_name[i]); free(q_val[i]); }
    nq = 0;
}

/* Interposes libmicrohttpd's: the handlers' only view of the connection. */
const char *MHD_lookup_connection_value(struct MHD_Connection *connection, enum MHD_ValueKind kind, const char *key)
{
    (void)connection;
    if (kind != MHD_GET_ARGUMENT_KIND || !key) return NULL;
    for (int i = 0; i < nq; i++)
        if (!strcmp(q_name[i], key)) return q_val[i] ? q_val[i] : "";
    return NULL;
}

static const api_handler handlers[] = {
    api_keys_create, api_keys_list, api_keys_get, api_keys_update, api_keys_revoke, api_keys_rotate,
    api_teams_create, api_teams_list, api_teams_get, api_teams_update, api_teams_delete,
    api_models_create, api_models_list, api_models_get, api_models_update, api_models_delete,
    api_credentials_create, api_credentials_list, api_credentials_get, api_credentials_delete,
    api_admin_tokens_create, api_admin_tokens_list, api_admin_tokens_revoke,
    api_dataplanes_list, api_dataplanes_get, api_audit_list,
    api_spend_summary, api_spend_logs, api_me, api_overview,
};
#define NHANDLERS (sizeof handlers / sizeof handlers[0])

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    log_set_level(LOG_ERROR + 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const api_handler fn = handlers[data[0] % NHANDLERS];
    const char *s = (const char *)data + 1, *end = (const char *)data + size;
    const char *nl1 = memchr(s, '\n', (size_t)(end - s));
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    size_t plen = nl1 ? (size_t)(nl1 - s) : (size_t)(end - s);
    char *param = plen ? strndup(s, plen) : NULL;
    if (nl1) parse_query(nl1 + 1, nl2 ? (size_t)(nl2 - nl1 - 1) : (size_t)(end - nl1 - 1));
    char *body = NULL;
    size_t body_len = 0;
    if (nl2 && nl2 + 1 < end) {
        body_len = (size_t)(end - nl2 - 1);
        body = malloc(body_len + 1);
        CHECK(body);
        memcpy(body, nl2 + 1, body_len);
        body[body_len] = '\0';
    }
    static const unsigned char master_key[CP_MASTER_KEY_LEN] = { 1, 2, 3 };
    static const cp_actor admin = { "00000000-0000-4000-8000-000000000001", "fuzz", CP_ROLE_ADMIN };
    static char dummy_conn;
    api_req r;
    memset(&r, 0, sizeof r);
    buf_init(&r.out);
    r.method = "POST";
    r.path = "/api/fuzz";
    r.param = param;
    r.body = body;
    r.body_len = body_len;
    r.db = NULL;
    r.actor = &admin;
    r.master_key = master_key;
    r.master_key_fp = "0123456789abcdef";
    r.conn = &dummy_conn;
    fn(&r);
    CHECK(r.status >= 200 && r.status <= 599);
    if (r.status >= 400) {
        json_doc *d = json_parse(r.out.data, r.out.len, NULL, NULL);
        CHECK(d);
        const json_value *e = json_get(json_root(d), "error");
        CHECK(e && json_get_str(e, "message") && json_get_str(e, "type"));
        json_doc_free(d);
    }
    buf_free(&r.out);
    free(body);
    free(param);
    free_query();
    return 0;
}
