/* Dicts and Queues in SQLite (see kv.h): prepared statements made once, an in-memory index of objects and
 * queue partitions, lazy expiry plus a periodic sweep. */
#include "store/kv.h"

#include <event2/event.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.pb-c.h"
#include "grpc/server.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"

#define DICT_ENTRY_TTL_S (7.0 * 24 * 3600)
#define EPHEMERAL_TIMEOUT_S 600.0
#define SWEEP_S 60.0
/* A read refreshes an entry's clock at most this often (and at most every 1% of the TTL), so reads stay
 * reads: expiry is then exact to within this much. */
#define TOUCH_EVERY_S 3600.0
/* Rows one sweep deletes at most, so that a tick never stalls the event loop for long. */
#define SWEEP_BUDGET 20000
#define IDEM_KEYS 4096

enum stmt_id {
	S_OBJ_INSERT,
	S_OBJ_DELETE,
	S_DICT_GET,
	S_DICT_PROBE,
	S_DICT_TOUCH,
	S_DICT_DEL_ROW,
	S_DICT_UPSERT,
	S_DICT_INSERT_NEW,
	S_DICT_POP,
	S_DICT_LEN,
	S_DICT_CLEAR,
	S_DICT_SCAN,
	S_DICT_EXPIRE,
	S_PART_UPSERT,
	S_PART_DELETE,
	S_PART_DELETE_QUEUE,
	S_ITEM_INSERT,
	S_ITEM_TAKE,
	S_ITEM_PEEK,
	S_ITEM_CLEAR_PART,
	N_STMTS
};

/* Column order puts the small columns first, so that probes never read a large value's overflow pages. */
static const char *const stmt_sql[N_STMTS] = {
	[S_OBJ_INSERT] = "INSERT INTO kv_objects(id, kind, env, name, app_id, created_at) VALUES(?, ?, ?, ?, ?, ?)",
	[S_OBJ_DELETE] = "DELETE FROM kv_objects WHERE seq = ?",
	[S_DICT_GET] = "SELECT rowid, touched_at, value FROM dict_entries WHERE dict_seq = ? AND khash = ?",
	[S_DICT_PROBE] = "SELECT rowid, touched_at FROM dict_entries WHERE dict_seq = ? AND khash = ?",
	[S_DICT_TOUCH] = "UPDATE dict_entries SET touched_at = ? WHERE rowid = ?",
	[S_DICT_DEL_ROW] = "DELETE FROM dict_entries WHERE rowid = ?",
	[S_DICT_UPSERT] = "INSERT INTO dict_entries(dict_seq, khash, touched_at, key, value) VALUES(?, ?, ?, ?, ?) "
			  "ON CONFLICT(dict_seq, khash) DO UPDATE SET touched_at = excluded.touched_at, "
			  "key = excluded.key, value = excluded.value",
	/* Absent, or present but expired (not swept yet): both count as absent. */
	[S_DICT_INSERT_NEW] = "INSERT INTO dict_entries(dict_seq, khash, touched_at, key, value) VALUES(?, ?, ?, ?, ?) "
			      "ON CONFLICT(dict_seq, khash) DO UPDATE SET touched_at = excluded.touched_at, "
			      "key = excluded.key, value = excluded.value WHERE dict_entries.touched_at < ?",
	[S_DICT_POP] = "DELETE FROM dict_entries WHERE dict_seq = ? AND khash = ? RETURNING touched_at, value",
	[S_DICT_LEN] = "SELECT COUNT(*) FROM (SELECT 1 FROM dict_entries WHERE dict_seq = ? AND touched_at >= ? LIMIT ?)",
	[S_DICT_CLEAR] = "DELETE FROM dict_entries WHERE dict_seq = ?",
	[S_DICT_SCAN] = "SELECT key, value FROM dict_entries WHERE dict_seq = ? AND touched_at >= ?",
	[S_DICT_EXPIRE] = "DELETE FROM dict_entries WHERE rowid IN "
			  "(SELECT rowid FROM dict_entries WHERE dict_seq = ? AND touched_at < ? LIMIT ?)",
	[S_PART_UPSERT] = "INSERT INTO queue_partitions(queue_seq, pkey, ttl_s, last_put) VALUES(?, ?, ?, ?) "
			  "ON CONFLICT(queue_seq, pkey) DO UPDATE SET ttl_s = excluded.ttl_s, last_put = excluded.last_put "
			  "RETURNING id",
	[S_PART_DELETE] = "DELETE FROM queue_partitions WHERE id = ?",
	[S_PART_DELETE_QUEUE] = "DELETE FROM queue_partitions WHERE queue_seq = ?",
	[S_ITEM_INSERT] = "INSERT INTO queue_items(part_id, value) VALUES(?, ?)",
	/* RETURNING gives rows in no particular order: take sorts them. */
	[S_ITEM_TAKE] = "DELETE FROM queue_items WHERE id IN "
			"(SELECT id FROM queue_items WHERE part_id = ? ORDER BY id LIMIT ?) RETURNING id, value",
	[S_ITEM_PEEK] = "SELECT id, value FROM queue_items WHERE part_id = ? AND id > ? ORDER BY id LIMIT ?",
	[S_ITEM_CLEAR_PART] = "DELETE FROM queue_items WHERE part_id = ?",
};

struct cove_kv {
	struct cove_ctx *ctx;
	sqlite3 *db;
	sqlite3_stmt *stmts[N_STMTS];
	struct cove_map by_id;   /* id -> struct cove_kv_obj * */
	struct cove_map by_name; /* "<kind>/<env>/<name>" -> struct cove_kv_obj * */
	struct event *sweep_timer;
	double dict_ttl_s;
	double touch_every_s;
	double ephemeral_timeout_s;
	double sweep_s;
	/* recent QueuePut idempotency keys: a ring, and a map for lookups */
	char *idem_ring[IDEM_KEYS];
	size_t idem_next;
	struct cove_map idem;
};

