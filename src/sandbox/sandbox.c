/* Sandboxes: creation, life, termination, lookups and the router's tokens (see sandbox.h). */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "config.h"
#include "image/builder.h"
#include "runtime/runtime.h"
#include "sched/isolate.h"
#include "store/volview.h"
#include "sandbox/internal.h"
#include "server.h"
#include "store/store.h"
#include "tunnel/tunnel.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/pb.h"
#include "util/workq.h"

#define DEFAULT_TIMEOUT_S 300
#define MAX_TIMEOUT_S (24 * 3600)
#define MAX_NAME 63
#define MAX_TAGS 64
#define MAX_TAG_NAME 128
#define MAX_TAG_VALUE 1024
#define MAX_ENTRYPOINT_BYTES (128u * 1024)
#define ROUTER_TOKEN_S 900
#define AUTH_TOKEN_S 3600

double
cove_sandbox_now(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static struct event_base *
base_of(struct cove_sandboxes *sbx)
{
	return sbx->ctx->base;
}

/* ---- environments ---- */

void
env_set(char ***env, size_t *n, const char *key, const char *value)
{
	size_t klen = strlen(key);
	for (size_t i = 0; i < *n; i++) {
		if (strncmp((*env)[i], key, klen) == 0 && (*env)[i][klen] == '=') {
			free((*env)[i]);
			(*env)[i] = xasprintf("%s=%s", key, value);
			return;
		}
	}
	*env = xrealloc(*env, (*n + 2) * sizeof(char *));
	(*env)[(*n)++] = xasprintf("%s=%s", key, value);
	(*env)[*n] = NULL;
}

void
env_free(char **env)
{
	for (char **e = env; e && *e; e++)
		free(*e);
	free(env);
}

static int
env_name_ok(const char *k)
{
	return k[0] != '\0' && strchr(k, '=') == NULL;
}

int
env_add_secret(struct cove_sandboxes *sbx, char ***env, size_t *n, const char *secret_id, struct cove_error **err)
{
	cleanup_free uint8_t *data = NULL;
	cleanup_free char *kind = NULL;
	size_t len = 0;
	if (!cove_id_valid(secret_id, "st") ||
	    cove_store_object_get(sbx->ctx->store, secret_id, &kind, &data, &len, NULL) < 0 || strcmp(kind, "secret") != 0)
		return cove_error_set(err, COVE_NOT_FOUND, "Secret %s not found", secret_id);
	Modal__Client__SecretGetOrCreateRequest *sec =
		pb_unpack(&modal__client__secret_get_or_create_request__descriptor, data, len);
	if (sec == NULL)
		return cove_error_set(err, COVE_DATA_LOSS, "secret %s is corrupt in the store", secret_id);
	for (size_t i = 0; i < sec->n_env_dict; i++)
		if (env_name_ok(sec->env_dict[i]->key))
			env_set(env, n, sec->env_dict[i]->key, sec->env_dict[i]->value);
	pb_free(sec);
	return 0;
}

int
env_add_sources(struct cove_sandboxes *sbx, char ***env, size_t *n, Modal__Client__SecretSource **src, size_t n_src,
		struct cove_error **err)
{
	for (size_t i = 0; i < n_src; i++) {
		if (src[i]->source_case == MODAL__CLIENT__SECRET_SOURCE__SOURCE_SECRET_ID) {
			if (env_add_secret(sbx, env, n, src[i]->secret_id, err) < 0)
				return -1;
		} else if (src[i]->source_case == MODAL__CLIENT__SECRET_SOURCE__SOURCE_ENV && src[i]->env) {
			for (size_t j = 0; j < src[i]->env->n_contents; j++) {
				const Modal__Client__StringMap__ContentsEntry *e = src[i]->env->contents[j];
				if (!env_name_ok(e->key))
					return cove_error_set(err, COVE_INVALID_ARGUMENT,
							      "invalid environment variable name '%s'", e->key);
				env_set(env, n, e->key, e->value);
			}
		} else {
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "a secret source names neither a secret nor values");
		}
	}
	return 0;
}

/* ---- the module ---- */

static void stop_hook(void *arg, struct cove_app *app);

/* The helper program the client execs as /__modal/.bin/modal-sandbox-fs-tools: beside the cove binary (a
 * build directory), else where it is installed. */
static char *
find_fs_tools(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			char *cand = xasprintf("%s/cove-sandbox-fs-tools", exe);
			if (access(cand, X_OK) == 0)
				return cand;
			free(cand);
		}
	}
	char *installed = xstrdup(COVE_LIBEXECDIR "/cove-sandbox-fs-tools");
	if (access(installed, X_OK) < 0)
		log_warn("sandbox: cove-sandbox-fs-tools is neither beside the cove binary nor in %s: Sandbox.filesystem "
			 "calls will fail",
			 COVE_LIBEXECDIR);
	return installed;
}

static int
env_seconds(const char *name, int dflt)
{
	const char *v = getenv(name);
	char *end;
	long n = v ? strtol(v, &end, 10) : -1;
	return v && *v && *end == '\0' && n >= 0 && n <= 30 * 24 * 3600 ? (int)n : dflt;
}

struct cove_sandboxes *
cove_sandbox_new(struct cove_ctx *ctx, struct cove_error **err)
{
	struct cove_sandboxes *sbx = xcalloc(1, sizeof(*sbx));
	sbx->ctx = ctx;
	sbx->keep_s = env_seconds("COVE_SANDBOX_KEEP_S", COVE_SANDBOX_KEEP_S);
	sbx->proc_keep_s = env_seconds("COVE_EXEC_KEEP_S", COVE_PROC_KEEP_S);
	cove_jwt_key_new(sbx->key);
	sbx->fs_tools = find_fs_tools();
	sbx->snap_dir = xasprintf("%s/snapshots", ctx->cfg.state_dir);
	if (cove_mkdirs(sbx->snap_dir, err) < 0 || (sbx->workq = cove_workq_new(ctx->base, 1, err)) == NULL) {
		cove_error_wrap(err, "sandboxes");
		free(sbx->fs_tools);
		free(sbx->snap_dir);
		free(sbx);
		return NULL;
	}
	cove_sched_set_stop_hook(ctx->sched, stop_hook, sbx);
	return sbx;
}

static void sandbox_purge(struct cove_sandbox *sb);

