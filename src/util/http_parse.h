/* HTTP/1.1 parsing (RFC 9112) for the web gateway and the blob port, for requests only: the request head, the
 * body's framing, and the chunked transfer coding. Pure functions over byte buffers, no I/O and no allocation,
 * so that every byte a client can send is covered by the fuzz target tests/fuzz/fuzz_http.c.
 *
 * Strict where leniency lets two parsers disagree (request smuggling): a bare CR, whitespace before a colon,
 * folded header lines, both Content-Length and Transfer-Encoding, conflicting Content-Lengths, codings other
 * than "chunked", and control characters in names or values are all refused. A single LF is accepted as a
 * line end (RFC 9112 section 2.2), and empty lines before the request line are skipped. */
#ifndef COVE_UTIL_HTTP_PARSE_H
#define COVE_UTIL_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Limits (documented in README.md, "Web endpoints"). */
#define COVE_HTTP_MAX_HEAD (64 * 1024) /* request line + headers; 431 beyond */
#define COVE_HTTP_MAX_HEADERS 100      /* header fields; 431 beyond */
#define COVE_HTTP_MAX_CHUNK_LINE 4096  /* a chunk-size line with its extensions; 400 beyond */
#define COVE_HTTP_MAX_TRAILERS 8192    /* the trailer section of a chunked body (discarded); 400 beyond */

struct cove_http_header {
	const char *name; /* as sent (compare case-insensitively) */
	size_t name_len;
	const char *value; /* without surrounding whitespace */
	size_t value_len;
};

struct cove_http_request {
	const char *method;
	size_t method_len;
	const char *target; /* request-target as sent */
	size_t target_len;
	int version_minor; /* HTTP/1.<minor>: 0 or 1 */
	struct cove_http_header headers[COVE_HTTP_MAX_HEADERS];
	size_t n_headers;
	size_t head_len; /* bytes of the head, blank line (and skipped leading empty lines) included */
};

/* Parse a request head at the start of buf[0..len). Pointers in req point into buf.
 * Returns the head's length (> 0) when it is complete, 0 when more bytes are needed (and what there is so
 * far is valid; the caller answers 431 once COVE_HTTP_MAX_HEAD bytes have not completed a head), or
 * -status for a head that can never be valid: -400 (malformed), -431 (too many header fields, or a head
 * longer than COVE_HTTP_MAX_HEAD), -505 (an HTTP version other than 1.0 and 1.1). */
int cove_http_parse_head(const char *buf, size_t len, struct cove_http_request *req);

/* The first header field named `name` (case-insensitive), or NULL; *count (may be NULL) gets how many there
 * are. */
const struct cove_http_header *cove_http_header_find(const struct cove_http_request *req, const char *name,
						      size_t *count);
/* 1 if a comma-separated header list (e.g. Connection: keep-alive, Upgrade) has the token (case-insensitive). */
int cove_http_list_has(const char *value, size_t len, const char *token);

enum { COVE_HTTP_BODY_NONE, COVE_HTTP_BODY_LENGTH, COVE_HTTP_BODY_CHUNKED };
/* How the request's body is framed: *kind and, for BODY_LENGTH, *length. 0, or -400 (conflicting or
 * malformed Content-Length / Transfer-Encoding), -501 (a transfer coding other than chunked). */
int cove_http_body_framing(const struct cove_http_request *req, int *kind, uint64_t *length);

/* Incremental decoder of the chunked transfer coding. Zero-initialize before the first call. */
struct cove_http_chunked {
	int state;
	uint64_t remaining; /* data bytes left in the current chunk */
	size_t line;        /* bytes of the current size line or trailer section seen */
	int digits;         /* hex digits of the size so far */
	int line_bytes;     /* bytes on the current trailer line */
	int done;           /* the last chunk and the trailer section have been consumed */
};
/* Consume from in[0..len). Returns the number of bytes consumed (which may be less than len: call again with
 * the rest), or -400 for a malformed body. When *data_len > 0, in[*data_off .. *data_off + *data_len) is body
 * data (within what was consumed). d->done is set once the body has ended; bytes after it are not consumed. */
ssize_t cove_http_chunked_feed(struct cove_http_chunked *d, const uint8_t *in, size_t len, size_t *data_off,
			       size_t *data_len);

/* The reason phrase of a status code ("Not Found"); "Unknown" for codes it does not name. */
const char *cove_http_reason(int status);
/* 1 if s[0..len) is an RFC 9110 token (a header name, a method). */
int cove_http_is_token(const char *s, size_t len);
/* 1 if s[0..len) may be sent as a header value: no CR, LF, NUL or other control character but HTAB. */
int cove_http_is_field_value(const char *s, size_t len);

#endif
