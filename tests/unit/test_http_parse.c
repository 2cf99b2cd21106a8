/* The web gateway's HTTP/1.1 request parsing (src/util/http_parse.c) and WebSocket framing
 * (src/gateway/ws.c): valid requests, every refusal, incremental input, and the chunked coding fed in every
 * split. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/http_parse.h"
#include "gateway/ws.h"
#include "util/alloc.h"

static int
parse(const char *s, struct cove_http_request *req)
{
	return cove_http_parse_head(s, strlen(s), req);
}

static void
test_head_valid(void **state)
{
	(void)state;
	struct cove_http_request req;
	const char *s = "GET /path?q=1 HTTP/1.1\r\nHost: a.localhost:8000\r\nX-Empty:\r\n"
			"X-Pad: \t value with  spaces \t\r\n\r\nBODY";
	int n = parse(s, &req);
	assert_int_equal(n, (int)(strstr(s, "BODY") - s));
	assert_int_equal(req.method_len, 3);
	assert_memory_equal(req.method, "GET", 3);
	assert_int_equal(req.target_len, 9);
	assert_memory_equal(req.target, "/path?q=1", 9);
	assert_int_equal(req.version_minor, 1);
	assert_int_equal(req.n_headers, 3);
	assert_int_equal(req.headers[1].value_len, 0);
	assert_int_equal(req.headers[2].value_len, 18);
	assert_memory_equal(req.headers[2].value, "value with  spaces", 18);
	size_t count;
	const struct cove_http_header *h = cove_http_header_find(&req, "HOST", &count);
	assert_non_null(h);
	assert_int_equal(count, 1);
	assert_memory_equal(h->value, "a.localhost:8000", 16);
	assert_null(cove_http_header_find(&req, "missing", &count));
	assert_int_equal(count, 0);

	/* Bare LF line ends, leading empty lines, HTTP/1.0, any token as a method. */
	assert_true(parse("\r\n\nPURGE / HTTP/1.0\nA: b\n\n", &req) > 0);
	assert_int_equal(req.version_minor, 0);
	assert_memory_equal(req.method, "PURGE", 5);
	assert_int_equal(req.n_headers, 1);
}

static void
test_head_value_trailing_whitespace(void **state)
{
	(void)state;
	struct cove_http_request req;
	assert_true(parse("GET / HTTP/1.1\r\nA:  x y\t \r\n\r\n", &req) > 0);
	assert_int_equal(req.headers[0].value_len, 3);
	assert_memory_equal(req.headers[0].value, "x y", 3);
}

static void
test_head_incomplete(void **state)
{
	(void)state;
	struct cove_http_request req;
	const char *full = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
	size_t n = strlen(full);
	/* Every proper prefix needs more bytes; the whole head is complete. */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(cove_http_parse_head(full, i, &req), 0);
	assert_int_equal(cove_http_parse_head(full, n, &req), (int)n);
}

static void
test_head_refused(void **state)
{
	(void)state;
	struct cove_http_request req;
	const char *bad400[] = {
		"GET\r\n\r\n",
		"GET /\r\n\r\n",
		"GET  / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1 \r\n\r\n",
		"G(T / HTTP/1.1\r\n\r\n",
		"GET /a b HTTP/1.1\r\n\r\n",
		"GET /\x7f HTTP/1.1\r\n\r\n",
		"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.x\r\n\r\n",
		"GET / HTTPS/1.1\r\n\r\n",
		"GET / HTTP/11\r\n\r\n",
		"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
		"GET / HTTP/1.1\r\nName : v\r\n\r\n",
		"GET / HTTP/1.1\r\n: v\r\n\r\n",
		"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
		"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
		"GET / HTTP/1.1\rX",
		"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
		"GET / HTTP/1.1\r\nA: \x7f\r\n\r\n",
		"GET / HTTP/1.1\r\nA\x80: b\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad400) / sizeof(bad400[0]); i++) {
		int rv = parse(bad400[i], &req);
		if (rv != -400)
			fail_msg("case %zu (%s): got %d, expected -400", i, bad400[i], rv);
	}
	assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n", &req), -505);
	assert_int_equal(parse("GET / HTTP/0.9\r\n\r\n", &req), -505);
	assert_int_equal(parse("GET / HTTP/1.2\r\n\r\n", &req), -505);
	/* obs-text in a value is allowed (RFC 9110 field-vchar). */
	assert_true(parse("GET / HTTP/1.1\r\nA: caf\xc3\xa9\r\n\r\n", &req) > 0);
}

