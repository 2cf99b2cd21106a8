/* The container side of the protocol: what `python -m modal._container_entrypoint` calls. */
#include <string.h>

#include "api/api.h"
#include "sched/sched.h"
#include "server.h"
#include "util/alloc.h"

#define MAX_OUTPUTS_PER_REQUEST 1000

void
cove_api_ContainerHello(struct cove_api_req *req)
{
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_ContainerHeartbeat(struct cove_api_req *req)
{
	cove_sched_task_heartbeat(req->ctx->sched, req->call, req->task);
}

void
cove_api_FunctionGetInputs(struct cove_api_req *req)
{
	const Modal__Client__FunctionGetInputsRequest *r = (const void *)req->msg;
	if (strcmp(r->function_id, req->task->fn->id) != 0) {
		cove_api_fail_code(req->call, COVE_PERMISSION_DENIED, "container %s runs %s, not %s", req->task->id,
				   req->task->fn->id, r->function_id);
		return;
	}
	cove_sched_get_inputs(req->ctx->sched, req->call, req->task, r);
}

void
cove_api_FunctionPutOutputs(struct cove_api_req *req)
{
	const Modal__Client__FunctionPutOutputsRequest *r = (const void *)req->msg;
	if (r->n_outputs > MAX_OUTPUTS_PER_REQUEST) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "FunctionPutOutputs: at most %d outputs per request",
				   MAX_OUTPUTS_PER_REQUEST);
		return;
	}
	for (size_t i = 0; i < r->n_outputs; i++) {
		struct cove_error *err = NULL;
		if (cove_sched_put_output(req->ctx->sched, req->task, r->outputs[i], &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_TaskResult(struct cove_api_req *req)
{
	const Modal__Client__TaskResultRequest *r = (const void *)req->msg;
	if (r->result)
		cove_sched_task_result(req->ctx->sched, req->task, r->result);
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}
