/* The gRPC front driven by an nghttp2 client in the same libevent loop: one thread, no sleeps, every
 * step pumps the loop until the client has seen what the step expects. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "grpc/server.h"
#include "util/alloc.h"
#include "util/log.h"

#define MAX_MSG 4096
#define MAX_PARKED 4096

/* --- the server side: a router with one behaviour per path --- */

static struct event_base *base;
static struct cove_grpc_server *srv;
static struct event *tick;

static int n_routed;
static char seen_path[128];
static char seen_meta[128];
static int64_t seen_remaining;
static size_t seen_n_messages;
static size_t seen_len;
static bool seen_msg_null;

static struct cove_call *parked[MAX_PARKED];
static int n_parked;    /* slots used; a cancelled slot goes NULL */
static int n_cancelled; /* cancel hooks run */

static void
on_cancel(struct cove_call *call, void *arg)
{
	struct cove_call **slot = arg;

	assert_ptr_equal(*slot, call);
	*slot = NULL;
	n_cancelled++;
}

static void
later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cove_call *call = arg;

	(void)fd;
	(void)what;
	cove_call_send(call, (const uint8_t *)"later", 5);
	cove_call_finish(call, COVE_OK, NULL);
}

static void
router(struct cove_call *call, const char *path, const uint8_t *msg, size_t len, size_t n_messages, void *ctx)
{
	const char *meta = cove_call_header(call, "x-meta");

	assert_ptr_equal(ctx, &n_routed);
	n_routed++;
	snprintf(seen_path, sizeof(seen_path), "%s", path);
	snprintf(seen_meta, sizeof(seen_meta), "%s", meta ? meta : "");
	seen_remaining = cove_call_remaining_ms(call);
	seen_n_messages = n_messages;
	seen_len = len;
	seen_msg_null = msg == NULL;
	assert_string_equal(cove_call_path(call), path);

	if (strcmp(path, "/t/Echo") == 0) {
		char *out = xasprintf("echo:%.*s", (int)len, (const char *)msg);
		cove_call_send(call, (const uint8_t *)out, strlen(out));
		free(out);
		cove_call_finish(call, COVE_OK, NULL);
	} else if (strcmp(path, "/t/Big") == 0) {
		cove_call_send(call, msg, len);
		cove_call_finish(call, COVE_OK, NULL);
	} else if (strcmp(path, "/t/Fail") == 0) {
		cove_call_finish(call, COVE_INVALID_ARGUMENT, "bad \xc3\xbc 100% \n");
	} else if (strcmp(path, "/t/Stream") == 0) {
		for (int i = 0; i < 3; i++) {
			char m[16];
			snprintf(m, sizeof(m), "m%d", i);
			cove_call_send(call, (const uint8_t *)m, strlen(m));
		}
		cove_call_finish(call, COVE_OK, NULL);
	} else if (strcmp(path, "/t/Later") == 0) {
		struct timeval tv = {0, 30 * 1000};
		event_base_once(base, -1, EV_TIMEOUT, later_cb, call, &tv);
	} else if (strcmp(path, "/t/Park") == 0) {
		assert_true(n_parked < MAX_PARKED);
		parked[n_parked] = call;
		cove_call_on_cancel(call, on_cancel, &parked[n_parked]);
		n_parked++;
	} else if (strcmp(path, "/t/Release") == 0) {
		/* Finish calls of another connection from this one's callback. */
		for (int i = 0; i < n_parked; i++) {
			if (parked[i]) {
				cove_call_send(call, (const uint8_t *)"x", 1); /* interleave with our own stream */
				cove_call_send(parked[i], (const uint8_t *)"released", 8);
				cove_call_finish(parked[i], COVE_OK, NULL);
				parked[i] = NULL;
			}
		}
		cove_call_finish(call, COVE_OK, "done");
	} else if (strcmp(path, "/t/Double") == 0) {
		cove_call_finish(call, COVE_OK, NULL);
		cove_call_finish(call, COVE_INTERNAL, "again"); /* ignored with a warning */
		cove_call_send(call, (const uint8_t *)"late", 4); /* ignored with a warning */
	} else {
		cove_call_finish(call, COVE_UNIMPLEMENTED, path);
	}
}

/* --- the client: nghttp2 over a bufferevent in the same loop --- */

struct cstream {
	struct cstream *next;
	int32_t id;
	char http_status[8];
	char content_type[64];
	int grpc_status; /* -1 until seen */
	char grpc_message[256];
	int header_frames;
	uint8_t *data;
	size_t len, cap;
	bool closed;
	uint32_t close_code;
	/* request body */
	uint8_t *body;
	size_t body_len, body_off;
};

