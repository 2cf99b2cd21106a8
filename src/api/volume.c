/* Volumes: named and ephemeral objects, their files from outside (both the v1 and the v2 protocol the client
 * speaks), and commit / reload from inside containers. The tree lives in store/volume.c, container views in
 * store/volview.c, blocks in the blob store (served on the blob HTTP port).
 *
 * v1 and v2 volumes are stored alike; the version only decides which RPCs the client uses:
 *   v1 upload: MountPutFile (content into the mount file store), then VolumePutFiles, which cuts each file into
 *              blocks on a worker thread;
 *   v2 upload: VolumePutFiles2 names each file's blocks; the missing ones come back with a PUT URL on the blob
 *              port, and the second VolumePutFiles2 (all present) commits;
 *   both read with VolumeGetFile2 (one GET URL per 8 MiB block) and list, remove and copy with the matching
 *   VolumeListFiles/2, VolumeRemoveFile/2, VolumeCopyFiles/2. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "blob/http.h"
#include "server.h"
#include "store/kv.h"
#include "store/volume.h"
#include "store/volview.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/map.h"

#define MAX_PUT_FILES 100000
#define MAX_COPY_SOURCES 10000
#define LIST_BATCH 1000
#define MAX_LIST_PAGE 1000

/* Answers UNAVAILABLE and returns 0 when volumes do not run (e.g. a server shutting down). */
static int
ready(struct cove_api_req *req)
{
	if (cove_volume_running() && cove_volview_running())
		return 1;
	cove_api_fail_code(req->call, COVE_UNAVAILABLE, "%s: volumes are not available on this server right now",
			   req->method);
	return 0;
}

/* The volume of a request's id; 0 after answering. */
static int
volume_or_fail(struct cove_api_req *req, const char *id, struct cove_volume *v)
{
	struct cove_error *err = NULL;
	if (cove_volume_by_id(id, v, &err) < 0) {
		cove_api_fail(req->call, err);
		return 0;
	}
	return 1;
}

/* A normalized path of a request; 0 after answering INVALID_ARGUMENT. */
static int
path_or_fail(struct cove_api_req *req, const char *in, int allow_root, char **out)
{
	const char *why = NULL;
	if (cove_vpath_normalize(in, allow_root, out, &why) < 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: path '%s' %s", req->method, in ? in : "", why);
		return 0;
	}
	return 1;
}

static void
fill_meta(Modal__Client__VolumeMetadata *meta, Modal__Client__CreationInfo *ci, const struct cove_volume *v)
{
	ci->created_at = v->created_at;
	ci->created_by = "";
	meta->version = v->fs_version;
	meta->name = v->name ? v->name : "";
	meta->creation_info = ci;
}

