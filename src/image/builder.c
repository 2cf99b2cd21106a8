/* The image builder (see builder.h): a build is a small state machine on the event loop. Each step either
 * completes at once (metadata, cached layers, COPY) or starts something and continues from its callback (a RUN
 * container, a debootstrap, a registry pull on a worker thread, a run_function container). This file owns the
 * state machine, build logs and their readers, RUN and run_function; base.c, copy.c and manifest.c the rest. */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "image/build.h"
#include "image/builder.h"
#include "image/dockerfile.h"
#include "image/registry.h"
#include "runtime/runtime.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/map.h"
#include "util/pb.h"
#include "util/workq.h"

const char *const cove_ca_env[] = {"SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", NULL};

/* ---- logs and joiners ---- */

static void
send_entry(struct joiner *j, size_t i)
{
	struct build *bd = j->bd;
	Modal__Client__TaskLogs tl = MODAL__CLIENT__TASK_LOGS__INIT;
	tl.data = bd->logs[i].data;
	tl.file_descriptor = MODAL__CLIENT__FILE_DESCRIPTOR__FILE_DESCRIPTOR_STDOUT;
	Modal__Client__TaskLogs *tls[1] = {&tl};
	Modal__Client__ImageJoinStreamingResponse resp = MODAL__CLIENT__IMAGE_JOIN_STREAMING_RESPONSE__INIT;
	resp.task_logs = tls;
	resp.n_task_logs = 1;
	char id[32];
	snprintf(id, sizeof(id), "%zu", i + 1);
	resp.entry_id = id;
	cove_api_send(j->call, &resp.base);
}

static void
send_result(struct build *bd, struct cove_call *call)
{
	Modal__Client__GenericResult result = MODAL__CLIENT__GENERIC_RESULT__INIT;
	result.status = bd->status;
	if (bd->exception)
		result.exception = bd->exception;
	Modal__Client__ImageMetadata meta = MODAL__CLIENT__IMAGE_METADATA__INIT;
	meta._image_builder_version_case = MODAL__CLIENT__IMAGE_METADATA___IMAGE_BUILDER_VERSION_IMAGE_BUILDER_VERSION;
	meta.image_builder_version = "2025.06";
	Modal__Client__ImageJoinStreamingResponse resp = MODAL__CLIENT__IMAGE_JOIN_STREAMING_RESPONSE__INIT;
	resp.result = &result;
	resp.metadata = &meta;
	resp.eof = 1;
	char id[32];
	snprintf(id, sizeof(id), "%zu", bd->n_logs);
	resp.entry_id = id;
	cove_api_send(call, &resp.base);
}

static void
joiner_free(struct joiner *j)
{
	struct build *bd = j->bd;
	if (j->prev)
		j->prev->next = j->next;
	else
		bd->joiners = j->next;
	if (j->next)
		j->next->prev = j->prev;
	if (j->timer)
		event_free(j->timer);
	free(j);
}

/* Answer the joiner's call and drop it (the hook first: finishing may free the call). */
static void
joiner_finish(struct joiner *j, int code, const char *message)
{
	struct cove_call *call = j->call;
	cove_call_on_cancel(call, NULL, NULL);
	joiner_free(j);
	cove_call_finish(call, code, message);
}

static void
joiner_flush(struct joiner *j)
{
	struct build *bd = j->bd;
	while (j->next_entry < bd->n_logs)
		send_entry(j, j->next_entry++);
	if (bd->done) {
		send_result(bd, j->call);
		joiner_finish(j, COVE_OK, NULL);
	}
}

static void
joiners_wake(struct build *bd)
{
	struct joiner *next;
	for (struct joiner *j = bd->joiners; j; j = next) {
		next = j->next;
		joiner_flush(j);
	}
}

void
build_log(struct build *bd, const char *data, size_t len)
{
	if (len == 0)
		return;
	bd->logs = xrealloc(bd->logs, (bd->n_logs + 1) * sizeof(*bd->logs));
	bd->logs[bd->n_logs++].data = xstrndup(data, len);
	joiners_wake(bd);
}

void
build_logf(struct build *bd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	build_log(bd, s, strlen(s));
	log_debug("image %s: %.*s", bd->image_id, (int)(strlen(s) && s[strlen(s) - 1] == '\n' ? strlen(s) - 1 : strlen(s)), s);
	free(s);
}

