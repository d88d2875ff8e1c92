/* /api/models: model aliases, their deployments and routing strategy.
 *
 * The body of POST is one entry of the YAML `models:` list. Deployments may
 * name secrets only by reference (env:NAME, file:/path, cred:<credential id>):
 * a raw secret is refused with 400, so the models table, the audit log and
 * every config snapshot stay free of plaintext secrets.
 */
#include "api.h"
#include "promptcfg.h"
#include "guardcfg.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MODEL_JSON \
    "json_build_object('alias', m.alias, 'strategy', m.strategy, 'deployments', m.deployments, " \
    "'fallbacks', m.fallbacks, 'cache', m.cache, 'router', m.router, 'prompt', m.prompt, " \
    "'guardrails', m.guardrails, 'created_at', m.created_at, " \
    "'updated_at', m.updated_at)"

#define MAX_DEPLOYMENTS 64
#define MAX_CRED_REFS   64

static const char *const g_providers[] = {
    "openai", "azure", "anthropic", "gemini", "bedrock", "ollama", "openai_compatible", "mock", NULL
};
static const char *const g_strategies[] = {
    "weighted", "least_latency", "least_cost", "usage", "classifier", NULL
};
/* Deployment fields that carry credentials (PRODUCT.md, "Credentials by provider"). */
static const char *const g_secret_fields[] = {
    "api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", NULL
};

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

/* A field name that suggests a secret even though we do not know the field
 * ("client_secret", "password", "private_key", "session_token"); "max_tokens"
 * or "tokenizer" are not. */
static int secret_like(const char *name)
{
    size_t n = strlen(name);
    if (strcasestr(name, "secret") || strcasestr(name, "password") || strcasestr(name, "apikey")) return 1;
    if (n >= 3 && strcasecmp(name + n - 3, "key") == 0) return 1;
    return strcasecmp(name, "token") == 0 || (n >= 6 && strcasecmp(name + n - 6, "_token") == 0);
}

typedef struct cred_refs {
    int  n;
    char id[MAX_CRED_REFS][37];
    char where[MAX_CRED_REFS][64];     /* "deployments[0].api_key" for messages */
} cred_refs;

/* 0 if s is env:NAME, file:/path or cred:<uuid>; cred ids are collected. */
static int check_reference(api_req *r, const char *where, const json_value *v, cred_refs *refs)
{
    const char *s = v->type == JSON_STRING ? v->str : NULL;
    if (s && strncmp(s, "env:", 4) == 0) {
        const char *n = s + 4;
        int ok = *n && (isalpha((unsigned char)*n) || *n == '_');
        for (; ok && *n; n++) ok = isalnum((unsigned char)*n) || *n == '_';
        if (ok) return 0;
        api_error(r, 400, "invalid_request_error", "%s: env: must name an environment variable ([A-Za-z_][A-Za-z0-9_]*)",
                  where);
        return -1;
    }
    if (s && strncmp(s, "file:", 5) == 0) {
        if (s[5] == '/' && strlen(s) < 4096) return 0;
        api_error(r, 400, "invalid_request_error", "%s: file: must be followed by an absolute path", where);
        return -1;
    }
    if (s && strncmp(s, "cred:", 5) == 0) {
        if (!cp_uuid_valid(s + 5)) {
            api_error(r, 400, "invalid_request_error", "%s: cred: must be followed by a credential id (UUID)", where);
            return -1;
        }
        if (refs->n == MAX_CRED_REFS) {
            api_error(r, 400, "invalid_request_error", "too many credential references");
            return -1;
        }
        snprintf(refs->id[refs->n], sizeof refs->id[0], "%s", s + 5);
        snprintf(refs->where[refs->n], sizeof refs->where[0], "%s", where);
        refs->n++;
        return 0;
    }
    /* Never echo the value: it may well be the secret. */
    api_error(r, 400, "invalid_request_error",
              "%s must be a secret reference (env:NAME, file:/path or cred:<credential id>), not a raw secret; "
              "store the secret with POST /api/credentials", where);
    return -1;
}

