/* Volume views in containers (see volview.h): fill, scan, commit, reload, background and final commits.
 *
 * Each view keeps a base: for every path, what it held when the view was last in step with the volume (its
 * committed content and the stat fingerprint of the file as the view holds it). A scan compares the view with its
 * base; a sync compares the volume with the base. One operation runs on a view at a time (`busy`), so a job on a
 * worker thread may read the view's base and directory while the event loop leaves them alone. */
#include "store/volview.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "runtime/runtime.h"
#include "server.h"
#include "store/volume.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/safepath.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/map.h"
#include "util/pb.h"
#include "util/workq.h"

#define BACKGROUND_COMMIT_S 5.0
#define WORKERS 2
/* A file that changes while it is hashed is read again this often before the scan leaves it for next time. */
#define HASH_TRIES 3

/* What identifies a file's state without reading it: any write changes mtime or ctime, and ctime cannot be set. */
struct vfp {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim, ctim;
	mode_t mode;
};

struct vbase {
	int type;
	uint32_t mode;
	uint64_t size;
	int64_t mtime;
	uint8_t *data; /* block hashes / symlink target */
	size_t data_len;
	struct vfp fp;
};

enum { OP_COMMIT, OP_RELOAD, OP_BACKGROUND, OP_FINAL };

/* One VolumeCommit / VolumeReload call, answered when each of its views is done. */
struct vrpc {
	struct cove_call *call; /* NULL once the call went away */
	size_t remaining;
	int reload;
	struct cove_error *err; /* the first failure */
};

struct vop {
	struct vop *next;
	int kind;
	struct vrpc *rpc; /* NULL: nobody waits */
};

struct vtask;

struct vview {
	struct vview *next;
	struct vtask *task;
	char *volume_id;
	int64_t vol_seq;
	char *sub_path; /* "" for the whole volume */
	char *dir;
	int read_only, background;
	int64_t gen;          /* the volume's generation the view was last in step with */
	struct cove_map base; /* relative path -> struct vbase * */
	int busy;
	struct vop *cur;
	struct vop *ops_head, *ops_tail;
};

struct vtask {
	char *id;
	char *dir;
	struct vview *views;
	int exited;
	void (*on_done)(void *arg); /* after the last commit at exit (cove_volview_task_exit) */
	void *done_arg;
};

struct volview {
	struct cove_ctx *ctx;
	struct cove_workq *wq;
	char *views_dir;
	struct cove_map tasks; /* task id -> struct vtask * */
	struct event *bg_timer;
	int stopping; /* jobs under way finish; nothing new starts */
};

static struct volview *the_vv;

/* ---- small things ---- */

static struct vfp
fp_of(const struct stat *st)
{
	struct vfp f = {.dev = st->st_dev,
			.ino = st->st_ino,
			.size = st->st_size,
			.mtim = st->st_mtim,
			.ctim = st->st_ctim,
			.mode = st->st_mode};
	return f;
}

static int
fp_eq(const struct vfp *a, const struct vfp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtim.tv_sec == b->mtim.tv_sec &&
	       a->mtim.tv_nsec == b->mtim.tv_nsec && a->ctim.tv_sec == b->ctim.tv_sec &&
	       a->ctim.tv_nsec == b->ctim.tv_nsec && a->mode == b->mode;
}

static void
vbase_free(struct vbase *b)
{
	if (b) {
		free(b->data);
		free(b);
	}
}

static struct vbase *
vbase_new(const struct cove_vfile *f, const struct vfp *fp)
{
	struct vbase *b = xcalloc(1, sizeof(*b));
	b->type = f->type;
	b->mode = f->mode;
	b->size = f->size;
	b->mtime = f->mtime;
	b->data_len = f->data_len;
	b->data = f->data_len ? xmemdup(f->data, f->data_len) : NULL;
	if (fp)
		b->fp = *fp;
	return b;
}

static void
base_put(struct vview *v, const char *rel, struct vbase *b)
{
	vbase_free(cove_map_put(&v->base, rel, b));
}

static void
base_del(struct vview *v, const char *rel)
{
	vbase_free(cove_map_del(&v->base, rel));
}

static void
base_clear(struct cove_map *m)
{
	size_t it = 0;
	void *b;
	while (cove_map_next(m, &it, NULL, &b))
		vbase_free(b);
	cove_map_clear(m);
}

/* The path of a volume entry relative to a view of sub_path ("" if it is the sub_path itself). */
static const char *
rel_of(const char *sub_path, const char *path)
{
	size_t n = strlen(sub_path);
	if (n == 0)
		return path;
	return path[n] == '/' ? path + n + 1 : path + n;
}

static int
io_err(struct cove_error **err, int e, const char *what, const char *path)
{
	int code = e == ENOSPC || e == EDQUOT ? COVE_RESOURCE_EXHAUSTED : e == EIO ? COVE_UNAVAILABLE : COVE_INTERNAL;
	return cove_error_set(err, code, "%s %s: %s", what, path, strerror(e));
}

/* ---- writing entries into a view (the loop at start, workers on reload) ---- */

static int
copy_block_into(struct cove_blobstore *bs, const uint8_t *hash, int out, off_t at, struct cove_error **err)
{
	int in = -1;
	uint64_t len = 0;
	if (cove_blobstore_block_open(bs, hash, &in, &len, err) < 0)
		return -1;
	if (in < 0)
		return 0; /* the empty block: a hole */
	int rv = 0;
	off_t in_off = 0;
	int use_cfr = 1;
	uint8_t *buf = NULL;
	while (len > 0 && rv == 0) {
		if (use_cfr) {
			ssize_t n = copy_file_range(in, &in_off, out, &at, len, 0);
			if (n > 0) {
				len -= (uint64_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
				use_cfr = 0;
				continue;
			}
			rv = io_err(err, n == 0 ? EIO : errno, "copy a block into", "a view");
			break;
		}
		if (buf == NULL)
			buf = xmalloc(1 << 20);
		size_t want = len < (1u << 20) ? (size_t)len : (1u << 20);
		ssize_t n = pread(in, buf, want, in_off);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			rv = io_err(err, n == 0 ? EIO : errno, "read a block for", "a view");
			break;
		}
		for (ssize_t done = 0; done < n;) {
			ssize_t w = pwrite(out, buf + done, (size_t)(n - done), at);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				rv = io_err(err, errno, "write", "a view");
				break;
			}
			done += w;
			at += w;
		}
		in_off += n;
		len -= (uint64_t)n;
	}
	free(buf);
	close(in);
	return rv;
}

