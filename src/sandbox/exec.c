/* Processes in containers: a sandbox's entrypoint and the commands exec'd into sandboxes and function
 * containers. Each is a runtime container of its own kind (callbacks of this file, a stdin pipe or a
 * terminal); an exec joins its host's container. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "grpc/server.h"
#include "runtime/runtime.h"
#include "sandbox/internal.h"
#include "server.h"
#include "util/alloc.h"
#include "util/log.h"
#include "util/utf8.h"

/* Where the client runs the filesystem helper (modal/sandbox/_filesystem.py). */
/* A stdin write is answered once the pipe has taken all but this much of what is buffered. */
#define STDIN_LOW (256u * 1024)
#define MAX_EXEC_ID 128
#define MAX_ARGS_BYTES (128u * 1024)

static struct cove_runtime *
runtime_of(struct cove_exec_host *host)
{
	return host->sbx->ctx->runtime;
}

static struct event_base *
base_of(struct cove_exec_host *host)
{
	return host->sbx->ctx->base;
}

/* ---- commands ---- */

static int
executable(const char *path, struct stat *st)
{
	return stat(path, st) == 0 && S_ISREG(st->st_mode) && access(path, X_OK) == 0;
}

char *
resolve_command(struct cove_sandboxes *sbx, const char *cmd, char *const *envp, const char *cwd,
		struct cove_error **err)
{
	struct stat st;
	if (strcmp(cmd, FS_TOOLS_PATH) == 0)
		return xstrdup(sbx->fs_tools);
	if (strchr(cmd, '/')) {
		cleanup_free char *path = cmd[0] == '/' ? xstrdup(cmd) : xasprintf("%s/%s", cwd, cmd);
		if (executable(path, &st))
			return steal_pointer(&path);
		if (stat(path, &st) < 0)
			cove_error_set(err, COVE_NOT_FOUND, "exec: \"%s\": %s", cmd, strerror(errno));
		else
			cove_error_set(err, COVE_PERMISSION_DENIED, "exec: \"%s\": permission denied", cmd);
		return NULL;
	}
	const char *path = "/usr/local/bin:/usr/bin:/bin";
	for (char *const *e = envp; e && *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	int denied = 0;
	for (const char *p = path;;) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		cleanup_free char *dir = n ? xstrndup(p, n) : xstrdup(cwd);
		cleanup_free char *cand = xasprintf("%s/%s", dir, cmd);
		if (executable(cand, &st))
			return steal_pointer(&cand);
		if (stat(cand, &st) == 0 && S_ISREG(st.st_mode))
			denied = 1;
		if (colon == NULL)
			break;
		p = colon + 1;
	}
	if (denied)
		cove_error_set(err, COVE_PERMISSION_DENIED, "exec: \"%s\": permission denied", cmd);
	else
		cove_error_set(err, COVE_NOT_FOUND, "exec: \"%s\": executable file not found in $PATH", cmd);
	return NULL;
}

/* ---- stdin ---- */

static void
answer_writers(struct cove_proc *p, int code, const char *message)
{
	while (p->in_waiters.head) {
		struct cove_waiter *w = p->in_waiters.head;
		if (code == COVE_OK) {
			static const uint8_t empty[1];
			cove_call_send(w->call, empty, 0); /* every stdin write answers an empty message */
		}
		cove_call_finish(w->call, code, code == COVE_OK ? NULL : message);
		cove_waiter_done(w);
	}
}

static void
writer_timeout(struct cove_waiter *w)
{
	cove_call_finish(w->call, COVE_DEADLINE_EXCEEDED, "the process has not read its input for an hour");
	cove_waiter_done(w);
}

static void
stdin_close(struct cove_proc *p)
{
	if (p->in) {
		bufferevent_free(p->in);
		p->in = NULL;
	}
	p->in_gone = 1;
}

