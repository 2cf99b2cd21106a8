/* Blobs: big arguments, results and files travel over the blob HTTP port; these RPCs hand out the URLs. */
#include "api/api.h"
#include "blob/blobstore.h"
#include "blob/http.h"
#include "server.h"
#include "util/alloc.h"

#include <unistd.h>

/* Above this the client expects (and we ask for) a multipart upload, as S3 would. */
#define MULTIPART_THRESHOLD (1024LL * 1024 * 1024)
/* The client holds about four parts in memory per upload in flight (blob_utils' byte budget). */
#define PART_LENGTH (16LL * 1024 * 1024)
#define MAX_BLOB_BYTES (64LL * 1024 * 1024 * 1024)

void
cove_api_BlobCreate(struct cove_api_req *req)
{
	const Modal__Client__BlobCreateRequest *r = (const void *)req->msg;
	if (r->content_length < 0 || r->content_length > MAX_BLOB_BYTES) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "BlobCreate: content_length %lld is out of range (max %lld)",
				   (long long)r->content_length, (long long)MAX_BLOB_BYTES);
		return;
	}
	cleanup_free char *id = cove_blobstore_new_id(req->ctx->blobs);
	char *ids[] = {id};
	Modal__Client__BlobCreateResponse resp = MODAL__CLIENT__BLOB_CREATE_RESPONSE__INIT;
	resp.blob_id = id;
	resp.n_blob_ids = 1;
	resp.blob_ids = ids;
	uint32_t ttl = cove_blob_url_ttl((uint64_t)r->content_length);
	if (r->content_length > MULTIPART_THRESHOLD) {
		size_t n_parts = (size_t)((r->content_length + PART_LENGTH - 1) / PART_LENGTH);
		char **urls = xcalloc(n_parts, sizeof(char *));
		for (size_t i = 0; i < n_parts; i++)
			urls[i] = cove_blob_http_part_url(req->ctx->blob_http, id, (int)i + 1, ttl);
		cleanup_free char *complete = cove_blob_http_complete_url(req->ctx->blob_http, id, ttl);
		Modal__Client__MultiPartUpload mp = MODAL__CLIENT__MULTI_PART_UPLOAD__INIT;
		mp.part_length = PART_LENGTH;
		mp.n_upload_urls = n_parts;
		mp.upload_urls = urls;
		mp.completion_url = complete;
		Modal__Client__MultiPartUpload *items[] = {&mp};
		Modal__Client__MultiPartUploadList list = MODAL__CLIENT__MULTI_PART_UPLOAD_LIST__INIT;
		list.n_items = 1;
		list.items = items;
		resp.upload_type_oneof_case = MODAL__CLIENT__BLOB_CREATE_RESPONSE__UPLOAD_TYPE_ONEOF_MULTIPART;
		resp.multipart = &mp;
		resp.upload_types_oneof_case = MODAL__CLIENT__BLOB_CREATE_RESPONSE__UPLOAD_TYPES_ONEOF_MULTIPARTS;
		resp.multiparts = &list;
		cove_api_reply(req->call, &resp.base);
		for (size_t i = 0; i < n_parts; i++)
			free(urls[i]);
		free(urls);
		return;
	}
	cleanup_free char *url = cove_blob_http_put_url(req->ctx->blob_http, id, ttl);
	char *urls[] = {url};
	Modal__Client__UploadUrlList list = MODAL__CLIENT__UPLOAD_URL_LIST__INIT;
	list.n_items = 1;
	list.items = urls;
	resp.upload_type_oneof_case = MODAL__CLIENT__BLOB_CREATE_RESPONSE__UPLOAD_TYPE_ONEOF_UPLOAD_URL;
	resp.upload_url = url;
	resp.upload_types_oneof_case = MODAL__CLIENT__BLOB_CREATE_RESPONSE__UPLOAD_TYPES_ONEOF_UPLOAD_URLS;
	resp.upload_urls = &list;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_BlobGet(struct cove_api_req *req)
{
	const Modal__Client__BlobGetRequest *r = (const void *)req->msg;
	if (!cove_blobstore_valid_id(r->blob_id)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "BlobGet: '%s' is not a blob id", r->blob_id);
		return;
	}
	if (!cove_blobstore_has_blob(req->ctx->blobs, r->blob_id)) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "blob %s not found", r->blob_id);
		return;
	}
	uint64_t size = 0;
	int fd = -1;
	struct cove_error *err = NULL;
	if (cove_blobstore_open_blob(req->ctx->blobs, r->blob_id, &fd, &size, &err) == 0)
		close(fd);
	cove_error_free(err);
	cleanup_free char *url = cove_blob_http_get_url(req->ctx->blob_http, r->blob_id, cove_blob_url_ttl(size));
	Modal__Client__BlobGetResponse resp = MODAL__CLIENT__BLOB_GET_RESPONSE__INIT;
	resp.download_url = url;
	cove_api_reply(req->call, &resp.base);
}
