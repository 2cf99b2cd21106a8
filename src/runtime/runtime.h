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

/* What a container is for: runtimes that isolate some kinds more strongly than others (gvisor) choose by it. */
enum cove_workload {
	COVE_WORKLOAD_OTHER = 0, /* image builds, host programs */
	COVE_WORKLOAD_FUNCTION,
	COVE_WORKLOAD_SANDBOX,
};

struct cove_container_spec {
	const char *id;      /* the task id, for logs */
	enum cove_workload workload; /* a process started with join runs where that container runs */
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
	/* Isolation (the linux runtime; the process runtime ignores these fields and runs a host process). With
	 * rootfs set, workdir and mount targets are paths inside the container, and argv[0] is looked up in the
	 * PATH of envp there. */
	const struct cove_container_rootfs *rootfs;
	const struct cove_container_limits *limits; /* NULL: none */
	/* The process runtime: argv[0] is a program that reports a failed setup as "<errno> <message>" on
	 * descriptor 3 and closes it when its payload runs (cove-container); start waits for that and fails with the
	 * message. */
	int setup_report;
};

/* A root filesystem: an overlay of image layers with a throwaway writable layer. */
struct cove_container_rootfs {
	const char *layers_dir;     /* the layer store */
	const char *const *layers;  /* layer directories relative to layers_dir, top first */
	size_t n_layers;
	const char *scratch;        /* a host directory for this container's writable layer (the caller removes it) */
	const char *hostname;       /* NULL: the container id */
	const char *user;           /* USER of the image (NULL or "": root) */
	int block_network;          /* an empty network namespace (loopback only) */
	/* Without block_network, a network namespace of its own with a route out (see
	 * cove_runtime_linux_set_network); these ports of the container's are reachable at the host's 127.0.0.1
	 * (a sandbox's tunnels). */
	const unsigned short *published_ports;
	size_t n_published_ports;
	/* Where each published port is reached on the host's 127.0.0.1, filled in by start: the same port where
	 * the container shares the host's network; in a network of its own (the linux runtime's), a free port of
	 * the host's, so that two containers may serve on the same port. n_published_ports entries. */
	unsigned short *published_host_ports;
};

struct cove_container_limits {
	unsigned milli_cpu;       /* request: a share of CPU under contention (0: default) */
	unsigned milli_cpu_max;   /* limit: CFS quota (0: none) */
	unsigned memory_mb;       /* request: soft limit (0: none) */
	unsigned memory_mb_max;   /* limit: exceeding it kills the container (0: none) */
	unsigned disk_mb;         /* ephemeral_disk: the writable layer's size (0: the host's file system) */
};

/* The status on_exit reports for a container killed for exceeding its memory limit. */
#define COVE_EXIT_OOM (-1000)

