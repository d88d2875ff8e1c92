#include "crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

int cp_random(void *out, size_t n)
{
    if (n > 0x7fffffff) return -1;
    return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}

void cp_sha256(const void *data, size_t n, unsigned char out[CP_SHA256_LEN])
{
    SHA256(data, n, out);
}

void cp_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cp_unhex(const char *in, size_t inlen, unsigned char *out, size_t outlen)
{
    if (inlen != 2 * outlen) return -1;
    for (size_t i = 0; i < outlen; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

size_t cp_b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

int cp_token_new(const char *prefix, char *out, size_t outlen)
{
    size_t plen = strlen(prefix);
    unsigned char raw[CP_TOKEN_RAND_LEN];
    if (outlen < plen + CP_TOKEN_B64_LEN + 1) return -1;
    if (cp_random(raw, sizeof raw) < 0) return -1;
    snprintf(out, outlen, "%s", prefix);   /* then the random part right after it */
    cp_b64url(raw, sizeof raw, out + plen);
    cp_wipe(raw, sizeof raw);
    return 0;
}

int cp_token_well_formed(const char *s, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (!s || strncmp(s, prefix, plen) != 0) return 0;
    s += plen;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        if (!ok) return 0;
    }
    return n == CP_TOKEN_B64_LEN;
}

int cp_uuid_v4(char out[37])
{
    unsigned char b[16];
    char hex[33];
    if (cp_random(b, sizeof b) < 0) return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);    /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);    /* RFC 4122 variant */
    cp_hex(b, sizeof b, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return 0;
}

int cp_uuid_valid(const char *s)
{
    if (!s || strlen(s) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
        } else if (hexval(s[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

int cp_aes_gcm_encrypt(const unsigned char key[CP_MASTER_KEY_LEN],
                       const void *aad, size_t aadlen,
                       const void *pt, size_t n,
                       unsigned char nonce[CP_GCM_NONCE_LEN],
                       unsigned char *ct, unsigned char tag[CP_GCM_TAG_LEN])
{
    if (n > 0x7fffffff || aadlen > 0x7fffffff) return -1;
    if (cp_random(nonce, CP_GCM_NONCE_LEN) < 0) return -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return -1;
    int ok = 0, len = 0;
    do {
        if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1) break;
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CP_GCM_NONCE_LEN, NULL) != 1) break;
        if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1) break;
        if (aadlen && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aadlen) != 1) break;
        if (n && EVP_EncryptUpdate(ctx, ct, &len, pt, (int)n) != 1) break;
        if (EVP_EncryptFinal_ex(ctx, ct + len, &len) != 1) break;
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CP_GCM_TAG_LEN, tag) != 1) break;
        ok = 1;
    } while (0);
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int cp_aes_gcm_decrypt(const unsigned char key[CP_MASTER_KEY_LEN],
                       const void *aad, size_t aadlen,
                       const unsigned char *ct, size_t n,
                       const unsigned char nonce[CP_GCM_NONCE_LEN],
                       const unsigned char tag[CP_GCM_TAG_LEN],
                       unsigned char *pt)
{
    if (n > 0x7fffffff || aadlen > 0x7fffffff) return -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return -1;
    int ok = 0, len = 0;
    unsigned char tagcopy[CP_GCM_TAG_LEN];
    memcpy(tagcopy, tag, sizeof tagcopy);     /* the ctrl call takes a non-const pointer */
    do {
        if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1) break;
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CP_GCM_NONCE_LEN, NULL) != 1) break;
        if (EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) != 1) break;
        if (aadlen && EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aadlen) != 1) break;
        if (n && EVP_DecryptUpdate(ctx, pt, &len, ct, (int)n) != 1) break;
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CP_GCM_TAG_LEN, tagcopy) != 1) break;
        /* Final is where the tag is checked: until it succeeds pt is untrusted. */
        if (EVP_DecryptFinal_ex(ctx, pt + len, &len) != 1) break;
        ok = 1;
    } while (0);
    EVP_CIPHER_CTX_free(ctx);
    if (!ok && n) cp_wipe(pt, n);
    return ok ? 0 : -1;
}

