/* The pickle writer (src/util/pickle.c) and the ASGI scope built with it (src/gateway/asgi.c), checked
 * against the real thing: each pickle is loaded by Python's pickle.loads and compared by repr. The interpreter
 * is $COVE_TEST_PYTHON, else python3 on PATH; without one the tests are skipped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/gateway_internal.h"
#include "util/http_parse.h"
#include "util/pickle.h"
#include "util/alloc.h"
#include "util/pb.h"

static const char *
python(void)
{
	const char *p = getenv("COVE_TEST_PYTHON");
	if (p && *p)
		return p;
	return "python3";
}

/* repr(pickle.loads(data)) as Python prints it (malloc'd), or NULL if Python is not there. `code` is the
 * expression printed, with `v` the loaded value. */
static char *
python_eval(const uint8_t *data, size_t len, const char *code)
{
	char path[] = "/tmp/cove-pickle-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	/* The expression travels in the environment: no shell quoting to get wrong. */
	setenv("COVE_PICKLE_EXPR", code, 1);
	cleanup_free char *cmd = xasprintf("%s -c 'import os,pickle,sys; v = pickle.loads(open(sys.argv[1], \"rb\").read()); "
					   "sys.stdout.write(eval(os.environ[\"COVE_PICKLE_EXPR\"]))' %s 2>&1",
					   python(), path);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t cap = 4096, n = 0;
	char *out = xmalloc(cap);
	size_t got;
	while ((got = fread(out + n, 1, cap - n - 1, f)) > 0) {
		n += got;
		if (n + 1 == cap) {
			cap *= 2;
			out = xrealloc(out, cap);
		}
	}
	out[n] = '\0';
	int status = pclose(f);
	unlink(path);
	if (status != 0 && strstr(out, "not found")) {
		free(out);
		return NULL;
	}
	if (status != 0)
		fail_msg("python failed (%d): %s", status, out);
	return out;
}

static void
expect_repr(struct cove_pickle *p, const char *want)
{
	size_t len;
	cleanup_free uint8_t *data = cove_pickle_finish(p, &len);
	cleanup_free char *got = python_eval(data, len, "repr(v)");
	if (got == NULL)
		skip();
	if (strcmp(got, want) != 0)
		fail_msg("pickle.loads gave %s, expected %s", got, want);
}

static void
test_scalars(void **state)
{
	(void)state;
	struct cove_pickle p;
	cove_pickle_init(&p);
	cove_pickle_begin(&p, COVE_PICKLE_LIST);
	cove_pickle_none(&p);
	cove_pickle_bool(&p, 1);
	cove_pickle_bool(&p, 0);
	cove_pickle_end(&p);
	expect_repr(&p, "[None, True, False]");
}

static void
test_ints(void **state)
{
	(void)state;
	const int64_t values[] = {0, 1, 255, 256, 65535, 65536, -1, -256, INT32_MIN, INT32_MAX,
				  (int64_t)INT32_MAX + 1, (int64_t)INT32_MIN - 1, INT64_MIN, INT64_MAX};
	struct cove_pickle p;
	cove_pickle_init(&p);
	cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		cove_pickle_int(&p, values[i]);
	cove_pickle_end(&p);
	expect_repr(&p, "(0, 1, 255, 256, 65535, 65536, -1, -256, -2147483648, 2147483647, 2147483648, -2147483649, "
			"-9223372036854775808, 9223372036854775807)");
}

static void
test_strings(void **state)
{
	(void)state;
	struct cove_pickle p;
	cove_pickle_init(&p);
	cove_pickle_begin(&p, COVE_PICKLE_LIST);
	cove_pickle_str(&p, "");
	cove_pickle_str(&p, "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xf0\x9f\x98\x80");
	cove_pickle_strn(&p, "nul\0inside", 10);
	cove_pickle_strn(&p, "bad \xff\xfe utf-8 \xe2\x9c", 15); /* invalid bytes become U+FFFD */
	cove_pickle_end(&p);
	expect_repr(&p, "['', 'héllo ✓ 日😀', 'nul\\x00inside', "
			"'bad \xef\xbf\xbd\xef\xbf\xbd utf-8 \xef\xbf\xbd\xef\xbf\xbd']");

	/* Lengths around the opcode boundaries: 255 (short), 256 and 70000 (4-byte length). */
	const size_t lens[] = {255, 256, 70000};
	for (size_t k = 0; k < 3; k++) {
		cleanup_free char *s = xmalloc(lens[k]);
		memset(s, 'z', lens[k]);
		cove_pickle_init(&p);
		cove_pickle_strn(&p, s, lens[k]);
		size_t len;
		cleanup_free uint8_t *data = cove_pickle_finish(&p, &len);
		cleanup_free char *got = python_eval(data, len, "repr((type(v).__name__, len(v), set(v)))");
		if (got == NULL)
			skip();
		cleanup_free char *want = xasprintf("('str', %zu, {'z'})", lens[k]);
		assert_string_equal(got, want);
	}
}

