/* Sandboxes (modal.Sandbox) and the processes run inside containers (sb.exec, `modal container exec`,
 * `modal shell`), on the event loop.
 *
 * A sandbox is a container started through the runtime (ctx->runtime) with its own callbacks: its entrypoint's
 * output goes to this module's streams and to the app's logs, never to a function's task. It lives until its
 * entrypoint exits, it is terminated (SandboxTerminate, `modal container stop`, its app stopping, Cove
 * shutting down), or its timeout or idle timeout passes; its record stays for an hour afterwards so that
 * wait(), poll(), from_id() and its output still answer. Sandboxes are not kept across restarts of Cove.
 *
 * An exec host is a container that processes can be started in: a sandbox's, or a running function's
 * (`modal container exec ta-...`). Each process (struct cove_proc) has stdout and stderr streams read by
 * offset, a stdin written by offset, and an exit status; it is kept for ten minutes after it exits.
 *
 * Ownership: the module owns every struct below; API handlers borrow pointers within one event callback and
 * look objects up again by id later. */
#ifndef COVE_SANDBOX_SANDBOX_H
#define COVE_SANDBOX_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "sandbox/stream.h"
#include "sched/sched.h"
#include "task_command_router.pb-c.h"
#include "util/error.h"
#include "util/map.h"

struct cove_ctx;
struct cove_call;
struct cove_container;
struct event;
struct bufferevent;
struct cove_sandboxes;
struct cove_sandbox;

/* A process in a container: a sandbox's entrypoint, or an exec. */
struct cove_proc {
	struct cove_exec_host *host;
	char *exec_id; /* NULL for a sandbox's entrypoint */
	struct cove_container *container; /* NULL once it exited */
	struct cove_stream out[2];        /* stdout, stderr */
	int merge_stderr;                 /* stderr goes to out[0] */
	int pty;
	/* stdin */
	struct bufferevent *in; /* NULL once closed, or if the process is gone */
	uint64_t in_offset;     /* bytes accepted so far */
	int in_eof;             /* the writer asked for EOF (it happens once what was accepted is written) */
	int in_gone;            /* nothing can be written any more (closed, or the process stopped reading) */
	struct cove_waitlist in_waiters; /* writes answered once the pipe has taken most of what is buffered */
	/* exit */
	int exited;
	int status; /* exit code (>= 0) or -signal */
	int oom;    /* killed for exceeding its memory limit (status 137, as a shell reports SIGKILL) */
	int timed_out;
	double started_at, finished_at;
	struct cove_waitlist waiters; /* TaskExecWait */
	struct event *drain_ev;       /* exited: waits are answered once its output's readers have it all */
	int drain_polls;
	struct event *timeout_ev;
	struct event *expire_ev;
	struct cove_utf8_carry log_carry[2]; /* entrypoint: partial UTF-8 held back from the app's logs */
};

/* A container processes can be started in. */
struct cove_isolated;
struct cove_container_mount;

struct cove_exec_host {
	struct cove_sandboxes *sbx;
	char *task_id;
	struct cove_sandbox *sb; /* NULL: a function's container */
	struct cove_map execs;   /* exec id -> struct cove_proc* */
	size_t n_running;        /* execs still running */
	char *cwd;               /* where processes start unless told otherwise */
	char **envp;             /* the container's environment, which execs inherit (NULL-terminated) */
	int isolated;            /* the linux runtime: commands and paths are the container's, not the host's */
};

enum cove_sandbox_state { COVE_SANDBOX_PENDING, COVE_SANDBOX_RUNNING, COVE_SANDBOX_FINISHED };

