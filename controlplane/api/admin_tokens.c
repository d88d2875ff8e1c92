/* /api/admin-tokens: tokens for this API (admin only, even to list).
 * A token is shown once at creation; only its SHA-256 is stored. The last
 * active admin token cannot be revoked, so the API cannot lock itself out. */
#include "api.h"

#include <string.h>

#define TOKEN_JSON \
    "json_build_object('id', t.id, 'name', t.name, 'role', t.role, 'token_prefix', t.token_prefix, " \
    "'created_at', t.created_at, 'revoked_at', t.revoked_at)"

void api_admin_tokens_create(api_req *r)
{
    static const char *const allowed[] = { "name", "role", NULL };
    json_doc *doc;
    json_value *body = api_body_object(r, &doc);
    if (!body) return;
    char tok[sizeof CP_ADMIN_PREFIX + CP_TOKEN_B64_LEN + 1], hex[2 * CP_SHA256_LEN + 1], prefix[16];
    unsigned char h[CP_SHA256_LEN];
    PGresult *res = NULL;
    memset(tok, 0, sizeof tok);
    if (api_only_fields(r, body, allowed) < 0) goto out;
    const json_value *name = json_get(body, "name");
    const char *role = json_get_str(body, "role");
    if (!name || name->type != JSON_STRING || name->str_len == 0 || name->str_len > API_NAME_MAX ||
        memchr(name->str, '\0', name->str_len)) {
        api_error(r, 400, "invalid_request_error", "name must be a non-empty string of at most %d bytes",
                  API_NAME_MAX);
        goto out;
    }
    if (!role || (strcmp(role, "admin") != 0 && strcmp(role, "viewer") != 0)) {
        api_error(r, 400, "invalid_request_error", "role must be admin or viewer");
        goto out;
    }
    if (cp_token_new(CP_ADMIN_PREFIX, tok, sizeof tok) < 0) {
        api_error(r, 500, "server_error", "random source failed");
        goto out;
    }
    cp_sha256(tok, strlen(tok), h);
    cp_hex(h, sizeof h, hex);
    snprintf(prefix, sizeof prefix, "%.13s", tok);       /* "sk-gwadm-" + 4 */
    const char *params[] = { name->str, hex, prefix, role };
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (!(res = cp_db_exec(r->db,
            "INSERT INTO admin_tokens AS t (name, token_sha256, token_prefix, role) "
            "VALUES ($1, decode($2, 'hex'), $3, $4) RETURNING t.id, " TOKEN_JSON, 4, params)) ||
        cp_audit_record(r->db, r->actor, "create", "admin_tokens", PQgetvalue(res, 0, 0), NULL,
                        PQgetvalue(res, 0, 1), 0) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    buf_reset(&r->out);
    buf_puts(&r->out, "{\"token\":");
    buf_json_str(&r->out, tok, strlen(tok));
    buf_putc(&r->out, ',');
    buf_puts(&r->out, PQgetvalue(res, 0, 1) + 1);
    r->status = 201;
out:
    cp_wipe(tok, sizeof tok);
    PQclear(res);
    json_doc_free(doc);
}

void api_admin_tokens_list(api_req *r)
{
    char limit[24], offset[24];
    if (api_paging(r, limit, offset) < 0) return;
    const char *params[] = { limit, offset };
    PGresult *res = cp_db_exec(r->db,
        "SELECT (SELECT count(*) FROM admin_tokens), "
        "  coalesce((SELECT json_agg(" TOKEN_JSON " ORDER BY t.created_at, t.id) "
        "            FROM (SELECT * FROM admin_tokens ORDER BY created_at, id "
        "                  LIMIT $1::bigint OFFSET $2::bigint) t), '[]')",
        2, params);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply_page(r, res, limit, offset);
    PQclear(res);
}

void api_admin_tokens_revoke(api_req *r)
{
    if (api_param_uuid(r, "admin token") < 0) return;
    const char *params[] = { r->param };
    PGresult *before = NULL, *after = NULL;
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); return; }
    /* Lock every active admin row: two concurrent revocations must not both
     * see "another admin remains" and leave none. */
    PGresult *admins = cp_db_exec(r->db,
        "SELECT id FROM admin_tokens WHERE role = 'admin' AND revoked_at IS NULL ORDER BY id FOR UPDATE", 0, NULL);
    if (!admins) { api_db_error(r, NULL); return; }
    int nadmins = PQntuples(admins);
    PQclear(admins);
    before = cp_db_exec(r->db, "SELECT " TOKEN_JSON ", t.role, t.revoked_at IS NOT NULL FROM admin_tokens t "
                               "WHERE t.id = $1::uuid FOR UPDATE", 1, params);
    if (!before) { api_db_error(r, NULL); return; }
    if (PQntuples(before) != 1) {
        cp_db_rollback(r->db);
        api_error(r, 404, "not_found", "no admin token with id '%s'", r->param);
        goto out;
    }
    if (strcmp(PQgetvalue(before, 0, 2), "t") == 0) {       /* already revoked: nothing to do */
        cp_db_rollback(r->db);
        api_reply(r, 200, PQgetvalue(before, 0, 0));
        goto out;
    }
    if (strcmp(PQgetvalue(before, 0, 1), "admin") == 0 && nadmins <= 1) {
        cp_db_rollback(r->db);
        api_error(r, 409, "conflict", "cannot revoke the last active admin token; create another admin token first");
        goto out;
    }
    if (!(after = cp_db_exec(r->db, "UPDATE admin_tokens AS t SET revoked_at = now() WHERE t.id = $1::uuid "
                                    "RETURNING " TOKEN_JSON, 1, params)) ||
        cp_audit_record(r->db, r->actor, "revoke", "admin_tokens", r->param, PQgetvalue(before, 0, 0),
                        PQgetvalue(after, 0, 0), 0) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    api_reply(r, 200, PQgetvalue(after, 0, 0));
out:
    PQclear(before);
    PQclear(after);
}
