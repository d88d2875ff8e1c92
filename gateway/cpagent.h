/* cpagent: the gateway's link to the control plane, in a child process of its
 * own that the master forks and respawns like a worker (only when
 * `control_plane:` is set).
 *
 * It asks the control plane for the full snapshot (nng REQ, Hello, retried
 * with backoff; never on a worker's path), subscribes to its deltas (SUB),
 * checks each message in full, persists it (snapshot.pb, journal.log in
 * state_dir: see statefile.h) and only then tells the workers over a local
 * PUB socket. A gap in versions, a resync or a heartbeat showing another
 * version makes it ask for the full snapshot again. It reports itself to the
 * control plane every few seconds (that is the "last seen" of the node).
 *
 * Agent -> worker messages on ipc://<state_dir>/agent.ipc:
 *   byte 0      CPA_DELTA | CPA_RELOAD | CPA_HEARTBEAT
 *   bytes 1..8  version, little endian
 *   then        CPA_DELTA only: the Delta exactly as the control plane sent it
 * Workers apply a delta whose base is their version, and otherwise (or on a
 * reload/heartbeat naming another version) reload state_dir from disk.
 */
#ifndef GW_CPAGENT_H
#define GW_CPAGENT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum { CPA_DELTA = 'D', CPA_RELOAD = 'S', CPA_HEARTBEAT = 'H' };
#define CPA_HDR 9

/* Fills control-plane defaults (state_dir ./var/gateway, dataplane_id =
 * hostname), creates state_dir and checks the addresses. 0 ok, -1 with a reason. */
int  cpagent_prepare_config(gw_config *cfg, char *err, size_t errlen);
/* ipc://<state_dir>/agent.ipc */
int  cpagent_ipc_url(const char *state_dir, char *out, size_t outlen);

/* The agent process: runs until SIGTERM/SIGINT; returns the exit code. */
int  cpagent_run(const gw_config *cfg, int nworkers);

#endif
