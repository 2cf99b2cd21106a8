/* The method table and the router: path -> descriptor -> decode -> auth -> handler. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "config.h"
#include "task_command_router.pb-c.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/log.h"
#include "util/map.h"
#include "util/pb.h"

#define SERVICE_PREFIX "/modal.client.ModalClient/"
#define TCR_PREFIX "/modal.task_command_router.TaskCommandRouter/"

/* Every RPC Cove answers. Anything else in the client's service answers UNIMPLEMENTED by name.
 * The flags are also the permission model for a container's credentials (docs/security.md):
 *   COVE_API_CLIENT_ONLY     administration no container needs (listing, deploying, stopping apps; environments;
 *                            Secrets' values): refused to containers;
 *   COVE_API_OWN_APP         a container may name only its own app (its layout, logs, containers);
 *   COVE_API_CONTAINER_ONLY  a container's own plumbing, refused to clients;
 *   (none)                   a container may, for the objects of its own environment: cove_auth_scope checks
 *                            every id and environment the request names. */
static const struct cove_api_method methods[] = {
	{"AppClientDisconnect", cove_api_AppClientDisconnect, COVE_API_CLIENT_ONLY},
	{"AppCountLogs", cove_api_AppCountLogs, COVE_API_OWN_APP},
	{"AppCreate", cove_api_AppCreate, COVE_API_CLIENT_ONLY},
	{"AppDeploymentHistory", cove_api_AppDeploymentHistory, COVE_API_CLIENT_ONLY},
	{"AppFetchLogs", cove_api_AppFetchLogs, COVE_API_OWN_APP},
	{"AppGetByDeploymentName", cove_api_AppGetByDeploymentName, 0},
	{"AppGetLayout", cove_api_AppGetLayout, COVE_API_OWN_APP},
	{"AppGetLifecycle", cove_api_AppGetLifecycle, 0},
	{"AppGetLogs", cove_api_AppGetLogs, COVE_API_OWN_APP},
	{"AppGetOrCreate", cove_api_AppGetOrCreate, 0},
	{"AppHeartbeat", cove_api_AppHeartbeat, COVE_API_CLIENT_ONLY},
	{"AppList", cove_api_AppList, COVE_API_CLIENT_ONLY},
	{"AppPublish", cove_api_AppPublish, COVE_API_CLIENT_ONLY},
	{"AppRollback", cove_api_AppRollback, COVE_API_CLIENT_ONLY},
	{"AppStop", cove_api_AppStop, COVE_API_OWN_APP},
	{"AuthTokenGet", cove_api_AuthTokenGet, 0},
	{"BlobCreate", cove_api_BlobCreate, 0},
	{"BlobGet", cove_api_BlobGet, 0},
	{"ClassCreate", cove_api_ClassCreate, COVE_API_CLIENT_ONLY},
	{"ClassGet", cove_api_ClassGet, 0},
	{"ClientHello", cove_api_ClientHello, 0},
	{"ContainerHeartbeat", cove_api_ContainerHeartbeat, COVE_API_CONTAINER_ONLY},
	{"ContainerHello", cove_api_ContainerHello, COVE_API_CONTAINER_ONLY},
	{"ContainerStop", cove_api_ContainerStop, COVE_API_OWN_APP},
	{"DictClear", cove_api_DictClear, 0},
	{"DictContains", cove_api_DictContains, 0},
	{"DictContents", cove_api_DictContents, 0},
	{"DictDelete", cove_api_DictDelete, 0},
	{"DictGet", cove_api_DictGet, 0},
	{"DictGetById", cove_api_DictGetById, 0},
	{"DictGetOrCreate", cove_api_DictGetOrCreate, 0},
	{"DictHeartbeat", cove_api_DictHeartbeat, 0},
	{"DictLen", cove_api_DictLen, 0},
	{"DictList", cove_api_DictList, 0},
	{"DictPop", cove_api_DictPop, 0},
	{"DictUpdate", cove_api_DictUpdate, 0},
	{"EnvironmentCreate", cove_api_EnvironmentCreate, COVE_API_CLIENT_ONLY},
	{"EnvironmentDelete", cove_api_EnvironmentDelete, COVE_API_CLIENT_ONLY},
	{"EnvironmentGetOrCreate", cove_api_EnvironmentGetOrCreate, 0},
	{"EnvironmentList", cove_api_EnvironmentList, COVE_API_CLIENT_ONLY},
	{"EnvironmentUpdate", cove_api_EnvironmentUpdate, COVE_API_CLIENT_ONLY},
	{"FunctionBindParams", cove_api_FunctionBindParams, 0},
	{"FunctionCallCancel", cove_api_FunctionCallCancel, 0},
	{"FunctionCallFromId", cove_api_FunctionCallFromId, 0},
	{"FunctionGetCallGraph", cove_api_FunctionGetCallGraph, 0},
	{"FunctionCallGetDataIn", cove_api_FunctionCallGetDataIn, COVE_API_CONTAINER_ONLY},
	{"FunctionCallGetDataOut", cove_api_FunctionCallGetDataOut, 0},
	{"FunctionCallPutDataOut", cove_api_FunctionCallPutDataOut, COVE_API_CONTAINER_ONLY},
	{"FunctionCreate", cove_api_FunctionCreate, COVE_API_CLIENT_ONLY},
	{"FunctionFinishInputs", cove_api_FunctionFinishInputs, 0},
	{"FunctionGet", cove_api_FunctionGet, 0},
	{"FunctionGetInputs", cove_api_FunctionGetInputs, COVE_API_CONTAINER_ONLY},
	{"FunctionGetOutputs", cove_api_FunctionGetOutputs, 0},
	{"FunctionMap", cove_api_FunctionMap, 0},
	{"FunctionPrecreate", cove_api_FunctionPrecreate, COVE_API_CLIENT_ONLY},
	{"FunctionPutInputs", cove_api_FunctionPutInputs, 0},
	{"FunctionPutOutputs", cove_api_FunctionPutOutputs, COVE_API_CONTAINER_ONLY},
	{"FunctionUpdateSchedulingParams", cove_api_FunctionUpdateSchedulingParams, 0},
	{"ImageGetOrCreate", cove_api_ImageGetOrCreate, 0},
	{"ImageJoinStreaming", cove_api_ImageJoinStreaming, 0},
	{"MountBatchedCheckExistence", cove_api_MountBatchedCheckExistence, 0},
	{"MountGetOrCreate", cove_api_MountGetOrCreate, 0},
	{"MountPutFile", cove_api_MountPutFile, 0},
	{"QueueClear", cove_api_QueueClear, 0},
	{"QueueDelete", cove_api_QueueDelete, 0},
	{"QueueGet", cove_api_QueueGet, 0},
	{"QueueGetById", cove_api_QueueGetById, 0},
	{"QueueGetOrCreate", cove_api_QueueGetOrCreate, 0},
	{"QueueHeartbeat", cove_api_QueueHeartbeat, 0},
	{"QueueLen", cove_api_QueueLen, 0},
	{"QueueList", cove_api_QueueList, 0},
	{"QueueNextItems", cove_api_QueueNextItems, 0},
	{"QueuePut", cove_api_QueuePut, 0},
	{"SandboxCreate", cove_api_SandboxCreate, 0},
	{"SandboxCreateV2", cove_api_SandboxCreateV2, 0},
	{"SandboxGetCommandRouterAccess", cove_api_SandboxGetCommandRouterAccess, 0},
	{"SandboxGetFromName", cove_api_SandboxGetFromName, 0},
	{"SandboxGetFromNameV2", cove_api_SandboxGetFromNameV2, 0},
	{"SandboxGetLogs", cove_api_SandboxGetLogs, 0},
	{"SandboxGetTaskId", cove_api_SandboxGetTaskId, 0},
	{"SandboxGetTaskIdV2", cove_api_SandboxGetTaskIdV2, 0},
	{"SandboxGetTunnels", cove_api_SandboxGetTunnels, 0},
	{"SandboxGetTunnelsV2", cove_api_SandboxGetTunnelsV2, 0},
	{"SandboxList", cove_api_SandboxList, 0},
	{"SandboxListV2", cove_api_SandboxListV2, 0},
	{"SandboxSetName", cove_api_SandboxSetName, 0},
	{"SandboxSnapshotFs", cove_api_SandboxSnapshotFs, 0},
	{"SandboxStdinWrite", cove_api_SandboxStdinWrite, 0},
	{"SandboxTagsGet", cove_api_SandboxTagsGet, 0},
	{"SandboxTagsGetV2", cove_api_SandboxTagsGetV2, 0},
	{"SandboxTagsSet", cove_api_SandboxTagsSet, 0},
	{"SandboxTagsSetV2", cove_api_SandboxTagsSetV2, 0},
	{"SandboxTerminate", cove_api_SandboxTerminate, 0},
	{"SandboxTerminateV2", cove_api_SandboxTerminateV2, 0},
	{"SandboxWait", cove_api_SandboxWait, 0},
	{"SandboxWaitV2", cove_api_SandboxWaitV2, 0},
	{"SecretDelete", cove_api_SecretDelete, COVE_API_CLIENT_ONLY},
	{"SecretGetInfo", cove_api_SecretGetInfo, 0},
	{"SecretGetOrCreate", cove_api_SecretGetOrCreate, 0},
	{"SecretList", cove_api_SecretList, COVE_API_CLIENT_ONLY},
	{"SecretUpdate", cove_api_SecretUpdate, COVE_API_CLIENT_ONLY},
	{"TaskGetCommandRouterAccess", cove_api_TaskGetCommandRouterAccess, 0},
	{"TaskGetInfo", cove_api_TaskGetInfo, 0},
	{"TaskList", cove_api_TaskList, COVE_API_CLIENT_ONLY},
	{"TaskResult", cove_api_TaskResult, COVE_API_CONTAINER_ONLY},
	{"VolumeCommit", cove_api_VolumeCommit, 0},
	{"VolumeCopyFiles", cove_api_VolumeCopyFiles, 0},
	{"VolumeCopyFiles2", cove_api_VolumeCopyFiles2, 0},
	{"VolumeDelete", cove_api_VolumeDelete, 0},
	{"VolumeGetById", cove_api_VolumeGetById, 0},
	{"VolumeGetFile2", cove_api_VolumeGetFile2, 0},
	{"VolumeGetOrCreate", cove_api_VolumeGetOrCreate, 0},
	{"VolumeHeartbeat", cove_api_VolumeHeartbeat, 0},
	{"VolumeList", cove_api_VolumeList, 0},
	{"VolumeListFiles", cove_api_VolumeListFiles, 0},
	{"VolumeListFiles2", cove_api_VolumeListFiles2, 0},
	{"VolumePutFiles", cove_api_VolumePutFiles, 0},
	{"VolumePutFiles2", cove_api_VolumePutFiles2, 0},
	{"VolumeReload", cove_api_VolumeReload, 0},
	{"VolumeRemoveFile", cove_api_VolumeRemoveFile, 0},
	{"VolumeRemoveFile2", cove_api_VolumeRemoveFile2, 0},
	{"VolumeRename", cove_api_VolumeRename, 0},
};

