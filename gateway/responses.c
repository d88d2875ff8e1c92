#include "responses.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <evhtp.h>

#include "auth.h"
#include "buf.h"
#include "httputil.h"
#include "json.h"
#include "respstore.h"
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

/* The stored {"input":[...],"response":{...}} for (subject, id): 1 found (doc
 * and its source returned), 0 not, -1 out of memory or unreadable. */
static int load(const char *subject, const char *id, char **src, json_doc **doc)
{
    buf_t b; buf_init(&b);
    int rc = respstore_get(subject, id, &b);
    if (rc <= 0) { buf_free(&b); return rc; }
    json_limits lim = { .max_depth = STORED_MAX_DEPTH, .max_bytes = 0 };
    size_t len = b.len;
    *src = buf_steal(&b);
    if (!*src || !(*doc = json_parse(*src, len, &lim, NULL)) || json_root(*doc)->type != JSON_OBJECT) {
        json_doc_free(*doc);
        *doc = NULL;
        free(*src);
        *src = NULL;
        return -1;
    }
    return 1;
}

int responses_prepare(chat_req *q, const json_value *root, const char *body, const gw_key *key,
                      char *msg, size_t msglen, const char **param)
{
    chat_responses *x = calloc(1, sizeof *x);
    if (!x) { snprintf(msg, msglen, "Out of memory."); *param = NULL; return 500; }
    buf_init(&x->echo);
    buf_init(&x->input);
    q->responses = x;
    auth_subject(key, x->subject, sizeof x->subject);
    const json_value *pid = root->type == JSON_OBJECT ? json_get(root, "previous_response_id") : NULL;
    if (pid && pid->type == JSON_STRING) {
        int rc = valid_id(pid->str, pid->str_len) ? load(x->subject, pid->str, &x->prev_src, &x->prev) : 0;
        if (rc <= 0) {
            *param = "previous_response_id";
            if (rc < 0) { snprintf(msg, msglen, "The previous response could not be read."); return 500; }
            snprintf(msg, msglen, "Previous response with id '%.*s' not found.",
                     (int)(pid->str_len > 80 ? 80 : pid->str_len), pid->str);
            return 404;
        }
    }
    if (chat_from_responses(root, body, x->prev ? json_root(x->prev) : NULL, x->prev_src, q, msg, msglen, param) < 0)
        return 400;
    return 0;
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
    if (!b.oom) respstore_put(x->subject, id, b.data, b.len);   /* too large: not kept (a later GET is a 404) */
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
    const char *token = auth_extract_token(req->headers_in);
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
            if (!respstore_del(subject, idbuf)) not_found(req, id, idn);
            else {
                buf_t b; buf_init(&b);
                buf_puts(&b, "{\"id\":");
                buf_json_str(&b, idbuf, idn);
                buf_puts(&b, ",\"object\":\"response\",\"deleted\":true}");
                http_send_json(req, 200, b.data ? b.data : "", b.len);
                buf_free(&b);
            }
        } else {
            char *src = NULL;
            json_doc *doc = NULL;
            int rc = load(subject, idbuf, &src, &doc);
            const json_value *resp = rc > 0 ? json_get(json_root(doc), "response") : NULL;
            if (rc < 0) http_send_openai_error(req, 500, "server_error", "internal_error", NULL, "The stored response could not be read.");
            else if (!resp) not_found(req, id, idn);
            else if (items) send_input_items(req, src, json_get(json_root(doc), "input"));
            else http_send_json(req, 200, src + resp->start, resp->end - resp->start);
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
