/* The scheduler (see sched.h). Everything here runs on the event loop; nothing blocks except SQLite
 * commits (WAL, no fsync per commit) and writing a container's small argument file. */
#include "image/builder.h"
#include "sched/isolate.h"
#include "sched/sched.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "grpc/server.h"
#include "runtime/runtime.h"
#include "server.h"
#include "store/store.h"
#include "store/volview.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/pb.h"
#include "util/utf8.h"

/* Ephemeral apps whose client has not heartbeated for this long are stopped. */
#define APP_HEARTBEAT_TIMEOUT_S 60.0
#define HEARTBEAT_CHECK_S 5
/* Long-poll bounds. */
#define INPUTS_POLL_S 30.0
/* Idle containers exit after this unless the function says otherwise. */
#define DEFAULT_SCALEDOWN_S 60.0
/* Containers per function unless the function sets max_containers. */
#define DEFAULT_MAX_CONTAINERS 8
/* Grace for a stopping container between SIGINT and SIGKILL. */
#define STOP_GRACE_MS 5000
/* How long a container's heartbeat is held open waiting for cancellations (its client gives up at 15 s). */
#define HEARTBEAT_HOLD_S 10.0
/* Log records kept per app in memory. */
#define MAX_LOG_ENTRIES 100000

#include "sched/sched_internal.h"

struct cove_sched *the_sched; /* for runtime and timer callbacks, which carry only their object */

/* ---- apps and logs ---- */

struct cove_app *
cove_sched_app_get(struct cove_sched *s, const char *app_id)
{
	return app_id ? cove_map_get(&s->apps, app_id) : NULL;
}

static int
persist_app(struct cove_sched *s, struct cove_app *app, struct cove_error **err)
{
	struct cove_store_app row = {
		.id = app->id,
		.name = app->name,
		.env = app->env,
		.description = app->description,
		.state = app->state,
		.created_at = app->created_at,
		.stopped_at = app->done || app->stopping ? now_s() : 0,
	};
	return cove_store_app_put(s->ctx->store, &row, err);
}

static void
app_free(struct cove_app *app)
{
	for (size_t i = 0; i < app->n_logs; i++)
		free(app->logs[i].batch);
	free(app->logs);
	size_t it = 0;
	void *cv;
	while (cove_map_next(&app->classes, &it, NULL, &cv))
		free(cv);
	cove_map_clear(&app->classes);
	cove_map_clear(&app->functions);
	free(app->id);
	free(app->name);
	free(app->env);
	free(app->description);
	free(app);
}

struct cove_app *
cove_sched_app_create(struct cove_sched *s, const char *name, const char *env, const char *description, int state,
		      struct cove_error **err)
{
	cleanup_free char *id = cove_id_new("ap");
	struct cove_app *app = cove_sched_app_insert(s, id, name, env, description, state, now_s());
	if (persist_app(s, app, err) < 0) {
		cove_map_del(&s->apps, app->id);
		app_free(app);
		return NULL;
	}
	return app;
}

struct cove_app *
cove_sched_app_insert(struct cove_sched *s, const char *id, const char *name, const char *env, const char *description,
		      int state, double created_at)
{
	struct cove_app *app = xcalloc(1, sizeof(*app));
	app->id = xstrdup(id);
	app->name = xstrdup(name ? name : "");
	app->env = xstrdup(env);
	app->description = xstrdup(description ? description : "");
	app->state = state;
	app->created_at = created_at;
	app->last_heartbeat = now_s();
	cove_map_put(&s->apps, app->id, app);
	return app;
}

void
cove_sched_app_heartbeat(struct cove_sched *s, struct cove_app *app)
{
	(void)s;
	app->last_heartbeat = now_s();
}

int
cove_sched_app_set_state(struct cove_sched *s, struct cove_app *app, int state, struct cove_error **err)
{
	app->state = state;
	return persist_app(s, app, err);
}

/* Send every log record after the waiter's cursor. */
static void
logs_send_new(struct cove_app *app, struct cove_waiter *w)
{
	if (app->n_logs == 0)
		return;
	int64_t first = app->logs[0].id;
	size_t start = w->cursor < first ? 0 : (size_t)(w->cursor - first + 1);
	for (size_t i = start; i < app->n_logs; i++) {
		struct cove_log_entry *e = &app->logs[i];
		Modal__Client__TaskLogsBatch *b = pb_unpack(&modal__client__task_logs_batch__descriptor, e->batch, e->len);
		if (b == NULL)
			continue;
		char idbuf[32];
		snprintf(idbuf, sizeof(idbuf), "%lld", (long long)e->id);
		char *old = b->entry_id;
		b->entry_id = idbuf;
		cove_api_send(w->call, &b->base);
		b->entry_id = old;
		pb_free(b);
		w->cursor = e->id;
	}
}

static void
logs_finish_done(struct cove_waiter *w)
{
	Modal__Client__TaskLogsBatch done = MODAL__CLIENT__TASK_LOGS_BATCH__INIT;
	done.app_done = 1;
	cove_api_send(w->call, &done.base);
	cove_call_finish(w->call, COVE_OK, NULL);
	cove_waiter_done(w);
}

static void
logs_timeout(struct cove_waiter *w)
{
	cove_call_finish(w->call, COVE_OK, NULL);
	cove_waiter_done(w);
}

static void
logs_wake(struct cove_app *app)
{
	struct cove_waiter *next;
	for (struct cove_waiter *w = app->log_waiters.head; w; w = next) {
		next = w->next;
		logs_send_new(app, w);
		if (app->done)
			logs_finish_done(w);
	}
}

