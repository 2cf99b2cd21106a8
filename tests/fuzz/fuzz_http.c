/* libFuzzer target: the web gateway's HTTP/1.1 parsing and WebSocket framing (src/util/http_parse.c,
 * src/gateway/ws.c), and the scope a parsed request becomes (src/gateway/asgi.c, src/util/pickle.c).
 * Input: byte 0 picks what to feed, byte 1 a split point for incremental feeding, the rest is the client's
 * bytes. Invariants are checked with abort(): an incremental parse agrees with a whole one, decoded data
 * stays inside the input, and every request head that parses yields a function input that unpacks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gateway_internal.h"
#include "util/http_parse.h"
#include "gateway/ws.h"
#include "util/pb.h"

static void
fuzz_head(const uint8_t *data, size_t size, size_t split)
{
	struct cove_http_request req, req2;
	int rv = cove_http_parse_head((const char *)data, size, &req);
	/* A prefix never completes a head the whole input refuses, and never refuses what the whole accepts. */
	if (split < size) {
		int pre = cove_http_parse_head((const char *)data, split, &req2);
		if (rv > 0 && pre < 0)
			abort();
		if (pre > 0 && pre != rv)
			abort();
	}
	if (rv <= 0)
		return;
	if ((size_t)rv > size || req.n_headers > COVE_HTTP_MAX_HEADERS)
		abort();
	int kind;
	uint64_t len;
	(void)cove_http_body_framing(&req, &kind, &len);
	size_t count;
	const struct cove_http_header *h = cove_http_header_find(&req, "connection", &count);
	if (h)
		(void)cove_http_list_has(h->value, h->value_len, "close");
	/* The scope of this request, whatever its target. */
	const char *q = memchr(req.target, '?', req.target_len);
	size_t plen = q ? (size_t)(q - req.target) : req.target_len;
	struct cove_asgi_request ar = {
		.websocket = (int)(split & 1),
		.req = &req,
		.raw_path = req.target,
		.raw_path_len = plen,
		.query = q ? q + 1 : "",
		.query_len = q ? req.target_len - plen - 1 : 0,
		.root_path = "",
		.client_host = "127.0.0.1",
		.client_port = 1,
		.server_host = "127.0.0.1",
		.server_port = 2,
		.strip_proxy_auth = (int)(split & 2),
	};
	size_t in_len;
	uint8_t *input = cove_asgi_function_input(&ar, (split & 4) ? "m" : NULL, &in_len);
	Modal__Client__FunctionInput *in = pb_unpack(&modal__client__function_input__descriptor, input, in_len);
	if (in == NULL)
		abort();
	pb_free(in);
	free(input);
}

static void
fuzz_chunked(const uint8_t *data, size_t size, size_t split)
{
	/* Whole, then in two pieces: the same body and the same end. */
	uint8_t *a = malloc(size + 1), *b = malloc(size + 1);
	size_t na = 0, nb = 0;
	int ok_a = 1, ok_b = 1;
	struct cove_http_chunked d = {0};
	size_t pos = 0;
	while (pos < size && !d.done) {
		size_t off, dl;
		ssize_t used = cove_http_chunked_feed(&d, data + pos, size - pos, &off, &dl);
		if (used < 0) {
			ok_a = 0;
			break;
		}
		if (off + dl > (size_t)used || (size_t)used > size - pos)
			abort();
		memcpy(a + na, data + pos + off, dl);
		na += dl;
		pos += (size_t)used;
	}
	int done_a = d.done;
	size_t end_a = pos;
	struct cove_http_chunked e = {0};
	pos = 0;
	size_t limit = split < size ? split : size;
	for (int part = 0; part < 2 && ok_b && !e.done; part++) {
		size_t stop = part == 0 ? limit : size;
		while (pos < stop && !e.done) {
			size_t off, dl;
			ssize_t used = cove_http_chunked_feed(&e, data + pos, stop - pos, &off, &dl);
			if (used < 0) {
				ok_b = 0;
				break;
			}
			memcpy(b + nb, data + pos + off, dl);
			nb += dl;
			pos += (size_t)used;
		}
	}
	if (ok_a != ok_b || (ok_a && (done_a != e.done || na != nb || memcmp(a, b, na) != 0 || end_a != pos)))
		abort();
	free(a);
	free(b);
}

static void
fuzz_ws(const uint8_t *data, size_t size)
{
	struct cove_ws_frame f;
	int rv = cove_ws_parse_header(data, size, &f);
	if (rv > 0) {
		if ((size_t)rv > size || (size_t)rv != f.header_len || f.payload_len >> 63)
			abort();
		size_t avail = size - (size_t)rv;
		size_t n = f.payload_len < avail ? (size_t)f.payload_len : avail;
		uint8_t *p = malloc(n + 1);
		memcpy(p, data + rv, n);
		cove_ws_unmask(p, n, f.mask, 0);
		if (f.opcode == COVE_WS_CLOSE) {
			int code;
			size_t off, len;
			if (cove_ws_parse_close(p, n, &code, &off, &len) == 0 && off + len > n)
				abort();
		}
		(void)cove_ws_utf8_valid(p, n);
		free(p);
	}
	char accept[29];
	cove_ws_accept_key((const char *)data, size, accept);
	(void)cove_ws_key_valid((const char *)data, size);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int mode = data[0] % 3;
	size_t split = data[1];
	data += 2;
	size -= 2;
	switch (mode) {
	case 0: fuzz_head(data, size, split); break;
	case 1: fuzz_chunked(data, size, split); break;
	case 2: fuzz_ws(data, size); break;
	}
	return 0;
}
