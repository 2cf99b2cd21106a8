/* cove: the command line. A thin front: parse, then call the library. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "gateway/gateway.h"
#include "image/builder.h"
#include "sched/isolate.h"
#include "image/registry.h"
#include "runtime/cgroup.h"
#include "runtime/runtime.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "store/volume.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/json.h"
#include "util/log.h"

#define SHUTDOWN_WAIT_S 10

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: cove <command> [options]\n"
		"\n"
		"commands:\n"
		"  serve          run the server (API on --address:--port, blobs on --blob-port)\n"
		"  token create   create a new client token and print it (--proxy: a proxy auth token for web\n"
		"                 endpoints with requires_proxy_auth=True, sent as Modal-Key / Modal-Secret)\n"
		"  token list     list tokens: id, kind (client, proxy), created, last used (to within a minute)\n"
		"  token revoke ID   revoke a token; a running server refuses it from its next call on\n"
		"  env            print MODAL_SERVER_URL / MODAL_TOKEN_ID / MODAL_TOKEN_SECRET for this state dir\n"
		"  gc             remove volume blocks that no volume refers to and that nobody touched for\n"
		"                 --grace SECONDS (default 3600); safe while the server runs; and image layers\n"
		"                 no built image uses (while no build runs)\n"
		"  status         each volume's files, size and disk use; images and their layers' disk use\n"
		"  pull REF       pull an image (python:3.11-slim, 127.0.0.1:5000/team/app:v1, ...) into the layer\n"
		"                 store and print each layer's directory and the image's config; options:\n"
		"                 --state-dir, --image-dir DIR (default <state-dir>/images), --registry-mirror URL,\n"
		"                 --insecure-registry HOST[:PORT], --log-level; credentials, if the registry wants\n"
		"                 some, from $COVE_REGISTRY_USERNAME and $COVE_REGISTRY_PASSWORD\n"
		"  version        print versions\n"
		"\n"
		"options:\n"
		"  --state-dir DIR   state directory (default ./.cove)\n"
		"  --address ADDR    address to listen on (default 127.0.0.1)\n"
		"  --port N          gRPC API port (default 0: pick a free one)\n"
		"  --blob-port N     blob HTTP port (default 0: pick a free one)\n"
		"  --web-port N      web endpoints' HTTP port (default 0: the previous run's if free, else a free one)\n"
		"  --web-url T       the web endpoints' URLs, with {label} (and {port}, the web port): host form\n"
		"                    'https://{label}.apps.example.com' or path form 'http://example.com:{port}/{label}';\n"
		"                    default: the path form on --address. 'http://{label}.localhost:{port}' also\n"
		"                    works in browsers and curl, whatever is set\n"
		"  --python PATH     interpreter containers run (default: $COVE_PYTHON, else .venv/bin/python beside\n"
		"                    the build directory, else python3 on PATH)\n"
		"  --log-level L     debug, info, warn or error (default info)\n"
		"  --runtime R       linux (namespaces, overlayfs, cgroups; needs root) or process (plain host\n"
		"                    processes); default: linux where this host allows it, else process\n"
		"  --isolation I     what isolates each workload: gvisor (gVisor's runsc), linux, or per kind,\n"
		"                    sandboxes=K,functions=K; default: sandboxes under gvisor where runsc is found\n"
		"                    and the linux runtime runs, functions under linux (`cove status` says which)\n"
		"  --runsc PATH      gVisor's runsc (default: $COVE_RUNSC, else scripts/runsc.sh's cache, else PATH)\n"
		"  --image-dir DIR   image layers and built images (default <state-dir>/images; may be shared)\n"
		"  --registry-mirror URL   pull Docker Hub images from this registry instead\n"
		"  --insecure-registry HOST[:PORT]   reach this registry over plain HTTP (repeatable)\n"
		"  --debian-mirror URL     Debian mirror for bases built from Debian's packages (default: the\n"
		"                    host's apt source)\n"
		"  --client-deps DIR the modal client package and its dependencies, mounted into containers at\n"
		"                    /__modal/deps (default: the site-packages of --python)\n"
		"  --ca-bundle FILE  CA certificates containers trust, mounted at " "/etc/ssl/certs/ca-certificates.crt\n"
		"                    (default: the host's, if it has one; none: leave the image's)\n"
		"  --pids-limit N    processes and threads a container may have (linux runtime; default 4096;\n"
		"                    0: no limit)\n"
		"  --memory-limit MIB  memory of a container that sets no limit of its own (linux runtime; default:\n"
		"                    three quarters of this host's memory; 0: no limit)\n"
		"  --userns on|off   a user namespace per container, so its root is not the host's (linux runtime;\n"
		"                    default on; needs Linux 5.19 or later for idmapped overlay layers)\n");
}

struct opts {
	const char *state_dir;
	const char *address;
	int port;
	int blob_port;
	int web_port;
	const char *web_url;
	int proxy;
	const char *python;
	const char *log_level;
	double grace_s;
	const char *runtime;
	const char *isolation;
	const char *runsc;
	const char *image_dir;
	const char *registry_mirror;
	const char *insecure[16];
	size_t n_insecure;
	const char *debian_mirror;
	const char *client_deps;
	const char *ca_bundle;
	long pids_limit;   /* -1: the default */
	long memory_limit; /* MiB; -1: the default */
	int userns;        /* 1 unless --userns off */
};

