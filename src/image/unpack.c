/* Layer unpacking with libarchive (see unpack.h).
 *
 * Every entry is written by archive_write_disk under an absolute name (the target's real path + the entry's
 * cleaned name), so that libarchive never depends on the working directory (this runs on worker threads).
 * Names are cleaned and checked here; symlinks on the way are checked here too (so that a refusal is a clear
 * INVALID_ARGUMENT naming the entry) and again by libarchive's ARCHIVE_EXTRACT_SECURE_SYMLINKS. */
#include "image/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/alloc.h"

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define OVERLAY_XATTR_PREFIX "trusted.overlay."
#define OVERLAY_OPAQUE_XATTR "trusted.overlay.opaque"

#define EXTRACT_FLAGS                                                                                         \
	(ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_ACL |            \
	 ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT)

struct unpack {
	const char *path; /* the tarball, for messages */
	char *root;       /* realpath of the target */
	struct archive *in, *out;
	char **opaque; /* cleaned names of directories marked opaque ("" is the root) */
	size_t n_opaque;
	char *checked_parent; /* the last parent found free of symlinks */
	struct cove_unpack_report *report; /* what was left out, or NULL */
};

/* Clean a tar name into *out: "./a//b/" -> "a/b", "." or "./" -> "". NULL if fine, else why it is refused. */
static const char *
clean_name(const char *name, char **out)
{
	*out = NULL;
	if (name[0] == '/')
		return "is an absolute path";
	size_t n = strlen(name);
	char *buf = xmalloc(n + 1);
	size_t len = 0;
	const char *p = name;
	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t clen = (size_t)(end - p);
		if (clen == 2 && p[0] == '.' && p[1] == '.') {
			free(buf);
			return "has a '..' component";
		}
		if (clen > 0 && !(clen == 1 && p[0] == '.')) {
			if (len)
				buf[len++] = '/';
			memcpy(buf + len, p, clen);
			len += clen;
		}
		p = *end ? end + 1 : end;
	}
	buf[len] = '\0';
	*out = buf;
	return NULL;
}

static int
fail_entry(struct cove_error **err, int code, const char *name, const char *what, const char *detail)
{
	return cove_error_set(err, code, "layer entry \"%.300s\" %s%s", name, what, detail ? detail : "");
}

/* 1 if some existing component of root/rel[0..len) is a symlink (2: too long), else 0. */
static int
through_symlink(const char *root, const char *rel, size_t len)
{
	size_t root_len = strlen(root);
	if (root_len + 1 + len >= PATH_MAX)
		return 2;
	char buf[PATH_MAX];
	memcpy(buf, root, root_len);
	buf[root_len] = '/';
	memcpy(buf + root_len + 1, rel, len);
	buf[root_len + 1 + len] = '\0';
	for (size_t i = root_len + 1; i <= root_len + 1 + len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char was = buf[i];
		buf[i] = '\0';
		struct stat st;
		int r = lstat(buf, &st);
		buf[i] = was;
		if (r < 0)
			return 0; /* the rest does not exist yet: libarchive makes directories */
		if (S_ISLNK(st.st_mode))
			return 1;
	}
	return 0;
}

/* Refuse an entry whose parent directories (or, for a hard link, whose target's) pass through a symlink. */
static int
check_parent(struct unpack *u, const char *shown, const char *rel, int cache, struct cove_error **err)
{
	const char *slash = strrchr(rel, '/');
	size_t len = slash ? (size_t)(slash - rel) : 0;
	if (len == 0)
		return 0;
	/* Entries come grouped by directory; only an entry whose parent differs can change a parent's components. */
	if (cache && u->checked_parent && strlen(u->checked_parent) == len && memcmp(u->checked_parent, rel, len) == 0)
		return 0;
	int r = through_symlink(u->root, rel, len);
	if (r == 1)
		return fail_entry(err, COVE_INVALID_ARGUMENT, shown, "goes through a symlink (it would land outside the layer)",
				  NULL);
	if (r == 2)
		return fail_entry(err, COVE_INVALID_ARGUMENT, shown, "is too long a path", NULL);
	if (cache) {
		free(u->checked_parent);
		u->checked_parent = xstrndup(rel, len);
	}
	return 0;
}

/* An entry at rel replaces what is there: if that is the cached parent or one of its ancestors (a directory
 * the layer now turns into a symlink, say), the cache no longer says anything, so that no later entry is
 * written through a symlink this layer made. */
static void
forget_checked(struct unpack *u, const char *rel)
{
	if (u->checked_parent == NULL)
		return;
	size_t n = strlen(rel);
	if (strncmp(u->checked_parent, rel, n) == 0 && (u->checked_parent[n] == '\0' || u->checked_parent[n] == '/')) {
		free(u->checked_parent);
		u->checked_parent = NULL;
	}
}

