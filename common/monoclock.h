/* monoclock: the monotonic clock in the units timers use. */
#ifndef GW_MONOCLOCK_H
#define GW_MONOCLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t mono_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t mono_ms(void)
{
    return mono_us() / 1000;
}

#endif
