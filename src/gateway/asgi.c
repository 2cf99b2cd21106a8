/* The ASGI scope of a request, as the container's runtime expects it: the function's input is the pickle of
 * ((scope,), {}) (modal/_runtime/asgi.py calls the app with that scope). */
#include <string.h>
#include <strings.h>

#include "gateway/gateway_internal.h"
#include "util/pickle.h"
#include "util/alloc.h"
#include "util/pb.h"

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t
cove_asgi_percent_decode(const char *s, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len) {
			int hi = hexval(s[i + 1]);
			int lo = hexval(s[i + 2]);
			if (hi >= 0 && lo >= 0) {
				out[o++] = (char)(hi * 16 + lo);
				i += 2;
				continue;
			}
		}
		out[o++] = s[i];
	}
	return o;
}

static int
name_is(const struct cove_http_header *h, const char *name)
{
	size_t n = strlen(name);
	return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static void
pickle_lower(struct cove_pickle *p, const char *s, size_t n)
{
	cleanup_free char *low = xmalloc(n ? n : 1);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		low[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	cove_pickle_bytes(p, low, n);
}

/* "a, b,c" -> ["a", "b", "c"] for every Sec-WebSocket-Protocol header. */
static void
pickle_subprotocols(struct cove_pickle *p, const struct cove_http_request *req)
{
	cove_pickle_begin(p, COVE_PICKLE_LIST);
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct cove_http_header *h = &req->headers[i];
		if (!name_is(h, "sec-websocket-protocol"))
			continue;
		size_t k = 0;
		while (k < h->value_len) {
			while (k < h->value_len && (h->value[k] == ' ' || h->value[k] == '\t' || h->value[k] == ','))
				k++;
			size_t start = k;
			while (k < h->value_len && h->value[k] != ',')
				k++;
			size_t end = k;
			while (end > start && (h->value[end - 1] == ' ' || h->value[end - 1] == '\t'))
				end--;
			if (end > start)
				cove_pickle_strn(p, h->value + start, end - start);
		}
	}
	cove_pickle_end(p);
}

static void
pickle_scope(struct cove_pickle *p, const struct cove_asgi_request *r)
{
	const struct cove_http_request *req = r->req;
	cove_pickle_begin(p, COVE_PICKLE_DICT);
	cove_pickle_str(p, "type");
	cove_pickle_str(p, r->websocket ? "websocket" : "http");
	cove_pickle_str(p, "asgi");
	cove_pickle_begin(p, COVE_PICKLE_DICT);
	cove_pickle_str(p, "version");
	cove_pickle_str(p, "3.0");
	cove_pickle_str(p, "spec_version");
	cove_pickle_str(p, "2.3"); /* 2.4 would promise that send() raises once the client is gone */
	cove_pickle_end(p);
	cove_pickle_str(p, "http_version");
	cove_pickle_str(p, req->version_minor == 0 ? "1.0" : "1.1");
	if (!r->websocket) {
		cove_pickle_str(p, "method");
		cove_pickle_strn(p, req->method, req->method_len);
	}
	cove_pickle_str(p, "scheme");
	cove_pickle_str(p, r->websocket ? "ws" : "http");
	cove_pickle_str(p, "path");
	{
		cleanup_free char *decoded = xmalloc(r->raw_path_len + 1);
		size_t n = cove_asgi_percent_decode(r->raw_path, r->raw_path_len, decoded);
		cove_pickle_strn(p, decoded, n);
	}
	cove_pickle_str(p, "raw_path");
	cove_pickle_bytes(p, r->raw_path, r->raw_path_len);
	cove_pickle_str(p, "query_string");
	cove_pickle_bytes(p, r->query, r->query_len);
	cove_pickle_str(p, "root_path");
	cove_pickle_str(p, r->root_path ? r->root_path : "");
	/* A list (the web_server proxy appends X-Forwarded-For to it) of (name, value) tuples, names lower-case. */
	cove_pickle_str(p, "headers");
	cove_pickle_begin(p, COVE_PICKLE_LIST);
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct cove_http_header *h = &req->headers[i];
		if (r->strip_proxy_auth && (name_is(h, "modal-key") || name_is(h, "modal-secret")))
			continue;
		cove_pickle_begin(p, COVE_PICKLE_TUPLE);
		pickle_lower(p, h->name, h->name_len);
		cove_pickle_bytes(p, h->value, h->value_len);
		cove_pickle_end(p);
	}
	cove_pickle_end(p);
	cove_pickle_str(p, "client");
	cove_pickle_begin(p, COVE_PICKLE_TUPLE);
	cove_pickle_str(p, r->client_host);
	cove_pickle_int(p, r->client_port);
	cove_pickle_end(p);
	cove_pickle_str(p, "server");
	cove_pickle_begin(p, COVE_PICKLE_TUPLE);
	cove_pickle_str(p, r->server_host);
	cove_pickle_int(p, r->server_port);
	cove_pickle_end(p);
	if (r->websocket) {
		cove_pickle_str(p, "subprotocols");
		pickle_subprotocols(p, req);
	}
	cove_pickle_end(p);
}

uint8_t *
cove_asgi_function_input(const struct cove_asgi_request *r, const char *method_name, size_t *len)
{
	struct cove_pickle p;
	cove_pickle_init(&p);
	cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
	cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
	pickle_scope(&p, r);
	cove_pickle_end(&p);
	cove_pickle_begin(&p, COVE_PICKLE_DICT);
	cove_pickle_end(&p);
	cove_pickle_end(&p);
	size_t args_len;
	cleanup_free uint8_t *args = cove_pickle_finish(&p, &args_len);
	Modal__Client__FunctionInput in = MODAL__CLIENT__FUNCTION_INPUT__INIT;
	in.data_format = MODAL__CLIENT__DATA_FORMAT__DATA_FORMAT_PICKLE;
	in.args_oneof_case = MODAL__CLIENT__FUNCTION_INPUT__ARGS_ONEOF_ARGS;
	in.args.data = args;
	in.args.len = args_len;
	if (method_name) {
		in._method_name_case = MODAL__CLIENT__FUNCTION_INPUT___METHOD_NAME_METHOD_NAME;
		in.method_name = (char *)method_name;
	}
	return pb_pack(&in.base, len);
}
