/* Dicts: named (per environment) or ephemeral maps from bytes to bytes. The client serializes keys and values
 * with cloudpickle; Cove compares keys as those bytes and never looks inside. Storage: src/store/kv.c. */
#include <string.h>

#include "api/api.h"
#include "server.h"
#include "store/kv.h"
#include "util/alloc.h"

static struct cove_kv *
kv_or_fail(struct cove_api_req *req)
{
	struct cove_kv *kv = cove_kv_get();
	if (kv == NULL)
		cove_api_fail_code(req->call, COVE_UNAVAILABLE, "%s: Dicts are not available (server starting or stopping)",
				   req->method);
	return kv;
}

/* The dict named by id, or NULL after answering INVALID_ARGUMENT / NOT_FOUND. */
static struct cove_kv_obj *
dict_or_fail(struct cove_api_req *req, struct cove_kv *kv, const char *id)
{
	struct cove_error *err = NULL;
	struct cove_kv_obj *d = cove_kv_find(kv, COVE_KV_DICT, id, &err);
	if (d == NULL)
		cove_api_fail(req->call, err);
	return d;
}

static void
fill_metadata(Modal__Client__DictMetadata *meta, Modal__Client__CreationInfo *ci, const struct cove_kv_obj *d)
{
	ci->created_at = d->created_at;
	ci->created_by = "";
	meta->name = d->name ? d->name : "";
	meta->creation_info = ci;
}

/* Entries as sent, or -1 after answering: at most COVE_DICT_MAX_UPDATES, keys and values within the
 * documented size limit. */
static int
check_entries(struct cove_api_req *req, Modal__Client__DictEntry *const *entries, size_t n)
{
	if (n > COVE_DICT_MAX_UPDATES) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "%s: %zu entries in one update, the limit is %d per update", req->method, n,
				   COVE_DICT_MAX_UPDATES);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = entries[i]->key.len, v = entries[i]->value.len;
		if (k > COVE_DICT_MAX_OBJECT_BYTES || v > COVE_DICT_MAX_OBJECT_BYTES) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
					   "%s: a %s of %zu bytes exceeds the Dict limit of 100 MiB per object " COVE_KV_TOO_LARGE,
					   req->method, k > COVE_DICT_MAX_OBJECT_BYTES ? "key" : "value",
					   k > COVE_DICT_MAX_OBJECT_BYTES ? k : v);
			return -1;
		}
	}
	return 0;
}

static struct cove_kv_entry *
to_entries(Modal__Client__DictEntry *const *entries, size_t n)
{
	struct cove_kv_entry *e = xcalloc(n ? n : 1, sizeof(*e));
	for (size_t i = 0; i < n; i++) {
		e[i].key = entries[i]->key.data;
		e[i].key_len = entries[i]->key.len;
		e[i].value = entries[i]->value.data;
		e[i].value_len = entries[i]->value.len;
	}
	return e;
}

