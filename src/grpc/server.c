/* The gRPC front: h2c (prior knowledge) on libevent + nghttp2, in the shape of nghttp2's
 * examples/libevent-server.c (v1.52.0). See server.h for the call lifetime.
 *
 * Re-entrancy rules, because handlers run inside nghttp2 callbacks and may touch calls of any connection:
 * - A connection is freed only from a top-level libevent callback of its own (read/write/event/close_ev)
 *   or from cove_grpc_server_free(), never from inside cove_call_send()/cove_call_finish(): those only
 *   schedule the close, so a handler iterating its waiters never sees calls vanish under it.
 * - conn->in_io counts the frames of our own code that will call conn_send() before returning; while it
 *   is non-zero, send/finish only submit to nghttp2 and leave the flush to that frame.
 * - A call is freed only when nghttp2 closes its stream (on_stream_close) or its connection is freed; in
 *   both cases the cancel hook runs first if the handler still owed cove_call_finish().
 */
#include "grpc/server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#include "util/alloc.h"
#include "util/log.h"

#define DEFAULT_MAX_MESSAGE_BYTES ((size_t)100 * 1024 * 1024 + 1024)
/* Request bytes held: one connection may hold two of the largest messages, the server four. */
#define DEFAULT_CONN_BUFFER ((size_t)256 * 1024 * 1024)
#define DEFAULT_TOTAL_BUFFER ((size_t)1024 * 1024 * 1024)
#define DEFAULT_HANDSHAKE_MS 10000
/* The official client pings every 30 s and keeps long polls open for minutes: only a connection without a
 * single admitted stream for this long is idle (PINGs do not count). */
#define DEFAULT_IDLE_MS (300 * 1000)
#define MIN_CONNECTIONS 16
#define MAX_DEFAULT_CONNECTIONS 100000
/* Frames that carry nothing (PING, SETTINGS, PRIORITY, empty DATA): a burst, then a steady rate; beyond it
 * the connection is closed. RST_STREAM floods (CVE-2023-44487) and CONTINUATION
 * floods (CVE-2024-28182) are nghttp2's own limits, as are unacknowledged PING/SETTINGS (max_outbound_ack). */
#define CONTROL_BURST 1000
#define CONTROL_PER_S 100
/* Accept pauses this long (doubling up to the maximum) when descriptors run out. */
#define ACCEPT_BACKOFF_MIN_MS 50
#define ACCEPT_BACKOFF_MAX_MS 1000
/* A connection this young is never shed: a client gets the time to send its first request. */
#define SHED_GRACE_US 1000000
#define MAX_CONCURRENT_STREAMS 10000
/* Big windows so a 100 MiB message is not throttled by WINDOW_UPDATE round trips. */
#define STREAM_WINDOW (16 * 1024 * 1024)
#define CONN_WINDOW (256 * 1024 * 1024)
#define MAX_HEADER_LIST (64 * 1024)
/* Write backpressure: stop generating frames (and reading requests) above HIGH, resume below LOW. */
#define OUTPUT_HIGH (1024 * 1024)
#define OUTPUT_LOW (256 * 1024)
#define MAX_SINGLE_READ (256 * 1024)
#define DRAIN_TIMEOUT_S 10
/* A peer that takes none of the bytes waiting for it this long is gone (or hostile): the connection closes.
 * Only time with output pending counts, so long polls are unaffected. */
#define WRITE_TIMEOUT_S 60
/* Requests refused at admission that a connection which never had one admitted may keep in flight (their
 * answers not yet taken by the peer); past it the connection closes. */
#define MAX_UNADMITTED_STREAMS 100
/* The first message buffer grows as bytes arrive, never to the length the client merely announced. */
#define MSG_INITIAL_ALLOC (64 * 1024)
#define PREFIX_LEN 5
/* Timers further out than this are as good as none; it also keeps timeval arithmetic far from overflow. */
#define MAX_TIMEOUT_US ((int64_t)100 * 24 * 3600 * 1000000)

enum call_state {
	CALL_READING,   /* request still arriving; no handler has seen the call */
	CALL_ACTIVE,    /* router called; the handler owes exactly one cove_call_finish() */
	CALL_FINISHED,  /* answered (by the handler or by the front); waiting for the stream to close */
	CALL_CANCELLED, /* cancel hook ran; the handler has dropped its pointer */
};

struct header {
	char *name;
	char *value;
};

struct conn;

struct cove_call {
	struct conn *conn;
	struct cove_call *prev, *next; /* conn->calls */
	int32_t stream_id;
	enum call_state state;

	struct header *headers;
	size_t n_headers, cap_headers;
	size_t header_bytes;
	bool headers_too_large;
	bool headers_over_budget; /* the connection's or the server's request buffers were full */
	bool admitted;
	size_t buffered; /* request bytes held: header_bytes + first_cap + cur_cap, charged to conn and server */

	int64_t deadline_us; /* CLOCK_MONOTONIC; -1 without grpc-timeout */
	struct event *deadline_ev;

	/* Request framing state, fed incrementally by DATA chunks. */
	uint8_t prefix[PREFIX_LEN];
	size_t prefix_got; /* 0 between messages */
	size_t msg_len;    /* length of the message being received */
	size_t msg_got;
	uint8_t *first; /* the first message, kept whole */
	size_t first_len, first_cap;
	size_t n_messages;
	uint8_t *cur; /* a later message being received, for the message hook (client streaming) */
	size_t cur_cap;

	/* Response. */
	struct evbuffer *out; /* framed messages not yet handed to nghttp2 */
	bool headers_sent;
	bool deferred; /* the data provider returned NGHTTP2_ERR_DEFERRED */
	bool trailers_ready;
	int status_code;
	char *status_msg; /* percent-encoded, NULL when empty */

	cove_call_cancel_fn cancel_fn;
	void *cancel_arg;
	void *data;
};

struct conn {
	struct cove_grpc_server *srv;
	struct conn *prev, *next; /* srv->conns */
	struct bufferevent *bev;
	nghttp2_session *session;
	struct event *close_ev; /* deferred close, see the rules above */
	struct cove_call *calls;
	int in_io;
	bool closing;
	bool draining; /* nghttp2 is done; free once the output buffer is empty */
	bool read_paused;
	bool handshake_done; /* the client's preface and SETTINGS arrived */
	bool admitted;       /* a request passed admission: never shed for a newcomer */
	int64_t accepted_us;
	size_t n_calls;
	size_t n_admitted; /* calls that passed admission and are not freed yet: while 0 the idle clock runs */
	size_t buffered;
	struct event *timer_ev; /* handshake timeout, then idle timeout */
	double control_tokens;
	int64_t control_last_us;
	char peer[64];
};

struct cove_grpc_listener {
	struct cove_grpc_server *srv;
	struct evconnlistener *l;
	struct cove_grpc_listener *prev, *next;
};

