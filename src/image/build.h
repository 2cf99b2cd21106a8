/* Inside the image builder (builder.c, base.c, copy.c, manifest.c): one build's state, and what the files
 * share. Not for other modules, which use builder.h. */
#ifndef COVE_IMAGE_BUILD_H
#define COVE_IMAGE_BUILD_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.pb-c.h"
#include "image/dockerfile.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/map.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct cove_call;
struct cove_container;
struct cove_ctx;
struct cove_image_info;
struct cove_workq;
struct event;

/* A growable, NULL-terminated list of strings. */
struct strv {
	char **v;
	size_t n;
};

static inline void
strv_add(struct strv *s, const char *x)
{
	s->v = xrealloc(s->v, (s->n + 2) * sizeof(char *));
	s->v[s->n++] = xstrdup(x);
	s->v[s->n] = NULL;
}

static inline void
strv_clear(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Set NAME=value in an env list (replacing an earlier NAME). */
static inline void
env_set(struct strv *env, const char *name, const char *value)
{
	size_t nl = strlen(name);
	char *kv = xasprintf("%s=%s", name, value);
	for (size_t i = 0; i < env->n; i++) {
		if (strncmp(env->v[i], name, nl) == 0 && env->v[i][nl] == '=') {
			free(env->v[i]);
			env->v[i] = kv;
			return;
		}
	}
	strv_add(env, kv);
	free(kv);
}

static inline void
strv_copy(struct strv *dst, const struct strv *src)
{
	for (size_t i = 0; i < src->n; i++)
		strv_add(dst, src->v[i]);
}

struct log_entry {
	char *data;
};

struct joiner {
	struct joiner *next, *prev;
	struct build *bd;
	struct cove_call *call;
	struct event *timer;
	size_t next_entry; /* index of the next log entry to send */
};

/* A finished stage of a multi-stage Dockerfile (COPY --from=<name or index>, FROM <name>). */
struct stage {
	char *name; /* NULL: unnamed */
	char state[65];
	struct strv layers, env, shell, cmd, entrypoint;
	char *workdir, *user;
};

struct build {
	struct cove_builder *b;
	char *image_id;
	Modal__Client__Image *def;
	int force;
	char **lines;
	size_t n_lines, step;
	/* The image as built so far. */
	char state[65];
	struct strv layers, env, args, shell, cmd, entrypoint;
	char *workdir, *user;
	/* Progress. */
	struct log_entry *logs;
	size_t n_logs;
	int done;
	int status; /* GenericResult status once done */
	char *exception;
	struct joiner *joiners;
	/* The step in flight. */
	struct cove_container *container;
	char *scratch;
	char layer_hex[65];
	char *tail; /* the last output of a RUN, for its error */
	size_t tail_len;
	time_t started;
	/* Multi-stage: the stages before the current one, and the current one's name. */
	struct stage *stages;
	size_t n_stages;
	char *stage_name;
	int from_seen;
	int fn_started; /* run_function: its container runs (or ran) */
	char *build_function_id; /* run_function's builder function, or NULL */
	/* COPY --from a tool image made from its wheel (wheel.h): the image, its layer ("<hex>/fs") and state. */
	char *tool_from, *tool_layer;
	char tool_state[65];
	int resumed; /* the step in flight resumes after its callback: build_next does not announce it again */
};

struct cove_builder {
	struct cove_ctx *ctx;
	char *image_dir, *layers_dir, *images_dir, *tmp_dir;
	char *registry_mirror, *debian_mirror, *ca_bundle;
	struct strv insecure;
	struct cove_map builds; /* image id -> struct build (finished ones stay, for their logs) */
	struct cove_workq *workq;
};

/* manifest.c: the layer store and built images' manifests, and the cache chain. */
int build_manifest_write(struct cove_builder *b, const struct build *bd, struct cove_error **err);
/* Read image_id's manifest into info (and its SHELL into shell, if not NULL); NOT_FOUND if it is not built. */
int build_manifest_read(struct cove_builder *b, const char *image_id, struct cove_image_info *info, struct strv *shell,
			struct cove_error **err);
void build_free_list(char **v, size_t n);
/* state = sha256(state, what, extra): the key of everything so far. */
void build_chain(struct build *bd, const char *what, const char *extra);
int build_layer_exists(struct cove_builder *b, const char *hex);
/* The layer for the current state (bd->layer_hex): 1 if it must be made (not cached, or forced). */
int build_layer_needed(struct build *bd);
/* Move a finished layer's tree (src) into the store as bd->layer_hex and add it to the image. */
int build_layer_commit(struct build *bd, const char *src, struct cove_error **err);

/* builder.c: progress and the step machine. */
void build_log(struct build *bd, const char *data, size_t len);
void build_logf(struct build *bd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fail the build with err (taken). */
void build_fail(struct build *bd, struct cove_error *err);
/* The asynchronous part of a step ended: drop its scratch directory, then fail with err (taken) or go on. */
void build_step_done(struct build *bd, struct cove_error *err, int advance);
void build_next(struct build *bd);
/* $VARS of an instruction's argument (build args, then env); an ENV/ARG value (quotes, then $VARS). */
char *build_expand(const struct build *bd, const char *text);
char *build_word(const struct build *bd, const char *raw);

/* base.c: FROM (earlier images and stages, registries, Debian's packages) and multi-stage builds. */
/* 1 done, 0 continues asynchronously, -1 error. */
int build_step_from(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err);
void build_stage_push(struct build *bd);
void build_stages_free(struct build *bd);
const struct stage *build_stage_find(const struct build *bd, const char *name);

/* copy.c: COPY/ADD from the build context, and COPY --from. 1 done, -1 error. */
int build_step_copy(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err);

#endif
