/* hnsw: recall against brute force, removal, expiry filters, bounded memory under churn. */
#include <math.h>
#include <stdlib.h>

#include "hnsw.h"
#include "test.h"

static uint64_t seed = 12345;
static double urand(void)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(seed >> 11) / 9007199254740992.0;
}

static void random_unit(float *v, uint32_t dim)
{
    for (uint32_t i = 0; i < dim; i++) {   /* Gaussian components: uniform on the sphere */
        double u1 = urand() + 1e-12, u2 = urand();
        v[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
    hnsw_normalize(v, dim);
}

static int64_t brute(const hnsw *h, const float *q, uint32_t n, const unsigned char *alive)
{
    int64_t best = -1;
    float bs = -2;
    for (uint32_t i = 0; i < n; i++) {
        if (alive && !alive[i]) continue;
        float s = hnsw_dot(q, hnsw_vector(h, i), hnsw_dim(h));
        if (s > bs) { bs = s; best = i; }
    }
    return best;
}

/* recall@1 on random vectors, queries random too (the hard case) and near stored ones (a paraphrase) */
static void test_recall(void)
{
    const uint32_t dim = 64, n = 5000, nq = 200;
    hnsw *h = hnsw_new(dim, 16, 100, 1);
    CHECK(h != NULL);
    float *v = malloc(dim * sizeof *v), *q = malloc(dim * sizeof *q);
    for (uint32_t i = 0; i < n; i++) { random_unit(v, dim); CHECK(hnsw_add(h, v) == (int64_t)i); }
    CHECK(hnsw_count(h) == n);
    uint32_t hit_rand = 0, hit_near = 0;
    for (uint32_t j = 0; j < nq; j++) {
        uint32_t id;
        float sim;
        random_unit(q, dim);
        if (hnsw_search(h, q, 1, 128, NULL, NULL, &id, &sim) == 1 && (int64_t)id == brute(h, q, n, NULL)) hit_rand++;
        uint32_t t = (uint32_t)(urand() * n);
        for (uint32_t i = 0; i < dim; i++) q[i] = hnsw_vector(h, t)[i] + (float)(urand() - 0.5) * 0.1f;
        hnsw_normalize(q, dim);
        if (hnsw_search(h, q, 1, 64, NULL, NULL, &id, &sim) == 1 && (int64_t)id == brute(h, q, n, NULL)) {
            hit_near++;
            CHECK(sim > 0.9f && sim <= 1.0001f);
        }
    }
    fprintf(stderr, "  recall@1 (ef 128, %u x %u-d): random queries %.3f, near a stored vector %.3f\n", n, dim,
            (double)hit_rand / nq, (double)hit_near / nq);
    CHECK(hit_rand >= nq * 95 / 100);
    CHECK(hit_near >= nq * 99 / 100);
    /* k results come best first */
    uint32_t ids[10];
    float sims[10];
    CHECK(hnsw_search(h, q, 10, 64, NULL, NULL, ids, sims) == 10);
    for (int i = 1; i < 10; i++) CHECK(sims[i - 1] >= sims[i]);
    free(v); free(q);
    hnsw_free(h);
}

/* removed vectors are never returned, their slots are reused, the rest stays findable */
static void test_remove(void)
{
    const uint32_t dim = 32, n = 2000;
    hnsw *h = hnsw_new(dim, 8, 64, 2);
    float *v = malloc(dim * sizeof *v), *q = malloc(dim * sizeof *q);
    unsigned char *alive = calloc(n, 1);
    for (uint32_t i = 0; i < n; i++) { random_unit(v, dim); hnsw_add(h, v); alive[i] = 1; }
    for (uint32_t i = 0; i < n; i += 2) { hnsw_remove(h, i); alive[i] = 0; }
    hnsw_remove(h, 0);            /* twice: ignored */
    hnsw_remove(h, n + 10);       /* never used: ignored */
    CHECK(hnsw_count(h) == n / 2);
    CHECK(!hnsw_in_use(h, 0) && hnsw_in_use(h, 1));
    int good = 0;
    for (int j = 0; j < 200; j++) {
        uint32_t id;
        float sim;
        random_unit(q, dim);
        if (hnsw_search(h, q, 1, 64, NULL, NULL, &id, &sim) != 1) continue;
        CHECK(alive[id]);
        if ((int64_t)id == brute(h, q, n, alive)) good++;
    }
    fprintf(stderr, "  recall@1 after removing half: %.3f\n", good / 200.0);
    CHECK(good >= 190);
    /* a removed vector itself is not found; the nearest live one is */
    uint32_t id;
    float sim;
    CHECK(hnsw_search(h, hnsw_vector(h, 1), 1, 32, NULL, NULL, &id, &sim) == 1 && id == 1 && sim > 0.999f);
    /* new vectors fill the freed slots before the index grows */
    size_t bytes = hnsw_bytes(h);
    random_unit(v, dim);
    int64_t nid = hnsw_add(h, v);
    CHECK(nid >= 0 && nid < (int64_t)n && nid % 2 == 0);
    CHECK(hnsw_search(h, v, 1, 32, NULL, NULL, &id, &sim) == 1 && (int64_t)id == nid);
    CHECK(hnsw_bytes(h) <= bytes + 4096);
    /* removing everything empties it; it works again afterwards */
    for (uint32_t i = 0; i < n; i++) hnsw_remove(h, i);
    CHECK(hnsw_count(h) == 0);
    CHECK(hnsw_search(h, v, 1, 32, NULL, NULL, &id, &sim) == 0);
    CHECK(hnsw_add(h, v) >= 0 && hnsw_search(h, v, 1, 32, NULL, NULL, &id, &sim) == 1);
    free(v); free(q); free(alive);
    hnsw_free(h);
}

/* expiry: the accept callback skips entries without cutting the walk */
static int not_expired(void *ud, uint32_t id) { return ((const unsigned *)ud)[id] > 100; }

static void test_expiry_filter(void)
{
    const uint32_t dim = 16, n = 500;
    hnsw *h = hnsw_new(dim, 8, 32, 3);
    float v[16];
    unsigned *exp = malloc(n * sizeof *exp);
    for (uint32_t i = 0; i < n; i++) { random_unit(v, dim); hnsw_add(h, v); exp[i] = i % 3 ? 200 : 50; }
    for (uint32_t j = 0; j < 100; j++) {
        uint32_t ids[5];
        float sims[5];
        uint32_t t = j * 3;   /* an expired one: its own vector must not come back */
        size_t k = hnsw_search(h, hnsw_vector(h, t), 5, 32, not_expired, exp, ids, sims);
        CHECK(k == 5);
        for (size_t i = 0; i < k; i++) CHECK(exp[ids[i]] > 100 && ids[i] != t);
    }
    free(exp);
    hnsw_free(h);
}

/* churn at a fixed size: memory does not grow, recall holds */
static void test_churn_bounded(void)
{
    const uint32_t dim = 32, n = 1000;
    hnsw *h = hnsw_new(dim, 12, 64, 4);
    float v[32], q[32];
    uint32_t *ring = malloc(n * sizeof *ring);
    for (uint32_t i = 0; i < n; i++) { random_unit(v, dim); ring[i] = (uint32_t)hnsw_add(h, v); }
    size_t bytes = 0;
    for (uint32_t r = 0; r < 5 * n; r++) {   /* oldest out, new in */
        hnsw_remove(h, ring[r % n]);
        random_unit(v, dim);
        int64_t id = hnsw_add(h, v);
        CHECK(id >= 0 && id < (int64_t)n);
        ring[r % n] = (uint32_t)id;
        if (r == n) bytes = hnsw_bytes(h);
    }
    CHECK(hnsw_count(h) == n);
    CHECK(hnsw_bytes(h) <= bytes + 16384);   /* scratch may round up once; slots do not grow */
    int good = 0;
    for (int j = 0; j < 200; j++) {
        uint32_t id;
        float sim;
        random_unit(q, dim);
        if (hnsw_search(h, q, 1, 64, NULL, NULL, &id, &sim) == 1 && (int64_t)id == brute(h, q, n, NULL)) good++;
    }
    fprintf(stderr, "  recall@1 after 5x churn: %.3f\n", good / 200.0);
    CHECK(good >= 190);
    free(ring);
    hnsw_free(h);
}

static void test_params(void)
{
    CHECK(hnsw_new(0, 16, 64, 1) == NULL);
    CHECK(hnsw_new(HNSW_MAX_DIM + 1, 16, 64, 1) == NULL);
    CHECK(hnsw_new(16, 2, 64, 1) == NULL);
    CHECK(hnsw_new(16, 16, 8, 1) == NULL);
    float z[4] = { 0, 0, 0, 0 }, nan4[4] = { NAN, 1, 0, 0 }, ok[4] = { 3, 4, 0, 0 };
    CHECK(hnsw_normalize(z, 4) < 0);
    CHECK(hnsw_normalize(nan4, 4) < 0);
    CHECK(hnsw_normalize(ok, 4) == 0 && fabsf(ok[0] - 0.6f) < 1e-6f && fabsf(ok[1] - 0.8f) < 1e-6f);
    hnsw *h = hnsw_new(4, 4, 8, 1);
    uint32_t id;
    float sim;
    CHECK(hnsw_search(h, ok, 1, 8, NULL, NULL, &id, &sim) == 0);   /* empty */
    hnsw_free(h);
    hnsw_free(NULL);
}

int main(void)
{
    RUN(test_params);
    RUN(test_recall);
    RUN(test_remove);
    RUN(test_expiry_filter);
    RUN(test_churn_bounded);
    TEST_MAIN_END();
}
