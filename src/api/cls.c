/* Classes: a class is its service function ("<Cls>.*") plus a class object the client hydrates. */
#include <string.h>

#include "api/api.h"
#include "sched/sched.h"
#include "server.h"
#include "util/alloc.h"
#include "util/ids.h"

void
cove_api_ClassCreate(struct cove_api_req *req)
{
	const Modal__Client__ClassCreateRequest *r = (const void *)req->msg;
	struct cove_app *app = cove_sched_app_get(req->ctx->sched, r->app_id);
	if (app == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "App %s not found", r->app_id);
		return;
	}
	cleanup_free char *id = NULL;
	if (r->existing_class_id && *r->existing_class_id) {
		if (cove_sched_class_app(req->ctx->sched, r->existing_class_id) != app) {
			cove_api_fail_code(req->call, COVE_NOT_FOUND, "Class %s not found in app %s", r->existing_class_id,
					   app->id);
			return;
		}
		id = xstrdup(r->existing_class_id);
	} else {
		id = cove_id_new("cs");
		cove_sched_class_register(req->ctx->sched, app, id);
	}
	Modal__Client__ClassHandleMetadata meta = MODAL__CLIENT__CLASS_HANDLE_METADATA__INIT;
	Modal__Client__ClassCreateResponse resp = MODAL__CLIENT__CLASS_CREATE_RESPONSE__INIT;
	resp.class_id = id;
	resp.handle_metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_ClassGet(struct cove_api_req *req)
{
	const Modal__Client__ClassGetRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	struct cove_app *app = cove_sched_app_by_name(req->ctx->sched, env, r->app_name);
	if (app == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "App '%s' not found in environment '%s'", r->app_name, env);
		return;
	}
	const char *id = cove_map_get(&app->classes, r->object_tag);
	if (id == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Class '%s' not found in app '%s'", r->object_tag, r->app_name);
		return;
	}
	Modal__Client__ClassHandleMetadata meta = MODAL__CLIENT__CLASS_HANDLE_METADATA__INIT;
	Modal__Client__ClassGetResponse resp = MODAL__CLIENT__CLASS_GET_RESPONSE__INIT;
	resp.class_id = (char *)id;
	resp.handle_metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}