static void
build_finish(struct build *bd, int status, const char *exception)
{
	bd->done = 1;
	bd->status = status;
	free(bd->exception);
	bd->exception = exception ? xstrdup(exception) : NULL;
	if (status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS)
		build_logf(bd, "Built image %s in %.1f s.\n", bd->image_id, difftime(time(NULL), bd->started));
	else
		build_logf(bd, "Image build for %s failed: %s\n", bd->image_id, exception ? exception : "");
	joiners_wake(bd);
}

void
build_fail(struct build *bd, struct cove_error *err)
{
	build_finish(bd, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_FAILURE, err ? err->msg : "unknown error");
	cove_error_free(err);
}

/* The asynchronous part of a step ended: drop its scratch directory, then fail the build with err (taken) or
 * go on (past this step if advance). */
void
build_step_done(struct build *bd, struct cove_error *err, int advance)
{
	struct cove_error *ignored = NULL;
	cove_remove_tree(bd->scratch, &ignored);
	cove_error_free(ignored);
	free(bd->scratch);
	bd->scratch = NULL;
	if (err) {
		build_fail(bd, err);
		return;
	}
	if (advance)
		bd->step++;
	build_next(bd);
}

/* ---- RUN ---- */

static void
run_output(void *owner, int fd, const char *data, size_t len)
{
	(void)fd;
	struct build *bd = owner;
	build_log(bd, data, len);
	/* Keep the last 4 KiB for the error message. */
	size_t keep = 4096;
	bd->tail = xrealloc(bd->tail, bd->tail_len + len + 1);
	memcpy(bd->tail + bd->tail_len, data, len);
	bd->tail_len += len;
	if (bd->tail_len > keep) {
		memmove(bd->tail, bd->tail + bd->tail_len - keep, keep);
		bd->tail_len = keep;
	}
	bd->tail[bd->tail_len] = '\0';
}

static void
run_exit(void *owner, int status)
{
	struct build *bd = owner;
	bd->container = NULL;
	struct cove_error *err = NULL;
	cleanup_free char *upper = xasprintf("%s/upper", bd->scratch);
	if (status != 0) {
		cove_error_set(&err, COVE_FAILED_PRECONDITION, "step %zu/%zu `%s` %s %d:\n%s", bd->step + 1, bd->n_lines,
			       bd->lines[bd->step],
			       status == COVE_EXIT_OOM ? "ran out of memory" : status > 0 ? "exited with status" : "was killed by signal",
			       status == COVE_EXIT_OOM ? 0 : status > 0 ? status : -status, bd->tail ? bd->tail : "");
	} else {
		build_layer_commit(bd, upper, &err);
	}
	free(bd->tail);
	bd->tail = NULL;
	bd->tail_len = 0;
	build_step_done(bd, err, 1);
}

static int
secret_env(struct build *bd, struct strv *env, struct cove_error **err)
{
	for (size_t i = 0; i < bd->def->n_secret_ids; i++) {
		cleanup_free uint8_t *data = NULL;
		size_t len = 0;
		if (cove_store_object_get(bd->b->ctx->store, bd->def->secret_ids[i], NULL, &data, &len, err) < 0)
			return cove_error_wrap(err, "secret %s", bd->def->secret_ids[i]);
		Modal__Client__SecretGetOrCreateRequest *sec =
			pb_unpack(&modal__client__secret_get_or_create_request__descriptor, data, len);
		if (sec == NULL)
			return cove_error_set(err, COVE_DATA_LOSS, "secret %s is corrupt in the store", bd->def->secret_ids[i]);
		for (size_t k = 0; k < sec->n_env_dict; k++)
			env_set(env, sec->env_dict[k]->key, sec->env_dict[k]->value);
		pb_free(sec);
	}
	return 0;
}

