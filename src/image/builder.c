/* The image builder (see builder.h). A build is a small state machine on the event loop: each step either
 * completes at once (metadata, cached layers, COPY) or starts something and continues from its callback (a RUN
 * container, a debootstrap, a registry pull on a worker thread). */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <limits.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "api/api.h"
#include "blob/blobstore.h"
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

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const char *const cove_ca_env[] = {"SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", NULL};

struct strv {
	char **v;
	size_t n;
};

static void
strv_add(struct strv *s, const char *x)
{
	s->v = xrealloc(s->v, (s->n + 2) * sizeof(char *));
	s->v[s->n++] = xstrdup(x);
	s->v[s->n] = NULL;
}

static void
strv_clear(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Set NAME=value in an env list (replacing an earlier NAME). */
static void
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
};

struct cove_builder {
	struct cove_ctx *ctx;
	char *image_dir, *layers_dir, *images_dir, *tmp_dir;
	char *registry_mirror, *debian_mirror, *ca_bundle;
	struct strv insecure;
	struct cove_map builds; /* image id -> struct build (finished ones stay, for their logs) */
	struct cove_workq *workq;
};

static void build_next(struct build *bd);

/* ---- manifests ---- */

static void
escape_line(FILE *f, const char *key, const char *value)
{
	fprintf(f, "%s ", key);
	for (const char *p = value; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else
			fputc(*p, f);
	}
	fputc('\n', f);
}

static char *
unescape(const char *s)
{
	char *out = xmalloc(strlen(s) + 1), *o = out;
	for (; *s; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			*o++ = *s == 'n' ? '\n' : *s;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

static int
manifest_write(struct cove_builder *b, const struct build *bd, struct cove_error **err)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	fprintf(f, "cove-image 1\n");
	escape_line(f, "state", bd->state);
	for (size_t i = 0; i < bd->layers.n; i++)
		escape_line(f, "layer", bd->layers.v[i]);
	for (size_t i = 0; i < bd->env.n; i++)
		escape_line(f, "env", bd->env.v[i]);
	if (bd->workdir)
		escape_line(f, "workdir", bd->workdir);
	if (bd->user)
		escape_line(f, "user", bd->user);
	for (size_t i = 0; i < bd->shell.n; i++)
		escape_line(f, "shell", bd->shell.v[i]);
	for (size_t i = 0; i < bd->cmd.n; i++)
		escape_line(f, "cmd", bd->cmd.v[i]);
	for (size_t i = 0; i < bd->entrypoint.n; i++)
		escape_line(f, "entrypoint", bd->entrypoint.v[i]);
	fclose(f);
	cleanup_free char *path = xasprintf("%s/%s", b->images_dir, bd->image_id);
	int r = cove_write_file_atomic(path, text, len, 0644, err);
	free(text);
	return r;
}

/* Read a manifest into info and, if shell is not NULL, the SHELL list. */
static int
manifest_read(struct cove_builder *b, const char *image_id, struct cove_image_info *info, struct strv *shell,
	      struct cove_error **err)
{
	if (strchr(image_id, '/') || image_id[0] == '.')
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "bad image id %s", image_id);
	cleanup_free char *path = xasprintf("%s/%s", b->images_dir, image_id);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return cove_error_set(err, COVE_NOT_FOUND, "Image %s is not built", image_id);
	struct strv layers = {0}, env = {0}, cmd = {0}, ep = {0};
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	memset(info, 0, sizeof(*info));
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		char *sp = strchr(line, ' ');
		if (sp == NULL)
			continue;
		*sp = '\0';
		char *v = unescape(sp + 1);
		if (strcmp(line, "layer") == 0)
			strv_add(&layers, v);
		else if (strcmp(line, "env") == 0)
			strv_add(&env, v);
		else if (strcmp(line, "cmd") == 0)
			strv_add(&cmd, v);
		else if (strcmp(line, "entrypoint") == 0)
			strv_add(&ep, v);
		else if (strcmp(line, "shell") == 0 && shell)
			strv_add(shell, v);
		else if (strcmp(line, "workdir") == 0 && info->workdir == NULL)
			info->workdir = xstrdup(v);
		else if (strcmp(line, "user") == 0 && info->user == NULL)
			info->user = xstrdup(v);
		else if (strcmp(line, "state") == 0 && info->state == NULL)
			info->state = xstrdup(v);
		free(v);
	}
	free(line);
	fclose(f);
	info->layers = layers.v;
	info->n_layers = layers.n;
	info->env = env.v;
	info->n_env = env.n;
	info->cmd = cmd.v;
	info->n_cmd = cmd.n;
	info->entrypoint = ep.v;
	info->n_entrypoint = ep.n;
	if (info->state == NULL || info->n_layers == 0) {
		struct cove_image_info tmp = *info;
		cove_image_info_free(xmemdup(&tmp, sizeof(tmp)));
		memset(info, 0, sizeof(*info));
		return cove_error_set(err, COVE_DATA_LOSS, "the manifest of image %s is incomplete", image_id);
	}
	return 0;
}

int
cove_builder_image(struct cove_builder *b, const char *image_id, struct cove_image_info **out, struct cove_error **err)
{
	struct cove_image_info *info = xcalloc(1, sizeof(*info));
	if (manifest_read(b, image_id, info, NULL, err) < 0) {
		free(info);
		return -1;
	}
	*out = info;
	return 0;
}

static void
free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
cove_image_info_free(struct cove_image_info *info)
{
	if (info == NULL)
		return;
	free_list(info->layers, info->n_layers);
	free_list(info->env, info->n_env);
	free_list(info->cmd, info->n_cmd);
	free_list(info->entrypoint, info->n_entrypoint);
	free(info->workdir);
	free(info->user);
	free(info->state);
	free(info);
}

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

static void
build_log(struct build *bd, const char *data, size_t len)
{
	if (len == 0)
		return;
	bd->logs = xrealloc(bd->logs, (bd->n_logs + 1) * sizeof(*bd->logs));
	bd->logs[bd->n_logs++].data = xstrndup(data, len);
	joiners_wake(bd);
}

static void __attribute__((format(printf, 2, 3)))
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

static void
build_fail(struct build *bd, struct cove_error *err)
{
	build_finish(bd, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_FAILURE, err ? err->msg : "unknown error");
	cove_error_free(err);
}

