/* Volumes in SQLite (see volume.h): the volumes table, every volume's tree of entries, the ephemeral sweep, and
 * the maintenance that reads them from outside the server (gc, report). */
#include "store/volume.h"

#include <event2/event.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api.pb-c.h"
#include "blob/blobstore.h"
#include "sched/sched.h"
#include "server.h"
#include "store/kv.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/map.h"

#define EPHEMERAL_TIMEOUT_S 600.0
#define SWEEP_S 60.0

enum stmt_id {
	S_VOL_INSERT,
	S_VOL_BY_ID,
	S_VOL_BY_NAME,
	S_VOL_LIST,
	S_VOL_DELETE,
	S_VOL_RENAME,
	S_VOL_BUMP,
	S_VOL_GEN,
	S_FILES_DROP,
	S_FILE_GET,
	S_FILE_UPSERT,
	S_FILE_DELETE,
	S_FILE_DELETE_BELOW,
	S_FILE_CHILDREN,
	S_FILE_BELOW,
	S_FILE_ALL,
	S_FILE_HAS_CHILD,
	N_STMTS
};

#define VOL_COLUMNS "SELECT seq, id, env, name, app_id, fs_version, created_at, generation FROM volumes "
#define FILE_COLUMNS "SELECT path, type, mode, size, mtime, data FROM volume_files "

/* A directory's descendants are the paths in ["dir/", "dir0"): '0' follows '/' in byte order. */
static const char *const stmt_sql[N_STMTS] = {
	[S_VOL_INSERT] = "INSERT INTO volumes(id, env, name, app_id, fs_version, created_at, generation) "
			 "VALUES(?, ?, ?, ?, ?, ?, 0)",
	[S_VOL_BY_ID] = VOL_COLUMNS "WHERE id = ?",
	[S_VOL_BY_NAME] = VOL_COLUMNS "WHERE env = ? AND name = ?",
	[S_VOL_LIST] = VOL_COLUMNS "WHERE env = ? AND name IS NOT NULL AND (? <= 0 OR created_at < ?) "
				   "ORDER BY created_at DESC LIMIT ?",
	[S_VOL_DELETE] = "DELETE FROM volumes WHERE seq = ?",
	[S_VOL_RENAME] = "UPDATE volumes SET name = ? WHERE seq = ?",
	[S_VOL_BUMP] = "UPDATE volumes SET generation = generation + 1 WHERE seq = ? RETURNING generation",
	[S_VOL_GEN] = "SELECT generation FROM volumes WHERE seq = ?",
	[S_FILES_DROP] = "DELETE FROM volume_files WHERE vol = ?",
	[S_FILE_GET] = FILE_COLUMNS "WHERE vol = ? AND path = ?",
	[S_FILE_UPSERT] = "INSERT INTO volume_files(vol, path, parent, type, mode, size, mtime, data) "
			  "VALUES(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(vol, path) DO UPDATE SET parent = excluded.parent, "
			  "type = excluded.type, mode = excluded.mode, size = excluded.size, mtime = excluded.mtime, "
			  "data = excluded.data",
	[S_FILE_DELETE] = "DELETE FROM volume_files WHERE vol = ? AND path = ?",
	[S_FILE_DELETE_BELOW] = "DELETE FROM volume_files WHERE vol = ? AND path >= ? AND path < ?",
	[S_FILE_CHILDREN] = FILE_COLUMNS "WHERE vol = ? AND parent = ? ORDER BY path",
	[S_FILE_BELOW] = FILE_COLUMNS "WHERE vol = ? AND path >= ? AND path < ? ORDER BY path",
	[S_FILE_ALL] = FILE_COLUMNS "WHERE vol = ? ORDER BY path",
	[S_FILE_HAS_CHILD] = "SELECT 1 FROM volume_files WHERE vol = ? AND parent = ? LIMIT 1",
};

struct volumes {
	struct cove_ctx *ctx;
	sqlite3 *db;
	sqlite3_stmt *stmts[N_STMTS];
	struct cove_map heartbeats; /* ephemeral volume id -> double * (last heartbeat; memory only) */
	double ephemeral_timeout_s;
	struct event *sweep_timer;
};

static struct volumes *the_volumes;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
db_error(struct cove_error **err, const char *what)
{
	return cove_error_set(err, COVE_INTERNAL, "store: %s: %s", what, sqlite3_errmsg(the_volumes->db));
}

static void
stmt_release(sqlite3_stmt **st)
{
	if (*st) {
		sqlite3_reset(*st);
		sqlite3_clear_bindings(*st);
	}
}
#define cleanup_reset __attribute__((cleanup(stmt_release)))

static sqlite3_stmt *
stmt(enum stmt_id id)
{
	return the_volumes->stmts[id];
}

static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static char *
dup_col(sqlite3_stmt *st, int i)
{
	const char *v = (const char *)sqlite3_column_text(st, i);
	return v ? xstrdup(v) : NULL;
}

void
cove_volume_clear(struct cove_volume *v)
{
	free(v->id);
	free(v->env);
	free(v->name);
	free(v->app_id);
	memset(v, 0, sizeof(*v));
}

void
cove_vfile_clear(struct cove_vfile *f)
{
	free(f->path);
	free(f->data);
	memset(f, 0, sizeof(*f));
}

uint64_t
cove_vfile_n_blocks(uint64_t size)
{
	return (size + COVE_BLOCK_SIZE - 1) / COVE_BLOCK_SIZE;
}

int
cove_volume_running(void)
{
	return the_volumes != NULL;
}

/* ---- paths ---- */

