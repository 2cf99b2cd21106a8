/* Environments. Every named object lives in one; "main" always exists and is the default.
 *
 * Objects record their environment by its key: the name it was created with. Renaming an environment
 * changes the name users type and see in listings, never the key, so nothing stored elsewhere has to change.
 * Environments are kept in the store's objects table (kind "environment", name = the current name, data = key). */
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "config.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/ids.h"
#include "util/log.h"

#define DEFAULT_ENV "main"
/* The image builder version we announce: one the pinned client supports, with dependencies mounted by the
 * server rather than installed into images. */
#define IMAGE_BUILDER_VERSION "2025.06"
#define MAX_ENVS 1000

struct env {
	char *id;
	char *key;
	char *name;
	double created_at;
	int deleted;
};

/* Pointers handed out (keys) stay valid until cove_env_unload: deleted environments are only marked. */
static struct env **envs;
static size_t n_envs;
static struct cove_store *env_store;

static struct env *
env_by_name(const char *name)
{
	for (size_t i = 0; i < n_envs; i++)
		if (!envs[i]->deleted && strcmp(envs[i]->name, name) == 0)
			return envs[i];
	return NULL;
}

static struct env *
env_by_key(const char *key)
{
	for (size_t i = 0; i < n_envs; i++)
		if (!envs[i]->deleted && strcmp(envs[i]->key, key) == 0)
			return envs[i];
	return NULL;
}

static struct env *
env_add(const char *id, const char *key, const char *name, double created_at)
{
	struct env *e = xcalloc(1, sizeof(*e));
	e->id = xstrdup(id);
	e->key = xstrdup(key);
	e->name = xstrdup(name);
	e->created_at = created_at;
	envs = xrealloc(envs, (n_envs + 1) * sizeof(*envs));
	envs[n_envs++] = e;
	return e;
}

static int
env_save(const struct env *e, struct cove_error **err)
{
	return cove_store_object_put(env_store, e->id, "environment", NULL, "", e->name, e->key, strlen(e->key), err);
}

static int
load_one(void *arg, const char *id, const char *name, const uint8_t *data, size_t len)
{
	(void)arg;
	cleanup_free char *key = xstrndup((const char *)data, len);
	if (name && !env_by_key(key))
		env_add(id, key, name, 0);
	return 0;
}

int
cove_env_load(struct cove_store *store, struct cove_error **err)
{
	env_store = store;
	/* Environments belong to no app: their rows have a NULL app_id, which each_object matches as "". */
	if (cove_store_each_object(store, "environment", NULL, load_one, NULL, err) < 0)
		return -1;
	if (env_by_key(DEFAULT_ENV) == NULL) {
		struct env *e = env_add("en-main", DEFAULT_ENV, DEFAULT_ENV, (double)time(NULL));
		if (env_save(e, err) < 0)
			return -1;
	}
	return 0;
}

void
cove_env_unload(void)
{
	for (size_t i = 0; i < n_envs; i++) {
		free(envs[i]->id);
		free(envs[i]->key);
		free(envs[i]->name);
		free(envs[i]);
	}
	free(envs);
	envs = NULL;
	n_envs = 0;
}

const char *
cove_env_resolve(const char *name, struct cove_error **err)
{
	if (name == NULL || *name == '\0')
		name = DEFAULT_ENV;
	struct env *e = env_by_name(name);
	if (e == NULL) {
		cove_error_set(err, COVE_NOT_FOUND, "Environment '%s' not found (see `modal environment list`)", name);
		return NULL;
	}
	return e->key;
}

const char *
cove_env_display(const char *key)
{
	struct env *e = env_by_key(key);
	return e ? e->name : key;
}

static int
valid_env_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 64)
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return 0;
	return 1;
}

static void
reply_empty(struct cove_call *call)
{
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(call, &resp.base);
}

void
cove_api_EnvironmentGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__EnvironmentGetOrCreateRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *name = r->deployment_name && *r->deployment_name ? r->deployment_name : DEFAULT_ENV;
	struct env *e = env_by_name(name);
	/* A container reads its own environment's settings and creates none. */
	if (req->client_type == COVE_CLIENT_TYPE_CONTAINER && (e ? cove_auth_env_ok(req, e->key, &err) < 0
		  : r->object_creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_IF_MISSING)) {
		if (err)
			cove_api_fail(req->call, err);
		else
			cove_api_fail_code(req->call, COVE_PERMISSION_DENIED,
					   "EnvironmentGetOrCreate: a container may not create environments (see docs/security.md)");
		return;
	}
	if (e == NULL && r->object_creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_IF_MISSING) {
		if (!valid_env_name(name)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "invalid environment name '%s'", name);
			return;
		}
		cleanup_free char *id = cove_id_new("en");
		e = env_add(id, name, name, (double)time(NULL));
		if (env_save(e, &err) < 0) {
			e->deleted = 1;
			cove_api_fail(req->call, err);
			return;
		}
	}
	if (e == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Environment '%s' not found (see `modal environment list`)", name);
		return;
	}
	Modal__Client__EnvironmentSettings settings = MODAL__CLIENT__ENVIRONMENT_SETTINGS__INIT;
	settings.image_builder_version = IMAGE_BUILDER_VERSION;
	settings.webhook_suffix = "";
	Modal__Client__EnvironmentMetadata meta = MODAL__CLIENT__ENVIRONMENT_METADATA__INIT;
	meta.name = e->name;
	meta.settings = &settings;
	Modal__Client__EnvironmentGetOrCreateResponse resp = MODAL__CLIENT__ENVIRONMENT_GET_OR_CREATE_RESPONSE__INIT;
	resp.environment_id = e->id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_EnvironmentCreate(struct cove_api_req *req)
{
	const Modal__Client__EnvironmentCreateRequest *r = (const void *)req->msg;
	if (!valid_env_name(r->name)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "invalid environment name '%s': use 1-64 letters, digits, '-', '_' or '.'", r->name);
		return;
	}
	if (env_by_name(r->name) || env_by_key(r->name)) {
		cove_api_fail_code(req->call, COVE_ALREADY_EXISTS, "Environment '%s' already exists", r->name);
		return;
	}
	if (n_envs >= MAX_ENVS) {
		cove_api_fail_code(req->call, COVE_RESOURCE_EXHAUSTED, "at most %d environments", MAX_ENVS);
		return;
	}
	struct cove_error *err = NULL;
	cleanup_free char *id = cove_id_new("en");
	struct env *e = env_add(id, r->name, r->name, (double)time(NULL));
	if (env_save(e, &err) < 0) {
		e->deleted = 1;
		cove_api_fail(req->call, err);
		return;
	}
	reply_empty(req->call);
}