static struct cove_kv *the_kv;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
db_error(struct cove_kv *kv, struct cove_error **err, const char *what)
{
	return cove_error_set(err, COVE_INTERNAL, "store: %s: %s", what, sqlite3_errmsg(kv->db));
}

/* A cached statement, reset (and its bindings cleared) when the local goes out of scope. */
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
stmt(struct cove_kv *kv, enum stmt_id id)
{
	return kv->stmts[id];
}

static void
bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
	sqlite3_bind_blob64(st, i, n ? p : "", n, SQLITE_STATIC);
}

static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static int
step_done(struct cove_kv *kv, sqlite3_stmt *st, struct cove_error **err, const char *what)
{
	if (sqlite3_step(st) != SQLITE_DONE)
		return db_error(kv, err, what);
	return 0;
}

static void
key_hash(const uint8_t *key, size_t len, uint8_t out[32])
{
	cove_sha256(len ? key : (const uint8_t *)"", len, out);
}

static char *
hex_key(const uint8_t *key, size_t len)
{
	char *s = xmalloc(2 * len + 1);
	cove_hex(key, len, s);
	s[2 * len] = '\0';
	return s;
}

static const char *
kind_name(int kind)
{
	return kind == COVE_KV_DICT ? "Dict" : "Queue";
}

static char *
name_key(int kind, const char *env, const char *name)
{
	return xasprintf("%d/%s/%s", kind, env, name);
}

struct cove_kv *
cove_kv_get(void)
{
	return the_kv;
}

int
cove_kv_valid_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 64)
		return 0;
	for (const char *p = name; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return 0;
	}
	/* Names that look like app ids would be ambiguous. */
	if (n == 25 && strncmp(name, "ap-", 3) == 0 && strchr(name + 3, '-') == NULL && strchr(name + 3, '_') == NULL &&
	    strchr(name + 3, '.') == NULL)
		return 0;
	return 1;
}

char *
cove_kv_describe(const struct cove_kv_obj *obj)
{
	if (obj->name)
		return xasprintf("%s '%s'", kind_name(obj->kind), obj->name);
	return xasprintf("ephemeral %s %s", kind_name(obj->kind), obj->id);
}

/* ---- objects in memory ---- */

static struct cove_kv_obj *
obj_new(struct cove_kv *kv, int64_t seq, const char *id, int kind, const char *env, const char *name,
	const char *app_id, double created_at)
{
	struct cove_kv_obj *o = xcalloc(1, sizeof(*o));
	o->seq = seq;
	o->id = xstrdup(id);
	o->kind = kind;
	o->env = xstrdup(env);
	o->name = name ? xstrdup(name) : NULL;
	o->app_id = app_id ? xstrdup(app_id) : NULL;
	o->created_at = created_at;
	o->heartbeat_at = now_s();
	cove_map_put(&kv->by_id, o->id, o);
	if (o->name) {
		cleanup_free char *k = name_key(kind, env, name);
		cove_map_put(&kv->by_name, k, o);
	}
	return o;
}

static struct cove_kv_part *
part_new(struct cove_kv_obj *q, const uint8_t *key, size_t len)
{
	struct cove_kv_part *p = xcalloc(1, sizeof(*p));
	p->queue = q;
	p->key = xmemdup(len ? key : (const uint8_t *)"", len ? len : 1);
	p->key_len = len;
	p->ttl_s = COVE_QUEUE_DEFAULT_TTL_S;
	cleanup_free char *hk = hex_key(key, len);
	cove_map_put(&q->parts, hk, p);
	return p;
}

/* Answer every parked call of a partition that is going away (each waiter's on_timeout answers and unlinks). */
static void
part_release_waiters(struct cove_kv_part *p)
{
	p->dropped = 1;
	while (p->getters.head)
		p->getters.head->on_timeout(p->getters.head);
	while (p->iterators.head)
		p->iterators.head->on_timeout(p->iterators.head);
}

static void
part_free(struct cove_kv_obj *q, struct cove_kv_part *p)
{
	cleanup_free char *hk = hex_key(p->key, p->key_len);
	cove_map_del(&q->parts, hk);
	free(p->key);
	free(p);
}

static void
obj_free(struct cove_kv *kv, struct cove_kv_obj *o)
{
	size_t it = 0;
	void *v;
	while (cove_map_next(&o->parts, &it, NULL, &v)) {
		struct cove_kv_part *p = v;
		part_release_waiters(p);
		part_free(o, p);
	}
	cove_map_clear(&o->parts);
	cove_map_del(&kv->by_id, o->id);
	if (o->name) {
		cleanup_free char *k = name_key(o->kind, o->env, o->name);
		if (cove_map_get(&kv->by_name, k) == o)
			cove_map_del(&kv->by_name, k);
	}
	free(o->id);
	free(o->env);
	free(o->name);
	free(o->app_id);
	free(o);
}

/* ---- objects ---- */

static struct cove_kv_obj *
obj_create(struct cove_kv *kv, int kind, const char *env, const char *name, const char *app_id,
	   struct cove_error **err)
{
	cleanup_free char *id = cove_id_new(kind == COVE_KV_DICT ? "di" : "qu");
	double now = now_s();
	cleanup_reset sqlite3_stmt *st = stmt(kv, S_OBJ_INSERT);
	bind_text(st, 1, id);
	sqlite3_bind_int(st, 2, kind);
	bind_text(st, 3, env);
	bind_text(st, 4, name);
	bind_text(st, 5, app_id);
	sqlite3_bind_double(st, 6, now);
	if (step_done(kv, st, err, "create object") < 0)
		return NULL;
	return obj_new(kv, sqlite3_last_insert_rowid(kv->db), id, kind, env, name, app_id, now);
}

