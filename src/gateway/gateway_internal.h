/* What the gateway's files share: routing (route.c), the ASGI bridge (asgi.c) and the server (gateway.c). */
#ifndef COVE_GATEWAY_GATEWAY_INTERNAL_H
#define COVE_GATEWAY_GATEWAY_INTERNAL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "api.pb-c.h"
#include "gateway/gateway.h"
#include "util/http_parse.h"
#include "util/map.h"

struct cove_function;
struct cove_route;
struct evconnlistener;
struct event;
struct evbuffer;
struct bufferevent;
struct cove_data_sub;
struct cove_fcall;
struct cove_http_chunked;
struct gw_conn;
struct gw_exchange;

struct cove_gateway {
	struct cove_ctx *ctx;
	struct evconnlistener *listener;
	int port;
	char *base_url;
	struct event *tick;
	struct gw_conn *conns;
	size_t n_conns;
	struct gw_exchange *exchanges; /* every live exchange: attached to a connection, parked or orphaned */
	struct cove_map parked;        /* function call id -> exchange waiting for its result URL (after a 303) */
	/* Routing (route.c): host label or custom domain -> struct cove_route_entry*; rebuilt from the apps
	 * when a lookup misses or after URLs were assigned. */
	struct cove_map routes;
	int routes_dirty;
	/* The URLs handed out (cove_route_set_template): head + label + tail. Host form: a request's Host is the
	 * label followed by host_suffix (".localhost" always works too). Path form: the label is the first path
	 * segment of a request to path_host (or to the gateway's own address). */
	char *url_head, *url_tail;
	char *url_template; /* "<head><label><tail>", made when first asked for */
	char *host_suffix; /* host form: ".apps.example.com"; NULL in the path form */
	char *path_host;   /* path form: "cove.example.com"; NULL in the host form */
	/* Limits (README "Web endpoints"); the environment can lower them for tests. */
	double request_timeout_s;
	uint64_t max_body;
	time_t last_accept_warning;
};

struct cove_route_entry {
	char *function_id;
	char *method; /* class method name, or NULL */
	double app_created_at;
};

#define RESULT_PARAM "__modal_function_call_id" /* the query parameter of a result URL (after a 303) */

/* Connection states and response framings (gateway.c, exchange.c). */
enum { C_HEAD, C_BUSY, C_WS, C_CLOSING };
enum { RESP_NONE, RESP_LENGTH, RESP_CHUNKED, RESP_CLOSE };

struct gw_conn {
	struct gw_conn *next, *prev;
	struct cove_gateway *gw;
	struct bufferevent *bev;
	struct event *resume; /* process input already buffered (pipelined requests, frames before accept) */
	char peer_host[INET6_ADDRSTRLEN];
	int peer_port;
	int state;
	struct gw_exchange *ex;
	double idle_since; /* C_HEAD: waiting for a request since */
	double head_since; /* C_HEAD: first byte of the current head */
	int have_bytes;
	size_t scanned; /* bytes of the current head searched for a line end */
	double closing_since;
	int shut;
};

struct gw_exchange {
	struct gw_exchange *next, *prev;
	struct cove_gateway *gw;
	struct gw_conn *conn; /* NULL: parked or orphaned */
	char *fc_id;
	struct cove_fcall *fc;
	struct cove_function *fn;
	struct cove_data_sub *sub;
	struct event *pump;
	size_t out_next;  /* next data-out chunk to read */
	uint64_t in_next; /* next data-in index to write */
	char *target;     /* the request-target, for the result URL */
	int head_only, http10, keep_alive;
	/* request body */
	int body_kind;
	uint64_t body_left, body_total;
	struct cove_http_chunked chunked;
	int body_done;
	double body_at;
	int disconnected; /* the app has been told the client went away */
	/* response */
	double wait_since;
	int resp_started, resp_mode, resp_done;
	uint64_t resp_left;
	/* the call's output */
	int output_seen;
	int result_status;
	char *cove_failure; /* Cove's own reason the call could not run (never the app's exception), or NULL */
	uint64_t items_total;
	/* WebSocket */
	int websocket, ws_open, ws_close_sent;
	char ws_accept[29];
	uint8_t *ws_msg;
	size_t ws_msg_len;
	int ws_msg_op;
	/* detached */
	int parked, orphan;
	double parked_at, ready_at;
	double created_at;
};

