/* semcache_bench: the semantic cache's index measured on its own.
 *
 *   build/bench/semcache_bench [entries] [dim] [M] [ef_construction] [ef] [queries] [data]
 *   (defaults 10000 256 16 100 128 1000 clustered)
 *
 * data: "clustered" (topics: 1 centre per 100 entries, each entry at cosine
 * ~0.7 from its centre, as sentence embeddings group by subject) or "random"
 * (uniform on the sphere: no structure at all, the index's worst case).
 *
 * Prints build time, memory (the index's own count and the process RSS
 * growth), search time per query (queries near a stored vector, as a
 * paraphrase would be, and unrelated ones), recall@1 against brute force on
 * a sample, and the whole semantic-cache lookup (partition, search, entry
 * decode) through semcache_get, plus the prompt canonicalisation and
 * partition key of a ~1 KB request. Not run by make test (a small size is,
 * as a check: see tests/bench/semcache_bench.sh).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "hnsw.h"
#include "json.h"
#include "providers/provider.h"
#include "semcache.h"
#include "semprompt.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void random_unit(float *v, uint32_t dim)
{
    for (uint32_t i = 0; i < dim; i++) {
        double u1 = urand() + 1e-12, u2 = urand();
        v[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
    hnsw_normalize(v, dim);
}

static float *centres;
static uint32_t ncentres;

/* one stored prompt's vector under the chosen data model */
static void sample(float *v, uint32_t dim)
{
    random_unit(v, dim);
    if (!centres) return;
    const float *c = centres + (size_t)(urand() * ncentres) * dim;
    for (uint32_t i = 0; i < dim; i++) v[i] = c[i] + 1.0f * v[i];
    hnsw_normalize(v, dim);
}