struct cove_kv_obj *
cove_kv_open(struct cove_kv *kv, int kind, const char *env, const char *name, int creation_type,
	     const char *owner_app_id, int *created, struct cove_error **err)
{
	const char *what = kind_name(kind);
	int has_name = name && *name;
	*created = 0;
	switch (creation_type) {
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_EPHEMERAL: {
		if (has_name) {
			cove_error_set(err, COVE_INVALID_ARGUMENT, "an ephemeral %s has no name (got '%s')", what, name);
			return NULL;
		}
		struct cove_kv_obj *o = obj_create(kv, kind, env, NULL, owner_app_id, err);
		if (o)
			*created = 1;
		return o;
	}
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
		break;
	default:
		cove_error_set(err, COVE_INVALID_ARGUMENT, "object creation type %d is not supported for a %s",
			       creation_type, what);
		return NULL;
	}
	if (!has_name) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "a %s name is required", what);
		return NULL;
	}
	if (!cove_kv_valid_name(name)) {
		cove_error_set(err, COVE_INVALID_ARGUMENT,
			       "invalid %s name '%s': names may contain only alphanumeric characters, dashes, periods "
			       "and underscores, must be at most 64 characters, and must not look like an App ID",
			       what, name);
		return NULL;
	}
	cleanup_free char *k = name_key(kind, env, name);
	struct cove_kv_obj *o = cove_map_get(&kv->by_name, k);
	if (o) {
		if (creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS) {
			cove_error_set(err, COVE_ALREADY_EXISTS, "%s '%s' already exists in environment '%s'", what, name,
				       env);
			return NULL;
		}
		return o;
	}
	if (creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED) {
		cove_error_set(err, COVE_NOT_FOUND, "%s '%s' not found in environment '%s'", what, name, env);
		return NULL;
	}
	o = obj_create(kv, kind, env, name, NULL, err);
	if (o)
		*created = 1;
	return o;
}

struct cove_kv_obj *
cove_kv_find(struct cove_kv *kv, int kind, const char *id, struct cove_error **err)
{
	const char *prefix = kind == COVE_KV_DICT ? "di" : "qu";
	if (!cove_id_valid(id, prefix)) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "'%s' is not a %s id (%s-…)", id ? id : "", kind_name(kind),
			       prefix);
		return NULL;
	}
	struct cove_kv_obj *o = cove_map_get(&kv->by_id, id);
	if (o == NULL || o->kind != kind) {
		cove_error_set(err, COVE_NOT_FOUND, "%s %s not found (it may have been deleted)", kind_name(kind), id);
		return NULL;
	}
	return o;
}

void
cove_kv_heartbeat(struct cove_kv *kv, struct cove_kv_obj *obj)
{
	(void)kv;
	obj->heartbeat_at = now_s();
}

int
cove_kv_delete(struct cove_kv *kv, struct cove_kv_obj *obj, struct cove_error **err)
{
	struct cove_store *store = kv->ctx->store;
	if (cove_store_begin(store, err) < 0)
		return -1;
	if (obj->kind == COVE_KV_DICT) {
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_DICT_CLEAR);
		sqlite3_bind_int64(st, 1, obj->seq);
		if (step_done(kv, st, err, "delete dict entries") < 0)
			goto fail;
	} else {
		size_t it = 0;
		void *v;
		while (cove_map_next(&obj->parts, &it, NULL, &v)) {
			struct cove_kv_part *p = v;
			if (p->row == 0)
				continue;
			cleanup_reset sqlite3_stmt *st = stmt(kv, S_ITEM_CLEAR_PART);
			sqlite3_bind_int64(st, 1, p->row);
			if (step_done(kv, st, err, "delete queue items") < 0)
				goto fail;
		}
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_PART_DELETE_QUEUE);
		sqlite3_bind_int64(st, 1, obj->seq);
		if (step_done(kv, st, err, "delete queue partitions") < 0)
			goto fail;
	}
	{
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_OBJ_DELETE);
		sqlite3_bind_int64(st, 1, obj->seq);
		if (step_done(kv, st, err, "delete object") < 0)
			goto fail;
	}
	if (cove_store_commit(store, err) < 0)
		goto fail;
	obj_free(kv, obj);
	return 0;
fail:
	cove_store_rollback(store);
	return cove_error_wrap(err, "delete %s %s", kind_name(obj->kind), obj->id);
}

static int
cmp_newest_first(const void *a, const void *b)
{
	const struct cove_kv_obj *x = *(struct cove_kv_obj *const *)a;
	const struct cove_kv_obj *y = *(struct cove_kv_obj *const *)b;
	return x->created_at < y->created_at ? 1 : x->created_at > y->created_at ? -1 : strcmp(x->id, y->id);
}

void
cove_kv_list(struct cove_kv *kv, int kind, const char *env, double before, int32_t max, struct cove_kv_obj ***out,
	     size_t *n)
{
	struct cove_kv_obj **all = xcalloc(kv->by_name.len + 1, sizeof(*all));
	size_t count = 0, it = 0;
	void *v;
	while (cove_map_next(&kv->by_name, &it, NULL, &v)) {
		struct cove_kv_obj *o = v;
		if (o->kind != kind || strcmp(o->env, env) != 0)
			continue;
		if (before > 0 && o->created_at >= before)
			continue;
		all[count++] = o;
	}
	qsort(all, count, sizeof(*all), cmp_newest_first);
	size_t limit = max > 0 ? (size_t)max : 100;
	*n = count < limit ? count : limit;
	*out = all;
}

