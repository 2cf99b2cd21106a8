#include "store/store.h"

#include <sqlite3.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"
#include "util/hash.h"
#include "util/log.h"

/* Prepared statements, made once per SQL text (every SQL string here is a literal, so its address is its
 * key) and reset after each use. */
#define STMT_CACHE 32

struct cove_store {
	sqlite3 *db;
	int txn_depth;
	struct {
		const char *sql;
		sqlite3_stmt *st;
	} cache[STMT_CACHE];
};

/* Numbered migrations: migration i brings the schema from version i to i + 1. Never edit one that has
 * shipped; add a new one. */
static const char *const migrations[] = {
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE tokens(token_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, created_at REAL NOT NULL);"
	"CREATE TABLE objects(id TEXT PRIMARY KEY, kind TEXT NOT NULL, app_id TEXT, env TEXT, name TEXT,"
	"  data BLOB, created_at REAL NOT NULL);"
	"CREATE INDEX objects_named ON objects(kind, env, name) WHERE name IS NOT NULL;"
	"CREATE TABLE apps(id TEXT PRIMARY KEY, name TEXT NOT NULL, env TEXT NOT NULL, description TEXT NOT NULL,"
	"  state INTEGER NOT NULL, created_at REAL NOT NULL, stopped_at REAL NOT NULL);"
	"CREATE TABLE calls(id TEXT PRIMARY KEY, function_id TEXT NOT NULL, call_type INTEGER NOT NULL,"
	"  invocation_type INTEGER NOT NULL, created_at REAL NOT NULL);"
	"CREATE TABLE inputs(id TEXT PRIMARY KEY, call_id TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,"
	"  created_at REAL NOT NULL);"
	"CREATE INDEX inputs_call ON inputs(call_id, idx);"
	"CREATE TABLE outputs(input_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, idx INTEGER NOT NULL,"
	"  retry_count INTEGER NOT NULL, data BLOB NOT NULL);"
	"CREATE INDEX outputs_call ON outputs(call_id, idx);",
	/* 2: Dicts and Queues (src/store/kv.c). Entry rows put small columns first so that probes never read
	 * a large value's overflow pages; queue item ids are never reused (entry ids for iteration). */
	"CREATE TABLE kv_objects(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind INTEGER NOT NULL,"
	"  env TEXT NOT NULL, name TEXT, app_id TEXT, created_at REAL NOT NULL);"
	"CREATE UNIQUE INDEX kv_objects_named ON kv_objects(kind, env, name) WHERE name IS NOT NULL;"
	"CREATE TABLE dict_entries(dict_seq INTEGER NOT NULL, khash BLOB NOT NULL, touched_at REAL NOT NULL,"
	"  key BLOB NOT NULL, value BLOB NOT NULL);"
	"CREATE UNIQUE INDEX dict_entries_key ON dict_entries(dict_seq, khash);"
	"CREATE INDEX dict_entries_touched ON dict_entries(dict_seq, touched_at);"
	"CREATE TABLE queue_partitions(id INTEGER PRIMARY KEY, queue_seq INTEGER NOT NULL, pkey BLOB NOT NULL,"
	"  ttl_s INTEGER NOT NULL, last_put REAL NOT NULL);"
	"CREATE UNIQUE INDEX queue_partitions_key ON queue_partitions(queue_seq, pkey);"
	"CREATE TABLE queue_items(id INTEGER PRIMARY KEY AUTOINCREMENT, part_id INTEGER NOT NULL, value BLOB NOT NULL);"
	"CREATE INDEX queue_items_part ON queue_items(part_id, id);",
	/* 3: Volumes (src/store/volume.c): one row per volume, one per entry of its tree (paths relative to its root;
	 * parent indexed for directory listings; data: a file's block hashes or a symlink's target). */
	"CREATE TABLE volumes(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, env TEXT NOT NULL, name TEXT,"
	"  app_id TEXT, fs_version INTEGER NOT NULL, created_at REAL NOT NULL, generation INTEGER NOT NULL);"
	"CREATE UNIQUE INDEX volumes_named ON volumes(env, name) WHERE name IS NOT NULL;"
	"CREATE TABLE volume_files(vol INTEGER NOT NULL, path TEXT NOT NULL, parent TEXT NOT NULL,"
	"  type INTEGER NOT NULL, mode INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,"
	"  data BLOB NOT NULL);"
	"CREATE UNIQUE INDEX volume_files_path ON volume_files(vol, path);"
	"CREATE INDEX volume_files_parent ON volume_files(vol, parent, path);",
	/* 4: when each token last authenticated a call (to within a minute: src/api/auth.c). */
	"ALTER TABLE tokens ADD COLUMN last_used_at REAL;",
	/* 5: the input whose code made a call (FunctionGetCallGraph). */
	"ALTER TABLE calls ADD COLUMN parent_input_id TEXT;",
};

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
db_error(struct cove_store *s, struct cove_error **err, const char *what)
{
	return cove_error_set(err, COVE_INTERNAL, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

static int
exec_sql(struct cove_store *s, const char *sql, struct cove_error **err)
{
	char *msg = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		cove_error_set(err, COVE_INTERNAL, "store: %s", msg ? msg : "exec failed");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Statements come from the cache: done with one, reset it for the next use. */
static void
reset_stmt(sqlite3_stmt **st)
{
	if (*st) {
		sqlite3_reset(*st);
		sqlite3_clear_bindings(*st);
	}
}
#define cleanup_stmt __attribute__((cleanup(reset_stmt)))

static int
prepare(struct cove_store *s, const char *sql, sqlite3_stmt **st, struct cove_error **err)
{
	size_t slot = ((uintptr_t)sql >> 4) % STMT_CACHE;
	for (size_t i = 0; i < STMT_CACHE; i++) {
		size_t k = (slot + i) % STMT_CACHE;
		if (s->cache[k].sql == sql) {
			*st = s->cache[k].st;
			return 0;
		}
		if (s->cache[k].sql == NULL) {
			if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
				return db_error(s, err, "prepare");
			s->cache[k].sql = sql;
			s->cache[k].st = *st;
			return 0;
		}
	}
	return cove_error_set(err, COVE_INTERNAL, "store: statement cache full (raise STMT_CACHE)");
}

/* Bind a NULL-able text. */
static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static int
step_done(struct cove_store *s, sqlite3_stmt *st, struct cove_error **err)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(s, err, "write");
	return 0;
}

static int
migrate(struct cove_store *s, struct cove_error **err)
{
	sqlite3_stmt *st = NULL;
	if (prepare(s, "PRAGMA user_version", &st, err) < 0)
		return -1;
	int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	reset_stmt(&st);
	int latest = (int)(sizeof(migrations) / sizeof(migrations[0]));
	if (version > latest)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "store schema version %d is newer than this Cove (%d)", version, latest);
	for (int v = version; v < latest; v++) {
		cleanup_free char *bump = xasprintf("PRAGMA user_version = %d", v + 1);
		if (exec_sql(s, "BEGIN IMMEDIATE", err) < 0)
			return -1;
		if (exec_sql(s, migrations[v], err) < 0 || exec_sql(s, bump, err) < 0) {
			exec_sql(s, "ROLLBACK", NULL);
			return cove_error_wrap(err, "migration %d", v + 1);
		}
		if (exec_sql(s, "COMMIT", err) < 0)
			return -1;
		log_debug("store: migrated to schema %d", v + 1);
	}
	return 0;
}

struct cove_store *
cove_store_open(const char *path, struct cove_error **err)
{
	struct cove_store *s = xcalloc(1, sizeof(*s));
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		cove_error_set(err, COVE_INTERNAL, "open database %s: %s", path,
			       s->db ? sqlite3_errmsg(s->db) : "out of memory");
		cove_store_close(s);
		return NULL;
	}
	sqlite3_busy_timeout(s->db, 5000);
	if (exec_sql(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", err) < 0 ||
	    migrate(s, err) < 0) {
		cove_error_wrap(err, "open database %s", path);
		cove_store_close(s);
		return NULL;
	}
	return s;
}

void
cove_store_close(struct cove_store *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < STMT_CACHE; i++)
		if (s->cache[i].st)
			sqlite3_finalize(s->cache[i].st);
	if (s->db)
		sqlite3_close_v2(s->db);
	free(s);
}

