/* Parses gateway.yaml with libyaml's document API into a gw_config.
 * Every error names the field path so --check-config can point at it. */
#include "config.h"
#include "cplinktls.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "log.h"
#include "providers/provider.h"
#include "guardcfg.h"
#include "secret.h"

#define CONFIG_FILE_MAX (16u << 20)

typedef struct parse_ctx {
    yaml_document_t *doc;
    char            *err;
    size_t           errlen;
    int              failed;
} parse_ctx;

static uint64_t g_version;

/* A YAML key while parsing; it goes into the key table once all are read. */
typedef struct yaml_key {
    char     *name;
    uint8_t   sha256[32];
    char    **models;          /* NULL = every alias */
    size_t    nmodels;
    long      rpm_limit, tpm_limit;
    double    budget_usd;
    int       has_budget;
    char     *budget_period;
    char    **guardrails;
    size_t    nguardrails;
} yaml_key;

static void fail(parse_ctx *p, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(parse_ctx *p, const char *path, const char *fmt, ...)
{
    if (p->failed) return;  /* keep the first error: it is the one to fix */
    p->failed = 1;
    int n = snprintf(p->err, p->errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= p->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static yaml_node_t *node(parse_ctx *p, int id) { return yaml_document_get_node(p->doc, id); }

static const char *scalar(yaml_node_t *n)
{
    return (n && n->type == YAML_SCALAR_NODE) ? (const char *)n->data.scalar.value : NULL;
}

/* libyaml accepts a key twice in one mapping; a config never means that:
 * name the mistake instead of keeping one value (and leaking the other). */
static int dup_key(parse_ctx *p, const char *path, yaml_node_t *m, yaml_node_pair_t *pr, const char *k)
{
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; k && q < pr; q++) {
        const char *qk = scalar(node(p, q->key));
        if (qk && !strcmp(qk, k)) { fail(p, path, "appears twice in the same mapping"); return 1; }
    }
    return 0;
}

static char *xstrdup(parse_ctx *p, const char *path, const char *s)
{
    char *d = strdup(s);
    if (!d) fail(p, path, "out of memory");
    return d;
}

static int want_string(parse_ctx *p, const char *path, yaml_node_t *v, char **out)
{
    const char *s = scalar(v);
    if (!s) { fail(p, path, "must be a string"); return -1; }
    free(*out);
    *out = xstrdup(p, path, s);
    return *out ? 0 : -1;
}

static int want_long(parse_ctx *p, const char *path, yaml_node_t *v, long min, long max, long *out)
{
    const char *s = scalar(v);
    char *end;
    if (!s || !*s) { fail(p, path, "must be an integer"); return -1; }
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || *end) { fail(p, path, "must be an integer, got \"%s\"", s); return -1; }
    if (x < min || x > max) { fail(p, path, "must be between %ld and %ld, got %ld", min, max, x); return -1; }
    *out = x;
    return 0;
}

static int want_double(parse_ctx *p, const char *path, yaml_node_t *v, double *out)
{
    const char *s = scalar(v);
    char *end;
    if (!s || !*s) { fail(p, path, "must be a number"); return -1; }
    errno = 0;
    double x = strtod(s, &end);
    if (errno || *end || x < 0) { fail(p, path, "must be a non-negative number, got \"%s\"", s); return -1; }
    *out = x;
    return 0;
}

static int want_price(parse_ctx *p, const char *path, yaml_node_t *v, double *out)
{
    double x;
    if (want_double(p, path, v, &x) < 0) return -1;
    if (!(x <= PRICE_MAX_PER_MTOK)) { fail(p, path, "must be at most %g USD per million tokens", PRICE_MAX_PER_MTOK); return -1; }
    *out = x;
    return 0;
}

static int want_size(parse_ctx *p, const char *path, yaml_node_t *v, long min, long max, size_t *out)
{
    long x;
    if (want_long(p, path, v, min, max, &x) < 0) return -1;
    *out = (size_t)x;
    return 0;
}

/* host:port, [v6]:port or :port */
static int parse_listen(parse_ctx *p, const char *path, const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon) { fail(p, path, "must be host:port, got \"%s\"", s); return -1; }
    char *end;
    long x = strtol(colon + 1, &end, 10);
    if (*end || x < 0 || x > 65535 || colon[1] == '\0') { fail(p, path, "bad port in \"%s\"", s); return -1; }
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') { s++; hl -= 2; }
    free(*host);
    *host = strndup(hl ? s : "0.0.0.0", hl ? hl : 7);
    if (!*host) { fail(p, path, "out of memory"); return -1; }
    *port = (int)x;
    return 0;
}

static int parse_timeouts(parse_ctx *p, const char *path, yaml_node_t *m, upstream_timeouts *t)
{
    if (m->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return -1; }
    char fp[256];
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *v = node(p, pr->value);
        snprintf(fp, sizeof fp, "%s.%s", path, k ? k : "?");
        if (dup_key(p, fp, m, pr, k)) break;
        long *dst = NULL;
        if (!k) { fail(p, path, "keys must be strings"); return -1; }
        if (!strcmp(k, "connect_ms")) dst = &t->connect_ms;
        else if (!strcmp(k, "first_byte_ms")) dst = &t->first_byte_ms;
        else if (!strcmp(k, "idle_ms")) dst = &t->idle_ms;
        else if (!strcmp(k, "total_ms")) dst = &t->total_ms;
        else { fail(p, fp, "unknown field"); return -1; }
        if (want_long(p, fp, v, 1, 86400000, dst) < 0) return -1;
    }
    return 0;
}

static void free_secret(char *s)
{
    if (s) { OPENSSL_cleanse(s, strlen(s)); free(s); }
}

void config_deployment_free(gw_deployment *d)
{
    free(d->provider_name); free(d->model); free(d->base_url);
    free(d->preset); free(d->region);
    free_secret(d->api_version); free_secret(d->aws_access_key_id);
    free_secret(d->aws_secret_access_key); free_secret(d->aws_session_token);
    if (d->api_key) { OPENSSL_cleanse(d->api_key, strlen(d->api_key)); free(d->api_key); }
    if (d->auth_header) { OPENSSL_cleanse(d->auth_header, strlen(d->auth_header)); free(d->auth_header); }
}