/* The task command router (sb.exec, sandbox stdio), on the same port. Its callers carry a bearer token that
 * Cove issued for one task (cove_tcr_auth) instead of Modal credentials. */
static const struct cove_api_method tcr_methods[] = {
	{"SandboxStdinWriteV2", cove_tcr_SandboxStdinWriteV2, 0},
	{"SandboxStdioReadV2", cove_tcr_SandboxStdioReadV2, 0},
	{"TaskExecPoll", cove_tcr_TaskExecPoll, 0},
	{"TaskExecStart", cove_tcr_TaskExecStart, 0},
	{"TaskExecStdinStatus", cove_tcr_TaskExecStdinStatus, 0},
	{"TaskExecStdinWrite", cove_tcr_TaskExecStdinWrite, 0},
	{"TaskExecStdinWriteStream", cove_tcr_TaskExecStdinWriteStream, COVE_API_CLIENT_STREAMING,
	 cove_tcr_TaskExecStdinWriteStream_message},
	{"TaskExecStdioRead", cove_tcr_TaskExecStdioRead, 0},
	{"TaskExecWait", cove_tcr_TaskExecWait, 0},
	{"TaskSnapshotFilesystem", cove_tcr_TaskSnapshotFilesystem, 0},
};

struct route {
	const struct cove_api_method *method; /* NULL: in the service but not served */
	const ProtobufCMethodDescriptor *desc;
	int tcr; /* in the task command router's service */
};