static int
step_run(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err)
{
	struct strv argv = {0}, env = {0};
	for (size_t i = 0; i < bd->env.n; i++)
		strv_add(&env, bd->env.v[i]);
	/* Build arguments are in the environment of RUN steps (not of the image), as Docker does. */
	for (size_t i = 0; i < bd->args.n; i++) {
		char *eq = strchr(bd->args.v[i], '=');
		if (eq) {
			char *name = xstrndup(bd->args.v[i], (size_t)(eq - bd->args.v[i]));
			env_set(&env, name, eq + 1);
			free(name);
		}
	}
	env_set(&env, "DEBIAN_FRONTEND", "noninteractive");
	struct cove_container_mount ca = {.source = bd->b->ca_bundle, .target = COVE_CA_PATH, .read_only = 1};
	if (bd->b->ca_bundle)
		for (size_t i = 0; cove_ca_env[i]; i++)
			env_set(&env, cove_ca_env[i], COVE_CA_PATH);
	int rv = -1;
	if (secret_env(bd, &env, err) < 0)
		goto out;
	if (c->json) {
		for (size_t i = 0; i < c->n_args; i++)
			strv_add(&argv, c->args[i]);
	} else {
		if (bd->shell.n) {
			for (size_t i = 0; i < bd->shell.n; i++)
				strv_add(&argv, bd->shell.v[i]);
		} else {
			strv_add(&argv, "/bin/sh");
			strv_add(&argv, "-c");
		}
		strv_add(&argv, c->text);
	}
	char rnd[17];
	cove_random_base62(rnd, 16);
	rnd[16] = '\0';
	bd->scratch = xasprintf("%s/run-%s", bd->b->tmp_dir, rnd);
	if (cove_mkdirs(bd->scratch, err) < 0)
		goto out;
	size_t n = bd->layers.n;
	const char **layers = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		layers[i] = bd->layers.v[n - 1 - i];
	struct cove_container_rootfs fs = {
		.layers_dir = bd->b->layers_dir,
		.layers = layers,
		.n_layers = n,
		.scratch = bd->scratch,
		.hostname = "cove-build",
		.user = bd->user,
	};
	static const struct cove_runtime_callbacks cb = {.on_output = run_output, .on_exit = run_exit};
	struct cove_container_spec spec = {
		.id = bd->image_id,
		.workdir = bd->workdir ? bd->workdir : "/",
		.argv = argv.v,
		.envp = env.v,
		.cb = &cb,
		.rootfs = &fs,
		.mounts = bd->b->ca_bundle ? &ca : NULL,
		.n_mounts = bd->b->ca_bundle ? 1 : 0,
	};
	struct cove_runtime *rt = bd->b->ctx->runtime;
	rv = rt->ops->start(rt, &spec, bd, &bd->container, err);
	free(layers);
	if (rv < 0)
		cove_error_wrap(err, "step %zu/%zu `%s`", bd->step + 1, bd->n_lines, bd->lines[bd->step]);
out:
	strv_clear(&argv);
	strv_clear(&env);
	if (rv < 0 && bd->scratch) {
		struct cove_error *ignored = NULL;
		cove_remove_tree(bd->scratch, &ignored);
		cove_error_free(ignored);
		free(bd->scratch);
		bd->scratch = NULL;
	}
	return rv;
}

/* ---- the steps ---- */

/* fn(text) with the build's variables: build args, then the image's env (which wins, as in Docker). */
static char *
with_vars(const struct build *bd, const char *text, char *(*fn)(const char *, char *const *, size_t))
{
	struct strv vars = {0};
	for (size_t i = 0; i < bd->args.n; i++)
		strv_add(&vars, bd->args.v[i]);
	for (size_t i = 0; i < bd->env.n; i++)
		strv_add(&vars, bd->env.v[i]);
	char *out = fn(text, vars.v, vars.n);
	strv_clear(&vars);
	return out;
}

char *
build_expand(const struct build *bd, const char *text)
{
	return with_vars(bd, text, cove_dockerfile_expand);
}

char *
build_word(const struct build *bd, const char *raw)
{
	return with_vars(bd, raw, cove_dockerfile_word);
}

static void
set_list(struct strv *l, const struct cove_df_cmd *c, const struct strv *shell)
{
	strv_clear(l);
	if (c->json) {
		for (size_t i = 0; i < c->n_args; i++)
			strv_add(l, c->args[i]);
		return;
	}
	if (shell && shell->n) {
		for (size_t i = 0; i < shell->n; i++)
			strv_add(l, shell->v[i]);
	} else {
		strv_add(l, "/bin/sh");
		strv_add(l, "-c");
	}
	strv_add(l, c->text);
}