void
cove_sched_app_log(struct cove_sched *s, struct cove_app *app, const char *task_id, const char *function_id, int fd,
		   const char *data, size_t len)
{
	(void)s;
	if (len == 0)
		return;
	Modal__Client__TaskLogs item = MODAL__CLIENT__TASK_LOGS__INIT;
	item.data = (char *)data;
	item.file_descriptor = fd;
	item.timestamp = now_s();
	Modal__Client__TaskLogs *items[] = {&item};
	Modal__Client__TaskLogsBatch b = MODAL__CLIENT__TASK_LOGS_BATCH__INIT;
	b.task_id = (char *)(task_id ? task_id : "");
	b.function_id = (char *)(function_id ? function_id : "");
	b.n_items = 1;
	b.items = items;
	if (app->n_logs == MAX_LOG_ENTRIES) {
		/* Keep the newest half: a follower that far behind has lost the rest anyway. */
		size_t drop = MAX_LOG_ENTRIES / 2;
		for (size_t i = 0; i < drop; i++)
			free(app->logs[i].batch);
		memmove(app->logs, app->logs + drop, (app->n_logs - drop) * sizeof(*app->logs));
		app->n_logs -= drop;
	}
	if (app->n_logs == app->cap_logs) {
		app->cap_logs = app->cap_logs ? app->cap_logs * 2 : 64;
		app->logs = xrealloc(app->logs, app->cap_logs * sizeof(*app->logs));
	}
	struct cove_log_entry *e = &app->logs[app->n_logs++];
	e->id = ++app->next_log_id;
	e->batch = pb_pack(&b.base, &e->len);
	logs_wake(app);
}

void
cove_sched_app_get_logs(struct cove_sched *s, struct cove_call *call, struct cove_app *app, const char *last_entry_id,
			float timeout)
{
	int64_t cursor = last_entry_id && *last_entry_id ? strtoll(last_entry_id, NULL, 10) : 0;
	struct cove_waiter tmp = {.call = call, .cursor = cursor};
	logs_send_new(app, &tmp);
	if (app->done) {
		Modal__Client__TaskLogsBatch done = MODAL__CLIENT__TASK_LOGS_BATCH__INIT;
		done.app_done = 1;
		cove_api_send(call, &done.base);
		cove_call_finish(call, COVE_OK, NULL);
		return;
	}
	if (timeout <= 0) {
		cove_call_finish(call, COVE_OK, NULL);
		return;
	}
	struct cove_waiter *w = cove_waiter_park(s->ctx->base, s, &app->log_waiters, call, app, timeout > MAX_OUTPUTS_POLL_S ? MAX_OUTPUTS_POLL_S : timeout,
					    logs_timeout);
	w->cursor = tmp.cursor;
}

static void task_drain(struct cove_sched *s, struct cove_task *t);
static size_t min_containers(const struct cove_function *fn);

static void
app_check_done(struct cove_sched *s, struct cove_app *app)
{
	if (!app->stopping || app->done || app->n_tasks > 0)
		return;
	app->done = 1;
	struct cove_error *err = NULL;
	if (persist_app(s, app, &err) < 0) {
		log_warn("app %s: %s", app->id, err->msg);
		cove_error_free(err);
	}
	logs_wake(app);
}

void
cove_sched_app_stop(struct cove_sched *s, struct cove_app *app, const char *reason)
{
	if (app->stopping)
		return;
	log_debug("app %s: stopping (%s)", app->id, reason);
	app->stopping = 1;
	app->state = MODAL__CLIENT__APP_STATE__APP_STATE_STOPPED;
	cove_sched_app_undeploy(s, app);
	/* What never started ends TERMINATED (its callers must not wait forever); every container stops, and
	 * the inputs they were running end the same way as they exit. */
	cleanup_free char *msg = xasprintf("app %s was stopped (%s)", app->name[0] ? app->name : app->id, reason);
	size_t it = 0;
	void *v;
	while (cove_map_next(&s->functions, &it, NULL, &v)) {
		struct cove_function *fn = v;
		if (fn->app != app)
			continue;
		struct cove_input *in;
		while ((in = sched_pending_pop(fn)) != NULL)
			sched_input_fail(s, in, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED, msg, NULL,
				   0, NULL);
	}
	it = 0;
	while (cove_map_next(&s->tasks, &it, NULL, &v)) {
		struct cove_task *t = v;
		if (t->app == app)
			sched_task_stop(s, t, 1);
	}
	if (s->stop_hook)
		s->stop_hook(s->stop_hook_arg, app);
	app_check_done(s, app);
}

void
cove_sched_set_stop_hook(struct cove_sched *s, void (*fn)(void *arg, struct cove_app *app), void *arg)
{
	s->stop_hook = fn;
	s->stop_hook_arg = arg;
}

/* Results stay fetchable for 7 days after a call completes (COVE_OUTPUT_TTL_S overrides, for tests); then
 * its inputs and outputs go, from memory and from the store, and the call answers as expired. */
#define OUTPUT_TTL_S (7.0 * 24 * 3600)

static double
output_ttl(void)
{
	const char *v = getenv("COVE_OUTPUT_TTL_S");
	return v && atof(v) > 0 ? atof(v) : OUTPUT_TTL_S;
}

static void
call_expire(struct cove_sched *s, struct cove_fcall *fc)
{
	struct cove_error *err = NULL;
	if (cove_store_call_expire(s->ctx->store, fc->id, &err) < 0) {
		log_warn("expire call %s: %s", fc->id, err->msg);
		cove_error_free(err);
		return;
	}
	for (size_t i = 0; i < fc->n_inputs; i++) {
		struct cove_input *in = fc->inputs[i];
		cove_map_del(&s->inputs, in->id);
		sched_input_clear_timer(in);
		free(in->id);
		free(in->data);
		free(in);
	}
	for (size_t i = 0; i < fc->n_outputs; i++)
		free(fc->outputs[i].item);
	free(fc->inputs);
	free(fc->outputs);
	fc->inputs = NULL;
	fc->outputs = NULL;
	fc->n_inputs = fc->cap_inputs = fc->n_done = 0;
	fc->n_outputs = fc->cap_outputs = 0;
	fc->expired = 1;
}

