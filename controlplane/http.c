#include "http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "static.h"

struct cp_http {
    struct MHD_Daemon *daemon;
    cp_db             *db;
    unsigned char      master_key[CP_MASTER_KEY_LEN];
    char               master_key_fp[17];
};

/* Who may call a route. */
enum access {
    ACCESS_PUBLIC,      /* no token, no database (metrics) */
    ACCESS_PUBLIC_DB,   /* no token, needs the database (healthz) */
    ACCESS_READ,        /* viewer or admin */
    ACCESS_WRITE,       /* admin */
};

typedef struct route {
    const char *method;
    const char *pattern;     /* "{name}" matches one segment, "{name*}" the rest of the path */
    api_handler fn;
    enum access access;
} route;

static void metrics_handler(api_req *r);

/* The routing table: the whole admin API surface on one screen. */
static const route g_routes[] = {
    { "GET",    "/healthz",                        api_healthz,             ACCESS_PUBLIC_DB },
    { "GET",    "/metrics",                        metrics_handler,         ACCESS_PUBLIC },

    { "POST",   "/api/keys",                       api_keys_create,         ACCESS_WRITE },
    { "GET",    "/api/keys",                       api_keys_list,           ACCESS_READ },
    { "GET",    "/api/keys/{id}",                  api_keys_get,            ACCESS_READ },
    { "PATCH",  "/api/keys/{id}",                  api_keys_update,         ACCESS_WRITE },
    { "POST",   "/api/keys/{id}/revoke",           api_keys_revoke,         ACCESS_WRITE },
    { "POST",   "/api/keys/{id}/rotate",           api_keys_rotate,         ACCESS_WRITE },

    { "POST",   "/api/teams",                      api_teams_create,        ACCESS_WRITE },
    { "GET",    "/api/teams",                      api_teams_list,          ACCESS_READ },
    { "GET",    "/api/teams/{id}",                 api_teams_get,           ACCESS_READ },
    { "PATCH",  "/api/teams/{id}",                 api_teams_update,        ACCESS_WRITE },
    { "DELETE", "/api/teams/{id}",                 api_teams_delete,        ACCESS_WRITE },

    { "POST",   "/api/models",                     api_models_create,       ACCESS_WRITE },
    { "GET",    "/api/models",                     api_models_list,         ACCESS_READ },
    { "GET",    "/api/models/{alias*}",            api_models_get,          ACCESS_READ },
    { "PATCH",  "/api/models/{alias*}",            api_models_update,       ACCESS_WRITE },
    { "DELETE", "/api/models/{alias*}",            api_models_delete,       ACCESS_WRITE },

    { "POST",   "/api/credentials",                api_credentials_create,  ACCESS_WRITE },
    { "GET",    "/api/credentials",                api_credentials_list,    ACCESS_READ },
    { "GET",    "/api/credentials/{id}",           api_credentials_get,     ACCESS_READ },
    { "DELETE", "/api/credentials/{id}",           api_credentials_delete,  ACCESS_WRITE },

    /* Admin tokens are admin-only even to read: a viewer must not learn who holds power. */
    { "POST",   "/api/admin-tokens",               api_admin_tokens_create, ACCESS_WRITE },
    { "GET",    "/api/admin-tokens",               api_admin_tokens_list,   ACCESS_WRITE },
    { "POST",   "/api/admin-tokens/{id}/revoke",   api_admin_tokens_revoke, ACCESS_WRITE },
    { "DELETE", "/api/admin-tokens/{id}",          api_admin_tokens_revoke, ACCESS_WRITE },

    { "GET",    "/api/dataplanes",                 api_dataplanes_list,     ACCESS_READ },
    { "GET",    "/api/dataplanes/{id}",            api_dataplanes_get,      ACCESS_READ },

    { "GET",    "/api/audit",                      api_audit_list,          ACCESS_READ },

    { "GET",    "/api/spend",                      api_spend_summary,       ACCESS_READ },
    { "GET",    "/api/spend/logs",                 api_spend_logs,          ACCESS_READ },

    /* Read-only aggregates and identity for the admin UI (api/overview.c). */
    { "GET",    "/api/me",                         api_me,                  ACCESS_READ },
    { "GET",    "/api/overview",                   api_overview,            ACCESS_READ },
    { "GET",    "/api/ab",                         api_ab,                  ACCESS_READ },   /* evaluated A/B */
};
#define NROUTES (sizeof g_routes / sizeof g_routes[0])
#define MAX_PARAM 512

