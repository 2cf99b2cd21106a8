/* Container runtimes behind one small ops struct. `process` runs each container as a plain child process
 * (its own process group, no isolation) and works anywhere; an isolating `linux` runtime plugs in here.
 *
 * The runtime reports through callbacks on the event loop: every chunk of the container's stdout/stderr,
 * and its exit. The scheduler owns what a container means; the runtime only starts, watches and stops. */
#ifndef COVE_RUNTIME_RUNTIME_H
#define COVE_RUNTIME_RUNTIME_H

#include <stddef.h>
#include <sys/types.h>

#include "util/error.h"

struct event_base;
struct cove_runtime;
struct cove_container;

/* A host directory that appears at an absolute path inside the container, and there only (volumes). */
struct cove_container_mount {
	const char *source; /* host directory (exists) */
	const char *target; /* absolute, normalized path in the container; created if missing */
	int read_only;      /* writes through it fail with EROFS, whoever makes them */
};

struct cove_container_spec {
	const char *id;      /* the task id, for logs */
	const char *workdir; /* host directory the container starts in (exists) */
	char *const *argv;   /* argv[0] is looked up in PATH of envp if not absolute */
	char *const *envp;   /* the complete environment */
	/* Bind mounts, in order (a parent before what is mounted below it). With any, the container gets a mount
	 * namespace of its own; that needs root (CAP_SYS_ADMIN), and start fails with FAILED_PRECONDITION naming the
	 * reason when the namespace or a mount cannot be made. */
	const struct cove_container_mount *mounts;
	size_t n_mounts;
	/* Optional (zero or NULL: the defaults, i.e. the runtime's callbacks, stdin from /dev/null, stdout and
	 * stderr as pipes, a process group of its own). */
	const struct cove_runtime_callbacks *cb; /* callbacks for this container instead of the runtime's (static) */
	int *stdin_fd; /* non-NULL: stdin is a pipe and *stdin_fd receives its write end, non-blocking and owned by
			* the caller (closing it is EOF); with pty, a descriptor of the terminal's master side */
	int pty;       /* a pseudo-terminal is stdin, stdout and stderr (the process leads a session with it as
			* controlling terminal); all output arrives as fd 1 */
	unsigned short pty_rows, pty_cols; /* the terminal's size (0: the kernel's default) */
	/* Start inside that running container (exec). The process runtime puts it in the container's process
	 * group, so it is killed with the container and does not take others down when it exits; stopping it
	 * signals its own process only. (A pty process leads a session of its own instead.) */
	const struct cove_container *join;
};

struct cove_runtime_callbacks {
	/* fd is 1 (stdout) or 2 (stderr). */
	void (*on_output)(void *owner, int fd, const char *data, size_t len);
	/* Exit: exit code (>= 0) or -signal. Called once, after all output has been delivered. The container
	 * is freed right after this returns. */
	void (*on_exit)(void *owner, int status);
};

struct cove_runtime_ops {
	const char *name;
	int (*start)(struct cove_runtime *rt, const struct cove_container_spec *spec, void *owner,
		     struct cove_container **out, struct cove_error **err);
	/* graceful: SIGINT to the container's processes, then SIGKILL after grace_ms; else SIGKILL now. */
	void (*stop)(struct cove_runtime *rt, struct cove_container *c, int graceful, int grace_ms);
	pid_t (*pid)(const struct cove_container *c);
	/* Flow control: stop (reading 0) or resume (1) reading the container's fd (1 or 2), for a consumer that is
	 * behind; a stopped stream fills its pipe and then blocks the writer. */
	void (*set_reading)(struct cove_runtime *rt, struct cove_container *c, int fd, int reading);
	void (*free)(struct cove_runtime *rt);
};

struct cove_runtime {
	const struct cove_runtime_ops *ops;
	struct event_base *base;
	struct cove_runtime_callbacks cb;
	void *impl;
};

/* The process runtime. */
struct cove_runtime *cove_runtime_process_new(struct event_base *base, const struct cove_runtime_callbacks *cb,
					      struct cove_error **err);
/* Count of containers still running (for shutdown). */
size_t cove_runtime_process_live(struct cove_runtime *rt);

#endif
