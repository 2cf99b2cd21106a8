/* Dicts and Queues in the store: their objects, dict entries and queue items in SQLite tables of their own
 * (schema 2 in store.c), with an in-memory index of every object and queue partition, so that most
 * operations are one prepared statement and one commit.
 *
 * Durability: every write function returns after SQLite committed it (WAL), so an acknowledged write
 * survives kill -9. Expiry is lazy (reads skip what has expired) plus a periodic sweep that deletes it:
 *   - dict entries after 7 days without reads or writes (touches are recorded at most every ~hour, so a
 *     read is not a write);
 *   - queue partitions at last put + partition_ttl;
 *   - ephemeral objects when their heartbeat stops (10 min), or when the app whose container created
 *     them has stopped.
 * Three environment variables shorten those times for tests (seconds, fractional allowed):
 *   COVE_DICT_ENTRY_TTL_S, COVE_EPHEMERAL_TIMEOUT_S, COVE_KV_SWEEP_S.
 *
 * Everything runs on the event loop thread. Objects and partitions are owned here; handlers borrow them for
 * one event callback and look them up again by id afterwards. */
#ifndef COVE_STORE_KV_H
#define COVE_STORE_KV_H

#include <stddef.h>
#include <stdint.h>

#include "sched/sched.h"
#include "util/error.h"
#include "util/map.h"

struct cove_ctx;
struct cove_kv;

enum cove_kv_kind {
	COVE_KV_DICT = 1,
	COVE_KV_QUEUE = 2,
};

/* Documented limits. */
#define COVE_DICT_MAX_OBJECT_BYTES (100u * 1024 * 1024) /* per key and per value */
#define COVE_DICT_MAX_UPDATES 10000                     /* entries per DictUpdate */
#define COVE_DICT_MAX_LEN 100000                        /* DictLen counts up to this */
#define COVE_QUEUE_MAX_ITEM_BYTES (1u * 1024 * 1024)
#define COVE_QUEUE_MAX_PARTITION_ITEMS 5000
#define COVE_QUEUE_MAX_PARTITION_BYTES (64u * 1024 * 1024)
#define COVE_QUEUE_MAX_PARTITIONS 100000
#define COVE_QUEUE_MAX_PARTITION_KEY 64
#define COVE_QUEUE_DEFAULT_TTL_S 86400

/* Appended to the message of a request rejected for its size (INVALID_ARGUMENT: it can never succeed as
 * sent). The client looks for this text, which a proxy's HTTP 413 would produce, and raises the documented
 * modal.exception.RequestSizeError ("Dict.put request is too large") instead of InvalidError. */
#define COVE_KV_TOO_LARGE "(status = '413': request too large)"

struct cove_kv_obj {
	char *id;           /* "di-…" / "qu-…" */
	int64_t seq;        /* its row in kv_objects: what entry and partition rows reference */
	int kind;           /* enum cove_kv_kind */
	char *env;
	char *name;         /* NULL: anonymous (ephemeral) */
	char *app_id;       /* ephemeral objects a container created: its app; else NULL */
	double created_at;
	double heartbeat_at; /* ephemeral: the last heartbeat (memory only: a restart grants a fresh timeout) */
	/* queues */
	struct cove_map parts; /* hex(partition key) -> struct cove_kv_part * */
	size_t n_nonempty;     /* partitions holding items */
	int64_t n_items;       /* items in all partitions */
};

struct cove_kv_part {
	struct cove_kv_obj *queue;
	int64_t row;      /* its row in queue_partitions; 0 while nothing was ever put */
	uint8_t *key;     /* the partition key (empty: the default partition) */
	size_t key_len;
	int64_t n_items;
	int64_t bytes;
	int32_t ttl_s;
	double last_put;
	int dropped;      /* set while the queue is being deleted: waiters answer empty */
	/* Parked calls (queue.c). Whenever a partition goes away, each waiter's on_timeout runs (with dropped
	 * set); it must answer its call and cove_waiter_done() itself. */
	struct cove_waitlist getters;   /* QueueGet */
	struct cove_waitlist iterators; /* QueueNextItems */
};

/* Start: load the index, prepare statements, arm the sweep. Stop: free everything (parked calls must have
 * been answered or cancelled; any left are answered UNAVAILABLE). One per process. */
int cove_kv_start(struct cove_ctx *ctx, struct cove_error **err);
void cove_kv_stop(struct cove_ctx *ctx);
/* The running instance (NULL before start). */
struct cove_kv *cove_kv_get(void);

/* 1 if name is a valid object name (what the client checks: 1-64 of [A-Za-z0-9-_.], not an app id). */
int cove_kv_valid_name(const char *name);

/* Objects. open: the GetOrCreate semantics for an ObjectCreationType (UNSPECIFIED: must exist;
 * CREATE_IF_MISSING; CREATE_FAIL_IF_EXISTS: ALREADY_EXISTS; EPHEMERAL: a new anonymous object, owned by
 * owner_app_id when not NULL). *created says whether it is new. NOT_FOUND / ALREADY_EXISTS / INVALID_ARGUMENT
 * as the case may be. */
