/* The web gateway's server: the listener, HTTP/1.1 connections on bufferevents, request heads and routing,
 * and the timers. What a request becomes once routed (a function call and its streams) is exchange.c.
 *
 * A connection (gw_conn) serves one exchange at a time: it reads request heads (C_HEAD), then belongs to its
 * exchange (C_BUSY, or C_WS once a WebSocket is accepted), and ends with a lingering close (C_CLOSING). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "gateway/gateway_internal.h"
#include "gateway/ws.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/log.h"

#define MAX_CONNS 4096
#define HEAD_TIMEOUT_S 30.0     /* a request head must be complete this long after its first byte: 408 */
#define IDLE_TIMEOUT_S 60.0     /* a keep-alive connection with no request for this long is closed */
#define BODY_IDLE_S 60.0        /* a request body that stalls this long counts as a disconnect */
#define WRITE_TIMEOUT_S 60      /* a client that takes nothing we send for this long is dropped */
#define LINGER_S 2.0            /* after the last response of a closing connection, its input is drained */
#define REQUEST_TIMEOUT_S 150.0 /* Modal's: no response start by then gets a 303 to the result URL */
#define MAX_BODY ((uint64_t)4 << 30) /* Modal's request body limit: 413 beyond */
#define OUT_LOW (1024 * 1024)   /* an exchange paused on a full output resumes below this */
#define READ_HIGH (1024 * 1024)

double
cove_gateway_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void conn_readcb(struct bufferevent *bev, void *arg);

/* ---- writing ---- */

struct evbuffer *
cove_gateway_output(struct gw_conn *c)
{
	return bufferevent_get_output(c->bev);
}

void
cove_gateway_out(struct gw_conn *c, const void *data, size_t len)
{
	if (len && evbuffer_add(cove_gateway_output(c), data, len) != 0) {
		log_error("gateway: out of memory buffering a response");
		abort();
	}
}

void
cove_gateway_outf(struct gw_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	cove_gateway_out(c, s, strlen(s));
	free(s);
}

/* ---- connection states ---- */

/* Close once everything queued has been sent: shut the write side, then drain what the client still sends
 * for a moment, so that a client still uploading reads our answer instead of a reset. */
void
cove_gateway_conn_close(struct gw_conn *c)
{
	if (c->state == C_CLOSING)
		return;
	c->state = C_CLOSING;
	c->closing_since = cove_gateway_now();
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(cove_gateway_output(c)) == 0) {
		shutdown(bufferevent_getfd(c->bev), SHUT_WR);
		c->shut = 1;
	}
}

/* Ready for the next request on a kept-alive connection. */
void
cove_gateway_conn_next(struct gw_conn *c)
{
	c->ex = NULL;
	c->state = C_HEAD;
	c->idle_since = cove_gateway_now();
	c->have_bytes = 0;
	c->scanned = 0;
	bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH);
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		event_active(c->resume, EV_READ, 0);
}

/* A response of the gateway's own (errors, redirects, the index page). */
void
cove_gateway_respond(struct gw_conn *c, int status, const char *extra_headers, const char *body, int close)
{
	size_t blen = body ? strlen(body) : 0;
	cove_gateway_outf(c,
			  "HTTP/1.1 %d %s\r\nserver: cove\r\ncontent-type: text/plain; charset=utf-8\r\n"
			  "content-length: %zu\r\n%s%s\r\n",
			  status, cove_http_reason(status), blen, extra_headers ? extra_headers : "",
			  close ? "connection: close\r\n" : "");
	cove_gateway_out(c, body, blen);
	if (close)
		cove_gateway_conn_close(c);
	else
		cove_gateway_conn_next(c);
}

void
cove_gateway_respond_error(struct gw_conn *c, int status, const char *msg, int close)
{
	cleanup_free char *body = xasprintf("cove: %s\n", msg ? msg : cove_http_reason(status));
	cove_gateway_respond(c, status, NULL, body, close);
}

/* ---- requests ---- */

struct target {
	const char *host; /* from an absolute-form target, else NULL */
	size_t host_len;
	const char *path; /* starts with '/' */
	size_t path_len;
	const char *query;
	size_t query_len;
};

