/* /api/ab: evaluated A/B results (the gateway's abjudge.h), win rates per
 * variant with counts and a 95% confidence interval, from ab_verdicts.
 * ?alias= narrows to one alias, ?since= (RFC 3339) to recent verdicts. */
#include "api.h"

#include <string.h>

void api_ab(api_req *r)
{
    const char *alias = api_query(r, "alias");
    const char *since = api_query(r, "since");
    if (alias && (!*alias || strlen(alias) > API_NAME_MAX)) {
        api_error(r, 400, "invalid_request_error", "alias must be 1-%d bytes", API_NAME_MAX);
        return;
    }
    const char *params[] = { alias, since && *since ? since : NULL };
    PGresult *res = cp_db_exec(r->db,
        "SELECT coalesce(json_agg(json_build_object("
        "  'alias', alias, 'variant_a', variant_a, 'variant_b', variant_b, 'judge_alias', judge_alias,"
        "  'verdicts', n, 'ties', t, 'last_verdict', last_ts,"
        "  'variants', json_build_array(ab_variant_json('a', variant_a, wa, t, n), ab_variant_json('b', variant_b, wb, t, n))"
        ") ORDER BY alias, variant_a, variant_b), '[]')::text"
        " FROM (SELECT alias, variant_a, variant_b, max(judge_alias) AS judge_alias, count(*) AS n,"
        "        count(*) FILTER (WHERE winner = 'a') AS wa, count(*) FILTER (WHERE winner = 'b') AS wb,"
        "        count(*) FILTER (WHERE winner = 'tie') AS t, max(ts) AS last_ts"
        "       FROM ab_verdicts"
        "       WHERE ($1::text IS NULL OR alias = $1) AND ($2::timestamptz IS NULL OR ts >= $2::timestamptz)"
        "       GROUP BY alias, variant_a, variant_b) g",
        2, params);
    if (!res) { api_db_error(r, NULL); return; }
    const char *data = cp_db_value(res);
    buf_reset(&r->out);
    buf_puts(&r->out, "{\"data\":");
    buf_puts(&r->out, data ? data : "[]");
    buf_putc(&r->out, '}');
    r->status = 200;
    PQclear(res);
}
