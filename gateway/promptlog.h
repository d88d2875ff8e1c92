/* promptlog: an optional, sampled log of prompts and completions, off by
 * default (log_prompts: { sample_ratio }). One JSON line per sampled
 * request into the access log: the request body and the answer (the SSE
 * text of a stream) as JSON strings, each cut at PROMPTLOG_MAX bytes on a
 * UTF-8 boundary. Keys never appear: they travel in headers, not bodies. */
#ifndef GW_PROMPTLOG_H
#define GW_PROMPTLOG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct accesslog;

#define PROMPTLOG_MAX (16u << 10)

/* Deterministic per request sequence number: no random syscall. */
int  promptlog_sampled(double ratio, uint64_t seq);
void promptlog_write(struct accesslog *a, buf_t *line, const char *ts, const char *request_id, const char *model,
                     const char *prompt, size_t plen, const char *completion, size_t clen, int stream);

#endif