static int
split_target(const char *t, size_t n, struct target *out)
{
	memset(out, 0, sizeof(*out));
	if (n >= 7 && (strncasecmp(t, "http://", 7) == 0 || (n >= 8 && strncasecmp(t, "https://", 8) == 0))) {
		size_t skip = t[4] == ':' ? 7 : 8;
		size_t i = skip;
		while (i < n && t[i] != '/' && t[i] != '?')
			i++;
		out->host = t + skip;
		out->host_len = i - skip;
		t += i;
		n -= i;
		if (out->host_len == 0)
			return -1;
		if (n == 0 || t[0] == '?') {
			/* "http://host" or "http://host?q": the path is "/". */
			out->path = "/";
			out->path_len = 1;
			if (n) {
				out->query = t + 1;
				out->query_len = n - 1;
			}
			return 0;
		}
	}
	if (n == 0 || t[0] != '/')
		return -1;
	const char *q = memchr(t, '?', n);
	out->path = t;
	out->path_len = q ? (size_t)(q - t) : n;
	if (q) {
		out->query = q + 1;
		out->query_len = n - out->path_len - 1;
	}
	return 0;
}

/* The host of a Host header value: lower-case, without the port or a trailing dot. NULL if malformed. */
static char *
host_name(const char *v, size_t n)
{
	if (n == 0 || n > 255)
		return NULL;
	size_t end = n;
	if (v[0] == '[') {
		const char *close = memchr(v, ']', n);
		if (close == NULL)
			return NULL;
		end = (size_t)(close - v) + 1;
	} else {
		const char *colon = memchr(v, ':', n);
		if (colon)
			end = (size_t)(colon - v);
	}
	if (end < n && v[end] == ':') {
		for (size_t i = end + 1; i < n; i++)
			if (v[i] < '0' || v[i] > '9')
				return NULL;
	} else if (end != n) {
		return NULL;
	}
	while (end > 0 && v[end - 1] == '.')
		end--;
	char *h = xstrndup(v, end);
	for (char *p = h; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch >= 'A' && ch <= 'Z')
			*p = (char)(ch - 'A' + 'a');
		else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '[' ||
			   ch == ']' || ch == ':' || ch == '_'))
			goto bad;
	}
	return h;
bad:
	free(h);
	return NULL;
}

/* Hosts that name the gateway itself rather than an endpoint: the path form applies. */
static int
bare_host(const struct cove_gateway *gw, const char *host)
{
	if (host[0] == '\0' || strcmp(host, "localhost") == 0 || host[0] == '[')
		return 1;
	if (strcmp(host, gw->ctx->cfg.address) == 0 || (gw->path_host && strcmp(host, gw->path_host) == 0))
		return 1;
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1;
}

/* The value of a query parameter (not decoded), or NULL. */
static char *
query_param(const char *q, size_t n, const char *name)
{
	size_t nl = strlen(name);
	size_t i = 0;
	while (i < n) {
		size_t start = i;
		while (i < n && q[i] != '&')
			i++;
		if (i - start > nl && strncmp(q + start, name, nl) == 0 && q[start + nl] == '=')
			return xstrndup(q + start + nl + 1, i - start - nl - 1);
		i++;
	}
	return NULL;
}

const char *
cove_gateway_header(const struct cove_http_request *req, const char *name, size_t *len, size_t *count)
{
	const struct cove_http_header *h = cove_http_header_find(req, name, count);
	if (h == NULL)
		return NULL;
	*len = h->value_len;
	return h->value;
}

/* The endpoint list names every app's endpoints: it is for the server's users, who show a token of this server in
 * the headers requires_proxy_auth endpoints use (a client token, ak-/as-, or a proxy auth token, wk-/ws-). */
static int
index_authorized(struct cove_gateway *gw, const struct cove_http_request *req)
{
	size_t kl = 0, sl = 0, kn = 0, sn = 0;
	const char *key = cove_gateway_header(req, "modal-key", &kl, &kn);
	const char *secret = cove_gateway_header(req, "modal-secret", &sl, &sn);
	if (key == NULL || secret == NULL || kn != 1 || sn != 1 || kl == 0 || kl > 80 || sl == 0 || sl > 200)
		return 0;
	if (cove_route_proxy_auth_ok(gw, key, kl, secret, sl))
		return 1;
	cleanup_free char *k = xstrndup(key, kl);
	cleanup_free char *v = xstrndup(secret, sl);
	return cove_store_token_check(gw->ctx->store, k, v) == 1;
}

static void
index_page(struct gw_conn *c, int keep_alive)
{
	cleanup_free char *list = cove_route_listing(c->gw);
	cleanup_free char *body =
		xasprintf("Cove web gateway. Web endpoints (%s, or http://<label>.localhost:%d):\n%s",
			  cove_gateway_url_template(c->gw), c->gw->port, list[0] ? list : "(none)\n");
	cove_gateway_respond(c, 200, NULL, body, !keep_alive);
}

