/* hnsw: hierarchical navigable small world index, cosine on unit vectors (hnsw.h). */
#include "hnsw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LEVEL 15

typedef struct { float d; uint32_t id; } hitem;   /* d: 1 - cosine, lower is nearer */

struct hnsw {
    uint32_t  dim, M, M0, efc;
    uint32_t  cap, hi, count;   /* slots allocated, slots ever used, vectors in use */
    int       max_level;
    int64_t   entry;            /* -1: empty */
    double    mult;
    uint64_t  rng;
    float    *vec;              /* cap * dim */
    uint32_t *l0;               /* cap * (M0 + 1): count, then ids */
    uint32_t **up;              /* levels 1..level[i], each M + 1 */
    uint8_t  *level, *used;
    uint32_t *freel, nfree;
    uint32_t *seen, epoch;      /* visited marks for one search */
    hitem    *cand, *res, *tmp; /* scratch */
    size_t    cand_cap, res_cap, tmp_cap;
    size_t    up_bytes;
    uint64_t  ndist;            /* distances computed so far (benchmarks) */
};

/* ---- vectors ---- */

float hnsw_dot(const float *a, const float *b, uint32_t dim)
{
    /* four partial sums: the compiler vectorizes this without -ffast-math */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    uint32_t i = 0;
    for (; i + 4 <= dim; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < dim; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

int hnsw_normalize(float *v, uint32_t dim)
{
    double s = 0;
    for (uint32_t i = 0; i < dim; i++) s += (double)v[i] * v[i];
    if (!(s > 0) || !isfinite(s)) return -1;
    float inv = (float)(1.0 / sqrt(s));
    for (uint32_t i = 0; i < dim; i++) v[i] *= inv;
    return 0;
}

static const float *V(const hnsw *h, uint32_t id) { return h->vec + (size_t)id * h->dim; }
static float dist(const hnsw *h, const float *q, uint32_t id)
{
    ((hnsw *)h)->ndist++;
    return 1.0f - hnsw_dot(q, V(h, id), h->dim);
}

static uint32_t *links(const hnsw *h, uint32_t id, int l)
{
    return l == 0 ? h->l0 + (size_t)id * (h->M0 + 1) : h->up[id] + (size_t)(l - 1) * (h->M + 1);
}

/* ---- binary min-heap on d (results keep -d: their top is the farthest) ---- */

static void heap_push(hitem *a, size_t *n, hitem x)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (a[p].d <= x.d) break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

static hitem heap_pop(hitem *a, size_t *n)
{
    hitem top = a[0], x = a[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && a[c + 1].d < a[c].d) c++;
        if (x.d <= a[c].d) break;
        a[i] = a[c];
        i = c;
    }
    if (*n) a[i] = x;
    return top;
}

static int reserve(hitem **a, size_t *cap, size_t want)
{
    if (want <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < want) n *= 2;
    hitem *p = realloc(*a, n * sizeof *p);
    if (!p) return -1;
    *a = p;
    *cap = n;
    return 0;
}

/* ---- construction ---- */

hnsw *hnsw_new(uint32_t dim, uint32_t M, uint32_t ef_construction, uint64_t seed)
{
    if (dim == 0 || dim > HNSW_MAX_DIM || M < 4 || M > 64 || ef_construction < M || ef_construction > 4096) return NULL;
    hnsw *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->dim = dim;
    h->M = M;
    h->M0 = 2 * M;
    h->efc = ef_construction;
    h->entry = -1;
    h->max_level = -1;
    h->mult = 1.0 / log((double)M);
    h->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    return h;
}

void hnsw_free(hnsw *h)
{
    if (!h) return;
    for (uint32_t i = 0; i < h->hi; i++) free(h->up[i]);
    free(h->vec); free(h->l0); free(h->up); free(h->level); free(h->used);
    free(h->freel); free(h->seen); free(h->cand); free(h->res); free(h->tmp);
    free(h);
}

#define GROW(field, n) do { \
        void *p_ = realloc(h->field, (size_t)(n) * sizeof *h->field); \
        if (!p_) return -1; \
        h->field = p_; \
    } while (0)