/* ---- the cache chain ---- */

static void
chain(struct build *bd, const char *what, const char *extra)
{
	struct cove_sha256_ctx *h = cove_sha256_new();
	cove_sha256_update(h, bd->state, strlen(bd->state));
	cove_sha256_update(h, "\n", 1);
	cove_sha256_update(h, what, strlen(what));
	if (extra) {
		cove_sha256_update(h, "\n", 1);
		cove_sha256_update(h, extra, strlen(extra));
	}
	uint8_t d[32];
	cove_sha256_final(h, d);
	cove_hex(d, 32, bd->state);
	bd->state[64] = '\0';
}

static int
layer_exists(struct cove_builder *b, const char *hex)
{
	cleanup_free char *p = xasprintf("%s/%s/fs", b->layers_dir, hex);
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The layer for the current state: its name, and whether it must be made (not cached, or forced). */
static int
layer_needed(struct build *bd)
{
	memcpy(bd->layer_hex, bd->state, 65);
	if (bd->force) {
		char nonce[80];
		snprintf(nonce, sizeof(nonce), "%s-force-%ld-%d", bd->state, (long)time(NULL), rand());
		cove_sha256_hex(nonce, strlen(nonce), bd->layer_hex);
		return 1;
	}
	return !layer_exists(bd->b, bd->layer_hex);
}

/* Move a finished layer directory (its tree at src) into the store under bd->layer_hex. */
static int
layer_commit(struct build *bd, const char *src, struct cove_error **err)
{
	struct cove_builder *b = bd->b;
	char rnd[17];
	cove_random_base62(rnd, 16);
	rnd[16] = '\0';
	cleanup_free char *tmp = xasprintf("%s/.tmp-%s", b->layers_dir, rnd);
	cleanup_free char *tmpfs = xasprintf("%s/fs", tmp);
	cleanup_free char *dst = xasprintf("%s/%s", b->layers_dir, bd->layer_hex);
	if (mkdir(tmp, 0755) < 0)
		return cove_error_set_errno(err, errno, "create %s", tmp);
	if (rename(src, tmpfs) < 0 || rename(tmp, dst) < 0) {
		int e = errno;
		struct cove_error *ignored = NULL;
		cove_remove_tree(tmp, &ignored);
		cove_error_free(ignored);
		if (e == EEXIST || e == ENOTEMPTY)
			goto add;
		return cove_error_set_errno(err, e, "store layer %s", bd->layer_hex);
	}
add:;
	char *rel = xasprintf("%s/fs", bd->layer_hex);
	strv_add(&bd->layers, rel);
	free(rel);
	return 0;
}

/* ---- base images ---- */

struct debian_base {
	const char *codename;
	const char *python; /* the minor version Debian ships */
};

static const struct debian_base debian_bases[] = {
	{"bullseye", "3.9"},
	{"bookworm", "3.11"},
	{"trixie", "3.13"},
};

static void
base_config(struct build *bd)
{
	env_set(&bd->env, "PATH", DEFAULT_PATH);
	env_set(&bd->env, "LANG", "C.UTF-8");
}

static void
set_base_state(struct build *bd, const char *what)
{
	memset(bd->state, 0, sizeof(bd->state));
	chain(bd, "FROM", what);
}

/* "python:3.11.12-slim-bookworm", "python:3.11-slim", "debian:bookworm-slim", "debian:bookworm": the Debian
 * release, and the Python version asked for (NULL: none). 0 if it is not such a reference. */
static int
debian_ref(const char *ref, char *codename, size_t cn, char *python, size_t pn)
{
	const char *r = ref;
	if (strncmp(r, "docker.io/", 10) == 0)
		r += 10;
	if (strncmp(r, "library/", 8) == 0)
		r += 8;
	python[0] = '\0';
	if (strncmp(r, "python:", 7) == 0) {
		const char *tag = r + 7;
		const char *dash = strchr(tag, '-');
		if (dash == NULL)
			return 0;
		snprintf(python, pn, "%.*s", (int)(dash - tag), tag);
		const char *slim = strstr(dash, "-slim-");
		if (slim == NULL)
			return 0;
		snprintf(codename, cn, "%s", slim + 6);
		return 1;
	}
	if (strncmp(r, "debian:", 7) == 0) {
		snprintf(codename, cn, "%s", r + 7);
		char *s = strstr(codename, "-slim");
		if (s)
			*s = '\0';
		return 1;
	}
	return 0;
}

static const char *
host_debian_mirror(void)
{
	static char mirror[512];
	if (mirror[0])
		return mirror;
	snprintf(mirror, sizeof(mirror), "http://deb.debian.org/debian");
	FILE *f = fopen("/etc/apt/sources.list.d/debian.sources", "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		char url[400];
		if (sscanf(line, "URIs: %399s", url) == 1 && strstr(url, "security") == NULL) {
			snprintf(mirror, sizeof(mirror), "%s", url);
			break;
		}
	}
	if (f)
		fclose(f);
	return mirror;
}

static void debian_output(void *owner, int fd, const char *data, size_t len);
static void debian_exit(void *owner, int status);

/* Debian's own packages for a Python base: debootstrap (minbase, python3, pip, venv), made pip-friendly. */
static int
debian_base(struct build *bd, const char *ref, const char *codename, const char *python, struct cove_error **err)
{
	const struct debian_base *db = NULL;
	for (size_t i = 0; i < sizeof(debian_bases) / sizeof(debian_bases[0]); i++)
		if (strcmp(debian_bases[i].codename, codename) == 0)
			db = &debian_bases[i];
	if (db == NULL)
		return cove_error_set(err, COVE_NOT_FOUND,
				      "image %s cannot be pulled (Cove reaches no registry for it) and Cove can build Debian "
				      "bases only for bullseye, bookworm and trixie; make it available through a registry "
				      "mirror (cove serve --registry-mirror URL)",
				      ref);
	if (python[0] && strncmp(python, db->python, strlen(db->python)) != 0) {
		return cove_error_set(err, COVE_NOT_FOUND,
				      "image %s cannot be pulled (Cove reaches no registry for it), and Debian %s ships "
				      "Python %s, not %s: use python_version=\"%s\", or make the image available through a "
				      "registry mirror (cove serve --registry-mirror URL)",
				      ref, codename, db->python, python, db->python);
	}
	if (access("/usr/sbin/debootstrap", X_OK) < 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "image %s cannot be pulled (Cove reaches no registry for it), and building it from "
				      "Debian's packages needs debootstrap (apt-get install debootstrap)",
				      ref);
	char what[128];
	snprintf(what, sizeof(what), "cove-debian-base:%s:%s:v1", codename, python[0] ? db->python : "none");
	set_base_state(bd, what);
	base_config(bd);
	memcpy(bd->layer_hex, bd->state, 65);
	build_logf(bd, "Using Cove's %s base for %s: Debian %s%s%s from Debian's packages (debootstrap)\n",
		   python[0] ? "Python" : "Debian", ref, codename, python[0] ? " with Python " : "",
		   python[0] ? db->python : "");
	if (layer_exists(bd->b, bd->layer_hex)) {
		char *rel = xasprintf("%s/fs", bd->layer_hex);
		strv_add(&bd->layers, rel);
		free(rel);
		return 1;
	}
	const char *mirror = bd->b->debian_mirror ? bd->b->debian_mirror : host_debian_mirror();
	char rnd[17];
	cove_random_base62(rnd, 16);
	rnd[16] = '\0';
	bd->scratch = xasprintf("%s/debian-%s", bd->b->tmp_dir, rnd);
	const char *include = python[0] ? "--include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates"
					: "--include=ca-certificates";
	cleanup_free char *script = xasprintf(
		"set -e; debootstrap --variant=minbase %s %s '%s/fs' '%s'; cd '%s/fs';"
		" rm -f usr/lib/python3*/EXTERNALLY-MANAGED; rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*;"
		" printf 'APT::Install-Recommends \"false\";\\n' > etc/apt/apt.conf.d/90cove; mkdir -p root",
		include, codename, bd->scratch, mirror, bd->scratch);
	char *argv[] = {"/bin/sh", "-c", script, NULL};
	char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
			"DEBIAN_FRONTEND=noninteractive", NULL};
	static const struct cove_runtime_callbacks cb = {.on_output = debian_output, .on_exit = debian_exit};
	if (cove_mkdirs(bd->scratch, err) < 0)
		return -1;
	struct cove_container_spec spec = {.id = bd->image_id, .workdir = "/", .argv = argv, .envp = envp, .cb = &cb};
	struct cove_runtime *rt = bd->b->ctx->runtime;
	if (rt->ops->start(rt, &spec, bd, &bd->container, err) < 0)
		return cove_error_wrap(err, "debootstrap %s", codename);
	return 0;
}