sqlite3 *
cove_store_sqlite(struct cove_store *s)
{
	return s->db;
}

int
cove_store_begin(struct cove_store *s, struct cove_error **err)
{
	if (s->txn_depth++ > 0)
		return 0;
	if (exec_sql(s, "BEGIN IMMEDIATE", err) < 0) {
		s->txn_depth = 0;
		return -1;
	}
	return 0;
}

int
cove_store_commit(struct cove_store *s, struct cove_error **err)
{
	if (s->txn_depth == 0 || --s->txn_depth > 0)
		return 0;
	return exec_sql(s, "COMMIT", err);
}

int
cove_store_rollback(struct cove_store *s)
{
	if (s->txn_depth == 0)
		return 0;
	s->txn_depth = 0;
	return exec_sql(s, "ROLLBACK", NULL);
}

int
cove_store_token_add(struct cove_store *s, const char *token_id, const char *token_secret, struct cove_error **err)
{
	char hash[65];
	cove_sha256_hex(token_secret, strlen(token_secret), hash);
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "INSERT INTO tokens(token_id, secret_sha256, created_at) VALUES(?, ?, ?)", &st, err) < 0)
		return -1;
	bind_text(st, 1, token_id);
	bind_text(st, 2, hash);
	sqlite3_bind_double(st, 3, now_s());
	return step_done(s, st, err);
}

