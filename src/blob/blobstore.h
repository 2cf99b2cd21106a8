/* Content on disk: blobs (opaque uploads named by id, for big arguments and results) and
 * content-addressed files (named by sha256 hex, for mount files). Files are written to a temporary name,
 * fsynced and renamed, so a file that exists is whole. */
#ifndef COVE_BLOB_BLOBSTORE_H
#define COVE_BLOB_BLOBSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util/error.h"

struct cove_blobstore;

/* Open (creating) <root>/blobs and <root>/files. Removes temporary files a crash left behind, and multipart
 * uploads whose parts have not been touched for a week. NULL + *err on failure. */
struct cove_blobstore *cove_blobstore_open(const char *root, struct cove_error **err);
void cove_blobstore_free(struct cove_blobstore *bs);

/* A new blob id ("bl-" + 22 base62 chars); the blob does not exist until it is written. Caller frees. */
char *cove_blobstore_new_id(struct cove_blobstore *bs);
/* Whether id is well formed ("bl-" + base62): every path built from an id goes through this check. */
int cove_blobstore_valid_id(const char *id);
/* Write a whole blob (replacing it). 0 or -1 + *err. */
int cove_blobstore_write_blob(struct cove_blobstore *bs, const char *id, const void *data, size_t len,
			      struct cove_error **err);
/* Read a whole blob into *out (malloc'd, caller frees). -1 + NOT_FOUND if missing. */
int cove_blobstore_read_blob(struct cove_blobstore *bs, const char *id, uint8_t **out, size_t *len,
			     struct cove_error **err);
/* Path of a blob's file (caller frees); the file may not exist. NULL if id is not valid. */
char *cove_blobstore_blob_path(struct cove_blobstore *bs, const char *id);
/* 1 if the blob exists (0 for a bad id). */
int cove_blobstore_has_blob(struct cove_blobstore *bs, const char *id);

/* Open a blob for reading: *fd (O_RDONLY|O_CLOEXEC; caller closes) and its size. 0, or -1 + *err:
 * INVALID_ARGUMENT for a bad id, NOT_FOUND if the blob does not exist (yet). */
int cove_blobstore_open_blob(struct cove_blobstore *bs, const char *id, int *fd, uint64_t *size,
			     struct cove_error **err);

/* Streaming writes, for bodies too big to hold twice. Data goes to a temporary file (name starting ".tmp-")
 * in the destination's directory and appears under its real name only on commit (fsync + rename + fsync of the
 * directory), so a reader never sees part of a blob. The md5 of the data is computed as it is written.
 * I/O errors carry RESOURCE_EXHAUSTED for a full disk or quota, UNAVAILABLE for EIO, INTERNAL otherwise. */
struct cove_blob_writer;
/* Start writing blob id (replacing it on commit). NULL + *err (INVALID_ARGUMENT for a bad id). */
struct cove_blob_writer *cove_blobstore_blob_writer(struct cove_blobstore *bs, const char *id,
						     struct cove_error **err);
/* Start writing part part_number (1..COVE_BLOB_MAX_PARTS) of blob id's multipart upload; a part written
 * again replaces the earlier one. NULL + *err (INVALID_ARGUMENT for a bad id or part number). */
#define COVE_BLOB_MAX_PARTS 10000
struct cove_blob_writer *cove_blobstore_part_writer(struct cove_blobstore *bs, const char *id, int part_number,
						     struct cove_error **err);
/* Append data (writev: iovcnt entries, any count). 0 or -1 + *err; after a failure the writer can only be
 * aborted. */
int cove_blob_writer_write(struct cove_blob_writer *w, const void *data, size_t len, struct cove_error **err);
int cove_blob_writer_writev(struct cove_blob_writer *w, const struct iovec *iov, int iovcnt, struct cove_error **err);
/* Make the data durable and visible; frees w whatever happens. md5_out (may be NULL) receives the md5 of the
 * data. If expect_md5 is not NULL and differs from it, nothing is written and the error is INVALID_ARGUMENT
 * with the message S3 uses ("The Content-MD5 you specified did not match what we received."). */
int cove_blob_writer_commit(struct cove_blob_writer *w, const uint8_t *expect_md5, uint8_t md5_out[16],
			    struct cove_error **err);
/* Drop the data (removes the temporary file) and free w. NULL is a no-op. */
void cove_blob_writer_abort(struct cove_blob_writer *w);

/* Multipart completion: one entry of the client's CompleteMultipartUpload list. */
struct cove_blob_part {
	int number;      /* PartNumber, 1..COVE_BLOB_MAX_PARTS */
	uint8_t md5[16]; /* the part's ETag, as raw md5 bytes */
};
/* Join the listed parts, in list order, into blob id (replacing it), then drop the upload's parts.
 * parts must be non-empty and strictly ascending by number (S3's rule); each must have been written and its md5
 * must match. etag_out receives S3's multipart ETag, hex(md5(concat(part md5 digests))) + "-" + n, unquoted.
 * -1 + *err: NOT_FOUND if no part of this upload was ever written (or it was already completed),
 * INVALID_ARGUMENT for a bad id, a bad list, or a missing or mismatched part; I/O errors as for writers. */
#define COVE_BLOB_ETAG_MAX 48
int cove_blobstore_complete_multipart(struct cove_blobstore *bs, const char *id, const struct cove_blob_part *parts,
				      size_t n_parts, char etag_out[COVE_BLOB_ETAG_MAX], struct cove_error **err);

/* Content-addressed files: sha256_hex is 64 lower-case hex chars (checked: -1 + INVALID_ARGUMENT otherwise).
 * write verifies the data hashes to sha256_hex (-1 + INVALID_ARGUMENT if not); writing a file that already
 * exists does nothing (its name is its content). has_file is 0 for a malformed sha256_hex. */
int cove_blobstore_has_file(struct cove_blobstore *bs, const char *sha256_hex);
int cove_blobstore_write_file(struct cove_blobstore *bs, const char *sha256_hex, const void *data, size_t len,
			      struct cove_error **err);
/* Make content file sha256_hex from blob id without holding the blob in memory (MountPutFile with
 * data_blob_id): the blob is hashed in chunks and, if it matches, hard-linked into place (copied where the
 * file system refuses links). Returns 0 at once if the file already exists. -1 + *err: INVALID_ARGUMENT for
 * bad names or a hash mismatch, NOT_FOUND if the blob does not exist, I/O errors as for writers. */
int cove_blobstore_file_from_blob(struct cove_blobstore *bs, const char *sha256_hex, const char *id,
				  struct cove_error **err);
/* Path of a content file (caller frees); the file may not exist. NULL if sha256_hex is not valid. */
char *cove_blobstore_file_path(struct cove_blobstore *bs, const char *sha256_hex);

#endif
