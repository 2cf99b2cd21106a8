/* The image builder: runs an Image's Dockerfile commands step by step (RUN in build containers of the linux
 * runtime, COPY from the context mount, the rest as metadata), one cached layer per RUN/COPY step keyed by its
 * parent chain, the step and its inputs. Base images come from a registry (registry.c) or, for Debian-based
 * Python images no registry can serve, from Debian's packages (debootstrap). Build logs stream to every
 * ImageJoinStreaming call.
 *
 * On disk (<image_dir>): layers/<hex>/fs, one overlay layer each (shared by all images); images/<image id>, a
 * built image's manifest (its layers bottom first and its config); tmp/, build scratch space. */
#ifndef COVE_IMAGE_BUILDER_H
#define COVE_IMAGE_BUILDER_H

#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "util/error.h"

struct cove_ctx;
struct cove_call;
struct cove_builder;

struct cove_builder_opts {
	const char *image_dir;
	const char *registry_mirror;      /* NULL: none */
	const char *const *insecure;      /* registries reached over plain HTTP besides localhost */
	size_t n_insecure;
	const char *debian_mirror;        /* NULL: the host's apt source, else deb.debian.org */
	const char *ca_bundle;            /* NULL: none; else mounted into build containers (see cove_ca_env) */
};

/* The container path of the CA bundle Cove mounts, and the variables that point tools at it. */
#define COVE_CA_PATH "/etc/ssl/certs/ca-certificates.crt"
extern const char *const cove_ca_env[];

/* A built image, as containers need it. */
struct cove_image_info {
	char **layers; /* relative to the layer store ("<hex>/fs"), bottom first */
	size_t n_layers;
	char **env; /* "K=V" */
	size_t n_env;
	char *workdir; /* NULL: unset */
	char *user;    /* NULL: root */
	char **cmd, **entrypoint;
	size_t n_cmd, n_entrypoint;
	char *state; /* the cache chain's hash after the last step */
};

struct cove_builder *cove_builder_new(struct cove_ctx *ctx, const struct cove_builder_opts *opts, struct cove_error **err);
void cove_builder_free(struct cove_builder *b);
const char *cove_builder_layers_dir(const struct cove_builder *b);

/* Make sure image_id (whose definition is def) is built: 1 when it already is (and force is 0), 0 when a build
 * runs now (or already ran in this process and failed: join it to learn how). */
int cove_builder_start(struct cove_builder *b, const char *image_id, const Modal__Client__Image *def,
		       const char *build_function_id, int force, struct cove_error **err);
/* Answer an ImageJoinStreaming call: the build's log entries after last_entry_id, then its result, streamed
 * as they happen until the build ends or timeout_s passes. A build unknown to this process is started from the
 * definition in the store (a restart during a build); an unknown image is NOT_FOUND. */
void cove_builder_join(struct cove_builder *b, struct cove_call *call, const char *image_id, const char *last_entry_id,
		       double timeout_s);
/* The manifest of a built image; NOT_FOUND when it is not built. */
int cove_builder_image(struct cove_builder *b, const char *image_id, struct cove_image_info **out, struct cove_error **err);
void cove_image_info_free(struct cove_image_info *info);

/* A new image: base_id's layers and config with one more layer on top (<layers dir>/<layer_hex>/fs, which
 * must exist), recorded as image_id (a sandbox's snapshot_filesystem). */
int cove_builder_add_layer_image(struct cove_builder *b, const char *base_id, const char *layer_hex,
				 const char *image_id, struct cove_error **err);

/* Disk use of the layer store (bytes) and the number of layers and images, for `cove status`. */
int cove_builder_usage(const char *image_dir, uint64_t *bytes, size_t *n_layers, size_t *n_images);
/* Remove layers no image manifest references (none may be building). Counts what it removed. */
int cove_builder_gc(const char *image_dir, size_t *n_removed, uint64_t *bytes_freed, struct cove_error **err);

#endif
