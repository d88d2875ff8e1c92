/* pbwire: just enough of the protobuf wire format to stream big messages.
 *
 * protobuf-c packs and unpacks whole messages. A snapshot with a million keys
 * is tens of MB, and materializing it as a million heap-allocated structs
 * costs more memory and time than the key table it feeds. So the snapshot is
 * written as a sequence of fields (each key packed on its own) and read back
 * field by field, unpacking one key at a time into a small reusable arena.
 * The result is byte-for-byte an ordinary Snapshot message.
 */
#ifndef GW_PBWIRE_H
#define GW_PBWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "buf.h"

enum { PBW_VARINT = 0, PBW_I64 = 1, PBW_LEN = 2, PBW_I32 = 5 };

/* ---- writing ---- */
int pbw_put_varint_field(buf_t *b, uint32_t field, uint64_t v);
/* Appends a string or bytes field. */
int pbw_put_bytes_field(buf_t *b, uint32_t field, const void *data, size_t len);
/* Appends m, packed, as length-delimited field number `field`. */
int pbw_put_message_field(buf_t *b, uint32_t field, const ProtobufCMessage *m);

/* ---- reading: a cursor over one message's top-level fields ---- */
typedef struct pbw_reader {
    const uint8_t *p, *end;
} pbw_reader;

typedef struct pbw_field {
    uint32_t       number;
    int            wire;        /* PBW_* */
    uint64_t       varint;      /* PBW_VARINT (and the raw bits of I64/I32) */
    const uint8_t *data;        /* PBW_LEN */
    size_t         len;
} pbw_field;

void pbw_reader_init(pbw_reader *r, const void *data, size_t len);
/* 1: a field was read into f; 0: clean end; -1: malformed (truncated,
 * overlong varint, bad wire type, field number 0, length past the end). */
int  pbw_next(pbw_reader *r, pbw_field *f);

/* ---- a bump allocator for protobuf-c unpacking ----
 * One key or team unpacks into it; reset between messages; free is a no-op.
 * A message needing more than the arena's size fails to unpack (a hostile
 * message cannot make us allocate without bound). */
typedef struct pbw_arena {
    ProtobufCAllocator alloc;   /* pass &arena->alloc to *_unpack */
    uint8_t *mem;
    size_t   cap, used;
} pbw_arena;

int  pbw_arena_init(pbw_arena *a, size_t cap);   /* 0 ok, -1 out of memory */
void pbw_arena_reset(pbw_arena *a);
void pbw_arena_free(pbw_arena *a);

#endif
