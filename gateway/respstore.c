/* The region: a header, the entry slots, two hash heads (by id, by subject),
 * a FIFO of entries in insertion order, then the ring of bytes.
 *
 * Entries are written one after another into the ring, so insertion order
 * is ring order: the oldest entry is the next one a write overwrites, and
 * the FIFO's front tells which. Lookups go through the id chains, a key's
 * count and its oldest entry through the subject chains; nothing scans the
 * whole table. Deleted entries leave stale FIFO records that are skipped. */
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
    uint64_t hash, shash;                   /* of id, of subject */
    int32_t  id_next, subj_next;            /* chains; free slots: id_next is the free list */
    char     id[RESPSTORE_ID_MAX + 1];
    char     subject[RESPSTORE_SUBJECT_MAX + 1];
    size_t   off, len;                      /* bytes in the ring */
    int64_t  expires;                       /* CLOCK_REALTIME seconds */
} rs_slot;

typedef struct rs_fifo { int32_t slot; uint64_t seq; } rs_fifo;

typedef struct rs_shm {
    pthread_mutex_t mu;                     /* process-shared, robust: a dead worker does not wedge it */
    respstore_limits lim;
    size_t   ring_size, head;               /* next write offset */
    uint64_t seq;
    uint32_t nslots, mask;                  /* buckets = mask + 1 */
    int32_t  free_head;
    uint32_t fifo_front, fifo_n;            /* circular, nslots records */
    size_t   live;
} rs_shm;

static rs_shm  *g_rs;
static rs_slot *g_slots;
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
    size_t o_slots = align8(sizeof(rs_shm)), o_id = o_slots + align8(nslots * sizeof(rs_slot));
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
    }
    g_rs->free_head = 0;
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

static void unlink_from(int32_t *head, int32_t i, int by_id)
{
    for (int32_t *pp = head; *pp >= 0; pp = by_id ? &g_slots[*pp].id_next : &g_slots[*pp].subj_next)
        if (*pp == i) { *pp = by_id ? g_slots[i].id_next : g_slots[i].subj_next; return; }
}

/* Drops a live entry: out of both chains, onto the free list. */
static void drop(int32_t i)
{
    rs_slot *s = &g_slots[i];
    unlink_from(&g_id_head[s->hash & g_rs->mask], i, 1);
    unlink_from(&g_subj_head[s->shash & g_rs->mask], i, 0);
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
        return strcmp(s->subject, subject) ? -1 : i;
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
    /* the key keeps at most max_per_key: its oldest goes (the chain's last of its own) */
    int mine = 0;
    int32_t oldest_mine = -1;
    for (int32_t i = g_subj_head[sh & g_rs->mask]; i >= 0; i = g_slots[i].subj_next)
        if (g_slots[i].shash == sh && !strcmp(g_slots[i].subject, subject)) { mine++; oldest_mine = i; }
    if (mine >= g_rs->lim.max_per_key && oldest_mine >= 0) drop(oldest_mine);
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
    if (g_rs->free_head < 0 || g_rs->fifo_n >= g_rs->nslots) { unlock(); return -1; }   /* not reached: bounded above */
    int32_t i = g_rs->free_head;
    rs_slot *s = &g_slots[i];
    g_rs->free_head = s->id_next;
    memcpy(g_ring + off, data, len);
    g_rs->head = off + len;
    s->hash = h;
    s->shash = sh;
    strcpy(s->id, id);
    strcpy(s->subject, subject);
    s->off = off;
    s->len = len;
    s->expires = now + g_rs->lim.ttl_s;
    s->seq = ++g_rs->seq;
    s->id_next = g_id_head[h & g_rs->mask];
    g_id_head[h & g_rs->mask] = i;
    s->subj_next = g_subj_head[sh & g_rs->mask];
    g_subj_head[sh & g_rs->mask] = i;
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
