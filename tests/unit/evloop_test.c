/* evloop: the busy-polling window opens on traffic, closes after
 * busy_poll_us, and never changes how the loop stops. */
#include "evloop.h"
#include "test.h"

#include <event2/event.h>
#include <sys/time.h>

static void on_traffic(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    evloop_note_traffic();
}

static void on_exit_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    event_base_loopexit(arg, NULL);
}

static void on_break_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    event_base_loopbreak(arg);
}

/* A traffic event at 1 ms, the loop told to stop at 300 ms (loopexit or
 * loopbreak); returns the loop's result and the rounds it ran. */
static int run_case(long busy_us, int use_break, evloop_stats *d)
{
    struct event_base *b = event_base_new();
    if (!b) return -2;
    struct event *t1 = evtimer_new(b, on_traffic, NULL);
    struct event *t2 = evtimer_new(b, use_break ? on_break_timer : on_exit_timer, b);
    struct timeval at1 = { 0, 1000 }, at2 = { 0, 300000 };
    int rc = -2;
    if (t1 && t2 && evtimer_add(t1, &at1) == 0 && evtimer_add(t2, &at2) == 0) {
        evloop_stats s0 = evloop_get_stats();
        rc = evloop_run(b, &busy_us);
        evloop_stats s1 = evloop_get_stats();
        d->polls = s1.polls - s0.polls;
        d->blocks = s1.blocks - s0.blocks;
    }
    if (t1) event_free(t1);
    if (t2) event_free(t2);
    event_base_free(b);
    return rc;
}

static void test_off_never_polls(void)
{
    evloop_stats d;
    CHECK(run_case(0, 0, &d) == 0);
    CHECK(d.polls == 0);
    CHECK(d.blocks >= 2);   /* the traffic timer, then the exit timer */
}

/* After traffic the loop polls; the window (10 ms) closes long before the
 * exit timer (300 ms), so it blocks again rather than spinning on. */
static void test_window_opens_on_traffic_and_closes(void)
{
    evloop_stats d;
    CHECK(run_case(10000, 0, &d) == 0);
    CHECK(d.polls > 0);
    CHECK(d.blocks >= 2);
}

static void test_break_stops_a_polling_loop(void)
{
    evloop_stats d;
    /* a window longer than the run: the stop comes while polling */
    CHECK(run_case(1000000, 1, &d) == 0);
    CHECK(d.polls > 0);
}

static void test_empty_base_returns(void)
{
    struct event_base *b = event_base_new();
    CHECK(b != NULL);
    if (!b) return;
    long busy = 500;
    evloop_note_traffic();
    CHECK(evloop_run(b, &busy) == 0);   /* nothing registered: returns at once */
    event_base_free(b);
}

int main(void)
{
    RUN(test_off_never_polls);
    RUN(test_window_opens_on_traffic_and_closes);
    RUN(test_break_stops_a_polling_loop);
    RUN(test_empty_base_returns);
    TEST_MAIN_END();
}
