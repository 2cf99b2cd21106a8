/* The blob HTTP/1.1 port on evhttp: S3's PUT/GET/multipart dialect, as far as modal's blob_utils uses it.
 * Everything here is network input: paths are matched exactly, ids validated before any path is built, and
 * the completion XML is parsed by a small bounded scanner rather than a general XML library. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "blob/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "blob/blobstore.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/log.h"

/* A completion body lists at most 10000 parts of ~70 bytes; anything much bigger is not a real client. */
#define COMPLETE_MAX_BODY (4u << 20)
/* Idle or stalled connections are dropped after this long (per read/write, not per request). */
#define HTTP_TIMEOUT_S 300
#define MAX_HEADERS_SIZE (64 << 10)

struct cove_blob_http {
	struct evhttp *http;
	struct evhttp_bound_socket *listener;
	struct cove_blobstore *bs;
	int port;
	char *base_url;
};

/* ---- replies ---- */

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

/* S3's error shape, so the client's "failed with status N: <text>" message carries something readable. */
static void
reply_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	evhttp_add_header(out, "Content-Type", "application/xml");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		/* evhttp would send a body even for HEAD; send none. */
		evhttp_send_reply(req, status, NULL, NULL);
		return;
	}
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		abort();
	evbuffer_add_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>", code);
	add_xml_escaped(b, msg);
	evbuffer_add_printf(b, "</Message></Error>\n");
	evhttp_send_reply(req, status, NULL, b);
	evbuffer_free(b);
}

/* Map a store error to HTTP: 503 makes the client sleep and retry, which is right for a full disk or EIO. */
static void
reply_store_error(struct evhttp_request *req, const struct cove_error *e, const char *invalid_code,
		  const char *missing_code)
{
	switch (e->code) {
	case COVE_INVALID_ARGUMENT:
		reply_error(req, 400, invalid_code, e->msg);
		return;
	case COVE_NOT_FOUND:
		reply_error(req, 404, missing_code, e->msg);
		return;
	case COVE_RESOURCE_EXHAUSTED:
	case COVE_UNAVAILABLE:
		log_warn("blob http: %s %s: %s", evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET" : "write",
			 evhttp_request_get_uri(req), e->msg);
		reply_error(req, 503, "ServiceUnavailable", e->msg);
		return;
	default:
		log_error("blob http: %s: %s", evhttp_request_get_uri(req), e->msg);
		reply_error(req, 500, "InternalError", e->msg);
		return;
	}
}

/* ---- request helpers ---- */

/* Content-MD5 is base64 of 16 bytes: exactly 24 characters ending in "==". */
static int
decode_md5_b64(const char *s, uint8_t out[16])
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
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

/* Drain the request body into the writer chain by chain: the body is never copied or linearized. */
static int
write_body(struct cove_blob_writer *w, struct evbuffer *in, struct cove_error **err)
{
	struct evbuffer_iovec vec[64];
	while (evbuffer_get_length(in) > 0) {
		int n = evbuffer_peek(in, -1, NULL, vec, 64);
		if (n <= 0)
			break;
		if (n > 64)
			n = 64;
		size_t total = 0;
		for (int i = 0; i < n; i++)
			total += vec[i].iov_len;
		/* evbuffer_iovec has struct iovec's layout on every Unix libevent supports. */
		if (cove_blob_writer_writev(w, (const struct iovec *)vec, n, err) < 0)
			return -1;
		evbuffer_drain(in, total);
	}
	return 0;
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

/* ---- handlers ---- */

enum route_kind { ROUTE_BLOB, ROUTE_PART, ROUTE_COMPLETE, N_ROUTE_KINDS };

typedef void (*handler_fn)(struct cove_blob_http *h, struct evhttp_request *req, const char *id, int part);

static void
handle_get(struct cove_blob_http *h, struct evhttp_request *req, const char *id, int part)
{
	(void)part;
	int fd = -1;
	uint64_t size = 0;
	struct cove_error *err = NULL;
	if (cove_blobstore_open_blob(h->bs, id, &fd, &size, &err) < 0) {
		reply_store_error(req, err, "InvalidArgument", "NoSuchKey");
		cove_error_free(err);
		return;
	}
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	uint64_t off = 0, len = size;
	int status = 200;
	const char *range = evhttp_find_header(evhttp_request_get_input_headers(req), "Range");
	if (range) {
		int r = parse_range(range, size, &off, &len);
		if (r < 0) {
			close(fd);
			char cr[48];
			snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
			evhttp_add_header(out, "Content-Range", cr);
			reply_error(req, 416, "InvalidRange", "The requested range is not satisfiable");
			return;
		}
		if (r > 0) {
			status = 206;
			char cr[80];
			snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)off,
				 (unsigned long long)(off + len - 1), (unsigned long long)size);
			evhttp_add_header(out, "Content-Range", cr);
		}
	}
	char cl[24];
	snprintf(cl, sizeof(cl), "%llu", (unsigned long long)len);
	evhttp_add_header(out, "Content-Type", "application/octet-stream");
	evhttp_add_header(out, "Accept-Ranges", "bytes");
	/* Set explicitly: evhttp leaves it out for HEAD. */
	evhttp_add_header(out, "Content-Length", cl);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || len == 0) {
		close(fd);
		evhttp_send_reply(req, status, NULL, NULL);
		return;
	}
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		abort();
	/* A file segment in a buffer that only ever drains to a socket becomes a sendfile chain (any other buffer
	 * would mmap or read the file), and evhttp moves chains to the connection whole: a big blob is never read
	 * into memory. The segment owns fd from here on. */
	evbuffer_set_flags(b, EVBUFFER_FLAG_DRAINS_TO_FD);
	if (evbuffer_add_file(b, fd, (ev_off_t)off, (ev_off_t)len) < 0) {
		close(fd);
		evbuffer_free(b);
		evhttp_remove_header(out, "Content-Length");
		evhttp_remove_header(out, "Content-Range");
		evhttp_remove_header(out, "Content-Type");
		log_error("blob http: GET %s: cannot queue the file", id);
		reply_error(req, 500, "InternalError", "cannot send the blob");
		return;
	}
	evhttp_send_reply(req, status, NULL, b);
	evbuffer_free(b);
}

