#include "db.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct cp_dbconn {
    PGconn *pg;
    int     in_tx;          /* BEGIN sent, no COMMIT/ROLLBACK yet */
    int     tx_broken;      /* the connection died inside the transaction */
    int     lost;           /* connection-level failure during this request */
    int     commit_sent;
    char    sqlstate[6];
    char    errmsg[256];
};

struct cp_db {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             size, nfree;
    cp_dbconn      *conns;
    cp_dbconn     **free_list;
};

static atomic_ulong g_errors, g_reconnects;

unsigned long cp_db_error_count(void) { return atomic_load(&g_errors); }
unsigned long cp_db_reconnect_count(void) { return atomic_load(&g_reconnects); }

/* Server notices ("relation already exists, skipping") are not errors. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgres notice: %.200s", message);
}

static void set_error(cp_dbconn *c, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* The primary message only: DETAIL lines can quote row values. */
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg || !*msg) msg = PQerrorMessage(c->pg);
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "");
    snprintf(c->errmsg, sizeof c->errmsg, "%s", msg ? msg : "unknown error");
    size_t n = strlen(c->errmsg);                 /* libpq messages end in a newline */
    while (n > 0 && (c->errmsg[n - 1] == '\n' || c->errmsg[n - 1] == ' ')) c->errmsg[--n] = '\0';
}

