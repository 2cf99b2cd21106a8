/* Control groups for containers: cpu and memory limits, and the out-of-memory verdict. Works with the unified
 * hierarchy (v2) or the legacy per-controller one (v1), whichever the host mounts at /sys/fs/cgroup. Each
 * container gets `cove/<id>` under each hierarchy it uses. */
#ifndef COVE_RUNTIME_CGROUP_H
#define COVE_RUNTIME_CGROUP_H

#include "runtime/runtime.h"
#include "util/error.h"

struct cove_cgroup;

/* "v1", "v2", or NULL when no usable hierarchy is mounted. */
const char *cove_cgroup_kind(void);

/* Create the container's groups and apply the limits (NULL: none). The files a process writes "0" to in order
 * to join them are listed in procs (n_procs entries, owned by the group). FAILED_PRECONDITION naming the file
 * when a group cannot be made or a limit cannot be set. */
int cove_cgroup_create(const char *id, const struct cove_container_limits *limits, struct cove_cgroup **out,
		       struct cove_error **err);
const char *const *cove_cgroup_procs(const struct cove_cgroup *cg, size_t *n_procs);
/* The group to join once the container's root filesystem is assembled (v1's devices group, which would refuse
 * the loop device of an ephemeral disk), or NULL. */
const char *cove_cgroup_late_procs(const struct cove_cgroup *cg);

/* Limits for containers that set none (0: none): at most pids_max processes and threads, and memory_mb_max MiB
 * for a container whose memory limit is unset. Process-wide; `cove serve` sets them at start. */
#define COVE_CGROUP_DEFAULT_PIDS_MAX 4096
void cove_cgroup_set_defaults(unsigned pids_max, unsigned memory_mb_max);
unsigned cove_cgroup_default_pids_max(void);
unsigned cove_cgroup_default_memory_mb_max(void);
/* 1 if the kernel killed a process of the group for exceeding its memory limit. */
int cove_cgroup_oom_killed(const struct cove_cgroup *cg);
/* Remove containers' groups that a Cove which died left behind: empty ones, untouched for a minute (another
 * Cove may be creating one right now). */
void cove_cgroup_sweep(void);
/* Remove the groups (their processes have ended) and free. NULL is a no-op. */
void cove_cgroup_destroy(struct cove_cgroup *cg);

#endif
