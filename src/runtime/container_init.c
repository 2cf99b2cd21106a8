/* cove-container: the privileged half of the linux runtime, as a small program of its own. Cove's runtime
 * (src/runtime/linux.c) execs it with a description of one container on the command line; it makes the
 * namespaces, assembles the root filesystem, drops capabilities and execs the payload. Nothing here parses
 * network input: every argument comes from Cove itself (STYLE.md, privilege seam).
 *
 *   cove-container [--report-fd N] [--cgroup PROCS_FILE]... [--pty]
 *                  ( --join PID | --layers-dir DIR --layer REL... --scratch DIR [--hostname H]
 *                    [--net none|host|private [--pasta PATH] [--forward PORT]... [--publish PORT]...]
 *                    [--net-from PID]
 *                    [--bind SRC DST] [--bind-ro SRC DST]... )
 *                  [--workdir PATH] [--user UID[:GID]] -- ARGV...
 *
 * A new container: this process (the shim, in Cove's PID namespace) joins the cgroups, unshares the mount, UTS,
 * IPC (and with --net none, network) namespaces and forks the container's PID 1. PID 1 mounts an overlay of the
 * layers (top first) with <scratch>/upper as its writable layer, /proc, a minimal /dev, /dev/shm, /sys
 * (read-only), the bind mounts, pivots into it, and forks the payload; it then reaps orphans until the payload
 * exits, and exits with its status (which ends every process left in the namespace). The shim exits the way
 * PID 1 did, so Cove sees the payload's exit status or signal.
 *
 * --join PID: enter the namespaces and cgroups of the container whose shim is PID, and run the payload there.
 *
 * Setup failures are written to the report descriptor as "<errno> <message>" and end the program with 125; the
 * descriptor reaches end-of-file when the payload has been exec'd. Signals SIGINT, SIGTERM, SIGHUP, SIGQUIT,
 * SIGUSR1 and SIGUSR2 sent to the shim are passed on to the payload.
 *
 * --net private: a network namespace of the container's own, connected to the outside by pasta (Debian's
 * passt package: user-mode TCP/UDP translation, the way rootless Podman connects containers), which runs beside
 * the shim in the host's namespaces and dies with it. The container can reach the outside, but not the host's
 * loopback services (--no-map-gw, and no port of the host's is forwarded but the --forward ones, Cove's own),
 * nor other containers, each in a namespace of its own. --publish PORT makes the container's PORT reachable at
 * the host's 127.0.0.1:PORT (a sandbox's tunnels).
 *
 *   cove-container --net-holder [--pasta PATH] [--forward PORT]...
 *
 * makes such a network ahead of time: it unshares a network namespace, has pasta configure it, prints "ready"
 * and holds it until its standard input closes (or it is killed, or Cove dies). A container started with
 * --net-from PID joins the network namespace of that holder instead of making one, and so does not wait for
 * pasta (about 40 ms of its start on this machine); the holder is never given to a second container. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/fsuid.h>
#include <linux/capability.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/securebits.h>
#include <unistd.h>

#include "runtime/idmap.h"
#include "runtime/mkdir_p.h"
#include "runtime/pty_io.h"
#include "runtime/seccomp.h"
#include "util/netif.h"

#define MAX_ITEMS 256

struct bind {
	const char *src, *dst;
	int ro;
};

static struct {
	int report_fd;
	const char *cgroups[16];
	int n_cgroups;
	const char *late_cgroups[4]; /* joined by PID 1 once the root filesystem is assembled (devices) */
	int n_late_cgroups;
	int pty;
	pid_t join;
	const char *layers_dir;
	const char *layers[MAX_ITEMS];
	int n_layers;
	const char *scratch;
	const char *hostname;
	enum { NET_HOST, NET_NONE, NET_PRIVATE } net;
	const char *pasta;
	const char *forward[16]; /* ports of the host's loopback the container reaches at its own 127.0.0.1 */
	int n_forward;
	const char *publish[64]; /* ports of the container's reached at the host's 127.0.0.1 */
	int n_publish;
	pid_t net_from; /* a --net-holder whose network namespace the container joins */
	int net_holder;
	struct bind binds[MAX_ITEMS];
	int n_binds;
	const char *workdir;
	const char *user;
	unsigned long disk_mb; /* the writable layer on a file system of this size (ephemeral_disk); 0: none */
	int userns;            /* --userns BASE: container root is the host's uid BASE (see idmap.h) */
	unsigned userns_base;
	int userns_fd; /* the container's user namespace (made, or the joined container's), or -1 */
	char **argv;
} o = {.report_fd = -1, .userns_fd = -1};

static volatile pid_t child_pid;
static int shim_alive = -1; /* PID 1's end of a pipe the shim holds open for as long as it lives */

static void __attribute__((noreturn, format(printf, 2, 3)))
fail(int e, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(msg, sizeof(msg), "%d ", e);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (o.report_fd >= 0) {
		ssize_t w = write(o.report_fd, msg, strlen(msg));
		(void)w;
	} else {
		fprintf(stderr, "cove-container: %s\n", msg + n);
	}
	_exit(125);
}

/* out = a + b, or fail: a path that does not fit is an error, never a silent truncation. */
static void
pathcat(char *out, const char *a, const char *b)
{
	int n = snprintf(out, PATH_MAX, "%s%s", a, b);
	if (n < 0 || n >= PATH_MAX)
		fail(ENAMETOOLONG, "path too long: %s%s", a, b);
}

static void
usage(void)
{
	fprintf(stderr, "usage: cove-container [options] -- argv... (this program is started by cove)\n");
	exit(2);
}

