/* HTTP/1.1 request parsing for the web gateway and the blob port (see http_parse.h). Everything here reads
 * network input, so every index is checked against the length before use and nothing recurses or allocates. */
#include "util/http_parse.h"

#include <string.h>
#include <strings.h>

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static int
is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int
cove_http_is_token(const char *s, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!is_tchar((unsigned char)s[i]))
			return 0;
	return 1;
}

int
cove_http_is_field_value(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

/* The next line of buf[pos..len): its content is [pos, *end), the line break ends at *next. 0 if there is no
 * complete line yet, -1 for a CR not followed by LF. */
static int
next_line(const char *buf, size_t len, size_t pos, size_t *end, size_t *next)
{
	for (size_t i = pos; i < len; i++) {
		if (buf[i] == '\n') {
			*end = i;
			*next = i + 1;
			return 1;
		}
		if (buf[i] == '\r') {
			if (i + 1 >= len)
				return 0;
			if (buf[i + 1] != '\n')
				return -1;
			*end = i;
			*next = i + 2;
			return 1;
		}
	}
	return 0;
}

static int
parse_request_line(const char *line, size_t n, struct cove_http_request *req)
{
	const char *sp1 = memchr(line, ' ', n);
	if (sp1 == NULL)
		return -400;
	size_t mlen = (size_t)(sp1 - line);
	if (!cove_http_is_token(line, mlen))
		return -400;
	const char *target = sp1 + 1;
	size_t rest = n - mlen - 1;
	const char *sp2 = memchr(target, ' ', rest);
	if (sp2 == NULL)
		return -400;
	size_t tlen = (size_t)(sp2 - target);
	if (tlen == 0)
		return -400;
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)target[i];
		/* Visible ASCII only: a space, a control or a raw non-ASCII byte is not a valid request-target. */
		if (c <= 0x20 || c >= 0x7f)
			return -400;
	}
	const char *version = sp2 + 1;
	size_t vlen = n - mlen - 1 - tlen - 1;
	if (vlen != 8 || memcmp(version, "HTTP/", 5) != 0 || version[6] != '.')
		return -400;
	if (version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
		return -400;
	if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
		return -505;
	req->method = line;
	req->method_len = mlen;
	req->target = target;
	req->target_len = tlen;
	req->version_minor = version[7] - '0';
	return 0;
}

static int
parse_header_line(const char *line, size_t n, struct cove_http_request *req)
{
	if (n > 0 && (line[0] == ' ' || line[0] == '\t'))
		return -400; /* obs-fold */
	const char *colon = memchr(line, ':', n);
	if (colon == NULL)
		return -400;
	size_t nlen = (size_t)(colon - line);
	if (!cove_http_is_token(line, nlen))
		return -400; /* includes whitespace before the colon */
	const char *v = colon + 1;
	size_t vlen = n - nlen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (!cove_http_is_field_value(v, vlen))
		return -400;
	if (req->n_headers == COVE_HTTP_MAX_HEADERS)
		return -431;
	struct cove_http_header *h = &req->headers[req->n_headers++];
	h->name = line;
	h->name_len = nlen;
	h->value = v;
	h->value_len = vlen;
	return 0;
}

int
cove_http_parse_head(const char *buf, size_t len, struct cove_http_request *req)
{
	size_t pos = 0, end, next;
	int rv;
	req->n_headers = 0;
	req->head_len = 0;
	/* Empty lines before the request line are ignored (RFC 9112 section 2.2). */
	for (;;) {
		rv = next_line(buf, len, pos, &end, &next);
		if (rv < 0)
			return -400;
		if (rv == 0)
			goto incomplete;
		if (end != pos)
			break;
		pos = next;
		if (pos > COVE_HTTP_MAX_HEAD)
			return -431;
	}
	if (end - pos > COVE_HTTP_MAX_HEAD)
		return -431;
	if ((rv = parse_request_line(buf + pos, end - pos, req)) < 0)
		return rv;
	pos = next;
	for (;;) {
		rv = next_line(buf, len, pos, &end, &next);
		if (rv < 0)
			return -400;
		if (rv == 0)
			goto incomplete;
		if (next > COVE_HTTP_MAX_HEAD)
			return -431;
		if (end == pos) {
			req->head_len = next;
			return (int)next;
		}
		if ((rv = parse_header_line(buf + pos, end - pos, req)) < 0)
			return rv;
		pos = next;
	}
incomplete:
	return len >= COVE_HTTP_MAX_HEAD ? -431 : 0;
}

