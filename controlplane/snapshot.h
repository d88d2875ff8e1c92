/* snapshot: what the control plane publishes, read from Postgres.
 *
 * A Snapshot is the whole configuration at one version; a Delta is what
 * changed between two versions. Both are read inside one REPEATABLE READ
 * transaction, so the rows match the version they are labelled with, and
 * both are written field by field (pbwire.h): a million keys never exist as
 * a million protobuf structs. Deployments referring to `cred:<id>` carry the
 * decrypted secret (api_key); env:/file: references travel as they are and
 * are resolved on the data plane.
 *
 * Deltas come from the audit log: every configuration mutation writes one
 * audit row with the config_version it created, in the same transaction. A
 * version with no such row (someone wrote to the tables directly) cannot be
 * expressed as a delta, and neither can a huge batch: those go out as
 * "resync", and data planes fetch the full snapshot.
 */
#ifndef CP_SNAPSHOT_H
#define CP_SNAPSHOT_H

#include <stdint.h>

#include "buf.h"
#include "crypto.h"
#include "db.h"

int cp_config_version(cp_dbconn *c, uint64_t *version);

/* Serialized Snapshot into out (reset first). 0 ok, -1 with a reason. */
int cp_snapshot_build(cp_dbconn *c, const unsigned char *master_key, buf_t *out,
                      uint64_t *version, char *err, size_t errlen);

/* Serialized Delta from base to the current version into out (reset first);
 * *version gets the current version (== base: nothing to send). */
int cp_delta_build(cp_dbconn *c, const unsigned char *master_key, uint64_t base, buf_t *out,
                   uint64_t *version, size_t *items, char *err, size_t errlen);

/* A heartbeat: an empty Delta at version. */
int cp_heartbeat_build(uint64_t version, buf_t *out);

#endif
