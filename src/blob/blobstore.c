/* Blobs and content-addressed files on local disk.
 *
 * Layout under the root:
 *   blobs/<id>                  a whole blob
 *   blobs/.staging/<id>/<n>     part n of blob id's multipart upload: a 4 KiB header holding the part's md5,
 *                               then its data
 *   files/<sha256 hex>          a content-addressed file
 *   volumes/blocks/<xx>/<hex>   a volume block (xx: its first two hex digits), see blobstore.h
 *   volumes/blocks/.lock        flock'd shared by block writers, exclusively by gc while it removes blocks
 *   .../.tmp-<random>           a file being written (never a valid id or sha256, so never served)
 * Every name comes from a validated id, sha256 hex or part number, so no request can reach outside the root.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* copy_file_range */
#endif
#include "blob/blobstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>

#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"

/* A part file starts with the part's md5, so completion checks ETags without reading the parts again. The
 * header fills a whole block: copy_file_range then copies block-aligned ranges, which is several times faster
 * than a 16-byte-shifted copy (and lets file systems with reflinks share blocks instead of copying). */
#define PART_HEADER 4096
#define PART_MD5 16
/* Multipart uploads whose directory has not changed for this long are abandoned. */
#define STAGING_MAX_AGE_S (7 * 24 * 3600)

struct cove_blobstore {
	char *blobs_dir;
	char *files_dir;
	char *staging_dir;
	char *blocks_dir;
	/* Block writes counted (atomically: any thread writes blocks) and the count the last sync covered. */
	uint64_t blocks_written;
	uint64_t blocks_synced;
	pthread_mutex_t sync_mu;
	uint8_t url_key[COVE_BLOB_KEY_BYTES];
};

struct cove_blob_writer {
	char *dir; /* fsynced after the rename */
	char *tmp_path;
	char *final_path;
	int fd;
	int header; /* a part file: PART_HEADER bytes reserved for its md5 */
	int failed;
	struct cove_md5_ctx *md5; /* NULL for a block */
	/* A volume block: checked against its name on commit, stored like block_store does. */
	struct cove_blobstore *block_bs;
	uint8_t block_hash[COVE_BLOCK_HASH];
	struct cove_sha256_ctx *sha;
	uint64_t size;
};

/* Disk full is worth retrying later (the HTTP side answers 503), a bug is not. */
static int
io_code(int e)
{
	switch (e) {
	case ENOSPC:
	case EDQUOT:
		return COVE_RESOURCE_EXHAUSTED;
	case EIO:
	case EMFILE:
	case ENFILE:
	case ENOMEM:
	case EAGAIN:
		return COVE_UNAVAILABLE;
	default:
		return COVE_INTERNAL;
	}
}

static int io_error(struct cove_error **err, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
io_error(struct cove_error **err, int e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cleanup_free char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	return cove_error_set(err, io_code(e), "%s: %s", msg, strerror(e));
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

static int
fsync_dir(const char *dir, struct cove_error **err)
{
	cleanup_close int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return io_error(err, errno, "open %s", dir);
	if (fsync(fd) < 0)
		return io_error(err, errno, "fsync %s", dir);
	return 0;
}

/* O_EXCL with a random name: two writers of the same blob never share a temporary file. */
static int
open_temp(const char *dir, char **path_out, struct cove_error **err)
{
	for (int tries = 0; tries < 16; tries++) {
		char rnd[17];
		cove_random_base62(rnd, 16);
		rnd[16] = '\0';
		char *path = xasprintf("%s/.tmp-%s", dir, rnd);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0) {
			*path_out = path;
			return fd;
		}
		int e = errno;
		free(path);
		if (e != EEXIST)
			return io_error(err, e, "create a temporary file in %s", dir);
	}
	return cove_error_set(err, COVE_INTERNAL, "create a temporary file in %s: too many collisions", dir);
}

int
cove_blobstore_valid_id(const char *id)
{
	return cove_id_valid(id, "bl");
}

static int
valid_sha256_hex(const char *s)
{
	if (s == NULL)
		return 0;
	size_t i = 0;
	for (; s[i]; i++) {
		if (i >= 64 || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return i == 64;
}

/* Remove what a crash left mid-write; the names cannot belong to anything whole. */
static void
sweep_temp_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".tmp-", 5) != 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			log_warn("blobstore: remove %s/%s: %s", dir, de->d_name, strerror(errno));
	}
	closedir(d);
}

static void
sweep_staging(const char *staging_dir)
{
	DIR *d = opendir(staging_dir);
	if (d == NULL)
		return;
	time_t now = time(NULL);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!cove_blobstore_valid_id(de->d_name))
			continue;
		cleanup_free char *path = xasprintf("%s/%s", staging_dir, de->d_name);
		struct stat st;
		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (now - st.st_mtime < STAGING_MAX_AGE_S) {
			sweep_temp_files(path);
			continue;
		}
		struct cove_error *err = NULL;
		if (cove_remove_tree(path, &err) < 0) {
			log_warn("blobstore: remove abandoned upload %s: %s", path, err->msg);
			cove_error_free(err);
		}
	}
	closedir(d);
}

static int blocks_open(struct cove_blobstore *bs, struct cove_error **err);

/* The key of the blob port's signed URLs: <root>/blob-url.key, 32 random bytes, mode 0600, made on first use.
 * Kept across restarts so that URLs handed out before one (a multipart upload under way, a client retrying)
 * still work; made with link(2) so that two processes starting at once agree on one key. */