/* A non-negative count for an option; -1 if s is not one. */
static long
parse_count(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	return errno || *end || end == s || v < 0 || v > (1L << 30) ? -1 : v;
}

static int
parse_port(const char *s, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < 0 || v > 65535)
		return -1;
	*out = (int)v;
	return 0;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{"state-dir", required_argument, NULL, 's'}, {"address", required_argument, NULL, 'a'},
		{"port", required_argument, NULL, 'p'},      {"blob-port", required_argument, NULL, 'b'},
		{"python", required_argument, NULL, 'y'},    {"log-level", required_argument, NULL, 'l'},
		{"web-port", required_argument, NULL, 'w'},  {"proxy", no_argument, NULL, 'P'},
		{"grace", required_argument, NULL, 'g'},
		{"runtime", required_argument, NULL, 'R'},   {"image-dir", required_argument, NULL, 'I'},
		{"registry-mirror", required_argument, NULL, 'M'}, {"insecure-registry", required_argument, NULL, 'K'},
		{"debian-mirror", required_argument, NULL, 'D'}, {"client-deps", required_argument, NULL, 'C'},
		{"ca-bundle", required_argument, NULL, 'A'},
		{"pids-limit", required_argument, NULL, 'N'}, {"memory-limit", required_argument, NULL, 'm'},
		{"isolation", required_argument, NULL, 'i'}, {"runsc", required_argument, NULL, 'r'},
		{"userns", required_argument, NULL, 'U'},    {"web-url", required_argument, NULL, 'W'},
		{"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': o->state_dir = optarg; break;
		case 'a': o->address = optarg; break;
		case 'p':
			if (parse_port(optarg, &o->port) < 0) {
				fprintf(stderr, "cove: --port: '%s' is not a port number\n", optarg);
				return -1;
			}
			break;
		case 'b':
			if (parse_port(optarg, &o->blob_port) < 0) {
				fprintf(stderr, "cove: --blob-port: '%s' is not a port number\n", optarg);
				return -1;
			}
			break;
		case 'w':
			if (parse_port(optarg, &o->web_port) < 0) {
				fprintf(stderr, "cove: --web-port: '%s' is not a port number\n", optarg);
				return -1;
			}
			break;
		case 'W': o->web_url = optarg; break;
		case 'P': o->proxy = 1; break;
		case 'g': {
			char *end;
			o->grace_s = strtod(optarg, &end);
			if (*end || !(o->grace_s >= 0)) {
				fprintf(stderr, "cove: --grace: '%s' is not a number of seconds\n", optarg);
				return -1;
			}
			break;
		}
		case 'y': o->python = optarg; break;
		case 'l': o->log_level = optarg; break;
		case 'R': o->runtime = optarg; break;
		case 'I': o->image_dir = optarg; break;
		case 'M': o->registry_mirror = optarg; break;
		case 'K':
			if (o->n_insecure == sizeof(o->insecure) / sizeof(o->insecure[0])) {
				fprintf(stderr, "cove: too many --insecure-registry options\n");
				return -1;
			}
			o->insecure[o->n_insecure++] = optarg;
			break;
		case 'D': o->debian_mirror = optarg; break;
		case 'C': o->client_deps = optarg; break;
		case 'A': o->ca_bundle = optarg; break;
		case 'N':
		case 'm':
			if (parse_count(optarg) < 0) {
				fprintf(stderr, "cove: --%s: '%s' is not a count\n", c == 'N' ? "pids-limit" : "memory-limit",
					optarg);
				return -1;
			}
			*(c == 'N' ? &o->pids_limit : &o->memory_limit) = parse_count(optarg);
			break;
		case 'i': o->isolation = optarg; break;
		case 'r': o->runsc = optarg; break;
		case 'U':
			if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
				fprintf(stderr, "cove: --userns: '%s' is neither on nor off\n", optarg);
				return -1;
			}
			o->userns = strcmp(optarg, "on") == 0;
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cove: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* The interpreter containers run: absolute, since containers start with execve. */
static char *
find_python(const char *given)
{
	if (given) {
		/* Absolute, but not through realpath: a virtualenv's python is a symlink whose target knows nothing
		 * of the environment. */
		if (given[0] == '/')
			return xstrdup(given);
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return xstrdup(given);
		return xasprintf("%s/%s", cwd, given);
	}
	const char *env = getenv("COVE_PYTHON");
	if (env && *env)
		return xstrdup(env);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			cleanup_free char *cand = xasprintf("%s/../.venv/bin/python", exe);
			if (access(cand, X_OK) == 0)
				return xasprintf("%s/../.venv/bin/python", exe);
		}
	}
	const char *path = getenv("PATH");
	cleanup_free char *copy = xstrdup(path ? path : "/usr/bin:/bin");
	char *save = NULL;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		cleanup_free char *cand = xasprintf("%s/python3", dir);
		if (access(cand, X_OK) == 0)
			return xstrdup(cand);
	}
	return xstrdup("/usr/bin/python3");
}

