/* The system-call filter every isolated container runs under, as data (so an OCI config writer can emit the same
 * policy as JSON) and as a loader for cove-container (libseccomp).
 *
 * The policy is Docker's default profile (moby/profiles/seccomp/default.json) seen from a container without
 * CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_SYS_TIME, CAP_SYS_BOOT, CAP_SYSLOG and the like: every system
 * call that profile leaves out for such a container fails here too, with EPERM, and so do the namespace flags of
 * clone(2). clone3(2) fails with ENOSYS (its flags live in memory a filter cannot read), so libc falls back to
 * clone(2), whose flags it can. Docker allows the rest by listing them; here the rest is allowed by default, and
 * system calls of other ABIs (i386, x32) kill the process, which Docker allows: see docs/runtime.md. */
#ifndef COVE_RUNTIME_SECCOMP_H
#define COVE_RUNTIME_SECCOMP_H

#include <stddef.h>

struct cove_seccomp_rule {
	const char *syscall; /* its name, as libseccomp and the OCI runtime spec spell it */
	int errno_value;     /* what it fails with */
	const char *why;     /* the capability or reason Docker's profile ties it to */
};

/* The refused system calls (a static table; *n gets its length). */
const struct cove_seccomp_rule *cove_seccomp_rules(size_t *n);

/* The clone(2) flags that make namespaces; clone with any of them fails with EPERM. */
unsigned long cove_seccomp_clone_ns_flags(void);

/* Load the filter into the calling thread (and what it execs). no_new_privs must be set first, or the caller
 * must hold CAP_SYS_ADMIN. 0, or -errno (the message, for the setup report, in msg). */
int cove_seccomp_load(char *msg, size_t msg_len);

#endif
