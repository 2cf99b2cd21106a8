/* Queues: named (per environment) or ephemeral FIFO queues of opaque values, split into partitions by key.
 * Storage: src/store/kv.c. QueueGet and QueueNextItems are long polls: an empty partition parks the call
 * (cove_waiter_park) and QueuePut answers it the moment an item arrives. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "grpc/server.h"
#include "sched/sched.h"
#include "server.h"
#include "store/kv.h"
#include "util/alloc.h"
#include "util/log.h"

/* The client asks for at most 50 s per QueueGet and 30 s per QueueNextItems; more is held to these. */
#define MAX_GET_POLL_S 55.0
#define MAX_NEXT_POLL_S 30.0
/* One QueueNextItems answer holds at most this much; the client asks again from the last entry id. */
#define NEXT_MAX_ITEMS 100
#define NEXT_MAX_BYTES (16u * 1024 * 1024)
#define MAX_PARTITION_TTL_S (7 * 24 * 3600)

static struct cove_kv *
kv_or_fail(struct cove_api_req *req)
{
	struct cove_kv *kv = cove_kv_get();
	if (kv == NULL)
		cove_api_fail_code(req->call, COVE_UNAVAILABLE, "%s: Queues are not available (server starting or stopping)",
				   req->method);
	return kv;
}

static struct cove_kv_obj *
queue_or_fail(struct cove_api_req *req, struct cove_kv *kv, const char *id)
{
	struct cove_error *err = NULL;
	struct cove_kv_obj *q = cove_kv_find(kv, COVE_KV_QUEUE, id, &err);
	if (q == NULL)
		cove_api_fail(req->call, err);
	return q;
}

static int
check_partition_key(struct cove_api_req *req, const ProtobufCBinaryData *key)
{
	if (key->len > COVE_QUEUE_MAX_PARTITION_KEY) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "%s: a Queue partition key must be between 1 and %d bytes, not %zu", req->method,
				   COVE_QUEUE_MAX_PARTITION_KEY, key->len);
		return -1;
	}
	return 0;
}

/* A poll timeout from the request: NaN or negative is 0 (the client computes deadline - now, which can
 * come out a little below 0), anything over max is max. */
static double
poll_seconds(float t, double max)
{
	if (isnan(t) || t <= 0)
		return 0;
	return t > max ? max : t;
}

static void
fill_metadata(Modal__Client__QueueMetadata *meta, Modal__Client__CreationInfo *ci, const struct cove_kv_obj *q)
{
	ci->created_at = q->created_at;
	ci->created_by = "";
	meta->name = q->name ? q->name : "";
	meta->creation_info = ci;
}

