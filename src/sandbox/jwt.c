/* HS256 JSON Web Tokens (see jwt.h). Only tokens this process issued verify, so the payload parser needs to
 * read exactly the shape cove_jwt_issue writes, and it runs only after the signature matched. */
#include "sandbox/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util/alloc.h"

#define MAX_TOKEN 2048

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void
cove_jwt_key_new(uint8_t key[COVE_JWT_KEY_BYTES])
{
	size_t got = 0;
	while (got < COVE_JWT_KEY_BYTES) {
		ssize_t n = getrandom(key + got, COVE_JWT_KEY_BYTES - got, 0);
		if (n <= 0)
			abort();
		got += (size_t)n;
	}
}

/* base64url without padding; out must hold 4 * ceil(n / 3) + 1 bytes. Returns the length written. */
static size_t
b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64url[(v >> 18) & 63];
		out[o++] = b64url[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = b64url[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = b64url[v & 63];
	}
	out[o] = '\0';
	return o;
}

static int
b64_value(char c)
{
	const char *p = c ? strchr(b64url, c) : NULL;
	return p ? (int)(p - b64url) : -1;
}

/* Decode n base64url characters into out (cap bytes); -1 if not base64url or if it does not fit. */
static int
b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	if (n % 4 == 1 || n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > cap)
		return -1;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* Only the canonical encoding: the bits left over must be zero (else two strings decode alike). */
	if (acc & ((1u << bits) - 1))
		return -1;
	*out_len = o;
	return 0;
}

static int
is_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return 0;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_'))
			return 0;
	return 1;
}

static void
sign(const uint8_t key[COVE_JWT_KEY_BYTES], const char *data, size_t len, uint8_t mac[32])
{
	unsigned int mac_len = 32;
	if (HMAC(EVP_sha256(), key, COVE_JWT_KEY_BYTES, (const unsigned char *)data, len, mac, &mac_len) == NULL ||
	    mac_len != 32)
		abort();
}

static const char header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

char *
cove_jwt_issue(const uint8_t key[COVE_JWT_KEY_BYTES], const char *subject, const char *audience, int64_t now,
	       int64_t lifetime_s)
{
	if (!is_id(subject) || !is_id(audience))
		abort();
	char payload[512];
	int plen = snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"aud\":\"%s\",\"iat\":%lld,\"exp\":%lld}", subject,
			    audience, (long long)now, (long long)(now + lifetime_s));
	if (plen < 0 || (size_t)plen >= sizeof(payload))
		abort();
	char token[MAX_TOKEN];
	size_t n = b64_encode((const uint8_t *)header_json, sizeof(header_json) - 1, token);
	token[n++] = '.';
	n += b64_encode((const uint8_t *)payload, (size_t)plen, token + n);
	uint8_t mac[32];
	sign(key, token, n, mac);
	token[n++] = '.';
	n += b64_encode(mac, sizeof(mac), token + n);
	return xstrndup(token, n);
}

/* The value of "name": in the payload: a string (into out) or an integer. */
static int
claim_string(const char *json, const char *name, char *out, size_t cap)
{
	char key[32];
	snprintf(key, sizeof(key), "\"%s\":\"", name);
	const char *p = strstr(json, key);
	if (p == NULL)
		return -1;
	p += strlen(key);
	const char *end = strchr(p, '"');
	if (end == NULL || (size_t)(end - p) >= cap)
		return -1;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return 0;
}

static int
claim_int(const char *json, const char *name, int64_t *out)
{
	char key[32];
	snprintf(key, sizeof(key), "\"%s\":", name);
	const char *p = strstr(json, key);
	if (p == NULL)
		return -1;
	char *end;
	long long v = strtoll(p + strlen(key), &end, 10);
	if (end == p + strlen(key))
		return -1;
	*out = v;
	return 0;
}

int
cove_jwt_verify(const uint8_t key[COVE_JWT_KEY_BYTES], const char *token, const char *audience, int64_t now,
		char *sub, size_t subcap, struct cove_error **err)
{
	size_t n = token ? strlen(token) : 0;
	const char *dot1 = token ? strchr(token, '.') : NULL;
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (n == 0 || n >= MAX_TOKEN || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		return cove_error_set(err, COVE_UNAUTHENTICATED, "the bearer token is not a token this server issued");
	uint8_t mac[32], given[64];
	size_t given_len = 0;
	sign(key, token, (size_t)(dot2 - token), mac);
	if (b64_decode(dot2 + 1, strlen(dot2 + 1), given, sizeof(given), &given_len) < 0 || given_len != sizeof(mac) ||
	    CRYPTO_memcmp(given, mac, sizeof(mac)) != 0)
		return cove_error_set(err, COVE_UNAUTHENTICATED,
				      "the bearer token's signature does not match (issued by another server, or "
				      "before this server restarted)");
	char payload[MAX_TOKEN];
	size_t plen = 0;
	if (b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), (uint8_t *)payload, sizeof(payload) - 1, &plen) < 0)
		return cove_error_set(err, COVE_UNAUTHENTICATED, "the bearer token's payload is not base64url");
	payload[plen] = '\0';
	char aud[130];
	int64_t exp = 0;
	if (claim_string(payload, "aud", aud, sizeof(aud)) < 0 || strcmp(aud, audience) != 0)
		return cove_error_set(err, COVE_UNAUTHENTICATED, "the bearer token is not meant for this service");
	if (claim_int(payload, "exp", &exp) < 0 || exp <= now)
		return cove_error_set(err, COVE_UNAUTHENTICATED, "the bearer token has expired");
	if (claim_string(payload, "sub", sub, subcap) < 0)
		return cove_error_set(err, COVE_UNAUTHENTICATED, "the bearer token names no subject");
	return 0;
}