/* Replace whatever is at name (in directory dfd) by a new entry built at tmp (a directory in the way goes if it
 * is empty). */
static int
replace_at(int dfd, const char *tmp, const char *name)
{
	if (renameat(dfd, tmp, dfd, name) == 0)
		return 0;
	if (errno != EISDIR && errno != ENOTEMPTY && errno != EEXIST)
		return -1;
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 || renameat(dfd, tmp, dfd, name) < 0)
		return -1;
	return 0;
}

/* Write entry f as `name` in directory pfd of a view (rel: its path in the view, for messages); *fp gets the
 * fingerprint of what is there afterwards. Everything goes through pfd and never follows a symlink: the view is
 * the container's to change while this runs. */
static int
write_entry_at(struct cove_blobstore *bs, int pfd, const char *name, const char *rel, const struct cove_vfile *f,
	       struct vfp *fp, struct cove_error **err)
{
	struct stat st;
	mode_t mode = (mode_t)(f->mode & 07777);
	if (f->type == COVE_VFILE_DIR) {
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) && unlinkat(pfd, name, 0) < 0)
			return io_err(err, errno, "replace", rel);
		if (mkdirat(pfd, name, mode) < 0 && errno != EEXIST)
			return io_err(err, errno, "create directory", rel);
		cleanup_close int dfd = cove_safe_open(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
		if (dfd < 0 || fchmod(dfd, mode) < 0 || fstat(dfd, &st) < 0)
			return io_err(err, errno, "set up directory", rel);
		*fp = fp_of(&st);
		return 0;
	}
	char tmp[32];
	char rnd[17];
	cove_random_base62(rnd, 16);
	rnd[16] = '\0';
	snprintf(tmp, sizeof(tmp), ".cove-%s", rnd);
	if (f->type == COVE_VFILE_SYMLINK) {
		cleanup_free char *target = xstrndup((const char *)f->data, f->data_len);
		if (symlinkat(target, pfd, tmp) < 0)
			return io_err(err, errno, "create symlink", rel);
		if (replace_at(pfd, tmp, name) < 0) {
			int e = errno;
			unlinkat(pfd, tmp, 0);
			return io_err(err, e, "create symlink", rel);
		}
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return io_err(err, errno, "stat", rel);
		*fp = fp_of(&st);
		return 0;
	}
	cleanup_close int fd = openat(pfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return io_err(err, errno, "create", rel);
	uint64_t n_blocks = cove_vfile_n_blocks(f->size);
	int rv = 0;
	if (f->data_len != n_blocks * COVE_BLOCK_HASH)
		rv = cove_error_set(err, COVE_DATA_LOSS, "volume entry '/%s' is damaged in the store", rel);
	for (uint64_t i = 0; i < n_blocks && rv == 0; i++)
		rv = copy_block_into(bs, f->data + i * COVE_BLOCK_HASH, fd, (off_t)(i * COVE_BLOCK_SIZE), err);
	struct timespec times[2] = {{.tv_sec = f->mtime}, {.tv_sec = f->mtime}};
	if (rv == 0 && (ftruncate(fd, (off_t)f->size) < 0 || fchmod(fd, mode) < 0 || futimens(fd, times) < 0))
		rv = io_err(err, errno, "write", rel);
	if (rv == 0 && replace_at(pfd, tmp, name) < 0)
		rv = io_err(err, errno, "write", rel);
	if (rv < 0) {
		unlinkat(pfd, tmp, 0);
		return cove_error_wrap(err, "volume entry '/%s'", rel);
	}
	/* After the rename, which changes the ctime. */
	if (fstat(fd, &st) < 0)
		return io_err(err, errno, "stat", rel);
	*fp = fp_of(&st);
	return 0;
}

/* Write entry f at rel below the view's root (rootfd), making its parent directories if they are missing. */
static int
write_entry(struct cove_blobstore *bs, int rootfd, const char *rel, const struct cove_vfile *f, struct vfp *fp,
	    struct cove_error **err)
{
	const char *name = NULL;
	cleanup_close int pfd = cove_safe_open_parent(rootfd, rel, 1, 0755, &name);
	if (pfd < 0)
		return io_err(err, errno, "open the directory of", rel);
	return write_entry_at(bs, pfd, name, rel, f, fp, err);
}

/* ---- views ---- */

static void
view_free(struct vview *v)
{
	base_clear(&v->base);
	while (v->ops_head) {
		struct vop *op = v->ops_head;
		v->ops_head = op->next;
		free(op);
	}
	free(v->volume_id);
	free(v->sub_path);
	free(v->dir);
	free(v);
}

struct fill_ctx {
	struct cove_blobstore *bs;
	struct vview *v;
	int rootfd;
};

static int
fill_one(void *arg, const struct cove_vfile *f, struct cove_error **err)
{
	struct fill_ctx *c = arg;
	const char *rel = rel_of(c->v->sub_path, f->path);
	struct vfp fp;
	if (write_entry(c->bs, c->rootfd, rel, f, &fp, err) < 0)
		return -1;
	base_put(c->v, rel, vbase_new(f, &fp));
	return 0;
}

/* The view's first copy of the volume (on the event loop: the container cannot start before it is there). */
static int
view_fill(struct vview *v, struct cove_error **err)
{
	if (cove_mkdirs(v->dir, err) < 0)
		return -1;
	v->gen = cove_volume_generation(v->vol_seq, err);
	if (v->gen < 0)
		return -1;
	cleanup_close int rootfd = open(v->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0)
		return io_err(err, errno, "open", v->dir);
	struct fill_ctx c = {.bs = the_vv->ctx->blobs, .v = v, .rootfd = rootfd};
	return cove_volume_list_files(v->vol_seq, v->sub_path, 1, fill_one, &c, err);
}

/* ---- scan and commit ---- */

struct scan_job {
	struct vview *v;
	struct cove_blobstore *bs;
	struct cove_map seen;  /* every path found */
	struct cove_map puts;  /* path -> struct vbase *: new or changed entries, as they will be */
	char **dels;           /* paths gone since the base */
	int *del_types;
	size_t n_dels;
	uint8_t *buf;
	size_t skipped_special, skipped_names, skipped_busy;
	struct cove_error *err;
};

