/* Blob HTTP port: real requests over loopback sockets (signed as the API signs them, and not), its bounds and
 * timeouts, plus the CompleteMultipartUpload parser.
 *
 * The server runs in this thread's event loop; each request is sent by a short-lived client thread with
 * blocking sockets while the loop turns, so libevent is only ever touched from one thread. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "blob/blobstore.h"
#include "blob/http.h"
#include "blob/url_sign.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/hash.h"

struct fixture {
	char root[64];
	struct event_base *base;
	struct event *tick;
	struct cove_blobstore *bs;
	struct cove_blob_http *h;
};

struct resp {
	int status; /* 0: no status line (connection closed) */
	char *head;  /* status line + headers, NUL-terminated */
	uint8_t *body;
	size_t body_len;
};

struct client {
	int port;
	const uint8_t *req;
	size_t req_len;
	struct resp *resp;
	int half_close; /* shut the write side after sending: a client that gives up mid-request */
	atomic_int done;
};

static void
resp_free(struct resp *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* Value of a response header (case-insensitive name), copied into a static buffer; NULL if absent. */
static const char *
resp_header(const struct resp *r, const char *name)
{
	static char value[512];
	size_t n = strlen(name);
	for (const char *line = strstr(r->head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
		const char *l = line + 2;
		if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
			const char *v = l + n + 1;
			while (*v == ' ')
				v++;
			const char *end = strstr(v, "\r\n");
			size_t len = end ? (size_t)(end - v) : strlen(v);
			if (len >= sizeof(value))
				len = sizeof(value) - 1;
			memcpy(value, v, len);
			value[len] = '\0';
			return value;
		}
	}
	return NULL;
}

static void *
client_main(void *arg)
{
	struct client *c = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	size_t off = 0;
	while (off < c->req_len) {
		ssize_t n = send(fd, c->req + off, c->req_len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break; /* the server may answer (413) and close before reading everything */
		off += (size_t)n;
	}
	if (c->half_close)
		shutdown(fd, SHUT_WR);
	/* Read until the server closes (every request says Connection: close). */
	size_t cap = 1 << 16, len = 0;
	uint8_t *buf = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t n = recv(fd, buf + len, cap - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	const char *sep = strstr((char *)buf, "\r\n\r\n");
	if (sep && len >= 12 && memcmp(buf, "HTTP/1.1 ", 9) == 0) {
		size_t head_len = (size_t)(sep - (char *)buf);
		c->resp->status = atoi((char *)buf + 9);
		c->resp->head = xstrndup((char *)buf, head_len + 2);
		c->resp->body_len = len - head_len - 4;
		c->resp->body = xmemdup(sep + 4, c->resp->body_len + 1);
	}
	free(buf);
out:
	if (fd >= 0)
		close(fd);
	if (c->resp->head == NULL)
		c->resp->head = xstrdup("");
	atomic_store(&c->done, 1);
	return NULL;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Send raw bytes, run the loop until the client has its answer. */
static void
roundtrip_raw_ex(struct fixture *f, const void *req, size_t len, int half_close, struct resp *r)
{
	memset(r, 0, sizeof(*r));
	struct client c = {
		.port = cove_blob_http_port(f->h), .req = req, .req_len = len, .resp = r, .half_close = half_close};
	atomic_init(&c.done, 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, client_main, &c), 0);
	while (!atomic_load(&c.done))
		event_base_loop(f->base, EVLOOP_ONCE);
	pthread_join(t, NULL);
}

static void
roundtrip_raw(struct fixture *f, const void *req, size_t len, struct resp *r)
{
	roundtrip_raw_ex(f, req, len, 0, r);
}

/* The request target Cove would hand out for method on path (which may carry "?params"). Caller frees. */
static char *
signed_target(struct fixture *f, const char *method, const char *path)
{
	char *p = xstrdup(path);
	char *q = strchr(p, '?');
	if (q)
		*q++ = '\0';
	char *url = cove_blob_http_sign(f->h, method, p, q, 3600);
	size_t base = strlen(cove_blob_http_base_url(f->h));
	assert_true(strncmp(url, cove_blob_http_base_url(f->h), base) == 0);
	char *t = xstrdup(url + base);
	free(url);
	free(p);
	return t;
}

/* A request with the target as given (no signature added). */
static void
roundtrip_target(struct fixture *f, const char *method, const char *target, const char *headers, const void *body,
		 size_t body_len, struct resp *r)
{
	char *head = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
			       method, target, headers ? headers : "", body_len);
	size_t hl = strlen(head);
	uint8_t *req = xmalloc(hl + body_len + 1);
	memcpy(req, head, hl);
	if (body_len)
		memcpy(req + hl, body, body_len);
	roundtrip_raw(f, req, hl + body_len, r);
	free(req);
	free(head);
}

/* A request as the client sends it: to a URL Cove signed for this method. */
static void
roundtrip(struct fixture *f, const char *method, const char *path, const char *headers, const void *body,
	  size_t body_len, struct resp *r)
{
	char *t = signed_target(f, method, path);
	roundtrip_target(f, method, t, headers, body, body_len, r);
	free(t);
}

/* Raw request bytes with every "{M PATH}" replaced by "M <signed target>". */
static char *
sign_raw(struct fixture *f, const char *tmpl)
{
	char *outs = xstrdup("");
	const char *p = tmpl;
	for (;;) {
		const char *open = strchr(p, '{');
		if (open == NULL)
			break;
		const char *close = strchr(open, '}');
		assert_non_null(close);
		char *spec = xstrndup(open + 1, (size_t)(close - open - 1));
		char *sp = strchr(spec, ' ');
		assert_non_null(sp);
		*sp = '\0';
		char *t = signed_target(f, spec, sp + 1);
		char *next = xasprintf("%s%.*s%s %s", outs, (int)(open - p), p, spec, t);
		free(outs);
		outs = next;
		free(t);
		free(spec);
		p = close + 1;
	}
	char *done = xasprintf("%s%s", outs, p);
	free(outs);
	return done;
}

static int
setup(void **state)
{
	signal(SIGPIPE, SIG_IGN);
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/cove-blobhttp-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	struct cove_error *err = NULL;
	f->bs = cove_blobstore_open(f->root, &err);
	assert_non_null(f->bs);
	f->base = event_base_new();
	f->h = cove_blob_http_new(f->base, "127.0.0.1", 0, f->bs, &err);
	assert_null(err);
	assert_non_null(f->h);
	/* Wakes EVLOOP_ONCE regularly so roundtrip notices the client finished. */
	f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
	struct timeval tv = {0, 2000};
	event_add(f->tick, &tv);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	cove_blob_http_free(f->h);
	event_free(f->tick);
	event_base_free(f->base);
	cove_blobstore_free(f->bs);
	struct cove_error *err = NULL;
	cove_remove_tree(f->root, &err);
	cove_error_free(err);
	free(f);
	return 0;
}

static void
test_urls(void **state)
{
	struct fixture *f = *state;
	int port = cove_blob_http_port(f->h);
	assert_true(port > 0);
	char want[128];
	snprintf(want, sizeof(want), "http://127.0.0.1:%d", port);
	assert_string_equal(cove_blob_http_base_url(f->h), want);
	/* Each URL: the object's path, then the signature's expiry and MAC. */
	char *u = cove_blob_http_get_url(f->h, "bl-x1", 60);
	snprintf(want, sizeof(want), "http://127.0.0.1:%d/blob/bl-x1?exp=", port);
	assert_true(strncmp(u, want, strlen(want)) == 0);
	const char *sig = strstr(u, "&sig=");
	assert_non_null(sig);
	assert_int_equal(strlen(sig), 5 + 64);
	long long exp = atoll(u + strlen(want));
	assert_true(exp >= (long long)time(NULL) + 59 && exp <= (long long)time(NULL) + 61);
	free(u);
	u = cove_blob_http_part_url(f->h, "bl-x1", 12, 60);
	snprintf(want, sizeof(want), "http://127.0.0.1:%d/blob/bl-x1/part/12?exp=", port);
	assert_true(strncmp(u, want, strlen(want)) == 0);
	free(u);
	u = cove_blob_http_complete_url(f->h, "bl-x1", 60);
	snprintf(want, sizeof(want), "http://127.0.0.1:%d/blob/bl-x1/complete?exp=", port);
	assert_true(strncmp(u, want, strlen(want)) == 0);
	free(u);
	uint8_t hash[32];
	memset(hash, 0xab, sizeof(hash));
	u = cove_blob_http_block_slice_url(f->h, hash, 5, 7, 1, 60);
	snprintf(want, sizeof(want), "http://127.0.0.1:%d/block/%s?off=5&len=7&pad=1&exp=", port,
		 "abababababababababababababababababababababababababababababababab");
	assert_true(strncmp(u, want, strlen(want)) == 0);
	free(u);
	/* The same object, another method: another signature. */
	char *g = cove_blob_http_get_url(f->h, "bl-x1", 60), *p = cove_blob_http_put_url(f->h, "bl-x1", 60);
	assert_string_not_equal(strstr(g, "&sig="), strstr(p, "&sig="));
	free(g);
	free(p);
	assert_int_equal(cove_blob_url_ttl(0), 3600);
	assert_int_equal(cove_blob_url_ttl((uint64_t)10 << 30), 3600 + 10240);
	assert_int_equal(cove_blob_url_ttl(UINT64_MAX), 7 * 24 * 3600);

	/* A taken port is an error, not a crash. */
	struct cove_error *err = NULL;
	assert_null(cove_blob_http_new(f->base, "127.0.0.1", port, f->bs, &err));
	assert_non_null(err);
	cove_error_free(err);
	err = NULL;
	assert_null(cove_blob_http_new(f->base, "127.0.0.1", 70000, f->bs, &err));
	assert_non_null(err);
	cove_error_free(err);
}

static void
test_put_get(void **state)
{
	struct fixture *f = *state;
	struct resp r;
	size_t n = (8u << 20) + 3; /* several evbuffer chains and writev batches */
	uint8_t *data = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 13));
	char md5[33], etag[40];
	cove_md5_hex(data, n, md5);
	snprintf(etag, sizeof(etag), "\"%s\"", md5);

	roundtrip(f, "PUT", "/blob/bl-big", "Content-Type: application/octet-stream\r\n", data, n, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "ETag"), etag);
	resp_free(&r);

	roundtrip(f, "GET", "/blob/bl-big", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, n);
	assert_memory_equal(r.body, data, n);
	assert_string_equal(resp_header(&r, "Content-Type"), "application/octet-stream");
	resp_free(&r);

	roundtrip(f, "HEAD", "/blob/bl-big", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	assert_int_equal(strtoull(resp_header(&r, "Content-Length"), NULL, 10), n);
	resp_free(&r);

	/* Replace with an empty blob. */
	roundtrip(f, "PUT", "/blob/bl-big", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "ETag"), "\"d41d8cd98f00b204e9800998ecf8427e\"");
	resp_free(&r);
	roundtrip(f, "GET", "/blob/bl-big", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	assert_string_equal(resp_header(&r, "Content-Length"), "0");
	resp_free(&r);
	free(data);
}

