/* Dockerfile commands, as the client sends them (one string per line of a Dockerfile, or one per method of
 * an Image chain). Parsing only: what each command means is the builder's (builder.c). */
#ifndef COVE_IMAGE_DOCKERFILE_H
#define COVE_IMAGE_DOCKERFILE_H

#include <stddef.h>

#include "util/error.h"

enum cove_df_op {
	COVE_DF_FROM,
	COVE_DF_RUN,
	COVE_DF_COPY, /* and ADD (local sources only) */
	COVE_DF_ENV,
	COVE_DF_ARG,
	COVE_DF_WORKDIR,
	COVE_DF_USER,
	COVE_DF_SHELL,
	COVE_DF_CMD,
	COVE_DF_ENTRYPOINT,
	COVE_DF_NOOP, /* LABEL, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK, MAINTAINER, ONBUILD: recorded, no effect */
};

struct cove_df_cmd {
	enum cove_df_op op;
	char *keyword; /* upper-case, as written: "RUN" */
	char *text;    /* everything after the keyword (and its flags), trimmed */
	int json;      /* RUN/CMD/ENTRYPOINT/SHELL in exec form: args is the JSON array */
	char **args;   /* exec form: the array; COPY: sources then destination; ENV/ARG: name, value pairs, the value
			* as written, quotes included (see cove_dockerfile_word; NULL for an ARG without default); FROM:
			* reference [, stage name]; others: text as one arg */
	size_t n_args;
	char *from;    /* COPY --from= */
	char *chmod;   /* COPY --chmod= (octal) */
};

/* Split the client's command list into logical commands: joins lines ending in a backslash, drops blank lines
 * and comments. Returns the count; *out is an array of strings (caller frees each and the array). */
size_t cove_dockerfile_lines(char *const *lines, size_t n, char ***out);

/* Parse one logical command. INVALID_ARGUMENT naming the command when it is malformed or unknown. */
int cove_dockerfile_parse(const char *line, struct cove_df_cmd *out, struct cove_error **err);
void cove_df_cmd_clear(struct cove_df_cmd *c);

/* $NAME and ${NAME} (and ${NAME:-default}, ${NAME:+alt}) from vars ("NAME=value" strings, later ones win);
 * unknown names expand to "". A backslash escapes a dollar. Caller frees. */
char *cove_dockerfile_expand(const char *s, char *const *vars, size_t n_vars);

/* One word as Docker reads ENV and ARG values: 'single quotes' keep everything literal, "double quotes" expand
 * variables (\", \\ and \$ escape), unquoted text expands variables and a backslash escapes any character;
 * the quotes themselves go. Caller frees. */
char *cove_dockerfile_word(const char *s, char *const *vars, size_t n_vars);

#endif