struct serve_state {
	struct event_base *base;
	struct cove_ctx *ctx;
	struct event *poll;
	int polls;
};

static void
shutdown_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct serve_state *st = arg;
	size_t live = cove_runtime_live(st->ctx->runtime);
	if (live == 0 || ++st->polls > SHUTDOWN_WAIT_S * 10) {
		if (live)
			log_warn("shutdown: %zu containers did not stop in %d s; killing them", live, SHUTDOWN_WAIT_S);
		event_base_loopbreak(st->base);
	}
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct serve_state *st = arg;
	if (st->ctx->shutting_down) {
		event_base_loopbreak(st->base);
		return;
	}
	log_info("received %s: stopping containers and shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	st->ctx->shutting_down = 1;
	cove_sched_stop_all(st->ctx->sched);
	cove_runtime_linux_stop_pool(st->ctx->runtime);
	st->poll = event_new(st->base, -1, EV_PERSIST, shutdown_poll, st);
	struct timeval tv = {0, 100000};
	event_add(st->poll, &tv);
}

static int
cmd_serve(struct opts *o)
{
	signal(SIGPIPE, SIG_IGN);
	cleanup_free char *python = find_python(o->python);
	long mem = o->memory_limit;
	if (mem < 0) {
		long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
		mem = pages > 0 && page > 0 ? (long)((unsigned long long)pages * (unsigned long long)page / 4 * 3 >> 20) : 0;
	}
	cove_cgroup_set_defaults(o->pids_limit < 0 ? COVE_CGROUP_DEFAULT_PIDS_MAX : (unsigned)o->pids_limit,
				 (unsigned)mem);
	cove_runtime_linux_set_userns(o->userns);
	struct cove_config cfg = {
		.state_dir = o->state_dir,
		.address = o->address,
		.port = o->port,
		.blob_port = o->blob_port,
		.web_port = o->web_port,
		.web_url = o->web_url,
		.python = python,
		.runtime = o->runtime,
		.isolation = o->isolation,
		.runsc = o->runsc,
		.image_dir = o->image_dir,
		.registry_mirror = o->registry_mirror,
		.insecure_registries = o->insecure,
		.n_insecure_registries = o->n_insecure,
		.debian_mirror = o->debian_mirror,
		.client_deps = o->client_deps,
		.ca_bundle = o->ca_bundle,
	};
	struct event_base *base = event_base_new();
	if (base == NULL) {
		fprintf(stderr, "cove: cannot create the event loop\n");
		return 1;
	}
	struct cove_error *err = NULL;
	struct serve_state st = {.base = base};
	st.ctx = cove_server_new(&cfg, base, &err);
	/* Signals before client.env: once it exists, whoever waits for it may stop us at once. */
	struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, &st);
	struct event *sigint = evsignal_new(base, SIGINT, on_signal, &st);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	if (st.ctx == NULL || cove_server_write_client_env(st.ctx, &err) < 0) {
		fprintf(stderr, "cove: %s\n", err ? err->msg : "cannot start");
		cove_error_free(err);
		event_free(sigterm);
		event_free(sigint);
		cove_server_free(st.ctx);
		event_base_free(base);
		return 1;
	}
	log_info("ready: API %s, web endpoints %s (and http://<label>.localhost:%d), state in %s, %s runtime; "
		 "client settings in %s/client.env",
		 st.ctx->server_url, cove_gateway_url_template(st.ctx->gateway), cove_gateway_port(st.ctx->gateway),
		 cfg.state_dir, st.ctx->runtime->ops->name, cfg.state_dir);
	event_base_dispatch(base);
	event_free(sigterm);
	event_free(sigint);
	if (st.poll)
		event_free(st.poll);
	cove_server_free(st.ctx);
	event_base_free(base);
	log_info("stopped");
	return 0;
}