struct client {
	struct bufferevent *bev;
	nghttp2_session *session;
	struct cstream *streams;
	bool eof;
};

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define PUMP_UNTIL(cond)                                                                                       \
	do {                                                                                                   \
		int64_t end_ = now_ms() + 10000;                                                               \
		while (!(cond)) {                                                                              \
			if (now_ms() > end_)                                                                   \
				fail_msg("timed out waiting for %s", #cond);                                   \
			event_base_loop(base, EVLOOP_ONCE);                                                    \
		}                                                                                              \
	} while (0)

static void
client_flush(struct client *c)
{
	for (;;) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->session, &data);
		assert_true(n >= 0);
		if (n == 0)
			break;
		bufferevent_write(c->bev, data, (size_t)n);
	}
}

static void
client_readcb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	ssize_t n = nghttp2_session_mem_recv(c->session, evbuffer_pullup(in, -1), len);

	assert_int_equal(n, (ssize_t)len);
	evbuffer_drain(in, len);
	client_flush(c);
}

static void
client_eventcb(struct bufferevent *bev, short events, void *arg)
{
	struct client *c = arg;

	(void)bev;
	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		c->eof = true;
}

static int
c_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct cstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

	(void)user_data;
	if (s && frame->hd.type == NGHTTP2_HEADERS)
		s->header_frames++;
	return 0;
}

static int
c_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
	    const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
	struct cstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

	(void)namelen;
	(void)valuelen;
	(void)flags;
	(void)user_data;
	if (s == NULL)
		return 0;
	if (strcmp((const char *)name, ":status") == 0)
		snprintf(s->http_status, sizeof(s->http_status), "%s", value);
	else if (strcmp((const char *)name, "content-type") == 0)
		snprintf(s->content_type, sizeof(s->content_type), "%s", value);
	else if (strcmp((const char *)name, "grpc-status") == 0)
		s->grpc_status = atoi((const char *)value);
	else if (strcmp((const char *)name, "grpc-message") == 0)
		snprintf(s->grpc_message, sizeof(s->grpc_message), "%s", value);
	return 0;
}

static int
c_on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
	  void *user_data)
{
	struct cstream *s = nghttp2_session_get_stream_user_data(session, stream_id);

	(void)flags;
	(void)user_data;
	if (s) {
		if (s->len + len > s->cap) {
			/* Geometric growth: 8 MiB in 4 KiB chunks must not be quadratic (ASan's realloc copies). */
			s->cap = (s->len + len) * 2;
			s->data = xrealloc(s->data, s->cap);
		}
		memcpy(s->data + s->len, data, len);
		s->len += len;
	}
	return 0;
}

static int
c_on_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
	struct cstream *s = nghttp2_session_get_stream_user_data(session, stream_id);

	(void)user_data;
	if (s) {
		s->closed = true;
		s->close_code = error_code;
	}
	return 0;
}

static ssize_t
c_body_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
	    nghttp2_data_source *source, void *user_data)
{
	struct cstream *s = source->ptr;
	size_t n = s->body_len - s->body_off;

	(void)session;
	(void)stream_id;
	(void)user_data;
	if (n > length)
		n = length;
	memcpy(buf, s->body + s->body_off, n);
	s->body_off += n;
	if (s->body_off == s->body_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int
connect_loopback(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(cove_grpc_server_port(srv))};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	evutil_make_socket_nonblocking(fd);
	return fd;
}

static struct client *
client_new(void)
{
	struct client *c = xcalloc(1, sizeof(*c));
	nghttp2_session_callbacks *cbs;

	c->bev = bufferevent_socket_new(base, connect_loopback(), BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, client_readcb, NULL, client_eventcb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, c_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, c_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_on_close);
	nghttp2_session_client_new(&c->session, cbs, c);
	nghttp2_session_callbacks_del(cbs);
	/* A client window as large as the server's, so big responses flow without many round trips. */
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16 * 1024 * 1024}};
	nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
	nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 64 * 1024 * 1024);
	client_flush(c);
	return c;
}

static void
client_free(struct client *c)
{
	while (c->streams) {
		struct cstream *s = c->streams;
		c->streams = s->next;
		free(s->data);
		free(s->body);
		free(s);
	}
	nghttp2_session_del(c->session);
	bufferevent_free(c->bev);
	free(c);
}

