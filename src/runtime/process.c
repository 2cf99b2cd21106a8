/* The process runtime: each container is a child process in its own process group. */
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
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
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
		return cove_error_set_errno(err, e, "container %s: fork", spec->id);
	}
	if (pid == 0) {
		/* Child: only async-signal-safe calls from here to exec. */
		setpgid(0, 0);
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
		if (chdir(spec->workdir) < 0)
			_exit(126);
		execve(spec->argv[0], spec->argv, spec->envp);
		_exit(127);
	}
	setpgid(pid, pid);
	close(outp[1]);
	close(errp[1]);
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