static int grow(hnsw *h)
{
    uint32_t n = h->cap ? h->cap * 2 : 64;
    if (n < h->cap) return -1;
    GROW(vec, (size_t)n * h->dim);
    GROW(l0, (size_t)n * (h->M0 + 1));
    GROW(up, n);
    GROW(level, n);
    GROW(used, n);
    GROW(freel, n);
    GROW(seen, n);
    memset(h->seen + h->cap, 0, (size_t)(n - h->cap) * sizeof *h->seen);
    h->cap = n;
    return 0;
}

static uint64_t rnd(hnsw *h)   /* xorshift64* */
{
    h->rng ^= h->rng >> 12; h->rng ^= h->rng << 25; h->rng ^= h->rng >> 27;
    return h->rng * 0x2545f4914f6cdd1dull;
}

static int random_level(hnsw *h)
{
    double u = ((double)(rnd(h) >> 11) + 1.0) / 9007199254740993.0;   /* (0, 1] */
    int l = (int)(-log(u) * h->mult);
    return l > MAX_LEVEL ? MAX_LEVEL : l;
}

static void new_epoch(hnsw *h)
{
    if (++h->epoch == 0) {   /* wrapped: old marks could collide */
        memset(h->seen, 0, (size_t)h->cap * sizeof *h->seen);
        h->epoch = 1;
    }
}

/* A link may point at a slot reused since (or freed): only follow it when the
 * node exists at that level. */
static int live_at(const hnsw *h, uint32_t n, int l) { return n < h->hi && h->used[n] && h->level[n] >= l; }

static uint32_t greedy(const hnsw *h, const float *q, uint32_t cur, float *cur_d, int l)
{
    for (int changed = 1; changed;) {
        changed = 0;
        const uint32_t *ls = links(h, cur, l);
        for (uint32_t i = 1; i <= ls[0]; i++) {
            uint32_t n = ls[i];
            if (!live_at(h, n, l)) continue;
            float d = dist(h, q, n);
            if (d < *cur_d) { *cur_d = d; cur = n; changed = 1; }
        }
    }
    return cur;
}

/* Beam search on one level; the results end up in h->res (a heap on -d).
 * Returns how many, or -1 out of memory. */
static long search_layer(hnsw *h, const float *q, uint32_t ep, float ep_d, size_t ef, int l,
                         hnsw_accept_fn ok, void *ud)
{
    size_t nc = 0, nr = 0;
    if (reserve(&h->res, &h->res_cap, ef + 1) < 0 || reserve(&h->cand, &h->cand_cap, ef + 1) < 0) return -1;
    new_epoch(h);
    h->seen[ep] = h->epoch;
    heap_push(h->cand, &nc, (hitem){ ep_d, ep });
    if (!ok || ok(ud, ep)) heap_push(h->res, &nr, (hitem){ -ep_d, ep });
    while (nc) {
        hitem c = heap_pop(h->cand, &nc);
        if (nr >= ef && c.d > -h->res[0].d) break;
        const uint32_t *ls = links(h, c.id, l);
        for (uint32_t i = 1; i <= ls[0]; i++) {
            uint32_t n = ls[i];
            if (!live_at(h, n, l) || h->seen[n] == h->epoch) continue;
            h->seen[n] = h->epoch;
            float d = dist(h, q, n);
            if (nr < ef || d < -h->res[0].d) {
                if (reserve(&h->cand, &h->cand_cap, nc + 1) < 0) return -1;
                heap_push(h->cand, &nc, (hitem){ d, n });
                if (!ok || ok(ud, n)) {
                    heap_push(h->res, &nr, (hitem){ -d, n });
                    if (nr > ef) heap_pop(h->res, &nr);
                }
            }
        }
    }
    return (long)nr;
}

/* h->res (nr items) into out, nearest first. */
static void drain_sorted(hnsw *h, size_t nr, hitem *out)
{
    while (nr) {
        hitem x = heap_pop(h->res, &nr);
        out[nr] = (hitem){ -x.d, x.id };
    }
}

/* The neighbour-selection heuristic: a candidate (sorted nearest first) is
 * kept only if it is nearer to the base than to every one kept so far, so
 * links spread in different directions instead of all into one cluster. */
