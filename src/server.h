/* The running server: what every piece reaches through one context. */
#ifndef COVE_SERVER_H
#define COVE_SERVER_H

#include "util/error.h"

struct event_base;

struct cove_config {
	const char *state_dir;
	const char *address; /* "127.0.0.1" */
	int port;            /* gRPC API; 0 picks a free port */
	int blob_port;       /* blob HTTP; 0 picks a free port */
	int web_port;        /* web endpoints' HTTP gateway; 0 picks one (the previous run's if free) */
	const char *web_url; /* the endpoints' URLs: a template with {label} (and {port}); NULL: the path form,
			      * http://<address>:<web port>/{label} (see cove_route_set_template) */
	const char *python;  /* the interpreter containers run (process runtime) */
	const char *runtime; /* "linux", "process", or NULL: linux where this host can isolate, else process */
	const char *isolation; /* "gvisor", "linux", "sandboxes=K,functions=K", or NULL (see cove_isolate_choose) */
	const char *runsc;     /* gVisor's runsc; NULL: found (cove_runtime_runsc_find) */
	const char *image_dir; /* the layer store and built images; NULL: <state>/images */
	const char *registry_mirror;    /* NULL: none */
	const char *const *insecure_registries;
	size_t n_insecure_registries;
	const char *debian_mirror;      /* NULL: the host's apt source */
	const char *ca_bundle;          /* CA certificates mounted into containers at the standard path, so they
					 * trust what the host trusts; NULL: the host's bundle if it has one; "none": none */
	const char *client_deps;        /* the client package and its dependencies, bind-mounted into containers;
					 * NULL: the site-packages of `python` that holds modal */
};

struct cove_ctx {
	struct cove_config cfg;
	struct event_base *base;
	struct cove_store *store;
	struct cove_blobstore *blobs;
	struct cove_blob_http *blob_http;
	struct cove_grpc_server *grpc;
	struct cove_sched *sched;
	struct cove_runtime *runtime;
	struct cove_api *api;
	struct cove_sandboxes *sandboxes; /* sandboxes and the processes run in containers (sb.exec) */
	struct cove_gateway *gateway; /* web endpoints */
	struct cove_builder *builder; /* images (linux runtime only; NULL with the process runtime) */
	char *client_deps;            /* host directory with the client package (linux runtime) */
	char *api_socket;             /* the API's Unix socket (linux runtime), or NULL */
	char *server_url; /* what clients and containers dial: http://address:port */
	char *tasks_dir;  /* <state>/tasks, one working directory per container */
	int shutting_down;
	int lock_fd; /* <state>/serve.lock, locked while this server runs; -1 before */
};

/* Open the state directory (creating it), the store, the blob store and the ports. */
struct cove_ctx *cove_server_new(const struct cove_config *cfg, struct event_base *base, struct cove_error **err);
/* Write client.env in the state directory (creating the first token on first start). */
int cove_server_write_client_env(struct cove_ctx *ctx, struct cove_error **err);
/* Stop containers and close everything. */
void cove_server_free(struct cove_ctx *ctx);

/* Token helpers shared by `cove serve`, `cove token create` and `cove env`. */
struct cove_store;
/* Create a token; *id and *secret are malloc'd. */
int cove_token_create(struct cove_store *store, char **id, char **secret, struct cove_error **err);
/* The three client.env lines: the token of <state_dir>/client.env if it is still valid, else a new one.
 * Caller frees. */
char *cove_client_env_text(struct cove_store *store, const char *state_dir, const char *server_url,
			   struct cove_error **err);

#endif