const struct cove_http_header *
cove_http_header_find(const struct cove_http_request *req, const char *name, size_t *count)
{
	size_t n = strlen(name), found = 0;
	const struct cove_http_header *first = NULL;
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct cove_http_header *h = &req->headers[i];
		if (h->name_len == n && strncasecmp(h->name, name, n) == 0) {
			if (first == NULL)
				first = h;
			found++;
		}
	}
	if (count)
		*count = found;
	return first;
}

int
cove_http_list_has(const char *value, size_t len, const char *token)
{
	size_t tlen = strlen(token);
	size_t i = 0;
	while (i < len) {
		while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		size_t start = i;
		while (i < len && value[i] != ',')
			i++;
		size_t end = i;
		while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
			end--;
		if (end - start == tlen && strncasecmp(value + start, token, tlen) == 0)
			return 1;
	}
	return 0;
}

/* A Content-Length value: 1*DIGIT, at most 2^62. A list of equal values ("5, 5") is accepted (RFC 9110). */
static int
parse_length(const char *v, size_t n, uint64_t *out)
{
	int have = 0;
	uint64_t value = 0;
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i == n)
			return -1;
		uint64_t x = 0;
		size_t digits = 0;
		while (i < n && v[i] >= '0' && v[i] <= '9') {
			if (x > ((uint64_t)1 << 62) / 10)
				return -1;
			x = x * 10 + (uint64_t)(v[i] - '0');
			digits++;
			i++;
		}
		if (digits == 0 || x > ((uint64_t)1 << 62))
			return -1;
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i < n && v[i] != ',')
			return -1;
		if (i < n)
			i++;
		if (have && x != value)
			return -1;
		value = x;
		have = 1;
	}
	if (!have)
		return -1;
	*out = value;
	return 0;
}

int
cove_http_body_framing(const struct cove_http_request *req, int *kind, uint64_t *length)
{
	int have_length = 0, have_te = 0;
	uint64_t len = 0;
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct cove_http_header *h = &req->headers[i];
		if (h->name_len == 14 && strncasecmp(h->name, "content-length", 14) == 0) {
			uint64_t x;
			if (parse_length(h->value, h->value_len, &x) < 0 || (have_length && x != len))
				return -400;
			len = x;
			have_length = 1;
		} else if (h->name_len == 17 && strncasecmp(h->name, "transfer-encoding", 17) == 0) {
			/* Only "chunked", once: any other coding (or chunked twice) is refused rather than guessed at. */
			if (have_te)
				return -400;
			const char *v = h->value;
			size_t n = h->value_len;
			if (!(n == 7 && strncasecmp(v, "chunked", 7) == 0))
				return cove_http_list_has(v, n, "chunked") ? -400 : -501;
			have_te = 1;
		}
	}
	if (have_te && have_length)
		return -400;
	if (have_te && req->version_minor == 0)
		return -400; /* HTTP/1.0 has no chunked coding */
	if (have_te) {
		*kind = COVE_HTTP_BODY_CHUNKED;
		*length = 0;
	} else if (have_length && len > 0) {
		*kind = COVE_HTTP_BODY_LENGTH;
		*length = len;
	} else {
		*kind = COVE_HTTP_BODY_NONE;
		*length = 0;
	}
	return 0;
}