static void
parse_args(int argc, char **argv)
{
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "--net-holder") == 0) {
			o.net_holder = 1;
			continue;
		}
		if (v == NULL)
			usage();
		if (strcmp(a, "--report-fd") == 0)
			o.report_fd = atoi(v);
		else if (strcmp(a, "--cgroup") == 0 && o.n_cgroups < 16)
			o.cgroups[o.n_cgroups++] = v;
		else if (strcmp(a, "--cgroup-late") == 0 && o.n_late_cgroups < 4)
			o.late_cgroups[o.n_late_cgroups++] = v;
		else if (strcmp(a, "--pty") == 0) {
			o.pty = 1;
			continue;
		} else if (strcmp(a, "--join") == 0)
			o.join = (pid_t)atoi(v);
		else if (strcmp(a, "--layers-dir") == 0)
			o.layers_dir = v;
		else if (strcmp(a, "--layer") == 0 && o.n_layers < MAX_ITEMS)
			o.layers[o.n_layers++] = v;
		else if (strcmp(a, "--scratch") == 0)
			o.scratch = v;
		else if (strcmp(a, "--hostname") == 0)
			o.hostname = v;
		else if (strcmp(a, "--net") == 0)
			o.net = strcmp(v, "none") == 0 ? NET_NONE : strcmp(v, "private") == 0 ? NET_PRIVATE : NET_HOST;
		else if (strcmp(a, "--pasta") == 0)
			o.pasta = v;
		else if (strcmp(a, "--forward") == 0 && o.n_forward < 16)
			o.forward[o.n_forward++] = v;
		else if (strcmp(a, "--publish") == 0 && o.n_publish < 64)
			o.publish[o.n_publish++] = v;
		else if (strcmp(a, "--net-from") == 0)
			o.net_from = (pid_t)atoi(v);
		else if ((strcmp(a, "--bind") == 0 || strcmp(a, "--bind-ro") == 0) && i + 2 < argc && o.n_binds < MAX_ITEMS) {
			o.binds[o.n_binds++] = (struct bind){v, argv[i + 2], a[6] == '-'};
			i++;
		} else if (strcmp(a, "--workdir") == 0)
			o.workdir = v;
		else if (strcmp(a, "--user") == 0)
			o.user = v;
		else if (strcmp(a, "--disk-mb") == 0)
			o.disk_mb = strtoul(v, NULL, 10);
		else if (strcmp(a, "--userns") == 0) {
			char *end;
			unsigned long base = strtoul(v, &end, 10);
			if (*end != '\0' || base == 0 || base > 0xFFFFFFFFul - COVE_USERNS_IDS)
				usage();
			o.userns = 1;
			o.userns_base = (unsigned)base;
		} else
			usage();
		i++;
	}
	if (o.net_holder)
		return;
	if (i >= argc)
		usage();
	o.argv = argv + i;
	if (o.join == 0 && (o.layers_dir == NULL || o.n_layers == 0 || o.scratch == NULL))
		usage();
}

static void
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail(errno, "open %s: %s", path, strerror(errno));
	if (write(fd, text, strlen(text)) < 0)
		fail(errno, "write %s: %s", path, strerror(errno));
	close(fd);
}

static void
join_cgroups(const char *const *procs, int n)
{
	for (int i = 0; i < n; i++)
		write_file(procs[i], "0");
}

static void
mkdirs(const char *path, mode_t mode)
{
	if (cove_mkdir_p(path, mode) < 0)
		fail(errno, "mkdir -p %s: %s", path, strerror(errno));
}

static void
do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		fail(errno, "mount %s on %s (%s): %s", src ? src : "none", dst, type ? type : "bind", strerror(errno));
}

/* ---- the container's tree, before pivot_root ----
 * Until PID 1 pivots into it, the tree it assembles is a directory of the host's, and the image (or a build
 * step, or a snapshot the container made) decides what is in it: /tmp may be a symlink to the host's /etc. So
 * every path in it is resolved by the kernel beneath a descriptor of its root, with symlinks taken as if that
 * root were "/" (openat2 RESOLVE_IN_ROOT, as runc's securejoin does), and mounts land on descriptors (O_PATH),
 * never on a path string the host would resolve. */
static int root_fd = -1;

static int
in_root(const char *path, int flags, mode_t mode)
{
	struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC), .mode = mode,
			       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
}

/* Split path into its parent (in parent, "" for the root) and last component (returned, within parent's buffer). */
static const char *
split_last(const char *path, char *parent, size_t len)
{
	snprintf(parent, len, "%s", path);
	size_t n = strlen(parent);
	while (n > 1 && parent[n - 1] == '/')
		parent[--n] = '\0';
	char *slash = strrchr(parent, '/');
	if (slash == NULL) {
		memmove(parent + 1, parent, strlen(parent) + 1);
		parent[0] = '\0';
		return parent + 1;
	}
	*slash = '\0';
	return slash + 1;
}

/* name in parent_fd is a symlink (a dangling one: what it names is missing): *path becomes what it names, read
 * as a path in the container's tree (relative to parent if relative). 0, or -1. */
static int
follow_link(int parent_fd, const char *parent, const char *name, char *path, size_t len)
{
	char link[PATH_MAX];
	ssize_t n = readlinkat(parent_fd, name, link, sizeof(link) - 1);
	if (n <= 0)
		return -1;
	link[n] = '\0';
	char next[PATH_MAX];
	int w = link[0] == '/' ? snprintf(next, sizeof(next), "%s", link) : snprintf(next, sizeof(next), "%s/%s", parent, link);
	if (w < 0 || w >= (int)sizeof(next) || w >= (int)len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(path, next, (size_t)w + 1);
	return 0;
}

static int in_root_dir(const char *path0, mode_t mode);

/* The parent directory of path (O_PATH), made where missing; *name gets the last component. */
static int
in_root_parent(const char *path, char *parent, size_t len, const char **name)
{
	*name = split_last(path, parent, len);
	return parent[0] ? in_root_dir(parent, 0755) : fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
}

/* The directory at path in the container's tree (O_PATH), made (mkdir -p, mode) where missing, as mkdir -p would
 * inside that tree: a dangling symlink on the way is followed there, and what it names is made. */
static int
in_root_dir(const char *path0, mode_t mode)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s", path0);
	for (int tries = 0; tries < 16; tries++) {
		int fd = in_root(path, O_PATH | O_DIRECTORY, 0);
		if (fd >= 0 || errno != ENOENT)
			return fd;
		char parent[PATH_MAX];
		const char *name;
		int pfd = in_root_parent(path, parent, sizeof(parent), &name);
		if (pfd < 0)
			return -1;
		/* One component, no slash: mkdirat follows nothing; a dangling symlink there is EEXIST. */
		int r = mkdirat(pfd, name, mode), e = errno;
		if (r < 0 && e == EEXIST && follow_link(pfd, parent, name, path, sizeof(path)) < 0)
			e = errno;
		else if (r < 0 && e == EEXIST)
			r = 0;
		close(pfd);
		if (r < 0) {
			errno = e;
			return -1;
		}
	}
	errno = ELOOP;
	return -1;
}

