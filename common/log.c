#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
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

static int token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
}

/* Defense in depth: a secret that slips into a message anyway is masked.
 * "sk-..." keys keep their first 6 characters (enough to tell which kind);
 * the value after "Bearer " is masked whole. In place: the text only shrinks. */
size_t log_redact(char *s, size_t n)
{
    size_t r = 0, w = 0;
    while (r < n) {
        size_t keep = 0, tok = 0;
        if (r + 3 <= n && !memcmp(s + r, "sk-", 3) && (r == 0 || !token_char(s[r - 1]))) {
            while (r + tok < n && token_char(s[r + tok])) tok++;
            keep = tok >= 12 ? 6 : tok;   /* short "sk-" words are not keys */
        } else if (r + 7 <= n && !strncasecmp(s + r, "bearer ", 7)) {
            size_t v = 7;
            while (r + v + tok < n && token_char(s[r + v + tok])) tok++;
            if (tok >= 3) { keep = 7; tok += 7; }   /* "Bearer ***" is never longer than what it hides */
            else tok = 0;
        }
        if (tok > keep) {
            memmove(s + w, s + r, keep);
            w += keep;
            s[w++] = '*';   /* the masked middle */
            s[w++] = '*';
            s[w++] = '*';
            r += tok;
            continue;
        }
        s[w++] = s[r++];
    }
    return w;
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
    msg[log_redact(msg, strlen(msg))] = '\0';
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