/* Length of the UTF-8 sequence at p (1..4), or 0 if it is not valid (overlongs, surrogates, > U+10FFFF). */
static size_t
utf8_seq(const unsigned char *p)
{
	unsigned c = p[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

int
cove_vpath_normalize(const char *in, int allow_root, char **out, const char **why)
{
	if (in == NULL)
		in = "";
	size_t len = strlen(in);
	if (len > COVE_VPATH_MAX) {
		*why = "is longer than 4096 bytes";
		return -1;
	}
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq((const unsigned char *)in + i);
		if (n == 0) {
			*why = "is not valid UTF-8";
			return -1;
		}
		i += n;
	}
	char *buf = xmalloc(len + 1);
	size_t o = 0;
	for (const char *s = in; *s;) {
		while (*s == '/')
			s++;
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0)
			break;
		if (n == 1 && s[0] == '.') {
			s += n;
			continue;
		}
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			free(buf);
			*why = "must not contain '..'";
			return -1;
		}
		if (n > 255) {
			free(buf);
			*why = "has a name longer than 255 bytes";
			return -1;
		}
		if (o > 0)
			buf[o++] = '/';
		memcpy(buf + o, s, n);
		o += n;
		s += n;
	}
	buf[o] = '\0';
	if (o == 0 && !allow_root) {
		free(buf);
		*why = "is the volume's root";
		return -1;
	}
	*out = buf;
	return 0;
}

char *
cove_vpath_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup("");
}