static void
debian_output(void *owner, int fd, const char *data, size_t len)
{
	(void)fd;
	build_log(owner, data, len);
}

static void
debian_exit(void *owner, int status)
{
	struct build *bd = owner;
	bd->container = NULL;
	struct cove_error *err = NULL;
	cleanup_free char *fs = xasprintf("%s/fs", bd->scratch);
	if (status != 0) {
		cove_error_set(&err, COVE_FAILED_PRECONDITION, "building the Debian base with debootstrap failed (status %d)",
			       status);
	} else {
		layer_commit(bd, fs, &err);
	}
	struct cove_error *ignored = NULL;
	cove_remove_tree(bd->scratch, &ignored);
	cove_error_free(ignored);
	free(bd->scratch);
	bd->scratch = NULL;
	if (err) {
		build_fail(bd, err);
		return;
	}
	bd->step++;
	build_next(bd);
}

/* A registry pull, on a worker thread. */
struct pull_job {
	struct build *bd;
	char *ref;
	struct cove_registry_opts opts;
	char *username, *password;
	struct cove_pulled_image img;
	struct cove_error *err;
	char *log;
	size_t log_len;
	FILE *log_f;
};

static void
pull_log(void *arg, const char *line)
{
	struct pull_job *j = arg;
	fprintf(j->log_f, "%s\n", line);
}

static void
pull_work(void *arg)
{
	struct pull_job *j = arg;
	cove_registry_pull(&j->opts, j->ref, j->bd->b->layers_dir, pull_log, j, &j->img, &j->err);
	fclose(j->log_f);
}

static void
pull_done(void *arg)
{
	struct pull_job *j = arg;
	struct build *bd = j->bd;
	build_log(bd, j->log, j->log_len);
	free(j->log);
	if (j->err) {
		build_fail(bd, j->err);
	} else {
		set_base_state(bd, j->img.digest ? j->img.digest : j->ref);
		base_config(bd);
		for (size_t i = 0; i < j->img.n_layers; i++) {
			char *rel = xasprintf("%s/fs", j->img.layers[i]);
			strv_add(&bd->layers, rel);
			free(rel);
		}
		const struct cove_image_config *c = &j->img.config;
		for (size_t i = 0; i < c->n_env; i++) {
			char *eq = strchr(c->env[i], '=');
			if (eq) {
				char *name = xstrndup(c->env[i], (size_t)(eq - c->env[i]));
				env_set(&bd->env, name, eq + 1);
				free(name);
			}
		}
		if (c->workdir && *c->workdir)
			bd->workdir = xstrdup(c->workdir);
		if (c->user && *c->user)
			bd->user = xstrdup(c->user);
		for (size_t i = 0; i < c->n_cmd; i++)
			strv_add(&bd->cmd, c->cmd[i]);
		for (size_t i = 0; i < c->n_entrypoint; i++)
			strv_add(&bd->entrypoint, c->entrypoint[i]);
		bd->step++;
	}
	cove_pulled_image_free(&j->img);
	free(j->ref);
	free(j->username);
	free(j->password);
	int failed = bd->done;
	free(j);
	if (!failed)
		build_next(bd);
}

static void
strv_copy(struct strv *dst, const struct strv *src)
{
	for (size_t i = 0; i < src->n; i++)
		strv_add(dst, src->v[i]);
}

