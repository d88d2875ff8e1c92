/* crypto: the control plane's secrets.
 *
 * - virtual keys and admin tokens: 32 random bytes (RAND_bytes) as base64url
 *   behind a prefix ("sk-gw-" + 43 chars); only their SHA-256 is stored;
 * - provider credentials: AES-256-GCM under the master key, a fresh 96-bit
 *   nonce per encryption, the 128-bit tag stored beside the ciphertext, and
 *   the row id as additional data so ciphertexts cannot be swapped between rows;
 * - the master key: 32 bytes in a file of mode 0600, created on first start.
 */
#ifndef CP_CRYPTO_H
#define CP_CRYPTO_H

#include <stddef.h>

#define CP_MASTER_KEY_LEN 32
#define CP_GCM_NONCE_LEN  12
#define CP_GCM_TAG_LEN    16
#define CP_SHA256_LEN     32
#define CP_TOKEN_RAND_LEN 32
#define CP_TOKEN_B64_LEN  43          /* base64url of 32 bytes, no padding */
#define CP_KEY_PREFIX     "sk-gw-"
#define CP_ADMIN_PREFIX   "sk-gwadm-"
#define CP_KEY_PREFIX_SHOWN 10        /* "sk-gw-AbCd": what lists and audit show of a key */

/* Fills out with n cryptographically strong random bytes. 0 ok, -1 failure. */
int  cp_random(void *out, size_t n);

void cp_sha256(const void *data, size_t n, unsigned char out[CP_SHA256_LEN]);

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void cp_hex(const unsigned char *in, size_t n, char *out);
/* Decodes exactly outlen bytes from 2*outlen hex digits. 0 ok, -1 malformed. */
int  cp_unhex(const char *in, size_t inlen, unsigned char *out, size_t outlen);

/* base64url without padding: out needs 4*ceil(n/3)+1 bytes; returns length. */
size_t cp_b64url(const unsigned char *in, size_t n, char *out);

/* A fresh token: prefix + base64url(32 random bytes). out must hold
 * strlen(prefix) + 44 bytes. 0 ok, -1 if the random source failed. */
int  cp_token_new(const char *prefix, char *out, size_t outlen);
/* 1 if s is prefix followed by exactly 43 base64url characters. */
int  cp_token_well_formed(const char *s, const char *prefix);

/* Random (version 4) UUID in canonical lower-case form; out[37]. */
int  cp_uuid_v4(char out[37]);
/* 1 if s is a canonical 8-4-4-4-12 hex UUID (any case). */
int  cp_uuid_valid(const char *s);

/* AES-256-GCM. ct has room for n bytes. 0 ok, -1 error. */
int  cp_aes_gcm_encrypt(const unsigned char key[CP_MASTER_KEY_LEN],
                        const void *aad, size_t aadlen,
                        const void *pt, size_t n,
                        unsigned char nonce[CP_GCM_NONCE_LEN],      /* out: fresh random nonce */
                        unsigned char *ct, unsigned char tag[CP_GCM_TAG_LEN]);
/* pt has room for n bytes. 0 ok, -1 if the tag does not verify (tampered,
 * wrong key, wrong aad) or on error; pt is zeroed then. */
int  cp_aes_gcm_decrypt(const unsigned char key[CP_MASTER_KEY_LEN],
                        const void *aad, size_t aadlen,
                        const unsigned char *ct, size_t n,
                        const unsigned char nonce[CP_GCM_NONCE_LEN],
                        const unsigned char tag[CP_GCM_TAG_LEN],
                        unsigned char *pt);

/* Loads the master key from path: 64 hex digits (optionally followed by a
 * newline) or 32 raw bytes. When the file does not exist it is created with
 * 32 fresh random bytes in hex, mode 0600, parent directories 0700, and
 * *created is set. Refuses (returns -1 with a reason in err) a file with any
 * group/other permission bits, a file that is not a regular file, or one of
 * the wrong size: a weak or truncated key must stop the start, not be used. */
int  cp_master_key_load(const char *path, unsigned char key[CP_MASTER_KEY_LEN],
                        int *created, char *err, size_t errlen);

/* First 8 bytes of SHA-256(key) in hex (17 bytes): names a master key
 * without revealing it, so rows record which key encrypted them. */
void cp_master_key_fingerprint(const unsigned char key[CP_MASTER_KEY_LEN], char out[17]);

/* Zeroes memory in a way the compiler may not elide. */
void cp_wipe(void *p, size_t n);

#endif
