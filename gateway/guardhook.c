/* guardhook: the guard webhook call and its verdict (guardhook.h). */
#include "guardhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"

#define HOOK_MAX_ANSWER (64u << 10)

struct guard_hook {
    upstream_req_t *up;
    guard_hook_done cb;
    void           *ud;
    buf_t           body, resp;
    int             status;
    int             too_large;
};

void guard_hook_parse(const char *body, size_t len, guard_verdict *v, void **owner)
{
    memset(v, 0, sizeof *v);
    *owner = NULL;
    json_error je;
    json_limits lim = { .max_depth = 8, .max_bytes = HOOK_MAX_ANSWER };
    json_doc *d = json_parse(body, len, &lim, &je);
    const char *a = d ? json_get_str(json_root(d), "action") : NULL;
    v->action = !a ? HOOK_ERROR : !strcmp(a, "allow") ? HOOK_ALLOW : !strcmp(a, "block") ? HOOK_BLOCK
              : !strcmp(a, "mask") ? HOOK_MASK : HOOK_ERROR;
    if (v->action == HOOK_ERROR) {
        snprintf(v->reason, sizeof v->reason, "the webhook's answer has no valid action");
        json_doc_free(d);
        return;
    }
    const char *why = json_get_str(json_root(d), "reason");
    if (why) snprintf(v->reason, sizeof v->reason, "%.*s", (int)utf8_prefix(why, strlen(why), sizeof v->reason - 1), why);
    const json_value *m = json_get(json_root(d), "mask");
    for (const json_value *e = m && m->type == JSON_ARRAY ? m->first : NULL; e && v->nmask < HOOK_MAX_MASK; e = e->next)
        if (e->type == JSON_STRING && e->str_len && e->str_len <= 4096) v->mask[v->nmask++] = e->str;
    if (v->action == HOOK_MASK && !v->nmask) v->action = HOOK_ALLOW;   /* nothing to mask */
    *owner = d;
}

void guard_hook_parse_free(void *owner) { json_doc_free(owner); }

static void hook_free(guard_hook *h)
{
    buf_free(&h->body);
    buf_free(&h->resp);
    free(h);
}

static void on_response(void *ud, upstream_req_t *u, int status)
{
    guard_hook *h = ud;
    (void)u;
    h->status = status;
}

static int on_data(void *ud, upstream_req_t *u, const char *data, size_t len)
{
    guard_hook *h = ud;
    (void)u;
    if (h->resp.len + len > HOOK_MAX_ANSWER) h->too_large = 1;
    else buf_append(&h->resp, data, len);
    return 0;
}

static void on_done(void *ud, upstream_req_t *u, upstream_result res, const char *errmsg)
{
    guard_hook *h = ud;
    (void)u; (void)errmsg;
    h->up = NULL;
    guard_verdict v;
    void *owner = NULL;
    if (res != UPSTREAM_OK) {
        memset(&v, 0, sizeof v);
        v.action = HOOK_ERROR;
        snprintf(v.reason, sizeof v.reason, "webhook %s", upstream_result_name(res));
    } else if (h->status < 200 || h->status > 299 || h->too_large || h->resp.oom) {
        memset(&v, 0, sizeof v);
        v.action = HOOK_ERROR;
        snprintf(v.reason, sizeof v.reason, "webhook answered HTTP %d%s", h->status, h->too_large ? " (too large)" : "");
    } else {
        guard_hook_parse(h->resp.data ? h->resp.data : "", h->resp.len, &v, &owner);
    }
    h->cb(h->ud, &v);
    guard_hook_parse_free(owner);
    hook_free(h);
}

static const upstream_callbacks hook_callbacks = { .on_response = on_response, .on_data = on_data, .on_done = on_done };

guard_hook *guard_hook_start(upstream_t *up, const char *url, long timeout_ms, const char *model,
                             const char *text, size_t len, guard_hook_done cb, void *ud)
{
    guard_hook *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->cb = cb;
    h->ud = ud;
    buf_init(&h->body);
    buf_init(&h->resp);
    buf_puts(&h->body, "{\"stage\":\"input\",\"model\":");
    buf_json_str(&h->body, model ? model : "", model ? strlen(model) : 0);
    buf_puts(&h->body, ",\"text\":");
    buf_json_str(&h->body, text, len);
    buf_putc(&h->body, '}');
    if (h->body.oom) { hook_free(h); return NULL; }
    static const char *const headers[] = { "Content-Type: application/json", NULL };
    upstream_request req = {
        .method = "POST", .url = url, .headers = headers, .body = h->body.data, .body_len = h->body.len,
        .max_response_bytes = HOOK_MAX_ANSWER,
        .timeouts = { .connect_ms = timeout_ms, .first_byte_ms = timeout_ms, .idle_ms = timeout_ms, .total_ms = timeout_ms },
    };
    if (!(h->up = upstream_start(up, &req, &hook_callbacks, h))) { hook_free(h); return NULL; }
    return h;
}

void guard_hook_cancel(guard_hook *h)
{
    if (!h) return;
    if (h->up) upstream_cancel(h->up);
    hook_free(h);
}
