/* cove-sandbox-fs-tools: Cove's own implementation of the helper that the official client runs inside a
 * sandbox for Sandbox.filesystem (`/__modal/.bin/modal-sandbox-fs-tools '<json command>'`).
 *
 * The contract (modal/sandbox/_filesystem.py, modal/_utils/sandbox_fs_utils.py): one JSON command as the only
 * argument; file contents on stdout (ReadFile) or stdin (WriteFile); ListFiles and Stat print JSON entries
 * {name, path, type, size, mode, permissions ("0644"), owner, group, modified_time, symlink_target?}; Watch
 * prints one JSON event {event_type, paths} per line until its timeout passes or stdin closes. A failure exits
 * 1 with {"version": 1, "error_kind", "message", "detail"?} on stderr, error_kind being one the client maps to
 * an exception (NotFound, NotDirectory, IsDirectory, IsFile, PathAlreadyExists, AlreadyExists,
 * DirectoryNotEmpty, PermissionDenied, FileTooLarge; anything else is a generic SandboxFilesystemError). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/fs_command.h"

#define MAX_READ_BYTES ((off_t)5 << 30) /* as Modal's helper: larger files are FileTooLarge */
#define MAX_WATCHES 65536

static void __attribute__((noreturn))
fail(const char *kind, const char *message, const char *detail)
{
	fputs("{\"version\":1,\"error_kind\":", stderr);
	json_write_string(stderr, kind);
	fputs(",\"message\":", stderr);
	json_write_string(stderr, message);
	if (detail) {
		fputs(",\"detail\":", stderr);
		json_write_string(stderr, detail);
	}
	fputs("}", stderr);
	fflush(stderr);
	exit(1);
}

/* The error kind for errno e, with what (the message when there is no better one). */
static void __attribute__((noreturn))
fail_errno(int e, const char *what)
{
	switch (e) {
	case ENOENT:
		fail("NotFound", "path does not exist", NULL);
	case ENOTDIR:
		fail("NotDirectory", "a component of the path is not a directory", NULL);
	case EACCES:
	case EPERM:
		fail("PermissionDenied", "permission denied", NULL);
	case EISDIR:
		fail("IsDirectory", "expected a file path", NULL);
	case ENOTEMPTY:
		fail("DirectoryNotEmpty", "directory is not empty", NULL);
	case EEXIST:
		fail("PathAlreadyExists", "path already exists", NULL);
	default:
		fail("Io", what, strerror(e));
	}
}

/* ---- entries ---- */

static void
write_entry(FILE *f, const char *name, const char *path, const struct stat *st)
{
	const char *type = S_ISLNK(st->st_mode) ? "symlink" : S_ISDIR(st->st_mode) ? "directory" : "file";
	char owner[64], group[64];
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	char buf[4096];
	if (getpwuid_r(st->st_uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp)
		snprintf(owner, sizeof(owner), "%s", pw.pw_name);
	else
		snprintf(owner, sizeof(owner), "%u", (unsigned)st->st_uid);
	if (getgrgid_r(st->st_gid, &gr, buf, sizeof(buf), &grp) == 0 && grp)
		snprintf(group, sizeof(group), "%s", gr.gr_name);
	else
		snprintf(group, sizeof(group), "%u", (unsigned)st->st_gid);
	fputs("{\"name\":", f);
	json_write_string(f, name);
	fputs(",\"path\":", f);
	json_write_string(f, path);
	fprintf(f, ",\"type\":\"%s\",\"size\":%lld,\"mode\":%u,\"permissions\":\"%04o\",\"owner\":", type,
		(long long)st->st_size, (unsigned)st->st_mode, (unsigned)(st->st_mode & 07777));
	json_write_string(f, owner);
	fputs(",\"group\":", f);
	json_write_string(f, group);
	fprintf(f, ",\"modified_time\":%.6f", (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9);
	if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		fputs(",\"symlink_target\":", f);
		json_write_string(f, target);
	}
	fputs("}", f);
}

/* dir + "/" + name, without doubling a trailing slash. Caller frees. */
static char *
join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	char *out = malloc(n + strlen(name) + 2);
	if (out == NULL)
		abort();
	sprintf(out, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
	return out;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
cmd_list(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		if (errno == ENOTDIR || errno == EACCES || errno == EPERM)
			fail_errno(errno, "stat");
		fail("NotFound", "path does not exist", NULL);
	}
	if (!S_ISDIR(st.st_mode))
		fail("IsFile", "expected a directory path", NULL);
	DIR *d = opendir(path);
	if (d == NULL)
		fail_errno(errno, "open directory");
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (names == NULL)
				abort();
		}
		names[n] = strdup(de->d_name);
		if (names[n++] == NULL)
			abort();
	}
	if (errno)
		fail_errno(errno, "read directory");
	closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	putchar('[');
	int first = 1;
	for (size_t i = 0; i < n; i++) {
		char *full = join(path, names[i]);
		struct stat es;
		if (lstat(full, &es) == 0) {
			if (!first)
				putchar(',');
			write_entry(stdout, names[i], full, &es);
			first = 0;
		}
		free(full);
		free(names[i]);
	}
	putchar(']');
	free(names);
}