static void near_of(const float *v, uint32_t dim, float eps, float *out)
{
    random_unit(out, dim);
    for (uint32_t i = 0; i < dim; i++) out[i] = v[i] + eps * out[i];
    hnsw_normalize(out, dim);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double rss_mb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return (double)rss * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static long arg(int argc, char **argv, int i, long def) { return argc > i ? atol(argv[i]) : def; }

int main(int argc, char **argv)
{
    uint32_t n = (uint32_t)arg(argc, argv, 1, 10000), dim = (uint32_t)arg(argc, argv, 2, 256);
    uint32_t M = (uint32_t)arg(argc, argv, 3, 16), efc = (uint32_t)arg(argc, argv, 4, 100);
    size_t ef = (size_t)arg(argc, argv, 5, 128), nq = (size_t)arg(argc, argv, 6, 1000);
    int clustered = argc <= 7 || strcmp(argv[7], "random") != 0;
    if (n < 10 || dim < 2 || nq < 10) { fprintf(stderr, "bad arguments\n"); return 2; }
    float *v = malloc((size_t)dim * sizeof *v), *q = malloc((size_t)dim * sizeof *q);
    hnsw *h = hnsw_new(dim, M, efc, 1);
    if (!v || !q || !h) { fprintf(stderr, "out of memory\n"); return 1; }

    if (clustered) {
        ncentres = n / 100 + 1;
        if (!(centres = malloc((size_t)ncentres * dim * sizeof *centres))) return 1;
        for (uint32_t c = 0; c < ncentres; c++) random_unit(centres + (size_t)c * dim, dim);
    }
    double rss0 = rss_mb(), t0 = now_s();
    for (uint32_t i = 0; i < n; i++) {
        sample(v, dim);
        if (hnsw_add(h, v) < 0) { fprintf(stderr, "out of memory at %u\n", i); return 1; }
    }
    double build = now_s() - t0;
    printf("entries %u  dim %u  M %u  ef_construction %u  ef %zu  data %s\n", n, dim, M, efc, ef,
           clustered ? "clustered" : "random");
    printf("build        %.2f s (%.1f us per insert)\n", build, build * 1e6 / n);
    printf("memory       index %.1f MB (%.0f bytes per entry), RSS growth %.1f MB\n",
           (double)hnsw_bytes(h) / 1048576.0, (double)hnsw_bytes(h) / n, rss_mb() - rss0);

    /* search cost and recall@1 against brute force, for a few beam widths:
     * near a stored vector (a paraphrase) and unrelated (another sample) */
    size_t sample_n = nq < 200 ? nq : 200;
    float *qs = malloc(sample_n * 2 * (size_t)dim * sizeof *qs);
    uint32_t *truth = malloc(sample_n * 2 * sizeof *truth);
    if (!qs || !truth) return 1;
    for (size_t j = 0; j < sample_n * 2; j++) {
        float *x = qs + j * dim;
        if (j % 2 == 0) near_of(hnsw_vector(h, (uint32_t)(urand() * n)), dim, 0.3f, x);
        else sample(x, dim);
        float bs = -2;
        for (uint32_t i = 0; i < n; i++) {
            float sv = hnsw_dot(x, hnsw_vector(h, i), dim);
            if (sv > bs) { bs = sv; truth[j] = i; }
        }
    }
    size_t efs[] = { 16, 32, 64, 128, 256 };
    for (size_t k = 0; k < sizeof efs / sizeof efs[0]; k++) {
        double t[2] = { 0, 0 };
        size_t ok[2] = { 0, 0 };
        uint64_t dd[2] = { 0, 0 };
        for (size_t r = 0; r < nq; r++) {
            size_t j = (r * 2) % (sample_n * 2);
            for (int kind = 0; kind < 2; kind++) {
                uint32_t id;
                float sim;
                uint64_t d0 = hnsw_distances(h);
                double a = now_s();
                hnsw_search(h, qs + (j + kind) * dim, 1, efs[k], NULL, NULL, &id, &sim);
                t[kind] += now_s() - a;
                dd[kind] += hnsw_distances(h) - d0;
                if (r < sample_n) ok[kind] += id == truth[j + kind];
            }
        }
        printf("search ef %-3zu near: %7.1f us %6.0f vectors compared recall@1 %.3f | unrelated: %7.1f us %6.0f compared "
               "recall@1 %.3f%s\n", efs[k], t[0] * 1e6 / nq, (double)dd[0] / nq, (double)ok[0] / sample_n,
               t[1] * 1e6 / nq, (double)dd[1] / nq, (double)ok[1] / sample_n, efs[k] == ef ? "  (chosen)" : "");
    }
    free(qs); free(truth);

    /* the semantic cache's whole lookup, without Redis: one partition of n entries */
    struct event_base *base = event_base_new();
    size_t cap = (size_t)n + 16;
    semcache *s = semcache_new(base, NULL, cap, (size_t)-1 / 2, (int)M, (int)ef);
    uint8_t part[32] = { 1 };
    char body[600];
    memset(body, 'a', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    cache_entry e = { .content_type = "application/json", .provider = "mock", .upstream_model = "m", .body = body,
                      .len = sizeof body - 1 };
    size_t fill = n < 100000 ? n : 100000;   /* the partition's size for the lookup (bigger: use the index numbers) */
    rng = 88172645463325252ull;
    t0 = now_s();
    for (size_t i = 0; i < fill; i++) { sample(v, dim); semcache_put(s, part, v, dim, 3600, &e); }
    double put = now_s() - t0;
    rng = 88172645463325252ull;
    sample(v, dim);
    cache_entry got;
    double simd;
    semcache_lookup *pending;
    size_t hits = 0;
    t0 = now_s();
    for (size_t j = 0; j < nq; j++) {
        near_of(v, dim, 0.1f, q);
        hits += semcache_get(s, part, q, dim, 0.9, &got, &simd, NULL, NULL, &pending) == 1;
    }
    double get = now_s() - t0;
    printf("semcache     %zu entries of %zu-byte answers: put %.1f us, lookup %.1f us (%zu/%zu hits), %.1f MB counted\n",
           fill, e.len, put * 1e6 / fill, get * 1e6 / nq, hits, nq, (double)semcache_bytes(s) / 1048576.0);
    semcache_free(s);
    event_base_free(base);

    /* canonical text + partition key of a ~1 KB chat request */
    const char *req = "{\"model\":\"gpt-4o-mini\",\"temperature\":0.2,\"max_tokens\":300,\"messages\":["
                      "{\"role\":\"system\",\"content\":\"You are a helpful assistant for an online shop. Answer briefly and "
                      "politely, in the customer's language, and never invent order numbers or prices.\"},"
                      "{\"role\":\"user\",\"content\":\"Hello, I ordered a pair of running shoes last week and the parcel "
                      "has not arrived yet. The tracking page says it left the warehouse five days ago. Could you tell me "
                      "what usually happens in such cases, how long I should wait before asking for a replacement, and "
                      "whether I need to fill in any form? I would also like to know if express shipping would have "
                      "been faster for my region, since I need the shoes for a race in two weeks. Thank you!\"}]}";
    json_error jerr;
    json_limits lim = { 0 };
    json_doc *d = json_parse(req, strlen(req), &lim, &jerr);
    buf_t text;
    buf_init(&text);
    size_t reps = 20000;
    t0 = now_s();
    for (size_t j = 0; j < reps; j++) {
        buf_reset(&text);
        semprompt_text(json_root(d), ROUTE_CHAT, 1.0, &text);
        semprompt_partition(json_root(d), ROUTE_CHAT, 0, "gpt-4o-mini", "t:team", part);
    }
    printf("prompt       canonical text + partition key of a %zu-byte request: %.2f us\n", strlen(req),
           (now_s() - t0) * 1e6 / reps);
    buf_free(&text);
    json_doc_free(d);
    hnsw_free(h);
    free(v); free(q); free(centres);
    return 0;
}