static int
valid_name(const char *name)
{
	const char *why;
	char *norm = NULL;
	if (cove_vpath_normalize(name, 0, &norm, &why) < 0)
		return 0;
	int ok = strcmp(norm, name) == 0;
	free(norm);
	return ok;
}

/* Length of data without its trailing zero bytes. */
static size_t
stripped_len(const uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p + n - 8, 8);
		if (w != 0)
			break;
		n -= 8;
	}
	while (n > 0 && p[n - 1] == 0)
		n--;
	return n;
}

/* Cut a file into blocks (stored as they are found): *out gets its new base entry, or NULL if the file kept
 * changing while it was read. */
static int
hash_file(struct scan_job *j, int dfd, const char *name, const char *rel, struct vbase **out)
{
	*out = NULL;
	for (int attempt = 0; attempt < HASH_TRIES; attempt++) {
		/* Only ever a regular file: what the container swapped in meanwhile (a symlink, a FIFO that would block
		 * this thread, a device node) is not opened. */
		struct stat before, after;
		cleanup_close int fd = cove_safe_open_regular(dfd, name, &before);
		if (fd < 0) {
			if (errno == ENOENT || errno == ELOOP || errno == EISDIR || errno == EINVAL || errno == ENOTDIR)
				return 0; /* gone or replaced meanwhile: next scan */
			return io_err(&j->err, errno, "open", rel);
		}
		uint64_t size = (uint64_t)before.st_size;
		if (size > COVE_VOLUME_MAX_FILE_BYTES)
			return cove_error_set(&j->err, COVE_RESOURCE_EXHAUSTED, "'%s' is larger than the 1 TiB a volume file may be",
					      rel);
		uint64_t n = cove_vfile_n_blocks(size);
		uint8_t *hashes = n ? xmalloc(n * COVE_BLOCK_HASH) : NULL;
		int short_read = 0;
		for (uint64_t i = 0; i < n && !short_read; i++) {
			size_t want = size - i * COVE_BLOCK_SIZE < COVE_BLOCK_SIZE ? (size_t)(size - i * COVE_BLOCK_SIZE)
										   : COVE_BLOCK_SIZE;
			size_t got = 0;
			while (got < want) {
				ssize_t r = pread(fd, j->buf + got, want - got, (off_t)(i * COVE_BLOCK_SIZE + got));
				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0) {
					free(hashes);
					return io_err(&j->err, errno, "read", rel);
				}
				if (r == 0)
					break;
				got += (size_t)r;
			}
			if (got < want) {
				short_read = 1; /* it shrank: read it again */
				break;
			}
			size_t keep = stripped_len(j->buf, got);
			uint8_t *h = hashes + i * COVE_BLOCK_HASH;
			if (EVP_Digest(j->buf, keep, h, NULL, EVP_sha256(), NULL) != 1)
				abort();
			if (cove_blobstore_block_write_hashed(j->bs, h, j->buf, keep, &j->err) < 0) {
				free(hashes);
				return cove_error_wrap(&j->err, "commit '%s'", rel);
			}
		}
		if (fstat(fd, &after) < 0) {
			free(hashes);
			return io_err(&j->err, errno, "stat", rel);
		}
		struct vfp fb = fp_of(&before), fa = fp_of(&after);
		if (short_read || !fp_eq(&fb, &fa)) {
			free(hashes);
			continue;
		}
		struct vbase *b = xcalloc(1, sizeof(*b));
		b->type = COVE_VFILE_FILE;
		b->mode = after.st_mode & 07777;
		b->size = size;
		b->mtime = after.st_mtim.tv_sec;
		b->data = hashes;
		b->data_len = (size_t)(n * COVE_BLOCK_HASH);
		b->fp = fa;
		*out = b;
		return 0;
	}
	j->skipped_busy++;
	return 0;
}