/* End the current stage: keep it for COPY --from and FROM, and start afresh. */
static void
stage_push(struct build *bd)
{
	bd->stages = xrealloc(bd->stages, (bd->n_stages + 1) * sizeof(*bd->stages));
	struct stage *s = &bd->stages[bd->n_stages++];
	memset(s, 0, sizeof(*s));
	s->name = bd->stage_name;
	bd->stage_name = NULL;
	memcpy(s->state, bd->state, sizeof(s->state));
	s->layers = bd->layers;
	s->env = bd->env;
	s->shell = bd->shell;
	s->cmd = bd->cmd;
	s->entrypoint = bd->entrypoint;
	s->workdir = bd->workdir;
	s->user = bd->user;
	memset(&bd->layers, 0, sizeof(bd->layers));
	memset(&bd->env, 0, sizeof(bd->env));
	memset(&bd->shell, 0, sizeof(bd->shell));
	memset(&bd->cmd, 0, sizeof(bd->cmd));
	memset(&bd->entrypoint, 0, sizeof(bd->entrypoint));
	bd->workdir = bd->user = NULL;
	memset(bd->state, 0, sizeof(bd->state));
}

static void
stages_free(struct build *bd)
{
	for (size_t i = 0; i < bd->n_stages; i++) {
		struct stage *s = &bd->stages[i];
		free(s->name);
		strv_clear(&s->layers);
		strv_clear(&s->env);
		strv_clear(&s->shell);
		strv_clear(&s->cmd);
		strv_clear(&s->entrypoint);
		free(s->workdir);
		free(s->user);
	}
	free(bd->stages);
	bd->stages = NULL;
	bd->n_stages = 0;
	free(bd->stage_name);
	bd->stage_name = NULL;
}

/* A stage by name, or by index as Docker allows ("0"). */
static const struct stage *
stage_find(const struct build *bd, const char *name)
{
	for (size_t i = 0; i < bd->n_stages; i++)
		if (bd->stages[i].name && strcasecmp(bd->stages[i].name, name) == 0)
			return &bd->stages[i];
	char *end;
	unsigned long idx = strtoul(name, &end, 10);
	if (*name && *end == '\0' && idx < bd->n_stages)
		return &bd->stages[idx];
	return NULL;
}

/* FROM: 1 done now, 0 continues asynchronously, -1 error. */
static int
step_from(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err)
{
	cleanup_free char *ref = cove_dockerfile_expand(c->args[0], bd->args.v, bd->args.n);
	const struct stage *st = stage_find(bd, ref);
	if (st && !(ref[0] >= '0' && ref[0] <= '9')) {
		memcpy(bd->state, st->state, sizeof(bd->state));
		strv_copy(&bd->layers, &st->layers);
		strv_copy(&bd->env, &st->env);
		strv_copy(&bd->shell, &st->shell);
		strv_copy(&bd->cmd, &st->cmd);
		strv_copy(&bd->entrypoint, &st->entrypoint);
		bd->workdir = st->workdir ? xstrdup(st->workdir) : NULL;
		bd->user = st->user ? xstrdup(st->user) : NULL;
		return 1;
	}
	for (size_t i = 0; i < bd->def->n_base_images; i++) {
		const Modal__Client__BaseImage *bi = bd->def->base_images[i];
		if (strcmp(bi->docker_tag, ref) != 0)
			continue;
		struct cove_image_info parent;
		struct strv shell = {0};
		if (manifest_read(bd->b, bi->image_id, &parent, &shell, err) < 0)
			return cove_error_wrap(err, "base image %s", bi->image_id);
		memcpy(bd->state, parent.state, 64);
		bd->state[64] = '\0';
		for (size_t k = 0; k < parent.n_layers; k++)
			strv_add(&bd->layers, parent.layers[k]);
		for (size_t k = 0; k < parent.n_env; k++)
			strv_add(&bd->env, parent.env[k]);
		for (size_t k = 0; k < parent.n_cmd; k++)
			strv_add(&bd->cmd, parent.cmd[k]);
		for (size_t k = 0; k < parent.n_entrypoint; k++)
			strv_add(&bd->entrypoint, parent.entrypoint[k]);
		bd->shell = shell;
		bd->workdir = parent.workdir;
		bd->user = parent.user;
		parent.workdir = parent.user = NULL;
		struct cove_image_info *p = xmemdup(&parent, sizeof(parent));
		cove_image_info_free(p);
		return 1;
	}
	if (strcmp(ref, "scratch") == 0) {
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "FROM scratch: an image needs a base with files in it (Cove's containers run Python)");
	}
	char codename[64], python[32];
	struct cove_builder *b = bd->b;
	/* Debian-based Python images are built from Debian's packages unless a mirror is configured to serve
	 * them (Docker Hub itself is out of reach for an air-gapped Cove). */
	if (b->registry_mirror == NULL && debian_ref(ref, codename, sizeof(codename), python, sizeof(python)))
		return debian_base(bd, ref, codename, python, err);
	struct pull_job *j = xcalloc(1, sizeof(*j));
	j->bd = bd;
	j->ref = xstrdup(ref);
	j->opts.mirror = b->registry_mirror;
	j->opts.insecure = (const char *const *)b->insecure.v;
	j->opts.n_insecure = b->insecure.n;
	/* from_registry(..., secret=): the registry's credentials, as the docs name them. */
	const Modal__Client__ImageRegistryConfig *rc = bd->def->image_registry_config;
	if (rc && rc->secret_id && *rc->secret_id) {
		struct strv creds = {0};
		const char *secret_id = rc->secret_id;
		struct cove_error *serr = NULL;
		cleanup_free uint8_t *data = NULL;
		size_t len = 0;
		if (cove_store_object_get(b->ctx->store, secret_id, NULL, &data, &len, &serr) == 0) {
			Modal__Client__SecretGetOrCreateRequest *sec =
				pb_unpack(&modal__client__secret_get_or_create_request__descriptor, data, len);
			for (size_t k = 0; sec && k < sec->n_env_dict; k++)
				env_set(&creds, sec->env_dict[k]->key, sec->env_dict[k]->value);
			if (sec)
				pb_free(sec);
		}
		cove_error_free(serr);
		for (size_t k = 0; k < creds.n; k++) {
			if (strncmp(creds.v[k], "REGISTRY_USERNAME=", 18) == 0)
				j->username = xstrdup(creds.v[k] + 18);
			else if (strncmp(creds.v[k], "REGISTRY_PASSWORD=", 18) == 0)
				j->password = xstrdup(creds.v[k] + 18);
		}
		strv_clear(&creds);
		if (j->username == NULL || j->password == NULL) {
			free(j->username);
			free(j->password);
			free(j->ref);
			free(j);
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "image %s: the registry secret %s must set REGISTRY_USERNAME and REGISTRY_PASSWORD",
					      ref, secret_id);
		}
		j->opts.username = j->username;
		j->opts.password = j->password;
	}
	j->log_f = open_memstream(&j->log, &j->log_len);
	build_logf(bd, "Pulling %s\n", ref);
	cove_workq_submit(b->workq, pull_work, pull_done, j);
	return 0;
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
		layer_commit(bd, upper, &err);
	}
	free(bd->tail);
	bd->tail = NULL;
	bd->tail_len = 0;
	struct cove_error *ignored = NULL;
	cove_remove_tree(bd->scratch, &ignored);
	cove_error_free(ignored);
	free(bd->scratch);
	bd->scratch = NULL;
	if (err) {
		build_fail(bd, err);
		return;
	}
	bd->step++;
	build_next(bd);
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