static void
reply_empty(struct cove_api_req *req)
{
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

/* ---- objects ---- */

void
cove_api_VolumeGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__VolumeGetOrCreateRequest *r = (const void *)req->msg;
	if (!ready(req))
		return;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	int ctype = r->object_creation_type;
	int anonymous = ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_EPHEMERAL ||
			ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP;
	switch (ctype) {
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_EPHEMERAL:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP:
		break;
	default:
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "object creation type %d is not supported for a Volume",
				   ctype);
		return;
	}
	int version = r->version;
	if (version != MODAL__CLIENT__VOLUME_FS_VERSION__VOLUME_FS_VERSION_UNSPECIFIED &&
	    version != MODAL__CLIENT__VOLUME_FS_VERSION__VOLUME_FS_VERSION_V1 &&
	    version != MODAL__CLIENT__VOLUME_FS_VERSION__VOLUME_FS_VERSION_V2) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "VolumeFS version must be 1 or 2, not %d", version);
		return;
	}
	const char *name = r->deployment_name && *r->deployment_name ? r->deployment_name : NULL;
	if (anonymous && name) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "an ephemeral Volume has no name (got '%s')", name);
		return;
	}
	if (!anonymous && name == NULL) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "a Volume name is required");
		return;
	}
	if (name && !cove_kv_valid_name(name)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "invalid Volume name '%s': names may contain only alphanumeric characters, dashes, "
				   "periods and underscores, must be at most 64 characters, and must not look like an App ID",
				   name);
		return;
	}
	const char *app_id = r->app_id && *r->app_id ? r->app_id : NULL;
	if (app_id && !cove_id_valid(app_id, "ap")) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "'%s' is not an App id", app_id);
		return;
	}
	cleanup_volume struct cove_volume v = {0};
	int created = 0;
	if (cove_volume_get_or_create(env, name, ctype, version, app_id, &v, &created, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
	Modal__Client__VolumeMetadata meta = MODAL__CLIENT__VOLUME_METADATA__INIT;
	fill_meta(&meta, &ci, &v);
	Modal__Client__VolumeGetOrCreateResponse resp = MODAL__CLIENT__VOLUME_GET_OR_CREATE_RESPONSE__INIT;
	resp.volume_id = v.id;
	resp.version = v.fs_version;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_VolumeGetById(struct cove_api_req *req)
{
	const Modal__Client__VolumeGetByIdRequest *r = (const void *)req->msg;
	cleanup_volume struct cove_volume v = {0};
	if (!ready(req) || !volume_or_fail(req, r->volume_id, &v))
		return;
	Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
	Modal__Client__VolumeMetadata meta = MODAL__CLIENT__VOLUME_METADATA__INIT;
	fill_meta(&meta, &ci, &v);
	Modal__Client__VolumeGetByIdResponse resp = MODAL__CLIENT__VOLUME_GET_BY_ID_RESPONSE__INIT;
	resp.volume_id = v.id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_VolumeList(struct cove_api_req *req)
{
	const Modal__Client__VolumeListRequest *r = (const void *)req->msg;
	if (!ready(req))
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
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "VolumeList: max_objects must not be negative");
		return;
	}
	if (max == 0 || max > MAX_LIST_PAGE)
		max = max == 0 ? 100 : MAX_LIST_PAGE;
	struct cove_volume *vols = NULL;
	size_t n = 0;
	if (cove_volume_list(env, before, max, &vols, &n, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__VolumeListItem *items = xcalloc(n + 1, sizeof(*items));
	Modal__Client__VolumeListItem **ptrs = xcalloc(n + 1, sizeof(*ptrs));
	Modal__Client__VolumeMetadata *metas = xcalloc(n + 1, sizeof(*metas));
	Modal__Client__CreationInfo *cis = xcalloc(n + 1, sizeof(*cis));
	for (size_t i = 0; i < n; i++) {
		modal__client__volume_list_item__init(&items[i]);
		modal__client__volume_metadata__init(&metas[i]);
		modal__client__creation_info__init(&cis[i]);
		fill_meta(&metas[i], &cis[i], &vols[i]);
		items[i].label = vols[i].name;
		items[i].volume_id = vols[i].id;
		items[i].created_at = vols[i].created_at;
		items[i].metadata = &metas[i];
		ptrs[i] = &items[i];
	}
	Modal__Client__VolumeListResponse resp = MODAL__CLIENT__VOLUME_LIST_RESPONSE__INIT;
	resp.n_items = n;
	resp.items = ptrs;
	resp.environment_name = (char *)cove_env_display(env);
	cove_api_reply(req->call, &resp.base);
	for (size_t i = 0; i < n; i++)
		cove_volume_clear(&vols[i]);
	free(vols);
	free(items);
	free(ptrs);
	free(metas);
	free(cis);
}

void
cove_api_VolumeDelete(struct cove_api_req *req)
{
	const Modal__Client__VolumeDeleteRequest *r = (const void *)req->msg;
	cleanup_volume struct cove_volume v = {0};
	if (!ready(req) || !volume_or_fail(req, r->volume_id, &v))
		return;
	struct cove_error *err = NULL;
	if (cove_volume_delete(&v, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	reply_empty(req);
}

void
cove_api_VolumeRename(struct cove_api_req *req)
{
	const Modal__Client__VolumeRenameRequest *r = (const void *)req->msg;
	cleanup_volume struct cove_volume v = {0};
	if (!ready(req) || !volume_or_fail(req, r->volume_id, &v))
		return;
	if (!cove_kv_valid_name(r->name)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "invalid Volume name '%s': names may contain only alphanumeric characters, dashes, "
				   "periods and underscores, must be at most 64 characters, and must not look like an App ID",
				   r->name ? r->name : "");
		return;
	}
	struct cove_error *err = NULL;
	if (cove_volume_rename(&v, r->name, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	reply_empty(req);
}

void
cove_api_VolumeHeartbeat(struct cove_api_req *req)
{
	const Modal__Client__VolumeHeartbeatRequest *r = (const void *)req->msg;
	if (!ready(req))
		return;
	struct cove_error *err = NULL;
	if (!cove_id_valid(r->volume_id, "vo")) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "'%s' is not a Volume id (vo-…)", r->volume_id);
		return;
	}
	if (cove_volume_heartbeat(r->volume_id, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	reply_empty(req);
}

/* ---- inside containers ---- */

static void
commit_or_reload(struct cove_api_req *req, const char *volume_id, int reload)
{
	if (!ready(req))
		return;
	if (!cove_id_valid(volume_id, "vo")) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "'%s' is not a Volume id (vo-…)", volume_id);
		return;
	}
	if (req->task == NULL) {
		cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION,
				   "%s() only works inside a container that mounts the Volume (outside one, files are "
				   "committed as soon as they are uploaded)",
				   reload ? "reload" : "commit");
		return;
	}
	if (reload)
		cove_volview_reload(req->call, req->task->id, volume_id);
	else
		cove_volview_commit(req->call, req->task->id, volume_id);
}

void
cove_api_VolumeCommit(struct cove_api_req *req)
{
	const Modal__Client__VolumeCommitRequest *r = (const void *)req->msg;
	commit_or_reload(req, r->volume_id, 0);
}

void
cove_api_VolumeReload(struct cove_api_req *req)
{
	const Modal__Client__VolumeReloadRequest *r = (const void *)req->msg;
	commit_or_reload(req, r->volume_id, 1);
}

/* ---- reading ---- */

void
cove_api_VolumeGetFile2(struct cove_api_req *req)
{
	const Modal__Client__VolumeGetFile2Request *r = (const void *)req->msg;
	cleanup_volume struct cove_volume v = {0};
	cleanup_free char *path = NULL;
	if (!ready(req) || !volume_or_fail(req, r->volume_id, &v) || !path_or_fail(req, r->path, 0, &path))
		return;
	cleanup_vfile struct cove_vfile f = {0};
	struct cove_error *err = NULL;
	int found = cove_volume_lookup(v.seq, path, &f, &err);
	if (found < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	if (!found) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "No such file in Volume %s: '/%s'", v.id, path);
		return;
	}
	if (f.type != COVE_VFILE_FILE) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "'/%s' in Volume %s is a %s, not a file", path, v.id,
				   f.type == COVE_VFILE_DIR ? "directory" : "symlink");
		return;
	}
	uint64_t n_blocks = cove_vfile_n_blocks(f.size);
	if (f.data_len != n_blocks * COVE_BLOCK_HASH) {
		cove_api_fail_code(req->call, COVE_DATA_LOSS, "'/%s' in Volume %s is damaged in the store", path, v.id);
		return;
	}
	uint64_t start = r->start < f.size ? r->start : f.size;
	uint64_t end = r->len && r->len < f.size - start ? start + r->len : f.size;
	uint64_t first = start / COVE_BLOCK_SIZE;
	uint64_t last = end > start ? (end - 1) / COVE_BLOCK_SIZE : first; /* inclusive */
	size_t n = end > start ? (size_t)(last - first + 1) : 0;
	char **urls = xcalloc(n + 1, sizeof(char *));
	/* read_file hands every URL over at once and the caller may consume them slowly. */
	uint32_t ttl = cove_blob_url_ttl(end - start);
	for (size_t i = 0; i < n; i++) {
		uint64_t b = first + i;
		uint64_t bstart = b * COVE_BLOCK_SIZE;
		uint64_t bend = bstart + COVE_BLOCK_SIZE < f.size ? bstart + COVE_BLOCK_SIZE : f.size;
		uint64_t from = start > bstart ? start - bstart : 0;
		uint64_t to = (end < bend ? end : bend) - bstart;
		const uint8_t *h = f.data + b * COVE_BLOCK_HASH;
		/* A whole block for a client that pads: the plain URL, whose answer carries a digest. */
		if (from == 0 && to == bend - bstart && r->client_pads_blocks)
			urls[i] = cove_blob_http_block_get_url(req->ctx->blob_http, h, ttl);
		else
			urls[i] = cove_blob_http_block_slice_url(req->ctx->blob_http, h, from, to - from, !r->client_pads_blocks,
								 ttl);
	}
	Modal__Client__VolumeGetFile2Response resp = MODAL__CLIENT__VOLUME_GET_FILE2_RESPONSE__INIT;
	resp.n_get_urls = n;
	resp.get_urls = urls;
	resp.size = f.size;
	resp.start = start;
	resp.len = end - start;
	cove_api_reply(req->call, &resp.base);
	for (size_t i = 0; i < n; i++)
		free(urls[i]);
	free(urls);
}

