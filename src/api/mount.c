/* Mounts: content-addressed files uploaded by the client, grouped into mount objects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "config.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/pb.h"

#define CLIENT_MOUNT_PREFIX "modal-client-mount-"
#define MAX_CHECK_HASHES 10000
#define MAX_MOUNT_FILES 1000000

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

/* An absolute path with no "." / ".." components and no NUL tricks. */
static int
valid_mount_path(const char *p)
{
	if (p == NULL || p[0] != '/' || strlen(p) > 4096)
		return 0;
	const char *s = p;
	while (*s) {
		while (*s == '/')
			s++;
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return 0;
		s += n;
	}
	return 1;
}

void
cove_api_MountBatchedCheckExistence(struct cove_api_req *req)
{
	const Modal__Client__MountBatchedCheckExistenceRequest *r = (const void *)req->msg;
	if (r->n_sha256_hex_hashes > MAX_CHECK_HASHES) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "MountBatchedCheckExistence: at most %d hashes per call",
				   MAX_CHECK_HASHES);
		return;
	}
	char **missing = xcalloc(r->n_sha256_hex_hashes, sizeof(char *));
	size_t n_missing = 0;
	for (size_t i = 0; i < r->n_sha256_hex_hashes; i++) {
		const char *h = r->sha256_hex_hashes[i];
		if (!valid_sha256_hex(h)) {
			free(missing);
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "'%s' is not a sha256 hex digest", h);
			return;
		}
		if (!cove_blobstore_has_file(req->ctx->blobs, h))
			missing[n_missing++] = (char *)h;
	}
	Modal__Client__MountBatchedCheckExistenceResponse resp = MODAL__CLIENT__MOUNT_BATCHED_CHECK_EXISTENCE_RESPONSE__INIT;
	resp.n_missing_sha256_hex_hashes = n_missing;
	resp.missing_sha256_hex_hashes = missing;
	cove_api_reply(req->call, &resp.base);
	free(missing);
}

