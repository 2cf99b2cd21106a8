/* What the scheduler's files share with each other (not with the API). */
#ifndef COVE_SCHED_SCHED_INTERNAL_H
#define COVE_SCHED_SCHED_INTERNAL_H

#include <time.h>

#include "sched/sched.h"
#include "util/utf8.h"

struct task_ext {
	struct cove_utf8_carry carry[2];
	double idle_since;
	int got_inputs; /* called FunctionGetInputs at least once */
	int starting;   /* counted in its function's n_starting */
	int startup_timed_out;
	struct event *startup_timer;
	struct cove_waiter *inputs_waiter;
	struct cove_waiter *heartbeat_waiter;
	struct cove_waitlist heartbeats;
	char **cancel_ids; /* inputs to cancel, told on the next heartbeat */
	size_t n_cancel;
};

struct cove_sched {
	struct cove_ctx *ctx;
	struct cove_map apps;      /* id -> struct cove_app* */
	struct cove_map functions; /* id -> struct cove_function* */
	struct cove_map calls;     /* id -> struct cove_fcall* */
	struct cove_map inputs;    /* id -> struct cove_input* */
	struct cove_map children;  /* parent input id -> the last struct cove_fcall* it made (next_sibling: older) */
	struct cove_map tasks;     /* secret -> struct cove_task* */
	struct cove_map tasks_by_id; /* task id -> struct cove_task* */
	struct cove_map deployed;  /* "env/name" -> struct cove_app* */
	struct cove_map classes;   /* class id -> struct cove_app* */
	struct event *heartbeat_timer;
	int shutting_down;
	double last_expiry;
	struct event *schedule_timer;
	void (*stop_hook)(void *arg, struct cove_app *app); /* cove_sched_set_stop_hook */
	void *stop_hook_arg;
};

/* In-memory objects with known ids, without writing them to the store (restore and creation share these). */
struct cove_app *cove_sched_app_insert(struct cove_sched *s, const char *id, const char *name, const char *env,
				       const char *description, int state, double created_at);
struct cove_function *cove_sched_function_insert(struct cove_sched *s, struct cove_app *app, const char *id,
						 const char *tag);
struct cove_fcall *cove_sched_call_insert(struct cove_sched *s, struct cove_function *fn, const char *id, int call_type,
					  int invocation_type, const char *parent_input_id);
/* An input read back from the store, with its output if it has one (else it is pending again). */
void cove_sched_input_restore(struct cove_sched *s, struct cove_fcall *fc, const char *id, int32_t idx,
			      const uint8_t *data, size_t len, const uint8_t *output, size_t output_len);

/* Long-poll bound of FunctionGetOutputs and AppGetLogs. */
#define MAX_OUTPUTS_POLL_S 55.0
/* An input's time limit when the function sets none. */
#define DEFAULT_TIMEOUT_S 300

/* The scheduler, for runtime and timer callbacks, which carry only their object. */
extern struct cove_sched *the_sched;

static inline double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A task's scheduler-private part, allocated right after it. */
static inline struct task_ext *
ext(struct cove_task *t)
{
	return (struct task_ext *)(t + 1);
}

/* sched.c: stop a container (graceful: SIGINT, then SIGKILL after a grace), free a task. */
void sched_task_stop(struct cove_sched *s, struct cove_task *t, int graceful);
void sched_task_free(struct cove_task *t);

/* calls.c: a function's pending queue; the end of an input's attempt (retried per the function's policy, else
 * its output recorded); an input the server gives up on (message, or the container's own result bytes). */
void sched_pending_push(struct cove_function *fn, struct cove_input *in);
struct cove_input *sched_pending_pop(struct cove_function *fn);
void sched_pending_remove(struct cove_function *fn, struct cove_input *in);
void sched_input_clear_timer(struct cove_input *in);
int sched_input_finish(struct cove_sched *s, struct cove_input *in, const Modal__Client__GenericResult *result,
		       int data_format, double started_at, const char *task_id, struct cove_error **err);
/* The end of a cancelled input (cove_sched_call_cancel): TERMINATED, raising InputCancellation in the caller. */
int sched_input_cancelled(struct cove_sched *s, struct cove_input *in, double started_at, const char *task_id,
			  struct cove_error **err);
void sched_input_fail(struct cove_sched *s, struct cove_input *in, int status, const char *message,
		      const uint8_t *result_bytes, size_t result_len, const char *task_id);

/* task_start.c: start a container for fn (0, or -1 + err); a function's startup timeout in seconds. */
int sched_task_start(struct cove_sched *s, struct cove_function *fn, struct cove_error **err);
unsigned sched_startup_timeout(const struct cove_function *fn);

/* build_run.c: hooks for Image.run_function (cove_sched_run_builder): an output of fc was recorded; a task of
 * a function with a build_run ended. */
void sched_build_run_output(struct cove_sched *s, struct cove_fcall *fc, const Modal__Client__GenericResult *result);
void sched_build_run_task_exit(struct cove_sched *s, struct cove_task *t);

/* Start the schedules' clock (schedule.c). */
void cove_sched_schedules_start(struct cove_sched *s);

#endif
