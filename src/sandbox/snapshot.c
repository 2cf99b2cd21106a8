/* Filesystem snapshots for the process runtime: a sandbox's working directory (its /root: dir/root) copied to
 * <state>/snapshots/<image id>, an image that later sandboxes start from (their working directory begins as
 * a copy of it). The copies run on a worker thread. Snapshot images stay until deleted by hand; they survive
 * restarts (the store records them).
 *
 * The tree copied is the sandbox's, and it may still be running: the walk goes by directory descriptors, never
 * follows a symlink (symlinks are copied as links) and opens nothing but directories and regular files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "api/api.h"
#include "image/builder.h"
#include "sched/isolate.h"
#include "util/hash.h"
#include "grpc/server.h"
#include "sandbox/internal.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/safepath.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/workq.h"

#define KIND "sandbox-snapshot"
#define MAX_DEPTH 256

/* The sandbox may be changing its tree while this runs: the name is opened only if it is a regular file (a
 * FIFO swapped in would block this thread, a device node would be the host's device). */
static int
copy_file(int sfd, int dfd, const char *name, mode_t mode, const char *path, struct cove_error **err)
{
	cleanup_close int in = cove_safe_open_regular(sfd, name, NULL);
	if (in < 0) {
		if (errno == ENOENT || errno == ELOOP || errno == EISDIR || errno == EINVAL)
			return 0; /* replaced while we copy: what it became is not a file */
		return cove_error_set_errno(err, errno, "snapshot: open %s", path);
	}
	cleanup_close int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
	if (out < 0)
		return cove_error_set_errno(err, errno, "snapshot: create %s", path);
	if (cove_copy_fd(in, out) < 0)
		return cove_error_set_errno(err, errno, "snapshot: copy %s", path);
	fchmod(out, mode & 07777);
	return 0;
}

/* Copy the entries of directory sfd into directory dfd. */
static int
copy_dir(int sfd, int dfd, const char *path, int depth, struct cove_error **err)
{
	if (depth > MAX_DEPTH)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "snapshot: %s is nested more than %d levels deep", path,
				      MAX_DEPTH);
	int dup_fd = dup(sfd);
	if (dup_fd < 0)
		return cove_error_set_errno(err, errno, "snapshot: %s", path);
	DIR *d = fdopendir(dup_fd);
	if (d == NULL) {
		close(dup_fd);
		return cove_error_set_errno(err, errno, "snapshot: read directory %s", path);
	}
	int rv = 0;
	struct dirent *de;
	while (rv == 0 && (errno = 0, de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		cleanup_free char *sub = xasprintf("%s/%s", path, name);
		struct stat st;
		if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue; /* removed while we copy */
			rv = cove_error_set_errno(err, errno, "snapshot: stat %s", sub);
		} else if (S_ISDIR(st.st_mode)) {
			if (mkdirat(dfd, name, 0700) < 0) {
				rv = cove_error_set_errno(err, errno, "snapshot: mkdir %s", sub);
				break;
			}
			cleanup_close int s2 = cove_safe_open(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
			cleanup_close int d2 = cove_safe_open(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
			if (s2 < 0 && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR))
				continue; /* replaced while we copy (by a symlink, say): left as the empty directory */
			if (s2 < 0 || d2 < 0)
				rv = cove_error_set_errno(err, errno, "snapshot: open directory %s", sub);
			else if ((rv = copy_dir(s2, d2, sub, depth + 1, err)) == 0) {
				fchmod(d2, st.st_mode & 07777);
				/* An overlay layer's opaque directory (it hides what lower layers have there). */
				char v[2];
				if (fgetxattr(s2, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y')
					fsetxattr(d2, "trusted.overlay.opaque", "y", 1, 0);
			}
		} else if (S_ISREG(st.st_mode)) {
			rv = copy_file(sfd, dfd, name, st.st_mode, sub, err);
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(sfd, name, target, sizeof(target) - 1);
			if (n < 0) {
				rv = cove_error_set_errno(err, errno, "snapshot: readlink %s", sub);
			} else {
				target[n] = '\0';
				if (symlinkat(target, dfd, name) < 0)
					rv = cove_error_set_errno(err, errno, "snapshot: symlink %s", sub);
			}
		}
		else if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {
			/* An overlay layer's whiteout: a file deleted in the sandbox stays deleted in its snapshot. */
			if (mknodat(dfd, name, S_IFCHR | 0000, 0) < 0)
				rv = cove_error_set_errno(err, errno, "snapshot: whiteout %s", sub);
		}
		/* Sockets, FIFOs and other device nodes are not part of a snapshot. */
	}
	if (rv == 0 && de == NULL && errno != 0)
		rv = cove_error_set_errno(err, errno, "snapshot: read directory %s", path);
	closedir(d);
	return rv;
}

int
snapshot_copy_tree(const char *src, const char *dst, struct cove_error **err)
{
	cleanup_close int sfd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0)
		return cove_error_set_errno(err, errno, "snapshot: open %s", src);
	if (mkdir(dst, 0700) < 0)
		return cove_error_set_errno(err, errno, "snapshot: mkdir %s", dst);
	cleanup_close int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return cove_error_set_errno(err, errno, "snapshot: open %s", dst);
	struct stat st;
	if (fstat(sfd, &st) == 0)
		fchmod(dfd, st.st_mode & 07777);
	return copy_dir(sfd, dfd, src, 0, err);
}

char *
snapshot_dir_of(struct cove_sandboxes *sbx, const char *image_id)
{
	cleanup_free char *kind = NULL;
	cleanup_free uint8_t *data = NULL;
	size_t len;
	if (!cove_id_valid(image_id, "im") ||
	    cove_store_object_get(sbx->ctx->store, image_id, &kind, &data, &len, NULL) < 0 || strcmp(kind, KIND) != 0)
		return NULL;
	char *dir = xasprintf("%s/%s", sbx->snap_dir, image_id);
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_warn("snapshot image %s: its files (%s) are missing", image_id, dir);
		free(dir);
		return NULL;
	}
	return dir;
}