static int parse_deployment(parse_ctx *p, const char *path, yaml_node_t *m, gw_deployment *d,
                            const upstream_timeouts *defaults)
{
    char fp[256];
    char *api_key_ref = NULL;
    /* settings that may be secret references (env:, file:), resolved below */
    static const char *const secret_fields[] = { "api_version", "aws_access_key_id", "aws_secret_access_key",
                                                 "aws_session_token", "region" };
    enum { NSECRET = sizeof secret_fields / sizeof secret_fields[0] };
    char *secret_refs[NSECRET] = { 0 };
    char **secret_dst[NSECRET] = { &d->api_version, &d->aws_access_key_id, &d->aws_secret_access_key,
                                   &d->aws_session_token, &d->region };
    d->weight = 1;
    d->rpm_limit = d->tpm_limit = -1;
    d->timeouts = *defaults;
    d->price_override = PRICE_OVERRIDE_NONE;
    if (m->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return -1; }
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *v = node(p, pr->value);
        if (!k) { fail(p, path, "keys must be strings"); break; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (dup_key(p, fp, m, pr, k)) break;
        long x;
        if (!strcmp(k, "provider")) want_string(p, fp, v, &d->provider_name);
        else if (!strcmp(k, "model")) want_string(p, fp, v, &d->model);
        else if (!strcmp(k, "base_url")) want_string(p, fp, v, &d->base_url);
        else if (!strcmp(k, "api_key")) want_string(p, fp, v, &api_key_ref);
        else if (!strcmp(k, "preset")) want_string(p, fp, v, &d->preset);
        else if (!strcmp(k, "api_version")) want_string(p, fp, v, &secret_refs[0]);
        else if (!strcmp(k, "aws_access_key_id")) want_string(p, fp, v, &secret_refs[1]);
        else if (!strcmp(k, "aws_secret_access_key")) want_string(p, fp, v, &secret_refs[2]);
        else if (!strcmp(k, "aws_session_token")) want_string(p, fp, v, &secret_refs[3]);
        else if (!strcmp(k, "region")) want_string(p, fp, v, &secret_refs[4]);
        else if (!strcmp(k, "weight")) { if (want_long(p, fp, v, 0, 1000000, &x) == 0) d->weight = (int)x; }
        else if (!strcmp(k, "latency_ms")) want_long(p, fp, v, 0, 3600000, &d->latency_ms);
        else if (!strcmp(k, "rpm_limit")) { if (want_long(p, fp, v, 1, 1000000000, &x) == 0) d->rpm_limit = x; }
        else if (!strcmp(k, "tpm_limit")) { if (want_long(p, fp, v, 1, 1000000000000, &x) == 0) d->tpm_limit = x; }
        else if (!strcmp(k, "timeouts")) parse_timeouts(p, fp, v, &d->timeouts);
        else if (!strcmp(k, "input_cost_per_mtok")) want_price(p, fp, v, &d->price_override.input);
        else if (!strcmp(k, "cached_input_cost_per_mtok")) want_price(p, fp, v, &d->price_override.cached_input);
        else if (!strcmp(k, "output_cost_per_mtok")) want_price(p, fp, v, &d->price_override.output);
        else fail(p, fp, "unknown field");
        if (p->failed) break;
    }
    if (!p->failed && !d->provider_name) { snprintf(fp, sizeof fp, "%s.provider", path); fail(p, fp, "is required"); }
    if (!p->failed && !(d->provider = provider_find(d->provider_name))) {
        snprintf(fp, sizeof fp, "%s.provider", path);
        fail(p, fp, "unknown provider \"%s\" (known: %s)", d->provider_name, provider_names());
    }
    if (!p->failed && !d->model) { snprintf(fp, sizeof fp, "%s.model", path); fail(p, fp, "is required"); }
    if (!p->failed && api_key_ref) {
        char why[200];
        snprintf(fp, sizeof fp, "%s.api_key", path);
        if (!(d->api_key = secret_resolve(api_key_ref, why, sizeof why))) fail(p, fp, "%s", why);
    }
    if (api_key_ref) { OPENSSL_cleanse(api_key_ref, strlen(api_key_ref)); free(api_key_ref); }
    for (size_t i = 0; i < NSECRET; i++) {
        if (!p->failed && secret_refs[i]) {
            char why[200];
            snprintf(fp, sizeof fp, "%s.%s", path, secret_fields[i]);
            if (!(*secret_dst[i] = secret_resolve(secret_refs[i], why, sizeof why))) fail(p, fp, "%s", why);
        }
        free_secret(secret_refs[i]);
    }
    if (!p->failed && d->provider->prepare) {
        char why[200];
        if (d->provider->prepare(d, why, sizeof why) < 0) fail(p, path, "%s", why);
    }
    if (!p->failed) config_deployment_price(d);
    return p->failed ? -1 : 0;
}

static int parse_string_list(parse_ctx *p, const char *path, yaml_node_t *v, char ***out, size_t *n)
{
    if (v->type != YAML_SEQUENCE_NODE) { fail(p, path, "must be a list of strings"); return -1; }
    size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    *out = calloc(cnt ? cnt : 1, sizeof(char *));
    if (!*out) { fail(p, path, "out of memory"); return -1; }
    *n = 0;
    char fp[256];
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        snprintf(fp, sizeof fp, "%s[%zu]", path, *n);
        const char *s = scalar(node(p, *it));
        if (!s) { fail(p, fp, "must be a string"); return -1; }
        if (!((*out)[(*n)++] = xstrdup(p, fp, s))) return -1;
    }
    return 0;
}

static int hex_decode32(const char *s, uint8_t out[32])
{
    if (strlen(s) != 64) return -1;
    for (int i = 0; i < 32; i++) {
        int hi = isdigit((unsigned char)s[2 * i]) ? s[2 * i] - '0' : (tolower((unsigned char)s[2 * i]) - 'a' + 10);
        int lo = isdigit((unsigned char)s[2 * i + 1]) ? s[2 * i + 1] - '0' : (tolower((unsigned char)s[2 * i + 1]) - 'a' + 10);
        if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1])) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int parse_key(parse_ctx *p, const char *path, yaml_node_t *m, yaml_key *k)
{
    char fp[256];
    char *plain = NULL, *hexhash = NULL;
    if (m->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return -1; }
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *kk = scalar(node(p, pr->key));
        yaml_node_t *v = node(p, pr->value);
        if (!kk) { fail(p, path, "keys must be strings"); break; }
        snprintf(fp, sizeof fp, "%s.%s", path, kk);
        if (dup_key(p, fp, m, pr, kk)) break;
        if (!strcmp(kk, "name")) want_string(p, fp, v, &k->name);
        else if (!strcmp(kk, "key")) {
            char *ref = NULL;
            if (want_string(p, fp, v, &ref) == 0) {
                char why[200];
                if (!(plain = secret_resolve(ref, why, sizeof why))) fail(p, fp, "%s", why);
            }
            free(ref);
        }
        else if (!strcmp(kk, "key_sha256")) want_string(p, fp, v, &hexhash);
        else if (!strcmp(kk, "models")) parse_string_list(p, fp, v, &k->models, &k->nmodels);
        else if (!strcmp(kk, "rpm_limit")) want_long(p, fp, v, 0, 1000000000L, &k->rpm_limit);
        else if (!strcmp(kk, "tpm_limit")) want_long(p, fp, v, 0, 1000000000000L, &k->tpm_limit);
        else if (!strcmp(kk, "budget_usd")) { if (want_double(p, fp, v, &k->budget_usd) == 0) k->has_budget = 1; }
        else if (!strcmp(kk, "budget_period")) {
            if (want_string(p, fp, v, &k->budget_period) == 0 &&
                strcmp(k->budget_period, "daily") && strcmp(k->budget_period, "weekly") &&
                strcmp(k->budget_period, "monthly") && strcmp(k->budget_period, "total"))
                fail(p, fp, "must be daily, weekly, monthly or total");
        }
        else if (!strcmp(kk, "guardrails")) parse_string_list(p, fp, v, &k->guardrails, &k->nguardrails);
        else if (!strcmp(kk, "metadata") || !strcmp(kk, "team")) { /* informational */ }
        else fail(p, fp, "unknown field");
        if (p->failed) break;
    }
    if (!p->failed) {
        if (plain && hexhash) { snprintf(fp, sizeof fp, "%s.key", path); fail(p, fp, "set key or key_sha256, not both"); }
        else if (plain) {
            if (strlen(plain) < 8) { snprintf(fp, sizeof fp, "%s.key", path); fail(p, fp, "too short (at least 8 characters)"); }
            else SHA256((const unsigned char *)plain, strlen(plain), k->sha256);
        } else if (hexhash) {
            if (hex_decode32(hexhash, k->sha256) < 0) { snprintf(fp, sizeof fp, "%s.key_sha256", path); fail(p, fp, "must be 64 hex characters"); }
        } else { snprintf(fp, sizeof fp, "%s.key", path); fail(p, fp, "is required (or key_sha256)"); }
    }
    if (!p->failed && !k->name) { snprintf(fp, sizeof fp, "%s.name", path); fail(p, fp, "is required"); }
    if (plain) { OPENSSL_cleanse(plain, strlen(plain)); free(plain); }
    free(hexhash);
    return p->failed ? -1 : 0;
}

