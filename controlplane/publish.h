/* publish: the config push to data planes over nng (see snapshot.h for what
 * is sent and common/cplink.h for the addresses).
 *
 * Two threads, each with its own Postgres connection:
 *  - hello: REP at dataplane_listen. A Hello gets the full snapshot when the
 *    node's version differs (the last one built is cached by version, so a
 *    fleet reconnecting at once costs one build), else "up to date"; the node
 *    is recorded in `dataplanes` (id, hostname, software and config version,
 *    workers, last_seen).
 *  - deltas: PUB next to it. Polls config_version every 100 ms and publishes
 *    a delta for each move, and a heartbeat every second so a node that
 *    missed a message notices the gap.
 */
#ifndef CP_PUBLISH_H
#define CP_PUBLISH_H

#include "cplinktls.h"

#include <stddef.h>

#include "crypto.h"

typedef struct cp_publisher cp_publisher;

/* master_key must outlive the publisher. NULL with a reason in err. */
/* min_dataplane_version: refuse older data planes (x.y.z; NULL: the oldest this build serves). */
cp_publisher *cp_publish_start(const char *listen, const cplink_tls *tls, const char *min_dataplane_version,
                               const char *conninfo, const unsigned char *master_key, char *err, size_t errlen);
void          cp_publish_stop(cp_publisher *p);

#endif
