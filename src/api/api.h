/* The Modal API: one handler per RPC, one file per Modal object (app.c, function.c, mount.c, ...).
 *
 * The router (router.c) decodes each request with the method's protobuf descriptor, authenticates it
 * (auth.c), and calls the handler with a request struct valid for the duration of the handler call.
 * A handler answers with cove_api_reply/cove_api_fail now, or parks the call (long polls) and answers
 * later through the scheduler; either way exactly once. */
#ifndef COVE_API_API_H
#define COVE_API_API_H

#include <protobuf-c/protobuf-c.h>

#include "api.pb-c.h"
#include "grpc/server.h"
#include "util/error.h"

struct cove_ctx;
struct cove_task;
struct cove_store;

enum {
	COVE_CLIENT_TYPE_CLIENT = 1,
	COVE_CLIENT_TYPE_CONTAINER = 3,
};

struct cove_api_req {
	struct cove_ctx *ctx;
	struct cove_call *call;
	const ProtobufCMessage *msg; /* the decoded request; freed after the handler returns */
	int client_type;
	struct cove_task *task; /* the calling container, for container calls */
	const char *method;     /* "AppCreate" */
	const char *router_task_id; /* task command router calls: the task the caller's bearer token is for */
};

typedef void (*cove_api_fn)(struct cove_api_req *req);
/* Client streaming: one message of the request (index from 0) as it arrives, decoded into req->msg (NULL if
 * it does not parse); req->call may not be answered here, only when fn runs at the end of the request. */
typedef void (*cove_api_stream_fn)(struct cove_api_req *req, size_t index);

enum {
	COVE_API_CONTAINER_ONLY = 1 << 0, /* only containers may call it */
	COVE_API_NO_AUTH = 1 << 1,        /* answered without credentials (ClientHello) */
	COVE_API_CLIENT_STREAMING = 1 << 2, /* many request messages: stream gets each, fn answers at the end */
	/* What a container's credentials may do (docs/security.md). Without either flag a container may call the
	 * method for objects of its own environment (cove_auth_scope checks the ids the request names). */
	COVE_API_CLIENT_ONLY = 1 << 3, /* administration no container needs: refused to containers */
	COVE_API_OWN_APP = 1 << 4,     /* a container may name only its own app (and its tasks, sandboxes) */
};

struct cove_api_method {
	const char *name;
	cove_api_fn fn;
	unsigned flags;
	cove_api_stream_fn stream; /* COVE_API_CLIENT_STREAMING only */
};

struct cove_api;
struct cove_api *cove_api_new(struct cove_ctx *ctx, struct cove_error **err);
void cove_api_free(struct cove_api *api);
/* The router the gRPC front calls (ctx is the struct cove_api). */
void cove_api_route(struct cove_call *call, const char *path, const uint8_t *msg, size_t len, size_t n_messages,
		    void *ctx);
/* The front's message hook (client-streaming requests; ctx is the struct cove_api). */
void cove_api_stream_message(struct cove_call *call, const char *path, size_t index, const uint8_t *msg, size_t len,
			     void *ctx);
/* The front's admission hook: at the end of a request's headers, the same answer the router would give
 * before reading the request (unknown method, credentials), so no body is buffered for a stranger. */
int cove_api_admit(struct cove_call *call, const char *path, void *ctx, struct cove_error **err);

/* Answering. reply: pack, send, finish OK. send: one message of a stream. fail: finish with err's code and
 * message (err is consumed). fail_code: finish with a formatted message. */
