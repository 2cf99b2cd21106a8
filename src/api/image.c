/* Images. ImageGetOrCreate records the definition under an id derived from it; with the linux runtime the
 * builder (image/builder.c) builds it and ImageJoinStreaming streams the build. With the process runtime
 * every image is the host environment, so every image is "built" at once. */
#include <string.h>

#include "api/api.h"
#include "config.h"
#include "image/builder.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/pb.h"

static void
reply_built(struct cove_api_req *req, const char *image_id, int streaming)
{
	Modal__Client__GenericResult result = MODAL__CLIENT__GENERIC_RESULT__INIT;
	result.status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS;
	Modal__Client__ImageMetadata meta = MODAL__CLIENT__IMAGE_METADATA__INIT;
	meta._image_builder_version_case = MODAL__CLIENT__IMAGE_METADATA___IMAGE_BUILDER_VERSION_IMAGE_BUILDER_VERSION;
	meta.image_builder_version = "2025.06";
	if (streaming) {
		Modal__Client__ImageJoinStreamingResponse resp = MODAL__CLIENT__IMAGE_JOIN_STREAMING_RESPONSE__INIT;
		resp.result = &result;
		resp.metadata = &meta;
		resp.eof = 1;
		cove_api_reply(req->call, &resp.base);
		return;
	}
	Modal__Client__ImageGetOrCreateResponse resp = MODAL__CLIENT__IMAGE_GET_OR_CREATE_RESPONSE__INIT;
	resp.image_id = (char *)image_id;
	resp.result = &result;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_ImageGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__ImageGetOrCreateRequest *r = (const void *)req->msg;
	if (r->image == NULL) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "ImageGetOrCreate: no image definition given");
		return;
	}
	/* Same definition + builder version (the client's and Cove's) = same image: the id is derived from their
	 * digest. Cove's part changes when what it builds from a definition changes. */
	static const char cove_builder_version[] = "cove-builder-6";
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&r->image->base, &len);
	size_t keylen = len + strlen(r->builder_version) + sizeof(cove_builder_version) + 1;
	cleanup_free uint8_t *key = xmalloc(keylen);
	memcpy(key, bytes, len);
	key[len] = 0;
	memcpy(key + len + 1, r->builder_version, strlen(r->builder_version));
	memcpy(key + len + 1 + strlen(r->builder_version), cove_builder_version, sizeof(cove_builder_version));
	uint8_t digest[32];
	cove_sha256(key, keylen, digest);
	/* 22 base62-ish chars from the digest, so the id looks like every other id. */
	static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	char id[3 + 22 + 1] = "im-";
	for (int i = 0; i < 22; i++)
		id[3 + i] = alphabet[digest[i] % 62];
	id[25] = '\0';
	struct cove_error *err = NULL;
	if (cove_store_object_put(req->ctx->store, id, "image", r->app_id, NULL, NULL, bytes, len, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	if (req->ctx->builder) {
		int force = r->force_build || r->ignore_cache;
		int built = cove_builder_start(req->ctx->builder, id, r->image, r->build_function_id, force, &err);
		if (built < 0) {
			cove_api_fail(req->call, err);
			return;
		}
		if (built) {
			reply_built(req, id, 0);
			return;
		}
		/* Building: the client joins the build's log stream (ImageJoinStreaming) for the result. */
		Modal__Client__ImageGetOrCreateResponse resp = MODAL__CLIENT__IMAGE_GET_OR_CREATE_RESPONSE__INIT;
		resp.image_id = id;
		cove_api_reply(req->call, &resp.base);
		return;
	}
	static int told;
	if (!told) {
		log_info("images: the process runtime runs every function in the host environment (%s); image "
			 "definitions are recorded but not built",
			 req->ctx->cfg.python);
		told = 1;
	}
	reply_built(req, id, 0);
}

void
cove_api_ImageJoinStreaming(struct cove_api_req *req)
{
	const Modal__Client__ImageJoinStreamingRequest *r = (const void *)req->msg;
	if (req->ctx->builder) {
		cove_builder_join(req->ctx->builder, req->call, r->image_id, r->last_entry_id, r->timeout);
		return;
	}
	struct cove_error *err = NULL;
	cleanup_free uint8_t *data = NULL;
	size_t len = 0;
	if (strncmp(r->image_id, "im-", 3) != 0 ||
	    cove_store_object_get(req->ctx->store, r->image_id, NULL, &data, &len, &err) < 0) {
		cove_error_free(err);
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Image %s not found", r->image_id);
		return;
	}
	reply_built(req, r->image_id, 1);
}
