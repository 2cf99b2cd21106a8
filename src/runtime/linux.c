/* The linux runtime: the process runtime's plumbing (pipes, terminals, reaping, stopping), with each container
 * started through the cove-container program (container_init.c), which makes its namespaces and root
 * filesystem. This file owns the unprivileged half: the program's command line, the container's cgroups, and
 * the out-of-memory verdict when it exits. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/cgroup.h"
#include "runtime/runtime.h"
#include "util/alloc.h"
#include "util/log.h"

struct linux_rt {
	struct cove_runtime *inner; /* the process runtime */
	char *helper;
};

/* What the linux runtime hands out: the process runtime's container, and the cgroup around it. */
struct cove_container {
	struct linux_rt *l;
	struct cove_container *inner;
	struct cove_cgroup *cg;
	void *owner;
	struct cove_runtime_callbacks cb;
};

static void
on_output(void *arg, int fd, const char *data, size_t len)
{
	struct cove_container *c = arg;
	c->cb.on_output(c->owner, fd, data, len);
}

static void
on_exit_cb(void *arg, int status)
{
	struct cove_container *c = arg;
	if (c->cg && status != 0 && cove_cgroup_oom_killed(c->cg))
		status = COVE_EXIT_OOM;
	cove_cgroup_destroy(c->cg);
	void *owner = c->owner;
	void (*cb)(void *, int) = c->cb.on_exit;
	free(c);
	cb(owner, status);
}

/* argv for cove-container: options, then "--" and the payload's argv. */
struct argv_buf {
	char **v;
	size_t n, cap;
};

static void
push(struct argv_buf *a, const char *s)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 32;
		a->v = xrealloc(a->v, a->cap * sizeof(char *));
	}
	a->v[a->n++] = xstrdup(s);
	a->v[a->n] = NULL;
}

