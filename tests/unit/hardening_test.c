/* Regressions from fuzzing and the security review (issue 10): each test
 * names the fuzz target or check that found it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/sha.h>

#include "config.h"
#include "keytab.h"
#include "sse.h"
#include "test.h"

/* ---- timing-safe key comparison ----
 * A presented key is hashed (SHA-256) and the hash looked up in the key
 * table; the table compares hashes with CRYPTO_memcmp. This binary
 * interposes CRYPTO_memcmp (a definition in the executable wins over
 * libcrypto's for every caller) to prove the lookup goes through it, with
 * the full 32 bytes, rather than asserting anything about time. */
static int g_ct_calls, g_ct_bad_len;

int CRYPTO_memcmp(const void *a, const void *b, size_t len)
{
    const unsigned char *x = a, *y = b;
    unsigned char d = 0;
    g_ct_calls++;
    if (len != 32) g_ct_bad_len++;
    for (size_t i = 0; i < len; i++) d |= (unsigned char)(x[i] ^ y[i]);
    return d;
}

static void test_key_lookup_compares_in_constant_time(void)
{
    keytab *t = keytab_new(4);
    CHECK(t != NULL);
    if (!t) return;
    const char *secrets[] = { "sk-gw-one-aaaaaaaa", "sk-gw-two-bbbbbbbb", "sk-gw-three-cccccc" };
    for (int i = 0; i < 3; i++) {
        keytab_key k;
        memset(&k, 0, sizeof k);
        SHA256((const unsigned char *)secrets[i], strlen(secrets[i]), k.sha256);
        k.name = secrets[i] + 6;
        k.all_models = 1;
        k.rpm_limit = k.tpm_limit = -1;
        k.budget_usd = -1;
        const char *clash = NULL;
        CHECK(keytab_upsert(t, &k, &clash) == 0);
    }
    for (int i = 0; i < 3; i++) {
        uint8_t h[32];
        gw_key view;
        SHA256((const unsigned char *)secrets[i], strlen(secrets[i]), h);
        int before = g_ct_calls;
        CHECK(keytab_find(t, h, time(NULL), &view));
        CHECK(g_ct_calls > before);             /* the match was decided by CRYPTO_memcmp */
        h[31] ^= 1;                              /* one bit off: refused */
        CHECK(!keytab_find(t, h, time(NULL), &view));
    }
    CHECK(g_ct_bad_len == 0);
    keytab_unref(t);
}

/* ---- config: a key twice in one YAML mapping (fuzz: config_parse) ----
 * libyaml accepts it; the parser kept the last value and leaked the first
 * (a resolved secret, for "key:"). Now it is an error naming the field. */
static void expect_config_error(const char *yaml, const char *needle)
{
    char err[512] = "";
    gw_config *c = config_parse(yaml, strlen(yaml), "t.yaml", err, sizeof err);
    CHECK(c == NULL);
    if (c) { config_unref(c); return; }
    if (!strstr(err, needle)) { fprintf(stderr, "  error was: %s\n  expected: %s\n", err, needle); t_cur_failed = 1; }
}

static void test_config_duplicate_keys(void)
{
    expect_config_error("keys:\n  - name: k\n    key: sk-gw-aaj\n    key: sk-gw-aaaaaaaa\n", "keys[0].key: appears twice");
    expect_config_error("keys:\n  - name: k\n    key: sk-gw-aaaaaaaa\n    models: [a]\n    models: [b]\n", "keys[0].models: appears twice");
    expect_config_error("models:\n  - alias: a\n    alias: b\n    deployments: [ {provider: mock, model: m} ]\n", "models[0].alias: appears twice");
    expect_config_error("models:\n  - alias: a\n    deployments: [ {provider: mock, model: m, model: n} ]\n", "models[0].deployments[0].model: appears twice");
    expect_config_error("workers: 1\nworkers: 2\n", "workers: appears twice");
    expect_config_error("timeouts: {connect_ms: 1, connect_ms: 2}\n", "timeouts.connect_ms: appears twice");
}

/* ---- sse: an empty feed between "\r" and "\n" (fuzz: sse_feed) ----
 * A "\r\n" split across feeds with an empty feed in between counted the
 * "\n" as a second line end: an extra blank line, an event split in two. */
typedef struct seen { int n; char data[4][64]; } seen;

static void collect(void *ud, const char *event, const char *data, size_t len)
{
    seen *s = ud;
    (void)event;
    if (s->n < 4) snprintf(s->data[s->n], sizeof s->data[0], "%.*s", (int)len, data);
    s->n++;
}

static void test_sse_empty_feed_keeps_crlf_together(void)
{
    seen s = { 0 };
    sse_parser p;
    sse_init(&p, 4096, collect, &s);
    sse_feed(&p, "data: a\r", 8);
    sse_feed(&p, "", 0);
    sse_feed(&p, "\ndata: b\r\n\r\n", 12);
    sse_free(&p);
    CHECK(s.n == 1);
    CHECK_STR(s.data[0], "a\nb");
}

int main(void)
{
    RUN(test_key_lookup_compares_in_constant_time);
    RUN(test_config_duplicate_keys);
    RUN(test_sse_empty_feed_keeps_crlf_together);
    TEST_MAIN_END();
}