static uint32_t select_neighbors(const hnsw *h, const hitem *c, size_t n, uint32_t max, uint32_t *out)
{
    uint32_t kept = 0;
    for (size_t i = 0; i < n && kept < max; i++) {
        int good = 1;
        const float *cv = V(h, c[i].id);
        for (uint32_t j = 0; j < kept && good; j++)
            if (1.0f - hnsw_dot(cv, V(h, out[j]), h->dim) < c[i].d) good = 0;
        if (good) out[kept++] = c[i].id;
    }
    return kept;
}

static int cmp_hitem(const void *a, const void *b)
{
    float x = ((const hitem *)a)->d, y = ((const hitem *)b)->d;
    return (x > y) - (x < y);
}

/* Adds a link s -> x at level l; a full list is pruned with the heuristic. */
static int link_to(hnsw *h, uint32_t s, uint32_t x, int l)
{
    uint32_t max = l ? h->M : h->M0;
    uint32_t *ls = links(h, s, l);
    for (uint32_t i = 1; i <= ls[0]; i++) if (ls[i] == x) return 0;
    if (ls[0] < max) { ls[++ls[0]] = x; return 0; }
    if (reserve(&h->tmp, &h->tmp_cap, max + 1) < 0) return -1;
    const float *sv = V(h, s);
    size_t n = 0;
    for (uint32_t i = 1; i <= ls[0]; i++)
        if (live_at(h, ls[i], l)) h->tmp[n++] = (hitem){ 1.0f - hnsw_dot(sv, V(h, ls[i]), h->dim), ls[i] };
    h->tmp[n++] = (hitem){ 1.0f - hnsw_dot(sv, V(h, x), h->dim), x };
    qsort(h->tmp, n, sizeof *h->tmp, cmp_hitem);
    uint32_t out[129];
    ls[0] = select_neighbors(h, h->tmp, n, max, out);
    memcpy(ls + 1, out, ls[0] * sizeof *out);
    return 0;
}

int64_t hnsw_add(hnsw *h, const float *v)
{
    uint32_t x;
    if (h->nfree) x = h->freel[--h->nfree];
    else {
        if (h->hi == h->cap && grow(h) < 0) return -1;
        x = h->hi;
    }
    int L = random_level(h);
    uint32_t *upl = NULL;
    if (L > 0) {
        size_t n = (size_t)L * (h->M + 1) * sizeof(uint32_t);
        if (!(upl = malloc(n))) { if (x < h->hi) h->freel[h->nfree++] = x; return -1; }
        h->up_bytes += n;
    }
    if (x == h->hi) h->hi++;
    memcpy(h->vec + (size_t)x * h->dim, v, h->dim * sizeof(float));
    h->up[x] = upl;
    h->level[x] = (uint8_t)L;
    for (int l = 0; l <= L; l++) links(h, x, l)[0] = 0;
    h->count++;
    if (h->entry < 0) {
        h->used[x] = 1;
        h->entry = x;
        h->max_level = L;
        return x;
    }
    uint32_t cur = (uint32_t)h->entry;
    float cur_d = dist(h, v, cur);
    for (int l = h->max_level; l > L; l--) cur = greedy(h, v, cur, &cur_d, l);
    for (int l = L < h->max_level ? L : h->max_level; l >= 0; l--) {
        long nr = search_layer(h, v, cur, cur_d, h->efc, l, NULL, NULL);
        if (nr < 0) goto oom;
        hitem *w = malloc((size_t)nr * sizeof *w);
        if (!w) goto oom;
        drain_sorted(h, (size_t)nr, w);
        uint32_t sel[129];
        uint32_t ns = select_neighbors(h, w, (size_t)nr, h->M, sel);
        uint32_t *lx = links(h, x, l);
        lx[0] = ns;
        memcpy(lx + 1, sel, ns * sizeof *sel);
        cur = w[0].id;
        cur_d = w[0].d;
        free(w);
        h->used[x] = 1;   /* reachable from here on */
        for (uint32_t i = 0; i < ns; i++)
            if (link_to(h, sel[i], x, l) < 0) goto oom;
    }
    h->used[x] = 1;
    if (L > h->max_level) { h->max_level = L; h->entry = x; }
    return x;
oom:
    /* whatever got linked is undone by a removal */
    h->used[x] = 1;
    hnsw_remove(h, x);
    return -1;
}

