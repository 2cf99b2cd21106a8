/* Sandbox RPCs of the ModalClient service, V1 (SandboxCreate, ...) and V2 (SandboxCreateV2, ...), the
 * short-lived tokens (AuthTokenGet, the task command router's access) and TaskGetInfo. The sandboxes
 * themselves live in src/sandbox; the router's own service is command_router.c. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "empty.pb-c.h"
#include "sandbox/sandbox.h"
#include "sched/sched.h"
#include "server.h"
#include "util/alloc.h"
#include "util/log.h"

#define MAX_LOG_POLL_S 55.0
#define MAX_WAIT_S 55.0
#define LIST_PAGE 100

static struct cove_sandbox *
sandbox_or_fail(struct cove_api_req *req, const char *id)
{
	struct cove_sandbox *sb = cove_sandbox_get(req->ctx->sandboxes, id);
	if (sb == NULL)
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Sandbox %s not found", id && *id ? id : "(no id given)");
	return sb;
}

/* The app a sandbox is created in: the request's, or the calling container's own. */
static const char *
app_for(struct cove_api_req *req, const char *app_id)
{
	if (app_id && *app_id)
		return app_id;
	return req->task ? req->task->app->id : "";
}

static int
is_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return 0;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_'))
			return 0;
	return 1;
}

void
cove_api_AuthTokenGet(struct cove_api_req *req)
{
	const char *who = req->task ? req->task->id : cove_call_header(req->call, "x-modal-token-id");
	cleanup_free char *token = cove_sandbox_auth_token(req->ctx->sandboxes, who && is_id(who) ? who : "client");
	Modal__Client__AuthTokenGetResponse resp = MODAL__CLIENT__AUTH_TOKEN_GET_RESPONSE__INIT;
	resp.token = token;
	cove_api_reply(req->call, &resp.base);
}

/* ---- create ---- */

