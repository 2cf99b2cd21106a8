/* Function calls from the caller's side: FunctionMap, FunctionPutInputs, FunctionGetOutputs,
 * FunctionCallFromId, FunctionGetCallGraph. */
#include <string.h>

#include "api/api.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/pb.h"

/* Inputs of one map in flight at once, as Modal does. */
#define MAX_INPUTS_OUTSTANDING 1000
#define MAX_INPUTS_PER_REQUEST 1000

static struct cove_function *
callable_or_fail(struct cove_api_req *req, const char *function_id)
{
	struct cove_function *fn = cove_sched_function_get(req->ctx->sched, function_id);
	if (fn == NULL || fn->def == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function %s not found", function_id);
		return NULL;
	}
	if (fn->app->stopping || fn->app->done) {
		cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION, "Function %s belongs to app %s, which has stopped",
				   function_id, fn->app->id);
		return NULL;
	}
	return fn;
}

static int
check_input(struct cove_api_req *req, const Modal__Client__FunctionPutInputsItem *item)
{
	if (item == NULL || item->input == NULL) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: an input item has no input", req->method);
		return -1;
	}
	if (item->idx < 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: input index %d is negative", req->method, item->idx);
		return -1;
	}
	return 0;
}

/* Accept items into fc; fills out[i]. Returns 0 or -1 (call answered). Durable as one transaction. */
static int
accept_inputs(struct cove_api_req *req, struct cove_fcall *fc, Modal__Client__FunctionPutInputsItem **items, size_t n,
	      Modal__Client__FunctionPutInputsResponseItem *out)
{
	struct cove_sched *s = req->ctx->sched;
	struct cove_error *err = NULL;
	if (n > MAX_INPUTS_PER_REQUEST) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: at most %d inputs per request", req->method,
				   MAX_INPUTS_PER_REQUEST);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (check_input(req, items[i]) < 0)
			return -1;
	/* Over the limits: RESOURCE_EXHAUSTED, which the client retries for FunctionPutInputs (backpressure). */
	if (cove_sched_inputs_fit(fc, n, &err) < 0) {
		cove_api_fail(req->call, err);
		return -1;
	}
	if (cove_store_begin(req->ctx->store, &err) < 0) {
		cove_api_fail(req->call, err);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len;
		cleanup_free uint8_t *bytes = pb_pack(&items[i]->input->base, &len);
		struct cove_input *in = cove_sched_input_add(s, fc, items[i]->idx, bytes, len, &err);
		if (in == NULL) {
			cove_store_rollback(req->ctx->store);
			cove_api_fail(req->call, err);
			return -1;
		}
		Modal__Client__FunctionPutInputsResponseItem o = MODAL__CLIENT__FUNCTION_PUT_INPUTS_RESPONSE_ITEM__INIT;
		o.idx = items[i]->idx;
		o.input_id = in->id;
		o.input_jwt = "";
		out[i] = o;
	}
	if (cove_store_commit(req->ctx->store, &err) < 0) {
		cove_store_rollback(req->ctx->store);
		cove_api_fail(req->call, err);
		return -1;
	}
	cove_sched_kick(s, fc->fn);
	return 0;
}

/* The input a call is made from (the client sends the input its code runs for): one that exists, and for a
 * container one it runs or ran, so that no container can hang its calls under another's inputs. */
static int
check_parent(struct cove_api_req *req, const char *parent_input_id)
{
	if (parent_input_id == NULL || *parent_input_id == '\0')
		return 0;
	struct cove_input *in = cove_sched_input_get(req->ctx->sched, parent_input_id);
	if (in == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "FunctionMap: parent input %s not found", parent_input_id);
		return -1;
	}
	if (req->task && in->task != req->task &&
	    !(in->state == COVE_INPUT_DONE && strcmp(in->task_id, req->task->id) == 0)) {
		cove_api_fail_code(req->call, COVE_PERMISSION_DENIED,
				   "FunctionMap: parent input %s is not an input of this container", parent_input_id);
		return -1;
	}
	return 0;
}