gw_semantic *config_semantic_new(void)
{
    gw_semantic *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->threshold = 0.92;
    s->ttl_s = 0;   /* resolved with the whole alias: its cache ttl_s, else an hour */
    s->max_temperature = 1.0;
    return s;
}

void config_semantic_free(gw_semantic *s)
{
    if (!s) return;
    free(s->embedding_model);
    free(s);
}

int config_semantic_set(gw_semantic *s, const char *key, const char *value, char *err, size_t errlen)
{
    if (!strcmp(key, "embedding_model")) {
        if (!*value || strlen(value) > 200) { snprintf(err, errlen, "must be a model alias"); return -1; }
        char *copy = strdup(value);
        if (!copy) { snprintf(err, errlen, "out of memory"); return -1; }
        free(s->embedding_model);
        s->embedding_model = copy;
        return 0;
    }
    static const struct { const char *name; double min, max; int integer; } nums[] = {
        { "threshold", 0.5, 1, 0 }, { "ttl_s", 1, 30.0 * 86400, 1 }, { "max_temperature", 0, 2, 0 },
    };
    size_t i = 0;
    while (i < 3 && strcmp(nums[i].name, key)) i++;
    if (i == 3) { snprintf(err, errlen, "unknown field"); return -1; }
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (errno || end == value || *end || !(x >= nums[i].min && x <= nums[i].max) ||
        (nums[i].integer && x != (double)(long)x)) {
        snprintf(err, errlen, "must be %s between %.10g and %.10g", nums[i].integer ? "an integer" : "a number",
                 nums[i].min, nums[i].max);
        return -1;
    }
    if (i == 0) s->threshold = x;
    else if (i == 1) s->ttl_s = (long)x;
    else s->max_temperature = x;
    return 0;
}

