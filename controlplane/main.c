/* controlplane: configuration, start-up and shutdown.
 *
 *   controlplane [serve] --config controlplane.yaml   migrate, then serve the admin API
 *   controlplane migrate --config controlplane.yaml   apply migrations and exit
 *
 * Every setting of controlplane.yaml is also a flag; flags win over the file.
 */
#include <errno.h>
#include <stddef.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "audit.h"
#include "crypto.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "migrate.h"
#include "cplinktls.h"
#include "publish.h"
#include "static.h"

typedef struct config {
    char *database_url;
    char *admin_listen;
    char *dataplane_listen;     /* REP here, PUB at the next port (publish.h) */
    char *dataplane_ca_file, *dataplane_cert_file, *dataplane_key_file;   /* mutual TLS (cplinktls.h) */
    char *dataplane_insecure;   /* "true": plain tcp:// beyond loopback, on purpose */
    char *dataplane_min_version;   /* refuse data planes older than this (x.y.z) */
    char *master_key_file;
    char *migrations_dir;
    char *log_level;
    char *admin_ui_dir;         /* static files of the admin UI, served at / */
    int   threads;
} config;

/* One row per setting: the YAML key, its flag and where it goes. */
typedef struct setting {
    const char *key;
    const char *help;
    size_t      offset;         /* of a char * in config */
} setting;

static const setting g_settings[] = {
    { "database_url",     "libpq conninfo or postgresql:// URL",
      offsetof(config, database_url) },
    { "admin_listen",     "admin API address, host:port",
      offsetof(config, admin_listen) },
    { "dataplane_listen", "address data planes connect to (tcp:// or tls+tcp://)",
      offsetof(config, dataplane_listen) },
    { "dataplane_ca_file", "tls+tcp:// only: PEM CA that signs the data planes' certificates",
      offsetof(config, dataplane_ca_file) },
    { "dataplane_cert_file", "tls+tcp:// only: PEM certificate the control plane presents",
      offsetof(config, dataplane_cert_file) },
    { "dataplane_key_file", "tls+tcp:// only: its PEM private key",
      offsetof(config, dataplane_key_file) },
    { "dataplane_insecure", "true: allow a plain tcp:// dataplane_listen beyond loopback (trusted networks only)",
      offsetof(config, dataplane_insecure) },
    { "dataplane_min_version", "refuse data planes older than this version (x.y.z; default: the oldest this build serves)",
      offsetof(config, dataplane_min_version) },
    { "master_key_file",  "32-byte key that encrypts provider credentials (created 0600 if missing)",
      offsetof(config, master_key_file) },
    { "migrations_dir",   "directory of NNN_name.sql migrations (default: found next to the binary)",
      offsetof(config, migrations_dir) },
    { "log_level",        "debug | info | warn | error",
      offsetof(config, log_level) },
    { "admin_ui_dir",     "admin UI files served at / (default: admin-ui/ found next to the binary)",
      offsetof(config, admin_ui_dir) },
};
#define NSETTINGS (sizeof g_settings / sizeof g_settings[0])

static char **slot(config *c, const setting *s) { return (char **)((char *)c + s->offset); }

static int set_value(config *c, const char *key, const char *val)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (strcmp(g_settings[i].key, key) == 0) {
            char *dup = strdup(val);
            if (!dup) return -1;
            free(*slot(c, &g_settings[i]));
            *slot(c, &g_settings[i]) = dup;
            return 0;
        }
    }
    if (strcmp(key, "threads") == 0) {
        char *end;
        long n = strtol(val, &end, 10);
        if (*val == '\0' || *end != '\0' || n < 1 || n > 64) {
            fprintf(stderr, "controlplane: threads must be an integer between 1 and 64\n");
            return -1;
        }
        c->threads = (int)n;
        return 0;
    }
    fprintf(stderr, "controlplane: unknown setting '%s'\n", key);
    return -1;
}

static void config_free(config *c)
{
    for (size_t i = 0; i < NSETTINGS; i++) free(*slot(c, &g_settings[i]));
    memset(c, 0, sizeof *c);
}