int
cove_store_token_check(struct cove_store *s, const char *token_id, const char *token_secret)
{
	char hash[65];
	cove_sha256_hex(token_secret, strlen(token_secret), hash);
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT secret_sha256 FROM tokens WHERE token_id = ?", &st, NULL) < 0)
		return 0;
	bind_text(st, 1, token_id);
	if (sqlite3_step(st) != SQLITE_ROW)
		return 0;
	const char *stored = (const char *)sqlite3_column_text(st, 0);
	/* Both are fixed-length hex digests; compare all 64 bytes regardless of where they differ. */
	unsigned char diff = 0;
	if (stored == NULL || strlen(stored) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		diff |= (unsigned char)(stored[i] ^ hash[i]);
	return diff == 0;
}

int
cove_store_token_touch(struct cove_store *s, const char *token_id, double when)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	struct cove_error *err = NULL;
	if (prepare(s, "UPDATE tokens SET last_used_at = ? WHERE token_id = ?", &st, &err) < 0 ||
	    (sqlite3_bind_double(st, 1, when), bind_text(st, 2, token_id), step_done(s, st, &err)) < 0) {
		log_warn("%s", err->msg);
		cove_error_free(err);
		return -1;
	}
	return 0;
}

int
cove_store_token_list(struct cove_store *s, struct cove_store_token **out, size_t *n, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT token_id, created_at, last_used_at FROM tokens ORDER BY created_at, token_id", &st, err) < 0)
		return -1;
	struct cove_store_token *v = NULL;
	size_t k = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = xrealloc(v, (k + 1) * sizeof(*v));
		v[k].id = xstrdup((const char *)sqlite3_column_text(st, 0));
		v[k].created_at = sqlite3_column_double(st, 1);
		v[k].last_used_at = sqlite3_column_type(st, 2) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 2);
		k++;
	}
	if (rc != SQLITE_DONE) {
		cove_store_tokens_free(v, k);
		return db_error(s, err, "list tokens");
	}
	*out = v;
	*n = k;
	return 0;
}

void
cove_store_tokens_free(struct cove_store_token *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].id);
	free(v);
}

int
cove_store_token_revoke(struct cove_store *s, const char *token_id, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "DELETE FROM tokens WHERE token_id = ?", &st, err) < 0)
		return -1;
	bind_text(st, 1, token_id);
	if (step_done(s, st, err) < 0)
		return -1;
	if (sqlite3_changes(s->db) == 0)
		return cove_error_set(err, COVE_NOT_FOUND, "no token %s (see `cove token list`)", token_id);
	return 0;
}

int64_t
cove_store_data_version(struct cove_store *s)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "PRAGMA data_version", &st, NULL) < 0 || sqlite3_step(st) != SQLITE_ROW)
		return -1;
	return sqlite3_column_int64(st, 0);
}