/* A gRPC length-prefixed message. */
static uint8_t *
frame(uint8_t flag, const void *msg, size_t len, size_t *out_len)
{
	uint8_t *f = xmalloc(len + 5);

	f[0] = flag;
	f[1] = (uint8_t)(len >> 24);
	f[2] = (uint8_t)(len >> 16);
	f[3] = (uint8_t)(len >> 8);
	f[4] = (uint8_t)len;
	if (len)
		memcpy(f + 5, msg, len);
	*out_len = len + 5;
	return f;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

/* Start a call; takes ownership of body (already framed, may be NULL for no DATA at all). */
static struct cstream *
client_call_full(struct client *c, const char *path, const char *ctype, const char *timeout, const char *meta,
		 uint8_t *body, size_t body_len)
{
	struct cstream *s = xcalloc(1, sizeof(*s));
	nghttp2_nv nva[8] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":path", path),
			     NV(":authority", "localhost"), NV("content-type", ctype), NV("te", "trailers")};
	size_t n = 6;
	nghttp2_data_provider prd = {.source.ptr = s, .read_callback = c_body_read};

	if (timeout)
		nva[n++] = (nghttp2_nv)NV("grpc-timeout", timeout);
	if (meta)
		nva[n++] = (nghttp2_nv)NV("x-meta", meta);
	s->grpc_status = -1;
	s->body = body;
	s->body_len = body_len;
	s->id = nghttp2_submit_request(c->session, NULL, nva, n, body ? &prd : NULL, s);
	assert_true(s->id > 0);
	s->next = c->streams;
	c->streams = s;
	client_flush(c);
	return s;
}

static struct cstream *
client_call(struct client *c, const char *path, const char *msg)
{
	size_t len;
	uint8_t *body = frame(0, msg, strlen(msg), &len);
	return client_call_full(c, path, "application/grpc", NULL, NULL, body, len);
}

/* The i-th response message of a stream, as a string (messages in tests are short text). */
static char *
response_message(const struct cstream *s, int index)
{
	size_t off = 0;

	for (int i = 0; off + 5 <= s->len; i++) {
		size_t len = (size_t)s->data[off + 1] << 24 | (size_t)s->data[off + 2] << 16 |
			     (size_t)s->data[off + 3] << 8 | s->data[off + 4];
		assert_int_equal(s->data[off], 0);
		assert_true(off + 5 + len <= s->len);
		if (i == index)
			return xstrndup((const char *)s->data + off + 5, len);
		off += 5 + len;
	}
	return NULL;
}

static size_t
response_count(const struct cstream *s)
{
	size_t off = 0, n = 0;

	while (off + 5 <= s->len) {
		off += 5 + ((size_t)s->data[off + 1] << 24 | (size_t)s->data[off + 2] << 16 |
			    (size_t)s->data[off + 3] << 8 | s->data[off + 4]);
		n++;
	}
	assert_int_equal(off, s->len);
	return n;
}

static void
assert_echo_ok(struct client *c, const char *msg)
{
	struct cstream *s = client_call(c, "/t/Echo", msg);
	char *want = xasprintf("echo:%s", msg);
	char *got;

	PUMP_UNTIL(s->closed);
	assert_string_equal(s->http_status, "200");
	assert_int_equal(s->grpc_status, COVE_OK);
	got = response_message(s, 0);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
	free(want);
}

/* --- fixture --- */

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static int
setup(void **state)
{
	struct cove_grpc_options opts = {.address = "127.0.0.1", .port = 0, .max_message_bytes = MAX_MSG};
	struct cove_error *err = NULL;
	struct timeval tv = {0, 5000};

	(void)state;
	if (getenv("COVE_TEST_DEBUG"))
		cove_log_min_level = COVE_LOG_DEBUG;
	base = event_base_new();
	srv = cove_grpc_server_new(base, &opts, router, &n_routed, &err);
	assert_null(err);
	assert_non_null(srv);
	assert_true(cove_grpc_server_port(srv) > 0);
	/* EVLOOP_ONCE must come back regularly so PUMP_UNTIL can time out. */
	tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick, &tv);
	n_routed = 0;
	n_parked = 0;
	n_cancelled = 0;
	memset(parked, 0, sizeof(parked));
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	cove_grpc_server_free(srv);
	srv = NULL;
	event_free(tick);
	event_base_free(base);
	return 0;
}

/* --- tests --- */

static void
test_unary(void **state)
{
	struct client *c = client_new();
	size_t len;
	uint8_t *body = frame(0, "abc", 3, &len);
	struct cstream *s = client_call_full(c, "/t/Echo", "application/grpc+proto", NULL, "hello", body, len);
	char *got;

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->close_code, NGHTTP2_NO_ERROR);
	assert_string_equal(s->http_status, "200");
	assert_string_equal(s->content_type, "application/grpc");
	assert_int_equal(s->header_frames, 2); /* headers, then trailers */
	assert_int_equal(s->grpc_status, COVE_OK);
	assert_string_equal(s->grpc_message, "");
	assert_int_equal(response_count(s), 1);
	got = response_message(s, 0);
	assert_string_equal(got, "echo:abc");
	free(got);
	assert_int_equal(n_routed, 1);
	assert_string_equal(seen_path, "/t/Echo");
	assert_string_equal(seen_meta, "hello");
	assert_int_equal(seen_remaining, -1);
	assert_int_equal(seen_n_messages, 1);
	assert_int_equal(seen_len, 3);
	client_free(c);
}