static struct cove_store *
open_store(const char *state_dir)
{
	struct cove_error *err = NULL;
	if (cove_mkdirs(state_dir, &err) < 0) {
		fprintf(stderr, "cove: %s\n", err->msg);
		cove_error_free(err);
		return NULL;
	}
	cleanup_free char *db = xasprintf("%s/cove.db", state_dir);
	struct cove_store *store = cove_store_open(db, &err);
	if (store == NULL) {
		fprintf(stderr, "cove: %s\n", err->msg);
		cove_error_free(err);
	}
	return store;
}

static int
cmd_token_create(struct opts *o)
{
	struct cove_store *store = open_store(o->state_dir);
	if (store == NULL)
		return 1;
	struct cove_error *err = NULL;
	char *id = NULL, *secret = NULL;
	int rv = 0;
	if ((o->proxy ? cove_gateway_proxy_token_create(store, &id, &secret, &err)
		      : cove_token_create(store, &id, &secret, &err)) < 0) {
		fprintf(stderr, "cove: %s\n", err->msg);
		cove_error_free(err);
		rv = 1;
	} else if (o->proxy) {
		printf("PROXY_TOKEN_ID=%s\nPROXY_TOKEN_SECRET=%s\n", id, secret);
	} else {
		printf("MODAL_TOKEN_ID=%s\nMODAL_TOKEN_SECRET=%s\n", id, secret);
	}
	free(id);
	free(secret);
	cove_store_close(store);
	return rv;
}

static void
print_time(double t)
{
	char buf[32] = "-";
	time_t secs = (time_t)t;
	struct tm tm;
	if (t > 0 && gmtime_r(&secs, &tm))
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("  %-20s", buf);
}

