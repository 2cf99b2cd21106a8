/* Calls, their inputs and outputs: creating them within the pending-input limits, the pending queue of each
 * function, outputs recorded and handed to FunctionGetOutputs long polls, retries and failures. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "api/api.h"
#include "grpc/server.h"
#include "sched/sched_internal.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/pb.h"
#include "util/pickle.h"


struct cove_fcall *
cove_sched_call_create(struct cove_sched *s, struct cove_function *fn, int call_type, int invocation_type,
		       const char *parent_input_id, struct cove_error **err)
{
	if (parent_input_id && *parent_input_id == '\0')
		parent_input_id = NULL;
	cleanup_free char *id = cove_id_new("fc");
	if (cove_store_call_put(s->ctx->store, id, fn->id, call_type, invocation_type, parent_input_id, err) < 0)
		return NULL;
	return cove_sched_call_insert(s, fn, id, call_type, invocation_type, parent_input_id);
}

struct cove_fcall *
cove_sched_call_insert(struct cove_sched *s, struct cove_function *fn, const char *id, int call_type,
		       int invocation_type, const char *parent_input_id)
{
	struct cove_fcall *fc = xcalloc(1, sizeof(*fc));
	fc->id = xstrdup(id);
	fc->fn = fn;
	fc->call_type = call_type;
	fc->invocation_type = invocation_type;
	cove_map_put(&s->calls, fc->id, fc);
	if (parent_input_id && *parent_input_id) {
		fc->parent_input_id = xstrdup(parent_input_id);
		fc->next_sibling = cove_map_put(&s->children, parent_input_id, fc);
	}
	return fc;
}

struct cove_fcall *
cove_sched_call_get(struct cove_sched *s, const char *call_id)
{
	return call_id ? cove_map_get(&s->calls, call_id) : NULL;
}

struct cove_input *
cove_sched_input_get(struct cove_sched *s, const char *input_id)
{
	return input_id ? cove_map_get(&s->inputs, input_id) : NULL;
}

void
sched_pending_push(struct cove_function *fn, struct cove_input *in)
{
	in->next = NULL;
	in->prev = fn->pending_tail;
	if (fn->pending_tail)
		fn->pending_tail->next = in;
	else
		fn->pending_head = in;
	fn->pending_tail = in;
	fn->n_pending++;
}

struct cove_input *
sched_pending_pop(struct cove_function *fn)
{
	struct cove_input *in = fn->pending_head;
	if (in == NULL)
		return NULL;
	fn->pending_head = in->next;
	if (fn->pending_head)
		fn->pending_head->prev = NULL;
	else
		fn->pending_tail = NULL;
	in->next = in->prev = NULL;
	fn->n_pending--;
	return in;
}

static struct cove_input *input_insert(struct cove_sched *s, struct cove_fcall *fc, const char *id, int32_t idx,
				       const uint8_t *data, size_t len);
static void output_append(struct cove_fcall *fc, struct cove_input *in, uint8_t *item, size_t len);

void
sched_pending_remove(struct cove_function *fn, struct cove_input *in)
{
	if (in->prev)
		in->prev->next = in->next;
	else
		fn->pending_head = in->next;
	if (in->next)
		in->next->prev = in->prev;
	else
		fn->pending_tail = in->prev;
	in->next = in->prev = NULL;
	fn->n_pending--;
}

#define MAX_PENDING_INPUTS 2000
#define MAX_PENDING_SPAWNED_INPUTS 1000000
#define MAX_TOTAL_INPUTS 25000

int
cove_sched_inputs_fit(struct cove_fcall *fc, size_t n, struct cove_error **err)
{
	struct cove_function *fn = fc->fn;
	int spawned = fc->invocation_type == MODAL__CLIENT__FUNCTION_CALL_INVOCATION_TYPE__FUNCTION_CALL_INVOCATION_TYPE_ASYNC;
	size_t max_pending = spawned ? MAX_PENDING_SPAWNED_INPUTS : MAX_PENDING_INPUTS;
	if (fn->n_pending + n > max_pending)
		return cove_error_set(err, COVE_RESOURCE_EXHAUSTED,
				      "Function %s has %zu pending inputs, the limit is %zu: retry later", fn->tag,
				      fn->n_pending, max_pending);
	if (!spawned && fn->n_pending + fn->n_running + n > MAX_TOTAL_INPUTS)
		return cove_error_set(err, COVE_RESOURCE_EXHAUSTED,
				      "Function %s has %zu inputs pending or running, the limit is %d: retry later", fn->tag,
				      fn->n_pending + fn->n_running, MAX_TOTAL_INPUTS);
	return 0;
}

struct cove_input *
cove_sched_input_add(struct cove_sched *s, struct cove_fcall *fc, int32_t idx, const uint8_t *data, size_t len,
		     struct cove_error **err)
{
	cleanup_free char *id = cove_id_new("in");
	if (cove_store_input_put(s->ctx->store, id, fc->id, idx, data, len, err) < 0)
		return NULL;
	struct cove_input *in = input_insert(s, fc, id, idx, data, len);
	sched_pending_push(fc->fn, in);
	return in;
}

static struct cove_input *
input_insert(struct cove_sched *s, struct cove_fcall *fc, const char *id, int32_t idx, const uint8_t *data, size_t len)
{
	struct cove_input *in = xcalloc(1, sizeof(*in));
	in->id = xstrdup(id);
	in->fc = fc;
	in->idx = idx;
	in->data = xmemdup(data, len);
	in->len = len;
	in->state = COVE_INPUT_PENDING;
	if (fc->n_inputs == fc->cap_inputs) {
		fc->cap_inputs = fc->cap_inputs ? fc->cap_inputs * 2 : 4;
		fc->inputs = xrealloc(fc->inputs, fc->cap_inputs * sizeof(*fc->inputs));
	}
	fc->inputs[fc->n_inputs++] = in;
	fc->completed_at = 0;
	cove_map_put(&s->inputs, in->id, in);
	return in;
}

static int
output_matches(const struct cove_output *o, const struct cove_waiter *w, int is_map)
{
	if (o->consumed)
		return 0;
	if (w->has_range)
		return o->idx >= w->start_idx && o->idx <= w->end_idx;
	if (is_map)
		return o->entry > w->cursor;
	return 1;
}

/* Append one length-delimited field to buf (grown as needed). */
static void
wire_field(uint8_t **buf, size_t *len, size_t *cap, uint32_t field, const uint8_t *data, size_t n)
{
	while (*len + n + 20 > *cap) {
		*cap = *cap ? *cap * 2 : 4096;
		*buf = xrealloc(*buf, *cap);
	}
	uint64_t vs[2] = {((uint64_t)field << 3) | 2 /* length-delimited */, n};
	for (int k = 0; k < 2; k++) {
		uint64_t v = vs[k];
		do {
			uint8_t b = v & 0x7f;
			v >>= 7;
			(*buf)[(*len)++] = b | (v ? 0x80 : 0);
		} while (v);
	}
	memcpy(*buf + *len, data, n);
	*len += n;
}