static void
stdin_written(struct bufferevent *bev, void *arg)
{
	struct cove_proc *p = arg;
	answer_writers(p, COVE_OK, NULL);
	if (p->in_eof && evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !p->pty)
		stdin_close(p);
}

static void
stdin_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct cove_proc *p = arg;
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		stdin_close(p);
		answer_writers(p, COVE_FAILED_PRECONDITION, "the process closed its standard input");
	}
}

int
cove_proc_stdin(struct cove_proc *p, uint64_t offset, const uint8_t *data, size_t len, int eof,
		struct cove_call *call, struct cove_error **err)
{
	if (offset > p->in_offset)
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "stdin write at offset %llu, but only %llu bytes were written before it",
				      (unsigned long long)offset, (unsigned long long)p->in_offset);
	uint64_t skip = p->in_offset - offset;
	size_t fresh = skip >= len ? 0 : len - (size_t)skip;
	if (fresh > 0 && (p->in_eof || p->in_gone || p->exited))
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "%s",
				      p->in_eof ? "stdin was already closed (EOF)"
						: "the process is no longer reading its standard input");
	if (p->host->sb)
		sandbox_activity(p->host->sb);
	if (fresh > 0) {
		bufferevent_write(p->in, data + skip, fresh);
		p->in_offset += fresh;
	}
	if (eof && !p->in_eof) {
		p->in_eof = 1;
		if (p->in && p->pty) {
			static const char veof = 4; /* ^D: end of input for a terminal in canonical mode */
			bufferevent_write(p->in, &veof, 1);
		} else if (p->in && evbuffer_get_length(bufferevent_get_output(p->in)) == 0) {
			stdin_close(p);
		}
	}
	if (call == NULL)
		return 0;
	if (p->in == NULL || evbuffer_get_length(bufferevent_get_output(p->in)) <= STDIN_LOW) {
		static const uint8_t empty[1];
		cove_call_send(call, empty, 0);
		cove_call_finish(call, COVE_OK, NULL);
		return 0;
	}
	cove_waiter_park(base_of(p->host), p->host->sbx->ctx->sched, &p->in_waiters, call, p, 3600, writer_timeout);
	return 0;
}

/* ---- running and exiting ---- */

static void
set_reading(struct cove_proc *p, int fd, int reading)
{
	if (p->container)
		runtime_of(p->host)->ops->set_reading(runtime_of(p->host), p->container, fd, reading);
}

static void
stdout_flow(void *arg, int reading)
{
	struct cove_proc *p = arg;
	set_reading(p, 1, reading);
	if (p->merge_stderr)
		set_reading(p, 2, reading);
}

static void
stderr_flow(void *arg, int reading)
{
	set_reading(arg, 2, reading);
}

/* A sandbox's entrypoint output is also its app's log (`modal app logs`, `modal container logs`). */
static void
log_output(struct cove_proc *p, int fd, const char *data, size_t len)
{
	struct cove_sandbox *sb = p->host->sb;
	struct cove_sched *sched = p->host->sbx->ctx->sched;
	struct cove_app *app = cove_sched_app_get(sched, sb->app_id);
	if (app == NULL)
		return;
	size_t n;
	cleanup_free char *text = cove_utf8_sanitize(&p->log_carry[fd == 2], data, len, &n);
	cove_sched_app_log(sched, app, sb->host.task_id, "", fd, text, n);
}

static void
proc_on_output(void *owner, int fd, const char *data, size_t len)
{
	struct cove_proc *p = owner;
	if (p->exec_id == NULL)
		log_output(p, fd, data, len);
	cove_stream_append(&p->out[fd == 2 && !p->merge_stderr ? 1 : 0], data, len);
}

