/* cplink: conventions both ends of the control-plane link agree on.
 *
 * The control plane binds two nng sockets derived from one address: REP at
 * the given address (Hello -> HelloReply with the full snapshot) and PUB next
 * to it (deltas and heartbeats): tcp://H:P -> tcp://H:P+1, ipc://path ->
 * ipc://path.pub. Every receiving socket caps message sizes below.
 */
#ifndef GW_CPLINK_H
#define GW_CPLINK_H

#include <stddef.h>

#define CPLINK_HELLO_MAX      (64u << 10)     /* a Hello is a few hundred bytes */
#define CPLINK_USAGE_TAG      'U'             /* first byte of a usage request on the REP socket */
#define CPLINK_USAGE_MAX      (8u << 20)      /* one UsageBatch request */
#define CPLINK_USAGE_EVENTS_MAX 5000          /* events in one batch */
#define CPLINK_DELTA_MAX      (64u << 20)     /* bigger changes go out as "resync" */
#define CPLINK_SNAPSHOT_MAX   (1024u << 20)   /* ~15M keys */
#define CPLINK_HEARTBEAT_MS   1000
#define CPLINK_DELTA_MAX_ITEMS 20000          /* more changes at once: resync instead */

/* The PUB address for a REP address. 0 ok, -1 if rep is not tcp://H:P,
 * tls+tcp://H:P or ipc://path, or out is too small. */
int cplink_pub_address(const char *rep, char *out, size_t outlen);

/* "gateway/1.2.3" or "1.2.3" (a "-pre" / "+build" suffix allowed) into v;
 * -1 if it is not such a version. */
int cplink_version_parse(const char *s, long v[3]);
/* <0, 0, >0 as a is older than, the same as, newer than b. */
int cplink_version_cmp(const long a[3], const long b[3]);

/* 1 if s is a canonical UUID (8-4-4-4-12 hex); fills out[16] when out != NULL. */
int cplink_uuid_parse(const char *s, unsigned char out[16]);
/* Canonical lower-case form of a 16-byte UUID into out[37]. */
void cplink_uuid_format(const unsigned char id[16], char out[37]);

#endif