struct list_ctx {
	struct cove_api_req *req;
	int v2;
	Modal__Client__FileEntry entries[LIST_BATCH];
	Modal__Client__FileEntry *ptrs[LIST_BATCH];
	char *paths[LIST_BATCH];
	size_t n;
	uint64_t sent, max;
};

static void
list_flush(struct list_ctx *c)
{
	if (c->n == 0)
		return;
	if (c->v2) {
		Modal__Client__VolumeListFiles2Response resp = MODAL__CLIENT__VOLUME_LIST_FILES2_RESPONSE__INIT;
		resp.n_entries = c->n;
		resp.entries = c->ptrs;
		cove_api_send(c->req->call, &resp.base);
	} else {
		Modal__Client__VolumeListFilesResponse resp = MODAL__CLIENT__VOLUME_LIST_FILES_RESPONSE__INIT;
		resp.n_entries = c->n;
		resp.entries = c->ptrs;
		cove_api_send(c->req->call, &resp.base);
	}
	for (size_t i = 0; i < c->n; i++)
		free(c->paths[i]);
	c->n = 0;
}

static int
list_one(void *arg, const struct cove_vfile *f, struct cove_error **err)
{
	(void)err;
	struct list_ctx *c = arg;
	if (c->max && c->sent >= c->max)
		return 0;
	Modal__Client__FileEntry *e = &c->entries[c->n];
	modal__client__file_entry__init(e);
	c->paths[c->n] = xstrdup(f->path);
	e->path = c->paths[c->n];
	e->type = f->type;
	e->mtime = f->mtime > 0 ? (uint64_t)f->mtime : 0;
	e->size = f->size;
	c->ptrs[c->n] = e;
	c->n++;
	c->sent++;
	if (c->n == LIST_BATCH)
		list_flush(c);
	return 0;
}