struct cove_grpc_server {
	struct event_base *base;
	struct evconnlistener *listener;
	struct evconnlistener *unix_listener; /* NULL unless asked for */
	struct cove_grpc_listener *extra;     /* cove_grpc_server_listen_fd's */
	char *unix_path;
	cove_grpc_router_fn router;
	void *router_ctx;
	cove_grpc_message_fn message_hook;
	void *message_hook_ctx;
	cove_grpc_admit_fn admit_hook;
	void *admit_hook_ctx;
	size_t max_message_bytes;
	size_t max_conn_buffer;
	size_t max_buffer;
	size_t max_connections;
	int64_t handshake_timeout_ms;
	int64_t idle_timeout_ms;
	int port;
	nghttp2_session_callbacks *callbacks;
	nghttp2_option *session_options;
	nghttp2_mem mem;
	struct conn *conns;
	size_t n_conns;
	size_t buffered;
	struct event *accept_retry_ev; /* re-enables the listeners after a pause for descriptors */
	int64_t accept_backoff_ms;
	time_t last_accept_warning;
	time_t last_shed_warning;
};

static void conn_free(struct conn *conn);
static void conn_arm_idle(struct conn *conn);

/* --- small helpers --- */

static int64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* grpc-timeout: 1-8 ASCII digits and a unit (H M S m u n). Returns microseconds, or -1 if malformed. */
static int64_t
parse_grpc_timeout(const char *s)
{
	size_t n = strlen(s);
	int64_t v = 0;

	if (n < 2 || n > 9)
		return -1;
	for (size_t i = 0; i < n - 1; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	switch (s[n - 1]) {
	case 'H':
		v *= (int64_t)3600 * 1000000;
		break;
	case 'M':
		v *= (int64_t)60 * 1000000;
		break;
	case 'S':
		v *= 1000000;
		break;
	case 'm':
		v *= 1000;
		break;
	case 'u':
		break;
	case 'n':
		v = (v + 999) / 1000;
		break;
	default:
		return -1;
	}
	return v > MAX_TIMEOUT_US ? MAX_TIMEOUT_US : v;
}

/* gRPC spec: grpc-message percent-encodes every byte outside 0x20-0x7E, and '%' itself. NULL if empty. */
static char *
percent_encode(const char *msg)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out, *p;

	if (msg == NULL || *msg == '\0')
		return NULL;
	out = p = xmalloc(strlen(msg) * 3 + 1);
	for (const unsigned char *s = (const unsigned char *)msg; *s; s++) {
		if (*s < 0x20 || *s > 0x7e || *s == '%') {
			*p++ = '%';
			*p++ = hex[*s >> 4];
			*p++ = hex[*s & 0xf];
		} else {
			*p++ = (char)*s;
		}
	}
	*p = '\0';
	return out;
}

static nghttp2_nv
make_nv(const char *name, const char *value)
{
	nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value), NGHTTP2_NV_FLAG_NONE};
	return nv;
}

/* evbuffer_add fails only on allocation failure, which aborts everywhere else too. */
static void
xevbuffer_add(struct evbuffer *buf, const void *data, size_t len)
{
	if (evbuffer_add(buf, data, len) < 0) {
		log_error("grpc: out of memory queueing %zu bytes", len);
		abort();
	}
}

/* nghttp2 allocations go through the aborting allocators, like everything else. */
static void *
mem_malloc(size_t size, void *ud)
{
	(void)ud;
	return xmalloc(size);
}

static void
mem_free(void *ptr, void *ud)
{
	(void)ud;
	free(ptr);
}

static void *
mem_calloc(size_t nmemb, size_t size, void *ud)
{
	(void)ud;
	return xcalloc(nmemb, size);
}

static void *
mem_realloc(void *ptr, size_t size, void *ud)
{
	(void)ud;
	return xrealloc(ptr, size);
}

/* --- request buffer budgets --- */

/* Take `n` more request bytes for `call` from its connection's and the server's budgets. Returns NULL, or
 * (taking nothing) the refusal to answer with. */
static const char *
call_charge(struct cove_call *call, size_t n)
{
	struct conn *conn = call->conn;
	struct cove_grpc_server *srv = conn->srv;

	if (conn->buffered + n > srv->max_conn_buffer)
		return "connection";
	if (srv->buffered + n > srv->max_buffer)
		return "server";
	call->buffered += n;
	conn->buffered += n;
	srv->buffered += n;
	return NULL;
}

static void
call_uncharge(struct cove_call *call, size_t n)
{
	call->buffered -= n;
	call->conn->buffered -= n;
	call->conn->srv->buffered -= n;
}

static void
call_drop_first(struct cove_call *call)
{
	if (call->first)
		call_uncharge(call, call->first_cap);
	free(call->first);
	call->first = NULL;
	call->first_cap = 0;
}

static void
call_drop_cur(struct cove_call *call)
{
	if (call->cur)
		call_uncharge(call, call->cur_cap);
	free(call->cur);
	call->cur = NULL;
	call->cur_cap = 0;
}

/* --- connection I/O --- */

/* Hand nghttp2's pending frames to the bufferevent until it holds OUTPUT_HIGH; the write callback
 * continues once it drains. Returns -1 on a fatal session error. */
static int
conn_send(struct conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	while (evbuffer_get_length(out) < OUTPUT_HIGH) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(conn->session, &data);
		if (n < 0) {
			log_debug("grpc: %s: send: %s", conn->peer, nghttp2_strerror((int)n));
			return -1;
		}
		if (n == 0)
			break;
		if (bufferevent_write(conn->bev, data, (size_t)n) < 0)
			return -1;
	}
	return 0;
}

static int
conn_recv(struct conn *conn)
{
	struct evbuffer *in = bufferevent_get_input(conn->bev);

	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		ssize_t n;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = nghttp2_session_mem_recv(conn->session, v.iov_base, v.iov_len);
		if (n < 0) {
			log_debug("grpc: %s: receive: %s", conn->peer, nghttp2_strerror((int)n));
			return -1;
		}
		evbuffer_drain(in, (size_t)n);
	}
	return 0;
}

/* After I/O: keep going, drain the last frames (GOAWAY) and then close, or close now. A connection may
 * only be freed from its own top-level callbacks; elsewhere the close is deferred to close_ev.
 * Returns true if the connection was freed. */
static bool
conn_after_io(struct conn *conn, int rv, bool top_level)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	if (rv == 0 && (nghttp2_session_want_read(conn->session) || nghttp2_session_want_write(conn->session))) {
		/* Don't take more requests while the client is not reading our answers. */
		bool full = evbuffer_get_length(out) >= OUTPUT_HIGH;
		if (full && !conn->read_paused) {
			bufferevent_disable(conn->bev, EV_READ);
			conn->read_paused = true;
		} else if (!full && conn->read_paused) {
			bufferevent_enable(conn->bev, EV_READ);
			conn->read_paused = false;
		}
		return false;
	}
	if (rv == 0 && evbuffer_get_length(out) > 0) {
		/* A peer that never reads must not pin the connection forever. */
		struct timeval tv = {DRAIN_TIMEOUT_S, 0};
		conn->draining = true;
		bufferevent_disable(conn->bev, EV_READ);
		bufferevent_setwatermark(conn->bev, EV_WRITE, 0, 0);
		bufferevent_set_timeouts(conn->bev, NULL, &tv);
		return false;
	}
	if (!top_level) {
		event_active(conn->close_ev, EV_TIMEOUT, 1);
		return false;
	}
	conn_free(conn);
	return true;
}