/* Drop trusted.overlay.* xattrs: only the layer's whiteouts may steer overlayfs. */
static void
filter_xattrs(struct archive_entry *e)
{
	if (archive_entry_xattr_reset(e) == 0)
		return;
	const char *name;
	const void *value;
	size_t size;
	int bad = 0;
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
		if (strncmp(name, OVERLAY_XATTR_PREFIX, strlen(OVERLAY_XATTR_PREFIX)) == 0)
			bad = 1;
	if (!bad)
		return;
	size_t n = (size_t)archive_entry_xattr_reset(e), k = 0;
	char **names = xcalloc(n, sizeof(*names));
	void **values = xcalloc(n, sizeof(*values));
	size_t *sizes = xcalloc(n, sizeof(*sizes));
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		if (strncmp(name, OVERLAY_XATTR_PREFIX, strlen(OVERLAY_XATTR_PREFIX)) == 0)
			continue;
		names[k] = xstrdup(name);
		values[k] = xmemdup(value, size);
		sizes[k++] = size;
	}
	archive_entry_xattr_clear(e);
	for (size_t i = 0; i < k; i++) {
		archive_entry_xattr_add_entry(e, names[i], values[i], sizes[i]);
		free(names[i]);
		free(values[i]);
	}
	free(names);
	free(values);
	free(sizes);
}

/* libarchive could not write an entry: this host's trouble (INTERNAL) when the errno says so, else the
 * layer's (a hard link to something it does not have, ...). */
static int
write_failed(struct unpack *u, const char *shown, const char *what, struct cove_error **err)
{
	const char *msg = archive_error_string(u->out);
	int e = archive_errno(u->out);
	int local = e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == ENOMEM || e == EMFILE || e == ENFILE ||
		    e == EACCES || e == EPERM;
	return cove_error_set(err, local ? COVE_INTERNAL : COVE_DATA_LOSS, "extract layer entry \"%.300s\": %s: %s",
			      shown, what, msg ? msg : "unknown error");
}

static int
read_failed(struct unpack *u, struct cove_error **err)
{
	const char *msg = archive_error_string(u->in);
	return cove_error_set(err, COVE_DATA_LOSS, "layer %s does not read as a tar archive: %s", u->path,
			      msg ? msg : "unknown error");
}

static int
copy_data(struct unpack *u, const char *shown, struct cove_error **err)
{
	for (;;) {
		const void *buf;
		size_t size;
		la_int64_t offset;
		int r = archive_read_data_block(u->in, &buf, &size, &offset);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return read_failed(u, err);
		if (archive_write_data_block(u->out, buf, size, offset) < ARCHIVE_WARN)
			return write_failed(u, shown, "write", err);
	}
}

/* One entry: clean its names, turn whiteouts into what overlayfs reads, write it. */
static int
unpack_entry(struct unpack *u, struct archive_entry *e, struct cove_error **err)
{
	const char *entry_name = archive_entry_pathname(e);
	if (entry_name == NULL)
		return cove_error_set(err, COVE_DATA_LOSS, "layer %s has an entry whose name does not read", u->path);
	/* A copy: the entry's own string goes when its pathname is replaced below. */
	cleanup_free char *name = xstrdup(entry_name);
	cleanup_free char *rel = NULL;
	const char *why = clean_name(name, &rel);
	if (why)
		return fail_entry(err, COVE_INVALID_ARGUMENT, name, why, NULL);
	if (rel[0] == '\0')
		return 0; /* the root: the target keeps its own attributes */
	const char *slash = strrchr(rel, '/');
	const char *base = slash ? slash + 1 : rel;
	size_t parent_len = slash ? (size_t)(slash - rel) : 0;

	cleanup_free char *dest = NULL;
	if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0) {
		if (strcmp(base, WHITEOUT_OPAQUE) == 0) {
			u->opaque = xrealloc(u->opaque, (u->n_opaque + 1) * sizeof(*u->opaque));
			u->opaque[u->n_opaque++] = xstrndup(rel, parent_len);
			return 0;
		}
		if (strncmp(base, WHITEOUT_META_PREFIX, strlen(WHITEOUT_META_PREFIX)) == 0)
			return 0;
		const char *hidden = base + strlen(WHITEOUT_PREFIX);
		if (hidden[0] == '\0' || strcmp(hidden, ".") == 0 || strcmp(hidden, "..") == 0)
			return fail_entry(err, COVE_INVALID_ARGUMENT, name, "is a whiteout of no name", NULL);
		dest = parent_len ? xasprintf("%s/%.*s/%s", u->root, (int)parent_len, rel, hidden)
				  : xasprintf("%s/%s", u->root, hidden);
		archive_entry_set_hardlink(e, NULL);
		archive_entry_set_symlink(e, NULL);
		archive_entry_set_filetype(e, AE_IFCHR);
		archive_entry_set_perm(e, 0);
		archive_entry_set_rdev(e, 0);
		archive_entry_set_size(e, 0);
		archive_entry_xattr_clear(e);
		archive_entry_acl_clear(e);
	} else {
		mode_t type = archive_entry_filetype(e);
		if (type == AE_IFCHR || type == AE_IFBLK) {
			/* Left out, as Docker does under user namespaces: /dev comes from the runtime. */
			if (u->report) {
				if (u->report->devices_left_out++ == 0)
					snprintf(u->report->first_device, sizeof(u->report->first_device),
						 "%s (%s %u:%u)", rel, type == AE_IFBLK ? "block" : "character",
						 (unsigned)archive_entry_rdevmajor(e), (unsigned)archive_entry_rdevminor(e));
			}
			return 0;
		}
		const char *link = archive_entry_hardlink(e);
		if (link) {
			cleanup_free char *link_rel = NULL;
			if ((why = clean_name(link, &link_rel)) != NULL)
				return fail_entry(err, COVE_INVALID_ARGUMENT, name, "is a hard link whose target ", why);
			if (link_rel[0] == '\0')
				return fail_entry(err, COVE_INVALID_ARGUMENT, name, "is a hard link to the layer's root", NULL);
			if (check_parent(u, name, link_rel, 0, err) < 0)
				return -1;
			cleanup_free char *link_dest = xasprintf("%s/%s", u->root, link_rel);
			archive_entry_set_hardlink(e, link_dest);
		}
		filter_xattrs(e);
		dest = xasprintf("%s/%s", u->root, rel);
	}
	if (check_parent(u, name, rel, 1, err) < 0)
		return -1;
	forget_checked(u, dest + strlen(u->root) + 1);
	archive_entry_set_pathname(e, dest);
	if (archive_write_header(u->out, e) < ARCHIVE_WARN)
		return write_failed(u, name, "create", err);
	if (archive_entry_size(e) > 0 && copy_data(u, name, err) < 0)
		return -1;
	if (archive_write_finish_entry(u->out) < ARCHIVE_WARN)
		return write_failed(u, name, "finish", err);
	return 0;
}