void
cove_api_MountPutFile(struct cove_api_req *req)
{
	const Modal__Client__MountPutFileRequest *r = (const void *)req->msg;
	if (!valid_sha256_hex(r->sha256_hex)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "MountPutFile: '%s' is not a sha256 hex digest",
				   r->sha256_hex);
		return;
	}
	struct cove_error *err = NULL;
	switch (r->data_oneof_case) {
	case MODAL__CLIENT__MOUNT_PUT_FILE_REQUEST__DATA_ONEOF_DATA:
		if (cove_blobstore_write_file(req->ctx->blobs, r->sha256_hex, r->data.data, r->data.len, &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
		break;
	case MODAL__CLIENT__MOUNT_PUT_FILE_REQUEST__DATA_ONEOF_DATA_BLOB_ID: {
		if (!cove_blobstore_valid_id(r->data_blob_id)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "MountPutFile: '%s' is not a blob id",
					   r->data_blob_id);
			return;
		}
		if (cove_blobstore_file_from_blob(req->ctx->blobs, r->sha256_hex, r->data_blob_id, &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
		break;
	}
	default:
		break; /* a probe: does the server have it? */
	}
	Modal__Client__MountPutFileResponse resp = MODAL__CLIENT__MOUNT_PUT_FILE_RESPONSE__INIT;
	resp.exists = cove_blobstore_has_file(req->ctx->blobs, r->sha256_hex);
	cove_api_reply(req->call, &resp.base);
}

static int
cmp_files(const void *a, const void *b)
{
	const Modal__Client__MountFile *x = *(Modal__Client__MountFile *const *)a;
	const Modal__Client__MountFile *y = *(Modal__Client__MountFile *const *)b;
	return strcmp(x->filename, y->filename);
}

/* The checksum covers the sorted (path, content, mode) triples. */
static void
mount_checksum(const Modal__Client__MountGetOrCreateRequest *def, char checksum[65])
{
	Modal__Client__MountFile **sorted = xcalloc(def->n_files, sizeof(*sorted));
	if (def->n_files)
		memcpy(sorted, def->files, def->n_files * sizeof(*sorted));
	qsort(sorted, def->n_files, sizeof(*sorted), cmp_files);
	size_t cap = 64, len = 0;
	char *buf = xmalloc(cap);
	for (size_t i = 0; i < def->n_files; i++) {
		size_t need = strlen(sorted[i]->filename) + 80;
		while (len + need > cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		len += (size_t)sprintf(buf + len, "%s\n%s\n%o\n", sorted[i]->filename, sorted[i]->sha256_hex,
				       sorted[i]->_mode_case ? sorted[i]->mode : 0644);
	}
	cove_sha256_hex(buf, len, checksum);
	free(buf);
	free(sorted);
}

static void
reply_mount(struct cove_api_req *req, const char *id, const Modal__Client__MountGetOrCreateRequest *def)
{
	char checksum[65];
	mount_checksum(def, checksum);
	Modal__Client__MountHandleMetadata meta = MODAL__CLIENT__MOUNT_HANDLE_METADATA__INIT;
	meta.content_checksum_sha256_hex = checksum;
	Modal__Client__MountGetOrCreateResponse resp = MODAL__CLIENT__MOUNT_GET_OR_CREATE_RESPONSE__INIT;
	resp.mount_id = (char *)id;
	resp.handle_metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

/* The client package mount. Containers run the client of the server's own interpreter (the pinned version; the
 * process runtime's interpreter, the linux runtime's /__modal/deps), so the mount carries no files; what it
 * promises is that the caller's version is one Cove serves (cove_client_version_ok). */
static void
client_mount(struct cove_api_req *req, const Modal__Client__MountGetOrCreateRequest *r)
{
	const char *version = r->deployment_name + strlen(CLIENT_MOUNT_PREFIX);
	struct cove_error *err = NULL;
	if (cove_client_version_ok(version, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	cleanup_free char *id = NULL;
	if (cove_store_object_find(req->ctx->store, "mount", "", r->deployment_name, &id, &err) < 0) {
		cove_error_free(err);
		err = NULL;
		id = cove_id_new("mo");
		Modal__Client__MountGetOrCreateRequest empty = MODAL__CLIENT__MOUNT_GET_OR_CREATE_REQUEST__INIT;
		empty.deployment_name = r->deployment_name;
		empty.namespace_ = r->namespace_;
		size_t len;
		cleanup_free uint8_t *bytes = pb_pack(&empty.base, &len);
		if (cove_store_object_put(req->ctx->store, id, "mount", NULL, "", r->deployment_name, bytes, len, &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
	}
	Modal__Client__MountGetOrCreateRequest empty = MODAL__CLIENT__MOUNT_GET_OR_CREATE_REQUEST__INIT;
	reply_mount(req, id, &empty);
}

void
cove_api_MountGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__MountGetOrCreateRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	int global = r->namespace_ == MODAL__CLIENT__DEPLOYMENT_NAMESPACE__DEPLOYMENT_NAMESPACE_GLOBAL;
	if (global && strncmp(r->deployment_name, CLIENT_MOUNT_PREFIX, strlen(CLIENT_MOUNT_PREFIX)) == 0) {
		client_mount(req, r);
		return;
	}
	const char *env = "";
	if (!global) {
		env = cove_env_resolve(r->environment_name, &err);
		if (env == NULL) {
			cove_api_fail(req->call, err);
			return;
		}
	}
	if (r->n_files > MAX_MOUNT_FILES) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "a mount may hold at most %d files", MAX_MOUNT_FILES);
		return;
	}
	for (size_t i = 0; i < r->n_files; i++) {
		const Modal__Client__MountFile *f = r->files[i];
		if (!valid_mount_path(f->filename)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "mount file path '%s' must be absolute and "
					   "must not contain . or .. components", f->filename);
			return;
		}
		if (!valid_sha256_hex(f->sha256_hex)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "mount file %s: '%s' is not a sha256 hex digest",
					   f->filename, f->sha256_hex);
			return;
		}
		if (!cove_blobstore_has_file(req->ctx->blobs, f->sha256_hex)) {
			cove_api_fail_code(req->call, COVE_FAILED_PRECONDITION,
					   "mount file %s: its content (sha256 %s) was not uploaded", f->filename, f->sha256_hex);
			return;
		}
	}
	const char *name = r->deployment_name && *r->deployment_name ? r->deployment_name : NULL;
	int ctype = r->object_creation_type;
	if (name) {
		cleanup_free char *existing = NULL;
		int found = cove_store_object_find(req->ctx->store, "mount", env, name, &existing, &err) == 0;
		cove_error_free(err);
		err = NULL;
		if (found && ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS) {
			cove_api_fail_code(req->call, COVE_ALREADY_EXISTS, "Mount '%s' already exists", name);
			return;
		}
		if (ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED ||
		    (found && ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_IF_MISSING)) {
			if (!found && global && strncmp(name, "python-build-standalone", 23) == 0) {
				/* Image.from_registry(..., add_python=): Modal serves python-build-standalone builds. */
				cove_api_fail_code(req->call, COVE_NOT_FOUND,
						   "Mount '%s' not found: Cove does not provide python-build-standalone "
						   "(add_python=); use a base image that has Python (debian_slim(), or a "
						   "registry image with Python 3.11) instead",
						   name);
				return;
			}
			if (!found) {
				cove_api_fail_code(req->call, COVE_NOT_FOUND, "Mount '%s' not found%s", name,
						   global ? " in the global namespace" : "");
				return;
			}
			cleanup_free uint8_t *data = NULL;
			size_t len = 0;
			if (cove_store_object_get(req->ctx->store, existing, NULL, &data, &len, &err) < 0) {
				cove_api_fail(req->call, err);
				return;
			}
			Modal__Client__MountGetOrCreateRequest *def = pb_unpack(&modal__client__mount_get_or_create_request__descriptor, data, len);
			if (def == NULL) {
				cove_api_fail_code(req->call, COVE_DATA_LOSS, "Mount '%s' is corrupt in the store", name);
				return;
			}
			reply_mount(req, existing, def);
			pb_free(def);
			return;
		}
	}
	/* An anonymous mount is its content: the same files get the same id (so redeploying unchanged code is a
	 * no-op). A named one is a new object each time it is created. */
	cleanup_free char *id = NULL;
	if (name) {
		id = cove_id_new("mo");
	} else {
		static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
		char checksum[65];
		mount_checksum(r, checksum);
		id = xstrdup("mo-0123456789012345678901");
		for (int i = 0; i < 22; i++) {
			unsigned v = (unsigned)(strchr("0123456789abcdef", checksum[2 * i]) - "0123456789abcdef") * 16 +
				     (unsigned)(strchr("0123456789abcdef", checksum[2 * i + 1]) - "0123456789abcdef");
			id[3 + i] = alphabet[v % 62];
		}
	}
	/* Stored as the request itself: its files are the mount's definition. */
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&r->base, &len);
	if (cove_store_object_put(req->ctx->store, id, "mount", r->app_id, env, name, bytes, len, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	reply_mount(req, id, r);
}
