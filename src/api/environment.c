/* Environments. Every named object lives in one; "main" is the default and, for now, the only one. */
#include <string.h>

#include "api/api.h"
#include "config.h"

#define DEFAULT_ENV "main"
/* The image builder version we announce: one the pinned client supports, with dependencies mounted by the
 * server rather than installed into images. */
#define IMAGE_BUILDER_VERSION "2025.06"

const char *
cove_env_resolve(const char *name, struct cove_error **err)
{
	if (name == NULL || *name == '\0' || strcmp(name, DEFAULT_ENV) == 0)
		return DEFAULT_ENV;
	cove_error_set(err, COVE_NOT_FOUND, "Environment '%s' not found (this Cove server has only '%s')", name,
		       DEFAULT_ENV);
	return NULL;
}

void
cove_api_EnvironmentGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__EnvironmentGetOrCreateRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->deployment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__EnvironmentSettings settings = MODAL__CLIENT__ENVIRONMENT_SETTINGS__INIT;
	settings.image_builder_version = IMAGE_BUILDER_VERSION;
	settings.webhook_suffix = "";
	Modal__Client__EnvironmentMetadata meta = MODAL__CLIENT__ENVIRONMENT_METADATA__INIT;
	meta.name = (char *)env;
	meta.settings = &settings;
	Modal__Client__EnvironmentGetOrCreateResponse resp = MODAL__CLIENT__ENVIRONMENT_GET_OR_CREATE_RESPONSE__INIT;
	resp.environment_id = "en-main";
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_ClientHello(struct cove_api_req *req)
{
	Modal__Client__ClientHelloResponse resp = MODAL__CLIENT__CLIENT_HELLO_RESPONSE__INIT;
	resp.image_builder_version = IMAGE_BUILDER_VERSION;
	cove_api_reply(req->call, &resp.base);
}
