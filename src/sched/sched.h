/* The scheduler: apps, functions, function calls, inputs, outputs and tasks (containers), in memory on the
 * event loop, written through to the store. It decides when containers start and stop, hands inputs to
 * containers, routes outputs to callers, and wakes long polls (FunctionGetOutputs, FunctionGetInputs,
 * AppGetLogs) the moment there is something for them.
 *
 * Ownership: the scheduler owns every struct below; API handlers borrow pointers within one event callback
 * and look objects up again by id later. */
#ifndef COVE_SCHED_SCHED_H
#define COVE_SCHED_SCHED_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "api.pb-c.h"
#include "util/error.h"
#include "util/map.h"

struct cove_ctx;
struct cove_call;
struct cove_container;
struct event;
struct event_base;

/* A parked long-poll: a gRPC call waiting for something, with a timer that answers it empty. */
struct cove_waiter {
	struct cove_waiter *next, *prev;
	struct cove_waitlist *list;
	struct cove_sched *sched;
	struct cove_call *call;
	struct event *timer;
	void *owner; /* what it waits on (an app, a call, a task) */
	void (*on_timeout)(struct cove_waiter *w); /* answers the call */
	void (*on_cancel)(struct cove_waiter *w);  /* optional: the call went away unanswered */
	/* request parameters the waiter needs when woken */
	int64_t cursor;
	int32_t start_idx, end_idx;
	int has_range;
	int clear_on_success;
};

struct cove_waitlist {
	struct cove_waiter *head;
};

/* Park call on list until timeout_s; on_timeout must answer the call and then cove_waiter_done(). */
struct cove_waiter *cove_waiter_park(struct event_base *base, struct cove_sched *s, struct cove_waitlist *list,
				     struct cove_call *call, void *owner, double timeout_s,
				     void (*on_timeout)(struct cove_waiter *));
/* The call was answered (finished): drop the waiter. It does not touch the call, which may be gone. */
void cove_waiter_done(struct cove_waiter *w);
/* Drop the waiter without touching its call (the call is gone). */
void cove_waiter_free(struct cove_waiter *w);

struct cove_log_entry {
	int64_t id;
	uint8_t *batch; /* serialized TaskLogsBatch without entry_id (filled in on send) */
	size_t len;
};

struct cove_app {
	char *id;
	char *name; /* "" unless deployed/named */
	char *env;
	char *description;
	int state;  /* Modal__Client__AppState */
	int stopping;
	int done;   /* stopped and every task exited: logs end with app_done */
	double created_at;
	double last_heartbeat;
	struct cove_map functions; /* tag -> struct cove_function* */
	struct cove_map classes;   /* tag -> class id (char*) */
	struct cove_log_entry *logs;
	size_t n_logs, cap_logs;
	int64_t next_log_id;
	struct cove_waitlist log_waiters;
	size_t n_tasks; /* live tasks of this app */
	uint32_t version;     /* deployments so far (the current one's number) */
	char digest[65];      /* of the current deployment's definitions: a redeploy of the same is a no-op */
	double deployed_at;   /* of the current deployment */
};

struct cove_input {
	struct cove_input *next, *prev; /* in the function's pending queue, or the task's running list */
	char *id;
	struct cove_fcall *fc;
	int32_t idx;
	uint8_t *data; /* serialized FunctionInput */
	size_t len;
	int state;     /* COVE_INPUT_* */
	uint32_t retry_count;
	struct cove_task *task;
	double started_at;
	/* Once done: its output's GenericResult status and the task that ran it ("" if none), kept so that the call
	 * graph never reads outputs back. */
	int status;
	char task_id[26];
	struct event *timer; /* running: its timeout; waiting to retry: the backoff */
};

enum { COVE_INPUT_PENDING, COVE_INPUT_RUNNING, COVE_INPUT_DONE };

struct cove_output {
	int64_t entry;  /* 1, 2, ... per call: outputs[entry - 1] */
	int32_t idx;
	uint8_t *item;  /* serialized FunctionGetOutputsItem; NULL once delivered for a map (the store keeps it) */
	size_t len;
	int consumed;
	struct cove_input *in;
};

