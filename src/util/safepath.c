/* Walks beneath a root (see safepath.h). */
#include "util/safepath.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/alloc.h"

/* glibc 2.36 (bookworm) has no openat2 wrapper. */
static int
sys_openat2(int dirfd, const char *path, struct open_how *how)
{
	return (int)syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
}

int
cove_safe_open(int dirfd, const char *path, int oflags, mode_t mode, int how_flags)
{
	struct open_how how = {
		.flags = (uint64_t)(oflags | O_CLOEXEC),
		.mode = (oflags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = (how_flags & COVE_SAFE_IN_ROOT) ? RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
							  : RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	if (path[0] == '\0')
		path = ".";
	int fd;
	do
		fd = sys_openat2(dirfd, path, &how);
	while (fd < 0 && (errno == EINTR || errno == EAGAIN)); /* EAGAIN: a rename raced the lookup */
	return fd;
}

int
cove_safe_open_dir(int dirfd, const char *path, int create, mode_t mode)
{
	int fd = cove_safe_open(dirfd, path, O_RDONLY | O_DIRECTORY, 0, 0);
	if (fd >= 0 || !create || errno != ENOENT)
		return fd;
	/* Some component is missing: walk down one directory at a time, making what is not there. */
	fd = cove_safe_open(dirfd, ".", O_RDONLY | O_DIRECTORY, 0, 0);
	if (fd < 0)
		return -1;
	cleanup_free char *copy = xstrdup(path);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		int next = cove_safe_open(fd, c, O_RDONLY | O_DIRECTORY, 0, 0);
		if (next < 0 && errno == ENOENT) {
			if (mkdirat(fd, c, mode) < 0 && errno != EEXIST) {
				int e = errno;
				close(fd);
				errno = e;
				return -1;
			}
			next = cove_safe_open(fd, c, O_RDONLY | O_DIRECTORY, 0, 0);
		}
		int e = errno;
		close(fd);
		if (next < 0) {
			errno = e;
			return -1;
		}
		fd = next;
	}
	return fd;
}

int
cove_safe_open_parent(int dirfd, const char *path, int create, mode_t mode, const char **name)
{
	size_t n = strlen(path);
	while (n > 0 && path[n - 1] == '/')
		n--;
	size_t start = n;
	while (start > 0 && path[start - 1] != '/')
		start--;
	size_t len = n - start;
	if (len == 0 || (len == 1 && path[start] == '.') || (len == 2 && path[start] == '.' && path[start + 1] == '.') ||
	    n != strlen(path)) {
		errno = EINVAL;
		return -1;
	}
	cleanup_free char *parent = xstrndup(path, start);
	*name = path + start;
	return cove_safe_open_dir(dirfd, parent, create, mode);
}

int
cove_safe_open_regular(int dirfd, const char *name, struct stat *st_out)
{
	int pfd = cove_safe_open(dirfd, name, O_PATH | O_NOFOLLOW, 0, 0);
	if (pfd < 0)
		return -1;
	struct stat st;
	if (fstat(pfd, &st) < 0) {
		int e = errno;
		close(pfd);
		errno = e;
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(pfd);
		errno = S_ISLNK(st.st_mode) ? ELOOP : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		return -1;
	}
	/* The O_PATH descriptor pins the inode: reopening it through procfs opens that regular file, whatever is at
	 * the name by now. */
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	int fd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	int e = errno;
	close(pfd);
	if (fd < 0 && e == ENOENT) {
		/* No /proc: open the name again (non-blocking, so a FIFO swapped in meanwhile cannot hang us) and
		 * check it is still the same file. */
		fd = cove_safe_open(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0, 0);
		e = errno;
		struct stat again;
		if (fd >= 0 && (fstat(fd, &again) < 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino ||
				fcntl(fd, F_SETFL, 0) < 0)) {
			close(fd);
			fd = -1;
			e = EINVAL;
		}
	}
	if (fd < 0) {
		errno = e;
		return -1;
	}
	if (st_out)
		*st_out = st;
	return fd;
}

/* Empty directory fd (its entries, recursively). */
static int
remove_children(int fd, int depth)
{
	if (depth > 4096) {
		errno = ELOOP;
		return -1;
	}
	int dup_fd = dup(fd);
	if (dup_fd < 0)
		return -1;
	DIR *d = fdopendir(dup_fd);
	if (d == NULL) {
		int e = errno;
		close(dup_fd);
		errno = e;
		return -1;
	}
	int rv = 0, first_err = 0;
	struct dirent *de;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(fd, de->d_name, 0) == 0 || errno == ENOENT)
			continue;
		if (errno != EISDIR && errno != EPERM) {
			if (!first_err)
				first_err = errno;
			continue;
		}
		int sub = cove_safe_open(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
		if (sub < 0) {
			if (errno != ENOENT && !first_err)
				first_err = errno;
			continue;
		}
		if (remove_children(sub, depth + 1) < 0 && !first_err)
			first_err = errno;
		close(sub);
		if (unlinkat(fd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT && !first_err)
			first_err = errno;
	}
	if (errno != 0 && !first_err)
		first_err = errno;
	closedir(d);
	if (first_err) {
		errno = first_err;
		rv = -1;
	}
	return rv;
}

int
cove_safe_remove_at(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	int fd = cove_safe_open(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	int rv = remove_children(fd, 0);
	int e = errno;
	close(fd);
	if (rv < 0) {
		errno = e;
		return -1;
	}
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -1;
	return 0;
}
