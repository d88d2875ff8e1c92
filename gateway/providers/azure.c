/* azure: Azure OpenAI. The OpenAI wire format (so OpenAI clients pass
 * through), but the deployment is in the URL:
 *   {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...
 * with an "api-key" header. A base_url ending in /openai/v1 is Azure's
 * OpenAI-compatible v1 API: the OpenAI paths under it, model in the body. */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define DEFAULT_API_VERSION "2024-10-21"

static int prepare(gw_deployment *d, char *err, size_t errlen)
{
    if (provider_base_url(d, NULL, err, errlen) < 0) return -1;
    if (!d->api_version && !(d->api_version = strdup(DEFAULT_API_VERSION))) { snprintf(err, errlen, "out of memory"); return -1; }
    for (const char *p = d->api_version; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || *p == '-')) {
            snprintf(err, errlen, "api_version must look like 2024-10-21 or 2024-12-01-preview");
            return -1;
        }
    if (d->api_key) {
        buf_t b; buf_init(&b);
        if (buf_printf(&b, "api-key: %s", d->api_key) < 0) { buf_free(&b); snprintf(err, errlen, "out of memory"); return -1; }
        d->auth_header = buf_steal(&b);
    }
    return 0;
}

static int v1_api(const gw_deployment *d)
{
    size_t n = strlen(d->base_url);
    return n >= 10 && !strcmp(d->base_url + n - 10, "/openai/v1");
}

static int put_url(const provider_call *call, gw_route route, buf_t *url)
{
    const gw_deployment *d = call->dep;
    const char *path = route == ROUTE_COMPLETIONS ? "/completions" : route == ROUTE_EMBEDDINGS ? "/embeddings" : "/chat/completions";
    buf_reset(url);
    buf_puts(url, d->base_url);
    if (!v1_api(d)) {
        buf_puts(url, "/openai/deployments/");
        buf_puts(url, d->model);   /* deployment names are [A-Za-z0-9_.-]: nothing to escape */
    }
    buf_puts(url, path);
    if (!v1_api(d)) { buf_puts(url, "?api-version="); buf_puts(url, d->api_version); }
    return url->oom ? -1 : 0;
}

static void headers(const provider_call *call, provider_http *out)
{
    int h = 0;
    out->headers[h++] = "Content-Type: application/json";
    if (call->dep->auth_header) out->headers[h++] = call->dep->auth_header;
    out->headers[h] = NULL;
}

/* An OpenAI client: its body with the model rewritten, relayed back as it comes. */
static int build(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    int inject = call->stream && call->want_usage && call->route != ROUTE_EMBEDDINGS;
    if (put_url(call, call->route, &out->url) < 0 ||
        provider_rewrite_body(call, call->dep->model, inject, &out->body) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    headers(call, out);
    out->same_dialect = 1;
    out->usage_injected = inject;
    return 0;
}

/* Any other client, through the internal form. */
static int build_chat(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    if (put_url(call, ROUTE_CHAT, &out->url) < 0) { snprintf(err, errlen, "out of memory"); return -1; }
    if (openai_build_chat_body(call, call->dep->model, &out->body, err, errlen) < 0) return -1;
    headers(call, out);
    return 0;
}

const provider provider_azure = {
    .name = "azure", .dialect = DIALECT_OPENAI, .prepare = prepare, .build = build, .build_chat = build_chat,
    .parse_response = openai_parse_response, .stream_new = openai_stream_new, .stream_feed = openai_stream_feed,
    .stream_end = openai_stream_end, .stream_free = openai_stream_free, .error_message = openai_error_message,
};