void cove_api_reply(struct cove_call *call, const ProtobufCMessage *resp);
void cove_api_send(struct cove_call *call, const ProtobufCMessage *msg);
void cove_api_fail(struct cove_call *call, struct cove_error *err);
void cove_api_fail_code(struct cove_call *call, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The modal client versions Cove serves: COVE_CLIENT_VERSION_MIN (the first that sends a container's
 * credentials, MODAL_OVERRIDE_HEADERS) to the pinned version's minor (COVE_CLIENT_VERSION, its every patch). 0,
 * or -1 + FAILED_PRECONDITION naming the range. */
#define COVE_CLIENT_VERSION_MIN "1.5.0"
int cove_client_version_ok(const char *version, struct cove_error **err);

/* Authentication (auth.c). Fills req->client_type and req->task; 0 or -1 + UNAUTHENTICATED (or
 * PERMISSION_DENIED: a container calling a COVE_API_CLIENT_ONLY method, a client a COVE_API_CONTAINER_ONLY one). */
int cove_auth_check(struct cove_api_req *req, unsigned flags, struct cove_error **err);
/* A container's decoded request against what it may reach: every environment, app, function, call, Dict, Queue,
 * Volume, Sandbox, task and Secret the request names (by the field names of scope_fields in auth.c) must be its
 * own or of its environment. 0 for clients and allowed requests, else -1 + PERMISSION_DENIED. */
int cove_auth_scope(struct cove_api_req *req, unsigned flags, struct cove_error **err);
/* For handlers: may this caller use the Secret with this id (a container: one its function was given, or an
 * anonymous one of its environment)? And the environment with this key (a container: its own)? 0 or -1 +
 * PERMISSION_DENIED. */
int cove_auth_secret_ok(struct cove_api_req *req, const char *secret_id, struct cove_error **err);
int cove_auth_env_ok(struct cove_api_req *req, const char *env_key, struct cove_error **err);
/* secret.c: where the Secret with this id lives (each out malloc'd; name and app_id NULL when unset): 1 if
 * found, 0 if not, -1 on a store error. */
int cove_secret_scope(struct cove_store *store, const char *id, char **env, char **name, char **app_id);
/* The task command router's authentication (command_router.c): the bearer token Cove issued for a task, still
 * valid. Fills req->router_task_id (valid for the call's life); 0 or -1 + UNAUTHENTICATED. */
int cove_tcr_auth(struct cove_api_req *req, struct cove_error **err);
/* The task command router's tokens issued to a container (SandboxGetCommandRouterAccess,
 * TaskGetCommandRouterAccess): issued records one (0, or -1 + RESOURCE_EXHAUSTED past a cap); scope holds a
 * router request made with such a token to that container's rules (cove_auth_scope), and refuses it once the
 * container has exited. Clients' tokens pass. */
int cove_auth_router_issued(struct cove_api_req *req, const char *jwt, struct cove_error **err);
int cove_auth_router_scope(struct cove_api_req *req, struct cove_error **err);
/* Drop cached token decisions and router grants (at shutdown). */
void cove_auth_reset(void);

/* Environments (environment.c). resolve: a name as users type it ("" means the default, "main") to the
 * environment's key, which objects record (valid until cove_env_unload); NULL + NOT_FOUND if there is none.
 * display: the current name of the environment with that key. */
struct cove_store;
int cove_env_load(struct cove_store *store, struct cove_error **err);
void cove_env_unload(void);
const char *cove_env_resolve(const char *name, struct cove_error **err);
const char *cove_env_display(const char *key);

/* Handlers, by file. */
#define COVE_HANDLER(name) void cove_api_##name(struct cove_api_req *req)
/* app.c */
COVE_HANDLER(AppCreate);
COVE_HANDLER(AppHeartbeat);
COVE_HANDLER(AppPublish);
COVE_HANDLER(AppClientDisconnect);
COVE_HANDLER(AppGetLogs);
COVE_HANDLER(AppGetLayout);
COVE_HANDLER(AppStop);
COVE_HANDLER(AppGetByDeploymentName);
COVE_HANDLER(AppGetOrCreate);
COVE_HANDLER(AppGetLifecycle);
COVE_HANDLER(AppList);
COVE_HANDLER(AppDeploymentHistory);
COVE_HANDLER(AppRollback);
COVE_HANDLER(TaskList);
COVE_HANDLER(ContainerStop);
/* cls.c */
COVE_HANDLER(ClassCreate);
COVE_HANDLER(ClassGet);
/* environment.c */
COVE_HANDLER(EnvironmentGetOrCreate);
COVE_HANDLER(ClientHello);
COVE_HANDLER(EnvironmentCreate);
COVE_HANDLER(EnvironmentDelete);
COVE_HANDLER(EnvironmentList);
COVE_HANDLER(EnvironmentUpdate);
/* function.c */
COVE_HANDLER(FunctionPrecreate);
COVE_HANDLER(FunctionCreate);
COVE_HANDLER(FunctionGet);
COVE_HANDLER(FunctionBindParams);
COVE_HANDLER(FunctionUpdateSchedulingParams);
/* calls.c */
COVE_HANDLER(FunctionMap);
COVE_HANDLER(FunctionPutInputs);
COVE_HANDLER(FunctionGetOutputs);
COVE_HANDLER(FunctionCallFromId);
COVE_HANDLER(FunctionGetCallGraph);
COVE_HANDLER(FunctionCallCancel);
COVE_HANDLER(FunctionFinishInputs);
COVE_HANDLER(FunctionCallGetDataOut);
COVE_HANDLER(FunctionCallGetDataIn);
COVE_HANDLER(FunctionCallPutDataOut);
/* mount.c */
COVE_HANDLER(MountGetOrCreate);
COVE_HANDLER(MountBatchedCheckExistence);
COVE_HANDLER(MountPutFile);
/* image.c */
COVE_HANDLER(ImageGetOrCreate);
COVE_HANDLER(ImageJoinStreaming);
/* secret.c */
COVE_HANDLER(SecretGetOrCreate);
COVE_HANDLER(SecretGetInfo);
COVE_HANDLER(SecretList);
COVE_HANDLER(SecretUpdate);
COVE_HANDLER(SecretDelete);
/* dict.c */
COVE_HANDLER(DictGetOrCreate);
COVE_HANDLER(DictGetById);
COVE_HANDLER(DictHeartbeat);
COVE_HANDLER(DictGet);
COVE_HANDLER(DictContains);
COVE_HANDLER(DictLen);
COVE_HANDLER(DictUpdate);
COVE_HANDLER(DictPop);
COVE_HANDLER(DictClear);
COVE_HANDLER(DictContents);
COVE_HANDLER(DictDelete);
COVE_HANDLER(DictList);
/* queue.c */
COVE_HANDLER(QueueGetOrCreate);
COVE_HANDLER(QueueGetById);
COVE_HANDLER(QueueHeartbeat);
COVE_HANDLER(QueuePut);
COVE_HANDLER(QueueGet);
COVE_HANDLER(QueueLen);
COVE_HANDLER(QueueClear);
COVE_HANDLER(QueueNextItems);
COVE_HANDLER(QueueDelete);
COVE_HANDLER(QueueList);
/* volume.c */
COVE_HANDLER(VolumeGetOrCreate);
COVE_HANDLER(VolumeGetById);
COVE_HANDLER(VolumeList);
COVE_HANDLER(VolumeDelete);
COVE_HANDLER(VolumeRename);
COVE_HANDLER(VolumeHeartbeat);
COVE_HANDLER(VolumeCommit);
COVE_HANDLER(VolumeReload);
COVE_HANDLER(VolumeGetFile2);
COVE_HANDLER(VolumeListFiles);
COVE_HANDLER(VolumeListFiles2);
COVE_HANDLER(VolumePutFiles);
COVE_HANDLER(VolumePutFiles2);
COVE_HANDLER(VolumeRemoveFile);
COVE_HANDLER(VolumeRemoveFile2);
COVE_HANDLER(VolumeCopyFiles);
COVE_HANDLER(VolumeCopyFiles2);
/* blob.c */
COVE_HANDLER(BlobCreate);
COVE_HANDLER(BlobGet);
/* container.c */
COVE_HANDLER(ContainerHello);
COVE_HANDLER(ContainerHeartbeat);
COVE_HANDLER(FunctionGetInputs);
COVE_HANDLER(FunctionPutOutputs);
COVE_HANDLER(TaskResult);
/* sandbox.c */
COVE_HANDLER(AuthTokenGet);
COVE_HANDLER(SandboxCreate);
COVE_HANDLER(SandboxCreateV2);
COVE_HANDLER(SandboxGetTaskId);
COVE_HANDLER(SandboxGetTaskIdV2);
COVE_HANDLER(SandboxWait);
COVE_HANDLER(SandboxWaitV2);
COVE_HANDLER(SandboxTerminate);
COVE_HANDLER(SandboxTerminateV2);
COVE_HANDLER(SandboxGetLogs);
COVE_HANDLER(SandboxStdinWrite);
COVE_HANDLER(SandboxGetTunnels);
COVE_HANDLER(SandboxGetTunnelsV2);
COVE_HANDLER(SandboxList);
COVE_HANDLER(SandboxListV2);
COVE_HANDLER(SandboxTagsGet);
COVE_HANDLER(SandboxTagsGetV2);
COVE_HANDLER(SandboxTagsSet);
COVE_HANDLER(SandboxTagsSetV2);
COVE_HANDLER(SandboxGetFromName);
COVE_HANDLER(SandboxGetFromNameV2);
COVE_HANDLER(SandboxSetName);
COVE_HANDLER(SandboxSnapshotFs);
COVE_HANDLER(SandboxGetCommandRouterAccess);
COVE_HANDLER(TaskGetCommandRouterAccess);
COVE_HANDLER(TaskGetInfo);
/* logs.c */
COVE_HANDLER(AppFetchLogs);
COVE_HANDLER(AppCountLogs);
/* command_router.c: the TaskCommandRouter service (the path prefix /modal.task_command_router.TaskCommandRouter/) */
#define COVE_TCR_HANDLER(name) void cove_tcr_##name(struct cove_api_req *req)
COVE_TCR_HANDLER(SandboxStdinWriteV2);
COVE_TCR_HANDLER(SandboxStdioReadV2);
COVE_TCR_HANDLER(TaskExecStart);
COVE_TCR_HANDLER(TaskExecStdioRead);
COVE_TCR_HANDLER(TaskExecStdinWrite);
COVE_TCR_HANDLER(TaskExecStdinWriteStream);
void cove_tcr_TaskExecStdinWriteStream_message(struct cove_api_req *req, size_t index);
COVE_TCR_HANDLER(TaskExecStdinStatus);
COVE_TCR_HANDLER(TaskExecPoll);
COVE_TCR_HANDLER(TaskExecWait);
COVE_TCR_HANDLER(TaskSnapshotFilesystem);

#endif