/* A call's data stream (generator items out; web request bodies in): chunks by index from 1. */
struct cove_datachan {
	uint8_t **chunks; /* serialized DataChunk, chunks[i] has index i + 1; NULL: not arrived yet */
	size_t *lens;
	size_t n;   /* chunks 1..n have all arrived: what readers see */
	size_t top; /* highest index arrived */
	size_t cap;
	struct cove_waitlist waiters;
	/* In-server readers (data.c, the web gateway): chunks 1..released have been freed after use. */
	size_t released;
	int release_delivered; /* free chunks as soon as a gRPC reader has been sent them */
	struct cove_data_sub *subs;
};

enum { COVE_DATA_IN = 0, COVE_DATA_OUT = 1 };

struct cove_fcall {
	struct cove_datachan data[2]; /* COVE_DATA_IN, COVE_DATA_OUT */
	char *id;
	struct cove_function *fn;
	int call_type;       /* Modal__Client__FunctionCallType */
	int invocation_type; /* Modal__Client__FunctionCallInvocationType */
	struct cove_input **inputs;
	size_t n_inputs, cap_inputs;
	size_t n_done;
	struct cove_output *outputs;
	size_t n_outputs, cap_outputs;
	struct cove_waitlist waiters;
	int cancelled;
	char *parent_input_id;          /* the input whose code made this call; NULL: made from outside */
	struct cove_fcall *next_sibling; /* the next call made by the same parent input (the call graph) */
	double completed_at; /* when its last input finished; 0 while unfinished */
	int expired;         /* past the results' lifetime: inputs and outputs are gone */
};

struct cove_function {
	char *id;
	char *tag;
	struct cove_app *app;
	Modal__Client__Function *def; /* NULL between FunctionPrecreate and FunctionCreate */
	Modal__Client__FunctionHandleMetadata *meta;
	struct cove_input *pending_head, *pending_tail;
	size_t n_pending;
	size_t n_running; /* inputs handed to its containers and not finished */
	size_t n_tasks;
	size_t n_starting; /* tasks that have not asked for inputs yet */
	size_t n_idle;     /* tasks parked in FunctionGetInputs */
	Modal__Client__AutoscalerSettings *autoscaler; /* update_autoscaler()'s settings, or NULL */
	struct cove_build_run *build_run; /* an image build's run_function in progress (see cove_sched_run_builder) */
	struct cove_waitlist input_waiters; /* containers' parked FunctionGetInputs */
	/* A class instance bound to parameters/options (FunctionBindParams): parent is the class's service
	 * function; params are handed to its containers. Bound functions are kept in parent->bound. */
	struct cove_function *parent;
	uint8_t *params;
	size_t params_len;
	struct cove_map bound; /* request digest -> struct cove_function* */
	/* Schedules (schedule.c): the next time it fires (Unix seconds; 0 not computed, -1 never), for def. */
	int64_t next_fire;
	const void *schedule_seen;
};

enum { COVE_TASK_STARTING, COVE_TASK_RUNNING, COVE_TASK_STOPPING };

struct cove_task {
	char *id;
	char *secret; /* the container's credential (x-cove-task header) */
	struct cove_function *fn;
	struct cove_app *app;
	struct cove_container *container;
	char *dir;
	int state;
	struct cove_input *running_head; /* inputs handed to this task */
	size_t n_running;
	uint8_t *result; /* serialized GenericResult from TaskResult */
	size_t result_len;
	double started_at;
	int draining; /* finishes what it runs, then gets the kill switch (a newer deployment replaces it) */
};

struct cove_sched;

struct cove_sched *cove_sched_new(struct cove_ctx *ctx, struct cove_error **err);
void cove_sched_free(struct cove_sched *s);
/* Stop every task (gracefully, then killed); returns the number still live. */
size_t cove_sched_stop_all(struct cove_sched *s);
/* Containers the scheduler does not own (sandboxes) stop with their app: fn(arg, app) runs when an app stops,
 * and fn(arg, NULL) when every container stops (cove_sched_stop_all). One hook; NULL clears it. */
