/* log: diagnostics as JSON lines on stderr ({"ts","level","pid","msg"}).
 * Never pass a secret; as a last line of defense, key-shaped tokens are
 * masked before a line is written (log_redact). */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stddef.h>

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(int level);
void log_set_component(const char *name);       /* "gateway", "worker-1", "controlplane" */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Masks "sk-..." keys and "Bearer <token>" values in s[0..n) in place; returns
 * the new length (never longer). log_msg applies it to every message. */
size_t log_redact(char *s, size_t n);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
