/* statefile: the data plane's last known configuration on disk, so a gateway
 * restarted while the control plane is away boots from it.
 *
 *   state_dir/snapshot.pb   a Snapshot exactly as the control plane sent it;
 *                           replaced atomically (tmp + fsync + rename + fsync dir)
 *   state_dir/journal.log   the deltas applied since, one record each:
 *                           "GWJ1" | u32 length | u32 crc32 | Delta bytes (little endian)
 *
 * Only the agent writes; workers read. A reader stops at the first damaged or
 * incomplete record (a crash mid-append), which loses nothing: the agent
 * writes a record before it announces it, and resyncs if it is behind.
 */
#ifndef GW_STATEFILE_H
#define GW_STATEFILE_H

#include <stddef.h>
#include <stdint.h>

#define STATEFILE_RECORD_MAX (64u << 20)

/* Creates dir (mode 0700) if missing. 0 ok, -1 with a reason. */
int statefile_prepare_dir(const char *dir, char *err, size_t errlen);

/* Maps snapshot.pb read-only. 1 mapped, 0 no file, -1 error. */
int  statefile_map_snapshot(const char *dir, const uint8_t **data, size_t *len, char *err, size_t errlen);
void statefile_unmap(const uint8_t *data, size_t len);

/* Replaces snapshot.pb with data and empties the journal. */
int statefile_write_snapshot(const char *dir, const void *data, size_t len, char *err, size_t errlen);

/* Appends one record and fsyncs. */
int statefile_journal_append(const char *dir, const void *data, size_t len, char *err, size_t errlen);

/* Calls cb for each intact record in order; cb returning -1 stops the walk.
 * Returns the number of records read, -1 if the file cannot be read. */
long statefile_journal_each(const char *dir, int (*cb)(void *ud, const uint8_t *rec, size_t len), void *ud);

/* Bytes in the journal (0 when absent). */
long statefile_journal_size(const char *dir);

#endif
