/* key table, snapshot <-> config, deltas, and hostile protobuf input */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/sha.h>

#include "config.h"
#include "cpstate.h"
#include "keytab.h"
#include "pbwire.h"
#include "test.h"

static const char *ID1 = "11111111-1111-4111-8111-111111111111";
static const char *ID2 = "22222222-2222-4222-8222-222222222222";
static const char *TEAM = "33333333-3333-4333-8333-333333333333";

static void sha(const char *key, uint8_t out[32]) { SHA256((const unsigned char *)key, strlen(key), out); }

static int put_key(buf_t *b, uint32_t field, const char *id, const char *secret, const char *name,
                   char **models, size_t nmodels, int64_t expires)
{
    uint8_t h[32];
    sha(secret, h);
    Gw__Key k = GW__KEY__INIT;
    k.id = (char *)id;
    k.name = (char *)name;
    k.key_sha256.data = h;
    k.key_sha256.len = 32;
    k.all_models = models == NULL;
    k.models = models;
    k.n_models = nmodels;
    k.rpm_limit = -1;
    k.tpm_limit = -1;
    k.budget_usd = -1;
    k.expires_at = expires;
    return pbw_put_message_field(b, field, &k.base);
}

static void put_model(buf_t *b, uint32_t field, const char *alias)
{
    Gw__Deployment d = GW__DEPLOYMENT__INIT;
    Gw__Deployment *dp[1] = { &d };
    Gw__ModelAlias m = GW__MODEL_ALIAS__INIT;
    d.provider = "mock";
    d.model = "mock-1";
    d.weight = 1;
    m.alias = (char *)alias;
    m.deployments = dp;
    m.n_deployments = 1;
    pbw_put_message_field(b, field, &m.base);
}

/* A snapshot at version 7: models a, b; keys sk-one (all models), sk-two (scope [a]). */
static void make_snapshot(buf_t *b)
{
    char *scope[] = { "a" };
    Gw__Team t = GW__TEAM__INIT;
    t.id = (char *)TEAM;
    t.name = "team";
    buf_init(b);
    pbw_put_varint_field(b, 1, 7);
    put_model(b, 3, "a");
    put_model(b, 3, "b");
    pbw_put_message_field(b, 5, &t.base);
    pbw_put_varint_field(b, 6, 2);
    put_key(b, 4, ID1, "sk-one-secret", "one", NULL, 0, 0);
    put_key(b, 4, ID2, "sk-two-secret", "two", scope, 1, 0);
}

static gw_config *settings(void)
{
    char err[256];
    const char *y = "listen: 127.0.0.1:1\ncontrol_plane: tcp://127.0.0.1:2\nstate_dir: /tmp\n";
    gw_config *c = config_parse(y, strlen(y), "t.yaml", err, sizeof err);
    if (!c) fprintf(stderr, "  %s\n", err);
    return c;
}

static const gw_key *find(gw_config *c, const char *secret, gw_key *view)
{
    uint8_t h[32];
    sha(secret, h);
    return config_find_key(c, h, view);
}

static void test_snapshot_to_config(void)
{
    buf_t b;
    char err[256];
    cpstate s;
    make_snapshot(&b);
    cpstate_init(&s);
    CHECK(cpstate_load_snapshot(&s, (uint8_t *)b.data, b.len, err, sizeof err) == 0);
    CHECK(s.loaded && s.version == 7 && s.nmodels == 2 && keytab_count(s.keys) == 2);
    gw_config *base = settings();
    gw_config *c = base ? cpstate_build_config(&s, base, err, sizeof err) : NULL;
    CHECK(c != NULL);
    if (c) {
        gw_key v;
        CHECK(c->version == 7 && c->nmodels == 2 && config_find_model(c, "a", 1) && config_find_model(c, "b", 1));
        const gw_key *k = find(c, "sk-one-secret", &v);
        CHECK(k && !strcmp(k->name, "one") && !strcmp(k->id, ID1) && config_key_allows(k, "b", 1));
        k = find(c, "sk-two-secret", &v);
        CHECK(k && config_key_allows(k, "a", 1) && !config_key_allows(k, "b", 1));
        CHECK(find(c, "sk-unknown", &v) == NULL);
        config_unref(c);
    }
    config_unref(base);
    cpstate_free(&s);
    buf_free(&b);
}