static void
expire_outputs(struct cove_sched *s, double now)
{
	double ttl = output_ttl();
	size_t it = 0;
	void *v;
	while (cove_map_next(&s->calls, &it, NULL, &v)) {
		struct cove_fcall *fc = v;
		if (!fc->expired && fc->completed_at > 0 && now - fc->completed_at > ttl && fc->waiters.head == NULL)
			call_expire(s, fc);
	}
}

static void
heartbeat_check(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_sched *s = arg;
	double now = now_s();
	size_t it = 0;
	void *v;
	if (now - s->last_expiry >= (output_ttl() < 3600 ? output_ttl() / 2 : 3600)) {
		s->last_expiry = now;
		expire_outputs(s, now);
	}
	/* Warm pools: bring functions with min_containers back up after containers exit. */
	while (cove_map_next(&s->functions, &it, NULL, &v)) {
		struct cove_function *fn = v;
		if (fn->def && fn->n_tasks < min_containers(fn))
			cove_sched_kick(s, fn);
	}
	it = 0;
	while (cove_map_next(&s->apps, &it, NULL, &v)) {
		struct cove_app *app = v;
		if (app->stopping)
			continue;
		int ephemeral = app->state == MODAL__CLIENT__APP_STATE__APP_STATE_EPHEMERAL ||
				app->state == MODAL__CLIENT__APP_STATE__APP_STATE_INITIALIZING;
		if (ephemeral && now - app->last_heartbeat > APP_HEARTBEAT_TIMEOUT_S) {
			log_info("app %s: no heartbeat from its client for %.0f s; stopping it", app->id,
				 now - app->last_heartbeat);
			cove_sched_app_stop(s, app, "client stopped heartbeating");
		}
	}
}

/* ---- functions ---- */

struct cove_function *
cove_sched_function_get(struct cove_sched *s, const char *function_id)
{
	return function_id ? cove_map_get(&s->functions, function_id) : NULL;
}

struct cove_function *
cove_sched_function_precreate(struct cove_sched *s, struct cove_app *app, const char *tag, const char *existing_id,
			      struct cove_error **err)
{
	struct cove_function *fn = cove_map_get(&app->functions, tag);
	if (fn)
		return fn;
	if (existing_id && *existing_id) {
		fn = cove_map_get(&s->functions, existing_id);
		if (fn == NULL || fn->app != app) {
			cove_error_set(err, COVE_NOT_FOUND, "Function %s not found in app %s", existing_id, app->id);
			return NULL;
		}
		return fn;
	}
	cleanup_free char *id = cove_id_new("fu");
	return cove_sched_function_insert(s, app, id, tag);
}

struct cove_function *
cove_sched_function_insert(struct cove_sched *s, struct cove_app *app, const char *id, const char *tag)
{
	struct cove_function *fn = xcalloc(1, sizeof(*fn));
	fn->id = xstrdup(id);
	fn->tag = xstrdup(tag);
	fn->app = app;
	cove_map_put(&s->functions, fn->id, fn);
	cove_map_put(&app->functions, tag, fn);
	return fn;
}

int
cove_sched_function_define(struct cove_sched *s, struct cove_function *fn, Modal__Client__Function *def,
			   struct cove_error **err)
{
	/* Stored with its handle metadata, so a restart brings back exactly what clients were told. */
	Modal__Client__FunctionCreateResponse rec = MODAL__CLIENT__FUNCTION_CREATE_RESPONSE__INIT;
	rec.function_id = fn->id;
	rec.function = def;
	rec.handle_metadata = fn->meta;
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&rec.base, &len);
	if (cove_store_object_put(s->ctx->store, fn->id, "function", fn->app->id, fn->app->env, fn->tag, bytes, len, err) < 0) {
		pb_free(def);
		return -1;
	}
	pb_free(fn->def);
	fn->def = def;
	return 0;
}

/* Autoscaler settings: update_autoscaler()'s override first, then the definition, then Cove's defaults. */
#define SETTING(fn, field)                                                                                       \
	((fn)->autoscaler && (fn)->autoscaler->_##field##_case ? (int64_t)(fn)->autoscaler->field                 \
	 : (fn)->def->autoscaler_settings && (fn)->def->autoscaler_settings->_##field##_case                      \
		 ? (int64_t)(fn)->def->autoscaler_settings->field                                                 \
		 : -1)

static size_t
max_containers(const struct cove_function *fn)
{
	int64_t v = SETTING(fn, max_containers);
	if (v > 0)
		return (size_t)v;
	if (fn->def->concurrency_limit)
		return fn->def->concurrency_limit;
	return DEFAULT_MAX_CONTAINERS;
}

static size_t
min_containers(const struct cove_function *fn)
{
	int64_t v = SETTING(fn, min_containers);
	if (v >= 0)
		return (size_t)v;
	return fn->def->warm_pool_size;
}

static size_t
buffer_containers(const struct cove_function *fn)
{
	int64_t v = SETTING(fn, buffer_containers);
	if (v >= 0)
		return (size_t)v;
	return fn->def->_experimental_buffer_containers;
}

static double
scaledown_window(const struct cove_function *fn)
{
	int64_t v = SETTING(fn, scaledown_window);
	if (v > 0)
		return (double)v;
	if (fn->def->task_idle_timeout_secs)
		return fn->def->task_idle_timeout_secs;
	return DEFAULT_SCALEDOWN_S;
}

/* Inputs one container takes at once. */
static size_t
per_container(const struct cove_function *fn)
{
	size_t n = 1;
	if (fn->def->max_concurrent_inputs > n)
		n = fn->def->max_concurrent_inputs;
	if (fn->def->batch_max_size > n)
		n = fn->def->batch_max_size;
	return n;
}

