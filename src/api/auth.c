/* Who is calling, and what they may do: a user's client (token id + secret: everything) or one of our function
 * containers (its task secret, injected as the x-cove-task header through MODAL_OVERRIDE_HEADERS: only what its
 * own app and function may). Sandboxes get no credentials at all. docs/security.md has the model as a table;
 * router.c's method table gives each RPC its flags, and cove_auth_scope below checks a container's request
 * against the table of request fields that name an object. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "config.h"
#include "sandbox/sandbox.h"
#include "sched/sched.h"
#include "server.h"
#include "store/kv.h"
#include "store/store.h"
#include "store/volume.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/map.h"

/* ---- tokens ---- */

/* A token that was valid, cached to spare a database read per call. The cache is dropped whenever another
 * process (`cove token revoke`, `cove token create`) has committed to the store since it was filled: SQLite's
 * data_version says so in one cheap pragma, so a revoked token fails on its next call. */
struct valid_token {
	char hash[65];      /* sha256 hex of the secret */
	double touched_at;  /* when last_used_at was last written */
};

#define TOUCH_EVERY_S 60.0 /* last_used_at is written at most once a minute per token */

static struct cove_map valid_tokens; /* token id -> struct valid_token* */
static int64_t valid_tokens_version = -1;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
tokens_forget(void)
{
	size_t it = 0;
	void *v;
	while (cove_map_next(&valid_tokens, &it, NULL, &v))
		free(v);
	cove_map_clear(&valid_tokens);
	valid_tokens_version = -1;
}

static int
token_valid(struct cove_store *store, const char *id, const char *secret)
{
	int64_t version = cove_store_data_version(store);
	if (version != valid_tokens_version) {
		tokens_forget();
		valid_tokens_version = version;
	}
	char hash[65];
	cove_sha256_hex(secret, strlen(secret), hash);
	struct valid_token *cached = cove_map_get(&valid_tokens, id);
	double now = now_s();
	if (cached) {
		if (strcmp(cached->hash, hash) != 0)
			return 0;
		if (now - cached->touched_at >= TOUCH_EVERY_S) {
			cached->touched_at = now;
			cove_store_token_touch(store, id, now);
		}
		return 1;
	}
	if (!cove_store_token_check(store, id, secret))
		return 0;
	cove_store_token_touch(store, id, now);
	if (valid_tokens.len < 10000) {
		struct valid_token *t = xcalloc(1, sizeof(*t));
		memcpy(t->hash, hash, sizeof(t->hash));
		t->touched_at = now;
		cove_map_put(&valid_tokens, id, t);
	}
	return 1;
}

/* "1.5.2", "1.6.0rc1": major, minor and patch (0 where missing); 0 if it does not start with a number. */
static int
parse_version(const char *v, unsigned long out[3])
{
	memset(out, 0, 3 * sizeof(*out));
	for (int i = 0; i < 3; i++) {
		if (*v < '0' || *v > '9')
			return i > 0;
		char *end;
		out[i] = strtoul(v, &end, 10);
		v = end;
		if (*v != '.')
			return 1;
		v++;
	}
	return 1;
}

int
cove_client_version_ok(const char *version, struct cove_error **err)
{
	unsigned long v[3], lo[3], hi[3];
	parse_version(COVE_CLIENT_VERSION_MIN, lo);
	parse_version(COVE_CLIENT_VERSION, hi);
	int ok = parse_version(version, v) &&
		 (v[0] > lo[0] || (v[0] == lo[0] && (v[1] > lo[1] || (v[1] == lo[1] && v[2] >= lo[2])))) &&
		 (v[0] < hi[0] || (v[0] == hi[0] && v[1] <= hi[1]));
	if (ok)
		return 0;
	return cove_error_set(err, COVE_FAILED_PRECONDITION,
			      "this Cove server supports modal client versions %s to %lu.%lu.x, but this client is version %s; "
			      "install a supported client with: pip install modal==%s",
			      COVE_CLIENT_VERSION_MIN, hi[0], hi[1], version, COVE_CLIENT_VERSION);
}