static void
test_trailers_only_error(void **state)
{
	struct client *c = client_new();
	struct cstream *s = client_call(c, "/t/Fail", "x");

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_string_equal(s->http_status, "200");
	assert_int_equal(s->header_frames, 1);
	assert_int_equal(s->len, 0);
	assert_int_equal(s->grpc_status, COVE_INVALID_ARGUMENT);
	assert_string_equal(s->grpc_message, "bad %C3%BC 100%25 %0A");
	client_free(c);
}

static void
test_server_streaming(void **state)
{
	struct client *c = client_new();
	struct cstream *s = client_call(c, "/t/Stream", "");

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_OK);
	assert_int_equal(response_count(s), 3);
	for (int i = 0; i < 3; i++) {
		char want[16], *got = response_message(s, i);
		snprintf(want, sizeof(want), "m%d", i);
		assert_string_equal(got, want);
		free(got);
	}
	/* The empty request message arrives as a non-NULL empty buffer. */
	assert_int_equal(seen_n_messages, 1);
	assert_int_equal(seen_len, 0);
	assert_false(seen_msg_null);
	client_free(c);
}

static void
test_finish_from_timer(void **state)
{
	struct client *c = client_new();
	struct cstream *s = client_call(c, "/t/Later", "");
	char *got;

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_OK);
	got = response_message(s, 0);
	assert_string_equal(got, "later");
	free(got);
	client_free(c);
}

static void
test_reset_runs_cancel_hook(void **state)
{
	struct client *c = client_new();
	struct cstream *s = client_call(c, "/t/Park", "");

	(void)state;
	PUMP_UNTIL(n_parked == 1);
	assert_int_equal(n_cancelled, 0);
	nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
	client_flush(c);
	PUMP_UNTIL(n_cancelled == 1);
	assert_null(parked[0]);
	/* The connection still serves. */
	assert_echo_ok(c, "after reset");
	client_free(c);
}

static void
test_deadline(void **state)
{
	struct client *c = client_new();
	size_t len;
	uint8_t *body = frame(0, "", 0, &len);
	struct cstream *s = client_call_full(c, "/t/Park", "application/grpc", "100m", NULL, body, len);
	int64_t start = now_ms();

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_true(now_ms() - start >= 90);
	assert_int_equal(s->grpc_status, COVE_DEADLINE_EXCEEDED);
	assert_int_equal(n_cancelled, 1);
	assert_true(seen_remaining > 0 && seen_remaining <= 100);
	assert_echo_ok(c, "after deadline");
	client_free(c);
}

static void
test_oversized_message(void **state)
{
	struct client *c = client_new();
	uint8_t *big = xcalloc(1, MAX_MSG + 100);
	size_t len;
	uint8_t *body = frame(0, big, MAX_MSG + 100, &len);
	struct cstream *s = client_call_full(c, "/t/Echo", "application/grpc", NULL, NULL, body, len);

	(void)state;
	free(big);
	PUMP_UNTIL(s->closed);
	assert_string_equal(s->http_status, "413");
	assert_int_equal(s->grpc_status, COVE_RESOURCE_EXHAUSTED);
	assert_int_equal(n_routed, 0);
	assert_echo_ok(c, "next");
	assert_int_equal(n_routed, 1);
	client_free(c);
}

static bool
raw_closed(int fd)
{
	char buf[4096];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);

	/* The server's SETTINGS may come first; read past it until EOF or reset. */
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void
test_bad_preface(void **state)
{
	static const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdefghijklmnop";
	int fd = connect_loopback();
	struct client *c;

	(void)state;
	assert_int_equal(write(fd, garbage, sizeof(garbage) - 1), (ssize_t)sizeof(garbage) - 1);
	PUMP_UNTIL(raw_closed(fd));
	close(fd);
	c = client_new();
	assert_echo_ok(c, "still serving");
	client_free(c);
}

static void
test_compressed_flag(void **state)
{
	struct client *c = client_new();
	size_t len;
	uint8_t *body = frame(1, "zz", 2, &len);
	struct cstream *s = client_call_full(c, "/t/Echo", "application/grpc", NULL, NULL, body, len);

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_UNIMPLEMENTED);
	assert_string_equal(s->grpc_message, "compression is not supported");
	assert_int_equal(n_routed, 0);
	client_free(c);
}

static void
test_truncated_message(void **state)
{
	struct client *c = client_new();
	size_t len;
	uint8_t *body = frame(0, "0123456789", 10, &len);
	struct cstream *s = client_call_full(c, "/t/Echo", "application/grpc", NULL, NULL, body, len - 4);

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_INTERNAL);
	assert_int_equal(n_routed, 0);
	assert_echo_ok(c, "after truncation");
	client_free(c);
}