void
cove_sandbox_free(struct cove_sandboxes *sbx)
{
	if (sbx == NULL)
		return;
	cove_sched_set_stop_hook(sbx->ctx->sched, NULL, NULL);
	sbx->closing = 1;
	/* Finish the copies first: their completions look sandboxes up. */
	cove_workq_free(sbx->workq);
	sbx->workq = NULL;
	size_t it = 0;
	void *v;
	while (cove_map_next(&sbx->by_id, &it, NULL, &v)) {
		struct cove_sandbox *sb = v;
		if (sb->main && !sb->main->exited)
			sb->main->container = NULL; /* the runtime, freed next, kills it */
		sandbox_purge(sb);
	}
	cove_map_clear(&sbx->by_id);
	cove_map_clear(&sbx->by_task);
	it = 0;
	while (cove_map_next(&sbx->fn_hosts, &it, NULL, &v)) {
		host_release(v, COVE_UNAVAILABLE, "server shutting down");
		free(v);
	}
	cove_map_clear(&sbx->fn_hosts);
	it = 0;
	while (cove_map_next(&sbx->snap_keys, &it, NULL, &v))
		free(v);
	cove_map_clear(&sbx->snap_keys);
	free(sbx->fs_tools);
	free(sbx->snap_dir);
	cove_tls_free(sbx->tls);
	free(sbx);
}

static void fronts_close(struct cove_sandbox *sb);

/* ---- ids ---- */

static char *
new_sandbox_id(int v2)
{
	/* The client picks its V1 or V2 code path from the id's shape: "sb-" + 22 base62 characters is V1. */
	if (!v2)
		return cove_id_new("sb");
	char *id = xmalloc(3 + 24 + 1);
	memcpy(id, "sb-", 3);
	cove_random_base62(id + 3, 24);
	id[27] = '\0';
	return id;
}

static char *
new_task_id(int v2)
{
	/* A task id ending in "V" marks a V2 sandbox's container to the client (`modal container exec`). */
	char *id = cove_id_new("ta");
	size_t n = strlen(id);
	if (v2)
		id[n - 1] = 'V';
	else
		while (id[n - 1] == 'V')
			cove_random_base62(&id[n - 1], 1);
	return id;
}

/* ---- lookups ---- */

struct cove_sandbox *
cove_sandbox_get(struct cove_sandboxes *sbx, const char *sandbox_id)
{
	return sandbox_id ? cove_map_get(&sbx->by_id, sandbox_id) : NULL;
}

struct cove_sandbox *
cove_sandbox_by_task(struct cove_sandboxes *sbx, const char *task_id)
{
	return task_id ? cove_map_get(&sbx->by_task, task_id) : NULL;
}

struct cove_sandbox *
cove_sandbox_by_name(struct cove_sandboxes *sbx, const char *app_id, const char *name, int include_terminated)
{
	struct cove_sandbox *best = NULL;
	size_t it = 0;
	void *v;
	while (cove_map_next(&sbx->by_id, &it, NULL, &v)) {
		struct cove_sandbox *sb = v;
		if (sb->name == NULL || strcmp(sb->name, name) != 0 || strcmp(sb->app_id, app_id) != 0)
			continue;
		if (sb->state != COVE_SANDBOX_FINISHED)
			return sb;
		if (include_terminated && (best == NULL || sb->finished_at > best->finished_at))
			best = sb;
	}
	return best;
}

const struct cove_map *
cove_sandbox_all(struct cove_sandboxes *sbx)
{
	return &sbx->by_id;
}

size_t
cove_sandbox_running(struct cove_sandboxes *sbx)
{
	return sbx->n_running;
}

size_t
cove_sandbox_task_stats(struct cove_sandboxes *sbx, const char *env, const char *app_id, Modal__Client__TaskStats *out,
			size_t max)
{
	size_t n = 0, it = 0;
	void *v;
	while (n < max && cove_map_next(&sbx->by_id, &it, NULL, &v)) {
		struct cove_sandbox *sb = v;
		if (sb->state != COVE_SANDBOX_RUNNING)
			continue;
		if (env ? strcmp(sb->env, env) != 0 : (app_id == NULL || strcmp(sb->app_id, app_id) != 0))
			continue;
		struct cove_app *app = cove_sched_app_get(sbx->ctx->sched, sb->app_id);
		Modal__Client__TaskStats st = MODAL__CLIENT__TASK_STATS__INIT;
		st.task_id = sb->host.task_id;
		st.app_id = sb->app_id;
		st.app_description = app ? (app->name[0] ? app->name : app->description) : "";
		st.started_at = sb->started_at;
		st.enqueued_at = sb->created_at;
		out[n++] = st;
	}
	return n;
}

/* ---- validation ---- */

/* A name given: the JavaScript and Go SDKs send an empty one for an unnamed sandbox, which means none. */
static int
has_name(const Modal__Client__Sandbox *d)
{
	return d->_name_case && d->name && d->name[0];
}

static int
valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MAX_NAME)
		return 0;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return 0;
	return 1;
}

static int
check_tags(Modal__Client__SandboxTag **tags, size_t n, struct cove_error **err)
{
	if (n > MAX_TAGS)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "a sandbox may have at most %d tags, got %zu", MAX_TAGS, n);
	for (size_t i = 0; i < n; i++) {
		size_t kn = strlen(tags[i]->tag_name), vn = strlen(tags[i]->tag_value);
		if (kn == 0 || kn > MAX_TAG_NAME)
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "tag names must be 1 to %d bytes", MAX_TAG_NAME);
		if (vn > MAX_TAG_VALUE)
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "tag %s: values may be at most %d bytes",
					      tags[i]->tag_name, MAX_TAG_VALUE);
	}
	return 0;
}

static void
tags_replace(struct cove_sandbox *sb, Modal__Client__SandboxTag **tags, size_t n)
{
	for (size_t i = 0; i < sb->n_tags; i++) {
		free(sb->tag_names[i]);
		free(sb->tag_values[i]);
	}
	free(sb->tag_names);
	free(sb->tag_values);
	sb->tag_names = xcalloc(n + 1, sizeof(char *));
	sb->tag_values = xcalloc(n + 1, sizeof(char *));
	sb->n_tags = 0;
	for (size_t i = 0; i < n; i++) {
		/* A repeated name: the last value wins. */
		size_t j = 0;
		while (j < sb->n_tags && strcmp(sb->tag_names[j], tags[i]->tag_name) != 0)
			j++;
		if (j < sb->n_tags) {
			free(sb->tag_values[j]);
			sb->tag_values[j] = xstrdup(tags[i]->tag_value);
			continue;
		}
		sb->tag_names[sb->n_tags] = xstrdup(tags[i]->tag_name);
		sb->tag_values[sb->n_tags++] = xstrdup(tags[i]->tag_value);
	}
}

int
cove_sandbox_set_tags(struct cove_sandbox *sb, Modal__Client__SandboxTag **tags, size_t n, struct cove_error **err)
{
	if (check_tags(tags, n, err) < 0)
		return -1;
	tags_replace(sb, tags, n);
	return 0;
}

