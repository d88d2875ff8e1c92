/* fuzz target: booting from state_dir (gateway/statefile.c + cpstate.c):
 * snapshot.pb (fixed, version 7) plus a journal.log of hostile deltas.
 *
 * Input: one flags byte, then records as [u16 little-endian length][bytes].
 * Each record is written in the journal's framing ("GWJ1" | u32 length |
 * u32 crc32 | bytes) with a correct CRC, so the fuzzer reaches the delta
 * decoding and replay; flags bit 0 flips the last record's CRC, bit 1 adds
 * the input's leftover bytes raw (a torn append). cpstate_load_disk must
 * load the snapshot whatever the journal holds, and a config must build. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "config.h"
#include "cpstate.h"
#include "pbwire.h"
#include "statefile.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static gw_config *base;
static char dir[64];
static char jpath[128];

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put_u32(FILE *f, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    CHECK(fwrite(b, 1, 4, f) == 4);
}

static void put_key(buf_t *b, const char *id, const char *secret)
{
    uint8_t h[32];
    SHA256((const unsigned char *)secret, strlen(secret), h);
    Gw__Key k = GW__KEY__INIT;
    k.id = (char *)id;
    k.name = "k";
    k.key_sha256.data = h;
    k.key_sha256.len = 32;
    k.all_models = 1;
    k.rpm_limit = k.tpm_limit = -1;
    k.budget_usd = -1;
    pbw_put_message_field(b, 4, &k.base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    char err[256];
    const char *y = "listen: 127.0.0.1:1\ncontrol_plane: tcp://127.0.0.1:2\nstate_dir: /tmp\n";
    base = config_parse(y, strlen(y), "fuzz.yaml", err, sizeof err);
    CHECK(base);
    snprintf(dir, sizeof dir, "/tmp/fuzz-journal-%d", (int)getpid());
    CHECK(statefile_prepare_dir(dir, err, sizeof err) == 0);
    snprintf(jpath, sizeof jpath, "%s/journal.log", dir);
    Gw__Deployment d = GW__DEPLOYMENT__INIT;
    Gw__Deployment *dp[1] = { &d };
    Gw__ModelAlias m = GW__MODEL_ALIAS__INIT;
    d.provider = "mock";
    d.model = "mock-1";
    d.weight = 1;
    m.alias = "a";
    m.deployments = dp;
    m.n_deployments = 1;
    buf_t snap;
    buf_init(&snap);
    pbw_put_varint_field(&snap, 1, 7);
    pbw_put_message_field(&snap, 3, &m.base);
    put_key(&snap, "11111111-1111-4111-8111-111111111111", "sk-one");
    CHECK(statefile_write_snapshot(dir, snap.data, snap.len, err, sizeof err) == 0);
    buf_free(&snap);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    FILE *f = fopen(jpath, "wb");
    CHECK(f);
    size_t i = 1;
    long last_crc_at = -1;
    while (i + 2 <= size) {
        size_t len = (size_t)data[i] | (size_t)data[i + 1] << 8;
        if (len > size - i - 2) break;
        CHECK(fwrite("GWJ1", 1, 4, f) == 4);
        put_u32(f, (uint32_t)len);
        last_crc_at = ftell(f);
        put_u32(f, crc32(data + i + 2, len));
        if (len) CHECK(fwrite(data + i + 2, 1, len, f) == len);
        i += 2 + len;
    }
    if ((flags & 2) && i < size) CHECK(fwrite(data + i, 1, size - i, f) == size - i);
    if ((flags & 1) && last_crc_at >= 0) {
        CHECK(fseek(f, last_crc_at, SEEK_SET) == 0);
        put_u32(f, 0xdeadbeefu);
    }
    CHECK(fclose(f) == 0);

    cpstate s;
    char err[256];
    cpstate_init(&s);
    int rc = cpstate_load_disk(&s, dir, err, sizeof err);
    CHECK(rc == 1);                 /* the snapshot always loads */
    CHECK(s.version >= 7);
    gw_config *c = cpstate_build_config(&s, base, err, sizeof err);
    if (c) config_unref(c);
    cpstate_free(&s);
    return 0;
}