static void
handle_put(struct cove_blob_http *h, struct evhttp_request *req, const char *id, int part)
{
	uint8_t expect[16];
	const uint8_t *expectp = NULL;
	const char *content_md5 = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-MD5");
	if (content_md5) {
		if (decode_md5_b64(content_md5, expect) < 0) {
			reply_error(req, 400, "InvalidDigest", "The Content-MD5 you specified is not valid.");
			return;
		}
		expectp = expect;
	}
	struct cove_error *err = NULL;
	struct cove_blob_writer *w = part > 0 ? cove_blobstore_part_writer(h->bs, id, part, &err)
					      : cove_blobstore_blob_writer(h->bs, id, &err);
	uint8_t md5[16];
	if (w == NULL || write_body(w, evhttp_request_get_input_buffer(req), &err) < 0 ||
	    cove_blob_writer_commit(steal_pointer(&w), expectp, md5, &err) < 0) {
		cove_blob_writer_abort(w);
		reply_store_error(req, err, expectp ? "BadDigest" : "InvalidArgument", "NoSuchKey");
		cove_error_free(err);
		return;
	}
	char etag[35];
	etag[0] = '"';
	cove_hex(md5, 16, etag + 1);
	etag[33] = '"';
	etag[34] = '\0';
	evhttp_add_header(evhttp_request_get_output_headers(req), "ETag", etag);
	evhttp_send_reply(req, 200, NULL, NULL);
}