static void
list_files(struct cove_api_req *req, const char *volume_id, const char *in_path, int recursive, int has_max,
	   uint32_t max, int v2)
{
	cleanup_volume struct cove_volume v = {0};
	cleanup_free char *path = NULL;
	if (!ready(req) || !volume_or_fail(req, volume_id, &v) || !path_or_fail(req, in_path, 1, &path))
		return;
	if (path[0] && (strchr(in_path, '*') != NULL)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "glob patterns are not supported: list '%s' recursively",
				   in_path);
		return;
	}
	struct list_ctx *c = xcalloc(1, sizeof(*c));
	c->req = req;
	c->v2 = v2;
	c->max = has_max ? max : 0;
	struct cove_error *err = NULL;
	if (cove_volume_list_files(v.seq, path, recursive, list_one, c, &err) < 0) {
		for (size_t i = 0; i < c->n; i++)
			free(c->paths[i]);
		free(c);
		cove_api_fail(req->call, err);
		return;
	}
	list_flush(c);
	free(c);
	cove_call_finish(req->call, COVE_OK, NULL);
}

void
cove_api_VolumeListFiles(struct cove_api_req *req)
{
	const Modal__Client__VolumeListFilesRequest *r = (const void *)req->msg;
	list_files(req, r->volume_id, r->path, r->recursive,
		   r->_max_entries_case == MODAL__CLIENT__VOLUME_LIST_FILES_REQUEST___MAX_ENTRIES_MAX_ENTRIES, r->max_entries,
		   0);
}

