/* The blob HTTP/1.1 port: S3's PUT/GET/multipart dialect, as far as modal's blob_utils uses it, on a small
 * server of its own (libevent bufferevents, util/http_parse.c for the request head and the chunked coding).
 *
 * Everything here is network input. The order of work is what keeps a stranger's request cheap: a request head
 * (at most COVE_HTTP_MAX_HEAD bytes, complete within the head timeout) is parsed, its signature checked
 * (blob/url_sign.h), and only then is a body read, straight to a temporary file as it arrives. A refused request
 * is answered and its connection closed without its body being stored or held. Paths are matched exactly, ids
 * validated before any path is built, and the completion XML is parsed by a small bounded scanner rather than a
 * general XML library.
 *
 * A connection serves one request at a time: it reads a head (C_HEAD), then its body (C_BODY), sends the answer
 * (C_SENDING: the next head is not read until the answer has left, so pipelining cannot queue answers), and
 * ends with a lingering close (C_CLOSING: the write side is shut, what the client still sends is discarded for a
 * moment so that it reads our answer rather than a reset). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "blob/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
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

#include "blob/blobstore.h"
#include "blob/url_sign.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/http_parse.h"
#include "util/log.h"

/* A completion body lists at most 10000 parts of ~70 bytes; anything much bigger is not a real client. It is the
 * one body held in memory, and only for a signed request. */
#define COMPLETE_MAX_BODY (4u << 20)
/* Input a connection may hold before it is read: a head needs at most COVE_HTTP_MAX_HEAD; a body is written out as
 * it arrives, so its buffer only smooths disk writes. */
#define HEAD_READ_HIGH COVE_HTTP_MAX_HEAD
#define BODY_READ_HIGH (256 << 10)
/* Connections get bigger writes than bufferevent's 16 KiB default, so a sendfile'd blob goes out in fewer loop
 * iterations. */
#define MAX_SINGLE_WRITE (4 << 20)
/* A lingering close reads and drops what the client still sends for at most this long and this much: enough for
 * a client to finish sending a modest body and read the answer, too little to make a refused body cost anything. */
#define LINGER_S 2.0
#define LINGER_MAX_BYTES (4u << 20)
/* Defaults of the limits in http.h (the web gateway's, see README "Web endpoints"). */
#define DEFAULT_HEAD_TIMEOUT_S 30.0
#define DEFAULT_IDLE_TIMEOUT_S 60.0
#define DEFAULT_STALL_TIMEOUT_S 60.0

enum conn_state { C_HEAD, C_BODY, C_SENDING, C_CLOSING };
enum method { M_GET, M_HEAD, M_PUT, M_POST, M_OTHER };
enum route_kind { ROUTE_BLOB, ROUTE_PART, ROUTE_COMPLETE, ROUTE_BLOCK, N_ROUTE_KINDS };

struct conn;
typedef void (*body_done_fn)(struct conn *c);

/* The request a connection is serving. */
struct request {
	enum method method;
	int version_minor;
	enum route_kind kind;
	char id[80];
	int part;
	uint8_t hash[COVE_BLOCK_HASH];
	char params[160]; /* the signed query before exp, e.g. a block slice's off=..&len=.. */
	char range[128];  /* the Range header (GET of a blob), or "" */
	int expect_continue;
	/* The body: its framing, what has arrived, where it goes. */
	int framing;
	uint64_t length; /* COVE_HTTP_BODY_LENGTH: what is still to come */
	uint64_t received, max;
	struct cove_http_chunked chunked;
	struct cove_blob_writer *w;
	struct evbuffer *mem; /* the completion XML */
	struct cove_error *err; /* the first write error: the rest of the body is discarded, then it is answered */
	uint8_t md5[16];
	int have_md5;
	body_done_fn done;
};

struct conn {
	struct cove_blob_http *h;
	struct conn *prev, *next;
	struct bufferevent *bev;
	struct event *resume; /* process input that arrived while an answer was being sent */
	enum conn_state state;
	double since; /* C_HEAD: idle since (or head_since once bytes came); C_BODY: last body bytes; C_CLOSING */
	int have_bytes;
	size_t scanned;
	int keep_alive;
	int shut;
	size_t lingered; /* bytes dropped while closing */
	struct request r;
};

struct cove_blob_http {
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *tick;
	struct event *accept_resume;
	struct cove_blobstore *bs;
	const uint8_t *key;
	int port;
	char *base_url;
	size_t max_body;
	int max_conns;
	int n_conns;
	struct conn *conns;
	double head_timeout_s, idle_timeout_s, stall_timeout_s;
	uint32_t max_ttl_s; /* COVE_BLOB_URL_TTL: a cap on every URL's lifetime (tests of expiry) */
	time_t last_accept_warning;
	int64_t (*clock)(void);
};

static double
now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval
seconds_tv(double s)
{
	struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
	return tv;
}

static int64_t
wall_clock(void)
{
	return (int64_t)time(NULL);
}

static void conn_free(struct conn *c);
static void read_heads(struct conn *c);
static void feed_body(struct conn *c);

/* ---- answers ---- */

static void
out(struct conn *c, const void *data, size_t len)
{
	if (len && evbuffer_add(bufferevent_get_output(c->bev), data, len) != 0) {
		log_error("blob http: out of memory buffering an answer");
		abort();
	}
}

static void
outf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
outf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	out(c, s, strlen(s));
	free(s);
}

static void
request_clear(struct request *r)
{
	cove_blob_writer_abort(r->w);
	if (r->mem)
		evbuffer_free(r->mem);
	cove_error_free(r->err);
	memset(r, 0, sizeof(*r));
}

/* Close once everything queued has been sent (see the top of the file). */
static void
conn_close(struct conn *c)
{
	request_clear(&c->r);
	c->state = C_CLOSING;
	c->since = now_mono();
	bufferevent_setwatermark(c->bev, EV_READ, 0, HEAD_READ_HIGH);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !c->shut) {
		shutdown(bufferevent_getfd(c->bev), SHUT_WR);
		c->shut = 1;
	}
}

/* The answer is queued: wait for it to leave, then read the next head (or close). */
static void
request_end(struct conn *c)
{
	request_clear(&c->r);
	if (!c->keep_alive) {
		conn_close(c);
		return;
	}
	c->state = C_SENDING;
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		event_active(c->resume, EV_WRITE, 0);
}

/* Status line and headers. extra: more header lines, each ending in CRLF (or NULL). */
static void
send_head(struct conn *c, int status, const char *extra, uint64_t content_length)
{
	outf(c, "HTTP/1.1 %d %s\r\nServer: cove\r\nContent-Length: %llu\r\n%s%s\r\n", status, cove_http_reason(status),
	     (unsigned long long)content_length, extra ? extra : "", c->keep_alive ? "" : "Connection: close\r\n");
}