void
cove_api_DictGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__DictGetOrCreateRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	if (kv == NULL)
		return;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	if (check_entries(req, r->data, r->n_data) < 0)
		return;
	/* An ephemeral dict made inside a container belongs to that container's app as well. */
	const char *owner = NULL;
	if (r->object_creation_type == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_EPHEMERAL && req->task &&
	    req->task->app)
		owner = req->task->app->id;
	int created = 0;
	struct cove_kv_obj *d =
		cove_kv_open(kv, COVE_KV_DICT, env, r->deployment_name, r->object_creation_type, owner, &created, &err);
	if (d == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	if (created && r->n_data > 0) {
		cleanup_free struct cove_kv_entry *e = to_entries(r->data, r->n_data);
		int ignored;
		if (cove_kv_dict_update(kv, d, e, r->n_data, 0, &ignored, &err) < 0) {
			struct cove_error *err2 = NULL;
			if (cove_kv_delete(kv, d, &err2) < 0)
				cove_error_free(err2);
			cove_api_fail(req->call, err);
			return;
		}
	}
	Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
	Modal__Client__DictMetadata meta = MODAL__CLIENT__DICT_METADATA__INIT;
	fill_metadata(&meta, &ci, d);
	Modal__Client__DictGetOrCreateResponse resp = MODAL__CLIENT__DICT_GET_OR_CREATE_RESPONSE__INIT;
	resp.dict_id = d->id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictGetById(struct cove_api_req *req)
{
	const Modal__Client__DictGetByIdRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
	Modal__Client__DictMetadata meta = MODAL__CLIENT__DICT_METADATA__INIT;
	fill_metadata(&meta, &ci, d);
	Modal__Client__DictGetByIdResponse resp = MODAL__CLIENT__DICT_GET_BY_ID_RESPONSE__INIT;
	resp.dict_id = d->id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictHeartbeat(struct cove_api_req *req)
{
	const Modal__Client__DictHeartbeatRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	cove_kv_heartbeat(kv, d);
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictGet(struct cove_api_req *req)
{
	const Modal__Client__DictGetRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	struct cove_error *err = NULL;
	int found;
	cleanup_free uint8_t *value = NULL;
	size_t len;
	if (cove_kv_dict_get(kv, d, r->key.data, r->key.len, &found, &value, &len, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__DictGetResponse resp = MODAL__CLIENT__DICT_GET_RESPONSE__INIT;
	resp.found = found;
	if (found) {
		resp._value_case = MODAL__CLIENT__DICT_GET_RESPONSE___VALUE_VALUE;
		resp.value.data = value;
		resp.value.len = len;
	}
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictContains(struct cove_api_req *req)
{
	const Modal__Client__DictContainsRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	struct cove_error *err = NULL;
	int found;
	if (cove_kv_dict_contains(kv, d, r->key.data, r->key.len, &found, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__DictContainsResponse resp = MODAL__CLIENT__DICT_CONTAINS_RESPONSE__INIT;
	resp.found = found;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictLen(struct cove_api_req *req)
{
	const Modal__Client__DictLenRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	struct cove_error *err = NULL;
	int64_t len;
	if (cove_kv_dict_len(kv, d, &len, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__DictLenResponse resp = MODAL__CLIENT__DICT_LEN_RESPONSE__INIT;
	resp.len = (int32_t)len;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictUpdate(struct cove_api_req *req)
{
	const Modal__Client__DictUpdateRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	if (check_entries(req, r->updates, r->n_updates) < 0)
		return;
	if (r->if_not_exists && r->n_updates != 1) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "DictUpdate: if_not_exists needs exactly one entry, got %zu", r->n_updates);
		return;
	}
	struct cove_error *err = NULL;
	cleanup_free struct cove_kv_entry *e = to_entries(r->updates, r->n_updates);
	int created;
	if (cove_kv_dict_update(kv, d, e, r->n_updates, r->if_not_exists, &created, &err) < 0) {
		cove_error_wrap(&err, "update %s", d->id);
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__DictUpdateResponse resp = MODAL__CLIENT__DICT_UPDATE_RESPONSE__INIT;
	resp.created = created;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictPop(struct cove_api_req *req)
{
	const Modal__Client__DictPopRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	struct cove_error *err = NULL;
	int found;
	cleanup_free uint8_t *value = NULL;
	size_t len;
	if (cove_kv_dict_pop(kv, d, r->key.data, r->key.len, &found, &value, &len, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__DictPopResponse resp = MODAL__CLIENT__DICT_POP_RESPONSE__INIT;
	resp.found = found;
	if (found) {
		resp._value_case = MODAL__CLIENT__DICT_POP_RESPONSE___VALUE_VALUE;
		resp.value.data = value;
		resp.value.len = len;
	}
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictClear(struct cove_api_req *req)
{
	const Modal__Client__DictClearRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	struct cove_error *err = NULL;
	if (cove_kv_dict_clear(kv, d, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

struct contents {
	struct cove_call *call;
	int values;
};

static void
send_entry(const struct cove_kv_entry *e, void *arg)
{
	struct contents *c = arg;
	Modal__Client__DictEntry msg = MODAL__CLIENT__DICT_ENTRY__INIT;
	/* The key always goes out: the client names it in errors even when it asked for values only. */
	msg.key.data = (uint8_t *)e->key;
	msg.key.len = e->key_len;
	if (c->values) {
		msg.value.data = (uint8_t *)e->value;
		msg.value.len = e->value_len;
	}
	cove_api_send(c->call, &msg.base);
}

void
cove_api_DictContents(struct cove_api_req *req)
{
	const Modal__Client__DictContentsRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	struct cove_error *err = NULL;
	struct contents c = {.call = req->call, .values = r->values};
	if (cove_kv_dict_scan(kv, d, send_entry, &c, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	cove_call_finish(req->call, COVE_OK, NULL);
}

void
cove_api_DictDelete(struct cove_api_req *req)
{
	const Modal__Client__DictDeleteRequest *r = (const void *)req->msg;
	struct cove_kv *kv = kv_or_fail(req);
	struct cove_kv_obj *d = kv ? dict_or_fail(req, kv, r->dict_id) : NULL;
	if (d == NULL)
		return;
	struct cove_error *err = NULL;
	if (cove_kv_delete(kv, d, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_DictList(struct cove_api_req *req)
{
	const Modal__Client__DictListRequest *r = (const void *)req->msg;
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
	if (max < 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "DictList: max_objects must not be negative");
		return;
	}
	cleanup_free struct cove_kv_obj **objs = NULL;
	size_t n;
	cove_kv_list(kv, COVE_KV_DICT, env, before, max, &objs, &n);
	Modal__Client__DictListResponse__DictInfo *infos = xcalloc(n ? n : 1, sizeof(*infos));
	Modal__Client__DictListResponse__DictInfo **ptrs = xcalloc(n ? n : 1, sizeof(*ptrs));
	Modal__Client__DictMetadata *metas = xcalloc(n ? n : 1, sizeof(*metas));
	Modal__Client__CreationInfo *cis = xcalloc(n ? n : 1, sizeof(*cis));
	for (size_t i = 0; i < n; i++) {
		modal__client__dict_list_response__dict_info__init(&infos[i]);
		modal__client__dict_metadata__init(&metas[i]);
		modal__client__creation_info__init(&cis[i]);
		fill_metadata(&metas[i], &cis[i], objs[i]);
		infos[i].name = objs[i]->name;
		infos[i].created_at = objs[i]->created_at;
		infos[i].dict_id = objs[i]->id;
		infos[i].metadata = &metas[i];
		ptrs[i] = &infos[i];
	}
	Modal__Client__DictListResponse resp = MODAL__CLIENT__DICT_LIST_RESPONSE__INIT;
	resp.n_dicts = n;
	resp.dicts = ptrs;
	resp.environment_name = (char *)env;
	cove_api_reply(req->call, &resp.base);
	free(infos);
	free(ptrs);
	free(metas);
	free(cis);
}
