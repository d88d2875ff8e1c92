/* eventstream: a decoder for AWS's binary application/vnd.amazon.eventstream
 * framing (Bedrock ConverseStream). Each message:
 *   total length (4) | headers length (4) | prelude CRC32 (4) |
 *   headers | payload | message CRC32 (4)          (big-endian)
 * Bytes go in in any split; whole messages come out once both CRCs check. */
#ifndef GW_EVENTSTREAM_H
#define GW_EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct es_message {
    char        event_type[64];      /* ":event-type" (or "") */
    char        message_type[32];    /* ":message-type": event, exception, error */
    char        exception_type[64];  /* ":exception-type" or ":error-code" */
    const char *payload;
    size_t      payload_len;
} es_message;

typedef void (*es_message_cb)(void *ud, const es_message *m);

typedef struct es_decoder {
    buf_t  buf;          /* bytes of messages not complete yet */
    size_t max_message;
    int    failed;
} es_decoder;

void     es_init(es_decoder *d, size_t max_message);
/* 0 ok; -1 on a framing error, a CRC mismatch or an oversized message (sticky). */
int      es_feed(es_decoder *d, const char *p, size_t n, es_message_cb cb, void *ud);
void     es_free(es_decoder *d);
uint32_t es_crc32(const void *p, size_t n);

#endif
