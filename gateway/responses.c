#include "responses.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <evhtp.h>

#include "auth.h"
#include "buf.h"
#include "httputil.h"
#include "json.h"
#include "respredis.h"
#include "respstore.h"
#include "config.h"
#include "worker.h"

#define STORED_MAX_DEPTH 64

/* Ids the gateway made: "resp_" and [A-Za-z0-9_-]; anything else is never stored. */
static int valid_id(const char *s, size_t n)
{
    if (n == 0 || n > RESPSTORE_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return 0;
    }
    return 1;
}

static struct respredis *g_redis;   /* this worker's Redis tier (one worker = one process) */

void responses_set_redis(struct respredis *rr) { g_redis = rr; }

/* Stored bytes (from this node or from Redis: hostile either way) as the
 * {"input":[...],"response":{...}} document: 1 ok (doc and its source,
 * a copy, returned), -1 unreadable or out of memory. */
static int parse_stored(const char *data, size_t len, char **src, json_doc **doc)
{
    json_limits lim = { .max_depth = STORED_MAX_DEPTH, .max_bytes = 0 };
    *doc = NULL;
    if (!(*src = malloc(len + 1))) return -1;
    memcpy(*src, data, len);
    (*src)[len] = '\0';
    const json_value *root = (*doc = json_parse(*src, len, &lim, NULL)) ? json_root(*doc) : NULL;
    const json_value *in = root && root->type == JSON_OBJECT ? json_get(root, "input") : NULL;
    const json_value *resp = root && root->type == JSON_OBJECT ? json_get(root, "response") : NULL;
    if (!in || in->type != JSON_ARRAY || !resp || resp->type != JSON_OBJECT) {
        json_doc_free(*doc);
        *doc = NULL;
        free(*src);
        *src = NULL;
        return -1;
    }
    return 1;
}

/* The node's copy for (subject, id): 1 found (parsed), 0 not, -1 out of
 * memory or unreadable. */
static int load(const char *subject, const char *id, char **src, json_doc **doc)
{
    buf_t b; buf_init(&b);
    int rc = respstore_get(subject, id, &b);
    if (rc > 0) rc = b.oom ? -1 : parse_stored(b.data ? b.data : "", b.len, src, doc);
    buf_free(&b);
    return rc;
}

/* A Redis hit, checked as the node's own entries are; a good one is copied
 * to this node so the next follow-up needs no round trip. 1 ok, 0 corrupt
 * or out of memory (a miss). */
static int load_remote(const char *subject, const char *id, const char *data, size_t len, char **src, json_doc **doc)
{
    if (parse_stored(data, len, src, doc) < 0) return 0;
    respstore_put(subject, id, data, len);
    return 1;
}

static void not_found_msg(const char *id, size_t n, char *msg, size_t msglen, const char **param)
{
    *param = "previous_response_id";
    snprintf(msg, msglen, "Previous response with id '%.*s' not found.", (int)(n > 80 ? 80 : n), id);
}

/* The chat form from the request and the previous response (if any). */
static int finish_prepare(chat_req *q, const json_value *root, const char *body, char *msg, size_t msglen,
                          const char **param)
{
    chat_responses *x = q->responses;
    if (chat_from_responses(root, body, x->prev ? json_root(x->prev) : NULL, x->prev_src, q, msg, msglen, param) < 0)
        return 400;
    return 0;
}

/* A previous_response_id this node does not hold, asked of Redis. */
typedef struct prev_wait {
    chat_req         *q;
    const json_value *root;
    const char       *body;
    responses_cb      cb;
    void             *ud;
    char              id[RESPSTORE_ID_MAX + 1];
} prev_wait;

static void on_prev_answer(void *ud, int result, const char *data, size_t len)
{
    prev_wait *p = ud;
    if (result != RESPREDIS_GONE) {
        chat_responses *x = p->q->responses;
        char msg[256];
        const char *param = NULL;
        int st = 404;
        if (result == RESPREDIS_HIT && load_remote(x->subject, p->id, data, len, &x->prev_src, &x->prev) > 0)
            st = finish_prepare(p->q, p->root, p->body, msg, sizeof msg, &param);
        else not_found_msg(p->id, strlen(p->id), msg, sizeof msg, &param);
        p->cb(p->ud, st, msg, param);
    }
    free(p);
}

