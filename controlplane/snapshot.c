#include "snapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "cplink.h"
#include "gateway.pb-c.h"
#include "json.h"
#include "log.h"
#include "pbwire.h"

/* Field numbers (proto/gateway.proto). */
enum { SNAP_VERSION = 1, SNAP_GENERATED_AT = 2, SNAP_MODELS = 3, SNAP_KEYS = 4, SNAP_TEAMS = 5, SNAP_KEY_COUNT = 6 };
enum { D_VERSION = 1, D_BASE = 2, D_UPSERT_KEYS = 3, D_REMOVE_KEYS = 4, D_UPSERT_MODELS = 5, D_REMOVE_MODELS = 6,
       D_UPSERT_TEAMS = 7, D_REMOVE_TEAMS = 8, D_GENERATED_AT = 9, D_RESYNC = 10 };

#define FETCH_ROWS 50000
#define MAX_DEPLOYMENTS 64
#define MAX_EXTRA 64

#define KEY_COLS \
    "k.id::text, k.name, encode(k.key_sha256, 'hex'), coalesce(k.team_id::text, ''), k.models IS NULL, " \
    "coalesce(array_to_json(k.models)::text, '[]'), coalesce(k.rpm_limit, -1), coalesce(k.tpm_limit, -1), " \
    "coalesce(k.budget_usd, -1)::float8, coalesce(k.budget_period, ''), " \
    "coalesce(floor(extract(epoch FROM k.expires_at))::bigint, 0), k.budget_blocked, k.budget_spent_usd::float8"
/* revoked and expired keys are not sent: the data plane would refuse them anyway */
#define KEY_USABLE "k.status = 'active' AND (k.expires_at IS NULL OR k.expires_at > now())"
#define TEAM_COLS \
    "t.id::text, t.name, coalesce(t.rpm_limit, -1), coalesce(t.tpm_limit, -1), " \
    "coalesce(t.budget_usd, -1)::float8, coalesce(t.budget_period, ''), t.budget_blocked, t.budget_spent_usd::float8"
#define MODEL_COLS \
    "m.alias, m.strategy, m.deployments::text, array_to_json(m.fallbacks)::text, " \
    "CASE WHEN jsonb_typeof(m.cache -> 'ttl_s') = 'number' THEN (m.cache ->> 'ttl_s')::numeric::bigint ELSE 0 END, " \
    "coalesce(jsonb_typeof(m.cache -> 'shared') = 'boolean' AND (m.cache ->> 'shared')::boolean, false), " \
    "coalesce(m.router::text, ''), coalesce(m.prompt::text, ''), coalesce((m.cache -> 'semantic')::text, ''), " \
    "coalesce(m.guardrails::text, '')"

static int64_t to_i64(const char *s) { return strtoll(s, NULL, 10); }