static void
answer_wait(struct cove_call *call, const struct cove_proc *p)
{
	Modal__TaskCommandRouter__TaskExecWaitResponse resp = MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_WAIT_RESPONSE__INIT;
	int32_t code = 0, sig = 0;
	int which = cove_proc_exit_status(p, &code, &sig);
	if (which == 1) {
		resp.exit_status_case = MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_WAIT_RESPONSE__EXIT_STATUS_CODE;
		resp.code = code;
	} else {
		resp.exit_status_case = MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_WAIT_RESPONSE__EXIT_STATUS_SIGNAL;
		resp.signal = sig;
	}
	cove_api_reply(call, &resp.base);
}

static void
proc_expire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_proc *p = arg;
	struct cove_exec_host *host = p->host;
	cove_map_del(&host->execs, p->exec_id);
	proc_free(p, COVE_OK, NULL);
	/* A function's host goes with its last exec once the function's container is gone. */
	if (host->sb == NULL && host->execs.len == 0 &&
	    cove_sched_task_by_id(host->sbx->ctx->sched, host->task_id) == NULL) {
		cove_map_del(&host->sbx->fn_hosts, host->task_id);
		host_release(host, COVE_OK, NULL);
		free(host);
	}
}

/* Whether every reader of the exited process's output has had all of it. */
static int
output_drained(const struct cove_proc *p)
{
	return p->out[0].readers == NULL && p->out[1].readers == NULL;
}

static void
answer_waits(struct cove_proc *p)
{
	while (p->waiters.head) {
		struct cove_waiter *w = p->waiters.head;
		answer_wait(w->call, p);
		cove_waiter_done(w);
	}
}

#define DRAIN_POLL_MS 5
#define DRAIN_MAX_MS 2000

static void
drain_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_proc *p = arg;
	if (output_drained(p) || ++p->drain_polls * DRAIN_POLL_MS >= DRAIN_MAX_MS) {
		answer_waits(p);
		return;
	}
	struct timeval tv = {0, DRAIN_POLL_MS * 1000};
	evtimer_add(p->drain_ev, &tv);
}

/* TaskExecWait answers once the process's output readers have all of it (or after DRAIN_MAX_MS): the client's
 * `modal container exec` and `ContainerProcess.wait()` return when the wait does, and output still on its way
 * would be lost to them. */
static void
answer_waits_when_drained(struct cove_proc *p)
{
	if (output_drained(p) || (p->drain_polls + 1) * DRAIN_POLL_MS >= DRAIN_MAX_MS) {
		answer_waits(p);
		return;
	}
	if (p->drain_ev == NULL)
		p->drain_ev = evtimer_new(base_of(p->host), drain_poll, p);
	if (!evtimer_pending(p->drain_ev, NULL)) {
		struct timeval tv = {0, DRAIN_POLL_MS * 1000};
		evtimer_add(p->drain_ev, &tv);
	}
}

static void
proc_on_exit(void *owner, int status)
{
	struct cove_proc *p = owner;
	struct cove_exec_host *host = p->host;
	p->container = NULL;
	p->exited = 1;
	if (status == COVE_EXIT_OOM) {
		p->oom = 1;
		status = 128 + 9;
	}
	p->status = status;
	p->finished_at = cove_sandbox_now();
	if (p->timeout_ev) {
		event_free(p->timeout_ev);
		p->timeout_ev = NULL;
	}
	if (p->exec_id == NULL) {
		for (int fd = 1; fd <= 2; fd++)
			if (p->log_carry[fd - 1].len)
				log_output(p, fd, NULL, 0);
	}
	stdin_close(p);
	answer_writers(p, COVE_FAILED_PRECONDITION, "the process exited before reading all of its input");
	cove_stream_close(&p->out[0]);
	cove_stream_close(&p->out[1]);
	answer_waits_when_drained(p);
	if (p->exec_id == NULL) {
		sandbox_main_exited(host->sb);
		return;
	}
	log_debug("sandbox: exec %s in %s exited (%d)", p->exec_id, host->task_id, status);
	host->n_running--;
	if (host->sb)
		sandbox_activity(host->sb);
	p->expire_ev = evtimer_new(base_of(host), proc_expire, p);
	struct timeval tv = {host->sbx->proc_keep_s, 0};
	evtimer_add(p->expire_ev, &tv);
}

