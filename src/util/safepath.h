/* File-system walks that never leave a root: for every host-side walk of a tree a container can write (volume
 * views, image layers and stages, sandbox snapshots, build scratch).
 *
 * Paths are resolved by the kernel with openat2(2) beneath a directory descriptor, with RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: an absolute path, a ".." above the root, any symlink on the way
 * (or, unless asked for with O_PATH | O_NOFOLLOW, as the last component) and /proc magic links fail instead of
 * being followed (EXDEV, ELOOP). With COVE_SAFE_IN_ROOT, symlinks are followed as if the root were "/"
 * (RESOLVE_IN_ROOT): what a path means inside an image's root, never what it means on the host. Everything else
 * works on directory descriptors (fstatat with AT_SYMLINK_NOFOLLOW, O_NOFOLLOW, mkdirat, unlinkat, renameat), so
 * a directory swapped for a symlink between two steps cannot redirect the next one. The same approach as runc's
 * (github.com/cyphar/filepath-securejoin) and the openat2 man page's.
 *
 * All functions return -1 with errno set on failure (no struct cove_error: callers decide what a refusal
 * means, e.g. "changed by the container meanwhile"). Descriptors returned are O_CLOEXEC. */
#ifndef COVE_UTIL_SAFEPATH_H
#define COVE_UTIL_SAFEPATH_H

#include <sys/stat.h>
#include <sys/types.h>

/* Resolve symlinks inside the root, as if it were "/" (RESOLVE_IN_ROOT), instead of refusing them. */
#define COVE_SAFE_IN_ROOT 1

/* openat2(dirfd, path, oflags | O_CLOEXEC, mode) resolved beneath dirfd (see above). "" or "." is dirfd itself.
 * Never follows a symlink unless how has COVE_SAFE_IN_ROOT. */
int cove_safe_open(int dirfd, const char *path, int oflags, mode_t mode, int how);

/* The directory at path beneath dirfd (O_RDONLY | O_DIRECTORY). create: missing directories are made (mode),
 * as mkdir -p would, one mkdirat at a time; an existing non-directory or symlink on the way is ENOTDIR / ELOOP. */
int cove_safe_open_dir(int dirfd, const char *path, int create, mode_t mode);

/* The parent directory of path beneath dirfd (made if create), and *name points at path's last component
 * (within path). A path with no last component ("", "/", ".", a trailing "..") is EINVAL. */
int cove_safe_open_parent(int dirfd, const char *path, int create, mode_t mode, const char **name);

/* Open the regular file `name` in directory dirfd for reading, never opening anything else: a symlink is ELOOP,
 * a directory EISDIR, and a FIFO, socket or device node EINVAL without being opened (it is looked at through an
 * O_PATH descriptor first, then reopened through /proc/self/fd, so no swap between the two can make Cove open a
 * device or block on a FIFO; without /proc, the name is reopened with O_NONBLOCK and must still be the same
 * inode). *st (if not NULL) gets the file's stat. */
int cove_safe_open_regular(int dirfd, const char *name, struct stat *st);

/* rm -rf of `name` in directory dirfd, walking by descriptors and never following a symlink (a symlink is
 * removed, not what it points at). A missing name is success. */
int cove_safe_remove_at(int dirfd, const char *name);

#endif
