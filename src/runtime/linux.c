/* The linux runtime: the process runtime's plumbing (pipes, terminals, reaping, stopping), with each container
 * started through the cove-container program (container_init.c), which makes its namespaces and root
 * filesystem. This file owns the unprivileged half: the program's command line, the container's cgroups, and
 * the out-of-memory verdict when it exits. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "runtime/cgroup.h"
#include "runtime/idmap.h"
#include "runtime/runtime.h"
#include "util/alloc.h"
#include "util/log.h"

/* A network made ahead of time (cove-container --net-holder): a process holding a network namespace that pasta
 * has configured, given to one container and killed when that container ends. */
struct holder {
	struct linux_rt *l;
	struct cove_container *inner; /* the holder process, in the process runtime */
	int stdin_fd;                 /* closing it ends the holder */
	int ready;                    /* it printed "ready" */
	int taken;                    /* given out: whoever took it ends it (holder_end) */
	int dead;                     /* ended while taken: freed by holder_end */
	int ending;                   /* told to end: never given out again */
	void *api;                    /* Cove's API listening inside it (cove_net_api_hooks), or NULL */
	struct holder *next;
};

struct linux_rt {
	struct cove_runtime *inner; /* the process runtime */
	char *helper;
	char *pasta;   /* NULL: containers share the host's network */
	char **forward; /* ports of the host's loopback that containers reach (decimal) */
	size_t n_forward;
	struct cove_net_api_hooks api; /* port 0: none */
	struct holder *holders; /* starting, ready and taken */
	size_t n_holders;
	size_t pool;     /* how many ready or starting holders to keep (0: none) */
	int failures;    /* holders in a row that ended without getting ready */
};

/* What the linux runtime hands out: the process runtime's container, and the cgroup around it. */
struct cove_container {
	struct linux_rt *l;
	struct cove_container *inner;
	struct cove_cgroup *cg;
	struct holder *net; /* the network it runs in, or NULL */
	long userns_slot;   /* its slot of COVE_USERNS_SLOTS (its uid range), or -1 */
	void *owner;
	struct cove_runtime_callbacks cb;
};

static int userns_on = 1;

/* A port of the host's 127.0.0.1 free now (the kernel's pick), for pasta to listen on; 0 + errno if none. */
static unsigned short
free_loopback_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	unsigned short port = 0;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	int saved = errno;
	close(fd);
	errno = saved;
	return port;
}
/* Slots of COVE_USERNS_SLOTS in use by this server's running containers, and where the next search starts (at
 * random the first time, so that two servers on one host seldom hand out the same ranges). */
static uint64_t userns_used[COVE_USERNS_SLOTS / 64];
static unsigned userns_next;
static int userns_seeded;

static long
userns_slot_take(void)
{
	if (!userns_seeded) {
		unsigned r = 0;
		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (unsigned)getpid() * 2654435761u;
		userns_next = r % COVE_USERNS_SLOTS;
		userns_seeded = 1;
	}
	for (unsigned i = 0; i < COVE_USERNS_SLOTS; i++) {
		unsigned slot = (userns_next + i) % COVE_USERNS_SLOTS;
		if (!(userns_used[slot / 64] & (1ULL << (slot % 64)))) {
			userns_used[slot / 64] |= 1ULL << (slot % 64);
			userns_next = slot + 1;
			return slot;
		}
	}
	return -1;
}

static void
userns_slot_release(long slot)
{
	if (slot >= 0)
		userns_used[slot / 64] &= ~(1ULL << (slot % 64));
}

void
cove_runtime_linux_set_userns(int on)
{
	userns_on = on;
}

/* How many networks to keep ready (COVE_NET_POOL overrides): each costs a pasta process (about 30 MiB). */
#define NET_POOL_DEFAULT 2

static void pool_fill(struct linux_rt *l);

static void
holder_output(void *arg, int fd, const char *data, size_t len)
{
	struct holder *h = arg;
	struct linux_rt *l = h->l;
	if (fd == 1 && memmem(data, len, "ready", 5) && !h->ready && !h->ending) {
		if (l->api.port > 0) {
			/* Cove's API inside the network itself, so a container's calls need no hop through pasta. */
			char path[64];
			snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)l->inner->ops->pid(h->inner));
			int ns = open(path, O_RDONLY | O_CLOEXEC);
			h->api = ns >= 0 ? l->api.open(l->api.ctx, ns) : NULL;
			if (ns >= 0)
				close(ns);
			if (h->api == NULL) {
				h->ending = 1; /* a network whose containers could not reach Cove: never handed out */
				l->inner->ops->stop(l->inner, h->inner, 0, 0);
				if (++l->failures == 3) {
					log_warn("container networks: Cove's API could not listen in three in a row; containers "
						 "now make their network as they start");
					l->pool = 0;
				}
				return;
			}
		}
		h->ready = 1;
		l->failures = 0;
	}
}

