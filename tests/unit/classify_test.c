/* classify: easy prompts score low, code/math/multi-step/tool prompts high;
 * and what one classification costs (printed, never asserted). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "classify.h"
#include "json.h"
#include "test.h"

static double score_of(const char *body)
{
    json_error e;
    json_doc *d = json_parse(body, strlen(body), NULL, &e);
    if (!d) return -1;
    double s = classify_request(json_root(d), NULL);
    json_doc_free(d);
    return s;
}

static void test_easy_prompts_score_low(void)
{
    CHECK(score_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}") < 0.1);
    CHECK(score_of("{\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}") < 0.2);
    CHECK(score_of("{\"messages\":[{\"role\":\"user\",\"content\":\"Translate 'good morning' into Spanish.\"}]}") < 0.2);
    CHECK(score_of("{\"prompt\":\"Say hello\"}") < 0.1);
}

static void test_hard_prompts_score_high(void)
{
    const char *code = "{\"messages\":[{\"role\":\"user\",\"content\":\"Why does this segfault?\\n```c\\n#include <stdio.h>\\n"
                       "int main(void) {\\n  char *p = 0;\\n  return *p;\\n}\\n```\\nFix it and explain.\"}]}";
    CHECK(score_of(code) >= 0.5);
    const char *math = "{\"messages\":[{\"role\":\"user\",\"content\":\"Prove the theorem: for every n, \\\\sum_{k=1}^n k = n(n+1)/2. "
                       "Then solve the equation 3*x + 7 = 22 and compute the integral of x^2 from 0 to 3.\"}]}";
    CHECK(score_of(math) >= 0.5);
    const char *steps = "{\"messages\":[{\"role\":\"system\",\"content\":\"You are a planner.\"},{\"role\":\"user\",\"content\":"
                        "\"Plan a migration step by step:\\n1. export the data\\n2. transform it\\n3. load it\\n4. verify counts\\n"
                        "First, compare the schemas, then analyze the risks, finally explain why the order matters.\"}]}";
    CHECK(score_of(steps) >= 0.5);
    const char *tools = "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris, then book a table.\"}],"
                        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\"}}]}";
    CHECK(score_of(tools) >= 0.5);
    /* Anthropic's system field and content parts count too */
    const char *parts = "{\"system\":\"Review code.\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                        "\"def f(x):\\n    return x\\nclass A:\\n    pass\\nimport os\\nfunction g() { return 1; }\\n\"}]}]}";
    CHECK(score_of(parts) >= 0.5);
}

static void test_signals_and_bounds(void)
{
    classify_signals s;
    double v = classify_text("", 0, 0, &s);
    CHECK(v == 0 && s.length == 0 && s.code == 0);
    char *big = malloc(1 << 20);
    CHECK(big != NULL);
    if (!big) return;
    memset(big, 'a', 1 << 20);
    v = classify_text(big, 1 << 20, 0, &s);   /* scanning stops at CLASSIFY_MAX_SCAN */
    CHECK(s.length == 1 && v <= 1);
    CHECK(classify_text("x", 1, 1, &s) >= 0.35 && s.tools == 1);
    CHECK(classify_text(NULL, 5, 0, &s) == 0);
    free(big);
}

static void test_bench(void)
{
    /* a 2 KiB mixed prompt: classification runs before every request of a classifier alias */
    char text[2048];
    const char *piece = "Please explain step by step how this works: def f(x): return x * 2; then 12 * 34 = 408. ";
    size_t n = 0, pl = strlen(piece);
    while (n + pl < sizeof text) { memcpy(text + n, piece, pl); n += pl; }
    enum { N = 20000 };
    struct timespec t0, t1;
    volatile double sink = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) sink += classify_text(text, n, 0, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / N;
    fprintf(stderr, "  bench: classify %zu-byte prompt: %.0f ns (%.2f us)\n", n, ns, ns / 1000);
    CHECK(sink > 0);
}

int main(void)
{
    RUN(test_easy_prompts_score_low);
    RUN(test_hard_prompts_score_high);
    RUN(test_signals_and_bounds);
    RUN(test_bench);
    TEST_MAIN_END();
}