static int
scan_dir(struct scan_job *j, int dfd, const char *rel_dir)
{
	int dup_fd = dup(dfd);
	if (dup_fd < 0)
		return io_err(&j->err, errno, "scan", *rel_dir ? rel_dir : "/");
	DIR *d = fdopendir(dup_fd);
	if (d == NULL) {
		close(dup_fd);
		return io_err(&j->err, errno, "scan", *rel_dir ? rel_dir : "/");
	}
	int rv = 0;
	struct dirent *de;
	while (rv == 0 && (de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		if (!valid_name(name) || strlen(rel_dir) + strlen(name) + 1 > COVE_VPATH_MAX) {
			j->skipped_names++;
			continue;
		}
		cleanup_free char *rel = *rel_dir ? xasprintf("%s/%s", rel_dir, name) : xstrdup(name);
		struct stat st;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			rv = io_err(&j->err, errno, "stat", rel);
			break;
		}
		struct vbase *b = cove_map_get(&j->v->base, rel);
		struct vfp fp = fp_of(&st);
		if (S_ISDIR(st.st_mode)) {
			cove_map_put(&j->seen, rel, j);
			if (!(b && b->type == COVE_VFILE_DIR && (b->mode & 07777) == (st.st_mode & 07777))) {
				struct vbase *nb = xcalloc(1, sizeof(*nb));
				nb->type = COVE_VFILE_DIR;
				nb->mode = st.st_mode & 07777;
				nb->mtime = st.st_mtim.tv_sec;
				nb->fp = fp;
				vbase_free(cove_map_put(&j->puts, rel, nb));
			}
			int sub = cove_safe_open(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
			if (sub < 0) {
				if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
					continue;
				rv = io_err(&j->err, errno, "open", rel);
				break;
			}
			rv = scan_dir(j, sub, rel);
			close(sub);
		} else if (S_ISREG(st.st_mode)) {
			if (b && b->type == COVE_VFILE_FILE && fp_eq(&b->fp, &fp)) {
				cove_map_put(&j->seen, rel, j);
				continue;
			}
			struct vbase *nb = NULL;
			rv = hash_file(j, dfd, name, rel, &nb);
			/* A file left for next time still counts as seen: it is not deleted. */
			cove_map_put(&j->seen, rel, j);
			if (nb)
				vbase_free(cove_map_put(&j->puts, rel, nb));
		} else if (S_ISLNK(st.st_mode)) {
			cove_map_put(&j->seen, rel, j);
			if (b && b->type == COVE_VFILE_SYMLINK && fp_eq(&b->fp, &fp))
				continue;
			char target[PATH_MAX];
			ssize_t n = readlinkat(dfd, name, target, sizeof(target));
			if (n < 0 || n >= (ssize_t)sizeof(target))
				continue;
			struct vbase *nb = xcalloc(1, sizeof(*nb));
			nb->type = COVE_VFILE_SYMLINK;
			nb->mode = 0777;
			nb->size = (uint64_t)n;
			nb->mtime = st.st_mtim.tv_sec;
			nb->data = xmemdup(target, (size_t)n);
			nb->data_len = (size_t)n;
			nb->fp = fp;
			vbase_free(cove_map_put(&j->puts, rel, nb));
		} else {
			j->skipped_special++;
		}
	}
	closedir(d);
	return rv;
}

static void
scan_work(void *arg)
{
	struct scan_job *j = arg;
	j->buf = xmalloc(COVE_BLOCK_SIZE);
	int fd = open(j->v->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		io_err(&j->err, errno, "open", j->v->dir);
	} else {
		if (scan_dir(j, fd, "") == 0) {
			/* What the base had and the view has not. */
			size_t it = 0;
			const char *rel;
			void *bv;
			j->dels = xcalloc(j->v->base.len + 1, sizeof(char *));
			j->del_types = xcalloc(j->v->base.len + 1, sizeof(int));
			while (cove_map_next(&j->v->base, &it, &rel, &bv)) {
				if (cove_map_get(&j->seen, rel))
					continue;
				j->del_types[j->n_dels] = ((struct vbase *)bv)->type;
				j->dels[j->n_dels++] = xstrdup(rel);
			}
		}
		close(fd);
	}
	free(j->buf);
	j->buf = NULL;
	/* New blocks are durable before the commit that refers to them. */
	if (j->err == NULL && j->puts.len > 0)
		cove_blobstore_sync_blocks(j->bs, &j->err);
}

static void
scan_job_free(struct scan_job *j)
{
	cove_map_clear(&j->seen);
	base_clear(&j->puts);
	for (size_t i = 0; i < j->n_dels; i++)
		free(j->dels[i]);
	free(j->dels);
	free(j->del_types);
	cove_error_free(j->err);
	free(j);
}

static void view_kick(struct vview *v);
static void start_sync(struct vview *v);

static void
op_done(struct vview *v, struct cove_error *err)
{
	struct vop *op = v->cur;
	v->cur = NULL;
	v->busy = 0;
	if (err && err->code == COVE_NOT_FOUND)
		v->background = 0; /* the volume was deleted: nothing to commit to any more */
	if (err && op->kind != OP_COMMIT && op->kind != OP_RELOAD)
		log_warn("volumes: %s commit of %s in container %s: %s", op->kind == OP_FINAL ? "final" : "background",
			 v->volume_id, v->task->id, err->msg);
	struct vrpc *rpc = op->rpc;
	if (rpc) {
		if (err && rpc->err == NULL) {
			rpc->err = err;
			err = NULL;
		}
		if (--rpc->remaining == 0) {
			if (rpc->call) {
				cove_call_on_cancel(rpc->call, NULL, NULL);
				if (rpc->err) {
					cove_api_fail(rpc->call, rpc->err);
					rpc->err = NULL;
				} else if (rpc->reload) {
					Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
					cove_api_reply(rpc->call, &resp.base);
				} else {
					Modal__Client__VolumeCommitResponse resp = MODAL__CLIENT__VOLUME_COMMIT_RESPONSE__INIT;
					cove_api_reply(rpc->call, &resp.base);
				}
			}
			cove_error_free(rpc->err);
			free(rpc);
		}
	}
	cove_error_free(err);
	free(op);
	view_kick(v);
}

/* Publish a scan's findings: one transaction, then the base follows. */
static int
commit_changes(struct vview *v, struct scan_job *j, struct cove_error **err)
{
	size_t n = j->puts.len + j->n_dels;
	if (n == 0)
		return 0;
	struct cove_vchange *ch = xcalloc(n, sizeof(*ch));
	size_t k = 0, it = 0;
	const char *rel;
	void *bv;
	while (cove_map_next(&j->puts, &it, &rel, &bv)) {
		struct vbase *b = bv;
		ch[k].op = COVE_VCHANGE_PUT;
		ch[k].f.path = xstrdup(rel);
		ch[k].f.type = b->type;
		ch[k].f.mode = b->mode;
		ch[k].f.size = b->size;
		ch[k].f.mtime = b->mtime;
		ch[k].f.data = b->data;
		ch[k].f.data_len = b->data_len;
		k++;
	}
	for (size_t i = 0; i < j->n_dels; i++) {
		ch[k].op = COVE_VCHANGE_DEL;
		ch[k].f.path = xstrdup(j->dels[i]);
		ch[k].f.type = j->del_types[i];
		k++;
	}
	cleanup_volume struct cove_volume vol = {0};
	int64_t gen = 0;
	int rv = cove_volume_by_id(v->volume_id, &vol, err);
	if (rv == 0)
		rv = cove_volume_apply(&vol, v->sub_path, ch, n, &gen, err);
	/* A PUT that would have deleted others' files with the directory it replaces was left out: the view keeps
	 * its entry and its base the directory, so the next commit tries again (and the caller hears why). */
	size_t n_conflicts = 0;
	cleanup_free char *first_conflict = NULL;
	for (size_t i = 0; rv == 0 && i < n; i++) {
		if (!ch[i].conflict)
			continue;
		if (n_conflicts++ == 0)
			first_conflict = xstrdup(ch[i].f.path);
		vbase_free(cove_map_del(&j->puts, rel_of(v->sub_path, ch[i].f.path)));
	}
	for (size_t i = 0; i < n; i++)
		free(ch[i].f.path); /* the data is the job's */
	free(ch);
	if (rv < 0)
		return -1;
	/* In step still if nobody else committed since: this commit is the only difference. */
	if (gen == v->gen + 1 && n_conflicts == 0)
		v->gen = gen;
	it = 0;
	while (cove_map_next(&j->puts, &it, &rel, &bv))
		base_put(v, rel, bv);
	cove_map_clear(&j->puts);
	for (size_t i = 0; i < j->n_dels; i++)
		base_del(v, j->dels[i]);
	char more[48] = "";
	if (n_conflicts > 1)
		snprintf(more, sizeof(more), " (and %zu more)", n_conflicts - 1);
	if (n_conflicts)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "'/%s'%s of Volume %s not committed: %s a directory in the volume that holds files "
				      "committed elsewhere since this container last reloaded, and replacing it would delete "
				      "them; move or remove it in this container and commit again (the rest of this commit "
				      "is committed)",
				      first_conflict, more, v->volume_id,
				      n_conflicts > 1 ? "each is" : "it is");
	return 0;
}

