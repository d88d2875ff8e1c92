#include "cpagent.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include "cplink.h"
#include "cplinktls.h"
#include "cpstate.h"
#include "gateway.pb-c.h"
#include "log.h"
#include "monoclock.h"
#include "metrics.h"
#include "statefile.h"
#include "usageship.h"

#define GW_SOFTWARE_VERSION "gateway/0.1.0"
#define REPORT_EVERY_MS     5000     /* Hello while idle: keeps last_seen fresh */
#define BACKOFF_MIN_MS      200
#define BACKOFF_MAX_MS      5000
#define HELLO_TIMEOUT_MS    120000   /* a million-key snapshot takes seconds to build */
#define COMPACT_RECORDS     1000     /* journal longer than this: fetch a fresh snapshot */
#define COMPACT_BYTES       (16L << 20)
/* No heartbeat for this long: the TCP connections may be dead without
 * knowing it (a cut link drops packets silently, and TCP's retransmissions
 * back off to seconds), so dial anew every REDIAL_MS until one gets through:
 * a healed link is then used within REDIAL_MS. */
#define LINK_SILENT_MS      (3 * CPLINK_HEARTBEAT_MS)
#define REDIAL_MS           500

typedef enum { H_IDLE, H_SENDING, H_WAITING } hello_state;

typedef struct agent {
    const gw_config *cfg;
    int              nworkers;
    nng_socket       req, sub, pub;
    nng_dialer       req_d, sub_d;
    cplink_tls       tls;
    char             pub_url[512];
    struct usageship *ship;
    int64_t          last_sub_ms, next_redial_ms;
    int              silent;
    int              refused;         /* the control plane serves only newer data planes */
    atomic_int       sub_connected;   /* a new connection for deltas: say Hello at once */
    nng_aio         *aio;
    atomic_int       aio_done;
    hello_state      hstate;
    int              need_hello, want_full;
    int64_t          next_hello_ms, backoff_ms, next_report_ms, next_beat_ms;
    int              loaded;
    uint64_t         version;
    long             journal_records;
    char             hostname[256];
} agent;

static volatile sig_atomic_t g_stop;

static void on_stop(int sig) { (void)sig; g_stop = 1; }

int cpagent_ipc_url(const char *state_dir, char *out, size_t outlen)
{
    struct sockaddr_un sun;
    int n = snprintf(out, outlen, "ipc://%s/agent.ipc", state_dir);
    /* the path must fit a Unix socket address */
    return n < 0 || (size_t)n >= outlen || (size_t)n - 6 >= sizeof sun.sun_path ? -1 : 0;
}