/* Reads a flat mapping of scalars; nested values are an error (nothing here nests). */
static int load_yaml(config *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "controlplane: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    yaml_parser_t p;
    yaml_document_t doc;
    int rc = -1;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        fprintf(stderr, "controlplane: out of memory\n");
        return -1;
    }
    yaml_parser_set_input_file(&p, f);
    if (!yaml_parser_load(&p, &doc)) {
        fprintf(stderr, "controlplane: %s: %s at line %zu column %zu\n", path,
                p.problem ? p.problem : "YAML error", p.problem_mark.line + 1, p.problem_mark.column + 1);
        yaml_parser_delete(&p);
        fclose(f);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = 0;                                   /* an empty file sets nothing */
        goto out;
    }
    if (root->type != YAML_MAPPING_NODE) {
        fprintf(stderr, "controlplane: %s: expected a mapping of settings\n", path);
        goto out;
    }
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&doc, pair->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE) {
            fprintf(stderr, "controlplane: %s: keys must be plain strings\n", path);
            goto out;
        }
        const char *key = (const char *)k->data.scalar.value;
        if (v->type != YAML_SCALAR_NODE) {
            fprintf(stderr, "controlplane: %s: %s must be a single value (line %zu)\n", path, key,
                    v->start_mark.line + 1);
            goto out;
        }
        const char *val = (const char *)v->data.scalar.value;
        int is_null = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                      (!*val || !strcmp(val, "~") || !strcmp(val, "null"));
        if (is_null) continue;
        if (set_value(c, key, val) < 0) {
            fprintf(stderr, "controlplane: %s: line %zu\n", path, k->start_mark.line + 1);
            goto out;
        }
    }
    rc = 0;
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out,
        "usage: controlplane [serve|migrate|check-config] [--config FILE] [options]\n"
        "\n"
        "  serve     apply pending migrations, then serve the admin API (default)\n"
        "  migrate   apply pending migrations and exit\n"
        "  check-config  validate the settings (file and flags) and exit\n"
        "\n"
        "options (each also a key of the config file, flags win):\n"
        "  --config FILE             controlplane.yaml\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", g_settings[i].key);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_') *p = '-';
        fprintf(out, "  %-25s %s\n", flag, g_settings[i].help);
    }
    fprintf(out,
        "  --threads N               admin API threads and database connections (default 4)\n"
        "  --help                    this text\n"
        "\n"
        "environment:\n"
        "  CONTROLPLANE_ADMIN_TOKEN  registers this token (its SHA-256) as an admin token on start\n");
}

static int set_default(config *c, const char *key, const char *val)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(g_settings[i].key, key) == 0 && !*slot(c, &g_settings[i])) return set_value(c, key, val);
    return 0;
}

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Default migrations directory: ./migrations, else beside the binary (bin/../migrations,
 * build-x/bin/../../migrations), else the packaged location. */
static int find_migrations(config *c)
{
    if (c->migrations_dir) return 0;
    if (dir_exists("migrations")) return set_value(c, "migrations_dir", "migrations");
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        const char *ups[] = { "/../migrations", "/../../migrations" };
        for (size_t i = 0; i < 2; i++) {
            char cand[PATH_MAX + 32];
            snprintf(cand, sizeof cand, "%s%s", exe, ups[i]);
            if (dir_exists(cand)) return set_value(c, "migrations_dir", cand);
        }
    }
    return set_value(c, "migrations_dir", "/usr/share/gateway/migrations");
}

/* Default admin UI directory: ./admin-ui, else beside the binary, else the packaged location. */
static int find_admin_ui(config *c)
{
    if (c->admin_ui_dir) return 0;
    if (dir_exists("admin-ui")) return set_value(c, "admin_ui_dir", "admin-ui");
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        const char *ups[] = { "/../admin-ui", "/../../admin-ui" };
        for (size_t i = 0; i < 2; i++) {
            char cand[PATH_MAX + 32];
            snprintf(cand, sizeof cand, "%s%s", exe, ups[i]);
            if (dir_exists(cand)) return set_value(c, "admin_ui_dir", cand);
        }
    }
    return set_value(c, "admin_ui_dir", "/usr/share/gateway/admin-ui");
}

