/* /api/credentials: provider secrets, encrypted at rest.
 *
 * The secret is sealed with AES-256-GCM under the master key (which lives in
 * a file, not in the database) with a fresh random nonce, and the row id as
 * additional data. Nothing the API returns, and nothing in the audit log,
 * contains the secret, its ciphertext or more than its last 4 characters.
 * Deployments refer to a credential as "cred:<id>".
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CRED_JSON \
    "json_build_object('id', c.id, 'name', c.name, 'provider', c.provider, 'hint', c.hint, " \
    "'ref', 'cred:' || c.id, 'key_fingerprint', c.key_fingerprint, " \
    "'created_at', c.created_at, 'updated_at', c.updated_at)"

#define SECRET_MAX 16384

static const char *const g_providers[] = {
    "openai", "azure", "anthropic", "gemini", "bedrock", "ollama", "openai_compatible", "mock", NULL
};

/* Hex of the sealed secret, ready for decode($n, 'hex'). */
typedef struct sealed {
    char *ct_hex;
    char  nonce_hex[2 * CP_GCM_NONCE_LEN + 1];
    char  tag_hex[2 * CP_GCM_TAG_LEN + 1];
} sealed;

static int seal(const unsigned char *key, const char *id, const char *secret, size_t n, sealed *out)
{
    unsigned char nonce[CP_GCM_NONCE_LEN], tag[CP_GCM_TAG_LEN];
    unsigned char *ct = malloc(n ? n : 1);
    out->ct_hex = malloc(2 * n + 1);
    if (!ct || !out->ct_hex ||
        cp_aes_gcm_encrypt(key, id, strlen(id), secret, n, nonce, ct, tag) < 0) {
        free(ct);
        free(out->ct_hex);
        out->ct_hex = NULL;
        return -1;
    }
    cp_hex(ct, n, out->ct_hex);
    cp_hex(nonce, sizeof nonce, out->nonce_hex);
    cp_hex(tag, sizeof tag, out->tag_hex);
    free(ct);
    return 0;
}

void api_credentials_create(api_req *r)
{
    static const char *const allowed[] = { "name", "provider", "secret", NULL };
    json_doc *doc;
    json_value *body = api_body_object(r, &doc);
    if (!body) return;
    sealed s = { 0 };
    PGresult *res = NULL;
    if (api_only_fields(r, body, allowed) < 0) goto out;
    const json_value *name = json_get(body, "name"), *provider = json_get(body, "provider"),
                     *secret = json_get(body, "secret");
    if (!name || name->type != JSON_STRING || name->str_len == 0 || name->str_len > API_NAME_MAX ||
        memchr(name->str, '\0', name->str_len)) {
        api_error(r, 400, "invalid_request_error", "name must be a non-empty string of at most %d bytes",
                  API_NAME_MAX);
        goto out;
    }
    int known = 0;
    for (const char *const *p = g_providers; provider && provider->type == JSON_STRING && *p; p++)
        known |= strcmp(provider->str, *p) == 0;
    if (!known) {
        api_error(r, 400, "invalid_request_error",
                  "provider must be one of openai, azure, anthropic, gemini, bedrock, ollama, openai_compatible, mock");
        goto out;
    }
    if (!secret || secret->type != JSON_STRING || secret->str_len == 0 || secret->str_len > SECRET_MAX ||
        memchr(secret->str, '\0', secret->str_len)) {
        api_error(r, 400, "invalid_request_error", "secret must be a non-empty string of at most %d bytes",
                  SECRET_MAX);
        goto out;
    }
    char id[37], hint[16];
    if (cp_uuid_v4(id) < 0 || seal(r->master_key, id, secret->str, secret->str_len, &s) < 0) {
        api_error(r, 500, "server_error", "encryption failed");
        goto out;
    }
    /* A short secret would be mostly revealed by its last 4 characters. */
    if (secret->str_len >= 12) snprintf(hint, sizeof hint, "****%s", secret->str + secret->str_len - 4);
    else snprintf(hint, sizeof hint, "****");
    const char *params[] = { id, name->str, provider->str, s.ct_hex, s.nonce_hex, s.tag_hex, r->master_key_fp, hint };
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); goto out; }
    if (!(res = cp_db_exec(r->db,
            "INSERT INTO credentials AS c (id, name, provider, ciphertext, nonce, tag, key_fingerprint, hint) "
            "VALUES ($1::uuid, $2, $3, decode($4, 'hex'), decode($5, 'hex'), decode($6, 'hex'), $7, $8) "
            "RETURNING " CRED_JSON, 8, params)) ||
        cp_audit_record(r->db, r->actor, "create", "credentials", id, NULL, PQgetvalue(res, 0, 0), 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, "a credential with this name already exists");
        goto out;
    }
    api_reply(r, 201, PQgetvalue(res, 0, 0));