/* Called after send/finish/deadline queued frames: write them out now unless an I/O frame of this
 * connection is on the stack (it sends when it returns). */
static void
conn_flush(struct conn *conn)
{
	int rv;

	if (conn->closing || conn->draining || conn->in_io > 0)
		return;
	conn->in_io++;
	rv = conn_send(conn);
	conn->in_io--;
	conn_after_io(conn, rv, false);
}

static void
readcb(struct bufferevent *bev, void *arg)
{
	struct conn *conn = arg;
	int rv;

	(void)bev;
	if (conn->draining)
		return;
	conn->in_io++;
	rv = conn_recv(conn);
	if (rv == 0)
		rv = conn_send(conn);
	conn->in_io--;
	conn_after_io(conn, rv, true);
}

static void
writecb(struct bufferevent *bev, void *arg)
{
	struct conn *conn = arg;
	int rv;

	if (conn->draining) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_free(conn);
		return;
	}
	conn->in_io++;
	rv = conn_send(conn);
	conn->in_io--;
	conn_after_io(conn, rv, true);
}

static void
eventcb(struct bufferevent *bev, short events, void *arg)
{
	struct conn *conn = arg;

	(void)bev;
	if (events & BEV_EVENT_ERROR)
		log_debug("grpc: %s: %s", conn->peer, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_free(conn);
}

static void
close_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_free(arg);
}

/* --- calls --- */

static void
call_stop_deadline(struct cove_call *call)
{
	if (call->deadline_ev) {
		event_free(call->deadline_ev);
		call->deadline_ev = NULL;
	}
}

static void
call_free(struct cove_call *call)
{
	struct conn *conn = call->conn;

	if (call->prev)
		call->prev->next = call->next;
	else
		conn->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call_stop_deadline(call);
	call_uncharge(call, call->buffered);
	for (size_t i = 0; i < call->n_headers; i++) {
		free(call->headers[i].name);
		free(call->headers[i].value);
	}
	free(call->headers);
	free(call->first);
	free(call->cur);
	free(call->status_msg);
	if (call->out)
		evbuffer_free(call->out);
	conn->n_calls--;
	if (call->admitted && --conn->n_admitted == 0)
		conn_arm_idle(conn);
	free(call);
}

/* The call ends before the handler finished it: run the hook once; the handler forgets the call. */
static void
call_cancel(struct cove_call *call)
{
	cove_call_cancel_fn fn = call->cancel_fn;

	call->state = CALL_CANCELLED;
	call->cancel_fn = NULL;
	call_stop_deadline(call);
	if (fn)
		fn(call, call->cancel_arg);
}

/* A complete response in one HEADERS frame with END_STREAM. */
static void
call_submit_trailers_only(struct cove_call *call, const char *http_status, int code, const char *message)
{
	cleanup_free char *enc = percent_encode(message);
	char code_s[16];
	nghttp2_nv nva[4];
	size_t n = 0;
	int rv;

	snprintf(code_s, sizeof(code_s), "%d", code);
	nva[n++] = make_nv(":status", http_status);
	nva[n++] = make_nv("content-type", "application/grpc");
	nva[n++] = make_nv("grpc-status", code_s);
	if (enc)
		nva[n++] = make_nv("grpc-message", enc);
	call->headers_sent = true;
	rv = nghttp2_submit_response(call->conn->session, call->stream_id, nva, n, NULL);
	if (rv != 0)
		log_debug("grpc: %s: stream %d: submit response: %s", call->conn->peer, call->stream_id,
			  nghttp2_strerror(rv));
}

static void
call_resume(struct cove_call *call)
{
	int rv;

	if (!call->deferred)
		return;
	call->deferred = false;
	rv = nghttp2_session_resume_data(call->conn->session, call->stream_id);
	if (rv != 0)
		log_debug("grpc: %s: stream %d: resume: %s", call->conn->peer, call->stream_id, nghttp2_strerror(rv));
}

/* Queue the trailers behind whatever is queued (or answer trailers-only if nothing went out yet).
 * The caller flushes. */
static void
call_end(struct cove_call *call, int code, const char *message)
{
	if (!call->headers_sent) {
		call_submit_trailers_only(call, "200", code, message);
		return;
	}
	call->status_code = code;
	free(call->status_msg);
	call->status_msg = percent_encode(message);
	call->trailers_ready = true;
	call_resume(call);
}

/* The front answers a request the handler never saw (bad headers, bad framing, deadline while
 * reading). Further request bytes are ignored; on_frame_send asks the client to stop sending them. */
static void __attribute__((format(printf, 4, 5)))
call_reject(struct cove_call *call, const char *http_status, int code, const char *fmt, ...)
{
	cleanup_free char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	log_debug("grpc: %s: stream %d: %s", call->conn->peer, call->stream_id, msg);
	/* A message hook may have given a streaming request state of its own: it goes with the call. */
	cove_call_cancel_fn fn = call->cancel_fn;
	call->cancel_fn = NULL;
	if (fn)
		fn(call, call->cancel_arg);
	call->state = CALL_FINISHED;
	call_stop_deadline(call);
	call_drop_first(call);
	call_drop_cur(call);
	call_submit_trailers_only(call, http_status, code, msg);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cove_call *call = arg;
	struct conn *conn = call->conn;

	(void)fd;
	(void)what;
	call_stop_deadline(call);
	if (call->state == CALL_READING) {
		call_reject(call, "200", COVE_DEADLINE_EXCEEDED, "deadline exceeded");
	} else if (call->state == CALL_ACTIVE) {
		/* The hook runs before anything is submitted, so the call cannot close under it. */
		call_cancel(call);
		if (call->out)
			evbuffer_drain(call->out, evbuffer_get_length(call->out));
		call_end(call, COVE_DEADLINE_EXCEEDED, "deadline exceeded");
	}
	conn_flush(conn);
}

static const char *
call_header(const struct cove_call *call, const char *name)
{
	for (size_t i = 0; i < call->n_headers; i++)
		if (strcmp(call->headers[i].name, name) == 0)
			return call->headers[i].value;
	return NULL;
}

