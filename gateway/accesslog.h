/* accesslog: one JSON line per request, buffered per worker and handed in
 * batches (by size or every 100 ms) to a writer thread, so logging costs no
 * syscall per request and a slow sink (a stalled stdout pipe, a slow disk)
 * never blocks the event loop: past 8 MB waiting, lines are dropped and the
 * drop is logged. */
#ifndef GW_ACCESSLOG_H
#define GW_ACCESSLOG_H

#include <stddef.h>

struct event_base;
typedef struct accesslog accesslog_t;

/* target: "stdout", "off" or a file path (opened for append). NULL on error. */
accesslog_t *accesslog_open(struct event_base *base, const char *target);
int          accesslog_enabled(const accesslog_t *a);
void         accesslog_write(accesslog_t *a, const char *line, size_t len);  /* line ends with '\n' */
void         accesslog_flush(accesslog_t *a);
void         accesslog_close(accesslog_t *a);

#endif
