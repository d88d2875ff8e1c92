#include "usageship.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "buf.h"
#include "cplink.h"
#include "gateway.pb-c.h"
#include "metrics.h"
#include "log.h"
#include "usagelog.h"

#define SCAN_MAX        4096     /* names taken per directory scan */
#define FILES_PER_SEND  64
#define IDLE_MS         50       /* nothing to send: look again after this */
#define BACKOFF_MIN_MS  200
#define BACKOFF_MAX_MS  5000
#define ACK_TIMEOUT_MS  30000    /* a big batch into a busy Postgres */

struct usageship {
    const gw_config *cfg;
    char             dir[512];
    nng_socket       req;
    nng_dialer       dialer;      /* only the agent's thread touches it after start */
    const cplink_tls *tls;
    pthread_t        thread;
    int              started;
    atomic_int       stop;
    uint64_t         next_batch_id;
    char           **names;      /* sorted pending file names */
    size_t           nnames, at;
};

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(usageship *s)
{
    for (size_t i = 0; i < s->nnames; i++) free(s->names[i]);
    s->nnames = s->at = 0;
}

static int has_suffix(const char *n, const char *suf)
{
    size_t a = strlen(n), b = strlen(suf);
    return a > b && !strcmp(n + a - b, suf);
}

/* Loads the oldest SCAN_MAX batch names; 0 when there is none. */
static size_t scan(usageship *s)
{
    free_names(s);
    DIR *d = opendir(s->dir);
    if (!d) return 0;
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        if (!has_suffix(e->d_name, ".ub")) continue;
        if (s->nnames == cap) {
            size_t nc = cap ? cap * 2 : 256;
            char **nn = realloc(s->names, nc * sizeof *nn);
            if (!nn) break;
            s->names = nn;
            cap = nc;
        }
        if (!(s->names[s->nnames] = strdup(e->d_name))) break;
        s->nnames++;
    }
    closedir(d);
    if (s->nnames > 1) qsort(s->names, s->nnames, sizeof *s->names, cmp_names);
    metrics_set_spool(s->nnames);   /* the depth as of this scan (a gauge, refreshed per scan) */
    if (s->nnames > SCAN_MAX) {
        for (size_t i = SCAN_MAX; i < s->nnames; i++) free(s->names[i]);
        s->nnames = SCAN_MAX;
    }
    return s->nnames;
}

static void quarantine(usageship *s, const char *path, const char *why)
{
    char bad[700];
    snprintf(bad, sizeof bad, "%s.bad", path);
    log_error("usage batch %s %s: set aside as %s", path, why, bad);
    if (rename(path, bad) < 0) unlink(path);
    (void)s;
}

/* Appends one file (fsynced, checked) to out; returns its events, 0 when it
 * was set aside or is gone, -1 on a read error (retry later). */
static long add_file(usageship *s, const char *name, buf_t *out)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    struct stat st;
    if (fstat(fd, &st) < 0) { close(fd); return -1; }
    if (st.st_size <= 0 || (uint64_t)st.st_size > CPLINK_USAGE_MAX / 2) {
        close(fd);
        quarantine(s, path, st.st_size <= 0 ? "is empty" : "is too large");
        return 0;
    }
    /* durable before it is sent: the ack is what allows deleting it */
    if (fsync(fd) < 0) { close(fd); return -1; }
    size_t len = (size_t)st.st_size, start = out->len;
    if (buf_reserve(out, len) < 0) { close(fd); return -1; }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, out->data + start + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != len) return -1;
    Gw__UsageBatch *b = gw__usage_batch__unpack(NULL, len, (const uint8_t *)out->data + start);
    if (!b || b->n_events + b->n_verdicts == 0 || b->n_events > USAGELOG_BATCH * 2 ||
        b->n_verdicts > USAGELOG_VERDICTS * 2) {
        if (b) gw__usage_batch__free_unpacked(b, NULL);
        quarantine(s, path, "does not parse");
        return 0;
    }
    long n = (long)(b->n_events + b->n_verdicts);   /* A/B verdicts ride along (abjudge.h) */
    gw__usage_batch__free_unpacked(b, NULL);
    out->len += len;
    return n;
}

static void put_varint(buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do { tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v);
    buf_append(b, tmp, n);
}

