/* User namespaces and idmapped mounts for cove-container (see idmap.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>

#include "runtime/idmap.h"

static int
failed(int e, char *msg, size_t len, const char *what)
{
	snprintf(msg, len, "%s: %s", what, strerror(e));
	return -e;
}

static int
write_map(pid_t pid, const char *file, const char *map)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, map, strlen(map));
	int e = errno;
	close(fd);
	return w == (ssize_t)strlen(map) ? 0 : -(w < 0 ? e : EIO);
}

int
cove_userns_create(unsigned base, char *msg, size_t msg_len)
{
	/* A child unshares the namespace; this process, in the parent namespace, writes its maps (only a process
	 * there may map more than its own id) and keeps a descriptor, which keeps the namespace once the child
	 * is gone. */
	int ready[2], done[2];
	if (pipe2(ready, O_CLOEXEC) < 0)
		return failed(errno, msg, msg_len, "user namespace: pipe");
	if (pipe2(done, O_CLOEXEC) < 0) {
		int e = errno;
		close(ready[0]);
		close(ready[1]);
		return failed(e, msg, msg_len, "user namespace: pipe");
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(ready[0]);
		close(ready[1]);
		close(done[0]);
		close(done[1]);
		return failed(e, msg, msg_len, "user namespace: fork");
	}
	if (pid == 0) {
		close(ready[0]);
		close(done[1]);
		char c = unshare(CLONE_NEWUSER) < 0 ? 'e' : 'r';
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		(void)!read(done[0], &c, 1);
		_exit(0);
	}
	close(ready[1]);
	close(done[0]);
	char c = 0;
	int rv;
	if (read(ready[0], &c, 1) != 1 || c != 'r') {
		rv = failed(EPERM, msg, msg_len, "user namespace: unshare (are user namespaces enabled?)");
		goto out;
	}
	char map[64];
	snprintf(map, sizeof(map), "0 %u %u\n", base, COVE_USERNS_IDS);
	if ((rv = write_map(pid, "uid_map", map)) < 0 || (rv = write_map(pid, "gid_map", map)) < 0) {
		rv = failed(-rv, msg, msg_len, "user namespace: write its id maps");
		goto out;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	rv = open(path, O_RDONLY | O_CLOEXEC);
	if (rv < 0)
		rv = failed(errno, msg, msg_len, "user namespace: open it");
out:
	close(ready[0]);
	close(done[1]); /* the child exits */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return rv;
}

int
cove_mount_bind(const char *src, int dst_fd, int userns_fd, unsigned long long attrs, int recursive, char *msg,
		size_t msg_len)
{
	char what[160];
	unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
	int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, flags);
	if (tree < 0) {
		snprintf(what, sizeof(what), "bind mount of %s: open_tree", src);
		return failed(errno, msg, msg_len, what);
	}
	struct mount_attr attr = {.attr_set = attrs};
	if (userns_fd >= 0) {
		attr.attr_set |= MOUNT_ATTR_IDMAP;
		attr.userns_fd = (unsigned long long)userns_fd;
	}
	int rv = 0;
	if (attr.attr_set && syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
				     sizeof(attr)) < 0) {
		snprintf(what, sizeof(what), "%sbind mount of %s", userns_fd >= 0 ? "idmapped " : "", src);
		rv = failed(errno, msg, msg_len, what);
	} else if (syscall(SYS_move_mount, tree, "", dst_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
		snprintf(what, sizeof(what), "bind mount of %s", src);
		rv = failed(errno, msg, msg_len, what);
	}
	close(tree);
	return rv;
}

int
cove_userns_enter(int userns_fd, char *msg, size_t msg_len)
{
	if (setns(userns_fd, CLONE_NEWUSER) < 0)
		return failed(errno, msg, msg_len, "enter the container's user namespace");
	gid_t root = 0;
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0 || setgroups(1, &root) < 0)
		return failed(errno, msg, msg_len, "become root of the container's user namespace");
	return 0;
}
