/* The process runtime: each container is a child process in its own process group. A container with mounts
 * (volumes) also gets a mount namespace of its own, made in the child between fork and exec: the bind mounts
 * are visible to it and its children only. */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "util/alloc.h"
#include "util/log.h"

struct cove_container {
	struct cove_runtime *rt;
	struct cove_container *next, *prev;
	char *id;
	void *owner;
	pid_t pid;
	int exited; /* waitpid reaped it */
	int status;
	struct bufferevent *out[2]; /* stdout, stderr pipes; NULL once at EOF */
	struct event *kill_timer;
};

struct process_rt {
	struct event *sigchld;
	struct cove_container *head;
	size_t live;
};

static void
maybe_finish(struct cove_container *c)
{
	/* Report the exit only when the process is reaped and both pipes are drained, so the last lines of
	 * output are never lost behind the exit. */
	if (!c->exited || c->out[0] || c->out[1])
		return;
	struct cove_runtime *rt = c->rt;
	struct process_rt *p = rt->impl;
	if (c->prev)
		c->prev->next = c->next;
	else
		p->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->live--;
	if (c->kill_timer)
		event_free(c->kill_timer);
	int status = c->status;
	void *owner = c->owner;
	free(c->id);
	free(c);
	rt->cb.on_exit(owner, status);
}

static void
pipe_read(struct bufferevent *bev, void *arg)
{
	struct cove_container *c = arg;
	int fd = bev == c->out[0] ? 1 : 2;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	if (len == 0)
		return;
	char *data = (char *)evbuffer_pullup(in, (ssize_t)len);
	c->rt->cb.on_output(c->owner, fd, data, len);
	evbuffer_drain(in, len);
}

static void
pipe_event(struct bufferevent *bev, short what, void *arg)
{
	struct cove_container *c = arg;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	pipe_read(bev, arg);
	int i = bev == c->out[0] ? 0 : 1;
	bufferevent_free(bev);
	c->out[i] = NULL;
	maybe_finish(c);
}

static void
reap(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	struct cove_runtime *rt = arg;
	struct process_rt *p = rt->impl;
	for (;;) {
		int status = 0;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			break;
		for (struct cove_container *c = p->head; c; c = c->next) {
			if (c->pid != pid || c->exited)
				continue;
			c->exited = 1;
			c->status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
			/* Kill what the container left behind in its process group. */
			kill(-pid, SIGKILL);
			maybe_finish(c);
			break;
		}
	}
}

/* What a child reports through its error pipe when setting up its mounts fails before exec. */
struct setup_failure {
	int step; /* enum setup_step */
	int err;  /* errno */
	int index; /* the mount */
};

enum setup_step { STEP_UNSHARE = 1, STEP_PRIVATE, STEP_MKDIR, STEP_BIND, STEP_READONLY };

/* mkdir -p in the child: no allocation (async-signal-safe calls only). */
static int
child_mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		buf[i] = c;
	}
	return 0;
}

static void
child_fail(int fd, int step, int index)
{
	struct setup_failure f = {.step = step, .err = errno, .index = index};
	ssize_t w = write(fd, &f, sizeof(f));
	(void)w;
	_exit(125);
}

/* In the child: a private mount namespace with the spec's bind mounts. Returns only on success. */
static void
child_mounts(const struct cove_container_spec *spec, int errfd)
{
	if (unshare(CLONE_NEWNS) < 0)
		child_fail(errfd, STEP_UNSHARE, -1);
	/* Nothing mounted here may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail(errfd, STEP_PRIVATE, -1);
	for (size_t i = 0; i < spec->n_mounts; i++) {
		const struct cove_container_mount *m = &spec->mounts[i];
		if (child_mkdirs(m->target) < 0)
			child_fail(errfd, STEP_MKDIR, (int)i);
		if (mount(m->source, m->target, NULL, MS_BIND | MS_REC, NULL) < 0)
			child_fail(errfd, STEP_BIND, (int)i);
		if (m->read_only &&
		    mount(NULL, m->target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
			child_fail(errfd, STEP_READONLY, (int)i);
	}
}

/* Wait for the child to exec (the pipe closes) or to report a failed mount (and reap it then). */
static int
await_setup(const struct cove_container_spec *spec, pid_t pid, int fd, struct cove_error **err)
{
	struct setup_failure f;
	ssize_t n;
	do
		n = read(fd, &f, sizeof(f));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(f))
		return 0;
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	const struct cove_container_mount *m = f.index >= 0 && (size_t)f.index < spec->n_mounts ? &spec->mounts[f.index]
											     : NULL;
	const char *hint = f.err == EPERM ? " (mounting volumes needs root, or CAP_SYS_ADMIN: run Cove as root)" : "";
	switch (f.step) {
	case STEP_UNSHARE:
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "container %s: volumes need a mount namespace of its own, and unshare(CLONE_NEWNS) "
				      "failed: %s%s",
				      spec->id, strerror(f.err), hint);
	case STEP_PRIVATE:
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "container %s: cannot make its mounts private: %s%s", spec->id, strerror(f.err), hint);
	case STEP_MKDIR:
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "container %s: cannot create mount point %s: %s",
				      spec->id, m ? m->target : "?", strerror(f.err));
	case STEP_BIND:
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "container %s: cannot bind-mount %s at %s: %s%s",
				      spec->id, m ? m->source : "?", m ? m->target : "?", strerror(f.err), hint);
	default:
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "container %s: cannot make %s read-only: %s%s",
				      spec->id, m ? m->target : "?", strerror(f.err), hint);
	}
}

