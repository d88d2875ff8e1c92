#include "pbwire.h"

#include <stdlib.h>
#include <string.h>

static int put_varint(buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) tmp[n] |= 0x80;
        n++;
    } while (v);
    return buf_append(b, tmp, n);
}

int pbw_put_varint_field(buf_t *b, uint32_t field, uint64_t v)
{
    if (put_varint(b, (uint64_t)field << 3 | PBW_VARINT) < 0) return -1;
    return put_varint(b, v);
}

int pbw_put_bytes_field(buf_t *b, uint32_t field, const void *data, size_t len)
{
    if (put_varint(b, (uint64_t)field << 3 | PBW_LEN) < 0 || put_varint(b, len) < 0) return -1;
    return buf_append(b, data, len);
}

int pbw_put_message_field(buf_t *b, uint32_t field, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (put_varint(b, (uint64_t)field << 3 | PBW_LEN) < 0 || put_varint(b, n) < 0 || buf_reserve(b, n) < 0)
        return -1;
    size_t got = protobuf_c_message_pack(m, (uint8_t *)b->data + b->len);
    if (got != n) return -1;
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void pbw_reader_init(pbw_reader *r, const void *data, size_t len)
{
    r->p = data;
    r->end = r->p + len;
}

static int get_varint(pbw_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) { *out = v; return 0; }
    }
    return -1;  /* more than 10 bytes */
}

int pbw_next(pbw_reader *r, pbw_field *f)
{
    if (r->p == r->end) return 0;
    uint64_t tag;
    if (get_varint(r, &tag) < 0) return -1;
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
    f->number = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    f->data = NULL;
    f->len = 0;
    f->varint = 0;
    switch (f->wire) {
    case PBW_VARINT:
        return get_varint(r, &f->varint) < 0 ? -1 : 1;
    case PBW_I64:
    case PBW_I32: {
        size_t n = f->wire == PBW_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n) return -1;
        for (size_t i = 0; i < n; i++) f->varint |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 1;
    }
    case PBW_LEN: {
        uint64_t n;
        if (get_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return -1;
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return 1;
    }
    default:
        return -1;  /* groups (3, 4) are not used by proto3 */
    }
}

static void *arena_alloc(void *ud, size_t n)
{
    pbw_arena *a = ud;
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n || need > a->cap - a->used) return NULL;
    void *p = a->mem + a->used;
    a->used += need;
    return p;
}

static void arena_free(void *ud, void *p)
{
    (void)ud; (void)p;   /* everything goes at reset */
}

int pbw_arena_init(pbw_arena *a, size_t cap)
{
    memset(a, 0, sizeof *a);
    if (!(a->mem = malloc(cap))) return -1;
    a->cap = cap;
    a->alloc.alloc = arena_alloc;
    a->alloc.free = arena_free;
    a->alloc.allocator_data = a;
    return 0;
}

void pbw_arena_reset(pbw_arena *a) { a->used = 0; }

void pbw_arena_free(pbw_arena *a)
{
    free(a->mem);
    memset(a, 0, sizeof *a);
}