/* gateway.c: connections. */
double cove_gateway_now(void); /* monotonic seconds */
struct evbuffer *cove_gateway_output(struct gw_conn *c);
void cove_gateway_out(struct gw_conn *c, const void *data, size_t len);
void cove_gateway_outf(struct gw_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Close once everything queued is sent (a lingering close). */
void cove_gateway_conn_close(struct gw_conn *c);
/* Ready for the next request on a kept-alive connection (reads what is already buffered). */
void cove_gateway_conn_next(struct gw_conn *c);
/* Close now; an exchange still attached is detached and its app told the client went away. */
void cove_gateway_conn_free(struct gw_conn *c);
/* A response of the gateway's own; close: then close the connection, else go on to the next request. */
void cove_gateway_respond(struct gw_conn *c, int status, const char *extra_headers, const char *body, int close);
void cove_gateway_respond_error(struct gw_conn *c, int status, const char *msg, int close);
/* A request header's value (*len, and *count of such headers), or NULL. */
const char *cove_gateway_header(const struct cove_http_request *req, const char *name, size_t *len, size_t *count);

/* exchange.c: requests as function calls. */
struct cove_asgi_request;
/* Start the call for a routed request on c (answering c with an error if the call cannot be made). */
void cove_exchange_start(struct gw_conn *c, const struct cove_http_request *req, const struct cove_route *route,
			 struct cove_asgi_request *ar, int websocket, int keep_alive, int body_kind, uint64_t body_len);
/* Attach a request for a result URL to its parked exchange (404 if there is none for this endpoint). */
void cove_exchange_pick_up(struct gw_conn *c, const struct cove_route *route, const char *fc_id, int keep_alive,
			   int head_only, int http10, int has_body);
/* Stream the request body that has arrived into data-in. */
void cove_exchange_feed_body(struct gw_exchange *ex);
/* Frames from the client of an accepted WebSocket. */
void cove_exchange_ws_read(struct gw_conn *c);
/* Part the exchange from its connection; tell_app: the client went away before the response was done. */
void cove_exchange_detach(struct gw_exchange *ex, int tell_app);
void cove_exchange_free(struct gw_exchange *ex);
/* Look at the exchange again soon (its connection can take more output). */
void cove_exchange_kick(struct gw_exchange *ex);
/* The exchanges' timers (called once a second). */
void cove_exchange_tick(struct cove_gateway *gw, double now);

/* What a request is routed to. */
struct cove_route {
	struct cove_function *fn;
	const char *method; /* borrowed from the routing table until the next lookup; NULL if not a class */
	const Modal__Client__WebhookConfig *webhook; /* the endpoint's config (borrowed from fn->def) */
	char label[64];
};

/* Find the endpoint for a host (the Host header without its port, lower-cased): "<label>.localhost" or a
 * custom domain. 1 found, 0 not. */
int cove_route_lookup(struct cove_gateway *gw, const char *host, struct cove_route *out);
/* The URL template (NULL: the path form on the gateway's own address), with {port} already the web port:
 * "http(s)://{label}.<domain>[:port][/]" or "http(s)://<host>[:port]/{label}". 0, or -1 + INVALID_ARGUMENT. */
int cove_route_set_template(struct cove_gateway *gw, const char *tmpl, struct cove_error **err);
/* Find by bare label (the path form). */
int cove_route_lookup_label(struct cove_gateway *gw, const char *label, struct cove_route *out);
/* "label -> URL" lines of every live endpoint (for the gateway's index page). Caller frees. */
char *cove_route_listing(struct cove_gateway *gw);
void cove_route_clear(struct cove_gateway *gw);
/* Proxy auth: 1 if (key, secret) is a proxy token of this server. */
int cove_route_proxy_auth_ok(struct cove_gateway *gw, const char *key, size_t key_len, const char *secret,
			     size_t secret_len);

/* The ASGI scope of a request, and the function input that carries it (asgi.c). */
struct cove_asgi_request {
	int websocket;
	const struct cove_http_request *req;
	const char *raw_path; /* request path as sent (percent-encoded), without the query */
	size_t raw_path_len;
	const char *query;
	size_t query_len;
	const char *root_path; /* "" or "/<label>" (path form) */
	const char *client_host;
	int client_port;
	const char *server_host;
	int server_port;
	int strip_proxy_auth; /* leave Modal-Key / Modal-Secret out of the scope */
};
/* A serialized FunctionInput: args = pickle of ((scope,), {}), data_format PICKLE, method_name if given.
 * Caller frees. */
uint8_t *cove_asgi_function_input(const struct cove_asgi_request *r, const char *method_name, size_t *len);
/* Percent-decode s[0..len) into out (at least len bytes); invalid escapes stay as they are. Returns the
 * decoded length. */
size_t cove_asgi_percent_decode(const char *s, size_t len, char *out);

#endif
