/* A stand-in for the gRPC front (src/grpc/server.c) for the fuzz target: the same cove_call_* contract,
 * with calls created directly instead of from HTTP/2 streams. Responses are counted and dropped. */
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "fake_front.h"
#include "grpc/server.h"
#include "util/alloc.h"

struct cove_call {
	struct cove_call *next;
	char *path;
	const char *const *headers; /* name, value, ..., NULL */
	cove_call_cancel_fn cancel;
	void *cancel_arg;
	void *data;
	int finished;
};

struct cove_grpc_server {
	int unused;
};

static struct cove_call *open_calls;
static size_t n_finished;

struct cove_grpc_server *
cove_grpc_server_new(struct event_base *base, const struct cove_grpc_options *opts, cove_grpc_router_fn router,
		     void *router_ctx, struct cove_error **err)
{
	(void)base;
	(void)opts;
	(void)router;
	(void)router_ctx;
	(void)err;
	return xcalloc(1, sizeof(struct cove_grpc_server));
}

void
cove_grpc_server_set_message_hook(struct cove_grpc_server *srv, cove_grpc_message_fn fn, void *ctx)
{
	(void)srv;
	(void)fn;
	(void)ctx;
}

void
cove_grpc_server_set_admit_hook(struct cove_grpc_server *srv, cove_grpc_admit_fn fn, void *ctx)
{
	(void)srv;
	(void)fn;
	(void)ctx;
}

int
cove_grpc_options_from_env(struct cove_grpc_options *opts, struct cove_error **err)
{
	(void)opts;
	(void)err;
	return 0;
}

size_t
cove_call_pending_bytes(const struct cove_call *call)
{
	(void)call;
	return 0;
}

int
cove_grpc_server_port(const struct cove_grpc_server *srv)
{
	(void)srv;
	return 1;
}

struct cove_grpc_listener *
cove_grpc_server_listen_fd(struct cove_grpc_server *srv, int fd, struct cove_error **err)
{
	(void)srv;
	close(fd);
	cove_error_set(err, COVE_UNIMPLEMENTED, "the fuzzing front serves no sockets");
	return NULL;
}

void
cove_grpc_listener_free(struct cove_grpc_listener *l)
{
	(void)l;
}

void
cove_grpc_server_free(struct cove_grpc_server *srv)
{
	fake_front_cancel_all();
	free(srv);
}

struct cove_call *
fake_front_call(const char *path, const char *const *headers)
{
	struct cove_call *c = xcalloc(1, sizeof(*c));
	c->path = xstrdup(path);
	c->headers = headers;
	c->next = open_calls;
	open_calls = c;
	return c;
}

static void
unlink_call(struct cove_call *c)
{
	for (struct cove_call **p = &open_calls; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			return;
		}
	}
}

void
fake_front_cancel_all(void)
{
	while (open_calls) {
		struct cove_call *c = open_calls;
		open_calls = c->next;
		if (!c->finished && c->cancel)
			c->cancel(c, c->cancel_arg);
		free(c->path);
		free(c);
	}
}

size_t
fake_front_finished(void)
{
	return n_finished;
}

const char *
cove_call_header(const struct cove_call *call, const char *name)
{
	for (const char *const *h = call->headers; h && h[0]; h += 2)
		if (strcmp(h[0], name) == 0)
			return h[1];
	return NULL;
}

const char *
cove_call_path(const struct cove_call *call)
{
	return call->path;
}

int64_t
cove_call_remaining_ms(const struct cove_call *call)
{
	(void)call;
	return -1;
}

void
cove_call_send(struct cove_call *call, const uint8_t *msg, size_t len)
{
	(void)msg;
	(void)len;
	if (call->finished)
		abort(); /* the contract: nothing after finish */
}

void
cove_call_finish(struct cove_call *call, int code, const char *message)
{
	(void)code;
	(void)message;
	if (call->finished)
		abort(); /* the contract: finish exactly once */
	call->finished = 1;
	n_finished++;
	unlink_call(call);
	free(call->path);
	free(call);
}

void
cove_call_on_cancel(struct cove_call *call, cove_call_cancel_fn fn, void *arg)
{
	call->cancel = fn;
	call->cancel_arg = arg;
}

void
cove_call_set_data(struct cove_call *call, void *data)
{
	call->data = data;
}

void *
cove_call_get_data(const struct cove_call *call)
{
	return call->data;
}