#define URL_KEY_FILE "blob-url.key"
static int
url_key_load(const char *root, uint8_t key[COVE_BLOB_KEY_BYTES], struct cove_error **err)
{
	cleanup_free char *path = xasprintf("%s/" URL_KEY_FILE, root);
	for (int tries = 0; tries < 3; tries++) {
		int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			struct stat st;
			ssize_t n = -1;
			if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == COVE_BLOB_KEY_BYTES) {
				if ((st.st_mode & 077) != 0 && fchmod(fd, 0600) < 0)
					log_warn("blob store: %s is readable by others and cannot be fixed: %s", path,
						 strerror(errno));
				n = pread(fd, key, COVE_BLOB_KEY_BYTES, 0);
			}
			close(fd);
			if (n != COVE_BLOB_KEY_BYTES)
				return cove_error_set(err, COVE_FAILED_PRECONDITION,
						      "%s is not a %d-byte key (remove it to make a new one)", path,
						      COVE_BLOB_KEY_BYTES);
			return 0;
		}
		if (errno != ENOENT)
			return io_error(err, errno, "open %s", path);
		uint8_t fresh[COVE_BLOB_KEY_BYTES];
		if (getrandom(fresh, sizeof(fresh), 0) != (ssize_t)sizeof(fresh))
			return io_error(err, errno, "getrandom");
		char rnd[17];
		cove_random_base62(rnd, 16);
		rnd[16] = '\0';
		cleanup_free char *tmp = xasprintf("%s/.tmp-key-%s", root, rnd);
		cleanup_close int tfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (tfd < 0)
			return io_error(err, errno, "create %s", tmp);
		if (write_all(tfd, fresh, sizeof(fresh)) < 0 || fsync(tfd) < 0) {
			int e = errno;
			unlink(tmp);
			return io_error(err, e, "write %s", tmp);
		}
		int linked = link(tmp, path);
		int e = errno;
		unlink(tmp);
		if (linked < 0 && e != EEXIST)
			return io_error(err, e, "create %s", path);
		if (linked == 0 && fsync_dir(root, err) < 0)
			return -1;
	}
	return cove_error_set(err, COVE_INTERNAL, "%s keeps changing", path);
}

const uint8_t *
cove_blobstore_url_key(const struct cove_blobstore *bs)
{
	return bs->url_key;
}

struct cove_blobstore *
cove_blobstore_open(const char *root, struct cove_error **err)
{
	struct cove_blobstore *bs = xcalloc(1, sizeof(*bs));
	bs->blobs_dir = xasprintf("%s/blobs", root);
	bs->files_dir = xasprintf("%s/files", root);
	bs->staging_dir = xasprintf("%s/blobs/.staging", root);
	bs->blocks_dir = xasprintf("%s/volumes/blocks", root);
	pthread_mutex_init(&bs->sync_mu, NULL);
	if (cove_mkdirs(bs->staging_dir, err) < 0 || cove_mkdirs(bs->files_dir, err) < 0 ||
	    blocks_open(bs, err) < 0 || url_key_load(root, bs->url_key, err) < 0) {
		cove_error_wrap(err, "open blob store %s", root);
		cove_blobstore_free(bs);
		return NULL;
	}
	sweep_temp_files(bs->blobs_dir);
	sweep_temp_files(bs->files_dir);
	sweep_staging(bs->staging_dir);
	return bs;
}

void
cove_blobstore_free(struct cove_blobstore *bs)
{
	if (bs == NULL)
		return;
	free(bs->blobs_dir);
	free(bs->files_dir);
	free(bs->staging_dir);
	free(bs->blocks_dir);
	pthread_mutex_destroy(&bs->sync_mu);
	OPENSSL_cleanse(bs->url_key, sizeof(bs->url_key));
	free(bs);
}

char *
cove_blobstore_new_id(struct cove_blobstore *bs)
{
	(void)bs;
	return cove_id_new("bl");
}

char *
cove_blobstore_blob_path(struct cove_blobstore *bs, const char *id)
{
	if (!cove_blobstore_valid_id(id))
		return NULL;
	return xasprintf("%s/%s", bs->blobs_dir, id);
}

char *
cove_blobstore_file_path(struct cove_blobstore *bs, const char *sha256_hex)
{
	if (!valid_sha256_hex(sha256_hex))
		return NULL;
	return xasprintf("%s/%s", bs->files_dir, sha256_hex);
}