void
cove_api_FunctionMap(struct cove_api_req *req)
{
	const Modal__Client__FunctionMapRequest *r = (const void *)req->msg;
	struct cove_function *fn = callable_or_fail(req, r->function_id);
	if (fn == NULL)
		return;
	int call_type = r->function_call_type ? (int)r->function_call_type : MODAL__CLIENT__FUNCTION_CALL_TYPE__FUNCTION_CALL_TYPE_UNARY;
	if (call_type == MODAL__CLIENT__FUNCTION_CALL_TYPE__FUNCTION_CALL_TYPE_UNARY && r->n_pipelined_inputs > 1) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "FunctionMap: a unary call takes one input, got %zu",
				   r->n_pipelined_inputs);
		return;
	}
	if (check_parent(req, r->parent_input_id) < 0)
		return;
	struct cove_error *err = NULL;
	struct cove_fcall *fc = cove_sched_call_create(req->ctx->sched, fn, call_type, r->function_call_invocation_type,
						       r->parent_input_id, &err);
	if (fc == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__FunctionPutInputsResponseItem *items = xcalloc(r->n_pipelined_inputs, sizeof(*items));
	Modal__Client__FunctionPutInputsResponseItem **ptrs = xcalloc(r->n_pipelined_inputs, sizeof(*ptrs));
	if (accept_inputs(req, fc, r->pipelined_inputs, r->n_pipelined_inputs, items) < 0) {
		free(items);
		free(ptrs);
		return;
	}
	for (size_t i = 0; i < r->n_pipelined_inputs; i++)
		ptrs[i] = &items[i];
	Modal__Client__FunctionRetryPolicy policy = MODAL__CLIENT__FUNCTION_RETRY_POLICY__INIT;
	Modal__Client__FunctionMapResponse resp = MODAL__CLIENT__FUNCTION_MAP_RESPONSE__INIT;
	resp.function_call_id = fc->id;
	resp.n_pipelined_inputs = r->n_pipelined_inputs;
	resp.pipelined_inputs = ptrs;
	resp.retry_policy = fn->def->retry_policy ? fn->def->retry_policy : &policy;
	resp.function_call_jwt = "";
	/* Retries happen on the server; the client only waits. */
	resp.sync_client_retries_enabled = 0;
	resp.max_inputs_outstanding = MAX_INPUTS_OUTSTANDING;
	cove_api_reply(req->call, &resp.base);
	free(items);
	free(ptrs);
}

void
cove_api_FunctionPutInputs(struct cove_api_req *req)
{
	const Modal__Client__FunctionPutInputsRequest *r = (const void *)req->msg;
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, r->function_call_id);
	if (fc == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function call %s not found", r->function_call_id);
		return;
	}
	if (r->function_id && *r->function_id && strcmp(r->function_id, fc->fn->id) != 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "Function call %s belongs to %s, not %s",
				   fc->id, fc->fn->id, r->function_id);
		return;
	}
	if (callable_or_fail(req, fc->fn->id) == NULL)
		return;
	Modal__Client__FunctionPutInputsResponseItem *items = xcalloc(r->n_inputs, sizeof(*items));
	Modal__Client__FunctionPutInputsResponseItem **ptrs = xcalloc(r->n_inputs, sizeof(*ptrs));
	if (accept_inputs(req, fc, r->inputs, r->n_inputs, items) == 0) {
		for (size_t i = 0; i < r->n_inputs; i++)
			ptrs[i] = &items[i];
		Modal__Client__FunctionPutInputsResponse resp = MODAL__CLIENT__FUNCTION_PUT_INPUTS_RESPONSE__INIT;
		resp.n_inputs = r->n_inputs;
		resp.inputs = ptrs;
		cove_api_reply(req->call, &resp.base);
	}
	free(items);
	free(ptrs);
}

void
cove_api_FunctionGetOutputs(struct cove_api_req *req)
{
	const Modal__Client__FunctionGetOutputsRequest *r = (const void *)req->msg;
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, r->function_call_id);
	if (fc == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function call %s not found", r->function_call_id);
		return;
	}
	if (!(r->timeout >= 0 && r->timeout <= 3600)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "FunctionGetOutputs: timeout %.1f is out of range",
				   r->timeout);
		return;
	}
	cove_sched_get_outputs(req->ctx->sched, req->call, fc, r);
}

void
cove_api_FunctionCallFromId(struct cove_api_req *req)
{
	const Modal__Client__FunctionCallFromIdRequest *r = (const void *)req->msg;
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, r->function_call_id);
	if (fc == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function call %s not found", r->function_call_id);
		return;
	}
	Modal__Client__FunctionCallHandleMetadata meta = MODAL__CLIENT__FUNCTION_CALL_HANDLE_METADATA__INIT;
	meta.app_id = fc->fn->app->id;
	meta.function_id = fc->fn->id;
	Modal__Client__FunctionCallFromIdResponse resp = MODAL__CLIENT__FUNCTION_CALL_FROM_ID_RESPONSE__INIT;
	resp.function_call_id = fc->id;
	resp.num_inputs = (int32_t)fc->n_inputs;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