/* One request/ack round; 1 sent and acked, 0 nothing to send, -1 retry later. */
static int ship_once(usageship *s, buf_t *msg)
{
    if (s->at >= s->nnames && scan(s) == 0) return 0;
    buf_reset(msg);
    buf_putc(msg, CPLINK_USAGE_TAG);
    size_t first = s->at, last = s->at;
    long events = 0;
    while (last < s->nnames && last - first < FILES_PER_SEND && events < CPLINK_USAGE_EVENTS_MAX - USAGELOG_BATCH * 2 &&
           msg->len < CPLINK_USAGE_MAX / 2) {
        long n = add_file(s, s->names[last], msg);
        if (n < 0) break;
        events += n;
        last++;
    }
    if (events == 0) {
        s->at = last;               /* all gone or set aside */
        return last > first ? 1 : -1;
    }
    /* a scalar repeated later wins when protobuf messages are concatenated */
    uint64_t id = ++s->next_batch_id;
    buf_putc(msg, 0x10);            /* field 2 (batch_id), varint */
    put_varint(msg, id);
    if (msg->oom) return -1;
    int rv = nng_send(s->req, msg->data, msg->len, 0);
    if (rv != 0) return -1;
    void *reply;
    size_t rlen;
    if ((rv = nng_recv(s->req, &reply, &rlen, NNG_FLAG_ALLOC)) != 0) {
        if (rv != NNG_ECLOSED) log_warn("no usage ack from the control plane: %s", nng_strerror(rv));
        return -1;
    }
    Gw__UsageAck *ack = gw__usage_ack__unpack(NULL, rlen, reply);
    nng_free(reply, rlen);
    int ok = ack && ack->ok && ack->batch_id == id;
    if (!ok) log_warn("usage batch of %ld events not stored: %.200s", events,
                      ack ? (ack->error[0] ? ack->error : "wrong batch id") : "unreadable ack");
    else log_debug("usage batch %llu: %ld events, %u new", (unsigned long long)id, events, ack->inserted);
    if (ack) gw__usage_ack__free_unpacked(ack, NULL);
    if (!ok) return -1;
    char path[700];
    for (size_t i = first; i < last; i++) {
        snprintf(path, sizeof path, "%s/%s", s->dir, s->names[i]);
        if (unlink(path) < 0 && errno != ENOENT) log_warn("cannot delete %s: %s", path, strerror(errno));
    }
    s->at = last;
    return 1;
}

static void *ship_main(void *arg)
{
    usageship *s = arg;
    buf_t msg;
    buf_init(&msg);
    long backoff = BACKOFF_MIN_MS;
    while (!atomic_load(&s->stop)) {
        int rc = ship_once(s, &msg);
        if (rc > 0) { backoff = BACKOFF_MIN_MS; continue; }
        if (rc == 0) { sleep_ms(IDLE_MS); continue; }
        free_names(s);              /* rescan: files may have changed meanwhile */
        for (long t = 0; t < backoff && !atomic_load(&s->stop); t += 50) sleep_ms(50);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    buf_free(&msg);
    return NULL;
}

int usageship_redial(usageship *s, char *err, size_t errlen)
{
    if (!s) return 0;
    nng_dialer_close(s->dialer);
    return cplink_dial(s->req, s->cfg->control_plane, s->tls, &s->dialer, err, errlen);
}

usageship *usageship_start(const gw_config *cfg, const cplink_tls *tls)
{
    usageship *s = calloc(1, sizeof *s);
    if (!s) { log_error("out of memory"); return NULL; }
    s->cfg = cfg;
    s->tls = tls;
    s->req = (nng_socket)NNG_SOCKET_INITIALIZER;
    char err[512];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->next_batch_id = (uint64_t)now.tv_sec << 20;   /* distinct across restarts, for the logs */
    int rv;
    if (usagelog_dir(cfg->state_dir, s->dir, sizeof s->dir) < 0) { log_error("state_dir path too long"); goto fail; }
    if (mkdir(s->dir, 0700) < 0 && errno != EEXIST) { log_error("mkdir %s: %s", s->dir, strerror(errno)); goto fail; }
    if ((rv = nng_req0_open(&s->req)) != 0 ||
        (rv = nng_socket_set_size(s->req, NNG_OPT_RECVMAXSZ, 64u << 10)) != 0 ||
        (rv = nng_socket_set_ms(s->req, NNG_OPT_REQ_RESENDTIME, ACK_TIMEOUT_MS)) != 0 ||
        (rv = nng_socket_set_ms(s->req, NNG_OPT_SENDTIMEO, 1000)) != 0 ||
        (rv = nng_socket_set_ms(s->req, NNG_OPT_RECVTIMEO, ACK_TIMEOUT_MS)) != 0 ||
        (rv = nng_socket_set_ms(s->req, NNG_OPT_RECONNMINT, 100)) != 0 ||
        (rv = nng_socket_set_ms(s->req, NNG_OPT_RECONNMAXT, 1000)) != 0) {
        log_error("usage link to %s: %s", cfg->control_plane, nng_strerror(rv));
        goto fail;
    }
    if (cplink_dial(s->req, cfg->control_plane, tls, &s->dialer, err, sizeof err) < 0) {
        log_error("usage link: %s", err);
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, ship_main, s) != 0) { log_error("pthread_create failed"); goto fail; }
    s->started = 1;
    return s;
fail:
    usageship_stop(s);
    return NULL;
}

void usageship_stop(usageship *s)
{
    if (!s) return;
    atomic_store(&s->stop, 1);
    nng_close(s->req);              /* unblocks a pending send or receive */
    if (s->started) pthread_join(s->thread, NULL);
    free_names(s);
    free(s->names);
    free(s);
}
