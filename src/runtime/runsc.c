/* The gvisor runtime: containers described as OCI bundles (oci_spec.c) and run by gVisor's runsc, whose
 * Sentry answers the container's system calls in user space, so the host kernel sees only runsc's own narrow
 * set. It wraps the linux runtime: workloads that are not to run under gVisor (and image builds, and plain
 * host processes, such as runsc itself) go there.
 *
 * A container here is `runsc run` in the foreground, a host process of the linux runtime with the container's
 * stdio (runsc donates those descriptors to the container's process); an exec is `runsc exec`. Its root
 * filesystem is an overlay of the image's layers, mounted on the host under the task's directory with the same
 * writable layer the linux runtime uses (so files laid out before start, and snapshots, see the same tree);
 * runsc's own overlay is off (--overlay2=none) so that writes reach it. Its cgroups are Cove's (cgroup.c), which
 * runsc joins through linux.cgroupsPath: the out-of-memory verdict is read there. A terminal is a pseudo-terminal
 * of gVisor's own devpts, made by cove-pty-relay inside the container and relayed to runsc's stdio. */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/cgroup.h"
#include "runtime/mkdir_p.h"
#include "runtime/oci_spec.h"
#include "runtime/runtime.h"
#include "util/alloc.h"
#include "util/log.h"

/* Where cove-pty-relay appears in containers. */
#define RELAY_PATH "/__modal/.bin/cove-pty-relay"
/* A container's pids limit (the host threads and systrap stubs of its sandbox count against it). */
#define PIDS_MAX 4096
/* Unix socket paths hold 108 bytes; runsc makes <root>/runsc-<id>.sock. */
#define MAX_ROOT_LEN 60

struct runsc_rt {
	struct cove_runtime *lx; /* everything not run under gVisor, and runsc's own processes */
	struct cove_runtime *self;
	char *runsc;
	char *root;  /* runsc --root */
	char *relay; /* host path of cove-pty-relay, or NULL (terminals then refused) */
	unsigned workloads; /* bit per enum cove_workload run under gVisor */
	unsigned seq;
	struct cove_container *head; /* every container started here and not yet exited */
};

struct cove_container {
	struct runsc_rt *r;
	struct cove_container *next, *prev;
	struct cove_container *inner; /* the linux runtime's: runsc run/exec, or the container itself */
	void *owner;
	struct cove_runtime_callbacks cb;
	int gvisor;
	char *id;      /* runsc's container id (a sandbox's own, or the one an exec runs in) */
	char *scratch; /* main: the bundle directory (config.json, rootfs/) */
	char *rootfs;  /* main: the overlay mounted for it, unmounted at exit */
	char *disk;    /* main: its ephemeral disk's mount point (and <scratch>/upper bound from it), or NULL */
	struct cove_cgroup *cg;
	uid_t uid;
	gid_t gid;
	char **targets; /* main: where host directories are bound (their files are not in rootfs) */
	size_t n_targets;
	char *pid_file; /* exec: where runsc writes the process's pid in the sandbox */
	char *process_file;
	int running; /* main: runsc's state said so once */
	struct cove_net_lease *net; /* main: the network namespace it runs in (the linux runtime's, made ahead) */
	struct event *force_ev; /* stop: kill inside the sandbox when the grace period ends */
};

/* ---- host processes (runsc's subcommands whose output nobody reads) ---- */

static void
quiet_output(void *owner, int fd, const char *data, size_t len)
{
	(void)fd;
	const char *what = owner;
	while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	if (len)
		log_debug("runsc %s: %.*s", what, (int)len, data);
}

static void
quiet_exit(void *owner, int status)
{
	(void)owner;
	(void)status;
}

static const struct cove_runtime_callbacks quiet_cb = {.on_output = quiet_output, .on_exit = quiet_exit};

