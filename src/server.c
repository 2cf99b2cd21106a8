#include "image/builder.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "blob/http.h"
#include "gateway/gateway.h"
#include "grpc/server.h"
#include "runtime/runtime.h"
#include "sandbox/sandbox.h"
#include "sched/sched.h"
#include "store/kv.h"
#include "store/store.h"
#include "store/volume.h"
#include "store/volview.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/netns.h"

/* <state>/api.sock, absolute; NULL (with a warning) when that path is too long for a Unix socket. */
static char *
api_socket_path(const char *state_dir)
{
	char *abs = realpath(state_dir, NULL);
	if (abs == NULL)
		return NULL;
	char *sock = xasprintf("%s/api.sock", abs);
	free(abs);
	if (strlen(sock) >= 108) {
		log_warn("the API's Unix socket path %s is too long; functions with block_network=True cannot run", sock);
		free(sock);
		return NULL;
	}
	return sock;
}

/* One server per state directory: a POSIX record lock on <state>/serve.lock, which holds the pid. The kernel
 * drops the lock with the process however it ends (kill -9 included), and fork does not pass it on, so a
 * container never holds it. The descriptor is close-on-exec. Returns the descriptor, or -1 and *err. */
static int
lock_state_dir(const char *state_dir, struct cove_error **err)
{
	cleanup_free char *path = xasprintf("%s/serve.lock", state_dir);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return cove_error_set_errno(err, errno, "open %s", path);
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		int e = errno;
		struct flock held = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		if ((e == EACCES || e == EAGAIN) && fcntl(fd, F_GETLK, &held) == 0 && held.l_type != F_UNLCK) {
			close(fd);
			return cove_error_set(err, COVE_FAILED_PRECONDITION,
					      "another `cove serve` (pid %ld) is running on this state directory (it holds "
					      "%s); stop it first, or give this one another --state-dir",
					      (long)held.l_pid, path);
		}
		close(fd);
		return cove_error_set_errno(err, e, "lock %s", path);
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		int e = errno;
		close(fd);
		return cove_error_set_errno(err, e, "write %s", path);
	}
	return fd;
}

/* cove_net_api_hooks: the API port listening inside a container network's namespace. */
static void *
api_listen_in(void *arg, int netns_fd)
{
	struct cove_ctx *ctx = arg;
	struct cove_error *err = NULL;
	int fd = cove_netns_listen_tcp(netns_fd, cove_grpc_server_port(ctx->grpc), &err);
	struct cove_grpc_listener *l = fd >= 0 ? cove_grpc_server_listen_fd(ctx->grpc, fd, &err) : NULL;
	if (l == NULL) {
		log_warn("container networks: %s", err->msg);
		cove_error_free(err);
	}
	return l;
}

static void
api_unlisten(void *arg, void *handle)
{
	(void)arg;
	cove_grpc_listener_free(handle);
}

struct cove_ctx *
cove_server_new(const struct cove_config *cfg, struct event_base *base, struct cove_error **err)
{
	struct cove_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->cfg = *cfg;
	ctx->base = base;
	ctx->lock_fd = -1;
	ctx->tasks_dir = xasprintf("%s/tasks", cfg->state_dir);
	cleanup_free char *db = xasprintf("%s/cove.db", cfg->state_dir);
	/* The lock before anything else in the directory is touched. Working directories of containers from an
	 * earlier run are leftovers: their processes are gone (and the root filesystems mounted for gVisor are
	 * unmounted first). */
	if (cove_mkdirs(cfg->state_dir, err) < 0 || (ctx->lock_fd = lock_state_dir(cfg->state_dir, err)) < 0)
		goto fail;
	cove_runtime_runsc_unmount_stale(ctx->tasks_dir);
	if (cove_remove_tree(ctx->tasks_dir, err) < 0 || cove_mkdirs(ctx->tasks_dir, err) < 0)
		goto fail;
	chmod(cfg->state_dir, 0700);
	if ((ctx->store = cove_store_open(db, err)) == NULL)
		goto fail;
	if ((ctx->blobs = cove_blobstore_open(cfg->state_dir, err)) == NULL)
		goto fail;
	if ((ctx->blob_http = cove_blob_http_new(base, cfg->address, cfg->blob_port, ctx->blobs, err)) == NULL)
		goto fail;
	if ((ctx->sched = cove_sched_new(ctx, err)) == NULL)
		goto fail;
	if (cove_kv_start(ctx, err) < 0)
		goto fail;
	if (cove_volume_start(ctx, err) < 0 || cove_volview_start(ctx, err) < 0)
		goto fail;
	if ((ctx->sandboxes = cove_sandbox_new(ctx, err)) == NULL)
		goto fail;
	if ((ctx->api = cove_api_new(ctx, err)) == NULL)
		goto fail;
	/* The linux runtime's functions with block_network=True reach the API through a Unix socket mounted into
	 * their empty network namespace. */
	ctx->api_socket = ctx->builder ? api_socket_path(cfg->state_dir) : NULL;
	struct cove_grpc_options opts = {
		.address = cfg->address,
		.port = cfg->port,
		.max_message_bytes = 100 * 1024 * 1024 + 1024,
		.unix_path = ctx->api_socket,
	};
	if (cove_grpc_options_from_env(&opts, err) < 0)
		goto fail;
	if ((ctx->grpc = cove_grpc_server_new(base, &opts, cove_api_route, ctx->api, err)) == NULL)
		goto fail;
	cove_grpc_server_set_admit_hook(ctx->grpc, cove_api_admit, ctx->api);
	cove_grpc_server_set_message_hook(ctx->grpc, cove_api_stream_message, ctx->api);
	ctx->server_url = xasprintf("http://%s:%d", cfg->address, cove_grpc_server_port(ctx->grpc));
	if ((ctx->gateway = cove_gateway_new(ctx, cfg->web_port, err)) == NULL)
		goto fail;
	if (ctx->builder) {
		/* Each container a network of its own, with only Cove's ports of the host's loopback in reach. */
		int ports[] = {cove_grpc_server_port(ctx->grpc), cove_blob_http_port(ctx->blob_http),
			       cove_gateway_port(ctx->gateway)};
		struct cove_error *why = NULL;
		/* The API itself listens inside each network made ahead of time (no hop through pasta for a
		 * container's calls); the other two ports are forwarded. */
		struct cove_net_api_hooks hooks = {.port = ports[0], .open = api_listen_in, .close = api_unlisten,
						   .ctx = ctx};
		cove_runtime_linux_set_api_hooks(ctx->runtime, &hooks);
		const char *pasta = getenv("COVE_PASTA"); /* another pasta; "" for none (containers share the host's network) */
		if (pasta == NULL)
			pasta = COVE_PASTA;
		if (*pasta == '\0')
			log_warn("COVE_PASTA is empty: containers share the host's network");
		else if (cove_runtime_linux_set_network(ctx->runtime, pasta, ports, sizeof(ports) / sizeof(ports[0]), &why) < 0) {
			log_warn("%s", why->msg);
			cove_error_free(why);
		}
	}
	/* Last: restoring may start containers, which dial server_url. */
	if (cove_sched_restore(ctx->sched, err) < 0)
		goto fail;
	cove_gateway_restore(ctx->gateway);
	return ctx;
fail:
	cove_error_wrap(err, "start server in %s", cfg->state_dir);
	cove_server_free(ctx);
	return NULL;
}