static void
test_bytes(void **state)
{
	(void)state;
	uint8_t all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	struct cove_pickle p;
	cove_pickle_init(&p);
	cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
	cove_pickle_bytes(&p, "", 0);
	cove_pickle_bytes(&p, all, 256);
	cove_pickle_end(&p);
	size_t len;
	cleanup_free uint8_t *data = cove_pickle_finish(&p, &len);
	cleanup_free char *got = python_eval(data, len, "repr((v[0], v[1] == bytes(range(256))))");
	if (got == NULL)
		skip();
	assert_string_equal(got, "(b'', True)");

	cleanup_free uint8_t *big = xmalloc(100000);
	memset(big, 7, 100000);
	cove_pickle_init(&p);
	cove_pickle_bytes(&p, big, 100000);
	cleanup_free uint8_t *d2 = cove_pickle_finish(&p, &len);
	cleanup_free char *g2 = python_eval(d2, len, "repr((type(v).__name__, len(v), set(v)))");
	if (g2 == NULL)
		skip();
	assert_string_equal(g2, "('bytes', 100000, {7})");
}

static void
test_containers(void **state)
{
	(void)state;
	struct cove_pickle p;
	cove_pickle_init(&p);
	cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
	cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
	cove_pickle_begin(&p, COVE_PICKLE_DICT);
	cove_pickle_str(&p, "type");
	cove_pickle_str(&p, "http");
	cove_pickle_str(&p, "headers");
	cove_pickle_begin(&p, COVE_PICKLE_LIST);
	cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
	cove_pickle_bytes(&p, "host", 4);
	cove_pickle_bytes(&p, "x", 1);
	cove_pickle_end(&p);
	cove_pickle_end(&p);
	cove_pickle_str(&p, "empty_list");
	cove_pickle_begin(&p, COVE_PICKLE_LIST);
	cove_pickle_end(&p);
	cove_pickle_str(&p, "empty_tuple");
	cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
	cove_pickle_end(&p);
	cove_pickle_end(&p);
	cove_pickle_end(&p);
	cove_pickle_begin(&p, COVE_PICKLE_DICT);
	cove_pickle_end(&p);
	cove_pickle_end(&p);
	expect_repr(&p, "(({'type': 'http', 'headers': [(b'host', b'x')], 'empty_list': [], 'empty_tuple': ()},), {})");
}

/* Calls of a named callable: an exception made in the caller's process, a value built from its arguments. */
static void
test_calls(void **state)
{
	(void)state;
	struct cove_pickle p;
	cove_pickle_init(&p);
	cove_pickle_begin(&p, COVE_PICKLE_LIST);
	cove_pickle_begin_call(&p, "builtins", "ValueError");
	cove_pickle_str(&p, "boom");
	cove_pickle_end(&p);
	cove_pickle_begin_call(&p, "builtins", "complex");
	cove_pickle_int(&p, 1);
	cove_pickle_int(&p, 2);
	cove_pickle_end(&p);
	cove_pickle_begin_call(&p, "os.path", "join");
	cove_pickle_begin_call(&p, "builtins", "str");
	cove_pickle_str(&p, "a");
	cove_pickle_end(&p);
	cove_pickle_str(&p, "b");
	cove_pickle_end(&p);
	cove_pickle_end(&p);
	expect_repr(&p, "[ValueError('boom'), (1+2j), 'a/b']");
}

