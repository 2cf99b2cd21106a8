#include "util/hash.h"

#include <openssl/evp.h>

#include "util/alloc.h"

static void
digest(const EVP_MD *md, const void *data, size_t len, uint8_t *out)
{
	unsigned int n = 0;
	if (EVP_Digest(data, len, out, &n, md, NULL) != 1)
		abort();
}

void
cove_md5(const void *data, size_t len, uint8_t out[16])
{
	digest(EVP_md5(), data, len, out);
}

void
cove_sha256(const void *data, size_t len, uint8_t out[32])
{
	digest(EVP_sha256(), data, len, out);
}

void
cove_hex(const uint8_t *in, size_t n, char *out)
{
	static const char hexdigits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdigits[in[i] >> 4];
		out[2 * i + 1] = hexdigits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void
cove_md5_hex(const void *data, size_t len, char out[33])
{
	uint8_t d[16];
	cove_md5(data, len, d);
	cove_hex(d, 16, out);
}

void
cove_sha256_hex(const void *data, size_t len, char out[65])
{
	uint8_t d[32];
	cove_sha256(data, len, d);
	cove_hex(d, 32, out);
}

struct cove_md5_ctx {
	EVP_MD_CTX *ctx;
};

struct cove_md5_ctx *
cove_md5_new(void)
{
	struct cove_md5_ctx *c = xmalloc(sizeof(*c));
	c->ctx = EVP_MD_CTX_new();
	if (c->ctx == NULL || EVP_DigestInit_ex(c->ctx, EVP_md5(), NULL) != 1)
		abort();
	return c;
}

void
cove_md5_update(struct cove_md5_ctx *c, const void *data, size_t len)
{
	if (EVP_DigestUpdate(c->ctx, data, len) != 1)
		abort();
}

void
cove_md5_final(struct cove_md5_ctx *c, uint8_t out[16])
{
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(c->ctx, out, &n) != 1)
		abort();
	EVP_MD_CTX_free(c->ctx);
	free(c);
}

struct cove_sha256_ctx {
	EVP_MD_CTX *ctx;
};

struct cove_sha256_ctx *
cove_sha256_new(void)
{
	struct cove_sha256_ctx *c = xmalloc(sizeof(*c));
	c->ctx = EVP_MD_CTX_new();
	if (c->ctx == NULL || EVP_DigestInit_ex(c->ctx, EVP_sha256(), NULL) != 1)
		abort();
	return c;
}

void
cove_sha256_update(struct cove_sha256_ctx *c, const void *data, size_t len)
{
	if (EVP_DigestUpdate(c->ctx, data, len) != 1)
		abort();
}

void
cove_sha256_final(struct cove_sha256_ctx *c, uint8_t out[32])
{
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(c->ctx, out, &n) != 1)
		abort();
	EVP_MD_CTX_free(c->ctx);
	free(c);
}