/* A whole answer from memory; a HEAD gets the headers only. */
static void
reply(struct conn *c, int status, const char *extra, const void *body, size_t len)
{
	send_head(c, status, extra, len);
	if (c->r.method != M_HEAD)
		out(c, body, len);
	request_end(c);
}

static void
add_xml_escaped(struct evbuffer *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<':
			evbuffer_add(b, "&lt;", 4);
			break;
		case '>':
			evbuffer_add(b, "&gt;", 4);
			break;
		case '&':
			evbuffer_add(b, "&amp;", 5);
			break;
		case '"':
			evbuffer_add(b, "&quot;", 6);
			break;
		default:
			evbuffer_add(b, s, 1);
		}
	}
}

/* S3's error shape, so the client's "failed with status N: <text>" message carries something readable. extra:
 * header lines as for send_head. */
static void
reply_error_ex(struct conn *c, int status, const char *code, const char *msg, const char *extra)
{
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		abort();
	evbuffer_add_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>", code);
	add_xml_escaped(b, msg);
	evbuffer_add_printf(b, "</Message></Error>\n");
	cleanup_free char *headers = xasprintf("Content-Type: application/xml\r\n%s", extra ? extra : "");
	size_t len = evbuffer_get_length(b);
	reply(c, status, headers, evbuffer_pullup(b, -1), len);
	evbuffer_free(b);
}

static void
reply_error(struct conn *c, int status, const char *code, const char *msg)
{
	reply_error_ex(c, status, code, msg, NULL);
}

/* Refuse a request whose body has not been read: the connection cannot carry another one after it. */
static void
refuse(struct conn *c, int status, const char *code, const char *msg)
{
	if (c->r.framing != COVE_HTTP_BODY_NONE)
		c->keep_alive = 0;
	reply_error(c, status, code, msg);
}

/* Map a store error to HTTP: 503 makes the client sleep and retry, which is right for a full disk or EIO. */
static void
reply_store_error(struct conn *c, const struct cove_error *e, const char *invalid_code, const char *missing_code)
{
	switch (e->code) {
	case COVE_INVALID_ARGUMENT:
		reply_error(c, 400, invalid_code, e->msg);
		return;
	case COVE_NOT_FOUND:
		reply_error(c, 404, missing_code, e->msg);
		return;
	case COVE_RESOURCE_EXHAUSTED:
	case COVE_UNAVAILABLE:
		log_warn("blob http: %s %s: %s", c->r.method == M_GET ? "GET" : "write", c->r.id[0] ? c->r.id : "block",
			 e->msg);
		reply_error(c, 503, "ServiceUnavailable", e->msg);
		return;
	default:
		log_error("blob http: %s: %s", c->r.id[0] ? c->r.id : "block", e->msg);
		reply_error(c, 500, "InternalError", e->msg);
		return;
	}
}

/* ---- request helpers ---- */

/* Content-MD5 is base64 of 16 bytes: exactly 24 characters ending in "==". */
static int
decode_md5_b64(const char *s, size_t n, uint8_t out[16])
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	if (n != 24 || s[22] != '=' || s[23] != '=')
		return -1;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < 22; i++) {
		const char *c = s[i] ? strchr(alphabet, s[i]) : NULL;
		if (c == NULL)
			return -1;
		acc = (acc << 6) | (uint32_t)(c - alphabet);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o < 16)
				out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return o == 16 ? 0 : -1;
}

/* Parse a decimal without sign or overflow; 0 or -1. */
static int
parse_u64(const char *s, size_t n, uint64_t *out)
{
	if (n == 0 || n > 19)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Range: 1 (serve [*off, *off + *len)), 0 (ignore the header: serve everything), -1 (416). */
static int
parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	while (*h == ' ' || *h == '\t')
		h++;
	if (strncasecmp(h, "bytes", 5) != 0)
		return 0;
	h += 5;
	while (*h == ' ' || *h == '\t')
		h++;
	if (*h != '=')
		return 0;
	h++;
	while (*h == ' ' || *h == '\t')
		h++;
	if (strchr(h, ',') != NULL)
		return 0; /* several ranges would need multipart/byteranges; the whole body is allowed instead */
	const char *dash = strchr(h, '-');
	if (dash == NULL)
		return 0;
	size_t end_n = strlen(dash + 1);
	while (end_n > 0 && (dash[end_n] == ' ' || dash[end_n] == '\t'))
		end_n--;
	uint64_t a, b;
	if (dash == h) {
		if (parse_u64(dash + 1, end_n, &b) < 0)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*len = b < size ? b : size;
		*off = size - *len;
		return 1;
	}
	if (parse_u64(h, (size_t)(dash - h), &a) < 0)
		return 0;
	if (end_n == 0) {
		b = UINT64_MAX;
	} else {
		if (parse_u64(dash + 1, end_n, &b) < 0 || b < a)
			return 0;
	}
	if (a >= size)
		return -1;
	if (b > size - 1)
		b = size - 1;
	*off = a;
	*len = b - a + 1;
	return 1;
}

/* ---- the body ---- */

static void
body_sink(struct conn *c, const void *data, size_t len)
{
	struct request *r = &c->r;
	r->received += len;
	if (r->err != NULL)
		return; /* discarded: the answer is the error */
	if (r->w && cove_blob_writer_write(r->w, data, len, &r->err) < 0) {
		cove_blob_writer_abort(r->w);
		r->w = NULL;
	} else if (r->mem && evbuffer_add(r->mem, data, len) != 0) {
		abort();
	}
}

/* Read the body as it is framed; the request's done function answers once it has all come. */
static void
feed_body(struct conn *c)
{
	struct request *r = &c->r;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	c->since = now_mono();
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (r->framing == COVE_HTTP_BODY_NONE || (r->framing == COVE_HTTP_BODY_LENGTH && r->length == 0) ||
		    (r->framing == COVE_HTTP_BODY_CHUNKED && r->chunked.done))
			break;
		if (avail == 0)
			return;
		if (r->framing == COVE_HTTP_BODY_LENGTH) {
			size_t take = avail < r->length ? avail : (size_t)r->length;
			struct evbuffer_iovec vec[16];
			size_t done = 0;
			while (done < take) {
				int n = evbuffer_peek(in, (ev_ssize_t)(take - done), NULL, vec, 16);
				if (n <= 0)
					break;
				if (n > 16)
					n = 16;
				size_t chunk = 0;
				for (int i = 0; i < n && chunk < take - done; i++) {
					size_t l = vec[i].iov_len < take - done - chunk ? vec[i].iov_len : take - done - chunk;
					body_sink(c, vec[i].iov_base, l);
					chunk += l;
				}
				evbuffer_drain(in, chunk);
				done += chunk;
			}
			r->length -= done;
		} else {
			struct evbuffer_iovec vec;
			if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
				return;
			size_t doff = 0, dlen = 0;
			ssize_t used = cove_http_chunked_feed(&r->chunked, vec.iov_base, vec.iov_len, &doff, &dlen);
			if (used < 0) {
				c->keep_alive = 0;
				reply_error(c, 400, "IncompleteBody", "malformed chunked body");
				return;
			}
			if (dlen)
				body_sink(c, (const uint8_t *)vec.iov_base + doff, dlen);
			evbuffer_drain(in, (size_t)used);
			if (used == 0 && !r->chunked.done)
				return; /* wants more than has come */
		}
		if (r->received > r->max) {
			c->keep_alive = 0;
			reply_error(c, 413, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size");
			return;
		}
	}
	r->done(c);
}

