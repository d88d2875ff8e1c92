/* migrate: applies migrations/NNN_name.sql in numeric order.
 *
 * Each file runs in its own transaction together with the row that records
 * it in schema_migrations(version, name, checksum, applied_at), so a file is
 * either fully applied and recorded or not at all, and a second run applies
 * nothing. A session-level pg_advisory_lock serializes concurrent starts of
 * several control planes against one database.
 */
#ifndef CP_MIGRATE_H
#define CP_MIGRATE_H

#include "db.h"

/* Applies what is missing from dir. Returns the number of files applied,
 * or -1 on failure (logged; err says why). */
int cp_migrate(cp_dbconn *c, const char *dir, char *err, size_t errlen);

#endif