void
cove_api_QueueGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__QueueGetOrCreateRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	if (kv == NULL)
		return;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	/* An ephemeral queue made inside a container belongs to that container's app as well. */
	const char *owner = NULL;
	if (r->object_creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_EPHEMERAL && req->task &&
	    req->task->app)
		owner = req->task->app->id;
	int created;
	struct cove_kv_obj *q =
		cove_kv_open(kv, COVE_KV_QUEUE, env, r->deployment_name, r->object_creation_type, owner, &created, &err);
	if (q == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
	Modal__Client__QueueMetadata meta = MODAL__CLIENT__QUEUE_METADATA__INIT;
	fill_metadata(&meta, &ci, q);
	Modal__Client__QueueGetOrCreateResponse resp = MODAL__CLIENT__QUEUE_GET_OR_CREATE_RESPONSE__INIT;
	resp.queue_id = q->id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_QueueGetById(struct cove_api_req *req)
{
	const Modal__Client__QueueGetByIdRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *q = kv ? queue_or_fail(req, kv, r->queue_id) : NULL;
	if (q == NULL)
		return;
	Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
	Modal__Client__QueueMetadata meta = MODAL__CLIENT__QUEUE_METADATA__INIT;
	fill_metadata(&meta, &ci, q);
	Modal__Client__QueueGetByIdResponse resp = MODAL__CLIENT__QUEUE_GET_BY_ID_RESPONSE__INIT;
	resp.queue_id = q->id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_QueueHeartbeat(struct cove_api_req *req)
{
	const Modal__Client__QueueHeartbeatRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *q = kv ? queue_or_fail(req, kv, r->queue_id) : NULL;
	if (q == NULL)
		return;
	cove_kv_heartbeat(kv, q);
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

/* ---- QueueGet ---- */

static void
reply_values(struct cove_call *call, struct cove_kv_item *items, size_t n)
{
	ProtobufCBinaryData *values = xcalloc(n ? n : 1, sizeof(*values));
	for (size_t i = 0; i < n; i++) {
		values[i].data = items[i].value;
		values[i].len = items[i].len;
	}
	Modal__Client__QueueGetResponse resp = MODAL__CLIENT__QUEUE_GET_RESPONSE__INIT;
	resp.n_values = n;
	resp.values = values;
	cove_api_reply(call, &resp.base);
	free(values);
}

/* Take up to max items for call and answer it (with an error if the store fails). */
static void
answer_get(struct cove_kv *kv, struct cove_kv_part *p, struct cove_call *call, size_t max)
{
	struct cove_error *err = NULL;
	struct cove_kv_item *items;
	size_t n;
	if (cove_kv_queue_take(kv, p, max, &items, &n, &err) < 0) {
		cove_api_fail(call, err);
		return;
	}
	reply_values(call, items, n);
	cove_kv_items_free(items, n);
}

/* The poll ran out, or the queue is going away: nothing arrived in time. (A waiter's call is answered
 * first, which drops its cancel hook, then the waiter: cove_waiter_done never touches the call.) */
static void
getter_timeout(struct cove_waiter *w)
{
	reply_values(w->call, NULL, 0);
	cove_waiter_done(w);
}

static struct cove_waiter *
oldest(struct cove_waitlist *wl)
{
	struct cove_waiter *w = wl->head;
	while (w && w->next)
		w = w->next;
	return w;
}

static void
iterator_reply(struct cove_call *call, struct cove_kv_item *items, size_t n)
{
	Modal__Client__QueueItem *msgs = xcalloc(n ? n : 1, sizeof(*msgs));
	Modal__Client__QueueItem **ptrs = xcalloc(n ? n : 1, sizeof(*ptrs));
	char (*ids)[24] = xcalloc(n ? n : 1, sizeof(*ids));
	for (size_t i = 0; i < n; i++) {
		modal__client__queue_item__init(&msgs[i]);
		snprintf(ids[i], sizeof(ids[i]), "%lld", (long long)items[i].id);
		msgs[i].value.data = items[i].value;
		msgs[i].value.len = items[i].len;
		msgs[i].entry_id = ids[i];
		ptrs[i] = &msgs[i];
	}
	Modal__Client__QueueNextItemsResponse resp = MODAL__CLIENT__QUEUE_NEXT_ITEMS_RESPONSE__INIT;
	resp.n_items = n;
	resp.items = ptrs;
	cove_api_reply(call, &resp.base);
	free(msgs);
	free(ptrs);
	free(ids);
}

/* Peek past cursor and answer if there is anything (or on error): returns 1 if the call was answered.
 * A waiter, if given, is dropped once its call is answered. */
static int
try_answer_next(struct cove_kv *kv, struct cove_kv_part *p, struct cove_call *call, int64_t cursor,
		struct cove_waiter *w)
{
	struct cove_error *err = NULL;
	struct cove_kv_item *items;
	size_t n;
	int rc = cove_kv_queue_peek(kv, p, cursor, NEXT_MAX_ITEMS, NEXT_MAX_BYTES, &items, &n, &err);
	if (rc == 0 && n == 0)
		return 0;
	if (rc < 0) {
		cove_api_fail(call, err);
	} else {
		iterator_reply(call, items, n);
		cove_kv_items_free(items, n);
	}
	if (w)
		cove_waiter_done(w);
	return 1;
}

static void
iterator_timeout(struct cove_waiter *w)
{
	iterator_reply(w->call, NULL, 0);
	cove_waiter_done(w);
}

/* Items arrived in p: iterators see them first (they only read), then waiting getters take them, oldest
 * waiter first. */
static void
wake(struct cove_kv *kv, struct cove_kv_part *p)
{
	struct cove_waiter *next;
	for (struct cove_waiter *w = p->iterators.head; w; w = next) {
		next = w->next;
		try_answer_next(kv, p, w->call, w->cursor, w);
	}
	while (p->n_items > 0 && p->getters.head) {
		struct cove_waiter *w = oldest(&p->getters);
		answer_get(kv, p, w->call, (size_t)w->cursor);
		cove_waiter_done(w);
	}
}

void
cove_api_QueueGet(struct cove_api_req *req)
{
	const Modal__Client__QueueGetRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *q = kv ? queue_or_fail(req, kv, r->queue_id) : NULL;
	if (q == NULL || check_partition_key(req, &r->partition_key) < 0)
		return;
	if (r->n_values < 1) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "QueueGet: n_values must be at least 1, not %d",
				   r->n_values);
		return;
	}
	size_t n_values = r->n_values > COVE_QUEUE_MAX_PARTITION_ITEMS ? COVE_QUEUE_MAX_PARTITION_ITEMS : (size_t)r->n_values;
	double timeout = poll_seconds(r->timeout, MAX_GET_POLL_S);
	struct cove_kv_part *p = cove_kv_part(kv, q, r->partition_key.data, r->partition_key.len, timeout > 0);
	if (p && p->n_items > 0) {
		answer_get(kv, p, req->call, n_values);
		return;
	}
	if (p == NULL || timeout <= 0) {
		reply_values(req->call, NULL, 0);
		return;
	}
	struct cove_waiter *w =
		cove_waiter_park(req->ctx->base, req->ctx->sched, &p->getters, req->call, p, timeout, getter_timeout);
	w->cursor = (int64_t)n_values;
}

/* ---- QueuePut ---- */

void
cove_api_QueuePut(struct cove_api_req *req)
{
	const Modal__Client__QueuePutRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *q = kv ? queue_or_fail(req, kv, r->queue_id) : NULL;
	if (q == NULL || check_partition_key(req, &r->partition_key) < 0)
		return;
	/* Requests that could never fit are the caller's mistake, not a full queue: the client would retry a
	 * RESOURCE_EXHAUSTED forever. */
	if (r->n_values > COVE_QUEUE_MAX_PARTITION_ITEMS) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "QueuePut: %zu values in one put, but a partition holds at most %d items " COVE_KV_TOO_LARGE,
				   r->n_values, COVE_QUEUE_MAX_PARTITION_ITEMS);
		return;
	}
	size_t total = 0;
	for (size_t i = 0; i < r->n_values; i++) {
		if (r->values[i].len > COVE_QUEUE_MAX_ITEM_BYTES) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
					   "QueuePut: an item of %zu bytes exceeds the Queue limit of 1 MiB per item " COVE_KV_TOO_LARGE,
					   r->values[i].len);
			return;
		}
		total += r->values[i].len;
	}
	if (total > COVE_QUEUE_MAX_PARTITION_BYTES) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "QueuePut: %zu bytes in one put, but a partition holds at most 64 MiB " COVE_KV_TOO_LARGE,
				   total);
		return;
	}
	int32_t ttl = r->partition_ttl_seconds;
	if (ttl == 0)
		ttl = COVE_QUEUE_DEFAULT_TTL_S;
	if (ttl < 0 || ttl > MAX_PARTITION_TTL_S) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "QueuePut: partition_ttl must be between 1 and %d seconds, not %d", MAX_PARTITION_TTL_S,
				   r->partition_ttl_seconds);
		return;
	}
	/* A retry of a put that succeeded (its answer was lost) must not enqueue the values twice. */
	const char *idem = cove_call_header(req->call, "x-idempotency-key");
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	if (r->n_values == 0 || cove_kv_idem_seen(kv, idem)) {
		cove_api_reply(req->call, &resp.base);
		return;
	}
	struct cove_kv_part *p = cove_kv_part(kv, q, r->partition_key.data, r->partition_key.len, 1);
	const uint8_t **values = xcalloc(r->n_values, sizeof(*values));
	size_t *lens = xcalloc(r->n_values, sizeof(*lens));
	for (size_t i = 0; i < r->n_values; i++) {
		values[i] = r->values[i].data;
		lens[i] = r->values[i].len;
	}
	struct cove_error *err = NULL;
	int rc = cove_kv_queue_put(kv, p, values, lens, r->n_values, ttl, &err);
	free(values);
	free(lens);
	if (rc < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	cove_kv_idem_remember(kv, idem);
	cove_api_reply(req->call, &resp.base);
	wake(kv, p);
}

