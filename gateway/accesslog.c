#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>

#include "buf.h"
#include "log.h"

#define FLUSH_BYTES (32 * 1024)
#define FLUSH_MS    100

struct accesslog {
    int           fd;          /* -1 = off */
    int           own_fd;
    buf_t         pending;
    struct event *timer;
};

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
    a->fd = -1;
    if (!target || !strcmp(target, "stdout")) a->fd = STDOUT_FILENO;
    else if (strcmp(target, "off")) {
        a->fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (a->fd < 0) { log_error("access log %s: %s", target, strerror(errno)); free(a); return NULL; }
        a->own_fd = 1;
    }
    if (a->fd >= 0 && base) {
        struct timeval tv = { 0, FLUSH_MS * 1000 };
        a->timer = event_new(base, -1, EV_PERSIST, on_timer, a);
        if (!a->timer || event_add(a->timer, &tv) < 0) { accesslog_close(a); return NULL; }
    }
    return a;
}

int accesslog_enabled(const accesslog_t *a) { return a && a->fd >= 0; }

void accesslog_write(accesslog_t *a, const char *line, size_t len)
{
    if (!accesslog_enabled(a)) return;
    buf_append(&a->pending, line, len);
    if (a->pending.len >= FLUSH_BYTES) accesslog_flush(a);
}

void accesslog_flush(accesslog_t *a)
{
    if (!accesslog_enabled(a) || a->pending.len == 0) return;
    /* each batch ends on a line boundary and goes out in as few writes as
     * the pipe allows; a short write retries the rest */
    size_t off = 0;
    while (off < a->pending.len) {
        ssize_t n = write(a->fd, a->pending.data + off, a->pending.len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  /* a closed stdout must not take the worker down: drop the batch */
        off += (size_t)n;
    }
    buf_reset(&a->pending);
    if (a->pending.oom) { buf_free(&a->pending); buf_init(&a->pending); }
}

void accesslog_close(accesslog_t *a)
{
    if (!a) return;
    accesslog_flush(a);
    if (a->timer) event_free(a->timer);
    if (a->own_fd) close(a->fd);
    buf_free(&a->pending);
    free(a);
}
