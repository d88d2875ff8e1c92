#include "respstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "log.h"

typedef struct rs_slot {
    uint64_t seq;                           /* 0: free; else insertion order */
    uint64_t hash;                          /* of id, for a cheap first compare */
    char     id[RESPSTORE_ID_MAX + 1];
    char     subject[RESPSTORE_SUBJECT_MAX + 1];
    size_t   off, len;                      /* bytes in the ring */
    int64_t  expires;                       /* CLOCK_REALTIME seconds */
} rs_slot;

typedef struct rs_shm {
    pthread_mutex_t mu;                     /* process-shared, robust: a dead worker does not wedge it */
    respstore_limits lim;
    size_t   ring_size;
    size_t   head;                          /* next write offset */
    uint64_t seq;
    size_t   nslots;
    rs_slot  slots[];                       /* then the ring */
} rs_shm;

static rs_shm *g_rs;

static char *ring(void) { return (char *)&g_rs->slots[g_rs->nslots]; }

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int respstore_init(const respstore_limits *lim)
{
    if (g_rs) return 0;
    if (lim->total_bytes < 4096 || lim->max_entry_bytes == 0 || lim->max_entry_bytes > lim->total_bytes) return -1;
    /* one slot per 2 KiB of ring: plenty for answers, a bounded linear scan */
    size_t nslots = lim->total_bytes / 2048;
    if (nslots < 64) nslots = 64;
    if (nslots > 65536) nslots = 65536;
    size_t size = sizeof(rs_shm) + nslots * sizeof(rs_slot) + lim->total_bytes;
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
    s->nslots = nslots;
    g_rs = s;
    return 0;
}

int respstore_enabled(void) { return g_rs != NULL; }

static int lock(void)
{
    int rc = pthread_mutex_lock(&g_rs->mu);
    if (rc == EOWNERDEAD) {   /* a worker died holding it: the table is consistent between statements, go on */
        pthread_mutex_consistent(&g_rs->mu);
        return 0;
    }
    return rc == 0 ? 0 : -1;
}

static void unlock(void) { pthread_mutex_unlock(&g_rs->mu); }

static int64_t now_s(void) { return (int64_t)time(NULL); }

static int valid_name(const char *s, size_t max) { size_t n = s ? strlen(s) : 0; return n > 0 && n <= max; }

/* The live slot for (subject, id), or NULL; expired ones are freed on the way. */
static rs_slot *find(const char *subject, const char *id)
{
    uint64_t h = fnv(id);
    int64_t now = now_s();
    for (size_t i = 0; i < g_rs->nslots; i++) {
        rs_slot *s = &g_rs->slots[i];
        if (!s->seq || s->hash != h || strcmp(s->id, id)) continue;
        if (s->expires <= now) { s->seq = 0; return NULL; }
        return strcmp(s->subject, subject) ? NULL : s;
    }
    return NULL;
}

int respstore_put(const char *subject, const char *id, const char *data, size_t len)
{
    if (!g_rs || !valid_name(subject, RESPSTORE_SUBJECT_MAX) || !valid_name(id, RESPSTORE_ID_MAX)) return -1;
    if (len == 0 || len > g_rs->lim.max_entry_bytes) return -1;
    if (lock() < 0) return -1;
    int64_t now = now_s();
    /* the key's oldest go first beyond max_per_key; a free or the oldest slot takes the entry */
    int mine = 0;
    rs_slot *oldest_mine = NULL, *slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < g_rs->nslots; i++) {
        rs_slot *s = &g_rs->slots[i];
        if (s->seq && s->expires <= now) s->seq = 0;
        if (!s->seq) { if (!slot) slot = s; continue; }
        if (!oldest || s->seq < oldest->seq) oldest = s;
        if (!strcmp(s->subject, subject)) {
            mine++;
            if (!oldest_mine || s->seq < oldest_mine->seq) oldest_mine = s;
        }
        if (!strcmp(s->id, id)) s->seq = 0;   /* ids are unique; a rewrite replaces */
    }
    if (mine >= g_rs->lim.max_per_key && oldest_mine) { oldest_mine->seq = 0; if (!slot) slot = oldest_mine; }
    if (!slot) { slot = oldest; slot->seq = 0; }
    /* the ring: wrap when the tail is too short, and drop whatever the new bytes overwrite */
    size_t off = g_rs->head;
    if (off + len > g_rs->ring_size) off = 0;
    for (size_t i = 0; i < g_rs->nslots; i++) {
        rs_slot *s = &g_rs->slots[i];
        if (s->seq && s->off < off + len && off < s->off + s->len) s->seq = 0;
    }
    memcpy(ring() + off, data, len);
    g_rs->head = off + len;
    slot->hash = fnv(id);
    strcpy(slot->id, id);
    strcpy(slot->subject, subject);
    slot->off = off;
    slot->len = len;
    slot->expires = now + g_rs->lim.ttl_s;
    slot->seq = ++g_rs->seq;
    unlock();
    return 0;
}

int respstore_get(const char *subject, const char *id, buf_t *out)
{
    if (!g_rs || !valid_name(subject, RESPSTORE_SUBJECT_MAX) || !valid_name(id, RESPSTORE_ID_MAX)) return 0;
    if (lock() < 0) return 0;
    rs_slot *s = find(subject, id);
    int rc = 0;
    if (s) rc = buf_append(out, ring() + s->off, s->len) < 0 ? -1 : 1;
    unlock();
    return rc;
}

int respstore_del(const char *subject, const char *id)
{
    if (!g_rs || !valid_name(subject, RESPSTORE_SUBJECT_MAX) || !valid_name(id, RESPSTORE_ID_MAX)) return 0;
    if (lock() < 0) return 0;
    rs_slot *s = find(subject, id);
    if (s) s->seq = 0;
    unlock();
    return s != NULL;
}

size_t respstore_count(void)
{
    if (!g_rs || lock() < 0) return 0;
    size_t n = 0;
    int64_t now = now_s();
    for (size_t i = 0; i < g_rs->nslots; i++) n += g_rs->slots[i].seq && g_rs->slots[i].expires > now;
    unlock();
    return n;
}