int
cove_sandbox_set_name(struct cove_sandbox *sb, const char *name, struct cove_error **err)
{
	if (!valid_name(name))
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "sandbox names are 1 to %d characters of letters, digits, '-', '_' and '.'", MAX_NAME);
	if (sb->name && strcmp(sb->name, name) == 0)
		return 0;
	if (sb->name)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "sandbox %s is already named %s", sb->id, sb->name);
	if (sb->state == COVE_SANDBOX_FINISHED)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "sandbox %s has finished", sb->id);
	struct cove_sandbox *other = cove_sandbox_by_name(sb->sbx, sb->app_id, name, 0);
	if (other && other != sb)
		return cove_error_set(err, COVE_ALREADY_EXISTS, "a running sandbox of app %s is already named %s",
				      sb->app_id, name);
	sb->name = xstrdup(name);
	return 0;
}

/* What the process runtime cannot give a sandbox is refused, not ignored. */
static int
check_definition(const Modal__Client__Sandbox *d, int isolated, struct cove_error **err)
{
	size_t total = 0;
	for (size_t i = 0; i < d->n_entrypoint_args; i++)
		total += strlen(d->entrypoint_args[i]) + 1;
	if (total > MAX_ENTRYPOINT_BYTES)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the entrypoint's arguments exceed %u bytes",
				      MAX_ENTRYPOINT_BYTES);
	if (d->n_entrypoint_args > 0 && d->entrypoint_args[0][0] == '\0')
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the entrypoint command is an empty string");
	if (d->timeout_secs > MAX_TIMEOUT_S)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "timeout must be at most %d seconds (24 hours), got %u",
				      MAX_TIMEOUT_S, d->timeout_secs);
	if (d->_idle_timeout_secs_case && d->idle_timeout_secs > MAX_TIMEOUT_S)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "idle_timeout must be at most %d seconds, got %u",
				      MAX_TIMEOUT_S, d->idle_timeout_secs);
	if (d->_workdir_case && d->workdir[0] != '/')
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "workdir must be an absolute path, got: %s", d->workdir);
	struct stat st;
	if (!isolated && d->_workdir_case && (stat(d->workdir, &st) < 0 || !S_ISDIR(st.st_mode)))
		return cove_error_set(err, COVE_NOT_FOUND,
				      "workdir %s is not a directory (the process runtime runs sandboxes in the host's "
				      "file system, and does not create it)",
				      d->workdir);
	if (has_name(d) && !valid_name(d->name))
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "sandbox names are 1 to %d characters of letters, digits, '-', '_' and '.'", MAX_NAME);
	if ((d->n_volume_mounts && !isolated) || d->n_nfs_mounts || d->n_s3_mounts || d->n_cloud_bucket_mounts)
		return cove_error_set(err, COVE_UNIMPLEMENTED,
				      "%s in sandboxes are not supported by Cove yet",
				      d->n_volume_mounts && !isolated ? "volumes (with the process runtime)"
								    : "network file systems and bucket mounts");
	int blocked = d->block_network ||
		      (d->network_access &&
		       d->network_access->network_access_type != MODAL__CLIENT__NETWORK_ACCESS__NETWORK_ACCESS_TYPE__OPEN &&
		       d->network_access->network_access_type !=
			       MODAL__CLIENT__NETWORK_ACCESS__NETWORK_ACCESS_TYPE__UNSPECIFIED);
	if (blocked && d->network_access && d->network_access->n_allowed_cidrs > 0)
		return cove_error_set(err, COVE_UNIMPLEMENTED, "outbound allowlists (cidr_allowlist) are not supported by Cove");
	if (blocked && !isolated)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "block_network and outbound allowlists need network namespaces, which Cove's process "
				      "runtime does not give: its sandboxes share the host's network");
	if (d->i6pn_enabled)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "i6pn networking is not available in Cove");
	if (d->_proxy_id_case && d->proxy_id[0])
		return cove_error_set(err, COVE_UNIMPLEMENTED, "proxies are not supported by Cove");
	if (d->open_ports_oneof_case && d->open_ports) {
		for (size_t i = 0; i < d->open_ports->n_ports; i++) {
			uint32_t port = d->open_ports->ports[i]->port;
			if (port == 0 || port > 65535)
				return cove_error_set(err, COVE_INVALID_ARGUMENT, "port %u is not a TCP port", port);
		}
	}
	return 0;
}

/* Lay a mount's files out under root as the functions' containers get them (host paths mirror the paths in
 * the container: /root/app.py becomes <dir>/root/app.py). */
static int
layout_mount(struct cove_sandboxes *sbx, const char *root, const char *mount_id, struct cove_error **err)
{
	cleanup_free uint8_t *data = NULL;
	cleanup_free char *kind = NULL;
	size_t len = 0;
	if (!cove_id_valid(mount_id, "mo") ||
	    cove_store_object_get(sbx->ctx->store, mount_id, &kind, &data, &len, NULL) < 0 || strcmp(kind, "mount") != 0)
		return cove_error_set(err, COVE_NOT_FOUND, "Mount %s not found", mount_id);
	Modal__Client__MountGetOrCreateRequest *m =
		pb_unpack(&modal__client__mount_get_or_create_request__descriptor, data, len);
	if (m == NULL)
		return cove_error_set(err, COVE_DATA_LOSS, "mount %s is corrupt in the store", mount_id);
	int rv = 0;
	for (size_t i = 0; i < m->n_files && rv == 0; i++) {
		const Modal__Client__MountFile *f = m->files[i];
		if (f->filename[0] != '/' || strstr(f->filename, "/../") || strstr(f->filename, "/./")) {
			rv = cove_error_set(err, COVE_DATA_LOSS, "mount %s: bad file name %s", mount_id, f->filename);
			break;
		}
		cleanup_free char *dst = xasprintf("%s%s", root, f->filename);
		cleanup_free char *dir = xstrdup(dst);
		*strrchr(dir, '/') = '\0';
		cleanup_free char *src = cove_blobstore_file_path(sbx->ctx->blobs, f->sha256_hex);
		cleanup_free uint8_t *content = NULL;
		size_t clen = 0;
		if (cove_mkdirs(dir, err) < 0 || cove_read_file(src, &content, &clen, err) < 0 ||
		    cove_write_file_atomic(dst, content, clen, f->_mode_case ? (int)(f->mode & 0777) : 0644, err) < 0)
			rv = cove_error_wrap(err, "mount %s: %s", mount_id, f->filename);
	}
	pb_free(m);
	return rv;
}

/* ---- life ---- */

static void remove_dir(struct cove_sandbox *sb);

