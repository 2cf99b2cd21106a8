/* Starting a function's container: its files (mounts laid out, volumes, the client package), its environment
 * (the image's, the client's container contract, secrets), its limits, and its startup timeout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "image/builder.h"
#include "runtime/runtime.h"
#include "sched/isolate.h"
#include "sched/sched_internal.h"
#include "server.h"
#include "store/store.h"
#include "store/volview.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/map.h"
#include "util/pb.h"

/* Lay a mount's files out under root (host paths mirror the container paths). */
static int
layout_mount(struct cove_sched *s, const char *root, const char *mount_id, struct cove_error **err)
{
	cleanup_free uint8_t *data = NULL;
	size_t len = 0;
	if (cove_store_object_get(s->ctx->store, mount_id, NULL, &data, &len, err) < 0)
		return cove_error_wrap(err, "mount %s", mount_id);
	Modal__Client__MountGetOrCreateRequest *m = pb_unpack(&modal__client__mount_get_or_create_request__descriptor, data, len);
	if (m == NULL)
		return cove_error_set(err, COVE_DATA_LOSS, "mount %s is corrupt in the store", mount_id);
	int rv = 0;
	for (size_t i = 0; i < m->n_files && rv == 0; i++) {
		const Modal__Client__MountFile *f = m->files[i];
		cleanup_free char *dst = xasprintf("%s%s", root, f->filename);
		cleanup_free char *dir = xstrdup(dst);
		*strrchr(dir, '/') = '\0';
		if (cove_mkdirs(dir, err) < 0) {
			rv = -1;
			break;
		}
		cleanup_free char *src = cove_blobstore_file_path(s->ctx->blobs, f->sha256_hex);
		cleanup_free uint8_t *content = NULL;
		size_t clen = 0;
		if (cove_read_file(src, &content, &clen, err) < 0 ||
		    cove_write_file_atomic(dst, content, clen, f->_mode_case ? (int)(f->mode & 0777) : 0644, err) < 0) {
			cove_error_wrap(err, "mount %s: %s", mount_id, f->filename);
			rv = -1;
		}
	}
	pb_free(m);
	return rv;
}

/* Append the secret's variables to env. */
static int
secret_env(struct cove_sched *s, const char *secret_id, char ***env, size_t *n, struct cove_error **err)
{
	cleanup_free uint8_t *data = NULL;
	size_t len = 0;
	if (cove_store_object_get(s->ctx->store, secret_id, NULL, &data, &len, err) < 0)
		return cove_error_wrap(err, "secret %s", secret_id);
	Modal__Client__SecretGetOrCreateRequest *sec = pb_unpack(&modal__client__secret_get_or_create_request__descriptor, data, len);
	if (sec == NULL)
		return cove_error_set(err, COVE_DATA_LOSS, "secret %s is corrupt in the store", secret_id);
	*env = xrealloc(*env, (*n + sec->n_env_dict + 1) * sizeof(char *));
	for (size_t i = 0; i < sec->n_env_dict; i++)
		(*env)[(*n)++] = xasprintf("%s=%s", sec->env_dict[i]->key, sec->env_dict[i]->value);
	pb_free(sec);
	return 0;
}

unsigned
sched_startup_timeout(const struct cove_function *fn)
{
	if (fn->def->startup_timeout_secs)
		return fn->def->startup_timeout_secs;
	return fn->def->timeout_secs ? fn->def->timeout_secs : DEFAULT_TIMEOUT_S;
}

/* A container that has not asked for inputs within its startup timeout is killed. */
static void
task_startup_timed_out(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_task *t = arg;
	if (!ext(t)->starting)
		return;
	log_info("container %s (%s) did not start within %u s; stopping it", t->id, t->fn->tag, sched_startup_timeout(t->fn));
	ext(t)->startup_timed_out = 1;
	sched_task_stop(the_sched, t, 0);
}