static struct cove_fcall *
data_call_or_fail(struct cove_api_req *req, const Modal__Client__FunctionCallGetDataRequest *r)
{
	if (r->call_info_case != MODAL__CLIENT__FUNCTION_CALL_GET_DATA_REQUEST__CALL_INFO_FUNCTION_CALL_ID) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: function_call_id is required", req->method);
		return NULL;
	}
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, r->function_call_id);
	if (fc == NULL)
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function call %s not found", r->function_call_id);
	return fc;
}

void
cove_api_FunctionCallGetDataOut(struct cove_api_req *req)
{
	const Modal__Client__FunctionCallGetDataRequest *r = (const void *)req->msg;
	struct cove_fcall *fc = data_call_or_fail(req, r);
	if (fc)
		cove_sched_data_get(req->ctx->sched, req->call, fc, COVE_DATA_OUT, r->last_index);
}

void
cove_api_FunctionCallGetDataIn(struct cove_api_req *req)
{
	const Modal__Client__FunctionCallGetDataRequest *r = (const void *)req->msg;
	struct cove_fcall *fc = data_call_or_fail(req, r);
	if (fc)
		cove_sched_data_get(req->ctx->sched, req->call, fc, COVE_DATA_IN, r->last_index);
}

void
cove_api_FunctionCallPutDataOut(struct cove_api_req *req)
{
	const Modal__Client__FunctionCallPutDataRequest *r = (const void *)req->msg;
	if (r->call_info_case != MODAL__CLIENT__FUNCTION_CALL_PUT_DATA_REQUEST__CALL_INFO_FUNCTION_CALL_ID) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "FunctionCallPutDataOut: function_call_id is required");
		return;
	}
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, r->function_call_id);
	if (fc == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function call %s not found", r->function_call_id);
		return;
	}
	if (fc->fn != req->task->fn) {
		cove_api_fail_code(req->call, COVE_PERMISSION_DENIED, "container %s does not run function call %s",
				   req->task->id, fc->id);
		return;
	}
	struct cove_error *err = NULL;
	if (cove_sched_data_put(req->ctx->sched, fc, COVE_DATA_OUT, r->data_chunks, r->n_data_chunks, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_FunctionCallCancel(struct cove_api_req *req)
{
	const Modal__Client__FunctionCallCancelRequest *r = (const void *)req->msg;
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, r->function_call_id);
	if (fc == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function call %s not found", r->function_call_id);
		return;
	}
	cove_sched_call_cancel(req->ctx->sched, fc, r->terminate_containers);
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_FunctionFinishInputs(struct cove_api_req *req)
{
	const Modal__Client__FunctionFinishInputsRequest *r = (const void *)req->msg;
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, r->function_call_id);
	if (fc == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function call %s not found", r->function_call_id);
		return;
	}
	if (r->num_inputs != fc->n_inputs) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "FunctionFinishInputs: the call has %zu inputs, not %u", fc->n_inputs, r->num_inputs);
		return;
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_FunctionGetCallGraph(struct cove_api_req *req)
{
	const Modal__Client__FunctionGetCallGraphRequest *r = (const void *)req->msg;
	struct cove_fcall *fc = cove_sched_call_get(req->ctx->sched, r->function_call_id);
	if (fc == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function call %s not found", r->function_call_id);
		return;
	}
	/* A container sees its own app's calls only: call ids of other apps are theirs to hand out. */
	if (req->task && fc->fn->app != req->task->app) {
		cove_api_fail_code(req->call, COVE_PERMISSION_DENIED, "Function call %s is not a call of this container's app",
				   fc->id);
		return;
	}
	Modal__Client__FunctionGetCallGraphResponse resp = MODAL__CLIENT__FUNCTION_GET_CALL_GRAPH_RESPONSE__INIT;
	cove_sched_call_graph(req->ctx->sched, fc, req->task ? req->task->app : NULL, &resp);
	cove_api_reply(req->call, &resp.base);
	cove_sched_call_graph_free(&resp);
}