int cpagent_prepare_config(gw_config *cfg, char *err, size_t errlen)
{
    char pub[512], ipc[512];
    if (!cfg->state_dir && !(cfg->state_dir = strdup("./var/gateway"))) goto oom;
    if (!cfg->dataplane_id) {
        char host[256];
        if (gethostname(host, sizeof host) < 0) snprintf(host, sizeof host, "gateway");
        host[sizeof host - 1] = '\0';
        if (!(cfg->dataplane_id = strdup(host))) goto oom;
    }
    if (cplink_pub_address(cfg->control_plane, pub, sizeof pub) < 0) {
        snprintf(err, errlen, "control_plane: %s is not tcp://host:port, tls+tcp://host:port or ipc://path",
                 cfg->control_plane);
        return -1;
    }
    if (cpagent_ipc_url(cfg->state_dir, ipc, sizeof ipc) < 0) {
        snprintf(err, errlen, "state_dir: path too long for a Unix socket");
        return -1;
    }
    return statefile_prepare_dir(cfg->state_dir, err, errlen);
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- what is on disk ---- */

typedef struct disk_walk {
    uint64_t version;
    long     records;
} disk_walk;

static int disk_walk_one(void *ud, const uint8_t *rec, size_t len)
{
    disk_walk *w = ud;
    Gw__Delta *d = gw__delta__unpack(NULL, len, rec);
    if (!d) return -1;
    if (d->base_version == w->version && d->version > w->version) w->version = d->version;
    w->records++;
    gw__delta__free_unpacked(d, NULL);
    return 0;
}

static void load_disk_version(agent *a)
{
    const uint8_t *data;
    size_t len;
    char err[256];
    int rc = statefile_map_snapshot(a->cfg->state_dir, &data, &len, err, sizeof err);
    if (rc < 0) log_warn("ignoring the snapshot on disk: %s", err);
    if (rc <= 0) return;
    uint64_t v;
    rc = cpstate_check_snapshot(data, len, &v, err, sizeof err);
    statefile_unmap(data, len);
    if (rc < 0) { log_warn("ignoring the snapshot on disk: %s", err); return; }
    disk_walk w = { .version = v };
    statefile_journal_each(a->cfg->state_dir, disk_walk_one, &w);
    a->loaded = 1;
    a->version = w.version;
    a->journal_records = w.records;
    log_info("config version %llu on disk (%ld journal records)", (unsigned long long)a->version, w.records);
}

/* ---- to the workers ---- */

static void tell_workers(agent *a, int type, const void *payload, size_t len)
{
    uint8_t *m = malloc(CPA_HDR + len);
    if (!m) { log_error("out of memory telling workers about version %llu", (unsigned long long)a->version); return; }
    m[0] = (uint8_t)type;
    for (int i = 0; i < 8; i++) m[1 + i] = (uint8_t)(a->version >> (8 * i));
    if (len) memcpy(m + CPA_HDR, payload, len);
    int rv = nng_send(a->pub, m, CPA_HDR + len, NNG_FLAG_NONBLOCK);
    if (rv != 0 && rv != NNG_EAGAIN) log_warn("publishing to workers: %s", nng_strerror(rv));
    free(m);
}

/* ---- from the control plane ---- */

static void schedule_hello(agent *a, int now)
{
    a->need_hello = 1;
    if (now) a->next_hello_ms = 0;
}

/* 1 when the control plane serves only data planes newer than this one: its
 * changes are not for us (our Hello is refused too, and GET /api/dataplanes
 * says why). Logged once per change of mind. */
static int too_old_for(agent *a, const char *min_version)
{
    long own[3], min[3];
    int old = min_version && *min_version && cplink_version_parse(min_version, min) == 0 &&
              cplink_version_parse(GW_SOFTWARE_VERSION, own) == 0 && cplink_version_cmp(own, min) < 0;
    if (old && !a->refused)
        log_error("the control plane serves data planes from version %.40s on; this one is %s: not applying its "
                  "changes until it is upgraded (serving the last configuration)", min_version, GW_SOFTWARE_VERSION);
    else if (!old && a->refused)
        log_info("the control plane serves this version again");
    a->refused = old;
    return old;
}

static void on_delta(agent *a, const uint8_t *data, size_t len)
{
    char err[256];
    Gw__Delta *d = gw__delta__unpack(NULL, len, data);
    if (!d) { log_warn("dropping a delta that does not parse (%zu bytes)", len); return; }
    if (too_old_for(a, d->min_dataplane_version)) {
        gw__delta__free_unpacked(d, NULL);
        return;
    }
    if (d->resync) {
        log_info("control plane asks for a resync at version %llu", (unsigned long long)d->version);
        schedule_hello(a, 1);
    } else if (d->version == d->base_version) {                      /* heartbeat */
        if (!a->loaded || d->version != a->version) schedule_hello(a, 1);
    } else if (a->loaded && d->base_version == a->version) {
        if (cpstate_check_delta(d, err, sizeof err) < 0) {
            log_warn("rejecting delta %llu: %s; resyncing", (unsigned long long)d->version, err);
            schedule_hello(a, 1);
        } else if (statefile_journal_append(a->cfg->state_dir, data, len, err, sizeof err) < 0) {
            log_error("cannot persist delta %llu: %s", (unsigned long long)d->version, err);
        } else {
            a->version = d->version;
            a->journal_records++;
            tell_workers(a, CPA_DELTA, data, len);
            log_debug("delta %llu applied", (unsigned long long)d->version);
            if (a->journal_records > COMPACT_RECORDS || statefile_journal_size(a->cfg->state_dir) > COMPACT_BYTES) {
                a->want_full = 1;
                schedule_hello(a, 1);
            }
        }
    } else if (!a->loaded || d->version > a->version) {
        log_info("version gap (have %llu, delta %llu from %llu): asking for the full snapshot",
                 (unsigned long long)a->version, (unsigned long long)d->version, (unsigned long long)d->base_version);
        schedule_hello(a, 1);
    }
    gw__delta__free_unpacked(d, NULL);
}

static void on_hello_reply(agent *a, const uint8_t *data, size_t len)
{
    char err[256];
    Gw__HelloReply *r = gw__hello_reply__unpack(NULL, len, data);
    if (!r) { log_warn("control plane reply does not parse"); goto retry; }
    if (r->status == GW__HELLO_REPLY__STATUS__SNAPSHOT) {
        uint64_t v;
        int64_t t0 = mono_ms();
        if (cpstate_check_snapshot(r->snapshot.data, r->snapshot.len, &v, err, sizeof err) < 0) {
            log_error("rejecting the control plane's snapshot: %s", err);
            goto retry;
        }
        if (statefile_write_snapshot(a->cfg->state_dir, r->snapshot.data, r->snapshot.len, err, sizeof err) < 0) {
            log_error("cannot persist the snapshot: %s", err);
            goto retry;
        }
        a->loaded = 1;
        a->version = v;
        metrics_set_controlplane(1);
        a->journal_records = 0;
        a->want_full = 0;
        tell_workers(a, CPA_RELOAD, NULL, 0);
        log_info("snapshot version %llu received (%zu bytes, checked and stored in %lld ms)", (unsigned long long)v,
                 r->snapshot.len, (long long)(mono_ms() - t0));
    } else if (r->status == GW__HELLO_REPLY__STATUS__UP_TO_DATE) {
        metrics_set_controlplane(1);
        if (a->loaded && r->version != a->version) schedule_hello(a, 1);   /* moved meanwhile */
    } else {
        log_warn("control plane cannot serve a snapshot now: %.200s", r->error);
        goto retry;
    }
    gw__hello_reply__free_unpacked(r, NULL);
    a->backoff_ms = BACKOFF_MIN_MS;
    return;
retry:
    if (r) gw__hello_reply__free_unpacked(r, NULL);
    schedule_hello(a, 0);
    a->next_hello_ms = mono_ms() + a->backoff_ms;
    a->backoff_ms = a->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : a->backoff_ms * 2;
}

static void on_aio(void *arg) { atomic_store(&((agent *)arg)->aio_done, 1); }

static int send_hello(agent *a)
{
    Gw__Hello h = GW__HELLO__INIT;
    h.dataplane_id = a->cfg->dataplane_id;
    h.software_version = GW_SOFTWARE_VERSION;
    h.hostname = a->hostname;
    h.have_version = a->version;
    h.have_snapshot = a->loaded;
    h.workers = (uint32_t)a->nworkers;
    h.want_full = a->want_full;
    size_t n = gw__hello__get_packed_size(&h);
    nng_msg *m;
    if (nng_msg_alloc(&m, n) != 0) return -1;
    gw__hello__pack(&h, nng_msg_body(m));
    nng_aio_set_msg(a->aio, m);
    nng_aio_set_timeout(a->aio, HELLO_TIMEOUT_MS);
    atomic_store(&a->aio_done, 0);
    nng_send_aio(a->req, a->aio);
    return 0;
}

/* One step of the Hello exchange; never blocks. */
static void hello_step(agent *a, int64_t now)
{
    if (a->hstate == H_IDLE) {
        if (!a->need_hello || now < a->next_hello_ms) return;
        a->need_hello = 0;
        if (send_hello(a) < 0) { schedule_hello(a, 0); a->next_hello_ms = now + BACKOFF_MAX_MS; return; }
        a->hstate = H_SENDING;
        return;
    }
    if (!atomic_load(&a->aio_done)) return;
    int rv = nng_aio_result(a->aio);
    if (a->hstate == H_SENDING) {
        if (rv != 0) {
            nng_msg *m = nng_aio_get_msg(a->aio);
            if (m) nng_msg_free(m);
            a->hstate = H_IDLE;
            schedule_hello(a, 0);
            a->next_hello_ms = now + a->backoff_ms;
            return;
        }
        atomic_store(&a->aio_done, 0);
        a->hstate = H_WAITING;
        nng_recv_aio(a->req, a->aio);
        return;
    }
    a->hstate = H_IDLE;
    if (rv != 0) {
        if (rv != NNG_ECANCELED) log_warn("no answer from the control plane: %s", nng_strerror(rv));
        metrics_set_controlplane(0);
        schedule_hello(a, 0);
        a->next_hello_ms = now + a->backoff_ms;
        a->backoff_ms = a->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : a->backoff_ms * 2;
        return;
    }
    nng_msg *m = nng_aio_get_msg(a->aio);
    on_hello_reply(a, nng_msg_body(m), nng_msg_len(m));
    nng_msg_free(m);
}

static void on_sub_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    (void)pipe; (void)ev;
    atomic_store(&((agent *)arg)->sub_connected, 1);
}

