#include "auth.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define MAX_KEY_LEN 512

const char *auth_extract_token(const http_req_headers *h)
{
    const char *v = h->authorization;
    if (v) {
        if (strncasecmp(v, "Bearer ", 7) != 0) return NULL;
        v += 7;
        while (*v == ' ') v++;
        return *v ? v : NULL;
    }
    if ((v = h->x_api_key) && *v) return v;
    if ((v = h->api_key) && *v) return v;
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

/* Token -> SHA-256, remembered for the tokens a worker saw last: a client
 * sends the same key on every request, and the hash is the largest cost of
 * authenticating it. Only the hash is remembered as a key's identity; the
 * lookup in the key table still happens every time, so a revoked or rotated
 * key is refused at once. Direct-mapped by the token's last 8 bytes (the
 * random part of a virtual key); tokens are compared in constant time. */
#define HASH_CACHE_SLOTS 256
#define HASH_CACHE_TOKEN 64

typedef struct hash_slot {
    uint8_t len;                        /* 0: empty */
    char    token[HASH_CACHE_TOKEN];
    uint8_t sha[32];
} hash_slot;

static void cached_key_hash(const char *token, size_t n, uint8_t out[32])
{
    static hash_slot cache[HASH_CACHE_SLOTS];
    if (n < 8 || n > HASH_CACHE_TOKEN) { key_hash(token, n, out); return; }
    uint64_t tail;
    memcpy(&tail, token + n - 8, 8);
    hash_slot *sl = &cache[(tail * 0x9E3779B97F4A7C15ull) >> 56];
    if (sl->len == n && CRYPTO_memcmp(sl->token, token, n) == 0) {
        memcpy(out, sl->sha, 32);
        return;
    }
    key_hash(token, n, out);
    OPENSSL_cleanse(sl->token, sizeof sl->token);   /* no trace of the token it replaces */
    memcpy(sl->token, token, n);
    memcpy(sl->sha, out, 32);
    sl->len = (uint8_t)n;
}

const gw_key *auth_lookup(const gw_config *cfg, const char *token)
{
    /* Valid until the next lookup or key-table change (the worker is single-
     * threaded): callers use it synchronously and copy what they keep. */
    static gw_key view;
    size_t n = strnlen(token, MAX_KEY_LEN + 1);
    if (n == 0 || n > MAX_KEY_LEN) return NULL;
    uint8_t h[32];
    cached_key_hash(token, n, h);
    return config_find_key(cfg, h, &view);
}

void auth_subject(const gw_key *k, char *out, size_t len)
{
    if (k->id[0]) { snprintf(out, len, "k:%s", k->id); return; }
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)k->name; *p; p++) h = (h ^ *p) * 1099511628211ull;
    snprintf(out, len, "y:%016" PRIx64, h);
}
