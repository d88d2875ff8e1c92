/* openai and openai_compatible: the same dialect as the client, so the body
 * is forwarded as it came with only "model" rewritten, and the response is
 * relayed byte for byte (the pass-through path). */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static int prepare_common(gw_deployment *d, const char *default_base, char *err, size_t errlen)
{
    if (!d->base_url) {
        if (!default_base) { snprintf(err, errlen, "base_url is required for provider %s", d->provider_name); return -1; }
        if (!(d->base_url = strdup(default_base))) { snprintf(err, errlen, "out of memory"); return -1; }
    }
    if (strncmp(d->base_url, "http://", 7) && strncmp(d->base_url, "https://", 8)) {
        snprintf(err, errlen, "base_url must start with http:// or https://");
        return -1;
    }
    size_t n = strlen(d->base_url);
    while (n > 0 && d->base_url[n - 1] == '/') d->base_url[--n] = '\0';
    if (d->api_key) {
        buf_t b; buf_init(&b);
        if (buf_printf(&b, "Authorization: Bearer %s", d->api_key) < 0) { buf_free(&b); snprintf(err, errlen, "out of memory"); return -1; }
        d->auth_header = buf_steal(&b);
    }
    return 0;
}

static int prepare_openai(gw_deployment *d, char *err, size_t errlen)
{
    return prepare_common(d, "https://api.openai.com/v1", err, errlen);
}

static int prepare_compatible(gw_deployment *d, char *err, size_t errlen)
{
    return prepare_common(d, NULL, err, errlen);
}

static const char *route_path(gw_route r)
{
    switch (r) {
    case ROUTE_CHAT: return "/chat/completions";
    case ROUTE_COMPLETIONS: return "/completions";
    case ROUTE_EMBEDDINGS: return "/embeddings";
    }
    return "/";
}

static int build(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    int h = 0;
    /* OpenAI and compatible servers (vLLM, Groq, ...) stream usage on request */
    int inject = call->stream && call->want_usage && call->route != ROUTE_EMBEDDINGS;
    buf_reset(&out->url);
    if (buf_puts(&out->url, d->base_url) < 0 || buf_puts(&out->url, route_path(call->route)) < 0 ||
        provider_rewrite_body(call, d->model, inject, &out->body) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* every extra header costs curl a scan per header it checks: keep only what matters */
    out->headers[h++] = "Content-Type: application/json";
    if (d->auth_header) out->headers[h++] = d->auth_header;
    out->headers[h] = NULL;
    out->same_dialect = 1;
    out->usage_injected = inject;
    return 0;
}

const provider provider_openai = { .name = "openai", .prepare = prepare_openai, .build = build };
const provider provider_openai_compatible = { .name = "openai_compatible", .prepare = prepare_compatible, .build = build };