int
cove_auth_check(struct cove_api_req *req, unsigned flags, struct cove_error **err)
{
	const char *version = cove_call_header(req->call, "x-modal-client-version");
	if (version && cove_client_version_ok(version, err) < 0)
		return -1;
	const char *type = cove_call_header(req->call, "x-modal-client-type");
	if (type && strcmp(type, "3") == 0) {
		const char *secret = cove_call_header(req->call, "x-cove-task");
		struct cove_task *task = secret ? cove_sched_task_by_secret(req->ctx->sched, secret) : NULL;
		if (task == NULL)
			return cove_error_set(err, COVE_UNAUTHENTICATED,
					      "container credentials are missing or belong to a container that has exited");
		req->client_type = COVE_CLIENT_TYPE_CONTAINER;
		req->task = task;
		if (flags & COVE_API_CLIENT_ONLY)
			return cove_error_set(err, COVE_PERMISSION_DENIED,
					      "%s is not allowed with a container's credentials: a container reaches only its "
					      "own app and the objects of its environment (see docs/security.md)",
					      req->method);
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

/* ---- what a container may reach ---- */

static int
denied(struct cove_api_req *req, struct cove_error **err, const char *what, const char *id, const char *why)
{
	return cove_error_set(err, COVE_PERMISSION_DENIED,
			      "%s: %s %s is not reachable with this container's credentials (%s; see docs/security.md)",
			      req->method, what, id, why);
}

static int
own_env(const struct cove_api_req *req, const char *env)
{
	return env && strcmp(env, req->task->app->env) == 0;
}

/* The app of an object a container reaches by id: its own app always; another app of its environment unless
 * the method is for its own app only (flags & COVE_API_OWN_APP). */
static int
app_ok(struct cove_api_req *req, unsigned flags, const char *what, const char *id, const char *env,
       const char *app_id, struct cove_error **err)
{
	if (app_id && strcmp(app_id, req->task->app->id) == 0)
		return 0;
	if (!own_env(req, env))
		return denied(req, err, what, id, "it is in another environment");
	if (flags & COVE_API_OWN_APP)
		return denied(req, err, what, id, "it belongs to another app");
	return 0;
}

static int
check_environment(struct cove_api_req *req, unsigned flags, const char *name, struct cove_error **err)
{
	(void)flags;
	struct cove_error *ignored = NULL;
	const char *key = cove_env_resolve(name, &ignored);
	cove_error_free(ignored);
	if (key == NULL || own_env(req, key))
		return 0; /* an unknown one is the handler's NOT_FOUND */
	return denied(req, err, "environment", *name ? name : "(default)",
		      "a container reaches only its own app's environment");
}

static int
check_app(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	struct cove_app *app = cove_sched_app_get(req->ctx->sched, id);
	if (app == NULL)
		return strcmp(id, req->task->app->id) == 0 || !(flags & COVE_API_OWN_APP)
			       ? 0
			       : denied(req, err, "app", id, "it is not the container's own app");
	return app_ok(req, flags, "app", id, app->env, app->id, err);
}

static int
check_function(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	struct cove_function *fn = cove_sched_function_get(req->ctx->sched, id);
	if (fn == NULL)
		return 0;
	return app_ok(req, flags, "function", id, fn->app->env, fn->app->id, err);
}

static int
check_call(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, id);
	if (fc == NULL || fc->fn == NULL)
		return 0;
	return app_ok(req, flags, "function call", id, fc->fn->app->env, fc->fn->app->id, err);
}

/* Dicts and Queues: named ones are the environment's; an ephemeral one a container made belongs to its app. */
static int
check_kv(struct cove_api_req *req, int kind, const char *what, const char *id, struct cove_error **err)
{
	struct cove_kv *kv = cove_kv_get();
	struct cove_error *ignored = NULL;
	struct cove_kv_obj *o = kv ? cove_kv_find(kv, kind, id, &ignored) : NULL;
	cove_error_free(ignored);
	if (o == NULL)
		return 0;
	if (!own_env(req, o->env))
		return denied(req, err, what, id, "it is in another environment");
	if (o->name == NULL && o->app_id && strcmp(o->app_id, req->task->app->id) != 0)
		return denied(req, err, what, id, "it is another app's ephemeral object");
	return 0;
}

static int
check_dict(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	(void)flags;
	return check_kv(req, COVE_KV_DICT, "Dict", id, err);
}

static int
check_queue(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	(void)flags;
	return check_kv(req, COVE_KV_QUEUE, "Queue", id, err);
}

static int
check_volume(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	(void)flags;
	struct cove_volume v = {0};
	struct cove_error *ignored = NULL;
	int rc = cove_volume_running() ? cove_volume_by_id(id, &v, &ignored) : -1;
	cove_error_free(ignored);
	if (rc < 0)
		return 0;
	rc = 0;
	if (!own_env(req, v.env))
		rc = denied(req, err, "Volume", id, "it is in another environment");
	else if (v.name == NULL && v.app_id && strcmp(v.app_id, req->task->app->id) != 0)
		rc = denied(req, err, "Volume", id, "it is another app's ephemeral object");
	cove_volume_clear(&v);
	return rc;
}

static int
check_sandbox(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	struct cove_sandbox *sb = cove_sandbox_get(req->ctx->sandboxes, id);
	if (sb == NULL)
		return 0;
	return app_ok(req, flags, "Sandbox", id, sb->env, sb->app_id, err);
}

/* A task: the container itself, a sandbox, or another function container. */
static int
check_task(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	if (strcmp(id, req->task->id) == 0)
		return 0;
	struct cove_sandbox *sb = cove_sandbox_by_task(req->ctx->sandboxes, id);
	if (sb)
		return app_ok(req, flags, "task", id, sb->env, sb->app_id, err);
	struct cove_task *t = cove_sched_task_by_id(req->ctx->sched, id);
	if (t)
		return app_ok(req, flags, "task", id, t->app->env, t->app->id, err);
	return 0;
}

/* A Secret's values reach whatever runs with it (a sandbox, an image build, a function), so a container may
 * name a Secret only if its own function was given it, or if it is an anonymous one (Secret.from_dict: whoever
 * holds its id made it, or was handed it) of its environment. */
int
cove_auth_secret_ok(struct cove_api_req *req, const char *id, struct cove_error **err)
{
	if (req->client_type != COVE_CLIENT_TYPE_CONTAINER)
		return 0;
	const Modal__Client__Function *def = req->task->fn->def;
	for (size_t i = 0; def && i < def->n_secret_ids; i++)
		if (strcmp(def->secret_ids[i], id) == 0)
			return 0;
	cleanup_free char *env = NULL, *name = NULL, *app_id = NULL;
	if (cove_secret_scope(req->ctx->store, id, &env, &name, &app_id) <= 0)
		return 0; /* none: the handler's NOT_FOUND */
	if (name)
		return denied(req, err, "Secret", name, "the container's function was not given it in secrets=[...]");
	if (!own_env(req, env))
		return denied(req, err, "Secret", id, "it is in another environment");
	return 0;
}

static int
check_secret(struct cove_api_req *req, unsigned flags, const char *id, struct cove_error **err)
{
	(void)flags;
	return cove_auth_secret_ok(req, id, err);
}

/* Request fields that name something a container might not reach, by field name (every request of the
 * client's protocol names them the same way). top: checked only in the request itself, not in the messages it
 * holds (a sandbox's or image's definition), where the same names mean other things or nothing Cove uses. */
static const struct scope_field {
	const char *field;
	int top;
	int (*check)(struct cove_api_req *req, unsigned flags, const char *value, struct cove_error **err);
} scope_fields[] = {
	{"environment_name", 1, check_environment},
	{"app_id", 1, check_app},
	{"function_id", 1, check_function},
	{"build_function_id", 1, check_function},
	{"function_call_id", 1, check_call},
	{"dict_id", 1, check_dict},
	{"queue_id", 1, check_queue},
	{"volume_id", 0, check_volume},
	{"sandbox_id", 1, check_sandbox},
	{"task_id", 1, check_task},
	{"secret_id", 0, check_secret},
	{"secret_ids", 0, check_secret},
};

#define SCOPE_MAX_DEPTH 8

static int
scope_message(struct cove_api_req *req, unsigned flags, const ProtobufCMessage *m, int depth, struct cove_error **err)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m + f->offset;
		size_t n = f->label == PROTOBUF_C_LABEL_REPEATED ? *(const size_t *)((const char *)m + f->quantifier_offset)
								 : 1;
		const void *const *items = f->label == PROTOBUF_C_LABEL_REPEATED ? *(const void *const *const *)base
										   : (const void *const *)base;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			if (depth >= SCOPE_MAX_DEPTH)
				continue;
			/* A oneof member that is not the one set holds another member's bytes. */
			if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
			    *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
				continue;
			for (size_t k = 0; k < n; k++)
				if (items[k] && scope_message(req, flags, items[k], depth + 1, err) < 0)
					return -1;
			continue;
		}
		if (f->type != PROTOBUF_C_TYPE_STRING)
			continue;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
		    *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
			continue;
		for (size_t j = 0; j < sizeof(scope_fields) / sizeof(scope_fields[0]); j++) {
			const struct scope_field *sf = &scope_fields[j];
			if ((sf->top && depth > 0) || strcmp(sf->field, f->name) != 0)
				continue;
			for (size_t k = 0; k < n; k++) {
				const char *v = items[k];
				if (v && *v && sf->check(req, flags, v, err) < 0)
					return -1;
			}
			/* environment_name "" is the default environment: another one, for a container elsewhere. */
			if (f->label != PROTOBUF_C_LABEL_REPEATED && sf->check == check_environment &&
			    (items[0] == NULL || *(const char *)items[0] == '\0') &&
			    check_environment(req, flags, "", err) < 0)
				return -1;
		}
	}
	return 0;
}