struct cove_api {
	struct cove_ctx *ctx;
	struct cove_map routes; /* path -> struct route* */
	struct route *route_mem;
};

/* Route every method of svc under prefix; a table entry whose name is not in svc is a typo: fail loudly. */
static void
add_service(struct cove_api *api, struct route *mem, const ProtobufCServiceDescriptor *svc, const char *prefix,
	    const struct cove_api_method *table, size_t n_table, int tcr)
{
	for (unsigned i = 0; i < svc->n_methods; i++) {
		struct route *r = &mem[i];
		r->desc = &svc->methods[i];
		r->tcr = tcr;
		for (size_t j = 0; j < n_table; j++)
			if (strcmp(table[j].name, r->desc->name) == 0)
				r->method = &table[j];
		cleanup_free char *path = xasprintf("%s%s", prefix, r->desc->name);
		cove_map_put(&api->routes, path, r);
	}
	for (size_t j = 0; j < n_table; j++) {
		cleanup_free char *path = xasprintf("%s%s", prefix, table[j].name);
		struct route *r = cove_map_get(&api->routes, path);
		if (r == NULL || r->method != &table[j]) {
			log_error("api: method %s is not in the client's protocol", table[j].name);
			abort();
		}
	}
}

static int
route_auth(const struct route *r, struct cove_api_req *req, struct cove_error **err)
{
	if (r->tcr)
		return cove_tcr_auth(req, err);
	return cove_auth_check(req, r->method ? r->method->flags : 0, err);
}