static void
argv_free(struct argv_buf *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

static int
linux_start(struct cove_runtime *rt, const struct cove_container_spec *spec, void *owner, struct cove_container **out,
	    struct cove_error **err)
{
	struct linux_rt *l = rt->impl;
	const struct cove_container *join = spec->join;
	struct cove_container_spec inner = *spec;
	inner.join = join ? join->inner : NULL;
	struct cove_container *c = xcalloc(1, sizeof(*c));
	c->l = l;
	c->owner = owner;
	c->cb = spec->cb ? *spec->cb : rt->cb;
	static const struct cove_runtime_callbacks wrap = {.on_output = on_output, .on_exit = on_exit_cb};
	inner.cb = &wrap;
	if (spec->rootfs == NULL && join == NULL) {
		/* Nothing to isolate (a caller that runs a host program on purpose). */
		if (l->inner->ops->start(l->inner, &inner, c, &c->inner, err) < 0) {
			free(c);
			return -1;
		}
		*out = c;
		return 0;
	}
	struct argv_buf a = {0};
	push(&a, l->helper);
	push(&a, "--report-fd");
	push(&a, "3");
	if (spec->pty)
		push(&a, "--pty");
	if (join) {
		/* A process in a running container: its namespaces and its cgroups. */
		char pid[32];
		snprintf(pid, sizeof(pid), "%d", (int)l->inner->ops->pid(join->inner));
		push(&a, "--join");
		push(&a, pid);
		size_t n = 0;
		const char *const *procs = join->cg ? cove_cgroup_procs(join->cg, &n) : NULL;
		for (size_t i = 0; i < n; i++) {
			push(&a, "--cgroup");
			push(&a, procs[i]);
		}
	} else {
		const struct cove_container_rootfs *fs = spec->rootfs;
		if (cove_cgroup_create(spec->id, spec->limits, &c->cg, err) < 0) {
			argv_free(&a);
			free(c);
			return -1;
		}
		size_t n = 0;
		const char *const *procs = cove_cgroup_procs(c->cg, &n);
		for (size_t i = 0; i < n; i++) {
			push(&a, "--cgroup");
			push(&a, procs[i]);
		}
		push(&a, "--layers-dir");
		push(&a, fs->layers_dir);
		for (size_t i = 0; i < fs->n_layers; i++) {
			push(&a, "--layer");
			push(&a, fs->layers[i]);
		}
		push(&a, "--scratch");
		push(&a, fs->scratch);
		push(&a, "--hostname");
		push(&a, fs->hostname ? fs->hostname : spec->id);
		if (fs->block_network) {
			push(&a, "--net");
			push(&a, "none");
		}
		if (fs->user && *fs->user) {
			push(&a, "--user");
			push(&a, fs->user);
		}
		if (spec->limits && spec->limits->disk_mb) {
			char mb[32];
			snprintf(mb, sizeof(mb), "%u", spec->limits->disk_mb);
			push(&a, "--disk-mb");
			push(&a, mb);
		}
		for (size_t i = 0; i < spec->n_mounts; i++) {
			push(&a, spec->mounts[i].read_only ? "--bind-ro" : "--bind");
			push(&a, spec->mounts[i].source);
			push(&a, spec->mounts[i].target);
		}
	}
	if (spec->workdir) {
		push(&a, "--workdir");
		push(&a, spec->workdir);
	}
	push(&a, "--");
	for (size_t i = 0; spec->argv[i]; i++)
		push(&a, spec->argv[i]);
	inner.argv = a.v;
	inner.mounts = NULL;
	inner.n_mounts = 0;
	inner.setup_report = 1;
	/* The host directory the program starts in; the payload's own workdir was passed above. */
	inner.workdir = "/";
	int r = l->inner->ops->start(l->inner, &inner, c, &c->inner, err);
	argv_free(&a);
	if (r < 0) {
		cove_cgroup_destroy(c->cg);
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

static void
linux_stop(struct cove_runtime *rt, struct cove_container *c, int graceful, int grace_ms)
{
	struct linux_rt *l = rt->impl;
	l->inner->ops->stop(l->inner, c->inner, graceful, grace_ms);
}

static pid_t
linux_pid(const struct cove_container *c)
{
	/* The shim: in the host's PID namespace, and in the container's other namespaces. */
	return c->l->inner->ops->pid(c->inner);
}

static void
linux_set_reading(struct cove_runtime *rt, struct cove_container *c, int fd, int reading)
{
	struct linux_rt *l = rt->impl;
	l->inner->ops->set_reading(l->inner, c->inner, fd, reading);
}

static void
linux_free(struct cove_runtime *rt)
{
	struct linux_rt *l = rt->impl;
	l->inner->ops->free(l->inner);
	free(l->helper);
	free(l);
	free(rt);
}

static const struct cove_runtime_ops linux_ops = {
	.name = "linux",
	.start = linux_start,
	.stop = linux_stop,
	.pid = linux_pid,
	.set_reading = linux_set_reading,
	.free = linux_free,
};

/* Can this host make the namespaces and mounts a container needs? Tried in a throwaway child. */
static int
probe(struct cove_error **err)
{
	if (geteuid() != 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "the linux runtime needs root (Cove runs as uid %d)",
				      (int)geteuid());
	if (cove_cgroup_kind() == NULL)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "the linux runtime needs cgroups with the cpu and memory controllers at /sys/fs/cgroup");
	FILE *f = fopen("/proc/filesystems", "re");
	char line[128];
	int overlay = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "\toverlay\n"))
			overlay = 1;
	if (f)
		fclose(f);
	if (!overlay)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "the linux runtime needs overlayfs (modprobe overlay)");
	pid_t pid = fork();
	if (pid < 0)
		return cove_error_set_errno(err, errno, "fork");
	if (pid == 0)
		_exit(unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET) < 0 ? 1 : 0);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "the linux runtime needs mount, PID, UTS, IPC and network namespaces, and this host "
				      "refuses them");
	return 0;
}

int
cove_runtime_linux_check(const char *helper, struct cove_error **err)
{
	if (probe(err) < 0)
		return -1;
	if (access(helper, X_OK) < 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "the linux runtime needs %s: %s", helper, strerror(errno));
	return 0;
}

struct cove_runtime *
cove_runtime_linux_new(struct event_base *base, const struct cove_runtime_callbacks *cb, const char *helper,
		       struct cove_error **err)
{
	if (probe(err) < 0)
		return NULL;
	if (access(helper, X_OK) < 0) {
		cove_error_set(err, COVE_FAILED_PRECONDITION, "the linux runtime needs %s: %s", helper, strerror(errno));
		return NULL;
	}
	struct cove_runtime *inner = cove_runtime_process_new(base, cb, err);
	if (inner == NULL)
		return NULL;
	cove_cgroup_sweep();
	struct cove_runtime *rt = xcalloc(1, sizeof(*rt));
	struct linux_rt *l = xcalloc(1, sizeof(*l));
	l->inner = inner;
	l->helper = xstrdup(helper);
	rt->ops = &linux_ops;
	rt->base = base;
	rt->cb = *cb;
	rt->impl = l;
	return rt;
}

const char *
cove_runtime_linux_cgroup_kind(const struct cove_runtime *rt)
{
	(void)rt;
	const char *k = cove_cgroup_kind();
	return k ? k : "none";
}

size_t
cove_runtime_live(struct cove_runtime *rt)
{
	if (rt->ops->live)
		return rt->ops->live(rt);
	if (strcmp(rt->ops->name, "linux") == 0)
		return cove_runtime_process_live(((struct linux_rt *)rt->impl)->inner);
	return cove_runtime_process_live(rt);
}