/* cache: { semantic: { embedding_model: emb, threshold: 0.92, ttl_s: 3600, max_temperature: 1.0 } } */
static void parse_semantic(parse_ctx *p, const char *path, yaml_node_t *v, gw_model *md)
{
    char fp[256], why[160];
    if (v->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping such as { embedding_model: emb }"); return; }
    if (!(md->semantic = config_semantic_new())) { fail(p, path, "out of memory"); return; }
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top && !p->failed; pr++) {
        const char *k = scalar(node(p, pr->key)), *val = scalar(node(p, pr->value));
        if (!k) { fail(p, path, "keys must be strings"); return; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (!val) fail(p, fp, "must be a scalar");
        else if (config_semantic_set(md->semantic, k, val, why, sizeof why) < 0) fail(p, fp, "%s", why);
    }
    snprintf(fp, sizeof fp, "%s.embedding_model", path);
    if (!p->failed && !md->semantic->embedding_model) fail(p, fp, "is required");
}

/* cache: { ttl_s: 300, shared: false, semantic: {...} } */
static void parse_model_cache(parse_ctx *p, const char *path, yaml_node_t *v, gw_model *md)
{
    char fp[256];
    if (v->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping such as { ttl_s: 300 }"); return; }
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top && !p->failed; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *cv = node(p, pr->value);
        if (!k) { fail(p, path, "keys must be strings"); return; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (!strcmp(k, "ttl_s")) want_long(p, fp, cv, 0, 30L * 86400, &md->cache_ttl_s);
        else if (!strcmp(k, "shared")) {
            const char *s = scalar(cv);
            if (s && !strcmp(s, "true")) md->cache_shared = 1;
            else if (s && !strcmp(s, "false")) md->cache_shared = 0;
            else fail(p, fp, "must be true or false");
        } else if (!strcmp(k, "semantic")) {
            if (md->semantic) fail(p, fp, "given twice");
            else parse_semantic(p, fp, cv, md);
        } else fail(p, fp, "unknown field");
    }
}

/* top level cache: { memory_mb: 64, max_entry_kb: 1024, default_ttl_s: 300 } */
static void parse_cache_settings(parse_ctx *p, const char *path, yaml_node_t *v, gw_config *c)
{
    char fp[256];
    if (v->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return; }
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top && !p->failed; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *cv = node(p, pr->value);
        long x;
        if (!k) { fail(p, path, "keys must be strings"); return; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (!strcmp(k, "memory_mb")) { if (want_long(p, fp, cv, 0, 1L << 20, &x) == 0) c->cache_memory_bytes = (size_t)x << 20; }
        else if (!strcmp(k, "max_entry_kb")) { if (want_long(p, fp, cv, 1, 1L << 20, &x) == 0) c->cache_max_entry_bytes = (size_t)x << 10; }
        else if (!strcmp(k, "default_ttl_s")) want_long(p, fp, cv, 1, 30L * 86400, &c->cache_default_ttl_s);
        else if (!strcmp(k, "semantic_max_entries")) want_size(p, fp, cv, 0, 100000000L, &c->sem_max_entries);
        else if (!strcmp(k, "semantic_memory_mb")) { if (want_long(p, fp, cv, 0, 1L << 20, &x) == 0) c->sem_memory_bytes = (size_t)x << 20; }
        else if (!strcmp(k, "semantic_m")) want_long(p, fp, cv, 4, 64, &c->sem_m);
        else if (!strcmp(k, "semantic_ef")) want_long(p, fp, cv, 1, 4096, &c->sem_ef);
        else fail(p, fp, "unknown field");
    }
}

/* top level responses: { store_mb: 64, max_entry_kb: 1024, max_per_key: 1000, ttl_s: 2592000 } */
static void parse_responses_settings(parse_ctx *p, const char *path, yaml_node_t *v, gw_config *c)
{
    char fp[256];
    if (v->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return; }
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top && !p->failed; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *cv = node(p, pr->value);
        long x;
        if (!k) { fail(p, path, "keys must be strings"); return; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (!strcmp(k, "store_mb")) { if (want_long(p, fp, cv, 0, 1L << 16, &x) == 0) c->responses_store_bytes = (size_t)x << 20; }
        else if (!strcmp(k, "max_entry_kb")) { if (want_long(p, fp, cv, 1, 1L << 20, &x) == 0) c->responses_max_entry_bytes = (size_t)x << 10; }
        else if (!strcmp(k, "max_per_key")) want_long(p, fp, cv, 1, 1000000, &c->responses_max_per_key);
        else if (!strcmp(k, "ttl_s")) want_long(p, fp, cv, 1, 365L * 86400, &c->responses_ttl_s);
        else fail(p, fp, "unknown field");
    }
}

/* tracing: { otlp_endpoint: http://127.0.0.1:4318/v1/traces, service_name, sample_ratio, queue_spans,
 *            batch_spans, flush_ms } */
static void parse_tracing(parse_ctx *p, const char *path, yaml_node_t *v, gw_config *c)
{
    char fp[256];
    if (v->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return; }
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top && !p->failed; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *cv = node(p, pr->value);
        if (!k) { fail(p, path, "keys must be strings"); return; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (!strcmp(k, "otlp_endpoint")) {
            if (want_string(p, fp, cv, &c->trace_endpoint) == 0 && *c->trace_endpoint &&
                strncmp(c->trace_endpoint, "http://", 7) && strncmp(c->trace_endpoint, "https://", 8))
                fail(p, fp, "must be an http:// or https:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces)");
        }
        else if (!strcmp(k, "service_name")) want_string(p, fp, cv, &c->trace_service);
        else if (!strcmp(k, "sample_ratio")) {
            if (want_double(p, fp, cv, &c->trace_sample_ratio) == 0 && c->trace_sample_ratio > 1)
                fail(p, fp, "must be between 0 and 1");
        }
        else if (!strcmp(k, "queue_spans")) want_long(p, fp, cv, 16, 1L << 20, &c->trace_queue_spans);
        else if (!strcmp(k, "batch_spans")) want_long(p, fp, cv, 1, 1L << 16, &c->trace_batch_spans);
        else if (!strcmp(k, "flush_ms")) want_long(p, fp, cv, 10, 60000, &c->trace_flush_ms);
        else if (!strcmp(k, "protocol")) {
            const char *s = scalar(cv);
            if (s && !strcmp(s, "http/protobuf")) c->trace_protocol = TRACE_PROTO_PROTOBUF;
            else if (s && !strcmp(s, "http/json")) c->trace_protocol = TRACE_PROTO_JSON;
            else if (s) fail(p, fp, "unknown protocol \"%.64s\" (known: http/protobuf, http/json; OTLP over gRPC is not supported)", s);
            else fail(p, fp, "must be http/protobuf or http/json");
        }
        else fail(p, fp, "unknown field");
    }
}

void config_route_policy_defaults(gw_route_policy *p)
{
    memset(p, 0, sizeof *p);
    p->max_attempts = 3;
    p->backoff_base_ms = 25;
    p->backoff_max_ms = 1000;
    p->max_retry_after_ms = 5000;
    p->breaker_failures = 5;
    p->breaker_ratio = 0.5;
    p->breaker_min_requests = 20;
    p->breaker_cooldown_ms = 5000;
    p->classifier_threshold = 0.5;
    p->schema_retries = 1;
    p->judge_sample_ratio = 0.1;
}

int config_strategy_id(const char *name)
{
    static const char *const names[] = { "weighted", "least_latency", "least_cost", "usage", "classifier" };
    if (!name) return STRATEGY_WEIGHTED;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

static uint64_t route_hash(uint64_t h, const char *s)
{
    for (; s && *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ULL; }
    h ^= 0xff; h *= 1099511628211ULL;   /* separator: ("ab","c") != ("a","bc") */
    return h;
}

void config_model_finish(gw_model *m)
{
    int id = config_strategy_id(m->strategy);
    m->strategy_id = id < 0 ? STRATEGY_WEIGHTED : (gw_strategy)id;
    for (size_t i = 0; i < m->ndeployments; i++) {
        gw_deployment *d = &m->deployments[i];
        uint64_t h = route_hash(1469598103934665603ULL, m->alias);
        h = route_hash(h, d->provider_name);
        h = route_hash(h, d->base_url);
        h = route_hash(h, d->model);
        d->route_id = h ? h : 1;   /* 0 marks an empty slot in the router's table */
    }
}

/* The router settings of an alias by name, with their bounds: YAML and the
 * control plane's JSON go through the same table. */
enum { RP_INT, RP_LONG, RP_DOUBLE, RP_ALIAS, RP_HEDGE, RP_TEXT };
static const struct {
    const char *name;
    int         kind;
    double      min, max;
    size_t      off;
} route_settings[] = {
    { "max_attempts",         RP_INT,    1, 10,      offsetof(gw_route_policy, max_attempts) },
    { "backoff_ms",           RP_LONG,   0, 60000,   offsetof(gw_route_policy, backoff_base_ms) },
    { "backoff_max_ms",       RP_LONG,   0, 600000,  offsetof(gw_route_policy, backoff_max_ms) },
    { "max_retry_after_ms",   RP_LONG,   0, 600000,  offsetof(gw_route_policy, max_retry_after_ms) },
    { "breaker_failures",     RP_INT,    1, 1000000, offsetof(gw_route_policy, breaker_failures) },
    { "breaker_ratio",        RP_DOUBLE, 0.01, 1,    offsetof(gw_route_policy, breaker_ratio) },
    { "breaker_min_requests", RP_INT,    1, 1000000, offsetof(gw_route_policy, breaker_min_requests) },
    { "breaker_cooldown_ms",  RP_LONG,   1, 3600000, offsetof(gw_route_policy, breaker_cooldown_ms) },
    { "hedge_ms",             RP_HEDGE,  1, 600000,  offsetof(gw_route_policy, hedge_ms) },
    { "context_fallback",     RP_ALIAS,  0, 0,       offsetof(gw_route_policy, context_fallback) },
    { "split_alias",          RP_ALIAS,  0, 0,       offsetof(gw_route_policy, split_alias) },
    { "split_percent",        RP_DOUBLE, 0, 100,     offsetof(gw_route_policy, split_percent) },
    { "cheap",                RP_ALIAS,  0, 0,       offsetof(gw_route_policy, cheap_alias) },
    { "flagship",             RP_ALIAS,  0, 0,       offsetof(gw_route_policy, flagship_alias) },
    { "threshold",            RP_DOUBLE, 0, 1,       offsetof(gw_route_policy, classifier_threshold) },
    { "schema_retries",       RP_INT,    0, 5,       offsetof(gw_route_policy, schema_retries) },
    { "judge",                RP_ALIAS,  0, 0,       offsetof(gw_route_policy, judge_alias) },
    { "judge_rubric",         RP_TEXT,   0, 0,       offsetof(gw_route_policy, judge_rubric) },
    { "judge_sample_ratio",   RP_DOUBLE, 0, 1,       offsetof(gw_route_policy, judge_sample_ratio) },
};

int config_route_policy_set(gw_route_policy *p, const char *key, const char *value, char *err, size_t errlen)
{
    size_t i = 0, n = sizeof route_settings / sizeof route_settings[0];
    while (i < n && strcmp(route_settings[i].name, key)) i++;
    if (i == n) { snprintf(err, errlen, "unknown field"); return -1; }
    char *field = (char *)p + route_settings[i].off;
    int kind = route_settings[i].kind;
    if (kind == RP_ALIAS || kind == RP_TEXT) {
        size_t max = kind == RP_ALIAS ? 200 : 4000;
        if (!*value || strlen(value) > max) {
            snprintf(err, errlen, kind == RP_ALIAS ? "must be a model alias" : "must be text of 1-4000 bytes");
            return -1;
        }
        char **dst = (char **)(void *)field, *copy = strdup(value);
        if (!copy) { snprintf(err, errlen, "out of memory"); return -1; }
        free(*dst);
        *dst = copy;
        return 0;
    }
    if (kind == RP_HEDGE && !strcmp(value, "p95")) { *(long *)(void *)field = -1; return 0; }
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (errno || end == value || *end || !(x >= route_settings[i].min && x <= route_settings[i].max) ||
        (kind != RP_DOUBLE && x != (double)(long)x)) {
        snprintf(err, errlen, "must be %s from %g to %g%s", kind == RP_DOUBLE ? "a number" : "an integer",
                 route_settings[i].min, route_settings[i].max, kind == RP_HEDGE ? ", or \"p95\"" : "");
        return -1;
    }
    if (kind == RP_INT) *(int *)(void *)field = (int)x;
    else if (kind == RP_DOUBLE) *(double *)(void *)field = x;
    else *(long *)(void *)field = (long)x;
    return 0;
}

/* router: { max_attempts, backoff_ms, ... } under an alias (README "Router"). */
static void parse_route_policy(parse_ctx *p, const char *path, yaml_node_t *m, gw_route_policy *rp)
{
    char fp[256], why[160];
    if (m->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return; }
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *k = scalar(node(p, pr->key));
        const char *v = scalar(node(p, pr->value));
        if (!k) { fail(p, path, "keys must be strings"); break; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (dup_key(p, fp, m, pr, k)) break;
        if (!v) { fail(p, fp, "must be a scalar"); break; }
        if (config_route_policy_set(rp, k, v, why, sizeof why) < 0) { fail(p, fp, "%s", why); break; }
    }
}

/* prompt: { system_prefix, system_suffix, defaults: { temperature: 0.2, ... } } (decorate.h) */
static void parse_model_prompt(parse_ctx *p, const char *path, yaml_node_t *m, gw_model *md)
{
    char fp[256], key[96], why[200];
    if (m->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return; }
    if (!md->prompt && !(md->prompt = calloc(1, sizeof *md->prompt))) { fail(p, path, "out of memory"); return; }
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top && !p->failed; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *v = node(p, pr->value);
        if (!k) { fail(p, path, "keys must be strings"); return; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (dup_key(p, fp, m, pr, k)) return;
        if (!strcmp(k, "defaults") && v->type == YAML_MAPPING_NODE) {
            for (yaml_node_pair_t *d = v->data.mapping.pairs.start; d < v->data.mapping.pairs.top; d++) {
                const char *dk = scalar(node(p, d->key)), *dv = scalar(node(p, d->value));
                snprintf(key, sizeof key, "defaults.%.60s", dk ? dk : "");
                snprintf(fp, sizeof fp, "%s.%s", path, key);
                if (!dk || !dv) { fail(p, fp, "must be a number"); return; }
                if (dup_key(p, fp, v, d, dk)) return;
                if (prompt_set(md->prompt, key, dv, why, sizeof why) < 0) { fail(p, fp, "%s", why); return; }
            }
            continue;
        }
        const char *sv = scalar(v);
        if (!strcmp(k, "defaults")) fail(p, fp, "must be a mapping such as { temperature: 0.2 }");
        else if (!sv) fail(p, fp, "must be a string");
        else if (prompt_set(md->prompt, k, sv, why, sizeof why) < 0) fail(p, fp, "%s", why);
    }
}

static int parse_model(parse_ctx *p, const char *path, yaml_node_t *m, gw_model *md, const upstream_timeouts *defaults)
{
    char fp[256];
    config_route_policy_defaults(&md->policy);
    if (m->type != YAML_MAPPING_NODE) { fail(p, path, "must be a mapping"); return -1; }
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *v = node(p, pr->value);
        if (!k) { fail(p, path, "keys must be strings"); break; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        if (dup_key(p, fp, m, pr, k)) break;
        if (!strcmp(k, "alias")) want_string(p, fp, v, &md->alias);
        else if (!strcmp(k, "strategy")) {
            if (want_string(p, fp, v, &md->strategy) == 0 && strcmp(md->strategy, "weighted") &&
                strcmp(md->strategy, "least_latency") && strcmp(md->strategy, "least_cost") &&
                strcmp(md->strategy, "usage") && strcmp(md->strategy, "classifier"))
                fail(p, fp, "unknown strategy \"%s\"", md->strategy);
        } else if (!strcmp(k, "deployments")) {
            if (v->type != YAML_SEQUENCE_NODE) { fail(p, fp, "must be a list"); break; }
            size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
            if (cnt == 0) { fail(p, fp, "must have at least one deployment"); break; }
            md->deployments = calloc(cnt, sizeof *md->deployments);
            if (!md->deployments) { fail(p, fp, "out of memory"); break; }
            for (size_t i = 0; i < cnt && !p->failed; i++) {
                char dp[256];
                snprintf(dp, sizeof dp, "%s[%zu]", fp, i);
                md->ndeployments++;
                parse_deployment(p, dp, node(p, v->data.sequence.items.start[i]), &md->deployments[i], defaults);
            }
        } else if (!strcmp(k, "cache")) {
            parse_model_cache(p, fp, v, md);
        } else if (!strcmp(k, "fallbacks")) {
            parse_string_list(p, fp, v, &md->fallbacks, &md->nfallbacks);
        } else if (!strcmp(k, "router")) {
            parse_route_policy(p, fp, v, &md->policy);
        } else if (!strcmp(k, "prompt")) {
            parse_model_prompt(p, fp, v, md);
        } else if (!strcmp(k, "guardrails")) {
            parse_string_list(p, fp, v, &md->guardrails, &md->nguardrails);
        } else fail(p, fp, "unknown field");
        if (p->failed) break;
    }
    if (!p->failed && !md->alias) { snprintf(fp, sizeof fp, "%s.alias", path); fail(p, fp, "is required"); }
    /* a classifier alias routes to its tiers' deployments: it needs none of its own */
    int tiers_only = config_strategy_id(md->strategy) == STRATEGY_CLASSIFIER && !md->deployments;
    if (!p->failed && !md->deployments && !tiers_only) { snprintf(fp, sizeof fp, "%s.deployments", path); fail(p, fp, "is required"); }
    if (!p->failed) for (size_t i = 0; i < md->ndeployments; i++) md->total_weight += md->deployments[i].weight;
    if (!p->failed && md->total_weight == 0 && !tiers_only) { snprintf(fp, sizeof fp, "%s.deployments", path); fail(p, fp, "all weights are 0"); }
    return p->failed ? -1 : 0;
}

/* FNV-1a: alias strings are short; keys are already uniform hashes. */
static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ULL; }
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 8;
    while (c < n * 2) c <<= 1;
    return c;
}

static int index_models(gw_config *c, char *err, size_t errlen)
{
    c->model_index_cap = pow2_at_least(c->nmodels);
    /* an array of pointers: the element size is a pointer's */
    // NOLINTNEXTLINE(bugprone-sizeof-expression)
    c->model_index = calloc(c->model_index_cap, sizeof *c->model_index);
    if (!c->model_index) { snprintf(err, errlen, "config: out of memory"); return -1; }
    for (size_t i = 0; i < c->nmodels; i++) {
        const char *a = c->models[i].alias;
        size_t s = fnv1a(a, strlen(a)) & (c->model_index_cap - 1);
        while (c->model_index[s]) {
            if (!strcmp(c->model_index[s]->alias, a)) {
                snprintf(err, errlen, "models[%zu].alias: duplicate alias \"%s\"", i, a);
                return -1;
            }
            s = (s + 1) & (c->model_index_cap - 1);
        }
        c->model_index[s] = &c->models[i];
    }
    return 0;
}

static void yaml_keys_free(yaml_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        yaml_key *k = &keys[i];
        for (size_t j = 0; j < k->nmodels; j++) free(k->models[j]);
        for (size_t j = 0; j < k->nguardrails; j++) free(k->guardrails[j]);
        free(k->guardrails);
        free(k->models); free(k->name); free(k->budget_period);
    }
    free(keys);
}