static const char *
vpath_base(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* "a/b" + "c" -> "a/b/c"; "" + "c" -> "c". */
static char *
vpath_join(const char *a, const char *b)
{
	if (*a == '\0')
		return xstrdup(b);
	if (*b == '\0')
		return xstrdup(a);
	return xasprintf("%s/%s", a, b);
}

/* ---- rows ---- */

static void
volume_from_row(sqlite3_stmt *st, struct cove_volume *v)
{
	v->seq = sqlite3_column_int64(st, 0);
	v->id = dup_col(st, 1);
	v->env = dup_col(st, 2);
	v->name = dup_col(st, 3);
	v->app_id = dup_col(st, 4);
	v->fs_version = sqlite3_column_int(st, 5);
	v->created_at = sqlite3_column_double(st, 6);
	v->generation = sqlite3_column_int64(st, 7);
	if (v->env == NULL)
		v->env = xstrdup("");
}

static void
vfile_from_row(sqlite3_stmt *st, struct cove_vfile *f)
{
	f->path = dup_col(st, 0);
	f->type = sqlite3_column_int(st, 1);
	f->mode = (uint32_t)sqlite3_column_int(st, 2);
	f->size = (uint64_t)sqlite3_column_int64(st, 3);
	f->mtime = sqlite3_column_int64(st, 4);
	f->data_len = (size_t)sqlite3_column_bytes(st, 5);
	f->data = f->data_len ? xmemdup(sqlite3_column_blob(st, 5), f->data_len) : NULL;
	if (f->path == NULL)
		f->path = xstrdup("");
}

/* A borrowed view of the current row (valid until the statement moves). */
static void
vfile_peek_row(sqlite3_stmt *st, struct cove_vfile *f)
{
	f->path = (char *)sqlite3_column_text(st, 0);
	f->type = sqlite3_column_int(st, 1);
	f->mode = (uint32_t)sqlite3_column_int(st, 2);
	f->size = (uint64_t)sqlite3_column_int64(st, 3);
	f->mtime = sqlite3_column_int64(st, 4);
	f->data_len = (size_t)sqlite3_column_bytes(st, 5);
	f->data = (uint8_t *)sqlite3_column_blob(st, 5);
	if (f->path == NULL)
		f->path = "";
}

static int
volume_load(enum stmt_id which, const char *a, const char *b, struct cove_volume *out, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(which);
	bind_text(st, 1, a);
	if (b)
		bind_text(st, 2, b);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return db_error(err, "read volume");
	volume_from_row(st, out);
	return 1;
}

static int
bump(const struct cove_volume *v, int64_t *generation, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(S_VOL_BUMP);
	sqlite3_bind_int64(st, 1, v->seq);
	if (sqlite3_step(st) != SQLITE_ROW)
		return cove_error_set(err, COVE_NOT_FOUND, "Volume %s no longer exists", v->id);
	if (generation)
		*generation = sqlite3_column_int64(st, 0);
	/* RETURNING: step to the end so the update is complete before the reset. */
	while (sqlite3_step(st) == SQLITE_ROW)
		;
	return 0;
}

int64_t
cove_volume_generation(int64_t vol, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(S_VOL_GEN);
	sqlite3_bind_int64(st, 1, vol);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return cove_error_set(err, COVE_NOT_FOUND, "the volume was deleted");
	if (rc != SQLITE_ROW)
		return db_error(err, "read volume");
	return sqlite3_column_int64(st, 0);
}

int
cove_volume_lookup(int64_t vol, const char *path, struct cove_vfile *out, struct cove_error **err)
{
	if (*path == '\0') {
		memset(out, 0, sizeof(*out));
		out->path = xstrdup("");
		out->type = COVE_VFILE_DIR;
		out->mode = 0755;
		return 1;
	}
	cleanup_reset sqlite3_stmt *st = stmt(S_FILE_GET);
	sqlite3_bind_int64(st, 1, vol);
	bind_text(st, 2, path);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return db_error(err, "read volume entry");
	vfile_from_row(st, out);
	return 1;
}

/* The type of the entry at path (0: none). */
static int
entry_type(int64_t vol, const char *path, struct cove_error **err)
{
	if (*path == '\0')
		return COVE_VFILE_DIR;
	cleanup_reset sqlite3_stmt *st = stmt(S_FILE_GET);
	sqlite3_bind_int64(st, 1, vol);
	bind_text(st, 2, path);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return db_error(err, "read volume entry");
	return sqlite3_column_int(st, 1);
}

static int
has_children(int64_t vol, const char *path, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(S_FILE_HAS_CHILD);
	sqlite3_bind_int64(st, 1, vol);
	bind_text(st, 2, path);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_error(err, "read volume entry");
}

static int
row_put(int64_t vol, const struct cove_vfile *f, struct cove_error **err)
{
	cleanup_free char *parent = cove_vpath_parent(f->path);
	cleanup_reset sqlite3_stmt *st = stmt(S_FILE_UPSERT);
	sqlite3_bind_int64(st, 1, vol);
	bind_text(st, 2, f->path);
	bind_text(st, 3, parent);
	sqlite3_bind_int(st, 4, f->type);
	sqlite3_bind_int(st, 5, (int)(f->mode & 07777));
	sqlite3_bind_int64(st, 6, (sqlite3_int64)f->size);
	sqlite3_bind_int64(st, 7, f->mtime);
	sqlite3_bind_blob64(st, 8, f->data_len ? (const void *)f->data : "", f->data_len, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return db_error(err, "write volume entry");
	return 0;
}

static int
row_delete(int64_t vol, const char *path, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(S_FILE_DELETE);
	sqlite3_bind_int64(st, 1, vol);
	bind_text(st, 2, path);
	if (sqlite3_step(st) != SQLITE_DONE)
		return db_error(err, "delete volume entry");
	return 0;
}

/* Every entry below directory path (not the directory itself). */
static int
rows_delete_below(int64_t vol, const char *path, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = NULL;
	if (*path == '\0') {
		st = stmt(S_FILES_DROP);
		sqlite3_bind_int64(st, 1, vol);
	} else {
		st = stmt(S_FILE_DELETE_BELOW);
		cleanup_free char *lo = xasprintf("%s/", path);
		cleanup_free char *hi = xasprintf("%s0", path);
		sqlite3_bind_int64(st, 1, vol);
		sqlite3_bind_text(st, 2, lo, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, hi, -1, SQLITE_TRANSIENT);
	}
	if (sqlite3_step(st) != SQLITE_DONE)
		return db_error(err, "delete volume entries");
	return 0;
}

static int64_t
now_sec(void)
{
	return (int64_t)time(NULL);
}

/* Make every ancestor of path a directory. strict: a file in the way is FAILED_PRECONDITION; else it is replaced
 * by a directory (last writer wins). */
static int
ensure_parents(int64_t vol, const char *path, int strict, struct cove_error **err)
{
	cleanup_free char *p = xstrdup(path);
	for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		int t = entry_type(vol, p, err);
		if (t < 0)
			return -1;
		if (t != COVE_VFILE_DIR) {
			if (t != 0 && strict)
				return cove_error_set(err, COVE_FAILED_PRECONDITION,
						      "'/%s' is a file, so '/%s' cannot be created below it", p, path);
			struct cove_vfile d = {.path = p, .type = COVE_VFILE_DIR, .mode = 0755, .mtime = now_sec()};
			if (row_put(vol, &d, err) < 0)
				return -1;
		}
		*s = '/';
	}
	return 0;
}

static int
txn_begin(struct cove_error **err)
{
	return cove_store_begin(the_volumes->ctx->store, err);
}

static int
txn_end(int rv, struct cove_error **err)
{
	if (rv < 0) {
		cove_store_rollback(the_volumes->ctx->store);
		return -1;
	}
	return cove_store_commit(the_volumes->ctx->store, err);
}

/* ---- objects ---- */

int
cove_volume_get_or_create(const char *env, const char *name, int creation_type, int fs_version, const char *app_id,
			  struct cove_volume *out, int *created, struct cove_error **err)
{
	*created = 0;
	int anonymous = creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_EPHEMERAL ||
			creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP;
	if (fs_version == 0)
		fs_version = COVE_VOLUME_V1;
	if (!anonymous) {
		int found = volume_load(S_VOL_BY_NAME, env, name, out, err);
		if (found < 0)
			return -1;
		if (found) {
			if (creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS) {
				cove_volume_clear(out);
				return cove_error_set(err, COVE_ALREADY_EXISTS, "Volume '%s' already exists in environment '%s'",
						      name, env);
			}
			return 0;
		}
		if (creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED)
			return cove_error_set(err, COVE_NOT_FOUND, "Volume '%s' not found in environment '%s'", name, env);
	}
	cleanup_free char *id = cove_id_new("vo");
	double now = now_s();
	{
		cleanup_reset sqlite3_stmt *st = stmt(S_VOL_INSERT);
		bind_text(st, 1, id);
		bind_text(st, 2, env);
		bind_text(st, 3, anonymous ? NULL : name);
		bind_text(st, 4, anonymous ? app_id : NULL);
		sqlite3_bind_int(st, 5, fs_version);
		sqlite3_bind_double(st, 6, now);
		if (sqlite3_step(st) != SQLITE_DONE)
			return db_error(err, "create volume");
	}
	if (anonymous) {
		double *hb = xmalloc(sizeof(*hb));
		*hb = now;
		free(cove_map_put(&the_volumes->heartbeats, id, hb));
	}
	if (volume_load(S_VOL_BY_ID, id, NULL, out, err) != 1)
		return cove_error_set(err, COVE_INTERNAL, "Volume %s vanished after it was created", id);
	*created = 1;
	return 0;
}

int
cove_volume_by_id(const char *id, struct cove_volume *out, struct cove_error **err)
{
	if (!cove_id_valid(id, "vo"))
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "'%s' is not a Volume id (vo-…)", id ? id : "");
	int found = volume_load(S_VOL_BY_ID, id, NULL, out, err);
	if (found < 0)
		return -1;
	if (!found)
		return cove_error_set(err, COVE_NOT_FOUND, "Volume %s not found (it may have been deleted)", id);
	return 0;
}

