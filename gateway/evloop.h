/* evloop: a worker's event loop, optionally busy-polling.
 *
 * A worker that blocks in epoll_wait pays a wakeup for every event that
 * arrives: a context switch, and inside a virtual machine an inter-processor
 * interrupt plus a VM exit for the halted vCPU, tens of microseconds at the
 * tail.  With busy_poll_us > 0 the loop keeps polling with a zero timeout
 * for that long after the last traffic event, so an upstream reply or the
 * client's next request that arrives within the window is handled at once.
 * The price is CPU: up to busy_poll_us of spinning after each burst of
 * traffic (an idle worker blocks as usual).  Off by default; worth it when
 * upstreams answer in microseconds (a local model server, cache hits), like
 * HAProxy's busy-polling.
 */
#ifndef GW_EVLOOP_H
#define GW_EVLOOP_H

struct event_base;

/* Bumped by the callbacks that carry traffic (a new request, upstream
 * bytes): what "activity" means for the polling window.  One counter per
 * process: a worker is one thread of event handling. */
extern unsigned long evloop_traffic;
static inline void evloop_note_traffic(void) { evloop_traffic++; }

/* Runs the loop until it is told to exit or break, or has no events left.
 * *busy_poll_us is read on every round (a reload may change it); 0 makes
 * this event_base_dispatch.  0 on a clean exit, -1 on a loop error. */
int evloop_run(struct event_base *base, const long *busy_poll_us);

/* Rounds since start, for tests and diagnostics: polls with a zero timeout
 * (busy polling) and rounds that blocked. */
typedef struct evloop_stats {
    unsigned long polls, blocks;
} evloop_stats;
evloop_stats evloop_get_stats(void);

#endif