int responses_prepare(chat_req *q, const json_value *root, const char *body, const gw_key *key,
                      char *msg, size_t msglen, const char **param, responses_cb cb, void *ud,
                      struct respredis_op **wait)
{
    *wait = NULL;
    chat_responses *x = calloc(1, sizeof *x);
    if (!x) { snprintf(msg, msglen, "Out of memory."); *param = NULL; return 500; }
    buf_init(&x->echo);
    buf_init(&x->input);
    q->responses = x;
    auth_subject(key, x->subject, sizeof x->subject);
    const json_value *pid = root->type == JSON_OBJECT ? json_get(root, "previous_response_id") : NULL;
    if (pid && pid->type == JSON_STRING) {
        int ok = valid_id(pid->str, pid->str_len);
        int rc = ok ? load(x->subject, pid->str, &x->prev_src, &x->prev) : 0;
        if (rc == 0 && ok && respredis_up(g_redis)) {   /* not on this node: perhaps another stored it */
            prev_wait *p = calloc(1, sizeof *p);
            if (p) {
                *p = (prev_wait){ .q = q, .root = root, .body = body, .cb = cb, .ud = ud };
                memcpy(p->id, pid->str, pid->str_len);
                if (respredis_get(g_redis, x->subject, p->id, on_prev_answer, p, wait)) return RESPONSES_PENDING;
                free(p);
            }
        }
        if (rc <= 0) {
            if (rc < 0) {
                *param = "previous_response_id";
                snprintf(msg, msglen, "The previous response could not be read.");
                return 500;
            }
            not_found_msg(pid->str, pid->str_len, msg, msglen, param);
            return 404;
        }
    }
    return finish_prepare(q, root, body, msg, msglen, param);
}

void responses_keep(const chat_req *q, const char *id, const char *response, size_t len)
{
    const chat_responses *x = q ? q->responses : NULL;
    if (!x || !x->store || !respstore_enabled() || x->input.oom || !x->input.len) return;
    buf_t b; buf_init(&b);
    buf_puts(&b, "{\"input\":");
    buf_append(&b, x->input.data, x->input.len);
    buf_puts(&b, ",\"response\":");
    buf_append(&b, response, len);
    buf_putc(&b, '}');
    if (!b.oom) {   /* too large: not kept (a later GET is a 404) */
        respstore_put(x->subject, id, b.data, b.len);
        respredis_put(g_redis, x->subject, id, b.data, b.len);   /* write-through: every node finds it */
    }
    buf_free(&b);
}

void responses_rekeep(const chat_req *q, const char *response, size_t len, int blocked)
{
    const chat_responses *x = q ? q->responses : NULL;
    if (!x || !x->store || !respstore_enabled()) return;
    json_limits lim = { .max_depth = 64, .max_bytes = len };
    json_doc *d = json_parse(response, len, &lim, NULL);
    const char *id = d ? json_get_str(json_root(d), "id") : NULL;
    if (id && blocked) respstore_del(x->subject, id);
    else if (id) responses_keep(q, id, response, len);
    json_doc_free(d);
}

/* ---- GET / DELETE /v1/responses/{id}[/input_items] ---- */

static void not_found(evhtp_request_t *req, const char *id, size_t n)
{
    char msg[160];
    snprintf(msg, sizeof msg, "Response with id '%.*s' not found.", (int)(n > 80 ? 80 : n), id);
    http_send_openai_error(req, 404, "invalid_request_error", "not_found", NULL, msg);
}