void cp_wipe(void *p, size_t n)
{
    if (p && n) OPENSSL_cleanse(p, n);
}

void cp_master_key_fingerprint(const unsigned char key[CP_MASTER_KEY_LEN], char out[17])
{
    unsigned char h[CP_SHA256_LEN];
    cp_sha256(key, CP_MASTER_KEY_LEN, h);
    cp_hex(h, 8, out);
}

/* mkdir -p for the directory part of path; directories we create are 0700. */
static int make_parents(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "master key path too long");
        return -1;
    }
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp) return 0;
    *slash = '\0';
    for (char *p = tmp + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0700) < 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create directory %s: %s", tmp, strerror(errno));
                return -1;
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    return 0;
}

static int create_key_file(const char *path, unsigned char key[CP_MASTER_KEY_LEN], char *err, size_t errlen)
{
    char hex[2 * CP_MASTER_KEY_LEN + 2];
    if (make_parents(path, err, errlen) < 0) return -1;
    if (cp_random(key, CP_MASTER_KEY_LEN) < 0) {
        snprintf(err, errlen, "random source failed");
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        cp_wipe(key, CP_MASTER_KEY_LEN);
        if (e == EEXIST) return 1;              /* another process won the race: load theirs */
        snprintf(err, errlen, "cannot create master key file %s: %s", path, strerror(e));
        return -1;
    }
    cp_hex(key, CP_MASTER_KEY_LEN, hex);
    strcat(hex, "\n");
    size_t len = strlen(hex), off = 0;
    while (off < len) {
        ssize_t w = write(fd, hex + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    int ok = off == len && fsync(fd) == 0;
    if (close(fd) < 0) ok = 0;
    cp_wipe(hex, sizeof hex);
    if (!ok) {
        unlink(path);
        cp_wipe(key, CP_MASTER_KEY_LEN);
        snprintf(err, errlen, "cannot write master key file %s", path);
        return -1;
    }
    return 0;
}

int cp_master_key_load(const char *path, unsigned char key[CP_MASTER_KEY_LEN],
                       int *created, char *err, size_t errlen)
{
    *created = 0;
    if (!path || !*path) {
        snprintf(err, errlen, "master_key_file is not set");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        int rc = create_key_file(path, key, err, errlen);
        if (rc < 0) return -1;
        if (rc == 0) { *created = 1; return 0; }
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot open master key file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat master key file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "master key file %s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "master key file %s has mode %03o; it must not be readable by group or others (chmod 600)",
                 path, (unsigned)(st.st_mode & 0777));
        close(fd);
        return -1;
    }
    unsigned char data[2 * CP_MASTER_KEY_LEN + 3];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, data + n, sizeof data - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(err, errlen, "cannot read master key file %s: %s", path, strerror(errno));
            close(fd);
            cp_wipe(data, sizeof data);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n == sizeof data) break;
    }
    close(fd);
    int rc = -1;
    size_t hexlen = n;
    while (hexlen > 0 && (data[hexlen - 1] == '\n' || data[hexlen - 1] == '\r')) hexlen--;
    if (n == CP_MASTER_KEY_LEN) {
        memcpy(key, data, CP_MASTER_KEY_LEN);
        rc = 0;
    } else if (hexlen == 2 * CP_MASTER_KEY_LEN && n - hexlen <= 2 &&
               cp_unhex((const char *)data, hexlen, key, CP_MASTER_KEY_LEN) == 0) {
        rc = 0;
    }
    cp_wipe(data, sizeof data);
    if (rc < 0)
        snprintf(err, errlen, "master key file %s must hold 32 raw bytes or 64 hex digits (found %zu bytes)",
                 path, n);
    return rc;
}