static void
sandbox_free(struct cove_sandbox *sb)
{
	free(sb->id);
	free(sb->app_id);
	free(sb->env);
	free(sb->name);
	for (size_t i = 0; i < sb->n_tags; i++) {
		free(sb->tag_names[i]);
		free(sb->tag_values[i]);
	}
	free(sb->tag_names);
	free(sb->tag_values);
	if (sb->def)
		pb_free(sb->def);
	free(sb->dir);
	free(sb->exception);
	free(sb->stop_message);
	if (sb->iso) {
		cove_isolate_clear(sb->iso);
		free(sb->iso);
	}
	fronts_close(sb);
	cove_volume_mounts_free(sb->vmounts, sb->n_vmounts);
	free(sb);
}

void
sandbox_copy_done(struct cove_sandbox *sb)
{
	sb->copies--;
	remove_dir(sb);
}

static void
remove_dir(struct cove_sandbox *sb)
{
	if (sb->dir_removed || sb->copies > 0 || sb->state != COVE_SANDBOX_FINISHED)
		return;
	sb->dir_removed = 1;
	struct cove_error *err = NULL;
	if (cove_remove_tree(sb->dir, &err) < 0) {
		log_warn("sandbox %s: remove %s: %s", sb->id, sb->dir, err->msg);
		cove_error_free(err);
	}
}

static void
answer_waiters(struct cove_sandbox *sb)
{
	while (sb->waiters.head) {
		struct cove_waiter *w = sb->waiters.head;
		Modal__Client__GenericResult result = MODAL__CLIENT__GENERIC_RESULT__INIT;
		cove_sandbox_result(sb, &result);
		Modal__Client__SandboxHandleMetadata meta = MODAL__CLIENT__SANDBOX_HANDLE_METADATA__INIT;
		meta.result = &result;
		meta.app_id = sb->app_id;
		Modal__Client__SandboxWaitResponse resp = MODAL__CLIENT__SANDBOX_WAIT_RESPONSE__INIT;
		resp.result = &result;
		resp.metadata = &meta;
		cove_api_reply(w->call, &resp.base);
		cove_waiter_done(w);
	}
}

static void
sandbox_purge(struct cove_sandbox *sb)
{
	while (sb->waiters.head) {
		struct cove_waiter *w = sb->waiters.head;
		cove_call_finish(w->call, COVE_UNAVAILABLE, "server shutting down");
		cove_waiter_done(w);
	}
	if (sb->timeout_ev)
		event_free(sb->timeout_ev);
	if (sb->idle_ev)
		event_free(sb->idle_ev);
	if (sb->expire_ev)
		event_free(sb->expire_ev);
	sb->timeout_ev = sb->idle_ev = sb->expire_ev = NULL;
	host_release(&sb->host, COVE_UNAVAILABLE, "the sandbox is gone");
	if (sb->main)
		proc_free(sb->main, COVE_OK, NULL);
	sb->main = NULL;
	sandbox_free(sb);
}

static void
sandbox_expire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_sandbox *sb = arg;
	struct cove_sandboxes *sbx = sb->sbx;
	/* An exec whose exit is not reported yet (its output still open) keeps the record a while longer. */
	if (sb->host.n_running > 0 || sb->copies > 0) {
		struct timeval tv = {60, 0};
		evtimer_add(sb->expire_ev, &tv);
		return;
	}
	/* First its output goes (readers see its end), and its execs; the result stays longer. */
	if (!sb->output_released) {
		sb->output_released = 1;
		host_release_execs(&sb->host, COVE_OK, NULL);
		if (sb->main) {
			cove_stream_release(&sb->main->out[0], COVE_OK, NULL);
			cove_stream_release(&sb->main->out[1], COVE_OK, NULL);
		}
		struct timeval tv = {sbx->keep_s > sbx->proc_keep_s ? sbx->keep_s - sbx->proc_keep_s : 0, 0};
		evtimer_add(sb->expire_ev, &tv);
		return;
	}
	cove_map_del(&sbx->by_id, sb->id);
	cove_map_del(&sbx->by_task, sb->host.task_id);
	sandbox_purge(sb);
}

static void
fronts_close(struct cove_sandbox *sb)
{
	for (size_t i = 0; i < sb->n_fronts; i++)
		cove_tls_front_free(sb->fronts[i]);
	free(sb->fronts);
	sb->fronts = NULL;
	sb->n_fronts = 0;
}

/* TLS in front of each encrypted port, forwarding to where the runtime made the port reachable. */
static int
fronts_open(struct cove_sandbox *sb, struct cove_error **err)
{
	const Modal__Client__Sandbox *d = sb->def;
	size_t n = d->open_ports_oneof_case && d->open_ports ? d->open_ports->n_ports : 0;
	int any = 0;
	for (size_t i = 0; i < n; i++)
		any |= !d->open_ports->ports[i]->unencrypted;
	if (!any)
		return 0;
	struct cove_sandboxes *sbx = sb->sbx;
	if (sbx->tls == NULL && (sbx->tls = cove_tls_load(sbx->ctx->cfg.state_dir, err)) == NULL)
		return cove_error_wrap(err, "sandbox %s: encrypted ports", sb->id);
	sb->fronts = xcalloc(n, sizeof(*sb->fronts));
	sb->n_fronts = n;
	for (size_t i = 0; i < n; i++) {
		const Modal__Client__PortSpec *ps = d->open_ports->ports[i];
		if (ps->unencrypted)
			continue;
		unsigned short backend = sb->iso && sb->iso->host_ports ? sb->iso->host_ports[i] : (unsigned short)ps->port;
		if ((sb->fronts[i] = cove_tls_front_new(base_of(sbx), sbx->tls, backend, err)) == NULL) {
			fronts_close(sb);
			return cove_error_wrap(err, "sandbox %s: port %u", sb->id, ps->port);
		}
	}
	return 0;
}