static void
scan_done(void *arg)
{
	struct scan_job *j = arg;
	struct vview *v = j->v;
	struct cove_error *err = j->err;
	j->err = NULL;
	/* Background commits meet files still being written all the time: only the others say so loudly. */
	if (j->skipped_special || j->skipped_names || (j->skipped_busy && v->cur->kind != OP_BACKGROUND))
		log_warn("volumes: commit of %s in container %s left out %zu special files, %zu names that are not valid "
			 "UTF-8, and %zu files that kept changing while they were read",
			 v->volume_id, v->task->id, j->skipped_special, j->skipped_names, j->skipped_busy);
	if (err == NULL)
		commit_changes(v, j, &err);
	scan_job_free(j);
	if (err == NULL && v->cur->kind == OP_RELOAD && !the_vv->stopping) {
		start_sync(v);
		return;
	}
	op_done(v, err);
}

static void
start_scan(struct vview *v)
{
	struct scan_job *j = xcalloc(1, sizeof(*j));
	j->v = v;
	j->bs = the_vv->ctx->blobs;
	cove_workq_submit(the_vv->wq, scan_work, scan_done, j);
}

/* ---- sync (the second half of a reload) ---- */

enum { SYNC_WRITE = 1, SYNC_REMOVE = 2 };

struct sync_item {
	int op;
	char *rel;
	struct cove_vfile f;  /* SYNC_WRITE: the entry as the volume has it */
	struct vbase *expect; /* what the view must still hold for the item to go ahead (a copy; NULL: nothing) */
	int ok;
	struct vfp fp;
};

struct sync_job {
	struct vview *v;
	struct cove_blobstore *bs;
	struct sync_item *items;
	size_t n, cap;
	int64_t gen;
	struct cove_error *err;
};

static struct sync_item *
sync_add(struct sync_job *j, int op, const char *rel, const struct vbase *expect)
{
	if (j->n == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 64;
		j->items = xrealloc(j->items, j->cap * sizeof(*j->items));
	}
	struct sync_item *it = &j->items[j->n++];
	memset(it, 0, sizeof(*it));
	it->op = op;
	it->rel = xstrdup(rel);
	if (expect) {
		it->expect = xmemdup(expect, sizeof(*expect));
		it->expect->data = NULL;
		it->expect->data_len = 0;
	}
	return it;
}

static int
cmp_sync(const void *a, const void *b)
{
	const struct sync_item *x = a, *y = b;
	if (x->op != y->op)
		return x->op == SYNC_REMOVE ? -1 : 1;
	int c = strcmp(x->rel, y->rel);
	return x->op == SYNC_REMOVE ? -c : c;
}

/* Whether the view still holds what the base says at name in directory pfd (or nothing, when the base has
 * nothing). */
static int
untouched_at(int pfd, const char *name, const struct vbase *expect)
{
	struct stat st;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT && (expect == NULL || expect->type != COVE_VFILE_DIR);
	if (expect == NULL)
		return 0;
	if (expect->type == COVE_VFILE_DIR)
		return S_ISDIR(st.st_mode);
	struct vfp fp = fp_of(&st);
	return fp_eq(&fp, &expect->fp);
}

/* One item of a sync, in the view whose root is rootfd. The container may be changing the view all the while:
 * every step is relative to a directory descriptor opened beneath the root without following symlinks, so a
 * directory swapped for a symlink (to anywhere on the host) makes the item count as changed by the container,
 * never a write through the link. */
static void
sync_one(struct sync_job *j, int rootfd, struct sync_item *it)
{
	const char *name = NULL;
	cleanup_close int pfd = cove_safe_open_parent(rootfd, it->rel, 0, 0, &name);
	if (pfd < 0) {
		if (errno != ENOENT)
			return; /* a symlink or a file where a directory was: the container's change wins */
		if (it->op == SYNC_REMOVE) {
			it->ok = 1; /* gone already */
			return;
		}
		/* Its directory is gone: the entry is written (with its directories) if the base had nothing there but
		 * a file, as for a missing entry. */
		if (it->expect && it->expect->type == COVE_VFILE_DIR)
			return;
		pfd = cove_safe_open_parent(rootfd, it->rel, 1, 0755, &name);
		if (pfd < 0)
			return;
	} else if (!untouched_at(pfd, name, it->expect)) {
		return; /* changed in the container since its commit: its change wins, at its next commit */
	}
	if (it->op == SYNC_REMOVE) {
		struct stat st;
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			it->ok = errno == ENOENT;
			return;
		}
		it->ok = unlinkat(pfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0;
		return;
	}
	struct cove_error *err = NULL;
	if (write_entry_at(j->bs, pfd, name, it->rel, &it->f, &it->fp, &err) < 0) {
		if (j->err == NULL)
			j->err = err;
		else
			cove_error_free(err);
		return;
	}
	it->ok = 1;
}

static void
sync_work(void *arg)
{
	struct sync_job *j = arg;
	qsort(j->items, j->n, sizeof(*j->items), cmp_sync);
	cleanup_close int rootfd = open(j->v->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0) {
		io_err(&j->err, errno, "open", j->v->dir);
		return;
	}
	for (size_t i = 0; i < j->n; i++)
		sync_one(j, rootfd, &j->items[i]);
}

static void
sync_job_free(struct sync_job *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free(j->items[i].rel);
		free(j->items[i].expect);
		cove_vfile_clear(&j->items[i].f);
	}
	free(j->items);
	cove_error_free(j->err);
	free(j);
}

static void
sync_done(void *arg)
{
	struct sync_job *j = arg;
	struct vview *v = j->v;
	for (size_t i = 0; i < j->n; i++) {
		struct sync_item *it = &j->items[i];
		if (!it->ok)
			continue;
		if (it->op == SYNC_REMOVE)
			base_del(v, it->rel);
		else
			base_put(v, it->rel, vbase_new(&it->f, &it->fp));
	}
	v->gen = j->gen;
	struct cove_error *err = j->err;
	j->err = NULL;
	sync_job_free(j);
	op_done(v, err);
}