static int
is_regular_file(const char *path)
{
	struct stat st;
	return path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int
cove_blobstore_has_blob(struct cove_blobstore *bs, const char *id)
{
	cleanup_free char *path = cove_blobstore_blob_path(bs, id);
	return is_regular_file(path);
}

int
cove_blobstore_has_file(struct cove_blobstore *bs, const char *sha256_hex)
{
	cleanup_free char *path = cove_blobstore_file_path(bs, sha256_hex);
	return is_regular_file(path);
}

int
cove_blobstore_open_blob(struct cove_blobstore *bs, const char *id, int *fd_out, uint64_t *size,
			 struct cove_error **err)
{
	cleanup_free char *path = cove_blobstore_blob_path(bs, id);
	if (path == NULL)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid blob id");
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return cove_error_set(err, COVE_NOT_FOUND, "blob %s not found", id);
		return io_error(err, errno, "open blob %s", id);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return io_error(err, errno, "stat blob %s", id);
	if (!S_ISREG(st.st_mode))
		return cove_error_set(err, COVE_NOT_FOUND, "blob %s not found", id);
	*size = (uint64_t)st.st_size;
	*fd_out = fd;
	fd = -1;
	return 0;
}

int
cove_blobstore_read_blob(struct cove_blobstore *bs, const char *id, uint8_t **out, size_t *len,
			 struct cove_error **err)
{
	cleanup_free char *path = cove_blobstore_blob_path(bs, id);
	if (path == NULL)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid blob id");
	if (cove_read_file(path, out, len, err) < 0) {
		if (*err && (*err)->code == COVE_NOT_FOUND) {
			/* The user reads the id, not our directory layout. */
			free((*err)->msg);
			(*err)->msg = xasprintf("blob %s not found", id);
			return -1;
		}
		return cove_error_wrap(err, "read blob %s", id);
	}
	return 0;
}

/* Takes ownership of dir and final_path. */
static struct cove_blob_writer *
writer_new(char *dir, char *final_path, int header, struct cove_error **err)
{
	struct cove_blob_writer *w = xcalloc(1, sizeof(*w));
	w->dir = dir;
	w->final_path = final_path;
	w->header = header;
	w->fd = open_temp(dir, &w->tmp_path, err);
	if (w->fd < 0) {
		cove_blob_writer_abort(w);
		return NULL;
	}
	w->md5 = cove_md5_new();
	if (header) {
		/* Reserve the header now; commit fills it in once the digest is known. */
		static const uint8_t zeros[PART_HEADER];
		if (write_all(w->fd, zeros, sizeof(zeros)) < 0) {
			io_error(err, errno, "write %s", w->tmp_path);
			cove_blob_writer_abort(w);
			return NULL;
		}
	}
	return w;
}

struct cove_blob_writer *
cove_blobstore_blob_writer(struct cove_blobstore *bs, const char *id, struct cove_error **err)
{
	char *final_path = cove_blobstore_blob_path(bs, id);
	if (final_path == NULL) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid blob id");
		return NULL;
	}
	return writer_new(xstrdup(bs->blobs_dir), final_path, 0, err);
}

struct cove_blob_writer *
cove_blobstore_part_writer(struct cove_blobstore *bs, const char *id, int part_number, struct cove_error **err)
{
	if (!cove_blobstore_valid_id(id)) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid blob id");
		return NULL;
	}
	if (part_number < 1 || part_number > COVE_BLOB_MAX_PARTS) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "part number %d is not in 1..%d", part_number,
			       COVE_BLOB_MAX_PARTS);
		return NULL;
	}
	char *dir = xasprintf("%s/%s", bs->staging_dir, id);
	if (mkdir(dir, 0755) == 0) {
		/* The upload's directory must survive a crash as surely as the parts we acknowledge in it. */
		if (fsync_dir(bs->staging_dir, err) < 0) {
			free(dir);
			return NULL;
		}
	} else if (errno != EEXIST) {
		io_error(err, errno, "create upload directory for blob %s", id);
		free(dir);
		return NULL;
	}
	char *final_path = xasprintf("%s/%d", dir, part_number);
	return writer_new(dir, final_path, 1, err);
}

/* Digest what is about to be written; a block may not grow past COVE_BLOCK_SIZE. */
static int
writer_account(struct cove_blob_writer *w, const void *data, size_t len, struct cove_error **err)
{
	if (w->sha == NULL) {
		cove_md5_update(w->md5, data, len);
		return 0;
	}
	if (len > COVE_BLOCK_SIZE - w->size) {
		w->failed = 1;
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "a block holds at most %zu bytes", COVE_BLOCK_SIZE);
	}
	w->size += len;
	cove_sha256_update(w->sha, data, len);
	return 0;
}

int
cove_blob_writer_write(struct cove_blob_writer *w, const void *data, size_t len, struct cove_error **err)
{
	if (w->failed)
		return cove_error_set(err, COVE_INTERNAL, "write to a failed blob writer");
	if (writer_account(w, data, len, err) < 0)
		return -1;
	if (write_all(w->fd, data, len) < 0) {
		w->failed = 1;
		return io_error(err, errno, "write %s", w->tmp_path);
	}
	return 0;
}

int
cove_blob_writer_writev(struct cove_blob_writer *w, const struct iovec *iov, int iovcnt, struct cove_error **err)
{
	if (w->failed)
		return cove_error_set(err, COVE_INTERNAL, "write to a failed blob writer");
	/* Batches in a local copy: writev may stop part-way and the caller's array is const. */
	struct iovec batch[64];
	while (iovcnt > 0) {
		int n = iovcnt > 64 ? 64 : iovcnt;
		memcpy(batch, iov, (size_t)n * sizeof(*iov));
		for (int i = 0; i < n; i++)
			if (writer_account(w, batch[i].iov_base, batch[i].iov_len, err) < 0)
				return -1;
		struct iovec *v = batch;
		int left = n;
		while (left > 0) {
			if (v->iov_len == 0) {
				v++;
				left--;
				continue;
			}
			ssize_t done = writev(w->fd, v, left);
			if (done < 0) {
				if (errno == EINTR)
					continue;
				w->failed = 1;
				return io_error(err, errno, "write %s", w->tmp_path);
			}
			size_t d = (size_t)done;
			while (left > 0 && d >= v->iov_len) {
				d -= v->iov_len;
				v++;
				left--;
			}
			if (left > 0) {
				v->iov_base = (char *)v->iov_base + d;
				v->iov_len -= d;
			}
		}
		iov += n;
		iovcnt -= n;
	}
	return 0;
}