/* The embedding alias exists, is not the alias itself, and can embed. */
int config_semantic_resolve(const gw_config *c, gw_model *m, char *err, size_t errlen)
{
    gw_semantic *s = m->semantic;
    if (s->ttl_s <= 0) s->ttl_s = m->cache_ttl_s > 0 ? m->cache_ttl_s : 3600;
    const char *name = s->embedding_model ? s->embedding_model : "";
    const gw_model *e = config_find_model(c, name, strlen(name));
    if (!e || e == m) { snprintf(err, errlen, "unknown alias or the alias itself: \"%.200s\"", name); return -1; }
    for (size_t j = 0; j < e->ndeployments; j++)
        if (config_deployment_embeds(&e->deployments[j])) return 0;
    snprintf(err, errlen, "alias \"%.200s\" has no deployment that serves embeddings", name);
    return -1;
}

static int semantic_check(parse_ctx *p, gw_config *c, gw_model *m, size_t i)
{
    char fp[128], why[300];
    if (config_semantic_resolve(c, m, why, sizeof why) == 0) return 0;
    snprintf(fp, sizeof fp, "models[%zu].cache.semantic.embedding_model", i);
    fail(p, fp, "%s", why);
    return -1;
}

int config_deployment_embeds(const gw_deployment *d)
{
    const provider *pr = d->provider;
    return pr && (pr->local_reply || pr->build_embed || (pr->dialect == DIALECT_OPENAI && pr->build));
}

