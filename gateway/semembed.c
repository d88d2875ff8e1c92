/* semembed: the semantic cache's embedding call (semembed.h). */
#include "semembed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "buf.h"
#include "config.h"
#include "hnsw.h"
#include "json.h"
#include "log.h"
#include "providers/embed.h"
#include "providers/provider.h"
#include "upstream.h"

#define MAX_ANSWER     (8u << 20)   /* a 4096-d float list is ~80 KB: plenty */
#define MAX_TOTAL_MS   10000        /* the embedding is on the request's path: never wait long */

struct semembed {
    semembed_cb          cb;
    void                *ud;
    const gw_deployment *dep;
    upstream_req_t      *up;
    struct event        *ev;        /* local provider: delivers on the next loop turn */
    provider_http        http;
    buf_t                body, resp;
    int                  status;
    float               *v;
    uint32_t             dim;
};

float *semembed_parse(const char *body, size_t len, uint32_t *dim)
{
    json_limits lim = { .max_depth = 16, .max_bytes = MAX_ANSWER };
    json_error jerr;
    json_doc *doc = json_parse(body, len, &lim, &jerr);
    if (!doc) return NULL;
    const json_value *data = json_get(json_root(doc), "data");
    const json_value *first = data && data->type == JSON_ARRAY ? data->first : NULL;
    const json_value *emb = first ? json_get(first, "embedding") : NULL;
    float *v = NULL;
    if (emb && emb->type == JSON_ARRAY && emb->count >= 1 && emb->count <= HNSW_MAX_DIM &&
        (v = malloc(emb->count * sizeof *v))) {
        uint32_t n = 0;
        for (const json_value *x = emb->first; x && n < emb->count; x = x->next) {
            if (x->type != JSON_NUMBER || !isfinite(x->num) || fabs(x->num) > 1e30) break;
            v[n++] = (float)x->num;
        }
        if (n != emb->count || hnsw_normalize(v, n) < 0) { free(v); v = NULL; }
        else *dim = n;
    }
    json_doc_free(doc);
    return v;
}

static void free_call(semembed *e)
{
    if (e->up) upstream_cancel(e->up);
    if (e->ev) event_free(e->ev);
    buf_free(&e->http.url);
    buf_free(&e->http.body);
    buf_free(&e->http.hdrs);
    buf_free(&e->body);
    buf_free(&e->resp);
    free(e->v);
    free(e);
}

/* Turns the answer in e->resp into e->v (NULL when it is not good). */
static void finish(semembed *e)
{
    const provider *p = e->dep->provider;
    if (e->status != 200) return;
    if (p->build_embed && !p->local_reply) {   /* the provider's own format: to the OpenAI list first */
        buf_t list; buf_init(&list);
        usage_t u;
        memset(&u, 0, sizeof u);
        char err[160];
        if (p->parse_embed(e->resp.data ? e->resp.data : "", e->resp.len, 0, e->dep->model, &list, &u, err, sizeof err) == 0)
            e->v = semembed_parse(list.data ? list.data : "", list.len, &e->dim);
        buf_free(&list);
    } else {
        e->v = semembed_parse(e->resp.data ? e->resp.data : "", e->resp.len, &e->dim);
    }
}

static void deliver(semembed *e)
{
    float *v = e->v;
    e->v = NULL;
    semembed_cb cb = e->cb;
    void *ud = e->ud;
    uint32_t dim = e->dim;
    free_call(e);
    cb(ud, v, dim);
}

static void on_local(evutil_socket_t fd, short what, void *arg) { (void)fd; (void)what; deliver(arg); }

static void on_response(void *ud, upstream_req_t *r, int status) { (void)r; ((semembed *)ud)->status = status; }

static int on_data(void *ud, upstream_req_t *r, const char *data, size_t len)
{
    semembed *e = ud;
    (void)r;
    /* too large, or out of memory: the call failed */
    if (e->resp.len + len > MAX_ANSWER || buf_append(&e->resp, data, len) < 0) e->status = -1;
    return 0;
}

static void on_done(void *ud, upstream_req_t *r, upstream_result res, const char *errmsg)
{
    semembed *e = ud;
    (void)r; (void)errmsg;
    e->up = NULL;   /* upstream frees it */
    if (res == UPSTREAM_OK) finish(e);
    deliver(e);
}

static const upstream_callbacks callbacks = { .on_response = on_response, .on_data = on_data, .on_done = on_done };

semembed *semembed_start(struct event_base *base, struct upstream *up, const gw_model *alias, const char *text,
                         size_t len, semembed_cb cb, void *ud)
{
    const gw_deployment *dep = NULL;
    for (size_t i = 0; i < alias->ndeployments && !dep; i++)
        if (config_deployment_embeds(&alias->deployments[i])) dep = &alias->deployments[i];
    if (!dep) return NULL;
    semembed *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->cb = cb;
    e->ud = ud;
    e->dep = dep;
    buf_init(&e->http.url); buf_init(&e->http.body); buf_init(&e->http.hdrs); buf_init(&e->body); buf_init(&e->resp);
    buf_puts(&e->body, "{\"model\":");
    buf_json_str(&e->body, alias->alias, strlen(alias->alias));
    buf_puts(&e->body, ",\"input\":");
    buf_json_str(&e->body, text, len);
    buf_puts(&e->body, ",\"encoding_format\":\"float\"}");
    json_error jerr;
    json_limits lim = { .max_depth = 4 };
    json_doc *doc = e->body.oom ? NULL : json_parse(e->body.data, e->body.len, &lim, &jerr);
    if (!doc) { free_call(e); return NULL; }
    provider_call call = { .route = ROUTE_EMBEDDINGS, .dep = dep, .body = e->body.data, .body_len = e->body.len,
                           .root = json_root(doc) };
    call.model = json_get(call.root, "model");
    const provider *p = dep->provider;
    char err[200];
    int rc = -1;
    if (p->local_reply) {
        if (p->local_reply(&call, &e->status, &e->resp) == 0) {
            finish(e);
            struct timeval now = { 0, 0 };
            if ((e->ev = evtimer_new(base, on_local, e)) && evtimer_add(e->ev, &now) == 0) rc = 0;
        }
    } else if ((p->build_embed ? p->build_embed(&call, &e->http, err, sizeof err)
                               : p->build(&call, &e->http, err, sizeof err)) == 0) {
        upstream_timeouts t = dep->timeouts;
        if (t.total_ms <= 0 || t.total_ms > MAX_TOTAL_MS) t.total_ms = MAX_TOTAL_MS;
        if (t.first_byte_ms <= 0 || t.first_byte_ms > MAX_TOTAL_MS) t.first_byte_ms = MAX_TOTAL_MS;
        upstream_request req = { .method = "POST", .url = e->http.url.data, .headers = e->http.headers,
                                 .body = e->http.body.data, .body_len = e->http.body.len,
                                 .max_response_bytes = MAX_ANSWER, .timeouts = t };
        if ((e->up = upstream_start(up, &req, &callbacks, e))) rc = 0;
    }
    json_doc_free(doc);   /* the providers copied what they need into e->http */
    if (rc < 0) { free_call(e); return NULL; }
    return e;
}

void semembed_cancel(semembed *e)
{
    if (e) free_call(e);
}