static void
writer_free(struct cove_blob_writer *w)
{
	if (w->md5) {
		uint8_t ignored[16];
		cove_md5_final(w->md5, ignored);
	}
	if (w->sha) {
		uint8_t ignored[32];
		cove_sha256_final(w->sha, ignored);
	}
	if (w->fd >= 0)
		close(w->fd);
	free(w->dir);
	free(w->tmp_path);
	free(w->final_path);
	free(w);
}

void
cove_blob_writer_abort(struct cove_blob_writer *w)
{
	if (w == NULL)
		return;
	if (w->tmp_path)
		unlink(w->tmp_path);
	writer_free(w);
}

static int block_commit(struct cove_blob_writer *w, struct cove_error **err);

int
cove_blob_writer_commit(struct cove_blob_writer *w, const uint8_t *expect_md5, uint8_t md5_out[16],
			struct cove_error **err)
{
	int r = -1;
	uint8_t digest[16];
	if (w->failed) {
		cove_error_set(err, COVE_INTERNAL, "commit a failed blob writer");
		goto out;
	}
	if (w->sha) {
		r = block_commit(w, err);
		goto out;
	}
	cove_md5_final(w->md5, digest);
	w->md5 = NULL;
	if (expect_md5 && memcmp(expect_md5, digest, sizeof(digest)) != 0) {
		cove_error_set(err, COVE_INVALID_ARGUMENT,
			       "The Content-MD5 you specified did not match what we received.");
		goto out;
	}
	if (w->header && pwrite(w->fd, digest, sizeof(digest), 0) != (ssize_t)sizeof(digest)) {
		io_error(err, errno, "write %s", w->tmp_path);
		goto out;
	}
	if (fsync(w->fd) < 0) {
		io_error(err, errno, "fsync %s", w->tmp_path);
		goto out;
	}
	int fd = w->fd;
	w->fd = -1;
	if (close(fd) < 0) {
		io_error(err, errno, "close %s", w->tmp_path);
		goto out;
	}
	if (rename(w->tmp_path, w->final_path) < 0) {
		io_error(err, errno, "rename %s", w->final_path);
		goto out;
	}
	free(w->tmp_path);
	w->tmp_path = NULL;
	if (fsync_dir(w->dir, err) < 0)
		goto out;
	if (md5_out)
		memcpy(md5_out, digest, sizeof(digest));
	r = 0;
out:
	cove_blob_writer_abort(w);
	return r;
}

int
cove_blobstore_write_blob(struct cove_blobstore *bs, const char *id, const void *data, size_t len,
			  struct cove_error **err)
{
	struct cove_blob_writer *w = cove_blobstore_blob_writer(bs, id, err);
	if (w == NULL)
		return cove_error_wrap(err, "write blob %s", cove_blobstore_valid_id(id) ? id : "(invalid)");
	if (cove_blob_writer_write(w, data, len, err) < 0) {
		cove_blob_writer_abort(w);
		return cove_error_wrap(err, "write blob %s", id);
	}
	if (cove_blob_writer_commit(w, NULL, NULL, err) < 0)
		return cove_error_wrap(err, "write blob %s", id);
	return 0;
}

int
cove_blobstore_write_file(struct cove_blobstore *bs, const char *sha256_hex, const void *data, size_t len,
			  struct cove_error **err)
{
	cleanup_free char *path = cove_blobstore_file_path(bs, sha256_hex);
	if (path == NULL)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid sha256 hex digest");
	char actual[65];
	cove_sha256_hex(data, len, actual);
	if (strcmp(actual, sha256_hex) != 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "file content hashes to %s, not %s", actual,
				      sha256_hex);
	if (is_regular_file(path))
		return 0;
	struct cove_blob_writer *w = writer_new(xstrdup(bs->files_dir), steal_pointer(&path), 0, err);
	if (w == NULL)
		return cove_error_wrap(err, "write file %s", sha256_hex);
	if (cove_blob_writer_write(w, data, len, err) < 0) {
		cove_blob_writer_abort(w);
		return cove_error_wrap(err, "write file %s", sha256_hex);
	}
	if (cove_blob_writer_commit(w, NULL, NULL, err) < 0)
		return cove_error_wrap(err, "write file %s", sha256_hex);
	return 0;
}

/* Append len bytes of in (from offset off) to out. copy_file_range keeps gigabytes out of user space; the
 * read/write loop covers file systems and kernels that refuse it. */
static int
copy_range(int in, off_t off, int out, uint64_t len)
{
	int use_cfr = 1;
	cleanup_free uint8_t *buf = NULL;
	const size_t buf_size = 1 << 20;
	while (len > 0) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
		if (use_cfr) {
			ssize_t n = copy_file_range(in, &off, out, NULL, chunk, 0);
			if (n > 0) {
				len -= (uint64_t)n;
				continue;
			}
			if (n == 0) {
				errno = EIO; /* the part shrank under us */
				return -1;
			}
			if (errno == EINTR)
				continue;
			if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP &&
			    errno != EBADF && errno != EPERM)
				return -1;
			use_cfr = 0;
		}
		if (buf == NULL)
			buf = xmalloc(buf_size);
		size_t want = chunk > buf_size ? buf_size : chunk;
		ssize_t n = pread(in, buf, want, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		if (write_all(out, buf, (size_t)n) < 0)
			return -1;
		off += n;
		len -= (uint64_t)n;
	}
	return 0;
}

