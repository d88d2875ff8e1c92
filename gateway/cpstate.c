#include "cpstate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cplink.h"
#include "guardcfg.h"
#include "json.h"
#include "log.h"
#include "pbwire.h"
#include "secret.h"
#include "statefile.h"

/* Snapshot field numbers (proto/gateway.proto). */
enum { SNAP_VERSION = 1, SNAP_GENERATED_AT = 2, SNAP_MODELS = 3, SNAP_KEYS = 4, SNAP_TEAMS = 5, SNAP_KEY_COUNT = 6 };

#define ITEM_ARENA     (512u << 10)     /* the largest key: 1024 scoped aliases of 256 bytes */
#define ALIAS_MAX      200
#define DEPLOYMENTS_MAX 64
#define STRING_MAX     4096
#define MIN_KEY_BYTES  36               /* a key on the wire is at least its hash and id */

void cpstate_init(cpstate *s) { memset(s, 0, sizeof *s); }

static void free_models(Gw__ModelAlias **m, size_t n)
{
    for (size_t i = 0; i < n; i++) gw__model_alias__free_unpacked(m[i], NULL);
    free(m);
}

void cpstate_free(cpstate *s)
{
    keytab_unref(s->keys);
    free_models(s->models, s->nmodels);
    memset(s, 0, sizeof *s);
}

/* ---- checking items ---- */

static int check_str(const char *s, size_t min, size_t max)
{
    size_t n = strnlen(s, max + 1);
    return n >= min && n <= max;
}

static int key_from_pb(const Gw__Key *k, keytab_key *out, uint8_t team[16], char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!cplink_uuid_parse(k->id, out->id)) { snprintf(err, errlen, "key: id is not a UUID"); return -1; }
    if (k->key_sha256.len != 32) { snprintf(err, errlen, "key %s: key_sha256 must be 32 bytes", k->id); return -1; }
    if (!check_str(k->name, 0, KT_NAME_MAX)) { snprintf(err, errlen, "key %s: name too long", k->id); return -1; }
    if (k->team_id[0] && !cplink_uuid_parse(k->team_id, team)) {
        snprintf(err, errlen, "key %s: team_id is not a UUID", k->id);
        return -1;
    }
    if (!k->all_models) {
        if (k->n_models > KT_MODELS_MAX) { snprintf(err, errlen, "key %s: too many models", k->id); return -1; }
        for (size_t i = 0; i < k->n_models; i++)
            if (!check_str(k->models[i], 1, 256)) { snprintf(err, errlen, "key %s: bad model name", k->id); return -1; }
    }
    int period = keytab_period_parse(k->budget_period);
    if (period < 0) { snprintf(err, errlen, "key %s: bad budget_period", k->id); return -1; }
    memcpy(out->sha256, k->key_sha256.data, 32);
    out->has_id = 1;
    out->name = k->name;
    out->team_id = k->team_id[0] ? team : NULL;
    out->all_models = k->all_models;
    out->models = (const char *const *)k->models;
    out->nmodels = k->all_models ? 0 : k->n_models;
    out->rpm_limit = k->rpm_limit;
    out->tpm_limit = k->tpm_limit;
    out->budget_usd = k->budget_usd;
    out->budget_period = period;
    out->expires_at = k->expires_at;
    out->blocked = k->blocked;
    out->budget_exceeded = k->budget_exceeded;
    out->budget_spent_usd = isfinite(k->budget_spent_usd) && k->budget_spent_usd > 0 ? k->budget_spent_usd : 0;
    return 0;
}

static int team_from_pb(const Gw__Team *t, keytab_team *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int period = keytab_period_parse(t->budget_period);
    if (!cplink_uuid_parse(t->id, out->id) || !check_str(t->name, 0, 1024) || period < 0) {
        snprintf(err, errlen, "team: bad id, name or budget_period");
        return -1;
    }
    out->name = t->name;
    out->rpm_limit = t->rpm_limit;
    out->tpm_limit = t->tpm_limit;
    out->budget_usd = t->budget_usd;
    out->budget_period = period;
    out->blocked = t->blocked;
    out->budget_exceeded = t->budget_exceeded;
    out->budget_spent_usd = isfinite(t->budget_spent_usd) && t->budget_spent_usd > 0 ? t->budget_spent_usd : 0;
    return 0;
}