void
cove_server_free(struct cove_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->runtime && ctx->grpc)
		cove_runtime_linux_set_api_hooks(ctx->runtime, NULL); /* its listeners, before the server */
	cove_gateway_free(ctx->gateway); /* first: its requests hold on to the scheduler's calls */
	cove_grpc_server_free(ctx->grpc);
	cove_volview_stop(ctx); /* before the stores its last commits write to */
	cove_volume_stop(ctx);
	cove_sandbox_free(ctx->sandboxes); /* before the runtime, which the scheduler frees */
	cove_builder_free(ctx->builder);   /* likewise: it may have build containers running */
	cove_sched_free(ctx->sched);
	cove_api_free(ctx->api);
	cove_blob_http_free(ctx->blob_http);
	cove_blobstore_free(ctx->blobs);
	cove_kv_stop(ctx);
	cove_store_close(ctx->store);
	cove_auth_reset();
	free(ctx->server_url);
	free(ctx->tasks_dir);
	free(ctx->client_deps);
	free(ctx->api_socket);
	if (ctx->lock_fd >= 0)
		close(ctx->lock_fd); /* last: the directory is ours until everything above is done with it */
	free(ctx);
}

int
cove_token_create(struct cove_store *store, char **id, char **secret, struct cove_error **err)
{
	char *i = cove_id_new("ak");
	char *s = cove_id_new("as");
	if (cove_store_token_add(store, i, s, err) < 0) {
		free(i);
		free(s);
		return -1;
	}
	*id = i;
	*secret = s;
	return 0;
}

/* Read KEY=value from a client.env text; NULL if absent. Caller frees. */
static char *
env_value(const char *text, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = text; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);
		if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=')
			return xstrndup(p + klen + 1, n - klen - 1);
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

/* The token in an existing client.env is kept while it is valid, so shells that sourced it keep working
 * across restarts; the secret lives only there (mode 0600), the store has its hash. */
char *
cove_client_env_text(struct cove_store *store, const char *state_dir, const char *server_url, struct cove_error **err)
{
	cleanup_free char *path = xasprintf("%s/client.env", state_dir);
	cleanup_free uint8_t *old = NULL;
	size_t len = 0;
	struct cove_error *ignored = NULL;
	cleanup_free char *id = NULL;
	cleanup_free char *secret = NULL;
	if (cove_read_file(path, &old, &len, &ignored) == 0) {
		id = env_value((char *)old, "MODAL_TOKEN_ID");
		secret = env_value((char *)old, "MODAL_TOKEN_SECRET");
		if (id == NULL || secret == NULL || !cove_store_token_check(store, id, secret)) {
			free(id);
			free(secret);
			id = secret = NULL;
		}
	}
	cove_error_free(ignored);
	if (id == NULL && cove_token_create(store, &id, &secret, err) < 0)
		return NULL;
	return xasprintf("MODAL_SERVER_URL=%s\nMODAL_TOKEN_ID=%s\nMODAL_TOKEN_SECRET=%s\n", server_url, id, secret);
}

int
cove_server_write_client_env(struct cove_ctx *ctx, struct cove_error **err)
{
	cleanup_free char *text = cove_client_env_text(ctx->store, ctx->cfg.state_dir, ctx->server_url, err);
	if (text == NULL)
		return -1;
	cleanup_free char *path = xasprintf("%s/client.env", ctx->cfg.state_dir);
	return cove_write_file_atomic(path, text, strlen(text), 0600, err);
}
