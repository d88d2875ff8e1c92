/* Unit tests for controlplane/crypto.c: AES-256-GCM, tokens, hashing, the master key file. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../controlplane/crypto.h"

static const unsigned char KEY[CP_MASTER_KEY_LEN] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32
};

static void test_gcm_round_trip(void)
{
    const char *msg = "sk-live-provider-secret-0123456789";
    size_t n = strlen(msg);
    unsigned char nonce[CP_GCM_NONCE_LEN], tag[CP_GCM_TAG_LEN], ct[64], pt[64];
    CHECK(cp_aes_gcm_encrypt(KEY, "id-1", 4, msg, n, nonce, ct, tag) == 0);
    CHECK(memcmp(ct, msg, n) != 0);
    memset(pt, 0, sizeof pt);
    CHECK(cp_aes_gcm_decrypt(KEY, "id-1", 4, ct, n, nonce, tag, pt) == 0);
    CHECK(memcmp(pt, msg, n) == 0);
}

static void test_gcm_fresh_nonce(void)
{
    const char *msg = "same plaintext";
    size_t n = strlen(msg);
    unsigned char n1[CP_GCM_NONCE_LEN], n2[CP_GCM_NONCE_LEN], t1[CP_GCM_TAG_LEN], t2[CP_GCM_TAG_LEN];
    unsigned char c1[32], c2[32];
    CHECK(cp_aes_gcm_encrypt(KEY, NULL, 0, msg, n, n1, c1, t1) == 0);
    CHECK(cp_aes_gcm_encrypt(KEY, NULL, 0, msg, n, n2, c2, t2) == 0);
    CHECK(memcmp(n1, n2, sizeof n1) != 0);      /* a repeated nonce would break GCM */
    CHECK(memcmp(c1, c2, n) != 0);
}

static void test_gcm_tamper_detected(void)
{
    const char *msg = "do not change me";
    size_t n = strlen(msg);
    unsigned char nonce[CP_GCM_NONCE_LEN], tag[CP_GCM_TAG_LEN], ct[32], pt[32], other[CP_MASTER_KEY_LEN];
    CHECK(cp_aes_gcm_encrypt(KEY, "row-a", 5, msg, n, nonce, ct, tag) == 0);

    ct[3] ^= 1;                                                   /* flipped ciphertext bit */
    CHECK(cp_aes_gcm_decrypt(KEY, "row-a", 5, ct, n, nonce, tag, pt) == -1);
    ct[3] ^= 1;
    tag[0] ^= 0x80;                                               /* flipped tag bit */
    CHECK(cp_aes_gcm_decrypt(KEY, "row-a", 5, ct, n, nonce, tag, pt) == -1);
    tag[0] ^= 0x80;
    nonce[11] ^= 1;                                               /* wrong nonce */
    CHECK(cp_aes_gcm_decrypt(KEY, "row-a", 5, ct, n, nonce, tag, pt) == -1);
    nonce[11] ^= 1;
    CHECK(cp_aes_gcm_decrypt(KEY, "row-b", 5, ct, n, nonce, tag, pt) == -1);   /* moved to another row */
    memcpy(other, KEY, sizeof other);
    other[31] ^= 1;
    CHECK(cp_aes_gcm_decrypt(other, "row-a", 5, ct, n, nonce, tag, pt) == -1); /* wrong master key */
    /* a failed decryption leaves no plaintext behind */
    int zero = 1;
    for (size_t i = 0; i < n; i++) zero &= pt[i] == 0;
    CHECK(zero);
    CHECK(cp_aes_gcm_decrypt(KEY, "row-a", 5, ct, n, nonce, tag, pt) == 0);
    CHECK(memcmp(pt, msg, n) == 0);
}