void
cove_api_VolumeListFiles2(struct cove_api_req *req)
{
	const Modal__Client__VolumeListFiles2Request *r = (const void *)req->msg;
	list_files(req, r->volume_id, r->path, r->recursive,
		   r->_max_entries_case == MODAL__CLIENT__VOLUME_LIST_FILES2_REQUEST___MAX_ENTRIES_MAX_ENTRIES,
		   r->max_entries, 1);
}

/* ---- changing files ---- */

static void
remove_file(struct cove_api_req *req, const char *volume_id, const char *in_path, int recursive)
{
	cleanup_volume struct cove_volume v = {0};
	cleanup_free char *path = NULL;
	if (!ready(req) || !volume_or_fail(req, volume_id, &v) || !path_or_fail(req, in_path, 1, &path))
		return;
	struct cove_error *err = NULL;
	if (cove_volume_remove(&v, path, recursive, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	reply_empty(req);
}

void
cove_api_VolumeRemoveFile(struct cove_api_req *req)
{
	const Modal__Client__VolumeRemoveFileRequest *r = (const void *)req->msg;
	remove_file(req, r->volume_id, r->path, r->recursive);
}

void
cove_api_VolumeRemoveFile2(struct cove_api_req *req)
{
	const Modal__Client__VolumeRemoveFile2Request *r = (const void *)req->msg;
	remove_file(req, r->volume_id, r->path, r->recursive);
}

static void
copy_files(struct cove_api_req *req, const char *volume_id, char **src_paths, size_t n_src, const char *dst_in,
	   int recursive)
{
	cleanup_volume struct cove_volume v = {0};
	cleanup_free char *dst = NULL;
	if (!ready(req) || !volume_or_fail(req, volume_id, &v) || !path_or_fail(req, dst_in, 1, &dst))
		return;
	if (n_src == 0 || n_src > MAX_COPY_SOURCES) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: give 1 to %d source paths, not %zu", req->method,
				   MAX_COPY_SOURCES, n_src);
		return;
	}
	char **srcs = xcalloc(n_src, sizeof(char *));
	size_t ok = 0;
	for (; ok < n_src; ok++)
		if (!path_or_fail(req, src_paths[ok], 1, &srcs[ok]))
			break;
	struct cove_error *err = NULL;
	if (ok == n_src) {
		/* "dst/" names a directory, created if need be. */
		size_t dl = strlen(dst_in);
		int rv = 0;
		if (*dst && dl > 0 && dst_in[dl - 1] == '/')
			rv = cove_volume_mkdirs(&v, dst, &err);
		if (rv == 0)
			rv = cove_volume_copy(&v, srcs, n_src, dst, recursive, &err);
		if (rv < 0)
			cove_api_fail(req->call, err);
		else
			reply_empty(req);
	}
	for (size_t i = 0; i < ok; i++)
		free(srcs[i]);
	free(srcs);
}

void
cove_api_VolumeCopyFiles(struct cove_api_req *req)
{
	const Modal__Client__VolumeCopyFilesRequest *r = (const void *)req->msg;
	copy_files(req, r->volume_id, r->src_paths, r->n_src_paths, r->dst_path, r->recursive);
}

void
cove_api_VolumeCopyFiles2(struct cove_api_req *req)
{
	const Modal__Client__VolumeCopyFiles2Request *r = (const void *)req->msg;
	copy_files(req, r->volume_id, r->src_paths, r->n_src_paths, r->dst_path, r->recursive);
}

/* ---- uploads ---- */

/* An upload that finishes off the event loop: its files, then (done) one transaction, then the answer. */
struct upload {
	struct cove_call *call; /* NULL once it went away: then nothing is committed (its retry will be) */
	struct cove_blobstore *bs;
	char *volume_id;
	int overwrite;
	struct cove_vfile *files;
	size_t n;
	/* v1: the mount file store's content of each file, cut into blocks by the job */
	char **sha256_hex;
	struct cove_error *err;
};

static void
upload_free(struct upload *u)
{
	for (size_t i = 0; i < u->n; i++) {
		cove_vfile_clear(&u->files[i]);
		if (u->sha256_hex)
			free(u->sha256_hex[i]);
	}
	free(u->files);
	free(u->sha256_hex);
	free(u->volume_id);
	cove_error_free(u->err);
	free(u);
}