/* The sandbox is done (its entrypoint exited, or it was stopped before it started). */
static void
sandbox_finish(struct cove_sandbox *sb)
{
	struct cove_sandboxes *sbx = sb->sbx;
	fronts_close(sb);
	sb->state = COVE_SANDBOX_FINISHED;
	sb->finished_at = cove_sandbox_now();
	sbx->n_running--;
	if (sb->stop_status) {
		sb->result_status = sb->stop_status;
		sb->exitcode = sb->stop_status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TIMEOUT	 ? 124
			       : sb->stop_status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED ? 137
															     : 1;
		sb->exception = xstrdup(sb->stop_message ? sb->stop_message : "");
	} else if (sb->main && sb->main->oom) {
		sb->result_status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_FAILURE;
		sb->exitcode = sb->main->status;
		sb->exception = xasprintf("the sandbox ran out of memory (limit %u MiB) and was killed by the kernel (OOM)",
					  sb->def->resources ? sb->def->resources->memory_mb_max : 0);
	} else if (sb->main && sb->main->status == 0) {
		sb->result_status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS;
	} else if (sb->main && sb->main->status > 0) {
		sb->result_status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_FAILURE;
		sb->exitcode = sb->main->status;
		sb->exception = xasprintf("the entrypoint exited with status %d", sb->main->status);
	} else {
		int sig = sb->main ? -sb->main->status : 9;
		sb->result_status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_FAILURE;
		sb->exitcode = 128 + sig;
		sb->exception = xasprintf("the entrypoint was killed by signal %d", sig);
	}
	if (sb->timeout_ev) {
		event_free(sb->timeout_ev);
		sb->timeout_ev = NULL;
	}
	if (sb->idle_ev) {
		event_free(sb->idle_ev);
		sb->idle_ev = NULL;
	}
	/* Execs go with the container (those in its process group already went with the entrypoint). */
	size_t it = 0;
	void *v;
	while (cove_map_next(&sb->host.execs, &it, NULL, &v))
		proc_kill(v);
	answer_waiters(sb);
	remove_dir(sb);
	log_debug("sandbox %s (%s) finished: status %d, exit code %d", sb->id, sb->host.task_id, sb->result_status,
		  sb->exitcode);
	sb->expire_ev = evtimer_new(base_of(sbx), sandbox_expire, sb);
	struct timeval tv = {sbx->proc_keep_s, 0};
	evtimer_add(sb->expire_ev, &tv);
}

static void
final_commit_done(void *arg)
{
	sandbox_finish(arg);
}

void
sandbox_main_exited(struct cove_sandbox *sb)
{
	if (sb->volumes) {
		/* Finished once its volumes' last commit is in: what it wrote is there for whoever waited on it. */
		sb->volumes = 0;
		cove_volview_task_exit(sb->host.task_id, final_commit_done, sb);
		return;
	}
	sandbox_finish(sb);
}

static void
sandbox_timed_out(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_sandbox *sb = arg;
	cleanup_free char *msg = xasprintf("Sandbox %s ran past its timeout of %u s", sb->id,
					   sb->def->timeout_secs ? sb->def->timeout_secs : DEFAULT_TIMEOUT_S);
	log_info("sandbox %s: timed out; terminating it", sb->id);
	cove_sandbox_terminate(sb, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TIMEOUT, msg);
}

static void
sandbox_idle_check(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_sandbox *sb = arg;
	double idle = (double)sb->def->idle_timeout_secs;
	double quiet = cove_sandbox_now() - sb->last_active;
	if (sb->host.n_running == 0 && quiet >= idle) {
		cleanup_free char *msg = xasprintf("Sandbox %s was idle for %u s (idle_timeout)", sb->id,
						   sb->def->idle_timeout_secs);
		log_info("sandbox %s: idle for %u s; terminating it", sb->id, sb->def->idle_timeout_secs);
		cove_sandbox_terminate(sb, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TIMEOUT, msg);
		return;
	}
	double left = sb->host.n_running ? idle : idle - quiet;
	struct timeval tv = {(time_t)left, (suseconds_t)((left - (double)(time_t)left) * 1e6)};
	evtimer_add(sb->idle_ev, &tv);
}

void
sandbox_activity(struct cove_sandbox *sb)
{
	sb->last_active = cove_sandbox_now();
}

void
cove_sandbox_terminate(struct cove_sandbox *sb, int status, const char *message)
{
	if (sb->state == COVE_SANDBOX_FINISHED || sb->stop_status)
		return;
	sb->stop_status = status;
	sb->stop_message = xstrdup(message);
	if (sb->state == COVE_SANDBOX_PENDING) {
		sandbox_finish(sb);
		return;
	}
	proc_kill(sb->main);
	size_t it = 0;
	void *v;
	while (cove_map_next(&sb->host.execs, &it, NULL, &v))
		proc_kill(v);
}

/* What an isolated sandbox gets bind-mounted: Cove's filesystem helper where the client runs it, the host's CA
 * bundle, and its volumes. */
static int
isolated_mounts(struct cove_sandbox *sb, struct cove_error **err)
{
	struct cove_sandboxes *sbx = sb->sbx;
	const Modal__Client__Sandbox *d = sb->def;
	struct cove_container_mount *m = NULL;
	size_t n = 0;
	if (d->n_volume_mounts) {
		/* The volume code reads a function's mounts: hand it the sandbox's. */
		Modal__Client__Function fn = MODAL__CLIENT__FUNCTION__INIT;
		fn.volume_mounts = d->volume_mounts;
		fn.n_volume_mounts = d->n_volume_mounts;
		if (cove_volume_mounts_for_task(sbx->ctx, sb->host.task_id, &fn, &m, &n, err) < 0)
			return -1;
		sb->volumes = 1;
	}
	const char *ca = cove_isolate_ca_bundle(sbx->ctx);
	m = xrealloc(m, (n + 2) * sizeof(*m));
	memmove(m + (ca ? 2 : 1), m, n * sizeof(*m));
	m[0] = (struct cove_container_mount){.source = xstrdup(sbx->fs_tools), .target = xstrdup(FS_TOOLS_PATH), .read_only = 1};
	n++;
	if (ca) {
		m[1] = (struct cove_container_mount){.source = xstrdup(ca), .target = xstrdup(COVE_CA_PATH), .read_only = 1};
		n++;
	}
	sb->vmounts = m;
	sb->n_vmounts = n;
	return 0;
}