struct cove_api *
cove_api_new(struct cove_ctx *ctx, struct cove_error **err)
{
	const ProtobufCServiceDescriptor *svc = &modal__client__modal_client__descriptor;
	const ProtobufCServiceDescriptor *tcr = &modal__task_command_router__task_command_router__descriptor;
	if (cove_env_load(ctx->store, err) < 0)
		return NULL;
	struct cove_api *api = xcalloc(1, sizeof(*api));
	api->ctx = ctx;
	api->route_mem = xcalloc(svc->n_methods + tcr->n_methods, sizeof(struct route));
	add_service(api, api->route_mem, svc, SERVICE_PREFIX, methods, sizeof(methods) / sizeof(methods[0]), 0);
	add_service(api, api->route_mem + svc->n_methods, tcr, TCR_PREFIX, tcr_methods,
		    sizeof(tcr_methods) / sizeof(tcr_methods[0]), 1);
	return api;
}

void
cove_api_free(struct cove_api *api)
{
	if (api == NULL)
		return;
	cove_map_clear(&api->routes);
	free(api->route_mem);
	cove_env_unload();
	free(api);
}

void
cove_api_route(struct cove_call *call, const char *path, const uint8_t *msg, size_t len, size_t n_messages,
	       void *vctx)
{
	struct cove_api *api = vctx;
	struct route *r = cove_map_get(&api->routes, path);
	if (r == NULL) {
		cove_api_fail_code(call, COVE_UNIMPLEMENTED, "unknown method %s", path);
		return;
	}
	const char *name = r->desc->name;
	/* Credentials first: a caller without them learns nothing else, not even what Cove implements. */
	struct cove_api_req req = {.ctx = api->ctx, .call = call, .method = name};
	struct cove_error *err = NULL;
	if (route_auth(r, &req, &err) < 0) {
		cove_api_fail(call, err);
		return;
	}
	if (r->method == NULL) {
		cove_api_fail_code(call, COVE_UNIMPLEMENTED, "%s is not supported by Cove yet", name);
		return;
	}
	if (r->method->flags & COVE_API_CLIENT_STREAMING ? n_messages == 0 : n_messages != 1) {
		cove_api_fail_code(call, COVE_INVALID_ARGUMENT, "%s: expected exactly one request message, got %zu",
				   name, n_messages);
		return;
	}
	ProtobufCMessage *m = pb_unpack(r->desc->input, msg, len);
	if (m == NULL) {
		cove_api_fail_code(call, COVE_INVALID_ARGUMENT, "%s: the request is not a valid %s message", name,
				   r->desc->input->name);
		return;
	}
	req.msg = m;
	if ((r->tcr ? cove_auth_router_scope(&req, &err) : cove_auth_scope(&req, r->method->flags, &err)) < 0) {
		cove_api_fail(call, err);
		pb_free(m);
		return;
	}
	r->method->fn(&req);
	pb_free(m);
}