/* Start reading a body whose framing and limit are known (the signature was checked). */
static void
begin_body(struct conn *c, uint64_t max, body_done_fn done)
{
	struct request *r = &c->r;
	r->max = max;
	r->done = done;
	if (r->framing == COVE_HTTP_BODY_LENGTH && r->length > max) {
		refuse(c, 413, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size");
		return;
	}
	if (r->expect_continue && r->framing != COVE_HTTP_BODY_NONE)
		out(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	c->state = C_BODY;
	bufferevent_setwatermark(c->bev, EV_READ, 0, BODY_READ_HIGH);
	feed_body(c);
}

/* ---- handlers ---- */

static void
send_file(struct conn *c, int status, const char *extra, int fd, uint64_t off, uint64_t len, uint64_t zeros)
{
	send_head(c, status, extra, len + zeros);
	struct evbuffer *o = bufferevent_get_output(c->bev);
	if (c->r.method == M_GET && len > 0) {
		/* A file segment in a buffer that drains to a socket goes out with sendfile: a big blob is never read
		 * into memory. The segment owns fd from here on. */
		if (evbuffer_add_file(o, fd, (ev_off_t)off, (ev_off_t)len) < 0) {
			close(fd);
			log_error("blob http: cannot queue a file to send");
			c->keep_alive = 0; /* the head is out: all we can do is end the connection */
			request_end(c);
			return;
		}
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	static const uint8_t zeros64k[64 << 10];
	for (uint64_t left = c->r.method == M_GET ? zeros : 0; left > 0;) {
		size_t n = left < sizeof(zeros64k) ? (size_t)left : sizeof(zeros64k);
		evbuffer_add_reference(o, zeros64k, n, NULL, NULL);
		left -= n;
	}
	request_end(c);
}

static void
handle_get(struct conn *c)
{
	int fd = -1;
	uint64_t size = 0;
	struct cove_error *err = NULL;
	if (cove_blobstore_open_blob(c->h->bs, c->r.id, &fd, &size, &err) < 0) {
		reply_store_error(c, err, "InvalidArgument", "NoSuchKey");
		cove_error_free(err);
		return;
	}
	uint64_t off = 0, len = size;
	int status = 200;
	char cr[96] = "";
	if (c->r.range[0]) {
		int rv = parse_range(c->r.range, size, &off, &len);
		if (rv < 0) {
			close(fd);
			snprintf(cr, sizeof(cr), "Content-Range: bytes */%llu\r\n", (unsigned long long)size);
			reply_error_ex(c, 416, "InvalidRange", "The requested range is not satisfiable", cr);
			return;
		}
		if (rv > 0) {
			status = 206;
			snprintf(cr, sizeof(cr), "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)off,
				 (unsigned long long)(off + len - 1), (unsigned long long)size);
		}
	}
	cleanup_free char *extra =
		xasprintf("Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n%s", cr);
	send_file(c, status, extra, fd, off, len, 0);
}

static void
put_done(struct conn *c)
{
	struct request *r = &c->r;
	uint8_t md5[16];
	if (r->err == NULL && cove_blob_writer_commit(steal_pointer(&r->w), r->have_md5 ? r->md5 : NULL, md5, &r->err) == 0) {
		char etag[64];
		etag[0] = '"';
		cove_hex(md5, 16, etag + 1);
		snprintf(etag + 33, sizeof(etag) - 33, "\"");
		cleanup_free char *extra = xasprintf("ETag: %s\r\n", etag);
		reply(c, 200, extra, NULL, 0);
		return;
	}
	reply_store_error(c, r->err, r->have_md5 ? "BadDigest" : "InvalidArgument", "NoSuchKey");
}

static void
handle_put(struct conn *c)
{
	struct request *r = &c->r;
	struct cove_error *err = NULL;
	r->w = r->kind == ROUTE_PART ? cove_blobstore_part_writer(c->h->bs, r->id, r->part, &err)
				     : cove_blobstore_blob_writer(c->h->bs, r->id, &err);
	if (r->w == NULL) {
		if (r->framing != COVE_HTTP_BODY_NONE)
			c->keep_alive = 0;
		reply_store_error(c, err, "InvalidArgument", "NoSuchKey");
		cove_error_free(err);
		return;
	}
	begin_body(c, c->h->max_body, put_done);
}

static void
complete_done(struct conn *c)
{
	struct request *r = &c->r;
	size_t len = evbuffer_get_length(r->mem);
	/* Small by the limit, so one contiguous copy is fine. */
	const char *body = len ? (const char *)evbuffer_pullup(r->mem, -1) : "";
	struct cove_error *err = NULL;
	cleanup_free struct cove_blob_part *parts = NULL;
	size_t n = 0;
	if (cove_blob_http_parse_complete(body, len, &parts, &n, &err) < 0) {
		reply_error(c, 400, "MalformedXML", err->msg);
		cove_error_free(err);
		return;
	}
	char etag[COVE_BLOB_ETAG_MAX];
	if (cove_blobstore_complete_multipart(c->h->bs, r->id, parts, n, etag, &err) < 0) {
		reply_store_error(c, err, "InvalidPart", "NoSuchUpload");
		cove_error_free(err);
		return;
	}
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		abort();
	evbuffer_add_printf(b,
			    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			    "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			    "<Location>%s/blob/%s</Location><Bucket>cove</Bucket><Key>%s</Key><ETag>&quot;%s&quot;</ETag>"
			    "</CompleteMultipartUploadResult>\n",
			    c->h->base_url, r->id, r->id, etag);
	size_t blen = evbuffer_get_length(b);
	reply(c, 200, "Content-Type: application/xml\r\n", evbuffer_pullup(b, -1), blen);
	evbuffer_free(b);
}

static void
handle_complete(struct conn *c)
{
	struct request *r = &c->r;
	if (r->framing == COVE_HTTP_BODY_LENGTH && r->length > COMPLETE_MAX_BODY) {
		refuse(c, 400, "MaxMessageLengthExceeded", "the CompleteMultipartUpload body is too large");
		return;
	}
	r->mem = evbuffer_new();
	if (r->mem == NULL)
		abort();
	begin_body(c, COMPLETE_MAX_BODY, complete_done);
}

/* ---- volume blocks: /block/<sha256 hex> ---- */

/* The v2 client PUTs a block's bytes (trailing zeros stripped) to the put_url VolumePutFiles2 gave it; the body of
 * our answer is opaque to it and comes back as put_response, so it is the block's name. */
static void
block_put_done(struct conn *c)
{
	struct request *r = &c->r;
	if (r->err == NULL && cove_blob_writer_commit(steal_pointer(&r->w), NULL, NULL, &r->err) == 0) {
		char hex[2 * COVE_BLOCK_HASH + 1];
		cove_hex(r->hash, COVE_BLOCK_HASH, hex);
		reply(c, 200, "Content-Type: text/plain\r\n", hex, 2 * COVE_BLOCK_HASH);
		return;
	}
	reply_store_error(c, r->err, "BadDigest", "NoSuchKey");
}

static void
handle_block_put(struct conn *c)
{
	struct request *r = &c->r;
	struct cove_error *err = NULL;
	if (r->framing == COVE_HTTP_BODY_LENGTH && r->length > COVE_BLOCK_SIZE) {
		refuse(c, 413, "EntityTooLarge", "a block holds at most 8 MiB");
		return;
	}
	r->w = cove_blobstore_block_writer(c->h->bs, r->hash, &err);
	if (r->w == NULL) {
		if (r->framing != COVE_HTTP_BODY_NONE)
			c->keep_alive = 0;
		reply_store_error(c, err, "InvalidArgument", "NoSuchKey");
		cove_error_free(err);
		return;
	}
	begin_body(c, COVE_BLOCK_SIZE, block_put_done);
}

/* Query parameters of a block GET (signed with it): off and len (a slice of the block as the file holds it, zeros
 * included) and pad=1 (send the zeros the stored block leaves out; clients that pad blocks themselves leave it off). */
static int
block_query(const char *q, uint64_t *off, uint64_t *len, int *pad)
{
	*off = 0;
	*len = COVE_BLOCK_SIZE;
	*pad = 0;
	while (*q) {
		const char *amp = strchr(q, '&');
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', n);
		if (eq == NULL)
			return -1;
		size_t kl = (size_t)(eq - q);
		uint64_t v;
		if (parse_u64(eq + 1, n - kl - 1, &v) < 0)
			return -1;
		if (kl == 3 && memcmp(q, "off", 3) == 0)
			*off = v;
		else if (kl == 3 && memcmp(q, "len", 3) == 0)
			*len = v;
		else if (kl == 3 && memcmp(q, "pad", 3) == 0)
			*pad = v != 0;
		else
			return -1;
		q += n + (amp ? 1 : 0);
	}
	return *off > COVE_BLOCK_SIZE || *len > COVE_BLOCK_SIZE - *off ? -1 : 0;
}

static void
handle_block_get(struct conn *c)
{
	uint64_t off, want;
	int pad;
	if (block_query(c->r.params, &off, &want, &pad) < 0) {
		reply_error(c, 400, "InvalidArgument", "block query must be off=N&len=N&pad=0|1 within 8 MiB");
		return;
	}
	int fd = -1;
	uint64_t stored = 0;
	struct cove_error *err = NULL;
	if (cove_blobstore_block_open(c->h->bs, c->r.hash, &fd, &stored, &err) < 0) {
		reply_store_error(c, err, "InvalidArgument", "NoSuchKey");
		cove_error_free(err);
		return;
	}
	/* What the block stores of the slice, then (pad) the zeros after it. */
	uint64_t from_file = off >= stored ? 0 : (stored - off < want ? stored - off : want);
	uint64_t zeros = pad ? want - from_file : 0;
	char digest[80] = "";
	if (off == 0 && from_file == stored && zeros == 0) {
		/* The whole stored block: its name is the sha256 of the body, which the client checks (RFC 9530). */
		static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		const uint8_t *hash = c->r.hash;
		size_t o = (size_t)snprintf(digest, sizeof(digest), "Repr-Digest: sha-256=:");
		for (size_t i = 0; i < COVE_BLOCK_HASH; i += 3) {
			uint32_t v = (uint32_t)hash[i] << 16 | (i + 1 < COVE_BLOCK_HASH ? (uint32_t)hash[i + 1] << 8 : 0) |
				     (i + 2 < COVE_BLOCK_HASH ? hash[i + 2] : 0);
			digest[o++] = b64[(v >> 18) & 63];
			digest[o++] = b64[(v >> 12) & 63];
			digest[o++] = i + 1 < COVE_BLOCK_HASH ? b64[(v >> 6) & 63] : '=';
			digest[o++] = i + 2 < COVE_BLOCK_HASH ? b64[v & 63] : '=';
		}
		snprintf(digest + o, sizeof(digest) - o, ":\r\n");
	}
	cleanup_free char *extra = xasprintf("Content-Type: application/octet-stream\r\n%s", digest);
	send_file(c, 200, extra, fd, off, from_file, zeros);
}

/* Dispatch table: (path kind, method) -> handler. A known path with an unlisted method is 405. */
static const struct route {
	enum route_kind kind;
	enum method method;
	void (*fn)(struct conn *c);
} routes[] = {
	{ROUTE_BLOB, M_GET, handle_get},
	{ROUTE_BLOB, M_HEAD, handle_get},
	{ROUTE_BLOB, M_PUT, handle_put},
	{ROUTE_PART, M_PUT, handle_put},
	{ROUTE_COMPLETE, M_POST, handle_complete},
	{ROUTE_BLOCK, M_GET, handle_block_get},
	{ROUTE_BLOCK, M_HEAD, handle_block_get},
	{ROUTE_BLOCK, M_PUT, handle_block_put},
};
static const char *const route_allow[N_ROUTE_KINDS] = {
	[ROUTE_BLOB] = "GET, HEAD, PUT",
	[ROUTE_PART] = "PUT",
	[ROUTE_COMPLETE] = "POST",
	[ROUTE_BLOCK] = "GET, HEAD, PUT",
};

/* "/blob/<id>", "/blob/<id>/part/<n>", "/blob/<id>/complete", "/block/<64 hex>". 0 (request filled), 404 or 400. */
static int
parse_path(const char *path, struct request *r, const char **why)
{
	static const char block_prefix[] = "/block/";
	static const char prefix[] = "/blob/";
	r->part = 0;
	if (strncmp(path, block_prefix, sizeof(block_prefix) - 1) == 0) {
		if (cove_block_hash_parse(path + sizeof(block_prefix) - 1, r->hash) < 0) {
			*why = "a block is named by the 64 hex digits of its sha256";
			return 400;
		}
		r->kind = ROUTE_BLOCK;
		return 0;
	}
	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0) {
		*why = "no such resource";
		return 404;
	}
	const char *p = path + sizeof(prefix) - 1;
	const char *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	if (n == 0) {
		*why = "no such resource";
		return 404;
	}
	if (n >= sizeof(r->id)) {
		*why = "invalid blob id";
		return 400;
	}
	memcpy(r->id, p, n);
	r->id[n] = '\0';
	if (!cove_blobstore_valid_id(r->id)) {
		*why = "invalid blob id";
		return 400;
	}
	const char *rest = p + n;
	if (*rest == '\0') {
		r->kind = ROUTE_BLOB;
		return 0;
	}
	if (strcmp(rest, "/complete") == 0) {
		r->kind = ROUTE_COMPLETE;
		return 0;
	}
	if (strncmp(rest, "/part/", 6) == 0) {
		uint64_t v;
		if (parse_u64(rest + 6, strlen(rest + 6), &v) < 0 || v < 1 || v > COVE_BLOB_MAX_PARTS) {
			*why = "invalid part number";
			return 400;
		}
		r->kind = ROUTE_PART;
		r->part = (int)v;
		return 0;
	}
	*why = "no such resource";
	return 404;
}

static enum method
parse_method(const char *m, size_t n)
{
	static const struct {
		const char *name;
		enum method m;
	} names[] = {{"GET", M_GET}, {"HEAD", M_HEAD}, {"PUT", M_PUT}, {"POST", M_POST}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == n && memcmp(names[i].name, m, n) == 0)
			return names[i].m;
	return M_OTHER;
}

/* A complete request head, already taken out of the input. */
static void
handle_head(struct conn *c, const struct cove_http_request *req)
{
	struct cove_blob_http *h = c->h;
	struct request *r = &c->r;
	request_clear(r);
	r->method = parse_method(req->method, req->method_len);
	r->version_minor = req->version_minor;
	const struct cove_http_header *conn_hdr = cove_http_header_find(req, "connection", NULL);
	c->keep_alive = req->version_minor == 1 &&
			!(conn_hdr && cove_http_list_has(conn_hdr->value, conn_hdr->value_len, "close"));
	int rv = cove_http_body_framing(req, &r->framing, &r->length);
	if (rv < 0) {
		r->framing = COVE_HTTP_BODY_CHUNKED; /* unknown: the connection cannot go on */
		refuse(c, -rv, "InvalidRequest",
		       rv == -501 ? "unsupported transfer coding" : "malformed Content-Length or Transfer-Encoding");
		return;
	}
	/* First the signature: a request Cove did not sign learns nothing more and costs nothing more. */
	struct cove_blob_url url;
	const char *why = NULL;
	if (cove_blob_url_verify(h->key, req->method, req->method_len, req->target, req->target_len, h->clock(), &url,
				 &why) < 0) {
		refuse(c, 403, "AccessDenied", why);
		return;
	}
	char path[256];
	if (url.path_len >= sizeof(path) || url.params_len >= sizeof(r->params)) {
		refuse(c, 400, "InvalidArgument", "request target too long");
		return;
	}
	memcpy(path, url.path, url.path_len);
	path[url.path_len] = '\0';
	memcpy(r->params, url.params, url.params_len);
	r->params[url.params_len] = '\0';
	int status = parse_path(path, r, &why);
	if (status != 0) {
		refuse(c, status, status == 404 ? "NoSuchKey" : "InvalidArgument", why);
		return;
	}
	const struct cove_http_header *range = cove_http_header_find(req, "range", NULL);
	if (range && range->value_len < sizeof(r->range)) {
		memcpy(r->range, range->value, range->value_len);
		r->range[range->value_len] = '\0';
	}
	const struct cove_http_header *expect = cove_http_header_find(req, "expect", NULL);
	r->expect_continue = expect && expect->value_len == 12 && strncasecmp(expect->value, "100-continue", 12) == 0 &&
			     req->version_minor == 1;
	const struct cove_http_header *md5 = cove_http_header_find(req, "content-md5", NULL);
	if (md5) {
		if (decode_md5_b64(md5->value, md5->value_len, r->md5) < 0) {
			refuse(c, 400, "InvalidDigest", "The Content-MD5 you specified is not valid.");
			return;
		}
		r->have_md5 = 1;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (routes[i].kind == r->kind && routes[i].method == r->method) {
			/* A body on a GET or HEAD is not read: the connection ends after the answer. */
			if ((r->method == M_GET || r->method == M_HEAD) && r->framing != COVE_HTTP_BODY_NONE)
				c->keep_alive = 0;
			routes[i].fn(c);
			return;
		}
	}
	cleanup_free char *allow = xasprintf("Allow: %s\r\n", route_allow[r->kind]);
	if (r->framing != COVE_HTTP_BODY_NONE)
		c->keep_alive = 0;
	reply_error_ex(c, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.", allow);
}

/* ---- connections ---- */

/* Look for a complete request head in the input. */
static void
read_heads(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (c->state == C_HEAD) {
		size_t len = evbuffer_get_length(in);
		if (len == 0)
			return;
		if (!c->have_bytes) {
			c->have_bytes = 1;
			c->since = now_mono();
		}
		size_t take = len < COVE_HTTP_MAX_HEAD ? len : COVE_HTTP_MAX_HEAD;
		const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
		/* Parse only when a line has ended since the last look: a slow client costs one scan per line. */
		if (c->scanned < take && memchr(buf + c->scanned, '\n', take - c->scanned) == NULL) {
			c->scanned = take;
			if (take >= COVE_HTTP_MAX_HEAD) {
				c->r.framing = COVE_HTTP_BODY_CHUNKED;
				refuse(c, 431, "RequestHeaderFieldsTooLarge", "request head too large");
			}
			return;
		}
		c->scanned = take;
		struct cove_http_request req;
		int rv = cove_http_parse_head(buf, take, &req);
		if (rv == 0 && take < COVE_HTTP_MAX_HEAD)
			return;
		if (rv <= 0) {
			c->r.framing = COVE_HTTP_BODY_CHUNKED; /* whatever follows cannot be trusted */
			refuse(c, rv == 0 ? 431 : -rv, "InvalidRequest",
			       rv == 0 || rv == -431 ? "request head too large"
			       : rv == -505	     ? "only HTTP/1.0 and 1.1 are served here"
						     : "malformed request");
			return;
		}
		c->have_bytes = 0;
		c->scanned = 0;
		/* The head leaves the input before it is handled (the body follows it): parse a copy of it for the
		 * pointers to point into. */
		cleanup_free char *copy = xmemdup(buf, (size_t)rv);
		evbuffer_drain(in, (size_t)rv);
		if (cove_http_parse_head(copy, (size_t)rv, &req) != rv)
			abort(); /* the same bytes parse the same way */
		handle_head(c, &req);
	}
}

static void
conn_readcb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	switch (c->state) {
	case C_HEAD:
		read_heads(c);
		break;
	case C_BODY:
		feed_body(c);
		break;
	case C_SENDING:
		break; /* read once the answer has left; the read watermark bounds what waits */
	case C_CLOSING: {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		size_t n = evbuffer_get_length(in);
		evbuffer_drain(in, n);
		c->lingered += n;
		if (c->lingered > LINGER_MAX_BYTES)
			conn_free(c);
		break;
	}
	}
}

/* The answer has left (or there was nothing to send). */
static void
conn_writecb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (c->state == C_CLOSING) {
		if (!c->shut) {
			shutdown(bufferevent_getfd(bev), SHUT_WR);
			c->shut = 1;
		}
		return;
	}
	if (c->state == C_SENDING) {
		c->state = C_HEAD;
		c->since = now_mono();
		c->have_bytes = 0;
		c->scanned = 0;
		bufferevent_setwatermark(c->bev, EV_READ, 0, HEAD_READ_HIGH);
		read_heads(c);
	}
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn *c = arg;
	conn_writecb(c->bev, c);
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	    (c->state == C_SENDING || c->state == C_CLOSING) && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		/* The client is done sending but still reading: finish the answer, then close. */
		c->keep_alive = 0;
		if (c->state == C_SENDING)
			conn_close(c);
		bufferevent_disable(bev, EV_READ);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_free(c);
}

static void
conn_free(struct conn *c)
{
	struct cove_blob_http *h = c->h;
	request_clear(&c->r);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->n_conns--;
	event_free(c->resume);
	bufferevent_free(c->bev);
	free(c);
}

static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)listener;
	(void)sa;
	(void)salen;
	struct cove_blob_http *h = arg;
	if (h->n_conns >= h->max_conns) {
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct conn *c = xcalloc(1, sizeof(*c));
	c->h = h;
	/* Callbacks run as events happen, not deferred: a deferred write callback per sendfile'd chunk costs a fifth of
	 * a big GET's throughput. */
	c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->resume = event_new(h->base, -1, 0, resume_cb, c);
	if (c->bev == NULL || c->resume == NULL) {
		log_error("blob http: out of memory accepting a connection");
		abort();
	}
	evbuffer_set_flags(bufferevent_get_output(c->bev), EVBUFFER_FLAG_DRAINS_TO_FD);
	bufferevent_set_max_single_write(c->bev, MAX_SINGLE_WRITE);
	c->state = C_HEAD;
	c->since = now_mono();
	/* A client that takes nothing of an answer for this long is dropped (libevent's write timeout runs only
	 * while there is something to write). */
	struct timeval wt = seconds_tv(h->stall_timeout_s);
	bufferevent_set_timeouts(c->bev, NULL, &wt);
	bufferevent_setwatermark(c->bev, EV_READ, 0, HEAD_READ_HIGH);
	bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	h->n_conns++;
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_blob_http *h = arg;
	evconnlistener_enable(h->listener);
}