char *
cove_store_token_first(struct cove_store *s)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT token_id FROM tokens ORDER BY created_at LIMIT 1", &st, NULL) < 0)
		return NULL;
	if (sqlite3_step(st) != SQLITE_ROW)
		return NULL;
	return xstrdup((const char *)sqlite3_column_text(st, 0));
}

char *
cove_store_meta_get(struct cove_store *s, const char *key)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT value FROM meta WHERE key = ?", &st, NULL) < 0)
		return NULL;
	bind_text(st, 1, key);
	if (sqlite3_step(st) != SQLITE_ROW)
		return NULL;
	return xstrdup((const char *)sqlite3_column_text(st, 0));
}

int
cove_store_meta_set(struct cove_store *s, const char *key, const char *value, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", &st, err) < 0)
		return -1;
	bind_text(st, 1, key);
	bind_text(st, 2, value);
	return step_done(s, st, err);
}

int
cove_store_meta_keys(struct cove_store *s, const char *prefix, char ***keys, size_t *n, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT key FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key", &st, err) < 0)
		return -1;
	bind_text(st, 1, prefix);
	char **v = NULL;
	size_t k = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = xrealloc(v, (k + 2) * sizeof(*v));
		v[k++] = xstrdup((const char *)sqlite3_column_text(st, 0));
		v[k] = NULL;
	}
	if (rc != SQLITE_DONE) {
		for (size_t i = 0; i < k; i++)
			free(v[i]);
		free(v);
		return db_error(s, err, "list settings");
	}
	*keys = v;
	*n = k;
	return 0;
}

int
cove_store_meta_delete(struct cove_store *s, const char *key, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "DELETE FROM meta WHERE key = ?", &st, err) < 0)
		return -1;
	bind_text(st, 1, key);
	if (step_done(s, st, err) < 0)
		return -1;
	return sqlite3_changes(s->db) ? 1 : 0;
}

int
cove_store_object_put(struct cove_store *s, const char *id, const char *kind, const char *app_id, const char *env,
		      const char *name, const void *data, size_t len, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s,
		    "INSERT INTO objects(id, kind, app_id, env, name, data, created_at) VALUES(?, ?, ?, ?, ?, ?, ?) "
		    "ON CONFLICT(id) DO UPDATE SET data = excluded.data, name = excluded.name",
		    &st, err) < 0)
		return -1;
	bind_text(st, 1, id);
	bind_text(st, 2, kind);
	bind_text(st, 3, app_id);
	bind_text(st, 4, env);
	bind_text(st, 5, name);
	sqlite3_bind_blob64(st, 6, data ? data : "", len, SQLITE_STATIC);
	sqlite3_bind_double(st, 7, now_s());
	return step_done(s, st, err);
}

int
cove_store_object_get(struct cove_store *s, const char *id, char **kind_out, uint8_t **data, size_t *len,
		      struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT kind, data FROM objects WHERE id = ?", &st, err) < 0)
		return -1;
	bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return cove_error_set(err, COVE_NOT_FOUND, "object %s not found", id);
	if (rc != SQLITE_ROW)
		return db_error(s, err, "read object");
	if (kind_out)
		*kind_out = xstrdup((const char *)sqlite3_column_text(st, 0));
	size_t n = (size_t)sqlite3_column_bytes(st, 1);
	*data = xmemdup(sqlite3_column_blob(st, 1), n);
	*len = n;
	return 0;
}

int
cove_store_object_find(struct cove_store *s, const char *kind, const char *env, const char *name, char **id,
		       struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT id FROM objects WHERE kind = ? AND env = ? AND name = ? ORDER BY created_at DESC LIMIT 1",
		    &st, err) < 0)
		return -1;
	bind_text(st, 1, kind);
	bind_text(st, 2, env);
	bind_text(st, 3, name);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return cove_error_set(err, COVE_NOT_FOUND, "%s '%s' not found in environment '%s'", kind, name, env);
	if (rc != SQLITE_ROW)
		return db_error(s, err, "find object");
	*id = xstrdup((const char *)sqlite3_column_text(st, 0));
	return 0;
}