/* The function input the gateway makes for a request: FunctionInput{args=pickle(((scope,), {}))}. */
static void
test_asgi_scope(void **state)
{
	(void)state;
	const char *head = "POST /a%20b/%E2%9C%93?x=1&y=%20 HTTP/1.1\r\nHost: lbl.localhost:9\r\nX-Thing:  v a l  \r\n"
			   "Modal-Key: wk-1\r\nModal-Secret: ws-2\r\nContent-Length: 3\r\n\r\n";
	struct cove_http_request req;
	assert_int_equal(cove_http_parse_head(head, strlen(head), &req), (int)strlen(head));
	struct cove_asgi_request ar = {
		.req = &req,
		.raw_path = "/a%20b/%E2%9C%93",
		.raw_path_len = 16,
		.query = "x=1&y=%20",
		.query_len = 9,
		.root_path = "",
		.client_host = "127.0.0.1",
		.client_port = 5555,
		.server_host = "127.0.0.1",
		.server_port = 9,
		.strip_proxy_auth = 1,
	};
	size_t len;
	cleanup_free uint8_t *input = cove_asgi_function_input(&ar, "greet", &len);
	Modal__Client__FunctionInput *in = pb_unpack(&modal__client__function_input__descriptor, input, len);
	assert_non_null(in);
	assert_int_equal(in->data_format, MODAL__CLIENT__DATA_FORMAT__DATA_FORMAT_PICKLE);
	assert_int_equal(in->args_oneof_case, MODAL__CLIENT__FUNCTION_INPUT__ARGS_ONEOF_ARGS);
	assert_string_equal(in->method_name, "greet");
	cleanup_free char *got = python_eval(in->args.data, in->args.len,
					     "repr((len(v[0]), v[1], sorted(v[0][0].items())))");
	pb_free(in);
	if (got == NULL)
		skip();
	assert_string_equal(got,
			    "(1, {}, [('asgi', {'version': '3.0', 'spec_version': '2.3'}), ('client', ('127.0.0.1', 5555)), "
			    "('headers', [(b'host', b'lbl.localhost:9'), (b'x-thing', b'v a l'), (b'content-length', b'3')]), "
			    "('http_version', '1.1'), ('method', 'POST'), ('path', '/a b/✓'), ('query_string', b'x=1&y=%20'), "
			    "('raw_path', b'/a%20b/%E2%9C%93'), ('root_path', ''), ('scheme', 'http'), ('server', ('127.0.0.1', 9)), "
			    "('type', 'http')])");

	/* A WebSocket handshake: no method, scheme ws, the subprotocols as a list. */
	const char *ws = "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
			 "Sec-WebSocket-Protocol: x\r\n\r\n";
	assert_int_equal(cove_http_parse_head(ws, strlen(ws), &req), (int)strlen(ws));
	ar.websocket = 1;
	ar.raw_path = "/ws";
	ar.raw_path_len = 3;
	ar.query = "";
	ar.query_len = 0;
	ar.root_path = "/lbl";
	cleanup_free uint8_t *wsin = cove_asgi_function_input(&ar, NULL, &len);
	in = pb_unpack(&modal__client__function_input__descriptor, wsin, len);
	assert_non_null(in);
	assert_int_equal(in->_method_name_case, MODAL__CLIENT__FUNCTION_INPUT___METHOD_NAME__NOT_SET);
	cleanup_free char *g2 = python_eval(in->args.data, in->args.len,
					    "repr([v[0][0][k] for k in ('type', 'scheme', 'subprotocols', 'root_path')] + "
					    "['method' in v[0][0]])");
	pb_free(in);
	if (g2 == NULL)
		skip();
	assert_string_equal(g2, "['websocket', 'ws', ['chat', 'superchat', 'x'], '/lbl', False]");
}

static void
test_percent_decode(void **state)
{
	(void)state;
	char out[64];
	size_t n = cove_asgi_percent_decode("/a%2Fb%zz%4", 11, out);
	assert_int_equal(n, 9);
	assert_memory_equal(out, "/a/b%zz%4", 9);
	n = cove_asgi_percent_decode("%", 1, out);
	assert_int_equal(n, 1);
	assert_memory_equal(out, "%", 1);
	n = cove_asgi_percent_decode("%41%4a", 6, out);
	assert_int_equal(n, 2);
	assert_memory_equal(out, "AJ", 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalars),	    cmocka_unit_test(test_ints),	cmocka_unit_test(test_strings),
		cmocka_unit_test(test_bytes),	    cmocka_unit_test(test_containers),	cmocka_unit_test(test_asgi_scope),
		cmocka_unit_test(test_percent_decode), cmocka_unit_test(test_calls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
