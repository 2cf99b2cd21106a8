/* Digests (OpenSSL's libcrypto underneath). */
#ifndef COVE_UTIL_HASH_H
#define COVE_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Lower-case hex of the digest into out (33 / 65 bytes incl. NUL). */
void cove_md5_hex(const void *data, size_t len, char out[33]);
void cove_sha256_hex(const void *data, size_t len, char out[65]);
/* Raw digests. */
void cove_md5(const void *data, size_t len, uint8_t out[16]);
void cove_sha256(const void *data, size_t len, uint8_t out[32]);
/* Hex-encode n bytes into out (2n+1 bytes). */
void cove_hex(const uint8_t *in, size_t n, char *out);

/* Streaming md5 (for large files). */
struct cove_md5_ctx;
struct cove_md5_ctx *cove_md5_new(void);
void cove_md5_update(struct cove_md5_ctx *c, const void *data, size_t len);
void cove_md5_final(struct cove_md5_ctx *c, uint8_t out[16]); /* frees c */

/* Streaming sha256. */
struct cove_sha256_ctx;
struct cove_sha256_ctx *cove_sha256_new(void);
void cove_sha256_update(struct cove_sha256_ctx *c, const void *data, size_t len);
void cove_sha256_final(struct cove_sha256_ctx *c, uint8_t out[32]); /* frees c */

#endif
