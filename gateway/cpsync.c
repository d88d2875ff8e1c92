#include "cpsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "cpagent.h"
#include "cplink.h"
#include "cpstate.h"
#include "log.h"

#define SUB_QUEUE 1024     /* messages; a worker busy loading a big snapshot may miss more and reload */

struct cpsync {
    gw_config    *settings;
    gw_config   **slot;
    cpstate       st;
    nng_socket    sub;
    struct event *ev;
};

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void swap_in(cpsync *s, gw_config *next)
{
    /* in-flight requests keep their own ref on the old snapshot */
    config_unref(*s->slot);
    *s->slot = next;
}

/* Builds and swaps a config from s->st. */
static int publish_state(cpsync *s)
{
    char err[256];
    gw_config *next = cpstate_build_config(&s->st, s->settings, err, sizeof err);
    if (!next) {
        log_error("cannot build config version %llu: %s", (unsigned long long)s->st.version, err);
        return -1;
    }
    swap_in(s, next);
    return 0;
}

static void reload_from_disk(cpsync *s, const char *why)
{
    char err[256];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cpstate fresh;
    cpstate_init(&fresh);
    int rc = cpstate_load_disk(&fresh, s->settings->state_dir, err, sizeof err);
    if (rc <= 0) {
        if (rc < 0) log_error("cannot load %s (%s): %s", s->settings->state_dir, why, err);
        cpstate_free(&fresh);
        return;
    }
    cpstate old = s->st;
    s->st = fresh;
    if (publish_state(s) < 0) {
        cpstate_free(&s->st);
        s->st = old;
        return;
    }
    cpstate_free(&old);
    log_info("config version %llu loaded from disk (%s): %zu models, %zu keys in %.0f ms",
             (unsigned long long)s->st.version, why, s->st.nmodels, keytab_count(s->st.keys), ms_since(&t0));
}

static void on_delta(cpsync *s, const uint8_t *data, size_t len)
{
    char err[256];
    int models_changed;
    Gw__Delta *d = gw__delta__unpack(NULL, len, data);
    if (!d) { reload_from_disk(s, "unreadable delta"); return; }
    if (s->st.loaded && d->version <= s->st.version) {
        /* already have it (e.g. loaded from disk after it was written) */
    } else if (!s->st.loaded || d->base_version != s->st.version) {
        reload_from_disk(s, "version gap");
    } else if (cpstate_check_delta(d, err, sizeof err) < 0) {
        log_error("bad delta %llu: %s", (unsigned long long)d->version, err);
        reload_from_disk(s, "bad delta");
    } else if (cpstate_apply_delta(&s->st, d, &models_changed, err, sizeof err) < 0) {
        log_error("%s", err);
        reload_from_disk(s, "delta failed");
    } else if (models_changed) {
        if (publish_state(s) < 0) reload_from_disk(s, "model rebuild failed");
    } else {
        (*s->slot)->version = s->st.version;   /* keys changed in place */
    }
    gw__delta__free_unpacked(d, NULL);
}

static void on_message(cpsync *s, const uint8_t *m, size_t len)
{
    if (len < CPA_HDR) return;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)m[1 + i] << (8 * i);
    switch (m[0]) {
    case CPA_DELTA:
        on_delta(s, m + CPA_HDR, len - CPA_HDR);
        break;
    case CPA_RELOAD:
    case CPA_HEARTBEAT:
        if (!s->st.loaded || v != s->st.version) reload_from_disk(s, m[0] == CPA_RELOAD ? "new snapshot" : "behind");
        break;
    default:
        break;
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    cpsync *s = arg;
    (void)fd; (void)what;
    for (;;) {
        nng_msg *m;
        int rv = nng_recvmsg(s->sub, &m, NNG_FLAG_NONBLOCK);
        if (rv == NNG_EAGAIN) return;
        if (rv != 0) { log_warn("agent socket: %s", nng_strerror(rv)); return; }
        on_message(s, nng_msg_body(m), nng_msg_len(m));
        nng_msg_free(m);
    }
}

static int open_sub(cpsync *s, struct event_base *base)
{
    char url[512];
    int rv, fd;
    if (cpagent_ipc_url(s->settings->state_dir, url, sizeof url) < 0) { log_error("state_dir path too long"); return -1; }
    if ((rv = nng_sub0_open(&s->sub)) != 0 ||
        (rv = nng_socket_set(s->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
        (rv = nng_socket_set_size(s->sub, NNG_OPT_RECVMAXSZ, CPLINK_DELTA_MAX + CPA_HDR)) != 0 ||
        (rv = nng_socket_set_int(s->sub, NNG_OPT_RECVBUF, SUB_QUEUE)) != 0 ||
        (rv = nng_socket_set_ms(s->sub, NNG_OPT_RECONNMINT, 50)) != 0 ||
        (rv = nng_socket_set_ms(s->sub, NNG_OPT_RECONNMAXT, 500)) != 0 ||
        (rv = nng_dial(s->sub, url, NULL, NNG_FLAG_NONBLOCK)) != 0 ||
        (rv = nng_socket_get_int(s->sub, NNG_OPT_RECVFD, &fd)) != 0) {
        log_error("agent socket %s: %s", url, nng_strerror(rv));
        return -1;
    }
    /* the fd is readable while a message is waiting: level-triggered */
    if (!(s->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, s)) || event_add(s->ev, NULL) < 0) {
        log_error("cannot watch the agent socket");
        return -1;
    }
    return 0;
}

cpsync *cpsync_start(struct event_base *base, gw_config *settings, gw_config **slot)
{
    cpsync *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->sub = (nng_socket)NNG_SOCKET_INITIALIZER;
    s->settings = config_ref(settings);
    s->slot = slot;
    cpstate_init(&s->st);
    if (open_sub(s, base) < 0) { cpsync_stop(s); return NULL; }
    reload_from_disk(s, "start");
    if (!s->st.loaded) {
        gw_config *empty = config_with_settings(settings, NULL);
        if (!empty) { cpsync_stop(s); return NULL; }
        empty->awaiting_cp = 1;
        swap_in(s, empty);
        log_warn("no configuration on disk yet: not ready until the control plane sends one");
    }
    return s;
}

void cpsync_settings(cpsync *s, gw_config *settings)
{
    config_unref(s->settings);
    s->settings = config_ref(settings);
    if (s->st.loaded) {
        publish_state(s);
        return;
    }
    gw_config *empty = config_with_settings(settings, NULL);
    if (!empty) return;
    empty->awaiting_cp = 1;
    swap_in(s, empty);
}

void cpsync_stop(cpsync *s)
{
    if (!s) return;
    if (s->ev) event_free(s->ev);
    nng_close(s->sub);
    cpstate_free(&s->st);
    config_unref(s->settings);
    free(s);
}