/* ---- COPY (from the context mount) ---- */

static char *expand(const struct build *bd, const char *text);
static char *normalize_src(const char *s);

/* Remove what is at path (a tree), if anything. */
static void
remove_any(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		struct cove_error *ignored = NULL;
		cove_remove_tree(path, &ignored);
		cove_error_free(ignored);
	} else {
		unlink(path);
	}
}

static int
is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == 0;
}

/* Merge the tree at src (one layer's view of a path) onto dst, as an overlay stacks it: files and links
 * replace, whiteouts delete, an opaque directory hides what was there before. */
static int
merge_tree(const char *src, const char *dst, struct cove_error **err)
{
	struct stat st;
	if (lstat(src, &st) < 0)
		return 0;
	if (is_whiteout(&st)) {
		remove_any(dst);
		return 0;
	}
	if (S_ISDIR(st.st_mode)) {
		struct stat dt;
		char v[2];
		int opaque = getxattr(src, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y';
		if (opaque || (lstat(dst, &dt) == 0 && !S_ISDIR(dt.st_mode)))
			remove_any(dst);
		if (mkdir(dst, st.st_mode & 07777) < 0 && errno != EEXIST)
			return cove_error_set_errno(err, errno, "COPY: mkdir %s", dst);
		chmod(dst, st.st_mode & 07777);
		DIR *d = opendir(src);
		if (d == NULL)
			return cove_error_set_errno(err, errno, "COPY: read %s", src);
		struct dirent *e;
		int rv = 0;
		while (rv == 0 && (e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			cleanup_free char *s2 = xasprintf("%s/%s", src, e->d_name);
			cleanup_free char *d2 = xasprintf("%s/%s", dst, e->d_name);
			rv = merge_tree(s2, d2, err);
		}
		closedir(d);
		return rv;
	}
	remove_any(dst);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(src, target, sizeof(target) - 1);
		if (n < 0)
			return cove_error_set_errno(err, errno, "COPY: readlink %s", src);
		target[n] = '\0';
		if (symlink(target, dst) < 0)
			return cove_error_set_errno(err, errno, "COPY: symlink %s", dst);
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return 0; /* devices, fifos, sockets: not copied */
	cleanup_free uint8_t *content = NULL;
	size_t len = 0;
	if (cove_read_file(src, &content, &len, err) < 0 ||
	    cove_write_file_atomic(dst, content, len, (int)(st.st_mode & 07777), err) < 0)
		return -1;
	return 0;
}

/* COPY --from=<stage or earlier image> SRC... DST: the sources as the other image sees them (its layers
 * merged), into a new layer. */
static int
step_copy_from(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err)
{
	struct strv layers = {0};
	char state[65] = "";
	const struct stage *st = stage_find(bd, c->from);
	if (st) {
		strv_copy(&layers, &st->layers);
		memcpy(state, st->state, sizeof(state));
	} else {
		for (size_t i = 0; i < bd->def->n_base_images && layers.n == 0; i++) {
			const Modal__Client__BaseImage *bi = bd->def->base_images[i];
			if (strcmp(bi->docker_tag, c->from) != 0)
				continue;
			struct cove_image_info info;
			if (manifest_read(bd->b, bi->image_id, &info, NULL, err) < 0)
				return cove_error_wrap(err, "%s --from=%s", c->keyword, c->from);
			for (size_t k = 0; k < info.n_layers; k++)
				strv_add(&layers, info.layers[k]);
			snprintf(state, sizeof(state), "%s", info.state);
			cove_image_info_free(xmemdup(&info, sizeof(info)));
		}
	}
	if (layers.n == 0)
		return cove_error_set(err, COVE_UNIMPLEMENTED,
				      "%s --from=%s: Cove's builder copies from earlier stages and images of this build only; "
				      "for a registry image, add a stage: FROM %s AS src, then %s --from=src ...",
				      c->keyword, c->from, c->from, c->keyword);
	cleanup_free char *dst_raw = expand(bd, c->args[c->n_args - 1]);
	cleanup_free char *dst = dst_raw[0] == '/' ? xstrdup(dst_raw)
					       : xasprintf("%s/%s", bd->workdir ? bd->workdir : "", dst_raw);
	size_t dl = strlen(dst);
	int dst_dir = c->n_args > 2 || (dl && dst[dl - 1] == '/');
	while (dl > 1 && dst[dl - 1] == '/')
		dst[--dl] = '\0';
	chain(bd, c->text, state);
	int rv = 0;
	if (!layer_needed(bd)) {
		build_logf(bd, "  (cached)\n");
	} else {
		char rnd[17];
		cove_random_base62(rnd, 16);
		rnd[16] = '\0';
		cleanup_free char *tmp = xasprintf("%s/copy-%s", bd->b->tmp_dir, rnd);
		for (size_t s = 0; s + 1 < c->n_args && rv == 0; s++) {
			cleanup_free char *src = normalize_src(c->args[s]);
			const char *base = strrchr(src, '/') + 1;
			int src_is_dir = 0, found = 0;
			for (size_t k = 0; k < layers.n; k++) {
				cleanup_free char *p = xasprintf("%s/%s%s", bd->b->layers_dir, layers.v[k], src);
				struct stat sst;
				if (lstat(p, &sst) == 0) {
					found = !is_whiteout(&sst);
					src_is_dir = S_ISDIR(sst.st_mode);
				}
			}
			if (!found) {
				rv = cove_error_set(err, COVE_NOT_FOUND, "%s %s: %s not found in %s", c->keyword, c->text,
						    c->args[s], c->from);
				break;
			}
			cleanup_free char *target = src_is_dir || !dst_dir ? xasprintf("%s%s", tmp, dst)
									   : xasprintf("%s%s/%s", tmp, dst, base);
			cleanup_free char *parent = xstrdup(target);
			*strrchr(parent, '/') = '\0';
			if (cove_mkdirs(parent, err) < 0) {
				rv = -1;
				break;
			}
			for (size_t k = 0; k < layers.n && rv == 0; k++) {
				cleanup_free char *p = xasprintf("%s/%s%s", bd->b->layers_dir, layers.v[k], src);
				rv = merge_tree(p, target, err);
			}
		}
		if (rv == 0) {
			struct stat tst;
			if (stat(tmp, &tst) < 0)
				cove_mkdirs(tmp, NULL);
			rv = layer_commit(bd, tmp, err) < 0 ? -1 : 0;
			if (rv == 0)
				build_logf(bd, "  copied from %s\n", c->from);
			strv_clear(&layers);
			struct cove_error *ignored = NULL;
			cove_remove_tree(tmp, &ignored);
			cove_error_free(ignored);
			return 1;
		}
		struct cove_error *ignored = NULL;
		cove_remove_tree(tmp, &ignored);
		cove_error_free(ignored);
	}
	if (rv == 0) {
		char *rel = xasprintf("%s/fs", bd->layer_hex);
		strv_add(&bd->layers, rel);
		free(rel);
	}
	strv_clear(&layers);
	return rv < 0 ? -1 : 1;
}

static char *
normalize_src(const char *s)
{
	while (s[0] == '.' && s[1] == '/')
		s += 2;
	if (strcmp(s, ".") == 0 || *s == '\0')
		return xstrdup("/");
	char *p = s[0] == '/' ? xstrdup(s) : xasprintf("/%s", s);
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	if (n >= 2 && strcmp(p + n - 2, "/.") == 0)
		p[n - 2 == 0 ? 1 : n - 2] = '\0';
	return p;
}

/* A file of the build context: from the context mount (content in the blob store), or sent inline with the
 * image definition (Image.context_files: requirements files and the like). */
struct ctx_file {
	const char *filename; /* absolute, from the context's root */
	char sha256[65];
	unsigned mode;
	const ProtobufCBinaryData *inline_data; /* NULL: in the blob store */
};

struct copy_item {
	const struct ctx_file *f;
	char *dest;
};

static int
copy_item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct copy_item *)a)->dest, ((const struct copy_item *)b)->dest);
}