static int check_deployment(api_req *r, size_t i, const json_value *d, cred_refs *refs)
{
    char where[64];
    if (d->type != JSON_OBJECT) {
        api_error(r, 400, "invalid_request_error", "deployments[%zu] must be an object", i);
        return -1;
    }
    const char *provider = json_get_str(d, "provider");
    if (!provider || !in_list(provider, g_providers)) {
        api_error(r, 400, "invalid_request_error",
                  "deployments[%zu].provider must be one of openai, azure, anthropic, gemini, bedrock, ollama, "
                  "openai_compatible, mock", i);
        return -1;
    }
    for (const json_value *m = d->first; m; m = m->next) {
        snprintf(where, sizeof where, "deployments[%zu].%.30s", i, m->key);
        if (strcmp(m->key, "provider") == 0) continue;
        if (strcmp(m->key, "model") == 0 || strcmp(m->key, "region") == 0 || strcmp(m->key, "api_version") == 0) {
            if (m->type != JSON_STRING || m->str_len == 0 || m->str_len > 256) {
                api_error(r, 400, "invalid_request_error", "%s must be a non-empty string", where);
                return -1;
            }
        } else if (strcmp(m->key, "base_url") == 0) {
            if (m->type != JSON_STRING || m->str_len > 2048 ||
                (strncmp(m->str, "http://", 7) != 0 && strncmp(m->str, "https://", 8) != 0)) {
                api_error(r, 400, "invalid_request_error", "%s must be an http:// or https:// URL", where);
                return -1;
            }
        } else if (strcmp(m->key, "weight") == 0) {
            if (m->type != JSON_NUMBER || !isfinite(m->num) || m->num < 0 || m->num > 1e6) {
                api_error(r, 400, "invalid_request_error", "%s must be a non-negative number", where);
                return -1;
            }
        } else if (strcmp(m->key, "input_cost_per_mtok") == 0 || strcmp(m->key, "cached_input_cost_per_mtok") == 0 ||
                   strcmp(m->key, "output_cost_per_mtok") == 0) {
            /* USD per million tokens; overrides the data plane's built-in price table */
            if (m->type != JSON_NUMBER || !isfinite(m->num) || m->num < 0 || m->num > 1e6) {
                api_error(r, 400, "invalid_request_error", "%s must be a number from 0 to 1000000 (USD per million tokens)", where);
                return -1;
            }
        } else if (in_list(m->key, g_secret_fields) || (m->type == JSON_STRING && secret_like(m->key))) {
            if (check_reference(r, where, m, refs) < 0) return -1;
        }
        /* Other members (price overrides, timeouts, ...) are the data plane's business. */
    }
    if (strcmp(provider, "mock") != 0 && !json_get_str(d, "model")) {
        api_error(r, 400, "invalid_request_error", "deployments[%zu].model is required", i);
        return -1;
    }
    return 0;
}

static int valid_alias(const char *s, size_t n)
{
    if (n == 0 || n > API_NAME_MAX || s[0] == '/' || s[n - 1] == '/') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || strchr("._:/@+-", c))) return 0;
    }
    return 1;
}

/* The checked, SQL-ready fields of a model body. NULL members were absent. */
typedef struct model_in {
    const char *alias;
    const char *strategy;
    char       *deployments;  /* JSON text */
    char       *fallbacks;    /* text[] literal */
    char       *cache;        /* JSON text, or NULL */
    char       *router;       /* JSON text, or NULL */
    char       *prompt;       /* JSON text, or NULL */
    char       *guardrails;   /* JSON text, or NULL */
    int         has_deployments, has_fallbacks, has_cache, has_router, has_prompt, has_guardrails;
    cred_refs   refs;
} model_in;

static void model_in_free(model_in *m)
{
    free(m->deployments);
    free(m->fallbacks);
    free(m->cache);
    free(m->router);
    free(m->prompt);
    free(m->guardrails);
}

/* The alias's router settings (the data plane's README "Router"): known
 * names, numbers in range, aliases where an alias goes. The data plane
 * checks again and ignores what it cannot use. */
