/* cplinktls: the control-plane link over tls+tcp:// with mutual TLS.
 *
 * Both ends present a certificate and require the other's to chain to the
 * CA they were given (nng's TLS engine, mbedTLS here): a node without a
 * certificate from the fleet's CA gets no configuration and can report no
 * usage. (nng 1.5 does not expose the peer's certificate name, so the
 * control plane cannot yet check that a node's id matches its certificate.)
 * tcp:// and ipc:// addresses ignore the TLS settings (same host or a
 * trusted network only).
 */
#ifndef GW_CPLINKTLS_H
#define GW_CPLINKTLS_H

#include <stddef.h>
#include <nng/nng.h>

typedef struct cplink_tls {
    const char *ca_file;        /* PEM: the CA the peer's certificate must chain to */
    const char *cert_file;      /* PEM: our certificate (chain) */
    const char *key_file;       /* PEM: its private key */
    const char *server_name;    /* dialer only: the name the control plane's certificate carries
                                 * (default: the host of the address) */
} cplink_tls;

/* 1 for a tls+tcp:// address. */
int cplink_is_tls(const char *url);
/* 1 when a plain tcp:// address is allowed without being forced: loopback
 * hosts (127.0.0.0/8, ::1, localhost), and ipc://. 0 for anything else. */
int cplink_is_local(const char *url);

/* A started dialer (non-blocking: it connects and reconnects in the
 * background) or listener for url on s. tls is required for tls+tcp://.
 * 0 ok; -1 with err set. */
int cplink_dial(nng_socket s, const char *url, const cplink_tls *tls, nng_dialer *d, char *err, size_t errlen);
int cplink_listen(nng_socket s, const char *url, const cplink_tls *tls, char *err, size_t errlen);

#endif