/* Run `runsc --root R <args...>` in the background. */
static void
runsc_spawn(struct runsc_rt *r, const char *what, const char *const *args)
{
	const char *argv[16];
	size_t n = 0;
	argv[n++] = r->runsc;
	argv[n++] = "--root";
	argv[n++] = r->root;
	for (size_t i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	struct cove_container_spec s = {.id = what, .workdir = "/", .argv = (char *const *)argv, .cb = &quiet_cb};
	struct cove_container *c = NULL;
	struct cove_error *err = NULL;
	if (r->lx->ops->start(r->lx, &s, (void *)what, &c, &err) < 0) {
		log_warn("runsc %s: %s", what, err->msg);
		cove_error_free(err);
	}
}

/* Run it and wait (startup only). */
static int
runsc_wait(struct runsc_rt *r, const char *const *args)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		const char *argv[16];
		size_t n = 0;
		argv[n++] = r->runsc;
		argv[n++] = "--root";
		argv[n++] = r->root;
		for (size_t i = 0; args[i] && n < 15; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execv(r->runsc, (char *const *)argv);
		_exit(127);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the root filesystem ---- */

/* ephemeral_disk: the writable layer on an ext4 file system of mb MiB (a sparse file on a loop device that the
 * kernel detaches when it is unmounted), as the linux runtime gives: writes past it fail with ENOSPC. */
struct disk_plan {
	unsigned long mb;
	const char *img;   /* <scratch>/disk.img */
	const char *dir;   /* <scratch>/disk, where it is mounted */
	const char *upper; /* <scratch>/upper: what Cove laid out moves onto the disk, which is then bound here */
	const char *src;   /* <scratch>/upper/. (cp's source) */
	const char *dst;   /* <scratch>/disk/upper */
	const char *work;  /* <scratch>/disk/work */
};

enum { STEP_IMG = 1, STEP_MKFS, STEP_LOOP, STEP_MOUNT_DISK, STEP_COPY, STEP_BIND, STEP_OVERLAY };
static const char *const step_names[] = {
	[STEP_IMG] = "ephemeral disk: create its file",
	[STEP_MKFS] = "ephemeral disk: mkfs.ext4 failed (is e2fsprogs installed?)",
	[STEP_LOOP] = "ephemeral disk: attach a loop device",
	[STEP_MOUNT_DISK] = "ephemeral disk: mount it",
	[STEP_COPY] = "ephemeral disk: copy the container's files onto it",
	[STEP_BIND] = "ephemeral disk: bind its writable layer",
	[STEP_OVERLAY] = "mount the container's root file system",
};

/* In the child: fork, exec argv with output to /dev/null, wait; 0 or -1. */
static int
run_quiet(const char *path, char *const *argv)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execv(path, argv);
		_exit(127);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* In the child (async-signal-safe calls only): make and mount the disk. 0, or the failed step (errno set). */
static int
child_disk(const struct disk_plan *d)
{
	int fd = open(d->img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)d->mb << 20) < 0)
		return STEP_IMG;
	char *const mkfs[] = {"mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1",
			      (char *)d->img, NULL};
	if (run_quiet("/usr/sbin/mkfs.ext4", mkfs) < 0 && run_quiet("/sbin/mkfs.ext4", mkfs) < 0) {
		errno = EIO;
		return STEP_MKFS;
	}
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return STEP_LOOP;
	int lfd = -1;
	char dev[64];
	for (int tries = 0; lfd < 0 && tries < 32; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return STEP_LOOP;
		snprintf(dev, sizeof(dev), "/dev/loop%d", n);
		lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd >= 0 && ioctl(lfd, LOOP_SET_FD, fd) < 0) {
			close(lfd); /* taken meanwhile: the next free one */
			lfd = -1;
		}
	}
	close(ctl);
	if (lfd < 0) {
		errno = EBUSY;
		return STEP_LOOP;
	}
	struct loop_info64 info;
	memset(&info, 0, sizeof(info));
	info.lo_flags = LO_FLAGS_AUTOCLEAR;
	ioctl(lfd, LOOP_SET_STATUS64, &info);
	int r = cove_mkdir_p(d->dir, 0755) < 0 || mount(dev, d->dir, "ext4", MS_NOSUID | MS_NODEV, NULL) < 0;
	int e = errno;
	close(lfd);
	close(fd);
	errno = e;
	if (r)
		return STEP_MOUNT_DISK;
	if (cove_mkdir_p(d->dst, 0755) < 0 || cove_mkdir_p(d->work, 0700) < 0)
		return STEP_COPY;
	char *const cp[] = {"cp", "-a", (char *)d->src, (char *)d->dst, NULL};
	if (run_quiet("/bin/cp", cp) < 0) {
		errno = EIO;
		return STEP_COPY;
	}
	if (mount(d->dst, d->upper, NULL, MS_BIND, NULL) < 0)
		return STEP_BIND;
	return 0;
}

/* Mount the overlay at target (and first the disk, if d): lowerdirs relative to layers_dir (a child chdirs
 * there, so that many layers fit in one page of options), upper and work absolute. */