static int check_router(api_req *r, const json_value *v)
{
    static const struct { const char *name; double min, max; int alias; } known[] = {
        { "max_attempts", 1, 10, 0 }, { "backoff_ms", 0, 60000, 0 }, { "backoff_max_ms", 0, 600000, 0 },
        { "max_retry_after_ms", 0, 600000, 0 }, { "breaker_failures", 1, 1000000, 0 },
        { "breaker_ratio", 0.01, 1, 0 }, { "breaker_min_requests", 1, 1000000, 0 },
        { "breaker_cooldown_ms", 1, 3600000, 0 }, { "hedge_ms", 1, 600000, 0 }, { "split_percent", 0, 100, 0 },
        { "threshold", 0, 1, 0 }, { "context_fallback", 0, 0, 1 }, { "split_alias", 0, 0, 1 },
        { "cheap", 0, 0, 1 }, { "flagship", 0, 0, 1 },
        /* structured outputs and evaluated A/B (the data plane's README) */
        { "schema_retries", 0, 5, 0 }, { "judge", 0, 0, 1 }, { "judge_sample_ratio", 0, 1, 0 },
        { "judge_rubric", 1, 4000, 2 },   /* text: 1-4000 bytes */
    };
    if (v->type != JSON_OBJECT) {
        api_error(r, 400, "invalid_request_error", "router must be an object such as {\"max_attempts\": 3}");
        return -1;
    }
    for (const json_value *f = v->first; f; f = f->next) {
        size_t i = 0, n = sizeof known / sizeof known[0];
        while (i < n && strcmp(known[i].name, f->key)) i++;
        if (i == n) {
            api_error(r, 400, "invalid_request_error", "router.%.40s is not a router setting", f->key);
            return -1;
        }
        int ok = known[i].alias == 2 ? f->type == JSON_STRING && f->str_len >= 1 && f->str_len <= 4000 &&
                                       strlen(f->str) == f->str_len
               : known[i].alias ? f->type == JSON_STRING && valid_alias(f->str, f->str_len)
               : (f->type == JSON_NUMBER && isfinite(f->num) && f->num >= known[i].min && f->num <= known[i].max) ||
                 (!strcmp(f->key, "hedge_ms") && f->type == JSON_STRING && !strcmp(f->str, "p95"));
        if (!ok) {
            if (known[i].alias == 2) api_error(r, 400, "invalid_request_error", "router.%s must be text of 1-4000 bytes", f->key);
            else if (known[i].alias) api_error(r, 400, "invalid_request_error", "router.%s must be a model alias", f->key);
            else api_error(r, 400, "invalid_request_error", "router.%s must be a number from %g to %g", f->key,
                           known[i].min, known[i].max);
            return -1;
        }
    }
    return 0;
}

/* cache.semantic (the data plane's README "Semantic cache"): an embedding
 * alias (not the model itself) and settings in range. Whether that alias can
 * embed is checked by the data plane, which serves without the semantic
 * cache (and logs why) when it cannot. */
static int check_semantic(api_req *r, const json_value *v, const char *self)
{
    static const struct { const char *name; double min, max; int integer; } known[] = {
        { "threshold", 0.5, 1, 0 }, { "ttl_s", 1, 2592000, 1 }, { "max_temperature", 0, 2, 0 },
    };
    if (v->type != JSON_OBJECT) {
        api_error(r, 400, "invalid_request_error", "cache.semantic must be an object such as {\"embedding_model\": \"emb\"}");
        return -1;
    }
    const json_value *e = json_get(v, "embedding_model");
    if (!e || e->type != JSON_STRING || !valid_alias(e->str, e->str_len) || (self && !strcmp(e->str, self))) {
        api_error(r, 400, "invalid_request_error", "cache.semantic.embedding_model must be another model's alias");
        return -1;
    }
    for (const json_value *f = v->first; f; f = f->next) {
        if (!strcmp(f->key, "embedding_model")) continue;
        size_t i = 0, n = sizeof known / sizeof known[0];
        while (i < n && strcmp(known[i].name, f->key)) i++;
        if (i == n) {
            api_error(r, 400, "invalid_request_error", "cache.semantic.%.40s is not a semantic cache setting", f->key);
            return -1;
        }
        if (f->type != JSON_NUMBER || !isfinite(f->num) || f->num < known[i].min || f->num > known[i].max ||
            (known[i].integer && !f->is_int)) {
            api_error(r, 400, "invalid_request_error", "cache.semantic.%s must be %s from %g to %g", f->key,
                      known[i].integer ? "an integer" : "a number", known[i].min, known[i].max);
            return -1;
        }
    }
    return 0;
}