int
cove_store_app_put(struct cove_store *s, const struct cove_store_app *a, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s,
		    "INSERT OR REPLACE INTO apps(id, name, env, description, state, created_at, stopped_at) "
		    "VALUES(?, ?, ?, ?, ?, ?, ?)",
		    &st, err) < 0)
		return -1;
	bind_text(st, 1, a->id);
	bind_text(st, 2, a->name ? a->name : "");
	bind_text(st, 3, a->env ? a->env : "");
	bind_text(st, 4, a->description ? a->description : "");
	sqlite3_bind_int(st, 5, a->state);
	sqlite3_bind_double(st, 6, a->created_at);
	sqlite3_bind_double(st, 7, a->stopped_at);
	return step_done(s, st, err);
}

int
cove_store_call_put(struct cove_store *s, const char *call_id, const char *function_id, int call_type,
		    int invocation_type, const char *parent_input_id, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s,
		    "INSERT INTO calls(id, function_id, call_type, invocation_type, created_at, parent_input_id) "
		    "VALUES(?, ?, ?, ?, ?, ?)",
		    &st, err) < 0)
		return -1;
	bind_text(st, 1, call_id);
	bind_text(st, 2, function_id);
	sqlite3_bind_int(st, 3, call_type);
	sqlite3_bind_int(st, 4, invocation_type);
	sqlite3_bind_double(st, 5, now_s());
	bind_text(st, 6, parent_input_id);
	return step_done(s, st, err);
}

int
cove_store_input_put(struct cove_store *s, const char *input_id, const char *call_id, int idx, const void *data,
		     size_t len, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "INSERT INTO inputs(id, call_id, idx, data, created_at) VALUES(?, ?, ?, ?, ?)", &st, err) < 0)
		return -1;
	bind_text(st, 1, input_id);
	bind_text(st, 2, call_id);
	sqlite3_bind_int(st, 3, idx);
	sqlite3_bind_blob64(st, 4, data ? data : "", len, SQLITE_STATIC);
	sqlite3_bind_double(st, 5, now_s());
	return step_done(s, st, err);
}

int
cove_store_output_put(struct cove_store *s, const char *input_id, const char *call_id, int idx, int retry_count,
		      const void *data, size_t len, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s,
		    "INSERT OR REPLACE INTO outputs(input_id, call_id, idx, retry_count, data) VALUES(?, ?, ?, ?, ?)",
		    &st, err) < 0)
		return -1;
	bind_text(st, 1, input_id);
	bind_text(st, 2, call_id);
	sqlite3_bind_int(st, 3, idx);
	sqlite3_bind_int(st, 4, retry_count);
	sqlite3_bind_blob64(st, 5, data ? data : "", len, SQLITE_STATIC);
	return step_done(s, st, err);
}

/* ---- reading everything back at start ---- */

int
cove_store_each_app(struct cove_store *s, int (*cb)(void *arg, const struct cove_store_app *a), void *arg,
		    struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT id, name, env, description, state, created_at, stopped_at FROM apps ORDER BY created_at",
		    &st, err) < 0)
		return -1;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct cove_store_app a = {
			.id = (const char *)sqlite3_column_text(st, 0),
			.name = (const char *)sqlite3_column_text(st, 1),
			.env = (const char *)sqlite3_column_text(st, 2),
			.description = (const char *)sqlite3_column_text(st, 3),
			.state = sqlite3_column_int(st, 4),
			.created_at = sqlite3_column_double(st, 5),
			.stopped_at = sqlite3_column_double(st, 6),
		};
		if (cb(arg, &a) < 0)
			return cove_error_set(err, COVE_INTERNAL, "store: reading apps stopped");
	}
	return rc == SQLITE_DONE ? 0 : db_error(s, err, "read apps");
}

int
cove_store_each_object(struct cove_store *s, const char *kind, const char *app_id,
		       int (*cb)(void *arg, const char *id, const char *name, const uint8_t *data, size_t len), void *arg,
		       struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT id, name, data FROM objects WHERE kind = ? AND app_id IS ? ORDER BY created_at", &st, err) < 0)
		return -1;
	bind_text(st, 1, kind);
	bind_text(st, 2, app_id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cb(arg, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
		       sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2)) < 0)
			return cove_error_set(err, COVE_INTERNAL, "store: reading objects stopped");
	}
	return rc == SQLITE_DONE ? 0 : db_error(s, err, "read objects");
}

