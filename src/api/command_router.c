/* The task command router (modal.task_command_router.TaskCommandRouter), served on the API's own port: the
 * service the client talks to for sb.exec, the stdio of V2 sandboxes and filesystem snapshots. Its callers
 * authenticate with the bearer token that SandboxGetCommandRouterAccess / TaskGetCommandRouterAccess gave
 * them, which names the one container (task) it is good for. Methods Cove does not serve answer
 * UNIMPLEMENTED by name (the router's table, router.c). */
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "grpc/server.h"
#include "sandbox/sandbox.h"
#include "server.h"
#include "util/alloc.h"
#include "util/log.h"

/* The task of the router call being handled (filled by cove_tcr_auth; calls are handled one at a time). */
static char auth_task[160];

int
cove_tcr_auth(struct cove_api_req *req, struct cove_error **err)
{
	const char *h = cove_call_header(req->call, "authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return cove_error_set(err, COVE_UNAUTHENTICATED,
				      "the task command router needs the bearer token from SandboxGetCommandRouterAccess");
	if (cove_sandbox_router_check(req->ctx->sandboxes, h + 7, auth_task, sizeof(auth_task), err) < 0)
		return -1;
	req->router_task_id = auth_task;
	return 0;
}

/* The token is for one container: the request must name that one. */
static int
same_task(struct cove_api_req *req, const char *task_id)
{
	if (task_id && strcmp(task_id, req->router_task_id) == 0)
		return 1;
	cove_api_fail_code(req->call, COVE_PERMISSION_DENIED, "this token is for container %s, not %s",
			   req->router_task_id, task_id && *task_id ? task_id : "(none named)");
	return 0;
}

/* The exec a request names (in a container that may have stopped since). */
static struct cove_proc *
exec_or_fail(struct cove_api_req *req, const char *task_id, const char *exec_id)
{
	if (!same_task(req, task_id))
		return NULL;
	struct cove_exec_host *host = cove_exec_host_any(req->ctx->sandboxes, task_id);
	struct cove_proc *p = host ? cove_exec_get(host, exec_id) : NULL;
	if (p == NULL)
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "exec %s not found in container %s (it may have expired)",
				   exec_id && *exec_id ? exec_id : "(no id given)", task_id);
	return p;
}