out:
    PQclear(res);
    free(s.ct_hex);
    if (doc) {
        /* the parsed document holds the decoded secret */
        json_value *root = json_root(doc);
        const json_value *sv = root ? json_get(root, "secret") : NULL;
        if (sv && sv->type == JSON_STRING) cp_wipe((void *)sv->str, sv->str_len);
    }
    json_doc_free(doc);
}

void api_credentials_list(api_req *r)
{
    char limit[24], offset[24];
    if (api_paging(r, limit, offset) < 0) return;
    const char *provider = api_query(r, "provider");
    if (provider && !*provider) provider = NULL;
    const char *params[] = { provider, limit, offset };
    PGresult *res = cp_db_exec(r->db,
        "WITH f AS (SELECT * FROM credentials c WHERE $1::text IS NULL OR c.provider = $1) "
        "SELECT (SELECT count(*) FROM f), "
        "  coalesce((SELECT json_agg(" CRED_JSON " ORDER BY c.name) "
        "            FROM (SELECT * FROM f ORDER BY name LIMIT $2::bigint OFFSET $3::bigint) c), '[]')",
        3, params);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply_page(r, res, limit, offset);
    PQclear(res);
}

void api_credentials_get(api_req *r)
{
    if (api_param_uuid(r, "credential") < 0) return;
    api_reply_one(r, "SELECT " CRED_JSON " FROM credentials c WHERE c.id = $1::uuid", "credential with id");
}

void api_credentials_delete(api_req *r)
{
    if (api_param_uuid(r, "credential") < 0) return;
    const char *params[] = { r->param };
    PGresult *before = NULL, *res = NULL;
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); return; }
    before = cp_db_exec(r->db, "SELECT " CRED_JSON " FROM credentials c WHERE c.id = $1::uuid FOR UPDATE", 1, params);
    if (!before) { api_db_error(r, NULL); return; }
    if (PQntuples(before) != 1) {
        cp_db_rollback(r->db);
        api_error(r, 404, "not_found", "no credential with id '%s'", r->param);
        goto out;
    }
    /* A deployment still pointing at it would lose its secret: refuse. */
    res = cp_db_exec(r->db,
        "SELECT m.alias FROM models m, jsonb_array_elements(m.deployments) d, jsonb_each(d) kv "
        "WHERE jsonb_typeof(d) = 'object' AND kv.value = to_jsonb('cred:' || $1::text) ORDER BY m.alias LIMIT 1",
        1, params);
    if (!res) { api_db_error(r, NULL); goto out; }
    if (PQntuples(res) == 1) {
        cp_db_rollback(r->db);
        api_error(r, 409, "conflict", "credential %s is used by model '%.200s'", r->param, PQgetvalue(res, 0, 0));
        goto out;
    }
    PQclear(res);
    if (!(res = cp_db_exec(r->db, "DELETE FROM credentials WHERE id = $1::uuid", 1, params)) ||
        cp_audit_record(r->db, r->actor, "delete", "credentials", r->param, PQgetvalue(before, 0, 0), NULL, 1) < 0 ||
        cp_db_commit(r->db) < 0) {
        api_db_error(r, NULL);
        goto out;
    }
    buf_reset(&r->out);
    buf_printf(&r->out, "{\"id\":\"%s\",\"deleted\":true}", r->param);
    r->status = 200;
out:
    PQclear(before);
    PQclear(res);
}

char *api_credential_plaintext(cp_dbconn *c, const unsigned char master_key[CP_MASTER_KEY_LEN], const char *id)
{
    if (!cp_uuid_valid(id)) return NULL;
    const char *params[] = { id };
    PGresult *res = cp_db_exec(c,
        "SELECT encode(ciphertext, 'hex'), encode(nonce, 'hex'), encode(tag, 'hex') FROM credentials "
        "WHERE id = $1::uuid", 1, params);
    if (!res) return NULL;
    char *out = NULL;
    unsigned char *ct = NULL;
    if (PQntuples(res) == 1) {
        const char *cth = PQgetvalue(res, 0, 0), *nh = PQgetvalue(res, 0, 1), *th = PQgetvalue(res, 0, 2);
        size_t n = strlen(cth) / 2;
        unsigned char nonce[CP_GCM_NONCE_LEN], tag[CP_GCM_TAG_LEN];
        char canon[37];
        ct = malloc(n ? n : 1);
        out = malloc(n + 1);
        /* the AAD is the id as stored at encryption time: canonical lower case */
        snprintf(canon, sizeof canon, "%s", id);
        for (char *p = canon; *p; p++)
            if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
        if (!ct || !out || cp_unhex(cth, 2 * n, ct, n) < 0 || cp_unhex(nh, strlen(nh), nonce, sizeof nonce) < 0 ||
            cp_unhex(th, strlen(th), tag, sizeof tag) < 0 ||
            cp_aes_gcm_decrypt(master_key, canon, strlen(canon), ct, n, nonce, tag, (unsigned char *)out) < 0) {
            free(out);
            out = NULL;
        } else {
            out[n] = '\0';
        }
    }
    free(ct);
    PQclear(res);
    return out;
}