static int
step_copy(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err)
{
	if (c->from)
		return step_copy_from(bd, c, err);
	const Modal__Client__Image *def = bd->def;
	int has_mount = def->context_mount_id && *def->context_mount_id;
	if (!has_mount && def->n_context_files == 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s %s: the image has no build context", c->keyword, c->text);
	Modal__Client__MountGetOrCreateRequest *m = NULL;
	if (has_mount) {
		cleanup_free uint8_t *data = NULL;
		size_t len = 0;
		if (cove_store_object_get(bd->b->ctx->store, def->context_mount_id, NULL, &data, &len, err) < 0)
			return cove_error_wrap(err, "context mount %s", def->context_mount_id);
		m = pb_unpack(&modal__client__mount_get_or_create_request__descriptor, data, len);
		if (m == NULL)
			return cove_error_set(err, COVE_DATA_LOSS, "mount %s is corrupt in the store", def->context_mount_id);
	}
	size_t n_files = (m ? m->n_files : 0) + def->n_context_files;
	struct ctx_file *files = xcalloc(n_files + 1, sizeof(*files));
	size_t nf = 0;
	for (size_t i = 0; m && i < m->n_files; i++) {
		files[nf].filename = m->files[i]->filename;
		snprintf(files[nf].sha256, sizeof(files[nf].sha256), "%s", m->files[i]->sha256_hex);
		files[nf].mode = m->files[i]->_mode_case ? m->files[i]->mode & 07777 : 0644;
		nf++;
	}
	for (size_t i = 0; i < def->n_context_files; i++) {
		const Modal__Client__ImageContextFile *cf = def->context_files[i];
		if (cf->filename == NULL || cf->filename[0] != '/' || strstr(cf->filename, "/../")) {
			free(files);
			if (m)
				pb_free(m);
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "context file %s: not an absolute, normalized path",
					      cf->filename ? cf->filename : "");
		}
		files[nf].filename = cf->filename;
		cove_sha256_hex(cf->data.data, cf->data.len, files[nf].sha256);
		files[nf].mode = 0644;
		files[nf].inline_data = &cf->data;
		nf++;
	}
	cleanup_free char *dst_raw = expand(bd, c->args[c->n_args - 1]);
	char *dst = dst_raw[0] == '/' ? xstrdup(dst_raw)
				       : xasprintf("%s/%s", bd->workdir ? bd->workdir : "", dst_raw);
	size_t dl = strlen(dst);
	int dst_dir = c->n_args > 2 || (dl && dst[dl - 1] == '/');
	while (dl > 1 && dst[dl - 1] == '/')
		dst[--dl] = '\0';
	struct copy_item *items = NULL;
	size_t n_items = 0;
	int rv = 0;
	for (size_t s = 0; s + 1 < c->n_args && rv == 0; s++) {
		cleanup_free char *src = normalize_src(c->args[s]);
		int glob = strpbrk(src, "*?[") != NULL;
		size_t found = 0;
		for (size_t i = 0; i < nf; i++) {
			const char *fn = files[i].filename;
			size_t sl = strlen(src);
			char *dest = NULL;
			if (strcmp(src, "/") == 0) {
				dest = xasprintf("%s%s", strcmp(dst, "/") == 0 ? "" : dst, fn);
			} else if (strcmp(fn, src) == 0 || (glob && fnmatch(src, fn, FNM_PATHNAME) == 0)) {
				const char *base = strrchr(fn, '/') + 1;
				dest = dst_dir || glob ? xasprintf("%s/%s", strcmp(dst, "/") == 0 ? "" : dst, base) : xstrdup(dst);
			} else if (strncmp(fn, src, sl) == 0 && fn[sl] == '/') {
				dest = xasprintf("%s%s", strcmp(dst, "/") == 0 ? "" : dst, fn + sl);
			} else if (glob) {
				/* A pattern that matches a directory: copy what is below it. */
				char *prefix = xstrdup(fn);
				for (char *slash = strrchr(prefix, '/'); slash && slash != prefix; slash = strrchr(prefix, '/')) {
					*slash = '\0';
					if (fnmatch(src, prefix, FNM_PATHNAME) == 0) {
						const char *base = strrchr(prefix, '/') + 1;
						dest = xasprintf("%s/%s%s", strcmp(dst, "/") == 0 ? "" : dst, base,
								 fn + strlen(prefix));
						break;
					}
				}
				free(prefix);
			}
			if (dest == NULL)
				continue;
			items = xrealloc(items, (n_items + 1) * sizeof(*items));
			items[n_items++] = (struct copy_item){&files[i], dest};
			found++;
		}
		if (found == 0)
			rv = cove_error_set(err, COVE_NOT_FOUND, "%s %s: %s not found in the build context", c->keyword,
					    c->text, c->args[s]);
	}
	/* The layer's key: what lands where, with which content and mode, in an order of its own (the client
	 * uploads a directory's files in no particular order). */
	if (n_items > 1)
		qsort(items, n_items, sizeof(*items), copy_item_cmp);
	unsigned chmod_mode = c->chmod ? (unsigned)strtoul(c->chmod, NULL, 8) : 0;
	char *digest_text = NULL;
	size_t digest_len = 0;
	FILE *df = open_memstream(&digest_text, &digest_len);
	for (size_t i = 0; i < n_items; i++)
		fprintf(df, "%s %s %o\n", items[i].dest, items[i].f->sha256, chmod_mode ? chmod_mode : items[i].f->mode);
	fclose(df);
	if (rv == 0) {
		chain(bd, c->text, digest_text);
		if (!layer_needed(bd)) {
			build_logf(bd, "  (cached)\n");
			char *rel = xasprintf("%s/fs", bd->layer_hex);
			strv_add(&bd->layers, rel);
			free(rel);
		} else {
			char rnd[17];
			cove_random_base62(rnd, 16);
			rnd[16] = '\0';
			cleanup_free char *tmp = xasprintf("%s/copy-%s", bd->b->tmp_dir, rnd);
			for (size_t i = 0; i < n_items && rv == 0; i++) {
				const struct ctx_file *f = items[i].f;
				cleanup_free char *path = xasprintf("%s%s", tmp, items[i].dest);
				cleanup_free char *dir = xstrdup(path);
				*strrchr(dir, '/') = '\0';
				int mode = (int)(chmod_mode ? chmod_mode : f->mode);
				if (cove_mkdirs(dir, err) < 0) {
					rv = cove_error_wrap(err, "%s %s", c->keyword, items[i].dest);
				} else if (f->inline_data) {
					if (cove_write_file_atomic(path, f->inline_data->data, f->inline_data->len, mode, err) < 0)
						rv = cove_error_wrap(err, "%s %s", c->keyword, items[i].dest);
				} else {
					cleanup_free char *blob = cove_blobstore_file_path(bd->b->ctx->blobs, f->sha256);
					cleanup_free uint8_t *content = NULL;
					size_t clen = 0;
					if (cove_read_file(blob, &content, &clen, err) < 0 ||
					    cove_write_file_atomic(path, content, clen, mode, err) < 0)
						rv = cove_error_wrap(err, "%s %s", c->keyword, items[i].dest);
				}
			}
			if (rv == 0)
				rv = layer_commit(bd, tmp, err);
			struct cove_error *ignored = NULL;
			cove_remove_tree(tmp, &ignored);
			cove_error_free(ignored);
			if (rv == 0)
				build_logf(bd, "  copied %zu file%s\n", n_items, n_items == 1 ? "" : "s");
		}
	}
	free(digest_text);
	for (size_t i = 0; i < n_items; i++)
		free(items[i].dest);
	free(items);
	free(files);
	free(dst);
	if (m)
		pb_free(m);
	return rv < 0 ? -1 : 1;
}