/* ---- tasks ---- */

struct cove_task *
cove_sched_task_by_secret(struct cove_sched *s, const char *secret)
{
	return cove_map_get(&s->tasks, secret);
}

struct cove_task *
cove_sched_task_by_id(struct cove_sched *s, const char *task_id)
{
	return task_id ? cove_map_get(&s->tasks_by_id, task_id) : NULL;
}

const struct cove_map *
cove_sched_tasks(struct cove_sched *s)
{
	return &s->tasks;
}

static void
task_on_output(void *owner, int fd, const char *data, size_t len)
{
	struct cove_task *t = owner;
	size_t n;
	char *text = cove_utf8_sanitize(&ext(t)->carry[fd == 1 ? 0 : 1], data, len, &n);
	/* Cove's own log stream of the container: mirror it at debug level for operators. */
	log_debug("%s[%d]: %.*s", t->id, fd, (int)(n && text[n - 1] == '\n' ? n - 1 : n), text);
	cove_sched_app_log(NULL, t->app, t->id, t->fn->id, fd, text, n);
	free(text);
}


/* Answer the calls a task has parked (it is going away). */
static void
task_drop_waiters(struct cove_task *t, const char *why)
{
	struct task_ext *x = ext(t);
	struct cove_waiter *ws[2] = {x->inputs_waiter, x->heartbeat_waiter};
	if (x->inputs_waiter)
		t->fn->n_idle--;
	x->inputs_waiter = x->heartbeat_waiter = NULL;
	for (int i = 0; i < 2; i++) {
		if (ws[i]) {
			cove_call_finish(ws[i]->call, COVE_UNAVAILABLE, why);
			cove_waiter_done(ws[i]);
		}
	}
	for (size_t i = 0; i < x->n_cancel; i++)
		free(x->cancel_ids[i]);
	free(x->cancel_ids);
	x->cancel_ids = NULL;
	x->n_cancel = 0;
}

void
sched_task_free(struct cove_task *t)
{
	if (ext(t)->startup_timer)
		event_free(ext(t)->startup_timer);
	free(t->id);
	free(t->secret);
	free(t->dir);
	free(t->result);
	free(t);
}

static void
task_on_exit(void *owner, int status)
{
	struct cove_task *t = owner;
	struct cove_sched *s = the_sched;
	struct cove_function *fn = t->fn;
	struct cove_app *app = t->app;
	t->container = NULL;
	/* Flush any partial UTF-8 held back. */
	for (int i = 0; i < 2; i++) {
		if (ext(t)->carry[i].len) {
			size_t n;
			char *text = cove_utf8_sanitize(&ext(t)->carry[i], NULL, 0, &n);
			cove_sched_app_log(s, app, t->id, fn->id, i + 1, text, n);
			free(text);
		}
	}
	task_drop_waiters(t, "container exited");
	cleanup_free char *why =
		status == COVE_EXIT_OOM
			? xasprintf("ran out of memory (limit %u MiB) and was killed by the kernel (OOM)",
				    fn->def->resources ? fn->def->resources->memory_mb_max : 0)
		: status >= 0 ? xasprintf("exited with status %d", status)
			      : xasprintf("was killed by signal %d", -status);
	if (status != 0 && t->state != COVE_TASK_STOPPING)
		log_info("container %s (%s) %s", t->id, fn->tag, why);
	/* Inputs it was running fail with the container's own report if it sent one. When the server is
	 * shutting down they stay unfinished in the store instead, and run again after the restart. */
	struct cove_input *next;
	for (struct cove_input *in = t->running_head; in; in = next) {
		next = in->next;
		in->next = in->prev = NULL;
		fn->n_running--;
		t->n_running--;
		in->task = NULL;
		sched_input_clear_timer(in);
		if (in->state != COVE_INPUT_RUNNING || s->shutting_down)
			continue;
		if (app->stopping) {
			cleanup_free char *msg = xasprintf("app %s was stopped while this input ran",
							   app->name[0] ? app->name : app->id);
			sched_input_fail(s, in, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED, msg, NULL,
				   0, t->id);
			continue;
		}
		cleanup_free char *msg = xasprintf("container %s for function %s %s while running this input", t->id,
						   fn->tag, why);
		sched_input_fail(s, in, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_FAILURE, msg, t->result,
			   t->result_len, t->id);
	}
	/* A container that died before taking any input would die again: fail what waits instead of looping. */
	if (!ext(t)->got_inputs && (t->state != COVE_TASK_STOPPING || ext(t)->startup_timed_out) && fn->n_pending > 0) {
		cleanup_free char *msg =
			ext(t)->startup_timed_out
				? xasprintf("container %s for function %s did not start within its startup timeout (%u s)", t->id,
					    fn->tag, sched_startup_timeout(fn))
				: xasprintf("container %s for function %s %s during startup; see the logs above", t->id, fn->tag,
					    why);
		struct cove_input *in;
		while ((in = sched_pending_pop(fn)) != NULL)
			sched_input_fail(s, in, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_FAILURE, msg,
				   t->result, t->result_len, t->id);
	}
	cove_map_del(&s->tasks, t->secret);
	cove_map_del(&s->tasks_by_id, t->id);
	if (ext(t)->starting)
		fn->n_starting--;
	fn->n_tasks--;
	app->n_tasks--;
	cove_volview_task_exit(t->id, NULL, NULL); /* a last commit of its volumes, whatever way it exited */
	if (fn->build_run)
		sched_build_run_task_exit(s, t);
	if (t->dir) {
		struct cove_error *err = NULL;
		if (cove_remove_tree(t->dir, &err) < 0) {
			log_warn("%s", err->msg);
			cove_error_free(err);
		}
	}
	sched_task_free(t);
	if (app->stopping)
		app_check_done(s, app);
	else
		cove_sched_kick(s, fn);
}


