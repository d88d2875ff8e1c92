#include "publish.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

#include "cplink.h"
#include "db.h"
#include "gateway.pb-c.h"
#include "ingest.h"
#include "log.h"
#include "monoclock.h"
#include "pbwire.h"
#include "metrics.h"
#include "snapshot.h"

#define POLL_MS 100
#define CP_SOFTWARE_VERSION "0.1.0"
#define CP_DELTA_MIN_DP_VERSION 11             /* Delta.min_dataplane_version (proto/gateway.proto) */
#define DEFAULT_MIN_DATAPLANE_VERSION "0.1.0"   /* the first with this config format */
#define BUDGET_ROLL_MS 1000     /* a block outlives its period by at most this (+ a delta) */

struct cp_publisher {
    const unsigned char *master_key;
    char                 min_version[32];   /* oldest data plane served */
    cp_db               *hello_db, *delta_db;
    nng_socket           rep, pub;
    pthread_t            hello_thread, delta_thread;
    int                  hello_started, delta_started;
    atomic_int           stop;
    /* hello thread only */
    buf_t                cache;          /* the last snapshot built */
    buf_t                ingest_json, ingest_reply;   /* reused by usage batches */
    uint64_t             cache_version;
    int                  cache_valid;
};

/* ---- hello ---- */

static int valid_text(const char *s, size_t min, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n < min || n > max) return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20) return 0;
    return 1;
}

/* refused: NULL when served, else why not (then config_version is left as it was) */
static void record_dataplane(cp_dbconn *c, const Gw__Hello *h, uint64_t version, const char *refused)
{
    char ver[24], workers[16];
    snprintf(ver, sizeof ver, "%" PRIu64, version);
    snprintf(workers, sizeof workers, "%u", h->workers > 100000 ? 100000 : h->workers);
    const char *params[] = { h->dataplane_id, h->hostname, h->software_version, ver, workers,
                             refused ? "refused" : "ok", refused };
    PGresult *r = cp_db_exec(c,
        "INSERT INTO dataplanes (id, hostname, version, config_version, workers, last_seen, status, status_reason) "
        "VALUES ($1, $2, $3, CASE WHEN $6 = 'ok' THEN $4::bigint END, $5::integer, now(), $6, $7) "
        "ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, version = EXCLUDED.version, "
        "config_version = coalesce(EXCLUDED.config_version, dataplanes.config_version), "
        "workers = EXCLUDED.workers, last_seen = now(), status = EXCLUDED.status, "
        "status_reason = EXCLUDED.status_reason", 7, params);
    if (!r) log_warn("cannot record data plane %.200s: %s", h->dataplane_id, cp_db_errmsg(c));
    PQclear(r);
    cp_metrics_dataplane_seen(h->dataplane_id);
}

static void send_reply(cp_publisher *p, Gw__HelloReply *reply)
{
    size_t n = gw__hello_reply__get_packed_size(reply);
    nng_msg *m;
    if (nng_msg_alloc(&m, n) != 0) { log_error("out of memory for a %zu-byte reply", n); return; }
    gw__hello_reply__pack(reply, nng_msg_body(m));
    int rv = nng_sendmsg(p->rep, m, 0);
    if (rv != 0) { nng_msg_free(m); log_warn("reply to a data plane: %s", nng_strerror(rv)); }
}

/* Whether this control plane serves a data plane of that version: not
 * older than dataplane_min_version, and not of a newer major version (whose
 * config it cannot know). */
static int dataplane_version_ok(const cp_publisher *p, const char *software, char *why, size_t whylen)
{
    long v[3], lo[3], own[3];
    if (cplink_version_parse(software, v) < 0) {
        snprintf(why, whylen, "unrecognised data plane version '%.40s'", software);
        return 0;
    }
    if (cplink_version_parse(p->min_version, lo) == 0 && cplink_version_cmp(v, lo) < 0) {
        snprintf(why, whylen, "data plane version %ld.%ld.%ld is older than the oldest served (%s): upgrade it",
                 v[0], v[1], v[2], p->min_version);
        return 0;
    }
    if (cplink_version_parse(CP_SOFTWARE_VERSION, own) == 0 && v[0] > own[0]) {
        snprintf(why, whylen, "data plane version %ld.%ld.%ld is newer than this control plane (%s): upgrade "
                 "the control plane first", v[0], v[1], v[2], CP_SOFTWARE_VERSION);
        return 0;
    }
    return 1;
}