/* Out of descriptors (or another accept failure): stop accepting for a moment instead of spinning on a listener
 * that stays readable. */
static void
accept_error_cb(struct evconnlistener *listener, void *arg)
{
	struct cove_blob_http *h = arg;
	int e = EVUTIL_SOCKET_ERROR();
	time_t now = time(NULL);
	if (now - h->last_accept_warning >= 60) {
		h->last_accept_warning = now;
		log_warn("blob http: accept: %s (pausing for a second)", evutil_socket_error_to_string(e));
	}
	evconnlistener_disable(listener);
	struct timeval tv = {1, 0};
	event_add(h->accept_resume, &tv);
}

/* Heads that take too long, idle keep-alive connections, bodies that stall, closes that linger. */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_blob_http *h = arg;
	double now = now_mono();
	struct conn *next;
	for (struct conn *c = h->conns; c; c = next) {
		next = c->next;
		double age = now - c->since;
		switch (c->state) {
		case C_HEAD:
			if (c->have_bytes && age > h->head_timeout_s) {
				c->r.framing = COVE_HTTP_BODY_CHUNKED;
				refuse(c, 408, "RequestTimeout", "the request head took too long");
			} else if (!c->have_bytes && age > h->idle_timeout_s) {
				conn_free(c);
			}
			break;
		case C_BODY:
			if (age > h->stall_timeout_s)
				conn_free(c); /* a stalled upload: nothing of it is stored */
			break;
		case C_SENDING:
			break; /* the write timeout covers it */
		case C_CLOSING:
			if ((c->shut && age > LINGER_S) || age > LINGER_S + h->stall_timeout_s)
				conn_free(c);
			break;
		}
	}
}