static void
test_head_limits(void **state)
{
	(void)state;
	struct cove_http_request req;
	/* 100 headers are fine, 101 are not. */
	size_t cap = 8192;
	char *s = xmalloc(cap);
	size_t n = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(s + n, cap - n, "H%d: v\r\n", i);
	memcpy(s + n, "\r\n", 3);
	assert_true(cove_http_parse_head(s, n + 2, &req) > 0);
	assert_int_equal(req.n_headers, 100);
	n += (size_t)snprintf(s + n, cap - n, "H100: v\r\n\r\n");
	assert_int_equal(cove_http_parse_head(s, n, &req), -431);
	free(s);
	/* A head longer than the limit. */
	size_t big = COVE_HTTP_MAX_HEAD + 100;
	s = xmalloc(big);
	memset(s, 'a', big);
	memcpy(s, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(cove_http_parse_head(s, big, &req), -431);
	assert_int_equal(cove_http_parse_head(s, COVE_HTTP_MAX_HEAD - 1, &req), 0);
	memcpy(s + big - 4, "\r\n\r\n", 4);
	assert_int_equal(cove_http_parse_head(s, big, &req), -431);
	free(s);
}

static void
test_list_has(void **state)
{
	(void)state;
	assert_true(cove_http_list_has("keep-alive, Upgrade", 19, "upgrade"));
	assert_true(cove_http_list_has(" close ", 7, "close"));
	assert_false(cove_http_list_has("closed", 6, "close"));
	assert_false(cove_http_list_has("", 0, "close"));
	assert_true(cove_http_list_has(",,x,,", 5, "x"));
}

static int
framing(const char *head, int *kind, uint64_t *len)
{
	struct cove_http_request req;
	assert_true(parse(head, &req) > 0);
	return cove_http_body_framing(&req, kind, len);
}

static void
test_body_framing(void **state)
{
	(void)state;
	int kind;
	uint64_t len;
	assert_int_equal(framing("GET / HTTP/1.1\r\n\r\n", &kind, &len), 0);
	assert_int_equal(kind, COVE_HTTP_BODY_NONE);
	assert_int_equal(framing("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &kind, &len), 0);
	assert_int_equal(kind, COVE_HTTP_BODY_NONE);
	assert_int_equal(framing("POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n", &kind, &len), 0);
	assert_int_equal(kind, COVE_HTTP_BODY_LENGTH);
	assert_int_equal(len, 42);
	assert_int_equal(framing("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n", &kind, &len), 0);
	assert_int_equal(len, 7);
	assert_int_equal(framing("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &kind, &len), 0);
	assert_int_equal(kind, COVE_HTTP_BODY_CHUNKED);
	const char *bad[] = {
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rv = framing(bad[i], &kind, &len);
		if (rv != -400)
			fail_msg("case %zu: got %d, expected -400", i, rv);
	}
	assert_int_equal(framing("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", &kind, &len), -501);
}

/* Feed a whole chunked body in pieces of `step` bytes; returns the decoded body (malloc'd), or NULL on error. */
static char *
dechunk(const char *in, size_t len, size_t step, size_t *out_len, size_t *consumed)
{
	struct cove_http_chunked d = {0};
	char *out = xmalloc(len + 1);
	size_t o = 0, pos = 0;
	while (pos < len && !d.done) {
		size_t n = len - pos < step ? len - pos : step;
		size_t used_total = 0;
		while (used_total < n && !d.done) {
			size_t off, dl;
			ssize_t used = cove_http_chunked_feed(&d, (const uint8_t *)in + pos + used_total, n - used_total, &off, &dl);
			if (used < 0) {
				free(out);
				return NULL;
			}
			memcpy(out + o, in + pos + used_total + off, dl);
			o += dl;
			used_total += (size_t)used;
		}
		pos += used_total;
	}
	if (!d.done) {
		free(out);
		return NULL;
	}
	*out_len = o;
	*consumed = pos;
	return out;
}

static void
test_chunked(void **state)
{
	(void)state;
	const char *body = "5\r\nhello\r\n1;ext=1;q=\"x\"\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: yes\r\n\r\nNEXT";
	size_t len = strlen(body) - 4;
	for (size_t step = 1; step <= len; step++) {
		size_t out_len, consumed;
		cleanup_free char *out = dechunk(body, strlen(body), step, &out_len, &consumed);
		assert_non_null(out);
		assert_int_equal(consumed, len);
		assert_int_equal(out_len, 16);
		assert_memory_equal(out, "hello 0123456789", 16);
	}
	/* Bare LFs, no trailers. */
	size_t out_len, consumed;
	cleanup_free char *o2 = dechunk("3\nabc\n0\n\n", 9, 100, &out_len, &consumed);
	assert_non_null(o2);
	assert_int_equal(out_len, 3);
	const char *bad[] = {
		"x\r\n",
		"\r\n",
		"5\r\nhelloX\r\n",
		"5\rhello",
		"1234567890123456\r\n",
		"0\r\nBad\x01Trailer\r\n\r\n",
		"3\r\nabc\r\n0\r\nT: v\rX",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *r = dechunk(bad[i], strlen(bad[i]), 1, &out_len, &consumed);
		if (r != NULL)
			fail_msg("case %zu decoded", i);
	}
	/* An endless size line or trailer section is refused, not buffered. */
	size_t n = COVE_HTTP_MAX_CHUNK_LINE + 10;
	char *ext = xmalloc(n);
	memset(ext, 'e', n);
	memcpy(ext, "1;", 2);
	struct cove_http_chunked d = {0};
	size_t off, dl;
	assert_int_equal(cove_http_chunked_feed(&d, (const uint8_t *)ext, n, &off, &dl), -400);
	free(ext);
}

static void
test_ws_frames(void **state)
{
	(void)state;
	struct cove_ws_frame f;
	/* RFC 6455 section 5.7: a masked "Hello". */
	uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(cove_ws_parse_header(hello, i, &f), 0);
	assert_int_equal(cove_ws_parse_header(hello, sizeof(hello), &f), 6);
	assert_true(f.fin);
	assert_int_equal(f.opcode, COVE_WS_TEXT);
	assert_int_equal(f.payload_len, 5);
	cove_ws_unmask(hello + 6, 5, f.mask, 0);
	assert_memory_equal(hello + 6, "Hello", 5);
	/* 16- and 64-bit lengths. */
	uint8_t m16[] = {0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4};
	assert_int_equal(cove_ws_parse_header(m16, sizeof(m16), &f), 8);
	assert_int_equal(f.payload_len, 256);
	uint8_t m64[] = {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
	assert_int_equal(cove_ws_parse_header(m64, sizeof(m64), &f), 14);
	assert_int_equal(f.payload_len, 65536);
	/* Refused: unmasked, reserved bits, unknown opcode, non-minimal lengths, big or fragmented control frames. */
	uint8_t unmasked[] = {0x81, 0x05};
	uint8_t rsv[] = {0xc1, 0x80, 0, 0, 0, 0};
	uint8_t op[] = {0x83, 0x80, 0, 0, 0, 0};
	uint8_t short16[] = {0x82, 0xfe, 0x00, 0x10, 0, 0, 0, 0};
	uint8_t short64[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
	uint8_t huge[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	uint8_t bigping[] = {0x89, 0xfe, 0x00, 0x7e, 0, 0, 0, 0};
	uint8_t fragclose[] = {0x08, 0x80, 0, 0, 0, 0};
	const uint8_t *bad[] = {unmasked, rsv, op, short16, short64, huge, bigping, fragclose};
	const size_t bad_len[] = {sizeof(unmasked), sizeof(rsv), sizeof(op), sizeof(short16),
				  sizeof(short64), sizeof(huge), sizeof(bigping), sizeof(fragclose)};
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(cove_ws_parse_header(bad[i], bad_len[i], &f), -1);
	/* Server frames. */
	uint8_t out[10];
	assert_int_equal(cove_ws_frame_header(out, COVE_WS_TEXT, 5), 2);
	assert_int_equal(out[0], 0x81);
	assert_int_equal(out[1], 5);
	assert_int_equal(cove_ws_frame_header(out, COVE_WS_BINARY, 300), 4);
	assert_int_equal(out[1], 126);
	assert_int_equal((out[2] << 8) | out[3], 300);
	assert_int_equal(cove_ws_frame_header(out, COVE_WS_BINARY, 70000), 10);
	assert_int_equal(out[1], 127);
}

static void
test_ws_handshake_and_close(void **state)
{
	(void)state;
	char accept[29];
	/* RFC 6455 section 1.3's example. */
	cove_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, accept);
	assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	assert_true(cove_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 24));
	assert_false(cove_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));
	assert_false(cove_ws_key_valid("dGhlIHNhbXBsZSBub25jZ!==", 24));
	int code;
	size_t off, len;
	assert_int_equal(cove_ws_parse_close((const uint8_t *)"", 0, &code, &off, &len), 0);
	assert_int_equal(code, COVE_WS_NO_STATUS);
	assert_int_equal(cove_ws_parse_close((const uint8_t *)"\x03\xe8" "bye", 5, &code, &off, &len), 0);
	assert_int_equal(code, 1000);
	assert_int_equal(len, 3);
	assert_int_equal(cove_ws_parse_close((const uint8_t *)"\x03", 1, &code, &off, &len), -1);
	assert_int_equal(cove_ws_parse_close((const uint8_t *)"\x03\xed", 2, &code, &off, &len), -1); /* 1005 */
	assert_int_equal(cove_ws_parse_close((const uint8_t *)"\x0f\xa0", 2, &code, &off, &len), 0);  /* 4000 */
	assert_int_equal(cove_ws_parse_close((const uint8_t *)"\x03\xe8\xff", 3, &code, &off, &len), -1);
	/* UTF-8 validation. */
	assert_true(cove_ws_utf8_valid((const uint8_t *)"h\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80", 10));
	assert_false(cove_ws_utf8_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
	assert_false(cove_ws_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
	assert_false(cove_ws_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	assert_false(cove_ws_utf8_valid((const uint8_t *)"\xe2\x9c", 2));         /* truncated */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_head_valid),   cmocka_unit_test(test_head_value_trailing_whitespace),
		cmocka_unit_test(test_head_incomplete), cmocka_unit_test(test_head_refused),
		cmocka_unit_test(test_head_limits),  cmocka_unit_test(test_list_has),
		cmocka_unit_test(test_body_framing), cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_ws_frames),    cmocka_unit_test(test_ws_handshake_and_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