/* Start the entrypoint: the sandbox runs from here. */
static int
sandbox_start(struct cove_sandbox *sb, struct cove_error **err)
{
	struct cove_sandboxes *sbx = sb->sbx;
	const Modal__Client__Sandbox *d = sb->def;
	/* Isolated, its files go into its writable layer at the paths it sees; else under its directory. */
	cleanup_free char *root = sb->iso ? xstrdup(sb->iso->upper) : xasprintf("%s/root", sb->dir);
	if (cove_mkdirs(root, err) < 0)
		return -1;
	for (size_t i = 0; i < d->n_mount_ids; i++)
		if (layout_mount(sbx, sb->iso ? sb->iso->upper : sb->dir, d->mount_ids[i], err) < 0)
			return -1;
	if (sb->iso && isolated_mounts(sb, err) < 0)
		return -1;
	static char *const idle_argv[] = {"sleep", "infinity", NULL};
	char *const *args = d->n_entrypoint_args ? d->entrypoint_args : idle_argv;
	size_t n_args = d->n_entrypoint_args ? d->n_entrypoint_args : 2;
	/* Isolated, cove-container finds the command in the container's PATH. */
	cleanup_free char *argv0 = sb->iso ? xstrdup(args[0]) : resolve_command(sbx, args[0], sb->host.envp, sb->host.cwd, err);
	if (argv0 == NULL)
		return cove_error_wrap(err, "sandbox entrypoint");
	cleanup_free char **argv = xcalloc(n_args + 1, sizeof(char *));
	argv[0] = argv0;
	for (size_t i = 1; i < n_args; i++)
		argv[i] = args[i];
	const Modal__Client__PTYInfo *pty = d->pty_info;
	int use_pty = pty && (pty->enabled || pty->pty_type != MODAL__CLIENT__PTYINFO__PTYTYPE__PTY_TYPE_UNSPECIFIED);
	struct proc_spec spec = {
		.argv = argv,
		.envp = sb->host.envp,
		.cwd = sb->host.cwd,
		.stdout_mode = COVE_STREAM_RING,
		.stderr_mode = COVE_STREAM_RING,
		.ring_keep = COVE_SANDBOX_RING,
		.pty = use_pty,
		.rows = use_pty && pty->winsz_rows < 65536 ? (unsigned short)pty->winsz_rows : 0,
		.cols = use_pty && pty->winsz_cols < 65536 ? (unsigned short)pty->winsz_cols : 0,
	};
	if (sb->iso) {
		spec.rootfs = &sb->iso->rootfs;
		spec.limits = &sb->iso->limits;
		spec.mounts = sb->vmounts;
		spec.n_mounts = sb->n_vmounts;
	}
	if (proc_start(&sb->host, &spec, &sb->main, err) < 0)
		return -1;
	/* Its encrypted ports' TLS: a failure here is Cove's (the sandbox runs, unreachable through them). */
	struct cove_error *tls_err = NULL;
	if (fronts_open(sb, &tls_err) < 0) {
		log_error("%s", tls_err->msg);
		cove_error_free(tls_err);
	}
	sb->state = COVE_SANDBOX_RUNNING;
	sb->started_at = cove_sandbox_now();
	sb->last_active = sb->started_at;
	if (d->_idle_timeout_secs_case && d->idle_timeout_secs > 0) {
		sb->idle_ev = evtimer_new(base_of(sbx), sandbox_idle_check, sb);
		struct timeval tv = {(time_t)d->idle_timeout_secs, 0};
		evtimer_add(sb->idle_ev, &tv);
	}
	log_debug("sandbox %s (%s): started %s", sb->id, sb->host.task_id, argv0);
	return 0;
}

struct restore_job {
	struct cove_sandboxes *sbx;
	char *sandbox_id;
	char *src, *dst;
	struct cove_error *err;
};

static void
restore_work(void *arg)
{
	struct restore_job *j = arg;
	snapshot_copy_tree(j->src, j->dst, &j->err);
}

static void
restore_done(void *arg)
{
	struct restore_job *j = arg;
	struct cove_sandbox *sb = cove_sandbox_get(j->sbx, j->sandbox_id);
	if (sb) {
		if (sb->state == COVE_SANDBOX_PENDING) {
			if (j->err == NULL && j->sbx->closing)
				cove_error_set(&j->err, COVE_UNAVAILABLE, "the server is shutting down");
			if (j->err == NULL && sandbox_start(sb, &j->err) == 0) {
				cove_error_free(j->err);
				j->err = NULL;
			} else {
				log_warn("sandbox %s: cannot start from its snapshot image: %s", sb->id,
					 j->err ? j->err->msg : "?");
				sb->stop_status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_INIT_FAILURE;
				sb->stop_message = xasprintf("cannot start from the snapshot image: %s",
							     j->err ? j->err->msg : "?");
				sandbox_finish(sb);
			}
		}
		sandbox_copy_done(sb);
	}
	cove_error_free(j->err);
	free(j->sandbox_id);
	free(j->src);
	free(j->dst);
	free(j);
}

static void
sandbox_timer_start(struct cove_sandbox *sb)
{
	unsigned t = sb->def->timeout_secs ? sb->def->timeout_secs : DEFAULT_TIMEOUT_S;
	sb->timeout_ev = evtimer_new(base_of(sb->sbx), sandbox_timed_out, sb);
	struct timeval tv = {(time_t)t, 0};
	evtimer_add(sb->timeout_ev, &tv);
}