struct plan_ctx {
	struct sync_job *j;
	struct cove_map seen;
};

static int
same_content(const struct vbase *b, const struct cove_vfile *f)
{
	return b->type == f->type && (b->mode & 07777) == (f->mode & 07777) && b->size == f->size &&
	       b->data_len == f->data_len && (b->data_len == 0 || memcmp(b->data, f->data, b->data_len) == 0);
}

static int
plan_one(void *arg, const struct cove_vfile *f, struct cove_error **err)
{
	(void)err;
	struct plan_ctx *c = arg;
	struct vview *v = c->j->v;
	const char *rel = rel_of(v->sub_path, f->path);
	cove_map_put(&c->seen, rel, c);
	struct vbase *b = cove_map_get(&v->base, rel);
	if (b && same_content(b, f))
		return 0;
	struct sync_item *it = sync_add(c->j, SYNC_WRITE, rel, b);
	it->f = *f;
	it->f.path = xstrdup(f->path);
	it->f.data = f->data_len ? xmemdup(f->data, f->data_len) : NULL;
	return 0;
}

/* Bring the volume's tree into the view (after a reload's commit). */
static void
start_sync(struct vview *v)
{
	struct cove_error *err = NULL;
	int64_t gen = cove_volume_generation(v->vol_seq, &err);
	if (gen < 0) {
		op_done(v, err);
		return;
	}
	if (gen == v->gen) {
		op_done(v, NULL);
		return;
	}
	struct sync_job *j = xcalloc(1, sizeof(*j));
	j->v = v;
	j->bs = the_vv->ctx->blobs;
	j->gen = gen;
	struct plan_ctx c = {.j = j};
	int rv = 0;
	if (*v->sub_path) {
		/* The sub_path itself may be gone (or no longer a directory): then the view shows an empty tree. */
		cleanup_vfile struct cove_vfile top = {0};
		int found = cove_volume_lookup(v->vol_seq, v->sub_path, &top, &err);
		if (found < 0)
			rv = -1;
		else if (found && top.type == COVE_VFILE_DIR)
			rv = cove_volume_list_files(v->vol_seq, v->sub_path, 1, plan_one, &c, &err);
	} else {
		rv = cove_volume_list_files(v->vol_seq, "", 1, plan_one, &c, &err);
	}
	if (rv == 0) {
		size_t it = 0;
		const char *rel;
		void *bv;
		while (cove_map_next(&v->base, &it, &rel, &bv))
			if (!cove_map_get(&c.seen, rel))
				sync_add(j, SYNC_REMOVE, rel, bv);
	}
	cove_map_clear(&c.seen);
	if (rv < 0 || j->n == 0) {
		if (rv == 0)
			v->gen = gen;
		sync_job_free(j);
		op_done(v, err);
		return;
	}
	cove_workq_submit(the_vv->wq, sync_work, sync_done, j);
}

/* ---- operations on a view, one at a time ---- */

struct rm_job {
	struct vview *v;
};

static void
rm_work(void *arg)
{
	struct rm_job *j = arg;
	struct cove_error *err = NULL;
	if (cove_remove_tree(j->v->dir, &err) < 0) {
		log_warn("volumes: %s", err->msg);
		cove_error_free(err);
	}
}

static void
task_forget(struct vtask *t)
{
	cove_map_del(&the_vv->tasks, t->id);
	if (t->dir)
		rmdir(t->dir);
	void (*on_done)(void *) = the_vv->stopping ? NULL : t->on_done;
	void *arg = t->done_arg;
	free(t->id);
	free(t->dir);
	free(t);
	if (on_done)
		on_done(arg);
}

static void
view_unlink(struct vview *v)
{
	struct vtask *t = v->task;
	for (struct vview **pp = &t->views; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	}
	view_free(v);
	if (t->views == NULL && t->exited)
		task_forget(t);
}

static void
rm_done(void *arg)
{
	struct rm_job *j = arg;
	view_unlink(j->v);
	free(j);
}

static void
view_kick(struct vview *v)
{
	if (v->busy || the_vv == NULL || the_vv->stopping)
		return;
	struct vop *op = v->ops_head;
	if (op == NULL) {
		if (v->task->exited) {
			/* Last: the directory goes (off the loop: it may be big). */
			v->busy = 1;
			struct rm_job *j = xcalloc(1, sizeof(*j));
			j->v = v;
			cove_workq_submit(the_vv->wq, rm_work, rm_done, j);
		}
		return;
	}
	v->ops_head = op->next;
	if (v->ops_head == NULL)
		v->ops_tail = NULL;
	v->cur = op;
	v->busy = 1;
	if (v->read_only) {
		/* Nothing to commit; a reload still brings the volume in. */
		if (op->kind == OP_RELOAD)
			start_sync(v);
		else
			op_done(v, NULL);
		return;
	}
	start_scan(v);
}

static void
view_enqueue(struct vview *v, int kind, struct vrpc *rpc)
{
	struct vop *op = xcalloc(1, sizeof(*op));
	op->kind = kind;
	op->rpc = rpc;
	if (v->ops_tail)
		v->ops_tail->next = op;
	else
		v->ops_head = op;
	v->ops_tail = op;
	view_kick(v);
}

static void
rpc_cancelled(struct cove_call *call, void *arg)
{
	(void)call;
	struct vrpc *rpc = arg;
	rpc->call = NULL;
}

static void
view_rpc(struct cove_call *call, const char *task_id, const char *volume_id, int reload)
{
	if (the_vv == NULL) {
		cove_api_fail_code(call, COVE_UNAVAILABLE, "volumes are not running on this server");
		return;
	}
	struct vtask *t = cove_map_get(&the_vv->tasks, task_id);
	size_t n = 0;
	for (struct vview *v = t ? t->views : NULL; v; v = v->next)
		n += strcmp(v->volume_id, volume_id) == 0;
	if (n == 0 || t->exited) {
		cove_api_fail_code(call, COVE_FAILED_PRECONDITION,
				   "Volume %s is not mounted in this container: %s() works on the volumes of the function's "
				   "volumes={...}",
				   volume_id, reload ? "reload" : "commit");
		return;
	}
	struct vrpc *rpc = xcalloc(1, sizeof(*rpc));
	rpc->call = call;
	rpc->remaining = n;
	rpc->reload = reload;
	cove_call_on_cancel(call, rpc_cancelled, rpc);
	for (struct vview *v = t->views; v; v = v->next)
		if (strcmp(v->volume_id, volume_id) == 0)
			view_enqueue(v, reload ? OP_RELOAD : OP_COMMIT, rpc);
}