/* {"object":"list","data":[items],...}: newest first unless ?order=asc, as the API. */
static void send_input_items(evhtp_request_t *req, const char *src, const json_value *items)
{
    const char *order = req->uri && req->uri->query ? evhtp_kv_find(req->uri->query, "order") : NULL;
    int asc = order && !strcmp(order, "asc");
    size_t n = items && items->type == JSON_ARRAY ? items->count : 0;
    const json_value **v = calloc(n ? n : 1, sizeof(const json_value *));
    buf_t b; buf_init(&b);
    if (!v) { http_send_openai_error(req, 500, "server_error", "internal_error", NULL, "Out of memory."); return; }
    size_t i = 0;
    for (const json_value *e = n ? items->first : NULL; e; e = e->next) v[i++] = e;
    buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (i = 0; i < n; i++) {
        const json_value *e = v[asc ? i : n - 1 - i];
        if (!e) break;
        if (i) buf_putc(&b, ',');
        buf_append(&b, src + e->start, e->end - e->start);
    }
    buf_puts(&b, "],\"first_id\":null,\"last_id\":null,\"has_more\":false}");
    if (b.oom) http_send_openai_error(req, 500, "server_error", "internal_error", NULL, "Out of memory.");
    else http_send_json(req, 200, b.data, b.len);
    buf_free(&b);
    free(v);
}

static void send_deleted(evhtp_request_t *req, const char *id)
{
    buf_t b; buf_init(&b);
    buf_puts(&b, "{\"id\":");
    buf_json_str(&b, id, strlen(id));
    buf_puts(&b, ",\"object\":\"response\",\"deleted\":true}");
    if (b.oom) http_send_openai_error(req, 500, "server_error", "internal_error", NULL, "Out of memory.");
    else http_send_json(req, 200, b.data, b.len);
    buf_free(&b);
}

/* rc as load's: the stored response, its input items, a 404 or a 500. */
static void send_stored(evhtp_request_t *req, int rc, const char *id, int items, const char *src, json_doc *doc)
{
    const json_value *resp = rc > 0 ? json_get(json_root(doc), "response") : NULL;
    if (rc < 0) http_send_openai_error(req, 500, "server_error", "internal_error", NULL, "The stored response could not be read.");
    else if (!resp) not_found(req, id, strlen(id));
    else if (items) send_input_items(req, src, json_get(json_root(doc), "input"));
    else http_send_json(req, 200, src + resp->start, resp->end - resp->start);
}

/* A GET or DELETE waiting on Redis: the connection is held meanwhile. */
typedef struct item_wait {
    evhtp_request_t *req;    /* NULL: the client went */
    worker_t        *w;
    respredis_op    *op;
    int              items, del;
    char             subject[72], id[RESPSTORE_ID_MAX + 1];
} item_wait;

static void item_client_error(evhtp_request_t *req, evhtp_error_flags errtype, void *arg)
{
    (void)errtype; (void)arg;
    evhtp_request_resume(req);   /* evhtp frees the request from inside this: item_client_fini */
}

static evhtp_res item_client_fini(evhtp_request_t *req, void *arg)
{
    item_wait *iw = arg;
    (void)req;
    iw->req = NULL;
    respredis_cancel(iw->op);   /* iw is freed when the op's callback runs */
    worker_request_done(iw->w);
    return EVHTP_RES_OK;
}

static void on_item_answer(void *ud, int result, const char *data, size_t len)
{
    item_wait *iw = ud;
    evhtp_request_t *req = result == RESPREDIS_GONE ? NULL : iw->req;
    if (req) {
        evhtp_request_unset_hook(req, evhtp_hook_on_error);
        evhtp_request_unset_hook(req, evhtp_hook_on_request_fini);
        if (iw->del) {
            if (result == RESPREDIS_HIT) send_deleted(req, iw->id);
            else not_found(req, iw->id, strlen(iw->id));
        } else {
            char *src = NULL;
            json_doc *doc = NULL;
            int rc = result == RESPREDIS_HIT ? load_remote(iw->subject, iw->id, data, len, &src, &doc) : 0;
            send_stored(req, rc, iw->id, iw->items, src, doc);
            json_doc_free(doc);
            free(src);
        }
        long ms = iw->w->cfg ? iw->w->cfg->client_timeout_ms : 0;
        struct timeval idle = { ms / 1000, (ms % 1000) * 1000 };
        http_conn_release(req, &idle);
        worker_request_done(iw->w);
    }
    free(iw);
}