int
cove_api_admit(struct cove_call *call, const char *path, void *vctx, struct cove_error **err)
{
	struct cove_api *api = vctx;
	struct route *r = cove_map_get(&api->routes, path);
	if (r == NULL)
		return cove_error_set(err, COVE_UNIMPLEMENTED, "unknown method %s", path);
	struct cove_api_req req = {.ctx = api->ctx, .call = call, .method = r->desc->name};
	return route_auth(r, &req, err);
}

void
cove_api_stream_message(struct cove_call *call, const char *path, size_t index, const uint8_t *msg, size_t len,
			void *vctx)
{
	struct cove_api *api = vctx;
	struct route *r = cove_map_get(&api->routes, path);
	if (r == NULL || r->method == NULL || !(r->method->flags & COVE_API_CLIENT_STREAMING))
		return;
	/* Unauthenticated messages are dropped; the router answers the call at its end. */
	struct cove_api_req req = {.ctx = api->ctx, .call = call, .method = r->desc->name};
	struct cove_error *err = NULL;
	if (route_auth(r, &req, &err) < 0) {
		cove_error_free(err);
		return;
	}
	ProtobufCMessage *m = pb_unpack(r->desc->input, msg, len);
	req.msg = m;
	r->method->stream(&req, index);
	if (m)
		pb_free(m);
}

void
cove_api_send(struct cove_call *call, const ProtobufCMessage *msg)
{
	size_t n;
	uint8_t *buf = pb_pack(msg, &n);
	cove_call_send(call, buf, n);
	free(buf);
}

void
cove_api_reply(struct cove_call *call, const ProtobufCMessage *resp)
{
	cove_api_send(call, resp);
	cove_call_finish(call, COVE_OK, NULL);
}

void
cove_api_fail(struct cove_call *call, struct cove_error *err)
{
	int code = err ? err->code : COVE_INTERNAL;
	if (code == COVE_OK)
		code = COVE_INTERNAL;
	log_debug("api: %s -> %s: %s", cove_call_path(call), cove_status_name(code), err ? err->msg : "");
	cove_call_finish(call, code, err ? err->msg : "internal error");
	cove_error_free(err);
}

void
cove_api_fail_code(struct cove_call *call, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	log_debug("api: %s -> %s: %s", cove_call_path(call), cove_status_name(code), msg);
	cove_call_finish(call, code, msg);
	free(msg);
}