static void
test_bad_content_type(void **state)
{
	struct client *c = client_new();
	size_t len;
	uint8_t *body = frame(0, "{}", 2, &len);
	struct cstream *s = client_call_full(c, "/t/Echo", "application/json", NULL, NULL, body, len);

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_string_equal(s->http_status, "415");
	assert_int_equal(s->grpc_status, COVE_INVALID_ARGUMENT);
	assert_int_equal(n_routed, 0);
	client_free(c);
}

static void
test_client_streaming_and_no_message(void **state)
{
	struct client *c = client_new();
	uint8_t body[64];
	size_t off = 0;
	struct cstream *s;

	(void)state;
	for (int i = 0; i < 3; i++) {
		size_t len;
		uint8_t *f = frame(0, i == 0 ? "first" : "other", 5, &len);
		memcpy(body + off, f, len);
		off += len;
		free(f);
	}
	s = client_call_full(c, "/t/Echo", "application/grpc", NULL, NULL, xmemdup(body, off), off);
	PUMP_UNTIL(s->closed);
	assert_int_equal(seen_n_messages, 3);
	assert_int_equal(seen_len, 5);
	char *got = response_message(s, 0);
	assert_string_equal(got, "echo:first");
	free(got);

	/* END_STREAM on HEADERS: no message at all. */
	s = client_call_full(c, "/t/Stream", "application/grpc", NULL, NULL, NULL, 0);
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_OK);
	assert_int_equal(seen_n_messages, 0);
	assert_int_equal(seen_len, 0);
	assert_true(seen_msg_null);
	client_free(c);
}

/* The message hook (client streaming): every message of a request of several, in order, as it arrives. */
static char hooked[8][16];
static size_t n_hooked;
static int hook_cancels;

static void
hook_cancelled(struct cove_call *call, void *arg)
{
	(void)call;
	(void)arg;
	hook_cancels++;
}

static void
message_hook(struct cove_call *call, const char *path, size_t index, const uint8_t *msg, size_t len, void *ctx)
{
	assert_ptr_equal(ctx, &n_hooked);
	assert_string_equal(path, cove_call_path(call));
	assert_int_equal(index, n_hooked);
	assert_true(n_hooked < 8 && len < sizeof(hooked[0]));
	memcpy(hooked[n_hooked], msg, len);
	hooked[n_hooked][len] = '\0';
	n_hooked++;
	/* A handler's state for the request: dropped through the cancel hook if the request is rejected. */
	cove_call_on_cancel(call, hook_cancelled, NULL);
}