static int
mount_rootfs(const struct cove_container_rootfs *fs, const char *upper, const char *work, const char *target,
	     const struct disk_plan *d, struct cove_error **err)
{
	size_t len = 64 + strlen(upper) + strlen(work);
	for (size_t i = 0; i < fs->n_layers; i++)
		len += strlen(fs->layers[i]) + 1;
	cleanup_free char *opts = xmalloc(len);
	size_t k = (size_t)snprintf(opts, len, "lowerdir=");
	for (size_t i = 0; i < fs->n_layers; i++) {
		if (strchr(fs->layers[i], ',') || strchr(fs->layers[i], ':'))
			return cove_error_set(err, COVE_INTERNAL, "layer %s: ',' or ':' in its name", fs->layers[i]);
		k += (size_t)snprintf(opts + k, len - k, "%s%s", i ? ":" : "", fs->layers[i]);
	}
	snprintf(opts + k, len - k, ",upperdir=%s,workdir=%s", upper, work);
	if (strlen(opts) >= 4096)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "the image has too many layers (%zu) to mount",
				      fs->n_layers);
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cove_error_set_errno(err, errno, "pipe");
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return cove_error_set_errno(err, errno, "fork");
	}
	if (pid == 0) {
		int rep[2] = {0, 0};
		if (d && (rep[1] = child_disk(d)) != 0)
			rep[0] = errno;
		else if (chdir(fs->layers_dir) < 0 || mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, opts) < 0)
			rep[0] = errno, rep[1] = STEP_OVERLAY;
		if (write(pfd[1], rep, sizeof(rep)) < 0)
			_exit(1);
		_exit(0);
	}
	close(pfd[1]);
	int rep[2] = {EIO, STEP_OVERLAY};
	ssize_t n = read(pfd[0], rep, sizeof(rep));
	close(pfd[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(rep))
		rep[0] = EIO, rep[1] = STEP_OVERLAY;
	if (rep[1] > 0 && rep[1] <= STEP_OVERLAY)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "%s: %s", step_names[rep[1]],
				      strerror(rep[0] ? rep[0] : EIO));
	return 0;
}

/* USER: a numeric uid[:gid], or a name in the image's /etc/passwd, read beneath the root file system (never
 * through a link out of it). */
static int
resolve_user(const char *rootfs, const char *user, uid_t *uid, gid_t *gid, struct cove_error **err)
{
	*uid = 0;
	*gid = 0;
	if (user == NULL || *user == '\0' || strcmp(user, "root") == 0)
		return 0;
	char name[256];
	snprintf(name, sizeof(name), "%s", user);
	char *group = strchr(name, ':');
	if (group)
		*group++ = '\0';
	char *end;
	long u = strtol(name, &end, 10), g = -1;
	if (*end != '\0' || end == name) {
		u = -1;
		int dir = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
		struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
		int fd = dir < 0 ? -1 : (int)syscall(SYS_openat2, dir, "etc/passwd", &how, sizeof(how));
		if (dir >= 0)
			close(dir);
		FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
		char line[1024];
		while (f && fgets(line, sizeof(line), f)) {
			char *fields[7] = {0};
			char *p = line;
			for (int i = 0; i < 7 && p; i++) {
				fields[i] = p;
				p = strchr(p, ':');
				if (p)
					*p++ = '\0';
			}
			if (fields[0] && fields[3] && strcmp(fields[0], name) == 0) {
				u = atol(fields[2]);
				g = atol(fields[3]);
				break;
			}
		}
		if (f)
			fclose(f);
		else if (fd >= 0)
			close(fd);
		if (u < 0)
			return cove_error_set(err, COVE_FAILED_PRECONDITION, "USER %s: no such user in the image's /etc/passwd",
					      user);
	}
	if (group)
		g = atol(group);
	if (g < 0)
		g = u;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 0;
}

/* name, directly in dir (a host path), is a directory and not a link to one. */
static int
is_plain_dir(const char *dir, const char *name)
{
	int d = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (d < 0)
		return 0;
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV};
	int fd = (int)syscall(SYS_openat2, d, name, &how, sizeof(how));
	close(d);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* ---- containers ---- */

/* ---- commands ---- */

/* 0: path (absolute, in the container) is an executable file beneath rootfs or lies under a bind mount (whose
 * files Cove does not look at); else -errno. Resolved in the root, so no link leads out of it. */
static int
probe_executable(const struct cove_container *c, const char *path)
{
	for (size_t i = 0; i < c->n_targets; i++) {
		size_t n = strlen(c->targets[i]);
		if (strncmp(path, c->targets[i], n) == 0 && (path[n] == '\0' || path[n] == '/'))
			return 0;
	}
	int dir = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return 0; /* runsc will say */
	struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, dir, path, &how, sizeof(how));
	int e = errno;
	close(dir);
	if (fd < 0)
		return e == ENOTDIR ? -ENOENT : -e;
	struct stat st;
	int r = fstat(fd, &st);
	close(fd);
	if (r < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0)
		return -EACCES;
	return 0;
}