static void
holder_exit(void *arg, int status)
{
	struct holder *h = arg;
	struct linux_rt *l = h->l;
	for (struct holder **pp = &l->holders; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	l->n_holders--;
	if (h->api)
		l->api.close(l->api.ctx, h->api);
	h->api = NULL;
	if (h->stdin_fd >= 0)
		close(h->stdin_fd);
	h->stdin_fd = -1;
	if (h->taken) {
		h->dead = 1; /* whoever took it still points at it */
		pool_fill(l);
		return;
	}
	if (!h->ready && !h->ending && ++l->failures == 3) {
		log_warn("container networks: three in a row failed to start (the last exited with %d); containers now "
			 "make their network as they start",
			 status);
		l->pool = 0;
	}
	free(h);
	pool_fill(l);
}

/* A taken network is done with: its holder ends (and with it pasta and the namespace), never reused. */
static void
holder_end(struct holder *h)
{
	if (h->dead) {
		free(h);
		return;
	}
	h->taken = 0;
	h->ending = 1;
	h->l->inner->ops->stop(h->l->inner, h->inner, 0, 0); /* holder_exit frees it */
}

static void
holder_spawn(struct linux_rt *l)
{
	static const struct cove_runtime_callbacks cb = {.on_output = holder_output, .on_exit = holder_exit};
	struct holder *h = xcalloc(1, sizeof(*h));
	h->l = l;
	h->stdin_fd = -1;
	const char *argv[8 + 2 * 16] = {l->helper, "--net-holder", "--pasta", l->pasta};
	size_t a = 4;
	for (size_t i = 0; i < l->n_forward && i < 16; i++) {
		if (l->api.port > 0 && atoi(l->forward[i]) == l->api.port)
			continue; /* Cove listens inside the namespace itself (holder_output) */
		argv[a++] = "--forward";
		argv[a++] = l->forward[i];
	}
	char *const envp[] = {NULL};
	struct cove_container_spec spec = {
		.id = "network",
		.workdir = "/",
		.argv = (char *const *)argv,
		.envp = envp,
		.cb = &cb,
		.stdin_fd = &h->stdin_fd,
	};
	struct cove_error *err = NULL;
	if (l->inner->ops->start(l->inner, &spec, h, &h->inner, &err) < 0) {
		log_warn("container networks: %s", err->msg);
		cove_error_free(err);
		free(h);
		l->pool = 0;
		return;
	}
	h->next = l->holders;
	l->holders = h;
	l->n_holders++;
}

/* Keep l->pool networks ready or on their way. */
static void
pool_fill(struct linux_rt *l)
{
	size_t spare = 0;
	for (struct holder *h = l->holders; h; h = h->next)
		spare += !h->taken && !h->ending;
	while (l->pasta && spare < l->pool) {
		size_t before = l->n_holders;
		holder_spawn(l);
		if (l->n_holders == before)
			break;
		spare++;
	}
}

static struct holder *
pool_take(struct linux_rt *l)
{
	for (struct holder *h = l->holders; h; h = h->next)
		if (h->ready && !h->taken && !h->ending) {
			h->taken = 1;
			return h;
		}
	return NULL;
}

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
	if (c->net) /* its network goes with it: never handed to another container */
		holder_end(c->net);
	userns_slot_release(c->userns_slot);
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

/* --userns BASE for the range of slot. */
static void
push_userns(struct argv_buf *a, long slot)
{
	char base[16];
	snprintf(base, sizeof(base), "%u", COVE_USERNS_FIRST + (unsigned)slot * COVE_USERNS_IDS);
	push(a, "--userns");
	push(a, base);
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
	c->userns_slot = -1;
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
		if (join->userns_slot >= 0) /* it must be in that range's namespace */
			push_userns(&a, join->userns_slot);
		size_t n = 0;
		const char *const *procs = join->cg ? cove_cgroup_procs(join->cg, &n) : NULL;
		for (size_t i = 0; i < n; i++) {
			push(&a, "--cgroup");
			push(&a, procs[i]);
		}
		if (join->cg && cove_cgroup_late_procs(join->cg)) {
			push(&a, "--cgroup-late");
			push(&a, cove_cgroup_late_procs(join->cg));
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
		if (cove_cgroup_late_procs(c->cg)) {
			push(&a, "--cgroup-late");
			push(&a, cove_cgroup_late_procs(c->cg));
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
		} else if (l->pasta && fs->n_published_ports == 0 && (c->net = pool_take(l)) != NULL) {
			char pid[32];
			snprintf(pid, sizeof(pid), "%d", (int)l->inner->ops->pid(c->net->inner));
			push(&a, "--net-from");
			push(&a, pid);
		} else if (l->pasta) {
			log_debug("container %s: no network ready (%zu starting or held); it makes its own", spec->id,
				  l->n_holders);
			push(&a, "--net");
			push(&a, "private");
			push(&a, "--pasta");
			push(&a, l->pasta);
			for (size_t i = 0; i < l->n_forward; i++) {
				push(&a, "--forward");
				push(&a, l->forward[i]);
			}
			for (size_t i = 0; i < fs->n_published_ports; i++) {
				char port[16];
				unsigned short host = free_loopback_port();
				if (host == 0) {
					argv_free(&a);
					cove_cgroup_destroy(c->cg);
					free(c);
					return cove_error_set_errno(err, errno, "container %s: find a free port for its port %u",
								    spec->id, fs->published_ports[i]);
				}
				snprintf(port, sizeof(port), "%u:%u", host, fs->published_ports[i]);
				push(&a, "--publish");
				push(&a, port);
				if (fs->published_host_ports)
					fs->published_host_ports[i] = host;
			}
		}
		if (userns_on) {
			/* A range of ids of its own: no two running containers of this server share a host uid. */
			c->userns_slot = userns_slot_take();
			if (c->userns_slot < 0) {
				argv_free(&a);
				cove_cgroup_destroy(c->cg);
				free(c);
				return cove_error_set(err, COVE_RESOURCE_EXHAUSTED,
						      "container %s: all %u user-namespace id ranges are in use", spec->id,
						      COVE_USERNS_SLOTS);
			}
			push_userns(&a, c->userns_slot);
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
		if (c->net)
			holder_end(c->net);
		userns_slot_release(c->userns_slot);
		free(c);
		return -1;
	}
	if (c->net)
		pool_fill(l); /* the next container's network, while this one starts */
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
	l->inner->ops->free(l->inner); /* kills the holders too, without callbacks */
	for (struct holder *h = l->holders, *next; h; h = next) {
		next = h->next;
		if (h->stdin_fd >= 0)
			close(h->stdin_fd);
		free(h);
	}
	free(l->helper);
	free(l->pasta);
	for (size_t i = 0; i < l->n_forward; i++)
		free(l->forward[i]);
	free(l->forward);
	free(l);
	free(rt);
}

static struct cove_runtime *
linux_self(struct cove_runtime *rt)
{
	return rt;
}

static const struct cove_runtime_ops linux_ops = {
	.name = "linux",
	.start = linux_start,
	.stop = linux_stop,
	.pid = linux_pid,
	.set_reading = linux_set_reading,
	.linux_runtime = linux_self,
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

int
cove_runtime_linux_set_network(struct cove_runtime *rt, const char *pasta, const int *forward_ports,
			       size_t n_forward_ports, struct cove_error **err)
{
	rt = rt->ops->linux_runtime ? rt->ops->linux_runtime(rt) : NULL;
	if (rt == NULL)
		return 0;
	struct linux_rt *l = rt->impl;
	if (access(pasta, X_OK) < 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "%s: %s (install Debian's passt package): containers share the host's network", pasta,
				      strerror(errno));
	free(l->pasta);
	l->pasta = xstrdup(pasta);
	l->forward = xrealloc(l->forward, (l->n_forward + n_forward_ports) * sizeof(char *));
	for (size_t i = 0; i < n_forward_ports; i++)
		if (forward_ports[i] > 0)
			l->forward[l->n_forward++] = xasprintf("%d", forward_ports[i]);
	const char *pool = getenv("COVE_NET_POOL");
	l->pool = pool && *pool ? strtoul(pool, NULL, 10) : NET_POOL_DEFAULT;
	pool_fill(l);
	return 0;
}

void
cove_runtime_linux_set_api_hooks(struct cove_runtime *rt, const struct cove_net_api_hooks *hooks)
{
	rt = rt->ops->linux_runtime ? rt->ops->linux_runtime(rt) : NULL;
	if (rt == NULL)
		return;
	struct linux_rt *l = rt->impl;
	if (hooks == NULL) {
		/* Whoever served the API is going: let go of every listener first. */
		for (struct holder *h = l->holders; h; h = h->next)
			if (h->api) {
				l->api.close(l->api.ctx, h->api);
				h->api = NULL;
			}
		memset(&l->api, 0, sizeof(l->api));
		return;
	}
	l->api = *hooks;
}

void
cove_runtime_linux_stop_pool(struct cove_runtime *rt)
{
	rt = rt->ops->linux_runtime ? rt->ops->linux_runtime(rt) : NULL;
	if (rt == NULL)
		return;
	struct linux_rt *l = rt->impl;
	l->pool = 0;
	for (struct holder *h = l->holders; h; h = h->next)
		if (!h->taken && !h->ending) {
			h->ending = 1;
			l->inner->ops->stop(l->inner, h->inner, 0, 0);
		}
}

struct cove_net_lease *
cove_runtime_linux_net_take(struct cove_runtime *rt, char **ns_path)
{
	rt = rt->ops->linux_runtime ? rt->ops->linux_runtime(rt) : NULL;
	if (rt == NULL)
		return NULL;
	struct linux_rt *l = rt->impl;
	struct holder *h = pool_take(l);
	if (h == NULL)
		return NULL;
	*ns_path = xasprintf("/proc/%d/ns/net", (int)l->inner->ops->pid(h->inner));
	pool_fill(l);
	return (struct cove_net_lease *)h;
}

void
cove_runtime_linux_net_release(struct cove_net_lease *lease)
{
	if (lease)
		holder_end((struct holder *)lease);
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
	if (strcmp(rt->ops->name, "linux") == 0) {
		struct linux_rt *l = rt->impl;
		return cove_runtime_process_live(l->inner) - l->n_holders; /* networks held ready are no containers */
	}
	return cove_runtime_process_live(rt);
}