static int
strcmp_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run one step: 1 done, 0 continues asynchronously, -1 error. */
static int
step(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err)
{
	if (bd->step == 0 && c->op != COVE_DF_FROM && c->op != COVE_DF_ARG)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "an image definition starts with FROM, not %s", c->keyword);
	switch (c->op) {
	case COVE_DF_FROM:
		if (bd->from_seen)
			build_stage_push(bd); /* multi-stage: the image is the last stage */
		bd->from_seen = 1;
		bd->stage_name = c->n_args > 1 ? xstrdup(c->args[1]) : NULL;
		return build_step_from(bd, c, err);
	case COVE_DF_RUN: {
		/* The secrets' values are inputs of the step too: a changed secret reruns it. */
		char secrets[65] = "";
		if (bd->def->n_secret_ids) {
			struct strv env = {0};
			if (secret_env(bd, &env, err) < 0) {
				strv_clear(&env);
				return -1;
			}
			qsort(env.v, env.n, sizeof(char *), strcmp_ptr);
			struct cove_sha256_ctx *h = cove_sha256_new();
			for (size_t i = 0; i < env.n; i++)
				cove_sha256_update(h, env.v[i], strlen(env.v[i]) + 1);
			uint8_t d[32];
			cove_sha256_final(h, d);
			cove_hex(d, 32, secrets);
			secrets[64] = '\0';
			strv_clear(&env);
		}
		build_chain(bd, c->text, secrets[0] ? secrets : NULL);
		if (!build_layer_needed(bd)) {
			build_logf(bd, "  (cached)\n");
			char *rel = xasprintf("%s/fs", bd->layer_hex);
			strv_add(&bd->layers, rel);
			free(rel);
			return 1;
		}
		return step_run(bd, c, err) < 0 ? -1 : 0;
	}
	case COVE_DF_COPY:
		return build_step_copy(bd, c, err);
	case COVE_DF_ENV: {
		/* The key covers the values as set (after quotes and expansion), not only the text. */
		char *set = NULL;
		size_t set_len = 0;
		FILE *f = open_memstream(&set, &set_len);
		for (size_t i = 0; i + 1 < c->n_args; i += 2) {
			char *v = build_word(bd, c->args[i + 1]);
			env_set(&bd->env, c->args[i], v);
			fprintf(f, "%zu:%s=%s\n", strlen(v), c->args[i], v); /* length-prefixed: any value */
			free(v);
		}
		fclose(f);
		build_chain(bd, "ENV", set);
		free(set);
		return 1;
	}
	case COVE_DF_ARG:
		for (size_t i = 0; i + 1 < c->n_args; i += 2) {
			const char *given = NULL;
			for (size_t k = 0; k < bd->def->n_build_args; k++)
				if (strcmp(bd->def->build_args[k]->key, c->args[i]) == 0)
					given = bd->def->build_args[k]->value;
			cleanup_free char *dflt = !given && c->args[i + 1] ? build_word(bd, c->args[i + 1]) : NULL;
			const char *v = given ? given : dflt;
			env_set(&bd->args, c->args[i], v ? v : "");
			char *kv = xasprintf("%s=%s", c->args[i], v ? v : "");
			build_chain(bd, "ARG", kv);
			free(kv);
		}
		return 1;
	case COVE_DF_WORKDIR: {
		char *v = build_expand(bd, c->args[0]);
		char *w = v[0] == '/' ? xstrdup(v) : xasprintf("%s/%s", bd->workdir ? bd->workdir : "", v);
		free(v);
		free(bd->workdir);
		bd->workdir = w;
		break;
	}
	case COVE_DF_USER:
		free(bd->user);
		bd->user = build_expand(bd, c->args[0]);
		break;
	case COVE_DF_SHELL:
		strv_clear(&bd->shell);
		for (size_t i = 0; i < c->n_args; i++)
			strv_add(&bd->shell, c->args[i]);
		break;
	case COVE_DF_CMD:
		set_list(&bd->cmd, c, &bd->shell);
		break;
	case COVE_DF_ENTRYPOINT:
		set_list(&bd->entrypoint, c, &bd->shell);
		strv_clear(&bd->cmd); /* as Docker does: a new ENTRYPOINT resets CMD */
		break;
	case COVE_DF_NOOP:
		break;
	}
	build_chain(bd, c->keyword, c->text);
	return 1;
}

/* ---- run_function ---- */