enum {
	CH_SIZE,       /* hex digits of the chunk size */
	CH_EXT,        /* chunk extensions, up to the line end */
	CH_SIZE_LF,    /* after a CR in the size line */
	CH_DATA,       /* chunk data */
	CH_DATA_CR,    /* the CRLF after chunk data */
	CH_DATA_LF,    /* after its CR */
	CH_TRAILER,    /* a trailer line (or the final empty line) */
	CH_TRAILER_LF, /* after a CR in the trailer section */
	CH_DONE,
};

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The size line ended: data follows, or, for the last chunk, the trailer section. */
static void
size_line_done(struct cove_http_chunked *d)
{
	d->line = 0;
	d->line_bytes = 0;
	d->state = d->remaining ? CH_DATA : CH_TRAILER;
}

ssize_t
cove_http_chunked_feed(struct cove_http_chunked *d, const uint8_t *in, size_t len, size_t *data_off, size_t *data_len)
{
	size_t i = 0;
	*data_off = 0;
	*data_len = 0;
	while (i < len && d->state != CH_DONE) {
		unsigned char c = in[i];
		switch (d->state) {
		case CH_SIZE: {
			int h = hexval(c);
			if (h >= 0) {
				if (d->digits == 15)
					return -400; /* more than 2^60 bytes: nobody sends that */
				d->remaining = d->remaining * 16 + (uint64_t)h;
				d->digits++;
			} else if (d->digits == 0) {
				return -400;
			} else if (c == ';' || c == ' ' || c == '\t') {
				d->state = CH_EXT;
			} else if (c == '\r') {
				d->state = CH_SIZE_LF;
			} else if (c == '\n') {
				size_line_done(d);
			} else {
				return -400;
			}
			if (++d->line > COVE_HTTP_MAX_CHUNK_LINE)
				return -400;
			i++;
			break;
		}
		case CH_EXT:
			/* Extensions are ignored, but must be printable. */
			if (c == '\r')
				d->state = CH_SIZE_LF;
			else if (c == '\n')
				size_line_done(d);
			else if ((c < 0x20 && c != '\t') || c == 0x7f)
				return -400;
			if (++d->line > COVE_HTTP_MAX_CHUNK_LINE)
				return -400;
			i++;
			break;
		case CH_SIZE_LF:
			if (c != '\n')
				return -400;
			size_line_done(d);
			i++;
			break;
		case CH_DATA: {
			/* Hand out as much data as is here, and stop: the caller consumes it before feeding the rest. */
			size_t n = len - i;
			if ((uint64_t)n > d->remaining)
				n = (size_t)d->remaining;
			*data_off = i;
			*data_len = n;
			d->remaining -= n;
			i += n;
			if (d->remaining == 0)
				d->state = CH_DATA_CR;
			return (ssize_t)i;
		}
		case CH_DATA_CR:
			if (c == '\r')
				d->state = CH_DATA_LF;
			else if (c == '\n')
				d->state = CH_SIZE;
			else
				return -400;
			d->digits = 0;
			d->remaining = 0;
			d->line = 0;
			i++;
			break;
		case CH_DATA_LF:
			if (c != '\n')
				return -400;
			d->state = CH_SIZE;
			i++;
			break;
		case CH_TRAILER:
			/* Trailer fields are read and dropped; an empty line ends the body. */
			if (c == '\r' || c == '\n') {
				if (d->line_bytes == 0 && c == '\n') {
					d->state = CH_DONE;
				} else if (c == '\r') {
					d->state = CH_TRAILER_LF;
				} else {
					d->line_bytes = 0;
				}
			} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
				return -400;
			} else {
				d->line_bytes++;
			}
			if (++d->line > COVE_HTTP_MAX_TRAILERS)
				return -400;
			i++;
			break;
		case CH_TRAILER_LF:
			if (c != '\n')
				return -400;
			if (d->line_bytes == 0)
				d->state = CH_DONE;
			else
				d->state = CH_TRAILER;
			d->line_bytes = 0;
			i++;
			break;
		default:
			return -400;
		}
	}
	if (d->state == CH_DONE)
		d->done = 1;
	return (ssize_t)i;
}

const char *
cove_http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
