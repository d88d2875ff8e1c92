/* GET /healthz: 200 when Postgres answers, 503 when it does not. No token:
 * load balancers and orchestrators probe it. */
#include "api.h"

#include <string.h>

void api_healthz(api_req *r)
{
    PGresult *res = cp_db_exec(r->db, "SELECT version FROM config_version", 0, NULL);
    buf_reset(&r->out);
    if (!res) {
        cp_db_rollback(r->db);
        buf_puts(&r->out, "{\"status\":\"unavailable\",\"db\":\"down\"}");
        r->status = 503;
        return;
    }
    const char *v = cp_db_value(res);
    buf_printf(&r->out, "{\"status\":\"ok\",\"db\":\"ok\",\"config_version\":%s}", v ? v : "null");
    r->status = 200;
    PQclear(res);
}