int cp_config_version(cp_dbconn *c, uint64_t *version)
{
    PGresult *r = cp_db_exec(c, "SELECT version FROM config_version", 0, NULL);
    if (!r) return -1;
    int ok = PQntuples(r) == 1;
    if (ok) *version = (uint64_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return ok ? 0 : -1;
}

/* ---- rows to messages ---- */

static int put_key_row(buf_t *out, uint32_t field, PGresult *r, int row)
{
    Gw__Key k = GW__KEY__INIT;
    uint8_t sha[32];
    const char *hex = PQgetvalue(r, row, 2);
    if (cp_unhex(hex, strlen(hex), sha, sizeof sha) < 0) return -1;
    k.id = PQgetvalue(r, row, 0);
    k.name = PQgetvalue(r, row, 1);
    k.key_sha256.data = sha;
    k.key_sha256.len = sizeof sha;
    k.team_id = PQgetvalue(r, row, 3);
    k.all_models = PQgetvalue(r, row, 4)[0] == 't';
    json_doc *doc = NULL;
    char **models = NULL;
    if (!k.all_models) {
        const char *mj = PQgetvalue(r, row, 5);
        json_error jerr;
        doc = json_parse(mj, strlen(mj), NULL, &jerr);
        const json_value *arr = doc ? json_root(doc) : NULL;
        if (!arr || arr->type != JSON_ARRAY) { json_doc_free(doc); return -1; }
        models = calloc(arr->count ? arr->count : 1, sizeof *models);
        if (!models) { json_doc_free(doc); return -1; }
        for (const json_value *v = arr->first; v; v = v->next)
            if (v->type == JSON_STRING) models[k.n_models++] = (char *)v->str;
        k.models = models;
    }
    k.rpm_limit = to_i64(PQgetvalue(r, row, 6));
    k.tpm_limit = to_i64(PQgetvalue(r, row, 7));
    k.budget_usd = strtod(PQgetvalue(r, row, 8), NULL);
    k.budget_period = PQgetvalue(r, row, 9);
    k.expires_at = to_i64(PQgetvalue(r, row, 10));
    k.budget_exceeded = PQgetvalue(r, row, 11)[0] == 't';
    k.budget_spent_usd = strtod(PQgetvalue(r, row, 12), NULL);
    int rc = pbw_put_message_field(out, field, &k.base);
    free(models);
    json_doc_free(doc);
    return rc;
}

static int put_team_row(buf_t *out, uint32_t field, PGresult *r, int row)
{
    Gw__Team t = GW__TEAM__INIT;
    t.id = PQgetvalue(r, row, 0);
    t.name = PQgetvalue(r, row, 1);
    t.rpm_limit = to_i64(PQgetvalue(r, row, 2));
    t.tpm_limit = to_i64(PQgetvalue(r, row, 3));
    t.budget_usd = strtod(PQgetvalue(r, row, 4), NULL);
    t.budget_period = PQgetvalue(r, row, 5);
    t.budget_exceeded = PQgetvalue(r, row, 6)[0] == 't';
    t.budget_spent_usd = strtod(PQgetvalue(r, row, 7), NULL);
    return pbw_put_message_field(out, field, &t.base);
}

typedef struct dep_buf {
    Gw__Deployment             d;
    Gw__Timeouts               t;
    Gw__Deployment__ExtraEntry extra[MAX_EXTRA];
    Gw__Deployment__ExtraEntry *extra_p[MAX_EXTRA];
    char                       *text[MAX_EXTRA];   /* numbers rendered as text */
    char                       *secret;            /* decrypted cred: value */
} dep_buf;

static void dep_buf_clear(dep_buf *b)
{
    for (size_t i = 0; i < b->d.n_extra; i++) free(b->text[i]);
    if (b->secret) { cp_wipe(b->secret, strlen(b->secret)); free(b->secret); }
}

static int64_t num_i64(const json_value *v) { return v->is_int ? v->i64 : (int64_t)v->num; }

/* One deployment object. -1: unusable (logged), the caller skips it. */
static int fill_deployment(cp_dbconn *c, const unsigned char *mk, const char *alias, const char *src,
                           const json_value *o, dep_buf *b)
{
    Gw__Deployment init = GW__DEPLOYMENT__INIT;
    Gw__Timeouts tinit = GW__TIMEOUTS__INIT;
    b->d = init;
    b->t = tinit;
    b->d.weight = 1;
    b->d.input_cost_per_mtok = b->d.cached_input_cost_per_mtok = b->d.output_cost_per_mtok = -1;
    for (const json_value *m = o->first; m; m = m->next) {
        if (!strcmp(m->key, "provider") && m->type == JSON_STRING) b->d.provider = (char *)m->str;
        else if (!strcmp(m->key, "model") && m->type == JSON_STRING) b->d.model = (char *)m->str;
        else if (!strcmp(m->key, "base_url") && m->type == JSON_STRING) b->d.base_url = (char *)m->str;
        else if (!strcmp(m->key, "weight") && m->type == JSON_NUMBER) b->d.weight = num_i64(m);
        else if (!strcmp(m->key, "latency_ms") && m->type == JSON_NUMBER) b->d.latency_ms = num_i64(m);
        else if (!strcmp(m->key, "input_cost_per_mtok") && m->type == JSON_NUMBER) {
            b->d.input_cost_per_mtok = m->num;
            b->d.has_price_override = 1;
        } else if (!strcmp(m->key, "cached_input_cost_per_mtok") && m->type == JSON_NUMBER) {
            b->d.cached_input_cost_per_mtok = m->num;
            b->d.has_price_override = 1;
        } else if (!strcmp(m->key, "output_cost_per_mtok") && m->type == JSON_NUMBER) {
            b->d.output_cost_per_mtok = m->num;
            b->d.has_price_override = 1;
        }
        else if (!strcmp(m->key, "api_key") && m->type == JSON_STRING) {
            if (!strncmp(m->str, "cred:", 5)) {
                if (!(b->secret = api_credential_plaintext(c, mk, m->str + 5))) {
                    log_error("model %s: credential %s cannot be decrypted; deployment not published", alias, m->str + 5);
                    return -1;
                }
                b->d.api_key = b->secret;
            } else {
                b->d.api_key_ref = (char *)m->str;
            }
        } else if (!strcmp(m->key, "timeouts") && m->type == JSON_OBJECT) {
            const json_value *t;
            if ((t = json_get(m, "connect_ms")) && t->type == JSON_NUMBER) b->t.connect_ms = num_i64(t);
            if ((t = json_get(m, "first_byte_ms")) && t->type == JSON_NUMBER) b->t.first_byte_ms = num_i64(t);
            if ((t = json_get(m, "idle_ms")) && t->type == JSON_NUMBER) b->t.idle_ms = num_i64(t);
            if ((t = json_get(m, "total_ms")) && t->type == JSON_NUMBER) b->t.total_ms = num_i64(t);
            b->d.timeouts = &b->t;
        } else if (b->d.n_extra < MAX_EXTRA && (m->type == JSON_STRING || m->type == JSON_NUMBER ||
                                                 m->type == JSON_TRUE || m->type == JSON_FALSE)) {
            /* region, api_version, prices...: the data plane's business */
            size_t i = b->d.n_extra;
            Gw__Deployment__ExtraEntry e = GW__DEPLOYMENT__EXTRA_ENTRY__INIT;
            b->extra[i] = e;
            b->extra[i].key = (char *)m->key;
            if (m->type == JSON_STRING) {
                b->extra[i].value = (char *)m->str;
                b->text[i] = NULL;
            } else {
                if (!(b->text[i] = strndup(src + m->start, m->end - m->start))) return -1;
                b->extra[i].value = b->text[i];
            }
            b->extra_p[i] = &b->extra[i];
            b->d.extra = b->extra_p;
            b->d.n_extra++;
        }
    }
    return 0;
}

static int put_model_row(cp_dbconn *c, const unsigned char *mk, buf_t *out, uint32_t field, PGresult *r, int row)
{
    Gw__ModelAlias m = GW__MODEL_ALIAS__INIT;
    m.alias = PQgetvalue(r, row, 0);
    m.strategy = PQgetvalue(r, row, 1);
    m.cache_ttl_s = to_i64(PQgetvalue(r, row, 4));
    m.cache_shared = PQgetvalue(r, row, 5)[0] == 't';
    m.router_json = PQgetvalue(r, row, 6);
    m.prompt_json = PQgetvalue(r, row, 7);
    m.semantic_json = PQgetvalue(r, row, 8);
    m.guardrails_json = PQgetvalue(r, row, 9);
    const char *dj = PQgetvalue(r, row, 2), *fj = PQgetvalue(r, row, 3);
    json_error jerr;
    json_doc *deps = json_parse(dj, strlen(dj), NULL, &jerr), *fb = json_parse(fj, strlen(fj), NULL, &jerr);
    dep_buf *bufs = calloc(MAX_DEPLOYMENTS, sizeof *bufs);
    Gw__Deployment *dp[MAX_DEPLOYMENTS];
    char *fallbacks[MAX_DEPLOYMENTS];
    int rc = -1;
    if (!deps || !fb || !bufs || json_root(deps)->type != JSON_ARRAY) goto out;
    for (const json_value *d = json_root(deps)->first; d && m.n_deployments < MAX_DEPLOYMENTS; d = d->next) {
        if (d->type != JSON_OBJECT) continue;
        dep_buf *b = &bufs[m.n_deployments];
        if (fill_deployment(c, mk, m.alias, dj, d, b) < 0) { dep_buf_clear(b); memset(b, 0, sizeof *b); continue; }
        dp[m.n_deployments++] = &b->d;
    }
    m.deployments = dp;
    if (json_root(fb)->type == JSON_ARRAY)
        for (const json_value *f = json_root(fb)->first; f && m.n_fallbacks < MAX_DEPLOYMENTS; f = f->next)
            if (f->type == JSON_STRING) fallbacks[m.n_fallbacks++] = (char *)f->str;
    m.fallbacks = fallbacks;
    rc = pbw_put_message_field(out, field, &m.base);
out:
    if (bufs) {
        for (size_t i = 0; i < m.n_deployments; i++) dep_buf_clear(&bufs[i]);
        free(bufs);
    }
    json_doc_free(deps);
    json_doc_free(fb);
    return rc;
}

/* ---- snapshot ---- */

static int begin_snapshot_tx(cp_dbconn *c, uint64_t *version)
{
    if (cp_db_begin(c) < 0) return -1;
    PGresult *r = cp_db_exec(c, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL);
    if (!r) { cp_db_rollback(c); return -1; }
    PQclear(r);
    if (cp_config_version(c, version) < 0) { cp_db_rollback(c); return -1; }
    return 0;
}

static int put_all(cp_dbconn *c, const unsigned char *mk, buf_t *out, const char *sql, uint32_t field, int kind)
{
    PGresult *r = cp_db_exec(c, sql, 0, NULL);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++)
        rc = kind == 'm' ? put_model_row(c, mk, out, field, r, i) : put_team_row(out, field, r, i);
    PQclear(r);
    return rc;
}

