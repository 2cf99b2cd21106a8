/* Content on disk: blobs (opaque uploads named by id, for big arguments and results) and
 * content-addressed files (named by sha256 hex, for mount files). Files are written to a temporary name,
 * fsynced and renamed, so a file that exists is whole. */
#ifndef COVE_BLOB_BLOBSTORE_H
#define COVE_BLOB_BLOBSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "blob/url_sign.h"
#include "util/error.h"

struct cove_blobstore;

/* Open (creating) <root>/blobs and <root>/files. Removes temporary files a crash left behind, and multipart
 * uploads whose parts have not been touched for a week. NULL + *err on failure. */
struct cove_blobstore *cove_blobstore_open(const char *root, struct cove_error **err);
void cove_blobstore_free(struct cove_blobstore *bs);
/* The key that signs the blob port's URLs (blob/url_sign.h): <root>/blob-url.key, 32 random bytes made at the
 * first open, mode 0600, never sent anywhere; open fails (FAILED_PRECONDITION) on a file that is not a key. */
const uint8_t *cove_blobstore_url_key(const struct cove_blobstore *bs);

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

/* Volume blocks: the content of volume files, cut into COVE_BLOCK_SIZE pieces as the v2 client cuts them, each
 * stripped of its trailing zero bytes and named by the sha256 of what is left (32 raw bytes). Stored once under
 * <root>/volumes/blocks/<first two hex digits>/<64 hex digits>; the empty block (sha256 of nothing) always
 * exists and is never stored.
 *
 * Durability: block writes are not fsynced one by one (4 ms each would cap small-file uploads at ~250 files/s).
 * They survive a crash of Cove as soon as the call returns (the page cache outlives the process), and
 * cove_blobstore_sync_blocks makes every block written so far durable against power loss; callers run it before
 * committing metadata that refers to new blocks, so that no committed file ever refers to a lost block.
 *
 * Garbage collection (cove_blocks_gc, e.g. `cove gc` while the server runs) removes blocks that no volume refers
 * to and that nobody touched for its grace period. Every call here that reports a block as present or writes it
 * refreshes its modification time under a shared lock, and gc re-checks that time under an exclusive lock before
 * removing a block: a block a caller is about to refer to is never removed under it.
 * All block functions are safe to call from any thread. */
#define COVE_BLOCK_SIZE ((size_t)8 << 20)
#define COVE_BLOCK_HASH 32
/* 1 if the block is stored (its stored length in *len; its clock refreshed), 0 if not, -1 + *err on I/O errors. */
int cove_blobstore_block_probe(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], uint64_t *len,
			       struct cove_error **err);
/* Store a block given as iovecs (at most COVE_BLOCK_SIZE bytes in all): the data must hash to `hash`
 * (-1 + INVALID_ARGUMENT otherwise). Already stored: only its clock is refreshed. I/O errors as for writers. */
int cove_blobstore_block_writev(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], const struct iovec *iov,
				int iovcnt, struct cove_error **err);
/* The same for a block whose hash the caller computed from these very bytes (no second hashing). */
int cove_blobstore_block_write_hashed(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], const void *data,
				      size_t len, struct cove_error **err);
/* Stream a block to disk as it arrives: a writer (cove_blob_writer_write*) whose commit checks that the data
 * hashes to `hash` (INVALID_ARGUMENT otherwise, and nothing is stored) and stores it as block_writev would; more
 * than COVE_BLOCK_SIZE bytes fail the write with INVALID_ARGUMENT. md5_out of its commit is left untouched. */
struct cove_blob_writer *cove_blobstore_block_writer(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH],
						      struct cove_error **err);
/* Open a block for reading: *fd (caller closes; -1 for the empty block) and its stored length. -1 + NOT_FOUND if
 * it is not stored. */
int cove_blobstore_block_open(struct cove_blobstore *bs, const uint8_t hash[COVE_BLOCK_HASH], int *fd, uint64_t *len,
			      struct cove_error **err);
/* Make every block written so far durable (one syncfs). No-op when nothing was written since the last call. */
int cove_blobstore_sync_blocks(struct cove_blobstore *bs, struct cove_error **err);
/* Parse 64 lower- or upper-case hex digits into a hash; 0 or -1. */
int cove_block_hash_parse(const char *hex, uint8_t hash[COVE_BLOCK_HASH]);

/* The sha256 of the empty block. */
extern const uint8_t cove_block_empty_hash[COVE_BLOCK_HASH];

struct cove_blocks_gc_stats {
	uint64_t scanned, kept_referenced, kept_recent, removed, removed_bytes, kept_bytes;
};
/* Remove the unreferenced blocks of the state directory `root` that nobody touched for grace_s seconds.
 * referenced(arg, hash) says whether some volume refers to a block; it is asked only about candidates, after they
 * were found old, so that a block referred to after the scan began was touched and is kept. Works on the files
 * alone (no open blob store needed), so it may run in another process while the server runs. */
int cove_blocks_gc(const char *root, double grace_s, int (*referenced)(void *arg, const uint8_t hash[COVE_BLOCK_HASH]),
		   void *arg, struct cove_blocks_gc_stats *stats, struct cove_error **err);
/* Stored bytes of a block (0 for the empty block), or -1 if it is not stored. For disk usage reports. */
int64_t cove_blocks_stored_size(const char *root, const uint8_t hash[COVE_BLOCK_HASH]);

#endif