int
cove_blobstore_complete_multipart(struct cove_blobstore *bs, const char *id, const struct cove_blob_part *parts,
				  size_t n_parts, char etag_out[COVE_BLOB_ETAG_MAX], struct cove_error **err)
{
	if (!cove_blobstore_valid_id(id))
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid blob id");
	if (n_parts == 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "complete blob %s: no parts listed", id);
	if (n_parts > COVE_BLOB_MAX_PARTS)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "complete blob %s: more than %d parts", id,
				      COVE_BLOB_MAX_PARTS);
	for (size_t i = 0; i < n_parts; i++) {
		if (parts[i].number < 1 || parts[i].number > COVE_BLOB_MAX_PARTS)
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "complete blob %s: part number %d is not in 1..%d",
					      id, parts[i].number, COVE_BLOB_MAX_PARTS);
		if (i > 0 && parts[i].number <= parts[i - 1].number)
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "complete blob %s: part numbers must be listed in ascending order", id);
	}
	cleanup_free char *upload_dir = xasprintf("%s/%s", bs->staging_dir, id);
	struct stat st;
	if (stat(upload_dir, &st) < 0) {
		if (errno == ENOENT)
			return cove_error_set(err, COVE_NOT_FOUND, "no multipart upload of blob %s is in progress", id);
		return io_error(err, errno, "complete blob %s: stat %s", id, upload_dir);
	}

	int r = -1;
	cleanup_free char *final_path = xasprintf("%s/%s", bs->blobs_dir, id);
	cleanup_free char *tmp_path = NULL;
	cleanup_close int out = open_temp(bs->blobs_dir, &tmp_path, err);
	if (out < 0)
		return cove_error_wrap(err, "complete blob %s", id);
	struct cove_md5_ctx *etag_md5 = cove_md5_new();
	for (size_t i = 0; i < n_parts; i++) {
		int number = parts[i].number;
		cleanup_free char *part_path = xasprintf("%s/%d", upload_dir, number);
		cleanup_close int in = open(part_path, O_RDONLY | O_CLOEXEC);
		if (in < 0) {
			if (errno == ENOENT)
				cove_error_set(err, COVE_INVALID_ARGUMENT, "complete blob %s: part %d was not uploaded", id,
					       number);
			else
				io_error(err, errno, "complete blob %s: open part %d", id, number);
			goto out;
		}
		uint8_t header[PART_MD5];
		if (fstat(in, &st) < 0) {
			io_error(err, errno, "complete blob %s: stat part %d", id, number);
			goto out;
		}
		ssize_t got = pread(in, header, sizeof(header), 0);
		if (got != (ssize_t)sizeof(header) || st.st_size < PART_HEADER) {
			cove_error_set(err, COVE_DATA_LOSS, "complete blob %s: part %d is damaged", id, number);
			goto out;
		}
		if (memcmp(header, parts[i].md5, sizeof(header)) != 0) {
			char have[33], want[33];
			cove_hex(header, 16, have);
			cove_hex(parts[i].md5, 16, want);
			cove_error_set(err, COVE_INVALID_ARGUMENT, "complete blob %s: part %d has ETag %s, not %s", id,
				       number, have, want);
			goto out;
		}
		if (copy_range(in, PART_HEADER, out, (uint64_t)(st.st_size - PART_HEADER)) < 0) {
			io_error(err, errno, "complete blob %s: copy part %d", id, number);
			goto out;
		}
		cove_md5_update(etag_md5, header, sizeof(header));
	}
	if (fsync(out) < 0) {
		io_error(err, errno, "complete blob %s: fsync", id);
		goto out;
	}
	if (rename(tmp_path, final_path) < 0) {
		io_error(err, errno, "complete blob %s: rename", id);
		goto out;
	}
	free(steal_pointer(&tmp_path));
	if (fsync_dir(bs->blobs_dir, err) < 0) {
		cove_error_wrap(err, "complete blob %s", id);
		goto out;
	}
	/* The blob is durable; losing the parts now only leaves garbage for the next sweep. */
	struct cove_error *rm_err = NULL;
	if (cove_remove_tree(upload_dir, &rm_err) < 0) {
		log_warn("blobstore: %s", rm_err->msg);
		cove_error_free(rm_err);
	}
	r = 0;
out:;
	uint8_t digest[16];
	cove_md5_final(etag_md5, digest);
	if (tmp_path)
		unlink(tmp_path);
	if (r == 0) {
		char hex[33];
		cove_hex(digest, 16, hex);
		snprintf(etag_out, COVE_BLOB_ETAG_MAX, "%s-%u", hex, (unsigned)n_parts);
	}
	return r;
}