/* An output's bytes: in memory, or read back from the store once a map delivered and dropped them. */
static const uint8_t *
output_bytes(struct cove_output *o, uint8_t **loaded, size_t *len)
{
	*loaded = NULL;
	if (o->item) {
		*len = o->len;
		return o->item;
	}
	struct cove_error *err = NULL;
	if (cove_store_output_get(the_sched->ctx->store, o->in->id, loaded, len, &err) < 0) {
		log_error("output of input %s: %s", o->in->id, err->msg);
		cove_error_free(err);
		return NULL;
	}
	return *loaded;
}

/* Answer a FunctionGetOutputs if anything matches; returns 1 if answered. The stored items are copied into
 * the response as they are (no decode and re-encode), and a map only looks at outputs after its cursor. */
static int
outputs_try_answer(struct cove_fcall *fc, struct cove_waiter *w, int answer_empty)
{
	int is_map = fc->call_type == MODAL__CLIENT__FUNCTION_CALL_TYPE__FUNCTION_CALL_TYPE_MAP;
	size_t first = 0;
	if (is_map && !w->has_range && w->cursor > 0)
		first = (size_t)w->cursor < fc->n_outputs ? (size_t)w->cursor : fc->n_outputs;
	static uint32_t outputs_field;
	if (outputs_field == 0)
		outputs_field = protobuf_c_message_descriptor_get_field_by_name(
					&modal__client__function_get_outputs_response__descriptor, "outputs")
					->id;
	uint8_t *body = NULL;
	size_t len = 0, cap = 0, k = 0;
	int64_t last = w->cursor;
	for (size_t i = first; i < fc->n_outputs; i++) {
		struct cove_output *o = &fc->outputs[i];
		if (!output_matches(o, w, is_map))
			continue;
		uint8_t *loaded;
		size_t n;
		const uint8_t *bytes = output_bytes(o, &loaded, &n);
		if (bytes == NULL)
			continue;
		wire_field(&body, &len, &cap, outputs_field, bytes, n);
		free(loaded);
		k++;
		if (o->entry > last)
			last = o->entry;
	}
	if (k == 0 && !answer_empty) {
		free(body);
		return 0;
	}
	char lastbuf[32];
	snprintf(lastbuf, sizeof(lastbuf), "%lld", (long long)(last < 0 ? 0 : last));
	Modal__Client__FunctionGetOutputsResponse resp = MODAL__CLIENT__FUNCTION_GET_OUTPUTS_RESPONSE__INIT;
	resp.last_entry_id = lastbuf;
	resp.num_unfinished_inputs = (int32_t)(fc->n_inputs - fc->n_done);
	/* Fields may come in any order: the scalar fields, then the outputs. */
	size_t head_len;
	uint8_t *head = pb_pack(&resp.base, &head_len);
	uint8_t *msg = xmalloc(head_len + len + 1);
	memcpy(msg, head, head_len);
	if (len)
		memcpy(msg + head_len, body, len);
	cove_call_send(w->call, msg, head_len + len);
	cove_call_finish(w->call, COVE_OK, NULL);
	free(msg);
	free(head);
	free(body);
	for (size_t i = first; i < fc->n_outputs; i++) {
		struct cove_output *o = &fc->outputs[i];
		if (!output_matches(o, w, is_map) || o->entry > last)
			continue;
		if (w->clear_on_success)
			o->consumed = 1;
		/* Delivered: a map's memory stays flat however long it runs (the store still has them). */
		if (w->clear_on_success || is_map) {
			free(o->item);
			o->item = NULL;
		}
	}
	return 1;
}