static int
in_root_dir_or_fail(const char *path, mode_t mode)
{
	int fd = in_root_dir(path, mode);
	if (fd < 0)
		fail(errno, "the container's %s: %s", path, strerror(errno));
	return fd;
}

/* A mount point at path in the container's tree (O_PATH): a directory, or for a file an empty file (made if
 * missing, and where a dangling symlink names it), like what will be mounted there. */
static int
in_root_mountpoint(const char *path0, int dir)
{
	if (dir)
		return in_root_dir_or_fail(path0, 0755);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s", path0);
	for (int tries = 0; tries < 16; tries++) {
		int fd = in_root(path, O_PATH, 0);
		if (fd >= 0)
			return fd;
		if (errno != ENOENT)
			break;
		char parent[PATH_MAX];
		const char *name;
		int pfd = in_root_parent(path, parent, sizeof(parent), &name);
		if (pfd < 0)
			break;
		int w = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644), e = errno;
		if (w >= 0)
			close(w);
		else if (e == EEXIST && follow_link(pfd, parent, name, path, sizeof(path)) < 0)
			e = errno;
		close(pfd);
		if (w < 0 && e != EEXIST) {
			errno = e;
			break;
		}
	}
	fail(errno ? errno : ELOOP, "mount point %s in the container: %s", path0, strerror(errno ? errno : ELOOP));
}

/* mount(2) of a file system of type (no source path of the host's) at the descriptor fd. */
static void
mount_at(int fd, const char *what, const char *type, unsigned long flags, const char *data)
{
	char p[32];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	if (mount(type, p, type, flags, data) < 0)
		fail(errno, "mount %s on the container's %s: %s", type, what, strerror(errno));
}

/* Flags every bind mount of host files into a container gets: its device nodes do not work and set-user-id bits
 * give nothing (the OCI runtime spec's and Docker's defaults for bind mounts). */
#define BIND_FLAGS (MS_NOSUID | MS_NODEV)

/* MS_* flags as MOUNT_ATTR_* ones. */
static unsigned long long
mount_attrs(unsigned long flags)
{
	return ((flags & MS_RDONLY) ? MOUNT_ATTR_RDONLY : 0) | ((flags & MS_NOSUID) ? MOUNT_ATTR_NOSUID : 0) |
	       ((flags & MS_NODEV) ? MOUNT_ATTR_NODEV : 0) | ((flags & MS_NOEXEC) ? MOUNT_ATTR_NOEXEC : 0);
}

/* A bind mount of the host's src at dst in the container's tree; the mount point is made (a directory or an
 * empty file, like src). flags (MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC) apply to it and every submount. With
 * a user namespace the mount is idmapped through it (so the container's root owns what the host's root does),
 * unless plain is set or a file system of src cannot be idmapped (device nodes, /proc): then it is bound as it
 * is, and its files show as owned by nobody. */
static void
bind_into_as(const char *src, const char *dst, unsigned long flags, int plain)
{
	struct stat st;
	if (stat(src, &st) < 0)
		fail(errno, "bind mount source %s: %s", src, strerror(errno));
	int target = in_root_mountpoint(dst, S_ISDIR(st.st_mode));
	char msg[256];
	int r = -EINVAL;
	if (o.userns_fd >= 0 && !plain)
		r = cove_mount_bind(src, target, o.userns_fd, mount_attrs(flags), 1, msg, sizeof(msg));
	if (r == -EINVAL || r == -EOPNOTSUPP)
		r = cove_mount_bind(src, target, -1, mount_attrs(flags), 1, msg, sizeof(msg));
	if (r < 0)
		fail(-r, "%s on the container's %s", msg, dst);
	close(target);
}

static void
bind_into(const char *src, const char *dst, unsigned long flags)
{
	bind_into_as(src, dst, flags, 0);
}

static void
make_dev(void)
{
	int fd = in_root_dir_or_fail("/dev", 0755);
	/* Owned by the container's root (with a user namespace, the host's uid the namespace maps 0 to). */
	char opts[96];
	unsigned owner = o.userns ? o.userns_base : 0;
	snprintf(opts, sizeof(opts), "mode=755,size=65536k,uid=%u,gid=%u", owner, owner);
	mount_at(fd, "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, opts);
	close(fd);
	static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		char path[64];
		snprintf(path, sizeof(path), "/dev/%s", nodes[i]);
		bind_into_as(path, path, MS_NOSUID | MS_NOEXEC, 1); /* devtmpfs: not idmappable */
	}
	fd = in_root_dir_or_fail("/dev/pts", 0755);
	mount_at(fd, "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
	close(fd);
	fd = in_root_dir_or_fail("/dev/shm", 01777);
	snprintf(opts, sizeof(opts), "mode=1777,size=65536k,uid=%u,gid=%u", owner, owner);
	mount_at(fd, "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts);
	close(fd);
	static const char *const links[][2] = {
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	};
	fd = in_root_dir_or_fail("/dev", 0755); /* the tmpfs just mounted */
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		if (symlinkat(links[i][0], fd, links[i][1]) < 0 && errno != EEXIST)
			fail(errno, "symlink /dev/%s: %s", links[i][1], strerror(errno));
	close(fd);
}

/* pasta, forked before the shim unshares its network namespace and released (through the pipe whose write end is
 * returned) once it has: it opens the new namespace as the host's root may (pasta itself drops to a user
 * namespace of its own at start, from which /proc/<pid>/ns/net cannot be opened) and passes it as
 * /proc/self/fd/N. It stays in the foreground and dies with the shim (PR_SET_PDEATHSIG). */
static int
start_pasta(void)
{
	int go[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		fail(errno, "pipe: %s", strerror(errno));
	pid_t shim = getpid();
	pid_t pid = fork();
	if (pid < 0)
		fail(errno, "fork pasta: %s", strerror(errno));
	if (pid > 0) {
		close(go[0]);
		return go[1];
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	close(go[1]);
	char c;
	if (read(go[0], &c, 1) != 1 || getppid() != shim)
		_exit(1);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)shim);
	int ns = open(path, O_RDONLY); /* not O_CLOEXEC: pasta opens it again through /proc/self/fd */
	if (ns < 0)
		_exit(1);
	int devnull = open("/dev/null", O_RDWR);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
	}
	if (o.report_fd >= 0)
		close(o.report_fd);
	char nspath[64], forward[256] = "none", publish[64][40];
	snprintf(nspath, sizeof(nspath), "/proc/self/fd/%d", ns);
	size_t n = 0;
	for (int i = 0; i < o.n_forward; i++)
		n += (size_t)snprintf(forward + n, n < sizeof(forward) ? sizeof(forward) - n : 0, "%s%s", i ? "," : "",
				      o.forward[i]);
	if (n >= sizeof(forward))
		_exit(1);
	const char *argv[32 + 2 * 64];
	int a = 0;
	argv[a++] = "pasta";
	argv[a++] = "--foreground";
	argv[a++] = "--quiet";
	argv[a++] = "--runas";
	argv[a++] = "0";
	argv[a++] = "--config-net";
	argv[a++] = "--no-map-gw";
	argv[a++] = "--ns-ifname";
	argv[a++] = "eth0";
	argv[a++] = "--tcp-ns";
	argv[a++] = forward;
	argv[a++] = "--udp-ns";
	argv[a++] = "none";
	argv[a++] = "--udp-ports";
	argv[a++] = "none";
	if (o.n_publish == 0) {
		argv[a++] = "--tcp-ports";
		argv[a++] = "none";
	}
	for (int i = 0; i < o.n_publish; i++) {
		snprintf(publish[i], sizeof(publish[i]), "127.0.0.1/%s", o.publish[i]);
		argv[a++] = "--tcp-ports";
		argv[a++] = publish[i];
	}
	argv[a++] = "--netns";
	argv[a++] = nspath;
	argv[a] = NULL;
	execv(o.pasta ? o.pasta : "/usr/bin/pasta", (char *const *)argv);
	_exit(127);
}

/* 1 if this network namespace has a default route. */
static int
has_default_route(void)
{
	FILE *f = fopen("/proc/net/route", "re");
	char line[256];
	int found = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char ifname[32];
		unsigned long dest;
		if (sscanf(line, "%31s %lx", ifname, &dest) == 2 && dest == 0)
			found = 1;
	}
	if (f)
		fclose(f);
	return found;
}