int
cove_auth_scope(struct cove_api_req *req, unsigned flags, struct cove_error **err)
{
	if (req->client_type != COVE_CLIENT_TYPE_CONTAINER || req->msg == NULL)
		return 0;
	return scope_message(req, flags, req->msg, 0, err);
}

int
cove_auth_env_ok(struct cove_api_req *req, const char *env_key, struct cove_error **err)
{
	if (req->client_type != COVE_CLIENT_TYPE_CONTAINER || own_env(req, env_key))
		return 0;
	return denied(req, err, "environment", cove_env_display(env_key),
		      "a container reaches only its own app's environment");
}

/* ---- the task command router ---- */

/* Router tokens (a JWT for one sandbox's exec and stdio) issued to a container: token -> who it was issued to, so
 * that what the container sends through the router (TaskExecStart's secret_ids and secret_sources) is held to
 * the container's rules too. Entries outlive the tokens (ROUTER_TOKEN_S, 900 s in src/sandbox/sandbox.c): an
 * entry pruned while its token still verified would let the token pass as a client's. */
struct router_grant {
	char *task_id;
	double issued_at;
};

#define ROUTER_GRANT_KEEP_S 3600.0
#define ROUTER_GRANTS_MAX 10000

static struct cove_map router_grants; /* jwt -> struct router_grant* */