static void
test_message_hook(void **state)
{
	struct client *c = client_new();
	const char *msgs[] = {"first", "", "third"};
	uint8_t body[64];
	size_t off = 0;
	struct cstream *s;

	(void)state;
	cove_grpc_server_set_message_hook(srv, message_hook, &n_hooked);
	n_hooked = 0;
	hook_cancels = 0;
	for (int i = 0; i < 3; i++) {
		size_t len;
		uint8_t *f = frame(0, msgs[i], strlen(msgs[i]), &len);
		memcpy(body + off, f, len);
		off += len;
		free(f);
	}
	s = client_call_full(c, "/t/Echo", "application/grpc", NULL, NULL, xmemdup(body, off), off);
	PUMP_UNTIL(s->closed);
	assert_int_equal(n_hooked, 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(hooked[i], msgs[i]);
	/* The router still answers, with message 0 and the count. */
	assert_int_equal(seen_n_messages, 3);
	char *got = response_message(s, 0);
	assert_string_equal(got, "echo:first");
	free(got);
	assert_int_equal(hook_cancels, 0);

	/* One message never reaches the hook. */
	n_hooked = 0;
	assert_echo_ok(c, "alone");
	assert_int_equal(n_hooked, 0);

	/* Two messages, then a truncated third: rejected, and the state the hook set up is released. */
	off = 0;
	for (int i = 0; i < 2; i++) {
		size_t len;
		uint8_t *f = frame(0, msgs[i], strlen(msgs[i]), &len);
		memcpy(body + off, f, len);
		off += len;
		free(f);
	}
	static const uint8_t truncated[] = {0, 0, 0, 0, 9, 'a', 'b', 'c'}; /* claims 9 bytes, carries 3 */
	memcpy(body + off, truncated, sizeof(truncated));
	off += sizeof(truncated);
	n_hooked = 0;
	s = client_call_full(c, "/t/Echo", "application/grpc", NULL, NULL, xmemdup(body, off), off);
	PUMP_UNTIL(s->closed);
	assert_int_equal(n_hooked, 2);
	assert_int_not_equal(s->grpc_status, COVE_OK);
	assert_int_equal(hook_cancels, 1);
	cove_grpc_server_set_message_hook(srv, NULL, NULL);
	client_free(c);
}

static void
test_connection_drop_cancels_parked(void **state)
{
	struct client *c = client_new();

	(void)state;
	for (int i = 0; i < 50; i++)
		client_call(c, "/t/Park", "");
	PUMP_UNTIL(n_parked == 50);
	client_free(c);
	PUMP_UNTIL(n_cancelled == 50);
}

static void
test_server_free_cancels_parked(void **state)
{
	struct client *c = client_new();

	(void)state;
	for (int i = 0; i < 3; i++)
		client_call(c, "/t/Park", "");
	PUMP_UNTIL(n_parked == 3);
	cove_grpc_server_free(srv);
	srv = NULL;
	assert_int_equal(n_cancelled, 3);
	PUMP_UNTIL(c->eof);
	client_free(c);
}

/* Thousands of parked calls on one connection, released from another connection's handler. */
static void
test_many_parked_released_elsewhere(void **state)
{
	enum { N = 2000 };
	struct client *a = client_new(), *b = client_new();
	struct cstream *r;
	int ok = 0;

	(void)state;
	for (int i = 0; i < N; i++)
		client_call(a, "/t/Park", "");
	PUMP_UNTIL(n_parked == N);
	r = client_call(b, "/t/Release", "");
	PUMP_UNTIL(r->closed);
	assert_int_equal(r->grpc_status, COVE_OK);
	assert_string_equal(r->grpc_message, "done");
	assert_int_equal(response_count(r), N);
	for (;;) {
		ok = 0;
		for (struct cstream *s = a->streams; s; s = s->next)
			ok += s->closed && s->grpc_status == COVE_OK;
		if (ok == N)
			break;
		event_base_loop(base, EVLOOP_ONCE);
	}
	assert_int_equal(n_cancelled, 0);
	client_free(a);
	client_free(b);
}

/* Finishing parked calls of the same connection from inside the router (nested in nghttp2 callbacks). */
static void
test_release_same_connection(void **state)
{
	struct client *c = client_new();
	struct cstream *p1 = client_call(c, "/t/Park", ""), *p2 = client_call(c, "/t/Park", "");
	struct cstream *r;

	(void)state;
	PUMP_UNTIL(n_parked == 2);
	r = client_call(c, "/t/Release", "");
	PUMP_UNTIL(r->closed && p1->closed && p2->closed);
	assert_int_equal(r->grpc_status, COVE_OK);
	assert_int_equal(response_count(r), 2);
	assert_int_equal(p1->grpc_status, COVE_OK);
	assert_int_equal(p2->grpc_status, COVE_OK);
	char *got = response_message(p1, 0);
	assert_string_equal(got, "released");
	free(got);
	assert_int_equal(n_cancelled, 0);
	client_free(c);
}

static struct cstream *
call_with_timeout(struct client *c, const char *timeout)
{
	size_t len;
	uint8_t *body = frame(0, "a", 1, &len);
	return client_call_full(c, "/t/Echo", "application/grpc", timeout, NULL, body, len);
}

static void
test_timeout_parsing(void **state)
{
	struct client *c = client_new();
	struct cstream *s;

	(void)state;
	/* Malformed: ignored, as if the client sent no deadline. */
	s = call_with_timeout(c, "12x");
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_OK);
	assert_int_equal(seen_remaining, -1);
	s = call_with_timeout(c, "123456789S");
	PUMP_UNTIL(s->closed);
	assert_int_equal(seen_remaining, -1);
	/* The largest legal value is clamped, not overflowed. */
	s = call_with_timeout(c, "99999999H");
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_OK);
	assert_true(seen_remaining > (int64_t)99 * 24 * 3600 * 1000);
	s = call_with_timeout(c, "2M");
	PUMP_UNTIL(s->closed);
	assert_true(seen_remaining > 119000 && seen_remaining <= 120000);
	s = call_with_timeout(c, "3000000000n");
	PUMP_UNTIL(s->closed);
	assert_int_equal(seen_remaining, -1); /* 10 digits: malformed */
	s = call_with_timeout(c, "30000000u");
	PUMP_UNTIL(s->closed);
	assert_true(seen_remaining > 29000 && seen_remaining <= 30000);
	client_free(c);
}

static void
test_double_finish_harmless(void **state)
{
	struct client *c = client_new();
	struct cstream *s = client_call(c, "/t/Double", "");

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_OK);
	assert_int_equal(s->len, 0);
	client_free(c);
}