int
cove_store_each_call(struct cove_store *s, const char *function_id,
		     int (*cb)(void *arg, const char *call_id, int call_type, int invocation_type,
			       const char *parent_input_id),
		     void *arg, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s,
		    "SELECT id, call_type, invocation_type, parent_input_id FROM calls WHERE function_id = ? "
		    "ORDER BY created_at",
		    &st, err) < 0)
		return -1;
	bind_text(st, 1, function_id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cb(arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1), sqlite3_column_int(st, 2),
		       (const char *)sqlite3_column_text(st, 3)) < 0)
			return cove_error_set(err, COVE_INTERNAL, "store: reading calls stopped");
	}
	return rc == SQLITE_DONE ? 0 : db_error(s, err, "read calls");
}

int
cove_store_each_input(struct cove_store *s, const char *call_id,
		      int (*cb)(void *arg, const char *input_id, int idx, const uint8_t *data, size_t len,
				const uint8_t *output, size_t output_len),
		      void *arg, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s,
		    "SELECT i.id, i.idx, i.data, o.data FROM inputs i LEFT JOIN outputs o ON o.input_id = i.id "
		    "WHERE i.call_id = ? ORDER BY i.created_at, i.idx",
		    &st, err) < 0)
		return -1;
	bind_text(st, 1, call_id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint8_t *out = sqlite3_column_type(st, 3) == SQLITE_NULL ? NULL : sqlite3_column_blob(st, 3);
		if (cb(arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1), sqlite3_column_blob(st, 2),
		       (size_t)sqlite3_column_bytes(st, 2), out, out ? (size_t)sqlite3_column_bytes(st, 3) : 0) < 0)
			return cove_error_set(err, COVE_INTERNAL, "store: reading inputs stopped");
	}
	return rc == SQLITE_DONE ? 0 : db_error(s, err, "read inputs");
}

int
cove_store_app_mark_stopped(struct cove_store *s, const char *app_id, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "UPDATE apps SET state = ?, stopped_at = ? WHERE id = ?", &st, err) < 0)
		return -1;
	sqlite3_bind_int(st, 1, 5 /* APP_STATE_STOPPED */);
	sqlite3_bind_double(st, 2, now_s());
	bind_text(st, 3, app_id);
	return step_done(s, st, err);
}

int
cove_store_object_delete(struct cove_store *s, const char *id, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "DELETE FROM objects WHERE id = ?", &st, err) < 0)
		return -1;
	bind_text(st, 1, id);
	return step_done(s, st, err);
}

int
cove_store_output_get(struct cove_store *s, const char *input_id, uint8_t **data, size_t *len, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (prepare(s, "SELECT data FROM outputs WHERE input_id = ?", &st, err) < 0)
		return -1;
	bind_text(st, 1, input_id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return cove_error_set(err, COVE_NOT_FOUND, "output of input %s not found", input_id);
	if (rc != SQLITE_ROW)
		return db_error(s, err, "read output");
	size_t n = (size_t)sqlite3_column_bytes(st, 0);
	*data = xmemdup(sqlite3_column_blob(st, 0), n);
	*len = n;
	return 0;
}

int
cove_store_call_expire(struct cove_store *s, const char *call_id, struct cove_error **err)
{
	cleanup_stmt sqlite3_stmt *a = NULL;
	cleanup_stmt sqlite3_stmt *b = NULL;
	if (prepare(s, "DELETE FROM outputs WHERE call_id = ?", &a, err) < 0 ||
	    prepare(s, "DELETE FROM inputs WHERE call_id = ?", &b, err) < 0)
		return -1;
	bind_text(a, 1, call_id);
	bind_text(b, 1, call_id);
	if (cove_store_begin(s, err) < 0)
		return -1;
	if (step_done(s, a, err) < 0 || step_done(s, b, err) < 0) {
		cove_store_rollback(s);
		return -1;
	}
	return cove_store_commit(s, err);
}
