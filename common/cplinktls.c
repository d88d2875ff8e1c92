#include "cplinktls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nng/supplemental/tls/tls.h>

#define PEM_MAX (1u << 20)

int cplink_is_tls(const char *url) { return url && !strncmp(url, "tls+tcp://", 10); }

int cplink_is_local(const char *url)
{
    if (!url) return 0;
    if (!strncmp(url, "ipc://", 6)) return 1;
    if (strncmp(url, "tcp://", 6)) return 0;
    const char *h = url + 6;
    if (!strncmp(h, "127.", 4) || !strncmp(h, "[::1]:", 6) || !strncmp(h, "localhost:", 10)) return 1;
    return 0;
}

/* A whole PEM file, NUL-terminated; NULL with err set. */
static char *read_pem(const char *path, const char *what, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s %s: cannot open", what, path); return NULL; }
    char *buf = malloc(PEM_MAX + 1);
    size_t n = buf ? fread(buf, 1, PEM_MAX + 1, f) : 0;
    int bad = !buf || ferror(f) || n == 0 || n > PEM_MAX;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s %s: %s", what, path, !buf ? "out of memory" : n > PEM_MAX ? "too large" : "unreadable or empty");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* host of tls+tcp://host:port (brackets of an IPv6 literal removed) */
static void url_host(const char *url, char *out, size_t outlen)
{
    const char *h = url + 10, *end;
    if (*h == '[' && (end = strchr(h, ']'))) h++;
    else end = strrchr(h, ':');
    if (!end) end = h + strlen(h);
    size_t n = (size_t)(end - h) < outlen - 1 ? (size_t)(end - h) : outlen - 1;
    memcpy(out, h, n);
    out[n] = '\0';
}

static nng_tls_config *make_config(const char *url, const cplink_tls *tls, int server, char *err, size_t errlen)
{
    if (!tls || !tls->ca_file || !tls->cert_file || !tls->key_file) {
        snprintf(err, errlen, "%s needs a CA file, a certificate and a key (mutual TLS)", url);
        return NULL;
    }
    nng_tls_config *c = NULL;
    char *cert = NULL, *key = NULL;
    int rv = nng_tls_config_alloc(&c, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
    if (rv != 0) { snprintf(err, errlen, "TLS: %s", nng_strerror(rv)); return NULL; }
    if (!(cert = read_pem(tls->cert_file, "certificate", err, errlen)) ||
        !(key = read_pem(tls->key_file, "key", err, errlen)))
        goto fail;
    if ((rv = nng_tls_config_ca_file(c, tls->ca_file)) != 0) {
        snprintf(err, errlen, "CA file %s: %s", tls->ca_file, nng_strerror(rv));
        goto fail;
    }
    if ((rv = nng_tls_config_own_cert(c, cert, key, NULL)) != 0) {
        snprintf(err, errlen, "certificate %s / key %s: %s", tls->cert_file, tls->key_file, nng_strerror(rv));
        goto fail;
    }
    if ((rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED)) != 0) {
        snprintf(err, errlen, "TLS auth mode: %s", nng_strerror(rv));
        goto fail;
    }
    if (!server) {
        char host[256];
        if (tls->server_name && *tls->server_name) snprintf(host, sizeof host, "%s", tls->server_name);
        else url_host(url, host, sizeof host);
        if ((rv = nng_tls_config_server_name(c, host)) != 0) {
            snprintf(err, errlen, "TLS server name %s: %s", host, nng_strerror(rv));
            goto fail;
        }
    }
    /* the key stays only inside the TLS engine */
    memset(key, 0, strlen(key));
    free(cert);
    free(key);
    return c;
fail:
    if (key) memset(key, 0, strlen(key));
    free(cert);
    free(key);
    if (c) nng_tls_config_free(c);
    return NULL;
}

int cplink_dial(nng_socket s, const char *url, const cplink_tls *tls, nng_dialer *d, char *err, size_t errlen)
{
    nng_tls_config *c = NULL;
    if (cplink_is_tls(url) && !(c = make_config(url, tls, 0, err, errlen))) return -1;
    int rv = nng_dialer_create(d, s, url);
    if (rv == 0 && c) rv = nng_dialer_set_ptr(*d, NNG_OPT_TLS_CONFIG, c);
    if (c) nng_tls_config_free(c);   /* the dialer holds its own reference */
    if (rv == 0) rv = nng_dialer_start(*d, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        snprintf(err, errlen, "dial %s: %s", url, nng_strerror(rv));
        return -1;
    }
    return 0;
}

int cplink_listen(nng_socket s, const char *url, const cplink_tls *tls, char *err, size_t errlen)
{
    nng_tls_config *c = NULL;
    if (cplink_is_tls(url) && !(c = make_config(url, tls, 1, err, errlen))) return -1;
    nng_listener l;
    int rv = nng_listener_create(&l, s, url);
    if (rv == 0 && c) rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, c);
    if (c) nng_tls_config_free(c);
    if (rv == 0) rv = nng_listener_start(l, 0);
    if (rv != 0) {
        snprintf(err, errlen, "listen %s: %s", url, nng_strerror(rv));
        return -1;
    }
    return 0;
}
