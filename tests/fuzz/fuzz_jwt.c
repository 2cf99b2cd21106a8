/* libFuzzer target: the task command router's bearer-token check (src/sandbox/jwt.c), which parses whatever a
 * caller puts in its authorization header. Nothing but a token this process issued may verify; a token it
 * issued, with any one byte changed, must not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/jwt.h"

static uint8_t key[COVE_JWT_KEY_BYTES];
static int ready;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		cove_jwt_key_new(key);
		ready = 1;
	}
	char *token = malloc(size + 1);
	memcpy(token, data, size);
	token[size] = '\0';
	char sub[64];
	struct cove_error *err = NULL;
	if (cove_jwt_verify(key, token, "tcr", 1000, sub, sizeof(sub), &err) == 0)
		abort(); /* a forgery */
	cove_error_free(err);
	free(token);
	/* A real token, one byte flipped at a place the input picks. */
	if (size >= 2) {
		char *t = cove_jwt_issue(key, "ta-fuzz", "tcr", 1000, 60);
		size_t n = strlen(t), at = ((size_t)data[0] << 8 | data[1]) % n;
		char was = t[at];
		t[at] = (char)(data[size - 1] == (uint8_t)was ? was ^ 1 : data[size - 1]);
		err = NULL;
		if (t[at] != '\0' && cove_jwt_verify(key, t, "tcr", 1000, sub, sizeof(sub), &err) == 0)
			abort();
		cove_error_free(err);
		free(t);
	}
	return 0;
}