/* ---- the rest ---- */

void
cove_api_QueueLen(struct cove_api_req *req)
{
	const Modal__Client__QueueLenRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *q = kv ? queue_or_fail(req, kv, r->queue_id) : NULL;
	if (q == NULL || check_partition_key(req, &r->partition_key) < 0)
		return;
	if (r->total && r->partition_key.len > 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "QueueLen: a partition and total are exclusive");
		return;
	}
	int64_t len;
	if (r->total) {
		/* Expired partitions are emptied on access; count only live ones. */
		struct cove_kv_part **parts = xcalloc(q->parts.len + 1, sizeof(*parts));
		size_t n = 0, it = 0;
		void *v;
		while (cove_map_next(&q->parts, &it, NULL, &v))
			parts[n++] = v;
		for (size_t i = 0; i < n; i++)
			cove_kv_part(kv, q, parts[i]->key, parts[i]->key_len, 0);
		free(parts);
		len = q->n_items;
	} else {
		struct cove_kv_part *p = cove_kv_part(kv, q, r->partition_key.data, r->partition_key.len, 0);
		len = p ? p->n_items : 0;
	}
	Modal__Client__QueueLenResponse resp = MODAL__CLIENT__QUEUE_LEN_RESPONSE__INIT;
	resp.len = (int32_t)len;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_QueueClear(struct cove_api_req *req)
{
	const Modal__Client__QueueClearRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *q = kv ? queue_or_fail(req, kv, r->queue_id) : NULL;
	if (q == NULL || check_partition_key(req, &r->partition_key) < 0)
		return;
	if (r->all_partitions && r->partition_key.len > 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "QueueClear: a partition and all_partitions are exclusive");
		return;
	}
	struct cove_error *err = NULL;
	int rc = 0;
	if (r->all_partitions) {
		rc = cove_kv_queue_clear(kv, q, NULL, &err);
	} else {
		struct cove_kv_part *p = cove_kv_part(kv, q, r->partition_key.data, r->partition_key.len, 0);
		if (p)
			rc = cove_kv_queue_clear(kv, q, p, &err);
	}
	if (rc < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

/* "" is the start; otherwise the decimal entry id of the last item seen. */
static int
parse_entry_id(const char *s, int64_t *out)
{
	if (s == NULL || *s == '\0') {
		*out = 0;
		return 0;
	}
	if (strlen(s) > 19)
		return -1;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return -1;
	errno = 0;
	long long v = strtoll(s, NULL, 10);
	if (errno != 0)
		return -1;
	*out = v;
	return 0;
}

void
cove_api_QueueNextItems(struct cove_api_req *req)
{
	const Modal__Client__QueueNextItemsRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *q = kv ? queue_or_fail(req, kv, r->queue_id) : NULL;
	if (q == NULL || check_partition_key(req, &r->partition_key) < 0)
		return;
	int64_t after;
	if (parse_entry_id(r->last_entry_id, &after) < 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "QueueNextItems: '%s' is not an entry id",
				   r->last_entry_id);
		return;
	}
	double timeout = poll_seconds(r->item_poll_timeout, MAX_NEXT_POLL_S);
	struct cove_kv_part *p = cove_kv_part(kv, q, r->partition_key.data, r->partition_key.len, timeout > 0);
	if (p && try_answer_next(kv, p, req->call, after, NULL))
		return;
	if (p == NULL || timeout <= 0) {
		iterator_reply(req->call, NULL, 0);
		return;
	}
	struct cove_waiter *w =
		cove_waiter_park(req->ctx->base, req->ctx->sched, &p->iterators, req->call, p, timeout, iterator_timeout);
	w->cursor = after;
}