static int parse_args(int argc, char **argv, config *c, int *migrate_only)
{
    const char *config_path = NULL;
    *migrate_only = 0;
    /* The config file is read first so flags can override it wherever they appear. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config_path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) config_path = argv[i] + 9;
    }
    if (config_path && load_yaml(c, config_path) < 0) return -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "migrate") == 0) { *migrate_only = 1; continue; }
        if (strcmp(a, "check-config") == 0) { *migrate_only = 2; continue; }
        if (strcmp(a, "serve") == 0) continue;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "controlplane: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        char key[64];
        const char *eq = strchr(a, '='), *val;
        size_t klen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (klen == 0 || klen >= sizeof key) {
            fprintf(stderr, "controlplane: bad option '%s'\n", a);
            return -1;
        }
        memcpy(key, a + 2, klen);
        key[klen] = '\0';
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "controlplane: option --%s needs a value\n", key);
            return -1;
        }
        if (strcmp(key, "config") == 0) continue;
        for (char *p = key; *p; p++)
            if (*p == '-') *p = '_';
        if (set_value(c, key, val) < 0) return -1;
    }
    if (set_default(c, "database_url", "postgresql://gateway@127.0.0.1:5432/gateway") < 0 ||
        set_default(c, "admin_listen", "127.0.0.1:8081") < 0 ||
        set_default(c, "dataplane_listen", "tcp://127.0.0.1:7400") < 0 ||
        set_default(c, "master_key_file", "./var/master.key") < 0 ||
        set_default(c, "log_level", "info") < 0 || find_migrations(c) < 0 || find_admin_ui(c) < 0)
        return -1;
    if (c->threads == 0) c->threads = 4;
    if (strncmp(c->dataplane_listen, "tcp://", 6) != 0 && strncmp(c->dataplane_listen, "tls+tcp://", 10) != 0 &&
        strncmp(c->dataplane_listen, "ipc://", 6) != 0) {
        fprintf(stderr, "controlplane: dataplane_listen must be a tcp://, tls+tcp:// or ipc:// address\n");
        return -1;
    }
    if (c->dataplane_insecure && strcmp(c->dataplane_insecure, "true") && strcmp(c->dataplane_insecure, "false")) {
        fprintf(stderr, "controlplane: dataplane_insecure must be true or false\n");
        return -1;
    }
    if (!strncmp(c->dataplane_listen, "tcp://", 6) && !cplink_is_local(c->dataplane_listen) &&
        !(c->dataplane_insecure && !strcmp(c->dataplane_insecure, "true"))) {
        fprintf(stderr, "controlplane: plain tcp:// dataplane_listen is for loopback only: use tls+tcp:// (mutual "
                        "TLS), or set dataplane_insecure: true on a network you trust\n");
        return -1;
    }
    if (!strncmp(c->dataplane_listen, "tls+tcp://", 10) &&
        (!c->dataplane_ca_file || !c->dataplane_cert_file || !c->dataplane_key_file)) {
        fprintf(stderr, "controlplane: a tls+tcp:// dataplane_listen needs dataplane_ca_file, dataplane_cert_file "
                        "and dataplane_key_file (mutual TLS)\n");
        return -1;
    }
    const char *levels[] = { "debug", "info", "warn", "error" };
    int lvl = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(c->log_level, levels[i]) == 0) lvl = i;
    if (lvl < 0) {
        fprintf(stderr, "controlplane: log_level must be debug, info, warn or error\n");
        return -1;
    }
    log_set_level(lvl == 0 ? LOG_DEBUG : lvl == 1 ? LOG_INFO : lvl == 2 ? LOG_WARN : LOG_ERROR);
    return 0;
}

/* Postgres may still be starting (make run starts both at once): wait a bounded time. */
static int wait_for_db(cp_dbconn *c, int seconds)
{
    for (int i = 0; i <= seconds; i++) {
        if (cp_db_ensure(c) == 0) return 0;
        if (i == 0) log_warn("waiting for postgres: %s", cp_db_errmsg(c));
        if (i < seconds) sleep(1);
    }
    log_error("postgres unreachable after %d s: %s", seconds, cp_db_errmsg(c));
    return -1;
}

static int ensure_partitions(cp_dbconn *c)
{
    PGresult *r = cp_db_exec(c,
        "SELECT spend_log_ensure_partition((now() + make_interval(months => i))::date) "
        "FROM generate_series(0, 2) AS i", 0, NULL);
    if (!r) {
        log_error("cannot create spend_log partitions: %s", cp_db_errmsg(c));
        return -1;
    }
    PQclear(r);
    return 0;
}

/* Registers CONTROLPLANE_ADMIN_TOKEN (hashed) as an admin token unless a token
 * with that hash exists already (even revoked: a revoked token stays revoked). */
static int bootstrap_admin(cp_dbconn *c)
{
    const char *tok = getenv("CONTROLPLANE_ADMIN_TOKEN");
    if (!tok || !*tok) {
        log_info("CONTROLPLANE_ADMIN_TOKEN not set; using the admin tokens already in the database");
        return 0;
    }
    if (strlen(tok) < 16) log_warn("CONTROLPLANE_ADMIN_TOKEN is short; use at least 32 random characters");
    unsigned char h[CP_SHA256_LEN];
    char hex[2 * CP_SHA256_LEN + 1];
    cp_sha256(tok, strlen(tok), h);
    cp_hex(h, sizeof h, hex);
    const char *params[] = { hex };
    if (cp_db_begin(c) < 0) goto fail;
    PGresult *r = cp_db_exec(c,
        "INSERT INTO admin_tokens AS t (name, token_sha256, role) VALUES ('bootstrap', decode($1, 'hex'), 'admin') "
        "ON CONFLICT (token_sha256) DO NOTHING "
        "RETURNING t.id, json_build_object('id', t.id, 'name', t.name, 'role', t.role, 'created_at', t.created_at)",
        1, params);
    if (!r) goto fail;
    if (PQntuples(r) == 1) {
        cp_actor system = { .id = "system", .name = "CONTROLPLANE_ADMIN_TOKEN", .role = CP_ROLE_ADMIN };
        int rc = cp_audit_record(c, &system, "create", "admin_tokens", PQgetvalue(r, 0, 0), NULL,
                                 PQgetvalue(r, 0, 1), 0);
        PQclear(r);
        if (rc < 0) goto fail;
        if (cp_db_commit(c) < 0) goto fail;
        log_info("registered the admin token from CONTROLPLANE_ADMIN_TOKEN");
    } else {
        PQclear(r);
        cp_db_rollback(c);
    }
    return 0;
fail:
    log_error("cannot register CONTROLPLANE_ADMIN_TOKEN: %s", cp_db_errmsg(c));
    cp_db_rollback(c);
    return -1;
}

int main(int argc, char **argv)
{
    config cfg;
    memset(&cfg, 0, sizeof cfg);
    int migrate_only;
    log_set_component("controlplane");
    if (parse_args(argc, argv, &cfg, &migrate_only) < 0) {
        config_free(&cfg);
        return 2;
    }
    if (migrate_only == 2) {   /* check-config: parse_args validated everything */
        printf("controlplane: configuration ok (dataplane_listen %s%s)\n", cfg.dataplane_listen,
               cplink_is_tls(cfg.dataplane_listen) ? ", mutual TLS" : "");
        config_free(&cfg);
        return 0;
    }

    /* Signals go to the main thread only: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    unsigned char key[CP_MASTER_KEY_LEN];
    cp_db *db = NULL;
    cp_http *http = NULL;
    cp_publisher *pub = NULL;
    char err[512];

    if (!migrate_only) {
        int created = 0;
        if (cp_master_key_load(cfg.master_key_file, key, &created, err, sizeof err) < 0) {
            log_error("%s", err);
            goto out;
        }
        char fp[17];
        cp_master_key_fingerprint(key, fp);
        if (created) log_info("created master key file %s (fingerprint %s); back it up: credentials cannot be "
                              "decrypted without it", cfg.master_key_file, fp);
        else log_info("loaded master key file %s (fingerprint %s)", cfg.master_key_file, fp);
    }

    db = cp_db_open(cfg.database_url, migrate_only ? 1 : cfg.threads);
    if (!db) {
        log_error("out of memory");
        goto out;
    }
    cp_dbconn *c = cp_db_acquire(db);
    int ok = wait_for_db(c, 30) == 0;
    if (ok) {
        int n = cp_migrate(c, cfg.migrations_dir, err, sizeof err);
        if (n < 0) {
            log_error("%s", err);
            ok = 0;
        } else {
            log_info("migrations: %d applied from %s", n, cfg.migrations_dir);
        }
    }
    if (ok && !migrate_only) ok = ensure_partitions(c) == 0 && bootstrap_admin(c) == 0;
    cp_db_release(db, c);
    if (!ok) goto out;
    if (migrate_only) {
        status = 0;
        goto out;
    }

    if (cp_static_configure(cfg.admin_ui_dir) < 0) {
        log_error("out of memory");
        goto out;
    }
    http = cp_http_start(cfg.admin_listen, cfg.threads, db, key, err, sizeof err);
    if (!http) {
        log_error("%s", err);
        goto out;
    }
    log_info("admin API listening on http://%s", cfg.admin_listen);
    cplink_tls tls = { .ca_file = cfg.dataplane_ca_file, .cert_file = cfg.dataplane_cert_file,
                       .key_file = cfg.dataplane_key_file };
    if (!(pub = cp_publish_start(cfg.dataplane_listen, &tls, cfg.dataplane_min_version, cfg.database_url, key, err,
                                 sizeof err))) {
        log_error("%s", err);
        goto out;
    }

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0) continue;
        if (sig == SIGHUP) {
            log_warn("SIGHUP: configuration reload is not supported yet; restart to apply changes");
            continue;
        }
        log_info("signal %d: shutting down", sig);
        break;
    }
    status = 0;
out:
    cp_publish_stop(pub);
    cp_http_stop(http);
    cp_static_free();
    cp_db_close(db);
    cp_wipe(key, sizeof key);
    config_free(&cfg);
    return status;
}