/* ---- server ---- */

static double
env_seconds(const char *name, double dflt)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return dflt;
	char *end;
	double d = strtod(v, &end);
	if (*end != '\0' || !(d > 0) || d > 86400) {
		log_warn("blob http: ignoring %s=%s (not a number of seconds)", name, v);
		return dflt;
	}
	return d;
}

static struct evconnlistener *
listen_on(struct cove_blob_http *h, const char *address, int port, int *errno_out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST};
	struct addrinfo *res = NULL;
	char port_s[16];
	snprintf(port_s, sizeof(port_s), "%d", port);
	if (getaddrinfo(address, port_s, &hints, &res) != 0) {
		*errno_out = EINVAL;
		return NULL;
	}
	struct evconnlistener *l = NULL;
	for (struct addrinfo *ai = res; ai && l == NULL; ai = ai->ai_next) {
		l = evconnlistener_new_bind(h->base, accept_cb, h,
					    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, -1,
					    ai->ai_addr, (int)ai->ai_addrlen);
		if (l == NULL)
			*errno_out = errno;
	}
	freeaddrinfo(res);
	return l;
}

struct cove_blob_http *
cove_blob_http_new(struct event_base *base, const char *address, int port, struct cove_blobstore *bs,
		   struct cove_error **err)
{
	if (port < 0 || port > 65535) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "blob HTTP port %d is out of range", port);
		return NULL;
	}
	struct cove_blob_http *h = xcalloc(1, sizeof(*h));
	h->base = base;
	h->bs = bs;
	h->key = cove_blobstore_url_key(bs);
	h->max_body = COVE_BLOB_HTTP_MAX_BODY;
	h->max_conns = COVE_BLOB_HTTP_MAX_CONNS;
	h->clock = wall_clock;
	h->head_timeout_s = env_seconds("COVE_BLOB_HEAD_TIMEOUT", DEFAULT_HEAD_TIMEOUT_S);
	h->idle_timeout_s = env_seconds("COVE_BLOB_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT_S);
	h->stall_timeout_s = env_seconds("COVE_BLOB_STALL_TIMEOUT", DEFAULT_STALL_TIMEOUT_S);
	h->max_ttl_s = (uint32_t)env_seconds("COVE_BLOB_URL_TTL", COVE_BLOB_URL_MAX_TTL_S);
	int saved = 0;
	h->listener = listen_on(h, address, port, &saved);
	if (h->listener == NULL) {
		cove_error_set(err, COVE_UNAVAILABLE, "bind blob HTTP port %s:%d: %s", address, port,
			       saved ? strerror(saved) : "failed");
		cove_blob_http_free(h);
		return NULL;
	}
	evconnlistener_set_error_cb(h->listener, accept_error_cb);
	h->accept_resume = evtimer_new(base, accept_resume_cb, h);
	h->tick = event_new(base, -1, EV_PERSIST, tick_cb, h);
	if (h->accept_resume == NULL || h->tick == NULL)
		abort();
	cove_blob_http_set_timeouts(h, h->head_timeout_s, h->idle_timeout_s, h->stall_timeout_s);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(h->listener), (struct sockaddr *)&ss, &sl) < 0) {
		cove_error_set_errno(err, errno, "blob HTTP getsockname");
		cove_blob_http_free(h);
		return NULL;
	}
	if (ss.ss_family == AF_INET6)
		h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (strchr(address, ':') != NULL)
		h->base_url = xasprintf("http://[%s]:%d", address, h->port);
	else
		h->base_url = xasprintf("http://%s:%d", address, h->port);
	return h;
}