static void
running_remove(struct cove_task *t, struct cove_input *in)
{
	if (in->prev)
		in->prev->next = in->next;
	else
		t->running_head = in->next;
	if (in->next)
		in->next->prev = in->prev;
	in->next = in->prev = NULL;
	t->n_running--;
	t->fn->n_running--;
	if (t->n_running == 0)
		ext(t)->idle_since = now_s();
}

/* An input ran past its function's timeout: it ends TIMEOUT (or is retried) and its container is stopped,
 * since user code cannot be interrupted safely from outside. */
static void
input_timed_out(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_input *in = arg;
	struct cove_sched *s = the_sched;
	struct cove_task *t = in->task;
	sched_input_clear_timer(in);
	if (in->state != COVE_INPUT_RUNNING || t == NULL)
		return;
	running_remove(t, in);
	uint32_t secs = in->fc->fn->def->timeout_secs ? in->fc->fn->def->timeout_secs : DEFAULT_TIMEOUT_S;
	cleanup_free char *msg = xasprintf("Function %s timed out after %u seconds", in->fc->fn->tag, secs);
	sched_input_fail(s, in, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TIMEOUT, msg, NULL, 0, t->id);
	sched_task_stop(s, t, 0);
}

static Modal__Client__FunctionGetInputsItem *
input_item(struct cove_input *in)
{
	Modal__Client__FunctionGetInputsItem *it = xcalloc(1, sizeof(*it));
	Modal__Client__FunctionGetInputsItem init = MODAL__CLIENT__FUNCTION_GET_INPUTS_ITEM__INIT;
	*it = init;
	it->input_id = in->id;
	it->function_call_id = in->fc->id;
	it->function_call_invocation_type = in->fc->invocation_type;
	it->retry_count = in->retry_count;
	it->attempt_token = "";
	it->input = pb_unpack(&modal__client__function_input__descriptor, in->data, in->len);
	return it;
}

/* Give up to max inputs to t on call; answers the call. */
static void
give_inputs(struct cove_sched *s, struct cove_task *t, struct cove_call *call, size_t max)
{
	struct cove_function *fn = t->fn;
	size_t n = fn->n_pending < max ? fn->n_pending : max;
	Modal__Client__FunctionGetInputsItem **items = xcalloc(n, sizeof(*items));
	double now = now_s();
	for (size_t i = 0; i < n; i++) {
		struct cove_input *in = sched_pending_pop(fn);
		in->state = COVE_INPUT_RUNNING;
		in->task = t;
		in->started_at = now;
		in->next = t->running_head;
		if (t->running_head)
			t->running_head->prev = in;
		t->running_head = in;
		t->n_running++;
		fn->n_running++;
		items[i] = input_item(in);
		uint32_t secs = fn->def->timeout_secs ? fn->def->timeout_secs : DEFAULT_TIMEOUT_S;
		in->timer = evtimer_new(s->ctx->base, input_timed_out, in);
		struct timeval tv = {(time_t)secs, 0};
		evtimer_add(in->timer, &tv);
	}
	Modal__Client__FunctionGetInputsResponse resp = MODAL__CLIENT__FUNCTION_GET_INPUTS_RESPONSE__INIT;
	resp.n_inputs = n;
	resp.inputs = items;
	cove_api_reply(call, &resp.base);
	for (size_t i = 0; i < n; i++) {
		pb_free(items[i]->input);
		free(items[i]);
	}
	free(items);
}

static void
reply_kill_switch(struct cove_call *call)
{
	Modal__Client__FunctionGetInputsItem item = MODAL__CLIENT__FUNCTION_GET_INPUTS_ITEM__INIT;
	item.kill_switch = 1;
	Modal__Client__FunctionGetInputsItem *items[] = {&item};
	Modal__Client__FunctionGetInputsResponse resp = MODAL__CLIENT__FUNCTION_GET_INPUTS_RESPONSE__INIT;
	resp.n_inputs = 1;
	resp.inputs = items;
	cove_api_reply(call, &resp.base);
}

static size_t
batch_size(const struct cove_task *t)
{
	return t->fn->def->batch_max_size ? t->fn->def->batch_max_size : 1;
}

static void
inputs_timeout(struct cove_waiter *w)
{
	struct cove_task *t = w->owner;
	ext(t)->inputs_waiter = NULL;
	if (now_s() - ext(t)->idle_since >= scaledown_window(t->fn) && t->fn->n_tasks > min_containers(t->fn)) {
		t->state = COVE_TASK_STOPPING;
		reply_kill_switch(w->call);
	} else {
		Modal__Client__FunctionGetInputsResponse resp = MODAL__CLIENT__FUNCTION_GET_INPUTS_RESPONSE__INIT;
		cove_api_reply(w->call, &resp.base);
	}
	t->fn->n_idle--;
	cove_waiter_done(w);
}

/* The container hung up on its FunctionGetInputs (it is exiting, or its connection dropped). */
static void
inputs_cancelled(struct cove_waiter *w)
{
	struct cove_task *t = w->owner;
	ext(t)->inputs_waiter = NULL;
	t->fn->n_idle--;
}