/* A complete request head, already taken out of the input. */
static void
handle_request(struct gw_conn *c, const struct cove_http_request *req)
{
	struct cove_gateway *gw = c->gw;
	struct target t;
	if (split_target(req->target, req->target_len, &t) < 0) {
		cove_gateway_respond_error(c, 400, "the request target must be a path (or an absolute http URL)", 1);
		return;
	}
	size_t n_host = 0, vlen = 0;
	const char *hv = cove_gateway_header(req, "host", &vlen, &n_host);
	if (n_host > 1 || (n_host == 0 && req->version_minor == 1 && t.host == NULL)) {
		cove_gateway_respond_error(c, 400, "a request needs exactly one Host header", 1);
		return;
	}
	cleanup_free char *host = t.host ? host_name(t.host, t.host_len) : hv ? host_name(hv, vlen) : xstrdup("");
	if (host == NULL) {
		cove_gateway_respond_error(c, 400, "malformed Host", 1);
		return;
	}
	int kind;
	uint64_t body_len;
	int rv = cove_http_body_framing(req, &kind, &body_len);
	if (rv < 0) {
		cove_gateway_respond_error(c, -rv,
					   rv == -501 ? "unsupported transfer coding"
						      : "malformed Content-Length or Transfer-Encoding",
					   1);
		return;
	}
	if (kind == COVE_HTTP_BODY_LENGTH && body_len > gw->max_body) {
		cove_gateway_respond_error(c, 413, "request body too large", 1);
		return;
	}
	size_t cn = 0, clen = 0;
	const char *conn_hdr = cove_gateway_header(req, "connection", &clen, &cn);
	int keep_alive = req->version_minor == 1 && !(conn_hdr && cove_http_list_has(conn_hdr, clen, "close"));
	/* A refusal leaves the body unread: the connection cannot carry another request after it. */
	int close_on_error = kind != COVE_HTTP_BODY_NONE || !keep_alive;

	/* Route: a label host, a custom domain, or (on the gateway's own address) the first path segment. */
	struct cove_route route;
	char root_path[70] = "", label_root[72];
	const char *rp_path = t.path;
	size_t rp_len = t.path_len;
	int found = 0;
	if (!bare_host(gw, host)) {
		found = cove_route_lookup(gw, host, &route);
	} else {
		size_t i = 1;
		while (i < rp_len && rp_path[i] != '/')
			i++;
		if (i == 1) {
			if (req->method_len == 3 && memcmp(req->method, "GET", 3) == 0 && t.path_len == 1) {
				if (!index_authorized(gw, req)) {
					cove_gateway_respond_error(c, 401,
								   "the endpoint list needs Modal-Key and Modal-Secret "
								   "headers holding a token of this server",
								   close_on_error);
					return;
				}
				index_page(c, !close_on_error);
				return;
			}
		} else if (i - 1 < sizeof(route.label)) {
			char label[64];
			memcpy(label, rp_path + 1, i - 1);
			label[i - 1] = '\0';
			if (cove_route_lookup_label(gw, label, &route)) {
				found = 1;
				snprintf(root_path, sizeof(root_path), "/%s", label);
				/* A web server behind modal.web_server knows nothing of a root path: it gets the path
				 * below the label (ASGI and WSGI apps get the whole path and the root_path, as the
				 * ASGI spec has it). */
				if (route.webhook->type == MODAL__CLIENT__WEBHOOK_TYPE__WEBHOOK_TYPE_WEB_SERVER) {
					rp_path += i;
					rp_len -= i;
					if (rp_len == 0) {
						rp_path = "/";
						rp_len = 1;
					}
				} else if (i == rp_len) {
					/* The URL as handed out, "/<label>": the app's root, "/<label>/". */
					snprintf(label_root, sizeof(label_root), "%s/", root_path);
					rp_path = label_root;
					rp_len = strlen(label_root);
				}
			}
		}
	}
	if (!found) {
		cleanup_free char *msg = xasprintf("no web endpoint at %s", host[0] ? host : "this address");
		cove_gateway_respond_error(c, 404, msg, close_on_error);
		return;
	}
	if (route.webhook->requires_proxy_auth) {
		size_t kl = 0, sl = 0, kn = 0, sn = 0;
		const char *key = cove_gateway_header(req, "modal-key", &kl, &kn);
		const char *secret = cove_gateway_header(req, "modal-secret", &sl, &sn);
		if (key == NULL || secret == NULL) {
			cove_gateway_respond_error(c, 401, "missing credentials for proxy authorization", close_on_error);
			return;
		}
		if (kn != 1 || sn != 1 || !cove_route_proxy_auth_ok(gw, key, kl, secret, sl)) {
			cove_gateway_respond_error(c, 401, "invalid credentials for proxy authorization", close_on_error);
			return;
		}
	}

	/* A WebSocket handshake (RFC 6455 section 4.2.1). */
	size_t ul = 0, un = 0;
	const char *upgrade = cove_gateway_header(req, "upgrade", &ul, &un);
	int websocket = upgrade && cove_http_list_has(upgrade, ul, "websocket") && conn_hdr &&
			cove_http_list_has(conn_hdr, clen, "upgrade");
	if (websocket) {
		size_t kl = 0, kn = 0, vl = 0, vn = 0;
		const char *key = cove_gateway_header(req, "sec-websocket-key", &kl, &kn);
		const char *ver = cove_gateway_header(req, "sec-websocket-version", &vl, &vn);
		if (!(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0) || req->version_minor != 1 ||
		    kind != COVE_HTTP_BODY_NONE || key == NULL || kn != 1 || !cove_ws_key_valid(key, kl)) {
			cove_gateway_respond_error(c, 400, "invalid WebSocket handshake", 1);
			return;
		}
		if (ver == NULL || vl != 2 || memcmp(ver, "13", 2) != 0) {
			cove_gateway_respond(c, 426, "sec-websocket-version: 13\r\n", "cove: WebSocket version 13 is required\n", 1);
			return;
		}
		keep_alive = 0;
	}

	/* The result URL of a request that was redirected (303) after the request timeout. */
	cleanup_free char *result_id = t.query ? query_param(t.query, t.query_len, RESULT_PARAM) : NULL;
	int head_only = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
	if (result_id && !websocket) {
		cove_exchange_pick_up(c, &route, result_id, keep_alive, head_only, req->version_minor == 0,
				      kind != COVE_HTTP_BODY_NONE);
		return;
	}
	struct cove_asgi_request ar = {
		.raw_path = rp_path,
		.raw_path_len = rp_len,
		.query = t.query ? t.query : "",
		.query_len = t.query_len,
		.root_path = root_path,
	};
	cove_exchange_start(c, req, &route, &ar, websocket, keep_alive, kind, body_len);
	if (c->ex && !c->ex->body_done)
		cove_exchange_feed_body(c->ex);
}

