/* Volumes in the store: each volume is a tree of committed entries (files, directories, symlinks) in SQLite
 * (schema 3 in store.c), and each file's content is a list of 8 MiB blocks kept once by content in the blob store
 * (blobstore.h, "volume blocks"). Nothing else describes a volume: a container's view of one is a copy made
 * from this tree (volview.h), and every change, whether uploaded by a client or committed from a container,
 * becomes one SQLite transaction here.
 *
 * Paths are relative to the volume's root, without a leading '/', normalized by cove_vpath_normalize; the root
 * itself ("") has no row. Every entry's parent directory has a row of type DIR.
 *
 * Durability: every write returns after SQLite committed it, and callers make the blocks a write refers to
 * durable first (cove_blobstore_sync_blocks), so an acknowledged change survives kill -9 and never refers to a
 * lost block.
 *
 * Ephemeral volumes (Volume.ephemeral()) live while their heartbeat does (10 min, or COVE_EPHEMERAL_TIMEOUT_S
 * seconds; checked every COVE_VOLUME_SWEEP_S, default 60) and while the app that created them runs. All functions
 * run on the event loop thread unless they say otherwise. */
#ifndef COVE_STORE_VOLUME_H
#define COVE_STORE_VOLUME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/error.h"

struct cove_ctx;
struct cove_store;
struct sqlite3;

/* The file system version the client speaks for a volume (api.proto's VolumeFsVersion). Both are stored the same
 * way here; the version only picks the client's upload and listing RPCs. */
enum { COVE_VOLUME_V1 = 1, COVE_VOLUME_V2 = 2 };

/* Entry types: the numbers of api.proto's FileEntry.FileType. */
enum { COVE_VFILE_FILE = 1, COVE_VFILE_DIR = 2, COVE_VFILE_SYMLINK = 3 };

#define COVE_VPATH_MAX 4096
/* Documented limits of v2 volumes, applied to both versions. */
#define COVE_VOLUME_MAX_FILE_BYTES ((uint64_t)1 << 40)

struct cove_volume {
	int64_t seq; /* its row: what its entries refer to */
	char *id;    /* "vo-…" */
	char *env;
	char *name;   /* NULL: ephemeral */
	char *app_id; /* the app that owns an ephemeral volume, or NULL */
	int fs_version;
	double created_at;
	int64_t generation; /* bumped by every change of its tree */
};
void cove_volume_clear(struct cove_volume *v);
#define cleanup_volume __attribute__((cleanup(cove_volume_clear)))

struct cove_vfile {
	char *path;
	int type;
	uint32_t mode; /* permission bits (07777) */
	uint64_t size; /* files: bytes; symlinks: length of the target; directories: 0 */
	int64_t mtime; /* seconds */
	uint8_t *data; /* files: 32-byte block hashes, ceil(size / 8 MiB) of them; symlinks: the target; dirs: none */
	size_t data_len;
};
void cove_vfile_clear(struct cove_vfile *f);
#define cleanup_vfile __attribute__((cleanup(cove_vfile_clear)))
/* Number of blocks a file of `size` bytes has. */
uint64_t cove_vfile_n_blocks(uint64_t size);

/* Normalize a client's path: leading, trailing and repeated '/' and "." components go; ".." components, NUL
 * bytes, invalid UTF-8 and over-long paths or components are refused (-1, *why says which). "" (or "/") is the
 * root: refused unless allow_root. *out is malloc'd. */
int cove_vpath_normalize(const char *in, int allow_root, char **out, const char **why);
/* The parent of a normalized path ("" for a top-level entry), into a malloc'd string. */
char *cove_vpath_parent(const char *path);

/* Start and stop (server.c): prepared statements, the ephemeral sweep. */
int cove_volume_start(struct cove_ctx *ctx, struct cove_error **err);
void cove_volume_stop(struct cove_ctx *ctx);
/* Whether the module runs (handlers answer UNAVAILABLE otherwise, e.g. in tests that do not start it). */
int cove_volume_running(void);

/* Objects. get_or_create follows ObjectCreationType (UNSPECIFIED: look up only, NOT_FOUND if missing;
 * CREATE_IF_MISSING; CREATE_FAIL_IF_EXISTS: ALREADY_EXISTS; EPHEMERAL / ANONYMOUS_OWNED_BY_APP: a new anonymous
 * volume); fs_version 0 means v1. An existing volume is returned as it is, whatever version was asked for (the
 * client compares). *created says whether it is new. */
int cove_volume_get_or_create(const char *env, const char *name, int creation_type, int fs_version, const char *app_id,
			      struct cove_volume *out, int *created, struct cove_error **err);