/* How many of the forwarded ports are listened on (by pasta) in this network namespace. */
static int
forwards_listening(void)
{
	FILE *f = fopen("/proc/net/tcp", "re");
	char line[512];
	int n = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned addr, port, state;
		if (sscanf(line, " %*d: %x:%x %*x:%*x %x", &addr, &port, &state) != 3 || state != 0x0A)
			continue;
		for (int i = 0; i < o.n_forward; i++)
			if ((unsigned)atoi(o.forward[i]) == port)
				n++;
	}
	if (f)
		fclose(f);
	return n;
}

/* Wait (in the container's namespace) until pasta has configured it: a default route, and a listener on each
 * forwarded port. Meanwhile PID 1 has assembled the root filesystem, so this mostly overlaps work that had to
 * happen anyway. */
static void
wait_network(void)
{
	for (int i = 0; i < 5000; i++) {
		if (has_default_route() && forwards_listening() >= o.n_forward)
			return;
		struct timespec ts = {0, i < 100 ? 200 * 1000 : 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	fail(ETIMEDOUT, "the container's network did not come up within 5 s (is pasta, from Debian's passt package, "
			"installed?)");
}

/* ephemeral_disk: a sparse file of disk_mb MiB, formatted ext4 and attached to a loop device (detached by the
 * kernel when this namespace's mount goes), mounted at dir. The writable layer lives on it, so writes past its
 * size fail with ENOSPC, as the docs say. Files Cove put in <scratch>/upper first move onto it. */
static void
mount_disk(const char *dir)
{
	char img[PATH_MAX];
	pathcat(img, o.scratch, "/disk.img");
	int fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)o.disk_mb << 20) < 0)
		fail(errno, "ephemeral disk %s: %s", img, strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fail(errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0) {
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		static const char *const mkfs[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"};
		for (size_t i = 0; i < 2; i++)
			execl(mkfs[i], "mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", img,
			      (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail(EIO, "ephemeral disk: mkfs.ext4 failed (status %d; is e2fsprogs installed?)", status);
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		fail(errno, "ephemeral disk: /dev/loop-control: %s", strerror(errno));
	int lfd = -1;
	char dev[64];
	for (int tries = 0; lfd < 0 && tries < 32; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			fail(errno, "ephemeral disk: no free loop device: %s", strerror(errno));
		snprintf(dev, sizeof(dev), "/dev/loop%d", n);
		lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd >= 0 && ioctl(lfd, LOOP_SET_FD, fd) < 0) {
			close(lfd); /* taken meanwhile by someone else: try the next free one */
			lfd = -1;
		}
	}
	close(ctl);
	if (lfd < 0)
		fail(EBUSY, "ephemeral disk: cannot attach a loop device");
	struct loop_info64 info;
	memset(&info, 0, sizeof(info));
	info.lo_flags = LO_FLAGS_AUTOCLEAR;
	ioctl(lfd, LOOP_SET_STATUS64, &info);
	mkdirs(dir, 0755);
	do_mount(dev, dir, "ext4", MS_NOSUID | MS_NODEV, NULL);
	close(lfd);
	close(fd);
}

/* The paths of /proc and /sys that the OCI runtime spec's default configuration (`runc spec`) and Docker mask or
 * make read-only: kernel memory, keyrings, timers, firmware, and every sysctl (among them
 * /proc/sys/kernel/core_pattern, which the kernel runs as host root), /proc/sysrq-trigger. A masked file gets
 * the host's /dev/null over it, a masked directory an empty read-only tmpfs; a read-only one is bound onto
 * itself read-only. Paths this kernel lacks are skipped. */
static const char *const masked_paths[] = {
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
};
static const char *const readonly_paths[] = {
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

static void
mask_paths(void)
{
	char msg[256];
	for (size_t i = 0; i < sizeof(masked_paths) / sizeof(masked_paths[0]); i++) {
		int fd = in_root(masked_paths[i], O_PATH | O_NOFOLLOW, 0);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			if (fd >= 0)
				close(fd);
			continue; /* not on this kernel */
		}
		int r = 0;
		if (S_ISDIR(st.st_mode))
			mount_at(fd, masked_paths[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555");
		else
			r = cove_mount_bind("/dev/null", fd, -1, 0, 0, msg, sizeof(msg));
		close(fd);
		if (r < 0)
			fail(-r, "mask %s: %s", masked_paths[i], msg);
	}
	for (size_t i = 0; i < sizeof(readonly_paths) / sizeof(readonly_paths[0]); i++) {
		int fd = in_root(readonly_paths[i], O_PATH | O_NOFOLLOW, 0);
		if (fd < 0)
			continue;
		/* The path onto itself, read-only (its submounts too). */
		char self[32];
		snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
		int r = cove_mount_bind(self, fd, -1, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
							    MOUNT_ATTR_NOEXEC, 1, msg, sizeof(msg));
		close(fd);
		if (r < 0)
			fail(-r, "make %s read-only: %s", readonly_paths[i], msg);
	}
}

/* With a user namespace, PID 1 makes files in the container's tree (mount points, /dev's links) and mounts the
 * overlay as the container's root would, keeping its capabilities: overlayfs does its work in the writable layer
 * with the credentials of whoever mounted it, and on an idmapped layer the host's root has no id to write as. */
static void
fsids_of_container_root(int on)
{
	if (!o.userns)
		return;
	static int saved = -1; /* the securebits before, restored after */
	if (on && (saved = prctl(PR_GET_SECUREBITS)) < 0)
		fail(errno, "read securebits: %s", strerror(errno));
	if (on && prctl(PR_SET_SECUREBITS, (unsigned long)saved | SECBIT_NO_SETUID_FIXUP) < 0)
		fail(errno, "keep capabilities across setfsuid: %s", strerror(errno));
	uid_t id = on ? o.userns_base : 0;
	setfsgid(id);
	setfsuid(id);
	if ((uid_t)setfsuid((uid_t)-1) != id || (gid_t)setfsgid((gid_t)-1) != id)
		fail(EPERM, "setfsuid %u: refused", (unsigned)id);
	if (!on && prctl(PR_SET_SECUREBITS, (unsigned long)saved) < 0)
		fail(errno, "reset securebits: %s", strerror(errno));
	/* Changing credentials cleared PID 1's parent-death signal: set again, it must still go with the shim. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct pollfd p = {.fd = shim_alive, .events = POLLIN};
	int r;
	while ((r = poll(&p, 1, 0)) < 0 && errno == EINTR)
		;
	if (r != 0) /* the shim's end closed: it has died meanwhile */
		_exit(125);
}

/* src (not recursively) idmapped onto dst, a directory of Cove's own (the task's scratch). */
static int
idmap_at(const char *src, const char *dst, unsigned long long attrs, char *msg, size_t len)
{
	int fd = open(dst, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		fail(errno, "open %s: %s", dst, strerror(errno));
	int r = cove_mount_bind(src, fd, o.userns_fd, attrs, 0, msg, len);
	close(fd);
	return r;
}

/* The overlay's option string for layers seen through idmapped mounts: each layer, and the directory holding the
 * writable layer (rw_dir, with upper/ and work/ in it), mounted idmapped under <scratch>/idmapped, which becomes
 * the working directory (so the names stay short). */
static void
idmapped_layers(const char *rw_dir, char *opts, size_t len)
{
	char stage[PATH_MAX], dst[PATH_MAX], src[PATH_MAX], msg[256];
	pathcat(stage, o.scratch, "/idmapped");
	mkdirs(stage, 0700);
	size_t n = (size_t)snprintf(opts, len, "lowerdir=");
	for (int i = 0; i < o.n_layers; i++) {
		char rel[32];
		snprintf(rel, sizeof(rel), "/%d", i);
		pathcat(dst, stage, rel);
		mkdirs(dst, 0755);
		int w = snprintf(src, sizeof(src), "%s/%s", o.layers_dir, o.layers[i]);
		if (w < 0 || w >= (int)sizeof(src))
			fail(ENAMETOOLONG, "path too long: %s/%s", o.layers_dir, o.layers[i]);
		int r = idmap_at(src, dst, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, msg, sizeof(msg));
		if (r < 0)
			fail(-r, "%s (a user namespace needs idmapped mounts: Linux 5.19 or later, on ext4, xfs, btrfs "
				 "or tmpfs; `cove serve --userns off` runs containers without one)",
			     msg);
		n += (size_t)snprintf(opts + n, n < len ? len - n : 0, "%s%d", i ? ":" : "", i);
		if (n >= len)
			fail(E2BIG, "too many image layers (%d) for one overlay mount", o.n_layers);
	}
	pathcat(dst, stage, "/rw");
	mkdirs(dst, 0755);
	int r = idmap_at(rw_dir, dst, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, msg, sizeof(msg));
	if (r < 0)
		fail(-r, "%s", msg);
	n += (size_t)snprintf(opts + n, n < len ? len - n : 0, ",upperdir=rw/upper,workdir=rw/work");
	if (n >= len)
		fail(E2BIG, "too many image layers (%d) for one overlay mount", o.n_layers);
	if (chdir(stage) < 0)
		fail(errno, "chdir %s: %s", stage, strerror(errno));
}

/* The root filesystem, assembled in this (PID 1's) mount namespace, then made the root. */
static void
setup_rootfs(void)
{
	char upper[PATH_MAX], work[PATH_MAX], merged[PATH_MAX], disk[PATH_MAX];
	do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (o.disk_mb) {
		char src[PATH_MAX];
		pathcat(disk, o.scratch, "/disk");
		pathcat(src, o.scratch, "/upper");
		mount_disk(disk);
		pathcat(upper, disk, "/upper");
		pathcat(work, disk, "/work");
		/* What Cove laid out for the container (its mounts' files) moves onto the disk. */
		struct stat st;
		if (stat(src, &st) == 0 && rename(src, upper) < 0) {
			/* Across file systems: copy with cp -a, which every image-building host has. */
			pid_t pid = fork();
			if (pid == 0) {
				execl("/bin/cp", "cp", "-a", src, upper, (char *)NULL);
				_exit(127);
			}
			int status = 0;
			while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
				fail(EIO, "ephemeral disk: copy the container's files onto it failed");
		}
	} else {
		pathcat(upper, o.scratch, "/upper");
		pathcat(work, o.scratch, "/work");
	}
	pathcat(merged, o.scratch, "/merged");
	mkdirs(upper, 0755);
	mkdirs(work, 0700);
	mkdirs(merged, 0755);
	char opts[4096];
	if (o.userns_fd >= 0) {
		idmapped_layers(o.disk_mb ? disk : o.scratch, opts, sizeof(opts));
	} else {
		/* Layer paths relative to the layer store keep the option string short (it is limited to a page). */
		if (chdir(o.layers_dir) < 0)
			fail(errno, "layer store %s: %s", o.layers_dir, strerror(errno));
		size_t n = (size_t)snprintf(opts, sizeof(opts), "lowerdir=");
		for (int i = 0; i < o.n_layers; i++) {
			n += (size_t)snprintf(opts + n, sizeof(opts) - n, "%s%s", i ? ":" : "", o.layers[i]);
			if (n >= sizeof(opts))
				fail(E2BIG, "too many image layers (%d) for one overlay mount", o.n_layers);
		}
		n += (size_t)snprintf(opts + n, sizeof(opts) - n, ",upperdir=%s,workdir=%s", upper, work);
		if (n >= sizeof(opts))
			fail(E2BIG, "too many image layers (%d) for one overlay mount", o.n_layers);
	}
	/* nodev: device nodes in an image's layers (or made by a build step) open nothing; nosuid: no set-user-id
	 * programs (no_new_privs, set before the payload runs, would ignore them anyway). */
	fsids_of_container_root(1);
	do_mount("overlay", merged, "overlay", MS_NODEV | MS_NOSUID, opts);

	root_fd = open(merged, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		fail(errno, "open %s: %s", merged, strerror(errno));
	int fd = in_root_dir_or_fail("/proc", 0555);
	mount_at(fd, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	close(fd);
	fd = in_root_dir_or_fail("/sys", 0555);
	char p[32];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	if (mount("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		char msg[256];
		int r = cove_mount_bind("/sys", fd, -1, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
							   MOUNT_ATTR_NOEXEC, 1, msg, sizeof(msg));
		if (r < 0)
			fail(-r, "%s", msg);
	}
	close(fd);
	make_dev();
	/* /tmp writable by all, as every image expects; if the image made it a symlink, what it names inside. */
	close(in_root_dir_or_fail("/tmp", 01777));
	fd = in_root("/tmp", O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0 || fchmod(fd, 01777) < 0)
		fail(errno, "the container's /tmp: %s", strerror(errno));
	close(fd);
	if (o.net != NET_NONE) {
		/* The host's resolver and hosts files, so names resolve as they do for Cove. */
		static const char *const files[] = {"/etc/resolv.conf", "/etc/hosts"};
		for (size_t i = 0; i < 2; i++)
			if (access(files[i], R_OK) == 0)
				bind_into(files[i], files[i], MS_RDONLY | BIND_FLAGS);
	}
	for (int i = 0; i < o.n_binds; i++)
		bind_into(o.binds[i].src, o.binds[i].dst, (o.binds[i].ro ? MS_RDONLY : 0) | BIND_FLAGS);
	mask_paths();
	close(root_fd);
	root_fd = -1;
	fsids_of_container_root(0);
	/* The devices cgroup only now: assembling the root above may have needed a loop device. */
	join_cgroups(o.late_cgroups, o.n_late_cgroups);
	/* In a network of its own, container root may listen on ports below 1024 (the capability for it would have
	 * to be held over the network namespace, which belongs to the host's user namespace), as Docker allows. */
	if (o.userns && o.net != NET_HOST)
		write_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");

	if (chdir(merged) < 0)
		fail(errno, "chdir %s: %s", merged, strerror(errno));
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail(errno, "pivot_root %s: %s", merged, strerror(errno));
	if (umount2(".", MNT_DETACH) < 0)
		fail(errno, "detach the old root: %s", strerror(errno));
	if (chdir("/") < 0)
		fail(errno, "chdir /: %s", strerror(errno));
	if (o.hostname && sethostname(o.hostname, strlen(o.hostname)) < 0)
		fail(errno, "sethostname: %s", strerror(errno));
	if (o.net == NET_NONE)
		cove_loopback_up();
	if (o.net == NET_PRIVATE)
		wait_network();
}

/* Capabilities a container keeps: Docker's default set less CAP_NET_RAW (raw and packet sockets read other
 * containers' traffic on a shared interface) and CAP_MKNOD. No mounting, no device nodes, no module loading, no
 * raw I/O, no tracing of other processes. */
static const int keep_caps[] = {
	CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_SETGID, CAP_SETUID, CAP_SETFCAP,
	CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
};

static void
drop_caps(void)
{
	uint64_t keep = 0;
	for (size_t i = 0; i < sizeof(keep_caps) / sizeof(keep_caps[0]); i++)
		keep |= 1ULL << keep_caps[i];
	for (int cap = 0; cap <= 63; cap++) {
		if (keep & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			fail(errno, "drop capability %d: %s", cap, strerror(errno));
	}
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) < 0)
		fail(errno, "capget: %s", strerror(errno));
	for (int i = 0; i < 2; i++) {
		uint32_t k = (uint32_t)(keep >> (32 * i));
		data[i].effective &= k;
		data[i].permitted &= k;
		data[i].inheritable &= k;
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail(errno, "capset: %s", strerror(errno));
}

/* USER: a numeric uid[:gid], or a name looked up in the container's /etc/passwd (read by hand: the host's
 * NSS modules must not be loaded from the container). */
static void
switch_user(void)
{
	if (o.user == NULL || *o.user == '\0' || strcmp(o.user, "root") == 0)
		return;
	char name[256];
	snprintf(name, sizeof(name), "%s", o.user);
	char *group = strchr(name, ':');
	if (group)
		*group++ = '\0';
	char *end;
	long uid = strtol(name, &end, 10), gid = -1;
	if (*end != '\0' || end == name) {
		uid = -1;
		FILE *f = fopen("/etc/passwd", "re");
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
				uid = atol(fields[2]);
				gid = atol(fields[3]);
				break;
			}
		}
		if (f)
			fclose(f);
		if (uid < 0)
			fail(ENOENT, "USER %s: no such user in the image's /etc/passwd", o.user);
	}
	if (group)
		gid = atol(group);
	if (gid < 0)
		gid = uid;
	gid_t g = (gid_t)gid;
	if (setgroups(1, &g) < 0 || setgid(g) < 0 || setuid((uid_t)uid) < 0)
		fail(errno, "USER %s: %s", o.user, strerror(errno));
}

/* execvp with the PATH of the payload's own environment (the container's, not this program's). */
static void
exec_payload(void)
{
	const char *file = o.argv[0];
	if (strchr(file, '/')) {
		execv(file, o.argv);
		fail(errno, "exec: \"%s\": %s", file, errno == EACCES ? "permission denied" : strerror(errno));
	}
	const char *path = getenv("PATH");
	if (path == NULL)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	int e = ENOENT;
	while (*path) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);
		char cand[PATH_MAX];
		snprintf(cand, sizeof(cand), "%.*s/%s", (int)len, len ? path : ".", file);
		execv(cand, o.argv);
		if (errno != ENOENT && errno != ENOTDIR)
			e = errno;
		path += len + (colon ? 1 : 0);
	}
	fail(e, "exec: \"%s\": %s", file,
	     e == ENOENT ? "executable file not found in $PATH" : e == EACCES ? "permission denied" : strerror(e));
}

static void
forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static void
forward_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward;
	sa.sa_flags = SA_RESTART;
	/* With a terminal too: the payload's terminal is the container's own (see relay), and the host's side is
	 * raw, so signals reach the payload only this way. */
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaction(forwarded[i], &sa, NULL);
}

static void
default_signals(void)
{
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		signal(forwarded[i], SIG_DFL);
}

/* Wait for pid (reaping anything else that ends meanwhile, as PID 1 must), then exit the same way. */
static void __attribute__((noreturn))
wait_and_exit(pid_t pid)
{
	int status;
	for (;;) {
		pid_t r = wait(&status);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			_exit(125);
		if (r == pid)
			break;
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		signal(sig, SIG_DFL);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		prctl(PR_SET_DUMPABLE, 0);
		kill(getpid(), sig);
		/* PID 1 cannot kill itself with a signal it has no handler for: exit as a shell would. */
		_exit(128 + sig);
	}
	_exit(WEXITSTATUS(status));
}

/* ---- terminals ----
 * The terminal Cove gives a container (stdin/stdout/stderr) belongs to the host's devpts, which the container
 * cannot see: `tty` would say "not a tty". So with --pty the payload gets a terminal of the container's own
 * devpts, and this program relays bytes between the two, with the host side raw (the container's line
 * discipline handles ^C and the like) and window size changes passed on. */

/* Open a terminal in the container's devpts: its master, and the slave's path in *slave. */
static int
open_container_pty(char *slave, size_t len)
{
	/* devpts's own ptmx: /dev/ptmx is a symlink in a tmpfs the container's root may change, while /dev/pts is a
	 * mount point it cannot replace. */
	int m = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		fail(errno, "open the container's /dev/ptmx: %s", strerror(errno));
	if (unlockpt(m) < 0 || ptsname_r(m, slave, len) != 0)
		fail(errno, "set up the container's terminal: %s", strerror(errno));
	/* Its owner is whoever opened it: with a user namespace, make that the container's root, as it would be
	 * had the container opened it (so it may reopen it by name). */
	if (o.userns_fd >= 0 && chown(slave, o.userns_base, o.userns_base) < 0)
		fail(errno, "set up the container's terminal: chown %s: %s", slave, strerror(errno));
	cove_pty_copy_winsize(0, m);
	return m;
}

static void __attribute__((noreturn))
exit_like(int status)
{
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		signal(sig, SIG_DFL);
		kill(getpid(), sig);
		_exit(128 + sig);
	}
	_exit(WEXITSTATUS(status));
}

/* Fork the payload: it runs in the workdir, as the user, with fewer capabilities, and the report descriptor
 * closes when it execs. */
static void __attribute__((noreturn))
run_payload(void)
{
	char slave[128];
	int m = o.pty ? open_container_pty(slave, sizeof(slave)) : -1;
	pid_t pid = fork();
	if (pid < 0)
		fail(errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		default_signals();
		if (!o.pty) {
			setpgid(0, 0);
		} else {
			/* A session of its own, led on the container's terminal. */
			setsid();
			int s = open(slave, O_RDWR);
			if (s < 0)
				fail(errno, "open %s: %s", slave, strerror(errno));
			ioctl(s, TIOCSCTTY, 0);
			dup2(s, 0);
			dup2(s, 1);
			dup2(s, 2);
			if (s > 2)
				close(s);
		}
		if (o.userns_fd >= 0) {
			char msg[256];
			int r = cove_userns_enter(o.userns_fd, msg, sizeof(msg));
			if (r < 0)
				fail(-r, "%s", msg);
			prctl(PR_SET_PDEATHSIG, SIGKILL); /* changing credentials cleared it */
		}
		if (o.workdir) {
			struct stat st;
			if (stat(o.workdir, &st) < 0 && errno == ENOENT)
				mkdirs(o.workdir, 0755);
			if (chdir(o.workdir) < 0)
				fail(errno, "workdir %s: %s", o.workdir, strerror(errno));
		}
		drop_caps();
		/* no_new_privs: exec can never gain privileges (set-user-id programs, file capabilities), and the
		 * filter below may be loaded without CAP_SYS_ADMIN. */
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			fail(errno, "no_new_privs: %s", strerror(errno));
		switch_user();
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a change of user cleared it */
		if (o.report_fd >= 0)
			fcntl(o.report_fd, F_SETFD, FD_CLOEXEC);
		char msg[256];
		int r = cove_seccomp_load(msg, sizeof(msg));
		if (r < 0)
			fail(-r, "%s", msg);
		exec_payload();
	}
	child_pid = pid;
	if (o.report_fd >= 0)
		close(o.report_fd);
	if (m >= 0)
		exit_like(cove_pty_relay(m, pid));
	wait_and_exit(pid);
}

/* Enter the namespaces of the container whose shim is o.join; its user namespace (the shim enters it before the
 * container counts as started) is kept in o.userns_fd for the payload to enter last. */
static void
join_container(void)
{
	static const char *const kinds[] = {"cgroup", "ipc", "uts", "net", "pid_for_children", "mnt"};
	enum { N = sizeof(kinds) / sizeof(kinds[0]) };
	int fds[N];
	for (int i = 0; i < N; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)o.join, kinds[i]);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			fail(errno == ENOENT ? ESRCH : errno, "the container has ended (%s: %s)", path, strerror(errno));
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)o.join);
	int user = open(path, O_RDONLY | O_CLOEXEC);
	struct stat theirs, ours;
	if (user < 0 || fstat(user, &theirs) < 0 || stat("/proc/self/ns/user", &ours) < 0)
		fail(errno == ENOENT ? ESRCH : errno, "the container has ended (%s: %s)", path, strerror(errno));
	/* With --userns BASE (the container was started with it), the target must be in a namespace of its own that
	 * maps exactly that range: never run a joined process as the host's root because the pid now names
	 * something else. */
	if (theirs.st_ino != ours.st_ino || theirs.st_dev != ours.st_dev) {
		o.userns_fd = user;
		snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)o.join);
		FILE *f = fopen(path, "re");
		unsigned inside, base, count;
		if (f == NULL || fscanf(f, "%u %u %u", &inside, &base, &count) != 3 || inside != 0 ||
		    (o.userns && (base != o.userns_base || count != COVE_USERNS_IDS)))
			fail(ESRCH, "the container has ended (%s is not its map)", path);
		fclose(f);
		o.userns_base = base;
	} else {
		if (o.userns)
			fail(ESRCH, "the container has ended (pid %d is not in its user namespace)", (int)o.join);
		close(user);
	}
	for (int i = 0; i < N; i++) {
		if (setns(fds[i], 0) < 0)
			fail(errno, "enter the container's %s namespace: %s", kinds[i], strerror(errno));
		close(fds[i]);
	}
}