int
cove_blob_http_port(const struct cove_blob_http *h)
{
	return h->port;
}

const char *
cove_blob_http_base_url(const struct cove_blob_http *h)
{
	return h->base_url;
}

void
cove_blob_http_set_max_body(struct cove_blob_http *h, size_t max_body)
{
	h->max_body = max_body;
}

void
cove_blob_http_set_max_conns(struct cove_blob_http *h, int max_conns)
{
	h->max_conns = max_conns;
}

void
cove_blob_http_set_timeouts(struct cove_blob_http *h, double head_s, double idle_s, double stall_s)
{
	h->head_timeout_s = head_s;
	h->idle_timeout_s = idle_s;
	h->stall_timeout_s = stall_s;
	/* Checked a few times per shortest timeout, at most once a second. */
	double shortest = head_s < idle_s ? head_s : idle_s;
	shortest = stall_s < shortest ? stall_s : shortest;
	struct timeval tv = seconds_tv(shortest / 4 < 1.0 ? shortest / 4 : 1.0);
	event_del(h->tick);
	event_add(h->tick, &tv);
}

void
cove_blob_http_set_clock(struct cove_blob_http *h, int64_t (*clock)(void))
{
	h->clock = clock ? clock : wall_clock;
}

int
cove_blob_http_conns(const struct cove_blob_http *h)
{
	return h->n_conns;
}