void
cove_api_QueueDelete(struct cove_api_req *req)
{
	const Modal__Client__QueueDeleteRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *q = kv ? queue_or_fail(req, kv, r->queue_id) : NULL;
	if (q == NULL)
		return;
	struct cove_error *err = NULL;
	if (cove_kv_delete(kv, q, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_QueueList(struct cove_api_req *req)
{
	const Modal__Client__QueueListRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	if (kv == NULL)
		return;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	double before = r->pagination ? r->pagination->created_before : 0;
	int32_t max = r->pagination ? r->pagination->max_objects : 0;
	if (max < 0 || r->total_size_limit < 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "QueueList: max_objects and total_size_limit must not be negative");
		return;
	}
	cleanup_free struct cove_kv_obj **objs = NULL;
	size_t n;
	cove_kv_list(kv, COVE_KV_QUEUE, env, before, max, &objs, &n);
	Modal__Client__QueueListResponse__QueueInfo *infos = xcalloc(n ? n : 1, sizeof(*infos));
	Modal__Client__QueueListResponse__QueueInfo **ptrs = xcalloc(n ? n : 1, sizeof(*ptrs));
	Modal__Client__QueueMetadata *metas = xcalloc(n ? n : 1, sizeof(*metas));
	Modal__Client__CreationInfo *cis = xcalloc(n ? n : 1, sizeof(*cis));
	for (size_t i = 0; i < n; i++) {
		struct cove_kv_obj *q = objs[i];
		modal__client__queue_list_response__queue_info__init(&infos[i]);
		modal__client__queue_metadata__init(&metas[i]);
		modal__client__creation_info__init(&cis[i]);
		fill_metadata(&metas[i], &cis[i], q);
		int64_t size = q->n_items;
		if (r->total_size_limit > 0 && size > r->total_size_limit)
			size = r->total_size_limit;
		infos[i].name = q->name;
		infos[i].created_at = q->created_at;
		infos[i].num_partitions = (int32_t)q->n_nonempty;
		infos[i].total_size = (int32_t)size;
		infos[i].queue_id = q->id;
		infos[i].metadata = &metas[i];
		ptrs[i] = &infos[i];
	}
	Modal__Client__QueueListResponse resp = MODAL__CLIENT__QUEUE_LIST_RESPONSE__INIT;
	resp.n_queues = n;
	resp.queues = ptrs;
	resp.environment_name = (char *)env;
	cove_api_reply(req->call, &resp.base);
	free(infos);
	free(ptrs);
	free(metas);
	free(cis);
}