/* ---- the steps ---- */

/* Expand $VARS in an instruction's argument: build args, then the image's env (which wins, as in Docker). */
static char *
expand(const struct build *bd, const char *text)
{
	struct strv vars = {0};
	for (size_t i = 0; i < bd->args.n; i++)
		strv_add(&vars, bd->args.v[i]);
	for (size_t i = 0; i < bd->env.n; i++)
		strv_add(&vars, bd->env.v[i]);
	char *out = cove_dockerfile_expand(text, vars.v, vars.n);
	strv_clear(&vars);
	return out;
}

/* An ENV or ARG value: quotes processed and variables expanded, as Docker does. */
static char *
word(const struct build *bd, const char *raw)
{
	struct strv vars = {0};
	for (size_t i = 0; i < bd->args.n; i++)
		strv_add(&vars, bd->args.v[i]);
	for (size_t i = 0; i < bd->env.n; i++)
		strv_add(&vars, bd->env.v[i]);
	char *out = cove_dockerfile_word(raw, vars.v, vars.n);
	strv_clear(&vars);
	return out;
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
			stage_push(bd); /* multi-stage: the image is the last stage */
		bd->from_seen = 1;
		bd->stage_name = c->n_args > 1 ? xstrdup(c->args[1]) : NULL;
		return step_from(bd, c, err);
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
		chain(bd, c->text, secrets[0] ? secrets : NULL);
		if (!layer_needed(bd)) {
			build_logf(bd, "  (cached)\n");
			char *rel = xasprintf("%s/fs", bd->layer_hex);
			strv_add(&bd->layers, rel);
			free(rel);
			return 1;
		}
		return step_run(bd, c, err) < 0 ? -1 : 0;
	}
	case COVE_DF_COPY:
		return step_copy(bd, c, err);
	case COVE_DF_ENV: {
		/* The key covers the values as set (after quotes and expansion), not only the text. */
		char *set = NULL;
		size_t set_len = 0;
		FILE *f = open_memstream(&set, &set_len);
		for (size_t i = 0; i + 1 < c->n_args; i += 2) {
			char *v = word(bd, c->args[i + 1]);
			env_set(&bd->env, c->args[i], v);
			fprintf(f, "%zu:%s=%s\n", strlen(v), c->args[i], v); /* length-prefixed: any value */
			free(v);
		}
		fclose(f);
		chain(bd, "ENV", set);
		free(set);
		return 1;
	}
	case COVE_DF_ARG:
		for (size_t i = 0; i + 1 < c->n_args; i += 2) {
			const char *given = NULL;
			for (size_t k = 0; k < bd->def->n_build_args; k++)
				if (strcmp(bd->def->build_args[k]->key, c->args[i]) == 0)
					given = bd->def->build_args[k]->value;
			cleanup_free char *dflt = !given && c->args[i + 1] ? word(bd, c->args[i + 1]) : NULL;
			const char *v = given ? given : dflt;
			env_set(&bd->args, c->args[i], v ? v : "");
			char *kv = xasprintf("%s=%s", c->args[i], v ? v : "");
			chain(bd, "ARG", kv);
			free(kv);
		}
		return 1;
	case COVE_DF_WORKDIR: {
		char *v = expand(bd, c->args[0]);
		char *w = v[0] == '/' ? xstrdup(v) : xasprintf("%s/%s", bd->workdir ? bd->workdir : "", v);
		free(v);
		free(bd->workdir);
		bd->workdir = w;
		break;
	}
	case COVE_DF_USER:
		free(bd->user);
		bd->user = expand(bd, c->args[0]);
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
	chain(bd, c->keyword, c->text);
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
	else if (layer_commit(bd, bd->scratch, &err) == 0)
		build_logf(bd, "  run_function finished; its file system is the image's last layer\n");
	struct cove_error *ignored = NULL;
	cove_remove_tree(bd->scratch, &ignored);
	cove_error_free(ignored);
	free(bd->scratch);
	bd->scratch = NULL;
	if (err) {
		build_fail(bd, err);
		return;
	}
	build_next(bd);
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
		if (step_from(bd, &from, err) < 0)
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
	chain(bd, "run_function", hex);
	build_logf(bd, "=> run_function (builder function %s)\n", bd->build_function_id);
	if (!layer_needed(bd)) {
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

static void
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
		build_logf(bd, "=> Step %zu/%zu: %s\n", bd->step + 1, bd->n_lines, bd->lines[bd->step]);
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
		manifest_write(bd->b, bd, &err);
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
	free_list(bd->lines, bd->n_lines);
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
	stages_free(bd);
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
	struct joiner *j = arg;
	j->call = NULL;
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

int
cove_builder_add_layer_image(struct cove_builder *b, const char *base_id, const char *layer_hex, const char *image_id,
			     struct cove_error **err)
{
	struct build bd = {.b = b};
	struct cove_image_info base;
	if (manifest_read(b, base_id, &base, &bd.shell, err) < 0)
		return cove_error_wrap(err, "image %s", base_id);
	bd.image_id = (char *)image_id;
	memcpy(bd.state, base.state, 64);
	chain(&bd, "snapshot", layer_hex);
	for (size_t i = 0; i < base.n_layers; i++)
		strv_add(&bd.layers, base.layers[i]);
	char *rel = xasprintf("%s/fs", layer_hex);
	strv_add(&bd.layers, rel);
	free(rel);
	for (size_t i = 0; i < base.n_env; i++)
		strv_add(&bd.env, base.env[i]);
	for (size_t i = 0; i < base.n_cmd; i++)
		strv_add(&bd.cmd, base.cmd[i]);
	for (size_t i = 0; i < base.n_entrypoint; i++)
		strv_add(&bd.entrypoint, base.entrypoint[i]);
	bd.workdir = base.workdir;
	bd.user = base.user;
	int r = manifest_write(b, &bd, err);
	strv_clear(&bd.layers);
	strv_clear(&bd.env);
	strv_clear(&bd.cmd);
	strv_clear(&bd.entrypoint);
	strv_clear(&bd.shell);
	struct cove_image_info *p = xmemdup(&base, sizeof(base));
	cove_image_info_free(p);
	return r;
}

/* ---- disk use and garbage collection ---- */

static uint64_t
tree_bytes(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0;
	uint64_t n = (uint64_t)st.st_blocks * 512;
	if (!S_ISDIR(st.st_mode))
		return n;
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char *p = xasprintf("%s/%s", path, e->d_name);
		n += tree_bytes(p);
		free(p);
	}
	if (d)
		closedir(d);
	return n;
}