struct cove_kv_obj *cove_kv_open(struct cove_kv *kv, int kind, const char *env, const char *name,
				 int creation_type, const char *owner_app_id, int *created, struct cove_error **err);
/* By id: INVALID_ARGUMENT for a malformed id, NOT_FOUND for an unknown one. */
struct cove_kv_obj *cove_kv_find(struct cove_kv *kv, int kind, const char *id, struct cove_error **err);
void cove_kv_heartbeat(struct cove_kv *kv, struct cove_kv_obj *obj);
/* Delete the object and its contents; obj is freed (queues: parked calls answered first). */
int cove_kv_delete(struct cove_kv *kv, struct cove_kv_obj *obj, struct cove_error **err);
/* Named objects of a kind in env created before `before` (0: any), newest first, at most max (0: 100).
 * *out is a malloc'd array of borrowed pointers. */
void cove_kv_list(struct cove_kv *kv, int kind, const char *env, double before, int32_t max,
		  struct cove_kv_obj ***out, size_t *n);
/* "Dict 'name'" or "ephemeral Dict di-…", for messages. Caller frees. */
char *cove_kv_describe(const struct cove_kv_obj *obj);

/* Dict entries. Keys are compared as bytes. get/contains/pop: *found 0 or 1; *value malloc'd. */
struct cove_kv_entry {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *value;
	size_t value_len;
};
int cove_kv_dict_get(struct cove_kv *kv, struct cove_kv_obj *d, const uint8_t *key, size_t key_len, int *found,
		     uint8_t **value, size_t *value_len, struct cove_error **err);
int cove_kv_dict_contains(struct cove_kv *kv, struct cove_kv_obj *d, const uint8_t *key, size_t key_len,
			  int *found, struct cove_error **err);
int cove_kv_dict_pop(struct cove_kv *kv, struct cove_kv_obj *d, const uint8_t *key, size_t key_len, int *found,
		     uint8_t **value, size_t *value_len, struct cove_error **err);
/* Live entries, counted up to COVE_DICT_MAX_LEN. */
int cove_kv_dict_len(struct cove_kv *kv, struct cove_kv_obj *d, int64_t *len, struct cove_error **err);
/* Insert or replace n entries in one transaction. if_not_exists (n must be 1): only when absent; *created
 * says whether it was written. */
int cove_kv_dict_update(struct cove_kv *kv, struct cove_kv_obj *d, const struct cove_kv_entry *entries, size_t n,
			int if_not_exists, int *created, struct cove_error **err);
int cove_kv_dict_clear(struct cove_kv *kv, struct cove_kv_obj *d, struct cove_error **err);
/* Every live entry, in no particular order; fn's pointers are valid during the call only. */
int cove_kv_dict_scan(struct cove_kv *kv, struct cove_kv_obj *d,
		      void (*fn)(const struct cove_kv_entry *e, void *arg), void *arg, struct cove_error **err);

/* Queue partitions. part: the partition of key, created in memory when create is set (else NULL if it has
 * no state). An expired partition is emptied first. */
struct cove_kv_part *cove_kv_part(struct cove_kv *kv, struct cove_kv_obj *q, const uint8_t *key, size_t key_len,
				  int create);
/* Append n values to a partition in one transaction and set its TTL; RESOURCE_EXHAUSTED when it would
 * exceed the item, byte or partition limits (retryable: the client waits for space). Sizes must have been
 * validated by the caller. */
int cove_kv_queue_put(struct cove_kv *kv, struct cove_kv_part *p, const uint8_t *const *values, const size_t *lens,
		      size_t n, int32_t ttl_s, struct cove_error **err);
/* Remove and return up to max items, oldest first. *values (malloc'd array of malloc'd buffers) and *lens. */
struct cove_kv_item {
	int64_t id; /* entry id: increasing, never reused */
	uint8_t *value;
	size_t len;
};
int cove_kv_queue_take(struct cove_kv *kv, struct cove_kv_part *p, size_t max, struct cove_kv_item **items,
		       size_t *n, struct cove_error **err);
/* Items with id > after, oldest first, at most max items (and about max_bytes), without removing them. */
int cove_kv_queue_peek(struct cove_kv *kv, struct cove_kv_part *p, int64_t after, size_t max, size_t max_bytes,
		       struct cove_kv_item **items, size_t *n, struct cove_error **err);
void cove_kv_items_free(struct cove_kv_item *items, size_t n);
/* Empty one partition, or every partition of q (p NULL). */
int cove_kv_queue_clear(struct cove_kv *kv, struct cove_kv_obj *q, struct cove_kv_part *p, struct cove_error **err);

/* Idempotency keys of recent QueuePut calls (x-idempotency-key): seen returns 1 for a key remembered. */
int cove_kv_idem_seen(struct cove_kv *kv, const char *key);
void cove_kv_idem_remember(struct cove_kv *kv, const char *key);

#endif