int
cove_blobstore_file_from_blob(struct cove_blobstore *bs, const char *sha256_hex, const char *id,
			      struct cove_error **err)
{
	cleanup_free char *path = cove_blobstore_file_path(bs, sha256_hex);
	if (path == NULL)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid sha256 hex digest");
	if (!cove_blobstore_valid_id(id))
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid blob id");
	if (is_regular_file(path))
		return 0;
	int fd_raw = -1;
	uint64_t size = 0;
	if (cove_blobstore_open_blob(bs, id, &fd_raw, &size, err) < 0)
		return -1;
	cleanup_close int fd = fd_raw;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		abort();
	const size_t buf_size = 1 << 20;
	cleanup_free uint8_t *buf = xmalloc(buf_size);
	for (;;) {
		ssize_t n = read(fd, buf, buf_size);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			EVP_MD_CTX_free(ctx);
			return io_error(err, e, "read blob %s", id);
		}
		if (n == 0)
			break;
		if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			abort();
	}
	uint8_t digest[32];
	unsigned int dlen = 0;
	if (EVP_DigestFinal_ex(ctx, digest, &dlen) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	char actual[65];
	cove_hex(digest, 32, actual);
	if (strcmp(actual, sha256_hex) != 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "blob %s hashes to %s, not %s", id, actual, sha256_hex);

	/* Link the inode we hashed, not whatever the name points at now. Files are only ever replaced by rename,
	 * never changed in place, so sharing the inode with the blob is safe. */
	cleanup_free char *blob_path = cove_blobstore_blob_path(bs, id);
	struct stat by_fd, by_name;
	if (fstat(fd, &by_fd) < 0)
		return io_error(err, errno, "stat blob %s", id);
	if (stat(blob_path, &by_name) == 0 && by_fd.st_ino == by_name.st_ino && by_fd.st_dev == by_name.st_dev) {
		if (link(blob_path, path) == 0 || errno == EEXIST)
			return fsync_dir(bs->files_dir, err);
	}
	/* No hard links here (or the blob changed under us): copy what we hashed. */
	struct cove_blob_writer *w = writer_new(xstrdup(bs->files_dir), steal_pointer(&path), 0, err);
	if (w == NULL)
		return cove_error_wrap(err, "file %s from blob %s", sha256_hex, id);
	if (copy_range(fd, 0, w->fd, (uint64_t)by_fd.st_size) < 0) {
		io_error(err, errno, "copy blob %s", id);
		cove_blob_writer_abort(w);
		return cove_error_wrap(err, "file %s", sha256_hex);
	}
	/* The writer's md5 never saw the copied bytes; nothing checks it here. */
	if (cove_blob_writer_commit(w, NULL, NULL, err) < 0)
		return cove_error_wrap(err, "file %s from blob %s", sha256_hex, id);
	return 0;
}

/* ---- volume blocks ---- */

const uint8_t cove_block_empty_hash[COVE_BLOCK_HASH] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
cove_block_hash_parse(const char *hex, uint8_t hash[COVE_BLOCK_HASH])
{
	if (hex == NULL || strlen(hex) != 2 * COVE_BLOCK_HASH)
		return -1;
	for (size_t i = 0; i < COVE_BLOCK_HASH; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		hash[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int
is_empty_block(const uint8_t hash[COVE_BLOCK_HASH])
{
	return memcmp(hash, cove_block_empty_hash, COVE_BLOCK_HASH) == 0;
}

/* "<dir>/<xx>/<hex>" into a caller buffer. */
#define BLOCK_PATH_MAX 4200
static int
block_path(const char *dir, const uint8_t hash[COVE_BLOCK_HASH], char out[BLOCK_PATH_MAX])
{
	char hex[2 * COVE_BLOCK_HASH + 1];
	cove_hex(hash, COVE_BLOCK_HASH, hex);
	int n = snprintf(out, BLOCK_PATH_MAX, "%s/%.2s/%s", dir, hex, hex);
	return n > 0 && n < BLOCK_PATH_MAX ? 0 : -1;
}

/* The lock gc takes exclusively; block writers and probes take it shared for the span in which they decide that
 * a block exists and refresh its clock. A fresh open file description per use, so that threads never share one
 * (an flock belongs to the description). */
static int
blocks_lock(const char *dir, int how)
{
	char path[BLOCK_PATH_MAX];
	snprintf(path, sizeof(path), "%s/.lock", dir);
	int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	while (flock(fd, how) < 0) {
		if (errno != EINTR) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
	}
	return fd;
}

static int
blocks_open(struct cove_blobstore *bs, struct cove_error **err)
{
	if (cove_mkdirs(bs->blocks_dir, err) < 0)
		return -1;
	for (int i = 0; i < 256; i++) {
		char sub[BLOCK_PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%02x", bs->blocks_dir, i);
		if (mkdir(sub, 0755) < 0 && errno != EEXIST)
			return io_error(err, errno, "create %s", sub);
		sweep_temp_files(sub);
	}
	int fd = blocks_lock(bs->blocks_dir, LOCK_SH);
	if (fd < 0)
		return io_error(err, errno, "lock %s", bs->blocks_dir);
	close(fd);
	return 0;
}

/* Refresh the clock of a stored block: gc keeps what was touched within its grace period. */
static int
touch(const char *path)
{
	return utimensat(AT_FDCWD, path, NULL, 0);
}

int
cove_blobstore_block_probe(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], uint64_t *len,
			   struct cove_error **err)
{
	if (is_empty_block(hash)) {
		*len = 0;
		return 1;
	}
	char path[BLOCK_PATH_MAX];
	if (block_path(bs->blocks_dir, hash, path) < 0)
		return cove_error_set(err, COVE_INTERNAL, "block path too long");
	cleanup_close int lock = blocks_lock(bs->blocks_dir, LOCK_SH);
	if (lock < 0)
		return io_error(err, errno, "lock %s", bs->blocks_dir);
	struct stat st;
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return io_error(err, errno, "stat block %s", path);
	}
	if (touch(path) < 0 && errno != ENOENT)
		return io_error(err, errno, "touch block %s", path);
	*len = (uint64_t)st.st_size;
	return 1;
}

static void
sha256_iov(const struct iovec *iov, int iovcnt, uint8_t out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		abort();
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len && EVP_DigestUpdate(ctx, iov[i].iov_base, iov[i].iov_len) != 1)
			abort();
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(ctx, out, &n) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
}

static int
writev_all(int fd, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++)
		if (write_all(fd, iov[i].iov_base, iov[i].iov_len) < 0)
			return -1;
	return 0;
}

