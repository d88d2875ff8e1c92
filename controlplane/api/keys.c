/* /api/keys: virtual keys.
 *
 * A key is "sk-gw-" + base64url(32 random bytes). It is returned once, by
 * create and rotate; the database keeps its SHA-256 and a 10-character
 * prefix for recognition. Revoked keys are kept (spend history points at
 * them) and can no longer be changed.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the API (and the audit log) shows of a key: never key_sha256. */
#define KEY_JSON \
    "json_build_object('id', k.id, 'name', k.name, 'key_prefix', k.key_prefix, 'team_id', k.team_id, " \
    "'models', k.models, 'rpm_limit', k.rpm_limit, 'tpm_limit', k.tpm_limit, " \
    "'budget_usd', k.budget_usd, 'budget_period', k.budget_period, 'budget_spent_usd', k.budget_spent_usd, " \
    "'budget_blocked', k.budget_blocked, 'budget_resets_at', k.budget_resets_at, 'expires_at', k.expires_at, " \
    "'metadata', k.metadata, 'status', k.status, 'created_at', k.created_at, " \
    "'updated_at', k.updated_at, 'revoked_at', k.revoked_at)"

static const api_field key_fields[] = {
    { "name",          API_F_TEXT,       1, 0 },
    { "team_id",       API_F_UUID,       0, 1 },
    { "models",        API_F_TEXT_ARRAY, 0, 1 },
    { "rpm_limit",     API_F_COUNT,      0, 1 },
    { "tpm_limit",     API_F_COUNT,      0, 1 },
    { "budget_usd",    API_F_USD,        0, 1 },
    { "budget_period", API_F_PERIOD,     0, 1 },
    { "expires_at",    API_F_TIME,       0, 1 },
    { "metadata",      API_F_OBJECT,     0, 0 },
};
#define NKEY_FIELDS (sizeof key_fields / sizeof key_fields[0])

/* A fresh secret, its hash (hex) and its shown prefix. */
typedef struct fresh_key {
    char key[sizeof CP_KEY_PREFIX + CP_TOKEN_B64_LEN + 1];
    char hash[2 * CP_SHA256_LEN + 1];
    char prefix[CP_KEY_PREFIX_SHOWN + 1];
} fresh_key;

static int fresh_key_new(fresh_key *f)
{
    unsigned char h[CP_SHA256_LEN];
    if (cp_token_new(CP_KEY_PREFIX, f->key, sizeof f->key) < 0) return -1;
    cp_sha256(f->key, strlen(f->key), h);
    cp_hex(h, sizeof h, f->hash);
    memcpy(f->prefix, f->key, CP_KEY_PREFIX_SHOWN);
    f->prefix[CP_KEY_PREFIX_SHOWN] = '\0';
    return 0;
}

/* {"key":"sk-gw-...", <the key's JSON members>} */
static void reply_with_secret(api_req *r, int status, const char *secret, const char *json)
{
    buf_reset(&r->out);
    buf_puts(&r->out, "{\"key\":");
    buf_json_str(&r->out, secret, strlen(secret));
    buf_putc(&r->out, ',');
    buf_puts(&r->out, json + 1);       /* json is an object: skip its '{' */
    r->status = status;
}

/* In a transaction: 0 if team id exists (locked against deletion), else answers. */
static int check_team(api_req *r, const api_values *v)
{
    for (int i = 0; i < v->n; i++) {
        if (strcmp(v->name[i], "team_id") != 0 || !v->val[i]) continue;
        const char *params[] = { v->val[i] };
        PGresult *res = cp_db_exec(r->db, "SELECT 1 FROM teams WHERE id = $1::uuid FOR KEY SHARE", 1, params);
        if (!res) { api_db_error(r, NULL); return -1; }
        int found = PQntuples(res) == 1;
        PQclear(res);
        if (!found) {
            cp_db_rollback(r->db);
            api_error(r, 400, "invalid_request_error", "team_id: no team with id %s", v->val[i]);
            return -1;
        }
    }
    return 0;
}

