#include "pricing.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#define NOCACHE (-1.0)  /* no cached rate published: cached tokens bill at the input rate */

/* USD per 1M tokens: input, cached input, output. Public list prices
 * (standard tier, short context) as of mid-2025; deployments override. */
static const struct { const char *model; double in, cached, out; } table[] = {
    /* OpenAI */
    { "gpt-4o",                     2.50,   1.25,    10.00 },
    { "gpt-4o-2024-05-13",          5.00,   NOCACHE, 15.00 },
    { "gpt-4o-mini",                0.15,   0.075,   0.60 },
    { "gpt-4.1",                    2.00,   0.50,    8.00 },
    { "gpt-4.1-mini",               0.40,   0.10,    1.60 },
    { "gpt-4.1-nano",               0.10,   0.025,   0.40 },
    { "gpt-4-turbo",                10.00,  NOCACHE, 30.00 },
    { "gpt-4",                      30.00,  NOCACHE, 60.00 },
    { "gpt-3.5-turbo",              0.50,   NOCACHE, 1.50 },
    { "o1",                         15.00,  7.50,    60.00 },
    { "o1-mini",                    1.10,   0.55,    4.40 },
    { "o3",                         2.00,   0.50,    8.00 },
    { "o3-mini",                    1.10,   0.55,    4.40 },
    { "o4-mini",                    1.10,   0.275,   4.40 },
    { "text-embedding-3-small",     0.02,   NOCACHE, 0 },
    { "text-embedding-3-large",     0.13,   NOCACHE, 0 },
    { "text-embedding-ada-002",     0.10,   NOCACHE, 0 },
    /* Anthropic (cache reads at a tenth of input); also Bedrock and Vertex ids */
    { "claude-3-haiku",             0.25,   0.03,    1.25 },
    { "claude-3-opus",              15.00,  1.50,    75.00 },
    { "claude-3-5-haiku",           0.80,   0.08,    4.00 },
    { "claude-3-5-sonnet",          3.00,   0.30,    15.00 },
    { "claude-3-7-sonnet",          3.00,   0.30,    15.00 },
    { "claude-sonnet-4",            3.00,   0.30,    15.00 },
    { "claude-opus-4",              15.00,  1.50,    75.00 },
    { "claude-opus-4-1",            15.00,  1.50,    75.00 },
    /* Google Gemini */
    { "gemini-1.5-flash",           0.075,  0.01875, 0.30 },
    { "gemini-1.5-flash-8b",        0.0375, 0.01,    0.15 },
    { "gemini-1.5-pro",             1.25,   0.3125,  5.00 },
    { "gemini-2.0-flash",           0.10,   0.025,   0.40 },
    { "gemini-2.0-flash-lite",      0.075,  NOCACHE, 0.30 },
    { "gemini-2.5-flash",           0.30,   0.075,   2.50 },
    { "gemini-2.5-flash-lite",      0.10,   0.025,   0.40 },
    { "gemini-2.5-pro",             1.25,   0.31,    10.00 },
    { "text-embedding-004",         0,      NOCACHE, 0 },
    /* Mistral */
    { "mistral-large",              2.00,   NOCACHE, 6.00 },
    { "mistral-medium",             0.40,   NOCACHE, 2.00 },
    { "mistral-small",              0.10,   NOCACHE, 0.30 },
    { "codestral",                  0.30,   NOCACHE, 0.90 },
    { "open-mistral-nemo",          0.15,   NOCACHE, 0.15 },
    { "ministral-8b",               0.10,   NOCACHE, 0.10 },
    { "ministral-3b",               0.04,   NOCACHE, 0.04 },
    { "pixtral-large",              2.00,   NOCACHE, 6.00 },
    { "mistral-embed",              0.10,   NOCACHE, 0 },
    /* Llama on Groq */
    { "llama-3.1-8b-instant",       0.05,   NOCACHE, 0.08 },
    { "llama-3.3-70b-versatile",    0.59,   NOCACHE, 0.79 },
    { "llama3-8b-8192",             0.05,   NOCACHE, 0.08 },
    { "llama3-70b-8192",            0.59,   NOCACHE, 0.79 },
    { "llama-4-scout-17b-16e-instruct",    0.11, NOCACHE, 0.34 },
    { "llama-4-maverick-17b-128e-instruct", 0.20, NOCACHE, 0.60 },
    { "gemma2-9b-it",               0.20,   NOCACHE, 0.20 },
    /* Bedrock-only families (vendor prefix stripped: "meta.llama3-1-8b-instruct-v1:0") */
    { "llama3-1-8b-instruct",       0.22,   NOCACHE, 0.22 },
    { "llama3-1-70b-instruct",      0.72,   NOCACHE, 0.72 },
    { "llama3-3-70b-instruct",      0.72,   NOCACHE, 0.72 },
    { "nova-micro",                 0.035,  0.00875, 0.14 },
    { "nova-lite",                  0.06,   0.015,   0.24 },
    { "nova-pro",                   0.80,   0.20,    3.20 },
    { "titan-embed-text",           0.02,   NOCACHE, 0 },
};

