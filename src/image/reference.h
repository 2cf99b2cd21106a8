/* Image references, read the way Docker reads them (github.com/distribution/reference):
 *
 *   python:3.11-slim-bookworm      registry-1.docker.io  library/python  tag 3.11-slim-bookworm
 *   ghcr.io/org/name:tag           ghcr.io               org/name        tag tag
 *   127.0.0.1:5000/team/app:v1     127.0.0.1:5000        team/app        tag v1
 *   localhost:5000/x               localhost:5000        x               tag latest
 *   name@sha256:<64 hex>           registry-1.docker.io  library/name    digest sha256:<64 hex>
 *
 * The first path component is a registry when it holds a '.' or a ':', is "localhost", is a bracketed IPv6
 * address, or has upper-case letters; otherwise the image is on Docker Hub ("docker.io" and "index.docker.io"
 * name Docker Hub too), where a one-component name gets "library/" in front. */
#ifndef COVE_IMAGE_REFERENCE_H
#define COVE_IMAGE_REFERENCE_H

#include "util/error.h"

/* The host that serves Docker Hub's registry API. */
#define COVE_IMAGE_REF_DOCKER_HUB "registry-1.docker.io"

struct cove_image_ref {
	char *registry;   /* host[:port] serving the registry API: "registry-1.docker.io", "127.0.0.1:5000", "[::1]:5000" */
	char *repository; /* "library/python", "team/app" */
	char *tag;        /* "latest" when neither a tag nor a digest was given; NULL when only a digest was */
	char *digest;     /* "sha256:<64 lower-case hex>", or NULL */
	int docker_hub;   /* 1 when the image is on Docker Hub (where a registry mirror applies) */
};

/* Parse ref into *out (which the caller frees with cove_image_ref_free). 0, or -1 + INVALID_ARGUMENT whose
 * message quotes ref and says what is wrong with it; *out is left zeroed on failure. A reference with both a
 * tag and a digest keeps both; the digest decides what is pulled. Only sha256 digests are accepted. */
int cove_image_ref_parse(const char *ref, struct cove_image_ref *out, struct cove_error **err);
/* Free what cove_image_ref_parse filled in and zero *r (NULL-safe; harmless on a zeroed struct). */
void cove_image_ref_free(struct cove_image_ref *r);
/* What /v2/<repository>/manifests/<this> asks for: the digest if there is one, else the tag. Borrowed. */
const char *cove_image_ref_manifest_ref(const struct cove_image_ref *r);

#endif