/* a price override component: "not set" (< 0) or a finite price in range; NaN fails both */
static int price_ok(double v) { return v < 0 || (v >= 0 && v <= PRICE_MAX_PER_MTOK); }

static int check_model(const Gw__ModelAlias *m, char *err, size_t errlen)
{
    if (!check_str(m->alias, 1, ALIAS_MAX) || !check_str(m->strategy, 0, 64) || !check_str(m->router_json, 0, 8192) ||
        !check_str(m->prompt_json, 0, 4 * PROMPT_TEXT_MAX) ||
        !check_str(m->guardrails_json, 0, 1u << 20) ||
        m->n_deployments == 0 || m->n_deployments > DEPLOYMENTS_MAX || m->n_fallbacks > DEPLOYMENTS_MAX) {
        snprintf(err, errlen, "model: bad alias, strategy, deployments or fallbacks");
        return -1;
    }
    for (size_t i = 0; i < m->n_fallbacks; i++)
        if (!check_str(m->fallbacks[i], 1, ALIAS_MAX)) {
            snprintf(err, errlen, "model %s: fallback %zu is not an alias", m->alias, i);
            return -1;
        }
    for (size_t i = 0; i < m->n_deployments; i++) {
        const Gw__Deployment *d = m->deployments[i];
        if (!check_str(d->provider, 1, 64) || !check_str(d->model, 0, 256) || !check_str(d->base_url, 0, STRING_MAX) ||
            !check_str(d->api_key, 0, 16384) || !check_str(d->api_key_ref, 0, STRING_MAX) || d->n_extra > 64) {
            snprintf(err, errlen, "model %s: deployment %zu has a bad or oversized field", m->alias, i);
            return -1;
        }
        if (d->has_price_override && (!price_ok(d->input_cost_per_mtok) || !price_ok(d->cached_input_cost_per_mtok) ||
                                      !price_ok(d->output_cost_per_mtok))) {
            snprintf(err, errlen, "model %s: deployment %zu has a bad price override", m->alias, i);
            return -1;
        }
    }
    return 0;
}

/* ---- snapshots ---- */

/* Walks a serialized Snapshot. With s == NULL it only checks; otherwise it
 * fills keys and models (the caller's fresh ones). */