int hnsw_in_use(const hnsw *h, uint32_t id) { return id < h->hi && h->used[id]; }

void hnsw_remove(hnsw *h, uint32_t x)
{
    if (!hnsw_in_use(h, x)) return;
    h->used[x] = 0;
    for (int l = 0; l <= h->level[x]; l++) {
        const uint32_t *lx = links(h, x, l);
        for (uint32_t i = 1; i <= lx[0]; i++) {
            uint32_t n = lx[i];
            if (!live_at(h, n, l)) continue;
            uint32_t *ln = links(h, n, l);
            uint32_t j = 1;
            while (j <= ln[0] && ln[j] != x) j++;
            if (j > ln[0]) continue;
            ln[j] = ln[ln[0]--];
            /* patch the hole with the removed node's neighbour nearest to n */
            const float *nv = V(h, n);
            float best_d = 3;
            int64_t best = -1;
            for (uint32_t k = 1; k <= lx[0]; k++) {
                uint32_t m = lx[k];
                if (m == n || !live_at(h, m, l)) continue;
                uint32_t t = 1;
                while (t <= ln[0] && ln[t] != m) t++;
                if (t <= ln[0]) continue;
                float d = 1.0f - hnsw_dot(nv, V(h, m), h->dim);
                if (d < best_d) { best_d = d; best = m; }
            }
            if (best >= 0) ln[++ln[0]] = (uint32_t)best;
        }
    }
    if (h->entry == (int64_t)x) {   /* the top node went: the highest remaining takes over */
        h->entry = -1;
        h->max_level = -1;
        for (uint32_t i = 0; i < h->hi; i++)
            if (h->used[i] && (int)h->level[i] > h->max_level) { h->max_level = h->level[i]; h->entry = i; }
    }
    if (h->up[x]) { h->up_bytes -= (size_t)h->level[x] * (h->M + 1) * sizeof(uint32_t); free(h->up[x]); h->up[x] = NULL; }
    h->level[x] = 0;
    links(h, x, 0)[0] = 0;
    h->freel[h->nfree++] = x;
    h->count--;
}

size_t hnsw_search(hnsw *h, const float *q, size_t k, size_t ef, hnsw_accept_fn ok, void *ud, uint32_t *ids, float *sims)
{
    if (h->entry < 0 || k == 0) return 0;
    if (ef < k) ef = k;
    uint32_t cur = (uint32_t)h->entry;
    float cur_d = dist(h, q, cur);
    for (int l = h->max_level; l > 0; l--) cur = greedy(h, q, cur, &cur_d, l);
    long nr = search_layer(h, q, cur, cur_d, ef, 0, ok, ud);
    if (nr <= 0) return 0;
    if (reserve(&h->tmp, &h->tmp_cap, (size_t)nr) < 0) return 0;
    drain_sorted(h, (size_t)nr, h->tmp);
    size_t n = (size_t)nr < k ? (size_t)nr : k;
    for (size_t i = 0; i < n; i++) { ids[i] = h->tmp[i].id; sims[i] = 1.0f - h->tmp[i].d; }
    return n;
}

size_t hnsw_count(const hnsw *h) { return h->count; }
uint64_t hnsw_distances(const hnsw *h) { return h->ndist; }
uint32_t hnsw_dim(const hnsw *h) { return h->dim; }
const float *hnsw_vector(const hnsw *h, uint32_t id) { return V(h, id); }

size_t hnsw_bytes(const hnsw *h)
{
    size_t per = (size_t)h->dim * sizeof(float) + (h->M0 + 1) * sizeof(uint32_t) + sizeof(uint32_t *) + 2 +
                 2 * sizeof(uint32_t);
    return sizeof *h + (size_t)h->cap * per + h->up_bytes +
           (h->cand_cap + h->res_cap + h->tmp_cap) * sizeof(hitem);
}
