/* Signed blob-port URLs (see url_sign.h). Everything verify reads is network input: lengths are checked before
 * every access, nothing allocates, and the MAC is compared in constant time. */
#include "blob/url_sign.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/alloc.h"
#include "util/hash.h"

#define DOMAIN "cove-blob-url-v1\n"
/* Cove's own URLs are under 200 bytes; a longer target was not made here. */
#define MAX_TARGET 1024
#define MAX_METHOD 16

/* The method a signature names: HEAD reads what GET reads. */
static void
method_class(const char *method, size_t len, const char **out, size_t *out_len)
{
	if (len == 4 && memcmp(method, "HEAD", 4) == 0) {
		*out = "GET";
		*out_len = 3;
		return;
	}
	*out = method;
	*out_len = len;
}

/* HMAC of DOMAIN method "\n" signed[0..len): 0, or -1 if the pieces do not fit (never for Cove's own). */
static int
mac(const uint8_t key[COVE_BLOB_KEY_BYTES], const char *method, size_t method_len, const char *signed_part,
    size_t len, uint8_t out[32])
{
	const char *m;
	size_t ml;
	method_class(method, method_len, &m, &ml);
	char msg[sizeof(DOMAIN) + MAX_METHOD + 1 + MAX_TARGET];
	if (ml > MAX_METHOD || len > MAX_TARGET)
		return -1;
	size_t n = 0;
	memcpy(msg, DOMAIN, sizeof(DOMAIN) - 1);
	n += sizeof(DOMAIN) - 1;
	memcpy(msg + n, m, ml);
	n += ml;
	msg[n++] = '\n';
	memcpy(msg + n, signed_part, len);
	n += len;
	unsigned int out_len = 0;
	if (HMAC(EVP_sha256(), key, COVE_BLOB_KEY_BYTES, (const unsigned char *)msg, n, out, &out_len) == NULL ||
	    out_len != 32)
		return -1;
	return 0;
}

char *
cove_blob_url_sign(const uint8_t key[COVE_BLOB_KEY_BYTES], const char *method, const char *path, const char *params,
		   int64_t expires)
{
	char *signed_part = xasprintf("%s?%s%sexp=%lld", path, params && *params ? params : "",
				      params && *params ? "&" : "", (long long)expires);
	uint8_t m[32];
	if (mac(key, method, strlen(method), signed_part, strlen(signed_part), m) < 0)
		abort(); /* callers pass their own short paths */
	char hex[COVE_BLOB_SIG_HEX + 1];
	cove_hex(m, 32, hex);
	char *target = xasprintf("%s&sig=%s", signed_part, hex);
	free(signed_part);
	return target;
}

static int
hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
cove_blob_url_verify(const uint8_t key[COVE_BLOB_KEY_BYTES], const char *method, size_t method_len,
		     const char *target, size_t len, int64_t now, struct cove_blob_url *out, const char **why)
{
	static const char sig_tag[] = "&sig=";
	static const char exp_tag[] = "exp=";
	const size_t sig_tail = sizeof(sig_tag) - 1 + COVE_BLOB_SIG_HEX;
	const char *q = memchr(target, '?', len);
	if (q == NULL || len < sig_tail || memmem(q, len - (size_t)(q - target), "sig=", 4) == NULL) {
		*why = "the URL carries no signature";
		return -1;
	}
	if (len > MAX_TARGET || method_len > MAX_METHOD) {
		*why = "the URL is too long to be signed";
		return -1;
	}
	/* "...&sig=<64 hex>" must end the target, after the '?'. */
	size_t signed_len = len - sig_tail;
	if (signed_len <= (size_t)(q - target) || memcmp(target + signed_len, sig_tag, sizeof(sig_tag) - 1) != 0) {
		*why = "malformed signature";
		return -1;
	}
	uint8_t got[32];
	const char *hex = target + signed_len + sizeof(sig_tag) - 1;
	for (size_t i = 0; i < 32; i++) {
		int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			*why = "malformed signature";
			return -1;
		}
		got[i] = (uint8_t)(hi << 4 | lo);
	}
	/* "exp=<digits>" ends what was signed, right after the '?' or a '&'. */
	size_t qoff = (size_t)(q - target) + 1; /* first byte of the query */
	size_t d = signed_len;
	while (d > qoff && target[d - 1] >= '0' && target[d - 1] <= '9')
		d--;
	size_t digits = signed_len - d;
	size_t exp_at = d >= qoff + sizeof(exp_tag) - 1 ? d - (sizeof(exp_tag) - 1) : 0;
	if (digits == 0 || digits > 18 || exp_at < qoff || memcmp(target + exp_at, exp_tag, sizeof(exp_tag) - 1) != 0 ||
	    (exp_at > qoff && target[exp_at - 1] != '&')) {
		*why = "malformed expiry";
		return -1;
	}
	int64_t expires = 0;
	for (size_t i = d; i < signed_len; i++)
		expires = expires * 10 + (target[i] - '0');
	uint8_t want[32];
	if (mac(key, method, method_len, target, signed_len, want) < 0 || CRYPTO_memcmp(want, got, 32) != 0) {
		*why = "the signature does not match this method and URL";
		return -1;
	}
	/* Only after the MAC: an expiry nobody signed says nothing. */
	if (expires < now) {
		*why = "the URL has expired";
		return -1;
	}
	out->path = target;
	out->path_len = (size_t)(q - target);
	out->params = target + qoff;
	out->params_len = exp_at > qoff ? exp_at - 1 - qoff : 0;
	out->expires = expires;
	return 0;
}