static void
fn_done(void *arg, const char *failure)
{
	struct build *bd = arg;
	struct cove_error *err = NULL;
	if (failure)
		cove_error_set(&err, COVE_FAILED_PRECONDITION, "%s", failure);
	else if (build_layer_commit(bd, bd->scratch, &err) == 0)
		build_logf(bd, "  run_function finished; its file system is the image's last layer\n");
	build_step_done(bd, err, 0);
}

/* Image.run_function: the builder function runs once in a container of the base image (the scheduler's, with
 * the function's own mounts, secrets and volumes), and what it leaves in its file system becomes a layer. 1 done
 * (cached), 0 running, -1 error. */
static int
step_run_function(struct build *bd, struct cove_error **err)
{
	const Modal__Client__Image *def = bd->def;
	bd->fn_started = 1;
	if (bd->layers.n == 0) {
		if (def->n_base_images != 1)
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "run_function needs exactly one base image");
		struct cove_df_cmd from = {0};
		char *args[1] = {def->base_images[0]->docker_tag};
		from.op = COVE_DF_FROM;
		from.args = args;
		from.n_args = 1;
		if (build_step_from(bd, &from, err) < 0)
			return -1;
	}
	const Modal__Client__BuildFunction *f = def->build_function;
	cleanup_free uint8_t *input = NULL;
	size_t len = 0;
	if (f && f->input) {
		input = pb_pack(&f->input->base, &len);
	} else {
		Modal__Client__FunctionInput in = MODAL__CLIENT__FUNCTION_INPUT__INIT;
		in.args_oneof_case = MODAL__CLIENT__FUNCTION_INPUT__ARGS_ONEOF_ARGS;
		in.args.data = (uint8_t *)cove_empty_args_pickle;
		in.args.len = cove_empty_args_pickle_len;
		in.data_format = MODAL__CLIENT__DATA_FORMAT__DATA_FORMAT_PICKLE;
		input = pb_pack(&in.base, &len);
	}
	/* The key: the function's source, its globals and its arguments. */
	struct cove_sha256_ctx *h = cove_sha256_new();
	if (f) {
		cove_sha256_update(h, f->definition, strlen(f->definition) + 1);
		cove_sha256_update(h, f->globals.data, f->globals.len);
	}
	cove_sha256_update(h, input, len);
	uint8_t d[32];
	cove_sha256_final(h, d);
	char hex[65];
	cove_hex(d, 32, hex);
	hex[64] = '\0';
	build_chain(bd, "run_function", hex);
	build_logf(bd, "=> run_function (builder function %s)\n", bd->build_function_id);
	if (!build_layer_needed(bd)) {
		build_logf(bd, "  (cached)\n");
		char *rel = xasprintf("%s/fs", bd->layer_hex);
		strv_add(&bd->layers, rel);
		free(rel);
		return 1;
	}
	char rnd[17];
	cove_random_base62(rnd, 16);
	rnd[16] = '\0';
	bd->scratch = xasprintf("%s/fn-%s", bd->b->tmp_dir, rnd);
	if (cove_sched_run_builder(bd->b->ctx->sched, bd->build_function_id, input, len, bd->scratch, fn_done, bd, err) < 0) {
		free(bd->scratch);
		bd->scratch = NULL;
		return -1;
	}
	return 0;
}

void
build_next(struct build *bd)
{
	while (!bd->done && bd->step < bd->n_lines) {
		struct cove_error *err = NULL;
		struct cove_df_cmd c;
		if (cove_dockerfile_parse(bd->lines[bd->step], &c, &err) < 0) {
			cove_error_wrap(&err, "step %zu/%zu", bd->step + 1, bd->n_lines);
			build_fail(bd, err);
			return;
		}
		if (!bd->resumed)
			build_logf(bd, "=> Step %zu/%zu: %s\n", bd->step + 1, bd->n_lines, bd->lines[bd->step]);
		bd->resumed = 0;
		int r = step(bd, &c, &err);
		cove_df_cmd_clear(&c);
		if (r < 0) {
			build_fail(bd, err);
			return;
		}
		if (r == 0)
			return; /* a callback continues */
		bd->step++;
	}
	if (bd->done)
		return;
	struct cove_error *err = NULL;
	if (bd->build_function_id && !bd->fn_started) {
		int r = step_run_function(bd, &err);
		if (r < 0) {
			build_fail(bd, err);
			return;
		}
		if (r == 0)
			return; /* fn_done continues */
	}
	if (bd->layers.n == 0)
		cove_error_set(&err, COVE_INVALID_ARGUMENT, "the image definition has no FROM");
	else
		build_manifest_write(bd->b, bd, &err);
	if (err) {
		build_fail(bd, err);
		return;
	}
	build_finish(bd, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS, NULL);
}