/* ---- dict entries ---- */

static double
dict_cutoff(struct cove_kv *kv, double now)
{
	return now - kv->dict_ttl_s;
}

/* Look an entry up; with want_value, copy its value out. Expired entries are deleted and reported absent;
 * live ones whose clock is stale are touched. */
static int
dict_lookup(struct cove_kv *kv, struct cove_kv_obj *d, const uint8_t *key, size_t key_len, int want_value,
	    int *found, uint8_t **value, size_t *value_len, struct cove_error **err)
{
	uint8_t h[32];
	key_hash(key, key_len, h);
	double now = now_s();
	int64_t rowid;
	double touched;
	{
		cleanup_reset sqlite3_stmt *st = stmt(kv, want_value ? S_DICT_GET : S_DICT_PROBE);
		sqlite3_bind_int64(st, 1, d->seq);
		bind_blob(st, 2, h, sizeof(h));
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE) {
			*found = 0;
			return 0;
		}
		if (rc != SQLITE_ROW)
			return db_error(kv, err, "read dict entry");
		rowid = sqlite3_column_int64(st, 0);
		touched = sqlite3_column_double(st, 1);
		if (touched >= dict_cutoff(kv, now) && want_value) {
			size_t n = (size_t)sqlite3_column_bytes(st, 2);
			*value = xmemdup(n ? sqlite3_column_blob(st, 2) : "", n ? n : 1);
			*value_len = n;
		}
	}
	if (touched < dict_cutoff(kv, now)) {
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_DICT_DEL_ROW);
		sqlite3_bind_int64(st, 1, rowid);
		if (step_done(kv, st, err, "expire dict entry") < 0)
			return -1;
		*found = 0;
		return 0;
	}
	*found = 1;
	if (now - touched >= kv->touch_every_s) {
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_DICT_TOUCH);
		sqlite3_bind_double(st, 1, now);
		sqlite3_bind_int64(st, 2, rowid);
		/* Only the expiry clock: a failure here loses nothing the caller asked for. */
		if (sqlite3_step(st) != SQLITE_DONE)
			log_warn("kv: touch dict entry of %s: %s", d->id, sqlite3_errmsg(kv->db));
	}
	return 0;
}

int
cove_kv_dict_get(struct cove_kv *kv, struct cove_kv_obj *d, const uint8_t *key, size_t key_len, int *found,
		 uint8_t **value, size_t *value_len, struct cove_error **err)
{
	*value = NULL;
	*value_len = 0;
	if (dict_lookup(kv, d, key, key_len, 1, found, value, value_len, err) < 0)
		return -1;
	if (!*found) {
		free(*value);
		*value = NULL;
	}
	return 0;
}

int
cove_kv_dict_contains(struct cove_kv *kv, struct cove_kv_obj *d, const uint8_t *key, size_t key_len, int *found,
		      struct cove_error **err)
{
	return dict_lookup(kv, d, key, key_len, 0, found, NULL, NULL, err);
}

int
cove_kv_dict_pop(struct cove_kv *kv, struct cove_kv_obj *d, const uint8_t *key, size_t key_len, int *found,
		 uint8_t **value, size_t *value_len, struct cove_error **err)
{
	uint8_t h[32];
	key_hash(key, key_len, h);
	*found = 0;
	*value = NULL;
	*value_len = 0;
	cleanup_reset sqlite3_stmt *st = stmt(kv, S_DICT_POP);
	sqlite3_bind_int64(st, 1, d->seq);
	bind_blob(st, 2, h, sizeof(h));
	cleanup_free uint8_t *v = NULL;
	size_t n = 0;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		double touched = sqlite3_column_double(st, 0);
		n = (size_t)sqlite3_column_bytes(st, 1);
		v = xmemdup(n ? sqlite3_column_blob(st, 1) : "", n ? n : 1);
		*found = touched >= dict_cutoff(kv, now_s());
		rc = sqlite3_step(st);
	}
	/* The deletion commits when the statement completes. */
	if (rc != SQLITE_DONE) {
		*found = 0;
		return db_error(kv, err, "pop dict entry");
	}
	if (*found) {
		*value = steal_pointer(&v);
		*value_len = n;
	}
	return 0;
}

int
cove_kv_dict_len(struct cove_kv *kv, struct cove_kv_obj *d, int64_t *len, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(kv, S_DICT_LEN);
	sqlite3_bind_int64(st, 1, d->seq);
	sqlite3_bind_double(st, 2, dict_cutoff(kv, now_s()));
	sqlite3_bind_int64(st, 3, COVE_DICT_MAX_LEN);
	if (sqlite3_step(st) != SQLITE_ROW)
		return db_error(kv, err, "count dict entries");
	*len = sqlite3_column_int64(st, 0);
	return 0;
}

