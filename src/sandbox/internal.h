/* What sandbox.c, exec.c and snapshot.c share. Not for other modules. */
#ifndef COVE_SANDBOX_INTERNAL_H
#define COVE_SANDBOX_INTERNAL_H

#include "sandbox/jwt.h"
#include "sandbox/sandbox.h"

struct cove_workq;

/* How long records stay after the fact (COVE_SANDBOX_KEEP_S and COVE_EXEC_KEEP_S in the environment override
 * them, for tests). */
#define COVE_SANDBOX_KEEP_S 3600 /* a finished sandbox (its result: wait, poll, from_id) */
#define COVE_PROC_KEEP_S 600     /* an exited exec, and a finished sandbox's entrypoint output */
/* The newest bytes of a sandbox entrypoint's stdout/stderr that are kept for readers. */
#define COVE_SANDBOX_RING (8u << 20)

struct cove_sandboxes {
	struct cove_ctx *ctx;
	struct cove_map by_id;    /* sandbox id -> struct cove_sandbox* */
	struct cove_map by_task;  /* its task id -> struct cove_sandbox* */
	struct cove_map fn_hosts; /* a function's task id -> struct cove_exec_host* (execs into it) */
	size_t n_running;         /* sandboxes not finished */
	double last_created;      /* creation times are unique: SandboxList pages by them */
	uint8_t key[COVE_JWT_KEY_BYTES];
	char *router_url;
	char *fs_tools;           /* Cove's own modal-sandbox-fs-tools, which /__modal/.bin/... resolves to */
	char *snap_dir;           /* <state>/snapshots: one directory per snapshot image */
	struct cove_workq *workq; /* snapshot copies */
	struct cove_map snap_keys; /* snapshot idempotency key -> image id (char*) */
	int closing;               /* cove_sandbox_free has begun: nothing starts any more */
	int keep_s, proc_keep_s;   /* COVE_SANDBOX_KEEP_S, COVE_PROC_KEEP_S or their overrides */
	struct cove_tls *tls;      /* encrypted tunnels' authority and certificate, made when first needed */
};

/* Where the client runs the filesystem helper in a sandbox. */
#define FS_TOOLS_PATH "/__modal/.bin/modal-sandbox-fs-tools"

/* What a new process gets. */
struct proc_spec {
	char *const *argv; /* argv[0] resolved already */
	char *const *envp;
	const char *cwd;
	int stdout_mode, stderr_mode; /* enum cove_stream_mode; stderr_mode -1: into stdout */
	size_t ring_keep;
	int pty;
	unsigned short rows, cols;
	uint32_t timeout_s; /* 0: none */
	const struct cove_container *join; /* NULL: a container of its own (a sandbox's entrypoint) */
	const char *exec_id;               /* NULL: the entrypoint */
	/* The linux runtime's container (the entrypoint only; see struct cove_container_spec). */
	const struct cove_container_rootfs *rootfs;
	const struct cove_container_limits *limits;
	const struct cove_container_mount *mounts;
	size_t n_mounts;
};

/* exec.c */
int proc_start(struct cove_exec_host *host, const struct proc_spec *spec, struct cove_proc **out,
	       struct cove_error **err);
/* Kill it (the sandbox ends, its exec times out). */
void proc_kill(struct cove_proc *p);
/* Finish its readers and waiters with code/message and free it (it must have exited, or be killed with the
 * runtime's teardown). */
void proc_free(struct cove_proc *p, int code, const char *message);
void host_init(struct cove_exec_host *host, struct cove_sandboxes *sbx, const char *task_id,
	       struct cove_sandbox *sb, const char *cwd, char **envp);
/* Free every exec (killed first if running) and the host's strings. */
void host_release(struct cove_exec_host *host, int code, const char *message);
/* Free every exec only. */
void host_release_execs(struct cove_exec_host *host, int code, const char *message);
/* Resolve a command as execve needs it: the fs helper's well-known path, a path (relative to cwd), or a
 * name searched in envp's PATH. Caller frees. */
char *resolve_command(struct cove_sandboxes *sbx, const char *cmd, char *const *envp, const char *cwd,
		      struct cove_error **err);

/* sandbox.c: callbacks from exec.c */
void sandbox_main_exited(struct cove_sandbox *sb);
void sandbox_activity(struct cove_sandbox *sb);
/* A snapshot copy from or into its directory finished (sb->copies was raised when it started). */
void sandbox_copy_done(struct cove_sandbox *sb);

/* Environment lists (NULL-terminated arrays of "K=V"; set replaces an existing K). */
void env_set(char ***env, size_t *n, const char *key, const char *value);
/* Append the variables of secret_id (NOT_FOUND if it does not exist). */
int env_add_secret(struct cove_sandboxes *sbx, char ***env, size_t *n, const char *secret_id,
		   struct cove_error **err);
int env_add_sources(struct cove_sandboxes *sbx, char ***env, size_t *n, Modal__Client__SecretSource **src,
		    size_t n_src, struct cove_error **err);
void env_free(char **env);

/* snapshot.c */
/* Copy the tree at src to dst (which must not exist): directories, regular files and symlinks. Runs on a
 * worker thread; -1 + err on failure (dst may be partly written). */
int snapshot_copy_tree(const char *src, const char *dst, struct cove_error **err);
/* The directory of a snapshot image, or NULL if image_id is not one. Caller frees. */
char *snapshot_dir_of(struct cove_sandboxes *sbx, const char *image_id);

double cove_sandbox_now(void);

#endif
