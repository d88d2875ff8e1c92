#include "ingest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cplink.h"
#include "gateway.pb-c.h"
#include "log.h"
#include "metrics.h"

#define TOKENS_MAX   1000000000000LL        /* 1e12: beyond any real request */
#define COST_E10_MAX 9000000000000000000LL


static int text_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20) return 0;
    return 1;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static void put_str_or_null(buf_t *b, const char *name, const char *v, size_t max)
{
    buf_puts(b, name);
    if (!v || !*v || !text_ok(v, max)) buf_puts(b, "null");
    else buf_json_str(b, v, strlen(v));
}

static void put_uuid_or_null(buf_t *b, const char *name, const char *v)
{
    buf_puts(b, name);
    if (v && cplink_uuid_parse(v, NULL)) buf_json_str(b, v, strlen(v));
    else buf_puts(b, "null");
}

static void put_ts(buf_t *b, int64_t ms)
{
    /* 2000-01-01 .. 2100-01-01; anything else is a broken clock: use now */
    if (ms < 946684800000LL || ms > 4102444800000LL) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    }
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    buf_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
               tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static int build_json(const Gw__UsageBatch *ub, buf_t *b)
{
    buf_reset(b);
    buf_putc(b, '[');
    for (size_t i = 0; i < ub->n_events; i++) {
        const Gw__UsageEvent *e = ub->events[i];
        if (i) buf_putc(b, ',');
        buf_puts(b, "{\"request_id\":");
        buf_json_str(b, e->request_id, strlen(e->request_id));
        buf_puts(b, ",\"ts\":");
        put_ts(b, e->ts_ms);
        put_uuid_or_null(b, ",\"key_id\":", e->key_id);
        put_uuid_or_null(b, ",\"team_id\":", e->team_id);
        put_str_or_null(b, ",\"model_alias\":", e->model_alias, 256);
        put_str_or_null(b, ",\"provider\":", e->provider, 64);
        put_str_or_null(b, ",\"upstream_model\":", e->upstream_model, 256);
        put_str_or_null(b, ",\"dataplane_id\":", ub->dataplane_id, 200);
        put_str_or_null(b, ",\"routed_alias\":", e->routed_alias, 256);
        put_str_or_null(b, ",\"guard\":", e->guard, 256);
        if (e->cache_similarity > 0 && e->cache_similarity <= 1)   /* NaN and nonsense stay NULL */
            buf_printf(b, ",\"cache_similarity\":%.4f", e->cache_similarity);
        /* exact decimal from the integer the data plane priced with */
        int64_t c = e->cost_e10 > 0 ? clamp64(e->cost_e10, 0, COST_E10_MAX)
                  : (e->cost_usd > 0 && e->cost_usd < 9e8 ? (int64_t)(e->cost_usd * 1e10 + 0.5) : 0);
        buf_printf(b, ",\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64
                      ",\"cost_usd\":%" PRId64 ".%010" PRId64 ",\"latency_ms\":%d,\"ttft_ms\":%d,\"status\":%d"
                      ",\"cache_hit\":%s,\"attempts\":%d}",
                   clamp64(e->prompt_tokens, 0, TOKENS_MAX), clamp64(e->completion_tokens, 0, TOKENS_MAX),
                   clamp64(e->cached_tokens, 0, TOKENS_MAX), (int64_t)(c / 10000000000LL), (int64_t)(c % 10000000000LL),
                   e->latency_ms < 0 ? 0 : e->latency_ms, e->ttft_ms < 0 ? 0 : e->ttft_ms,
                   e->status < 0 || e->status > 999 ? 0 : e->status, e->cache_hit ? "true" : "false",
                   e->attempts < 0 || e->attempts > 1000 ? 0 : e->attempts);
    }
    buf_putc(b, ']');
    return b->oom ? -1 : 0;
}

/* A/B verdicts (gateway/abjudge.h) as the JSON ab_verdicts_insert_batch takes. */
static int build_verdicts_json(const Gw__UsageBatch *ub, buf_t *b)
{
    buf_reset(b);
    buf_putc(b, '[');
    for (size_t i = 0; i < ub->n_verdicts; i++) {
        const Gw__AbVerdict *v = ub->verdicts[i];
        if (i) buf_putc(b, ',');
        put_str_or_null(b, "{\"request_id\":", v->request_id, 128);
        buf_puts(b, ",\"ts\":");
        put_ts(b, v->ts_ms);
        put_str_or_null(b, ",\"alias\":", v->alias, 256);
        put_str_or_null(b, ",\"variant_a\":", v->variant_a, 256);
        put_str_or_null(b, ",\"variant_b\":", v->variant_b, 256);
        put_str_or_null(b, ",\"winner\":", v->winner, 3);
        put_str_or_null(b, ",\"judge_alias\":", v->judge_alias, 256);
        put_str_or_null(b, ",\"judge_model\":", v->judge_model, 256);
        put_str_or_null(b, ",\"dataplane_id\":", ub->dataplane_id, 200);
        buf_putc(b, '}');
    }
    buf_putc(b, ']');
    return b->oom ? -1 : 0;
}