/* END_HEADERS of the request: validate, start the deadline. */
static void
call_headers_done(struct cove_call *call)
{
	struct cove_grpc_server *srv = call->conn->srv;
	const char *method = call_header(call, ":method");
	const char *ctype = call_header(call, "content-type");
	const char *timeout = call_header(call, "grpc-timeout");

	if (call->headers_over_budget) {
		call_reject(call, "200", COVE_RESOURCE_EXHAUSTED, "this connection's or the server's request buffers are full: retry later");
		return;
	}
	if (call->headers_too_large) {
		call_reject(call, "200", COVE_RESOURCE_EXHAUSTED, "request headers exceed %d bytes", MAX_HEADER_LIST);
		return;
	}
	if (method == NULL || strcmp(method, "POST") != 0) {
		call_reject(call, "405", COVE_UNIMPLEMENTED, "HTTP method %s is not supported, gRPC uses POST",
			    method ? method : "(none)");
		return;
	}
	if (ctype == NULL || strncmp(ctype, "application/grpc", strlen("application/grpc")) != 0) {
		call_reject(call, "415", COVE_INVALID_ARGUMENT, "content-type %s is not application/grpc",
			    ctype ? ctype : "(none)");
		return;
	}
	/* Credentials before a single byte of the body is kept. */
	if (srv->admit_hook) {
		const char *path = call_header(call, ":path");
		struct cove_error *err = NULL;
		if (srv->admit_hook(call, path ? path : "", srv->admit_hook_ctx, &err) < 0) {
			call_reject(call, "200", err && err->code != COVE_OK ? err->code : COVE_INTERNAL, "%s",
				    err ? err->msg : "request refused");
			cove_error_free(err);
			return;
		}
	}
	call->admitted = true;
	call->conn->admitted = true;
	if (call->conn->n_admitted++ == 0)
		evtimer_del(call->conn->timer_ev);
	if (timeout) {
		int64_t us = parse_grpc_timeout(timeout);
		if (us < 0) {
			/* Lenient, like a client that sent no deadline; the client enforces its own anyway. */
			log_debug("grpc: %s: stream %d: ignoring malformed grpc-timeout %s", call->conn->peer,
				  call->stream_id, timeout);
		} else {
			struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
			call->deadline_us = now_us() + us;
			call->deadline_ev = evtimer_new(call->conn->srv->base, deadline_cb, call);
			if (call->deadline_ev == NULL) {
				log_error("grpc: out of memory creating a timer");
				abort();
			}
			evtimer_add(call->deadline_ev, &tv);
		}
	}
}

/* Client streaming: hand message `index` to the message hook. */
static void
call_deliver(struct cove_call *call, size_t index, const uint8_t *msg, size_t len)
{
	struct cove_grpc_server *srv = call->conn->srv;
	const char *path = call_header(call, ":path");
	srv->message_hook(call, path ? path : "", index, msg, len, srv->message_hook_ctx);
}

/* The capacity a message buffer of `cap` bytes grows to for `n` more bytes: doubling, never past the
 * message's length. */
static size_t
grown_cap(const struct cove_call *call, size_t cap, size_t n)
{
	size_t want = call->msg_got + n;
	size_t grown = cap * 2;

	if (grown < want)
		grown = want;
	return grown > call->msg_len ? call->msg_len : grown;
}

/* Resize a message buffer to `cap` bytes within the budgets; false (the call rejected) past them. */
static bool
call_grow(struct cove_call *call, uint8_t **buf, size_t *buf_cap, size_t cap)
{
	struct cove_grpc_server *srv = call->conn->srv;
	const char *full = cap > *buf_cap ? call_charge(call, cap - *buf_cap) : NULL;

	if (full) {
		size_t limit = strcmp(full, "connection") == 0 ? srv->max_conn_buffer : srv->max_buffer;
		call_reject(call, "200", COVE_RESOURCE_EXHAUSTED,
			    "requests on this %s hold %zu bytes already, the limit is %zu: retry later", full,
			    strcmp(full, "connection") == 0 ? call->conn->buffered : srv->buffered, limit);
		return false;
	}
	if (cap < *buf_cap)
		call_uncharge(call, *buf_cap - cap);
	*buf = xrealloc(*buf, cap ? cap : 1);
	*buf_cap = cap;
	return true;
}

/* DATA payload: de-frame incrementally. Returns -1 once the call was rejected. */
static int
call_consume(struct cove_call *call, const uint8_t *data, size_t len)
{
	size_t max = call->conn->srv->max_message_bytes;
	bool hook = call->conn->srv->message_hook != NULL;

	while (len > 0) {
		size_t n;

		if (call->prefix_got < PREFIX_LEN) {
			n = PREFIX_LEN - call->prefix_got;
			if (n > len)
				n = len;
			memcpy(call->prefix + call->prefix_got, data, n);
			call->prefix_got += n;
			data += n;
			len -= n;
			if (call->prefix_got < PREFIX_LEN)
				break;
			if (call->prefix[0] == 1) {
				call_reject(call, "200", COVE_UNIMPLEMENTED, "compression is not supported");
				return -1;
			}
			if (call->prefix[0] != 0) {
				call_reject(call, "200", COVE_INTERNAL, "invalid gRPC message flag %u",
					    call->prefix[0]);
				return -1;
			}
			call->msg_len = (size_t)call->prefix[1] << 24 | (size_t)call->prefix[2] << 16 |
					(size_t)call->prefix[3] << 8 | call->prefix[4];
			call->msg_got = 0;
			if (call->msg_len > max) {
				/* HTTP 413 as Modal's front answers: the client turns it into RequestSizeError. */
				call_reject(call, "413", COVE_RESOURCE_EXHAUSTED,
					    "message of %zu bytes exceeds the limit of %zu bytes", call->msg_len, max);
				return -1;
			}
			call->n_messages++;
			if (call->n_messages == 1) {
				size_t cap = call->msg_len < MSG_INITIAL_ALLOC ? call->msg_len : MSG_INITIAL_ALLOC;
				if (!call_grow(call, &call->first, &call->first_cap, cap))
					return -1;
				call->first_len = call->msg_len;
			} else if (hook) {
				/* A second message: the request streams, so the hook gets every message from now on. */
				if (call->n_messages == 2)
					call_deliver(call, 0, call->first, call->first_len);
				size_t cap = call->msg_len < MSG_INITIAL_ALLOC ? call->msg_len : MSG_INITIAL_ALLOC;
				if (!call_grow(call, &call->cur, &call->cur_cap, cap ? cap : 1))
					return -1;
			}
			if (call->msg_len == 0) {
				call->prefix_got = 0;
				if (call->n_messages > 1 && hook) {
					call_deliver(call, call->n_messages - 1, call->cur, 0);
					call_drop_cur(call);
				}
			}
			continue;
		}
		n = call->msg_len - call->msg_got;
		if (n > len)
			n = len;
		if (call->n_messages == 1) {
			if (call->msg_got + n > call->first_cap &&
			    !call_grow(call, &call->first, &call->first_cap, grown_cap(call, call->first_cap, n)))
				return -1;
			memcpy(call->first + call->msg_got, data, n);
		} else if (hook) {
			if (call->msg_got + n > call->cur_cap &&
			    !call_grow(call, &call->cur, &call->cur_cap, grown_cap(call, call->cur_cap, n)))
				return -1;
			memcpy(call->cur + call->msg_got, data, n);
		}
		call->msg_got += n;
		data += n;
		len -= n;
		if (call->msg_got == call->msg_len) {
			call->prefix_got = 0;
			if (call->n_messages > 1 && hook) {
				call_deliver(call, call->n_messages - 1, call->cur, call->msg_len);
				call_drop_cur(call);
			}
		}
	}
	return 0;
}

