#include "util/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/safepath.h"

int
cove_mkdirs(const char *path, struct cove_error **err)
{
	cleanup_free char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return cove_error_set_errno(err, errno, "mkdir %s", p);
		*s = '/';
	}
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return cove_error_set_errno(err, errno, "mkdir %s", p);
	return 0;
}

static int
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
cove_copy_fd(int in, int out)
{
	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n == 0)
			return 0;
		if (n > 0)
			continue;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
			return -1;
		break;
	}
	char buf[65536];
	for (;;) {
		ssize_t r = read(in, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (write_all(out, buf, (size_t)r) < 0)
			return -1;
	}
}

int
cove_write_file_atomic(const char *path, const void *data, size_t len, int mode, struct cove_error **err)
{
	cleanup_free char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	cleanup_close int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return cove_error_set_errno(err, errno, "create %s", tmp);
	if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return cove_error_set_errno(err, e, "write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return cove_error_set_errno(err, e, "rename %s", path);
	}
	cleanup_free char *dir = xstrdup(path);
	cleanup_close int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	return 0;
}

int
cove_read_file(const char *path, uint8_t **out, size_t *len, struct cove_error **err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return cove_error_set(err, COVE_NOT_FOUND, "%s does not exist", path);
		return cove_error_set_errno(err, errno, "open %s", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return cove_error_set_errno(err, errno, "stat %s", path);
	size_t cap = (size_t)st.st_size;
	uint8_t *buf = xmalloc(cap + 1);
	size_t got = 0;
	for (;;) {
		if (got == cap) {
			cap = cap * 2 + 4096;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t n = read(fd, buf + got, cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			free(buf);
			return cove_error_set_errno(err, e, "read %s", path);
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

int
cove_remove_tree(const char *path, struct cove_error **err)
{
	/* By descriptors, never following a symlink: the trees removed here (task roots, volume views, build
	 * scratch) are often ones a container wrote, and may still be changing. */
	cleanup_free char *copy = xstrdup(path);
	size_t n = strlen(copy);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	char *slash = strrchr(copy, '/');
	const char *name = copy;
	const char *parent = ".";
	if (slash == copy) {
		parent = "/";
		name = copy + 1;
	} else if (slash) {
		*slash = '\0';
		parent = copy;
		name = slash + 1;
	}
	if (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "remove %s: not a removable path", path);
	cleanup_close int dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		if (errno == ENOENT)
			return 0;
		return cove_error_set_errno(err, errno, "remove %s", path);
	}
	if (cove_safe_remove_at(dfd, name) < 0)
		return cove_error_set_errno(err, errno, "remove %s", path);
	return 0;
}