int
cove_kv_dict_update(struct cove_kv *kv, struct cove_kv_obj *d, const struct cove_kv_entry *entries, size_t n,
		    int if_not_exists, int *created, struct cove_error **err)
{
	struct cove_store *store = kv->ctx->store;
	double now = now_s();
	*created = 0;
	if (if_not_exists && n != 1)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "if_not_exists applies to exactly one entry, not %zu", n);
	/* One entry is one statement, atomic on its own; more take a transaction. */
	int txn = n > 1;
	if (txn && cove_store_begin(store, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		uint8_t h[32];
		key_hash(entries[i].key, entries[i].key_len, h);
		cleanup_reset sqlite3_stmt *st = stmt(kv, if_not_exists ? S_DICT_INSERT_NEW : S_DICT_UPSERT);
		sqlite3_bind_int64(st, 1, d->seq);
		bind_blob(st, 2, h, sizeof(h));
		sqlite3_bind_double(st, 3, now);
		bind_blob(st, 4, entries[i].key, entries[i].key_len);
		bind_blob(st, 5, entries[i].value, entries[i].value_len);
		if (if_not_exists)
			sqlite3_bind_double(st, 6, dict_cutoff(kv, now));
		if (step_done(kv, st, err, "write dict entry") < 0) {
			if (txn)
				cove_store_rollback(store);
			return -1;
		}
		if (if_not_exists)
			*created = sqlite3_changes(kv->db) > 0;
	}
	if (txn && cove_store_commit(store, err) < 0) {
		cove_store_rollback(store);
		return -1;
	}
	if (!if_not_exists)
		*created = 1;
	return 0;
}

int
cove_kv_dict_clear(struct cove_kv *kv, struct cove_kv_obj *d, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(kv, S_DICT_CLEAR);
	sqlite3_bind_int64(st, 1, d->seq);
	return step_done(kv, st, err, "clear dict");
}

int
cove_kv_dict_scan(struct cove_kv *kv, struct cove_kv_obj *d, void (*fn)(const struct cove_kv_entry *e, void *arg),
		  void *arg, struct cove_error **err)
{
	cleanup_reset sqlite3_stmt *st = stmt(kv, S_DICT_SCAN);
	sqlite3_bind_int64(st, 1, d->seq);
	sqlite3_bind_double(st, 2, dict_cutoff(kv, now_s()));
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct cove_kv_entry e = {
			.key = sqlite3_column_blob(st, 0),
			.key_len = (size_t)sqlite3_column_bytes(st, 0),
			.value = sqlite3_column_blob(st, 1),
			.value_len = (size_t)sqlite3_column_bytes(st, 1),
		};
		fn(&e, arg);
	}
	if (rc != SQLITE_DONE)
		return db_error(kv, err, "read dict entries");
	return 0;
}

/* ---- queue partitions and items ---- */

static int
part_expired(const struct cove_kv_part *p, double now)
{
	return p->row != 0 && now >= p->last_put + (double)p->ttl_s;
}

static void
part_account(struct cove_kv_part *p, int64_t d_items, int64_t d_bytes)
{
	struct cove_kv_obj *q = p->queue;
	int was_empty = p->n_items == 0;
	p->n_items += d_items;
	p->bytes += d_bytes;
	q->n_items += d_items;
	if (was_empty && p->n_items > 0)
		q->n_nonempty++;
	else if (!was_empty && p->n_items == 0)
		q->n_nonempty--;
}

static int
part_clear(struct cove_kv *kv, struct cove_kv_part *p, struct cove_error **err)
{
	if (p->row == 0 || p->n_items == 0)
		return 0;
	cleanup_reset sqlite3_stmt *st = stmt(kv, S_ITEM_CLEAR_PART);
	sqlite3_bind_int64(st, 1, p->row);
	if (step_done(kv, st, err, "clear queue partition") < 0)
		return -1;
	part_account(p, -p->n_items, -p->bytes);
	return 0;
}

struct cove_kv_part *
cove_kv_part(struct cove_kv *kv, struct cove_kv_obj *q, const uint8_t *key, size_t key_len, int create)
{
	cleanup_free char *hk = hex_key(key, key_len);
	struct cove_kv_part *p = cove_map_get(&q->parts, hk);
	if (p && p->n_items > 0 && part_expired(p, now_s())) {
		struct cove_error *err = NULL;
		if (part_clear(kv, p, &err) < 0) {
			/* Still there: the sweep tries again; readers see the items a little longer. */
			log_warn("kv: expire partition of %s: %s", q->id, err->msg);
			cove_error_free(err);
		}
	}
	if (p == NULL && create)
		p = part_new(q, key, key_len);
	return p;
}

int
cove_kv_queue_put(struct cove_kv *kv, struct cove_kv_part *p, const uint8_t *const *values, const size_t *lens,
		  size_t n, int32_t ttl_s, struct cove_error **err)
{
	struct cove_kv_obj *q = p->queue;
	struct cove_store *store = kv->ctx->store;
	int64_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += (int64_t)lens[i];
	if (p->n_items + (int64_t)n > COVE_QUEUE_MAX_PARTITION_ITEMS)
		return cove_error_set(err, COVE_RESOURCE_EXHAUSTED,
				      "Queue partition is full: it holds %lld items and the limit is %d",
				      (long long)p->n_items, COVE_QUEUE_MAX_PARTITION_ITEMS);
	if (p->bytes + bytes > (int64_t)COVE_QUEUE_MAX_PARTITION_BYTES)
		return cove_error_set(err, COVE_RESOURCE_EXHAUSTED,
				      "Queue partition is full: it holds %lld bytes and the limit is 64 MiB",
				      (long long)p->bytes);
	if (p->n_items == 0 && n > 0 && q->n_nonempty >= COVE_QUEUE_MAX_PARTITIONS)
		return cove_error_set(err, COVE_RESOURCE_EXHAUSTED, "Queue has %zu partitions holding items, the limit is %d",
				      q->n_nonempty, COVE_QUEUE_MAX_PARTITIONS);
	double now = now_s();
	if (cove_store_begin(store, err) < 0)
		return -1;
	int64_t row;
	{
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_PART_UPSERT);
		sqlite3_bind_int64(st, 1, q->seq);
		bind_blob(st, 2, p->key, p->key_len);
		sqlite3_bind_int(st, 3, ttl_s);
		sqlite3_bind_double(st, 4, now);
		if (sqlite3_step(st) != SQLITE_ROW) {
			db_error(kv, err, "write queue partition");
			goto fail;
		}
		row = sqlite3_column_int64(st, 0);
		if (step_done(kv, st, err, "write queue partition") < 0)
			goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_ITEM_INSERT);
		sqlite3_bind_int64(st, 1, row);
		bind_blob(st, 2, values[i], lens[i]);
		if (step_done(kv, st, err, "write queue item") < 0)
			goto fail;
	}
	if (cove_store_commit(store, err) < 0)
		goto fail;
	p->row = row;
	p->ttl_s = ttl_s;
	p->last_put = now;
	part_account(p, (int64_t)n, bytes);
	return 0;
