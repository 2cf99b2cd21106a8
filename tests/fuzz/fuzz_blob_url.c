/* libFuzzer target: the blob port's signed-URL check (src/blob/url_sign.c), which parses every request target a
 * stranger sends the blob port. Input: a method selector byte, then the target. Nothing but a target signed under
 * the key may verify (and what verifies re-signs to itself); a signed target with any one byte changed, or under
 * another method, must not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob/url_sign.h"

static const uint8_t key[COVE_BLOB_KEY_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
static const char *const methods[] = {"GET", "HEAD", "PUT", "POST", "DELETE"};
#define NOW 1700000000

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *method = methods[data[0] % 5];
	const char *target = (const char *)data + 1;
	size_t len = size - 1;
	struct cove_blob_url u;
	const char *why = NULL;
	if (cove_blob_url_verify(key, method, strlen(method), target, len, NOW, &u, &why) == 0) {
		/* Only a signature under this key gets here, and then the target is exactly what signing makes. */
		if (u.expires < NOW || u.path != target || u.path_len > len || u.params_len > len)
			abort();
		char *path = strndup(u.path, u.path_len), *params = strndup(u.params, u.params_len);
		char *again = cove_blob_url_sign(key, method, path, params, u.expires);
		if (strlen(again) != len || memcmp(again, target, len) != 0)
			abort(); /* a second spelling of one signature */
		free(again);
		free(path);
		free(params);
	} else if (why == NULL) {
		abort();
	}
	/* A real target for a path the input picks, one byte changed at a place it picks. */
	size_t plen = len < 40 ? len : 40;
	char path[48] = "/blob/";
	for (size_t i = 0; i < plen; i++) {
		char c = target[i];
		path[6 + i] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : 'x';
	}
	path[6 + plen] = '\0';
	char *t = cove_blob_url_sign(key, method, path, size > 3 && data[1] & 1 ? "off=1&len=2" : NULL, NOW + 60);
	size_t n = strlen(t);
	if (cove_blob_url_verify(key, method, strlen(method), t, n, NOW, &u, &why) != 0)
		abort(); /* the real one must pass */
	const char *other = methods[(data[0] + 1 + (size > 2 ? data[2] % 4 : 0)) % 5];
	int same = strcmp(other, method) == 0 || (strcmp(other, "HEAD") == 0 && strcmp(method, "GET") == 0) ||
		   (strcmp(other, "GET") == 0 && strcmp(method, "HEAD") == 0);
	if (!same && cove_blob_url_verify(key, other, strlen(other), t, n, NOW, &u, &why) == 0)
		abort(); /* another method */
	if (cove_blob_url_verify(key, method, strlen(method), t, n, NOW + 61, &u, &why) == 0)
		abort(); /* expired */
	size_t at = (size > 2 ? ((size_t)data[1] << 8 | data[size - 1]) : 0) % n;
	char was = t[at];
	t[at] = (char)(data[size - 1] == (uint8_t)was ? was ^ 1 : data[size - 1]);
	if (cove_blob_url_verify(key, method, strlen(method), t, n, NOW, &u, &why) == 0)
		abort(); /* a forgery */
	free(t);
	return 0;
}
