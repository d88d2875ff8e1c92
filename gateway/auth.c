#include "auth.h"

#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define MAX_KEY_LEN 512

const char *auth_extract_token(evhtp_headers_t *headers)
{
    const char *v = evhtp_header_find(headers, "authorization");
    if (v) {
        if (strncasecmp(v, "Bearer ", 7) != 0) return NULL;
        v += 7;
        while (*v == ' ') v++;
        return *v ? v : NULL;
    }
    if ((v = evhtp_header_find(headers, "x-api-key")) && *v) return v;
    if ((v = evhtp_header_find(headers, "api-key")) && *v) return v;
    return NULL;
}

/* OpenSSL 3's one-shot SHA256() fetches the algorithm and allocates a
 * context on every call; a worker is single-threaded, so it keeps one
 * fetched digest and one context for its whole life. */
static void key_hash(const char *token, size_t n, uint8_t out[32])
{
    static EVP_MD *md;
    static EVP_MD_CTX *ctx;
    unsigned int len = 32;
    if (!ctx) {
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
        ctx = EVP_MD_CTX_new();
    }
    if (!md || !ctx || EVP_DigestInit_ex2(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, token, n) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &len) != 1)
        SHA256((const unsigned char *)token, n, out);
}

const gw_key *auth_lookup(const gw_config *cfg, const char *token)
{
    /* Valid until the next lookup or key-table change (the worker is single-
     * threaded): callers use it synchronously and copy what they keep. */
    static gw_key view;
    size_t n = strnlen(token, MAX_KEY_LEN + 1);
    if (n == 0 || n > MAX_KEY_LEN) return NULL;
    uint8_t h[32];
    key_hash(token, n, h);
    return config_find_key(cfg, h, &view);
}
