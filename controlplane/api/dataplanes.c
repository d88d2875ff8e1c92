/* /api/dataplanes: gateway nodes known to the control plane (rows are
 * written by the data-plane publisher when a node connects). */
#include "api.h"

#define DP_JSON \
    "json_build_object('id', d.id, 'hostname', d.hostname, 'version', d.version, " \
    "'config_version', d.config_version, 'workers', d.workers, 'status', d.status, 'status_reason', d.status_reason, " \
    "'first_seen', d.first_seen, 'last_seen', d.last_seen)"

void api_dataplanes_list(api_req *r)
{
    char limit[24], offset[24];
    if (api_paging(r, limit, offset) < 0) return;
    const char *params[] = { limit, offset };
    PGresult *res = cp_db_exec(r->db,
        "SELECT (SELECT count(*) FROM dataplanes), "
        "  coalesce((SELECT json_agg(" DP_JSON " ORDER BY d.last_seen DESC, d.id) "
        "            FROM (SELECT * FROM dataplanes ORDER BY last_seen DESC, id "
        "                  LIMIT $1::bigint OFFSET $2::bigint) d), '[]')",
        2, params);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply_page(r, res, limit, offset);
    PQclear(res);
}

void api_dataplanes_get(api_req *r)
{
    api_reply_one(r, "SELECT " DP_JSON " FROM dataplanes d WHERE d.id = $1", "data plane with id");
}