/* Not on this node: asks Redis (GET or DEL). 1 asked (answered later), 0 not (a miss now). */
static int ask_redis(evhtp_request_t *req, worker_t *w, const char *subject, const char *id, int items, int del)
{
    if (!respredis_up(g_redis)) return 0;
    item_wait *iw = calloc(1, sizeof *iw);
    if (!iw) return 0;
    *iw = (item_wait){ .req = req, .w = w, .items = items, .del = del };
    snprintf(iw->subject, sizeof iw->subject, "%s", subject);
    snprintf(iw->id, sizeof iw->id, "%s", id);
    int started = del ? respredis_del(g_redis, subject, id, on_item_answer, iw, &iw->op)
                      : respredis_get(g_redis, subject, id, on_item_answer, iw, &iw->op);
    if (!started) { free(iw); return 0; }
    evhtp_request_set_hook(req, evhtp_hook_on_error, (evhtp_hook)(void (*)(void))item_client_error, iw);
    evhtp_request_set_hook(req, evhtp_hook_on_request_fini, (evhtp_hook)item_client_fini, iw);
    http_conn_hold(req);
    w->active++;
    return 1;
}

static void on_response_item(evhtp_request_t *req, void *arg)
{
    worker_t *w = arg;
    htp_method m = evhtp_request_get_method(req);
    const char *path = req->uri && req->uri->path ? req->uri->path->full : NULL;
    static const char prefix[] = "/v1/responses/";
    const char *id = path && !strncmp(path, prefix, sizeof prefix - 1) ? path + sizeof prefix - 1 : "";
    const char *slash = strchr(id, '/');
    size_t idn = slash ? (size_t)(slash - id) : strlen(id);
    int items = slash && !strcmp(slash, "/input_items");
    http_req_headers hdr;
    http_index_headers(req->headers_in, &hdr);
    const char *token = auth_extract_token(&hdr);
    int no_config = !w->cfg || w->cfg->awaiting_cp;
    const gw_key *k = token && !no_config ? auth_lookup(w->cfg, token) : NULL;
    char subject[72], idbuf[RESPSTORE_ID_MAX + 1];
    if (token && no_config) {
        http_send_openai_error(req, 503, "server_error", "no_config", NULL,
                               "The gateway has not received its configuration from the control plane yet.");
    } else if (!k) {
        http_send_openai_error(req, 401, "invalid_request_error", token ? "invalid_api_key" : "missing_api_key",
                               NULL, token ? "Incorrect API key provided." : "You didn't provide an API key.");
    } else if ((slash && !items) || !valid_id(id, idn)) {
        if (valid_id(id, idn) || !idn) http_send_openai_error(req, 404, "invalid_request_error", "not_found", NULL, "Unknown route.");
        else not_found(req, id, idn > 80 ? 80 : idn);
    } else if (m != htp_method_GET && !(m == htp_method_DELETE && !items)) {
        http_send_openai_error(req, 405, "invalid_request_error", "method_not_allowed", NULL,
                               items ? "Use GET for this route." : "Use GET or DELETE for this route.");
    } else {
        auth_subject(k, subject, sizeof subject);
        memcpy(idbuf, id, idn);
        idbuf[idn] = '\0';
        if (m == htp_method_DELETE) {
            int here = respstore_del(subject, idbuf);
            if (here) {
                respredis_del(g_redis, subject, idbuf, NULL, NULL, NULL);   /* nobody waits: it was ours */
                send_deleted(req, idbuf);
            } else if (!ask_redis(req, w, subject, idbuf, 0, 1)) not_found(req, idbuf, idn);
            else return;
        } else {
            char *src = NULL;
            json_doc *doc = NULL;
            int rc = load(subject, idbuf, &src, &doc);
            if (rc == 0 && ask_redis(req, w, subject, idbuf, items, 0)) return;
            send_stored(req, rc, idbuf, items, src, doc);
            json_doc_free(doc);
            free(src);
        }
    }
    http_conn_sync_done(req);
}

int responses_register_routes(worker_t *w)
{
    return evhtp_set_glob_cb(w->htp, "/v1/responses/*", on_response_item, w) ? 0 : -1;
}