void cove_sched_set_stop_hook(struct cove_sched *s, void (*fn)(void *arg, struct cove_app *app), void *arg);

/* Apps. */
struct cove_app *cove_sched_app_create(struct cove_sched *s, const char *name, const char *env,
				       const char *description, int state, struct cove_error **err);
struct cove_app *cove_sched_app_get(struct cove_sched *s, const char *app_id);
void cove_sched_app_heartbeat(struct cove_sched *s, struct cove_app *app);
int cove_sched_app_set_state(struct cove_sched *s, struct cove_app *app, int state, struct cove_error **err);
/* Stop an app: its tasks stop, and its log stream ends once they have. */
void cove_sched_app_stop(struct cove_sched *s, struct cove_app *app, const char *reason);
/* Append a log line from the server itself (fd 3 = info) to an app's logs. */
void cove_sched_app_log(struct cove_sched *s, struct cove_app *app, const char *task_id, const char *function_id,
			int fd, const char *data, size_t len);
/* AppGetLogs: answer now or park. */
void cove_sched_app_get_logs(struct cove_sched *s, struct cove_call *call, struct cove_app *app,
			     const char *last_entry_id, float timeout);
/* Build the AppLayout of an app (caller frees with cove_sched_layout_free). */
Modal__Client__AppLayout *cove_sched_app_layout(struct cove_sched *s, struct cove_app *app);
void cove_sched_layout_free(Modal__Client__AppLayout *layout);

/* Deployed apps by name; deploying a name (AppPublish with DEPLOYED) names the app. */
struct cove_app *cove_sched_app_by_name(struct cove_sched *s, const char *env, const char *name);
int cove_sched_app_deploy(struct cove_sched *s, struct cove_app *app, const char *name, struct cove_error **err);
/* Forget the app's name (it stopped). */
void cove_sched_app_undeploy(struct cove_sched *s, struct cove_app *app);
/* Every app (for listing): iterate with cove_map_next; values are struct cove_app*. */
const struct cove_map *cove_sched_apps(struct cove_sched *s);
/* Classes: a class id registered to its app; publish gives it a tag (persisted). */
void cove_sched_class_register(struct cove_sched *s, struct cove_app *app, const char *class_id);
struct cove_app *cove_sched_class_app(struct cove_sched *s, const char *class_id);
int cove_sched_class_publish(struct cove_sched *s, struct cove_app *app, const char *tag, const char *class_id,
			     struct cove_error **err);
/* Bring deployed apps, their functions and unfinished calls back after a restart; other apps are marked
 * stopped. */
int cove_sched_restore(struct cove_sched *s, struct cove_error **err);

/* Functions. */
struct cove_function *cove_sched_function_precreate(struct cove_sched *s, struct cove_app *app, const char *tag,
						    const char *existing_id, struct cove_error **err);
struct cove_function *cove_sched_function_get(struct cove_sched *s, const char *function_id);
/* Take ownership of def (an unpacked Function); persists it. */
int cove_sched_function_define(struct cove_sched *s, struct cove_function *fn, Modal__Client__Function *def,
			       struct cove_error **err);

/* A bound variant of a class service function (memoized on the request's digest). opts may be NULL. */
struct cove_function *cove_sched_function_bind(struct cove_sched *s, struct cove_function *base, const uint8_t *params,
					       size_t params_len, const Modal__Client__FunctionOptions *opts,
					       struct cove_error **err);

/* update_autoscaler(): merge update (may be NULL: just read) over the current settings; returns the
 * settings in force (caller frees with pb_free). Takes effect at once. */
Modal__Client__AutoscalerSettings *cove_sched_function_autoscaler(struct cove_sched *s, struct cove_function *fn,
								  const Modal__Client__AutoscalerSettings *update);

