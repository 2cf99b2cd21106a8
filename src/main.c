/* cove: the command line. A thin front: parse, then call the library. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "gateway/gateway.h"
#include "runtime/runtime.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "store/volume.h"
#include "util/alloc.h"
#include "util/fsutil.h"
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
		"  env            print MODAL_SERVER_URL / MODAL_TOKEN_ID / MODAL_TOKEN_SECRET for this state dir\n"
		"  gc             remove volume blocks that no volume refers to and that nobody touched for\n"
		"                 --grace SECONDS (default 3600); safe while the server runs\n"
		"  status         each volume's files, size and disk use\n"
		"  version        print versions\n"
		"\n"
		"options:\n"
		"  --state-dir DIR   state directory (default ./.cove)\n"
		"  --address ADDR    address to listen on (default 127.0.0.1)\n"
		"  --port N          gRPC API port (default 0: pick a free one)\n"
		"  --blob-port N     blob HTTP port (default 0: pick a free one)\n"
		"  --web-port N      web endpoints' HTTP port (default 0: the previous run's if free, else a free one)\n"
		"  --python PATH     interpreter containers run (default: $COVE_PYTHON, else .venv/bin/python beside\n"
		"                    the build directory, else python3 on PATH)\n"
		"  --log-level L     debug, info, warn or error (default info)\n");
}

struct opts {
	const char *state_dir;
	const char *address;
	int port;
	int blob_port;
	int web_port;
	int proxy;
	const char *python;
	const char *log_level;
	double grace_s;
};

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
	size_t live = cove_runtime_process_live(st->ctx->runtime);
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
	st->poll = event_new(st->base, -1, EV_PERSIST, shutdown_poll, st);
	struct timeval tv = {0, 100000};
	event_add(st->poll, &tv);
}

static int
cmd_serve(struct opts *o)
{
	signal(SIGPIPE, SIG_IGN);
	cleanup_free char *python = find_python(o->python);
	struct cove_config cfg = {
		.state_dir = o->state_dir,
		.address = o->address,
		.port = o->port,
		.blob_port = o->blob_port,
		.web_port = o->web_port,
		.python = python,
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
	log_info("ready: API %s, web endpoints %s (http://<label>.localhost:%d), state in %s, containers run %s "
		 "(process runtime); client settings in %s/client.env",
		 st.ctx->server_url, cove_gateway_base_url(st.ctx->gateway), cove_gateway_port(st.ctx->gateway),
		 cfg.state_dir, python, cfg.state_dir);
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

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	struct opts o = {.state_dir = ".cove", .address = "127.0.0.1", .port = 0, .blob_port = 0, .grace_s = 3600};
	const char *cmd = argv[1];
	int sub = 1;
	if (strcmp(cmd, "token") == 0) {
		if (argc < 3 || strcmp(argv[2], "create") != 0) {
			fprintf(stderr, "cove: usage: cove token create [--proxy] [--state-dir DIR]\n");
			return 2;
		}
		sub = 2;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("cove %s (serves modal client %s)\n", COVE_VERSION, COVE_CLIENT_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
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
	if (strcmp(cmd, "token") == 0)
		return cmd_token_create(&o);
	if (strcmp(cmd, "env") == 0)
		return cmd_env(&o);
	if (strcmp(cmd, "gc") == 0 || strcmp(cmd, "status") == 0)
		return cmd_volumes(&o, strcmp(cmd, "gc") == 0);
	fprintf(stderr, "cove: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
