#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <event2/event.h>

#include "buf.h"
#include "log.h"

#define FLUSH_BYTES   (32 * 1024)   /* the writer gets this much, or what FLUSH_MS gathered (256 KB batches measured worse at p99) */
#define FLUSH_MS      100
#define PENDING_MAX   (8u << 20)   /* the loop's buffer while the writer is stuck; beyond it lines are dropped */
#define CLOSE_WAIT_S  3            /* how long a stopping worker waits for the sink */

struct accesslog {
    int             fd;          /* -1 = off */
    int             own_fd;
    int             pipe;        /* the sink is a pipe or socket: writes of whole lines up to PIPE_BUF */
    buf_t           pending;     /* the loop appends here */
    struct event   *timer;       /* one-shot, armed while lines are pending: an idle worker sleeps */
    uint64_t        dropped;     /* lines the loop could not buffer (writer stuck) */
    /* the writer thread: takes `batch` when the loop hands it over */
    pthread_t       thread;
    int             threaded;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    buf_t           batch;       /* owned by the writer while busy */
    int             busy, stop;
};

static int write_all(int fd, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;   /* a closed stdout must not take the worker down: drop the batch */
        off += (size_t)w;
    }
    return 0;
}

/* A batch of whole lines. Every worker writes to the same sink: a file is
 * opened O_APPEND, so each write lands whole; a pipe (stdout under a
 * container runtime or systemd) keeps only writes of up to PIPE_BUF bytes
 * whole, so there the batch goes out in pieces of whole lines that fit. */
static void write_lines(const accesslog_t *a, const char *p, size_t n)
{
    if (!a->pipe) { (void)write_all(a->fd, p, n); return; }
    while (n) {
        size_t take = n;
        if (take > PIPE_BUF) {
            const char *nl = memrchr(p, '\n', PIPE_BUF);
            if (!nl) nl = memchr(p + PIPE_BUF, '\n', n - PIPE_BUF);   /* one line longer than PIPE_BUF */
            take = nl ? (size_t)(nl - p) + 1 : n;
        }
        if (write_all(a->fd, p, take) < 0) return;
        p += take;
        n -= take;
    }
}

static void *writer_main(void *arg)
{
    accesslog_t *a = arg;
    /* cancellable only inside write(): a sink that never drains must not
     * keep a stopping worker alive (accesslog_close) */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->busy && !a->stop) pthread_cond_wait(&a->cv, &a->mu);
        if (!a->busy) break;   /* stop, and nothing handed over */
        pthread_mutex_unlock(&a->mu);
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        write_lines(a, a->batch.data, a->batch.len);
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        buf_reset(&a->batch);
        pthread_mutex_lock(&a->mu);
        a->busy = 0;
        pthread_cond_broadcast(&a->cv);   /* accesslog_close may be waiting for this */
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void arm_timer(accesslog_t *a)
{
    struct timeval tv = { 0, FLUSH_MS * 1000 };
    if (a->timer && !evtimer_pending(a->timer, NULL) && evtimer_add(a->timer, &tv) < 0)
        log_warn("access log: cannot arm the flush timer");
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    accesslog_flush(arg);
}

accesslog_t *accesslog_open(struct event_base *base, const char *target)
{
    accesslog_t *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    buf_init(&a->pending);
    buf_init(&a->batch);
    a->fd = -1;
    if (!target || !strcmp(target, "stdout")) a->fd = STDOUT_FILENO;
    else if (strcmp(target, "off")) {
        a->fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (a->fd < 0) { log_error("access log %s: %s", target, strerror(errno)); free(a); return NULL; }
        a->own_fd = 1;
    }
    struct stat st;
    a->pipe = a->fd >= 0 && fstat(a->fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
    if (a->fd >= 0 && base) {
        /* Writes happen on a thread of their own: a file on a slow disk or a
         * stdout pipe whose reader stalls must never stop the event loop. */
        if (pthread_mutex_init(&a->mu, NULL) != 0) { accesslog_close(a); return NULL; }
        if (pthread_cond_init(&a->cv, NULL) != 0) { pthread_mutex_destroy(&a->mu); accesslog_close(a); return NULL; }
        /* signals stay with the loop's thread (the writer starts with all blocked) */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&a->thread, NULL, writer_main, a);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            log_error("access log: pthread_create failed");
            pthread_cond_destroy(&a->cv);
            pthread_mutex_destroy(&a->mu);
            accesslog_close(a);
            return NULL;
        }
        a->threaded = 1;
        if (!(a->timer = evtimer_new(base, on_timer, a))) { accesslog_close(a); return NULL; }
    }
    return a;
}

int accesslog_enabled(const accesslog_t *a) { return a && a->fd >= 0; }

void accesslog_write(accesslog_t *a, const char *line, size_t len)
{
    if (!accesslog_enabled(a)) return;
    if (a->pending.len + len > PENDING_MAX) {
        if (a->dropped++ % 10000 == 0) log_warn("access log: the sink is not keeping up; %llu lines dropped so far",
                                                (unsigned long long)a->dropped);
        return;
    }
    if (a->pending.len == 0) arm_timer(a);
    buf_append(&a->pending, line, len);
    if (a->pending.len >= FLUSH_BYTES) accesslog_flush(a);
}

void accesslog_flush(accesslog_t *a)
{
    if (!accesslog_enabled(a) || a->pending.len == 0) return;
    if (!a->threaded) {   /* no loop (tools, tests): write in place */
        write_lines(a, a->pending.data, a->pending.len);
    } else {
        /* hand the batch over by swapping buffers; if the writer is still
         * busy with the previous one, keep collecting (up to PENDING_MAX) */
        pthread_mutex_lock(&a->mu);
        int handed = !a->busy;
        if (handed) {
            buf_t t = a->batch;
            a->batch = a->pending;
            a->pending = t;
            a->busy = 1;
            pthread_cond_broadcast(&a->cv);
        }
        pthread_mutex_unlock(&a->mu);
        if (!handed) { arm_timer(a); return; }   /* try again in FLUSH_MS */
    }
    buf_reset(&a->pending);
    if (a->pending.oom) { buf_free(&a->pending); buf_init(&a->pending); }
}

void accesslog_close(accesslog_t *a)
{
    if (!a) return;
    if (a->timer) event_free(a->timer);
    if (a->threaded) {
        /* The loop has stopped: the writer finishes its batch, takes the
         * last one and exits, all within a bound; a sink that does not drain
         * in that time loses what is left (said once in the log). */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += CLOSE_WAIT_S;
        pthread_mutex_lock(&a->mu);
        while (a->busy && pthread_cond_timedwait(&a->cv, &a->mu, &deadline) != ETIMEDOUT) {}
        if (!a->busy && a->pending.len) {
            buf_t t = a->batch;
            a->batch = a->pending;
            a->pending = t;
            a->busy = 1;
        }
        a->stop = 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        if (pthread_timedjoin_np(a->thread, NULL, &deadline) != 0) {
            log_warn("access log: the sink did not take the last lines within %d s; they are dropped", CLOSE_WAIT_S);
            pthread_cancel(a->thread);
            pthread_join(a->thread, NULL);
        }
        pthread_cond_destroy(&a->cv);
        pthread_mutex_destroy(&a->mu);
    } else {
        accesslog_flush(a);
    }
    if (a->own_fd) close(a->fd);
    buf_free(&a->pending);
    buf_free(&a->batch);
    free(a);
}