static int build_indexes(parse_ctx *p, gw_config *c, const yaml_key *keys, size_t nkeys)
{
    char why[256];
    if (index_models(c, why, sizeof why) < 0) {
        char *colon = strstr(why, ": ");
        if (colon) { *colon = '\0'; fail(p, why, "%s", colon + 2); } else fail(p, "config", "%s", why);
        return -1;
    }
    for (size_t i = 0; i < c->nmodels; i++) {
        gw_model *m = &c->models[i];
        config_model_finish(m);
        const gw_route_policy *rp = &m->policy;
        const char *refs[] = { rp->context_fallback, rp->split_alias, rp->cheap_alias, rp->flagship_alias, rp->judge_alias };
        const char *names[] = { "router.context_fallback", "router.split_alias", "router.cheap", "router.flagship", "router.judge" };
        char fp[128];
        for (size_t j = 0; j < m->nfallbacks; j++)
            if (!config_find_model(c, m->fallbacks[j], strlen(m->fallbacks[j])) || !strcmp(m->fallbacks[j], m->alias)) {
                snprintf(fp, sizeof fp, "models[%zu].fallbacks[%zu]", i, j);
                fail(p, fp, "unknown alias or the alias itself: \"%s\"", m->fallbacks[j]);
                return -1;
            }
        for (size_t j = 0; j < 5; j++)
            if (refs[j] && (!config_find_model(c, refs[j], strlen(refs[j])) || !strcmp(refs[j], m->alias))) {
                snprintf(fp, sizeof fp, "models[%zu].%s", i, names[j]);
                fail(p, fp, "unknown alias or the alias itself: \"%s\"", refs[j]);
                return -1;
            }
        if (rp->judge_alias && !rp->split_alias) {   /* a judge compares the alias with its split */
            snprintf(fp, sizeof fp, "models[%zu].router.judge", i);
            fail(p, fp, "needs router.split_alias (the variant it is compared with)");
            return -1;
        }
        if (m->semantic && semantic_check(p, c, m, i) < 0) return -1;
        if (m->strategy_id == STRATEGY_CLASSIFIER && (!rp->cheap_alias || !rp->flagship_alias)) {
            snprintf(fp, sizeof fp, "models[%zu].router", i);
            fail(p, fp, "strategy classifier needs cheap and flagship aliases");
            return -1;
        }
    }
    for (size_t i = 0; i < nkeys; i++)
        for (size_t j = 0; j < keys[i].nmodels; j++)
            if (!config_find_model(c, keys[i].models[j], strlen(keys[i].models[j]))) {
                char fp[64];
                snprintf(fp, sizeof fp, "keys[%zu].models[%zu]", i, j);
                fail(p, fp, "unknown alias \"%s\"", keys[i].models[j]);
                return -1;
            }
    if (!(c->keys = keytab_new(nkeys))) { fail(p, "config", "out of memory"); return -1; }
    for (size_t i = 0; i < nkeys; i++) {
        const yaml_key *y = &keys[i];
        char fp[64];
        if (strlen(y->name) > KT_NAME_MAX) {
            snprintf(fp, sizeof fp, "keys[%zu].name", i);
            fail(p, fp, "longer than %d bytes", KT_NAME_MAX);
            return -1;
        }
        keytab_key k = {
            .name = y->name, .all_models = y->models == NULL,
            .models = (const char *const *)y->models, .nmodels = y->nmodels,
            .rpm_limit = y->rpm_limit ? y->rpm_limit : -1, .tpm_limit = y->tpm_limit ? y->tpm_limit : -1,
            .budget_usd = y->has_budget ? y->budget_usd : -1,
            .budget_period = keytab_period_parse(y->budget_period),
        };
        memcpy(k.sha256, y->sha256, 32);
        const char *clash = NULL;
        if (keytab_upsert(c->keys, &k, &clash) < 0) {
            snprintf(fp, sizeof fp, "keys[%zu].key", i);
            if (clash) fail(p, fp, "duplicate key (same as key \"%s\")", clash);
            else fail(p, fp, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* guardrails: compiled once here; aliases and keys name their policies */
static void bind_guardrails(parse_ctx *p, gw_config *c, yaml_node_t *list, const yaml_key *keys, size_t nkeys)
{
    char why[320], path[64];
    if (list && !(c->guard = guard_set_parse(p->doc, list, why, sizeof why))) {
        p->failed = 1;
        snprintf(p->err, p->errlen, "%s", why);
        return;
    }
    for (size_t i = 0; i < c->nmodels + nkeys && !p->failed; i++) {
        int model = i < c->nmodels;
        const gw_model *m = model ? &c->models[i] : NULL;
        const yaml_key *k = model ? NULL : &keys[i - c->nmodels];
        snprintf(path, sizeof path, model ? "models[%zu].guardrails" : "keys[%zu].guardrails", model ? i : i - c->nmodels);
        if (guard_set_bind(c->guard, model ? GUARD_BIND_MODEL : GUARD_BIND_KEY, model ? m->alias : k->name,
                           model ? m->guardrails : k->guardrails, model ? m->nguardrails : k->nguardrails,
                           path, why, sizeof why) < 0) {
            p->failed = 1;
            snprintf(p->err, p->errlen, "%s", why);
        }
    }
}

static void parse_root(parse_ctx *p, yaml_node_t *root, gw_config *c)
{
    yaml_node_t *models = NULL, *keys = NULL, *guardrails = NULL;
    if (!root) { fail(p, "config", "empty file"); return; }
    if (root->type != YAML_MAPPING_NODE) { fail(p, "config", "top level must be a mapping"); return; }
    /* settings first so models inherit the default timeouts whatever the order */
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top && !p->failed; pr++) {
        const char *k = scalar(node(p, pr->key));
        yaml_node_t *v = node(p, pr->value);
        if (!k) { fail(p, "config", "keys must be strings"); break; }
        if (dup_key(p, k, root, pr, k)) break;
        if (!strcmp(k, "listen")) {
            const char *s = scalar(v);
            if (!s) fail(p, k, "must be host:port");
            else parse_listen(p, k, s, &c->listen_host, &c->listen_port);
        }
        else if (!strcmp(k, "workers")) { long x; if (want_long(p, k, v, 0, 256, &x) == 0) c->workers = (int)x; }
        else if (!strcmp(k, "busy_poll_us")) want_long(p, k, v, 0, 10000, &c->busy_poll_us);
        else if (!strcmp(k, "metrics_listen")) want_string(p, k, v, &c->metrics_listen);
        else if (!strcmp(k, "redis_url")) want_string(p, k, v, &c->redis_url);
        else if (!strcmp(k, "state_dir")) want_string(p, k, v, &c->state_dir);
        else if (!strcmp(k, "control_plane")) {
            if (want_string(p, k, v, &c->control_plane) == 0 && strncmp(c->control_plane, "tcp://", 6) &&
                strncmp(c->control_plane, "tls+tcp://", 10) && strncmp(c->control_plane, "ipc://", 6))
                fail(p, k, "must be a tcp://host:port, tls+tcp://host:port or ipc:// address");
        }
        else if (!strcmp(k, "control_plane_ca_file")) want_string(p, k, v, &c->control_plane_ca_file);
        else if (!strcmp(k, "control_plane_cert_file")) want_string(p, k, v, &c->control_plane_cert_file);
        else if (!strcmp(k, "control_plane_key_file")) want_string(p, k, v, &c->control_plane_key_file);
        else if (!strcmp(k, "control_plane_server_name")) want_string(p, k, v, &c->control_plane_server_name);
        else if (!strcmp(k, "control_plane_insecure")) {
            const char *s = scalar(v);
            if (s && (!strcmp(s, "true") || !strcmp(s, "false"))) c->control_plane_insecure = !strcmp(s, "true");
            else fail(p, k, "must be true or false");
        }
        else if (!strcmp(k, "dataplane_id")) {
            if (want_string(p, k, v, &c->dataplane_id) == 0 && (!*c->dataplane_id || strlen(c->dataplane_id) > 200))
                fail(p, k, "must be 1-200 characters");
        }
        else if (!strcmp(k, "access_log")) want_string(p, k, v, &c->access_log);
        else if (!strcmp(k, "max_body_bytes")) want_size(p, k, v, 1024, 1L << 30, &c->max_body_bytes);
        else if (!strcmp(k, "max_header_bytes")) want_size(p, k, v, 1024, 1L << 20, &c->max_header_bytes);
        else if (!strcmp(k, "client_timeout_ms")) want_long(p, k, v, 100, 86400000, &c->client_timeout_ms);
        else if (!strcmp(k, "timeouts")) parse_timeouts(p, k, v, &c->timeouts);
        else if (!strcmp(k, "cache")) parse_cache_settings(p, k, v, c);
        else if (!strcmp(k, "responses")) parse_responses_settings(p, k, v, c);
        else if (!strcmp(k, "tracing")) parse_tracing(p, k, v, c);
        else if (!strcmp(k, "log_prompts")) {
            /* log_prompts: { sample_ratio: 0.01 }: off by default */
            if (v->type != YAML_MAPPING_NODE) fail(p, k, "must be a mapping such as { sample_ratio: 0.01 }");
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; !p->failed && v->type == YAML_MAPPING_NODE &&
                 q < v->data.mapping.pairs.top; q++) {
                const char *kk = scalar(node(p, q->key));
                char fp[64];
                snprintf(fp, sizeof fp, "log_prompts.%s", kk ? kk : "?");
                if (kk && !strcmp(kk, "sample_ratio")) {
                    if (want_double(p, fp, node(p, q->value), &c->log_prompts_ratio) == 0 && c->log_prompts_ratio > 1)
                        fail(p, fp, "must be between 0 and 1");
                } else fail(p, fp, "unknown field");
            }
        }
        else if (!strcmp(k, "models")) models = v;
        else if (!strcmp(k, "keys")) keys = v;
        else if (!strcmp(k, "guardrails")) guardrails = v;
        else fail(p, k, "unknown field");
    }
    if (p->failed) return;
    if (c->control_plane && !strncmp(c->control_plane, "tls+tcp://", 10)) {
        /* mutual TLS: the node proves itself with its own certificate */
        if (!c->control_plane_ca_file) fail(p, "control_plane_ca_file", "is required with a tls+tcp:// control_plane");
        else if (!c->control_plane_cert_file) fail(p, "control_plane_cert_file", "is required with a tls+tcp:// control_plane");
        else if (!c->control_plane_key_file) fail(p, "control_plane_key_file", "is required with a tls+tcp:// control_plane");
        if (p->failed) return;
    }
    if (c->control_plane && !strncmp(c->control_plane, "tcp://", 6) && !c->control_plane_insecure &&
        !cplink_is_local(c->control_plane)) {
        fail(p, "control_plane", "plain tcp:// is for loopback only: use tls+tcp:// (mutual TLS), or set "
                                 "control_plane_insecure: true on a network you trust");
        return;
    }
    if (models) {
        if (models->type != YAML_SEQUENCE_NODE) { fail(p, "models", "must be a list"); return; }
        size_t cnt = (size_t)(models->data.sequence.items.top - models->data.sequence.items.start);
        c->models = calloc(cnt ? cnt : 1, sizeof *c->models);
        if (!c->models) { fail(p, "models", "out of memory"); return; }
        for (size_t i = 0; i < cnt && !p->failed; i++) {
            char fp[64];
            snprintf(fp, sizeof fp, "models[%zu]", i);
            c->nmodels++;
            parse_model(p, fp, node(p, models->data.sequence.items.start[i]), &c->models[i], &c->timeouts);
        }
    }
    yaml_key *ykeys = NULL;
    size_t nkeys = 0;
    if (keys && !p->failed) {
        if (keys->type != YAML_SEQUENCE_NODE) { fail(p, "keys", "must be a list"); return; }
        size_t cnt = (size_t)(keys->data.sequence.items.top - keys->data.sequence.items.start);
        ykeys = calloc(cnt ? cnt : 1, sizeof *ykeys);
        if (!ykeys) { fail(p, "keys", "out of memory"); return; }
        for (size_t i = 0; i < cnt && !p->failed; i++) {
            char fp[64];
            snprintf(fp, sizeof fp, "keys[%zu]", i);
            nkeys++;
            parse_key(p, fp, node(p, keys->data.sequence.items.start[i]), &ykeys[i]);
        }
    }
    if (!p->failed) build_indexes(p, c, ykeys, nkeys);
    if (!p->failed) bind_guardrails(p, c, guardrails, ykeys, nkeys);
    yaml_keys_free(ykeys, nkeys);
}

void config_model_free(gw_model *m)
{
    for (size_t j = 0; j < m->ndeployments; j++) config_deployment_free(&m->deployments[j]);
    for (size_t j = 0; j < m->nfallbacks; j++) free(m->fallbacks[j]);
    free(m->fallbacks);
    free(m->policy.context_fallback); free(m->policy.split_alias);
    free(m->policy.cheap_alias); free(m->policy.flagship_alias);
    free(m->policy.judge_alias); free(m->policy.judge_rubric);
    prompt_free(m->prompt);
    for (size_t j = 0; j < m->nguardrails; j++) free(m->guardrails[j]);
    free(m->guardrails);
    free(m->deployments); free(m->alias); free(m->strategy);
    config_semantic_free(m->semantic);
}

static void config_free(gw_config *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nmodels; i++) config_model_free(&c->models[i]);
    free(c->models); free(c->model_index);
    keytab_unref(c->keys);
    guard_set_free(c->guard);
    free(c->path); free(c->listen_host); free(c->metrics_listen); free(c->redis_url);
    free(c->state_dir); free(c->control_plane); free(c->dataplane_id); free(c->access_log);
    free(c->control_plane_ca_file); free(c->control_plane_cert_file); free(c->control_plane_key_file);
    free(c->control_plane_server_name);
    free(c->trace_endpoint); free(c->trace_service);
    free(c);
}

gw_config *config_parse(const char *yaml, size_t len, const char *path, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    parse_ctx p = { .doc = &doc, .err = err, .errlen = errlen };
    if (errlen) err[0] = '\0';
    gw_config *c = calloc(1, sizeof *c);
    if (!c) { snprintf(err, errlen, "out of memory"); return NULL; }
    c->refcount = 1;
    c->workers = 0;
    c->max_body_bytes = 4u << 20;
    c->cache_memory_bytes = 64u << 20;
    c->cache_max_entry_bytes = 1u << 20;
    c->cache_default_ttl_s = 300;
    c->responses_store_bytes = 64u << 20;
    c->responses_max_entry_bytes = 1u << 20;
    c->responses_max_per_key = 1000;
    c->responses_ttl_s = 30L * 86400;
    c->sem_max_entries = 10000;
    c->sem_memory_bytes = 64u << 20;
    c->sem_m = 16;
    c->sem_ef = 128;
    c->trace_sample_ratio = 1.0;
    c->trace_protocol = TRACE_PROTO_PROTOBUF;
    c->trace_queue_spans = 4096;
    c->trace_batch_spans = 512;
    c->trace_flush_ms = 1000;
    c->max_header_bytes = 32768;
    c->client_timeout_ms = 60000;
    c->listen_port = 8080;
    if (!(c->listen_host = strdup("127.0.0.1")) || !(c->path = strdup(path ? path : "-"))) {
        config_free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!yaml_parser_initialize(&parser)) { config_free(c); snprintf(err, errlen, "yaml: cannot initialize parser"); return NULL; }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "yaml: %s at line %zu column %zu", parser.problem ? parser.problem : "syntax error",
                 parser.problem_mark.line + 1, parser.problem_mark.column + 1);
        yaml_parser_delete(&parser);
        config_free(c);
        return NULL;
    }
    parse_root(&p, yaml_document_get_root_node(&doc), c);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (p.failed) { config_free(c); return NULL; }
    c->version = __atomic_add_fetch(&g_version, 1, __ATOMIC_RELAXED);
    return c;
}