int cp_snapshot_build(cp_dbconn *c, const unsigned char *mk, buf_t *out, uint64_t *version, char *err, size_t errlen)
{
    buf_reset(out);
    if (begin_snapshot_tx(c, version) < 0) {
        snprintf(err, errlen, "snapshot: %s", cp_db_errmsg(c));
        return -1;
    }
    PGresult *r = NULL;
    if (pbw_put_varint_field(out, SNAP_VERSION, *version) < 0 ||
        pbw_put_varint_field(out, SNAP_GENERATED_AT, (uint64_t)time(NULL)) < 0 ||
        put_all(c, mk, out, "SELECT " MODEL_COLS " FROM models m ORDER BY m.alias", SNAP_MODELS, 'm') < 0 ||
        put_all(c, mk, out, "SELECT " TEAM_COLS " FROM teams t", SNAP_TEAMS, 't') < 0)
        goto fail;
    if (!(r = cp_db_exec(c, "SELECT count(*) FROM virtual_keys k WHERE " KEY_USABLE, 0, NULL)) ||
        pbw_put_varint_field(out, SNAP_KEY_COUNT, strtoull(PQgetvalue(r, 0, 0), NULL, 10)) < 0)
        goto fail;
    PQclear(r);
    if (!(r = cp_db_exec(c, "DECLARE snap_keys NO SCROLL CURSOR FOR SELECT " KEY_COLS
                            " FROM virtual_keys k WHERE " KEY_USABLE, 0, NULL)))
        goto fail;
    for (;;) {
        PQclear(r);
        if (!(r = cp_db_exec(c, "FETCH " "50000" " FROM snap_keys", 0, NULL))) goto fail;
        int n = PQntuples(r);
        if (n == 0) break;
        for (int i = 0; i < n; i++)
            if (put_key_row(out, SNAP_KEYS, r, i) < 0) goto fail;
    }
    PQclear(r);
    r = NULL;
    if (out->oom || cp_db_commit(c) < 0) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "snapshot: %s", out->oom ? "out of memory" : cp_db_errmsg(c));
    PQclear(r);
    cp_db_rollback(c);
    return -1;
}