static void
outputs_timeout(struct cove_waiter *w)
{
	outputs_try_answer(w->owner, w, 1);
	cove_waiter_done(w);
}

void
cove_sched_get_outputs(struct cove_sched *s, struct cove_call *call, struct cove_fcall *fc,
		       const Modal__Client__FunctionGetOutputsRequest *req)
{
	struct cove_waiter tmp = {.call = call, .owner = fc};
	tmp.clear_on_success = req->clear_on_success;
	tmp.cursor = req->last_entry_id && *req->last_entry_id ? strtoll(req->last_entry_id, NULL, 10) : 0;
	if (req->_start_idx_case || req->_end_idx_case) {
		tmp.has_range = 1;
		tmp.start_idx = req->_start_idx_case ? req->start_idx : 0;
		tmp.end_idx = req->_end_idx_case ? req->end_idx : INT32_MAX;
	}
	if (outputs_try_answer(fc, &tmp, req->timeout <= 0))
		return;
	double timeout = req->timeout > MAX_OUTPUTS_POLL_S ? MAX_OUTPUTS_POLL_S : req->timeout;
	struct cove_waiter *w = cove_waiter_park(s->ctx->base, s, &fc->waiters, call, fc, timeout, outputs_timeout);
	w->clear_on_success = tmp.clear_on_success;
	w->cursor = tmp.cursor;
	w->has_range = tmp.has_range;
	w->start_idx = tmp.start_idx;
	w->end_idx = tmp.end_idx;
}

static void
outputs_wake(struct cove_fcall *fc)
{
	struct cove_waiter *next;
	for (struct cove_waiter *w = fc->waiters.head; w; w = next) {
		next = w->next;
		if (outputs_try_answer(fc, w, 0))
			cove_waiter_done(w);
	}
}