static int
block_store(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], const struct iovec *iov, int iovcnt,
	    int verify, struct cove_error **err)
{
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > COVE_BLOCK_SIZE)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "a block holds at most %zu bytes, not %zu",
				      COVE_BLOCK_SIZE, total);
	if (verify) {
		uint8_t actual[32];
		sha256_iov(iov, iovcnt, actual);
		if (memcmp(actual, hash, COVE_BLOCK_HASH) != 0) {
			char want[65], got[65];
			cove_hex(hash, 32, want);
			cove_hex(actual, 32, got);
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "block content hashes to %s, not %s", got, want);
		}
	}
	if (is_empty_block(hash))
		return 0;
	char path[BLOCK_PATH_MAX];
	if (block_path(bs->blocks_dir, hash, path) < 0)
		return cove_error_set(err, COVE_INTERNAL, "block path too long");
	cleanup_close int lock = blocks_lock(bs->blocks_dir, LOCK_SH);
	if (lock < 0)
		return io_error(err, errno, "lock %s", bs->blocks_dir);
	if (touch(path) == 0)
		return 0; /* already stored: its name is its content */
	if (errno != ENOENT)
		return io_error(err, errno, "touch block %s", path);
	char dir[BLOCK_PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	cleanup_free char *tmp = NULL;
	cleanup_close int fd = open_temp(dir, &tmp, err);
	if (fd < 0)
		return -1;
	if (writev_all(fd, iov, iovcnt) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return io_error(err, e, "write block %s", path);
	}
	__atomic_add_fetch(&bs->blocks_written, 1, __ATOMIC_SEQ_CST);
	return 0;
}

int
cove_blobstore_block_writev(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], const struct iovec *iov,
			    int iovcnt, struct cove_error **err)
{
	return block_store(bs, hash, iov, iovcnt, 1, err);
}

int
cove_blobstore_block_write_hashed(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], const void *data,
				  size_t len, struct cove_error **err)
{
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	return block_store(bs, hash, &iov, 1, 0, err);
}

struct cove_blob_writer *
cove_blobstore_block_writer(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], struct cove_error **err)
{
	char path[BLOCK_PATH_MAX];
	if (block_path(bs->blocks_dir, hash, path) < 0) {
		cove_error_set(err, COVE_INTERNAL, "block path too long");
		return NULL;
	}
	char *dir = xstrdup(path);
	*strrchr(dir, '/') = '\0';
	struct cove_blob_writer *w = xcalloc(1, sizeof(*w));
	w->dir = dir;
	w->final_path = xstrdup(path);
	w->block_bs = bs;
	memcpy(w->block_hash, hash, COVE_BLOCK_HASH);
	w->sha = cove_sha256_new();
	w->fd = open_temp(dir, &w->tmp_path, err);
	if (w->fd < 0) {
		cove_blob_writer_abort(w);
		return NULL;
	}
	return w;
}

/* A block's commit is block_store's, on a file already written: check the name, then (under the shared lock)
 * keep the stored copy or rename this one into place. Not fsynced: see cove_blobstore_sync_blocks. */
static int
block_commit(struct cove_blob_writer *w, struct cove_error **err)
{
	uint8_t actual[32];
	cove_sha256_final(w->sha, actual);
	w->sha = NULL;
	if (memcmp(actual, w->block_hash, COVE_BLOCK_HASH) != 0) {
		char want[65], got[65];
		cove_hex(w->block_hash, 32, want);
		cove_hex(actual, 32, got);
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "block content hashes to %s, not %s", got, want);
	}
	if (is_empty_block(w->block_hash))
		return 0;
	cleanup_close int lock = blocks_lock(w->block_bs->blocks_dir, LOCK_SH);
	if (lock < 0)
		return io_error(err, errno, "lock %s", w->block_bs->blocks_dir);
	if (touch(w->final_path) == 0)
		return 0; /* already stored: its name is its content */
	if (errno != ENOENT)
		return io_error(err, errno, "touch block %s", w->final_path);
	int fd = w->fd;
	w->fd = -1;
	if (close(fd) < 0 || rename(w->tmp_path, w->final_path) < 0)
		return io_error(err, errno, "write block %s", w->final_path);
	free(w->tmp_path);
	w->tmp_path = NULL;
	__atomic_add_fetch(&w->block_bs->blocks_written, 1, __ATOMIC_SEQ_CST);
	return 0;
}

