#include "audit.h"

int cp_audit_record(cp_dbconn *c, const cp_actor *actor, const char *action,
                    const char *resource, const char *resource_id,
                    const char *before_json, const char *after_json, int config_change)
{
    static const char bump_sql[] =
        "WITH v AS (UPDATE config_version SET version = version + 1, updated_at = now() RETURNING version) "
        "INSERT INTO audit_log (actor, actor_name, action, resource, resource_id, before, after, config_version) "
        "SELECT $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, v.version FROM v";
    static const char plain_sql[] =
        "INSERT INTO audit_log (actor, actor_name, action, resource, resource_id, before, after, config_version) "
        "SELECT $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, version FROM config_version";
    const char *params[] = { actor->id, actor->name, action, resource, resource_id, before_json, after_json };
    PGresult *r = cp_db_exec(c, config_change ? bump_sql : plain_sql, 7, params);
    if (!r) return -1;
    int ok = PQcmdTuples(r)[0] == '1';
    PQclear(r);
    return ok ? 0 : -1;
}