static int walk_snapshot(const uint8_t *data, size_t len, uint64_t *version, keytab **keys,
                         Gw__ModelAlias ***models, size_t *nmodels, char *err, size_t errlen)
{
    pbw_reader rd;
    pbw_field f;
    pbw_arena arena;
    int rc, build = keys != NULL;
    uint64_t ver = 0;
    size_t nm = 0;
    if (pbw_arena_init(&arena, ITEM_ARENA) < 0) { snprintf(err, errlen, "out of memory"); return -1; }
    pbw_reader_init(&rd, data, len);
    while ((rc = pbw_next(&rd, &f)) == 1) {
        if (f.number == SNAP_VERSION && f.wire == PBW_VARINT) {
            ver = f.varint;
        } else if (f.number == SNAP_KEY_COUNT && f.wire == PBW_VARINT && build && !*keys) {
            uint64_t hint = f.varint < len / MIN_KEY_BYTES ? f.varint : len / MIN_KEY_BYTES;
            if (!(*keys = keytab_new((size_t)hint))) { snprintf(err, errlen, "out of memory"); goto fail; }
        } else if (f.number == SNAP_KEYS && f.wire == PBW_LEN) {
            pbw_arena_reset(&arena);
            Gw__Key *k = gw__key__unpack(&arena.alloc, f.len, f.data);
            keytab_key kk;
            uint8_t team[16];
            const char *clash = NULL;
            if (!k) { snprintf(err, errlen, "snapshot: a key does not parse"); goto fail; }
            if (key_from_pb(k, &kk, team, err, errlen) < 0) goto fail;
            if (build && !*keys && !(*keys = keytab_new(0))) { snprintf(err, errlen, "out of memory"); goto fail; }
            if (build && keytab_upsert(*keys, &kk, &clash) < 0) {
                snprintf(err, errlen, "snapshot: key %s: %s", k->id, clash ? "hash used by another key" : "out of memory");
                goto fail;
            }
        } else if (f.number == SNAP_TEAMS && f.wire == PBW_LEN) {
            pbw_arena_reset(&arena);
            Gw__Team *t = gw__team__unpack(&arena.alloc, f.len, f.data);
            keytab_team kt;
            if (!t) { snprintf(err, errlen, "snapshot: a team does not parse"); goto fail; }
            if (team_from_pb(t, &kt, err, errlen) < 0) goto fail;
            if (build && !*keys && !(*keys = keytab_new(0))) { snprintf(err, errlen, "out of memory"); goto fail; }
            if (build && keytab_team_upsert(*keys, &kt) < 0) { snprintf(err, errlen, "out of memory"); goto fail; }
        } else if (f.number == SNAP_MODELS && f.wire == PBW_LEN) {
            if (nm >= CPSTATE_MODELS_MAX) { snprintf(err, errlen, "snapshot: too many models"); goto fail; }
            Gw__ModelAlias *m = gw__model_alias__unpack(NULL, f.len, f.data);
            if (!m) { snprintf(err, errlen, "snapshot: a model does not parse"); goto fail; }
            if (check_model(m, err, errlen) < 0) { gw__model_alias__free_unpacked(m, NULL); goto fail; }
            if (!build) { gw__model_alias__free_unpacked(m, NULL); nm++; continue; }
            // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers
            Gw__ModelAlias **mm = realloc(*models, (nm + 1) * sizeof *mm);
            if (!mm) { gw__model_alias__free_unpacked(m, NULL); snprintf(err, errlen, "out of memory"); goto fail; }
            *models = mm;
            mm[nm++] = m;
            *nmodels = nm;
        }
        /* other fields: newer control planes may add them */
    }
    if (rc < 0) { snprintf(err, errlen, "snapshot: malformed protobuf"); goto fail; }
    if (build && !*keys && !(*keys = keytab_new(0))) { snprintf(err, errlen, "out of memory"); goto fail; }
    pbw_arena_free(&arena);
    *version = ver;
    return 0;
fail:
    pbw_arena_free(&arena);
    return -1;
}

int cpstate_check_snapshot(const uint8_t *data, size_t len, uint64_t *version, char *err, size_t errlen)
{
    return walk_snapshot(data, len, version, NULL, NULL, NULL, err, errlen);
}

int cpstate_load_snapshot(cpstate *s, const uint8_t *data, size_t len, char *err, size_t errlen)
{
    keytab *keys = NULL;
    Gw__ModelAlias **models = NULL;
    size_t nmodels = 0;
    uint64_t version;
    if (walk_snapshot(data, len, &version, &keys, &models, &nmodels, err, errlen) < 0) {
        keytab_unref(keys);
        free_models(models, nmodels);
        return -1;
    }
    cpstate_free(s);
    s->loaded = 1;
    s->version = version;
    s->keys = keys;
    s->models = models;
    s->nmodels = nmodels;
    return 0;
}

/* ---- deltas ---- */

int cpstate_check_delta(const Gw__Delta *d, char *err, size_t errlen)
{
    keytab_key kk;
    keytab_team kt;
    uint8_t team[16];
    if (d->version < d->base_version) { snprintf(err, errlen, "delta: version before base_version"); return -1; }
    for (size_t i = 0; i < d->n_upsert_keys; i++)
        if (key_from_pb(d->upsert_keys[i], &kk, team, err, errlen) < 0) return -1;
    for (size_t i = 0; i < d->n_remove_key_ids; i++)
        if (!cplink_uuid_parse(d->remove_key_ids[i], NULL)) { snprintf(err, errlen, "delta: bad key id"); return -1; }
    for (size_t i = 0; i < d->n_upsert_teams; i++)
        if (team_from_pb(d->upsert_teams[i], &kt, err, errlen) < 0) return -1;
    for (size_t i = 0; i < d->n_remove_team_ids; i++)
        if (!cplink_uuid_parse(d->remove_team_ids[i], NULL)) { snprintf(err, errlen, "delta: bad team id"); return -1; }
    if (d->n_upsert_models > CPSTATE_MODELS_MAX || d->n_remove_model_aliases > CPSTATE_MODELS_MAX) {
        snprintf(err, errlen, "delta: too many models");
        return -1;
    }
    for (size_t i = 0; i < d->n_upsert_models; i++)
        if (check_model(d->upsert_models[i], err, errlen) < 0) return -1;
    for (size_t i = 0; i < d->n_remove_model_aliases; i++)
        if (!check_str(d->remove_model_aliases[i], 1, ALIAS_MAX)) { snprintf(err, errlen, "delta: bad alias"); return -1; }
    return 0;
}

