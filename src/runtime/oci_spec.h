/* A container described as an OCI bundle's config.json (runtime-spec v1.0.2), for an OCI runtime (runsc, runc)
 * to run: the process, its root filesystem and mounts, namespaces, resources, and the defaults Docker and
 * `runc spec` give every container (capabilities, masked and read-only paths, rlimits, no_new_privs).
 *
 * The writer only writes: the caller resolves users to ids and makes the root filesystem. */
#ifndef COVE_RUNTIME_OCI_SPEC_H
#define COVE_RUNTIME_OCI_SPEC_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "runtime/runtime.h"
#include "util/error.h"

#define COVE_OCI_VERSION "1.0.2"

struct cove_oci_process {
	char *const *argv; /* argv[0] as the runtime should find it (absolute, or looked up in env's PATH) */
	char *const *envp; /* the complete environment, NAME=value */
	const char *cwd;   /* absolute path in the container (NULL: "/") */
	uid_t uid;
	gid_t gid;
	int terminal;                /* a pseudo-terminal is the process's stdio */
	unsigned short rows, cols;   /* its size (0: the runtime's default) */
};

struct cove_oci_spec {
	struct cove_oci_process process;
	const char *root;     /* the root filesystem's host path */
	const char *hostname; /* NULL: none set */
	/* Host directories bound into the container, after the default mounts, with nosuid and nodev. */
	const struct cove_container_mount *mounts;
	size_t n_mounts;
	int net_host;        /* share the host's network namespace (else a new, empty one, or net_path's) */
	const char *net_path; /* without net_host: the network namespace to join (a path), or NULL */
	const struct cove_container_limits *limits; /* NULL: none */
	unsigned pids_max;   /* 0: no pids limit */
	const char *cgroups_path; /* linux.cgroupsPath (NULL: the runtime's choice) */
	/* A seccomp allowlist (everything else fails with EPERM); NULL: no seccomp section. */
	const char *const *seccomp_allow;
	size_t n_seccomp_allow;
};

/* Write config.json to f. INVALID_ARGUMENT when the description is not one an OCI runtime accepts (a relative
 * path, an empty argv, a mount target that is not absolute). */
int cove_oci_write_config(FILE *f, const struct cove_oci_spec *spec, struct cove_error **err);
/* The "process" object alone (`runsc exec --process`, `runc exec --process`). */
int cove_oci_write_process(FILE *f, const struct cove_oci_process *p, struct cove_error **err);
/* A linux.seccomp object: the listed syscalls are allowed on x86_64 (and its 32-bit and x32 ABIs), every other
 * fails with errno (EPERM when 0). Kept separate so that one policy table can feed every runtime. */
void cove_oci_write_seccomp(FILE *f, const char *const *allow, size_t n, int errno_ret);
/* Write config.json as dir/config.json (atomically: a temporary file renamed). */
int cove_oci_write_bundle(const char *dir, const struct cove_oci_spec *spec, struct cove_error **err);

/* The capabilities every container gets: Docker's default set without CAP_NET_RAW (moby's
 * oci/caps/defaults.go), NULL-terminated. */
extern const char *const cove_oci_default_caps[];

#endif