/* By id: NOT_FOUND (INVALID_ARGUMENT for a malformed id). */
int cove_volume_by_id(const char *id, struct cove_volume *out, struct cove_error **err);
/* Named volumes of an environment, newest first, created before `before` (0: any), at most max. */
int cove_volume_list(const char *env, double before, int max, struct cove_volume **out, size_t *n,
		     struct cove_error **err);
/* Delete a volume and its tree (its blocks go at the next gc). */
int cove_volume_delete(const struct cove_volume *v, struct cove_error **err);
/* Rename a named volume: ALREADY_EXISTS if the name is taken, FAILED_PRECONDITION for an ephemeral one. */
int cove_volume_rename(const struct cove_volume *v, const char *new_name, struct cove_error **err);
/* An ephemeral volume's heartbeat; NOT_FOUND if it is gone. */
int cove_volume_heartbeat(const char *id, struct cove_error **err);

/* Entries. lookup: 1 (filled), 0 (no such entry; the root "" is always a directory), -1. */
int cove_volume_lookup(int64_t vol, const char *path, struct cove_vfile *out, struct cove_error **err);
/* List: a file or symlink path gives that entry; a directory its children (recursive: every entry below it), in
 * path order, so that a directory comes before what it holds. NOT_FOUND if path does not exist. cb < 0 stops
 * (the return is then -1 with the callback's *err). */
int cove_volume_list_files(int64_t vol, const char *path, int recursive,
			   int (*cb)(void *arg, const struct cove_vfile *f, struct cove_error **err), void *arg,
			   struct cove_error **err);

/* One change of a volume's tree. */
enum { COVE_VCHANGE_PUT = 1, COVE_VCHANGE_DEL = 2 };
struct cove_vchange {
	int op;
	struct cove_vfile f; /* PUT: the new entry (f.path); DEL: f.path only */
	int conflict;        /* set by cove_volume_apply: this PUT was not applied (see there) */
};

/* Uploads (VolumePutFiles / VolumePutFiles2): files (type FILE) whose blocks are stored; parents are created.
 * Without overwrite, an existing file is ALREADY_EXISTS; a directory is never replaced (ALREADY_EXISTS), and a
 * parent that is a file is FAILED_PRECONDITION. All or nothing. */
int cove_volume_put_files(const struct cove_volume *v, const struct cove_vfile *files, size_t n, int overwrite,
			  struct cove_error **err);
/* Remove path (NOT_FOUND if missing; a non-empty directory needs recursive: FAILED_PRECONDITION; the root:
 * INVALID_ARGUMENT). */
int cove_volume_remove(const struct cove_volume *v, const char *path, int recursive, struct cove_error **err);
/* Copy like cp: one source to dst (into it if dst is a directory), several into the directory dst; directories
 * only with recursive. NOT_FOUND for a missing source. Blocks are shared, never copied. */
int cove_volume_copy(const struct cove_volume *v, char *const *srcs, size_t n_srcs, const char *dst, int recursive,
		     struct cove_error **err);
/* Commit a container's changes below `prefix` (its mount's sub_path, "" for the root), last writer wins per
 * path: a PUT replaces whatever is there (files in the way of its parents become directories); a DEL removes an
 * entry, but a directory only once nothing else is left in it. A directory is never removed with what is in it:
 * a PUT of a file or symlink where a directory still holds entries after this commit's deletions (entries
 * others committed, which this writer never saw) is not applied, and its change gets conflict = 1; the rest of
 * the commit is applied. Returns the volume's new generation in *generation. */
int cove_volume_apply(const struct cove_volume *v, const char *prefix, struct cove_vchange *changes, size_t n,
		      int64_t *generation, struct cove_error **err);
/* Make sure a directory (and its parents) exists: a mount's sub_path. */
int cove_volume_mkdirs(const struct cove_volume *v, const char *path, struct cove_error **err);

/* The volume's current generation; -1 + NOT_FOUND once it is deleted. */
int64_t cove_volume_generation(int64_t vol, struct cove_error **err);

/* Maintenance, usable without a running server (they take the store and the state directory):
 * gc removes blocks that no volume refers to and that nobody touched for grace_s seconds; report prints each
 * volume's files, their size and the disk its distinct blocks take. */
int cove_volume_gc(struct cove_store *store, const char *state_dir, double grace_s, FILE *out, struct cove_error **err);
int cove_volume_report(struct cove_store *store, const char *state_dir, FILE *out, struct cove_error **err);

#endif