/* As the linux runtime answers: the command is looked up in the container's PATH (of envp) before it starts. */
static int
check_command(const struct cove_container *c, char *const *argv, char *const *envp, const char *cwd,
	      struct cove_error **err)
{
	const char *cmd = argv[0];
	int e;
	if (strchr(cmd, '/')) {
		cleanup_free char *path = cmd[0] == '/' ? xstrdup(cmd) : xasprintf("%s/%s", cwd ? cwd : "/", cmd);
		e = probe_executable(c, path);
	} else {
		const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
		for (char *const *v = envp; v && *v; v++)
			if (strncmp(*v, "PATH=", 5) == 0)
				path = *v + 5;
		e = -ENOENT;
		for (const char *p = path;;) {
			size_t n = strcspn(p, ":");
			cleanup_free char *cand = n ? xasprintf("%.*s/%s", (int)n, p, cmd)
						    : xasprintf("%s/%s", cwd ? cwd : "/", cmd);
			int r = cand[0] == '/' ? probe_executable(c, cand) : -ENOENT;
			if (r == 0) {
				e = 0;
				break;
			}
			if (r == -EACCES)
				e = r;
			if (p[n] == '\0')
				break;
			p += n + 1;
		}
	}
	if (e == -ENOENT)
		return cove_error_set(err, COVE_NOT_FOUND, "exec: \"%s\": executable file not found in $PATH", cmd);
	if (e == -EACCES)
		return cove_error_set(err, COVE_PERMISSION_DENIED, "exec: \"%s\": permission denied", cmd);
	return 0;
}