static int parse_model(api_req *r, const json_value *body, int creating, const char *path_alias, model_in *m)
{
    static const char *const allowed[] = { "alias", "strategy", "deployments", "fallbacks", "cache", "router", "prompt",
                                           "guardrails", NULL };
    memset(m, 0, sizeof *m);
    if (api_only_fields(r, body, allowed) < 0) return -1;

    const json_value *v = json_get(body, "alias");
    if (creating || v) {
        if (!v || v->type != JSON_STRING || !valid_alias(v->str, v->str_len)) {
            api_error(r, 400, "invalid_request_error",
                      "alias must be a string of 1-%d characters from A-Z a-z 0-9 . _ : / @ + -", API_NAME_MAX);
            return -1;
        }
        if (!creating && strcmp(v->str, path_alias) != 0) {
            api_error(r, 400, "invalid_request_error", "alias cannot be changed; create a new model instead");
            return -1;
        }
        m->alias = v->str;
    }
    v = json_get(body, "strategy");
    if (v) {
        if (v->type != JSON_STRING || !in_list(v->str, g_strategies)) {
            api_error(r, 400, "invalid_request_error",
                      "strategy must be one of weighted, least_latency, least_cost, usage, classifier");
            return -1;
        }
        m->strategy = v->str;
    } else if (creating) {
        m->strategy = "weighted";
    }
    v = json_get(body, "deployments");
    if (creating || v) {
        if (!v || v->type != JSON_ARRAY || v->count == 0 || v->count > MAX_DEPLOYMENTS) {
            api_error(r, 400, "invalid_request_error", "deployments must be an array of 1-%d deployments",
                      MAX_DEPLOYMENTS);
            return -1;
        }
        size_t i = 0;
        for (const json_value *d = v->first; d; d = d->next, i++)
            if (check_deployment(r, i, d, &m->refs) < 0) return -1;
        m->has_deployments = 1;
        if (!(m->deployments = api_source(r, v))) goto oom;
    }
    v = json_get(body, "fallbacks");
    if (v && v->type != JSON_NULL) {
        if (v->type != JSON_ARRAY) {
            api_error(r, 400, "invalid_request_error", "fallbacks must be an array of model aliases");
            return -1;
        }
        size_t i = 0;
        const char *self = m->alias ? m->alias : path_alias;
        for (const json_value *f = v->first; f; f = f->next, i++) {
            if (f->type != JSON_STRING || !valid_alias(f->str, f->str_len)) {
                api_error(r, 400, "invalid_request_error", "fallbacks[%zu] must be a model alias", i);
                return -1;
            }
            if (self && strcmp(f->str, self) == 0) {
                api_error(r, 400, "invalid_request_error", "fallbacks[%zu] cannot be the model itself", i);
                return -1;
            }
        }
        m->has_fallbacks = 1;
        if (!(m->fallbacks = api_pg_text_array(v))) goto oom;
    } else if (v || creating) {
        m->has_fallbacks = 1;
        if (!(m->fallbacks = strdup("{}"))) goto oom;
    }
    v = json_get(body, "router");
    if (v) {
        m->has_router = 1;
        if (v->type != JSON_NULL) {
            if (check_router(r, v) < 0) return -1;
            if (!(m->router = api_source(r, v))) goto oom;
        }
    }
    v = json_get(body, "prompt");   /* checked as the data plane reads it (common/promptcfg.h) */
    if (v) {
        m->has_prompt = 1;
        if (v->type != JSON_NULL) {
            char why[200];
            if (!(m->prompt = api_source(r, v))) goto oom;
            gw_prompt *p = v->type == JSON_OBJECT ? prompt_from_json(m->prompt, why, sizeof why) : NULL;
            if (!p) {
                api_error(r, 400, "invalid_request_error", "%s", v->type == JSON_OBJECT && why[0] ? why
                          : "prompt must be an object such as {\"system_prefix\": \"...\", \"defaults\": {\"temperature\": 0.2}}");
                return -1;
            }
            prompt_free(p);
        }
    }
    v = json_get(body, "guardrails");
    if (v) {
        m->has_guardrails = 1;
        if (v->type != JSON_NULL) {
            if (v->type != JSON_ARRAY) {
                api_error(r, 400, "invalid_request_error", "guardrails must be an array of policies");
                return -1;
            }
            if (!(m->guardrails = api_source(r, v))) goto oom;
            /* compiled here as the gateway will: a bad pattern is named with PCRE2's offset */
            char why[320];
            guard_set *g = guard_set_parse_text(m->guardrails, strlen(m->guardrails), why, sizeof why);
            if (!g) { api_error(r, 400, "invalid_request_error", "%s", why); return -1; }
            guard_set_free(g);
        }
    }
    v = json_get(body, "cache");
    if (v) {
        m->has_cache = 1;
        if (v->type != JSON_NULL) {
            const json_value *ttl = json_get(v, "ttl_s");
            if (v->type != JSON_OBJECT) {
                api_error(r, 400, "invalid_request_error", "cache must be an object such as {\"ttl_s\": 300}");
                return -1;
            }
            if (ttl && (ttl->type != JSON_NUMBER || !ttl->is_int || ttl->i64 < 0)) {
                api_error(r, 400, "invalid_request_error", "cache.ttl_s must be a non-negative integer");
                return -1;
            }
            const json_value *sem = json_get(v, "semantic");
            if (sem && sem->type != JSON_NULL && check_semantic(r, sem, m->alias ? m->alias : path_alias) < 0) return -1;
            if (!(m->cache = api_source(r, v))) goto oom;
        }
    }
    return 0;
oom:
    api_error(r, 500, "server_error", "out of memory");
    return -1;
}