/* END_STREAM from the client: hand the request to the router. */
static void
call_request_done(struct cove_call *call)
{
	struct cove_grpc_server *srv = call->conn->srv;
	const char *path;

	if (call->state != CALL_READING)
		return;
	if (call->prefix_got != 0) {
		call_reject(call, "200", COVE_INTERNAL, "truncated gRPC message (%zu of %zu bytes)",
			    call->prefix_got < PREFIX_LEN ? call->prefix_got : PREFIX_LEN + call->msg_got,
			    call->prefix_got < PREFIX_LEN ? (size_t)PREFIX_LEN : PREFIX_LEN + call->msg_len);
		return;
	}
	path = call_header(call, ":path");
	call->state = CALL_ACTIVE;
	/* in_io > 0 here, so nothing the router does can close this stream before it returns. */
	srv->router(call, path ? path : "", call->first, call->first_len, call->n_messages, srv->router_ctx);
	call_drop_first(call);
}

/* --- nghttp2 callbacks --- */

static int
on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct conn *conn = user_data;
	struct cove_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (!conn->admitted && conn->n_calls >= MAX_UNADMITTED_STREAMS) {
		log_debug("grpc: %s: %zu refused requests in flight and none admitted: closing", conn->peer,
			  conn->n_calls);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	call = xcalloc(1, sizeof(*call));
	call->conn = conn;
	call->stream_id = frame->hd.stream_id;
	call->deadline_us = -1;
	call->next = conn->calls;
	if (conn->calls)
		conn->calls->prev = call;
	conn->calls = call;
	conn->n_calls++;
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	return 0;
}

static int
on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
	  const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
	struct cove_call *call;

	(void)flags;
	(void)user_data;
	/* Request trailers (HCAT_HEADERS) carry nothing gRPC uses. */
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (call == NULL || call->headers_too_large)
		return 0;
	/* RFC 7541 size accounting: name + value + 32 per field. */
	call->header_bytes += namelen + valuelen + 32;
	if (call->header_bytes > MAX_HEADER_LIST) {
		call->headers_too_large = true;
		return 0;
	}
	if (call_charge(call, namelen + valuelen + 32) != NULL) {
		call->headers_too_large = true;
		call->headers_over_budget = true;
		return 0;
	}
	if (call->n_headers == call->cap_headers) {
		call->cap_headers = call->cap_headers ? call->cap_headers * 2 : 16;
		call->headers = xrealloc(call->headers, call->cap_headers * sizeof(*call->headers));
	}
	call->headers[call->n_headers].name = xstrndup((const char *)name, namelen);
	call->headers[call->n_headers].value = xstrndup((const char *)value, valuelen);
	call->n_headers++;
	return 0;
}

static int
on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct cove_call *call;

	if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		struct conn *conn = user_data;
		if (!conn->handshake_done) {
			conn->handshake_done = true;
			evtimer_del(conn->timer_ev);
			if (conn->n_admitted == 0)
				conn_arm_idle(conn);
		}
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (call == NULL)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		call_headers_done(call);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		call_request_done(call);
	return 0;
}

/* Frames that carry nothing draw on a token bucket; a peer that empties it is flooding. */
static int
on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data)
{
	struct conn *conn = user_data;
	bool empty;
	int64_t now;

	switch (hd->type) {
	case NGHTTP2_PING:
	case NGHTTP2_SETTINGS:
		empty = !(hd->flags & NGHTTP2_FLAG_ACK);
		break;
	case NGHTTP2_PRIORITY:
		empty = true;
		break;
	case NGHTTP2_DATA:
		empty = hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM);
		break;
	default:
		empty = false;
	}
	if (!empty)
		return 0;
	now = now_us();
	conn->control_tokens += (double)(now - conn->control_last_us) * CONTROL_PER_S / 1e6;
	if (conn->control_tokens > CONTROL_BURST)
		conn->control_tokens = CONTROL_BURST;
	conn->control_last_us = now;
	if (conn->control_tokens >= 1) {
		conn->control_tokens -= 1;
		return 0;
	}
	(void)session;
	log_debug("grpc: %s: more than %d empty frames (PING, SETTINGS, PRIORITY, empty DATA) at over %d a second: "
		  "closing the connection",
		  conn->peer, CONTROL_BURST, CONTROL_PER_S);
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int
on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
		   void *user_data)
{
	struct cove_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	(void)flags;
	(void)user_data;
	/* Bytes after a rejection are dropped unbuffered; nghttp2 still credits the flow-control windows. */
	if (call == NULL || call->state != CALL_READING)
		return 0;
	call_consume(call, data, len);
	return 0;
}

static int
on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	(void)user_data;
	/* We answered before the request ended (rejection, deadline): RFC 9113 8.1 lets the server tell the
	 * client to stop sending with RST_STREAM(NO_ERROR). */
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0)
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
	return 0;
}

static int
on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
	struct cove_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	(void)user_data;
	if (call == NULL)
		return 0;
	if (call->state == CALL_ACTIVE || (call->state == CALL_READING && call->cancel_fn)) {
		log_debug("grpc: %s: stream %d closed before the call finished (%s)", call->conn->peer, stream_id,
			  nghttp2_http2_strerror(error_code));
		call_cancel(call);
	}
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	call_free(call);
	return 0;
}