static int open_sockets(agent *a)
{
    char ipc[512], err[512];
    int rv;
    if (cplink_pub_address(a->cfg->control_plane, a->pub_url, sizeof a->pub_url) < 0 ||
        cpagent_ipc_url(a->cfg->state_dir, ipc, sizeof ipc) < 0) {
        log_error("bad control_plane or state_dir");
        return -1;
    }
    a->tls = (cplink_tls){
        .ca_file = a->cfg->control_plane_ca_file, .cert_file = a->cfg->control_plane_cert_file,
        .key_file = a->cfg->control_plane_key_file, .server_name = a->cfg->control_plane_server_name,
    };
    if ((rv = nng_pub0_open(&a->pub)) != 0 || (rv = nng_listen(a->pub, ipc, NULL, 0)) != 0) {
        log_error("listen %s: %s", ipc, nng_strerror(rv));
        return -1;
    }
    if ((rv = nng_req0_open(&a->req)) != 0 ||
        (rv = nng_socket_set_size(a->req, NNG_OPT_RECVMAXSZ, CPLINK_SNAPSHOT_MAX)) != 0 ||
        (rv = nng_socket_set_ms(a->req, NNG_OPT_REQ_RESENDTIME, 15000)) != 0 ||
        (rv = nng_socket_set_ms(a->req, NNG_OPT_RECONNMINT, 100)) != 0 ||
        (rv = nng_socket_set_ms(a->req, NNG_OPT_RECONNMAXT, 1000)) != 0) {
        log_error("control plane %s: %s", a->cfg->control_plane, nng_strerror(rv));
        return -1;
    }
    if (cplink_dial(a->req, a->cfg->control_plane, &a->tls, &a->req_d, err, sizeof err) < 0) {
        log_error("control plane: %s", err);
        return -1;
    }
    if ((rv = nng_sub0_open(&a->sub)) != 0 ||
        (rv = nng_socket_set(a->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
        (rv = nng_socket_set_size(a->sub, NNG_OPT_RECVMAXSZ, CPLINK_DELTA_MAX)) != 0 ||
        (rv = nng_socket_set_ms(a->sub, NNG_OPT_RECVTIMEO, 50)) != 0 ||
        (rv = nng_socket_set_ms(a->sub, NNG_OPT_RECONNMINT, 100)) != 0 ||
        (rv = nng_socket_set_ms(a->sub, NNG_OPT_RECONNMAXT, 1000)) != 0 ||
        (rv = nng_pipe_notify(a->sub, NNG_PIPE_EV_ADD_POST, on_sub_pipe, a)) != 0) {
        log_error("control plane %s: %s", a->pub_url, nng_strerror(rv));
        return -1;
    }
    if (cplink_dial(a->sub, a->pub_url, &a->tls, &a->sub_d, err, sizeof err) < 0) {
        log_error("control plane: %s", err);
        return -1;
    }
    if ((rv = nng_aio_alloc(&a->aio, on_aio, a)) != 0) {
        log_error("nng_aio_alloc: %s", nng_strerror(rv));
        return -1;
    }
    return 0;
}

/* Drops the connections to the control plane and dials anew (see LINK_SILENT_MS). */
static void redial(agent *a, int64_t now)
{
    char err[512];
    nng_dialer_close(a->sub_d);
    nng_dialer_close(a->req_d);
    if (cplink_dial(a->sub, a->pub_url, &a->tls, &a->sub_d, err, sizeof err) < 0 ||
        cplink_dial(a->req, a->cfg->control_plane, &a->tls, &a->req_d, err, sizeof err) < 0)
        log_warn("redialing the control plane: %s", err);
    if (usageship_redial(a->ship, err, sizeof err) < 0) log_warn("redialing for usage: %s", err);
    /* a Hello in flight went into the dead connection: the new one asks again */
    if (a->hstate != H_IDLE) nng_aio_cancel(a->aio);
    a->backoff_ms = BACKOFF_MIN_MS;
    a->next_redial_ms = now + REDIAL_MS;
}

static void watch_link(agent *a, int64_t now)
{
    if (atomic_exchange(&a->sub_connected, 0)) {
        a->last_sub_ms = now;
        schedule_hello(a, 1);      /* whatever was missed meanwhile comes with the reply */
    }
    if (now - a->last_sub_ms < LINK_SILENT_MS) {
        if (a->silent) log_info("control plane link back");
        a->silent = 0;
        return;
    }
    if (!a->silent) {
        log_warn("nothing from the control plane for %d ms: reconnecting every %d ms", LINK_SILENT_MS, REDIAL_MS);
        a->silent = 1;
        a->next_redial_ms = 0;
    }
    if (now >= a->next_redial_ms) redial(a, now);
}

int cpagent_run(const gw_config *cfg, int nworkers)
{
    agent a;
    memset(&a, 0, sizeof a);
    a.cfg = cfg;
    a.nworkers = nworkers;
    a.req = a.sub = a.pub = (nng_socket)NNG_SOCKET_INITIALIZER;
    a.backoff_ms = BACKOFF_MIN_MS;
    log_set_component("cpagent");
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) return 1;
    struct sigaction sa = { .sa_handler = on_stop };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGHUP, SIG_IGN);    /* the master restarts us when control_plane changes */
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (gethostname(a.hostname, sizeof a.hostname) < 0) snprintf(a.hostname, sizeof a.hostname, "unknown");
    a.hostname[sizeof a.hostname - 1] = '\0';

    int rc = 1;
    usageship *ship = NULL;
    load_disk_version(&a);
    if (open_sockets(&a) < 0) goto out;
    if (!(ship = usageship_start(cfg, &a.tls))) goto out;
    a.ship = ship;
    a.last_sub_ms = mono_ms();
    log_info("control plane %s, data plane id %s", cfg->control_plane, cfg->dataplane_id);
    schedule_hello(&a, 1);
    while (!g_stop) {
        int64_t now = mono_ms();
        hello_step(&a, now);
        nng_msg *m;
        int rv = nng_recvmsg(a.sub, &m, 0);       /* waits at most RECVTIMEO */
        if (rv == 0) {
            a.last_sub_ms = mono_ms();
            on_delta(&a, nng_msg_body(m), nng_msg_len(m));
            nng_msg_free(m);
        } else if (rv != NNG_ETIMEDOUT && rv != NNG_EINTR) {
            log_warn("receiving deltas: %s", nng_strerror(rv));
            struct timespec ts = { 0, 50 * 1000000 };
            nanosleep(&ts, NULL);
        }
        now = mono_ms();
        watch_link(&a, now);
        if (now >= a.next_report_ms) {
            a.next_report_ms = now + REPORT_EVERY_MS;
            if (a.hstate == H_IDLE) schedule_hello(&a, 0);
        }
        if (a.loaded && now >= a.next_beat_ms) {
            a.next_beat_ms = now + CPLINK_HEARTBEAT_MS;
            tell_workers(&a, CPA_HEARTBEAT, NULL, 0);
        }
    }
    log_info("stopping");
    rc = 0;
out:
    usageship_stop(ship);
    if (a.aio) {
        nng_aio_stop(a.aio);
        /* a message the aio still holds: an unsent request or an unread reply */
        int res = nng_aio_result(a.aio);
        if ((a.hstate == H_SENDING && res != 0) || (a.hstate == H_WAITING && res == 0)) {
            nng_msg *m = nng_aio_get_msg(a.aio);
            if (m) nng_msg_free(m);
        }
        nng_aio_free(a.aio);
    }
    nng_close(a.req);
    nng_close(a.sub);
    nng_close(a.pub);
    return rc;
}