static void
test_chunked_put(void **state)
{
	struct fixture *f = *state;
	struct resp r;
	char *req = sign_raw(f, "{PUT /blob/bl-chunked} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
				"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
	roundtrip_raw(f, req, strlen(req), &r);
	free(req);
	assert_int_equal(r.status, 200);
	char md5[33], etag[40];
	cove_md5_hex("hello world", 11, md5);
	snprintf(etag, sizeof(etag), "\"%s\"", md5);
	assert_string_equal(resp_header(&r, "ETag"), etag);
	resp_free(&r);
	roundtrip(f, "GET", "/blob/bl-chunked", NULL, NULL, 0, &r);
	assert_int_equal(r.body_len, 11);
	assert_memory_equal(r.body, "hello world", 11);
	resp_free(&r);
}

static void
test_content_md5(void **state)
{
	struct fixture *f = *state;
	struct resp r;
	/* base64(md5("abc")) */
	roundtrip(f, "PUT", "/blob/bl-md5", "Content-MD5: kAFQmDzST7DWlj99KOF/cg==\r\n", "abc", 3, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	roundtrip(f, "PUT", "/blob/bl-md5", "Content-MD5: kAFQmDzST7DWlj99KOF/cg==\r\n", "abd", 3, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr((char *)r.body, "BadDigest"));
	assert_non_null(strstr((char *)r.body, "The Content-MD5 you specified did not match what we received."));
	resp_free(&r);
	roundtrip(f, "PUT", "/blob/bl-md5", "Content-MD5: not base64 at all!!!!!!!==\r\n", "abd", 3, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr((char *)r.body, "InvalidDigest"));
	resp_free(&r);
	roundtrip(f, "PUT", "/blob/bl-md5", "Content-MD5: kAFQmDzST7DWlj99KOF/cg=\r\n", "abc", 3, &r);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	/* The blob still holds the first upload. */
	roundtrip(f, "GET", "/blob/bl-md5", NULL, NULL, 0, &r);
	assert_int_equal(r.body_len, 3);
	assert_memory_equal(r.body, "abc", 3);
	resp_free(&r);
}

static void
expect_range(struct fixture *f, const char *range, int status, const char *body, const char *content_range)
{
	struct resp r;
	char *h = xasprintf("Range: %s\r\n", range);
	roundtrip(f, "GET", "/blob/bl-range", h, NULL, 0, &r);
	free(h);
	assert_int_equal(r.status, status);
	if (body) {
		assert_int_equal(r.body_len, strlen(body));
		assert_memory_equal(r.body, body, r.body_len);
	}
	const char *cr = resp_header(&r, "Content-Range");
	if (content_range)
		assert_string_equal(cr, content_range);
	else
		assert_null(cr);
	resp_free(&r);
}

static void
test_range(void **state)
{
	struct fixture *f = *state;
	struct resp r;
	roundtrip(f, "PUT", "/blob/bl-range", NULL, "0123456789", 10, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	expect_range(f, "bytes=0-0", 206, "0", "bytes 0-0/10");
	expect_range(f, "bytes=2-4", 206, "234", "bytes 2-4/10");
	expect_range(f, "bytes=7-", 206, "789", "bytes 7-9/10");
	expect_range(f, "bytes=5-100", 206, "56789", "bytes 5-9/10");
	expect_range(f, "bytes=-3", 206, "789", "bytes 7-9/10");
	expect_range(f, "bytes=-30", 206, "0123456789", "bytes 0-9/10");
	expect_range(f, "bytes=10-", 416, NULL, "bytes */10");
	expect_range(f, "bytes=-0", 416, NULL, "bytes */10");
	/* Ignored forms: the whole blob. */
	expect_range(f, "bytes=4-2", 200, "0123456789", NULL);
	expect_range(f, "bytes=0-1,4-5", 200, "0123456789", NULL);
	expect_range(f, "items=0-1", 200, "0123456789", NULL);
	expect_range(f, "bytes=a-b", 200, "0123456789", NULL);
	expect_range(f, "bytes=99999999999999999999999-", 200, "0123456789", NULL);
	expect_range(f, "bytes=", 200, "0123456789", NULL);
}

static void
expect_status(struct fixture *f, const char *method, const char *path, int status, const char *code)
{
	struct resp r;
	roundtrip(f, method, path, NULL, "x", 1, &r);
	assert_int_equal(r.status, status);
	if (code && strcmp(method, "HEAD") != 0)
		assert_non_null(strstr((char *)r.body, code));
	resp_free(&r);
}

static void
test_errors(void **state)
{
	struct fixture *f = *state;
	expect_status(f, "GET", "/blob/bl-missing", 404, "NoSuchKey");
	expect_status(f, "HEAD", "/blob/bl-missing", 404, NULL);
	expect_status(f, "GET", "/blob/bl-a.b", 400, "InvalidArgument");
	expect_status(f, "GET", "/blob/..%2F..%2Fetc%2Fpasswd", 400, "InvalidArgument");
	expect_status(f, "GET", "/blob/bl-%2e%2e", 400, "InvalidArgument");
	expect_status(f, "PUT", "/blob/bl-../../x", 400, "InvalidArgument");
	expect_status(f, "GET", "/blob/bl-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 400,
		      "InvalidArgument");
	expect_status(f, "GET", "/", 404, "NoSuchKey");
	expect_status(f, "GET", "/blob", 404, "NoSuchKey");
	expect_status(f, "GET", "/blob/", 404, "NoSuchKey");
	expect_status(f, "GET", "/blob/bl-x/other", 404, "NoSuchKey");
	expect_status(f, "GET", "/blob/bl-x/", 404, "NoSuchKey");
	expect_status(f, "PUT", "/blob/bl-x/part/0", 400, "InvalidArgument");
	expect_status(f, "PUT", "/blob/bl-x/part/10001", 400, "InvalidArgument");
	expect_status(f, "PUT", "/blob/bl-x/part/-1", 400, "InvalidArgument");
	expect_status(f, "PUT", "/blob/bl-x/part/1a", 400, "InvalidArgument");
	expect_status(f, "PUT", "/blob/bl-x/part/", 400, "InvalidArgument");
	expect_status(f, "PUT", "/blob/bl-x/part/99999999999999999999999", 400, "InvalidArgument");
	expect_status(f, "POST", "/blob/bl-x/complete/", 404, "NoSuchKey");

	struct resp r;
	roundtrip(f, "DELETE", "/blob/bl-x", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(resp_header(&r, "Allow"), "GET, HEAD, PUT");
	resp_free(&r);
	roundtrip(f, "GET", "/blob/bl-x/complete", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(resp_header(&r, "Allow"), "POST");
	resp_free(&r);
	roundtrip(f, "GET", "/blob/bl-x/part/1", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(resp_header(&r, "Allow"), "PUT");
	resp_free(&r);
	expect_status(f, "POST", "/blob/bl-x", 405, "MethodNotAllowed");
	expect_status(f, "PATCH", "/blob/bl-x", 405, "MethodNotAllowed");
	expect_status(f, "OPTIONS", "/blob/bl-x", 405, "MethodNotAllowed");

	/* A query string does not change the route. */
	roundtrip(f, "PUT", "/blob/bl-q?x-id=PutObject", NULL, "q", 1, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	roundtrip(f, "GET", "/blob/bl-q?a=b", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 1);
	resp_free(&r);
}

static void
test_body_limit(void **state)
{
	struct fixture *f = *state;
	cove_blob_http_set_max_body(f->h, 1024);
	struct resp r;
	uint8_t big[4096] = {0};
	roundtrip(f, "PUT", "/blob/bl-limit", NULL, big, sizeof(big), &r);
	assert_int_equal(r.status, 413);
	resp_free(&r);
	char *chunked = sign_raw(f, "{PUT /blob/bl-limit} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
				    "Transfer-Encoding: chunked\r\n\r\n800\r\n");
	size_t cl = strlen(chunked);
	uint8_t *req = xmalloc(cl + 2048 + 16);
	memcpy(req, chunked, cl);
	memset(req + cl, 'a', 2048);
	memcpy(req + cl + 2048, "\r\n0\r\n\r\n", 7);
	roundtrip_raw(f, req, cl + 2048 + 7, &r);
	free(chunked);
	assert_true(r.status == 413 || r.status == 0);
	resp_free(&r);
	free(req);
	roundtrip(f, "PUT", "/blob/bl-limit", NULL, big, 1000, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	cove_blob_http_set_max_body(f->h, COVE_BLOB_HTTP_MAX_BODY);
	assert_true(cove_blobstore_has_blob(f->bs, "bl-limit"));
}

static char *
completion_xml(const int *numbers, char (*etags)[33], size_t n)
{
	/* Exactly what modal's perform_multipart_upload sends. */
	size_t cap = 64 + n * 96, len = 0;
	char *s = xmalloc(cap);
	len += (size_t)snprintf(s + len, cap - len, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len,
					"\n<Part>\n<PartNumber>%d</PartNumber>\n<ETag>\"%s\"</ETag>\n</Part>", numbers[i],
					etags[i]);
	snprintf(s + len, cap - len, "\n</CompleteMultipartUpload>");
	return s;
}

static void
test_multipart(void **state)
{
	struct fixture *f = *state;
	struct resp r;
	const char *chunks[3] = {"first part, ", "second, ", "third"};
	char etags[3][33];
	uint8_t raw[3][16];
	/* Out of order, and part 2 retried. */
	roundtrip(f, "PUT", "/blob/bl-mp/part/2", NULL, "garbage", 7, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	for (int i = 2; i >= 0; i--) {
		char path[64];
		snprintf(path, sizeof(path), "/blob/bl-mp/part/%d", i + 1);
		roundtrip(f, "PUT", path, NULL, chunks[i], strlen(chunks[i]), &r);
		assert_int_equal(r.status, 200);
		cove_md5(chunks[i], strlen(chunks[i]), raw[i]);
		cove_hex(raw[i], 16, etags[i]);
		char want[40];
		snprintf(want, sizeof(want), "\"%s\"", etags[i]);
		assert_string_equal(resp_header(&r, "ETag"), want);
		resp_free(&r);
	}
	/* Not a blob before completion. */
	roundtrip(f, "GET", "/blob/bl-mp", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 404);
	resp_free(&r);

	/* A wrong ETag is refused and changes nothing. */
	int numbers[3] = {1, 2, 3};
	char bad_etags[3][33];
	memcpy(bad_etags, etags, sizeof(bad_etags));
	bad_etags[1][0] = bad_etags[1][0] == '0' ? '1' : '0';
	char *xml = completion_xml(numbers, bad_etags, 3);
	roundtrip(f, "POST", "/blob/bl-mp/complete", NULL, xml, strlen(xml), &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr((char *)r.body, "InvalidPart"));
	resp_free(&r);
	free(xml);

	xml = completion_xml(numbers, etags, 3);
	roundtrip(f, "POST", "/blob/bl-mp/complete", NULL, xml, strlen(xml), &r);
	assert_int_equal(r.status, 200);
	uint8_t cat[48];
	memcpy(cat, raw, sizeof(cat));
	char hex[33], want[48];
	cove_md5_hex(cat, sizeof(cat), hex);
	snprintf(want, sizeof(want), "%s-3", hex);
	assert_non_null(strstr((char *)r.body, want));
	resp_free(&r);

	roundtrip(f, "GET", "/blob/bl-mp", NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, strlen("first part, second, third"));
	assert_memory_equal(r.body, "first part, second, third", r.body_len);
	resp_free(&r);

	/* Completing twice: the upload is gone. */
	roundtrip(f, "POST", "/blob/bl-mp/complete", NULL, xml, strlen(xml), &r);
	assert_int_equal(r.status, 404);
	assert_non_null(strstr((char *)r.body, "NoSuchUpload"));
	resp_free(&r);
	free(xml);

	/* Malformed completion bodies. */
	roundtrip(f, "PUT", "/blob/bl-mp2/part/1", NULL, "x", 1, &r);
	resp_free(&r);
	const char *bad[] = {"", "<CompleteMultipartUpload/>", "<CompleteMultipartUpload></CompleteMultipartUpload>",
			     "not xml",
			     "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		roundtrip(f, "POST", "/blob/bl-mp2/complete", NULL, bad[i], strlen(bad[i]), &r);
		assert_int_equal(r.status, 400);
		assert_non_null(strstr((char *)r.body, "MalformedXML"));
		resp_free(&r);
	}
	/* Oversized completion body. */
	size_t big = (4u << 20) + 1;
	char *huge = xmalloc(big);
	memset(huge, ' ', big);
	roundtrip(f, "POST", "/blob/bl-mp2/complete", NULL, huge, big, &r);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	free(huge);
}

static void
test_garbage(void **state)
{
	struct fixture *f = *state;
	/* Heads that never end (blank lines only) wait out the head timeout. */
	cove_blob_http_set_timeouts(f->h, 0.5, 0.5, 0.5);
	const char *reqs[] = {
		"GARBAGE\r\n\r\n",
		"\r\n\r\n",
		"GET\r\n\r\n",
		"GET /blob/bl-x HTTP/9.9\r\n\r\n",
		"GET /blob/bl-x HTTP/1.1\r\nContent-Length: -5\r\nConnection: close\r\n\r\n",
		"PUT /blob/bl-x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\nConnection: close\r\n\r\n",
		"PUT /blob/bl-x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
		"PUT /blob/bl-x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffffff\r\n",
		"GET http://evil/blob/bl-x HTTP/1.1\r\nConnection: close\r\n\r\n",
		"GET blob/bl-x HTTP/1.1\r\nConnection: close\r\n\r\n",
		"GET * HTTP/1.1\r\nConnection: close\r\n\r\n",
		"BREW /blob/bl-x HTTP/1.1\r\nConnection: close\r\n\r\n",
		"PUT /blob/bl-x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
		"GET /blob/bl-x\x00zz HTTP/1.1\r\nConnection: close\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		struct resp r;
		size_t len = strlen(reqs[i]);
		if (i == 13)
			len = sizeof("GET /blob/bl-x\x00zz HTTP/1.1\r\nConnection: close\r\n\r\n") - 1;
		roundtrip_raw(f, reqs[i], len, &r);
		assert_true(r.status == 0 || (r.status >= 100 && r.status < 600));
		resp_free(&r);
	}
	/* Clients that give up mid-request: nothing is answered or stored. */
	const char *cut[] = {
		"{PUT /blob/bl-cut} HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
		"{PUT /blob/bl-cut} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		"{PUT /blob/bl-cut} HTTP/1.1\r\nContent-Le",
	};
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		struct resp r;
		char *req = sign_raw(f, cut[i]);
		roundtrip_raw_ex(f, req, strlen(req), 1, &r);
		resp_free(&r);
		free(req);
	}
	assert_false(cove_blobstore_has_blob(f->bs, "bl-cut"));
	/* Headers past the limit. */
	size_t n = 100 << 10;
	char *req = xmalloc(n + 64);
	int hl = snprintf(req, 64, "GET /blob/bl-x HTTP/1.1\r\nX-Big: ");
	memset(req + hl, 'a', n);
	memcpy(req + hl + n, "\r\n\r\n", 4);
	struct resp r;
	roundtrip_raw(f, req, (size_t)hl + n + 4, &r);
	assert_true(r.status == 0 || r.status == 400 || r.status == 413 || r.status == 431);
	resp_free(&r);
	free(req);
	/* Random bytes. */
	uint8_t junk[4096];
	unsigned seed = 42;
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < sizeof(junk); i++) {
			seed = seed * 1103515245u + 12345u;
			junk[i] = (uint8_t)(seed >> 16);
		}
		roundtrip_raw(f, junk, sizeof(junk), &r);
		resp_free(&r);
	}
	/* Still serving. */
	roundtrip(f, "PUT", "/blob/bl-alive", NULL, "ok", 2, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
}

static void
test_keepalive(void **state)
{
	struct fixture *f = *state;
	/* Two requests on one connection; the second closes it. */
	char *req = sign_raw(f, "{PUT /blob/bl-ka} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
				"{GET /blob/bl-ka} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	struct resp r;
	roundtrip_raw(f, req, strlen(req), &r);
	free(req);
	assert_int_equal(r.status, 200);
	/* The body holds the second response, with the blob. */
	assert_non_null(r.body);
	assert_non_null(strstr((char *)r.body, "HTTP/1.1 200"));
	assert_int_equal(memcmp(r.body + r.body_len - 2, "hi", 2), 0);
	resp_free(&r);
}

/* A full disk answers 503 (the client sleeps and retries), in a child with a private 1 MiB tmpfs. */
static void
test_disk_full(void **state)
{
	(void)state;
	char root[] = "/tmp/cove-blobhttp-full-XXXXXX";
	assert_non_null(mkdtemp(root));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", root, "tmpfs", 0, "size=1m") < 0)
			_exit(77);
		struct fixture f = {0};
		struct cove_error *err = NULL;
		f.bs = cove_blobstore_open(root, &err);
		f.base = event_base_new();
		f.h = cove_blob_http_new(f.base, "127.0.0.1", 0, f.bs, &err);
		if (f.h == NULL)
			_exit(2);
		f.tick = event_new(f.base, -1, EV_PERSIST, tick_cb, NULL);
		struct timeval tv = {0, 2000};
		event_add(f.tick, &tv);
		size_t n = 2u << 20;
		uint8_t *big = xcalloc(1, n);
		struct resp r;
		roundtrip(&f, "PUT", "/blob/bl-full", NULL, big, n, &r);
		int ok = r.status == 503 && strstr((char *)r.body, "ServiceUnavailable") != NULL;
		resp_free(&r);
		roundtrip(&f, "PUT", "/blob/bl-small", NULL, "ok", 2, &r);
		ok = ok && r.status == 200;
		resp_free(&r);
		free(big);
		_exit(ok ? 0 : 1);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	rmdir(root);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int64_t fake_now;

static int64_t
fake_clock(void)
{
	return fake_now;
}

/* Requests Cove did not sign: 403 before any body is read, nothing stored. */
static void
test_unsigned(void **state)
{
	struct fixture *f = *state;
	struct resp r;
	roundtrip(f, "PUT", "/blob/bl-secret", NULL, "pickle", 6, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	static const char hex[] = "/block/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
	roundtrip(f, "PUT", hex, NULL, "hello", 5, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	const char *targets[] = {"/blob/bl-secret", "/blob/bl-secret?exp=99999999999", "/blob/bl-secret?sig=00",
				 "/blob/bl-new", "/blob/bl-new/part/1", "/blob/bl-new/complete", hex, "/", "/nothing"};
	const char *methods[] = {"GET", "HEAD", "PUT", "POST", "DELETE"};
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
			roundtrip_target(f, methods[m], targets[i], NULL, "evil", 4, &r);
			assert_int_equal(r.status, 403);
			if (strcmp(methods[m], "HEAD") != 0)
				assert_non_null(strstr((char *)r.body, "AccessDenied"));
			resp_free(&r);
		}
	}
	/* Unchanged, and nothing else appeared. */
	uint8_t *data = NULL;
	size_t len = 0;
	struct cove_error *err = NULL;
	assert_int_equal(cove_blobstore_read_blob(f->bs, "bl-secret", &data, &len, &err), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(data, "pickle", 6);
	free(data);
	assert_false(cove_blobstore_has_blob(f->bs, "bl-new"));

	/* A huge declared body is refused at its head: the answer comes though the client never sends it. */
	const char big[] = "PUT /blob/bl-new HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nsome bytes";
	roundtrip_raw(f, big, sizeof(big) - 1, &r);
	assert_int_equal(r.status, 403);
	assert_non_null(strstr(r.head, "Connection: close"));
	resp_free(&r);
	/* So is a body that would be too large even when signed. */
	char *t = signed_target(f, "PUT", "/blob/bl-new");
	char *req = xasprintf("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\nsome", t);
	roundtrip_raw(f, req, strlen(req), &r);
	assert_int_equal(r.status, 413);
	resp_free(&r);
	free(req);
	free(t);
	/* Expect: 100-continue is answered with the refusal, not with 100. */
	const char expect[] = "PUT /blob/bl-new HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
	roundtrip_raw(f, expect, sizeof(expect) - 1, &r);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	assert_false(cove_blobstore_has_blob(f->bs, "bl-new"));
}

/* Flip one character of s at position i (to another character of the same class). */
static char *
tamper(const char *s, size_t i)
{
	char *t = xstrdup(s);
	t[i] = t[i] == '0' ? '1' : t[i] == 'a' ? 'b' : t[i] == '1' ? '2' : (char)(t[i] ^ 1);
	return t;
}

/* Each part of what is signed matters: the MAC, the expiry, the object, the method, the parameters. */
static void
test_signature(void **state)
{
	struct fixture *f = *state;
	struct resp r;
	roundtrip(f, "PUT", "/blob/bl-one", NULL, "one", 3, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	roundtrip(f, "PUT", "/blob/bl-two", NULL, "two", 3, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	char *get = signed_target(f, "GET", "/blob/bl-one");
	roundtrip_target(f, "GET", get, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "one", 3);
	resp_free(&r);
	/* A GET URL serves HEAD too (a GET without its body). */
	roundtrip_target(f, "HEAD", get, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "Content-Length"), "3");
	resp_free(&r);
	/* ... but not PUT: a reader cannot overwrite what it may read. */
	roundtrip_target(f, "PUT", get, NULL, "bad", 3, &r);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	char *put = signed_target(f, "PUT", "/blob/bl-one");
	roundtrip_target(f, "GET", put, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	/* Every character of the signature and the expiry counts. */
	const char *sig = strstr(get, "&sig=") + 5;
	for (size_t i = (size_t)(sig - get); i < strlen(get); i += 7) {
		char *t = tamper(get, i);
		roundtrip_target(f, "GET", t, NULL, NULL, 0, &r);
		assert_int_equal(r.status, 403);
		resp_free(&r);
		free(t);
	}
	size_t exp_at = (size_t)(strstr(get, "exp=") - get) + 4;
	char *t = tamper(get, exp_at + 3);
	roundtrip_target(f, "GET", t, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 403);
	assert_non_null(strstr((char *)r.body, "does not match"));
	resp_free(&r);
	free(t);
	/* Another object with this signature. */
	char *other = xstrdup(get);
	memcpy(strstr(other, "bl-one"), "bl-two", 6);
	roundtrip_target(f, "GET", other, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	free(other);
	/* Parameters added, removed or moved. */
	char *extra = xasprintf("%s&x=1", get);
	roundtrip_target(f, "GET", extra, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	free(extra);
	char *noexp = xstrdup(get);
	char *e = strstr(noexp, "exp=");
	memmove(e, strchr(e, '&') + 1, strlen(strchr(e, '&') + 1) + 1);
	roundtrip_target(f, "GET", noexp, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	free(noexp);
	/* A block slice's off/len/pad are signed with it. */
	static const char hex[] = "/block/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
	roundtrip(f, "PUT", hex, NULL, "hello", 5, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	char *slice_path = xasprintf("%s?off=1&len=3", hex);
	char *slice = signed_target(f, "GET", slice_path);
	roundtrip_target(f, "GET", slice, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 3);
	assert_memory_equal(r.body, "ell", 3);
	resp_free(&r);
	char *wider = xstrdup(slice);
	*strstr(wider, "len=3") = 'l';
	strstr(wider, "len=3")[4] = '4';
	roundtrip_target(f, "GET", wider, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	free(wider);
	free(slice);
	free(slice_path);
	/* Expiry: valid up to its second, refused after it. */
	const char *ex = strstr(get, "exp=") + 4;
	fake_now = atoll(ex);
	cove_blob_http_set_clock(f->h, fake_clock);
	roundtrip_target(f, "GET", get, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	fake_now++;
	roundtrip_target(f, "GET", get, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 403);
	assert_non_null(strstr((char *)r.body, "expired"));
	resp_free(&r);
	cove_blob_http_set_clock(f->h, NULL);
	free(get);
	free(put);
}

/* A client that connects, sends `data` (may be empty), then waits: how long until the server closes. */
struct lurker {
	int port;
	const char *data;
	double closed_after;
	char got[512];
	atomic_int done;
};

static double
mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
lurker_main(void *arg)
{
	struct lurker *l = arg;
	double t0 = mono();
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)l->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		if (l->data[0])
			send(fd, l->data, strlen(l->data), MSG_NOSIGNAL);
		size_t n = 0;
		for (;;) {
			ssize_t k = recv(fd, l->got + n, sizeof(l->got) - 1 - n, 0);
			if (k <= 0)
				break;
			n += (size_t)k;
			if (n >= sizeof(l->got) - 1)
				break;
		}
		l->got[n] = '\0';
	}
	if (fd >= 0)
		close(fd);
	l->closed_after = mono() - t0;
	atomic_store(&l->done, 1);
	return NULL;
}

static void
lurk(struct fixture *f, const char *data, struct lurker *l)
{
	memset(l, 0, sizeof(*l));
	l->port = cove_blob_http_port(f->h);
	l->data = data;
	atomic_init(&l->done, 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, lurker_main, l), 0);
	double t0 = mono();
	while (!atomic_load(&l->done) && mono() - t0 < 20)
		event_base_loop(f->base, EVLOOP_ONCE);
	assert_true(atomic_load(&l->done));
	pthread_join(t, NULL);
}

static void
test_timeouts(void **state)
{
	struct fixture *f = *state;
	cove_blob_http_set_timeouts(f->h, 0.5, 0.8, 0.6);
	struct lurker l;
	/* Idle: closed after the idle timeout, with nothing said. */
	lurk(f, "", &l);
	assert_true(l.closed_after > 0.7 && l.closed_after < 3.5);
	assert_string_equal(l.got, "");
	/* A head that never ends: 408 after the head timeout. */
	lurk(f, "GET /blob/bl-x HTTP/1.1\r\nHost: x\r\nX-Slow: ", &l);
	assert_true(l.closed_after > 0.4 && l.closed_after < 3.5);
	assert_true(strncmp(l.got, "HTTP/1.1 408", 12) == 0);
	/* A signed upload that stalls: closed, nothing stored. */
	char *req = sign_raw(f, "{PUT /blob/bl-stall} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes.");
	lurk(f, req, &l);
	free(req);
	assert_true(l.closed_after > 0.5 && l.closed_after < 3.5);
	assert_false(cove_blobstore_has_blob(f->bs, "bl-stall"));
	/* A keep-alive connection is served, then closed when idle. */
	req = sign_raw(f, "{PUT /blob/bl-ka2} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok");
	lurk(f, req, &l);
	free(req);
	assert_true(strncmp(l.got, "HTTP/1.1 200", 12) == 0);
	assert_true(l.closed_after > 0.7 && l.closed_after < 3.5);
	assert_true(cove_blobstore_has_blob(f->bs, "bl-ka2"));
	assert_int_equal(cove_blob_http_conns(f->h), 0);
}

/* Connections past the cap are closed at once; those within it are served. */
static void
test_max_conns(void **state)
{
	struct fixture *f = *state;
	cove_blob_http_set_max_conns(f->h, 2);
	cove_blob_http_set_timeouts(f->h, 5, 5, 5);
	int fds[2];
	for (int i = 0; i < 2; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cove_blob_http_port(f->h))};
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	double t0 = mono();
	while (cove_blob_http_conns(f->h) < 2 && mono() - t0 < 5)
		event_base_loop(f->base, EVLOOP_ONCE);
	assert_int_equal(cove_blob_http_conns(f->h), 2);
	struct lurker l;
	lurk(f, "", &l);
	assert_true(l.closed_after < 1.0);
	assert_int_equal(cove_blob_http_conns(f->h), 2);
	close(fds[0]);
	close(fds[1]);
	t0 = mono();
	while (cove_blob_http_conns(f->h) > 0 && mono() - t0 < 5)
		event_base_loop(f->base, EVLOOP_ONCE);
	cove_blob_http_set_max_conns(f->h, COVE_BLOB_HTTP_MAX_CONNS);
	struct resp r;
	roundtrip(f, "PUT", "/blob/bl-after", NULL, "x", 1, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
}

/* Volume blocks stream to disk: a wrong body stores nothing, a right one is stored once, chunked too. */
static void
test_blocks(void **state)
{
	struct fixture *f = *state;
	struct resp r;
	size_t n = (8u << 20) - 5;
	uint8_t *data = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 13 + 1);
	uint8_t hash[32];
	cove_sha256(data, n, hash);
	char hex[65];
	cove_hex(hash, 32, hex);
	char *path = xasprintf("/block/%s", hex);
	data[7]++;
	roundtrip(f, "PUT", path, NULL, data, n, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr((char *)r.body, "BadDigest"));
	resp_free(&r);
	uint64_t len = 0;
	struct cove_error *err = NULL;
	assert_int_equal(cove_blobstore_block_probe(f->bs, hash, &len, &err), 0);
	data[7]--;
	for (int i = 0; i < 2; i++) {
		roundtrip(f, "PUT", path, NULL, data, n, &r);
		assert_int_equal(r.status, 200);
		assert_int_equal(r.body_len, 64);
		assert_memory_equal(r.body, hex, 64);
		resp_free(&r);
	}
	assert_int_equal(cove_blobstore_block_probe(f->bs, hash, &len, &err), 1);
	assert_int_equal(len, n);
	roundtrip(f, "GET", path, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, n);
	assert_memory_equal(r.body, data, n);
	assert_non_null(resp_header(&r, "Repr-Digest"));
	resp_free(&r);
	char *pad = xasprintf("%s?off=%zu&len=10&pad=1", path, n - 5);
	roundtrip(f, "GET", pad, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 10);
	assert_memory_equal(r.body, data + n - 5, 5);
	assert_memory_equal(r.body + 5, "\0\0\0\0\0", 5);
	resp_free(&r);
	free(pad);
	/* More than a block: refused at the head when the length says so. */
	uint8_t *big = xcalloc(1, (8u << 20) + 1);
	roundtrip(f, "PUT", path, NULL, big, (8u << 20) + 1, &r);
	assert_int_equal(r.status, 413);
	resp_free(&r);
	free(big);
	/* Chunked. */
	char *req = sign_raw(f, "{PUT /block/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824} HTTP/1.1\r\n"
				"Host: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n");
	roundtrip_raw(f, req, strlen(req), &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	free(req);
	free(path);
	free(data);
}

/* Out of descriptors: accept pauses instead of spinning on a listener that stays readable, and serving resumes once
 * descriptors are free again (in a child, whose descriptor limit is lowered). */
static void
test_accept_backoff(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct fixture f = {0};
		snprintf(f.root, sizeof(f.root), "/tmp/cove-blobhttp-fd-XXXXXX");
		if (mkdtemp(f.root) == NULL)
			_exit(2);
		struct cove_error *err = NULL;
		f.bs = cove_blobstore_open(f.root, &err);
		f.base = event_base_new();
		f.h = f.bs ? cove_blob_http_new(f.base, "127.0.0.1", 0, f.bs, &err) : NULL;
		if (f.h == NULL)
			_exit(3);
		f.tick = event_new(f.base, -1, EV_PERSIST, tick_cb, NULL);
		struct timeval tv = {0, 2000};
		event_add(f.tick, &tv);
		/* Clients connect (the kernel completes the handshakes; they wait in the backlog), then the limit leaves
		 * the server room for two of them. */
		int fds[10], n = 0;
		for (; n < 10; n++) {
			fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (fds[n] < 0)
				_exit(6);
			struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cove_blob_http_port(f.h))};
			sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			connect(fds[n], (struct sockaddr *)&sa, sizeof(sa));
		}
		int probe = dup(0);
		close(probe);
		struct rlimit old, low = {(rlim_t)probe + 2, 0};
		getrlimit(RLIMIT_NOFILE, &old);
		low.rlim_max = old.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &low) < 0)
			_exit(77);
		struct rusage r0, r1;
		getrusage(RUSAGE_SELF, &r0);
		double t0 = mono();
		while (mono() - t0 < 1.0)
			event_base_loop(f.base, EVLOOP_ONCE);
		getrusage(RUSAGE_SELF, &r1);
		double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
			     (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
		for (int i = 0; i < n; i++)
			close(fds[i]);
		setrlimit(RLIMIT_NOFILE, &old);
		t0 = mono();
		while (mono() - t0 < 1.5)
			event_base_loop(f.base, EVLOOP_ONCE);
		struct resp rs;
		roundtrip(&f, "PUT", "/blob/bl-fd", NULL, "ok", 2, &rs);
		int ok = rs.status == 200;
		resp_free(&rs);
		/* The tick wakes the loop every 2 ms, which costs a little; a spinning accept costs the whole second. */
		if (cpu > 0.5)
			_exit(4);
		_exit(ok ? 0 : 5);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* The URL key: made once, mode 0600, the same after a restart (URLs handed out survive it); not a key: refused. */
static void
test_url_key(void **state)
{
	struct fixture *f = *state;
	char path[128];
	snprintf(path, sizeof(path), "%s/blob-url.key", f->root);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, COVE_BLOB_KEY_BYTES);
	struct cove_error *err = NULL;
	struct cove_blobstore *again = cove_blobstore_open(f->root, &err);
	assert_non_null(again);
	assert_memory_equal(cove_blobstore_url_key(again), cove_blobstore_url_key(f->bs), COVE_BLOB_KEY_BYTES);
	cove_blobstore_free(again);
	/* Another state directory has another key. */
	char other[] = "/tmp/cove-blobhttp-key-XXXXXX";
	assert_non_null(mkdtemp(other));
	again = cove_blobstore_open(other, &err);
	assert_non_null(again);
	assert_memory_not_equal(cove_blobstore_url_key(again), cove_blobstore_url_key(f->bs), COVE_BLOB_KEY_BYTES);
	cove_blobstore_free(again);
	/* A truncated key is an error at open, not a weaker key. */
	char kp[128];
	snprintf(kp, sizeof(kp), "%s/blob-url.key", other);
	assert_int_equal(truncate(kp, 5), 0);
	assert_null(cove_blobstore_open(other, &err));
	assert_non_null(err);
	assert_non_null(strstr(err->msg, "not a 32-byte key"));
	cove_error_free(err);
	err = NULL;
	cove_remove_tree(other, &err);
	cove_error_free(err);
}

/* ---- parser ---- */

static void
test_parse_complete(void **state)
{
	(void)state;
	struct cove_error *err = NULL;
	struct cove_blob_part *parts = NULL;
	size_t n = 0;
	const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			  "<!-- comment -->\n"
			  "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
			  "  <Part><ETag>&quot;0123456789abcdef0123456789ABCDEF&quot;</ETag>"
			  "<ChecksumCRC32>AAAA</ChecksumCRC32><PartNumber> 1 </PartNumber></Part>\n"
			  "  <Part>\n<PartNumber>10000</PartNumber>\n<ETag>ffffffffffffffffffffffffffffffff</ETag>\n</Part>\n"
			  "</CompleteMultipartUpload>\n";
	assert_int_equal(cove_blob_http_parse_complete(doc, strlen(doc), &parts, &n, &err), 0);
	assert_null(err);
	assert_int_equal(n, 2);
	assert_int_equal(parts[0].number, 1);
	static const uint8_t md5_0[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
					  0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
	assert_memory_equal(parts[0].md5, md5_0, 16);
	assert_int_equal(parts[1].number, 10000);
	free(parts);

	/* Every proper prefix of a valid document is invalid (and must not read past its end). */
	size_t len = strlen(doc);
	for (size_t i = 0; i < len - 1; i++) {
		/* A copy of exactly i bytes, so ASan sees any overread. */
		char *prefix = xmemdup(doc, i ? i : 1);
		parts = NULL;
		int rc = cove_blob_http_parse_complete(prefix, i, &parts, &n, &err);
		if (rc == 0) {
			/* Only trailing whitespace may be cut. */
			assert_true(i >= strlen(doc) - 1);
			free(parts);
		} else {
			assert_non_null(err);
			assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
			cove_error_free(err);
			err = NULL;
		}
		free(prefix);
	}

	const char *bad[] = {
		"<Other/>",
		"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>\"0123456789abcdef0123456789abcdef\"</ETag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>\"0123456789abcdef0123456789abcdef\"</ETag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"0123456789abcdef0123456789abcde\"</ETag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"0123456789abcdef0123456789abcdeg\"</ETag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>\"0123456789abcdef0123456789abcdef\"</ETag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"0123456789abcdef0123456789abcdef\"</ETag></Part></CompleteMultipartUpload>junk",
		"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"0123456789abcdef0123456789abcdef\"</Etag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>1<b/></PartNumber><ETag>\"0123456789abcdef0123456789abcdef\"</ETag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&bogus;</ETag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Foo/></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part/></CompleteMultipartUpload>",
		"<CompleteMultipartUpload a=\"></CompleteMultipartUpload>",
		"<CompleteMultipartUpload><!-- unterminated </CompleteMultipartUpload>",
		"<?xml unterminated",
		"<>",
		"</CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>\"0123456789abcdef0123456789abcdef\"</ETag></Part></CompleteMultipartUpload>",
		"<CompleteMultipartUploadX></CompleteMultipartUploadX>",
		"<CompleteMultipartUpload></CompleteMultipartUploadX>",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		parts = NULL;
		assert_int_equal(cove_blob_http_parse_complete(bad[i], strlen(bad[i]), &parts, &n, &err), -1);
		assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
		cove_error_free(err);
		err = NULL;
	}

	/* Long text and names are bounded. */
	char *longtext = xasprintf("<CompleteMultipartUpload><Part><PartNumber>%0300d</PartNumber></Part></CompleteMultipartUpload>", 1);
	assert_int_equal(cove_blob_http_parse_complete(longtext, strlen(longtext), &parts, &n, &err), -1);
	cove_error_free(err);
	err = NULL;
	free(longtext);

	/* 10000 parts are fine, 10001 are not. */
	for (int count = 10000; count <= 10001; count++) {
		size_t cap = (size_t)count * 100 + 100, l = 0;
		char *s = xmalloc(cap);
		l += (size_t)snprintf(s + l, cap - l, "<CompleteMultipartUpload>");
		for (int i = 1; i <= count; i++)
			l += (size_t)snprintf(s + l, cap - l,
					      "<Part><PartNumber>%d</PartNumber><ETag>\"%032x\"</ETag></Part>",
					      i > 10000 ? 10000 : i, i);
		l += (size_t)snprintf(s + l, cap - l, "</CompleteMultipartUpload>");
		parts = NULL;
		int rc = cove_blob_http_parse_complete(s, l, &parts, &n, &err);
		if (count == 10000) {
			assert_int_equal(rc, 0);
			assert_int_equal(n, 10000);
			assert_int_equal(parts[9999].number, 10000);
			free(parts);
		} else {
			assert_int_equal(rc, -1);
			cove_error_free(err);
			err = NULL;
		}
		free(s);
	}

	/* Mutations of a valid document: any result, no crash, no leak. */
	const char *base = "<CompleteMultipartUpload>\n<Part>\n<PartNumber>1</PartNumber>\n"
			   "<ETag>\"0123456789abcdef0123456789abcdef\"</ETag>\n</Part>\n</CompleteMultipartUpload>";
	size_t bl = strlen(base);
	unsigned seed = 7;
	static const char alphabet[] = "<>/!?-\"'&;= \nPartNumberETag0123456789abcdef#x";
	for (int round = 0; round < 20000; round++) {
		char *m = xmemdup(base, bl);
		size_t ml = bl;
		for (int k = 0; k < 3; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t pos = (seed >> 8) % ml;
			seed = seed * 1103515245u + 12345u;
			int op = (int)((seed >> 8) % 3);
			if (op == 0) {
				m[pos] = alphabet[(seed >> 12) % (sizeof(alphabet) - 1)];
			} else if (op == 1 && ml > 1) {
				memmove(m + pos, m + pos + 1, ml - pos - 1);
				ml--;
			} else {
				ml = pos + 1; /* truncate */
			}
		}
		char *exact = xmemdup(m, ml);
		parts = NULL;
		if (cove_blob_http_parse_complete(exact, ml, &parts, &n, &err) == 0)
			free(parts);
		else {
			cove_error_free(err);
			err = NULL;
		}
		free(exact);
		free(m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_urls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked_put, setup, teardown),
		cmocka_unit_test_setup_teardown(test_content_md5, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multipart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsigned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signature, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_conns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_url_key, setup, teardown),
		cmocka_unit_test(test_accept_backoff),
		cmocka_unit_test(test_disk_full),
		cmocka_unit_test(test_parse_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
