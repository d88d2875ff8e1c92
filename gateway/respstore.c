/* The region: a header, the entry slots, the subjects (keys) with their
 * entries' count and oldest-to-newest list, hash heads by id and by
 * subject, a FIFO of entries in insertion order, then the ring of bytes.
 *
 * Entries are written one after another into the ring, so insertion order
 * is ring order: the oldest entry is the next one a write overwrites, and
 * the FIFO's front tells which. Lookups go through the id chains, a key's
 * count and oldest entry are its subject record's: every operation is O(1)
 * but for hash chains, nothing scans the table. Deleted entries leave stale
 * FIFO records that are skipped. */
#include "respstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "log.h"

typedef struct rs_slot {
    uint64_t seq;                           /* 0: free; else insertion number */
    uint64_t hash;                          /* of id */
    int32_t  id_next;                       /* id chain; free slots: the free list */
    int32_t  subj, older, newer;            /* its subject, and that subject's list */
    char     id[RESPSTORE_ID_MAX + 1];
    size_t   off, len;                      /* bytes in the ring */
    int64_t  expires;                       /* CLOCK_REALTIME seconds */
} rs_slot;

typedef struct rs_subj {
    uint64_t shash;
    int32_t  next;                          /* hash chain; free records: the free list */
    int32_t  count, oldest, newest;
    char     subject[RESPSTORE_SUBJECT_MAX + 1];
} rs_subj;

typedef struct rs_fifo { int32_t slot; uint64_t seq; } rs_fifo;

typedef struct rs_shm {
    pthread_mutex_t mu;                     /* process-shared, robust: a dead worker does not wedge it */
    respstore_limits lim;
    size_t   ring_size, head;               /* next write offset */
    uint64_t seq;
    uint32_t nslots, mask;                  /* buckets = mask + 1 */
    int32_t  free_head, subj_free;
    uint32_t fifo_front, fifo_n;            /* circular, nslots records */
    size_t   live;
} rs_shm;

static rs_shm  *g_rs;
static rs_slot *g_slots;
static rs_subj *g_subjs;
static int32_t *g_id_head, *g_subj_head;
static rs_fifo *g_fifo;
static char    *g_ring;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static void reset(void);

int respstore_init(const respstore_limits *lim)
{
    if (g_rs) return 0;
    if (lim->total_bytes < 4096 || lim->max_entry_bytes == 0 || lim->max_entry_bytes > lim->total_bytes ||
        lim->max_per_key < 1 || lim->ttl_s < 1) return -1;
    /* one slot per 2 KiB of ring (answers are rarely smaller), bounded */
    size_t nslots = lim->total_bytes / 2048;
    if (nslots < 64) nslots = 64;
    if (nslots > (1u << 20)) nslots = 1u << 20;
    uint32_t nb = 1;
    while (nb < nslots) nb <<= 1;
    size_t o_slots = align8(sizeof(rs_shm)), o_subjs = o_slots + align8(nslots * sizeof(rs_slot));
    size_t o_id = o_subjs + align8(nslots * sizeof(rs_subj));
    size_t o_subj = o_id + align8(nb * sizeof(int32_t)), o_fifo = o_subj + align8(nb * sizeof(int32_t));
    size_t o_ring = o_fifo + align8(nslots * sizeof(rs_fifo)), size = o_ring + lim->total_bytes;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);   /* committed as written */
    if (p == MAP_FAILED) { log_error("respstore: mmap of %zu bytes failed: %s", size, strerror(errno)); return -1; }
    rs_shm *s = p;
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0 || pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0 ||
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) != 0 || pthread_mutex_init(&s->mu, &a) != 0) {
        munmap(p, size);
        return -1;
    }
    pthread_mutexattr_destroy(&a);
    s->lim = *lim;
    s->ring_size = lim->total_bytes;
    s->nslots = (uint32_t)nslots;
    s->mask = nb - 1;
    g_slots = (rs_slot *)((char *)p + o_slots);
    g_subjs = (rs_subj *)((char *)p + o_subjs);
    g_id_head = (int32_t *)((char *)p + o_id);
    g_subj_head = (int32_t *)((char *)p + o_subj);
    g_fifo = (rs_fifo *)((char *)p + o_fifo);
    g_ring = (char *)p + o_ring;
    g_rs = s;
    reset();
    return 0;
}

int respstore_enabled(void) { return g_rs != NULL; }

