/* libFuzzer target: what a registry sends that src/image/registry.c parses without a network round trip to
 * check it: WWW-Authenticate challenges and image config blobs. Every input must parse or be refused, with no
 * sanitizer report, and what parses keeps its invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/registry.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	struct cove_auth_challenge ch;
	if (cove_auth_challenge_parse(text, &ch) == 0) {
		if (ch.scheme == NULL || ch.scheme[0] == '\0')
			abort();
		cove_auth_challenge_free(&ch);
	} else if (ch.scheme || ch.realm || ch.service || ch.scope) {
		abort();
	}
	struct cove_image_config c;
	struct cove_error *err = NULL;
	if (cove_image_config_parse(text, size, &c, &err) == 0) {
		for (size_t i = 0; i < c.n_env; i++)
			if (c.env[i] == NULL)
				abort();
		for (size_t i = 0; i < c.n_cmd; i++)
			if (c.cmd[i] == NULL)
				abort();
		cove_image_config_free(&c);
	} else {
		if (err == NULL || err->code != COVE_INVALID_ARGUMENT || c.env || c.cmd || c.workdir)
			abort();
		cove_error_free(err);
	}
	free(text);
	return 0;
}