/* Record the output of an input and wake whoever waits for it. */
static int
input_complete(struct cove_sched *s, struct cove_input *in, const Modal__Client__GenericResult *result, int data_format,
	       double started_at, const char *task_id, struct cove_error **err)
{
	struct cove_fcall *fc = in->fc;
	Modal__Client__FunctionGetOutputsItem item = MODAL__CLIENT__FUNCTION_GET_OUTPUTS_ITEM__INIT;
	item.result = (Modal__Client__GenericResult *)result;
	item.idx = in->idx;
	item.input_id = in->id;
	item.data_format = data_format;
	item.task_id = (char *)(task_id ? task_id : "");
	item.input_started_at = started_at;
	item.output_created_at = now_s();
	/* The client's own count of attempts, which it checks every output against: Cove retries server-side
	 * (FunctionMap answers sync_client_retries_enabled = false), so for the client there is one attempt, 0.
	 * An output with the server's count would be dropped as stale, and a .map waiting on it hang. */
	item.retry_count = 0;
	size_t len;
	uint8_t *bytes = pb_pack(&item.base, &len);
	if (cove_store_output_put(s->ctx->store, in->id, fc->id, in->idx, (int)in->retry_count, bytes, len, err) < 0) {
		free(bytes);
		return -1;
	}
	in->status = result->status;
	snprintf(in->task_id, sizeof(in->task_id), "%s", task_id ? task_id : "");
	output_append(fc, in, bytes, len);
	outputs_wake(fc);
	cove_sched_data_output_recorded(fc); /* in-server readers (the web gateway) */
	if (fc->fn->build_run)
		sched_build_run_output(s, fc, result);
	return 0;
}

/* Takes item. */
static void
output_append(struct cove_fcall *fc, struct cove_input *in, uint8_t *item, size_t len)
{
	if (fc->n_outputs == fc->cap_outputs) {
		fc->cap_outputs = fc->cap_outputs ? fc->cap_outputs * 2 : 4;
		fc->outputs = xrealloc(fc->outputs, fc->cap_outputs * sizeof(*fc->outputs));
	}
	struct cove_output *o = &fc->outputs[fc->n_outputs++];
	memset(o, 0, sizeof(*o));
	o->entry = (int64_t)fc->n_outputs;
	o->idx = in->idx;
	o->item = item;
	o->len = len;
	o->in = in;
	in->state = COVE_INPUT_DONE;
	free(in->data);
	in->data = NULL;
	in->len = 0;
	fc->n_done++;
	if (fc->n_done == fc->n_inputs)
		fc->completed_at = now_s();
}

/* A protobuf varint at *p (before end); 0 when malformed. */
static int
wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 1;
	}
	return 0;
}

/* From a stored FunctionGetOutputsItem, without decoding the rest: result (1).status (1) and task_id (6). */
static void
output_summary(const uint8_t *b, size_t n, int depth, int *status, char *task_id, size_t cap)
{
	const uint8_t *p = b, *end = b + n;
	uint64_t key, v;
	while (p < end && wire_varint(&p, end, &key)) {
		unsigned field = (unsigned)(key >> 3), type = (unsigned)(key & 7);
		if (type == 0) {
			if (!wire_varint(&p, end, &v))
				return;
			if (depth == 1 && field == 1)
				*status = (int)v;
		} else if (type == 2) {
			if (!wire_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return;
			if (depth == 0 && field == 1)
				output_summary(p, (size_t)v, 1, status, task_id, cap);
			else if (depth == 0 && field == 6)
				snprintf(task_id, cap, "%.*s", (int)(v < cap ? v : cap - 1), (const char *)p);
			p += v;
		} else if (type == 1 || type == 5) {
			size_t w = type == 1 ? 8 : 4;
			if ((size_t)(end - p) < w)
				return;
			p += w;
		} else {
			return;
		}
	}
}

void
cove_sched_input_restore(struct cove_sched *s, struct cove_fcall *fc, const char *id, int32_t idx, const uint8_t *data,
			 size_t len, const uint8_t *output, size_t output_len)
{
	struct cove_input *in = input_insert(s, fc, id, idx, data, len);
	if (output) {
		output_summary(output, output_len, 0, &in->status, in->task_id, sizeof(in->task_id));
		output_append(fc, in, xmemdup(output, output_len), output_len);
	} else {
		sched_pending_push(fc->fn, in);
	}
}

static void input_retry_due(evutil_socket_t fd, short what, void *arg);

void
sched_input_clear_timer(struct cove_input *in)
{
	if (in->timer) {
		event_free(in->timer);
		in->timer = NULL;
	}
}

static int
retryable(int status)
{
	return status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_FAILURE ||
	       status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_INTERNAL_FAILURE ||
	       status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TIMEOUT ||
	       status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_INIT_FAILURE;
}

/* The end of one attempt: retry it if the function's policy says so, else record the output. */
int
sched_input_finish(struct cove_sched *s, struct cove_input *in, const Modal__Client__GenericResult *result, int data_format,
	     double started_at, const char *task_id, struct cove_error **err)
{
	sched_input_clear_timer(in);
	in->task = NULL;
	const Modal__Client__FunctionRetryPolicy *p = in->fc->fn->def ? in->fc->fn->def->retry_policy : NULL;
	if (p && retryable(result->status) && in->retry_count < p->retries && !in->fc->cancelled &&
	    !in->fc->fn->app->stopping && !s->shutting_down) {
		double delay_ms = p->initial_delay_ms;
		double coef = p->backoff_coefficient > 0 ? p->backoff_coefficient : 1;
		for (uint32_t i = 0; i < in->retry_count; i++)
			delay_ms *= coef;
		if (p->max_delay_ms && delay_ms > p->max_delay_ms)
			delay_ms = p->max_delay_ms;
		in->retry_count++;
		in->state = COVE_INPUT_PENDING;
		cleanup_free char *note = xasprintf("Input %s failed (attempt %u of %u); retrying in %.2f s\n", in->id,
						    in->retry_count, p->retries + 1, delay_ms / 1000);
		cove_sched_app_log(s, in->fc->fn->app, task_id, in->fc->fn->id, 3, note, strlen(note));
		in->timer = evtimer_new(s->ctx->base, input_retry_due, in);
		struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)((int64_t)delay_ms % 1000) * 1000};
		evtimer_add(in->timer, &tv);
		return 0;
	}
	return input_complete(s, in, result, data_format, started_at, task_id, err);
}