struct cove_sandbox {
	struct cove_sandboxes *sbx;
	char *id;
	int v2;                     /* created through SandboxCreateV2 (its id has the V2 shape) */
	struct cove_exec_host host; /* host.task_id: its container's task id */
	char *app_id;
	char *env;                  /* the app's environment (key) */
	char *name;                 /* NULL if unnamed */
	char **tag_names, **tag_values;
	size_t n_tags;
	Modal__Client__Sandbox *def; /* owned copy of the definition */
	char *dir;                  /* its directory under <state>/tasks (working directory and HOME: dir/root) */
	int state;                  /* enum cove_sandbox_state */
	struct cove_proc *main;     /* the entrypoint (NULL while pending) */
	double created_at, started_at, finished_at;
	/* The result once finished (Modal__Client__GenericResult__GenericStatus, exit code, message). */
	int result_status;
	int exitcode;
	char *exception;
	int stop_status; /* why Cove is stopping it (TERMINATED, TIMEOUT), 0 if it is not */
	char *stop_message;
	struct cove_waitlist waiters; /* SandboxWait */
	uint32_t stdin_index;         /* V1 SandboxStdinWrite: the last index taken */
	double last_active;           /* idle timeout: the last exec or stdin activity */
	struct event *timeout_ev, *idle_ev, *expire_ev;
	int copies;                   /* snapshot copies from or into its directory still running */
	int dir_removed;
	int output_released;          /* its output and execs are gone (a while after it finished) */
	struct cove_isolated *iso;    /* the linux runtime: its image, root filesystem and limits (else NULL) */
	struct cove_container_mount *vmounts; /* volumes (and, isolated, Cove's helpers) bind-mounted into it */
	size_t n_vmounts;
	int volumes;                  /* it has volume views to commit when it ends */
	/* TLS in front of its encrypted ports while it runs: fronts[i] for open port i (NULL: unencrypted). */
	struct cove_tls_front **fronts;
	size_t n_fronts;
};

/* The module. new: also registers the scheduler's stop hook. free: stops nothing (the runtime, freed after it,
 * kills what is left); call before the runtime goes. */
struct cove_sandboxes *cove_sandbox_new(struct cove_ctx *ctx, struct cove_error **err);
void cove_sandbox_free(struct cove_sandboxes *sbx);

/* ---- sandboxes (sandbox.c) ---- */

struct cove_sandbox_create {
	const char *app_id;
	const Modal__Client__Sandbox *def;
	Modal__Client__SandboxTag **tags;
	size_t n_tags;
	Modal__Client__SecretSource **sources; /* V2: secrets by id and inline ones, in order (else def->secret_ids) */
	size_t n_sources;
	int v2;
};
/* Validate and start a sandbox (or queue it behind the restore of a snapshot image). NULL + err:
 * INVALID_ARGUMENT for a bad definition, NOT_FOUND for a missing app, secret, mount or image,
 * FAILED_PRECONDITION for a stopped app or what the process runtime cannot give (block_network, volumes,
 * ...), ALREADY_EXISTS for a name a running sandbox of the app holds. */
struct cove_sandbox *cove_sandbox_create(struct cove_sandboxes *sbx, const struct cove_sandbox_create *args,
					 struct cove_error **err);
struct cove_sandbox *cove_sandbox_get(struct cove_sandboxes *sbx, const char *sandbox_id);
struct cove_sandbox *cove_sandbox_by_task(struct cove_sandboxes *sbx, const char *task_id);
/* The running sandbox of that name in the app, or with include_terminated the newest finished one. */
struct cove_sandbox *cove_sandbox_by_name(struct cove_sandboxes *sbx, const char *app_id, const char *name,
					  int include_terminated);
/* Every sandbox record (values are struct cove_sandbox*). */
const struct cove_map *cove_sandbox_all(struct cove_sandboxes *sbx);
/* Stop it now; it finishes with status (TERMINATED or TIMEOUT) and message. No-op once finished. */
void cove_sandbox_terminate(struct cove_sandbox *sb, int status, const char *message);
/* Its result (zero status while running); strings borrowed from sb. */
void cove_sandbox_result(const struct cove_sandbox *sb, Modal__Client__GenericResult *out);
/* Answer call with a SandboxWaitResponse once it finishes or after timeout_s (a result with no status). */
void cove_sandbox_wait(struct cove_sandbox *sb, struct cove_call *call, double timeout_s);
/* Replace its tags (validated: INVALID_ARGUMENT). */
int cove_sandbox_set_tags(struct cove_sandbox *sb, Modal__Client__SandboxTag **tags, size_t n, struct cove_error **err);
/* Name an unnamed running sandbox (ALREADY_EXISTS if another running one of the app holds it,
 * FAILED_PRECONDITION if it has another name or has finished; the same name again is fine). */
int cove_sandbox_set_name(struct cove_sandbox *sb, const char *name, struct cove_error **err);
/* Its tunnels: each open port of the definition, on 127.0.0.1 (the process runtime shares the host's
 * network). Caller frees the array and each element's strings with cove_sandbox_tunnels_free. */
size_t cove_sandbox_tunnels(const struct cove_sandbox *sb, Modal__Client__TunnelData ***out);
void cove_sandbox_tunnels_free(Modal__Client__TunnelData **t, size_t n);
/* A TaskInfo for it (strings borrowed). */
void cove_sandbox_task_info(const struct cove_sandbox *sb, Modal__Client__TaskInfo *info,
			    Modal__Client__GenericResult *result);