static void test_gcm_empty_plaintext(void)
{
    unsigned char nonce[CP_GCM_NONCE_LEN], tag[CP_GCM_TAG_LEN], ct[1], pt[1];
    CHECK(cp_aes_gcm_encrypt(KEY, "x", 1, "", 0, nonce, ct, tag) == 0);
    CHECK(cp_aes_gcm_decrypt(KEY, "x", 1, ct, 0, nonce, tag, pt) == 0);
    tag[5] ^= 4;
    CHECK(cp_aes_gcm_decrypt(KEY, "x", 1, ct, 0, nonce, tag, pt) == -1);
}

/* NIST SP 800-38D / McGrew-Viega test case 13: AES-256, zero key, zero IV, empty input. */
static void test_gcm_known_answer(void)
{
    unsigned char zero_key[32] = { 0 }, tag[16];
    static const unsigned char expected_tag[16] = {
        0x53, 0x0f, 0x8a, 0xfb, 0xc7, 0x45, 0x36, 0xb9, 0xa9, 0x63, 0xb4, 0xf1, 0xc4, 0xcb, 0x73, 0x8b
    };
    unsigned char nonce[12] = { 0 }, pt[1];
    /* decrypting the empty message with the published tag must verify */
    memcpy(tag, expected_tag, sizeof tag);
    CHECK(cp_aes_gcm_decrypt(zero_key, NULL, 0, pt, 0, nonce, tag, pt) == 0);
}

static void test_token_format(void)
{
    char a[64], b[64];
    CHECK(cp_token_new(CP_KEY_PREFIX, a, sizeof a) == 0);
    CHECK(cp_token_new(CP_KEY_PREFIX, b, sizeof b) == 0);
    CHECK(strlen(a) == 6 + 43);
    CHECK(strncmp(a, "sk-gw-", 6) == 0);
    CHECK(cp_token_well_formed(a, CP_KEY_PREFIX));
    CHECK(strcmp(a, b) != 0);
    for (const char *p = a + 6; *p; p++)
        CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_');
    CHECK(cp_token_new(CP_KEY_PREFIX, a, 20) == -1);               /* too small a buffer */
    CHECK(!cp_token_well_formed("sk-gw-short", CP_KEY_PREFIX));
    CHECK(!cp_token_well_formed("sk-xx-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", CP_KEY_PREFIX));
    CHECK(!cp_token_well_formed("sk-gw-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", CP_KEY_PREFIX));
    CHECK(cp_token_well_formed("sk-gw-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", CP_KEY_PREFIX));
    CHECK(cp_token_new(CP_ADMIN_PREFIX, a, sizeof a) == 0);
    CHECK(cp_token_well_formed(a, CP_ADMIN_PREFIX));
}

static void test_b64url(void)
{
    char out[16];
    CHECK(cp_b64url((const unsigned char *)"", 0, out) == 0);
    CHECK_STR(out, "");
    cp_b64url((const unsigned char *)"f", 1, out);
    CHECK_STR(out, "Zg");
    cp_b64url((const unsigned char *)"fo", 2, out);
    CHECK_STR(out, "Zm8");
    cp_b64url((const unsigned char *)"foo", 3, out);
    CHECK_STR(out, "Zm9v");
    const unsigned char bin[] = { 0xfb, 0xff, 0xbf };
    cp_b64url(bin, 3, out);
    CHECK_STR(out, "-_-_");                         /* url-safe alphabet, not + and / */
}