/* In the transaction: every cred: reference must name a stored credential. */
static int check_credentials(api_req *r, const cred_refs *refs)
{
    for (int i = 0; i < refs->n; i++) {
        const char *params[] = { refs->id[i] };
        PGresult *res = cp_db_exec(r->db, "SELECT 1 FROM credentials WHERE id = $1::uuid FOR KEY SHARE", 1, params);
        if (!res) { api_db_error(r, NULL); return -1; }
        int found = PQntuples(res) == 1;
        PQclear(res);
        if (!found) {
            cp_db_rollback(r->db);
            api_error(r, 400, "invalid_request_error", "%s: no credential with id %s", refs->where[i], refs->id[i]);
            return -1;
        }
    }
    return 0;
}

static int check_param_alias(api_req *r)
{
    if (r->param && valid_alias(r->param, strlen(r->param))) return 0;
    api_error(r, 404, "not_found", "no model with alias '%.200s'", r->param ? r->param : "");
    return -1;
}

void api_models_create(api_req *r)
{
    json_doc *doc;
    json_value *body = api_body_object(r, &doc);
    if (!body) return;
    model_in m;
    PGresult *res = NULL;
    if (parse_model(r, body, 1, NULL, &m) < 0) goto out;
    const char *params[] = { m.alias, m.strategy, m.deployments, m.fallbacks, m.cache, m.router, m.prompt,
                             m.guardrails };
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (check_credentials(r, &m.refs) < 0) goto out;
    if (!(res = cp_db_exec(r->db,
            "INSERT INTO models AS m (alias, strategy, deployments, fallbacks, cache, router, prompt, guardrails) "
            "VALUES ($1, $2, $3::jsonb, $4::text[], $5::jsonb, $6::jsonb, $7::jsonb, $8::jsonb) RETURNING " MODEL_JSON, 8, params)) ||
        cp_audit_record(r->db, r->actor, "create", "models", m.alias, NULL, PQgetvalue(res, 0, 0), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, "a model with this alias already exists");
        goto out;
    }
    api_reply(r, 201, PQgetvalue(res, 0, 0));
out:
    PQclear(res);
    model_in_free(&m);
    json_doc_free(doc);
}

void api_models_list(api_req *r)
{
    char limit[24], offset[24];
    if (api_paging(r, limit, offset) < 0) return;
    const char *q = api_query(r, "q");
    char *pattern = q && *q ? api_like_pattern(q) : NULL;
    if (q && *q && !pattern) { api_error(r, 500, "server_error", "out of memory"); return; }
    const char *params[] = { pattern, limit, offset };
    PGresult *res = cp_db_exec(r->db,
        "WITH f AS (SELECT * FROM models m WHERE $1::text IS NULL OR m.alias ILIKE $1 ESCAPE '\\') "
        "SELECT (SELECT count(*) FROM f), "
        "  coalesce((SELECT json_agg(" MODEL_JSON " ORDER BY m.alias) "
        "            FROM (SELECT * FROM f ORDER BY alias LIMIT $2::bigint OFFSET $3::bigint) m), '[]')",
        3, params);
    free(pattern);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply_page(r, res, limit, offset);
    PQclear(res);
}