/* Entrypoint stdin through the V1 API: index counts writes from 1 (a repeated index is a retry, ignored). */
int cove_sandbox_stdin_v1(struct cove_sandbox *sb, uint32_t index, const uint8_t *data, size_t len, int eof,
			  struct cove_error **err);

/* TaskList: running sandboxes of the environment (key) or of the app: fill at most max entries (strings
 * borrowed). cove_sandbox_running: how many there are. */
size_t cove_sandbox_running(struct cove_sandboxes *sbx);
size_t cove_sandbox_task_stats(struct cove_sandboxes *sbx, const char *env, const char *app_id,
			       Modal__Client__TaskStats *out, size_t max);
/* ContainerStop of a sandbox's task: terminate it. 0, or -1 + NOT_FOUND if no running sandbox has the task. */
int cove_sandbox_stop_task(struct cove_sandboxes *sbx, const char *task_id, struct cove_error **err);

/* ---- the task command router's tokens (sandbox.c) ---- */

/* A bearer token for task_id (caller frees), and its router's URL (borrowed). */
char *cove_sandbox_router_token(struct cove_sandboxes *sbx, const char *task_id);
const char *cove_sandbox_router_url(struct cove_sandboxes *sbx);
/* Check a router bearer token: 0 and the task id into task (NUL-terminated), or -1 + UNAUTHENTICATED. */
int cove_sandbox_router_check(struct cove_sandboxes *sbx, const char *token, char *task, size_t cap,
			      struct cove_error **err);
/* AuthTokenGet: a short-lived token for the caller (subject: its token id). Caller frees. */
char *cove_sandbox_auth_token(struct cove_sandboxes *sbx, const char *subject);

/* ---- exec (exec.c) ---- */

/* The exec host of a task: a running sandbox's container or a running function's. NULL + NOT_FOUND if no
 * such container runs. */
struct cove_exec_host *cove_exec_host(struct cove_sandboxes *sbx, const char *task_id, struct cove_error **err);
/* The exec host of a task whether or not its container still runs (reading what its processes left):
 * a sandbox's, or a function container's that has had execs; NULL if none. */
struct cove_exec_host *cove_exec_host_any(struct cove_sandboxes *sbx, const char *task_id);
/* Start a process (TaskExecStartRequest, validated here). A repeated exec id is a retry: 0 without starting
 * anything. NOT_FOUND for a command that is not there ('exec: "x": executable file not found in $PATH'),
 * PERMISSION_DENIED for one that cannot be executed, INVALID_ARGUMENT for bad fields. */
int cove_exec_start(struct cove_exec_host *host, const Modal__TaskCommandRouter__TaskExecStartRequest *r,
		    struct cove_error **err);
struct cove_proc *cove_exec_get(struct cove_exec_host *host, const char *exec_id);
/* The stream of fd (1 stdout, 2 stderr) as readers see it. */
struct cove_stream *cove_proc_stream(struct cove_proc *p, int fd);
/* Write stdin at offset (bytes before in_offset are retries and skipped; a gap is INVALID_ARGUMENT); eof
 * closes it once what was accepted is written. call (may be NULL) is answered OK once the pipe has taken most
 * of what is buffered, or FAILED_PRECONDITION if the process stops reading first; returns -1 + err without
 * answering it for a write that cannot be taken (FAILED_PRECONDITION: stdin is closed or the process exited). */
int cove_proc_stdin(struct cove_proc *p, uint64_t offset, const uint8_t *data, size_t len, int eof,
		    struct cove_call *call, struct cove_error **err);
/* TaskExecWait: answer call with the exit status once it exits (or DEADLINE_EXCEEDED after timeout_s). */
void cove_proc_wait(struct cove_proc *p, struct cove_call *call, double timeout_s);
/* Exit status as the router reports it: 0 while running; 1 and *code, or 2 and *signal. */
int cove_proc_exit_status(const struct cove_proc *p, int32_t *code, int32_t *signal);

/* ---- snapshots (snapshot.c) ---- */

/* Snapshot the sandbox's working directory as an image that later sandboxes start from; answer call with
 * reply(call, image_id, NULL) or reply(call, NULL, err) when done. key makes retries idempotent (may be "").
 * An error now (the sandbox is not running) is returned without answering. */
int cove_sandbox_snapshot(struct cove_sandbox *sb, const char *key, struct cove_call *call,
			  void (*reply)(struct cove_call *call, const char *image_id, struct cove_error *err),
			  struct cove_error **err);

#endif