static void
upload_cancelled(struct cove_call *call, void *arg)
{
	(void)call;
	((struct upload *)arg)->call = NULL;
}

static void
upload_done(void *arg)
{
	struct upload *u = arg;
	if (u->call == NULL) {
		upload_free(u);
		return;
	}
	cove_call_on_cancel(u->call, NULL, NULL);
	struct cove_error *err = steal_pointer(&u->err);
	cleanup_volume struct cove_volume v = {0};
	if (err == NULL && cove_volume_by_id(u->volume_id, &v, &err) == 0)
		cove_volume_put_files(&v, u->files, u->n, u->overwrite, &err);
	if (err) {
		cove_api_fail(u->call, err);
	} else {
		Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
		Modal__Client__VolumePutFiles2Response r2 = MODAL__CLIENT__VOLUME_PUT_FILES2_RESPONSE__INIT;
		cove_api_reply(u->call, u->sha256_hex ? &e.base : &r2.base);
	}
	upload_free(u);
}

/* v1: cut each uploaded file into blocks. */
static void
cut_work(void *arg)
{
	struct upload *u = arg;
	uint8_t *buf = xmalloc(COVE_BLOCK_SIZE);
	struct cove_map done = {0}; /* sha256 hex -> index of the first file with that content */
	for (size_t i = 0; i < u->n && u->err == NULL; i++) {
		struct cove_vfile *f = &u->files[i];
		void *prev = cove_map_get(&done, u->sha256_hex[i]);
		if (prev) {
			const struct cove_vfile *p = &u->files[(size_t)(uintptr_t)prev - 1];
			f->size = p->size;
			f->data_len = p->data_len;
			f->data = p->data_len ? xmemdup(p->data, p->data_len) : NULL;
			continue;
		}
		cleanup_free char *src = cove_blobstore_file_path(u->bs, u->sha256_hex[i]);
		cleanup_close int fd = src ? open(src, O_RDONLY | O_CLOEXEC) : -1;
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			cove_error_set(&u->err, COVE_FAILED_PRECONDITION, "the content of '/%s' (sha256 %s) was not uploaded",
				       f->path, u->sha256_hex[i]);
			break;
		}
		f->size = (uint64_t)st.st_size;
		uint64_t nb = cove_vfile_n_blocks(f->size);
		f->data_len = (size_t)(nb * COVE_BLOCK_HASH);
		f->data = nb ? xmalloc(f->data_len) : NULL;
		for (uint64_t b = 0; b < nb && u->err == NULL; b++) {
			size_t want = f->size - b * COVE_BLOCK_SIZE < COVE_BLOCK_SIZE ? (size_t)(f->size - b * COVE_BLOCK_SIZE)
										   : COVE_BLOCK_SIZE;
			size_t got = 0;
			while (got < want) {
				ssize_t r = pread(fd, buf + got, want - got, (off_t)(b * COVE_BLOCK_SIZE + got));
				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0)
					break;
				got += (size_t)r;
			}
			if (got < want) {
				cove_error_set(&u->err, COVE_DATA_LOSS, "the uploaded content of '/%s' is shorter than it was",
					       f->path);
				break;
			}
			size_t keep = want;
			while (keep > 0 && buf[keep - 1] == 0)
				keep--;
			uint8_t *h = f->data + b * COVE_BLOCK_HASH;
			cove_sha256(buf, keep, h);
			cove_blobstore_block_write_hashed(u->bs, h, buf, keep, &u->err);
		}
		cove_map_put(&done, u->sha256_hex[i], (void *)(uintptr_t)(i + 1));
	}
	cove_map_clear(&done);
	free(buf);
	if (u->err == NULL)
		cove_blobstore_sync_blocks(u->bs, &u->err);
}

/* v2: the blocks were PUT; make them durable before the commit refers to them. */
static void
sync_work(void *arg)
{
	struct upload *u = arg;
	cove_blobstore_sync_blocks(u->bs, &u->err);
}