void
cove_sched_get_inputs(struct cove_sched *s, struct cove_call *call, struct cove_task *t,
		      const Modal__Client__FunctionGetInputsRequest *req)
{
	(void)req;
	int became_running = 0;
	ext(t)->got_inputs = 1;
	if (ext(t)->starting) {
		ext(t)->starting = 0;
		t->fn->n_starting--;
		became_running = 1;
	}
	if (t->state == COVE_TASK_STARTING)
		t->state = COVE_TASK_RUNNING;
	if (ext(t)->inputs_waiter) {
		cove_api_fail_code(call, COVE_FAILED_PRECONDITION, "container %s already has a FunctionGetInputs pending",
				   t->id);
		return;
	}
	if (t->state == COVE_TASK_STOPPING || t->app->stopping || (t->draining && t->n_running == 0)) {
		t->state = COVE_TASK_STOPPING;
		reply_kill_switch(call);
		return;
	}
	if (t->fn->n_pending > 0) {
		give_inputs(s, t, call, batch_size(t));
	} else {
		/* idle_since is when its last input finished (or it started), not this poll: polls repeat. */
		t->fn->n_idle++;
		/* Wake up when its scaledown window ends, to let it go (unless it is needed for min_containers). */
		double left = scaledown_window(t->fn) - (now_s() - ext(t)->idle_since);
		double wait = left < INPUTS_POLL_S ? (left > 0.2 ? left : 0.2) : INPUTS_POLL_S;
		struct cove_waiter *w = cove_waiter_park(s->ctx->base, s, &t->fn->input_waiters, call, t, wait,
							 inputs_timeout);
		w->on_cancel = inputs_cancelled;
		ext(t)->inputs_waiter = w;
	}
	/* One fewer container starting: more may start now if inputs still wait. */
	if (became_running)
		cove_sched_kick(s, t->fn);
}

void
cove_sched_kick(struct cove_sched *s, struct cove_function *fn)
{
	if (fn->def == NULL || fn->app->stopping || s->shutting_down)
		return;
	/* First, containers already waiting. */
	struct cove_waiter *next;
	for (struct cove_waiter *w = fn->input_waiters.head; w && fn->n_pending > 0; w = next) {
		next = w->next;
		struct cove_task *t = w->owner;
		ext(t)->inputs_waiter = NULL;
		fn->n_idle--;
		give_inputs(s, t, w->call, batch_size(t));
		cove_waiter_done(w);
	}
	/* Then new containers: enough that what waits will have one (counting those still starting), at least
	 * min_containers, and buffer_containers idle ones while the function is busy; at most max_containers. */
	size_t per = per_container(fn);
	size_t busy = fn->n_tasks > fn->n_idle + fn->n_starting ? fn->n_tasks - fn->n_idle - fn->n_starting : 0;
	/* Room in running containers of a concurrent function: between taking inputs and asking for more, a
	 * container with room is not parked, yet what waits will be its next. The autoscaler counts up to
	 * @modal.concurrent's target_inputs per container (max_inputs without one), as Modal's does: past it, a
	 * new container. */
	size_t spare = 0;
	size_t target = fn->def->target_concurrent_inputs && fn->def->target_concurrent_inputs < per
				? fn->def->target_concurrent_inputs
				: per;
	if (target > 1 && fn->n_pending) {
		size_t it = 0;
		void *v;
		while (cove_map_next(&s->tasks_by_id, &it, NULL, &v)) {
			const struct cove_task *t = v;
			if (t->fn == fn && t->state == COVE_TASK_RUNNING && !t->draining && t->n_running < target)
				spare += target - t->n_running;
		}
	}
	size_t pending = fn->n_pending > spare ? fn->n_pending - spare : 0;
	size_t want = 0;
	if (pending > fn->n_starting * per)
		want = (pending - fn->n_starting * per + per - 1) / per;
	if (fn->n_tasks + want < min_containers(fn))
		want = min_containers(fn) - fn->n_tasks;
	size_t buffer = buffer_containers(fn);
	if ((fn->n_pending || busy) && fn->n_idle + fn->n_starting + want < buffer)
		want = buffer - fn->n_idle - fn->n_starting;
	size_t max = max_containers(fn);
	if (fn->n_tasks + want > max)
		want = max > fn->n_tasks ? max - fn->n_tasks : 0;
	/* Starting a container is CPU-bound (an interpreter importing the client): more at once than there
	 * are cores only slows every one of them down. The rest start as these come up. */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	size_t max_starting = cores > 0 ? (size_t)cores : 1;
	for (size_t i = 0; i < want && fn->n_starting < max_starting; i++) {
		struct cove_error *err = NULL;
		if (sched_task_start(s, fn, &err) < 0) {
			/* Nothing will run these: fail them with the reason rather than leave callers waiting. */
			log_error("function %s: cannot start a container: %s", fn->tag, err->msg);
			cleanup_free char *msg = xasprintf("Cove could not start a container for %s: %s", fn->tag, err->msg);
			cove_error_free(err);
			struct cove_input *in;
			while ((in = sched_pending_pop(fn)) != NULL)
				sched_input_fail(s, in, MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_INTERNAL_FAILURE,
					   msg, NULL, 0, NULL);
			return;
		}
	}
}

int
cove_sched_put_output(struct cove_sched *s, struct cove_task *t, const Modal__Client__FunctionPutOutputsItem *item,
		      struct cove_error **err)
{
	struct cove_input *in = cove_map_get(&s->inputs, item->input_id);
	if (in == NULL)
		return cove_error_set(err, COVE_NOT_FOUND, "input %s not found", item->input_id);
	if (item->result == NULL)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "output for input %s has no result", item->input_id);
	/* Retries of the same output are expected (the client retries forever): the first one counts. */
	if (in->state == COVE_INPUT_DONE || item->retry_count != in->retry_count)
		return 0;
	if (in->task != t)
		return cove_error_set(err, COVE_PERMISSION_DENIED, "input %s was not given to container %s",
				      item->input_id, t->id);
	running_remove(t, in);
	if (item->result->status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED &&
	    (item->result->exception == NULL || item->result->exception[0] == '\0')) {
		/* A cancelled input, acknowledged by its container: say so to the caller. */
		return sched_input_cancelled(s, in, item->input_started_at, t->id, err);
	}
	return sched_input_finish(s, in, item->result, item->data_format, item->input_started_at, t->id, err);
}

