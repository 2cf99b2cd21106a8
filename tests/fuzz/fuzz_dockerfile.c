/* libFuzzer target: Dockerfile commands (src/image/dockerfile.c), which a client sends line by line (and
 * from_dockerfile reads from a user's file). Every line must parse or be refused with INVALID_ARGUMENT, with no
 * sanitizer report; expansion of any text with any variables terminates and stays a C string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/dockerfile.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	/* Lines as the client sends them: split on newlines. */
	char *lines[64];
	size_t n = 0;
	for (char *p = text, *nl; n < 64; p = nl + 1) {
		lines[n++] = p;
		nl = strchr(p, '\n');
		if (nl == NULL)
			break;
		*nl = '\0';
	}
	char **logical = NULL;
	size_t nl = cove_dockerfile_lines(lines, n, &logical);
	char *vars[] = {"A=1", "PATH=/bin", "EMPTY=", "X=${A}"};
	for (size_t i = 0; i < nl; i++) {
		struct cove_df_cmd c;
		struct cove_error *err = NULL;
		if (cove_dockerfile_parse(logical[i], &c, &err) < 0) {
			if (err == NULL || err->code != COVE_INVALID_ARGUMENT)
				abort();
			cove_error_free(err);
		} else {
			for (size_t k = 0; k < c.n_args; k++) {
				if (c.args[k] == NULL)
					continue;
				char *e = cove_dockerfile_expand(c.args[k], vars, 4);
				char *w = cove_dockerfile_word(c.args[k], vars, 4);
				if (e == NULL || w == NULL)
					abort();
				free(e);
				free(w);
			}
			cove_df_cmd_clear(&c);
		}
		char *e = cove_dockerfile_expand(logical[i], vars, 4);
		free(e);
		free(logical[i]);
	}
	free(logical);
	free(text);
	return 0;
}
