/* /api/teams: teams group keys under shared budgets and limits.
 * A team with active keys cannot be deleted (409): revoke or move them first. */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#define TEAM_JSON \
    "json_build_object('id', t.id, 'name', t.name, 'budget_usd', t.budget_usd, " \
    "'budget_period', t.budget_period, 'budget_spent_usd', t.budget_spent_usd, 'budget_blocked', t.budget_blocked, " \
    "'budget_resets_at', t.budget_resets_at, 'rpm_limit', t.rpm_limit, 'tpm_limit', t.tpm_limit, " \
    "'metadata', t.metadata, 'created_at', t.created_at, 'updated_at', t.updated_at)"

static const api_field team_fields[] = {
    { "name",          API_F_TEXT,   1, 0 },
    { "budget_usd",    API_F_USD,    0, 1 },
    { "budget_period", API_F_PERIOD, 0, 1 },
    { "rpm_limit",     API_F_COUNT,  0, 1 },
    { "tpm_limit",     API_F_COUNT,  0, 1 },
    { "metadata",      API_F_OBJECT, 0, 0 },
};
#define NTEAM_FIELDS (sizeof team_fields / sizeof team_fields[0])

#define DUP_NAME "a team with this name already exists"

void api_teams_create(api_req *r)
{
    json_doc *doc;
    json_value *body = api_body_object(r, &doc);
    if (!body) return;
    api_values v;
    int rc = api_collect(r, body, team_fields, NTEAM_FIELDS, 1, &v);
    json_doc_free(doc);
    if (rc < 0) return;
    buf_t sql, cols, vals;
    buf_init(&sql);
    buf_init(&cols);
    buf_init(&vals);
    PGresult *res = NULL;
    api_values_insert_sql(&v, 1, &cols, &vals);
    if (cols.oom || vals.oom || cols.len < 2 || vals.len < 2) {
        api_error(r, 500, "server_error", "out of memory");
        goto out;
    }
    /* cols/vals start with ", ": skip it (name is required, so they are not empty) */
    buf_printf(&sql, "INSERT INTO teams AS t (%s) VALUES (%s) RETURNING t.id, " TEAM_JSON,
               cols.data + 2, vals.data + 2);
    if (sql.oom) { api_error(r, 500, "server_error", "out of memory"); goto out; }
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (!(res = cp_db_exec(r->db, sql.data, v.n, (const char *const *)v.val)) ||
        cp_audit_record(r->db, r->actor, "create", "teams", PQgetvalue(res, 0, 0), NULL,
                        PQgetvalue(res, 0, 1), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, DUP_NAME);
        goto out;
    }
    api_reply(r, 201, PQgetvalue(res, 0, 1));
out:
    PQclear(res);
    buf_free(&sql);
    buf_free(&cols);
    buf_free(&vals);
    api_values_free(&v);
}

void api_teams_list(api_req *r)
{
    char limit[24], offset[24];
    if (api_paging(r, limit, offset) < 0) return;
    const char *q = api_query(r, "q");
    char *pattern = q && *q ? api_like_pattern(q) : NULL;
    if (q && *q && !pattern) { api_error(r, 500, "server_error", "out of memory"); return; }
    const char *params[] = { pattern, limit, offset };
    PGresult *res = cp_db_exec(r->db,
        "WITH f AS (SELECT * FROM teams t WHERE $1::text IS NULL OR t.name ILIKE $1 ESCAPE '\\') "
        "SELECT (SELECT count(*) FROM f), "
        "  coalesce((SELECT json_agg(" TEAM_JSON " ORDER BY t.name, t.id) "
        "            FROM (SELECT * FROM f ORDER BY name, id LIMIT $2::bigint OFFSET $3::bigint) t), '[]')",
        3, params);
    free(pattern);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply_page(r, res, limit, offset);
    PQclear(res);
}

void api_teams_get(api_req *r)
{
    if (api_param_uuid(r, "team") < 0) return;
    api_reply_one(r, "SELECT " TEAM_JSON " FROM teams t WHERE t.id = $1::uuid", "team with id");
}

static PGresult *lock_team(api_req *r)
{
    return api_lock_one(r, "SELECT " TEAM_JSON " FROM teams t WHERE t.id = $1::uuid FOR UPDATE", "team with id");
}

void api_teams_update(api_req *r)
{
    if (api_param_uuid(r, "team") < 0) return;
    json_doc *doc;
    json_value *body = api_body_object(r, &doc);
    if (!body) return;
    api_values v;
    int rc = api_collect(r, body, team_fields, NTEAM_FIELDS, 0, &v);
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
    buf_printf(&sql, "UPDATE teams AS t SET updated_at = now()%s WHERE t.id = $1::uuid RETURNING " TEAM_JSON,
               set.data ? set.data : "");
    const char *params[1 + API_MAX_FIELDS];
    params[0] = r->param;
    for (int i = 0; i < v.n; i++) params[1 + i] = v.val[i];
    if (sql.oom || set.oom) { api_error(r, 500, "server_error", "out of memory"); goto out; }
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (!(before = lock_team(r))) goto out;
    if (!(after = cp_db_exec(r->db, sql.data, 1 + v.n, params)) ||
        cp_audit_record(r->db, r->actor, "update", "teams", r->param, PQgetvalue(before, 0, 0),
                        PQgetvalue(after, 0, 0), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, DUP_NAME);
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

void api_teams_delete(api_req *r)
{
    if (api_param_uuid(r, "team") < 0) return;
    PGresult *before = NULL, *res = NULL;
    const char *params[] = { r->param };
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); return; }
    /* The row lock taken here conflicts with the FOR KEY SHARE lock a key
     * insert takes on its team, so no key can join the team meanwhile. */
    if (!(before = lock_team(r))) return;
    res = cp_db_exec(r->db, "SELECT count(*) FROM virtual_keys WHERE team_id = $1::uuid AND status = 'active'",
                     1, params);
    if (!res) { api_db_error(r, NULL); goto out; }
    long active = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    res = NULL;
    if (active > 0) {
        cp_db_rollback(r->db);
        api_error(r, 409, "conflict", "team %s still has %ld active key(s); revoke or reassign them first",
                  r->param, active);
        goto out;
    }
    if (!(res = cp_db_exec(r->db, "DELETE FROM teams WHERE id = $1::uuid", 1, params)) ||
        cp_audit_record(r->db, r->actor, "delete", "teams", r->param, PQgetvalue(before, 0, 0), NULL, 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    buf_reset(&r->out);
    buf_printf(&r->out, "{\"id\":\"%s\",\"deleted\":true}", r->param);
    r->status = 200;
out:
    PQclear(before);
    PQclear(res);
}