void
cove_volview_commit(struct cove_call *call, const char *task_id, const char *volume_id)
{
	view_rpc(call, task_id, volume_id, 0);
}

void
cove_volview_reload(struct cove_call *call, const char *task_id, const char *volume_id)
{
	view_rpc(call, task_id, volume_id, 1);
}

void
cove_volview_task_exit(const char *task_id, void (*on_done)(void *arg), void *arg)
{
	struct vtask *t = the_vv ? cove_map_get(&the_vv->tasks, task_id) : NULL;
	if (t == NULL || t->exited) {
		if (on_done)
			on_done(arg);
		return;
	}
	t->exited = 1;
	t->on_done = on_done;
	t->done_arg = arg;
	if (t->views == NULL) {
		task_forget(t);
		return;
	}
	/* Collected first: a view without work is removed (and unlinked) by its kick. */
	size_t n = 0;
	for (struct vview *v = t->views; v; v = v->next)
		n++;
	struct vview **vs = xcalloc(n, sizeof(*vs));
	n = 0;
	for (struct vview *v = t->views; v; v = v->next)
		vs[n++] = v;
	for (size_t i = 0; i < n; i++) {
		if (vs[i]->read_only)
			view_kick(vs[i]);
		else
			view_enqueue(vs[i], OP_FINAL, NULL);
	}
	free(vs);
}

static void
background(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	size_t it = 0;
	void *tv;
	while (cove_map_next(&the_vv->tasks, &it, NULL, &tv)) {
		struct vtask *t = tv;
		if (t->exited)
			continue;
		for (struct vview *v = t->views; v; v = v->next)
			if (v->background && !v->read_only && !v->busy && v->ops_head == NULL)
				view_enqueue(v, OP_BACKGROUND, NULL);
	}
}

/* ---- task start ---- */

static int
under(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	if (strcmp(dir, "/") == 0)
		return 1;
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Where the process runtime cannot mount a volume: over the system, or over what the container itself needs. */
static int
check_mount_path(struct cove_ctx *ctx, const char *task_root, const char *mp, struct cove_error **err)
{
	static const char *const system[] = {"/bin",  "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
					     "/proc", "/root", "/run",  "/sbin", "/sys", "/tmp",   "/usr",   "/var"};
	static const char *const below[] = {"/proc", "/sys", "/dev"};
	for (size_t i = 0; i < sizeof(system) / sizeof(system[0]); i++)
		if (strcmp(mp, system[i]) == 0)
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "a Volume cannot be mounted at %s: it would hide the system directory", mp);
	for (size_t i = 0; i < sizeof(below) / sizeof(below[0]); i++)
		if (under(below[i], mp))
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "a Volume cannot be mounted inside %s (%s)", below[i],
					      mp);
	if (ctx->builder)
		return 0; /* the linux runtime: the container's paths are its own, not the host's */
	char real[PATH_MAX];
	const char *needed[4] = {ctx->cfg.state_dir, ctx->cfg.python, task_root, NULL};
	if (ctx->cfg.python && realpath(ctx->cfg.python, real) != NULL)
		needed[3] = real;
	for (size_t i = 0; i < 4; i++) {
		if (needed[i] == NULL)
			continue;
		char abs[PATH_MAX];
		const char *p = needed[i];
		if (p[0] != '/' && realpath(p, abs) != NULL)
			p = abs;
		if (under(mp, p))
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "a Volume cannot be mounted at %s with Cove's process runtime: it would hide %s, "
					      "which the container needs",
					      mp, p);
	}
	return 0;
}

static int
cmp_mounts(const void *a, const void *b)
{
	const struct cove_container_mount *x = a, *y = b;
	return strcmp(x->target, y->target);
}

void
cove_volume_mounts_free(struct cove_container_mount *mounts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)mounts[i].source);
		free((char *)mounts[i].target);
	}
	free(mounts);
}

int
cove_volume_mounts_for_task(struct cove_ctx *ctx, const char *task_id, const Modal__Client__Function *def,
			    struct cove_container_mount **mounts_out, size_t *n_out, struct cove_error **err)
{
	*mounts_out = NULL;
	*n_out = 0;
	if (def->n_volume_mounts == 0)
		return 0;
	if (the_vv == NULL)
		return cove_error_set(err, COVE_UNAVAILABLE, "volumes are not running on this server");
	struct vtask *t = xcalloc(1, sizeof(*t));
	t->id = xstrdup(task_id);
	t->dir = xasprintf("%s/%s", the_vv->views_dir, task_id);
	cove_map_put(&the_vv->tasks, task_id, t);
	cleanup_free char *task_root = xasprintf("%s/%s/root", ctx->tasks_dir, task_id);
	struct cove_container_mount *mounts = xcalloc(def->n_volume_mounts, sizeof(*mounts));
	size_t n = 0;
	int rv = 0;
	for (size_t i = 0; i < def->n_volume_mounts && rv == 0; i++) {
		const Modal__Client__VolumeMount *m = def->volume_mounts[i];
		cleanup_volume struct cove_volume vol = {0};
		if (cove_volume_by_id(m->volume_id, &vol, err) < 0) {
			rv = cove_error_wrap(err, "mount at %s", m->mount_path ? m->mount_path : "?");
			break;
		}
		const char *why = NULL;
		cleanup_free char *mp = NULL;
		if (m->mount_path == NULL || m->mount_path[0] != '/' ||
		    cove_vpath_normalize(m->mount_path, 0, &mp, &why) < 0) {
			rv = cove_error_set(err, COVE_INVALID_ARGUMENT, "Volume mount path '%s' %s",
					    m->mount_path ? m->mount_path : "", why ? why : "must be absolute");
			break;
		}
		cleanup_free char *target = xasprintf("/%s", mp);
		if (check_mount_path(ctx, task_root, target, err) < 0) {
			rv = -1;
			break;
		}
		cleanup_free char *sub = NULL;
		if (cove_vpath_normalize(m->_sub_path_case ? m->sub_path : "", 1, &sub, &why) < 0) {
			rv = cove_error_set(err, COVE_INVALID_ARGUMENT, "Volume sub_path '%s' %s", m->sub_path, why);
			break;
		}
		for (size_t k = 0; k < n; k++) {
			if (strcmp(mounts[k].target, target) == 0) {
				rv = cove_error_set(err, COVE_INVALID_ARGUMENT, "two Volumes are mounted at %s", target);
				break;
			}
		}
		if (rv < 0)
			break;
		/* A missing sub_path is created, as the documentation promises. */
		if (*sub && cove_volume_mkdirs(&vol, sub, err) < 0) {
			rv = cove_error_wrap(err, "mount %s at %s", vol.id, target);
			break;
		}
		struct vview *v = xcalloc(1, sizeof(*v));
		v->task = t;
		v->volume_id = xstrdup(vol.id);
		v->vol_seq = vol.seq;
		v->sub_path = steal_pointer(&sub);
		v->dir = xasprintf("%s/%zu", t->dir, i);
		v->read_only = m->read_only;
		v->background = m->allow_background_commits;
		v->next = t->views;
		t->views = v;
		if (view_fill(v, err) < 0) {
			rv = cove_error_wrap(err, "mount %s at %s", vol.id, target);
			break;
		}
		mounts[n].source = xstrdup(v->dir);
		mounts[n].target = steal_pointer(&target);
		mounts[n].read_only = m->read_only;
		n++;
	}
	if (rv < 0) {
		/* Nothing ran in these views: they go without a commit. */
		cove_volume_mounts_free(mounts, n);
		t->exited = 1;
		if (t->views == NULL) {
			task_forget(t);
		} else {
			struct vview *next;
			for (struct vview *v = t->views; v; v = next) {
				next = v->next;
				view_kick(v);
			}
		}
		return -1;
	}
	/* Parents before what is mounted below them. */
	qsort(mounts, n, sizeof(*mounts), cmp_mounts);
	*mounts_out = mounts;
	*n_out = n;
	return 0;
}