static void
build_free(struct build *bd)
{
	while (bd->joiners)
		joiner_finish(bd->joiners, COVE_UNAVAILABLE, "the server is shutting down");
	if (bd->container)
		bd->b->ctx->runtime->ops->stop(bd->b->ctx->runtime, bd->container, 0, 0);
	build_free_list(bd->lines, bd->n_lines);
	for (size_t i = 0; i < bd->n_logs; i++)
		free(bd->logs[i].data);
	free(bd->logs);
	strv_clear(&bd->layers);
	strv_clear(&bd->env);
	strv_clear(&bd->args);
	strv_clear(&bd->shell);
	strv_clear(&bd->cmd);
	strv_clear(&bd->entrypoint);
	free(bd->workdir);
	free(bd->user);
	free(bd->exception);
	free(bd->scratch);
	free(bd->tail);
	free(bd->build_function_id);
	free(bd->tool_from);
	free(bd->tool_layer);
	build_stages_free(bd);
	if (bd->def)
		pb_free(bd->def);
	free(bd->image_id);
	free(bd);
}

int
cove_builder_start(struct cove_builder *b, const char *image_id, const Modal__Client__Image *def,
		   const char *build_function_id, int force, struct cove_error **err)
{
	struct build *old = cove_map_get(&b->builds, image_id);
	if (old && !old->done)
		return 0;
	cleanup_free char *manifest = xasprintf("%s/%s", b->images_dir, image_id);
	if (!force && access(manifest, F_OK) == 0)
		return 1;
	if (old) {
		/* A failed build (or a forced one) runs again. */
		cove_map_del(&b->builds, image_id);
		if (old->container == NULL)
			build_free(old);
	}
	struct build *bd = xcalloc(1, sizeof(*bd));
	bd->b = b;
	bd->image_id = xstrdup(image_id);
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&def->base, &len);
	bd->def = pb_unpack(&modal__client__image__descriptor, bytes, len);
	bd->force = force;
	bd->build_function_id = build_function_id && *build_function_id ? xstrdup(build_function_id) : NULL;
	bd->started = time(NULL);
	bd->n_lines = cove_dockerfile_lines(def->dockerfile_commands, def->n_dockerfile_commands, &bd->lines);
	cove_map_put(&b->builds, image_id, bd);
	(void)err;
	build_logf(bd, "Building image %s\n", image_id);
	build_next(bd);
	return 0;
}

static void
join_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct joiner *j = arg;
	joiner_finish(j, COVE_OK, NULL);
}

static void
join_cancel(struct cove_call *call, void *arg)
{
	(void)call;
	joiner_free(arg); /* the call is gone: nothing to answer */
}