gw_config *config_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    char *data = malloc(CONFIG_FILE_MAX + 1);
    if (!data) { fclose(f); snprintf(err, errlen, "out of memory"); return NULL; }
    size_t n = fread(data, 1, CONFIG_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > CONFIG_FILE_MAX) {
        free(data);
        snprintf(err, errlen, "%s: unreadable or larger than %u bytes", path, CONFIG_FILE_MAX);
        return NULL;
    }
    gw_config *c = config_parse(data, n, path, err, errlen);
    free(data);
    return c;
}

gw_config *config_ref(gw_config *c)
{
    if (c) c->refcount++;
    return c;
}

void config_unref(gw_config *c)
{
    if (c && --c->refcount == 0) config_free(c);
}

const gw_key *config_find_key(const gw_config *c, const uint8_t sha[32], gw_key *view)
{
    return keytab_find(c->keys, sha, time(NULL), view) ? view : NULL;
}

size_t config_key_count(const gw_config *c) { return keytab_count(c->keys); }

const gw_model *config_find_model(const gw_config *c, const char *alias, size_t len)
{
    size_t mask = c->model_index_cap - 1;
    for (size_t s = fnv1a(alias, len) & mask;; s = (s + 1) & mask) {
        const gw_model *m = c->model_index[s];
        if (!m) return NULL;
        if (strlen(m->alias) == len && !memcmp(m->alias, alias, len)) return m;
    }
}