/* Response DATA: framed messages from call->out, then trailers once the handler finished. */
static ssize_t
data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
	  nghttp2_data_source *source, void *user_data)
{
	struct cove_call *call = source->ptr;
	size_t avail = call->out ? evbuffer_get_length(call->out) : 0;
	size_t n = avail < length ? avail : length;

	(void)user_data;
	if (n > 0)
		evbuffer_remove(call->out, buf, n);
	if (n == avail && call->trailers_ready) {
		char code_s[16];
		nghttp2_nv nva[2];
		size_t nv = 0;
		int rv;

		snprintf(code_s, sizeof(code_s), "%d", call->status_code);
		nva[nv++] = make_nv("grpc-status", code_s);
		if (call->status_msg)
			nva[nv++] = make_nv("grpc-message", call->status_msg);
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		rv = nghttp2_submit_trailer(session, stream_id, nva, nv);
		if (rv != 0) {
			log_debug("grpc: stream %d: submit trailer: %s", stream_id, nghttp2_strerror(rv));
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		return (ssize_t)n;
	}
	if (n == 0) {
		call->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* --- connections --- */

static void
timer_add_ms(struct event *ev, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

/* No stream left: the idle timeout starts. */
static void
conn_arm_idle(struct conn *conn)
{
	if (conn->closing || conn->draining || !conn->handshake_done || conn->srv->idle_timeout_ms <= 0)
		return;
	timer_add_ms(conn->timer_ev, conn->srv->idle_timeout_ms);
}

/* Handshake or idle timeout (a top-level callback of the connection's own). Idle means no admitted stream:
 * a stranger's half-sent header block or refused requests do not keep a connection open. */
static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *conn = arg;
	int rv;

	(void)fd;
	(void)what;
	if (conn->closing || conn->draining)
		return;
	if (!conn->handshake_done) {
		log_debug("grpc: %s: no HTTP/2 preface and SETTINGS within %lld ms: closing", conn->peer,
			  (long long)conn->srv->handshake_timeout_ms);
		conn_free(conn);
		return;
	}
	if (conn->n_admitted > 0)
		return;
	log_debug("grpc: %s: no stream for %lld ms: closing (GOAWAY)", conn->peer,
		  (long long)conn->srv->idle_timeout_ms);
	nghttp2_session_terminate_session(conn->session, NGHTTP2_NO_ERROR);
	conn->in_io++;
	rv = conn_send(conn);
	conn->in_io--;
	conn_after_io(conn, rv, true);
}

static void
conn_free(struct conn *conn)
{
	struct cove_grpc_server *srv = conn->srv;

	log_debug("grpc: %s: connection closed", conn->peer);
	conn->closing = true;
	/* nghttp2_session_del runs no callbacks, so the calls are ours to cancel and free. */
	nghttp2_session_del(conn->session);
	conn->session = NULL;
	/* Hooks may finish other calls of this connection: with closing set that only marks them finished,
	 * frees nothing and submits nothing, so walking the list is safe. */
	for (struct cove_call *call = conn->calls; call; call = call->next)
		if (call->state == CALL_ACTIVE || (call->state == CALL_READING && call->cancel_fn))
			call_cancel(call);
	while (conn->calls)
		call_free(conn->calls);
	bufferevent_free(conn->bev);
	event_free(conn->close_ev);
	event_free(conn->timer_ev);
	srv->n_conns--;
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		srv->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	free(conn);
}

static void
format_peer(char *buf, size_t size, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN], serv[8];
	socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(buf, size, "peer");
	else
		snprintf(buf, size, "%s:%s", host, serv);
}

/* Close the oldest connection that never had a request admitted, to make room for a new one. Such a
 * connection has no handler state, so it may go from any top-level callback. False if there is none. */
static bool
shed_connection(struct cove_grpc_server *srv, const char *why)
{
	struct conn *victim = NULL;
	int64_t young = now_us() - SHED_GRACE_US;
	time_t now;

	for (struct conn *c = srv->conns; c; c = c->next) /* newest first */
		if (!c->admitted && !c->closing && c->accepted_us < young)
			victim = c;
	if (victim == NULL)
		return false;
	now = time(NULL);
	if (now - srv->last_shed_warning >= 60) {
		srv->last_shed_warning = now;
		log_warn("grpc: out of %s (%zu connections open): closing the oldest connections that never made an "
			 "authenticated request",
			 why, srv->n_conns);
	}
	conn_free(victim);
	return true;
}

static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct cove_grpc_server *srv = arg;
	nghttp2_settings_entry settings[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
	};
	struct timeval write_timeout = {WRITE_TIMEOUT_S, 0};
	struct conn *conn;
	int one = 1;
	int rv;

	(void)listener;
	(void)salen;
	srv->accept_backoff_ms = 0;
	if (srv->n_conns >= srv->max_connections && !shed_connection(srv, "connections")) {
		time_t now = time(NULL);
		if (now - srv->last_shed_warning >= 60) {
			srv->last_shed_warning = now;
			log_warn("grpc: %zu connections open, the limit (COVE_GRPC_MAX_CONNECTIONS): refusing new ones",
				 srv->n_conns);
		}
		evutil_closesocket(fd);
		return;
	}
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn = xcalloc(1, sizeof(*conn));
	conn->srv = srv;
	conn->control_tokens = CONTROL_BURST;
	conn->control_last_us = now_us();
	conn->accepted_us = conn->control_last_us;
	format_peer(conn->peer, sizeof(conn->peer), sa);
	conn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	conn->close_ev = event_new(srv->base, -1, 0, close_cb, conn);
	conn->timer_ev = evtimer_new(srv->base, conn_timer_cb, conn);
	if (conn->bev == NULL || conn->close_ev == NULL || conn->timer_ev == NULL) {
		log_error("grpc: out of memory accepting a connection");
		abort();
	}
	nghttp2_session_server_new3(&conn->session, srv->callbacks, conn, srv->session_options, &srv->mem);
	conn->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = conn;
	srv->conns = conn;
	srv->n_conns++;
	if (srv->handshake_timeout_ms > 0)
		timer_add_ms(conn->timer_ev, srv->handshake_timeout_ms);

	rv = nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, settings,
				     sizeof(settings) / sizeof(settings[0]));
	if (rv == 0)
		rv = nghttp2_session_set_local_window_size(conn->session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
	if (rv != 0) {
		log_warn("grpc: %s: session setup: %s", conn->peer, nghttp2_strerror(rv));
		conn_free(conn);
		return;
	}
	bufferevent_set_max_single_read(conn->bev, MAX_SINGLE_READ);
	bufferevent_setwatermark(conn->bev, EV_WRITE, OUTPUT_LOW, 0);
	bufferevent_set_timeouts(conn->bev, NULL, &write_timeout);
	bufferevent_setcb(conn->bev, readcb, writecb, eventcb, conn);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	log_debug("grpc: %s: connection accepted", conn->peer);

	conn->in_io++;
	rv = conn_send(conn);
	conn->in_io--;
	conn_after_io(conn, rv, true);
}

static void accept_error_cb(struct evconnlistener *listener, void *arg);

static void
listeners_enable(struct cove_grpc_server *srv, bool on)
{
	int (*fn)(struct evconnlistener *) = on ? evconnlistener_enable : evconnlistener_disable;

	fn(srv->listener);
	if (srv->unix_listener)
		fn(srv->unix_listener);
	for (struct cove_grpc_listener *l = srv->extra; l; l = l->next)
		fn(l->l);
}

struct cove_grpc_listener *
cove_grpc_server_listen_fd(struct cove_grpc_server *srv, int fd, struct cove_error **err)
{
	evutil_make_socket_nonblocking(fd);
	struct evconnlistener *el = evconnlistener_new(srv->base, accept_cb, srv,
						       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (el == NULL) {
		close(fd);
		cove_error_set(err, COVE_INTERNAL, "grpc: cannot listen on descriptor %d", fd);
		return NULL;
	}
	evconnlistener_set_error_cb(el, accept_error_cb);
	struct cove_grpc_listener *l = xcalloc(1, sizeof(*l));
	l->srv = srv;
	l->l = el;
	l->next = srv->extra;
	if (srv->extra)
		srv->extra->prev = l;
	srv->extra = l;
	if (srv->accept_backoff_ms > 0)
		evconnlistener_disable(el); /* the others are paused: so is this one, until the retry */
	return l;
}

void
cove_grpc_listener_free(struct cove_grpc_listener *l)
{
	if (l == NULL)
		return;
	if (l->prev)
		l->prev->next = l->next;
	else
		l->srv->extra = l->next;
	if (l->next)
		l->next->prev = l->prev;
	evconnlistener_free(l->l);
	free(l);
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	listeners_enable(arg, true);
}

static void
accept_error_cb(struct evconnlistener *listener, void *arg)
{
	struct cove_grpc_server *srv = arg;
	int e = EVUTIL_SOCKET_ERROR();
	bool out_of_descriptors = e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
	time_t now = time(NULL);

	/* accept() fails for want of a descriptor even with nobody waiting: then there is nothing to do. */
	if (out_of_descriptors) {
		struct pollfd pfd = {.fd = evconnlistener_get_fd(listener), .events = POLLIN};
		if (poll(&pfd, 1, 0) <= 0)
			return;
	}
	/* Out of descriptors, a connection that never made an admitted request makes room for the next one;
	 * with none, the listeners pause (the socket stays readable: retrying at once would spin). */
	if (out_of_descriptors && shed_connection(srv, "descriptors"))
		return;
	if (now - srv->last_accept_warning >= 60) {
		srv->last_accept_warning = now;
		log_warn("grpc: accept: %s%s", evutil_socket_error_to_string(e),
			 out_of_descriptors ? " (pausing new connections)" : "");
	}
	if (!out_of_descriptors)
		return;
	srv->accept_backoff_ms = srv->accept_backoff_ms ? srv->accept_backoff_ms * 2 : ACCEPT_BACKOFF_MIN_MS;
	if (srv->accept_backoff_ms > ACCEPT_BACKOFF_MAX_MS)
		srv->accept_backoff_ms = ACCEPT_BACKOFF_MAX_MS;
	listeners_enable(srv, false);
	timer_add_ms(srv->accept_retry_ev, srv->accept_backoff_ms);
}

/* --- public interface --- */

/* Half the descriptors this process may open: the rest are for containers, stores and the other ports. */
static size_t
default_max_connections(void)
{
	struct rlimit rl;
	size_t n;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return MAX_DEFAULT_CONNECTIONS;
	n = (size_t)rl.rlim_cur / 2;
	if (n > MAX_DEFAULT_CONNECTIONS)
		n = MAX_DEFAULT_CONNECTIONS;
	return n < MIN_CONNECTIONS ? MIN_CONNECTIONS : n;
}

/* A positive count (bytes or connections) from the environment. */
static int
env_count(const char *name, size_t *out, struct cove_error **err)
{
	const char *v = getenv(name);
	char *end;
	unsigned long long n;

	if (v == NULL || *v == '\0')
		return 0;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || n == 0 || v[0] == '-')
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s=%s: expected a positive whole number", name, v);
	*out = (size_t)n;
	return 0;
}

/* Seconds (a decimal fraction is fine) from the environment, as milliseconds. */
static int
env_seconds(const char *name, int64_t *out_ms, struct cove_error **err)
{
	const char *v = getenv(name);
	char *end;
	double s;

	if (v == NULL || *v == '\0')
		return 0;
	errno = 0;
	s = strtod(v, &end);
	if (errno != 0 || *end != '\0' || !(s >= 0.001 && s <= 30 * 24 * 3600))
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s=%s: expected seconds between 0.001 and 2592000",
				      name, v);
	*out_ms = (int64_t)(s * 1000 + 0.5);
	return 0;
}