static void
heartbeat_answer(struct cove_task *t, struct cove_call *call)
{
	struct task_ext *x = ext(t);
	Modal__Client__CancelInputEvent ev = MODAL__CLIENT__CANCEL_INPUT_EVENT__INIT;
	Modal__Client__ContainerHeartbeatResponse resp = MODAL__CLIENT__CONTAINER_HEARTBEAT_RESPONSE__INIT;
	if (x->n_cancel) {
		ev.n_input_ids = x->n_cancel;
		ev.input_ids = x->cancel_ids;
		resp._cancel_input_event_case = MODAL__CLIENT__CONTAINER_HEARTBEAT_RESPONSE___CANCEL_INPUT_EVENT_CANCEL_INPUT_EVENT;
		resp.cancel_input_event = &ev;
	}
	cove_api_reply(call, &resp.base);
	for (size_t i = 0; i < x->n_cancel; i++)
		free(x->cancel_ids[i]);
	free(x->cancel_ids);
	x->cancel_ids = NULL;
	x->n_cancel = 0;
}

static void
heartbeat_timeout(struct cove_waiter *w)
{
	struct cove_task *t = w->owner;
	ext(t)->heartbeat_waiter = NULL;
	heartbeat_answer(t, w->call);
	cove_waiter_done(w);
}

static void
heartbeat_cancelled(struct cove_waiter *w)
{
	ext((struct cove_task *)w->owner)->heartbeat_waiter = NULL;
}

void
cove_sched_task_heartbeat(struct cove_sched *s, struct cove_call *call, struct cove_task *t)
{
	struct task_ext *x = ext(t);
	if (x->n_cancel || x->heartbeat_waiter || t->state == COVE_TASK_STOPPING) {
		heartbeat_answer(t, call);
		return;
	}
	struct cove_waiter *w = cove_waiter_park(s->ctx->base, s, &x->heartbeats, call, t, HEARTBEAT_HOLD_S,
						 heartbeat_timeout);
	w->on_cancel = heartbeat_cancelled;
	x->heartbeat_waiter = w;
}

static void
input_cancelled(struct cove_sched *s, struct cove_input *in, const char *task_id)
{
	struct cove_error *err = NULL;
	if (sched_input_cancelled(s, in, in->started_at, task_id, &err) < 0) {
		log_error("input %s: cannot record its cancellation: %s", in->id, err->msg);
		cove_error_free(err);
	}
}

void
cove_sched_call_cancel(struct cove_sched *s, struct cove_fcall *fc, int terminate_containers)
{
	fc->cancelled = 1;
	for (size_t i = 0; i < fc->n_inputs; i++) {
		struct cove_input *in = fc->inputs[i];
		if (in->state == COVE_INPUT_DONE)
			continue;
		if (in->state == COVE_INPUT_PENDING) {
			if (in->timer == NULL) /* else it waits for a retry, off the queue */
				sched_pending_remove(fc->fn, in);
			input_cancelled(s, in, NULL);
			continue;
		}
		struct cove_task *t = in->task;
		if (terminate_containers || t == NULL) {
			if (t)
				running_remove(t, in);
			input_cancelled(s, in, t ? t->id : NULL);
			if (t)
				sched_task_stop(s, t, 0);
			continue;
		}
		/* The container cancels it and answers TERMINATED itself. */
		struct task_ext *x = ext(t);
		x->cancel_ids = xrealloc(x->cancel_ids, (x->n_cancel + 1) * sizeof(char *));
		x->cancel_ids[x->n_cancel++] = xstrdup(in->id);
		if (x->heartbeat_waiter) {
			struct cove_waiter *w = x->heartbeat_waiter;
			x->heartbeat_waiter = NULL;
			heartbeat_answer(t, w->call);
			cove_waiter_done(w);
		}
	}
}

void
cove_sched_task_result(struct cove_sched *s, struct cove_task *t, const Modal__Client__GenericResult *result)
{
	(void)s;
	free(t->result);
	t->result = pb_pack(&result->base, &t->result_len);
}

void
cove_sched_task_stop(struct cove_sched *s, struct cove_task *t, int graceful)
{
	if (!graceful) {
		sched_task_stop(s, t, 0);
		return;
	}
	task_drain(s, t);
}

void
cove_sched_app_drain(struct cove_sched *s, struct cove_app *app)
{
	size_t it = 0;
	void *v;
	while (cove_map_next(&s->tasks, &it, NULL, &v)) {
		struct cove_task *t = v;
		if (t->app == app)
			task_drain(s, t);
	}
}

/* Let a container finish what it runs, then stop it with the kill switch (so @exit runs). */
static void
task_drain(struct cove_sched *s, struct cove_task *t)
{
	t->draining = 1;
	if (ext(t)->starting) {
		sched_task_stop(s, t, 1); /* nothing to finish yet */
		return;
	}
	if (ext(t)->inputs_waiter && t->n_running == 0) {
		struct cove_waiter *w = ext(t)->inputs_waiter;
		ext(t)->inputs_waiter = NULL;
		t->fn->n_idle--;
		t->state = COVE_TASK_STOPPING;
		reply_kill_switch(w->call);
		cove_waiter_done(w);
	}
}

void
sched_task_stop(struct cove_sched *s, struct cove_task *t, int graceful)
{
	(void)s;
	if (t->container == NULL)
		return;
	int was_stopping = t->state == COVE_TASK_STOPPING;
	/* A container still starting has no inputs and no @exit to run: interrupting its interpreter's start
	 * would only print a KeyboardInterrupt traceback into the user's logs. */
	if (t->state == COVE_TASK_STARTING)
		graceful = 0;
	t->state = COVE_TASK_STOPPING;
	/* A container parked in FunctionGetInputs exits cleanly on a kill switch. */
	if (ext(t)->inputs_waiter) {
		struct cove_waiter *w = ext(t)->inputs_waiter;
		ext(t)->inputs_waiter = NULL;
		t->fn->n_idle--;
		reply_kill_switch(w->call);
		cove_waiter_done(w);
	}
	if (!was_stopping || !graceful)
		s->ctx->runtime->ops->stop(s->ctx->runtime, t->container, graceful, STOP_GRACE_MS);
}