/* Calls. */
/* parent_input_id: the input whose code makes the call (NULL: none); it must exist (cove_sched_input_get). */
struct cove_fcall *cove_sched_call_create(struct cove_sched *s, struct cove_function *fn, int call_type,
					  int invocation_type, const char *parent_input_id, struct cove_error **err);
struct cove_fcall *cove_sched_call_get(struct cove_sched *s, const char *call_id);
/* An input whose results have not expired, or NULL. */
struct cove_input *cove_sched_input_get(struct cove_sched *s, const char *input_id);
/* FunctionGetCallGraph: the tree of calls fc belongs to, from its topmost ancestor down (every call made by an
 * input of a call in it, recursively), at most COVE_CALL_GRAPH_MAX_NODES calls and inputs together (then
 * truncated is set). app: only calls of this app (a container's view: it neither climbs to nor descends into
 * other apps' calls); NULL: all. Strings are borrowed from the scheduler; free with cove_sched_call_graph_free. */
#define COVE_CALL_GRAPH_MAX_NODES 10000
void cove_sched_call_graph(struct cove_sched *s, struct cove_fcall *fc, const struct cove_app *app,
			   Modal__Client__FunctionGetCallGraphResponse *out);
void cove_sched_call_graph_free(Modal__Client__FunctionGetCallGraphResponse *out);
/* Accept one input (serialized FunctionInput), durable before return. The returned input is borrowed. */
struct cove_input *cove_sched_input_add(struct cove_sched *s, struct cove_fcall *fc, int32_t idx,
					const uint8_t *data, size_t len, struct cove_error **err);
/* Whether n more inputs fit under the documented limits (2,000 pending and 25,000 in all per function;
 * 1,000,000 pending for spawned calls); -1 + RESOURCE_EXHAUSTED if not. */
int cove_sched_inputs_fit(struct cove_fcall *fc, size_t n, struct cove_error **err);
/* After a batch of input_add calls: start containers / wake waiting ones. */
void cove_sched_kick(struct cove_sched *s, struct cove_function *fn);
/* FunctionGetOutputs: answer now or park. */
void cove_sched_get_outputs(struct cove_sched *s, struct cove_call *call, struct cove_fcall *fc,
			    const Modal__Client__FunctionGetOutputsRequest *req);

/* Data streams (data.c). put: chunks must continue the stream (index n+1, ...); repeats of indices
 * already stored are ignored (retries); a gap is INVALID_ARGUMENT. get: stream every chunk after
 * last_index, then hold the call open for more until timeout. */
int cove_sched_data_put(struct cove_sched *s, struct cove_fcall *fc, int which, Modal__Client__DataChunk **chunks,
			size_t n, struct cove_error **err);
void cove_sched_data_get(struct cove_sched *s, struct cove_call *call, struct cove_fcall *fc, int which,
			 uint64_t last_index);
void cove_sched_data_free(struct cove_fcall *fc);
struct event_base *cove_sched_base(struct cove_sched *s);

/* ---- In-server subscribers of a call's data streams (data.c; used by the web gateway) ----
 * A subscriber's notify(arg) runs whenever chunks arrive on the stream it watches and when the call's output
 * is recorded. It runs inside the scheduler's own processing, so it must only schedule work (e.g.
 * event_active) and never free or unsubscribe anything itself. */
struct cove_data_sub;
struct cove_data_sub *cove_sched_data_subscribe(struct cove_fcall *fc, int which, void (*notify)(void *arg),
						void *arg);
void cove_sched_data_unsubscribe(struct cove_data_sub *sub);
/* Chunks 1..n of a stream have arrived (some may have been released since). */
size_t cove_sched_data_count(const struct cove_fcall *fc, int which);
/* Chunk `index` (from 1) as a serialized DataChunk, borrowed until it is released; NULL if it has not
 * arrived or was released. */