void api_keys_create(api_req *r)
{
    json_doc *doc;
    json_value *body = api_body_object(r, &doc);
    if (!body) return;
    api_values v;
    int rc = api_collect(r, body, key_fields, NKEY_FIELDS, 1, &v);
    json_doc_free(doc);
    if (rc < 0) return;

    fresh_key fk;
    buf_t sql, cols, vals;
    buf_init(&sql);
    buf_init(&cols);
    buf_init(&vals);
    PGresult *res = NULL;
    if (fresh_key_new(&fk) < 0) {
        api_error(r, 500, "server_error", "random source failed");
        goto out;
    }
    api_values_insert_sql(&v, 3, &cols, &vals);
    buf_printf(&sql, "INSERT INTO virtual_keys AS k (key_sha256, key_prefix%s) VALUES (decode($1, 'hex'), $2%s) "
                     "RETURNING k.id, " KEY_JSON, cols.data ? cols.data : "", vals.data ? vals.data : "");
    const char *params[2 + API_MAX_FIELDS];
    params[0] = fk.hash;
    params[1] = fk.prefix;
    for (int i = 0; i < v.n; i++) params[2 + i] = v.val[i];
    if (sql.oom || cols.oom || vals.oom) { api_error(r, 500, "server_error", "out of memory"); goto out; }

    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (check_team(r, &v) < 0) goto out;
    if (!(res = cp_db_exec(r->db, sql.data, 2 + v.n, params))) { api_db_error(r, NULL); goto out; }
    if (cp_audit_record(r->db, r->actor, "create", "keys", PQgetvalue(res, 0, 0), NULL,
                        PQgetvalue(res, 0, 1), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    reply_with_secret(r, 201, fk.key, PQgetvalue(res, 0, 1));
out:
    PQclear(res);
    cp_wipe(&fk, sizeof fk);
    buf_free(&sql);
    buf_free(&cols);
    buf_free(&vals);
    api_values_free(&v);
}

void api_keys_list(api_req *r)
{
    char limit[24], offset[24];
    if (api_paging(r, limit, offset) < 0) return;
    const char *team = api_query(r, "team_id"), *status = api_query(r, "status"), *q = api_query(r, "q");
    if (team && !*team) team = NULL;
    if (status && !*status) status = NULL;
    if (q && !*q) q = NULL;
    if (team && !cp_uuid_valid(team)) {
        api_error(r, 400, "invalid_request_error", "team_id must be a UUID");
        return;
    }
    if (status && strcmp(status, "active") != 0 && strcmp(status, "revoked") != 0) {
        api_error(r, 400, "invalid_request_error", "status must be active or revoked");
        return;
    }
    char *pattern = q ? api_like_pattern(q) : NULL;
    if (q && !pattern) { api_error(r, 500, "server_error", "out of memory"); return; }
    const char *params[] = { team, status, pattern, limit, offset };
    PGresult *res = cp_db_exec(r->db,
        "WITH f AS (SELECT * FROM virtual_keys k WHERE ($1::uuid IS NULL OR k.team_id = $1::uuid) "
        "  AND ($2::text IS NULL OR k.status = $2) AND ($3::text IS NULL OR k.name ILIKE $3 ESCAPE '\\')) "
        "SELECT (SELECT count(*) FROM f), "
        "  coalesce((SELECT json_agg(" KEY_JSON " ORDER BY k.created_at DESC, k.id) "
        "            FROM (SELECT * FROM f ORDER BY created_at DESC, id LIMIT $4::bigint OFFSET $5::bigint) k), '[]')",
        5, params);
    free(pattern);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply_page(r, res, limit, offset);
    PQclear(res);
}

void api_keys_get(api_req *r)
{
    if (api_param_uuid(r, "key") < 0) return;
    api_reply_one(r, "SELECT " KEY_JSON " FROM virtual_keys k WHERE k.id = $1::uuid", "key with id");
}

/* In a transaction: locks the key, returns (json, status) or answers 404. */
static PGresult *lock_key(api_req *r)
{
    return api_lock_one(r, "SELECT " KEY_JSON ", k.status FROM virtual_keys k WHERE k.id = $1::uuid FOR UPDATE", "key with id");
}

static int refuse_revoked(api_req *r, PGresult *before)
{
    if (strcmp(PQgetvalue(before, 0, 1), "revoked") != 0) return 0;
    cp_db_rollback(r->db);
    api_error(r, 409, "conflict", "key %s is revoked and cannot be changed", r->param);
    return -1;
}

void api_keys_update(api_req *r)
{
    if (api_param_uuid(r, "key") < 0) return;
    json_doc *doc;
    json_value *body = api_body_object(r, &doc);
    if (!body) return;
    api_values v;
    int rc = api_collect(r, body, key_fields, NKEY_FIELDS, 0, &v);
    json_doc_free(doc);
    if (rc < 0) return;
    if (v.n == 0) {
        api_error(r, 400, "invalid_request_error", "nothing to update: send at least one field");
        return;
    }
    buf_t sql, set;
    buf_init(&sql);
    buf_init(&set);
    PGresult *before = NULL, *after = NULL;
    api_values_update_sql(&v, 2, &set);
    buf_printf(&sql, "UPDATE virtual_keys AS k SET updated_at = now()%s WHERE k.id = $1::uuid RETURNING " KEY_JSON,
               set.data ? set.data : "");
    const char *params[1 + API_MAX_FIELDS];
    params[0] = r->param;
    for (int i = 0; i < v.n; i++) params[1 + i] = v.val[i];
    if (sql.oom || set.oom) { api_error(r, 500, "server_error", "out of memory"); goto out; }

    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (!(before = lock_key(r)) || refuse_revoked(r, before) < 0 || check_team(r, &v) < 0) goto out;
    if (!(after = cp_db_exec(r->db, sql.data, 1 + v.n, params))) { api_db_error(r, NULL); goto out; }
    if (cp_audit_record(r->db, r->actor, "update", "keys", r->param, PQgetvalue(before, 0, 0),
                        PQgetvalue(after, 0, 0), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    api_reply(r, 200, PQgetvalue(after, 0, 0));
out:
    PQclear(before);
    PQclear(after);
    buf_free(&sql);
    buf_free(&set);
    api_values_free(&v);
}

void api_keys_revoke(api_req *r)
{
    if (api_param_uuid(r, "key") < 0) return;
    PGresult *before = NULL, *after = NULL;
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); return; }
    if (!(before = lock_key(r))) return;
    if (strcmp(PQgetvalue(before, 0, 1), "revoked") == 0) {
        /* Revoking twice is not an error and changes nothing: no audit row. */
        cp_db_rollback(r->db);
        api_reply(r, 200, PQgetvalue(before, 0, 0));
        PQclear(before);
        return;
    }
    const char *params[] = { r->param };
    after = cp_db_exec(r->db,
        "UPDATE virtual_keys AS k SET status = 'revoked', revoked_at = now(), updated_at = now() "
        "WHERE k.id = $1::uuid RETURNING " KEY_JSON, 1, params);
    if (!after ||
        cp_audit_record(r->db, r->actor, "revoke", "keys", r->param, PQgetvalue(before, 0, 0),
                        PQgetvalue(after, 0, 0), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
    } else {
        api_reply(r, 200, PQgetvalue(after, 0, 0));
    }
    PQclear(before);
    PQclear(after);
}

void api_keys_rotate(api_req *r)
{
    if (api_param_uuid(r, "key") < 0) return;
    fresh_key fk;
    PGresult *before = NULL, *after = NULL;
    if (fresh_key_new(&fk) < 0) {
        api_error(r, 500, "server_error", "random source failed");
        return;
    }
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (!(before = lock_key(r)) || refuse_revoked(r, before) < 0) goto out;
    const char *params[] = { r->param, fk.hash, fk.prefix };
    after = cp_db_exec(r->db,
        "UPDATE virtual_keys AS k SET key_sha256 = decode($2, 'hex'), key_prefix = $3, updated_at = now() "
        "WHERE k.id = $1::uuid RETURNING " KEY_JSON, 3, params);
    if (!after ||
        cp_audit_record(r->db, r->actor, "rotate", "keys", r->param, PQgetvalue(before, 0, 0),
                        PQgetvalue(after, 0, 0), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    reply_with_secret(r, 200, fk.key, PQgetvalue(after, 0, 0));
out:
    PQclear(before);
    PQclear(after);
    cp_wipe(&fk, sizeof fk);
}