/* Look for complete request heads in the input. */
static void
read_heads(struct gw_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (c->state == C_HEAD) {
		size_t len = evbuffer_get_length(in);
		if (len == 0)
			return;
		if (!c->have_bytes) {
			c->have_bytes = 1;
			c->head_since = cove_gateway_now();
		}
		size_t take = len < COVE_HTTP_MAX_HEAD ? len : COVE_HTTP_MAX_HEAD;
		const char *buf = (const char *)evbuffer_pullup(in, (ssize_t)take);
		/* Parse only when a line has ended since the last look: a slow client costs one scan per line. */
		if (c->scanned < take && memchr(buf + c->scanned, '\n', take - c->scanned) == NULL) {
			c->scanned = take;
			if (take >= COVE_HTTP_MAX_HEAD)
				cove_gateway_respond_error(c, 431, "request head too large", 1);
			return;
		}
		c->scanned = take;
		struct cove_http_request req;
		int rv = cove_http_parse_head(buf, take, &req);
		if (rv == 0) {
			if (take >= COVE_HTTP_MAX_HEAD)
				cove_gateway_respond_error(c, 431, "request head too large", 1);
			return;
		}
		if (rv < 0) {
			const char *why = rv == -431   ? "request head too large"
					  : rv == -505 ? "only HTTP/1.0 and 1.1 are served here"
						       : "malformed request";
			cove_gateway_respond_error(c, -rv, why, 1);
			return;
		}
		c->have_bytes = 0;
		c->scanned = 0;
		/* The head leaves the input before it is handled (answers may let the next request be read): parse a
		 * copy of it for the pointers to point into. */
		cleanup_free char *copy = xmemdup(buf, (size_t)rv);
		evbuffer_drain(in, (size_t)rv);
		if (cove_http_parse_head(copy, (size_t)rv, &req) != rv)
			abort(); /* the same bytes parse the same way */
		handle_request(c, &req);
	}
}

