/* The containers' system-call filter (see seccomp.h for where the policy comes from). */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>

#include "runtime/seccomp.h"

/* Grouped as Docker's default profile groups them: what it allows only with a capability a container here does
 * not hold, and what it never allows. */
static const struct cove_seccomp_rule rules[] = {
	/* CAP_SYS_ADMIN */
	{"bpf", EPERM, "CAP_SYS_ADMIN"},
	{"fanotify_init", EPERM, "CAP_SYS_ADMIN"},
	{"fsconfig", EPERM, "CAP_SYS_ADMIN"},
	{"fsmount", EPERM, "CAP_SYS_ADMIN"},
	{"fsopen", EPERM, "CAP_SYS_ADMIN"},
	{"fspick", EPERM, "CAP_SYS_ADMIN"},
	{"lookup_dcookie", EPERM, "CAP_SYS_ADMIN"},
	{"mount", EPERM, "CAP_SYS_ADMIN"},
	{"mount_setattr", EPERM, "CAP_SYS_ADMIN"},
	{"move_mount", EPERM, "CAP_SYS_ADMIN"},
	{"name_to_handle_at", EPERM, "CAP_SYS_ADMIN"},
	{"open_tree", EPERM, "CAP_SYS_ADMIN"},
	{"perf_event_open", EPERM, "CAP_SYS_ADMIN"},
	{"quotactl", EPERM, "CAP_SYS_ADMIN"},
	{"quotactl_fd", EPERM, "CAP_SYS_ADMIN"},
	{"setdomainname", EPERM, "CAP_SYS_ADMIN"},
	{"sethostname", EPERM, "CAP_SYS_ADMIN"},
	{"setns", EPERM, "CAP_SYS_ADMIN"},
	{"syslog", EPERM, "CAP_SYS_ADMIN"},
	{"umount", EPERM, "CAP_SYS_ADMIN"},
	{"umount2", EPERM, "CAP_SYS_ADMIN"},
	{"unshare", EPERM, "CAP_SYS_ADMIN"},
	/* CAP_SYS_BOOT, CAP_SYS_MODULE, CAP_SYS_PACCT, CAP_SYS_RAWIO, CAP_SYS_TIME, CAP_SYS_TTY_CONFIG */
	{"reboot", EPERM, "CAP_SYS_BOOT"},
	{"kexec_load", EPERM, "CAP_SYS_BOOT"},
	{"kexec_file_load", EPERM, "CAP_SYS_BOOT"},
	{"delete_module", EPERM, "CAP_SYS_MODULE"},
	{"init_module", EPERM, "CAP_SYS_MODULE"},
	{"finit_module", EPERM, "CAP_SYS_MODULE"},
	{"acct", EPERM, "CAP_SYS_PACCT"},
	{"iopl", EPERM, "CAP_SYS_RAWIO"},
	{"ioperm", EPERM, "CAP_SYS_RAWIO"},
	{"settimeofday", EPERM, "CAP_SYS_TIME"},
	{"clock_settime", EPERM, "CAP_SYS_TIME"},
	{"clock_adjtime", EPERM, "CAP_SYS_TIME"},
	{"adjtimex", EPERM, "CAP_SYS_TIME"},
	{"vhangup", EPERM, "CAP_SYS_TTY_CONFIG"},
	/* CAP_SYS_PTRACE: no tracing, and no reading or writing another process's memory. */
	{"ptrace", EPERM, "CAP_SYS_PTRACE"},
	{"kcmp", EPERM, "CAP_SYS_PTRACE"},
	{"pidfd_getfd", EPERM, "CAP_SYS_PTRACE"},
	{"process_madvise", EPERM, "CAP_SYS_PTRACE"},
	{"process_vm_readv", EPERM, "CAP_SYS_PTRACE"},
	{"process_vm_writev", EPERM, "CAP_SYS_PTRACE"},
	/* CAP_SYS_NICE: NUMA placement of other processes' memory */
	{"move_pages", EPERM, "CAP_SYS_NICE"},
	{"migrate_pages", EPERM, "CAP_SYS_NICE"},
	/* CAP_DAC_READ_SEARCH: file handles reach files outside the container's root */
	{"open_by_handle_at", EPERM, "CAP_DAC_READ_SEARCH"},
	/* Never allowed by Docker's profile */
	{"add_key", EPERM, "kernel keyrings are not namespaced"},
	{"keyctl", EPERM, "kernel keyrings are not namespaced"},
	{"request_key", EPERM, "kernel keyrings are not namespaced"},
	{"userfaultfd", EPERM, "a tool of kernel exploits"},
	{"io_uring_setup", EPERM, "io_uring bypasses this filter"},
	{"io_uring_enter", EPERM, "io_uring bypasses this filter"},
	{"io_uring_register", EPERM, "io_uring bypasses this filter"},
	{"pivot_root", EPERM, "changes the root"},
	{"swapon", EPERM, "host swap"},
	{"swapoff", EPERM, "host swap"},
	{"nfsservctl", EPERM, "obsolete"},
	{"uselib", EPERM, "obsolete"},
	{"ustat", EPERM, "obsolete"},
	{"sysfs", EPERM, "obsolete"},
	{"_sysctl", EPERM, "obsolete"},
	{"create_module", EPERM, "obsolete"},
	{"get_kernel_syms", EPERM, "obsolete"},
	{"query_module", EPERM, "obsolete"},
	{"vm86", EPERM, "obsolete"},
	{"vm86old", EPERM, "obsolete"},
	{"clone3", ENOSYS, "its flags cannot be filtered; libc falls back to clone"},
};

const struct cove_seccomp_rule *
cove_seccomp_rules(size_t *n)
{
	*n = sizeof(rules) / sizeof(rules[0]);
	return rules;
}

unsigned long
cove_seccomp_clone_ns_flags(void)
{
	return CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;
}

int
cove_seccomp_load(char *msg, size_t msg_len)
{
	/* Other ABIs (i386 through int 0x80, x32) are not in the filter: their calls kill the process. */
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int r = 0;
	if (ctx == NULL) {
		snprintf(msg, msg_len, "seccomp_init failed");
		return -ENOMEM;
	}
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (r < 0) {
		snprintf(msg, msg_len, "seccomp: refuse other ABIs: %s", strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		int nr = seccomp_syscall_resolve_name(rules[i].syscall);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not a system call of this architecture */
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((unsigned)rules[i].errno_value), nr, 0);
		if (r < 0) {
			snprintf(msg, msg_len, "seccomp: refuse %s: %s", rules[i].syscall, strerror(-r));
			goto out;
		}
	}
	/* clone(2) with a namespace flag: one rule per flag (a rule compares an argument once). */
	unsigned long ns = cove_seccomp_clone_ns_flags();
	for (int bit = 0; bit < 64; bit++) {
		unsigned long f = 1UL << bit;
		if (!(ns & f))
			continue;
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
		if (r < 0) {
			snprintf(msg, msg_len, "seccomp: clone flag %#lx: %s", f, strerror(-r));
			goto out;
		}
	}
	r = seccomp_load(ctx);
	if (r < 0)
		snprintf(msg, msg_len, "seccomp: load the filter: %s", strerror(-r));
out:
	seccomp_release(ctx);
	return r < 0 ? r : 0;
}