/* The root filesystem, and the ephemeral disk under it (whose loop device the kernel then detaches). */
static void
unmount_all(struct cove_container *c)
{
	if (c->rootfs && umount2(c->rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		log_warn("container %s: unmount %s: %s", c->id, c->rootfs, strerror(errno));
	if (c->disk) {
		cleanup_free char *upper = xasprintf("%s/upper", c->scratch);
		umount2(upper, MNT_DETACH);
		umount2(c->disk, MNT_DETACH);
	}
}

static void
container_free(struct cove_container *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (c->r->head == c)
		c->r->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	for (size_t i = 0; i < c->n_targets; i++)
		free(c->targets[i]);
	free(c->targets);
	if (c->force_ev)
		event_free(c->force_ev);
	free(c->id);
	free(c->scratch);
	free(c->rootfs);
	free(c->disk);
	free(c->pid_file);
	if (c->process_file)
		unlink(c->process_file);
	free(c->process_file);
	free(c);
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
	if (c->gvisor) {
		/* runsc reports a container killed by signal N as 128 + N. */
		if (status > 128 && status < 128 + 65)
			status = -(status - 128);
		if (c->cg && status != 0 && cove_cgroup_oom_killed(c->cg))
			status = COVE_EXIT_OOM;
		cleanup_free char *state = xasprintf("%s/%s_sandbox:%s.state", c->r->root, c->id, c->id);
		if (c->rootfs && access(state, F_OK) == 0) {
			/* `runsc run` cleans up after itself unless it was killed. */
			const char *const del[] = {"delete", "--force", c->id, NULL};
			runsc_spawn(c->r, "delete", del);
		}
		unmount_all(c);
		cove_cgroup_destroy(c->cg);
		cove_runtime_linux_net_release(c->net);
	}
	void *owner = c->owner;
	void (*cb)(void *, int) = c->cb.on_exit;
	container_free(c);
	cb(owner, status);
}

static const struct cove_runtime_callbacks wrap_cb = {.on_output = on_output, .on_exit = on_exit_cb};

/* runsc's ids: letters, digits, '-', '_' and '.'. */
static char *
container_id(const char *id)
{
	char *s = xstrdup(id && *id ? id : "cove");
	for (char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			*p = '_';
	return s;
}

struct argv_buf {
	const char *v[32];
	size_t n;
};

static void
runsc_argv(struct argv_buf *a, struct runsc_rt *r, const char *network)
{
	a->n = 0;
	a->v[a->n++] = r->runsc;
	a->v[a->n++] = "--root";
	a->v[a->n++] = r->root;
	if (network) {
		a->v[a->n++] = network;
		/* Writes go through to the host overlay (snapshots, and files Cove lays out, live there). */
		a->v[a->n++] = "--overlay2=none";
	}
}

/* The payload's argv, through the relay when it wants a terminal. */
static char **
payload_argv(struct runsc_rt *r, const struct cove_container_spec *spec, struct cove_error **err)
{
	size_t n = 0;
	while (spec->argv[n])
		n++;
	char **v = xcalloc(n + 6, sizeof(char *));
	size_t k = 0;
	if (spec->pty) {
		if (r->relay == NULL) {
			free(v);
			cove_error_set(err, COVE_FAILED_PRECONDITION,
				       "a terminal under gVisor needs cove-pty-relay, which is not installed beside cove");
			return NULL;
		}
		v[k++] = RELAY_PATH;
		v[k++] = "--";
	}
	for (size_t i = 0; i < n; i++)
		v[k++] = spec->argv[i];
	return v;
}

static int
start_main(struct runsc_rt *r, struct cove_container *c, const struct cove_container_spec *spec,
	   struct cove_container_spec *inner, struct cove_error **err)
{
	const struct cove_container_rootfs *fs = spec->rootfs;
	c->id = container_id(spec->id);
	c->scratch = xstrdup(fs->scratch);
	cleanup_free char *upper = xasprintf("%s/upper", fs->scratch);
	cleanup_free char *work = xasprintf("%s/work", fs->scratch);
	cleanup_free char *rootfs = xasprintf("%s/rootfs", fs->scratch);
	cleanup_free char *img = xasprintf("%s/disk.img", fs->scratch);
	cleanup_free char *disk = xasprintf("%s/disk", fs->scratch);
	cleanup_free char *src = xasprintf("%s/upper/.", fs->scratch);
	cleanup_free char *dst = xasprintf("%s/disk/upper", fs->scratch);
	cleanup_free char *disk_work = xasprintf("%s/disk/work", fs->scratch);
	struct disk_plan plan = {.img = img, .dir = disk, .upper = upper, .src = src, .dst = dst, .work = disk_work};
	if (spec->limits && spec->limits->disk_mb)
		plan.mb = spec->limits->disk_mb;
	if (cove_mkdir_p(upper, 0755) < 0 || cove_mkdir_p(work, 0700) < 0 || cove_mkdir_p(rootfs, 0755) < 0)
		return cove_error_set_errno(err, errno, "container %s: make %s", c->id, fs->scratch);
	if (plan.mb)
		c->disk = xstrdup(disk);
	/* overlayfs wants upper and work on one mount: the disk's own paths (<scratch>/upper is a second view). */
	if (mount_rootfs(fs, plan.mb ? dst : upper, plan.mb ? disk_work : work, rootfs, plan.mb ? &plan : NULL,
			 err) < 0)
		return -1;
	c->rootfs = xstrdup(rootfs);
	if (resolve_user(rootfs, fs->user, &c->uid, &c->gid, err) < 0)
		return -1;
	if (cove_cgroup_create(c->id, spec->limits, &c->cg, err) < 0)
		return -1;
	/* The container's mounts: Cove's, the host's resolver (as the linux runtime gives), the relay. */
	size_t n = spec->n_mounts;
	cleanup_free struct cove_container_mount *m = xcalloc(n + 4, sizeof(*m));
	memcpy(m, spec->mounts, n * sizeof(*m));
	if (!fs->block_network) {
		static const char *const files[] = {"/etc/resolv.conf", "/etc/hosts"};
		for (size_t i = 0; i < 2; i++)
			if (access(files[i], R_OK) == 0)
				m[n++] = (struct cove_container_mount){.source = files[i], .target = files[i], .read_only = 1};
	}
	if (r->relay)
		m[n++] = (struct cove_container_mount){.source = r->relay, .target = RELAY_PATH, .read_only = 1};
	/* runsc puts a tmpfs (the Sandbox's memory) on an empty /tmp unless the spec mounts something there; the
	 * linux runtime's /tmp is the root filesystem's, in the writable layer (ephemeral_disk, snapshots): the
	 * same here, as a bind of the image's own /tmp when that is a directory (not a link, which would be
	 * resolved on the host). */
	cleanup_free char *tmp = xasprintf("%s/tmp", rootfs);
	if (is_plain_dir(rootfs, "tmp"))
		m[n++] = (struct cove_container_mount){.source = tmp, .target = "/tmp"};
	c->targets = xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		c->targets[c->n_targets++] = xstrdup(m[i].target);
	if (check_command(c, spec->argv, spec->envp, spec->workdir, err) < 0)
		return -1;
	cleanup_free char **argv = payload_argv(r, spec, err);
	if (argv == NULL)
		return -1;
	cleanup_free char *cgpath = xasprintf("/cove/%s", c->id);
	/* A sandbox gets a network of its own, as linux-runtime containers do (pasta, the host's loopback out of
	 * reach), run by gVisor's own network stack (--network=sandbox), whose 127.0.0.1 is its own: Cove's ports
	 * are out of reach too, which functions (they dial the API) cannot do without. Tunnels need the host's
	 * network (a published port is reached on the host's 127.0.0.1), and without a network made ahead the
	 * host's is used too. */
	cleanup_free char *net_path = NULL;
	if (spec->workload == COVE_WORKLOAD_SANDBOX && !fs->block_network && fs->n_published_ports == 0)
		c->net = cove_runtime_linux_net_take(r->lx, &net_path);
	struct cove_oci_spec os = {
		.process = {.argv = argv, .envp = spec->envp, .cwd = spec->workdir, .uid = c->uid, .gid = c->gid},
		.root = rootfs,
		.hostname = fs->hostname ? fs->hostname : spec->id,
		.mounts = m,
		.n_mounts = n,
		.net_host = !fs->block_network && c->net == NULL,
		.net_path = net_path,
		.limits = spec->limits,
		.pids_max = PIDS_MAX,
		.cgroups_path = cgpath,
	};
	if (cove_oci_write_bundle(fs->scratch, &os, err) < 0)
		return -1;
	struct argv_buf a;
	runsc_argv(&a, r, fs->block_network ? "--network=none" : c->net ? "--network=sandbox" : "--network=host");
	/* A Unix socket bound in (Cove's API for block_network functions) is reachable only with this: runsc refuses
	 * connections to host sockets otherwise. Only what is bound in can be named. */
	for (size_t i = 0; i < spec->n_mounts; i++) {
		struct stat st;
		if (stat(spec->mounts[i].source, &st) == 0 && S_ISSOCK(st.st_mode)) {
			a.v[a.n++] = "--host-uds=open";
			break;
		}
	}
	a.v[a.n++] = "run";
	a.v[a.n++] = "--bundle";
	a.v[a.n++] = fs->scratch;
	a.v[a.n++] = c->id;
	a.v[a.n] = NULL;
	inner->argv = (char *const *)a.v;
	inner->workdir = "/";
	inner->rootfs = NULL;
	inner->limits = NULL;
	inner->mounts = NULL;
	inner->n_mounts = 0;
	inner->join = NULL;
	return r->lx->ops->start(r->lx, inner, c, &c->inner, err);
}

/* Whether runsc's state file says the container runs (one small read; a container stays running until it
 * exits). */
static int
state_running(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[65536];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strstr(buf, "\"status\":\"running\"") != NULL;
}

static int
start_exec(struct runsc_rt *r, struct cove_container *c, const struct cove_container_spec *spec,
	   struct cove_container_spec *inner, struct cove_error **err)
{
	struct cove_container *in = (struct cove_container *)spec->join; /* caches whether it runs */
	c->id = xstrdup(in->id);
	if (check_command(in, spec->argv, spec->envp, spec->workdir, err) < 0)
		return -1;
	unsigned seq = ++r->seq;
	c->pid_file = xasprintf("%s/exec-%u.pid", in->scratch, seq);
	c->process_file = xasprintf("%s/exec-%u.json", in->scratch, seq);
	cleanup_free char **argv = payload_argv(r, spec, err);
	if (argv == NULL)
		return -1;
	struct cove_oci_process p = {.argv = argv, .envp = spec->envp, .cwd = spec->workdir, .uid = in->uid,
				     .gid = in->gid};
	FILE *f = fopen(c->process_file, "wxe");
	if (f == NULL)
		return cove_error_set_errno(err, errno, "exec in %s: create %s", c->id, c->process_file);
	int rv = cove_oci_write_process(f, &p, err);
	if (fclose(f) != 0 && rv == 0)
		rv = cove_error_set_errno(err, errno, "exec in %s: write %s", c->id, c->process_file);
	if (rv < 0)
		return -1;
	/* `runsc run` returns nothing when the container is running, and runsc refuses execs before: a host shell
	 * waits for runsc's state file to say so (a few ms after the sandbox's start), or gives up when it stops. */
	static const char wait_running[] =
		"while :; do case $(cat \"$1\" 2>/dev/null) in *'\"status\":\"running\"'*) break ;; "
		"*'\"status\":\"stopped\"'*) echo 'the sandbox has stopped' >&2; exit 126 ;; esac; "
		"kill -0 \"$2\" 2>/dev/null || { echo 'the sandbox has stopped' >&2; exit 126; }; sleep 0.005; done; "
		"shift 2; exec \"$@\"";
	cleanup_free char *state = xasprintf("%s/%s_sandbox:%s.state", r->root, c->id, c->id);
	char run_pid[32];
	snprintf(run_pid, sizeof(run_pid), "%d", (int)r->lx->ops->pid(in->inner));
	struct argv_buf a;
	a.n = 0;
	if (!in->running)
		in->running = state_running(state);
	if (!in->running) {
		a.v[a.n++] = "/bin/sh";
		a.v[a.n++] = "-c";
		a.v[a.n++] = wait_running;
		a.v[a.n++] = "sh";
		a.v[a.n++] = state;
		a.v[a.n++] = run_pid;
	}
	a.v[a.n++] = r->runsc;
	a.v[a.n++] = "--root";
	a.v[a.n++] = r->root;
	a.v[a.n++] = "exec";
	a.v[a.n++] = "--process";
	a.v[a.n++] = c->process_file;
	a.v[a.n++] = "--internal-pid-file";
	a.v[a.n++] = c->pid_file;
	a.v[a.n++] = c->id;
	a.v[a.n] = NULL;
	inner->argv = (char *const *)a.v;
	inner->workdir = "/";
	inner->rootfs = NULL;
	inner->limits = NULL;
	inner->mounts = NULL;
	inner->n_mounts = 0;
	inner->join = NULL;
	return r->lx->ops->start(r->lx, inner, c, &c->inner, err);
}

static int
runsc_start(struct cove_runtime *rt, const struct cove_container_spec *spec, void *owner, struct cove_container **out,
	    struct cove_error **err)
{
	struct runsc_rt *r = rt->impl;
	struct cove_container *c = xcalloc(1, sizeof(*c));
	c->r = r;
	c->owner = owner;
	c->cb = spec->cb ? *spec->cb : rt->cb;
	struct cove_container_spec inner = *spec;
	inner.cb = &wrap_cb;
	int rv;
	if (spec->join && spec->join->gvisor) {
		c->gvisor = 1;
		rv = start_exec(r, c, spec, &inner, err);
	} else if (spec->join == NULL && spec->rootfs && (r->workloads & (1u << spec->workload))) {
		c->gvisor = 1;
		rv = start_main(r, c, spec, &inner, err);
	} else {
		inner.join = spec->join ? spec->join->inner : NULL;
		rv = r->lx->ops->start(r->lx, &inner, c, &c->inner, err);
	}
	if (rv < 0) {
		unmount_all(c);
		cove_cgroup_destroy(c->cg);
		cove_runtime_linux_net_release(c->net);
		container_free(c);
		return -1;
	}
	c->next = r->head;
	if (r->head)
		r->head->prev = c;
	r->head = c;
	*out = c;
	return 0;
}

/* The grace period is over (or there was none): kill what runs inside the sandbox, which holds the stdio. */
static void
force_kill(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_container *c = arg;
	if (c->pid_file == NULL) {
		const char *const args[] = {"kill", "--all", c->id, "KILL", NULL};
		runsc_spawn(c->r, "kill", args);
		return;
	}
	char buf[32] = {0};
	int f = open(c->pid_file, O_RDONLY | O_CLOEXEC);
	ssize_t n = f < 0 ? -1 : read(f, buf, sizeof(buf) - 1);
	if (f >= 0)
		close(f);
	long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
	if (pid <= 0)
		return;
	char p[32];
	snprintf(p, sizeof(p), "%ld", pid);
	const char *const args[] = {"kill", "--pid", p, c->id, "KILL", NULL};
	runsc_spawn(c->r, "kill", args);
}

static void
runsc_stop(struct cove_runtime *rt, struct cove_container *c, int graceful, int grace_ms)
{
	struct runsc_rt *r = rt->impl;
	/* runsc forwards the signals it gets to the container's process. */
	r->lx->ops->stop(r->lx, c->inner, graceful, grace_ms);
	if (!c->gvisor)
		return;
	if (c->force_ev == NULL)
		c->force_ev = evtimer_new(rt->base, force_kill, c);
	struct timeval tv = {graceful ? grace_ms / 1000 : 0, graceful ? (grace_ms % 1000) * 1000 : 0};
	evtimer_add(c->force_ev, &tv);
}

static pid_t
runsc_pid(const struct cove_container *c)
{
	return c->r->lx->ops->pid(c->inner);
}

static void
runsc_set_reading(struct cove_runtime *rt, struct cove_container *c, int fd, int reading)
{
	struct runsc_rt *r = rt->impl;
	r->lx->ops->set_reading(r->lx, c->inner, fd, reading);
}

static size_t
runsc_live(struct cove_runtime *rt)
{
	struct runsc_rt *r = rt->impl;
	return cove_runtime_live(r->lx);
}

/* Containers a Cove that died left in runsc's state: deleted (their sandboxes died with that Cove's runsc). */
static void
sweep(struct runsc_rt *r)
{
	DIR *d = opendir(r->root);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		const char *us = strstr(e->d_name, "_sandbox:");
		size_t len = strlen(e->d_name);
		if (us == NULL || len < 6 || strcmp(e->d_name + len - 6, ".state") != 0)
			continue;
		cleanup_free char *id = xstrndup(e->d_name, (size_t)(us - e->d_name));
		const char *const args[] = {"delete", "--force", id, NULL};
		runsc_wait(r, args);
	}
	if (d)
		closedir(d);
}

/* Root filesystems (<tasks>/<task>/fs/rootfs) and ephemeral disks that a Cove that died left mounted. */
void
cove_runtime_runsc_unmount_stale(const char *tasks_dir)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	size_t n = strlen(tasks_dir);
	while (f && fgets(line, sizeof(line), f)) {
		/* id parent major:minor root mount-point ... (octal escapes in paths: ours have none) */
		char *p = line;
		for (int i = 0; i < 4 && p; i++)
			p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
		if (p == NULL)
			continue;
		char *end = strchr(p, ' ');
		if (end == NULL)
			continue;
		*end = '\0';
		size_t len = strlen(p);
		static const char *const ends[] = {"/fs/rootfs", "/fs/upper", "/fs/disk"};
		for (size_t i = 0; i < 3; i++) {
			size_t m = strlen(ends[i]);
			if (strncmp(p, tasks_dir, n) == 0 && p[n] == '/' && len > m && strcmp(p + len - m, ends[i]) == 0 &&
			    umount2(p, MNT_DETACH) == 0)
				log_info("gvisor: unmounted %s, left by an earlier run", p);
		}
	}
	if (f)
		fclose(f);
}

static void
runsc_free(struct cove_runtime *rt)
{
	struct runsc_rt *r = rt->impl;
	r->lx->ops->free(r->lx); /* kills what still runs, without reporting it */
	sweep(r);
	while (r->head) {
		struct cove_container *c = r->head;
		unmount_all(c);
		cove_cgroup_destroy(c->cg);
		container_free(c);
	}
	/* runsc binds an empty network namespace here for --network=none, and leaves it mounted. */
	cleanup_free char *netns = xasprintf("%s/null-netns", r->root);
	if (umount2(netns, MNT_DETACH) == 0 || errno == EINVAL || errno == ENOENT)
		unlink(netns);
	free(r->runsc);
	free(r->root);
	free(r->relay);
	free(r);
	free(rt);
}

static struct cove_runtime *
runsc_linux(struct cove_runtime *rt)
{
	struct runsc_rt *r = rt->impl;
	return r->lx->ops->linux_runtime ? r->lx->ops->linux_runtime(r->lx) : NULL;
}

static const struct cove_runtime_ops runsc_ops = {
	.name = "gvisor",
	.start = runsc_start,
	.stop = runsc_stop,
	.pid = runsc_pid,
	.set_reading = runsc_set_reading,
	.live = runsc_live,
	.linux_runtime = runsc_linux,
	.free = runsc_free,
};

char *
cove_runtime_runsc_find(const char *given)
{
	if (given && *given)
		return access(given, X_OK) == 0 ? xstrdup(given) : NULL;
	const char *env = getenv("COVE_RUNSC");
	if (env && *env)
		return access(env, X_OK) == 0 ? xstrdup(env) : NULL;
	/* scripts/runsc.sh's caches (any version, newest name first), then PATH. */
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	cleanup_free char *user_cache = xdg && *xdg ? xasprintf("%s/cove/runsc", xdg)
				      : home && *home ? xasprintf("%s/.cache/cove/runsc", home)
						      : NULL;
	const char *caches[] = {getenv("COVE_RUNSC_CACHE"), "/var/cache/cove/runsc", user_cache};
	for (size_t i = 0; i < sizeof(caches) / sizeof(caches[0]); i++) {
		if (caches[i] == NULL || *caches[i] == '\0')
			continue;
		struct dirent **names = NULL;
		int n = scandir(caches[i], &names, NULL, alphasort);
		char *found = NULL;
		for (int k = n - 1; k >= 0; k--) {
			cleanup_free char *cand = xasprintf("%s/%s/runsc", caches[i], names[k]->d_name);
			if (found == NULL && names[k]->d_name[0] != '.' && access(cand, X_OK) == 0)
				found = steal_pointer(&cand);
		}
		for (int k = 0; k < n; k++)
			free(names[k]);
		free(names);
		if (found)
			return found;
	}
	const char *path = getenv("PATH");
	cleanup_free char *copy = xstrdup(path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		cleanup_free char *cand = xasprintf("%s/runsc", dir);
		if (access(cand, X_OK) == 0)
			return steal_pointer(&cand);
	}
	return NULL;
}

struct cove_runtime *
cove_runtime_runsc_new(struct event_base *base, const struct cove_runtime_callbacks *cb, struct cove_runtime *lx,
		       const struct cove_runsc_opts *o, struct cove_error **err)
{
	if (access(o->runsc, X_OK) < 0) {
		cove_error_set(err, COVE_FAILED_PRECONDITION, "gVisor: %s: %s", o->runsc, strerror(errno));
		return NULL;
	}
	char *root = strlen(o->state_root) <= MAX_ROOT_LEN ? xstrdup(o->state_root) : NULL;
	if (root == NULL) {
		/* A short path of this state directory's own. */
		unsigned long h = 5381;
		for (const char *p = o->state_root; *p; p++)
			h = h * 33 + (unsigned char)*p;
		root = xasprintf("/run/cove-runsc/%08lx", h & 0xffffffffUL);
	}
	if (cove_mkdir_p(root, 0700) < 0) {
		cove_error_set(err, COVE_FAILED_PRECONDITION, "gVisor: make %s: %s", root, strerror(errno));
		free(root);
		return NULL;
	}
	struct cove_runtime *rt = xcalloc(1, sizeof(*rt));
	struct runsc_rt *r = xcalloc(1, sizeof(*r));
	r->lx = lx;
	r->self = rt;
	r->runsc = xstrdup(o->runsc);
	r->root = root;
	r->relay = o->relay && access(o->relay, X_OK) == 0 ? xstrdup(o->relay) : NULL;
	r->workloads = o->workloads;
	rt->ops = &runsc_ops;
	rt->base = base;
	rt->cb = *cb;
	rt->impl = r;
	sweep(r);
	return rt;
}

int
cove_runtime_runsc_check(const char *runsc, struct cove_error **err)
{
	if (runsc == NULL)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "gVisor's runsc was not found (scripts/runsc.sh builds it; or pass --runsc PATH)");
	if (access(runsc, X_OK) < 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "gVisor: %s: %s", runsc, strerror(errno));
	return 0;
}