static Gw__Delta *pack_unpack(buf_t *b)
{
    return gw__delta__unpack(NULL, b->len, (uint8_t *)b->data);
}

static void test_delta_application(void)
{
    buf_t b, d;
    char err[256];
    cpstate s;
    int mc;
    make_snapshot(&b);
    cpstate_init(&s);
    CHECK(cpstate_load_snapshot(&s, (uint8_t *)b.data, b.len, err, sizeof err) == 0);
    gw_config *base = settings();

    /* revoke one, rotate the other, add a model */
    buf_init(&d);
    pbw_put_varint_field(&d, 1, 8);
    pbw_put_varint_field(&d, 2, 7);
    pbw_put_bytes_field(&d, 4, ID1, strlen(ID1));
    put_key(&d, 3, ID2, "sk-two-rotated", "two", NULL, 0, 0);
    put_model(&d, 5, "c");
    pbw_put_bytes_field(&d, 6, "b", 1);
    Gw__Delta *delta = pack_unpack(&d);
    CHECK(delta && cpstate_check_delta(delta, err, sizeof err) == 0);
    CHECK(delta && cpstate_apply_delta(&s, delta, &mc, err, sizeof err) == 0 && mc);
    gw__delta__free_unpacked(delta, NULL);
    CHECK(s.version == 8 && keytab_count(s.keys) == 1);
    gw_config *c = base ? cpstate_build_config(&s, base, err, sizeof err) : NULL;
    CHECK(c != NULL);
    if (c) {
        gw_key v;
        CHECK(find(c, "sk-one-secret", &v) == NULL);
        CHECK(find(c, "sk-two-secret", &v) == NULL);
        const gw_key *k = find(c, "sk-two-rotated", &v);
        CHECK(k && config_key_allows(k, "c", 1));    /* scope widened to every alias */
        CHECK(config_find_model(c, "c", 1) && !config_find_model(c, "b", 1) && config_find_model(c, "a", 1));
        config_unref(c);
    }

    /* an expired key is refused at lookup time */
    buf_reset(&d);
    pbw_put_varint_field(&d, 1, 9);
    pbw_put_varint_field(&d, 2, 8);
    put_key(&d, 3, ID1, "sk-expired", "old", NULL, 0, (int64_t)time(NULL) - 10);
    delta = pack_unpack(&d);
    CHECK(delta && cpstate_apply_delta(&s, delta, &mc, err, sizeof err) == 0 && !mc);
    gw__delta__free_unpacked(delta, NULL);
    gw_key v;
    uint8_t h[32];
    sha("sk-expired", h);
    CHECK(keytab_count(s.keys) == 2 && !keytab_find(s.keys, h, time(NULL), &v));

    /* a delta with one bad item is refused whole */
    buf_reset(&d);
    pbw_put_varint_field(&d, 1, 10);
    pbw_put_varint_field(&d, 2, 9);
    put_key(&d, 3, ID2, "sk-fine", "fine", NULL, 0, 0);
    put_key(&d, 3, "not-a-uuid", "sk-bad", "bad", NULL, 0, 0);
    delta = pack_unpack(&d);
    CHECK(delta && cpstate_check_delta(delta, err, sizeof err) < 0);
    gw__delta__free_unpacked(delta, NULL);

    config_unref(base);
    cpstate_free(&s);
    buf_free(&b);
    buf_free(&d);
}

