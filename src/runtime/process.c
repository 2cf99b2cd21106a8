/* The process runtime: each container is a child process in its own process group. A container with mounts
 * (volumes) also gets a mount namespace of its own, made in the child between fork and exec: the bind mounts
 * are visible to it and its children only. A process started inside another container (exec) joins that
 * container's process group; one with a terminal leads a session of its own. */
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
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/mkdir_p.h"
#include "runtime/runtime.h"
#include "util/alloc.h"
#include "util/log.h"

struct cove_container {
	struct cove_runtime *rt;
	struct cove_container *next, *prev;
	char *id;
	void *owner;
	struct cove_runtime_callbacks cb;
	pid_t pid;
	pid_t pgid;  /* its process group: its own (pid) unless it joined another container's */
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
	void (*on_exit)(void *, int) = c->cb.on_exit;
	free(c);
	on_exit(owner, status);
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
	c->cb.on_output(c->owner, fd, data, len);
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
			/* Kill what the container left behind in its process group (a process that joined another
			 * container's group leaves its children to that container). */
			if (c->pgid == c->pid)
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
		if (cove_mkdir_p(m->target, 0755) < 0)
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

/* Wait for the setup program's report: end-of-file (its payload runs) or "<errno> <message>" (reaped then). */
static int
await_report(const struct cove_container_spec *spec, pid_t pid, int fd, struct cove_error **err)
{
	char msg[1024];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, msg + len, sizeof(msg) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(msg) - 1)
			break;
	}
	if (len == 0)
		return 0;
	msg[len] = '\0';
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	char *text;
	long e = strtol(msg, &text, 10);
	while (*text == ' ')
		text++;
	int code = e == ENOENT || e == ESRCH ? COVE_NOT_FOUND : e == EPERM || e == EACCES ? COVE_PERMISSION_DENIED
											    : COVE_FAILED_PRECONDITION;
	/* A command that cannot run is the user's error, worded as the client expects; the rest names the
	 * container. */
	if (strncmp(text, "exec: \"", 7) == 0)
		return cove_error_set(err, code, "%s", text);
	return cove_error_set(err, code, "container %s: %s", spec->id, text);
}

/* The descriptors a new container's standard streams come from: pipes, or a terminal. -1 where unused. */
struct stdio_fds {
	int out[2];  /* stdout pipe (read, write), or the terminal's master and slave */
	int err[2];  /* stderr pipe; -1 with a terminal */
	int in[2];   /* stdin pipe when the caller wants one; -1 with a terminal (the slave is stdin) */
	int setup[2]; /* reports a failed mount setup; exec closes it (CLOEXEC) */
};

static void
close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

static void
stdio_close_all(struct stdio_fds *f)
{
	close_fds(f->out, 2);
	close_fds(f->err, 2);
	close_fds(f->in, 2);
	close_fds(f->setup, 2);
}

/* A pseudo-terminal: master in f->out[0], slave in f->out[1], sized as the spec asks. */
static int
open_pty(const struct cove_container_spec *spec, struct stdio_fds *f, struct cove_error **err)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		return cove_error_set_errno(err, errno, "container %s: open a pseudo-terminal", spec->id);
	char name[64];
	if (grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, name, sizeof(name)) != 0) {
		int e = errno;
		close(master);
		return cove_error_set_errno(err, e, "container %s: set up a pseudo-terminal", spec->id);
	}
	int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0) {
		int e = errno;
		close(master);
		return cove_error_set_errno(err, e, "container %s: open %s", spec->id, name);
	}
	if (spec->pty_rows && spec->pty_cols) {
		struct winsize ws = {.ws_row = spec->pty_rows, .ws_col = spec->pty_cols};
		ioctl(master, TIOCSWINSZ, &ws);
	}
	f->out[0] = master;
	f->out[1] = slave;
	return 0;
}

static int
open_stdio(const struct cove_container_spec *spec, struct stdio_fds *f, struct cove_error **err)
{
	if (spec->pty) {
		if (open_pty(spec, f, err) < 0)
			return -1;
	} else {
		if (pipe2(f->out, O_CLOEXEC) < 0 || pipe2(f->err, O_CLOEXEC) < 0)
			return cove_error_set_errno(err, errno, "container %s: pipe", spec->id);
		if (spec->stdin_fd && pipe2(f->in, O_CLOEXEC) < 0)
			return cove_error_set_errno(err, errno, "container %s: pipe", spec->id);
	}
	if ((spec->n_mounts > 0 || spec->setup_report) && pipe2(f->setup, O_CLOEXEC) < 0)
		return cove_error_set_errno(err, errno, "container %s: pipe", spec->id);
	return 0;
}

