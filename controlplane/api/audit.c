/* /api/audit: the admin action log, newest first. */
#include "api.h"

#include <string.h>

void api_audit_list(api_req *r)
{
    char limit[24], offset[24];
    if (api_paging(r, limit, offset) < 0) return;
    const char *resource = api_query(r, "resource"), *rid = api_query(r, "resource_id"),
               *action = api_query(r, "action"), *actor = api_query(r, "actor");
    if (resource && !*resource) resource = NULL;
    if (rid && !*rid) rid = NULL;
    if (action && !*action) action = NULL;
    if (actor && !*actor) actor = NULL;
    const char *params[] = { resource, rid, action, actor, limit, offset };
    PGresult *res = cp_db_exec(r->db,
        "WITH f AS (SELECT * FROM audit_log a WHERE ($1::text IS NULL OR a.resource = $1) "
        "  AND ($2::text IS NULL OR a.resource_id = $2) AND ($3::text IS NULL OR a.action = $3) "
        "  AND ($4::text IS NULL OR a.actor = $4)) "
        "SELECT (SELECT count(*) FROM f), "
        "  coalesce((SELECT json_agg(json_build_object('id', a.id, 'ts', a.ts, 'actor', a.actor, "
        "      'actor_name', a.actor_name, 'action', a.action, 'resource', a.resource, "
        "      'resource_id', a.resource_id, 'before', a.before, 'after', a.after, "
        "      'config_version', a.config_version) ORDER BY a.id DESC) "
        "   FROM (SELECT * FROM f ORDER BY id DESC LIMIT $5::bigint OFFSET $6::bigint) a), '[]')",
        6, params);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply_page(r, res, limit, offset);
    PQclear(res);
}
