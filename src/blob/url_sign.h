/* Signed blob-port URLs: what Cove hands out is the only thing the blob port serves.
 *
 * A signed request target is
 *     <path>?[<params>&]exp=<unix seconds>&sig=<64 lower-case hex>
 * where sig is HMAC-SHA256, under a key that never leaves the host, of
 *     "cove-blob-url-v1\n" <method> "\n" <the target up to, not including, "&sig=">
 * so one signature names one method, one object (the path), its parameters (a block slice's off/len/pad) and its
 * expiry. HEAD is signed and checked as GET (a HEAD is a GET without its body). Only unreserved characters
 * appear in what Cove signs, so HTTP clients pass the target on unchanged (aiohttp/yarl keep the query as given).
 * Modelled on S3's presigned URLs (X-Amz-Expires, X-Amz-Signature), which modal's client already expects.
 *
 * Pure functions, no I/O: tests/fuzz/fuzz_blob_url.c covers every byte a client can send. */
#ifndef COVE_BLOB_URL_SIGN_H
#define COVE_BLOB_URL_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define COVE_BLOB_KEY_BYTES 32
#define COVE_BLOB_SIG_HEX 64

/* The signed target for method ("GET", "PUT", "POST"; "HEAD" signs as "GET") on path (starting with '/',
 * unreserved characters and '/' only) with extra query params (NULL or "" for none; "a=1&b=2", no '?'), valid
 * until expires (unix seconds). Caller frees. */
char *cove_blob_url_sign(const uint8_t key[COVE_BLOB_KEY_BYTES], const char *method, const char *path,
			 const char *params, int64_t expires);

struct cove_blob_url {
	const char *path; /* into the target */
	size_t path_len;
	const char *params; /* the query before exp (may be empty); into the target */
	size_t params_len;
	int64_t expires;
};

/* Check target[0..len) (the request-target as received) for method[0..method_len) at time now. 0 and *out
 * filled when the signature is Cove's, made for this method and this target, and not expired; else -1 and
 * *why (a static string) says which check failed: no signature, malformed, wrong signature (a tampered
 * target, another object or method, another key), expired. The comparison takes the same time wherever the
 * signatures differ. */
int cove_blob_url_verify(const uint8_t key[COVE_BLOB_KEY_BYTES], const char *method, size_t method_len,
			 const char *target, size_t len, int64_t now, struct cove_blob_url *out, const char **why);

#endif