static const char *const strip_prefixes[] = {
    "us.", "eu.", "apac.", "global.",
    "anthropic.", "meta.", "amazon.", "mistral.", "cohere.",
};

static const char *normalize(const char *m)
{
    const char *slash = strrchr(m, '/');
    if (slash) m = slash + 1;
    /* region then vendor: "us.anthropic.claude-..." */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < sizeof strip_prefixes / sizeof strip_prefixes[0]; i++) {
            size_t n = strlen(strip_prefixes[i]);
            if (!strncasecmp(m, strip_prefixes[i], n)) { m += n; break; }
        }
    return m;
}

static int boundary(char c) { return c == '-' || c == '@' || c == ':'; }

int pricing_lookup(const char *model, gw_price *out)
{
    memset(out, 0, sizeof *out);
    if (!model) return 0;
    const char *m = normalize(model);
    size_t best = (size_t)-1, best_len = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t n = strlen(table[i].model);
        if (strncasecmp(m, table[i].model, n)) continue;
        if (m[n] == '\0') { best = i; break; }
        if (boundary(m[n]) && n > best_len) { best = i; best_len = n; }
    }
    if (best == (size_t)-1) return 0;
    out->input = table[best].in;
    out->cached_input = table[best].cached < 0 ? table[best].in : table[best].cached;
    out->output = table[best].out;
    return 1;
}

int pricing_resolve(const char *model, const gw_price_override *ov, gw_price *out)
{
    int known = pricing_lookup(model, out);
    if (!ov) return known;
    if (ov->input >= 0) {
        /* a cheaper input override must not leave a dearer cached rate behind */
        if (ov->cached_input < 0 && (!known || out->cached_input > ov->input)) out->cached_input = ov->input;
        out->input = ov->input;
        known = 1;
    }
    if (ov->cached_input >= 0) { out->cached_input = ov->cached_input; known = 1; }
    if (ov->output >= 0) { out->output = ov->output; known = 1; }
    return known;
}

int64_t pricing_cost_e10(const gw_price *p, const usage_t *u)
{
    if (!u->present) return 0;
    double prompt = (double)(u->prompt_tokens > 0 ? u->prompt_tokens : 0);
    double cached = (double)(u->cached_tokens > 0 ? u->cached_tokens : 0);
    double out = (double)(u->completion_tokens > 0 ? u->completion_tokens : 0);
    if (cached > prompt) cached = prompt;
    /* USD per 1M tokens -> 1e-10 USD per token: x * 1e4 */
    double c = ((prompt - cached) * p->input + cached * p->cached_input + out * p->output) * 1e4;
    if (!(c > 0)) return 0;
    if (c > 9e18) return (int64_t)9e18;
    return (int64_t)llround(c);
}

size_t pricing_format_usd(int64_t cost_e10, char out[32])
{
    uint64_t v = cost_e10 > 0 ? (uint64_t)cost_e10 : 0;
    char frac[10];
    for (int i = 9; i >= 0; i--) { frac[i] = (char)('0' + v % 10); v /= 10; }
    char whole[24];
    int n = 0;
    do { whole[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    size_t len = 0;
    while (n) out[len++] = whole[--n];
    out[len++] = '.';
    memcpy(out + len, frac, 10);
    len += 10;
    out[len] = '\0';
    return len;
}