static void
test_big_message_round_trip(void **state)
{
	enum { SIZE = 8 * 1024 * 1024 };
	struct cove_grpc_options opts = {.address = "127.0.0.1", .port = 0, .max_message_bytes = SIZE};
	struct cove_error *err = NULL;
	struct client *c;
	uint8_t *msg = xmalloc(SIZE);
	size_t len;
	uint8_t *body;
	struct cstream *s;

	(void)state;
	/* Swap in a server that takes 8 MiB messages. */
	cove_grpc_server_free(srv);
	srv = cove_grpc_server_new(base, &opts, router, &n_routed, &err);
	assert_non_null(srv);
	for (size_t i = 0; i < SIZE; i++)
		msg[i] = (uint8_t)(i * 7 + (i >> 13));
	c = client_new();
	body = frame(0, msg, SIZE, &len);
	s = client_call_full(c, "/t/Big", "application/grpc", NULL, NULL, body, len);
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_OK);
	assert_int_equal(s->len, SIZE + 5);
	assert_memory_equal(s->data + 5, msg, SIZE);
	free(msg);
	client_free(c);
}

static void
test_unknown_method_and_get(void **state)
{
	struct client *c = client_new();
	struct cstream *s = client_call(c, "/t/Nope", "");
	nghttp2_nv nva[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":path", "/"),
			    NV(":authority", "localhost")};
	struct cstream *g = xcalloc(1, sizeof(*g));

	(void)state;
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_UNIMPLEMENTED);
	assert_string_equal(s->grpc_message, "/t/Nope");
	g->grpc_status = -1;
	g->next = c->streams;
	c->streams = g;
	g->id = nghttp2_submit_request(c->session, NULL, nva, 4, NULL, g);
	client_flush(c);
	PUMP_UNTIL(g->closed);
	assert_string_equal(g->http_status, "405");
	assert_int_equal(g->grpc_status, COVE_UNIMPLEMENTED);
	client_free(c);
}

/* --- admission and limits --- */

static int n_admit_calls;
static char admit_meta[64];

static int
admit(struct cove_call *call, const char *path, void *ctx, struct cove_error **err)
{
	const char *meta = cove_call_header(call, "x-meta");

	assert_ptr_equal(ctx, &n_admit_calls);
	n_admit_calls++;
	snprintf(admit_meta, sizeof(admit_meta), "%s", meta ? meta : "");
	if (strcmp(path, "/t/Deny") == 0)
		return cove_error_set(err, COVE_UNAUTHENTICATED, "no token for %s", path);
	return 0;
}

static void
test_admission_refuses_at_headers(void **state)
{
	struct client *c = client_new();
	size_t len;
	uint8_t *body = frame(0, "abc", 3, &len);
	struct cstream *s;

	(void)state;
	cove_grpc_server_set_admit_hook(srv, admit, &n_admit_calls);
	n_admit_calls = 0;
	s = client_call_full(c, "/t/Deny", "application/grpc", NULL, "who", body, len);
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_UNAUTHENTICATED);
	assert_string_equal(s->grpc_message, "no token for /t/Deny");
	assert_string_equal(s->http_status, "200");
	assert_int_equal(n_admit_calls, 1);
	assert_string_equal(admit_meta, "who");
	assert_int_equal(n_routed, 0); /* the router never saw it */
	/* An admitted call goes on to the router as before. */
	assert_echo_ok(c, "admitted");
	assert_int_equal(n_admit_calls, 2);
	assert_int_equal(n_routed, 1);
	client_free(c);
}

static void
swap_server(const struct cove_grpc_options *opts)
{
	struct cove_error *err = NULL;

	cove_grpc_server_free(srv);
	srv = cove_grpc_server_new(base, opts, router, &n_routed, &err);
	assert_null(err);
	assert_non_null(srv);
}

static void
test_connection_buffer_budget(void **state)
{
	enum { BUDGET = 64 * 1024, BIG = 100 * 1024 };
	struct cove_grpc_options opts = {.address = "127.0.0.1", .max_message_bytes = 1024 * 1024,
					 .max_connection_buffer_bytes = BUDGET};
	uint8_t *msg = xcalloc(1, BIG);
	uint8_t *body;
	struct client *c;
	struct cstream *s;
	size_t len;

	(void)state;
	swap_server(&opts);
	c = client_new();
	body = frame(0, msg, BIG, &len);
	s = client_call_full(c, "/t/Big", "application/grpc", NULL, NULL, body, len);
	PUMP_UNTIL(s->closed);
	assert_int_equal(s->grpc_status, COVE_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(s->grpc_message, "connection"));
	assert_int_equal(n_routed, 0);
	/* What the refused call held was given back: smaller calls on the same connection go through. */
	for (int i = 0; i < 3; i++) {
		body = frame(0, msg, BUDGET / 2, &len);
		s = client_call_full(c, "/t/Big", "application/grpc", NULL, NULL, body, len);
		PUMP_UNTIL(s->closed);
		assert_int_equal(s->grpc_status, COVE_OK);
		assert_int_equal(s->len, BUDGET / 2 + 5);
	}
	free(msg);
	client_free(c);
}