void
cove_api_SandboxCreate(struct cove_api_req *req)
{
	const Modal__Client__SandboxCreateRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	struct cove_sandbox_create a = {
		.app_id = app_for(req, r->app_id),
		.def = r->definition,
		.tags = r->tags,
		.n_tags = r->n_tags,
	};
	struct cove_sandbox *sb = cove_sandbox_create(req->ctx->sandboxes, &a, &err);
	if (sb == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__SandboxHandleMetadata meta = MODAL__CLIENT__SANDBOX_HANDLE_METADATA__INIT;
	meta.app_id = sb->app_id;
	Modal__Client__SandboxCreateResponse resp = MODAL__CLIENT__SANDBOX_CREATE_RESPONSE__INIT;
	resp.sandbox_id = sb->id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_SandboxCreateV2(struct cove_api_req *req)
{
	const Modal__Client__SandboxCreateV2Request *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	if (r->n_cloud_bucket_mount_credentials) {
		cove_api_fail_code(req->call, COVE_UNIMPLEMENTED, "bucket mounts in sandboxes are not supported by Cove");
		return;
	}
	/* Inline secrets of the older field come after the sources. */
	size_t n_src = r->n_secret_sources;
	cleanup_free Modal__Client__SecretSource **src = xcalloc(n_src + 2, sizeof(*src));
	if (n_src)
		memcpy(src, r->secret_sources, n_src * sizeof(*src));
	Modal__Client__SecretSource eph = MODAL__CLIENT__SECRET_SOURCE__INIT;
	if (r->ephemeral_secrets && r->ephemeral_secrets->n_contents) {
		eph.source_case = MODAL__CLIENT__SECRET_SOURCE__SOURCE_ENV;
		eph.env = r->ephemeral_secrets;
		src[n_src++] = &eph;
	}
	struct cove_sandbox_create a = {
		.app_id = app_for(req, r->app_id),
		.def = r->definition,
		.tags = r->tags,
		.n_tags = r->n_tags,
		.sources = src,
		.n_sources = n_src,
		.v2 = 1,
	};
	/* With no sources at all, the definition's secret ids are the secrets (as for V1). */
	if (n_src == 0)
		a.sources = NULL;
	struct cove_sandbox *sb = cove_sandbox_create(req->ctx->sandboxes, &a, &err);
	if (sb == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__SandboxHandleMetadata meta = MODAL__CLIENT__SANDBOX_HANDLE_METADATA__INIT;
	meta.app_id = sb->app_id;
	Modal__Client__SandboxCreateV2Response resp = MODAL__CLIENT__SANDBOX_CREATE_V2_RESPONSE__INIT;
	resp.sandbox_id = sb->id;
	resp.metadata = &meta;
	Modal__Client__TunnelData **tunnels = NULL;
	resp.n_tunnels = cove_sandbox_tunnels(sb, &tunnels);
	resp.tunnels = tunnels;
	/* Running already: the client can go straight to the router (else it polls for the task id). */
	cleanup_free char *jwt = NULL;
	Modal__Client__CommandRouterAccess access = MODAL__CLIENT__COMMAND_ROUTER_ACCESS__INIT;
	if (sb->state == COVE_SANDBOX_RUNNING) {
		resp.task_id = sb->host.task_id;
		jwt = cove_sandbox_router_token(req->ctx->sandboxes, sb->host.task_id);
		/* Past the cap on containers' router tokens the sandbox still exists: no access here, and the
		 * client's GetCommandRouterAccess gets the error. */
		if (cove_auth_router_issued(req, jwt, &err) < 0) {
			cove_error_free(err);
		} else {
			access.jwt = jwt;
			access.url = (char *)cove_sandbox_router_url(req->ctx->sandboxes);
			resp.command_router_access = &access;
		}
	}
	cove_api_reply(req->call, &resp.base);
	cove_sandbox_tunnels_free(tunnels, resp.n_tunnels);
}

/* ---- state ---- */

static void
get_task_id(struct cove_api_req *req)
{
	const Modal__Client__SandboxGetTaskIdRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	Modal__Client__SandboxGetTaskIdResponse resp = MODAL__CLIENT__SANDBOX_GET_TASK_ID_RESPONSE__INIT;
	Modal__Client__GenericResult result;
	cove_sandbox_result(sb, &result);
	if (sb->started_at > 0) {
		resp._task_id_case = MODAL__CLIENT__SANDBOX_GET_TASK_ID_RESPONSE___TASK_ID_TASK_ID;
		resp.task_id = sb->host.task_id;
	}
	if (sb->state == COVE_SANDBOX_FINISHED) {
		resp._task_result_case = MODAL__CLIENT__SANDBOX_GET_TASK_ID_RESPONSE___TASK_RESULT_TASK_RESULT;
		resp.task_result = &result;
	}
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_SandboxGetTaskId(struct cove_api_req *req)
{
	get_task_id(req);
}

void
cove_api_SandboxGetTaskIdV2(struct cove_api_req *req)
{
	get_task_id(req);
}

static void
wait_rpc(struct cove_api_req *req)
{
	const Modal__Client__SandboxWaitRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	double t = r->timeout;
	if (!(t > 0))
		t = 0;
	if (t > MAX_WAIT_S)
		t = MAX_WAIT_S;
	cove_sandbox_wait(sb, req->call, t);
}

void
cove_api_SandboxWait(struct cove_api_req *req)
{
	wait_rpc(req);
}

void
cove_api_SandboxWaitV2(struct cove_api_req *req)
{
	wait_rpc(req);
}

static void
terminate(struct cove_api_req *req)
{
	const Modal__Client__SandboxTerminateRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	Modal__Client__SandboxTerminateResponse resp = MODAL__CLIENT__SANDBOX_TERMINATE_RESPONSE__INIT;
	Modal__Client__GenericResult result;
	cove_sandbox_result(sb, &result);
	if (sb->state == COVE_SANDBOX_FINISHED)
		resp.existing_result = &result;
	else
		cove_sandbox_terminate(sb, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED,
				       "the sandbox was terminated");
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_SandboxTerminate(struct cove_api_req *req)
{
	terminate(req);
}

void
cove_api_SandboxTerminateV2(struct cove_api_req *req)
{
	terminate(req);
}

/* ---- stdio through the server (V1) ---- */

void
cove_api_SandboxGetLogs(struct cove_api_req *req)
{
	const Modal__Client__SandboxGetLogsRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	int fd = r->file_descriptor;
	if (fd != MODAL__CLIENT__FILE_DESCRIPTOR__FILE_DESCRIPTOR_STDOUT &&
	    fd != MODAL__CLIENT__FILE_DESCRIPTOR__FILE_DESCRIPTOR_STDERR) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "SandboxGetLogs: file_descriptor must be stdout or stderr");
		return;
	}
	uint64_t offset = 0;
	if (r->last_entry_id && *r->last_entry_id) {
		char *end;
		offset = strtoull(r->last_entry_id, &end, 10);
		if (*end || r->last_entry_id[0] == '-') {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "SandboxGetLogs: bad last_entry_id '%s'",
					   r->last_entry_id);
			return;
		}
	}
	if (sb->main == NULL) {
		/* Not started yet: nothing to send; or finished before it started: nothing ever will be. */
		if (sb->state == COVE_SANDBOX_FINISHED) {
			Modal__Client__TaskLogsBatch b = MODAL__CLIENT__TASK_LOGS_BATCH__INIT;
			b.eof = 1;
			b.entry_id = "0";
			cove_api_send(req->call, &b.base);
		}
		cove_call_finish(req->call, COVE_OK, NULL);
		return;
	}
	double t = r->timeout > 0 && r->timeout < MAX_LOG_POLL_S ? r->timeout : MAX_LOG_POLL_S;
	cove_stream_read(cove_proc_stream(sb->main, fd), req->call, offset, COVE_STREAM_LOGS_V1, fd, t);
}

void
cove_api_SandboxStdinWrite(struct cove_api_req *req)
{
	const Modal__Client__SandboxStdinWriteRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	struct cove_error *err = NULL;
	if (cove_sandbox_stdin_v1(sb, r->index, r->input.data, r->input.len, r->eof, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__SandboxStdinWriteResponse resp = MODAL__CLIENT__SANDBOX_STDIN_WRITE_RESPONSE__INIT;
	cove_api_reply(req->call, &resp.base);
}

/* ---- tunnels, tags, names ---- */

static void
tunnels(struct cove_api_req *req)
{
	const Modal__Client__SandboxGetTunnelsRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	if (sb->state == COVE_SANDBOX_FINISHED) {
		cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION, "Sandbox %s has finished: its tunnels are closed",
				   sb->id);
		return;
	}
	Modal__Client__GenericResult result = MODAL__CLIENT__GENERIC_RESULT__INIT;
	result.status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS;
	Modal__Client__SandboxGetTunnelsResponse resp = MODAL__CLIENT__SANDBOX_GET_TUNNELS_RESPONSE__INIT;
	resp.result = &result;
	Modal__Client__TunnelData **t = NULL;
	resp.n_tunnels = cove_sandbox_tunnels(sb, &t);
	resp.tunnels = t;
	cove_api_reply(req->call, &resp.base);
	cove_sandbox_tunnels_free(t, resp.n_tunnels);
}

void
cove_api_SandboxGetTunnels(struct cove_api_req *req)
{
	tunnels(req);
}

void
cove_api_SandboxGetTunnelsV2(struct cove_api_req *req)
{
	tunnels(req);
}

/* Tag messages pointing into the sandbox's strings (caller frees the two arrays). */
static Modal__Client__SandboxTag **
tag_messages(const struct cove_sandbox *sb, Modal__Client__SandboxTag **mem)
{
	Modal__Client__SandboxTag *items = xcalloc(sb->n_tags + 1, sizeof(*items));
	Modal__Client__SandboxTag **ptrs = xcalloc(sb->n_tags + 1, sizeof(*ptrs));
	for (size_t i = 0; i < sb->n_tags; i++) {
		Modal__Client__SandboxTag t = MODAL__CLIENT__SANDBOX_TAG__INIT;
		t.tag_name = sb->tag_names[i];
		t.tag_value = sb->tag_values[i];
		items[i] = t;
		ptrs[i] = &items[i];
	}
	*mem = items;
	return ptrs;
}

static void
tags_get(struct cove_api_req *req)
{
	const Modal__Client__SandboxTagsGetRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	cleanup_free Modal__Client__SandboxTag *mem = NULL;
	cleanup_free Modal__Client__SandboxTag **ptrs = tag_messages(sb, &mem);
	Modal__Client__SandboxTagsGetResponse resp = MODAL__CLIENT__SANDBOX_TAGS_GET_RESPONSE__INIT;
	resp.n_tags = sb->n_tags;
	resp.tags = ptrs;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_SandboxTagsGet(struct cove_api_req *req)
{
	tags_get(req);
}

void
cove_api_SandboxTagsGetV2(struct cove_api_req *req)
{
	tags_get(req);
}

static void
tags_set(struct cove_api_req *req)
{
	const Modal__Client__SandboxTagsSetRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	struct cove_error *err = NULL;
	if (cove_sandbox_set_tags(sb, r->tags, r->n_tags, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_SandboxTagsSet(struct cove_api_req *req)
{
	tags_set(req);
}

void
cove_api_SandboxTagsSetV2(struct cove_api_req *req)
{
	tags_set(req);
}

void
cove_api_SandboxSetName(struct cove_api_req *req)
{
	const Modal__Client__SandboxSetNameRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	struct cove_error *err = NULL;
	if (cove_sandbox_set_name(sb, r->name, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__SandboxSetNameResponse resp = MODAL__CLIENT__SANDBOX_SET_NAME_RESPONSE__INIT;
	cove_api_reply(req->call, &resp.base);
}

static void
from_name(struct cove_api_req *req)
{
	const Modal__Client__SandboxGetFromNameRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	struct cove_app *app = cove_sched_app_by_name(req->ctx->sched, env, r->app_name);
	if (app == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "App '%s' not found in environment '%s'", r->app_name,
				   cove_env_display(env));
		return;
	}
	struct cove_sandbox *sb = cove_sandbox_by_name(req->ctx->sandboxes, app->id, r->sandbox_name, r->include_terminated);
	if (sb == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "no %s sandbox named '%s' in app '%s'",
				   r->include_terminated ? "running or finished" : "running", r->sandbox_name, r->app_name);
		return;
	}
	Modal__Client__GenericResult result;
	cove_sandbox_result(sb, &result);
	Modal__Client__SandboxHandleMetadata meta = MODAL__CLIENT__SANDBOX_HANDLE_METADATA__INIT;
	meta.app_id = sb->app_id;
	if (sb->state == COVE_SANDBOX_FINISHED)
		meta.result = &result;
	Modal__Client__SandboxGetFromNameResponse resp = MODAL__CLIENT__SANDBOX_GET_FROM_NAME_RESPONSE__INIT;
	resp.sandbox_id = sb->id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_SandboxGetFromName(struct cove_api_req *req)
{
	from_name(req);
}

void
cove_api_SandboxGetFromNameV2(struct cove_api_req *req)
{
	from_name(req);
}

/* ---- listing ---- */

static int
tags_match(const struct cove_sandbox *sb, Modal__Client__SandboxTag **want, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;
		while (j < sb->n_tags && strcmp(sb->tag_names[j], want[i]->tag_name) != 0)
			j++;
		if (j == sb->n_tags || strcmp(sb->tag_values[j], want[i]->tag_value) != 0)
			return 0;
	}
	return 1;
}

static int
newest_first(const void *a, const void *b)
{
	const struct cove_sandbox *x = *(const struct cove_sandbox *const *)a;
	const struct cove_sandbox *y = *(const struct cove_sandbox *const *)b;
	return x->created_at < y->created_at ? 1 : x->created_at > y->created_at ? -1 : 0;
}

struct list_item {
	Modal__Client__SandboxInfo info;
	Modal__Client__TaskInfo task;
	Modal__Client__GenericResult result;
	Modal__Client__SandboxHandleMetadata meta;
	Modal__Client__SandboxTag *tag_mem;
	Modal__Client__SandboxTag **tags;
	Modal__Client__TunnelData **tunnels;
	size_t n_tunnels;
};

static void
list(struct cove_api_req *req)
{
	const Modal__Client__SandboxListRequest *r = (const void *)req->msg;
	const char *env = NULL;
	struct cove_error *err = NULL;
	if (r->app_id == NULL || *r->app_id == '\0') {
		env = cove_env_resolve(r->environment_name, &err);
		if (env == NULL) {
			cove_api_fail(req->call, err);
			return;
		}
	}
	const struct cove_map *all = cove_sandbox_all(req->ctx->sandboxes);
	cleanup_free struct cove_sandbox **match = xcalloc(all->len + 1, sizeof(*match));
	size_t n = 0, it = 0;
	void *v;
	while (cove_map_next(all, &it, NULL, &v)) {
		struct cove_sandbox *sb = v;
		if (env ? strcmp(sb->env, env) != 0 : strcmp(sb->app_id, r->app_id) != 0)
			continue;
		if (!r->include_finished && sb->state == COVE_SANDBOX_FINISHED)
			continue;
		if (r->before_timestamp > 0 && !(sb->created_at < r->before_timestamp))
			continue;
		if (!tags_match(sb, r->tags, r->n_tags))
			continue;
		match[n++] = sb;
	}
	qsort(match, n, sizeof(*match), newest_first);
	if (n > LIST_PAGE)
		n = LIST_PAGE;
	cleanup_free struct list_item *items = xcalloc(n + 1, sizeof(*items));
	cleanup_free Modal__Client__SandboxInfo **ptrs = xcalloc(n + 1, sizeof(*ptrs));
	for (size_t i = 0; i < n; i++) {
		struct cove_sandbox *sb = match[i];
		struct list_item *li = &items[i];
		Modal__Client__SandboxInfo info = MODAL__CLIENT__SANDBOX_INFO__INIT;
		Modal__Client__SandboxHandleMetadata meta = MODAL__CLIENT__SANDBOX_HANDLE_METADATA__INIT;
		li->info = info;
		li->meta = meta;
		cove_sandbox_task_info(sb, &li->task, &li->result);
		if (li->task.result)
			li->task.result = &li->result;
		li->meta.app_id = sb->app_id;
		if (sb->state == COVE_SANDBOX_FINISHED)
			li->meta.result = &li->result;
		li->tags = tag_messages(sb, &li->tag_mem);
		li->n_tunnels = cove_sandbox_tunnels(sb, &li->tunnels);
		li->info.id = sb->id;
		li->info.created_at = sb->created_at;
		li->info.task_info = &li->task;
		li->info.app_id = sb->app_id;
		li->info.n_tags = sb->n_tags;
		li->info.tags = li->tags;
		li->info.name = sb->name ? sb->name : "";
		li->info.image_id = sb->def->image_id;
		li->info.timeout_secs = sb->def->timeout_secs;
		if (sb->def->_idle_timeout_secs_case) {
			li->info._idle_timeout_secs_case = MODAL__CLIENT__SANDBOX_INFO___IDLE_TIMEOUT_SECS_IDLE_TIMEOUT_SECS;
			li->info.idle_timeout_secs = sb->def->idle_timeout_secs;
		}
		li->info.n_tunnels = li->n_tunnels;
		li->info.tunnels = li->tunnels;
		li->info.metadata = &li->meta;
		ptrs[i] = &li->info;
	}
	Modal__Client__SandboxListResponse resp = MODAL__CLIENT__SANDBOX_LIST_RESPONSE__INIT;
	resp.n_sandboxes = n;
	resp.sandboxes = ptrs;
	cove_api_reply(req->call, &resp.base);
	for (size_t i = 0; i < n; i++) {
		free(items[i].tag_mem);
		free(items[i].tags);
		cove_sandbox_tunnels_free(items[i].tunnels, items[i].n_tunnels);
	}
}

void
cove_api_SandboxList(struct cove_api_req *req)
{
	list(req);
}

void
cove_api_SandboxListV2(struct cove_api_req *req)
{
	list(req);
}

/* ---- snapshots (the older direct RPC; the router's TaskSnapshotFilesystem is the usual way) ---- */

static void
snapshot_fs_reply(struct cove_call *call, const char *image_id, struct cove_error *err)
{
	if (image_id == NULL) {
		cove_api_fail(call, err);
		return;
	}
	Modal__Client__GenericResult result = MODAL__CLIENT__GENERIC_RESULT__INIT;
	result.status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS;
	Modal__Client__ImageMetadata meta = MODAL__CLIENT__IMAGE_METADATA__INIT;
	Modal__Client__SandboxSnapshotFsResponse resp = MODAL__CLIENT__SANDBOX_SNAPSHOT_FS_RESPONSE__INIT;
	resp.image_id = (char *)image_id;
	resp.result = &result;
	resp.image_metadata = &meta;
	cove_api_reply(call, &resp.base);
}

void
cove_api_SandboxSnapshotFs(struct cove_api_req *req)
{
	const Modal__Client__SandboxSnapshotFsRequest *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_or_fail(req, r->sandbox_id);
	if (sb == NULL)
		return;
	struct cove_error *err = NULL;
	if (cove_sandbox_snapshot(sb, "", req->call, snapshot_fs_reply, &err) < 0)
		cove_api_fail(req->call, err);
}

/* ---- the router's access ---- */

/* The task a router token is asked for: a running sandbox's or function's container. */
static const char *
router_task(struct cove_api_req *req, const char *sandbox_id, const char *task_id)
{
	struct cove_error *err = NULL;
	if (sandbox_id && *sandbox_id) {
		struct cove_sandbox *sb = sandbox_or_fail(req, sandbox_id);
		if (sb == NULL)
			return NULL;
		if (sb->state != COVE_SANDBOX_RUNNING) {
			cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION, "Sandbox %s %s", sb->id,
					   sb->state == COVE_SANDBOX_PENDING ? "has not started yet" : "has already finished");
			return NULL;
		}
		return sb->host.task_id;
	}
	if (task_id == NULL || *task_id == '\0') {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: a sandbox id or a task id is required", req->method);
		return NULL;
	}
	struct cove_exec_host *host = cove_exec_host(req->ctx->sandboxes, task_id, &err);
	if (host == NULL) {
		cove_api_fail(req->call, err);
		return NULL;
	}
	return host->task_id;
}

void
cove_api_SandboxGetCommandRouterAccess(struct cove_api_req *req)
{
	const Modal__Client__SandboxGetCommandRouterAccessRequest *r = (const void *)req->msg;
	const char *sid = r->target_case == MODAL__CLIENT__SANDBOX_GET_COMMAND_ROUTER_ACCESS_REQUEST__TARGET_SANDBOX_ID
				  ? r->sandbox_id
				  : NULL;
	const char *tid = r->target_case == MODAL__CLIENT__SANDBOX_GET_COMMAND_ROUTER_ACCESS_REQUEST__TARGET_TASK_ID
				  ? r->task_id
				  : NULL;
	const char *task = router_task(req, sid, tid);
	if (task == NULL)
		return;
	cleanup_free char *jwt = cove_sandbox_router_token(req->ctx->sandboxes, task);
	struct cove_error *err = NULL;
	if (cove_auth_router_issued(req, jwt, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__SandboxGetCommandRouterAccessResponse resp =
		MODAL__CLIENT__SANDBOX_GET_COMMAND_ROUTER_ACCESS_RESPONSE__INIT;
	resp.jwt = jwt;
	resp.url = (char *)cove_sandbox_router_url(req->ctx->sandboxes);
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_TaskGetCommandRouterAccess(struct cove_api_req *req)
{
	const Modal__Client__TaskGetCommandRouterAccessRequest *r = (const void *)req->msg;
	const char *task = router_task(req, NULL, r->task_id);
	if (task == NULL)
		return;
	cleanup_free char *jwt = cove_sandbox_router_token(req->ctx->sandboxes, task);
	struct cove_error *err = NULL;
	if (cove_auth_router_issued(req, jwt, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__TaskGetCommandRouterAccessResponse resp = MODAL__CLIENT__TASK_GET_COMMAND_ROUTER_ACCESS_RESPONSE__INIT;
	resp.jwt = jwt;
	resp.url = (char *)cove_sandbox_router_url(req->ctx->sandboxes);
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_TaskGetInfo(struct cove_api_req *req)
{
	const Modal__Client__TaskGetInfoRequest *r = (const void *)req->msg;
	Modal__Client__TaskInfo info;
	Modal__Client__GenericResult result;
	Modal__Client__TaskGetInfoResponse resp = MODAL__CLIENT__TASK_GET_INFO_RESPONSE__INIT;
	struct cove_sandbox *sb = cove_sandbox_by_task(req->ctx->sandboxes, r->task_id);
	if (sb) {
		cove_sandbox_task_info(sb, &info, &result);
		resp.app_id = sb->app_id;
		resp.info = &info;
		cove_api_reply(req->call, &resp.base);
		return;
	}
	struct cove_task *t = cove_sched_task_by_id(req->ctx->sched, r->task_id);
	if (t == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Container %s not found (it may have exited)",
				   r->task_id && *r->task_id ? r->task_id : "(no id given)");
		return;
	}
	Modal__Client__TaskInfo ti = MODAL__CLIENT__TASK_INFO__INIT;
	ti.id = t->id;
	ti.started_at = t->started_at;
	ti.enqueued_at = t->started_at;
	resp.app_id = t->app->id;
	resp.info = &ti;
	cove_api_reply(req->call, &resp.base);
}