void
cove_builder_join(struct cove_builder *b, struct cove_call *call, const char *image_id, const char *last_entry_id,
		  double timeout_s)
{
	struct build *bd = cove_map_get(&b->builds, image_id);
	if (bd == NULL) {
		cleanup_free char *manifest = xasprintf("%s/%s", b->images_dir, image_id);
		if (strchr(image_id, '/') == NULL && access(manifest, F_OK) == 0) {
			struct build done = {.status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS};
			send_result(&done, call);
			cove_call_finish(call, COVE_OK, NULL);
			return;
		}
		/* Not built and not building here: a restart interrupted its build. Start it again. */
		struct cove_error *err = NULL;
		cleanup_free uint8_t *data = NULL;
		size_t len = 0;
		if (strncmp(image_id, "im-", 3) != 0 ||
		    cove_store_object_get(b->ctx->store, image_id, NULL, &data, &len, &err) < 0) {
			cove_error_free(err);
			cove_api_fail_code(call, COVE_NOT_FOUND, "Image %s not found", image_id);
			return;
		}
		Modal__Client__ImageGetOrCreateRequest *r =
			pb_unpack(&modal__client__image_get_or_create_request__descriptor, data, len);
		if (r == NULL || r->image == NULL) {
			if (r)
				pb_free(r);
			cove_api_fail_code(call, COVE_DATA_LOSS, "the definition of image %s is corrupt", image_id);
			return;
		}
		cove_builder_start(b, image_id, r->image, r->build_function_id, r->force_build, &err);
		pb_free(r);
		bd = cove_map_get(&b->builds, image_id);
		if (bd == NULL) {
			cove_api_fail(call, err);
			return;
		}
	}
	struct joiner *j = xcalloc(1, sizeof(*j));
	j->bd = bd;
	j->call = call;
	j->next_entry = last_entry_id && *last_entry_id ? (size_t)strtoull(last_entry_id, NULL, 10) : 0;
	if (j->next_entry > bd->n_logs)
		j->next_entry = bd->n_logs;
	j->next = bd->joiners;
	if (bd->joiners)
		bd->joiners->prev = j;
	bd->joiners = j;
	cove_call_on_cancel(call, join_cancel, j);
	if (timeout_s <= 0 || timeout_s > 55)
		timeout_s = 55;
	j->timer = evtimer_new(b->ctx->base, join_timeout, j);
	struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (time_t)timeout_s) * 1e6)};
	evtimer_add(j->timer, &tv);
	joiner_flush(j);
}

struct cove_builder *
cove_builder_new(struct cove_ctx *ctx, const struct cove_builder_opts *opts, struct cove_error **err)
{
	/* Absolute: containers are set up from another working directory. */
	if (cove_mkdirs(opts->image_dir, err) < 0)
		return NULL;
	char *abs = realpath(opts->image_dir, NULL);
	if (abs == NULL) {
		cove_error_set_errno(err, errno, "image directory %s", opts->image_dir);
		return NULL;
	}
	struct cove_builder *b = xcalloc(1, sizeof(*b));
	b->ctx = ctx;
	b->image_dir = abs;
	b->layers_dir = xasprintf("%s/layers", abs);
	b->images_dir = xasprintf("%s/images", abs);
	b->tmp_dir = xasprintf("%s/tmp", abs);
	b->registry_mirror = opts->registry_mirror ? xstrdup(opts->registry_mirror) : NULL;
	b->debian_mirror = opts->debian_mirror ? xstrdup(opts->debian_mirror) : NULL;
	b->ca_bundle = opts->ca_bundle ? xstrdup(opts->ca_bundle) : NULL;
	for (size_t i = 0; i < opts->n_insecure; i++)
		strv_add(&b->insecure, opts->insecure[i]);
	struct cove_error *ignored = NULL;
	cove_remove_tree(b->tmp_dir, &ignored); /* scratch of builds a crash interrupted */
	cove_error_free(ignored);
	if (cove_mkdirs(b->layers_dir, err) < 0 || cove_mkdirs(b->images_dir, err) < 0 || cove_mkdirs(b->tmp_dir, err) < 0) {
		cove_builder_free(b);
		return NULL;
	}
	/* Layers half-written when a previous run stopped. */
	DIR *d = opendir(b->layers_dir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, ".tmp-", 5) != 0)
			continue;
		cleanup_free char *p = xasprintf("%s/%s", b->layers_dir, e->d_name);
		cove_remove_tree(p, &ignored);
		cove_error_free(ignored);
		ignored = NULL;
	}
	if (d)
		closedir(d);
	b->workq = cove_workq_new(ctx->base, 1, err);
	if (b->workq == NULL) {
		cove_builder_free(b);
		return NULL;
	}
	return b;
}

void
cove_builder_free(struct cove_builder *b)
{
	if (b == NULL)
		return;
	cove_workq_free(b->workq);
	size_t it = 0;
	const char *key;
	void *v;
	while (cove_map_next(&b->builds, &it, &key, &v))
		build_free(v);
	cove_map_clear(&b->builds);
	strv_clear(&b->insecure);
	free(b->image_dir);
	free(b->layers_dir);
	free(b->images_dir);
	free(b->tmp_dir);
	free(b->registry_mirror);
	free(b->debian_mirror);
	free(b->ca_bundle);
	free(b);
}

const char *
cove_builder_layers_dir(const struct cove_builder *b)
{
	return b->layers_dir;
}