static void
upload_start(struct cove_api_req *req, struct upload *u, void (*work)(void *))
{
	u->call = req->call;
	u->bs = req->ctx->blobs;
	cove_call_on_cancel(req->call, upload_cancelled, u);
	cove_volume_submit(work, upload_done, u);
}

static int
valid_sha256_hex(const char *s)
{
	if (s == NULL || strlen(s) != 64)
		return 0;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

void
cove_api_VolumePutFiles(struct cove_api_req *req)
{
	const Modal__Client__VolumePutFilesRequest *r = (const void *)req->msg;
	cleanup_volume struct cove_volume v = {0};
	if (!ready(req) || !volume_or_fail(req, r->volume_id, &v))
		return;
	if (r->n_files > MAX_PUT_FILES) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "VolumePutFiles: at most %d files per call, not %zu",
				   MAX_PUT_FILES, r->n_files);
		return;
	}
	struct upload *u = xcalloc(1, sizeof(*u));
	u->volume_id = xstrdup(v.id);
	u->overwrite = !r->disallow_overwrite_existing_files;
	u->files = xcalloc(r->n_files + 1, sizeof(*u->files));
	u->sha256_hex = xcalloc(r->n_files + 1, sizeof(char *));
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < r->n_files; i++) {
		const Modal__Client__MountFile *mf = r->files[i];
		struct cove_vfile *f = &u->files[u->n];
		if (!path_or_fail(req, mf->filename, 0, &f->path)) {
			upload_free(u);
			return;
		}
		u->n++;
		if (!valid_sha256_hex(mf->sha256_hex)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "VolumePutFiles: '%s' is not a sha256 hex digest",
					   mf->sha256_hex);
			upload_free(u);
			return;
		}
		u->sha256_hex[i] = xstrdup(mf->sha256_hex);
		f->type = COVE_VFILE_FILE;
		f->mode = mf->_mode_case ? mf->mode & 07777 : 0644;
		f->mtime = now;
	}
	upload_start(req, u, cut_work);
}