/* Per-request state kept by MHD between calls of the access handler. */
typedef struct reqstate {
    buf_t           body;
    int             too_large;
    int             responded;
    struct timespec t0;
} reqstate;

/* ---- response helpers for handlers (declared in api/api.h) ---- */

void api_reply(api_req *r, int status, const char *json)
{
    buf_reset(&r->out);
    buf_puts(&r->out, json);
    r->status = status;
}

void api_error(api_req *r, int status, const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages may quote a (truncated) path or value: keep the JSON valid UTF-8. */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20) *p = '?';
    buf_reset(&r->out);
    buf_puts(&r->out, "{\"error\":{\"message\":");
    buf_json_str(&r->out, msg, strlen(msg));
    buf_puts(&r->out, ",\"type\":");
    buf_json_str(&r->out, type, strlen(type));
    buf_puts(&r->out, "}}");
    r->status = status;
    r->content_type = NULL;
}

void api_db_error(api_req *r, const char *conflict_what)
{
    cp_dbconn *c = r->db;
    const char *state = cp_db_sqlstate(c);
    cp_db_rollback(c);
    if (cp_db_lost(c)) {
        api_error(r, 503, "server_error", "database unavailable; retry later");
    } else if (strcmp(state, "23505") == 0) {
        api_error(r, 409, "conflict", "%s", conflict_what ? conflict_what : "resource already exists");
    } else if (strcmp(state, "23503") == 0) {
        api_error(r, 409, "conflict", "a referenced resource does not exist or is still in use");
    } else if (strncmp(state, "22", 2) == 0 || strcmp(state, "23514") == 0) {
        /* invalid value Postgres caught that the handler's checks did not (e.g. February 30) */
        api_error(r, 400, "invalid_request_error", "invalid value: %s", cp_db_errmsg(c));
    } else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
               strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0) {
        api_error(r, 503, "server_error", "database busy; retry");
    } else {
        log_error("database error %s on %s %s: %s", state, r->method, r->path, cp_db_errmsg(c));
        api_error(r, 500, "server_error", "internal database error");
    }
}

const char *api_query(const api_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

json_value *api_body_object(api_req *r, json_doc **doc)
{
    *doc = NULL;
    if (!r->body || r->body_len == 0) {
        api_error(r, 400, "invalid_request_error", "request body must be a JSON object");
        return NULL;
    }
    json_limits lim = { .max_depth = 32, .max_bytes = API_MAX_BODY };
    json_error err;
    memset(&err, 0, sizeof err);
    json_doc *d = json_parse(r->body, r->body_len, &lim, &err);
    if (!d) {
        if (strcmp(err.message, "out of memory") == 0)
            api_error(r, 500, "server_error", "out of memory");
        else
            api_error(r, 400, "invalid_request_error", "invalid JSON at line %d column %d (byte %zu): %s",
                      err.line, err.column, err.offset, err.message);
        return NULL;
    }
    json_value *root = json_root(d);
    if (!root || root->type != JSON_OBJECT) {
        json_doc_free(d);
        api_error(r, 400, "invalid_request_error", "request body must be a JSON object");
        return NULL;
    }
    *doc = d;
    return root;
}

static void metrics_handler(api_req *r)
{
    buf_reset(&r->out);
    cp_metrics_render(&r->out);
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* ---- routing ---- */

/* 1 if path matches pattern, the {..} part copied to param. */
static int match(const char *pattern, const char *path, char *param, size_t plen)
{
    const char *p = pattern, *s = path;
    while (*p) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close) return 0;
            int tail = close[-1] == '*';
            size_t n = tail ? strlen(s) : strcspn(s, "/");
            if (n == 0 || n >= plen) return 0;
            memcpy(param, s, n);
            param[n] = '\0';
            s += n;
            p = close + 1;
        } else {
            if (*p != *s) return 0;
            p++;
            s++;
        }
    }
    return *s == '\0';
}