int
cove_volview_running(void)
{
	return the_vv != NULL && !the_vv->stopping;
}

void
cove_volume_submit(void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	cove_workq_submit(the_vv->wq, work, done, arg);
}

/* ---- the app layout ---- */

void
cove_volume_fill_layout(Modal__Client__AppLayout *layout)
{
	if (the_vv == NULL || layout == NULL)
		return;
	for (size_t i = 0; i < layout->n_objects; i++) {
		Modal__Client__Object *o = layout->objects[i];
		if (o->handle_metadata_oneof_case != MODAL__CLIENT__OBJECT__HANDLE_METADATA_ONEOF__NOT_SET ||
		    !cove_id_valid(o->object_id, "vo"))
			continue;
		cleanup_volume struct cove_volume vol = {0};
		struct cove_error *err = NULL;
		if (cove_volume_by_id(o->object_id, &vol, &err) < 0) {
			cove_error_free(err);
			continue;
		}
		Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
		ci.created_at = vol.created_at;
		Modal__Client__VolumeMetadata meta = MODAL__CLIENT__VOLUME_METADATA__INIT;
		meta.version = vol.fs_version;
		meta.name = vol.name ? vol.name : "";
		meta.creation_info = &ci;
		/* An owned copy, freed with the layout. */
		o->volume_metadata = pb_dup(&meta.base);
		o->handle_metadata_oneof_case = MODAL__CLIENT__OBJECT__HANDLE_METADATA_ONEOF_VOLUME_METADATA;
	}
}

/* ---- start and stop ---- */

int
cove_volview_start(struct cove_ctx *ctx, struct cove_error **err)
{
	struct volview *vv = xcalloc(1, sizeof(*vv));
	vv->ctx = ctx;
	vv->views_dir = xasprintf("%s/volumes/views", ctx->cfg.state_dir);
	/* Views of an earlier run are leftovers: their containers are gone, and so is what they did not commit. */
	if (cove_remove_tree(vv->views_dir, err) < 0 || cove_mkdirs(vv->views_dir, err) < 0)
		goto fail;
	if ((vv->wq = cove_workq_new(ctx->base, WORKERS, err)) == NULL)
		goto fail;
	double bg = BACKGROUND_COMMIT_S;
	const char *s = getenv("COVE_VOLUME_COMMIT_INTERVAL_S");
	if (s && *s) {
		char *end;
		double v = strtod(s, &end);
		if (*end == '\0' && isfinite(v) && v > 0)
			bg = v;
		else
			log_warn("volumes: ignoring COVE_VOLUME_COMMIT_INTERVAL_S=%s (not a positive number of seconds)", s);
	}
	vv->bg_timer = event_new(ctx->base, -1, EV_PERSIST, background, vv);
	struct timeval tv = {(time_t)bg, (suseconds_t)((bg - (double)(time_t)bg) * 1e6)};
	event_add(vv->bg_timer, &tv);
	the_vv = vv;
	return 0;
fail:
	cove_error_wrap(err, "start volume views");
	free(vv->views_dir);
	free(vv);
	return -1;
}

void
cove_volview_stop(struct cove_ctx *ctx)
{
	(void)ctx;
	struct volview *vv = the_vv;
	if (vv == NULL)
		return;
	if (vv->bg_timer)
		event_free(vv->bg_timer);
	/* Jobs under way finish (their dones commit what they found); nothing new starts. */
	vv->stopping = 1;
	cove_workq_free(vv->wq);
	the_vv = NULL;
	size_t it = 0;
	void *tv;
	while (cove_map_next(&vv->tasks, &it, NULL, &tv)) {
		struct vtask *t = tv;
		while (t->views) {
			struct vview *v = t->views;
			t->views = v->next;
			struct vop *op = v->cur;
			if (op && op->rpc && --op->rpc->remaining == 0) {
				cove_error_free(op->rpc->err);
				free(op->rpc);
			}
			free(op);
			for (struct vop *q = v->ops_head; q; q = q->next)
				if (q->rpc && --q->rpc->remaining == 0) {
					cove_error_free(q->rpc->err);
					free(q->rpc);
				}
			view_free(v);
		}
		free(t->id);
		free(t->dir);
		free(t);
	}
	cove_map_clear(&vv->tasks);
	struct cove_error *err = NULL;
	if (cove_remove_tree(vv->views_dir, &err) < 0) {
		log_warn("volumes: %s", err->msg);
		cove_error_free(err);
	}
	free(vv->views_dir);
	free(vv);
}