static void
cmd_stat(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		fail_errno(errno, "stat");
	char name[PATH_MAX];
	snprintf(name, sizeof(name), "%s", path);
	size_t n = strlen(name);
	while (n > 1 && name[n - 1] == '/')
		name[--n] = '\0';
	const char *base = strrchr(name, '/');
	write_entry(stdout, base && base[1] ? base + 1 : name, path, &st);
}

/* ---- contents ---- */

static void
cmd_read(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		fail_errno(errno, "stat");
	if (S_ISDIR(st.st_mode))
		fail("IsDirectory", "expected a file path", NULL);
	if (st.st_size > MAX_READ_BYTES) {
		char msg[128];
		snprintf(msg, sizeof(msg), "file is %lld bytes, which exceeds the %lld byte limit", (long long)st.st_size,
			 (long long)MAX_READ_BYTES);
		fail("FileTooLarge", msg, NULL);
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_errno(errno, "open");
	for (;;) {
		ssize_t n = sendfile(1, fd, NULL, 1 << 30);
		if (n > 0)
			continue;
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EINVAL && errno != ENOSYS)
			fail_errno(errno, "read");
		/* stdout or the file cannot sendfile: copy through a buffer. */
		char buf[65536];
		for (;;) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				fail_errno(errno, "read");
			if (r == 0)
				break;
			for (ssize_t off = 0; off < r;) {
				ssize_t w = write(1, buf + off, (size_t)(r - off));
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					fail_errno(errno, "write");
				off += w;
			}
		}
		break;
	}
	close(fd);
}

/* mkdir -p; 0 or -1 with errno (EEXIST: something that is not a directory is in the way). */
static int
mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0) {
			struct stat st;
			if (errno != EEXIST)
				return -1;
			if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
				errno = i == n ? EEXIST : ENOTDIR;
				return -1;
			}
		}
		buf[i] = c;
	}
	return 0;
}