void
cove_blob_http_free(struct cove_blob_http *h)
{
	if (h == NULL)
		return;
	if (h->listener)
		evconnlistener_free(h->listener);
	while (h->conns)
		conn_free(h->conns);
	if (h->tick)
		event_free(h->tick);
	if (h->accept_resume)
		event_free(h->accept_resume);
	free(h->base_url);
	free(h);
}

/* ---- signed URLs ---- */

uint32_t
cove_blob_url_ttl(uint64_t bytes)
{
	uint64_t ttl = COVE_BLOB_URL_TTL_S + bytes / COVE_BLOB_URL_MIN_RATE;
	return ttl > COVE_BLOB_URL_MAX_TTL_S ? COVE_BLOB_URL_MAX_TTL_S : (uint32_t)ttl;
}

char *
cove_blob_http_sign(const struct cove_blob_http *h, const char *method, const char *path, const char *params,
		    uint32_t ttl_s)
{
	if (ttl_s > h->max_ttl_s)
		ttl_s = h->max_ttl_s;
	cleanup_free char *target = cove_blob_url_sign(h->key, method, path, params, h->clock() + (int64_t)ttl_s);
	return xasprintf("%s%s", h->base_url, target);
}

char *
cove_blob_http_get_url(const struct cove_blob_http *h, const char *id, uint32_t ttl_s)
{
	cleanup_free char *path = xasprintf("/blob/%s", id);
	return cove_blob_http_sign(h, "GET", path, NULL, ttl_s);
}

char *
cove_blob_http_put_url(const struct cove_blob_http *h, const char *id, uint32_t ttl_s)
{
	cleanup_free char *path = xasprintf("/blob/%s", id);
	return cove_blob_http_sign(h, "PUT", path, NULL, ttl_s);
}

char *
cove_blob_http_part_url(const struct cove_blob_http *h, const char *id, int part_number, uint32_t ttl_s)
{
	cleanup_free char *path = xasprintf("/blob/%s/part/%d", id, part_number);
	return cove_blob_http_sign(h, "PUT", path, NULL, ttl_s);
}

char *
cove_blob_http_complete_url(const struct cove_blob_http *h, const char *id, uint32_t ttl_s)
{
	cleanup_free char *path = xasprintf("/blob/%s/complete", id);
	return cove_blob_http_sign(h, "POST", path, NULL, ttl_s);
}

char *
cove_blob_http_block_put_url(const struct cove_blob_http *h, const uint8_t hash[32], uint32_t ttl_s)
{
	char hex[65];
	cove_hex(hash, 32, hex);
	cleanup_free char *path = xasprintf("/block/%s", hex);
	return cove_blob_http_sign(h, "PUT", path, NULL, ttl_s);
}

char *
cove_blob_http_block_get_url(const struct cove_blob_http *h, const uint8_t hash[32], uint32_t ttl_s)
{
	char hex[65];
	cove_hex(hash, 32, hex);
	cleanup_free char *path = xasprintf("/block/%s", hex);
	return cove_blob_http_sign(h, "GET", path, NULL, ttl_s);
}

char *
cove_blob_http_block_slice_url(const struct cove_blob_http *h, const uint8_t hash[32], uint64_t off, uint64_t len,
			       int pad, uint32_t ttl_s)
{
	char hex[65];
	cove_hex(hash, 32, hex);
	cleanup_free char *path = xasprintf("/block/%s", hex);
	cleanup_free char *params =
		xasprintf("off=%llu&len=%llu%s", (unsigned long long)off, (unsigned long long)len, pad ? "&pad=1" : "");
	return cove_blob_http_sign(h, "GET", path, params, ttl_s);
}

/* ---- CompleteMultipartUpload parser ---- */

struct xml {
	const char *p;
	const char *end;
	const char *why; /* set on the first error */
};

#define XML_NAME_MAX 64
#define XML_TEXT_MAX 256

static int
xml_fail(struct xml *x, const char *why)
{
	if (x->why == NULL)
		x->why = why;
	return -1;
}

static int
xml_starts(const struct xml *x, const char *s)
{
	size_t n = strlen(s);
	return (size_t)(x->end - x->p) >= n && memcmp(x->p, s, n) == 0;
}

static int
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whitespace, comments and processing instructions (the <?xml ...?> prolog) carry nothing we need. */
static int
xml_skip_misc(struct xml *x)
{
	for (;;) {
		while (x->p < x->end && is_ws(*x->p))
			x->p++;
		const char *close;
		if (xml_starts(x, "<?"))
			close = "?>";
		else if (xml_starts(x, "<!--"))
			close = "-->";
		else
			return 0;
		const char *found = memmem(x->p, (size_t)(x->end - x->p), close, strlen(close));
		if (found == NULL)
			return xml_fail(x, "unterminated comment or declaration");
		x->p = found + strlen(close);
	}
}

static int
is_name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
	       c == '.' || c == ':';
}