void api_models_get(api_req *r)
{
    if (check_param_alias(r) < 0) return;
    api_reply_one(r, "SELECT " MODEL_JSON " FROM models m WHERE m.alias = $1", "model with alias");
}

static PGresult *lock_model(api_req *r)
{
    return api_lock_one(r, "SELECT " MODEL_JSON " FROM models m WHERE m.alias = $1 FOR UPDATE", "model with alias");
}

void api_models_update(api_req *r)
{
    if (check_param_alias(r) < 0) return;
    json_doc *doc;
    json_value *body = api_body_object(r, &doc);
    if (!body) return;
    model_in m;
    PGresult *before = NULL, *after = NULL;
    if (parse_model(r, body, 0, r->param, &m) < 0) goto out;
    if (!m.strategy && !m.has_deployments && !m.has_fallbacks && !m.has_cache && !m.has_router && !m.has_prompt &&
        !m.has_guardrails) {
        api_error(r, 400, "invalid_request_error",
                  "nothing to update: send strategy, deployments, fallbacks, cache, router, prompt or guardrails");
        goto out;
    }
    /* Absent members keep their value: CASE on a "present" flag per column. */
    const char *params[] = { r->param, m.strategy, m.has_deployments ? "1" : NULL, m.deployments,
                             m.has_fallbacks ? "1" : NULL, m.fallbacks, m.has_cache ? "1" : NULL, m.cache,
                             m.has_router ? "1" : NULL, m.router, m.has_prompt ? "1" : NULL, m.prompt,
                             m.has_guardrails ? "1" : NULL, m.guardrails };
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (!(before = lock_model(r)) || check_credentials(r, &m.refs) < 0) goto out;
    if (!(after = cp_db_exec(r->db,
            "UPDATE models AS m SET updated_at = now(), strategy = coalesce($2, m.strategy), "
            "  deployments = CASE WHEN $3::text IS NULL THEN m.deployments ELSE $4::jsonb END, "
            "  fallbacks = CASE WHEN $5::text IS NULL THEN m.fallbacks ELSE $6::text[] END, "
            "  cache = CASE WHEN $7::text IS NULL THEN m.cache ELSE $8::jsonb END, "
            "  router = CASE WHEN $9::text IS NULL THEN m.router ELSE $10::jsonb END, "
            "  prompt = CASE WHEN $11::text IS NULL THEN m.prompt ELSE $12::jsonb END, "
            "  guardrails = CASE WHEN $13::text IS NULL THEN m.guardrails ELSE $14::jsonb END "
            "WHERE m.alias = $1 RETURNING " MODEL_JSON, 14, params)) ||
        cp_audit_record(r->db, r->actor, "update", "models", r->param, PQgetvalue(before, 0, 0),
                        PQgetvalue(after, 0, 0), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    api_reply(r, 200, PQgetvalue(after, 0, 0));
out:
    PQclear(before);
    PQclear(after);
    model_in_free(&m);
    json_doc_free(doc);
}

void api_models_delete(api_req *r)
{
    if (check_param_alias(r) < 0) return;
    const char *params[] = { r->param };
    PGresult *before = NULL, *res = NULL;
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); return; }
    if (!(before = lock_model(r))) return;
    res = cp_db_exec(r->db, "SELECT alias FROM models WHERE $1 = ANY (fallbacks) ORDER BY alias LIMIT 1", 1, params);
    if (!res) { api_db_error(r, NULL); goto out; }
    if (PQntuples(res) == 1) {
        cp_db_rollback(r->db);
        api_error(r, 409, "conflict", "model '%.200s' is a fallback of '%.200s'; remove it there first",
                  r->param, PQgetvalue(res, 0, 0));
        goto out;
    }
    PQclear(res);
    if (!(res = cp_db_exec(r->db, "DELETE FROM models WHERE alias = $1", 1, params)) ||
        cp_audit_record(r->db, r->actor, "delete", "models", r->param, PQgetvalue(before, 0, 0), NULL, 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    buf_reset(&r->out);
    buf_puts(&r->out, "{\"alias\":");
    buf_json_str(&r->out, r->param, strlen(r->param));
    buf_puts(&r->out, ",\"deleted\":true}");
    r->status = 200;
out:
    PQclear(before);
    PQclear(res);
}
