/* Apps: create, heartbeat, publish, disconnect, stop, layout and logs. */
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "sandbox/sandbox.h"
#include "sched/sched.h"
#include "server.h"
#include "util/alloc.h"
#include "util/ids.h"
#include "util/pb.h"

/* Look an app up by a request's app_id, answering the call with the error if it can't. */
static struct cove_app *
app_or_fail(struct cove_api_req *req, const char *app_id)
{
	if (app_id == NULL || *app_id == '\0') {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: app_id is required", req->method);
		return NULL;
	}
	struct cove_app *app = cove_sched_app_get(req->ctx->sched, app_id);
	if (app == NULL)
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "App %s not found", app_id);
	return app;
}

void
cove_api_AppCreate(struct cove_api_req *req)
{
	const Modal__Client__AppCreateRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	int state = r->app_state;
	switch (state) {
	case MODAL__CLIENT__APP_STATE__APP_STATE_UNSPECIFIED:
		state = MODAL__CLIENT__APP_STATE__APP_STATE_EPHEMERAL;
		break;
	case MODAL__CLIENT__APP_STATE__APP_STATE_EPHEMERAL:
	case MODAL__CLIENT__APP_STATE__APP_STATE_DETACHED:
	case MODAL__CLIENT__APP_STATE__APP_STATE_DETACHED_DISCONNECTED:
	case MODAL__CLIENT__APP_STATE__APP_STATE_INITIALIZING:
		break;
	default:
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "AppCreate: an app cannot be created in state %d",
				   state);
		return;
	}
	struct cove_app *app = cove_sched_app_create(req->ctx->sched, "", env, r->description, state, &err);
	if (app == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__AppCreateResponse resp = MODAL__CLIENT__APP_CREATE_RESPONSE__INIT;
	resp.app_id = app->id;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_AppHeartbeat(struct cove_api_req *req)
{
	const Modal__Client__AppHeartbeatRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	cove_sched_app_heartbeat(req->ctx->sched, app);
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_AppPublish(struct cove_api_req *req)
{
	const Modal__Client__AppPublishRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	/* Every function the client names must be one it created in this app. */
	for (size_t i = 0; i < r->n_function_ids; i++) {
		struct cove_function *fn = cove_sched_function_get(req->ctx->sched, r->function_ids[i]->value);
		if (fn == NULL || fn->app != app || fn->def == NULL) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
					   "AppPublish: function %s (%s) was not created in app %s",
					   r->function_ids[i]->value, r->function_ids[i]->key, app->id);
			return;
		}
	}
	struct cove_error *err = NULL;
	for (size_t i = 0; i < r->n_class_ids; i++) {
		if (cove_sched_class_publish(req->ctx->sched, app, r->class_ids[i]->key, r->class_ids[i]->value, &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
	}
	int state = r->app_state ? (int)r->app_state : app->state;
	if (state == MODAL__CLIENT__APP_STATE__APP_STATE_DEPLOYED) {
		if (r->name == NULL || *r->name == '\0') {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "AppPublish: a deployed app needs a name");
			return;
		}
		if (cove_sched_app_deploy(req->ctx->sched, app, r->name, &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
		/* Same definitions as the current version: a no-op (deployed_at 0 tells the client so). Otherwise a
		 * new version, and the containers of the old one are replaced as they finish their inputs. */
		char digest[65];
		cove_sched_app_digest(req->ctx->sched, app, digest);
		double deployed_at = 0;
		if (app->version == 0 || strcmp(digest, app->digest) != 0) {
			if (app->version > 0)
				cove_sched_app_drain(req->ctx->sched, app);
			const char *client_version = r->client_version && *r->client_version
							     ? r->client_version
							     : cove_call_header(req->call, "x-modal-client-version");
			if (cove_sched_deployment_record(req->ctx->sched, app, client_version, r->deployment_tag,
							 r->commit_info, 0, &err) < 0) {
				cove_api_fail(req->call, err);
				return;
			}
			memcpy(app->digest, digest, sizeof(digest));
			deployed_at = app->deployed_at;
		}
		Modal__Client__AppPublishResponse resp = MODAL__CLIENT__APP_PUBLISH_RESPONSE__INIT;
		resp.url = "";
		resp.deployed_at = deployed_at;
		cove_api_reply(req->call, &resp.base);
		return;
	}
	if (cove_sched_app_set_state(req->ctx->sched, app, state, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	/* `modal serve` publishes its app again after each edit: containers running the previous code are
	 * replaced as they finish their inputs. */
	char digest[65];
	cove_sched_app_digest(req->ctx->sched, app, digest);
	if (app->digest[0] && strcmp(digest, app->digest) != 0)
		cove_sched_app_drain(req->ctx->sched, app);
	memcpy(app->digest, digest, sizeof(digest));
	Modal__Client__AppPublishResponse resp = MODAL__CLIENT__APP_PUBLISH_RESPONSE__INIT;
	resp.url = "";
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_AppClientDisconnect(struct cove_api_req *req)
{
	const Modal__Client__AppClientDisconnectRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	/* Ephemeral apps live as long as their client; detached and deployed apps carry on. */
	if (app->state == MODAL__CLIENT__APP_STATE__APP_STATE_EPHEMERAL ||
	    app->state == MODAL__CLIENT__APP_STATE__APP_STATE_INITIALIZING)
		cove_sched_app_stop(req->ctx->sched, app, r->exception && *r->exception ? r->exception : "client disconnected");
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_AppStop(struct cove_api_req *req)
{
	const Modal__Client__AppStopRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	cove_sched_app_stop(req->ctx->sched, app, "stopped");
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_AppGetLayout(struct cove_api_req *req)
{
	const Modal__Client__AppGetLayoutRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	Modal__Client__AppGetLayoutResponse resp = MODAL__CLIENT__APP_GET_LAYOUT_RESPONSE__INIT;
	resp.app_layout = cove_sched_app_layout(req->ctx->sched, app);
	cove_api_reply(req->call, &resp.base);
	cove_sched_layout_free(resp.app_layout);
}

void
cove_api_AppGetLogs(struct cove_api_req *req)
{
	const Modal__Client__AppGetLogsRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	if (r->timeout < 0 || r->timeout > 3600) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "AppGetLogs: timeout %.1f is out of range", r->timeout);
		return;
	}
	cove_sched_app_get_logs(req->ctx->sched, req->call, app, r->last_entry_id, r->timeout);
}

static void
lifecycle_of(const struct cove_app *app, Modal__Client__AppLifecycle *lc)
{
	Modal__Client__AppLifecycle init = MODAL__CLIENT__APP_LIFECYCLE__INIT;
	*lc = init;
	lc->app_state = app->state;
	lc->created_at = app->created_at;
	lc->deployed_at = app->deployed_at;
	lc->version = (int32_t)app->version;
}

void
cove_api_AppGetByDeploymentName(struct cove_api_req *req)
{
	const Modal__Client__AppGetByDeploymentNameRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	if (r->name == NULL || *r->name == '\0') {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "AppGetByDeploymentName: name is required");
		return;
	}
	struct cove_app *app = cove_sched_app_by_name(req->ctx->sched, env, r->name);
	Modal__Client__AppLifecycle lc;
	Modal__Client__AppGetByDeploymentNameResponse resp = MODAL__CLIENT__APP_GET_BY_DEPLOYMENT_NAME_RESPONSE__INIT;
	resp.environment_name = (char *)cove_env_display(env);
	if (app) {
		resp.app_id = app->id;
		lifecycle_of(app, &lc);
		resp.lifecycle = &lc;
	}
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_AppGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__AppGetOrCreateRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	if (r->app_name == NULL || *r->app_name == '\0') {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "App.lookup: an app name is required");
		return;
	}
	struct cove_app *app = cove_sched_app_by_name(req->ctx->sched, env, r->app_name);
	if (app == NULL) {
		if (r->object_creation_type != MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_IF_MISSING) {
			cove_api_fail_code(req->call, COVE_NOT_FOUND, "App '%s' not found in environment '%s'", r->app_name, env);
			return;
		}
		app = cove_sched_app_create(req->ctx->sched, "", env, r->app_name,
					    MODAL__CLIENT__APP_STATE__APP_STATE_INITIALIZING, &err);
		if (app == NULL || cove_sched_app_deploy(req->ctx->sched, app, r->app_name, &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
	}
	Modal__Client__AppGetOrCreateResponse resp = MODAL__CLIENT__APP_GET_OR_CREATE_RESPONSE__INIT;
	resp.app_id = app->id;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_AppGetLifecycle(struct cove_api_req *req)
{
	const Modal__Client__AppGetLifecycleRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	Modal__Client__AppLifecycle lc;
	lifecycle_of(app, &lc);
	Modal__Client__AppGetLifecycleResponse resp = MODAL__CLIENT__APP_GET_LIFECYCLE_RESPONSE__INIT;
	resp.lifecycle = &lc;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_AppList(struct cove_api_req *req)
{
	const Modal__Client__AppListRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	const struct cove_map *apps = cove_sched_apps(req->ctx->sched);
	Modal__Client__AppListResponse__AppListItem *items = xcalloc(apps->len + 1, sizeof(*items));
	Modal__Client__AppListResponse__AppListItem **ptrs = xcalloc(apps->len + 1, sizeof(*ptrs));
	size_t n = 0, it = 0;
	void *v;
	while (cove_map_next(apps, &it, NULL, &v)) {
		struct cove_app *app = v;
		if (strcmp(app->env, env) != 0)
			continue;
		Modal__Client__AppListResponse__AppListItem item = MODAL__CLIENT__APP_LIST_RESPONSE__APP_LIST_ITEM__INIT;
		item.app_id = app->id;
		item.description = app->name[0] ? app->name : app->description;
		item.name = app->name;
		item.state = app->state;
		item.created_at = app->created_at;
		item.n_running_tasks = (int32_t)app->n_tasks;
		items[n] = item;
		ptrs[n] = &items[n];
		n++;
	}
	Modal__Client__AppListResponse resp = MODAL__CLIENT__APP_LIST_RESPONSE__INIT;
	resp.n_apps = n;
	resp.apps = ptrs;
	cove_api_reply(req->call, &resp.base);
	free(items);
	free(ptrs);
}

void
cove_api_AppDeploymentHistory(struct cove_api_req *req)
{
	const Modal__Client__AppDeploymentHistoryRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	Modal__Client__AppDeploymentHistory **items = NULL;
	size_t n = 0;
	struct cove_error *err = NULL;
	if (cove_sched_deployment_history(req->ctx->sched, app, &items, &n, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__AppDeploymentHistoryResponse resp = MODAL__CLIENT__APP_DEPLOYMENT_HISTORY_RESPONSE__INIT;
	resp.n_app_deployment_histories = n;
	resp.app_deployment_histories = items;
	resp.production_app_version = app->version;
	cove_api_reply(req->call, &resp.base);
	for (size_t i = 0; i < n; i++)
		pb_free(items[i]);
	free(items);
}

void
cove_api_AppRollback(struct cove_api_req *req)
{
	const Modal__Client__AppRollbackRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	if (app->state != MODAL__CLIENT__APP_STATE__APP_STATE_DEPLOYED) {
		cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION, "App %s is not deployed", app->id);
		return;
	}
	/* version < 0 counts back from the current one (-1: the previous version). */
	int64_t version = r->version < 0 ? (int64_t)app->version + r->version : r->version;
	if (version <= 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "App %s has no version %lld to roll back to", app->name,
				   (long long)version);
		return;
	}
	struct cove_error *err = NULL;
	if (cove_sched_deployment_rollback(req->ctx->sched, app, (uint32_t)version, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__AppRollbackResponse resp = MODAL__CLIENT__APP_ROLLBACK_RESPONSE__INIT;
	resp.url = "";
	resp.deployed_at = app->deployed_at;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_TaskList(struct cove_api_req *req)
{
	const Modal__Client__TaskListRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = NULL;
	if (r->app_id == NULL || *r->app_id == '\0') {
		env = cove_env_resolve(r->environment_name, &err);
		if (env == NULL) {
			cove_api_fail(req->call, err);
			return;
		}
	}
	const struct cove_map *tasks = cove_sched_tasks(req->ctx->sched);
	size_t n_sandboxes = cove_sandbox_running(req->ctx->sandboxes);
	Modal__Client__TaskStats *items = xcalloc(tasks->len + n_sandboxes + 1, sizeof(*items));
	Modal__Client__TaskStats **ptrs = xcalloc(tasks->len + n_sandboxes + 1, sizeof(*ptrs));
	size_t n = 0, it = 0;
	void *v;
	while (cove_map_next(tasks, &it, NULL, &v)) {
		struct cove_task *t = v;
		if (env ? strcmp(t->app->env, env) != 0 : strcmp(t->app->id, r->app_id) != 0)
			continue;
		Modal__Client__TaskStats st = MODAL__CLIENT__TASK_STATS__INIT;
		st.task_id = t->id;
		st.app_id = t->app->id;
		st.app_description = t->app->name[0] ? t->app->name : t->app->description;
		st.started_at = t->started_at;
		st.enqueued_at = t->started_at;
		items[n] = st;
		ptrs[n] = &items[n];
		n++;
	}
	/* Sandboxes' containers too. */
	size_t first = n;
	n += cove_sandbox_task_stats(req->ctx->sandboxes, env, r->app_id, items + n, n_sandboxes);
	for (size_t i = first; i < n; i++)
		ptrs[i] = &items[i];
	Modal__Client__TaskListResponse resp = MODAL__CLIENT__TASK_LIST_RESPONSE__INIT;
	resp.n_tasks = n;
	resp.tasks = ptrs;
	cove_api_reply(req->call, &resp.base);
	free(items);
	free(ptrs);
}

void
cove_api_ContainerStop(struct cove_api_req *req)
{
	const Modal__Client__ContainerStopRequest *r = (const void *)req->msg;
	/* From inside a container with no id: that container stops fetching inputs. */
	struct cove_task *t = (r->task_id == NULL || *r->task_id == '\0') ? req->task
										 : cove_sched_task_by_id(req->ctx->sched, r->task_id);
	if (t == NULL) {
		/* A sandbox's container stops its sandbox. */
		struct cove_error *err = NULL;
		if (cove_sandbox_stop_task(req->ctx->sandboxes, r->task_id, &err) < 0) {
			cove_error_free(err);
			cove_api_fail_code(req->call, COVE_NOT_FOUND, "Container %s not found (it may have exited)", r->task_id);
			return;
		}
		Modal__Client__ContainerStopResponse resp = MODAL__CLIENT__CONTAINER_STOP_RESPONSE__INIT;
		cove_api_reply(req->call, &resp.base);
		return;
	}
	cove_sched_task_stop(req->ctx->sched, t, req->task == t ? 1 : r->graceful);
	Modal__Client__ContainerStopResponse resp = MODAL__CLIENT__CONTAINER_STOP_RESPONSE__INIT;
	cove_api_reply(req->call, &resp.base);
}