/* "<Name attr="...">" or "<Name/>". Attributes (xmlns) are skipped, quotes respected. */
static int
xml_open_tag(struct xml *x, char name[XML_NAME_MAX + 1], int *empty)
{
	if (!xml_starts(x, "<"))
		return xml_fail(x, "expected an element");
	x->p++;
	size_t n = 0;
	while (x->p < x->end && is_name_char(*x->p)) {
		if (n >= XML_NAME_MAX)
			return xml_fail(x, "element name too long");
		name[n++] = *x->p++;
	}
	name[n] = '\0';
	if (n == 0)
		return xml_fail(x, "expected an element name");
	char quote = 0;
	for (; x->p < x->end; x->p++) {
		char c = *x->p;
		if (quote) {
			if (c == quote)
				quote = 0;
		} else if (c == '"' || c == '\'') {
			quote = c;
		} else if (c == '>') {
			/* The name was at least one character after '<', so p[-1] is inside the body. */
			*empty = x->p[-1] == '/';
			x->p++;
			return 0;
		} else if (c == '<') {
			break;
		}
	}
	return xml_fail(x, "unterminated start tag");
}

static int
xml_close_tag(struct xml *x, const char *name)
{
	if (!xml_starts(x, "</"))
		return xml_fail(x, "expected an end tag");
	x->p += 2;
	size_t n = strlen(name);
	if ((size_t)(x->end - x->p) < n || memcmp(x->p, name, n) != 0 || (x->p + n < x->end && is_name_char(x->p[n])))
		return xml_fail(x, "mismatched end tag");
	x->p += n;
	while (x->p < x->end && is_ws(*x->p))
		x->p++;
	if (x->p >= x->end || *x->p != '>')
		return xml_fail(x, "unterminated end tag");
	x->p++;
	return 0;
}

/* Character data up to the next '<', entities decoded, surrounding whitespace trimmed. */
static int
xml_text(struct xml *x, char out[XML_TEXT_MAX + 1])
{
	static const struct {
		const char *name;
		char c;
	} entities[] = {
		{"&quot;", '"'}, {"&#34;", '"'}, {"&#x22;", '"'}, {"&amp;", '&'},
		{"&apos;", '\''}, {"&lt;", '<'},  {"&gt;", '>'},
	};
	size_t n = 0;
	while (x->p < x->end && *x->p != '<') {
		char c = *x->p;
		size_t adv = 1;
		if (c == '&') {
			size_t i = 0;
			for (; i < sizeof(entities) / sizeof(entities[0]); i++) {
				if (xml_starts(x, entities[i].name))
					break;
			}
			if (i == sizeof(entities) / sizeof(entities[0]))
				return xml_fail(x, "unsupported entity");
			c = entities[i].c;
			adv = strlen(entities[i].name);
		}
		if (n >= XML_TEXT_MAX)
			return xml_fail(x, "element text too long");
		out[n++] = c;
		x->p += adv;
	}
	while (n > 0 && is_ws(out[n - 1]))
		n--;
	out[n] = '\0';
	size_t lead = 0;
	while (lead < n && is_ws(out[lead]))
		lead++;
	memmove(out, out + lead, n - lead + 1);
	return 0;
}

static int
hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* An ETag is the part's md5 hex, normally in double quotes. */
static int
parse_etag(const char *s, uint8_t md5[16])
{
	size_t n = strlen(s);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		s++;
		n -= 2;
	}
	if (n != 32)
		return -1;
	for (size_t i = 0; i < 16; i++) {
		int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		md5[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int
xml_part(struct xml *x, struct cove_blob_part *part)
{
	int have_number = 0, have_etag = 0;
	for (;;) {
		if (xml_skip_misc(x) < 0)
			return -1;
		if (xml_starts(x, "</"))
			break;
		char name[XML_NAME_MAX + 1];
		char text[XML_TEXT_MAX + 1];
		int empty = 0;
		if (xml_open_tag(x, name, &empty) < 0)
			return -1;
		text[0] = '\0';
		if (!empty && (xml_text(x, text) < 0 || xml_close_tag(x, name) < 0))
			return -1;
		if (strcmp(name, "PartNumber") == 0) {
			uint64_t v;
			if (have_number)
				return xml_fail(x, "a Part has two PartNumbers");
			if (parse_u64(text, strlen(text), &v) < 0 || v < 1 || v > COVE_BLOB_MAX_PARTS)
				return xml_fail(x, "PartNumber must be an integer from 1 to 10000");
			part->number = (int)v;
			have_number = 1;
		} else if (strcmp(name, "ETag") == 0) {
			if (have_etag)
				return xml_fail(x, "a Part has two ETags");
			if (parse_etag(text, part->md5) < 0)
				return xml_fail(x, "ETag must be a quoted md5 hex digest");
			have_etag = 1;
		}
		/* Anything else (ChecksumCRC32, ...) is allowed and ignored, as S3 would if unused. */
	}
	if (xml_close_tag(x, "Part") < 0)
		return -1;
	if (!have_number || !have_etag)
		return xml_fail(x, "each Part needs a PartNumber and an ETag");
	return 0;
}

int
cove_blob_http_parse_complete(const char *body, size_t len, struct cove_blob_part **parts_out, size_t *n_out,
			      struct cove_error **err)
{
	struct xml x = {.p = body, .end = body + len, .why = NULL};
	struct cove_blob_part *parts = NULL;
	size_t n = 0, cap = 0;
	char name[XML_NAME_MAX + 1];
	int empty = 0;
	if (xml_skip_misc(&x) < 0 || xml_open_tag(&x, name, &empty) < 0)
		goto fail;
	if (strcmp(name, "CompleteMultipartUpload") != 0) {
		xml_fail(&x, "the root element must be CompleteMultipartUpload");
		goto fail;
	}
	if (!empty) {
		for (;;) {
			if (xml_skip_misc(&x) < 0)
				goto fail;
			if (xml_starts(&x, "</"))
				break;
			if (xml_open_tag(&x, name, &empty) < 0)
				goto fail;
			if (strcmp(name, "Part") != 0 || empty) {
				xml_fail(&x, "CompleteMultipartUpload may only contain Part elements");
				goto fail;
			}
			if (n >= COVE_BLOB_MAX_PARTS) {
				xml_fail(&x, "more than 10000 parts");
				goto fail;
			}
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				parts = xrealloc(parts, cap * sizeof(*parts));
			}
			if (xml_part(&x, &parts[n]) < 0)
				goto fail;
			n++;
		}
		if (xml_close_tag(&x, "CompleteMultipartUpload") < 0)
			goto fail;
	}
	if (xml_skip_misc(&x) < 0)
		goto fail;
	if (x.p != x.end) {
		xml_fail(&x, "content after the root element");
		goto fail;
	}
	if (n == 0) {
		xml_fail(&x, "no parts listed");
		goto fail;
	}
	*parts_out = parts;
	*n_out = n;
	return 0;
fail:
	free(parts);
	return cove_error_set(err, COVE_INVALID_ARGUMENT, "malformed CompleteMultipartUpload: %s",
			      x.why ? x.why : "syntax error");
}