fail:
	cove_store_rollback(store);
	return -1;
}

static int
cmp_item(const void *a, const void *b)
{
	const struct cove_kv_item *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

void
cove_kv_items_free(struct cove_kv_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i].value);
	free(items);
}

int
cove_kv_queue_take(struct cove_kv *kv, struct cove_kv_part *p, size_t max, struct cove_kv_item **out, size_t *n_out,
		   struct cove_error **err)
{
	*out = NULL;
	*n_out = 0;
	if (p->row == 0 || p->n_items == 0 || max == 0)
		return 0;
	size_t cap = max < (size_t)p->n_items ? max : (size_t)p->n_items;
	struct cove_kv_item *items = xcalloc(cap, sizeof(*items));
	size_t n = 0;
	int64_t bytes = 0;
	cleanup_reset sqlite3_stmt *st = stmt(kv, S_ITEM_TAKE);
	sqlite3_bind_int64(st, 1, p->row);
	sqlite3_bind_int64(st, 2, (int64_t)cap);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) /* the index promised at most cap rows */
			continue;
		size_t len = (size_t)sqlite3_column_bytes(st, 1);
		items[n].id = sqlite3_column_int64(st, 0);
		items[n].value = xmemdup(len ? sqlite3_column_blob(st, 1) : "", len ? len : 1);
		items[n].len = len;
		bytes += (int64_t)len;
		n++;
	}
	/* The deletion commits when the statement completes: nothing is handed out unless it did. */
	if (rc != SQLITE_DONE) {
		cove_kv_items_free(items, n);
		return db_error(kv, err, "take queue items");
	}
	qsort(items, n, sizeof(*items), cmp_item);
	part_account(p, -(int64_t)n, -bytes);
	if (n == 0) {
		free(items);
		return 0;
	}
	*out = items;
	*n_out = n;
	return 0;
}

int
cove_kv_queue_peek(struct cove_kv *kv, struct cove_kv_part *p, int64_t after, size_t max, size_t max_bytes,
		   struct cove_kv_item **out, size_t *n_out, struct cove_error **err)
{
	*out = NULL;
	*n_out = 0;
	if (p->row == 0 || p->n_items == 0 || max == 0)
		return 0;
	size_t cap = max < (size_t)p->n_items ? max : (size_t)p->n_items;
	struct cove_kv_item *items = xcalloc(cap, sizeof(*items));
	size_t n = 0, bytes = 0;
	cleanup_reset sqlite3_stmt *st = stmt(kv, S_ITEM_PEEK);
	sqlite3_bind_int64(st, 1, p->row);
	sqlite3_bind_int64(st, 2, after);
	sqlite3_bind_int64(st, 3, (int64_t)cap);
	int rc = SQLITE_DONE;
	while (n < cap && bytes < max_bytes && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		size_t len = (size_t)sqlite3_column_bytes(st, 1);
		items[n].id = sqlite3_column_int64(st, 0);
		items[n].value = xmemdup(len ? sqlite3_column_blob(st, 1) : "", len ? len : 1);
		items[n].len = len;
		bytes += len;
		n++;
	}
	if (n < cap && bytes < max_bytes && rc != SQLITE_DONE) {
		cove_kv_items_free(items, n);
		return db_error(kv, err, "read queue items");
	}
	if (n == 0) {
		free(items);
		return 0;
	}
	*out = items;
	*n_out = n;
	return 0;
}

int
cove_kv_queue_clear(struct cove_kv *kv, struct cove_kv_obj *q, struct cove_kv_part *p, struct cove_error **err)
{
	if (p)
		return part_clear(kv, p, err);
	struct cove_store *store = kv->ctx->store;
	if (cove_store_begin(store, err) < 0)
		return -1;
	size_t it = 0;
	void *v;
	while (cove_map_next(&q->parts, &it, NULL, &v)) {
		struct cove_kv_part *part = v;
		if (part->row == 0 || part->n_items == 0)
			continue;
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_ITEM_CLEAR_PART);
		sqlite3_bind_int64(st, 1, part->row);
		if (step_done(kv, st, err, "clear queue") < 0) {
			cove_store_rollback(store);
			return -1;
		}
	}
	if (cove_store_commit(store, err) < 0) {
		cove_store_rollback(store);
		return -1;
	}
	it = 0;
	while (cove_map_next(&q->parts, &it, NULL, &v)) {
		struct cove_kv_part *part = v;
		if (part->n_items > 0)
			part_account(part, -part->n_items, -part->bytes);
	}
	return 0;
}

/* ---- idempotency keys ---- */

int
cove_kv_idem_seen(struct cove_kv *kv, const char *key)
{
	return key && *key && cove_map_get(&kv->idem, key) != NULL;
}