int
sched_task_start(struct cove_sched *s, struct cove_function *fn, struct cove_error **err)
{
	struct cove_ctx *ctx = s->ctx;
	struct cove_task *t = xcalloc(1, sizeof(*t) + sizeof(struct task_ext));
	t->id = cove_id_new("ta");
	t->secret = xmalloc(41);
	cove_random_base62(t->secret, 40);
	t->secret[40] = '\0';
	t->fn = fn;
	t->app = fn->app;
	t->state = COVE_TASK_STARTING;
	t->dir = xasprintf("%s/%s", ctx->tasks_dir, t->id);
	cleanup_free char *root = xasprintf("%s/root", t->dir);
	char **env = NULL;
	size_t n_env = 0;
	char *argv[4] = {NULL, "-m", "modal._container_entrypoint", NULL};
	cleanup_free uint8_t *abytes = NULL;
	cleanup_free char *args_path = NULL;
	struct cove_container_mount *vmounts = NULL;
	size_t n_vmounts = 0;
	/* Under the linux runtime the container's files are written into its writable layer, at the paths the
	 * container sees; the process runtime mirrors those paths under the task directory. */
	struct cove_isolated iso = {0};
	char **full_argv = NULL; /* the image's ENTRYPOINT, then argv */
	const char *layout_root = t->dir;
	int rv = -1;
	if (ctx->builder) {
		if (cove_isolate_prepare(ctx, fn->def, t->dir, &iso, err) < 0)
			goto out;
		layout_root = iso.upper;
		free(root);
		root = xstrdup("/root");
		if (cove_mkdirs(iso.upper, err) < 0)
			goto out;
	} else if (cove_mkdirs(root, err) < 0) {
		goto out;
	}
	for (size_t i = 0; i < fn->def->n_mount_ids; i++)
		if (layout_mount(s, layout_root, fn->def->mount_ids[i], err) < 0)
			goto out;
	/* Volumes (store/volview.c): a view of each, bind-mounted at its path by the runtime. */
	if (cove_volume_mounts_for_task(ctx, t->id, fn->def, &vmounts, &n_vmounts, err) < 0)
		goto out;
	if (ctx->builder) {
		/* The client package, read-only, first in the mounts. */
		vmounts = xrealloc(vmounts, (n_vmounts + 1) * sizeof(*vmounts));
		memmove(vmounts + 1, vmounts, n_vmounts * sizeof(*vmounts));
		vmounts[0] = (struct cove_container_mount){.source = xstrdup(ctx->client_deps), .target = xstrdup("/__modal/deps"),
							   .read_only = 1};
		n_vmounts++;
		if (fn->def->block_network) {
			/* No network at all: the API through its Unix socket, mounted into the container. */
			if (ctx->api_socket == NULL) {
				cove_error_set(err, COVE_FAILED_PRECONDITION,
					       "function %s has block_network=True, and Cove has no API socket to give it (its "
					       "state directory's path is too long for a Unix socket)",
					       fn->tag);
				goto out;
			}
			iso.rootfs.block_network = 1;
			vmounts = xrealloc(vmounts, (n_vmounts + 1) * sizeof(*vmounts));
			vmounts[n_vmounts++] = (struct cove_container_mount){
				.source = xstrdup(ctx->api_socket), .target = xstrdup("/__modal/api.sock"), .read_only = 0};
		}
		const char *ca = cove_isolate_ca_bundle(ctx);
		if (ca) {
			vmounts = xrealloc(vmounts, (n_vmounts + 1) * sizeof(*vmounts));
			memmove(vmounts + 1, vmounts, n_vmounts * sizeof(*vmounts));
			vmounts[0] = (struct cove_container_mount){.source = xstrdup(ca), .target = xstrdup(COVE_CA_PATH),
								   .read_only = 1};
			n_vmounts++;
		}
	}

	Modal__Client__ContainerArguments args = MODAL__CLIENT__CONTAINER_ARGUMENTS__INIT;
	args.task_id = t->id;
	args.function_id = fn->id;
	args.app_id = fn->app->id;
	args.function_def = fn->def;
	args.environment_name = fn->app->env;
	args.serialized_params.data = fn->params;
	args.serialized_params.len = fn->params_len;
	args.app_layout = cove_sched_app_layout(s, fn->app);
	cove_volume_fill_layout(args.app_layout);
	size_t alen;
	abytes = pb_pack(&args.base, &alen);
	cove_sched_layout_free(args.app_layout);
	if (ctx->builder) {
		cleanup_free char *dir = xasprintf("%s/__modal", layout_root);
		if (cove_mkdirs(dir, err) < 0)
			goto out;
		args_path = xasprintf("%s/container_arguments.bin", dir);
	} else {
		args_path = xasprintf("%s/container_arguments.bin", t->dir);
	}
	if (cove_write_file_atomic(args_path, abytes, alen, 0600, err) < 0)
		goto out;

	/* The environment: the image's, the client's container contract, secrets, and a few host basics. */
	env = xcalloc(16 + (iso.image ? iso.image->n_env : 0), sizeof(char *));
	if (iso.image) {
		int has_path = 0;
		for (size_t i = 0; i < iso.image->n_env; i++) {
			env[n_env++] = xstrdup(iso.image->env[i]);
			has_path |= strncmp(iso.image->env[i], "PATH=", 5) == 0;
		}
		if (!has_path)
			env[n_env++] = xstrdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
		env[n_env++] = xstrdup("HOME=/root");
		env[n_env++] = xstrdup("PYTHONPATH=/root:/pkg:/__modal/deps");
		if (cove_isolate_ca_bundle(ctx)) {
			env = xrealloc(env, (n_env + 24) * sizeof(char *));
			for (size_t i = 0; cove_ca_env[i]; i++)
				env[n_env++] = xasprintf("%s=%s", cove_ca_env[i], COVE_CA_PATH);
		}
		free(args_path);
		args_path = xstrdup("/__modal/container_arguments.bin");
	} else {
		const char *path = getenv("PATH");
		env[n_env++] = xasprintf("PATH=%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
		env[n_env++] = xasprintf("HOME=%s", root);
		env[n_env++] = xasprintf("PYTHONPATH=%s:%s/pkg", root, t->dir);
	}
	env[n_env++] = xstrdup("LANG=C.UTF-8");
	env[n_env++] = xstrdup("PYTHONUNBUFFERED=1");
	env[n_env++] = iso.rootfs.block_network ? xstrdup("MODAL_SERVER_URL=unix:///__modal/api.sock")
						 : xasprintf("MODAL_SERVER_URL=%s", ctx->server_url);
	env[n_env++] = xstrdup("MODAL_IS_REMOTE=1");
	env[n_env++] = xasprintf("MODAL_CONTAINER_ARGUMENTS_PATH=%s", args_path);
	env[n_env++] = xasprintf("MODAL_TASK_ID=%s", t->id);
	env[n_env++] = xasprintf("MODAL_ENVIRONMENT=%s", fn->app->env);
	env[n_env++] = xasprintf("MODAL_IMAGE_ID=%s", fn->def->image_id);
	env[n_env++] = xasprintf("MODAL_OVERRIDE_HEADERS=x-cove-task:%s", t->secret);
	env[n_env++] = xstrdup("NO_PROXY=127.0.0.1,localhost");
	for (size_t i = 0; i < fn->def->n_secret_ids; i++)
		if (secret_env(s, fn->def->secret_ids[i], &env, &n_env, err) < 0)
			goto out;
	env = xrealloc(env, (n_env + 1) * sizeof(char *));
	env[n_env] = NULL;

	argv[0] = iso.image ? "python" : (char *)ctx->cfg.python;
	/* An image's ENTRYPOINT runs first and execs the runtime's command ("exec \"$@\""), as the docs ask. */
	if (iso.image && iso.image->n_entrypoint > 0) {
		full_argv = xcalloc(iso.image->n_entrypoint + 4, sizeof(char *));
		size_t k = 0;
		for (size_t i = 0; i < iso.image->n_entrypoint; i++)
			full_argv[k++] = iso.image->entrypoint[i];
		for (size_t i = 0; i < 3; i++)
			full_argv[k++] = argv[i];
	}
	struct cove_container_spec spec = {.id = t->id,
					   .workload = COVE_WORKLOAD_FUNCTION,
					   .workdir = root,
					   .argv = full_argv ? full_argv : argv,
					   .envp = env,
					   .mounts = vmounts,
					   .n_mounts = n_vmounts};
	if (iso.image) {
		spec.workdir = iso.image->workdir ? iso.image->workdir : "/root";
		spec.rootfs = &iso.rootfs;
		spec.limits = &iso.limits;
	}
	cove_map_put(&s->tasks, t->secret, t);
	cove_map_put(&s->tasks_by_id, t->id, t);
	if (ctx->runtime->ops->start(ctx->runtime, &spec, t, &t->container, err) < 0) {
		cove_map_del(&s->tasks, t->secret);
		cove_map_del(&s->tasks_by_id, t->id);
		goto out;
	}
	t->started_at = now_s();
	fn->n_tasks++;
	fn->n_starting++;
	ext(t)->starting = 1;
	ext(t)->startup_timer = evtimer_new(ctx->base, task_startup_timed_out, t);
	struct timeval stv = {(time_t)sched_startup_timeout(fn), 0};
	evtimer_add(ext(t)->startup_timer, &stv);
	fn->app->n_tasks++;
	ext(t)->idle_since = now_s();
	log_debug("container %s: started for %s (%s)", t->id, fn->tag, fn->id);
	t = NULL;
	rv = 0;
out:
	for (size_t i = 0; env && i < n_env; i++)
		free(env[i]);
	free(env);
	cove_volume_mounts_free(vmounts, n_vmounts);
	cove_isolate_clear(&iso);
	free(full_argv);
	if (t) {
		if (vmounts)
			cove_volview_task_exit(t->id, NULL, NULL);
		struct cove_error *ignored = NULL;
		if (t->dir)
			cove_remove_tree(t->dir, &ignored);
		cove_error_free(ignored);
		sched_task_free(t);
	}
	return rv;
}