/* `cove token list` and `cove token revoke ID`: client tokens (the store's) and proxy auth tokens (the
 * gateway's, which keeps no times). */
static int
cmd_token_admin(struct opts *o, const char *revoke_id)
{
	struct cove_store *store = open_store(o->state_dir);
	if (store == NULL)
		return 1;
	struct cove_error *err = NULL;
	int rv = 0;
	if (revoke_id) {
		rv = strncmp(revoke_id, "wk-", 3) == 0 ? cove_gateway_proxy_token_revoke(store, revoke_id, &err)
						      : cove_store_token_revoke(store, revoke_id, &err);
		if (rv == 0)
			printf("revoked %s\n", revoke_id);
	} else {
		struct cove_store_token *t = NULL;
		char **proxy = NULL;
		size_t n = 0, n_proxy = 0;
		rv = cove_store_token_list(store, &t, &n, &err);
		if (rv == 0)
			rv = cove_gateway_proxy_token_list(store, &proxy, &n_proxy, &err);
		if (rv == 0) {
			printf("%-26s  %-6s  %-20s  %-20s\n", "ID", "KIND", "CREATED", "LAST USED");
			for (size_t i = 0; i < n; i++) {
				printf("%-26s  client", t[i].id);
				print_time(t[i].created_at);
				print_time(t[i].last_used_at);
				printf("\n");
			}
			for (size_t i = 0; i < n_proxy; i++)
				printf("%-26s  proxy   -                     -\n", proxy[i]);
		}
		cove_store_tokens_free(t, n);
		for (size_t i = 0; i < n_proxy; i++)
			free(proxy[i]);
		free(proxy);
	}
	if (rv < 0) {
		fprintf(stderr, "cove: %s\n", err->msg);
		cove_error_free(err);
	}
	cove_store_close(store);
	return rv < 0 ? 1 : 0;
}

/* Images: disk use of the layer store, and (gc) the layers no built image uses. Layer gc is for a stopped
 * server, or one that builds nothing meanwhile: a build's new layers are not referenced until it ends. */
static int
cmd_images(struct opts *o, int gc)
{
	cleanup_free char *dir = o->image_dir ? xstrdup(o->image_dir) : xasprintf("%s/images", o->state_dir);
	struct cove_error *err = NULL;
	if (gc && access(dir, F_OK) < 0)
		return 0;
	if (gc) {
		size_t n = 0;
		uint64_t freed = 0;
		if (cove_builder_gc(dir, &n, &freed, &err) < 0) {
			fprintf(stderr, "cove: image layers: %s\n", err->msg);
			cove_error_free(err);
			return -1;
		}
		printf("image layers: removed %zu unused layer%s, %.1f MiB freed\n", n, n == 1 ? "" : "s",
		       (double)freed / (1 << 20));
		return 0;
	}
	uint64_t bytes = 0;
	size_t n_layers = 0, n_images = 0;
	cove_builder_usage(dir, &bytes, &n_layers, &n_images);
	cleanup_free char *helper = cove_isolate_helper_path();
	struct cove_error *why = NULL;
	if (cove_runtime_linux_check(helper, &why) == 0) {
		printf("runtime: linux available (cgroups %s); `cove serve` uses it unless --runtime process\n",
		       cove_runtime_linux_cgroup_kind(NULL));
		printf("container network: %s\n",
		       access(COVE_PASTA, X_OK) == 0
			       ? "a namespace of each container's own, through pasta (" COVE_PASTA ")"
			       : "the host's (install Debian's passt package for one of each container's own)");
	} else
		printf("runtime: process (the linux runtime is not available: %s)\n", why->msg);
	int linux_ok = why == NULL;
	cove_error_free(why);
	why = NULL;
	struct cove_isolation_choice ch;
	if (cove_isolate_choose(o->isolation, o->runsc, &ch, &why) < 0) {
		printf("isolation: %s\n", why->msg);
	} else if (!linux_ok) {
		printf("isolation: sandboxes and functions run as host processes (no isolation)\n");
	} else {
		printf("isolation: sandboxes under %s (%s)\n", ch.sandboxes_gvisor ? "gvisor" : "linux",
		       ch.sandboxes_gvisor ? ch.runsc : ch.not_gvisor ? ch.not_gvisor : "--isolation");
		printf("isolation: functions under %s (%s)\n", ch.functions_gvisor ? "gvisor" : "linux",
		       ch.functions_gvisor ? ch.runsc : o->isolation ? "--isolation" : "the default");
		printf("isolation: image builds under linux\n");
	}
	cove_error_free(why);
	cove_isolation_choice_clear(&ch);
	printf("images: %zu built, %zu layers, %.1f MiB on disk in %s\n", n_images, n_layers, (double)bytes / (1 << 20),
	       dir);
	return 0;
}