int
cove_volume_list(const char *env, double before, int max, struct cove_volume **out, size_t *n,
		 struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(S_VOL_LIST);
	bind_text(st, 1, env);
	sqlite3_bind_double(st, 2, before);
	sqlite3_bind_double(st, 3, before);
	sqlite3_bind_int(st, 4, max);
	struct cove_volume *rows = xcalloc((size_t)max + 1, sizeof(*rows));
	size_t k = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && k < (size_t)max)
		volume_from_row(st, &rows[k++]);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		for (size_t i = 0; i < k; i++)
			cove_volume_clear(&rows[i]);
		free(rows);
		return db_error(err, "list volumes");
	}
	*out = rows;
	*n = k;
	return 0;
}

int
cove_volume_delete(const struct cove_volume *v, struct cove_error **err)
{
	int rv = txn_begin(err);
	if (rv == 0) {
		cleanup_reset sqlite3_stmt *st = stmt(S_FILES_DROP);
		sqlite3_bind_int64(st, 1, v->seq);
		if (sqlite3_step(st) != SQLITE_DONE)
			rv = db_error(err, "delete volume entries");
	}
	if (rv == 0) {
		cleanup_reset sqlite3_stmt *st = stmt(S_VOL_DELETE);
		sqlite3_bind_int64(st, 1, v->seq);
		if (sqlite3_step(st) != SQLITE_DONE)
			rv = db_error(err, "delete volume");
	}
	if (txn_end(rv, err) < 0)
		return cove_error_wrap(err, "delete Volume %s", v->id);
	free(cove_map_del(&the_volumes->heartbeats, v->id));
	return 0;
}

int
cove_volume_rename(const struct cove_volume *v, const char *new_name, struct cove_error **err)
{
	if (v->name == NULL)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "an ephemeral Volume has no name to change");
	cleanup_volume struct cove_volume other = {0};
	int found = volume_load(S_VOL_BY_NAME, v->env, new_name, &other, err);
	if (found < 0)
		return -1;
	if (found && other.seq != v->seq)
		return cove_error_set(err, COVE_ALREADY_EXISTS, "Volume '%s' already exists in environment '%s'", new_name,
				      v->env);
	cleanup_reset sqlite3_stmt *st = stmt(S_VOL_RENAME);
	bind_text(st, 1, new_name);
	sqlite3_bind_int64(st, 2, v->seq);
	if (sqlite3_step(st) != SQLITE_DONE)
		return db_error(err, "rename volume");
	return 0;
}

int
cove_volume_heartbeat(const char *id, struct cove_error **err)
{
	double *hb = cove_map_get(&the_volumes->heartbeats, id);
	if (hb) {
		*hb = now_s();
		return 0;
	}
	cleanup_volume struct cove_volume v = {0};
	return cove_volume_by_id(id, &v, err);
}

/* ---- listing ---- */

int
cove_volume_list_files(int64_t vol, const char *path, int recursive,
		       int (*cb)(void *arg, const struct cove_vfile *f, struct cove_error **err), void *arg,
		       struct cove_error **err)
{
	cleanup_vfile struct cove_vfile self = {0};
	int found = cove_volume_lookup(vol, path, &self, err);
	if (found < 0)
		return -1;
	if (!found)
		return cove_error_set(err, COVE_NOT_FOUND, "No such file or directory: '/%s'", path);
	if (self.type != COVE_VFILE_DIR)
		return cb(arg, &self, err) < 0 ? -1 : 0;
	cleanup_reset sqlite3_stmt *st = NULL;
	cleanup_free char *lo = NULL, *hi = NULL;
	if (!recursive) {
		st = stmt(S_FILE_CHILDREN);
		sqlite3_bind_int64(st, 1, vol);
		bind_text(st, 2, path);
	} else if (*path == '\0') {
		st = stmt(S_FILE_ALL);
		sqlite3_bind_int64(st, 1, vol);
	} else {
		st = stmt(S_FILE_BELOW);
		lo = xasprintf("%s/", path);
		hi = xasprintf("%s0", path);
		sqlite3_bind_int64(st, 1, vol);
		bind_text(st, 2, lo);
		bind_text(st, 3, hi);
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct cove_vfile f;
		vfile_peek_row(st, &f);
		if (cb(arg, &f, err) < 0)
			return -1;
	}
	return rc == SQLITE_DONE ? 0 : db_error(err, "list volume entries");
}

/* ---- changes ---- */

int
cove_volume_put_files(const struct cove_volume *v, const struct cove_vfile *files, size_t n, int overwrite,
		      struct cove_error **err)
{
	int rv = txn_begin(err);
	for (size_t i = 0; i < n && rv == 0; i++) {
		const struct cove_vfile *f = &files[i];
		rv = ensure_parents(v->seq, f->path, 1, err);
		if (rv < 0)
			break;
		int t = entry_type(v->seq, f->path, err);
		if (t < 0) {
			rv = -1;
			break;
		}
		if (t == COVE_VFILE_DIR) {
			rv = cove_error_set(err, COVE_ALREADY_EXISTS, "'/%s' is a directory; a file cannot replace it",
					    f->path);
			break;
		}
		if (t != 0 && !overwrite) {
			rv = cove_error_set(err, COVE_ALREADY_EXISTS,
					    "'/%s' already exists (pass force=True to batch_upload, or --force to `modal "
					    "volume put`, to overwrite it)",
					    f->path);
			break;
		}
		rv = row_put(v->seq, f, err);
	}
	if (rv == 0)
		rv = bump(v, NULL, err);
	return txn_end(rv, err);
}