static void
cmd_write(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		fail("IsDirectory", "expected a file path", NULL);
	char parent[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s", path);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		if (stat(parent, &st) == 0 && !S_ISDIR(st.st_mode))
			fail("AlreadyExists", "a component of the path is not a directory", NULL);
		if (mkdirs(parent) < 0)
			fail_errno(errno == EEXIST ? ENOTDIR : errno, "create parent directories");
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail_errno(errno, "open");
	char buf[65536];
	for (;;) {
		ssize_t r = read(0, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail_errno(errno, "read stdin");
		if (r == 0)
			break;
		for (ssize_t off = 0; off < r;) {
			ssize_t w = write(fd, buf + off, (size_t)(r - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				fail_errno(errno, "write");
			off += w;
		}
	}
	if (close(fd) < 0)
		fail_errno(errno, "close");
}

static void
cmd_mkdir(const char *path, int parents)
{
	if (parents) {
		if (mkdirs(path) < 0)
			fail_errno(errno, "create directory");
		return;
	}
	if (mkdir(path, 0755) < 0) {
		if (errno == ENOENT)
			fail("NotFound", "parent directory does not exist", NULL);
		fail_errno(errno, "create directory");
	}
}

static int
remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? errno : 0;
}

static void
cmd_remove(const char *path, int recursive)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		fail_errno(errno, "stat");
	int r;
	if (!S_ISDIR(st.st_mode))
		r = unlink(path);
	else if (recursive)
		r = (errno = nftw(path, remove_one, 64, FTW_DEPTH | FTW_PHYS)) != 0 ? -1 : 0;
	else
		r = rmdir(path);
	if (r < 0)
		fail_errno(errno, "remove");
}

/* ---- watch ---- */

struct watch {
	int fd;
	char **paths; /* by watch descriptor */
	int max_wd;
	unsigned filter;
	int recursive;
	uint32_t mask;
};

static void
watch_add(struct watch *w, const char *path, int top)
{
	int wd = inotify_add_watch(w->fd, path, w->mask);
	if (wd < 0) {
		if (top)
			fail_errno(errno, "watch");
		return;
	}
	if (wd >= MAX_WATCHES)
		fail("Io", "too many directories to watch", NULL);
	if (wd > w->max_wd) {
		w->paths = realloc(w->paths, (size_t)(wd + 1) * sizeof(char *));
		if (w->paths == NULL)
			abort();
		for (int i = w->max_wd + 1; i <= wd; i++)
			w->paths[i] = NULL;
		w->max_wd = wd;
	}
	free(w->paths[wd]);
	w->paths[wd] = strdup(path);
	if (w->paths[wd] == NULL)
		abort();
	if (!w->recursive)
		return;
	DIR *d = opendir(path);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *sub = join(path, de->d_name);
		struct stat st;
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			watch_add(w, sub, 0);
		free(sub);
	}
	closedir(d);
}

static void
emit(struct watch *w, unsigned kind, const char *name, const char *p1, const char *p2)
{
	if (!(w->filter & kind))
		return;
	fputs("{\"event_type\":", stdout);
	json_write_string(stdout, name);
	fputs(",\"paths\":[", stdout);
	json_write_string(stdout, p1);
	if (p2) {
		putchar(',');
		json_write_string(stdout, p2);
	}
	fputs("]}\n", stdout);
	if (fflush(stdout) != 0)
		exit(0); /* the reader went away */
}

static char *
event_path(struct watch *w, const struct inotify_event *e)
{
	const char *dir = e->wd >= 0 && e->wd <= w->max_wd ? w->paths[e->wd] : NULL;
	if (dir == NULL)
		return NULL;
	if (e->len == 0 || e->name[0] == '\0')
		return strdup(dir);
	return join(dir, e->name);
}

static void
watch_events(struct watch *w, char *buf, ssize_t len)
{
	for (char *p = buf; p < buf + len;) {
		const struct inotify_event *e = (const void *)p;
		p += sizeof(*e) + e->len;
		char *path = event_path(w, e);
		if (path == NULL)
			continue;
		if (e->mask & IN_CREATE) {
			emit(w, FS_EV_CREATE, "Create", path, NULL);
			if (w->recursive && (e->mask & IN_ISDIR))
				watch_add(w, path, 0);
		} else if (e->mask & (IN_MODIFY | IN_ATTRIB)) {
			emit(w, FS_EV_MODIFY, "Modify", path, NULL);
		} else if (e->mask & (IN_DELETE | IN_DELETE_SELF)) {
			emit(w, FS_EV_REMOVE, "Remove", path, NULL);
		} else if (e->mask & IN_ACCESS) {
			emit(w, FS_EV_ACCESS, "Access", path, NULL);
		} else if (e->mask & IN_MOVED_FROM) {
			/* Its other half, if it stayed inside what is watched, follows in the same read. */
			struct inotify_event *to = NULL;
			for (char *q = p; q < buf + len;) {
				struct inotify_event *f = (void *)q;
				if ((f->mask & IN_MOVED_TO) && f->cookie == e->cookie) {
					to = f;
					break;
				}
				q += sizeof(*f) + f->len;
			}
			char *dst = to ? event_path(w, to) : NULL;
			if (dst) {
				int isdir = (to->mask & IN_ISDIR) != 0;
				emit(w, FS_EV_RENAME, "Rename", path, dst);
				to->mask = 0; /* reported */
				if (w->recursive && isdir)
					watch_add(w, dst, 0);
			} else {
				emit(w, FS_EV_RENAME, "RenameFrom", path, NULL);
			}
			free(dst);
		} else if (e->mask & IN_MOVED_TO) {
			emit(w, FS_EV_RENAME, "RenameTo", path, NULL);
			if (w->recursive && (e->mask & IN_ISDIR))
				watch_add(w, path, 0);
		}
		free(path);
	}
}

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
cmd_watch(const struct fs_command *c)
{
	struct stat st;
	if (lstat(c->path, &st) < 0)
		fail_errno(errno, "stat");
	struct watch w = {.max_wd = -1, .filter = c->filter, .recursive = c->flag && S_ISDIR(st.st_mode)};
	w.mask = IN_CREATE | IN_MODIFY | IN_ATTRIB | IN_DELETE | IN_DELETE_SELF | IN_MOVED_FROM | IN_MOVED_TO;
	if (c->filter & FS_EV_ACCESS)
		w.mask |= IN_ACCESS;
	w.fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (w.fd < 0)
		fail_errno(errno, "inotify");
	watch_add(&w, c->path, 1);
	double deadline = c->timeout_s >= 0 ? now_s() + c->timeout_s : -1;
	int stdin_open = 1;
	for (;;) {
		int wait_ms = -1;
		if (deadline >= 0) {
			double left = deadline - now_s();
			if (left <= 0)
				break;
			wait_ms = (int)(left * 1000) + 1;
		}
		struct pollfd fds[2] = {{.fd = w.fd, .events = POLLIN}, {.fd = 0, .events = stdin_open ? POLLIN : 0}};
		int n = poll(fds, 2, wait_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_errno(errno, "poll");
		if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			/* The client ends a watch by closing stdin. */
			char b[256];
			ssize_t r = read(0, b, sizeof(b));
			if (r <= 0)
				break;
		}
		if (fds[0].revents & POLLIN) {
			char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
			ssize_t r = read(w.fd, buf, sizeof(buf));
			if (r > 0)
				watch_events(&w, buf, r);
		}
	}
	for (int i = 0; i <= w.max_wd; i++)
		free(w.paths[i]);
	free(w.paths);
	close(w.fd);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s '<json command>'\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_DFL);
	struct json_doc *doc = NULL;
	struct fs_command c;
	char err[256];
	if (fs_command_parse(argv[1], strlen(argv[1]), &doc, &c, err, sizeof(err)) < 0)
		fail("InvalidArgument", err, NULL);
	switch (c.op) {
	case FS_READ:
		cmd_read(c.path);
		break;
	case FS_WRITE:
		cmd_write(c.path);
		break;
	case FS_LIST:
		cmd_list(c.path);
		break;
	case FS_MKDIR:
		cmd_mkdir(c.path, c.flag);
		break;
	case FS_REMOVE:
		cmd_remove(c.path, c.flag);
		break;
	case FS_STAT:
		cmd_stat(c.path);
		break;
	case FS_WATCH:
		cmd_watch(&c);
		break;
	}
	json_free(doc);
	if (fflush(stdout) != 0)
		return 1;
	return 0;
}