static void on_hello(cp_publisher *p, cp_dbconn *c, const uint8_t *data, size_t len)
{
    Gw__HelloReply reply = GW__HELLO_REPLY__INIT;
    char err[256];
    Gw__Hello *h = gw__hello__unpack(NULL, len, data);
    if (!h || !valid_text(h->dataplane_id, 1, 200) || !valid_text(h->hostname, 0, 255) ||
        !valid_text(h->software_version, 0, 100)) {
        reply.status = GW__HELLO_REPLY__STATUS__ERROR;
        reply.error = "malformed Hello";
        send_reply(p, &reply);
        if (h) gw__hello__free_unpacked(h, NULL);
        return;
    }
    char why[200];
    if (!dataplane_version_ok(p, h->software_version, why, sizeof why)) {
        /* an old node would misread what this control plane sends: say so
         * to it and in GET /api/dataplanes, and keep refusing until it is upgraded */
        reply.status = GW__HELLO_REPLY__STATUS__ERROR;
        reply.error = why;
        send_reply(p, &reply);
        record_dataplane(c, h, 0, why);
        gw__hello__free_unpacked(h, NULL);
        return;
    }
    uint64_t current;
    int have_current = cp_config_version(c, &current) == 0;
    if (have_current && h->have_snapshot && h->have_version == current && !h->want_full) {
        reply.status = GW__HELLO_REPLY__STATUS__UP_TO_DATE;
        reply.version = current;
    } else {
        int64_t t0 = mono_ms();
        if (!(have_current && p->cache_valid && p->cache_version == current)) {
            uint64_t v;
            if (cp_snapshot_build(c, p->master_key, &p->cache, &v, err, sizeof err) == 0) {
                p->cache_valid = 1;
                p->cache_version = v;
                log_info("snapshot version %" PRIu64 " built: %zu bytes in %lld ms", v, p->cache.len,
                         (long long)(mono_ms() - t0));
            } else if (!p->cache_valid) {
                log_warn("cannot build a snapshot for %.200s: %s", h->dataplane_id, err);
            }
        }
        if (p->cache_valid) {
            /* the database may be down: the last snapshot built is still the best we have */
            reply.status = GW__HELLO_REPLY__STATUS__SNAPSHOT;
            reply.snapshot.data = (uint8_t *)p->cache.data;
            reply.snapshot.len = p->cache.len;
            reply.version = p->cache_version;
        } else {
            reply.status = GW__HELLO_REPLY__STATUS__ERROR;
            reply.error = "no snapshot available (database unreachable?)";
        }
    }
    send_reply(p, &reply);
    if (reply.status != GW__HELLO_REPLY__STATUS__ERROR) record_dataplane(c, h, reply.version, NULL);
    gw__hello__free_unpacked(h, NULL);
}

static void on_usage(cp_publisher *p, cp_dbconn *c, const uint8_t *data, size_t len)
{
    cp_ingest_usage(c, data, len, &p->ingest_json, &p->ingest_reply);
    nng_msg *m;
    if (p->ingest_reply.len == 0 || nng_msg_alloc(&m, p->ingest_reply.len) != 0) {
        log_error("cannot build a usage ack");
        return;   /* no reply: the data plane times out and retries */
    }
    memcpy(nng_msg_body(m), p->ingest_reply.data, p->ingest_reply.len);
    int rv = nng_sendmsg(p->rep, m, 0);
    if (rv != 0) { nng_msg_free(m); log_warn("usage ack: %s", nng_strerror(rv)); }
}

/* Budgets whose period ended: reset their spend, lift their blocks. */
static void roll_budget_periods(cp_dbconn *c)
{
    PGresult *r = cp_db_exec(c, "SELECT budget_roll_periods()", 0, NULL);
    if (!r) { log_warn("budget period roll: %s", cp_db_errmsg(c)); return; }
    const char *v = cp_db_value(r);
    if (v && strcmp(v, "0")) log_info("budget periods rolled: %s blocks lifted", v);
    PQclear(r);
}

static void *hello_main(void *arg)
{
    cp_publisher *p = arg;
    cp_dbconn *c = cp_db_acquire(p->hello_db);
    int64_t next_roll = 0;
    while (!atomic_load(&p->stop)) {
        /* here, not on another thread: ingestion and the roll lock the same
         * key rows, and one thread takes them in one order */
        if (mono_ms() >= next_roll) {
            roll_budget_periods(c);
            next_roll = mono_ms() + BUDGET_ROLL_MS;
        }
        nng_msg *m;
        int rv = nng_recvmsg(p->rep, &m, 0);
        if (rv == NNG_ETIMEDOUT) continue;
        if (rv != 0) {
            if (rv != NNG_ECLOSED) log_warn("data plane socket: %s", nng_strerror(rv));
            if (rv == NNG_ECLOSED) break;
            continue;
        }
        const uint8_t *body = nng_msg_body(m);
        size_t blen = nng_msg_len(m);
        if (blen > 0 && body[0] == CPLINK_USAGE_TAG) on_usage(p, c, body + 1, blen - 1);
        else if (blen > CPLINK_HELLO_MAX) log_warn("dropping an oversized Hello (%zu bytes)", blen);
        else on_hello(p, c, body, blen);
        nng_msg_free(m);
    }
    cp_db_release(p->hello_db, c);
    return NULL;
}

/* ---- deltas ---- */

/* Every delta and heartbeat says which data planes may apply it. */
static void publish(cp_publisher *p, buf_t *b)
{
    if (pbw_put_bytes_field(b, CP_DELTA_MIN_DP_VERSION, p->min_version, strlen(p->min_version)) < 0) {
        log_error("out of memory stamping a delta");
        return;
    }
    int rv = nng_send(p->pub, b->data, b->len, 0);
    if (rv != 0) log_warn("publish: %s", nng_strerror(rv));
}