int
cove_volume_mkdirs(const struct cove_volume *v, const char *path, struct cove_error **err)
{
	if (*path == '\0')
		return 0;
	int t = entry_type(v->seq, path, err);
	if (t < 0)
		return -1;
	if (t == COVE_VFILE_DIR)
		return 0;
	if (t != 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "'/%s' in Volume %s is a file, not a directory", path,
				      v->id);
	int rv = txn_begin(err);
	if (rv == 0)
		rv = ensure_parents(v->seq, path, 1, err);
	if (rv == 0) {
		struct cove_vfile d = {.path = (char *)path, .type = COVE_VFILE_DIR, .mode = 0755, .mtime = now_sec()};
		rv = row_put(v->seq, &d, err);
	}
	if (rv == 0)
		rv = bump(v, NULL, err);
	return txn_end(rv, err);
}

int
cove_volume_remove(const struct cove_volume *v, const char *path, int recursive, struct cove_error **err)
{
	if (*path == '\0')
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "the root of a Volume cannot be removed (delete the Volume instead)");
	int t = entry_type(v->seq, path, err);
	if (t < 0)
		return -1;
	if (t == 0)
		return cove_error_set(err, COVE_NOT_FOUND, "No such file or directory: '/%s'", path);
	int rv = txn_begin(err);
	if (rv == 0 && t == COVE_VFILE_DIR) {
		int kids = has_children(v->seq, path, err);
		if (kids < 0)
			rv = -1;
		else if (kids && !recursive)
			rv = cove_error_set(err, COVE_FAILED_PRECONDITION,
					    "'/%s' is a directory that is not empty: remove it recursively (recursive=True, "
					    "or `modal volume rm -r`)",
					    path);
		else if (kids)
			rv = rows_delete_below(v->seq, path, err);
	}
	if (rv == 0)
		rv = row_delete(v->seq, path, err);
	if (rv == 0)
		rv = bump(v, NULL, err);
	return txn_end(rv, err);
}

/* Copy entry src (a row's borrowed view) to path dst. */
static int
copy_entry(int64_t vol, const struct cove_vfile *src, const char *dst, struct cove_error **err)
{
	int t = entry_type(vol, dst, err);
	if (t < 0)
		return -1;
	if (t == COVE_VFILE_DIR && src->type != COVE_VFILE_DIR)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "cannot overwrite directory '/%s' with a file", dst);
	if (t != 0 && t != COVE_VFILE_DIR && src->type == COVE_VFILE_DIR)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "cannot overwrite file '/%s' with a directory", dst);
	struct cove_vfile f = *src;
	f.path = (char *)dst;
	f.mtime = now_sec();
	return row_put(vol, &f, err);
}

static int
copy_one(const struct cove_volume *v, const char *src, const char *target, int recursive, struct cove_error **err)
{
	cleanup_vfile struct cove_vfile s = {0};
	int found = cove_volume_lookup(v->seq, src, &s, err);
	if (found < 0)
		return -1;
	if (!found)
		return cove_error_set(err, COVE_NOT_FOUND, "No such file or directory: '/%s'", src);
	if (s.type == COVE_VFILE_DIR && !recursive)
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "'/%s' is a directory: copy it recursively (recursive=True, or `modal volume cp -r`)",
				      *src ? src : "");
	if (strcmp(src, target) == 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "'/%s' and '/%s' are the same file", src, target);
	size_t sl = strlen(src);
	if (s.type == COVE_VFILE_DIR && (sl == 0 || (strncmp(target, src, sl) == 0 && target[sl] == '/')))
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "cannot copy directory '/%s' into itself ('/%s')", src,
				      target);
	if (ensure_parents(v->seq, target, 1, err) < 0 || copy_entry(v->seq, &s, target, err) < 0)
		return -1;
	if (s.type != COVE_VFILE_DIR)
		return 0;
	/* The rows below src, collected first: inserting while the statement walks the same range would see them. */
	struct copy_list {
		struct cove_vfile *f;
		size_t n, cap;
	} l = {0};
	int rv = 0;
	{
		cleanup_reset sqlite3_stmt *st = stmt(S_FILE_BELOW);
		cleanup_free char *lo = xasprintf("%s/", src);
		cleanup_free char *hi = xasprintf("%s0", src);
		sqlite3_bind_int64(st, 1, v->seq);
		bind_text(st, 2, lo);
		bind_text(st, 3, hi);
		int rc;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (l.n == l.cap) {
				l.cap = l.cap ? l.cap * 2 : 64;
				l.f = xrealloc(l.f, l.cap * sizeof(*l.f));
			}
			vfile_from_row(st, &l.f[l.n++]);
		}
		if (rc != SQLITE_DONE)
			rv = db_error(err, "read volume entries");
	}
	for (size_t i = 0; i < l.n && rv == 0; i++) {
		cleanup_free char *to = xasprintf("%s%s", target, l.f[i].path + sl);
		rv = copy_entry(v->seq, &l.f[i], to, err);
	}
	for (size_t i = 0; i < l.n; i++)
		cove_vfile_clear(&l.f[i]);
	free(l.f);
	return rv;
}

