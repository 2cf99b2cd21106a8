/* libFuzzer target: arbitrary bytes as request messages to every handler in the method table.
 * Input: bytes 0-1 pick the method (of every method in the client's service: there are more than 256),
 * byte 2 picks the caller (valid token, no token, container), the rest is the message. The handlers run against a real store,
 * blob store and scheduler in a temporary state directory; only the HTTP/2 transport is replaced. */
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api.pb-c.h"
#include "config.h"
#include "fake_front.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"

static struct event_base *base;
static struct cove_ctx *ctx;
static char *token_id, *token_secret;

static void
setup(void)
{
	char tmpl[] = "/tmp/cove-fuzz-XXXXXX";
	char *dir = mkdtemp(tmpl);
	if (dir == NULL)
		abort();
	base = event_base_new();
	struct cove_config cfg = {.state_dir = xstrdup(dir), .address = "127.0.0.1", .python = "/bin/false"};
	struct cove_error *err = NULL;
	ctx = cove_server_new(&cfg, base, &err);
	if (ctx == NULL) {
		fprintf(stderr, "fuzz setup: %s\n", err->msg);
		abort();
	}
	if (cove_token_create(ctx->store, &token_id, &token_secret, &err) < 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ctx == NULL)
		setup();
	if (size < 3)
		return 0;
	const ProtobufCServiceDescriptor *svc = &modal__client__modal_client__descriptor;
	const ProtobufCMethodDescriptor *m = &svc->methods[((unsigned)data[0] << 8 | data[1]) % svc->n_methods];
	char path[256];
	snprintf(path, sizeof(path), "/modal.client.ModalClient/%s", m->name);
	const char *client[] = {"x-modal-client-version", COVE_CLIENT_VERSION, "x-modal-client-type", "1",
				"x-modal-token-id", token_id, "x-modal-token-secret", token_secret, NULL};
	const char *anonymous[] = {"x-modal-client-type", "1", NULL};
	const char *container[] = {"x-modal-client-type", "3", "x-cove-task", "nope", NULL};
	const char *const *headers = data[2] % 3 == 0 ? client : data[2] % 3 == 1 ? anonymous : container;
	struct cove_call *call = fake_front_call(path, headers);
	cove_api_route(call, path, data + 3, size - 3, 1, ctx->api);
	/* Let timers that are due run, then hang up on whatever is still parked. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	fake_front_cancel_all();
	return 0;
}