static void
input_retry_due(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_input *in = arg;
	sched_input_clear_timer(in);
	sched_pending_push(in->fc->fn, in);
	cove_sched_kick(the_sched, in->fc->fn);
}

/* What a cancelled input's caller gets: TERMINATED (what the call graph shows), with the exception the docs
 * name for a cancelled input, modal.exception.InputCancellation, pickled so that .get() and .map() raise it
 * (the client raises a result's pickled exception; without one it would raise a bare RemoteError). */
int
sched_input_cancelled(struct cove_sched *s, struct cove_input *in, double started_at, const char *task_id,
		      struct cove_error **err)
{
	cleanup_free char *msg = xasprintf("Function call %s was cancelled", in->fc->id);
	struct cove_pickle p;
	cove_pickle_init(&p);
	cove_pickle_begin_call(&p, "modal.exception", "InputCancellation");
	cove_pickle_str(&p, msg);
	cove_pickle_end(&p);
	size_t len;
	cleanup_free uint8_t *exc = cove_pickle_finish(&p, &len);
	Modal__Client__GenericResult r = MODAL__CLIENT__GENERIC_RESULT__INIT;
	r.status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED;
	r.exception = msg;
	r.data_oneof_case = MODAL__CLIENT__GENERIC_RESULT__DATA_ONEOF_DATA;
	r.data.data = exc;
	r.data.len = len;
	return sched_input_finish(s, in, &r, MODAL__CLIENT__DATA_FORMAT__DATA_FORMAT_PICKLE, started_at, task_id, err);
}

/* Fail an input the server gives up on (no data: the client raises with the message). */
void
sched_input_fail(struct cove_sched *s, struct cove_input *in, int status, const char *message, const uint8_t *result_bytes,
	   size_t result_len, const char *task_id)
{
	Modal__Client__GenericResult *given = NULL;
	if (result_bytes)
		given = pb_unpack(&modal__client__generic_result__descriptor, result_bytes, result_len);
	Modal__Client__GenericResult r = MODAL__CLIENT__GENERIC_RESULT__INIT;
	r.status = status;
	r.exception = (char *)message;
	struct cove_error *err = NULL;
	if (sched_input_finish(s, in, given ? given : &r, 0, in->started_at, task_id, &err) < 0) {
		log_error("input %s: cannot record its failure: %s", in->id, err->msg);
		cove_error_free(err);
	}
	pb_free(given);
}