/* 0 stored (or none), -1 the database refused (the batch is retried: both inserts are idempotent). */
static int store_verdicts(cp_dbconn *c, const Gw__UsageBatch *ub, buf_t *scratch)
{
    if (ub->n_verdicts == 0) return 0;
    if (build_verdicts_json(ub, scratch) < 0) return -1;
    const char *params[] = { scratch->data };
    PGresult *r = cp_db_exec(c, "SELECT ab_verdicts_insert_batch($1::jsonb)", 1, params);
    if (!r) log_warn("%zu A/B verdicts not stored: %s", ub->n_verdicts, cp_db_errmsg(c));
    PQclear(r);
    return r ? 0 : -1;
}

static void ack(buf_t *reply, uint64_t id, int ok, const char *error, uint32_t inserted)
{
    Gw__UsageAck a = GW__USAGE_ACK__INIT;
    a.batch_id = id;
    a.ok = ok;
    a.error = (char *)(error ? error : "");
    a.inserted = inserted;
    buf_reset(reply);
    size_t n = gw__usage_ack__get_packed_size(&a);
    if (buf_reserve(reply, n) < 0) return;
    gw__usage_ack__pack(&a, (uint8_t *)reply->data);
    reply->len = n;
}

void cp_ingest_usage(cp_dbconn *c, const uint8_t *data, size_t len, buf_t *scratch, buf_t *reply)
{
    Gw__UsageBatch *ub = gw__usage_batch__unpack(NULL, len, data);
    if (!ub) { ack(reply, 0, 0, "malformed UsageBatch", 0); return; }
    const char *why = NULL;
    if ((ub->n_events == 0 && ub->n_verdicts == 0) || ub->n_events > CPLINK_USAGE_EVENTS_MAX ||
        ub->n_verdicts > CPLINK_USAGE_EVENTS_MAX) why = "batch size out of range";
    else if (!text_ok(ub->dataplane_id, 200)) why = "bad dataplane_id";
    for (size_t i = 0; !why && i < ub->n_events; i++)
        if (!ub->events[i]->request_id[0] || !text_ok(ub->events[i]->request_id, 128)) why = "bad request_id";
    if (why) {
        log_warn("usage batch from %.100s refused: %s", text_ok(ub->dataplane_id, 200) ? ub->dataplane_id : "?", why);
        cp_metrics_usage_batch(0, 0, 0, 0);
        ack(reply, ub->batch_id, 0, why, 0);
        gw__usage_batch__free_unpacked(ub, NULL);
        return;
    }
    if (store_verdicts(c, ub, scratch) < 0) {
        ack(reply, ub->batch_id, 0, "database unavailable", 0);
        gw__usage_batch__free_unpacked(ub, NULL);
        return;
    }
    if (ub->n_events == 0) {   /* verdicts only */
        ack(reply, ub->batch_id, 1, NULL, 0);
        gw__usage_batch__free_unpacked(ub, NULL);
        return;
    }
    if (build_json(ub, scratch) < 0) {
        ack(reply, ub->batch_id, 0, "out of memory", 0);
        gw__usage_batch__free_unpacked(ub, NULL);
        return;
    }
    const char *params[] = { scratch->data };
    PGresult *r = cp_db_exec(c, "SELECT spend_log_insert_batch($1::jsonb)", 1, params);
    int64_t newest = 0;
    for (size_t i = 0; i < ub->n_events; i++) if (ub->events[i]->ts_ms > newest) newest = ub->events[i]->ts_ms;
    if (!r) {
        log_warn("usage batch of %zu events not stored: %s", ub->n_events, cp_db_errmsg(c));
        ack(reply, ub->batch_id, 0, "database unavailable", 0);
        cp_metrics_usage_batch(ub->n_events, 0, 0, 0);
    } else {
        const char *v = cp_db_value(r);
        uint32_t inserted = v ? (uint32_t)strtoul(v, NULL, 10) : 0;
        cp_metrics_usage_batch(ub->n_events, inserted, newest, 1);
        ack(reply, ub->batch_id, 1, NULL, inserted);
        log_debug("usage batch %" PRIu64 " from %s: %zu events, %u new", ub->batch_id, ub->dataplane_id, ub->n_events,
                  inserted);
    }
    PQclear(r);
    gw__usage_batch__free_unpacked(ub, NULL);
}