/* ---- delta ---- */

/* Postgres array literal of quoted elements. */
static void array_literal(buf_t *b, char **items, size_t n)
{
    buf_putc(b, '{');
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        buf_putc(b, '"');
        for (const char *p = items[i]; *p; p++) {
            if (*p == '"' || *p == '\\') buf_putc(b, '\\');
            buf_putc(b, *p);
        }
        buf_putc(b, '"');
    }
    buf_putc(b, '}');
}

typedef struct id_list {
    char  **v;
    size_t  n, cap;
} id_list;

static int id_push(id_list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    return (l->v[l->n++] = strdup(s)) ? 0 : -1;
}

static void id_free(id_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int in_result(PGresult *r, const char *id)
{
    for (int i = 0; i < PQntuples(r); i++)
        if (!strcmp(PQgetvalue(r, i, 0), id)) return 1;
    return 0;
}

/* Upserts what the query returns, removes the ids it does not. */
static int put_changes(cp_dbconn *c, const unsigned char *mk, buf_t *out, const char *sql, const id_list *ids,
                       const char *extra_param, uint32_t up_field, uint32_t rm_field, int kind, size_t *items)
{
    buf_t lit;
    buf_init(&lit);
    array_literal(&lit, ids->v, ids->n);
    if (lit.oom) return -1;
    const char *params[] = { lit.data, extra_param };
    PGresult *r = cp_db_exec(c, sql, extra_param ? 2 : 1, params);
    buf_free(&lit);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        rc = kind == 'k' ? put_key_row(out, up_field, r, i)
           : kind == 't' ? put_team_row(out, up_field, r, i) : put_model_row(c, mk, out, up_field, r, i);
        (*items)++;
    }
    for (size_t i = 0; i < ids->n && rc == 0; i++)
        if (!in_result(r, ids->v[i])) {
            rc = pbw_put_bytes_field(out, rm_field, ids->v[i], strlen(ids->v[i]));
            (*items)++;
        }
    PQclear(r);
    return rc;
}