static PGconn *connect_pg(const char *conninfo)
{
    /* Keywords before "dbname" are defaults the user's conninfo may override;
     * "options" comes after it because every timestamp we render must be UTC. */
    const char *keys[] = { "connect_timeout", "application_name", "dbname", "options", NULL };
    const char *vals[] = { "5", "gateway-controlplane", conninfo,
                           "-c TimeZone=UTC -c statement_timeout=30000", NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (pg) PQsetNoticeProcessor(pg, on_notice, NULL);
    return pg;
}

cp_db *cp_db_open(const char *conninfo, int size)
{
    if (size < 1) size = 1;
    cp_db *db = calloc(1, sizeof *db);
    if (!db) return NULL;
    db->conns = calloc((size_t)size, sizeof *db->conns);
    db->free_list = calloc((size_t)size, sizeof(cp_dbconn *));
    if (!db->conns || !db->free_list) goto fail;
    if (pthread_mutex_init(&db->mu, NULL) != 0) goto fail;
    if (pthread_cond_init(&db->cv, NULL) != 0) { pthread_mutex_destroy(&db->mu); goto fail; }
    db->size = size;
    for (int i = 0; i < size; i++) {
        cp_dbconn *c = &db->conns[i];
        c->pg = connect_pg(conninfo);
        if (!c->pg) {                            /* libpq out of memory */
            for (int j = 0; j < i; j++) PQfinish(db->conns[j].pg);
            pthread_cond_destroy(&db->cv);
            pthread_mutex_destroy(&db->mu);
            goto fail;
        }
        if (PQstatus(c->pg) != CONNECTION_OK) {
            set_error(c, NULL);
            log_warn("postgres connection %d not ready yet: %s", i, c->errmsg);
        }
        db->free_list[db->nfree++] = c;
    }
    return db;
fail:
    free(db->conns);
    free(db->free_list);
    free(db);
    return NULL;
}

void cp_db_close(cp_db *db)
{
    if (!db) return;
    for (int i = 0; i < db->size; i++) PQfinish(db->conns[i].pg);
    pthread_cond_destroy(&db->cv);
    pthread_mutex_destroy(&db->mu);
    free(db->conns);
    free(db->free_list);
    free(db);
}

int cp_db_ensure(cp_dbconn *c)
{
    if (PQstatus(c->pg) == CONNECTION_OK) return 0;
    PQreset(c->pg);
    atomic_fetch_add(&g_reconnects, 1);
    if (PQstatus(c->pg) == CONNECTION_OK) {
        log_info("postgres connection re-established");
        return 0;
    }
    set_error(c, NULL);
    return -1;
}

cp_dbconn *cp_db_acquire(cp_db *db)
{
    pthread_mutex_lock(&db->mu);
    while (db->nfree == 0) pthread_cond_wait(&db->cv, &db->mu);
    cp_dbconn *c = db->free_list[--db->nfree];
    pthread_mutex_unlock(&db->mu);
    cp_db_request_start(c);
    (void)cp_db_ensure(c);       /* a failure here shows up on the first statement */
    return c;
}

void cp_db_release(cp_db *db, cp_dbconn *c)
{
    if (!c) return;
    cp_db_rollback(c);           /* a handler that forgot its transaction must not leak it */
    pthread_mutex_lock(&db->mu);
    db->free_list[db->nfree++] = c;
    pthread_cond_signal(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

void cp_db_request_start(cp_dbconn *c)
{
    c->lost = 0;
    c->commit_sent = 0;
    c->sqlstate[0] = '\0';
    c->errmsg[0] = '\0';
}

static PGresult *run(cp_dbconn *c, const char *sql, int nparams, const char *const *params, int script)
{
    if (c->tx_broken) {          /* the transaction died with its connection: refuse until rollback */
        c->lost = 1;
        return NULL;
    }
    for (int attempt = 0; ; attempt++) {
        if (PQstatus(c->pg) != CONNECTION_OK && !c->in_tx && cp_db_ensure(c) < 0) {
            c->lost = 1;
            c->sqlstate[0] = '\0';
            atomic_fetch_add(&g_errors, 1);
            return NULL;
        }
        PGresult *r = script ? PQexec(c->pg, sql)
                             : PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            if (attempt > 0) c->lost = 0;        /* recovered: the retry went through */
            return r;
        }
        set_error(c, r);
        PQclear(r);
        atomic_fetch_add(&g_errors, 1);
        if (PQstatus(c->pg) != CONNECTION_BAD) return NULL;      /* an SQL error, not a lost link */
        c->lost = 1;
        c->sqlstate[0] = '\0';
        log_warn("postgres connection lost: %s", c->errmsg);
        if (c->in_tx) {
            c->tx_broken = 1;
            return NULL;
        }
        if (attempt > 0 || cp_db_ensure(c) < 0) return NULL;
        /* The statement ran outside a transaction: retry it once on the new connection. */
    }
}

PGresult *cp_db_exec(cp_dbconn *c, const char *sql, int nparams, const char *const *params)
{
    return run(c, sql, nparams, params, 0);
}

PGresult *cp_db_exec_script(cp_dbconn *c, const char *sql)
{
    return run(c, sql, 0, NULL, 1);
}

int cp_db_begin(cp_dbconn *c)
{
    PGresult *r = run(c, "BEGIN", 0, NULL, 0);
    if (!r) return -1;
    PQclear(r);
    c->in_tx = 1;
    return 0;
}

int cp_db_commit(cp_dbconn *c)
{
    if (!c->in_tx) return -1;
    if (c->tx_broken) {                  /* nothing to commit: the transaction died with the link */
        c->in_tx = 0;
        c->tx_broken = 0;
        c->lost = 1;
        return -1;
    }
    c->commit_sent = 1;
    PGresult *r = run(c, "COMMIT", 0, NULL, 0);
    c->in_tx = 0;
    c->tx_broken = 0;
    if (!r) return -1;
    /* COMMIT of a transaction that already failed answers "ROLLBACK". */
    int ok = strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (!ok) snprintf(c->errmsg, sizeof c->errmsg, "transaction was rolled back");
    return ok ? 0 : -1;
}

void cp_db_rollback(cp_dbconn *c)
{
    if (!c->in_tx) return;
    int broken = c->tx_broken;
    c->in_tx = 0;
    c->tx_broken = 0;
    if (broken || PQstatus(c->pg) != CONNECTION_OK) return;
    PGresult *r = PQexec(c->pg, "ROLLBACK");
    PQclear(r);
}

const char *cp_db_sqlstate(const cp_dbconn *c) { return c->sqlstate; }
const char *cp_db_errmsg(const cp_dbconn *c) { return c->errmsg; }
int cp_db_lost(const cp_dbconn *c) { return c->lost; }
int cp_db_commit_sent(const cp_dbconn *c) { return c->commit_sent; }

const char *cp_db_value(const PGresult *r)
{
    if (!r || PQntuples(r) < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0)) return NULL;
    return PQgetvalue(r, 0, 0);
}