/* Mark root/rel opaque, walking down without following symlinks (and making missing directories). */
static int
set_opaque(struct unpack *u, const char *rel, struct cove_error **err)
{
	int fd = open(u->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return cove_error_set_errno(err, errno, "open %s", u->root);
	cleanup_free char *copy = xstrdup(rel);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT) {
			if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST) {
				int e = errno;
				close(fd);
				return cove_error_set_errno(err, e, "create directory %s/%s", u->root, rel);
			}
			next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		int e = errno;
		close(fd);
		if (next < 0) {
			if (e == ELOOP || e == ENOTDIR)
				return cove_error_set(err, COVE_INVALID_ARGUMENT,
						      "layer entry \"%.300s/" WHITEOUT_OPAQUE
						      "\" marks something that is not a directory as opaque",
						      rel);
			return cove_error_set_errno(err, e, "open %s/%s", u->root, rel);
		}
		fd = next;
	}
	int r = fsetxattr(fd, OVERLAY_OPAQUE_XATTR, "y", 1, 0);
	int e = errno;
	close(fd);
	if (r < 0)
		return cove_error_set_errno(err, e, "set " OVERLAY_OPAQUE_XATTR " on %s/%s", u->root, rel);
	return 0;
}

int
cove_unpack_layer(const char *path, const char *dir, struct cove_unpack_report *report, struct cove_error **err)
{
	struct unpack u = {.path = path, .report = report};
	if (report)
		*report = (struct cove_unpack_report){0};
	cleanup_close int fd = -1;
	int rv = -1;
	u.root = realpath(dir, NULL);
	if (u.root == NULL)
		return cove_error_set_errno(err, errno, "unpack layer into %s", dir);
	u.in = archive_read_new();
	u.out = archive_write_disk_new();
	if (u.in == NULL || u.out == NULL) {
		cove_error_set(err, COVE_INTERNAL, "unpack layer %s: out of memory", path);
		goto out;
	}
	archive_read_support_filter_all(u.in);
	archive_read_support_format_tar(u.in);
	archive_read_support_format_empty(u.in);
	/* Numeric owners as the tar has them: this host's user names mean nothing inside the image. */
	archive_write_disk_set_options(u.out, EXTRACT_FLAGS);
	/* Opened here so that a missing file is an I/O error, and what libarchive then refuses is the tarball's. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cove_error_set_errno(err, errno, "open layer %s", path);
		goto out;
	}
	if (archive_read_open_fd(u.in, fd, 64 * 1024) != ARCHIVE_OK) {
		read_failed(&u, err);
		goto out;
	}
	for (;;) {
		struct archive_entry *e;
		int r = archive_read_next_header(u.in, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			read_failed(&u, err);
			goto out;
		}
		if (unpack_entry(&u, e, err) < 0)
			goto out;
	}
	/* Directory times and modes are set here (libarchive defers them so that later entries can go in). */
	if (archive_write_close(u.out) < ARCHIVE_WARN) {
		write_failed(&u, ".", "finish directories", err);
		goto out;
	}
	for (size_t i = 0; i < u.n_opaque; i++)
		if (set_opaque(&u, u.opaque[i], err) < 0)
			goto out;
	rv = 0;
out:
	if (u.in)
		archive_read_free(u.in);
	if (u.out)
		archive_write_free(u.out);
	for (size_t i = 0; i < u.n_opaque; i++)
		free(u.opaque[i]);
	free(u.opaque);
	free(u.checked_parent);
	free(u.root);
	if (rv < 0)
		cove_error_wrap(err, "unpack layer %s", path);
	return rv;
}
