/* sse: an incremental Server-Sent Events parser. Bytes go in as they arrive
 * from the network, in any split; complete events come out, each with its
 * data lines joined by '\n'. Bounded: an event larger than max_event is
 * dropped (and counted), never buffered without limit. */
#ifndef GW_SSE_H
#define GW_SSE_H

#include <stddef.h>

#include "buf.h"

typedef void (*sse_event_cb)(void *ud, const char *event, const char *data, size_t len);

typedef struct sse_parser {
    buf_t        line;        /* an incomplete line carried to the next feed */
    buf_t        data;        /* data of the event being assembled */
    char         event[32];   /* "event:" field of the event being assembled */
    size_t       max_event;
    size_t       dropped;     /* events dropped for size */
    int          skip;        /* current event is over the bound */
    int          last_cr;     /* previous feed ended in '\r' (a "\r\n" may be split) */
    sse_event_cb on_event;
    void        *ud;
} sse_parser;

void sse_init(sse_parser *p, size_t max_event, sse_event_cb cb, void *ud);
void sse_feed(sse_parser *p, const char *bytes, size_t n);
void sse_free(sse_parser *p);

#endif