int
cove_blobstore_block_open(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], int *fd_out, uint64_t *len,
			  struct cove_error **err)
{
	if (is_empty_block(hash)) {
		*fd_out = -1;
		*len = 0;
		return 0;
	}
	char path[BLOCK_PATH_MAX];
	if (block_path(bs->blocks_dir, hash, path) < 0)
		return cove_error_set(err, COVE_INTERNAL, "block path too long");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		char hex[65];
		cove_hex(hash, 32, hex);
		if (errno == ENOENT)
			return cove_error_set(err, COVE_NOT_FOUND, "block %s is not stored", hex);
		return io_error(err, errno, "open block %s", hex);
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return io_error(err, e, "stat block");
	}
	*fd_out = fd;
	*len = (uint64_t)st.st_size;
	return 0;
}

int
cove_blobstore_sync_blocks(struct cove_blobstore *bs, struct cove_error **err)
{
	/* Every write counted before this call is durable when it returns, even if another thread's sync is the one
	 * that covered it: syncs take turns, and each records how many writes it started after. */
	uint64_t target = __atomic_load_n(&bs->blocks_written, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&bs->sync_mu);
	int rv = 0;
	if (bs->blocks_synced < target) {
		uint64_t covers = __atomic_load_n(&bs->blocks_written, __ATOMIC_SEQ_CST);
		cleanup_close int fd = open(bs->blocks_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || syncfs(fd) < 0)
			rv = io_error(err, errno, "sync %s", bs->blocks_dir);
		else
			bs->blocks_synced = covers;
	}
	pthread_mutex_unlock(&bs->sync_mu);
	return rv;
}

int64_t
cove_blocks_stored_size(const char *root, const uint8_t hash[COVE_BLOCK_HASH])
{
	if (is_empty_block(hash))
		return 0;
	char dir[BLOCK_PATH_MAX], path[BLOCK_PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/volumes/blocks", root);
	if (block_path(dir, hash, path) < 0)
		return -1;
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	return (int64_t)st.st_size;
}

/* Candidates: blocks untouched since before the cutoff, collected per subdirectory. */
struct gc_candidate {
	uint8_t hash[COVE_BLOCK_HASH];
	uint64_t size;
};

#define GC_BATCH 512

int
cove_blocks_gc(const char *root, double grace_s, int (*referenced)(void *arg, const uint8_t hash[COVE_BLOCK_HASH]),
	       void *arg, struct cove_blocks_gc_stats *stats, struct cove_error **err)
{
	memset(stats, 0, sizeof(*stats));
	cleanup_free char *dir = xasprintf("%s/volumes/blocks", root);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	double cutoff = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - grace_s;
	/* First every old block, then the references: a block referred to after this scan began was touched (by the
	 * probe or write that preceded the reference) and is no longer old when it is checked again below. */
	struct gc_candidate *cands = NULL;
	size_t n = 0, cap = 0;
	int rv = -1;
	for (int i = 0; i < 256; i++) {
		char sub[BLOCK_PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%02x", dir, i);
		DIR *d = opendir(sub);
		if (d == NULL) {
			if (errno == ENOENT)
				continue;
			io_error(err, errno, "open %s", sub);
			goto out;
		}
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			uint8_t h[COVE_BLOCK_HASH];
			if (cove_block_hash_parse(de->d_name, h) < 0)
				continue;
			struct stat st;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
				continue;
			stats->scanned++;
			double mtime = (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9;
			if (mtime >= cutoff) {
				stats->kept_recent++;
				stats->kept_bytes += (uint64_t)st.st_size;
				continue;
			}
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				cands = xrealloc(cands, cap * sizeof(*cands));
			}
			memcpy(cands[n].hash, h, COVE_BLOCK_HASH);
			cands[n].size = (uint64_t)st.st_size;
			n++;
		}
		closedir(d);
	}
	/* Referenced ones stay; the references are read once the old blocks are known (see above). */
	size_t keep = 0;
	for (size_t i = 0; i < n; i++) {
		int r = referenced(arg, cands[i].hash);
		if (r < 0) {
			cove_error_set(err, COVE_INTERNAL, "gc: cannot read the volumes' references");
			goto out;
		}
		if (r > 0) {
			stats->kept_referenced++;
			stats->kept_bytes += cands[i].size;
			continue;
		}
		cands[keep++] = cands[i];
	}
	n = keep;
	for (size_t i = 0; i < n;) {
		/* Batches under the exclusive lock, so that writers wait briefly at most. A block touched since the scan
		 * is about to be referred to: it stays. */
		cleanup_close int lock = blocks_lock(dir, LOCK_EX);
		if (lock < 0) {
			io_error(err, errno, "lock %s", dir);
			goto out;
		}
		for (size_t end = i + GC_BATCH < n ? i + GC_BATCH : n; i < end; i++) {
			char path[BLOCK_PATH_MAX];
			struct stat st;
			if (block_path(dir, cands[i].hash, path) < 0 || stat(path, &st) < 0)
				continue;
			double mtime = (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9;
			if (mtime >= cutoff) {
				stats->kept_recent++;
				stats->kept_bytes += (uint64_t)st.st_size;
				continue;
			}
			if (unlink(path) < 0) {
				if (errno == ENOENT)
					continue;
				io_error(err, errno, "remove %s", path);
				goto out;
			}
			stats->removed++;
			stats->removed_bytes += (uint64_t)st.st_size;
		}
	}
	rv = 0;
out:
	free(cands);
	return rv;
}