static int
process_start(struct cove_runtime *rt, const struct cove_container_spec *spec, void *owner,
	      struct cove_container **out, struct cove_error **err)
{
	struct process_rt *p = rt->impl;
	int outp[2], errp[2];
	if (pipe2(outp, O_CLOEXEC) < 0)
		return cove_error_set_errno(err, errno, "container %s: pipe", spec->id);
	if (pipe2(errp, O_CLOEXEC) < 0) {
		int e = errno;
		close(outp[0]);
		close(outp[1]);
		return cove_error_set_errno(err, e, "container %s: pipe", spec->id);
	}
	/* Containers with mounts report a failed setup through this pipe; exec closes it (CLOEXEC). */
	int setupp[2] = {-1, -1};
	if (spec->n_mounts > 0 && pipe2(setupp, O_CLOEXEC) < 0) {
		int e = errno;
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
		return cove_error_set_errno(err, e, "container %s: pipe", spec->id);
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
		if (setupp[0] >= 0) {
			close(setupp[0]);
			close(setupp[1]);
		}
		return cove_error_set_errno(err, e, "container %s: fork", spec->id);
	}
	if (pid == 0) {
		/* Child: only async-signal-safe calls from here to exec. */
		setpgid(0, 0);
		/* If Cove dies (even kill -9), its containers die with it: they could not reach it again anyway,
		 * and their inputs run again after the restart. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(125);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(outp[1], 1);
		dup2(errp[1], 2);
		if (spec->n_mounts > 0)
			child_mounts(spec, setupp[1]);
		if (chdir(spec->workdir) < 0)
			_exit(126);
		execve(spec->argv[0], spec->argv, spec->envp);
		_exit(127);
	}
	setpgid(pid, pid);
	close(outp[1]);
	close(errp[1]);
	if (spec->n_mounts > 0) {
		close(setupp[1]);
		int r = await_setup(spec, pid, setupp[0], err);
		close(setupp[0]);
		if (r < 0) {
			close(outp[0]);
			close(errp[0]);
			return -1;
		}
	}
	struct cove_container *c = xcalloc(1, sizeof(*c));
	c->rt = rt;
	c->id = xstrdup(spec->id);
	c->owner = owner;
	c->pid = pid;
	int fds[2] = {outp[0], errp[0]};
	for (int i = 0; i < 2; i++) {
		evutil_make_socket_nonblocking(fds[i]);
		c->out[i] = bufferevent_socket_new(rt->base, fds[i], BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(c->out[i], pipe_read, NULL, pipe_event, c);
		bufferevent_enable(c->out[i], EV_READ);
	}
	c->next = p->head;
	if (p->head)
		p->head->prev = c;
	p->head = c;
	p->live++;
	log_debug("runtime: started container %s (pid %d)", spec->id, (int)pid);
	*out = c;
	return 0;
}

static void
kill_now(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_container *c = arg;
	if (!c->exited)
		kill(-c->pid, SIGKILL);
}

static void
process_stop(struct cove_runtime *rt, struct cove_container *c, int graceful, int grace_ms)
{
	if (c->exited)
		return;
	if (!graceful) {
		kill(-c->pid, SIGKILL);
		return;
	}
	kill(-c->pid, SIGINT);
	if (c->kill_timer == NULL) {
		c->kill_timer = evtimer_new(rt->base, kill_now, c);
		struct timeval tv = {grace_ms / 1000, (grace_ms % 1000) * 1000};
		evtimer_add(c->kill_timer, &tv);
	}
}

static pid_t
process_pid(const struct cove_container *c)
{
	return c->pid;
}

static void
process_free(struct cove_runtime *rt)
{
	struct process_rt *p = rt->impl;
	struct cove_container *next;
	for (struct cove_container *c = p->head; c; c = next) {
		next = c->next;
		if (!c->exited)
			kill(-c->pid, SIGKILL);
		for (int i = 0; i < 2; i++)
			if (c->out[i])
				bufferevent_free(c->out[i]);
		if (c->kill_timer)
			event_free(c->kill_timer);
		free(c->id);
		free(c);
	}
	if (p->sigchld)
		event_free(p->sigchld);
	free(p);
	free(rt);
}

static const struct cove_runtime_ops process_ops = {
	.name = "process",
	.start = process_start,
	.stop = process_stop,
	.pid = process_pid,
	.free = process_free,
};

struct cove_runtime *
cove_runtime_process_new(struct event_base *base, const struct cove_runtime_callbacks *cb, struct cove_error **err)
{
	struct cove_runtime *rt = xcalloc(1, sizeof(*rt));
	struct process_rt *p = xcalloc(1, sizeof(*p));
	rt->ops = &process_ops;
	rt->base = base;
	rt->cb = *cb;
	rt->impl = p;
	p->sigchld = evsignal_new(base, SIGCHLD, reap, rt);
	if (p->sigchld == NULL || evsignal_add(p->sigchld, NULL) < 0) {
		process_free(rt);
		cove_error_set(err, COVE_INTERNAL, "process runtime: cannot watch SIGCHLD");
		return NULL;
	}
	return rt;
}

size_t
cove_runtime_process_live(struct cove_runtime *rt)
{
	return ((struct process_rt *)rt->impl)->live;
}