static void test_keytab_many(void)
{
    enum { N = 20000 };
    keytab *t = keytab_new(0);
    char name[32], secret[32];
    uint8_t id[16] = { 0 };
    int ok = 1;
    for (int i = 0; i < N && ok; i++) {
        keytab_key k = { .has_id = 1, .name = name, .all_models = 1, .rpm_limit = -1 };
        snprintf(name, sizeof name, "k%d", i);
        snprintf(secret, sizeof secret, "secret-%d", i);
        memcpy(id, &i, sizeof i);
        memcpy(k.id, id, 16);
        sha(secret, k.sha256);
        ok = keytab_upsert(t, &k, NULL) == 0;
    }
    CHECK(ok && keytab_count(t) == N);
    for (int i = 0; i < N; i += 2) {   /* remove every other key: backward-shift deletion must keep the rest findable */
        memcpy(id, &i, sizeof i);
        CHECK(keytab_remove(t, id) == 1);
    }
    int found = 0;
    gw_key v;
    for (int i = 0; i < N; i++) {
        uint8_t h[32];
        snprintf(secret, sizeof secret, "secret-%d", i);
        sha(secret, h);
        if (keytab_find(t, h, time(NULL), &v)) {
            found++;
            snprintf(name, sizeof name, "k%d", i);
            if (i % 2 == 0 || strcmp(v.name, name)) ok = 0;
        }
    }
    CHECK(ok && found == N / 2 && keytab_count(t) == N / 2);
    keytab_unref(t);
}

/* Truncations at every byte, bit flips and garbage: rejected or accepted, never a crash. */
static void test_hostile_input(void)
{
    buf_t b;
    char err[256];
    uint64_t v;
    make_snapshot(&b);
    int rejected = 0;
    for (size_t n = 0; n < b.len; n++) {
        cpstate s;
        cpstate_init(&s);
        if (cpstate_check_snapshot((uint8_t *)b.data, n, &v, err, sizeof err) < 0) rejected++;
        if (cpstate_load_snapshot(&s, (uint8_t *)b.data, n, err, sizeof err) == 0) CHECK(s.loaded);
        cpstate_free(&s);
        Gw__Delta *d = gw__delta__unpack(NULL, n, (uint8_t *)b.data);
        if (d) { cpstate_check_delta(d, err, sizeof err); gw__delta__free_unpacked(d, NULL); }
    }
    CHECK(rejected > 0);
    srand(42);
    uint8_t *m = malloc(b.len);
    for (int round = 0; round < 3000 && m; round++) {
        memcpy(m, b.data, b.len);
        for (int j = 0; j < 1 + round % 4; j++) m[rand() % b.len] ^= (uint8_t)(1u << (rand() % 8));
        cpstate s;
        cpstate_init(&s);
        cpstate_load_snapshot(&s, m, b.len, err, sizeof err);
        cpstate_free(&s);
    }
    uint8_t junk[512];
    for (int round = 0; round < 2000; round++) {
        for (size_t j = 0; j < sizeof junk; j++) junk[j] = (uint8_t)rand();
        cpstate_check_snapshot(junk, (size_t)(rand() % (int)sizeof junk), &v, err, sizeof err);
    }
    /* an overlong varint and a length past the end */
    const uint8_t overlong[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    const uint8_t pastend[] = { 0x22, 0x7f, 0x00 };
    CHECK(cpstate_check_snapshot(overlong, sizeof overlong, &v, err, sizeof err) < 0);
    CHECK(cpstate_check_snapshot(pastend, sizeof pastend, &v, err, sizeof err) < 0);
    /* a key with a 31-byte hash */
    buf_t k;
    buf_init(&k);
    Gw__Key bad = GW__KEY__INIT;
    uint8_t h31[31] = { 0 };
    bad.id = (char *)ID1;
    bad.key_sha256.data = h31;
    bad.key_sha256.len = 31;
    pbw_put_message_field(&k, 4, &bad.base);
    CHECK(cpstate_check_snapshot((uint8_t *)k.data, k.len, &v, err, sizeof err) < 0);
    buf_free(&k);
    free(m);
    buf_free(&b);
}

int main(void)
{
    RUN(test_snapshot_to_config);
    RUN(test_delta_application);
    RUN(test_keytab_many);
    RUN(test_hostile_input);
    TEST_MAIN_END();
}