void
cove_api_VolumePutFiles2(struct cove_api_req *req)
{
	const Modal__Client__VolumePutFiles2Request *r = (const void *)req->msg;
	cleanup_volume struct cove_volume v = {0};
	if (!ready(req) || !volume_or_fail(req, r->volume_id, &v))
		return;
	if (r->n_files > MAX_PUT_FILES) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "VolumePutFiles2: at most %d files per call, not %zu",
				   MAX_PUT_FILES, r->n_files);
		return;
	}
	struct upload *u = xcalloc(1, sizeof(*u));
	u->volume_id = xstrdup(v.id);
	u->overwrite = !r->disallow_overwrite_existing_files;
	u->files = xcalloc(r->n_files + 1, sizeof(*u->files));
	/* Each distinct block is probed (or reported missing) once: hex -> stored length + 1, or 0 for missing. */
	struct cove_map probed = {0};
	Modal__Client__VolumePutFiles2Response__MissingBlock *missing = NULL;
	Modal__Client__VolumePutFiles2Response__MissingBlock **mptrs = NULL;
	size_t n_missing = 0, cap = 0;
	int64_t now = (int64_t)time(NULL);
	struct cove_error *err = NULL;
	int failed = 0;
	/* The client gets every missing block's URL at once and works through them: their lifetime grows with the
	 * batch (what is missing is at most all of it). */
	uint64_t batch_bytes = 0;
	for (size_t i = 0; i < r->n_files; i++)
		batch_bytes = r->files[i]->size > UINT64_MAX - batch_bytes ? UINT64_MAX : batch_bytes + r->files[i]->size;
	uint32_t put_ttl = cove_blob_url_ttl(batch_bytes);
	for (size_t i = 0; i < r->n_files && !failed; i++) {
		const Modal__Client__VolumePutFiles2Request__File *rf = r->files[i];
		struct cove_vfile *f = &u->files[u->n];
		if (!path_or_fail(req, rf->path, 0, &f->path)) {
			failed = 1;
			break;
		}
		u->n++;
		f->type = COVE_VFILE_FILE;
		f->mode = rf->_mode_case ? rf->mode & 07777 : 0644;
		f->size = rf->size;
		f->mtime = now;
		uint64_t nb = cove_vfile_n_blocks(rf->size);
		if (rf->size > COVE_VOLUME_MAX_FILE_BYTES || rf->n_blocks != nb) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
					   "VolumePutFiles2: '/%s' of %llu bytes needs %llu blocks of 8 MiB, not %zu (and at most "
					   "1 TiB)",
					   f->path, (unsigned long long)rf->size, (unsigned long long)nb, rf->n_blocks);
			failed = 1;
			break;
		}
		if (!u->overwrite) {
			/* Refused before any block travels (the commit checks again). */
			cleanup_vfile struct cove_vfile old = {0};
			int found = cove_volume_lookup(v.seq, f->path, &old, &err);
			if (found != 0) {
				if (found > 0)
					cove_api_fail_code(req->call, COVE_ALREADY_EXISTS,
							   "'/%s' already exists (pass force=True to batch_upload, or --force to "
							   "`modal volume put`, to overwrite it)",
							   f->path);
				else
					cove_api_fail(req->call, err);
				failed = 1;
				break;
			}
		}
		f->data_len = (size_t)(nb * COVE_BLOCK_HASH);
		f->data = nb ? xmalloc(f->data_len) : NULL;
		for (size_t b = 0; b < rf->n_blocks; b++) {
			const ProtobufCBinaryData *h = &rf->blocks[b]->contents_sha256;
			if (h->len != COVE_BLOCK_HASH) {
				cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
						   "VolumePutFiles2: block %zu of '/%s' is not named by a 32-byte sha256", b, f->path);
				failed = 1;
				break;
			}
			memcpy(f->data + b * COVE_BLOCK_HASH, h->data, COVE_BLOCK_HASH);
			char hex[65];
			cove_hex(h->data, COVE_BLOCK_HASH, hex);
			uint64_t logical = rf->size - b * COVE_BLOCK_SIZE < COVE_BLOCK_SIZE ? rf->size - b * COVE_BLOCK_SIZE
											    : COVE_BLOCK_SIZE;
			uintptr_t known = (uintptr_t)cove_map_get(&probed, hex);
			if (known == 0) {
				uint64_t len = 0;
				int have = cove_blobstore_block_probe(req->ctx->blobs, h->data, &len, &err);
				if (have < 0) {
					cove_api_fail(req->call, err);
					failed = 1;
					break;
				}
				if (!have) {
					/* Reported once; every file that holds it waits for the same PUT. */
					cove_map_put(&probed, hex, (void *)(uintptr_t)UINTPTR_MAX);
					if (n_missing == cap) {
						cap = cap ? cap * 2 : 64;
						missing = xrealloc(missing, cap * sizeof(*missing));
					}
					modal__client__volume_put_files2_response__missing_block__init(&missing[n_missing]);
					missing[n_missing].file_index = i;
					missing[n_missing].block_index = b;
					missing[n_missing].put_url =
						cove_blob_http_block_put_url(req->ctx->blob_http, h->data, put_ttl);
					n_missing++;
					continue;
				}
				known = (uintptr_t)len + 1;
				cove_map_put(&probed, hex, (void *)known);
			}
			if (known != UINTPTR_MAX && known - 1 > logical) {
				cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
						   "VolumePutFiles2: block %zu of '/%s' holds %llu bytes, more than the %llu of the "
						   "file it is in",
						   b, f->path, (unsigned long long)(known - 1), (unsigned long long)logical);
				failed = 1;
				break;
			}
		}
	}
	cove_map_clear(&probed);
	if (!failed && n_missing > 0) {
		mptrs = xcalloc(n_missing, sizeof(*mptrs));
		for (size_t k = 0; k < n_missing; k++)
			mptrs[k] = &missing[k];
		Modal__Client__VolumePutFiles2Response resp = MODAL__CLIENT__VOLUME_PUT_FILES2_RESPONSE__INIT;
		resp.n_missing_blocks = n_missing;
		resp.missing_blocks = mptrs;
		cove_api_reply(req->call, &resp.base);
	}
	for (size_t k = 0; k < n_missing; k++)
		free(missing[k].put_url);
	free(missing);
	free(mptrs);
	if (failed || n_missing > 0) {
		upload_free(u);
		return;
	}
	upload_start(req, u, sync_work);
}