/* The call graph (FunctionGetCallGraph). An input's status: its output's, or PENDING (0) while it waits or
 * runs, as the client's InputStatus has it; its task: the one that ran it, or runs it. */
static Modal__Client__InputCallGraphInfo *
graph_input(struct cove_input *in)
{
	Modal__Client__InputCallGraphInfo *g = xmalloc(sizeof(*g));
	modal__client__input_call_graph_info__init(g);
	g->input_id = in->id;
	g->function_call_id = in->fc->id;
	g->status = in->state == COVE_INPUT_DONE ? in->status : 0;
	g->task_id = in->state == COVE_INPUT_DONE ? in->task_id : in->task ? in->task->id : "";
	return g;
}

static Modal__Client__FunctionCallCallGraphInfo *
graph_call(struct cove_fcall *fc)
{
	Modal__Client__FunctionCallCallGraphInfo *g = xmalloc(sizeof(*g));
	modal__client__function_call_call_graph_info__init(g);
	g->function_call_id = fc->id;
	g->parent_input_id = fc->parent_input_id ? fc->parent_input_id : "";
	g->function_name = fc->fn->def && fc->fn->def->function_name ? fc->fn->def->function_name : fc->fn->tag;
	g->module_name = fc->fn->def && fc->fn->def->module_name ? fc->fn->def->module_name : "";
	return g;
}

void
cove_sched_call_graph(struct cove_sched *s, struct cove_fcall *fc, const struct cove_app *app,
		      Modal__Client__FunctionGetCallGraphResponse *out)
{
	/* Up to the topmost ancestor still known (a parent's results may have expired) and in view. A parent input
	 * exists before any call it makes, so the chain has no cycle; the bound is for safety alone. */
	for (int depth = 0; fc->parent_input_id && depth < 1000; depth++) {
		struct cove_input *parent = cove_sched_input_get(s, fc->parent_input_id);
		if (parent == NULL || (app && parent->fc->fn->app != app))
			break;
		fc = parent->fc;
	}
	/* Breadth first: out->function_calls is the queue; each call's inputs are listed, then the calls they made
	 * join the queue. Every call and input counts against the bound. */
	size_t cap_fc = 8, cap_in = 0, nodes = 1;
	struct cove_fcall **queue = xmalloc(cap_fc * sizeof(*queue));
	out->function_calls = xmalloc(cap_fc * sizeof(*out->function_calls));
	queue[0] = fc;
	out->function_calls[out->n_function_calls++] = graph_call(fc);
	for (size_t head = 0; head < out->n_function_calls && !out->truncated; head++) {
		fc = queue[head];
		for (size_t i = 0; i < fc->n_inputs && !out->truncated; i++) {
			if (nodes++ >= COVE_CALL_GRAPH_MAX_NODES) {
				out->truncated = 1;
				break;
			}
			if (out->n_inputs == cap_in) {
				cap_in = cap_in ? 2 * cap_in : 16;
				out->inputs = xrealloc(out->inputs, cap_in * sizeof(*out->inputs));
			}
			out->inputs[out->n_inputs++] = graph_input(fc->inputs[i]);
			for (struct cove_fcall *c = cove_map_get(&s->children, fc->inputs[i]->id); c; c = c->next_sibling) {
				if (app && c->fn->app != app)
					continue;
				if (nodes++ >= COVE_CALL_GRAPH_MAX_NODES) {
					out->truncated = 1;
					break;
				}
				if (out->n_function_calls == cap_fc) {
					cap_fc *= 2;
					queue = xrealloc(queue, cap_fc * sizeof(*queue));
					out->function_calls =
						xrealloc(out->function_calls, cap_fc * sizeof(*out->function_calls));
				}
				queue[out->n_function_calls] = c;
				out->function_calls[out->n_function_calls++] = graph_call(c);
			}
		}
	}
	free(queue);
}

void
cove_sched_call_graph_free(Modal__Client__FunctionGetCallGraphResponse *out)
{
	for (size_t i = 0; i < out->n_inputs; i++)
		free(out->inputs[i]);
	for (size_t i = 0; i < out->n_function_calls; i++)
		free(out->function_calls[i]);
	free(out->inputs);
	free(out->function_calls);
	out->inputs = NULL;
	out->function_calls = NULL;
	out->n_inputs = out->n_function_calls = 0;
}