/* gc and status read the store and the block files; both are safe beside a running server. */
static int
cmd_volumes(struct opts *o, int gc)
{
	struct cove_store *store = open_store(o->state_dir);
	if (store == NULL)
		return 1;
	struct cove_error *err = NULL;
	int rv = gc ? cove_volume_gc(store, o->state_dir, o->grace_s, stdout, &err)
		    : cove_volume_report(store, o->state_dir, stdout, &err);
	if (rv < 0) {
		fprintf(stderr, "cove: %s\n", err->msg);
		cove_error_free(err);
	}
	cove_store_close(store);
	if (rv == 0 && cmd_images(o, gc) < 0)
		rv = -1;
	return rv < 0 ? 1 : 0;
}

static int
cmd_env(struct opts *o)
{
	cleanup_free char *path = xasprintf("%s/client.env", o->state_dir);
	uint8_t *text = NULL;
	size_t len = 0;
	struct cove_error *err = NULL;
	if (cove_read_file(path, &text, &len, &err) < 0) {
		fprintf(stderr, "cove: %s; start the server once with `cove serve --state-dir %s`\n", err->msg, o->state_dir);
		cove_error_free(err);
		return 1;
	}
	fwrite(text, 1, len, stdout);
	free(text);
	return 0;
}

static void
pull_progress(void *arg, const char *line)
{
	(void)arg;
	log_info("%s", line);
}

static void
print_strings(const char *key, char **v, size_t n)
{
	printf("%s: [", key);
	for (size_t i = 0; i < n; i++) {
		if (i)
			printf(", ");
		json_write_string(stdout, v[i]);
	}
	printf("]\n");
}

/* cove pull [options] REF: its own options (argv[0] is "pull"). Pulls into <image-dir>/layers; stdout gets
 * "Digest:", one "Layer: DIR" per layer (bottom first), then the config: "Env: K=V" per variable,
 * "WorkingDir:", "User:", and "Entrypoint:" / "Cmd:" as JSON lists. Progress goes to stderr. */