static void
handle_complete(struct cove_blob_http *h, struct evhttp_request *req, const char *id, int part)
{
	(void)part;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	if (len > COMPLETE_MAX_BODY) {
		reply_error(req, 400, "MaxMessageLengthExceeded", "the CompleteMultipartUpload body is too large");
		return;
	}
	/* Small by the check above, so one contiguous copy is fine. */
	const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
	if (body == NULL) {
		reply_error(req, 503, "ServiceUnavailable", "out of memory");
		return;
	}
	struct cove_error *err = NULL;
	cleanup_free struct cove_blob_part *parts = NULL;
	size_t n = 0;
	if (cove_blob_http_parse_complete(body, len, &parts, &n, &err) < 0) {
		reply_error(req, 400, "MalformedXML", err->msg);
		cove_error_free(err);
		return;
	}
	char etag[COVE_BLOB_ETAG_MAX];
	if (cove_blobstore_complete_multipart(h->bs, id, parts, n, etag, &err) < 0) {
		reply_store_error(req, err, "InvalidPart", "NoSuchUpload");
		cove_error_free(err);
		return;
	}
	cleanup_free char *location = cove_blob_http_url(h, id);
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		abort();
	evbuffer_add_printf(b,
			    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			    "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			    "<Location>");
	add_xml_escaped(b, location);
	evbuffer_add_printf(b, "</Location><Bucket>cove</Bucket><Key>%s</Key><ETag>&quot;%s&quot;</ETag>"
			       "</CompleteMultipartUploadResult>\n",
			    id, etag);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/xml");
	evhttp_send_reply(req, 200, NULL, b);
	evbuffer_free(b);
}

/* ---- volume blocks: /block/<sha256 hex> ---- */

/* The v2 client PUTs a block's bytes (trailing zeros stripped) to the put_url VolumePutFiles2 gave it; the body of
 * our answer is opaque to it and comes back as put_response, so it is the block's name. */
static void
handle_block_put(struct cove_blob_http *h, struct evhttp_request *req, const uint8_t hash[COVE_BLOCK_HASH])
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	if (len > COVE_BLOCK_SIZE) {
		reply_error(req, 413, "EntityTooLarge", "a block holds at most 8 MiB");
		return;
	}
	/* The body is already in memory (evhttp); its chains become the iovecs. */
	int n = evbuffer_peek(in, -1, NULL, NULL, 0);
	struct evbuffer_iovec *vec = xcalloc((size_t)(n > 0 ? n : 1), sizeof(*vec));
	if (n > 0)
		evbuffer_peek(in, -1, NULL, vec, n);
	struct cove_error *err = NULL;
	int rc = cove_blobstore_block_writev(h->bs, hash, (const struct iovec *)vec, n > 0 ? n : 0, &err);
	free(vec);
	if (rc < 0) {
		reply_store_error(req, err, "BadDigest", "NoSuchKey");
		cove_error_free(err);
		return;
	}
	evbuffer_drain(in, len);
	char hex[2 * COVE_BLOCK_HASH + 1];
	cove_hex(hash, COVE_BLOCK_HASH, hex);
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		abort();
	evbuffer_add(b, hex, 2 * COVE_BLOCK_HASH);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	evhttp_send_reply(req, 200, NULL, b);
	evbuffer_free(b);
}

/* Query parameters of a block GET: off and len (a slice of the block as the file holds it, zeros included) and
 * pad=1 (send the zeros the stored block leaves out; clients that pad blocks themselves leave it off). */
static int
block_query(struct evhttp_request *req, uint64_t *off, uint64_t *len, int *pad)
{
	*off = 0;
	*len = COVE_BLOCK_SIZE;
	*pad = 0;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
	if (q == NULL || *q == '\0')
		return 0;
	struct evkeyvalq params;
	TAILQ_INIT(&params);
	if (evhttp_parse_query_str(q, &params) < 0)
		return -1;
	int rv = 0;
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, &params, next)
	{
		uint64_t v;
		if (parse_u64(kv->value, strlen(kv->value), &v) < 0) {
			rv = -1;
			break;
		}
		if (strcmp(kv->key, "off") == 0)
			*off = v;
		else if (strcmp(kv->key, "len") == 0)
			*len = v;
		else if (strcmp(kv->key, "pad") == 0)
			*pad = v != 0;
		else
			rv = -1;
	}
	evhttp_clear_headers(&params);
	if (rv == 0 && (*off > COVE_BLOCK_SIZE || *len > COVE_BLOCK_SIZE - *off))
		rv = -1;
	return rv;
}

static const uint8_t zeros64k[64 << 10];