int
cove_volume_copy(const struct cove_volume *v, char *const *srcs, size_t n_srcs, const char *dst, int recursive,
		 struct cove_error **err)
{
	int dt = entry_type(v->seq, dst, err);
	if (dt < 0)
		return -1;
	if (n_srcs > 1 && dt != 0 && dt != COVE_VFILE_DIR)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "'/%s' is not a directory (copying several files)", dst);
	int rv = txn_begin(err);
	if (rv == 0 && n_srcs > 1 && dt == 0) {
		struct cove_vfile d = {.path = (char *)dst, .type = COVE_VFILE_DIR, .mode = 0755, .mtime = now_sec()};
		rv = ensure_parents(v->seq, dst, 1, err);
		if (rv == 0)
			rv = row_put(v->seq, &d, err);
		dt = COVE_VFILE_DIR;
	}
	for (size_t i = 0; i < n_srcs && rv == 0; i++) {
		cleanup_free char *target = dt == COVE_VFILE_DIR ? vpath_join(dst, vpath_base(srcs[i])) : xstrdup(dst);
		rv = copy_one(v, srcs[i], target, recursive, err);
	}
	if (rv == 0)
		rv = bump(v, NULL, err);
	return txn_end(rv, err);
}

static int
cmp_change(const void *a, const void *b)
{
	const struct cove_vchange *x = a, *y = b;
	/* Deletions first, deepest first (so that a directory is emptied before it goes); then puts, parents first. */
	if (x->op != y->op)
		return x->op == COVE_VCHANGE_DEL ? -1 : 1;
	int c = strcmp(x->f.path, y->f.path);
	return x->op == COVE_VCHANGE_DEL ? -c : c;
}

static int
apply_del(int64_t vol, const char *path, int type, struct cove_error **err)
{
	int t = entry_type(vol, path, err);
	if (t <= 0)
		return t; /* gone already (or an error) */
	/* Only what this writer deleted: an entry of another type is someone else's, written since. */
	if (t != type)
		return 0;
	if (t == COVE_VFILE_DIR) {
		int kids = has_children(vol, path, err);
		if (kids != 0)
			return kids < 0 ? -1 : 0;
	}
	return row_delete(vol, path, err);
}

static int
apply_put(int64_t vol, struct cove_vchange *c, struct cove_error **err)
{
	const struct cove_vfile *f = &c->f;
	int t = entry_type(vol, f->path, err);
	if (t < 0)
		return -1;
	if (t == COVE_VFILE_DIR && f->type != COVE_VFILE_DIR) {
		/* The writer's deletions of what it saw in the directory came first (cmp_change): whatever is left
		 * there is someone else's, committed since, and replacing the directory would delete it. */
		int kids = has_children(vol, f->path, err);
		if (kids < 0)
			return -1;
		if (kids) {
			c->conflict = 1;
			return 0;
		}
	}
	if (ensure_parents(vol, f->path, 0, err) < 0)
		return -1;
	return row_put(vol, f, err);
}

int
cove_volume_apply(const struct cove_volume *v, const char *prefix, struct cove_vchange *changes, size_t n,
		  int64_t *generation, struct cove_error **err)
{
	/* Paths are made absolute within the volume first, so that the order below is the tree's order. */
	for (size_t i = 0; i < n; i++) {
		char *full = vpath_join(prefix, changes[i].f.path);
		free(changes[i].f.path);
		changes[i].f.path = full;
	}
	qsort(changes, n, sizeof(*changes), cmp_change);
	int rv = txn_begin(err);
	if (rv == 0 && *prefix)
		rv = ensure_parents(v->seq, prefix, 0, err);
	if (rv == 0 && *prefix) {
		int t = entry_type(v->seq, prefix, err);
		if (t < 0) {
			rv = -1;
		} else if (t != COVE_VFILE_DIR) {
			struct cove_vfile d = {.path = (char *)prefix, .type = COVE_VFILE_DIR, .mode = 0755, .mtime = now_sec()};
			rv = row_put(v->seq, &d, err);
		}
	}
	for (size_t i = 0; i < n && rv == 0; i++) {
		if (changes[i].op == COVE_VCHANGE_DEL)
			rv = apply_del(v->seq, changes[i].f.path, changes[i].f.type, err);
		else
			rv = apply_put(v->seq, &changes[i], err);
	}
	if (rv == 0)
		rv = bump(v, generation, err);
	if (txn_end(rv, err) < 0)
		return cove_error_wrap(err, "commit to Volume %s", v->id);
	return 0;
}

/* ---- the ephemeral sweep ---- */

static int
app_gone(const char *app_id)
{
	struct cove_app *app = cove_sched_app_get(the_volumes->ctx->sched, app_id);
	return app == NULL || app->stopping || app->state == MODAL__CLIENT__APP_STATE__APP_STATE_STOPPED;
}

static void
sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct volumes *vs = the_volumes;
	double now = now_s();
	char **doomed = xcalloc(vs->heartbeats.len + 1, sizeof(char *));
	size_t n = 0, it = 0;
	const char *id;
	void *v;
	while (cove_map_next(&vs->heartbeats, &it, &id, &v))
		if (now - *(double *)v > vs->ephemeral_timeout_s)
			doomed[n++] = xstrdup(id);
	for (size_t i = 0; i < n; i++) {
		cleanup_volume struct cove_volume vol = {0};
		struct cove_error *err = NULL;
		if (cove_volume_by_id(doomed[i], &vol, &err) < 0 || cove_volume_delete(&vol, &err) < 0) {
			if (err && err->code != COVE_NOT_FOUND)
				log_warn("volumes: %s", err->msg);
			cove_error_free(err);
			free(cove_map_del(&vs->heartbeats, doomed[i]));
		} else {
			log_debug("volumes: ephemeral volume %s expired", doomed[i]);
		}
		free(doomed[i]);
	}
	free(doomed);
	/* Anonymous volumes owned by an app go with it. */
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(vs->db, "SELECT id, app_id FROM volumes WHERE name IS NULL AND app_id IS NOT NULL", -1,
			       &st, NULL) != SQLITE_OK)
		return;
	char **owned = NULL;
	size_t n_owned = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *app_id = (const char *)sqlite3_column_text(st, 1);
		if (app_id && app_gone(app_id)) {
			owned = xrealloc(owned, (n_owned + 1) * sizeof(char *));
			owned[n_owned++] = dup_col(st, 0);
		}
	}
	sqlite3_finalize(st);
	for (size_t i = 0; i < n_owned; i++) {
		cleanup_volume struct cove_volume vol = {0};
		struct cove_error *err = NULL;
		if (cove_volume_by_id(owned[i], &vol, &err) == 0 && cove_volume_delete(&vol, &err) < 0)
			log_warn("volumes: %s", err->msg);
		cove_error_free(err);
		free(owned[i]);
	}
	free(owned);
}