int
cove_grpc_options_from_env(struct cove_grpc_options *opts, struct cove_error **err)
{
	if (env_count("COVE_GRPC_MAX_CONNECTIONS", &opts->max_connections, err) < 0 ||
	    env_count("COVE_GRPC_MAX_CONNECTION_BUFFER", &opts->max_connection_buffer_bytes, err) < 0 ||
	    env_count("COVE_GRPC_MAX_BUFFER", &opts->max_buffer_bytes, err) < 0 ||
	    env_seconds("COVE_GRPC_HANDSHAKE_TIMEOUT", &opts->handshake_timeout_ms, err) < 0 ||
	    env_seconds("COVE_GRPC_IDLE_TIMEOUT", &opts->idle_timeout_ms, err) < 0)
		return -1;
	return 0;
}

struct cove_grpc_server *
cove_grpc_server_new(struct event_base *base, const struct cove_grpc_options *opts, cove_grpc_router_fn router,
		     void *router_ctx, struct cove_error **err)
{
	const char *address = opts->address ? opts->address : "127.0.0.1";
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	struct cove_grpc_server *srv;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char port_s[16];
	int saved_errno = 0;
	int rv;

	snprintf(port_s, sizeof(port_s), "%d", opts->port);
	rv = getaddrinfo(address, port_s, &hints, &res);
	if (rv != 0) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "resolve %s: %s", address, gai_strerror(rv));
		return NULL;
	}

	srv = xcalloc(1, sizeof(*srv));
	srv->base = base;
	srv->router = router;
	srv->router_ctx = router_ctx;
	srv->max_message_bytes = opts->max_message_bytes ? opts->max_message_bytes : DEFAULT_MAX_MESSAGE_BYTES;
	srv->max_conn_buffer = opts->max_connection_buffer_bytes ? opts->max_connection_buffer_bytes
								 : DEFAULT_CONN_BUFFER;
	srv->max_buffer = opts->max_buffer_bytes ? opts->max_buffer_bytes : DEFAULT_TOTAL_BUFFER;
	srv->max_connections = opts->max_connections ? opts->max_connections : default_max_connections();
	srv->handshake_timeout_ms = opts->handshake_timeout_ms ? opts->handshake_timeout_ms : DEFAULT_HANDSHAKE_MS;
	srv->idle_timeout_ms = opts->idle_timeout_ms ? opts->idle_timeout_ms : DEFAULT_IDLE_MS;
	srv->mem = (nghttp2_mem){NULL, mem_malloc, mem_free, mem_calloc, mem_realloc};

	for (struct addrinfo *ai = res; ai && srv->listener == NULL; ai = ai->ai_next) {
		srv->listener = evconnlistener_new_bind(base, accept_cb, srv,
							LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
							-1, ai->ai_addr, (int)ai->ai_addrlen);
		if (srv->listener == NULL)
			saved_errno = errno;
	}
	freeaddrinfo(res);
	if (srv->listener == NULL) {
		cove_error_set_errno(err, saved_errno, "listen on %s:%d", address, opts->port);
		free(srv);
		return NULL;
	}
	evconnlistener_set_error_cb(srv->listener, accept_error_cb);
	if (opts->unix_path) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (strlen(opts->unix_path) >= sizeof(sun.sun_path)) {
			cove_error_set(err, COVE_INVALID_ARGUMENT, "Unix socket path too long (%zu bytes, at most %zu): %s",
				       strlen(opts->unix_path), sizeof(sun.sun_path) - 1, opts->unix_path);
			evconnlistener_free(srv->listener);
			free(srv);
			return NULL;
		}
		strcpy(sun.sun_path, opts->unix_path);
		unlink(opts->unix_path); /* a stale socket of an earlier run */
		srv->unix_listener = evconnlistener_new_bind(base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
							     -1, (struct sockaddr *)&sun, (int)sizeof(sun));
		if (srv->unix_listener == NULL) {
			cove_error_set_errno(err, errno, "listen on %s", opts->unix_path);
			evconnlistener_free(srv->listener);
			free(srv);
			return NULL;
		}
		chmod(opts->unix_path, 0600);
		evconnlistener_set_error_cb(srv->unix_listener, accept_error_cb);
		srv->unix_path = xstrdup(opts->unix_path);
	}
	if (getsockname(evconnlistener_get_fd(srv->listener), (struct sockaddr *)&ss, &sslen) == 0)
		srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							   : ((struct sockaddr_in *)&ss)->sin_port);

	nghttp2_session_callbacks_new(&srv->callbacks);
	nghttp2_session_callbacks_set_on_begin_headers_callback(srv->callbacks, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(srv->callbacks, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(srv->callbacks, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(srv->callbacks, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(srv->callbacks, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(srv->callbacks, on_stream_close);
	nghttp2_session_callbacks_set_on_begin_frame_callback(srv->callbacks, on_begin_frame);
	/* nghttp2's own flood limits keep their defaults (nghttp2_option_new): 1000 queued PING/SETTINGS
	 * acknowledgements, 32 settings a frame, RST_STREAM 1000 at once then 33 a second, 8 CONTINUATIONs. */
	nghttp2_option_new(&srv->session_options);
	srv->accept_retry_ev = evtimer_new(base, accept_retry_cb, srv);
	if (srv->callbacks == NULL || srv->session_options == NULL || srv->accept_retry_ev == NULL) {
		log_error("grpc: out of memory creating nghttp2 callbacks");
		abort();
	}
	log_debug("grpc: listening on %s:%d", address, srv->port);
	return srv;
}

int
cove_grpc_server_port(const struct cove_grpc_server *srv)
{
	return srv->port;
}

void
cove_grpc_server_free(struct cove_grpc_server *srv)
{
	if (srv == NULL)
		return;
	evconnlistener_free(srv->listener);
	if (srv->unix_listener) {
		evconnlistener_free(srv->unix_listener);
		unlink(srv->unix_path);
		free(srv->unix_path);
	}
	while (srv->extra)
		cove_grpc_listener_free(srv->extra);
	while (srv->conns)
		conn_free(srv->conns);
	nghttp2_session_callbacks_del(srv->callbacks);
	nghttp2_option_del(srv->session_options);
	event_free(srv->accept_retry_ev);
	free(srv);
}

const char *
cove_call_header(const struct cove_call *call, const char *name)
{
	return call_header(call, name);
}

const char *
cove_call_path(const struct cove_call *call)
{
	const char *path = call_header(call, ":path");
	return path ? path : "";
}

int64_t
cove_call_remaining_ms(const struct cove_call *call)
{
	int64_t left;

	if (call->deadline_us < 0)
		return -1;
	left = call->deadline_us - now_us();
	return left > 0 ? left / 1000 : 0;
}

static const char *
state_name(enum call_state state)
{
	switch (state) {
	case CALL_READING:
		return "reading";
	case CALL_ACTIVE:
		return "active";
	case CALL_FINISHED:
		return "finished";
	case CALL_CANCELLED:
		return "cancelled";
	}
	return "?";
}

void
cove_call_send(struct cove_call *call, const uint8_t *msg, size_t len)
{
	struct conn *conn = call->conn;
	uint8_t prefix[PREFIX_LEN];

	if (call->state != CALL_ACTIVE) {
		log_warn("grpc: send on a %s call (%s) ignored", state_name(call->state), cove_call_path(call));
		return;
	}
	if (len > UINT32_MAX) {
		log_error("grpc: %s: a %zu-byte message cannot be framed", cove_call_path(call), len);
		return;
	}
	if (conn->closing)
		return;
	if (call->out == NULL) {
		call->out = evbuffer_new();
		if (call->out == NULL) {
			log_error("grpc: out of memory creating a buffer");
			abort();
		}
	}
	prefix[0] = 0;
	prefix[1] = (uint8_t)(len >> 24);
	prefix[2] = (uint8_t)(len >> 16);
	prefix[3] = (uint8_t)(len >> 8);
	prefix[4] = (uint8_t)len;
	xevbuffer_add(call->out, prefix, sizeof(prefix));
	if (len > 0)
		xevbuffer_add(call->out, msg, len);
	if (!call->headers_sent) {
		nghttp2_nv nva[] = {make_nv(":status", "200"), make_nv("content-type", "application/grpc")};
		nghttp2_data_provider prd = {.source.ptr = call, .read_callback = data_read};
		int rv = nghttp2_submit_response(conn->session, call->stream_id, nva, 2, &prd);
		call->headers_sent = true;
		if (rv != 0)
			log_debug("grpc: %s: stream %d: submit response: %s", conn->peer, call->stream_id,
				  nghttp2_strerror(rv));
	} else {
		call_resume(call);
	}
	conn_flush(conn);
}

size_t
cove_call_pending_bytes(const struct cove_call *call)
{
	return call->out ? evbuffer_get_length(call->out) : 0;
}

void
cove_grpc_server_set_admit_hook(struct cove_grpc_server *srv, cove_grpc_admit_fn fn, void *ctx)
{
	srv->admit_hook = fn;
	srv->admit_hook_ctx = ctx;
}

void
cove_grpc_server_set_message_hook(struct cove_grpc_server *srv, cove_grpc_message_fn fn, void *ctx)
{
	srv->message_hook = fn;
	srv->message_hook_ctx = ctx;
}

void
cove_call_finish(struct cove_call *call, int code, const char *message)
{
	struct conn *conn = call->conn;

	if (call->state != CALL_ACTIVE) {
		log_warn("grpc: finish on a %s call (%s) ignored", state_name(call->state), cove_call_path(call));
		return;
	}
	call->state = CALL_FINISHED;
	call->cancel_fn = NULL;
	call_stop_deadline(call);
	if (conn->closing)
		return;
	call_end(call, code, message);
	/* May close the stream and free the call. */
	conn_flush(conn);
}

void
cove_call_on_cancel(struct cove_call *call, cove_call_cancel_fn fn, void *arg)
{
	if (call->state != CALL_ACTIVE && call->state != CALL_READING)
		return;
	call->cancel_fn = fn;
	call->cancel_arg = arg;
}

void
cove_call_set_data(struct cove_call *call, void *data)
{
	call->data = data;
}

void *
cove_call_get_data(const struct cove_call *call)
{
	return call->data;
}
