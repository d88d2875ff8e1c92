/* hnsw: an approximate-nearest-neighbour index (Malkov & Yashunin's
 * hierarchical navigable small world graphs) over unit-length float vectors,
 * scored by cosine similarity (a dot product, since vectors are normalized).
 *
 * Ids are slots: a removed vector's slot is reused by a later add. Removal
 * unlinks the node and patches each neighbour that pointed to it with one of
 * the removed node's own neighbours, so the graph stays navigable under
 * churn without rebuilds. One index belongs to one thread (search uses
 * scratch space inside it).
 */
#ifndef GW_HNSW_H
#define GW_HNSW_H

#include <stddef.h>
#include <stdint.h>

typedef struct hnsw hnsw;

#define HNSW_MAX_DIM 4096

/* M: links per node above level 0 (2*M at level 0), 4..64; ef_construction
 * >= M. NULL on bad parameters or out of memory. */
hnsw  *hnsw_new(uint32_t dim, uint32_t M, uint32_t ef_construction, uint64_t seed);
void   hnsw_free(hnsw *h);

/* Copies v (dim floats, unit length: see hnsw_normalize). The new id, or -1
 * (out of memory). */
int64_t hnsw_add(hnsw *h, const float *v);
/* Removes id (ignored if it is not in use); its slot is reused later. */
void   hnsw_remove(hnsw *h, uint32_t id);
int    hnsw_in_use(const hnsw *h, uint32_t id);

/* Called for each candidate result: 0 skips it (expired, say) but the search
 * still walks through it. NULL accepts all. */
typedef int (*hnsw_accept_fn)(void *ud, uint32_t id);
/* The k best (highest similarity first) found with a beam of ef (>= k);
 * returns how many were written. */
size_t hnsw_search(hnsw *h, const float *q, size_t k, size_t ef, hnsw_accept_fn ok, void *ud,
                   uint32_t *ids, float *sims);

size_t       hnsw_count(const hnsw *h);   /* vectors in the index */
uint64_t     hnsw_distances(const hnsw *h);   /* vectors compared so far by searches (a cost that does not
                                                 depend on the machine's load) */
size_t       hnsw_bytes(const hnsw *h);   /* memory it holds, all included */
uint32_t     hnsw_dim(const hnsw *h);
const float *hnsw_vector(const hnsw *h, uint32_t id);

float hnsw_dot(const float *a, const float *b, uint32_t dim);
/* Scales v to unit length; -1 if it is zero or not finite. */
int   hnsw_normalize(float *v, uint32_t dim);

#endif