/* --net-holder: a network namespace with pasta, ready before a container asks for it; held until stdin closes. */
static void __attribute__((noreturn))
hold_network(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* with Cove; pasta goes with this process */
	int go = start_pasta();
	if (unshare(CLONE_NEWNET) < 0)
		fail(errno, "unshare a network namespace: %s", strerror(errno));
	/* For a container in a user namespace, which holds no capability over this network (see setup_rootfs). */
	write_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
	if (write(go, "g", 1) != 1)
		fail(errno, "start pasta: %s", strerror(errno));
	close(go);
	wait_network();
	static const char ready[] = "ready\n";
	if (write(1, ready, sizeof(ready) - 1) < 0)
		_exit(1);
	char buf[64];
	for (;;) {
		ssize_t r = read(0, buf, sizeof(buf));
		if (r == 0 || (r < 0 && errno != EINTR))
			_exit(0);
	}
}

/* Close every descriptor but stdin, stdout, stderr and the report descriptor: nothing Cove holds open may leak
 * into a container. */
static void
close_inherited(void)
{
	int keep = o.report_fd > 2 ? o.report_fd : -1;
	if (keep < 0) {
		syscall(SYS_close_range, 3U, ~0U, 0U);
		return;
	}
	if (keep > 3)
		syscall(SYS_close_range, 3U, (unsigned)keep - 1, 0U);
	syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0U);
}