void
cove_kv_idem_remember(struct cove_kv *kv, const char *key)
{
	if (key == NULL || *key == '\0' || strlen(key) > 128 || cove_map_get(&kv->idem, key))
		return;
	char **slot = &kv->idem_ring[kv->idem_next];
	if (*slot) {
		cove_map_del(&kv->idem, *slot);
		free(*slot);
	}
	*slot = xstrdup(key);
	cove_map_put(&kv->idem, key, kv);
	kv->idem_next = (kv->idem_next + 1) % IDEM_KEYS;
}

/* ---- the sweep ---- */

static int
app_gone(struct cove_kv *kv, const char *app_id)
{
	struct cove_app *app = cove_sched_app_get(kv->ctx->sched, app_id);
	return app == NULL || app->stopping || app->state == MODAL__CLIENT__APP_STATE__APP_STATE_STOPPED;
}

/* Expired dict entries of one dict, up to *budget rows. */
static void
sweep_dict(struct cove_kv *kv, struct cove_kv_obj *d, double now, int64_t *budget)
{
	while (*budget > 0) {
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_DICT_EXPIRE);
		sqlite3_bind_int64(st, 1, d->seq);
		sqlite3_bind_double(st, 2, dict_cutoff(kv, now));
		sqlite3_bind_int64(st, 3, *budget < 1000 ? *budget : 1000);
		if (sqlite3_step(st) != SQLITE_DONE) {
			log_warn("kv: expire entries of %s: %s", d->id, sqlite3_errmsg(kv->db));
			return;
		}
		int deleted = sqlite3_changes(kv->db);
		*budget -= deleted;
		if (deleted < 1000)
			return;
	}
}

/* Partitions past their TTL: emptied, and forgotten once nobody waits on them. */
static void
sweep_queue(struct cove_kv *kv, struct cove_kv_obj *q, double now)
{
	size_t it = 0;
	void *v;
	while (cove_map_next(&q->parts, &it, NULL, &v)) {
		struct cove_kv_part *p = v;
		int idle = p->getters.head == NULL && p->iterators.head == NULL;
		if (p->row == 0) {
			if (idle)
				part_free(q, p);
			continue;
		}
		if (!part_expired(p, now))
			continue;
		struct cove_error *err = NULL;
		if (part_clear(kv, p, &err) < 0) {
			log_warn("kv: expire partition of %s: %s", q->id, err->msg);
			cove_error_free(err);
			continue;
		}
		if (!idle)
			continue;
		cleanup_reset sqlite3_stmt *st = stmt(kv, S_PART_DELETE);
		sqlite3_bind_int64(st, 1, p->row);
		if (sqlite3_step(st) != SQLITE_DONE) {
			log_warn("kv: drop partition of %s: %s", q->id, sqlite3_errmsg(kv->db));
			continue;
		}
		part_free(q, p);
	}
}

static void
sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_kv *kv = arg;
	double now = now_s();
	/* Ephemeral objects whose owner went away. Collected first: deleting changes the map. */
	char **doomed = xcalloc(kv->by_id.len + 1, sizeof(char *));
	size_t n_doomed = 0, it = 0;
	void *v;
	while (cove_map_next(&kv->by_id, &it, NULL, &v)) {
		struct cove_kv_obj *o = v;
		if (o->name)
			continue;
		if (now - o->heartbeat_at > kv->ephemeral_timeout_s || (o->app_id && app_gone(kv, o->app_id)))
			doomed[n_doomed++] = xstrdup(o->id);
	}
	for (size_t i = 0; i < n_doomed; i++) {
		struct cove_kv_obj *o = cove_map_get(&kv->by_id, doomed[i]);
		struct cove_error *err = NULL;
		if (o && cove_kv_delete(kv, o, &err) < 0) {
			log_warn("kv: %s", err->msg);
			cove_error_free(err);
		} else if (o) {
			log_debug("kv: ephemeral object %s expired", doomed[i]);
		}
		free(doomed[i]);
	}
	free(doomed);
	/* One transaction for the whole pass: a statement per dict, but one lock and one commit. */
	struct cove_error *err = NULL;
	if (cove_store_begin(kv->ctx->store, &err) < 0) {
		log_warn("kv: sweep: %s", err->msg);
		cove_error_free(err);
		return;
	}
	int64_t budget = SWEEP_BUDGET;
	it = 0;
	while (cove_map_next(&kv->by_id, &it, NULL, &v)) {
		struct cove_kv_obj *o = v;
		if (o->kind == COVE_KV_DICT)
			sweep_dict(kv, o, now, &budget);
	}
	if (cove_store_commit(kv->ctx->store, &err) < 0) {
		log_warn("kv: sweep: %s", err->msg);
		cove_error_free(err);
		cove_store_rollback(kv->ctx->store);
	}
	/* Partitions change memory as they go, so each change commits on its own (they are rare). */
	it = 0;
	while (cove_map_next(&kv->by_id, &it, NULL, &v)) {
		struct cove_kv_obj *o = v;
		if (o->kind == COVE_KV_QUEUE)
			sweep_queue(kv, o, now);
	}
}

/* ---- start and stop ---- */

static double
env_seconds(const char *name, double dflt)
{
	const char *s = getenv(name);
	if (s == NULL || *s == '\0')
		return dflt;
	char *end;
	double v = strtod(s, &end);
	if (*end != '\0' || !isfinite(v) || v <= 0) {
		log_warn("kv: ignoring %s=%s (not a positive number of seconds)", name, s);
		return dflt;
	}
	return v;
}