static void
test_handshake_and_idle_timeouts(void **state)
{
	struct cove_grpc_options opts = {.address = "127.0.0.1", .max_message_bytes = MAX_MSG,
					 .handshake_timeout_ms = 100, .idle_timeout_ms = 300};
	int64_t start;
	struct client *c;
	int fd;

	(void)state;
	swap_server(&opts);
	/* Nothing sent: closed after the handshake timeout. */
	fd = connect_loopback();
	start = now_ms();
	PUMP_UNTIL(raw_closed(fd));
	assert_true(now_ms() - start >= 90);
	close(fd);
	/* A handshake and a call: open while streams come and go, closed once idle. */
	c = client_new();
	assert_echo_ok(c, "one");
	for (int i = 0; i < 4; i++) {
		int64_t until = now_ms() + 150;
		PUMP_UNTIL(now_ms() > until);
		assert_false(c->eof);
		assert_echo_ok(c, "again"); /* each call restarts the idle clock */
	}
	start = now_ms();
	PUMP_UNTIL(c->eof);
	assert_true(now_ms() - start >= 250);
	client_free(c);
}

static void
test_connection_cap_sheds_the_oldest_stranger(void **state)
{
	struct cove_grpc_options opts = {.address = "127.0.0.1", .max_message_bytes = MAX_MSG, .max_connections = 2};
	struct client *c;
	int stranger, refused, newcomer;
	int64_t until;

	(void)state;
	swap_server(&opts);
	c = client_new();
	assert_echo_ok(c, "trusted"); /* admitted: never shed */
	stranger = connect_loopback();
	until = now_ms() + 100;
	PUMP_UNTIL(now_ms() > until);
	/* At the cap, and the only stranger is too young to shed: the newcomer is closed at once. */
	refused = connect_loopback();
	PUMP_UNTIL(raw_closed(refused));
	close(refused);
	assert_echo_ok(c, "still here");
	/* Once the stranger is over a second old, it makes room for the next newcomer. */
	until = now_ms() + 1100;
	PUMP_UNTIL(now_ms() > until);
	newcomer = connect_loopback();
	PUMP_UNTIL(raw_closed(stranger));
	until = now_ms() + 100;
	PUMP_UNTIL(now_ms() > until);
	assert_false(raw_closed(newcomer));
	assert_echo_ok(c, "and still");
	close(stranger);
	close(newcomer);
	client_free(c);
}

static void
test_options_from_env(void **state)
{
	struct cove_grpc_options opts = {0};
	struct cove_error *err = NULL;

	(void)state;
	setenv("COVE_GRPC_IDLE_TIMEOUT", "2.5", 1);
	setenv("COVE_GRPC_MAX_CONNECTIONS", "7", 1);
	assert_int_equal(cove_grpc_options_from_env(&opts, &err), 0);
	assert_int_equal(opts.idle_timeout_ms, 2500);
	assert_int_equal(opts.max_connections, 7);
	assert_int_equal(opts.handshake_timeout_ms, 0); /* unset: the default */
	setenv("COVE_GRPC_MAX_BUFFER", "-1", 1);
	assert_int_equal(cove_grpc_options_from_env(&opts, &err), -1);
	assert_non_null(strstr(err->msg, "COVE_GRPC_MAX_BUFFER"));
	cove_error_free(err);
	err = NULL;
	setenv("COVE_GRPC_MAX_BUFFER", "12", 1);
	setenv("COVE_GRPC_HANDSHAKE_TIMEOUT", "soon", 1);
	assert_int_equal(cove_grpc_options_from_env(&opts, &err), -1);
	cove_error_free(err);
	unsetenv("COVE_GRPC_IDLE_TIMEOUT");
	unsetenv("COVE_GRPC_MAX_CONNECTIONS");
	unsetenv("COVE_GRPC_MAX_BUFFER");
	unsetenv("COVE_GRPC_HANDSHAKE_TIMEOUT");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trailers_only_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_streaming, setup, teardown),
		cmocka_unit_test_setup_teardown(test_finish_from_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_runs_cancel_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_preface, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressed_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_content_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_streaming_and_no_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_drop_cancels_parked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_free_cancels_parked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_parked_released_elsewhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_same_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_parsing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_double_finish_harmless, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_message_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_method_and_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_admission_refuses_at_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_buffer_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_and_idle_timeouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_cap_sheds_the_oldest_stranger, setup, teardown),
		cmocka_unit_test_setup_teardown(test_options_from_env, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