/* ---- life cycle ---- */

struct event_base *
cove_sched_base(struct cove_sched *s)
{
	return s->ctx->base;
}

struct cove_sched *
cove_sched_new(struct cove_ctx *ctx, struct cove_error **err)
{
	struct cove_sched *s = xcalloc(1, sizeof(*s));
	s->ctx = ctx;
	the_sched = s;
	struct cove_runtime_callbacks cb = {.on_output = task_on_output, .on_exit = task_on_exit};
	ctx->runtime = cove_sched_runtime_new(ctx, &cb, err);
	if (ctx->runtime == NULL) {
		free(s);
		return NULL;
	}
	s->heartbeat_timer = event_new(ctx->base, -1, EV_PERSIST, heartbeat_check, s);
	struct timeval tv = {HEARTBEAT_CHECK_S, 0};
	event_add(s->heartbeat_timer, &tv);
	cove_sched_schedules_start(s);
	return s;
}

size_t
cove_sched_stop_all(struct cove_sched *s)
{
	/* Only the containers stop: apps keep their state (a deployed app is still deployed after a restart;
	 * an ephemeral one is marked stopped when the server starts again). */
	s->shutting_down = 1;
	size_t it = 0;
	void *v;
	while (cove_map_next(&s->tasks, &it, NULL, &v))
		sched_task_stop(s, v, 1);
	if (s->stop_hook)
		s->stop_hook(s->stop_hook_arg, NULL);
	return cove_runtime_live(s->ctx->runtime);
}

static void
waitlist_cancel_all(struct cove_waitlist *wl)
{
	while (wl->head) {
		struct cove_waiter *w = wl->head;
		cove_call_finish(w->call, COVE_UNAVAILABLE, "server shutting down");
		cove_waiter_done(w);
	}
}

void
cove_sched_free(struct cove_sched *s)
{
	if (s == NULL)
		return;
	if (s->heartbeat_timer)
		event_free(s->heartbeat_timer);
	if (s->schedule_timer)
		event_free(s->schedule_timer);
	size_t it = 0;
	void *v;
	while (cove_map_next(&s->tasks, &it, NULL, &v)) {
		struct cove_task *t = v;
		task_drop_waiters(t, "server shutting down");
		sched_task_free(t);
	}
	cove_map_clear(&s->tasks);
	cove_map_clear(&s->tasks_by_id);
	if (s->ctx->runtime)
		s->ctx->runtime->ops->free(s->ctx->runtime);
	s->ctx->runtime = NULL;
	it = 0;
	while (cove_map_next(&s->calls, &it, NULL, &v)) {
		struct cove_fcall *fc = v;
		waitlist_cancel_all(&fc->waiters);
		for (size_t i = 0; i < fc->n_inputs; i++) {
			sched_input_clear_timer(fc->inputs[i]);
			free(fc->inputs[i]->id);
			free(fc->inputs[i]->data);
			free(fc->inputs[i]);
		}
		for (size_t i = 0; i < fc->n_outputs; i++)
			free(fc->outputs[i].item);
		cove_sched_data_free(fc);
		free(fc->inputs);
		free(fc->outputs);
		free(fc->id);
		free(fc->parent_input_id);
		free(fc);
	}
	cove_map_clear(&s->calls);
	cove_map_clear(&s->children);
	cove_map_clear(&s->inputs);
	it = 0;
	while (cove_map_next(&s->functions, &it, NULL, &v)) {
		struct cove_function *fn = v;
		waitlist_cancel_all(&fn->input_waiters);
		pb_free(fn->def);
		pb_free(fn->meta);
		pb_free(fn->autoscaler);
		free(fn->params);
		cove_map_clear(&fn->bound);
		free(fn->id);
		free(fn->tag);
		free(fn);
	}
	cove_map_clear(&s->functions);
	it = 0;
	while (cove_map_next(&s->apps, &it, NULL, &v)) {
		struct cove_app *app = v;
		waitlist_cancel_all(&app->log_waiters);
		app_free(app);
	}
	cove_map_clear(&s->apps);
	cove_map_clear(&s->deployed);
	cove_map_clear(&s->classes);
	free(s);
}

Modal__Client__AutoscalerSettings *
cove_sched_function_autoscaler(struct cove_sched *s, struct cove_function *fn,
			       const Modal__Client__AutoscalerSettings *update)
{
	/* Merge the update over what was set before: fields it leaves unset keep their value. */
	Modal__Client__AutoscalerSettings merged = MODAL__CLIENT__AUTOSCALER_SETTINGS__INIT;
	const Modal__Client__AutoscalerSettings *layers[] = {fn->def->autoscaler_settings, fn->autoscaler, update};
	for (size_t i = 0; i < 3; i++) {
		const Modal__Client__AutoscalerSettings *l = layers[i];
		if (l == NULL)
			continue;
#define TAKE(field)                                                                                              \
	if (l->_##field##_case) {                                                                                \
		merged._##field##_case = l->_##field##_case;                                                     \
		merged.field = l->field;                                                                         \
	}
		TAKE(min_containers)
		TAKE(max_containers)
		TAKE(buffer_containers)
		TAKE(scaleup_window)
		TAKE(scaledown_window)
#undef TAKE
	}
	if (update) {
		pb_free(fn->autoscaler);
		fn->autoscaler = pb_dup(&merged.base);
		cove_sched_kick(s, fn);
	}
	return pb_dup(&merged.base);
}

