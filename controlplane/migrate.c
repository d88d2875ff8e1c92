#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "crypto.h"
#include "log.h"

/* Any constant works as long as every control plane uses the same one. */
#define MIGRATE_LOCK_KEY "7400740074"
#define MIGRATE_MAX_FILE (4 * 1024 * 1024)

typedef struct {
    long  version;
    char *name;          /* file name, e.g. "001_init.sql" */
} mfile;

static int cmp_mfile(const void *a, const void *b)
{
    long x = ((const mfile *)a)->version, y = ((const mfile *)b)->version;
    return x < y ? -1 : x > y;
}

/* "NNN_anything.sql" -> NNN; -1 for names that are not migrations. */
static long parse_version(const char *name)
{
    size_t n = strlen(name), i = 0;
    long v = 0;
    while (name[i] >= '0' && name[i] <= '9') {
        if (v > 100000000) return -1;
        v = v * 10 + (name[i] - '0');
        i++;
    }
    if (i == 0 || name[i] != '_' || n < 5 || strcmp(name + n - 4, ".sql") != 0) return -1;
    return v;
}

static void free_files(mfile *f, size_t n)
{
    for (size_t i = 0; i < n; i++) free(f[i].name);
    free(f);
}

static int list_files(const char *dir, mfile **out, size_t *count, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot open migrations directory %s: %s", dir, strerror(errno));
        return -1;
    }
    mfile *files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        long v = parse_version(e->d_name);
        if (v < 0) continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            mfile *nf = realloc(files, ncap * sizeof *nf);
            if (!nf) { rc = -1; snprintf(err, errlen, "out of memory"); break; }
            files = nf;
            cap = ncap;
        }
        files[n].version = v;
        files[n].name = strdup(e->d_name);
        if (!files[n].name) { rc = -1; snprintf(err, errlen, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (rc < 0) { free_files(files, n); return -1; }
    if (n) qsort(files, n, sizeof *files, cmp_mfile);
    for (size_t i = 1; i < n; i++) {
        if (files[i].version == files[i - 1].version) {
            snprintf(err, errlen, "two migrations share version %ld: %s and %s",
                     files[i].version, files[i - 1].name, files[i].name);
            free_files(files, n);
            return -1;
        }
    }
    *out = files;
    *count = n;
    return 0;
}

static int read_file(const char *path, buf_t *b, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + r > MIGRATE_MAX_FILE || buf_append(b, chunk, r) < 0) {
            fclose(f);
            snprintf(err, errlen, "%s is too large or out of memory", path);
            return -1;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "error reading %s", path);
        return -1;
    }
    return 0;
}

/* Looks version up in the applied set (result of SELECT version, checksum). */
static const char *applied_checksum(PGresult *applied, long version, int *found)
{
    *found = 0;
    for (int i = 0; i < PQntuples(applied); i++) {
        if (strtol(PQgetvalue(applied, i, 0), NULL, 10) == version) {
            *found = 1;
            return PQgetvalue(applied, i, 1);
        }
    }
    return NULL;
}

static int apply_one(cp_dbconn *c, const char *dir, const mfile *m, PGresult *applied,
                     char *err, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, m->name) >= (int)sizeof path) {
        snprintf(err, errlen, "migration path too long");
        return -1;
    }
    buf_t sql;
    buf_init(&sql);
    if (read_file(path, &sql, err, errlen) < 0) { buf_free(&sql); return -1; }
    unsigned char h[CP_SHA256_LEN];
    char sum[2 * CP_SHA256_LEN + 1];
    cp_sha256(sql.data ? sql.data : "", sql.len, h);
    cp_hex(h, sizeof h, sum);

    int found;
    const char *old = applied_checksum(applied, m->version, &found);
    if (found) {
        if (old && strcmp(old, sum) != 0)
            log_warn("migration %s changed after it was applied; it is not re-run (write a new migration instead)",
                     m->name);
        buf_free(&sql);
        return 0;
    }

    char version[24];
    snprintf(version, sizeof version, "%ld", m->version);
    const char *params[] = { version, m->name, sum };
    int rc = -1;
    PGresult *r = NULL;
    if (cp_db_begin(c) < 0) goto out;
    if (!(r = cp_db_exec_script(c, sql.data ? sql.data : ""))) goto out;
    PQclear(r);
    r = cp_db_exec(c, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", 3, params);
    if (!r) goto out;
    PQclear(r);
    r = NULL;
    if (cp_db_commit(c) < 0) goto out;
    rc = 1;
    log_info("migration %s applied", m->name);
out:
    if (rc < 0) {
        snprintf(err, errlen, "migration %s failed: %s", m->name, cp_db_errmsg(c));
        cp_db_rollback(c);
    }
    buf_free(&sql);
    return rc;
}

int cp_migrate(cp_dbconn *c, const char *dir, char *err, size_t errlen)
{
    mfile *files = NULL;
    size_t n = 0;
    if (list_files(dir, &files, &n, err, errlen) < 0) return -1;
    if (n == 0) {
        snprintf(err, errlen, "no migrations (NNN_name.sql) found in %s", dir);
        free(files);
        return -1;
    }
    const char *lockp[] = { MIGRATE_LOCK_KEY };
    PGresult *r = cp_db_exec(c, "SELECT pg_advisory_lock($1::bigint)", 1, lockp);
    if (!r) {
        snprintf(err, errlen, "cannot take the migration lock: %s", cp_db_errmsg(c));
        free_files(files, n);
        return -1;
    }
    PQclear(r);

    int total = 0;
    PGresult *applied = NULL;
    /* Created under the lock: two concurrent CREATE ... IF NOT EXISTS can still collide. */
    r = cp_db_exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      " version integer PRIMARY KEY,"
                      " name text NOT NULL,"
                      " checksum text NOT NULL,"
                      " applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL);
    if (!r) {
        snprintf(err, errlen, "cannot create schema_migrations: %s", cp_db_errmsg(c));
        total = -1;
        goto out;
    }
    PQclear(r);
    applied = cp_db_exec(c, "SELECT version, checksum FROM schema_migrations ORDER BY version", 0, NULL);
    if (!applied) {
        snprintf(err, errlen, "cannot read schema_migrations: %s", cp_db_errmsg(c));
        total = -1;
        goto out;
    }
    for (int i = 0; i < PQntuples(applied); i++) {
        long v = strtol(PQgetvalue(applied, i, 0), NULL, 10);
        int known = 0;
        for (size_t j = 0; j < n; j++) known |= files[j].version == v;
        if (!known) log_warn("database has migration %ld that this build does not know (newer schema?)", v);
    }
    for (size_t i = 0; i < n; i++) {
        int rc = apply_one(c, dir, &files[i], applied, err, errlen);
        if (rc < 0) { total = -1; break; }
        total += rc;
    }
out:
    PQclear(applied);
    r = cp_db_exec(c, "SELECT pg_advisory_unlock($1::bigint)", 1, lockp);
    PQclear(r);         /* if the connection died the lock went with it */
    free_files(files, n);
    return total;
}
