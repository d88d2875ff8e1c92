/* fuzz target: a Delta as the agent and the workers read it: unpack, check
 * every item, apply to a loaded state, rebuild the config. A delta that
 * fails the check is never applied (as in cpsync.c); one that passes must
 * leave a state from which a config can be built. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "config.h"
#include "cpstate.h"
#include "keytab.h"
#include "pbwire.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static gw_config *base;
static buf_t snap;

static void put_key(buf_t *b, const char *id, const char *secret, char **models, size_t nmodels)
{
    uint8_t h[32];
    SHA256((const unsigned char *)secret, strlen(secret), h);
    Gw__Key k = GW__KEY__INIT;
    k.id = (char *)id;
    k.name = "k";
    k.key_sha256.data = h;
    k.key_sha256.len = 32;
    k.all_models = models == NULL;
    k.models = models;
    k.n_models = nmodels;
    k.rpm_limit = -1;
    k.tpm_limit = -1;
    k.budget_usd = -1;
    pbw_put_message_field(b, 4, &k.base);
}

static void put_model(buf_t *b, const char *alias)
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
    pbw_put_message_field(b, 3, &m.base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    char err[256];
    const char *y = "listen: 127.0.0.1:1\ncontrol_plane: tcp://127.0.0.1:2\nstate_dir: /tmp\n";
    base = config_parse(y, strlen(y), "fuzz.yaml", err, sizeof err);
    if (!base) { fprintf(stderr, "%s\n", err); abort(); }
    char *scope[] = { "a" };
    Gw__Team t = GW__TEAM__INIT;
    t.id = "33333333-3333-4333-8333-333333333333";
    t.name = "team";
    buf_init(&snap);
    pbw_put_varint_field(&snap, 1, 7);
    put_model(&snap, "a");
    put_model(&snap, "b");
    pbw_put_message_field(&snap, 5, &t.base);
    put_key(&snap, "11111111-1111-4111-8111-111111111111", "sk-one", NULL, 0);
    put_key(&snap, "22222222-2222-4222-8222-222222222222", "sk-two", scope, 1);
    setenv("FUZZ_SECRET", "sk-fuzz-secret", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    Gw__Delta *d = gw__delta__unpack(NULL, size, data);
    if (!d) return 0;
    if (cpstate_check_delta(d, err, sizeof err) == 0) {
        cpstate s;
        cpstate_init(&s);
        CHECK(cpstate_load_snapshot(&s, (const uint8_t *)snap.data, snap.len, err, sizeof err) == 0);
        int mc = 0;
        if (cpstate_apply_delta(&s, d, &mc, err, sizeof err) == 0) {
            CHECK(s.version == d->version);
            gw_config *c = cpstate_build_config(&s, base, err, sizeof err);
            if (c) config_unref(c);
        }
        cpstate_free(&s);
    }
    gw__delta__free_unpacked(d, NULL);
    return 0;
}