static int
cmd_pull(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"state-dir", required_argument, NULL, 's'},       {"image-dir", required_argument, NULL, 'I'},
		{"registry-mirror", required_argument, NULL, 'M'}, {"insecure-registry", required_argument, NULL, 'K'},
		{"log-level", required_argument, NULL, 'l'},       {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const char use[] = "cove: usage: cove pull [--state-dir DIR] [--image-dir DIR] [--registry-mirror URL] "
				  "[--insecure-registry HOST[:PORT]]... REF\n";
	const char *state_dir = ".cove", *image_dir = NULL;
	cleanup_free const char **insecure = xcalloc((size_t)argc, sizeof(*insecure));
	struct cove_registry_opts ro = {.insecure = insecure};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': state_dir = optarg; break;
		case 'I': image_dir = optarg; break;
		case 'M': ro.mirror = optarg; break;
		case 'K': insecure[ro.n_insecure++] = optarg; break;
		case 'l': {
			static const char *levels[] = {"debug", "info", "warn", "error"};
			int level = -1;
			for (int i = 0; i < 4; i++)
				if (strcmp(optarg, levels[i]) == 0)
					level = i;
			if (level < 0) {
				fprintf(stderr, "cove: --log-level must be debug, info, warn or error\n");
				return 2;
			}
			cove_log_min_level = level;
			break;
		}
		case 'h': fputs(use + 6, stdout); return 0;
		default: fputs(use, stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fputs(use, stderr);
		return 2;
	}
	const char *ref = argv[optind];
	cleanup_free char *layers_dir =
		image_dir ? xasprintf("%s/layers", image_dir) : xasprintf("%s/images/layers", state_dir);
	ro.username = getenv("COVE_REGISTRY_USERNAME");
	ro.password = getenv("COVE_REGISTRY_PASSWORD");
	struct cove_pulled_image img;
	struct cove_error *err = NULL;
	if (cove_registry_pull(&ro, ref, layers_dir, pull_progress, NULL, &img, &err) < 0) {
		fprintf(stderr, "cove: %s\n", err->msg);
		cove_error_free(err);
		return 1;
	}
	printf("Digest: %s\n", img.digest);
	for (size_t i = 0; i < img.n_layers; i++)
		printf("Layer: %s/%s/fs\n", layers_dir, img.layers[i]);
	for (size_t i = 0; i < img.config.n_env; i++)
		printf("Env: %s\n", img.config.env[i]);
	if (img.config.workdir)
		printf("WorkingDir: %s\n", img.config.workdir);
	if (img.config.user)
		printf("User: %s\n", img.config.user);
	if (img.config.n_entrypoint)
		print_strings("Entrypoint", img.config.entrypoint, img.config.n_entrypoint);
	if (img.config.n_cmd)
		print_strings("Cmd", img.config.cmd, img.config.n_cmd);
	cove_pulled_image_free(&img);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	struct opts o = {.state_dir = ".cove", .address = "127.0.0.1", .port = 0, .blob_port = 0, .grace_s = 3600,
			 .pids_limit = -1, .memory_limit = -1, .userns = 1};
	const char *cmd = argv[1];
	int sub = 1;
	const char *token_cmd = NULL;
	if (strcmp(cmd, "token") == 0) {
		token_cmd = argc >= 3 ? argv[2] : "";
		int revoke = strcmp(token_cmd, "revoke") == 0 && argc >= 4 && argv[3][0] != '-';
		if (!revoke && strcmp(token_cmd, "create") != 0 && strcmp(token_cmd, "list") != 0) {
			fprintf(stderr, "cove: usage: cove token create [--proxy] | list | revoke ID  [--state-dir DIR]\n");
			return 2;
		}
		sub = revoke ? 3 : 2;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("cove %s (serves modal client %s)\n", COVE_VERSION, COVE_CLIENT_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "pull") == 0)
		return cmd_pull(argc - 1, argv + 1);
	if (parse_opts(argc - sub, argv + sub, &o) < 0)
		return 2;
	if (o.log_level) {
		static const char *levels[] = {"debug", "info", "warn", "error"};
		int found = 0;
		for (int i = 0; i < 4; i++)
			if (strcmp(o.log_level, levels[i]) == 0) {
				cove_log_min_level = i;
				found = 1;
			}
		if (!found) {
			fprintf(stderr, "cove: --log-level must be debug, info, warn or error\n");
			return 2;
		}
	}
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(&o);
	if (token_cmd && strcmp(token_cmd, "create") != 0)
		return cmd_token_admin(&o, strcmp(token_cmd, "revoke") == 0 ? argv[3] : NULL);
	if (token_cmd)
		return cmd_token_create(&o);
	if (strcmp(cmd, "env") == 0)
		return cmd_env(&o);
	if (strcmp(cmd, "gc") == 0 || strcmp(cmd, "status") == 0)
		return cmd_volumes(&o, strcmp(cmd, "gc") == 0);
	fprintf(stderr, "cove: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