struct cove_runtime_callbacks {
	/* fd is 1 (stdout) or 2 (stderr). */
	void (*on_output)(void *owner, int fd, const char *data, size_t len);
	/* Exit: exit code (>= 0), -signal, or COVE_EXIT_OOM. Called once, after all output has been delivered. The container
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
	/* Count of containers still running (NULL: the process runtime's count). */
	size_t (*live)(struct cove_runtime *rt);
	/* The linux runtime this one is or runs its other containers with (NULL: none). */
	struct cove_runtime *(*linux_runtime)(struct cove_runtime *rt);
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

/* The linux runtime (src/runtime/linux.c): namespaces, an overlay root filesystem and cgroup limits, set up by
 * the cove-container program at helper (absolute path). Containers started without rootfs run as plain
 * processes. NULL + FAILED_PRECONDITION when this host cannot isolate (not root, no namespaces or overlayfs),
 * naming what is missing. */
struct cove_runtime *cove_runtime_linux_new(struct event_base *base, const struct cove_runtime_callbacks *cb,
					    const char *helper, struct cove_error **err);
/* Give each container (without block_network) a network namespace of its own, connected to the outside by pasta
 * (from Debian's passt package), from which the host's loopback is out of reach but for these ports of the
 * host's (Cove's own), which the container reaches at its own 127.0.0.1. Without pasta (the path is not
 * executable), containers keep sharing the host's network: 0, or -1 + FAILED_PRECONDITION naming what is
 * missing (the runtime still works, as before this call). */
#define COVE_PASTA "/usr/bin/pasta"
int cove_runtime_linux_set_network(struct cove_runtime *rt, const char *pasta, const int *forward_ports,
				   size_t n_forward_ports, struct cove_error **err);
/* A network made ahead of time (as containers of the linux runtime get), for a container another runtime runs
 * (gVisor): *ns_path (caller frees) names its network namespace, which stays until the lease is released (once).
 * NULL when none is ready (the caller makes do without). */
struct cove_net_lease;
struct cove_net_lease *cove_runtime_linux_net_take(struct cove_runtime *rt, char **ns_path);
void cove_runtime_linux_net_release(struct cove_net_lease *lease);
/* Whether containers of the linux runtime get a user namespace each (cove serve --userns; default on): their
 * root is then an unprivileged host uid of a range of their own (COVE_USERNS_IDS ids each, from
 * COVE_USERNS_FIRST on), and their file systems are mounted idmapped (src/runtime/idmap.h). Process-wide, like
 * the cgroup defaults. */
#define COVE_USERNS_FIRST 0x40000000u
#define COVE_USERNS_SLOTS 16384u
void cove_runtime_linux_set_userns(int on);
/* Cove's API inside networks made ahead of time: when one is ready, open(ctx, netns_fd) makes Cove listen on
 * 127.0.0.1:port inside it and returns a handle (NULL: failed; that network is not used), which close gets
 * when the network ends. pasta then does not forward that port into them, so a container's API calls reach
 * Cove with no process in between. Set before cove_runtime_linux_set_network; NULL hooks close every handle
 * (before the API server goes). */
struct cove_net_api_hooks {
	int port;
	void *(*open)(void *ctx, int netns_fd);
	void (*close)(void *ctx, void *handle);
	void *ctx;
};
void cove_runtime_linux_set_api_hooks(struct cove_runtime *rt, const struct cove_net_api_hooks *hooks);
/* Stop keeping networks ready (shutdown): those not in use end. */
void cove_runtime_linux_stop_pool(struct cove_runtime *rt);
/* Whether cove_runtime_linux_new would succeed here (for `cove status`): 0, or -1 + the reason. */
int cove_runtime_linux_check(const char *helper, struct cove_error **err);
/* The cgroup hierarchy the linux runtime uses ("v1", "v2"), for `cove status`. */
const char *cove_runtime_linux_cgroup_kind(const struct cove_runtime *rt);
/* Count of containers still running, whichever runtime. */
size_t cove_runtime_live(struct cove_runtime *rt);

/* The gvisor runtime (src/runtime/runsc.c): the workloads in `workloads` (a bit per enum cove_workload) that
 * have a root filesystem run as OCI bundles under gVisor's runsc; everything else goes to lx (the linux
 * runtime, owned from here on). */
struct cove_runsc_opts {
	const char *runsc;      /* the runsc binary */
	const char *state_root; /* runsc's --root (made if missing; a short path of its own when this is long) */
	const char *relay;      /* cove-pty-relay on the host, bound into containers for terminals */
	unsigned workloads;
};
struct cove_runtime *cove_runtime_runsc_new(struct event_base *base, const struct cove_runtime_callbacks *cb,
					    struct cove_runtime *lx, const struct cove_runsc_opts *o,
					    struct cove_error **err);
/* Where runsc is: given (a flag), else $COVE_RUNSC, else scripts/runsc.sh's caches ($COVE_RUNSC_CACHE,
 * /var/cache/cove/runsc, ${XDG_CACHE_HOME:-~/.cache}/cove/runsc), else PATH. NULL when none is executable. */
char *cove_runtime_runsc_find(const char *given);
/* Unmount the root filesystems (<tasks_dir>/<task>/fs/rootfs) that a Cove that died left mounted, before the
 * directory is removed. */
void cove_runtime_runsc_unmount_stale(const char *tasks_dir);
/* Whether runsc (NULL: not found) can run containers here: 0, or -1 + the reason (for `cove status`). */
int cove_runtime_runsc_check(const char *runsc, struct cove_error **err);

#endif