/* Empty: every slot free, no chain, no FIFO record. */
static void reset(void)
{
    uint32_t nb = g_rs->mask + 1;
    for (uint32_t i = 0; i < nb; i++) g_id_head[i] = g_subj_head[i] = -1;
    for (uint32_t i = 0; i < g_rs->nslots; i++) {
        g_slots[i].seq = 0;
        g_slots[i].id_next = i + 1 < g_rs->nslots ? (int32_t)(i + 1) : -1;
        g_subjs[i].count = 0;
        g_subjs[i].next = i + 1 < g_rs->nslots ? (int32_t)(i + 1) : -1;
    }
    g_rs->free_head = g_rs->subj_free = 0;
    g_rs->fifo_front = g_rs->fifo_n = 0;
    g_rs->head = 0;
    g_rs->live = 0;
}

static int lock(void)
{
    int rc = pthread_mutex_lock(&g_rs->mu);
    if (rc == EOWNERDEAD) {
        /* a worker died holding it, maybe mid-update: the chains cannot be
         * trusted, so the store starts empty (stored answers are lost, never mixed up) */
        log_warn("respstore: a worker died inside the store; it starts empty");
        reset();
        pthread_mutex_consistent(&g_rs->mu);
        return 0;
    }
    return rc == 0 ? 0 : -1;
}

static void unlock(void) { pthread_mutex_unlock(&g_rs->mu); }

static int64_t now_s(void) { return (int64_t)time(NULL); }

static int valid_name(const char *s, size_t max) { size_t n = s ? strlen(s) : 0; return n > 0 && n <= max; }

static int32_t subj_find(uint64_t sh, const char *subject)
{
    for (int32_t k = g_subj_head[sh & g_rs->mask]; k >= 0; k = g_subjs[k].next)
        if (g_subjs[k].shash == sh && !strcmp(g_subjs[k].subject, subject)) return k;
    return -1;
}

/* The subject's record, made when it has none (a record is free whenever a slot is). */
static int32_t subj_get(uint64_t sh, const char *subject)
{
    int32_t k = subj_find(sh, subject);
    if (k >= 0 || (k = g_rs->subj_free) < 0) return k;
    rs_subj *r = &g_subjs[k];
    g_rs->subj_free = r->next;
    r->shash = sh;
    strcpy(r->subject, subject);
    r->count = 0;
    r->oldest = r->newest = -1;
    r->next = g_subj_head[sh & g_rs->mask];
    g_subj_head[sh & g_rs->mask] = k;
    return k;
}

/* Drops a live entry: out of its id chain and its subject's list, onto the free list. */
static void drop(int32_t i)
{
    rs_slot *s = &g_slots[i];
    for (int32_t *pp = &g_id_head[s->hash & g_rs->mask]; *pp >= 0; pp = &g_slots[*pp].id_next)
        if (*pp == i) { *pp = s->id_next; break; }
    rs_subj *r = &g_subjs[s->subj];
    if (s->older >= 0) g_slots[s->older].newer = s->newer; else r->oldest = s->newer;
    if (s->newer >= 0) g_slots[s->newer].older = s->older; else r->newest = s->older;
    if (--r->count == 0) {   /* the subject's last entry: its record goes too */
        for (int32_t *pp = &g_subj_head[r->shash & g_rs->mask]; *pp >= 0; pp = &g_subjs[*pp].next)
            if (*pp == s->subj) { *pp = r->next; break; }
        r->next = g_rs->subj_free;
        g_rs->subj_free = s->subj;
    }
    s->seq = 0;
    s->id_next = g_rs->free_head;
    g_rs->free_head = i;
    g_rs->live--;
}

/* The FIFO's oldest live entry (stale records popped), or -1. */
static int32_t fifo_oldest(void)
{
    while (g_rs->fifo_n) {
        rs_fifo *f = &g_fifo[g_rs->fifo_front];
        if (g_slots[f->slot].seq == f->seq) return f->slot;
        g_rs->fifo_front = (g_rs->fifo_front + 1) % g_rs->nslots;
        g_rs->fifo_n--;
    }
    return -1;
}