struct cove_sandbox *
cove_sandbox_create(struct cove_sandboxes *sbx, const struct cove_sandbox_create *a, struct cove_error **err)
{
	const Modal__Client__Sandbox *d = a->def;
	if (d == NULL) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "no sandbox definition given");
		return NULL;
	}
	struct cove_app *app = a->app_id && *a->app_id ? cove_sched_app_get(sbx->ctx->sched, a->app_id) : NULL;
	if (app == NULL) {
		cove_error_set(err, COVE_NOT_FOUND, "App %s not found", a->app_id && *a->app_id ? a->app_id : "(none given)");
		return NULL;
	}
	if (app->stopping || app->state == MODAL__CLIENT__APP_STATE__APP_STATE_STOPPED) {
		cove_error_set(err, COVE_FAILED_PRECONDITION, "app %s is stopped: it cannot start sandboxes", app->id);
		return NULL;
	}
	int isolated = sbx->ctx->builder != NULL;
	if (check_definition(d, isolated, err) < 0 || check_tags(a->tags, a->n_tags, err) < 0)
		return NULL;
	if (has_name(d) && cove_sandbox_by_name(sbx, app->id, d->name, 0)) {
		cove_error_set(err, COVE_ALREADY_EXISTS, "a running sandbox of this app is already named %s", d->name);
		return NULL;
	}
	struct cove_sandbox *sb = xcalloc(1, sizeof(*sb));
	sb->sbx = sbx;
	sb->v2 = a->v2;
	sb->id = new_sandbox_id(a->v2);
	sb->app_id = xstrdup(app->id);
	sb->env = xstrdup(app->env);
	sb->name = has_name(d) ? xstrdup(d->name) : NULL;
	sb->def = pb_dup(&d->base);
	tags_replace(sb, a->tags, a->n_tags);
	double now = cove_sandbox_now();
	sb->created_at = now > sbx->last_created ? now : sbx->last_created + 1e-6;
	sbx->last_created = sb->created_at;
	cleanup_free char *task_id = new_task_id(a->v2);
	cleanup_free char *snapshot = NULL;
	sb->dir = xasprintf("%s/%s", sbx->ctx->tasks_dir, task_id);
	cleanup_free char *root = xasprintf("%s/root", sb->dir);

	/* The environment: the image's (isolated) or the host's basics, the definition's variables, secrets, then
	 * what Modal reserves. */
	char **env = NULL;
	size_t n = 0;
	const char *cwd = d->_workdir_case ? d->workdir : root;
	if (isolated) {
		sb->iso = xcalloc(1, sizeof(*sb->iso));
		cleanup_free char *what = xasprintf("sandbox %s", sb->id);
		if (cove_isolate_prepare_image(sbx->ctx, what, d->image_id, d->resources, sb->dir, sb->iso, err) < 0)
			goto fail;
		env_set(&env, &n, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
		for (size_t i = 0; i < sb->iso->image->n_env; i++) {
			char *eq = strchr(sb->iso->image->env[i], '=');
			if (eq == NULL)
				continue;
			cleanup_free char *key = xstrndup(sb->iso->image->env[i], (size_t)(eq - sb->iso->image->env[i]));
			env_set(&env, &n, key, eq + 1);
		}
		env_set(&env, &n, "HOME", "/root");
		const char *ca = cove_isolate_ca_bundle(sbx->ctx);
		for (size_t i = 0; ca && cove_ca_env[i]; i++)
			env_set(&env, &n, cove_ca_env[i], COVE_CA_PATH);
		cwd = d->_workdir_case ? d->workdir : sb->iso->image->workdir ? sb->iso->image->workdir : "/";
		sb->iso->rootfs.block_network = d->block_network ||
						(d->network_access &&
						 d->network_access->network_access_type !=
							 MODAL__CLIENT__NETWORK_ACCESS__NETWORK_ACCESS_TYPE__OPEN &&
						 d->network_access->network_access_type !=
							 MODAL__CLIENT__NETWORK_ACCESS__NETWORK_ACCESS_TYPE__UNSPECIFIED);
		/* Tunnels: the sandbox's ports, reached at the host's 127.0.0.1, on ports the runtime picks
		 * (cove_sandbox_tunnels). */
		size_t n_ports = d->open_ports_oneof_case && d->open_ports ? d->open_ports->n_ports : 0;
		sb->iso->ports = xcalloc(n_ports + 1, sizeof(*sb->iso->ports));
		sb->iso->host_ports = xcalloc(n_ports + 1, sizeof(*sb->iso->host_ports));
		for (size_t i = 0; i < n_ports; i++)
			sb->iso->ports[i] = sb->iso->host_ports[i] = (unsigned short)d->open_ports->ports[i]->port;
		sb->iso->rootfs.published_ports = sb->iso->ports;
		sb->iso->rootfs.n_published_ports = n_ports;
		sb->iso->rootfs.published_host_ports = sb->iso->host_ports;
	} else {
		const char *path = getenv("PATH");
		env_set(&env, &n, "PATH", path ? path : "/usr/local/bin:/usr/bin:/bin");
		env_set(&env, &n, "HOME", root);
	}
	env_set(&env, &n, "LANG", "C.UTF-8");
	const Modal__Client__PTYInfo *pty = d->pty_info;
	if (pty && pty->env_term[0])
		env_set(&env, &n, "TERM", pty->env_term);
	if (d->environment_variables) {
		for (size_t i = 0; i < d->environment_variables->n_contents; i++) {
			const Modal__Client__StringMap__ContentsEntry *e = d->environment_variables->contents[i];
			if (!env_name_ok(e->key)) {
				cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid environment variable name '%s'", e->key);
				goto fail;
			}
			env_set(&env, &n, e->key, e->value);
		}
	}
	if (a->n_sources) {
		if (env_add_sources(sbx, &env, &n, a->sources, a->n_sources, err) < 0)
			goto fail;
	} else {
		for (size_t i = 0; i < d->n_secret_ids; i++)
			if (env_add_secret(sbx, &env, &n, d->secret_ids[i], err) < 0)
				goto fail;
	}
	env_set(&env, &n, "MODAL_TASK_ID", task_id);
	env_set(&env, &n, "MODAL_SANDBOX_ID", sb->id);
	env_set(&env, &n, "MODAL_IMAGE_ID", d->image_id);
	env_set(&env, &n, "MODAL_REGION", "local");
	env_set(&env, &n, "MODAL_CLOUD_PROVIDER", "local");
	host_init(&sb->host, sbx, task_id, sb, cwd, env);
	sb->host.isolated = isolated;
	env = NULL;
	for (size_t i = 0; i < d->n_mount_ids; i++) {
		cleanup_free uint8_t *data = NULL;
		size_t len;
		if (!cove_id_valid(d->mount_ids[i], "mo") ||
		    cove_store_object_get(sbx->ctx->store, d->mount_ids[i], NULL, &data, &len, NULL) < 0) {
			cove_error_set(err, COVE_NOT_FOUND, "Mount %s not found", d->mount_ids[i]);
			goto fail;
		}
	}

	snapshot = isolated ? NULL : snapshot_dir_of(sbx, d->image_id);
	sb->state = COVE_SANDBOX_PENDING;
	if (snapshot) {
		/* Its files come from a snapshot image: copy them off the event loop, then start. */
		if (cove_mkdirs(sb->dir, err) < 0)
			goto fail;
		struct restore_job *j = xcalloc(1, sizeof(*j));
		j->sbx = sbx;
		j->sandbox_id = xstrdup(sb->id);
		j->src = steal_pointer(&snapshot);
		j->dst = xstrdup(root);
		sb->copies++;
		cove_workq_submit(sbx->workq, restore_work, restore_done, j);
	} else if (sandbox_start(sb, err) < 0) {
		goto fail;
	}
	cove_map_put(&sbx->by_id, sb->id, sb);
	cove_map_put(&sbx->by_task, sb->host.task_id, sb);
	sbx->n_running++;
	sandbox_timer_start(sb);
	log_debug("sandbox %s (container %s) created in app %s", sb->id, sb->host.task_id, sb->app_id);
	return sb;
fail:
	env_free(env);
	if (sb->copies == 0) {
		struct cove_error *ignored = NULL;
		cove_remove_tree(sb->dir, &ignored);
		cove_error_free(ignored);
	}
	cove_error_wrap(err, "create sandbox");
	host_release(&sb->host, COVE_OK, NULL);
	sandbox_free(sb);
	return NULL;
}

/* ---- answers ---- */

void
cove_sandbox_result(const struct cove_sandbox *sb, Modal__Client__GenericResult *out)
{
	Modal__Client__GenericResult r = MODAL__CLIENT__GENERIC_RESULT__INIT;
	if (sb->state == COVE_SANDBOX_FINISHED) {
		r.status = sb->result_status;
		r.exitcode = sb->exitcode;
		r.exception = sb->exception ? sb->exception : "";
	}
	*out = r;
}

static void
wait_timeout(struct cove_waiter *w)
{
	struct cove_sandbox *sb = w->owner;
	Modal__Client__GenericResult result = MODAL__CLIENT__GENERIC_RESULT__INIT;
	Modal__Client__SandboxHandleMetadata meta = MODAL__CLIENT__SANDBOX_HANDLE_METADATA__INIT;
	meta.result = &result;
	meta.app_id = sb->app_id;
	Modal__Client__SandboxWaitResponse resp = MODAL__CLIENT__SANDBOX_WAIT_RESPONSE__INIT;
	resp.result = &result;
	resp.metadata = &meta;
	cove_api_reply(w->call, &resp.base);
	cove_waiter_done(w);
}

