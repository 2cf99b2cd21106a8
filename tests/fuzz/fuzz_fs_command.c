/* libFuzzer target: the sandbox filesystem helper's command parser (src/util/json.c, src/sandbox/fs_command.c),
 * which reads whatever JSON a sandbox's exec hands it. Every input must either decode or be refused, with no
 * sanitizer report; decoded commands keep their invariants, and strings written back out stay JSON. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/fs_command.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_doc *doc = NULL;
	struct fs_command cmd;
	char err[256];
	if (fs_command_parse((const char *)data, size, &doc, &cmd, err, sizeof(err)) == 0) {
		if (cmd.path == NULL || cmd.path[0] != '/' || (cmd.filter & ~(unsigned)FS_EV_ALL) != 0)
			abort();
		/* What the helper prints for this path must itself parse back to the same string. */
		char *out = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&out, &len);
		json_write_string(f, cmd.path);
		fclose(f);
		struct json_doc *back = json_parse(out, len, NULL, 0);
		if (back == NULL || json_root(back)->type != JSON_STRING || strcmp(json_root(back)->string, cmd.path) != 0)
			abort();
		json_free(back);
		free(out);
	} else if (err[0] == '\0') {
		abort(); /* a refusal always says why */
	}
	json_free(doc);
	return 0;
}
