#include "evloop.h"

#include <event2/event.h>
#include <stdint.h>

#include "monoclock.h"

unsigned long evloop_traffic;
static evloop_stats stats;

evloop_stats evloop_get_stats(void)
{
    return stats;
}

int evloop_run(struct event_base *base, const long *busy_poll_us)
{
    unsigned long seen = evloop_traffic;
    int64_t last = INT64_MIN / 2;      /* when traffic was last seen: not yet */
    for (;;) {
        long window = *busy_poll_us;
        int spin = 0;
        if (window > 0) {
            int64_t now = mono_us();
            if (evloop_traffic != seen) {
                seen = evloop_traffic;
                last = now;
            }
            spin = now - last < window;
        }
        /* polling: zero timeout; else block until something is ready */
        if (spin)
            stats.polls++;
        else
            stats.blocks++;
        int rc = event_base_loop(base, spin ? EVLOOP_ONCE | EVLOOP_NONBLOCK : EVLOOP_ONCE);
        if (rc < 0)
            return -1;
        if (rc == 1 || event_base_got_exit(base) || event_base_got_break(base))
            return 0;                  /* nothing left to wait for, or told to stop */
    }
}