/* An owned copy of a message that belongs to a delta. */
static Gw__ModelAlias *copy_model(const Gw__ModelAlias *m)
{
    size_t n = gw__model_alias__get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return NULL;
    gw__model_alias__pack(m, buf);
    Gw__ModelAlias *c = gw__model_alias__unpack(NULL, n, buf);
    free(buf);
    return c;
}

static void remove_model(cpstate *s, const char *alias)
{
    for (size_t i = 0; i < s->nmodels; i++) {
        if (strcmp(s->models[i]->alias, alias)) continue;
        gw__model_alias__free_unpacked(s->models[i], NULL);
        s->models[i] = s->models[--s->nmodels];
        return;
    }
}

int cpstate_apply_delta(cpstate *s, const Gw__Delta *d, int *models_changed, char *err, size_t errlen)
{
    *models_changed = 0;
    if (!s->keys && !(s->keys = keytab_new(0))) goto oom;
    for (size_t i = 0; i < d->n_upsert_teams; i++) {
        keytab_team kt;
        if (team_from_pb(d->upsert_teams[i], &kt, err, errlen) < 0 || keytab_team_upsert(s->keys, &kt) < 0) goto oom;
    }
    for (size_t i = 0; i < d->n_remove_team_ids; i++) {
        uint8_t id[16];
        if (cplink_uuid_parse(d->remove_team_ids[i], id)) keytab_team_remove(s->keys, id);
    }
    for (size_t i = 0; i < d->n_remove_key_ids; i++) {
        uint8_t id[16];
        if (cplink_uuid_parse(d->remove_key_ids[i], id)) keytab_remove(s->keys, id);
    }
    for (size_t i = 0; i < d->n_upsert_keys; i++) {
        keytab_key kk;
        uint8_t team[16];
        const char *clash = NULL;
        if (key_from_pb(d->upsert_keys[i], &kk, team, err, errlen) < 0) return -1;
        if (keytab_upsert(s->keys, &kk, &clash) < 0) {
            snprintf(err, errlen, "key %s: %s", d->upsert_keys[i]->id, clash ? "hash used by another key" : "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < d->n_remove_model_aliases; i++) {
        remove_model(s, d->remove_model_aliases[i]);
        *models_changed = 1;
    }
    for (size_t i = 0; i < d->n_upsert_models; i++) {
        Gw__ModelAlias *m = copy_model(d->upsert_models[i]);
        if (!m) goto oom;
        remove_model(s, m->alias);
        // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers
        Gw__ModelAlias **mm = s->nmodels < CPSTATE_MODELS_MAX ? realloc(s->models, (s->nmodels + 1) * sizeof *mm) : NULL;
        if (!mm) { gw__model_alias__free_unpacked(m, NULL); goto oom; }
        s->models = mm;
        s->models[s->nmodels++] = m;
        *models_changed = 1;
    }
    s->version = d->version;
    return 0;
oom:
    snprintf(err, errlen, "out of memory applying delta %llu", (unsigned long long)d->version);
    return -1;
}

/* ---- disk ---- */

typedef struct replay_ctx {
    cpstate *s;
    long     applied;
    int      failed;
} replay_ctx;

static int replay_one(void *ud, const uint8_t *rec, size_t len)
{
    replay_ctx *c = ud;
    char err[256];
    int mc;
    Gw__Delta *d = gw__delta__unpack(NULL, len, rec);
    if (!d) { c->failed = 1; return -1; }
    int rc = 0;
    if (d->version <= c->s->version) {
        /* older than the snapshot: already in it */
    } else if (d->base_version != c->s->version || cpstate_check_delta(d, err, sizeof err) < 0 ||
               cpstate_apply_delta(c->s, d, &mc, err, sizeof err) < 0) {
        c->failed = 1;
        rc = -1;
    } else {
        c->applied++;
    }
    gw__delta__free_unpacked(d, NULL);
    return rc;
}

int cpstate_load_disk(cpstate *s, const char *state_dir, char *err, size_t errlen)
{
    const uint8_t *data;
    size_t len;
    int rc = statefile_map_snapshot(state_dir, &data, &len, err, errlen);
    if (rc <= 0) return rc;
    rc = cpstate_load_snapshot(s, data, len, err, errlen);
    statefile_unmap(data, len);
    if (rc < 0) return -1;
    replay_ctx c = { .s = s };
    if (statefile_journal_each(state_dir, replay_one, &c) < 0)
        log_warn("state_dir %s: journal unreadable; using the snapshot alone", state_dir);
    /* a journal that stops short only leaves us behind: the agent's
     * heartbeat shows a newer version and we reload */
    return 1;
}

/* ---- to a gw_config ---- */

static char *dup_nonempty(const char *s, int *oom)
{
    if (!s || !*s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

static long clamp(int64_t v, long lo, long hi) { return v < lo ? lo : v > hi ? hi : (long)v; }

/* Provider settings beyond the common ones ride in "extra": plain values
 * (preset, api_version, region) and, for AWS credentials, env:/file:
 * references resolved here as api_key_ref is (never a secret on the wire). */
static int deployment_extra(const Gw__Deployment *in, gw_deployment *d, char *err, size_t errlen)
{
    for (size_t i = 0; i < in->n_extra; i++) {
        const char *k = in->extra[i]->key, *v = in->extra[i]->value;
        char **dst = NULL;
        int ref = 0;
        if (!k || !v || !*v) continue;
        if (!strcmp(k, "preset")) dst = &d->preset;
        else if (!strcmp(k, "api_version")) dst = &d->api_version;
        else if (!strcmp(k, "region")) dst = &d->region;
        else if (!strcmp(k, "aws_access_key_id")) { dst = &d->aws_access_key_id; ref = 1; }
        else if (!strcmp(k, "aws_secret_access_key")) { dst = &d->aws_secret_access_key; ref = 1; }
        else if (!strcmp(k, "aws_session_token")) { dst = &d->aws_session_token; ref = 1; }
        else if (!strcmp(k, "rpm_limit") || !strcmp(k, "tpm_limit")) {
            /* the usage strategy's caps; the control plane sends numbers as text */
            char *end;
            long long x = strtoll(v, &end, 10);
            if (*end || x < 1 || x > 1000000000000LL) { snprintf(err, errlen, "%s must be a positive integer", k); return -1; }
            if (k[0] == 'r') d->rpm_limit = x; else d->tpm_limit = x;
            continue;
        }
        if (!dst || *dst) continue;
        if (ref && strncmp(v, "env:", 4) && strncmp(v, "file:", 5)) {
            snprintf(err, errlen, "%s must be an env: or file: reference", k);
            return -1;
        }
        if (!(*dst = ref ? secret_resolve(v, err, errlen) : strdup(v))) {
            if (!ref) snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* The alias's router settings: a JSON object of the YAML `router:` fields.
 * A bad one is logged and the defaults are kept: the alias still serves. */
static void route_policy_from_json(const char *alias, const char *text, gw_route_policy *p)
{
    if (!text[0]) return;
    json_error jerr;
    json_limits lim = { .max_depth = 2, .max_bytes = 8192 };
    json_doc *doc = json_parse(text, strlen(text), &lim, &jerr);
    const json_value *o = doc ? json_root(doc) : NULL;
    if (!o || o->type != JSON_OBJECT) { log_warn("model %s: router settings are not a JSON object", alias); goto out; }
    for (const json_value *v = o->first; v; v = v->next) {
        char num[40], why[160];
        const char *val = v->type == JSON_STRING ? v->str : NULL;
        if (v->type == JSON_NUMBER) { snprintf(num, sizeof num, "%.17g", v->num); val = num; }
        if (!val || config_route_policy_set(p, v->key, val, why, sizeof why) < 0)
            log_warn("model %s: router.%.40s ignored: %s", alias, v->key, val ? why : "must be a number or a string");
    }
out:
    json_doc_free(doc);
}

/* The alias's semantic cache: a JSON object of the YAML `cache.semantic`
 * fields. A bad one is logged and the alias serves without it. */
static gw_semantic *semantic_from_json(const char *alias, const char *text)
{
    if (!text[0] || !strcmp(text, "null")) return NULL;
    json_error jerr;
    json_limits lim = { .max_depth = 2, .max_bytes = 8192 };
    json_doc *doc = json_parse(text, strlen(text), &lim, &jerr);
    const json_value *o = doc ? json_root(doc) : NULL;
    gw_semantic *s = o && o->type == JSON_OBJECT ? config_semantic_new() : NULL;
    for (const json_value *v = s ? o->first : NULL; v && s; v = v->next) {
        char num[40], why[160];
        const char *val = v->type == JSON_STRING ? v->str : NULL;
        if (v->type == JSON_NUMBER) { snprintf(num, sizeof num, "%.17g", v->num); val = num; }
        if (!val || config_semantic_set(s, v->key, val, why, sizeof why) < 0) {
            log_warn("model %s: cache.semantic.%.40s: %s; no semantic cache", alias, v->key, val ? why : "not a number or a string");
            config_semantic_free(s);
            s = NULL;
        }
    }
    if (!o || o->type != JSON_OBJECT) log_warn("model %s: cache.semantic is not a JSON object; no semantic cache", alias);
    json_doc_free(doc);
    return s;
}

static int build_deployment(const Gw__Deployment *in, const gw_config *base, const char *alias, gw_deployment *d,
                            char *err, size_t errlen)
{
    int oom = 0;
    memset(d, 0, sizeof *d);
    d->provider_name = dup_nonempty(in->provider, &oom);
    d->model = dup_nonempty(in->model[0] ? in->model : alias, &oom);
    d->base_url = dup_nonempty(in->base_url, &oom);
    d->weight = (int)clamp(in->weight, 0, 1000000);
    d->latency_ms = clamp(in->latency_ms, 0, 3600000);
    d->rpm_limit = d->tpm_limit = -1;
    d->timeouts = base->timeouts;
    d->price_override = PRICE_OVERRIDE_NONE;
    if (in->has_price_override) {
        /* check_model bounded them; < 0 stays "not set" */
        d->price_override.input = in->input_cost_per_mtok < 0 ? -1 : in->input_cost_per_mtok;
        d->price_override.cached_input = in->cached_input_cost_per_mtok < 0 ? -1 : in->cached_input_cost_per_mtok;
        d->price_override.output = in->output_cost_per_mtok < 0 ? -1 : in->output_cost_per_mtok;
    }
    if (in->timeouts) {
        if (in->timeouts->connect_ms > 0) d->timeouts.connect_ms = clamp(in->timeouts->connect_ms, 1, 86400000);
        if (in->timeouts->first_byte_ms > 0) d->timeouts.first_byte_ms = clamp(in->timeouts->first_byte_ms, 1, 86400000);
        if (in->timeouts->idle_ms > 0) d->timeouts.idle_ms = clamp(in->timeouts->idle_ms, 1, 86400000);
        if (in->timeouts->total_ms > 0) d->timeouts.total_ms = clamp(in->timeouts->total_ms, 1, 86400000);
    }
    if (oom || !d->provider_name) { snprintf(err, errlen, "out of memory or no provider"); goto fail; }
    if (in->api_key[0]) {
        if (!(d->api_key = strdup(in->api_key))) { snprintf(err, errlen, "out of memory"); goto fail; }
    } else if (in->api_key_ref[0]) {
        /* only references are resolved here: a literal would have been refused upstream */
        if (strncmp(in->api_key_ref, "env:", 4) && strncmp(in->api_key_ref, "file:", 5)) {
            snprintf(err, errlen, "api_key_ref must be env: or file:");
            goto fail;
        }
        if (!(d->api_key = secret_resolve(in->api_key_ref, err, errlen))) goto fail;
    }
    if (deployment_extra(in, d, err, errlen) < 0) goto fail;
    if (config_deployment_prepare(d, err, errlen) < 0) goto fail;
    return 0;
fail:
    config_deployment_free(d);
    return -1;
}

/* Each alias's guardrails (a JSON list, checked by the control plane):
 * compiled once per snapshot. A list this gateway cannot compile is logged
 * and the alias served without it. -1: out of memory. */
static int guardrails_from_snapshot(const cpstate *s, gw_config *c)
{
    for (size_t i = 0; i < s->nmodels; i++) {
        const Gw__ModelAlias *in = s->models[i];
        if (!in->guardrails_json || !in->guardrails_json[0]) continue;
        char why[320];
        guard_set *one = guard_set_parse_text(in->guardrails_json, strlen(in->guardrails_json), why, sizeof why);
        if (!one) { log_warn("model %s: guardrails ignored: %s", in->alias, why); continue; }
        if ((!c->guard && !(c->guard = guard_set_new())) ||
            guard_set_adopt(c->guard, one, GUARD_BIND_MODEL, in->alias, why, sizeof why) < 0) {
            if (!c->guard) guard_set_free(one);
            return -1;
        }
    }
    return 0;
}

gw_config *cpstate_build_config(const cpstate *s, const gw_config *base, char *err, size_t errlen)
{
    gw_config *c = config_with_settings(base, s->keys);
    if (!c) { snprintf(err, errlen, "out of memory"); return NULL; }
    c->version = s->version;
    gw_model *models = calloc(s->nmodels ? s->nmodels : 1, sizeof *models);
    size_t n = 0;
    if (!models) goto oom;
    for (size_t i = 0; i < s->nmodels; i++) {
        const Gw__ModelAlias *in = s->models[i];
        gw_model *m = &models[n];
        char why[256];
        int oom = 0;
        m->alias = dup_nonempty(in->alias, &oom);
        m->strategy = dup_nonempty(in->strategy[0] ? in->strategy : "weighted", &oom);
        m->cache_ttl_s = in->cache_ttl_s > 0 && in->cache_ttl_s <= 30L * 86400 ? (long)in->cache_ttl_s : 0;
        m->cache_shared = in->cache_shared;
        m->deployments = calloc(in->n_deployments, sizeof *m->deployments);
        config_route_policy_defaults(&m->policy);
        route_policy_from_json(in->alias, in->router_json, &m->policy);
        if (!(m->prompt = prompt_from_json(in->prompt_json, why, sizeof why)) && why[0])   /* a bad one: no decoration */
            log_warn("model %s: prompt ignored: %s", in->alias, why);
        m->semantic = semantic_from_json(in->alias, in->semantic_json);
        if (in->n_fallbacks && (m->fallbacks = calloc(in->n_fallbacks, sizeof *m->fallbacks)))
            for (size_t j = 0; j < in->n_fallbacks; j++)
                if (in->fallbacks[j][0] && !(m->fallbacks[m->nfallbacks++] = strdup(in->fallbacks[j]))) oom = 1;
        if (in->n_fallbacks && !m->fallbacks) oom = 1;
        if (oom || !m->alias || !m->deployments) { config_model_free(m); goto oom; }
        for (size_t j = 0; j < in->n_deployments; j++) {
            if (build_deployment(in->deployments[j], base, in->alias, &m->deployments[m->ndeployments], why, sizeof why) < 0) {
                log_warn("model %s: deployment %zu (%s) is unusable here and skipped: %s", in->alias, j,
                         in->deployments[j]->provider, why);
                continue;
            }
            m->total_weight += m->deployments[m->ndeployments++].weight;
        }
        if (m->ndeployments == 0 || m->total_weight == 0) {
            log_warn("model %s: no usable deployment on this gateway; the alias is not served", in->alias);
            config_model_free(m);
            memset(m, 0, sizeof *m);
            continue;
        }
        n++;
    }
    if (config_set_models(c, models, n, err, errlen) < 0) { config_unref(c); return NULL; }
    for (size_t i = 0; i < c->nmodels; i++) {   /* the embedding alias must be here and able to embed */
        char why[300];
        gw_model *m = &c->models[i];
        if (m->semantic && config_semantic_resolve(c, m, why, sizeof why) < 0) {
            log_warn("model %s: cache.semantic.embedding_model: %s; no semantic cache", m->alias, why);
            config_semantic_free(m->semantic);
            m->semantic = NULL;
        }
    }
    if (guardrails_from_snapshot(s, c) < 0) { config_unref(c); snprintf(err, errlen, "out of memory"); return NULL; }
    return c;
oom:
    for (size_t i = 0; i < n; i++) config_model_free(&models[i]);
    free(models);
    config_unref(c);
    snprintf(err, errlen, "out of memory");
    return NULL;
}