static void
conn_readcb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct gw_conn *c = arg;
	switch (c->state) {
	case C_HEAD:
		read_heads(c);
		break;
	case C_BUSY:
		if (c->ex && !c->ex->body_done)
			cove_exchange_feed_body(c->ex);
		break;
	case C_WS:
		cove_exchange_ws_read(c);
		break;
	case C_CLOSING: {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		evbuffer_drain(in, evbuffer_get_length(in));
		break;
	}
	}
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct gw_conn *c = arg;
	conn_readcb(c->bev, c);
}

static void
conn_writecb(struct bufferevent *bev, void *arg)
{
	struct gw_conn *c = arg;
	if (c->state == C_CLOSING) {
		if (!c->shut && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
			shutdown(bufferevent_getfd(bev), SHUT_WR);
			c->shut = 1;
		}
		return;
	}
	if (c->ex)
		cove_exchange_kick(c->ex);
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct gw_conn *c = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		cove_gateway_conn_free(c);
	}
}

void
cove_gateway_conn_free(struct gw_conn *c)
{
	struct cove_gateway *gw = c->gw;
	if (c->ex)
		cove_exchange_detach(c->ex, 1);
	if (c->prev)
		c->prev->next = c->next;
	else
		gw->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	gw->n_conns--;
	event_free(c->resume);
	bufferevent_free(c->bev);
	free(c);
}