int cp_heartbeat_build(uint64_t version, buf_t *out)
{
    buf_reset(out);
    if (pbw_put_varint_field(out, D_VERSION, version) < 0 || pbw_put_varint_field(out, D_BASE, version) < 0) return -1;
    return 0;
}

int cp_delta_build(cp_dbconn *c, const unsigned char *mk, uint64_t base, buf_t *out, uint64_t *version,
                   size_t *items, char *err, size_t errlen)
{
    char b_s[24], v_s[24];
    id_list keys = { 0 }, teams = { 0 }, models = { 0 }, creds = { 0 };
    PGresult *r = NULL;
    int resync = 0;
    buf_reset(out);
    *items = 0;
    if (begin_snapshot_tx(c, version) < 0) {
        snprintf(err, errlen, "delta: %s", cp_db_errmsg(c));
        return -1;
    }
    if (*version == base) { cp_db_rollback(c); return 0; }
    snprintf(b_s, sizeof b_s, "%" PRIu64, base);
    snprintf(v_s, sizeof v_s, "%" PRIu64, *version);
    const char *params[] = { b_s, v_s };
    if (*version < base) {
        resync = 1;    /* the database went back in time (restored?): start over */
    } else {
        if (!(r = cp_db_exec(c,
                "SELECT resource, resource_id, (SELECT count(DISTINCT config_version) FROM audit_log "
                "  WHERE config_version > $1::bigint AND config_version <= $2::bigint "
                "  AND resource IN ('keys', 'teams', 'models', 'credentials')) "
                "FROM audit_log WHERE config_version > $1::bigint AND config_version <= $2::bigint "
                "AND resource IN ('keys', 'teams', 'models', 'credentials') AND resource_id IS NOT NULL "
                "GROUP BY resource, resource_id", 2, params)))
            goto fail;
        int n = PQntuples(r);
        if ((n > 0 && strtoull(PQgetvalue(r, 0, 2), NULL, 10) != *version - base) || n == 0 ||
            n > CPLINK_DELTA_MAX_ITEMS) {
            resync = 1;   /* versions without an audit row, or too much at once */
        } else {
            for (int i = 0; i < n; i++) {
                const char *res = PQgetvalue(r, i, 0), *id = PQgetvalue(r, i, 1);
                id_list *l = !strcmp(res, "keys") ? &keys : !strcmp(res, "teams") ? &teams
                           : !strcmp(res, "models") ? &models : &creds;
                if (id_push(l, id) < 0) goto fail;
            }
        }
        PQclear(r);
        r = NULL;
    }
    if (pbw_put_varint_field(out, D_VERSION, *version) < 0 || pbw_put_varint_field(out, D_BASE, base) < 0 ||
        pbw_put_varint_field(out, D_GENERATED_AT, (uint64_t)time(NULL)) < 0)
        goto fail;
    if (resync) {
        if (pbw_put_varint_field(out, D_RESYNC, 1) < 0) goto fail;
    } else {
        buf_t credrefs;
        buf_init(&credrefs);
        for (size_t i = 0; i < creds.n; i++) {
            char ref[64];
            snprintf(ref, sizeof ref, "cred:%.40s", creds.v[i]);
            free(creds.v[i]);
            if (!(creds.v[i] = strdup(ref))) { buf_free(&credrefs); goto fail; }
        }
        array_literal(&credrefs, creds.v, creds.n);
        int rc = (keys.n && put_changes(c, mk, out,
                     "SELECT " KEY_COLS " FROM virtual_keys k WHERE k.id = ANY($1::uuid[]) AND " KEY_USABLE,
                     &keys, NULL, D_UPSERT_KEYS, D_REMOVE_KEYS, 'k', items) < 0) ||
                 (teams.n && put_changes(c, mk, out, "SELECT " TEAM_COLS " FROM teams t WHERE t.id = ANY($1::uuid[])",
                     &teams, NULL, D_UPSERT_TEAMS, D_REMOVE_TEAMS, 't', items) < 0) ||
                 ((models.n || creds.n) && put_changes(c, mk, out,
                     "SELECT " MODEL_COLS " FROM models m WHERE m.alias = ANY($1::text[]) OR EXISTS ("
                     "  SELECT 1 FROM jsonb_array_elements(m.deployments) d, jsonb_each(d) kv "
                     "  WHERE jsonb_typeof(d) = 'object' AND kv.value #>> '{}' = ANY($2::text[]))",
                     &models, credrefs.data ? credrefs.data : "{}", D_UPSERT_MODELS, D_REMOVE_MODELS, 'm', items) < 0);
        buf_free(&credrefs);
        if (rc) goto fail;
    }
    if (out->oom) goto fail;
    cp_db_rollback(c);   /* read only: nothing to commit */
    id_free(&keys); id_free(&teams); id_free(&models); id_free(&creds);
    if (resync) *items = CPLINK_DELTA_MAX_ITEMS + 1;
    return 0;
fail:
    snprintf(err, errlen, "delta: %s", out->oom ? "out of memory" : cp_db_errmsg(c));
    PQclear(r);
    cp_db_rollback(c);
    id_free(&keys); id_free(&teams); id_free(&models); id_free(&creds);
    return -1;
}
