/* sigv4: canonical request -> string to sign -> signing key -> signature,
 * as AWS documents it. Services other than S3 take the path encoded twice:
 * the URL carries it encoded once (":" as %3A in a model id), the canonical
 * request encodes that again (%3A as %253A). */
#include "sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

static const char hexd[] = "0123456789abcdef";

static void hex(const unsigned char *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) { out[2 * i] = hexd[p[i] >> 4]; out[2 * i + 1] = hexd[p[i] & 15]; }
    out[2 * n] = '\0';
}

static int hmac(const void *key, size_t keylen, const char *msg, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    return HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, n, out, &len) ? 0 : -1;
}

static void uri_encode(buf_t *b, const char *s, size_t n, int keep_slash)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            buf_putc(b, (char)c);
        } else {
            char e[3] = { '%', "0123456789ABCDEF"[c >> 4], "0123456789ABCDEF"[c & 15] };
            buf_append(b, e, 3);
        }
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The query's k=v pairs sorted (they come encoded from the caller). */
static int canonical_query(buf_t *b, const char *q)
{
    if (!q || !*q) return 0;
    char *copy = strdup(q), *save = NULL;
    const char *pairs[64];
    size_t n = 0;
    if (!copy) return -1;
    for (char *t = strtok_r(copy, "&", &save); t && n < 64; t = strtok_r(NULL, "&", &save)) pairs[n++] = t;
    qsort(pairs, n, sizeof pairs[0], cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(b, '&');
        buf_puts(b, pairs[i]);
        if (!strchr(pairs[i], '=')) buf_putc(b, '=');
    }
    free(copy);
    return 0;
}

int sigv4_sign(const sigv4_request *q, buf_t *out)
{
    const char *hs = strstr(q->url, "://");
    if (!hs || !q->region || !q->service || !q->access_key_id || !q->secret_access_key) return -1;
    hs += 3;
    const char *path = strchr(hs, '/');
    size_t hostlen = path ? (size_t)(path - hs) : strlen(hs);
    const char *qm = path ? strchr(path, '?') : NULL;
    size_t pathlen = path ? (qm ? (size_t)(qm - path) : strlen(path)) : 0;

    char amz_date[17], date[9];
    struct tm tm;
    gmtime_r(&q->now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    memcpy(date, amz_date, 8);
    date[8] = '\0';

    unsigned char h[32];
    char body_hex[65], creq_hex[65], sig_hex[65];
    SHA256((const unsigned char *)(q->body ? q->body : ""), q->body_len, h);
    hex(h, 32, body_hex);

    buf_t creq, sts, signed_h;
    buf_init(&creq); buf_init(&sts); buf_init(&signed_h);
    int rc = -1;
    /* canonical request */
    buf_puts(&creq, q->method);
    buf_putc(&creq, '\n');
    if (pathlen) uri_encode(&creq, path, pathlen, 1);
    else buf_putc(&creq, '/');
    buf_putc(&creq, '\n');
    if (canonical_query(&creq, qm ? qm + 1 : NULL) < 0) goto out;
    buf_putc(&creq, '\n');
    if (q->content_type) { buf_puts(&creq, "content-type:"); buf_puts(&creq, q->content_type); buf_putc(&creq, '\n'); buf_puts(&signed_h, "content-type;"); }
    buf_puts(&creq, "host:");
    buf_append(&creq, hs, hostlen);
    buf_puts(&creq, "\nx-amz-date:");
    buf_puts(&creq, amz_date);
    buf_putc(&creq, '\n');
    buf_puts(&signed_h, "host;x-amz-date");
    if (q->session_token) {
        buf_puts(&creq, "x-amz-security-token:");
        buf_puts(&creq, q->session_token);
        buf_putc(&creq, '\n');
        buf_puts(&signed_h, ";x-amz-security-token");
    }
    buf_putc(&creq, '\n');
    buf_append(&creq, signed_h.data, signed_h.len);
    buf_putc(&creq, '\n');
    buf_puts(&creq, body_hex);
    if (creq.oom || signed_h.oom) goto out;
    SHA256((const unsigned char *)creq.data, creq.len, h);
    hex(h, 32, creq_hex);

    /* string to sign */
    buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date, q->region, q->service, creq_hex);
    if (sts.oom) goto out;

    /* signing key: HMAC chain from "AWS4" + secret */
    size_t sl = strlen(q->secret_access_key);
    char *k0 = malloc(sl + 5);
    if (!k0) goto out;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, q->secret_access_key, sl + 1);
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    int bad = hmac(k0, sl + 4, date, 8, k1) < 0 || hmac(k1, 32, q->region, strlen(q->region), k2) < 0 ||
              hmac(k2, 32, q->service, strlen(q->service), k3) < 0 || hmac(k3, 32, "aws4_request", 12, k4) < 0 ||
              hmac(k4, 32, sts.data, sts.len, sig) < 0;
    OPENSSL_cleanse(k0, sl + 4);
    free(k0);
    OPENSSL_cleanse(k1, 32); OPENSSL_cleanse(k2, 32); OPENSSL_cleanse(k3, 32); OPENSSL_cleanse(k4, 32);
    if (bad) goto out;
    hex(sig, 32, sig_hex);

    rc = 2;
    buf_printf(out, "X-Amz-Date: %s", amz_date);
    buf_putc(out, '\0');
    if (q->session_token) {
        buf_printf(out, "X-Amz-Security-Token: %s", q->session_token);
        buf_putc(out, '\0');
        rc = 3;
    }
    buf_printf(out, "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
               q->access_key_id, date, q->region, q->service, signed_h.data, sig_hex);
    buf_putc(out, '\0');
    if (out->oom) rc = -1;
out:
    buf_free(&creq); buf_free(&sts); buf_free(&signed_h);
    return rc;
}