static int
load(struct cove_kv *kv, struct cove_error **err)
{
	double now = now_s();
	sqlite3_stmt *st = NULL;
	struct cove_map by_seq = {0}, by_row = {0};
	int rc, ret = -1;
	if (sqlite3_prepare_v2(kv->db, "SELECT seq, id, kind, env, name, app_id, created_at FROM kv_objects", -1, &st,
			       NULL) != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int kind = sqlite3_column_int(st, 2);
		const char *id = (const char *)sqlite3_column_text(st, 1);
		if (id == NULL || (kind != COVE_KV_DICT && kind != COVE_KV_QUEUE))
			continue;
		struct cove_kv_obj *o = obj_new(kv, sqlite3_column_int64(st, 0), id, kind,
						(const char *)sqlite3_column_text(st, 3),
						(const char *)sqlite3_column_text(st, 4),
						(const char *)sqlite3_column_text(st, 5), sqlite3_column_double(st, 6));
		o->heartbeat_at = now;
		char k[32];
		snprintf(k, sizeof(k), "%lld", (long long)o->seq);
		cove_map_put(&by_seq, k, o);
	}
	if (rc != SQLITE_DONE)
		goto out;
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(kv->db, "SELECT id, queue_seq, pkey, ttl_s, last_put FROM queue_partitions", -1, &st,
			       NULL) != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char k[32];
		snprintf(k, sizeof(k), "%lld", (long long)sqlite3_column_int64(st, 1));
		struct cove_kv_obj *q = cove_map_get(&by_seq, k);
		if (q == NULL || q->kind != COVE_KV_QUEUE)
			continue;
		struct cove_kv_part *p = part_new(q, sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2));
		p->row = sqlite3_column_int64(st, 0);
		p->ttl_s = sqlite3_column_int(st, 3);
		p->last_put = sqlite3_column_double(st, 4);
		snprintf(k, sizeof(k), "%lld", (long long)p->row);
		cove_map_put(&by_row, k, p);
	}
	if (rc != SQLITE_DONE)
		goto out;
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(kv->db, "SELECT part_id, COUNT(*), SUM(length(value)) FROM queue_items GROUP BY part_id",
			       -1, &st, NULL) != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char k[32];
		snprintf(k, sizeof(k), "%lld", (long long)sqlite3_column_int64(st, 0));
		struct cove_kv_part *p = cove_map_get(&by_row, k);
		if (p == NULL) {
			log_warn("kv: queue items of unknown partition %s ignored", k);
			continue;
		}
		part_account(p, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
	}
	if (rc != SQLITE_DONE)
		goto out;
	ret = 0;
out:
	if (ret < 0)
		db_error(kv, err, "load dicts and queues");
	sqlite3_finalize(st);
	cove_map_clear(&by_seq);
	cove_map_clear(&by_row);
	return ret;
}

int
cove_kv_start(struct cove_ctx *ctx, struct cove_error **err)
{
	struct cove_kv *kv = xcalloc(1, sizeof(*kv));
	kv->ctx = ctx;
	kv->db = cove_store_sqlite(ctx->store);
	kv->dict_ttl_s = env_seconds("COVE_DICT_ENTRY_TTL_S", DICT_ENTRY_TTL_S);
	kv->touch_every_s = kv->dict_ttl_s / 100 < TOUCH_EVERY_S ? kv->dict_ttl_s / 100 : TOUCH_EVERY_S;
	kv->ephemeral_timeout_s = env_seconds("COVE_EPHEMERAL_TIMEOUT_S", EPHEMERAL_TIMEOUT_S);
	kv->sweep_s = env_seconds("COVE_KV_SWEEP_S", SWEEP_S);
	the_kv = kv;
	for (int i = 0; i < N_STMTS; i++) {
		if (sqlite3_prepare_v3(kv->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &kv->stmts[i], NULL) !=
		    SQLITE_OK) {
			db_error(kv, err, "prepare");
			goto fail;
		}
	}
	if (load(kv, err) < 0)
		goto fail;
	kv->sweep_timer = event_new(ctx->base, -1, EV_PERSIST, sweep, kv);
	struct timeval tv = {(time_t)kv->sweep_s, (suseconds_t)((kv->sweep_s - (double)(time_t)kv->sweep_s) * 1e6)};
	event_add(kv->sweep_timer, &tv);
	return 0;
fail:
	cove_error_wrap(err, "start dicts and queues");
	cove_kv_stop(ctx);
	return -1;
}

void
cove_kv_stop(struct cove_ctx *ctx)
{
	(void)ctx;
	struct cove_kv *kv = the_kv;
	if (kv == NULL)
		return;
	if (kv->sweep_timer)
		event_free(kv->sweep_timer);
	size_t it = 0;
	void *v;
	while (cove_map_next(&kv->by_id, &it, NULL, &v)) {
		struct cove_kv_obj *o = v;
		size_t it2 = 0;
		void *pv;
		while (cove_map_next(&o->parts, &it2, NULL, &pv)) {
			struct cove_kv_part *p = pv;
			struct cove_waitlist *lists[] = {&p->getters, &p->iterators};
			for (int i = 0; i < 2; i++) {
				while (lists[i]->head) {
					struct cove_waiter *w = lists[i]->head;
					cove_call_finish(w->call, COVE_UNAVAILABLE, "server shutting down");
					cove_waiter_done(w);
				}
			}
		}
	}
	while (kv->by_id.len > 0) {
		it = 0;
		if (!cove_map_next(&kv->by_id, &it, NULL, &v))
			break;
		obj_free(kv, v);
	}
	cove_map_clear(&kv->by_id);
	cove_map_clear(&kv->by_name);
	for (size_t i = 0; i < IDEM_KEYS; i++)
		free(kv->idem_ring[i]);
	cove_map_clear(&kv->idem);
	for (int i = 0; i < N_STMTS; i++)
		if (kv->stmts[i])
			sqlite3_finalize(kv->stmts[i]);
	free(kv);
	the_kv = NULL;
}