static void test_sha256_and_hex(void)
{
    unsigned char h[CP_SHA256_LEN], back[CP_SHA256_LEN];
    char hex[2 * CP_SHA256_LEN + 1];
    cp_sha256("abc", 3, h);
    cp_hex(h, sizeof h, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(cp_unhex(hex, strlen(hex), back, sizeof back) == 0);
    CHECK(memcmp(back, h, sizeof h) == 0);
    CHECK(cp_unhex("zz", 2, back, 1) == -1);
    CHECK(cp_unhex("abc", 3, back, 1) == -1);
    /* a token and its hash: same input, same hash; different input, different hash */
    unsigned char h2[CP_SHA256_LEN];
    cp_sha256("sk-gw-x", 7, h);
    cp_sha256("sk-gw-x", 7, h2);
    CHECK(memcmp(h, h2, sizeof h) == 0);
    cp_sha256("sk-gw-y", 7, h2);
    CHECK(memcmp(h, h2, sizeof h) != 0);
}

static void test_uuid(void)
{
    char a[37], b[37];
    CHECK(cp_uuid_v4(a) == 0);
    CHECK(cp_uuid_v4(b) == 0);
    CHECK(strcmp(a, b) != 0);
    CHECK(cp_uuid_valid(a));
    CHECK(a[14] == '4');
    CHECK(strchr("89ab", a[19]) != NULL);
    CHECK(cp_uuid_valid("00000000-0000-0000-0000-000000000000"));
    CHECK(!cp_uuid_valid("00000000-0000-0000-0000-00000000000"));
    CHECK(!cp_uuid_valid("00000000x0000-0000-0000-000000000000"));
    CHECK(!cp_uuid_valid("1' OR '1'='1"));
    CHECK(!cp_uuid_valid(NULL));
}

static char g_dir[64];

static void make_dir(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cp_crypto_test.XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
}

static void test_master_key_created(void)
{
    char path[128], err[256];
    unsigned char k1[CP_MASTER_KEY_LEN], k2[CP_MASTER_KEY_LEN];
    int created = 0;
    snprintf(path, sizeof path, "%s/sub/dir/master.key", g_dir);
    CHECK(cp_master_key_load(path, k1, &created, err, sizeof err) == 0);
    CHECK(created == 1);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(st.st_size == 65);                       /* 64 hex digits and a newline */
    created = 1;
    CHECK(cp_master_key_load(path, k2, &created, err, sizeof err) == 0);
    CHECK(created == 0);
    CHECK(memcmp(k1, k2, sizeof k1) == 0);         /* the same key comes back */
    char fp[17];
    cp_master_key_fingerprint(k1, fp);
    CHECK(strlen(fp) == 16);
}

static void test_master_key_refused(void)
{
    char path[128], err[256];
    unsigned char k[CP_MASTER_KEY_LEN];
    int created;
    snprintf(path, sizeof path, "%s/wide.key", g_dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", f);
    fclose(f);
    CHECK(chmod(path, 0644) == 0);
    CHECK(cp_master_key_load(path, k, &created, err, sizeof err) == -1);   /* world-readable */
    CHECK(strstr(err, "mode") != NULL);
    CHECK(chmod(path, 0600) == 0);
    CHECK(cp_master_key_load(path, k, &created, err, sizeof err) == 0);
    CHECK(k[0] == 0 && k[31] == 0x1f);

    snprintf(path, sizeof path, "%s/short.key", g_dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("0001020304", f);
    fclose(f);
    CHECK(chmod(path, 0600) == 0);
    CHECK(cp_master_key_load(path, k, &created, err, sizeof err) == -1);   /* wrong size */

    snprintf(path, sizeof path, "%s/raw.key", g_dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(KEY, 1, sizeof KEY, f);
    fclose(f);
    CHECK(chmod(path, 0600) == 0);
    CHECK(cp_master_key_load(path, k, &created, err, sizeof err) == 0);    /* 32 raw bytes */
    CHECK(memcmp(k, KEY, sizeof KEY) == 0);
}

int main(void)
{
    make_dir();
    RUN(test_gcm_round_trip);
    RUN(test_gcm_fresh_nonce);
    RUN(test_gcm_tamper_detected);
    RUN(test_gcm_empty_plaintext);
    RUN(test_gcm_known_answer);
    RUN(test_token_format);
    RUN(test_b64url);
    RUN(test_sha256_and_hex);
    RUN(test_uuid);
    RUN(test_master_key_created);
    RUN(test_master_key_refused);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_MAIN_END();
}