static const struct cove_runtime_callbacks proc_callbacks = {
	.on_output = proc_on_output,
	.on_exit = proc_on_exit,
};

static void
proc_timed_out(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_proc *p = arg;
	p->timed_out = 1;
	log_debug("sandbox: exec %s in %s ran past its timeout; killing it", p->exec_id, p->host->task_id);
	proc_kill(p);
}

int
proc_start(struct cove_exec_host *host, const struct proc_spec *spec, struct cove_proc **out,
	   struct cove_error **err)
{
	struct cove_runtime *rt = runtime_of(host);
	struct cove_proc *p = xcalloc(1, sizeof(*p));
	p->host = host;
	p->exec_id = spec->exec_id ? xstrdup(spec->exec_id) : NULL;
	p->pty = spec->pty;
	p->merge_stderr = spec->pty || spec->stderr_mode < 0;
	cove_stream_init(&p->out[0], base_of(host), spec->stdout_mode, spec->ring_keep, stdout_flow, p);
	cove_stream_init(&p->out[1], base_of(host), p->merge_stderr ? COVE_STREAM_DISCARD : spec->stderr_mode,
			 spec->ring_keep, stderr_flow, p);
	cleanup_free char *id = spec->exec_id ? xasprintf("%s:%s", host->task_id, spec->exec_id) : xstrdup(host->task_id);
	int in_fd = -1;
	struct cove_container_spec cs = {
		.id = id,
		.workload = host->sb ? COVE_WORKLOAD_SANDBOX : COVE_WORKLOAD_FUNCTION,
		.workdir = spec->cwd,
		.argv = spec->argv,
		.envp = spec->envp,
		.cb = &proc_callbacks,
		.stdin_fd = &in_fd,
		.pty = spec->pty,
		.pty_rows = spec->rows,
		.pty_cols = spec->cols,
		.join = spec->join,
		.rootfs = spec->rootfs,
		.limits = spec->limits,
		.mounts = spec->mounts,
		.n_mounts = spec->n_mounts,
	};
	if (rt->ops->start(rt, &cs, p, &p->container, err) < 0) {
		cove_stream_release(&p->out[0], COVE_OK, NULL);
		cove_stream_release(&p->out[1], COVE_OK, NULL);
		free(p->exec_id);
		free(p);
		return -1;
	}
	p->started_at = cove_sandbox_now();
	p->in = bufferevent_socket_new(base_of(host), in_fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(p->in, NULL, stdin_written, stdin_event, p);
	bufferevent_setwatermark(p->in, EV_WRITE, STDIN_LOW, 0);
	bufferevent_enable(p->in, EV_WRITE);
	if (spec->timeout_s) {
		p->timeout_ev = evtimer_new(base_of(host), proc_timed_out, p);
		struct timeval tv = {(time_t)spec->timeout_s, 0};
		evtimer_add(p->timeout_ev, &tv);
	}
	*out = p;
	return 0;
}

void
proc_kill(struct cove_proc *p)
{
	struct cove_runtime *rt = runtime_of(p->host);
	if (p->container)
		rt->ops->stop(rt, p->container, 0, 0);
}

void
proc_free(struct cove_proc *p, int code, const char *message)
{
	answer_writers(p, code == COVE_OK ? COVE_FAILED_PRECONDITION : code, message ? message : "the process is gone");
	while (p->waiters.head) {
		struct cove_waiter *w = p->waiters.head;
		if (p->exited)
			answer_wait(w->call, p);
		else
			cove_call_finish(w->call, code == COVE_OK ? COVE_UNAVAILABLE : code, message ? message : "gone");
		cove_waiter_done(w);
	}
	cove_stream_release(&p->out[0], code, message);
	cove_stream_release(&p->out[1], code, message);
	if (p->in)
		bufferevent_free(p->in);
	if (p->timeout_ev)
		event_free(p->timeout_ev);
	if (p->drain_ev)
		event_free(p->drain_ev);
	if (p->expire_ev)
		event_free(p->expire_ev);
	free(p->exec_id);
	free(p);
}

struct cove_stream *
cove_proc_stream(struct cove_proc *p, int fd)
{
	return &p->out[fd == 2 ? 1 : 0];
}

int
cove_proc_exit_status(const struct cove_proc *p, int32_t *code, int32_t *signal)
{
	if (!p->exited)
		return 0;
	if (p->status >= 0) {
		*code = p->status;
		return 1;
	}
	*signal = -p->status;
	return 2;
}

static void
wait_timeout(struct cove_waiter *w)
{
	cove_call_finish(w->call, COVE_DEADLINE_EXCEEDED, "the process is still running");
	cove_waiter_done(w);
}

void
cove_proc_wait(struct cove_proc *p, struct cove_call *call, double timeout_s)
{
	if (p->exited && output_drained(p)) {
		answer_wait(call, p);
		return;
	}
	cove_waiter_park(base_of(p->host), p->host->sbx->ctx->sched, &p->waiters, call, p, timeout_s, wait_timeout);
	if (p->exited)
		answer_waits_when_drained(p);
}

/* ---- hosts ---- */

void
host_init(struct cove_exec_host *host, struct cove_sandboxes *sbx, const char *task_id, struct cove_sandbox *sb,
	  const char *cwd, char **envp)
{
	host->sbx = sbx;
	host->task_id = xstrdup(task_id);
	host->sb = sb;
	host->cwd = xstrdup(cwd);
	host->envp = envp;
}

void
host_release(struct cove_exec_host *host, int code, const char *message)
{
	host_release_execs(host, code, message);
	free(host->task_id);
	free(host->cwd);
	env_free(host->envp);
	host->task_id = host->cwd = NULL;
	host->envp = NULL;
}

void
host_release_execs(struct cove_exec_host *host, int code, const char *message)
{
	size_t it = 0;
	void *v;
	while (cove_map_next(&host->execs, &it, NULL, &v)) {
		struct cove_proc *p = v;
		if (!p->exited) {
			/* Its container is going away with the runtime: nothing will report its exit. */
			proc_kill(p);
			p->container = NULL;
		}
		proc_free(p, code, message);
	}
	cove_map_clear(&host->execs);
	host->n_running = 0;
}

struct cove_exec_host *
cove_exec_host(struct cove_sandboxes *sbx, const char *task_id, struct cove_error **err)
{
	struct cove_sandbox *sb = cove_sandbox_by_task(sbx, task_id);
	if (sb) {
		if (sb->state == COVE_SANDBOX_RUNNING)
			return &sb->host;
		cove_error_set(err, COVE_NOT_FOUND, "container %s is not running (its sandbox %s %s)", task_id, sb->id,
			       sb->state == COVE_SANDBOX_PENDING ? "has not started yet" : "has finished");
		return NULL;
	}
	struct cove_task *t = cove_sched_task_by_id(sbx->ctx->sched, task_id);
	if (t == NULL || t->container == NULL) {
		cove_error_set(err, COVE_NOT_FOUND, "container %s is not running", task_id);
		return NULL;
	}
	struct cove_exec_host *host = cove_map_get(&sbx->fn_hosts, task_id);
	if (host)
		return host;
	/* A function's container: its working directory, and the basics of its environment (not the function's
	 * secrets, nor its credentials for the API). */
	host = xcalloc(1, sizeof(*host));
	char **env = NULL;
	size_t n = 0;
	int isolated = sbx->ctx->builder != NULL;
	const char *path = isolated ? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" : getenv("PATH");
	cleanup_free char *root = isolated ? xstrdup("/root") : xasprintf("%s/root", t->dir);
	env_set(&env, &n, "PATH", path ? path : "/usr/local/bin:/usr/bin:/bin");
	env_set(&env, &n, "HOME", root);
	env_set(&env, &n, "LANG", "C.UTF-8");
	env_set(&env, &n, "MODAL_TASK_ID", task_id);
	env_set(&env, &n, "MODAL_ENVIRONMENT", cove_env_display(t->app->env) ? cove_env_display(t->app->env) : "");
	host_init(host, sbx, task_id, NULL, root, env);
	host->isolated = isolated;
	cove_map_put(&sbx->fn_hosts, task_id, host);
	return host;
}

struct cove_exec_host *
cove_exec_host_any(struct cove_sandboxes *sbx, const char *task_id)
{
	struct cove_sandbox *sb = cove_sandbox_by_task(sbx, task_id);
	if (sb)
		return &sb->host;
	return task_id ? cove_map_get(&sbx->fn_hosts, task_id) : NULL;
}

struct cove_proc *
cove_exec_get(struct cove_exec_host *host, const char *exec_id)
{
	return exec_id ? cove_map_get(&host->execs, exec_id) : NULL;
}

static int
valid_exec_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MAX_EXEC_ID)
		return 0;
	for (const char *p = s; *p; p++)
		if (*p <= ' ' || *p > '~' || *p == ':')
			return 0;
	return 1;
}