static double
env_seconds(const char *name, double dflt)
{
	const char *s = getenv(name);
	if (s == NULL || *s == '\0')
		return dflt;
	char *end;
	double v = strtod(s, &end);
	if (*end != '\0' || !isfinite(v) || v <= 0) {
		log_warn("volumes: ignoring %s=%s (not a positive number of seconds)", name, s);
		return dflt;
	}
	return v;
}

int
cove_volume_start(struct cove_ctx *ctx, struct cove_error **err)
{
	struct volumes *vs = xcalloc(1, sizeof(*vs));
	vs->ctx = ctx;
	vs->db = cove_store_sqlite(ctx->store);
	vs->ephemeral_timeout_s = env_seconds("COVE_EPHEMERAL_TIMEOUT_S", EPHEMERAL_TIMEOUT_S);
	the_volumes = vs;
	for (int i = 0; i < N_STMTS; i++) {
		if (sqlite3_prepare_v3(vs->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &vs->stmts[i], NULL) !=
		    SQLITE_OK) {
			db_error(err, "prepare");
			goto fail;
		}
	}
	/* Ephemeral volumes get a fresh timeout after a restart: their clients' heartbeats resume. */
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(vs->db, "SELECT id FROM volumes WHERE name IS NULL", -1, &st, NULL) != SQLITE_OK) {
		db_error(err, "read volumes");
		goto fail;
	}
	double now = now_s();
	while (sqlite3_step(st) == SQLITE_ROW) {
		double *hb = xmalloc(sizeof(*hb));
		*hb = now;
		free(cove_map_put(&vs->heartbeats, (const char *)sqlite3_column_text(st, 0), hb));
	}
	sqlite3_finalize(st);
	double sweep_s = env_seconds("COVE_VOLUME_SWEEP_S", SWEEP_S);
	vs->sweep_timer = event_new(ctx->base, -1, EV_PERSIST, sweep, vs);
	struct timeval tv = {(time_t)sweep_s, (suseconds_t)((sweep_s - (double)(time_t)sweep_s) * 1e6)};
	event_add(vs->sweep_timer, &tv);
	return 0;
fail:
	cove_error_wrap(err, "start volumes");
	cove_volume_stop(ctx);
	return -1;
}

void
cove_volume_stop(struct cove_ctx *ctx)
{
	(void)ctx;
	struct volumes *vs = the_volumes;
	if (vs == NULL)
		return;
	if (vs->sweep_timer)
		event_free(vs->sweep_timer);
	for (int i = 0; i < N_STMTS; i++)
		if (vs->stmts[i])
			sqlite3_finalize(vs->stmts[i]);
	size_t it = 0;
	void *v;
	while (cove_map_next(&vs->heartbeats, &it, NULL, &v))
		free(v);
	cove_map_clear(&vs->heartbeats);
	free(vs);
	the_volumes = NULL;
}

/* ---- maintenance: gc and the report ---- */

/* A set of block hashes (open addressing; the hashes are uniformly random already). */
struct hashset {
	uint8_t (*slots)[COVE_BLOCK_HASH];
	uint8_t *used;
	size_t cap, len;
};

static size_t
hs_index(const uint8_t h[COVE_BLOCK_HASH], size_t cap)
{
	uint64_t x;
	memcpy(&x, h, sizeof(x));
	return (size_t)(x & (cap - 1));
}

static int hs_add(struct hashset *s, const uint8_t h[COVE_BLOCK_HASH]);

static void
hs_grow(struct hashset *s)
{
	struct hashset old = *s;
	s->cap = old.cap ? old.cap * 2 : 1024;
	s->slots = xcalloc(s->cap, COVE_BLOCK_HASH);
	s->used = xcalloc(s->cap, 1);
	s->len = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.used[i])
			hs_add(s, old.slots[i]);
	free(old.slots);
	free(old.used);
}

static int
hs_has(const struct hashset *s, const uint8_t h[COVE_BLOCK_HASH])
{
	if (s->cap == 0)
		return 0;
	for (size_t i = hs_index(h, s->cap);; i = (i + 1) & (s->cap - 1)) {
		if (!s->used[i])
			return 0;
		if (memcmp(s->slots[i], h, COVE_BLOCK_HASH) == 0)
			return 1;
	}
}

/* 1 if added, 0 if it was there. */
static int
hs_add(struct hashset *s, const uint8_t h[COVE_BLOCK_HASH])
{
	if ((s->len + 1) * 2 > s->cap)
		hs_grow(s);
	for (size_t i = hs_index(h, s->cap);; i = (i + 1) & (s->cap - 1)) {
		if (!s->used[i]) {
			memcpy(s->slots[i], h, COVE_BLOCK_HASH);
			s->used[i] = 1;
			s->len++;
			return 1;
		}
		if (memcmp(s->slots[i], h, COVE_BLOCK_HASH) == 0)
			return 0;
	}
}