int config_key_allows(const gw_key *k, const char *alias, size_t len)
{
    if (!k->models) return 1;
    for (size_t i = 0; i < k->nmodels; i++)
        if (strlen(k->models[i]) == len && !memcmp(k->models[i], alias, len)) return 1;
    return 0;
}

void config_deployment_price(gw_deployment *d)
{
    if (!pricing_resolve(d->model, &d->price_override, &d->price) && strcmp(d->provider_name, "mock") != 0)
        log_warn("no price known for model %s (provider %s): its requests cost 0; set input_cost_per_mtok "
                 "and output_cost_per_mtok on the deployment", d->model, d->provider_name);
}

int config_deployment_prepare(gw_deployment *d, char *err, size_t errlen)
{
    if (!(d->provider = provider_find(d->provider_name))) {
        snprintf(err, errlen, "unknown provider \"%s\" (known: %s)", d->provider_name, provider_names());
        return -1;
    }
    if (d->provider->prepare && d->provider->prepare(d, err, errlen) < 0) return -1;
    config_deployment_price(d);
    return 0;
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

gw_config *config_with_settings(const gw_config *base, keytab *keys)
{
    gw_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    int oom = 0;
    c->refcount = 1;
    c->version = base->version;
    c->listen_port = base->listen_port;
    c->workers = base->workers;
    c->busy_poll_us = base->busy_poll_us;
    c->max_body_bytes = base->max_body_bytes;
    c->max_header_bytes = base->max_header_bytes;
    c->client_timeout_ms = base->client_timeout_ms;
    c->control_plane_insecure = base->control_plane_insecure;
    c->timeouts = base->timeouts;
    c->cache_memory_bytes = base->cache_memory_bytes;
    c->cache_max_entry_bytes = base->cache_max_entry_bytes;
    c->cache_default_ttl_s = base->cache_default_ttl_s;
    c->responses_store_bytes = base->responses_store_bytes;
    c->responses_max_entry_bytes = base->responses_max_entry_bytes;
    c->responses_max_per_key = base->responses_max_per_key;
    c->responses_ttl_s = base->responses_ttl_s;
    c->sem_max_entries = base->sem_max_entries;
    c->sem_memory_bytes = base->sem_memory_bytes;
    c->sem_m = base->sem_m;
    c->sem_ef = base->sem_ef;
    c->trace_sample_ratio = base->trace_sample_ratio;
    c->trace_queue_spans = base->trace_queue_spans;
    c->trace_batch_spans = base->trace_batch_spans;
    c->trace_flush_ms = base->trace_flush_ms;
    c->trace_protocol = base->trace_protocol;
    c->log_prompts_ratio = base->log_prompts_ratio;
    c->trace_endpoint = dup_or_null(base->trace_endpoint, &oom);
    c->trace_service = dup_or_null(base->trace_service, &oom);
    c->path = dup_or_null(base->path, &oom);
    c->listen_host = dup_or_null(base->listen_host, &oom);
    c->metrics_listen = dup_or_null(base->metrics_listen, &oom);
    c->redis_url = dup_or_null(base->redis_url, &oom);
    c->state_dir = dup_or_null(base->state_dir, &oom);
    c->control_plane = dup_or_null(base->control_plane, &oom);
    c->dataplane_id = dup_or_null(base->dataplane_id, &oom);
    c->control_plane_ca_file = dup_or_null(base->control_plane_ca_file, &oom);
    c->control_plane_cert_file = dup_or_null(base->control_plane_cert_file, &oom);
    c->control_plane_key_file = dup_or_null(base->control_plane_key_file, &oom);
    c->control_plane_server_name = dup_or_null(base->control_plane_server_name, &oom);
    c->access_log = dup_or_null(base->access_log, &oom);
    c->keys = keys ? keytab_ref(keys) : keytab_new(0);
    if (!c->keys) oom = 1;
    if (!oom) {
        char err[64];
        if (config_set_models(c, NULL, 0, err, sizeof err) < 0) oom = 1;
    }
    if (oom) { config_free(c); return NULL; }
    return c;
}

int config_set_models(gw_config *c, gw_model *models, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nmodels; i++) config_model_free(&c->models[i]);
    free(c->models);
    free(c->model_index);
    c->model_index = NULL;
    c->models = models;
    c->nmodels = n;
    for (size_t i = 0; i < n; i++) config_model_finish(&models[i]);
    if (!c->models && !(c->models = calloc(1, sizeof *c->models))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (index_models(c, err, errlen) < 0) {
        for (size_t i = 0; i < c->nmodels; i++) config_model_free(&c->models[i]);
        free(c->models);
        free(c->model_index);
        c->models = NULL;
        c->model_index = NULL;
        c->nmodels = 0;
        return -1;
    }
    return 0;
}
