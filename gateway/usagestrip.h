/* usagestrip: removes the usage-only chunk from a relayed SSE stream.
 *
 * When a client streams without stream_options.include_usage, the gateway
 * asks the upstream for usage anyway (it needs it for cost) and must not
 * show the client a chunk it did not ask for: OpenAI's usage-only chunk,
 * `{"choices":[], "usage":{...}}`. The filter passes complete events through
 * byte for byte, drops that one, and holds back only an incomplete event at
 * the end of a feed (which the client could not have used yet). After the
 * chunk is dropped, or if an event grows past the bound, everything passes
 * straight through.
 */
#ifndef GW_USAGESTRIP_H
#define GW_USAGESTRIP_H

#include <stddef.h>

#include "buf.h"

#define USAGESTRIP_MAX_PENDING (1u << 20)

typedef void (*usagestrip_emit)(void *ud, const char *p, size_t n);

typedef struct usagestrip {
    buf_t pending;     /* an incomplete event carried to the next feed */
    int   done;        /* chunk dropped, or gave up: pass through */
} usagestrip;

void usagestrip_init(usagestrip *s);
/* Emits what may go to the client now (possibly in several pieces). */
void usagestrip_feed(usagestrip *s, const char *p, size_t n, usagestrip_emit emit, void *ud);
/* End of stream: emits whatever is still held back. */
void usagestrip_flush(usagestrip *s, usagestrip_emit emit, void *ud);
void usagestrip_free(usagestrip *s);

/* 1 if the event text (one SSE event, without its blank line) is a usage-only chunk. */
int  usagestrip_is_usage_chunk(const char *p, size_t n);

#endif
