#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static int g_level = LOG_INFO;
static char g_component[32] = "gateway";

void log_set_level(int level) { g_level = level; }

void log_set_component(const char *name)
{
    snprintf(g_component, sizeof g_component, "%s", name);
}

void log_msg(int level, const char *fmt, ...)
{
    static const char *names[] = { "debug", "info", "warn", "error" };
    if (level < g_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    buf_t b; buf_init(&b);
    buf_printf(&b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"component\":\"%s\",\"pid\":%d,\"msg\":",
               when, ts.tv_nsec / 1000000, names[level], g_component, (int)getpid());
    buf_json_str(&b, msg, strlen(msg));
    buf_puts(&b, "}\n");
    if (!b.oom) {
        /* one write() per line so lines from several processes never interleave */
        ssize_t w = write(STDERR_FILENO, b.data, b.len);
        (void)w;
    }
    buf_free(&b);
}