/* ---- authentication ---- */

static int authenticate(api_req *r, cp_actor *actor)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        api_error(r, 401, "authentication_error", "missing admin token: send Authorization: Bearer <token>");
        return -1;
    }
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    size_t n = strlen(tok);
    while (n > 0 && tok[n - 1] == ' ') n--;
    if (n == 0 || n > 512) {
        api_error(r, 401, "authentication_error", "invalid admin token");
        return -1;
    }
    unsigned char hash[CP_SHA256_LEN];
    char hex[2 * CP_SHA256_LEN + 1];
    cp_sha256(tok, n, hash);
    cp_hex(hash, sizeof hash, hex);
    const char *params[] = { hex };
    PGresult *res = cp_db_exec(r->db,
        "SELECT id, name, role FROM admin_tokens WHERE token_sha256 = decode($1, 'hex') AND revoked_at IS NULL",
        1, params);
    if (!res) {
        api_db_error(r, NULL);
        return -1;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        api_error(r, 401, "authentication_error", "invalid or revoked admin token");
        return -1;
    }
    snprintf(actor->id, sizeof actor->id, "%s", PQgetvalue(res, 0, 0));
    snprintf(actor->name, sizeof actor->name, "%s", PQgetvalue(res, 0, 1));
    actor->role = strcmp(PQgetvalue(res, 0, 2), "admin") == 0 ? CP_ROLE_ADMIN : CP_ROLE_VIEWER;
    PQclear(res);
    return 0;
}

/* One attempt: authenticate (unless public), check the role, run the handler. */
static void run_route(api_req *r, const route *rt, cp_actor *actor)
{
    if (rt->access != ACCESS_PUBLIC_DB) {
        if (authenticate(r, actor) < 0) return;
        r->actor = actor;
        if (rt->access == ACCESS_WRITE && actor->role != CP_ROLE_ADMIN) {
            api_error(r, 403, "permission_error", "this admin token is read-only (role viewer)");
            return;
        }
    }
    rt->fn(r);
}

/* ---- MHD glue ---- */

/* Response bodies can hold a key or token shown once: wipe them when MHD is done. */
static void free_wiped(void *p)
{
    cp_wipe(p, strlen(p));
    free(p);
}

/* Takes ownership of body (malloc'd, NUL-terminated). */
static enum MHD_Result send_response(struct MHD_Connection *conn, int status, const char *ctype,
                                     char *body, const char *allow)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(strlen(body), body,
                                                                                   free_wiped);
    if (!resp) {
        free_wiped(body);
        return MHD_NO;
    }
    enum MHD_Result ok = MHD_YES;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") != MHD_YES ||
        (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES))
        ok = MHD_NO;
    if (ok == MHD_YES) ok = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static double since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static enum MHD_Result finish(struct MHD_Connection *conn, reqstate *st, api_req *r,
                              const char *label, const char *allow)
{
    if (r->status == 0) api_error(r, 500, "server_error", "no response");
    if (r->out.oom) api_error(r, 500, "server_error", "out of memory");
    const char *ctype = r->content_type ? r->content_type : "application/json";
    char *body = buf_steal(&r->out);
    enum MHD_Result ok = body ? send_response(conn, r->status, ctype, body, allow) : MHD_NO;
    double secs = since(&st->t0);
    cp_metrics_observe(label, r->method, r->status, secs);
    if (strcmp(label, "/metrics") != 0 && strcmp(label, "/healthz") != 0) {
        char shown[201];            /* the path as a client sent it: printable ASCII only in logs */
        snprintf(shown, sizeof shown, "%s", r->path);
        for (char *p = shown; *p; p++)
            if ((unsigned char)*p >= 0x7f || (unsigned char)*p < 0x20) *p = '?';
        log_info("%s %s %d %.1fms%s%s", r->method, shown, r->status, secs * 1000,
                 r->actor ? " actor=" : "", r->actor ? r->actor->name : "");
    }
    st->responded = 1;
    return ok;
}