const uint8_t *cove_sched_data_chunk(const struct cove_fcall *fc, int which, size_t index, size_t *len);
/* Free chunks 1..upto: their reader is done with them (readers asking for them later get what follows). */
void cove_sched_data_release(struct cove_fcall *fc, int which, size_t upto);
/* Free each chunk once a gRPC reader has been sent it (a stream that is read once, like a request body). */
void cove_sched_data_release_on_delivery(struct cove_fcall *fc, int which);
/* The scheduler's hook (sched.c, input_complete): fc's output was recorded. */
void cove_sched_data_output_recorded(struct cove_fcall *fc);
/* ---- end of in-server subscribers ---- */

/* Tasks (the container side). */
struct cove_task *cove_sched_task_by_id(struct cove_sched *s, const char *task_id);
/* Every live task: iterate with cove_map_next; values are struct cove_task*. */
const struct cove_map *cove_sched_tasks(struct cove_sched *s);
/* Stop a container: graceful lets it finish its inputs and run @exit (kill switch), else it is killed. */
void cove_sched_task_stop(struct cove_sched *s, struct cove_task *t, int graceful);
/* Replace an app's containers after a (re)deploy: idle ones stop now, busy ones after their inputs. */
void cove_sched_app_drain(struct cove_sched *s, struct cove_app *app);

/* Deployment history (deploy.c): record the app's current definitions as a new version; list versions;
 * roll back to an earlier version's definitions (recorded as a new version). */
int cove_sched_deployment_record(struct cove_sched *s, struct cove_app *app, const char *client_version,
				 const char *tag, const Modal__Client__CommitInfo *commit, uint32_t rollback_version,
				 struct cove_error **err);
/* History entries, oldest first; caller frees the array and each entry with pb_free. */
int cove_sched_deployment_history(struct cove_sched *s, struct cove_app *app, Modal__Client__AppDeploymentHistory ***out,
				  size_t *n, struct cove_error **err);
/* Digest of the app's function definitions (hex). */
void cove_sched_app_digest(struct cove_sched *s, struct cove_app *app, char out[65]);
int cove_sched_deployment_rollback(struct cove_sched *s, struct cove_app *app, uint32_t version, struct cove_error **err);
struct cove_task *cove_sched_task_by_secret(struct cove_sched *s, const char *secret);
/* FunctionGetInputs from a task: answer now or park. */
void cove_sched_get_inputs(struct cove_sched *s, struct cove_call *call, struct cove_task *task,
			   const Modal__Client__FunctionGetInputsRequest *req);
/* One output from a task. Duplicates (same input and retry_count) are ignored. */
int cove_sched_put_output(struct cove_sched *s, struct cove_task *task, const Modal__Client__FunctionPutOutputsItem *item,
			  struct cove_error **err);
/* FunctionCallCancel: pending inputs end TERMINATED; running ones are cancelled in their container (or
 * the containers are stopped, with terminate_containers). */
void cove_sched_call_cancel(struct cove_sched *s, struct cove_fcall *fc, int terminate_containers);
/* ContainerHeartbeat: answers at once with inputs to cancel, or holds the call (a long poll) until there are
 * some or a few seconds pass. */
void cove_sched_task_heartbeat(struct cove_sched *s, struct cove_call *call, struct cove_task *t);
/* TaskResult: a container's own failure (e.g. import error); kept for the inputs it leaves behind. */
void cove_sched_task_result(struct cove_sched *s, struct cove_task *task, const Modal__Client__GenericResult *result);

/* pickle protocol 4 of ((), {}): a call's arguments when there are none. */
extern const uint8_t cove_empty_args_pickle[];
extern const size_t cove_empty_args_pickle_len;

/* Image.run_function: run the builder function function_id once, with input (a packed FunctionInput), in a
 * container of its own; when its input has finished and the container has exited, move the container's writable
 * layer to keep_dir and call done(arg, NULL), or done(arg, why) if the function failed. 0, or -1 + err
 * (NOT_FOUND: no such function; FAILED_PRECONDITION: it is already building). */
int cove_sched_run_builder(struct cove_sched *s, const char *function_id, const uint8_t *input, size_t len,
			   const char *keep_dir, void (*done)(void *arg, const char *failure), void *arg,
			   struct cove_error **err);

#endif