static void
hs_free(struct hashset *s)
{
	free(s->slots);
	free(s->used);
	memset(s, 0, sizeof(*s));
}

/* Every block hash the files of volume vol (every volume: vol < 0) refer to, into s. */
static int
collect_blocks(sqlite3 *db, int64_t vol, struct hashset *s, uint64_t *n_files, uint64_t *bytes,
	       struct cove_error **err)
{
	sqlite3_stmt *st = NULL;
	const char *sql = vol < 0 ? "SELECT size, data FROM volume_files WHERE type = 1"
				  : "SELECT size, data FROM volume_files WHERE type = 1 AND vol = ?";
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return cove_error_set(err, COVE_INTERNAL, "store: read volume files: %s", sqlite3_errmsg(db));
	if (vol >= 0)
		sqlite3_bind_int64(st, 1, vol);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n_files)
			(*n_files)++;
		if (bytes)
			*bytes += (uint64_t)sqlite3_column_int64(st, 0);
		const uint8_t *d = sqlite3_column_blob(st, 1);
		size_t len = (size_t)sqlite3_column_bytes(st, 1);
		for (size_t o = 0; o + COVE_BLOCK_HASH <= len; o += COVE_BLOCK_HASH)
			hs_add(s, d + o);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return cove_error_set(err, COVE_INTERNAL, "store: read volume files: %s", sqlite3_errmsg(db));
	return 0;
}

struct gc_refs {
	sqlite3 *db;
	struct hashset set;
	int loaded;
	int failed;
};

/* Read lazily, at the first question: after the block scan, as cove_blocks_gc requires. */
static int
gc_referenced(void *arg, const uint8_t hash[COVE_BLOCK_HASH])
{
	struct gc_refs *r = arg;
	if (!r->loaded) {
		struct cove_error *err = NULL;
		r->loaded = 1;
		if (collect_blocks(r->db, -1, &r->set, NULL, NULL, &err) < 0) {
			log_error("gc: %s", err->msg);
			cove_error_free(err);
			r->failed = 1;
		}
	}
	if (r->failed)
		return -1;
	return hs_has(&r->set, hash);
}

static void
human(uint64_t b, char out[32])
{
	const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, 32, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

int
cove_volume_gc(struct cove_store *store, const char *state_dir, double grace_s, FILE *out, struct cove_error **err)
{
	struct gc_refs refs = {.db = cove_store_sqlite(store)};
	struct cove_blocks_gc_stats st;
	int rv = cove_blocks_gc(state_dir, grace_s, gc_referenced, &refs, &st, err);
	hs_free(&refs.set);
	if (rv < 0)
		return cove_error_wrap(err, "gc in %s", state_dir);
	char freed[32], kept[32];
	human(st.removed_bytes, freed);
	human(st.kept_bytes, kept);
	fprintf(out,
		"volume blocks: %llu scanned, %llu removed (%s freed); kept %llu referenced and %llu touched in the last "
		"%.0f s (%s)\n",
		(unsigned long long)st.scanned, (unsigned long long)st.removed, freed,
		(unsigned long long)st.kept_referenced, (unsigned long long)st.kept_recent, grace_s, kept);
	return 0;
}

int
cove_volume_report(struct cove_store *store, const char *state_dir, FILE *out, struct cove_error **err)
{
	sqlite3 *db = cove_store_sqlite(store);
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT seq, id, env, name, fs_version FROM volumes ORDER BY env, name, created_at", -1,
			       &st, NULL) != SQLITE_OK)
		return cove_error_set(err, COVE_INTERNAL, "store: read volumes: %s", sqlite3_errmsg(db));
	fprintf(out, "%-28s %-24s %-6s %3s %9s %12s %12s\n", "VOLUME", "NAME", "ENV", "FS", "FILES", "SIZE", "ON DISK");
	struct hashset all = {0};
	uint64_t total_disk = 0;
	int rc, rv = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct hashset mine = {0};
		uint64_t n_files = 0, bytes = 0, disk = 0;
		if (collect_blocks(db, sqlite3_column_int64(st, 0), &mine, &n_files, &bytes, err) < 0) {
			hs_free(&mine);
			rv = -1;
			break;
		}
		for (size_t i = 0; i < mine.cap; i++) {
			if (!mine.used[i])
				continue;
			int64_t sz = cove_blocks_stored_size(state_dir, mine.slots[i]);
			if (sz > 0) {
				disk += (uint64_t)sz;
				if (hs_add(&all, mine.slots[i]))
					total_disk += (uint64_t)sz;
			}
		}
		hs_free(&mine);
		const char *name = (const char *)sqlite3_column_text(st, 3);
		char size_s[32], disk_s[32];
		human(bytes, size_s);
		human(disk, disk_s);
		fprintf(out, "%-28s %-24s %-6s v%-2d %9llu %12s %12s\n", (const char *)sqlite3_column_text(st, 1),
			name ? name : "(ephemeral)", (const char *)sqlite3_column_text(st, 2), sqlite3_column_int(st, 4),
			(unsigned long long)n_files, size_s, disk_s);
	}
	sqlite3_finalize(st);
	if (rv == 0 && rc != SQLITE_DONE)
		rv = cove_error_set(err, COVE_INTERNAL, "store: read volumes: %s", sqlite3_errmsg(db));
	if (rv == 0) {
		char t[32];
		human(total_disk, t);
		fprintf(out, "distinct blocks referenced: %zu, %s (blocks shared by volumes are counted once here; run "
			     "`cove gc` to remove unreferenced ones)\n",
			all.len, t);
	}
	hs_free(&all);
	return rv;
}