static enum MHD_Result handle(cp_http *h, struct MHD_Connection *conn, const char *url,
                              const char *method, reqstate *st)
{
    api_req r;
    memset(&r, 0, sizeof r);
    buf_init(&r.out);
    r.method = method;
    r.conn = conn;
    r.body = st->body.len ? st->body.data : NULL;
    r.body_len = st->body.len;
    r.master_key = h->master_key;
    r.master_key_fp = h->master_key_fp;

    char path[1024];
    if (strlen(url) >= sizeof path) {
        r.path = "(too long)";
        api_error(&r, 404, "not_found", "no such path");
        enum MHD_Result ok = finish(conn, st, &r, "unmatched", NULL);
        buf_free(&r.out);
        return ok;
    }
    snprintf(path, sizeof path, "%s", url);
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/') path[--plen] = '\0';
    r.path = path;

    if (st->too_large) {
        api_error(&r, 413, "invalid_request_error", "request body larger than %d bytes", API_MAX_BODY);
        enum MHD_Result ok = finish(conn, st, &r, "unmatched", NULL);
        buf_free(&r.out);
        return ok;
    }

    char param[MAX_PARAM] = "", tmp[MAX_PARAM] = "", allow[64] = "";
    cp_actor actor;                        /* outlives the handler: finish() logs its name */
    memset(&actor, 0, sizeof actor);
    const route *rt = NULL;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!match(g_routes[i].pattern, path, tmp, sizeof tmp)) continue;
        if (strlen(allow) + strlen(g_routes[i].method) + 3 < sizeof allow && !strstr(allow, g_routes[i].method)) {
            if (*allow) strcat(allow, ", ");
            strcat(allow, g_routes[i].method);
        }
        if (!rt && strcmp(g_routes[i].method, method) == 0) {
            rt = &g_routes[i];
            snprintf(param, sizeof param, "%s", tmp);
        }
    }
    /* Anything else read outside /api is a file of the admin UI (static.c). */
    if (!rt && !*allow && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
        strncmp(path, "/api/", 5) != 0 && strcmp(path, "/api") != 0) {
        int status = 500;
        enum MHD_Result ok = cp_static_serve(conn, path, method, &status) == MHD_YES ? MHD_YES : MHD_NO;
        cp_metrics_observe("static", method, status, since(&st->t0));
        st->responded = 1;
        buf_free(&r.out);
        return ok;
    }
    const char *label = rt ? rt->pattern : "unmatched";
    if (!rt && !*allow) {
        api_error(&r, 404, "not_found", "no route for %s %.200s", method, path);
    } else if (!rt) {
        api_error(&r, 405, "invalid_request_error", "method %s not allowed on %.200s (allowed: %s)",
                  method, path, allow);
    } else {
        r.param = strchr(rt->pattern, '{') ? param : NULL;
        if (rt->access == ACCESS_PUBLIC) {
            rt->fn(&r);
        } else {
            r.db = cp_db_acquire(h->db);
            for (int attempt = 0; attempt < 2; attempt++) {
                cp_db_request_start(r.db);
                buf_reset(&r.out);
                r.status = 0;
                r.content_type = NULL;
                r.actor = NULL;
                run_route(&r, rt, &actor);
                /* The connection died before anything was committed: the work
                 * was rolled back with it, so running it again is safe. */
                if (!cp_db_lost(r.db) || cp_db_commit_sent(r.db) || attempt == 1) break;
                if (cp_db_ensure(r.db) < 0) break;
                log_info("retrying %s %s on a fresh database connection", method, rt->pattern);
            }
            if (cp_db_lost(r.db) && cp_db_commit_sent(r.db))
                api_error(&r, 503, "server_error",
                          "database connection lost while committing; the change may or may not be applied");
            else if (cp_db_lost(r.db) && r.status != 503 && !(r.status >= 200 && r.status < 300))
                api_error(&r, 503, "server_error", "database unavailable; retry later");
            cp_db_release(h->db, r.db);
        }
    }
    enum MHD_Result ok = finish(conn, st, &r, label, r.status == 405 ? allow : NULL);
    buf_free(&r.out);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    cp_http *h = cls;
    reqstate *st = *con_cls;
    (void)version;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st) return MHD_NO;
        buf_init(&st->body);
        clock_gettime(CLOCK_MONOTONIC, &st->t0);
        *con_cls = st;
        /* Refuse an announced oversized body before reading it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > API_MAX_BODY) {
            st->too_large = 1;
            return handle(h, conn, url, method, st);
        }
        return MHD_YES;
    }
    if (st->responded) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!st->too_large) {
            if (st->body.len + *upload_size > API_MAX_BODY) {
                st->too_large = 1;
                buf_free(&st->body);
            } else if (buf_append(&st->body, upload_data, *upload_size) < 0) {
                return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return handle(h, conn, url, method, st);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    reqstate *st = *con_cls;
    if (!st) return;
    cp_wipe(st->body.data, st->body.len);     /* bodies carry credential secrets */
    buf_free(&st->body);
    free(st);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n') msg[--n] = '\0';
    log_warn("http: %s", msg);
}