void
cove_tcr_TaskExecStart(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__TaskExecStartRequest *r = (const void *)req->msg;
	if (!same_task(req, r->task_id))
		return;
	struct cove_error *err = NULL;
	struct cove_exec_host *host = cove_exec_host(req->ctx->sandboxes, r->task_id, &err);
	if (host == NULL || cove_exec_start(host, r, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__TaskCommandRouter__TaskExecStartResponse resp = MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_START_RESPONSE__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_tcr_TaskExecStdioRead(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__TaskExecStdioReadRequest *r = (const void *)req->msg;
	struct cove_proc *p = exec_or_fail(req, r->task_id, r->exec_id);
	if (p == NULL)
		return;
	int fd;
	switch (r->file_descriptor) {
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDIO_FILE_DESCRIPTOR__TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT:
		fd = 1;
		break;
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDIO_FILE_DESCRIPTOR__TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR:
		fd = 2;
		break;
	default:
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "unknown file descriptor %d", (int)r->file_descriptor);
		return;
	}
	cove_stream_read(cove_proc_stream(p, fd), req->call, r->offset, COVE_STREAM_EXEC, fd, 0);
}

void
cove_tcr_TaskExecStdinWrite(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__TaskExecStdinWriteRequest *r = (const void *)req->msg;
	struct cove_proc *p = exec_or_fail(req, r->task_id, r->exec_id);
	if (p == NULL)
		return;
	struct cove_error *err = NULL;
	if (cove_proc_stdin(p, r->offset, r->data.data, r->data.len, r->eof, req->call, &err) < 0)
		cove_api_fail(req->call, err);
}

/* TaskExecStdinWriteStream: Start{task, exec, offset}, Data..., End; answered once at the end. */
struct stdin_stream {
	char *task_id, *exec_id;
	uint64_t offset;
	int ended;
	struct cove_error *err; /* the first failure, reported at the end */
};

static void
stdin_stream_free(struct stdin_stream *st)
{
	free(st->task_id);
	free(st->exec_id);
	cove_error_free(st->err);
	free(st);
}

static void
stdin_stream_cancelled(struct cove_call *call, void *arg)
{
	(void)call;
	stdin_stream_free(arg);
}

/* One message of the stream; stops at the first failure. */
static void
stdin_stream_step(struct cove_api_req *req, struct stdin_stream *st, const Modal__TaskCommandRouter__TaskExecStdinWriteStreamRequest *m)
{
	if (st->err || st->ended)
		return;
	if (m == NULL) {
		cove_error_set(&st->err, COVE_INVALID_ARGUMENT, "a stdin stream message does not parse");
		return;
	}
	struct cove_exec_host *host = cove_exec_host_any(req->ctx->sandboxes, st->task_id);
	struct cove_proc *p = host ? cove_exec_get(host, st->exec_id) : NULL;
	if (p == NULL) {
		cove_error_set(&st->err, COVE_NOT_FOUND, "exec %s not found in container %s", st->exec_id, st->task_id);
		return;
	}
	switch (m->payload_case) {
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDIN_WRITE_STREAM_REQUEST__PAYLOAD_DATA:
		if (cove_proc_stdin(p, st->offset, m->data.data, m->data.len, 0, NULL, &st->err) == 0)
			st->offset += m->data.len;
		break;
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDIN_WRITE_STREAM_REQUEST__PAYLOAD_END:
		st->ended = 1;
		cove_proc_stdin(p, st->offset, NULL, 0, 1, NULL, &st->err);
		break;
	default:
		cove_error_set(&st->err, COVE_INVALID_ARGUMENT, "after start, a stdin stream carries data or its end");
		break;
	}
}

/* The first message opens the stream's state, kept as the call's data until the end. */
static struct stdin_stream *
stdin_stream_open(struct cove_api_req *req, const Modal__TaskCommandRouter__TaskExecStdinWriteStreamRequest *m)
{
	struct stdin_stream *st = xcalloc(1, sizeof(*st));
	cove_call_set_data(req->call, st);
	cove_call_on_cancel(req->call, stdin_stream_cancelled, st);
	if (m == NULL || m->payload_case != MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDIN_WRITE_STREAM_REQUEST__PAYLOAD_START ||
	    m->start == NULL) {
		cove_error_set(&st->err, COVE_INVALID_ARGUMENT, "the first stdin stream message must be start");
		return st;
	}
	st->task_id = xstrdup(m->start->task_id);
	st->exec_id = xstrdup(m->start->exec_id);
	st->offset = m->start->offset;
	if (strcmp(st->task_id, req->router_task_id) != 0) {
		cove_error_set(&st->err, COVE_PERMISSION_DENIED, "this token is for container %s, not %s",
			       req->router_task_id, st->task_id);
		return st;
	}
	struct cove_exec_host *host = cove_exec_host_any(req->ctx->sandboxes, st->task_id);
	struct cove_proc *p = host ? cove_exec_get(host, st->exec_id) : NULL;
	if (p == NULL)
		cove_error_set(&st->err, COVE_NOT_FOUND, "exec %s not found in container %s", st->exec_id, st->task_id);
	else if (st->offset > p->in_offset)
		cove_error_set(&st->err, COVE_FAILED_PRECONDITION, "stdin stream starts at %llu, but %llu bytes were written",
			       (unsigned long long)st->offset, (unsigned long long)p->in_offset);
	return st;
}

void
cove_tcr_TaskExecStdinWriteStream_message(struct cove_api_req *req, size_t index)
{
	const Modal__TaskCommandRouter__TaskExecStdinWriteStreamRequest *m = (const void *)req->msg;
	struct stdin_stream *st = cove_call_get_data(req->call);
	if (index == 0) {
		if (st == NULL)
			stdin_stream_open(req, m);
		return;
	}
	if (st)
		stdin_stream_step(req, st, m);
}

void
cove_tcr_TaskExecStdinWriteStream(struct cove_api_req *req)
{
	struct stdin_stream *st = cove_call_get_data(req->call);
	if (st == NULL) {
		/* One message only (the front hands out streams of two or more): a start, with nothing after it. */
		st = stdin_stream_open(req, (const void *)req->msg);
	}
	cove_call_on_cancel(req->call, NULL, NULL);
	cove_call_set_data(req->call, NULL);
	struct cove_error *err = steal_pointer(&st->err);
	stdin_stream_free(st);
	if (err) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__TaskCommandRouter__TaskExecStdinWriteStreamResponse resp =
		MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDIN_WRITE_STREAM_RESPONSE__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_tcr_TaskExecStdinStatus(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__TaskExecStdinStatusRequest *r = (const void *)req->msg;
	struct cove_proc *p = exec_or_fail(req, r->task_id, r->exec_id);
	if (p == NULL)
		return;
	Modal__TaskCommandRouter__TaskExecStdinStatusResponse resp =
		MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDIN_STATUS_RESPONSE__INIT;
	resp.num_bytes_written = p->in_offset;
	resp.closed = p->in_eof;
	cove_api_reply(req->call, &resp.base);
}

void
cove_tcr_TaskExecPoll(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__TaskExecPollRequest *r = (const void *)req->msg;
	struct cove_proc *p = exec_or_fail(req, r->task_id, r->exec_id);
	if (p == NULL)
		return;
	Modal__TaskCommandRouter__TaskExecPollResponse resp = MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_POLL_RESPONSE__INIT;
	int32_t code = 0, sig = 0;
	switch (cove_proc_exit_status(p, &code, &sig)) {
	case 1:
		resp.exit_status_case = MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_POLL_RESPONSE__EXIT_STATUS_CODE;
		resp.code = code;
		break;
	case 2:
		resp.exit_status_case = MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_POLL_RESPONSE__EXIT_STATUS_SIGNAL;
		resp.signal = sig;
		break;
	default:
		break;
	}
	cove_api_reply(req->call, &resp.base);
}

void
cove_tcr_TaskExecWait(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__TaskExecWaitRequest *r = (const void *)req->msg;
	struct cove_proc *p = exec_or_fail(req, r->task_id, r->exec_id);
	if (p == NULL)
		return;
	/* Answer a little before the client's own deadline, so that it asks again instead of timing out. */
	int64_t left = cove_call_remaining_ms(req->call);
	double t = left > 0 ? (double)left / 1000.0 - 1.0 : 55.0;
	cove_proc_wait(p, req->call, t > 0.1 ? t : 0.1);
}

/* ---- a V2 sandbox's own stdio ---- */

static struct cove_sandbox *
sandbox_of_task(struct cove_api_req *req, const char *task_id)
{
	if (!same_task(req, task_id))
		return NULL;
	struct cove_sandbox *sb = cove_sandbox_by_task(req->ctx->sandboxes, task_id);
	if (sb == NULL)
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "container %s is not a sandbox's", task_id);
	return sb;
}

void
cove_tcr_SandboxStdioReadV2(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__SandboxStdioReadV2Request *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_of_task(req, r->task_id);
	if (sb == NULL)
		return;
	int fd;
	switch (r->file_descriptor) {
	case MODAL__TASK_COMMAND_ROUTER__SANDBOX_STDIO_FILE_DESCRIPTOR__SANDBOX_STDIO_FILE_DESCRIPTOR_STDOUT:
		fd = 1;
		break;
	case MODAL__TASK_COMMAND_ROUTER__SANDBOX_STDIO_FILE_DESCRIPTOR__SANDBOX_STDIO_FILE_DESCRIPTOR_STDERR:
		fd = 2;
		break;
	default:
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "unknown file descriptor %d", (int)r->file_descriptor);
		return;
	}
	if (sb->main == NULL) {
		if (sb->state == COVE_SANDBOX_FINISHED)
			cove_call_finish(req->call, COVE_OK, NULL);
		else
			cove_api_fail_code(req->call, COVE_UNAVAILABLE, "Sandbox %s has not started yet", sb->id);
		return;
	}
	cove_stream_read(cove_proc_stream(sb->main, fd), req->call, r->offset, COVE_STREAM_SANDBOX_V2, fd, 0);
}

void
cove_tcr_SandboxStdinWriteV2(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__SandboxStdinWriteV2Request *r = (const void *)req->msg;
	struct cove_sandbox *sb = sandbox_of_task(req, r->task_id);
	if (sb == NULL)
		return;
	if (sb->main == NULL) {
		cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION, "Sandbox %s %s", sb->id,
				   sb->state == COVE_SANDBOX_FINISHED ? "has already terminated" : "has not started yet");
		return;
	}
	struct cove_error *err = NULL;
	if (cove_proc_stdin(sb->main, r->offset, r->data.data, r->data.len, r->eof, req->call, &err) < 0)
		cove_api_fail(req->call, err);
}