static void *delta_main(void *arg)
{
    cp_publisher *p = arg;
    cp_dbconn *c = cp_db_acquire(p->delta_db);
    buf_t b;
    buf_init(&b);
    char err[256];
    uint64_t last = 0;
    int known = 0;
    int64_t next_beat = 0;
    while (!atomic_load(&p->stop)) {
        if (!known) {
            known = cp_config_version(c, &last) == 0;
            if (known) log_info("publishing from config version %" PRIu64, last);
        } else {
            uint64_t v;
            size_t items;
            int64_t t0 = mono_ms();
            if (cp_delta_build(c, p->master_key, last, &b, &v, &items, err, sizeof err) < 0) {
                log_warn("%s", err);
            } else if (v != last) {
                publish(p, &b);
                if (items > CPLINK_DELTA_MAX_ITEMS) log_info("version %" PRIu64 ": resync published", v);
                else log_debug("delta %" PRIu64 " -> %" PRIu64 ": %zu items, %zu bytes in %lld ms", last, v, items,
                               b.len, (long long)(mono_ms() - t0));
                last = v;
                next_beat = mono_ms() + CPLINK_HEARTBEAT_MS;
            }
        }
        if (known && mono_ms() >= next_beat) {
            if (cp_heartbeat_build(last, &b) == 0) publish(p, &b);
            next_beat = mono_ms() + CPLINK_HEARTBEAT_MS;
        }
        struct timespec ts = { 0, POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
    buf_free(&b);
    cp_db_release(p->delta_db, c);
    return NULL;
}

/* ---- start / stop ---- */

cp_publisher *cp_publish_start(const char *listen, const cplink_tls *tls, const char *min_dataplane_version,
                               const char *conninfo, const unsigned char *master_key, char *err, size_t errlen)
{
    char pub[512];
    int rv;
    long mv[3];
    if (!min_dataplane_version) min_dataplane_version = DEFAULT_MIN_DATAPLANE_VERSION;
    if (strlen(min_dataplane_version) >= 32 || cplink_version_parse(min_dataplane_version, mv) < 0) {
        snprintf(err, errlen, "dataplane_min_version %.40s: expected x.y.z", min_dataplane_version);
        return NULL;
    }
    if (cplink_pub_address(listen, pub, sizeof pub) < 0) {
        snprintf(err, errlen, "dataplane_listen %s: expected tcp://host:port, tls+tcp://host:port or ipc://path", listen);
        return NULL;
    }
    cp_publisher *p = calloc(1, sizeof *p);
    if (!p) { snprintf(err, errlen, "out of memory"); return NULL; }
    p->master_key = master_key;
    snprintf(p->min_version, sizeof p->min_version, "%s", min_dataplane_version);
    p->rep = p->pub = (nng_socket)NNG_SOCKET_INITIALIZER;
    buf_init(&p->cache);
    buf_init(&p->ingest_json);
    buf_init(&p->ingest_reply);
    if (!(p->hello_db = cp_db_open(conninfo, 1)) || !(p->delta_db = cp_db_open(conninfo, 1))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if ((rv = nng_rep0_open(&p->rep)) != 0 ||
        (rv = nng_socket_set_size(p->rep, NNG_OPT_RECVMAXSZ, CPLINK_USAGE_MAX)) != 0 ||
        (rv = nng_socket_set_ms(p->rep, NNG_OPT_RECVTIMEO, 200)) != 0 ||
        (rv = nng_pub0_open(&p->pub)) != 0) {
        snprintf(err, errlen, "dataplane_listen %s: %s", listen, nng_strerror(rv));
        goto fail;
    }
    char why[512];
    if (cplink_listen(p->rep, listen, tls, why, sizeof why) < 0 || cplink_listen(p->pub, pub, tls, why, sizeof why) < 0) {
        snprintf(err, errlen, "dataplane_listen: %s", why);
        goto fail;
    }
    if (pthread_create(&p->hello_thread, NULL, hello_main, p) != 0) { snprintf(err, errlen, "pthread_create failed"); goto fail; }
    p->hello_started = 1;
    if (pthread_create(&p->delta_thread, NULL, delta_main, p) != 0) { snprintf(err, errlen, "pthread_create failed"); goto fail; }
    p->delta_started = 1;
    log_info("data planes: snapshots on %s, deltas on %s%s", listen, pub,
             cplink_is_tls(listen) ? " (mutual TLS)" : "");
    return p;
fail:
    cp_publish_stop(p);
    return NULL;
}

void cp_publish_stop(cp_publisher *p)
{
    if (!p) return;
    atomic_store(&p->stop, 1);
    if (p->hello_started) pthread_join(p->hello_thread, NULL);
    if (p->delta_started) pthread_join(p->delta_thread, NULL);
    nng_close(p->rep);
    nng_close(p->pub);
    cp_db_close(p->hello_db);
    cp_db_close(p->delta_db);
    buf_free(&p->cache);
    buf_free(&p->ingest_json);
    buf_free(&p->ingest_reply);
    free(p);
}