void
cove_api_EnvironmentDelete(struct cove_api_req *req)
{
	const Modal__Client__EnvironmentDeleteRequest *r = (const void *)req->msg;
	struct env *e = env_by_name(r->name);
	if (e == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Environment '%s' not found", r->name);
		return;
	}
	if (strcmp(e->key, DEFAULT_ENV) == 0) {
		cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION, "the default environment '%s' cannot be deleted",
				   DEFAULT_ENV);
		return;
	}
	struct cove_error *err = NULL;
	if (cove_store_object_delete(env_store, e->id, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	e->deleted = 1;
	/* Its apps go with it. */
	const struct cove_map *apps = cove_sched_apps(req->ctx->sched);
	size_t it = 0;
	void *v;
	while (cove_map_next(apps, &it, NULL, &v)) {
		struct cove_app *app = v;
		if (strcmp(app->env, e->key) == 0)
			cove_sched_app_stop(req->ctx->sched, app, "environment deleted");
	}
	reply_empty(req->call);
}

void
cove_api_EnvironmentUpdate(struct cove_api_req *req)
{
	const Modal__Client__EnvironmentUpdateRequest *r = (const void *)req->msg;
	struct env *e = env_by_name(r->current_name);
	if (e == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Environment '%s' not found", r->current_name);
		return;
	}
	if (r->name && strcmp(r->name->value, e->name) != 0) {
		if (!valid_env_name(r->name->value)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "invalid environment name '%s'", r->name->value);
			return;
		}
		if (env_by_name(r->name->value)) {
			cove_api_fail_code(req->call, COVE_ALREADY_EXISTS, "Environment '%s' already exists", r->name->value);
			return;
		}
		char *old = e->name;
		e->name = xstrdup(r->name->value);
		struct cove_error *err = NULL;
		if (env_save(e, &err) < 0) {
			free(e->name);
			e->name = old;
			cove_api_fail(req->call, err);
			return;
		}
		free(old);
	}
	Modal__Client__EnvironmentListItem item = MODAL__CLIENT__ENVIRONMENT_LIST_ITEM__INIT;
	item.name = e->name;
	item.environment_id = e->id;
	item.created_at = e->created_at;
	item.webhook_suffix = "";
	item.default_ = strcmp(e->key, DEFAULT_ENV) == 0;
	cove_api_reply(req->call, &item.base);
}

void
cove_api_EnvironmentList(struct cove_api_req *req)
{
	Modal__Client__EnvironmentListItem *items = xcalloc(n_envs + 1, sizeof(*items));
	Modal__Client__EnvironmentListItem **ptrs = xcalloc(n_envs + 1, sizeof(*ptrs));
	size_t n = 0;
	for (size_t i = 0; i < n_envs; i++) {
		if (envs[i]->deleted)
			continue;
		Modal__Client__EnvironmentListItem item = MODAL__CLIENT__ENVIRONMENT_LIST_ITEM__INIT;
		item.name = envs[i]->name;
		item.environment_id = envs[i]->id;
		item.created_at = envs[i]->created_at;
		item.webhook_suffix = "";
		item.default_ = strcmp(envs[i]->key, DEFAULT_ENV) == 0;
		items[n] = item;
		ptrs[n] = &items[n];
		n++;
	}
	Modal__Client__EnvironmentListResponse resp = MODAL__CLIENT__ENVIRONMENT_LIST_RESPONSE__INIT;
	resp.n_items = n;
	resp.items = ptrs;
	cove_api_reply(req->call, &resp.base);
	free(items);
	free(ptrs);
}

void
cove_api_ClientHello(struct cove_api_req *req)
{
	Modal__Client__ClientHelloResponse resp = MODAL__CLIENT__CLIENT_HELLO_RESPONSE__INIT;
	resp.image_builder_version = IMAGE_BUILDER_VERSION;
	cove_api_reply(req->call, &resp.base);
}