static void
handle_block_get(struct cove_blob_http *h, struct evhttp_request *req, const uint8_t hash[COVE_BLOCK_HASH])
{
	uint64_t off, want;
	int pad;
	if (block_query(req, &off, &want, &pad) < 0) {
		reply_error(req, 400, "InvalidArgument", "block query must be off=N&len=N&pad=0|1 within 8 MiB");
		return;
	}
	int fd = -1;
	uint64_t stored = 0;
	struct cove_error *err = NULL;
	if (cove_blobstore_block_open(h->bs, hash, &fd, &stored, &err) < 0) {
		reply_store_error(req, err, "InvalidArgument", "NoSuchKey");
		cove_error_free(err);
		return;
	}
	/* What the block stores of the slice, then (pad) the zeros after it. */
	uint64_t from_file = off >= stored ? 0 : (stored - off < want ? stored - off : want);
	uint64_t zeros = pad ? want - from_file : 0;
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	char cl[24];
	snprintf(cl, sizeof(cl), "%llu", (unsigned long long)(from_file + zeros));
	evhttp_add_header(out, "Content-Type", "application/octet-stream");
	evhttp_add_header(out, "Content-Length", cl);
	if (off == 0 && from_file == stored && zeros == 0) {
		/* The whole stored block: its name is the sha256 of the body, which the client checks (RFC 9530). */
		static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		char digest[64] = "sha-256=:";
		size_t o = strlen(digest);
		for (size_t i = 0; i < COVE_BLOCK_HASH; i += 3) {
			uint32_t v = (uint32_t)hash[i] << 16 | (i + 1 < COVE_BLOCK_HASH ? (uint32_t)hash[i + 1] << 8 : 0) |
				     (i + 2 < COVE_BLOCK_HASH ? hash[i + 2] : 0);
			digest[o++] = b64[(v >> 18) & 63];
			digest[o++] = b64[(v >> 12) & 63];
			digest[o++] = i + 1 < COVE_BLOCK_HASH ? b64[(v >> 6) & 63] : '=';
			digest[o++] = i + 2 < COVE_BLOCK_HASH ? b64[v & 63] : '=';
		}
		digest[o++] = ':';
		digest[o] = '\0';
		evhttp_add_header(out, "Repr-Digest", digest);
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || from_file + zeros == 0) {
		if (fd >= 0)
			close(fd);
		evhttp_send_reply(req, 200, NULL, NULL);
		return;
	}
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		abort();
	evbuffer_set_flags(b, EVBUFFER_FLAG_DRAINS_TO_FD);
	if (from_file > 0) {
		/* The segment owns fd from here on. */
		if (evbuffer_add_file(b, fd, (ev_off_t)off, (ev_off_t)from_file) < 0) {
			close(fd);
			evbuffer_free(b);
			evhttp_remove_header(out, "Content-Length");
			evhttp_remove_header(out, "Content-Type");
			evhttp_remove_header(out, "Repr-Digest");
			reply_error(req, 500, "InternalError", "cannot send the block");
			return;
		}
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	for (uint64_t left = zeros; left > 0;) {
		size_t n = left < sizeof(zeros64k) ? (size_t)left : sizeof(zeros64k);
		evbuffer_add_reference(b, zeros64k, n, NULL, NULL);
		left -= n;
	}
	evhttp_send_reply(req, 200, NULL, b);
	evbuffer_free(b);
}

/* "/block/<64 hex>": 1 (hash filled), 0 (not a block path), -1 (a block path with a bad name). */
static int
parse_block_path(const char *path, uint8_t hash[COVE_BLOCK_HASH])
{
	static const char prefix[] = "/block/";
	if (path == NULL || strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	return cove_block_hash_parse(path + sizeof(prefix) - 1, hash) < 0 ? -1 : 1;
}

static void
handle_block(struct cove_blob_http *h, struct evhttp_request *req, const uint8_t hash[COVE_BLOCK_HASH])
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
	case EVHTTP_REQ_HEAD:
		handle_block_get(h, req, hash);
		return;
	case EVHTTP_REQ_PUT:
		handle_block_put(h, req, hash);
		return;
	default:
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD, PUT");
		reply_error(req, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
	}
}

/* Dispatch table: (path kind, method) -> handler. A known path with an unlisted method is 405. */
static const struct route {
	enum route_kind kind;
	enum evhttp_cmd_type method;
	handler_fn fn;
} routes[] = {
	{ROUTE_BLOB, EVHTTP_REQ_GET, handle_get},
	{ROUTE_BLOB, EVHTTP_REQ_HEAD, handle_get},
	{ROUTE_BLOB, EVHTTP_REQ_PUT, handle_put},
	{ROUTE_PART, EVHTTP_REQ_PUT, handle_put},
	{ROUTE_COMPLETE, EVHTTP_REQ_POST, handle_complete},
};
static const char *const route_allow[N_ROUTE_KINDS] = {
	[ROUTE_BLOB] = "GET, HEAD, PUT",
	[ROUTE_PART] = "PUT",
	[ROUTE_COMPLETE] = "POST",
};

/* "/blob/<id>", "/blob/<id>/part/<n>", "/blob/<id>/complete". 0 (id, kind, part filled), 404 or 400. */
static int
parse_path(const char *path, char id[80], enum route_kind *kind, int *part, const char **why)
{
	static const char prefix[] = "/blob/";
	*part = 0;
	if (path == NULL || strncmp(path, prefix, sizeof(prefix) - 1) != 0) {
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
	if (n >= 80) {
		*why = "invalid blob id";
		return 400;
	}
	memcpy(id, p, n);
	id[n] = '\0';
	if (!cove_blobstore_valid_id(id)) {
		*why = "invalid blob id";
		return 400;
	}
	const char *rest = p + n;
	if (*rest == '\0') {
		*kind = ROUTE_BLOB;
		return 0;
	}
	if (strcmp(rest, "/complete") == 0) {
		*kind = ROUTE_COMPLETE;
		return 0;
	}
	if (strncmp(rest, "/part/", 6) == 0) {
		uint64_t v;
		if (parse_u64(rest + 6, strlen(rest + 6), &v) < 0 || v < 1 || v > COVE_BLOB_MAX_PARTS) {
			*why = "invalid part number";
			return 400;
		}
		*kind = ROUTE_PART;
		*part = (int)v;
		return 0;
	}
	*why = "no such resource";
	return 404;
}

static void
handle_request(struct evhttp_request *req, void *arg)
{
	struct cove_blob_http *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	uint8_t hash[COVE_BLOCK_HASH];
	int is_block = parse_block_path(path, hash);
	if (is_block < 0) {
		reply_error(req, 400, "InvalidArgument", "a block is named by the 64 hex digits of its sha256");
		return;
	}
	if (is_block > 0) {
		handle_block(h, req, hash);
		return;
	}
	char id[80];
	enum route_kind kind;
	int part;
	const char *why = NULL;
	int status = parse_path(path, id, &kind, &part, &why);
	if (status == 404) {
		reply_error(req, 404, "NoSuchKey", why);
		return;
	}
	if (status == 400) {
		reply_error(req, 400, "InvalidArgument", why);
		return;
	}
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (routes[i].kind == kind && routes[i].method == method) {
			routes[i].fn(h, req, id, part);
			return;
		}
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", route_allow[kind]);
	reply_error(req, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
}

/* ---- server ---- */

/* Connections get bigger writes than bufferevent's 16 KiB default, so a sendfile'd blob goes out in fewer
 * loop iterations. */
#define MAX_SINGLE_WRITE (4 << 20)

static struct bufferevent *
make_bufferevent(struct event_base *base, void *arg)
{
	(void)arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev != NULL)
		bufferevent_set_max_single_write(bev, MAX_SINGLE_WRITE);
	return bev;
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
	h->bs = bs;
	h->http = evhttp_new(base);
	if (h->http == NULL)
		abort();
	/* Every method reaches our dispatcher so that a wrong one gets 405, not evhttp's 501. */
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
						    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(h->http, (ev_ssize_t)COVE_BLOB_HTTP_MAX_BODY);
	evhttp_set_max_headers_size(h->http, MAX_HEADERS_SIZE);
	evhttp_set_timeout(h->http, HTTP_TIMEOUT_S);
	evhttp_set_default_content_type(h->http, "application/octet-stream");
	evhttp_set_gencb(h->http, handle_request, h);
	evhttp_set_bevcb(h->http, make_bufferevent, NULL);

	errno = 0;
	h->listener = evhttp_bind_socket_with_handle(h->http, address, (ev_uint16_t)port);
	if (h->listener == NULL) {
		int e = errno;
		cove_error_set(err, COVE_UNAVAILABLE, "bind blob HTTP port %s:%d: %s", address, port,
			       e ? strerror(e) : "failed");
		cove_blob_http_free(h);
		return NULL;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(evhttp_bound_socket_get_fd(h->listener), (struct sockaddr *)&ss, &sl) < 0) {
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
	evhttp_set_max_body_size(h->http, max_body > (size_t)INT64_MAX ? -1 : (ev_ssize_t)max_body);
}

void
cove_blob_http_free(struct cove_blob_http *h)
{
	if (h == NULL)
		return;
	if (h->http)
		evhttp_free(h->http);
	free(h->base_url);
	free(h);
}

char *
cove_blob_http_url(const struct cove_blob_http *h, const char *id)
{
	return xasprintf("%s/blob/%s", h->base_url, id);
}

char *
cove_blob_http_part_url(const struct cove_blob_http *h, const char *id, int part_number)
{
	return xasprintf("%s/blob/%s/part/%d", h->base_url, id, part_number);
}

char *
cove_blob_http_complete_url(const struct cove_blob_http *h, const char *id)
{
	return xasprintf("%s/blob/%s/complete", h->base_url, id);
}

char *
cove_blob_http_block_url(const struct cove_blob_http *h, const uint8_t hash[32])
{
	char hex[65];
	cove_hex(hash, 32, hex);
	return xasprintf("%s/block/%s", h->base_url, hex);
}

char *
cove_blob_http_block_slice_url(const struct cove_blob_http *h, const uint8_t hash[32], uint64_t off, uint64_t len,
			       int pad)
{
	char hex[65];
	cove_hex(hash, 32, hex);
	return xasprintf("%s/block/%s?off=%llu&len=%llu%s", h->base_url, hex, (unsigned long long)off,
			 (unsigned long long)len, pad ? "&pad=1" : "");
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