static int32_t find(const char *subject, const char *id)
{
    uint64_t h = fnv(id);
    for (int32_t i = g_id_head[h & g_rs->mask]; i >= 0; i = g_slots[i].id_next) {
        rs_slot *s = &g_slots[i];
        if (s->hash != h || strcmp(s->id, id)) continue;
        if (s->expires <= now_s()) { drop(i); return -1; }
        return strcmp(g_subjs[s->subj].subject, subject) ? -1 : i;
    }
    return -1;
}

int respstore_put(const char *subject, const char *id, const char *data, size_t len)
{
    if (!g_rs || !valid_name(subject, RESPSTORE_SUBJECT_MAX) || !valid_name(id, RESPSTORE_ID_MAX)) return -1;
    if (len == 0 || len > g_rs->lim.max_entry_bytes) return -1;
    if (lock() < 0) return -1;
    int64_t now = now_s();
    uint64_t h = fnv(id), sh = fnv(subject);
    /* expired entries are the oldest: they leave from the front */
    for (int32_t o; (o = fifo_oldest()) >= 0 && g_slots[o].expires <= now;) drop(o);
    int32_t old = find(subject, id);
    if (old >= 0) drop(old);   /* a rewrite replaces */
    /* the key keeps at most max_per_key: its oldest goes */
    int32_t k = subj_find(sh, subject);
    if (k >= 0 && g_subjs[k].count >= g_rs->lim.max_per_key) drop(g_subjs[k].oldest);
    /* the ring: when the tail is too short, what lies in it (the oldest) goes and the write wraps;
     * then whatever the new bytes overwrite goes, oldest first */
    size_t off = g_rs->head;
    if (off + len > g_rs->ring_size) {
        for (int32_t o; (o = fifo_oldest()) >= 0 && g_slots[o].off >= off;) drop(o);
        off = 0;
    }
    for (int32_t o; (o = fifo_oldest()) >= 0 && g_slots[o].off < off + len && off < g_slots[o].off + g_slots[o].len;)
        drop(o);
    for (;;) {   /* a free slot and a free FIFO record (stale records are popped on the way) */
        int32_t o = fifo_oldest();
        if ((g_rs->free_head >= 0 && g_rs->fifo_n < g_rs->nslots) || o < 0) break;
        drop(o);
    }
    if (g_rs->free_head < 0 || g_rs->fifo_n >= g_rs->nslots || (k = subj_get(sh, subject)) < 0) {
        unlock();   /* not reached: bounded above */
        return -1;
    }
    int32_t i = g_rs->free_head;
    rs_slot *s = &g_slots[i];
    rs_subj *r = &g_subjs[k];
    g_rs->free_head = s->id_next;
    memcpy(g_ring + off, data, len);
    g_rs->head = off + len;
    s->hash = h;
    strcpy(s->id, id);
    s->off = off;
    s->len = len;
    s->expires = now + g_rs->lim.ttl_s;
    s->seq = ++g_rs->seq;
    s->id_next = g_id_head[h & g_rs->mask];
    g_id_head[h & g_rs->mask] = i;
    s->subj = k;   /* the newest of its subject */
    s->older = r->newest;
    s->newer = -1;
    if (r->newest >= 0) g_slots[r->newest].newer = i; else r->oldest = i;
    r->newest = i;
    r->count++;
    g_fifo[(g_rs->fifo_front + g_rs->fifo_n) % g_rs->nslots] = (rs_fifo){ i, s->seq };
    g_rs->fifo_n++;
    g_rs->live++;
    unlock();
    return 0;
}

int respstore_get(const char *subject, const char *id, buf_t *out)
{
    if (!g_rs || !valid_name(subject, RESPSTORE_SUBJECT_MAX) || !valid_name(id, RESPSTORE_ID_MAX)) return 0;
    if (lock() < 0) return 0;
    int32_t i = find(subject, id);
    int rc = 0;
    if (i >= 0) rc = buf_append(out, g_ring + g_slots[i].off, g_slots[i].len) < 0 ? -1 : 1;
    unlock();
    return rc;
}

int respstore_del(const char *subject, const char *id)
{
    if (!g_rs || !valid_name(subject, RESPSTORE_SUBJECT_MAX) || !valid_name(id, RESPSTORE_ID_MAX)) return 0;
    if (lock() < 0) return 0;
    int32_t i = find(subject, id);
    if (i >= 0) drop(i);
    unlock();
    return i >= 0;
}

size_t respstore_count(void)
{
    if (!g_rs || lock() < 0) return 0;
    size_t n = g_rs->live;
    unlock();
    return n;
}