static void
router_grants_prune(double now)
{
	size_t it = 0;
	const char *k;
	void *v;
	while (cove_map_next(&router_grants, &it, &k, &v)) {
		struct router_grant *g = v;
		if (now - g->issued_at < ROUTER_GRANT_KEEP_S)
			continue;
		cove_map_del(&router_grants, k);
		free(g->task_id);
		free(g);
	}
}

int
cove_auth_router_issued(struct cove_api_req *req, const char *jwt, struct cove_error **err)
{
	if (req->client_type != COVE_CLIENT_TYPE_CONTAINER)
		return 0;
	double now = now_s();
	if (router_grants.len >= ROUTER_GRANTS_MAX)
		router_grants_prune(now);
	if (router_grants.len >= ROUTER_GRANTS_MAX)
		return cove_error_set(err, COVE_RESOURCE_EXHAUSTED,
				      "%s: too many command router tokens issued to containers within the last hour",
				      req->method);
	struct router_grant *g = xcalloc(1, sizeof(*g));
	g->task_id = xstrdup(req->task->id);
	g->issued_at = now;
	struct router_grant *old = cove_map_put(&router_grants, jwt, g);
	if (old) {
		free(old->task_id);
		free(old);
	}
	return 0;
}

int
cove_auth_router_scope(struct cove_api_req *req, struct cove_error **err)
{
	const char *h = cove_call_header(req->call, "authorization");
	struct router_grant *g = h && strlen(h) > 7 ? cove_map_get(&router_grants, h + 7) : NULL;
	if (g == NULL || req->msg == NULL)
		return 0; /* a client's token */
	struct cove_task *t = cove_sched_task_by_id(req->ctx->sched, g->task_id);
	if (t == NULL)
		return cove_error_set(err, COVE_UNAUTHENTICATED,
				      "this command router token belongs to container %s, which has exited", g->task_id);
	struct cove_api_req as = *req;
	as.client_type = COVE_CLIENT_TYPE_CONTAINER;
	as.task = t;
	return scope_message(&as, 0, req->msg, 0, err);
}

void
cove_auth_reset(void)
{
	tokens_forget();
	size_t it = 0;
	void *v;
	while (cove_map_next(&router_grants, &it, NULL, &v)) {
		struct router_grant *g = v;
		free(g->task_id);
		free(g);
	}
	cove_map_clear(&router_grants);
}