/* The container of the host, to start inside. */
static const struct cove_container *
host_container(struct cove_exec_host *host)
{
	if (host->sb)
		return host->sb->main ? host->sb->main->container : NULL;
	struct cove_task *t = cove_sched_task_by_id(host->sbx->ctx->sched, host->task_id);
	return t ? t->container : NULL;
}

int
cove_exec_start(struct cove_exec_host *host, const Modal__TaskCommandRouter__TaskExecStartRequest *r,
		struct cove_error **err)
{
	if (!valid_exec_id(r->exec_id))
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "exec_id must be 1 to %d printable characters without spaces or ':'", MAX_EXEC_ID);
	if (cove_map_get(&host->execs, r->exec_id))
		return 0; /* a retry of a start that went through */
	if (r->container_id && *r->container_id)
		return cove_error_set(err, COVE_UNIMPLEMENTED,
				      "sidecar containers (container_id %s) are not supported by Cove", r->container_id);
	if (r->n_command_args == 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "no command given");
	size_t total = 0;
	for (size_t i = 0; i < r->n_command_args; i++)
		total += strlen(r->command_args[i]) + 1;
	if (total > MAX_ARGS_BYTES)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the command's arguments exceed %u bytes", MAX_ARGS_BYTES);
	if (r->command_args[0][0] == '\0')
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the command is an empty string");
	int out_mode, err_mode;
	switch (r->stdout_config) {
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDOUT_CONFIG__TASK_EXEC_STDOUT_CONFIG_DEVNULL:
		out_mode = COVE_STREAM_DISCARD;
		break;
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDOUT_CONFIG__TASK_EXEC_STDOUT_CONFIG_PIPE:
		out_mode = COVE_STREAM_FLOW;
		break;
	default:
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "unknown stdout_config %d", (int)r->stdout_config);
	}
	switch (r->stderr_config) {
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDERR_CONFIG__TASK_EXEC_STDERR_CONFIG_DEVNULL:
		err_mode = COVE_STREAM_DISCARD;
		break;
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDERR_CONFIG__TASK_EXEC_STDERR_CONFIG_PIPE:
		err_mode = COVE_STREAM_FLOW;
		break;
	case MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDERR_CONFIG__TASK_EXEC_STDERR_CONFIG_STDOUT:
		err_mode = -1;
		break;
	default:
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "unknown stderr_config %d", (int)r->stderr_config);
	}
	const char *cwd = host->cwd;
	if (r->_workdir_case == MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_START_REQUEST___WORKDIR_WORKDIR && *r->workdir) {
		struct stat st;
		if (r->workdir[0] != '/')
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "workdir must be an absolute path, got %s", r->workdir);
		if (!host->isolated && (stat(r->workdir, &st) < 0 || !S_ISDIR(st.st_mode)))
			return cove_error_set(err, COVE_NOT_FOUND, "workdir %s is not a directory", r->workdir);
		cwd = r->workdir;
	}
	const Modal__Client__PTYInfo *pty = r->_pty_info_case ? r->pty_info : NULL;
	int use_pty = pty && (pty->enabled || pty->pty_type != MODAL__CLIENT__PTYINFO__PTYTYPE__PTY_TYPE_UNSPECIFIED);
	/* The environment: the container's, then the exec's secrets and variables. */
	char **env = NULL;
	size_t n_env = 0;
	for (char **e = host->envp; e && *e; e++) {
		char *eq = strchr(*e, '=');
		cleanup_free char *key = xstrndup(*e, (size_t)(eq - *e));
		env_set(&env, &n_env, key, eq + 1);
	}
	int rv = -1;
	cleanup_free char *argv0 = NULL;
	char **argv = NULL;
	for (size_t i = 0; i < r->n_secret_ids; i++)
		if (env_add_secret(host->sbx, &env, &n_env, r->secret_ids[i], err) < 0)
			goto out;
	if (env_add_sources(host->sbx, &env, &n_env, r->secret_sources, r->n_secret_sources, err) < 0)
		goto out;
	for (size_t i = 0; i < r->n_env; i++) {
		if (r->env[i]->key[0] == '\0' || strchr(r->env[i]->key, '=')) {
			cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid environment variable name '%s'", r->env[i]->key);
			goto out;
		}
		env_set(&env, &n_env, r->env[i]->key, r->env[i]->value);
	}
	if (use_pty) {
		if (pty->env_term[0])
			env_set(&env, &n_env, "TERM", pty->env_term);
		if (pty->env_colorterm[0])
			env_set(&env, &n_env, "COLORTERM", pty->env_colorterm);
		if (pty->env_term_program[0])
			env_set(&env, &n_env, "TERM_PROGRAM", pty->env_term_program);
	}
	/* Isolated, cove-container finds the command in the container (and says so if it is missing). */
	argv0 = host->isolated ? xstrdup(r->command_args[0]) : resolve_command(host->sbx, r->command_args[0], env, cwd, err);
	if (argv0 == NULL)
		goto out;
	argv = xcalloc(r->n_command_args + 1, sizeof(char *));
	argv[0] = argv0;
	for (size_t i = 1; i < r->n_command_args; i++)
		argv[i] = r->command_args[i];
	const struct cove_container *join = host_container(host);
	if (join == NULL) {
		cove_error_set(err, COVE_NOT_FOUND, "container %s is not running", host->task_id);
		goto out;
	}
	struct proc_spec spec = {
		.argv = argv,
		.envp = env,
		.cwd = cwd,
		.stdout_mode = out_mode,
		.stderr_mode = err_mode,
		.pty = use_pty,
		.rows = use_pty && pty->winsz_rows < 65536 ? (unsigned short)pty->winsz_rows : 0,
		.cols = use_pty && pty->winsz_cols < 65536 ? (unsigned short)pty->winsz_cols : 0,
		.timeout_s = r->_timeout_secs_case ? r->timeout_secs : 0,
		.join = join,
		.exec_id = r->exec_id,
	};
	struct cove_proc *p;
	if (proc_start(host, &spec, &p, err) < 0) {
		if (strncmp((*err)->msg, "exec: \"", 7) != 0)
			cove_error_wrap(err, "exec in %s", host->task_id);
		goto out;
	}
	cove_map_put(&host->execs, r->exec_id, p);
	host->n_running++;
	if (host->sb)
		sandbox_activity(host->sb);
	log_debug("sandbox: exec %s in %s: %s", r->exec_id, host->task_id, argv0);
	rv = 0;
out:
	free(argv);
	env_free(env);
	return rv;
}