struct snap_job {
	struct cove_sandboxes *sbx;
	char *sandbox_id;
	char *image_id;
	char *key;
	char *src, *tmp, *dst;
	char *layer_hex; /* isolated: the snapshot is a layer on top of the sandbox's image */
	char *base_image;
	struct cove_call *call; /* NULL once the caller went away */
	void (*reply)(struct cove_call *call, const char *image_id, struct cove_error *err);
	struct cove_error *err;
};

static void
snap_cancelled(struct cove_call *call, void *arg)
{
	(void)call;
	struct snap_job *j = arg;
	j->call = NULL;
}

static void
snap_work(void *arg)
{
	struct snap_job *j = arg;
	if (j->layer_hex) {
		/* <layers>/.tmp-<image>/fs, then <layers>/<hex>: the layer store's own protocol. */
		cleanup_free char *fs = xasprintf("%s/fs", j->tmp);
		if (mkdir(j->tmp, 0755) < 0)
			cove_error_set_errno(&j->err, errno, "snapshot: mkdir %s", j->tmp);
		else if (snapshot_copy_tree(j->src, fs, &j->err) == 0 && rename(j->tmp, j->dst) < 0)
			cove_error_set_errno(&j->err, errno, "snapshot: rename %s", j->tmp);
		return;
	}
	if (snapshot_copy_tree(j->src, j->tmp, &j->err) == 0 && rename(j->tmp, j->dst) < 0)
		cove_error_set_errno(&j->err, errno, "snapshot: rename %s", j->tmp);
}

static void
snap_done(void *arg)
{
	struct snap_job *j = arg;
	struct cove_sandboxes *sbx = j->sbx;
	struct cove_sandbox *sb = cove_sandbox_get(sbx, j->sandbox_id);
	if (j->err == NULL && j->layer_hex)
		cove_builder_add_layer_image(sbx->ctx->builder, j->base_image, j->layer_hex, j->image_id, &j->err);
	if (j->err == NULL) {
		/* An empty record: the files (or, isolated, the image manifest) are the image. */
		if (cove_store_object_put(sbx->ctx->store, j->image_id, KIND, sb ? sb->app_id : NULL, sb ? sb->env : NULL,
					  NULL, "", 0, &j->err) == 0 && j->key[0])
			free(cove_map_put(&sbx->snap_keys, j->key, xstrdup(j->image_id)));
	}
	if (j->err) {
		struct cove_error *ignored = NULL;
		cove_remove_tree(j->tmp, &ignored);
		cove_error_free(ignored);
		log_warn("sandbox %s: snapshot failed: %s", j->sandbox_id, j->err->msg);
	} else {
		log_info("sandbox %s: snapshot image %s", j->sandbox_id, j->image_id);
	}
	if (sb)
		sandbox_copy_done(sb);
	if (j->call) {
		cove_call_on_cancel(j->call, NULL, NULL);
		j->reply(j->call, j->err ? NULL : j->image_id, j->err);
		j->err = NULL;
	}
	cove_error_free(j->err);
	free(j->sandbox_id);
	free(j->image_id);
	free(j->key);
	free(j->src);
	free(j->tmp);
	free(j->dst);
	free(j->layer_hex);
	free(j->base_image);
	free(j);
}

int
cove_sandbox_snapshot(struct cove_sandbox *sb, const char *key, struct cove_call *call,
		      void (*reply)(struct cove_call *call, const char *image_id, struct cove_error *err),
		      struct cove_error **err)
{
	struct cove_sandboxes *sbx = sb->sbx;
	if (sb->state != COVE_SANDBOX_RUNNING)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "sandbox %s is not running", sb->id);
	if (strlen(key) > 128)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "snapshot id too long");
	const char *done = key[0] ? cove_map_get(&sbx->snap_keys, key) : NULL;
	if (done) {
		reply(call, done, NULL);
		return 0;
	}
	struct snap_job *j = xcalloc(1, sizeof(*j));
	j->sbx = sbx;
	j->sandbox_id = xstrdup(sb->id);
	j->image_id = cove_id_new("im");
	j->key = xstrdup(key);
	if (sb->iso) {
		/* Isolated: its writable layer becomes a layer of a new image, on top of the sandbox's own. */
		const char *layers = cove_builder_layers_dir(sbx->ctx->builder);
		j->layer_hex = xmalloc(65);
		cove_sha256_hex(j->image_id, strlen(j->image_id), j->layer_hex);
		j->base_image = xstrdup(sb->def->image_id);
		j->src = xstrdup(sb->iso->upper);
		j->tmp = xasprintf("%s/.tmp-%s", layers, j->image_id);
		j->dst = xasprintf("%s/%s", layers, j->layer_hex);
	} else {
		j->src = xasprintf("%s/root", sb->dir);
		j->tmp = xasprintf("%s/%s.tmp", sbx->snap_dir, j->image_id);
		j->dst = xasprintf("%s/%s", sbx->snap_dir, j->image_id);
	}
	j->call = call;
	j->reply = reply;
	cove_call_on_cancel(call, snap_cancelled, j);
	sb->copies++;
	cove_workq_submit(sbx->workq, snap_work, snap_done, j);
	return 0;
}