/* "host:port", "[v6]:port", ":port" -> host (NULL = any) and port strings. */
static int split_listen(const char *listen, char *host, size_t hlen, char *port, size_t portlen)
{
    const char *colon;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':') return -1;
        if ((size_t)(close - listen - 1) >= hlen) return -1;
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= hlen) return -1;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
    }
    if (snprintf(port, portlen, "%s", colon + 1) >= (int)portlen || !*port) return -1;
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    return 0;
}

cp_http *cp_http_start(const char *listen, int threads, cp_db *db,
                       const unsigned char master_key[CP_MASTER_KEY_LEN],
                       char *err, size_t errlen)
{
    char host[256], port[16];
    if (!listen || split_listen(listen, host, sizeof host, port, sizeof port) < 0) {
        snprintf(err, errlen, "admin_listen must look like 127.0.0.1:8081, [::1]:8081 or :8081 (got '%s')",
                 listen ? listen : "");
        return NULL;
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve admin_listen %s: %s", listen, gai_strerror(gai));
        return NULL;
    }
    cp_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->db = db;
    memcpy(h->master_key, master_key, CP_MASTER_KEY_LEN);
    cp_master_key_fingerprint(master_key, h->master_key_fp);
    /* ITC: lets cp_http_stop quiesce (stop accepting) before it drains. */
    unsigned flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, (uint16_t)strtoul(port, NULL, 10), NULL, NULL, on_request, h,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,   /* first, to catch all */
                                 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(threads > 0 ? threads : 1),
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
                                 MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                                 MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->daemon) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not available)", listen);
        cp_wipe(h->master_key, sizeof h->master_key);
        free(h);
        return NULL;
    }
    return h;
}

void cp_http_stop(cp_http *h)
{
    if (!h) return;
    /* Drain: stop accepting, give open connections a bounded moment to
     * finish their requests, then close whatever is left (idle keep-alives). */
    MHD_socket ls = MHD_quiesce_daemon(h->daemon);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    for (int i = 0; i < 30; i++) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections == 0) break;
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(h->daemon);
    cp_wipe(h->master_key, sizeof h->master_key);
    free(h);
}