/* ---- snapshots ---- */

static void
snapshot_reply(struct cove_call *call, const char *image_id, struct cove_error *err)
{
	if (image_id == NULL) {
		cove_api_fail(call, err);
		return;
	}
	Modal__TaskCommandRouter__TaskSnapshotFilesystemResponse resp =
		MODAL__TASK_COMMAND_ROUTER__TASK_SNAPSHOT_FILESYSTEM_RESPONSE__INIT;
	resp.image_id = (char *)image_id;
	cove_api_reply(call, &resp.base);
}

void
cove_tcr_TaskSnapshotFilesystem(struct cove_api_req *req)
{
	const Modal__TaskCommandRouter__TaskSnapshotFilesystemRequest *r = (const void *)req->msg;
	if (!same_task(req, r->task_id))
		return;
	if (r->container_id && *r->container_id) {
		cove_api_fail_code(req->call, COVE_UNIMPLEMENTED, "sidecar containers are not supported by Cove");
		return;
	}
	if (r->_customer_supplied_encryption_key_case) {
		cove_api_fail_code(req->call, COVE_UNIMPLEMENTED, "encrypted snapshots are not supported by Cove");
		return;
	}
	struct cove_sandbox *sb = cove_sandbox_by_task(req->ctx->sandboxes, r->task_id);
	if (sb == NULL) {
		cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION,
				   "container %s is a function's: only sandboxes can be snapshotted", r->task_id);
		return;
	}
	struct cove_error *err = NULL;
	if (cove_sandbox_snapshot(sb, r->snapshot_id, req->call, snapshot_reply, &err) < 0)
		cove_api_fail(req->call, err);
}
