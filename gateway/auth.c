#include "auth.h"

#include <string.h>
#include <strings.h>
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

const gw_key *auth_lookup(const gw_config *cfg, const char *token)
{
    size_t n = strnlen(token, MAX_KEY_LEN + 1);
    if (n == 0 || n > MAX_KEY_LEN) return NULL;
    uint8_t h[32];
    SHA256((const unsigned char *)token, n, h);
    return config_find_key(cfg, h);
}