void
cove_sandbox_wait(struct cove_sandbox *sb, struct cove_call *call, double timeout_s)
{
	struct cove_waiter *w = cove_waiter_park(base_of(sb->sbx), sb->sbx->ctx->sched, &sb->waiters, call, sb,
						 timeout_s, wait_timeout);
	if (sb->state == COVE_SANDBOX_FINISHED || timeout_s <= 0) {
		/* Answer at once through the same path (a finished one, or a poll). */
		if (sb->state == COVE_SANDBOX_FINISHED)
			answer_waiters(sb);
		else
			wait_timeout(w);
	}
}

size_t
cove_sandbox_tunnels(const struct cove_sandbox *sb, Modal__Client__TunnelData ***out)
{
	const Modal__Client__Sandbox *d = sb->def;
	size_t n = d->open_ports_oneof_case && d->open_ports ? d->open_ports->n_ports : 0;
	Modal__Client__TunnelData **t = xcalloc(n + 1, sizeof(*t));
	for (size_t i = 0; i < n; i++) {
		const Modal__Client__PortSpec *ps = d->open_ports->ports[i];
		/* Where the runtime made the port reachable (the same port where the sandbox shares the host's
		 * network). */
		uint32_t host_port = sb->iso && sb->iso->host_ports && i < sb->iso->rootfs.n_published_ports
					     ? sb->iso->host_ports[i]
					     : ps->port;
		/* An encrypted port: the TLS front's (while the sandbox runs). */
		uint32_t tls_port = !ps->unencrypted && i < sb->n_fronts && sb->fronts[i]
					    ? cove_tls_front_port(sb->fronts[i])
					    : host_port;
		t[i] = xcalloc(1, sizeof(**t));
		Modal__Client__TunnelData init = MODAL__CLIENT__TUNNEL_DATA__INIT;
		*t[i] = init;
		t[i]->host = xstrdup("127.0.0.1");
		t[i]->port = tls_port;
		t[i]->container_port = ps->port;
		if (ps->unencrypted) {
			t[i]->_unencrypted_host_case = MODAL__CLIENT__TUNNEL_DATA___UNENCRYPTED_HOST_UNENCRYPTED_HOST;
			t[i]->unencrypted_host = xstrdup("127.0.0.1");
			t[i]->_unencrypted_port_case = MODAL__CLIENT__TUNNEL_DATA___UNENCRYPTED_PORT_UNENCRYPTED_PORT;
			t[i]->unencrypted_port = host_port;
		}
	}
	*out = t;
	return n;
}

void
cove_sandbox_tunnels_free(Modal__Client__TunnelData **t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i]->host);
		if (t[i]->_unencrypted_host_case)
			free(t[i]->unencrypted_host);
		free(t[i]);
	}
	free(t);
}

void
cove_sandbox_task_info(const struct cove_sandbox *sb, Modal__Client__TaskInfo *info, Modal__Client__GenericResult *result)
{
	Modal__Client__TaskInfo i = MODAL__CLIENT__TASK_INFO__INIT;
	i.id = sb->host.task_id;
	i.enqueued_at = sb->created_at;
	i.started_at = sb->started_at;
	i.finished_at = sb->state == COVE_SANDBOX_FINISHED ? sb->finished_at : 0;
	i.sandbox_id = sb->id;
	cove_sandbox_result(sb, result);
	if (sb->state == COVE_SANDBOX_FINISHED)
		i.result = result;
	*info = i;
}

int
cove_sandbox_stdin_v1(struct cove_sandbox *sb, uint32_t index, const uint8_t *data, size_t len, int eof,
		      struct cove_error **err)
{
	if (sb->state == COVE_SANDBOX_FINISHED)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "Sandbox %s has already terminated", sb->id);
	if (sb->state == COVE_SANDBOX_PENDING)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "Sandbox %s has not started yet", sb->id);
	if (index != 0 && index <= sb->stdin_index)
		return 0; /* a retry */
	if (cove_proc_stdin(sb->main, sb->main->in_offset, data, len, eof, NULL, err) < 0)
		return -1;
	sb->stdin_index = index;
	return 0;
}

int
cove_sandbox_stop_task(struct cove_sandboxes *sbx, const char *task_id, struct cove_error **err)
{
	struct cove_sandbox *sb = cove_sandbox_by_task(sbx, task_id);
	if (sb == NULL || sb->state == COVE_SANDBOX_FINISHED)
		return cove_error_set(err, COVE_NOT_FOUND, "Container %s not found (it may have exited)", task_id);
	cove_sandbox_terminate(sb, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED,
			       "the sandbox's container was stopped");
	return 0;
}

/* Its app stopped (or, with app NULL, every container stops): its sandboxes end. */
static void
stop_hook(void *arg, struct cove_app *app)
{
	struct cove_sandboxes *sbx = arg;
	size_t it = 0;
	void *v;
	while (cove_map_next(&sbx->by_id, &it, NULL, &v)) {
		struct cove_sandbox *sb = v;
		if (app && strcmp(sb->app_id, app->id) != 0)
			continue;
		cleanup_free char *msg = app ? xasprintf("its app %s was stopped", app->id)
					     : xstrdup("the Cove server is shutting down");
		cove_sandbox_terminate(sb, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED, msg);
	}
	if (app)
		return;
	it = 0;
	while (cove_map_next(&sbx->fn_hosts, &it, NULL, &v)) {
		struct cove_exec_host *host = v;
		size_t j = 0;
		void *p;
		while (cove_map_next(&host->execs, &j, NULL, &p))
			proc_kill(p);
	}
}

/* ---- tokens ---- */

char *
cove_sandbox_router_token(struct cove_sandboxes *sbx, const char *task_id)
{
	return cove_jwt_issue(sbx->key, task_id, "tcr", (int64_t)cove_sandbox_now(), ROUTER_TOKEN_S);
}

const char *
cove_sandbox_router_url(struct cove_sandboxes *sbx)
{
	/* The router is served on the API's own port (plain h2c: the client allows http for a loopback server). */
	return sbx->ctx->server_url;
}

int
cove_sandbox_router_check(struct cove_sandboxes *sbx, const char *token, char *task, size_t cap,
			  struct cove_error **err)
{
	return cove_jwt_verify(sbx->key, token, "tcr", (int64_t)cove_sandbox_now(), task, cap, err);
}

char *
cove_sandbox_auth_token(struct cove_sandboxes *sbx, const char *subject)
{
	return cove_jwt_issue(sbx->key, subject, "auth", (int64_t)cove_sandbox_now(), AUTH_TOKEN_S);
}
