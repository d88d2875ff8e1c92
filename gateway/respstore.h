/* respstore: stored Responses (/v1/responses with store: true) shared by
 * every worker of a node.
 *
 * The master maps one region before it forks (as metrics.c does), so a
 * follow-up request (GET, DELETE, previous_response_id) finds an answer
 * whichever worker served it. The region is a ring of bytes plus a table of
 * entries under one process-shared robust mutex: a new entry overwrites the
 * oldest bytes, and entries are bounded in size, in number per key and by a
 * TTL. Each entry belongs to a subject (auth_subject: the key); another key
 * never sees it. Entries are opaque bytes to the store.
 */
#ifndef GW_RESPSTORE_H
#define GW_RESPSTORE_H

#include <stddef.h>

#include "buf.h"

typedef struct respstore_limits {
    size_t total_bytes;      /* the ring */
    size_t max_entry_bytes;  /* larger entries are not stored */
    int    max_per_key;      /* a key's oldest entry goes first beyond this */
    long   ttl_s;            /* entries older than this are gone */
} respstore_limits;

#define RESPSTORE_ID_MAX      63
#define RESPSTORE_SUBJECT_MAX 63

/* Master, before fork. -1 when the region cannot be mapped (the store is then off). */
int  respstore_init(const respstore_limits *lim);
int  respstore_enabled(void);
/* 0 stored; -1 not (too large, store off, bad id). */
int  respstore_put(const char *subject, const char *id, const char *data, size_t len);
/* 1 found (copied into out), 0 not found, -1 out of memory. */
int  respstore_get(const char *subject, const char *id, buf_t *out);
/* 1 deleted, 0 not found. */
int  respstore_del(const char *subject, const char *id);
/* Live entries (tests, metrics). */
size_t respstore_count(void);

#endif
