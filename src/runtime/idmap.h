/* User namespaces for containers, and the idmapped mounts that let a container's root own its files without
 * being the host's root (cove-container's half of it; Linux 5.19 or later, for overlayfs on idmapped layers).
 *
 * A container's user namespace maps its ids 0..COVE_USERNS_IDS-1 to the host's base..base+COVE_USERNS_IDS-1, so
 * container root is an unprivileged host user with no capability outside the namespace. Every file system the
 * container sees (the image's layers, its writable layer, its bind mounts) is mounted idmapped through that same
 * namespace: a file the host stores as owned by uid N shows in the container as owned by N, and a file the
 * container makes as N is stored as N. On disk nothing changes, so snapshots, builds and volume syncs read
 * ordinary ownership, and which host ids a container runs as is a detail of its namespace. */
#ifndef COVE_RUNTIME_IDMAP_H
#define COVE_RUNTIME_IDMAP_H

#include <stddef.h>
#include <sys/types.h>

/* How many ids each container's namespace maps. */
#define COVE_USERNS_IDS 65536u

/* A new user namespace mapping 0..COVE_USERNS_IDS-1 to base..: a descriptor of it (O_CLOEXEC), or -errno (what
 * failed in msg). The caller needs CAP_SETUID and CAP_SETGID in its own namespace. */
int cove_userns_create(unsigned base, char *msg, size_t msg_len);

/* A bind mount of src (a path, resolved as the caller sees it: a host path) at the mount point dst_fd (an O_PATH
 * descriptor, so where it lands was resolved once, by the caller), with the MOUNT_ATTR_* flags in attrs
 * (read-only, nosuid, nodev, noexec) set before it is attached, on every submount too when recursive. With
 * userns_fd >= 0 the mount is idmapped through that namespace. 0, or -errno: -EINVAL among others where a file
 * system of src cannot be idmapped (the caller may bind it plainly, userns_fd -1, instead). */
int cove_mount_bind(const char *src, int dst_fd, int userns_fd, unsigned long long attrs, int recursive, char *msg,
		    size_t msg_len);

/* Enter the namespace userns_fd as its root (uid and gid 0, no supplementary groups). The caller must be single
 * threaded and hold CAP_SYS_ADMIN over the namespace (its creator's namespace root does). 0, or -errno. */
int cove_userns_enter(int userns_fd, char *msg, size_t msg_len);

#endif