static int
process_start(struct cove_runtime *rt, const struct cove_container_spec *spec, void *owner,
	      struct cove_container **out, struct cove_error **err)
{
	struct process_rt *p = rt->impl;
	struct stdio_fds f = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
	if (open_stdio(spec, &f, err) < 0) {
		stdio_close_all(&f);
		return -1;
	}
	/* The caller's end of stdin: the pipe's write end, or a second descriptor of the terminal's master. */
	int in_fd = -1;
	if (spec->stdin_fd) {
		in_fd = spec->pty ? fcntl(f.out[0], F_DUPFD_CLOEXEC, 0) : f.in[1];
		if (in_fd < 0) {
			int e = errno;
			stdio_close_all(&f);
			return cove_error_set_errno(err, e, "container %s: dup", spec->id);
		}
		if (spec->pty == 0)
			f.in[1] = -1;
	}
	pid_t join_pgid = spec->join && !spec->pty ? spec->join->pgid : 0;
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		stdio_close_all(&f);
		if (in_fd >= 0)
			close(in_fd);
		return cove_error_set_errno(err, e, "container %s: fork", spec->id);
	}
	if (pid == 0) {
		/* Child: only async-signal-safe calls from here to exec. */
		if (spec->pty) {
			setsid();
			ioctl(f.out[1], TIOCSCTTY, 0);
		} else if (join_pgid == 0 || setpgid(0, join_pgid) < 0) {
			setpgid(0, 0);
		}
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
		if (spec->pty) {
			dup2(f.out[1], 0);
			dup2(f.out[1], 1);
			dup2(f.out[1], 2);
		} else {
			if (f.in[0] >= 0) {
				dup2(f.in[0], 0);
			} else {
				int devnull = open("/dev/null", O_RDONLY);
				if (devnull >= 0)
					dup2(devnull, 0);
			}
			dup2(f.out[1], 1);
			dup2(f.err[1], 2);
		}
		if (spec->setup_report) {
			if (f.setup[1] == 3)
				fcntl(3, F_SETFD, 0);
			else
				dup2(f.setup[1], 3);
		} else if (spec->n_mounts > 0) {
			child_mounts(spec, f.setup[1]);
		}
		if (chdir(spec->workdir) < 0)
			_exit(126);
		execve(spec->argv[0], spec->argv, spec->envp);
		_exit(127);
	}
	if (!spec->pty)
		setpgid(pid, join_pgid ? join_pgid : pid);
	close_fds(&f.out[1], 1);
	close_fds(&f.err[1], 1);
	close_fds(&f.in[0], 1);
	if (spec->n_mounts > 0 || spec->setup_report) {
		close_fds(&f.setup[1], 1);
		int r = spec->setup_report ? await_report(spec, pid, f.setup[0], err) : await_setup(spec, pid, f.setup[0], err);
		close_fds(&f.setup[0], 1);
		if (r < 0) {
			stdio_close_all(&f);
			if (in_fd >= 0)
				close(in_fd);
			return -1;
		}
	}
	struct cove_container *c = xcalloc(1, sizeof(*c));
	c->rt = rt;
	c->id = xstrdup(spec->id);
	c->owner = owner;
	c->cb = spec->cb ? *spec->cb : rt->cb;
	c->pid = pid;
	/* A process that could not join keeps a group of its own; either way kill(-pgid) reaches its group. */
	c->pgid = spec->pty ? pid : (join_pgid && getpgid(pid) == join_pgid ? join_pgid : pid);
	int fds[2] = {f.out[0], f.err[0]};
	for (int i = 0; i < 2; i++) {
		if (fds[i] < 0)
			continue;
		evutil_make_socket_nonblocking(fds[i]);
		c->out[i] = bufferevent_socket_new(rt->base, fds[i], BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(c->out[i], pipe_read, NULL, pipe_event, c);
		bufferevent_enable(c->out[i], EV_READ);
	}
	if (in_fd >= 0) {
		evutil_make_socket_nonblocking(in_fd);
		*spec->stdin_fd = in_fd;
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

/* Signal the container: its whole process group, or only its process if it joined another container's. */
static void
signal_container(struct cove_container *c, int sig)
{
	kill(c->pgid == c->pid ? -c->pid : c->pid, sig);
}

static void
kill_now(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_container *c = arg;
	if (!c->exited)
		signal_container(c, SIGKILL);
}

static void
process_stop(struct cove_runtime *rt, struct cove_container *c, int graceful, int grace_ms)
{
	if (c->exited)
		return;
	if (!graceful) {
		signal_container(c, SIGKILL);
		return;
	}
	signal_container(c, SIGINT);
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
process_set_reading(struct cove_runtime *rt, struct cove_container *c, int fd, int reading)
{
	(void)rt;
	struct bufferevent *bev = fd == 1 ? c->out[0] : fd == 2 ? c->out[1] : NULL;
	if (bev == NULL)
		return;
	if (reading)
		bufferevent_enable(bev, EV_READ);
	else
		bufferevent_disable(bev, EV_READ);
}

static void
process_free(struct cove_runtime *rt)
{
	struct process_rt *p = rt->impl;
	struct cove_container *next;
	for (struct cove_container *c = p->head; c; c = next) {
		next = c->next;
		if (!c->exited)
			signal_container(c, SIGKILL);
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
	.set_reading = process_set_reading,
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