int
cove_builder_usage(const char *image_dir, uint64_t *bytes, size_t *n_layers, size_t *n_images)
{
	cleanup_free char *layers = xasprintf("%s/layers", image_dir);
	cleanup_free char *images = xasprintf("%s/images", image_dir);
	*bytes = tree_bytes(image_dir);
	*n_layers = *n_images = 0;
	const char *dirs[2] = {layers, images};
	size_t *counts[2] = {n_layers, n_images};
	for (int i = 0; i < 2; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;
		while (d && (e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				(*counts[i])++;
		if (d)
			closedir(d);
	}
	return 0;
}

int
cove_builder_gc(const char *image_dir, size_t *n_removed, uint64_t *bytes_freed, struct cove_error **err)
{
	cleanup_free char *layers = xasprintf("%s/layers", image_dir);
	cleanup_free char *images = xasprintf("%s/images", image_dir);
	struct cove_map used = {0};
	DIR *d = opendir(images);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *p = xasprintf("%s/%s", images, e->d_name);
		FILE *f = fopen(p, "re");
		char line[512];
		while (f && fgets(line, sizeof(line), f)) {
			char hex[65];
			if (sscanf(line, "layer %64[0-9a-f]/fs", hex) == 1)
				cove_map_put(&used, hex, (void *)1);
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	*n_removed = 0;
	*bytes_freed = 0;
	int rv = 0;
	d = opendir(layers);
	while (d && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (cove_map_get(&used, e->d_name))
			continue;
		cleanup_free char *p = xasprintf("%s/%s", layers, e->d_name);
		uint64_t n = tree_bytes(p);
		if (cove_remove_tree(p, err) < 0) {
			rv = -1;
			break;
		}
		(*n_removed)++;
		*bytes_freed += n;
	}
	if (d)
		closedir(d);
	cove_map_clear(&used);
	return rv;
}
