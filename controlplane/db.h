/* db: a small pool of libpq connections that survive a Postgres restart.
 *
 * Each HTTP worker thread borrows one connection for the whole request
 * (acquire/release), so a PGconn is never used by two threads at once.
 * Statements are always parameterized (PQexecParams, text parameters, NULL
 * pointer = SQL NULL).
 *
 * Recovery: when a statement fails because the connection is gone (server
 * restarted, socket reset), the connection is reset. Outside a transaction
 * the statement is retried once on the fresh connection. Inside one the
 * transaction is lost, so the failure is reported (cp_db_lost) and the caller
 * reruns the whole unit of work once, unless COMMIT itself was already sent,
 * in which case the outcome is unknown and must not be repeated blindly.
 */
#ifndef CP_DB_H
#define CP_DB_H

#include <stddef.h>
#include <libpq-fe.h>

typedef struct cp_db cp_db;
typedef struct cp_dbconn cp_dbconn;

/* Opens size connections (they may start out broken: each is re-established
 * on first use). NULL only on out of memory. */
cp_db     *cp_db_open(const char *conninfo, int size);
void       cp_db_close(cp_db *db);

/* Borrow / return a connection. acquire blocks while all are in use and
 * resets a broken connection before handing it out. */
cp_dbconn *cp_db_acquire(cp_db *db);
void       cp_db_release(cp_db *db, cp_dbconn *c);

/* 0 if the connection is usable (resetting it if needed), -1 otherwise. */
int        cp_db_ensure(cp_dbconn *c);

/* Runs one statement. Returns the result (caller PQclear()s) when it
 * succeeded, NULL on failure: see cp_db_sqlstate / cp_db_errmsg / cp_db_lost. */
PGresult  *cp_db_exec(cp_dbconn *c, const char *sql, int nparams, const char *const *params);
/* Same for an unparameterized script of several statements (migrations only). */
PGresult  *cp_db_exec_script(cp_dbconn *c, const char *sql);

int        cp_db_begin(cp_dbconn *c);      /* 0 ok, -1 failed */
int        cp_db_commit(cp_dbconn *c);     /* 0 ok, -1 failed (rolled back or unknown) */
void       cp_db_rollback(cp_dbconn *c);   /* no-op outside a transaction */

/* About the last failure on this connection. */
const char *cp_db_sqlstate(const cp_dbconn *c);   /* "" if none / connection failure */
const char *cp_db_errmsg(const cp_dbconn *c);
/* Connection-level failure since the last cp_db_request_start. */
int         cp_db_lost(const cp_dbconn *c);
/* COMMIT was sent since the last cp_db_request_start. */
int         cp_db_commit_sent(const cp_dbconn *c);
/* Clears the per-request flags above (the HTTP layer calls it per attempt). */
void        cp_db_request_start(cp_dbconn *c);

/* Counters for /metrics. */
unsigned long cp_db_error_count(void);
unsigned long cp_db_reconnect_count(void);

/* Convenience for single-value results: the text of row 0, column 0, or NULL. */
const char *cp_db_value(const PGresult *r);

#endif
