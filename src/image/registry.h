/* Pulling images from an OCI / Docker registry (the Registry HTTP API v2) into the layer store.
 *
 * The layer store (shared with the image builder): <layers_dir>/<hex>/fs/ is one unpacked layer, usable as
 * an overlayfs lower directory, where <hex> is the sha256 of the layer's compressed blob as the manifest names
 * it (its "sha256:" digest without the prefix). A layer is unpacked into <layers_dir>/.tmp-<random>/fs and
 * that directory is then renamed to <layers_dir>/<hex>, so a layer directory that exists is complete; when two
 * pulls race, the second rename fails (EEXIST / ENOTEMPTY) and its copy is removed.
 *
 * A pull: GET /v2/<repo>/manifests/<tag or digest> (accepting OCI index and manifest, Docker manifest list
 * and v2 manifest); from an index, the linux/<this host's architecture> manifest; the config blob; then each
 * layer not already in the store, downloaded to a temporary file, checked against its sha256 digest and size,
 * and unpacked (src/image/unpack.h). Auth: anonymous first; on 401, the Bearer token flow the
 * WWW-Authenticate challenge describes (sending the Basic credentials, if given, to the token realm), or Basic
 * auth when that is what the registry asks for. Plain HTTP for localhost, 127.0.0.1, [::1] and the registries
 * listed as insecure, HTTPS otherwise (libcurl's proxy variables, http_proxy / https_proxy / no_proxy, apply). */
#ifndef COVE_IMAGE_REGISTRY_H
#define COVE_IMAGE_REGISTRY_H

#include <stddef.h>

#include "util/error.h"

struct cove_registry_opts {
	/* NULL, or the base URL of a registry that serves Docker Hub's images in their place (like Docker's
	 * registry-mirrors; e.g. "http://127.0.0.1:5000" or "https://mirror.gcr.io"). Used for docker.io
	 * references only, with no fallback to Docker Hub. */
	const char *mirror;
	const char *const *insecure; /* registries ("host:port", or "host" for every port) reached over plain HTTP */
	size_t n_insecure;
	const char *username, *password; /* NULL: anonymous */
};

/* The image config's runtime settings ("config" in the config blob); absent fields are NULL / 0. */
struct cove_image_config {
	char **env; /* "KEY=VALUE" */
	size_t n_env;
	char *workdir;
	char *user;
	char **entrypoint;
	size_t n_entrypoint;
	char **cmd;
	size_t n_cmd;
};

struct cove_pulled_image {
	char **layers; /* layer ids (<hex>: <layers_dir>/<hex>/fs), bottom layer first */
	size_t n_layers;
	char *digest; /* "sha256:..." of the manifest the reference resolved to (the index, for a multi-platform image) */
	struct cove_image_config config;
};

/* A progress line ("pulling layer sha256:0123456789ab (12.3 MiB)"), without a newline. */
typedef void (*cove_registry_log_fn)(void *arg, const char *line);

/* Pull ref (any reference cove_image_ref_parse takes) into layers_dir (created if missing), blocking: call it
 * from a worker thread. log may be NULL. On success fills *out (free it with cove_pulled_image_free) and
 * returns 0; else -1 + *err:
 *   INVALID_ARGUMENT    a malformed reference; an image whose manifest or config is not one Cove reads; a layer
 *                       with entries that escape their directory
 *   NOT_FOUND           "image <ref> not found in <registry>" (no such repository, tag or digest, or no
 *                       linux/<arch> variant)
 *   PERMISSION_DENIED   the registry refused the credentials (or asked for some and none were given)
 *   FAILED_PRECONDITION "cannot reach registry <host> for image <ref>: <curl error>; ..." with how to make the
 *                       image available (a mirror, or pushing it to a reachable registry)
 *   UNAVAILABLE         the registry answered 5xx or 429, or a download broke off
 *   DATA_LOSS           a manifest, config or layer whose sha256 or size is not what was asked for; a layer that
 *                       does not read as a tar
 *   INTERNAL            local I/O (the layer store) */
int cove_registry_pull(const struct cove_registry_opts *opts, const char *ref, const char *layers_dir,
		       cove_registry_log_fn log, void *arg, struct cove_pulled_image *out, struct cove_error **err);
/* Free what a pull filled in and zero *img (NULL-safe). */
void cove_pulled_image_free(struct cove_pulled_image *img);

/* Parse an image config blob (its JSON) into *out. 0, or -1 + INVALID_ARGUMENT. Free with
 * cove_image_config_free. */
int cove_image_config_parse(const char *json, size_t len, struct cove_image_config *out, struct cove_error **err);
void cove_image_config_free(struct cove_image_config *c);

/* A WWW-Authenticate challenge: scheme "Bearer" or "Basic" and its parameters (NULL when absent). */
struct cove_auth_challenge {
	char *scheme;
	char *realm;
	char *service;
	char *scope;
};
/* Parse the value of a WWW-Authenticate header (for the first challenge in it). 0, or -1 when it does not
 * parse. Free with cove_auth_challenge_free. */
int cove_auth_challenge_parse(const char *header, struct cove_auth_challenge *out);
void cove_auth_challenge_free(struct cove_auth_challenge *c);

#endif