int
main(int argc, char **argv)
{
	parse_args(argc, argv);
	close_inherited();
	if (o.net_holder)
		hold_network();
	if (o.report_fd >= 0)
		fcntl(o.report_fd, F_SETFD, FD_CLOEXEC);
	join_cgroups(o.cgroups, o.n_cgroups);
	forward_signals();
	if (o.join) {
		join_cgroups(o.late_cgroups, o.n_late_cgroups);
		join_container();
		run_payload();
	}
	/* A cgroup namespace too: the container sees its own groups as the root (and cannot name the host's). */
	int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWCGROUP |
		    (o.net != NET_HOST ? CLONE_NEWNET : 0);
	int pasta_go = o.net == NET_PRIVATE ? start_pasta() : -1;
	int net_from = -1;
	if (o.net_from > 0) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)o.net_from);
		if ((net_from = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			fail(errno, "the container's network (%s): %s", path, strerror(errno));
	}
	if (o.userns) {
		char msg[256];
		o.userns_fd = cove_userns_create(o.userns_base, msg, sizeof(msg));
		if (o.userns_fd < 0)
			fail(-o.userns_fd, "%s", msg);
	}
	if (unshare(flags) < 0)
		fail(errno, "unshare the container's namespaces: %s", strerror(errno));
	if (net_from >= 0) {
		if (setns(net_from, CLONE_NEWNET) < 0)
			fail(errno, "enter the container's network namespace: %s", strerror(errno));
		close(net_from);
	}
	if (pasta_go >= 0) {
		/* The namespace exists: pasta may join it (and configures it while PID 1 assembles the root). */
		if (write(pasta_go, "g", 1) != 1)
			fail(errno, "start pasta: %s", strerror(errno));
		close(pasta_go);
	}
	int alive[2];
	if (pipe2(alive, O_CLOEXEC) < 0)
		fail(errno, "pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fail(errno, "fork the container's init: %s", strerror(errno));
	close(alive[pid == 0 ? 1 : 0]);
	shim_alive = alive[0];
	if (pid == 0) {
		/* PID 1: dies with the shim (and with it, everything in the namespace). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* A group of its own: Cove signals the shim's group, the shim passes signals on, and so does PID 1,
		 * so the payload gets each signal once. With a terminal all three share the foreground group. */
		if (!o.pty)
			setpgid(0, 0);
		setup_rootfs();
		/* The payload runs as root in PID 1's namespaces: not dumpable, PID 1's memory and descriptors stay out
		 * of its reach through /proc/1 (with ptrace refused by the filter as well). */
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		run_payload();
	}
	child_pid = pid;
	/* The shim enters the user namespace too, so that --join finds it in /proc/<shim>/ns/user; before its copy
	 * of the report descriptor closes, so before the container counts as started. It needs no privilege
	 * after this: it waits, and passes signals on to PID 1, which has its uid. */
	if (o.userns_fd >= 0) {
		if (setns(o.userns_fd, CLONE_NEWUSER) < 0)
			fail(errno, "enter the container's user namespace: %s", strerror(errno));
		/* Still the host's uid 0, now with every capability over the container's namespace: keep none, and
		 * be out of reach of ptrace and /proc should the container ever see this process. */
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
		struct __user_cap_data_struct none[2];
		memset(none, 0, sizeof(none));
		if (syscall(SYS_capset, &hdr, none) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			fail(errno, "drop the shim's capabilities: %s", strerror(errno));
	}
	if (o.report_fd >= 0)
		close(o.report_fd);
	wait_and_exit(pid);
}