static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)listener;
	(void)salen;
	struct cove_gateway *gw = arg;
	if (gw->n_conns >= MAX_CONNS) {
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct gw_conn *c = xcalloc(1, sizeof(*c));
	c->gw = gw;
	char serv[16];
	if (getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
			c->peer_host, sizeof(c->peer_host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(c->peer_host, sizeof(c->peer_host), "unknown");
		serv[0] = '\0';
	}
	c->peer_port = atoi(serv);
	c->bev = bufferevent_socket_new(gw->ctx->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	c->resume = event_new(gw->ctx->base, -1, 0, resume_cb, c);
	if (c->bev == NULL || c->resume == NULL) {
		log_error("gateway: out of memory accepting a connection");
		abort();
	}
	c->state = C_HEAD;
	c->idle_since = cove_gateway_now();
	struct timeval wt = {WRITE_TIMEOUT_S, 0};
	bufferevent_set_timeouts(c->bev, NULL, &wt);
	bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = gw->conns;
	if (gw->conns)
		gw->conns->prev = c;
	gw->conns = c;
	gw->n_conns++;
}

static void
accept_error_cb(struct evconnlistener *listener, void *arg)
{
	(void)listener;
	struct cove_gateway *gw = arg;
	time_t now = time(NULL);
	if (now - gw->last_accept_warning >= 60) {
		gw->last_accept_warning = now;
		log_warn("gateway: accept: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
}

/* ---- timers ---- */

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_gateway *gw = arg;
	double now = cove_gateway_now();
	struct gw_conn *cnext;
	for (struct gw_conn *c = gw->conns; c; c = cnext) {
		cnext = c->next;
		if (c->state == C_HEAD) {
			if (c->have_bytes && now - c->head_since > HEAD_TIMEOUT_S)
				cove_gateway_respond_error(c, 408, "the request head took too long", 1);
			else if (!c->have_bytes && now - c->idle_since > IDLE_TIMEOUT_S)
				cove_gateway_conn_free(c);
		} else if (c->state == C_BUSY && c->ex && !c->ex->body_done && now - c->ex->body_at > BODY_IDLE_S) {
			cove_gateway_conn_free(c); /* a stalled upload: the app is told the client went away */
		} else if (c->state == C_CLOSING && now - c->closing_since > LINGER_S + WRITE_TIMEOUT_S) {
			cove_gateway_conn_free(c);
		} else if (c->state == C_CLOSING && c->shut && now - c->closing_since > LINGER_S) {
			cove_gateway_conn_free(c);
		}
	}
	cove_exchange_tick(gw, now);
}

/* ---- life cycle ---- */

static double
env_number(const char *name, double dflt)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return dflt;
	char *end;
	double d = strtod(v, &end);
	if (*end != '\0' || !(d > 0)) {
		log_warn("gateway: ignoring %s=%s (not a positive number)", name, v);
		return dflt;
	}
	return d;
}

static struct evconnlistener *
listen_on(struct cove_gateway *gw, const char *address, int port, int *errno_out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char port_s[16];
	snprintf(port_s, sizeof(port_s), "%d", port);
	int rv = getaddrinfo(address, port_s, &hints, &res);
	if (rv != 0) {
		*errno_out = EINVAL;
		return NULL;
	}
	struct evconnlistener *l = NULL;
	for (struct addrinfo *ai = res; ai && l == NULL; ai = ai->ai_next) {
		l = evconnlistener_new_bind(gw->ctx->base, accept_cb, gw,
					    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, -1,
					    ai->ai_addr, (int)ai->ai_addrlen);
		if (l == NULL)
			*errno_out = errno;
	}
	freeaddrinfo(res);
	return l;
}

struct cove_gateway *
cove_gateway_new(struct cove_ctx *ctx, int port, struct cove_error **err)
{
	struct cove_gateway *gw = xcalloc(1, sizeof(*gw));
	gw->ctx = ctx;
	gw->request_timeout_s = env_number("COVE_WEB_REQUEST_TIMEOUT", REQUEST_TIMEOUT_S);
	gw->max_body = (uint64_t)env_number("COVE_WEB_MAX_BODY", (double)MAX_BODY);
	const char *address = ctx->cfg.address ? ctx->cfg.address : "127.0.0.1";
	int saved = 0;
	if (port == 0) {
		/* The previous run's port, so that URLs handed out before a restart still work. */
		cleanup_free char *prev = cove_store_meta_get(ctx->store, "web_port");
		int p = prev ? atoi(prev) : 0;
		if (p > 0 && p < 65536)
			gw->listener = listen_on(gw, address, p, &saved);
	}
	if (gw->listener == NULL)
		gw->listener = listen_on(gw, address, port, &saved);
	if (gw->listener == NULL) {
		cove_error_set_errno(err, saved, "web gateway: listen on %s:%d", address, port);
		free(gw);
		return NULL;
	}
	evconnlistener_set_error_cb(gw->listener, accept_error_cb);
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(gw->listener), (struct sockaddr *)&ss, &sslen) == 0)
		gw->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							  : ((struct sockaddr_in *)&ss)->sin_port);
	gw->base_url = strchr(address, ':') ? xasprintf("http://[%s]:%d", address, gw->port)
					    : xasprintf("http://%s:%d", address, gw->port);
	if (cove_route_set_template(gw, ctx->cfg.web_url, err) < 0) {
		cove_gateway_free(gw);
		return NULL;
	}
	gw->tick = event_new(ctx->base, -1, EV_PERSIST, tick_cb, gw);
	struct timeval tv = {1, 0};
	event_add(gw->tick, &tv);
	char port_s[16];
	snprintf(port_s, sizeof(port_s), "%d", gw->port);
	struct cove_error *e = NULL;
	cleanup_free char *path = xasprintf("%s/web.url", ctx->cfg.state_dir);
	cleanup_free char *text = xasprintf("%s\n", gw->base_url);
	if (cove_store_meta_set(ctx->store, "web_port", port_s, &e) < 0 ||
	    cove_write_file_atomic(path, text, strlen(text), 0644, &e) < 0) {
		cove_error_wrap(&e, "web gateway");
		if (err && *err == NULL)
			*err = e;
		else
			cove_error_free(e);
		cove_gateway_free(gw);
		return NULL;
	}
	return gw;
}

int
cove_gateway_port(const struct cove_gateway *gw)
{
	return gw->port;
}

const char *
cove_gateway_base_url(const struct cove_gateway *gw)
{
	return gw->base_url;
}

const char *
cove_gateway_url_template(struct cove_gateway *gw)
{
	if (gw->url_template == NULL)
		gw->url_template = xasprintf("%s<label>%s", gw->url_head, gw->url_tail);
	return gw->url_template;
}

void
cove_gateway_free(struct cove_gateway *gw)
{
	if (gw == NULL)
		return;
	if (gw->listener)
		evconnlistener_free(gw->listener);
	if (gw->tick)
		event_free(gw->tick);
	while (gw->conns)
		cove_gateway_conn_free(gw->conns);
	while (gw->exchanges)
		cove_exchange_free(gw->exchanges);
	cove_map_clear(&gw->parked);
	cove_route_clear(gw);
	free(gw->base_url);
	free(gw->url_head);
	free(gw->url_tail);
	free(gw->url_template);
	free(gw->host_suffix);
	free(gw->path_host);
	free(gw);
}
