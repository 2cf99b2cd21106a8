/* Who is calling: a user's client (token id + secret) or one of our containers (its task secret,
 * injected as the x-cove-task header through MODAL_OVERRIDE_HEADERS). */
#include <string.h>

#include "api/api.h"
#include "config.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/map.h"

/* token id -> sha256 hex of a secret that was valid: spares a database read per call. */
static struct cove_map valid_tokens;

void
cove_auth_reset(void)
{
	size_t it = 0;
	void *v;
	while (cove_map_next(&valid_tokens, &it, NULL, &v))
		free(v);
	cove_map_clear(&valid_tokens);
}

static int
token_valid(struct cove_store *store, const char *id, const char *secret)
{
	char hash[65];
	cove_sha256_hex(secret, strlen(secret), hash);
	const char *cached = cove_map_get(&valid_tokens, id);
	if (cached)
		return strcmp(cached, hash) == 0;
	if (!cove_store_token_check(store, id, secret))
		return 0;
	if (valid_tokens.len < 10000)
		cove_map_put(&valid_tokens, id, xstrdup(hash));
	return 1;
}

int
cove_auth_check(struct cove_api_req *req, unsigned flags, struct cove_error **err)
{
	const char *version = cove_call_header(req->call, "x-modal-client-version");
	if (version && strcmp(version, COVE_CLIENT_VERSION) != 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "this Cove server supports modal client version %s, but this client is version %s; "
				      "install the supported client with: pip install modal==%s",
				      COVE_CLIENT_VERSION, version, COVE_CLIENT_VERSION);
	const char *type = cove_call_header(req->call, "x-modal-client-type");
	if (type && strcmp(type, "3") == 0) {
		const char *secret = cove_call_header(req->call, "x-cove-task");
		struct cove_task *task = secret ? cove_sched_task_by_secret(req->ctx->sched, secret) : NULL;
		if (task == NULL)
			return cove_error_set(err, COVE_UNAUTHENTICATED,
					      "container credentials are missing or belong to a container that has exited");
		req->client_type = COVE_CLIENT_TYPE_CONTAINER;
		req->task = task;
		return 0;
	}
	if (flags & COVE_API_CONTAINER_ONLY)
		return cove_error_set(err, COVE_PERMISSION_DENIED, "%s may only be called from inside a container",
				      req->method);
	const char *id = cove_call_header(req->call, "x-modal-token-id");
	const char *secret = cove_call_header(req->call, "x-modal-token-secret");
	if (id == NULL || secret == NULL || *id == '\0' || *secret == '\0')
		return cove_error_set(err, COVE_UNAUTHENTICATED,
				      "no token: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (see `cove env`)");
	if (!token_valid(req->ctx->store, id, secret))
		return cove_error_set(err, COVE_UNAUTHENTICATED,
				      "token %s is not valid for this Cove server (create one with `cove token create`)", id);
	req->client_type = COVE_CLIENT_TYPE_CLIENT;
	return 0;
}
