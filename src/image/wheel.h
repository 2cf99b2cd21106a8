/* Tools published both as a registry image and as a PyPI wheel of the same version: uv, whose image
 * ghcr.io/astral-sh/uv:<version> holds /uv and /uvx, the binaries the uv wheel ships as its scripts. The client's
 * uv_pip_install and uv_sync copy uv out of that image (COPY --from=ghcr.io/astral-sh/uv:<version>); where no
 * registry serves it, Cove makes the image's layer from the wheel, found on a PyPI index (PEP 691's JSON simple
 * API), its sha256 checked against the index's.
 *
 *   struct cove_wheel_tool t;
 *   if (cove_wheel_tool_ref("ghcr.io/astral-sh/uv:0.8.13", &t)) {   // on a worker thread from here:
 *           char *hex, *note;
 *           cove_wheel_tool_layer(&t, index_url, layers_dir, &hex, &note, &err);  // layers_dir/<hex>/fs
 *   }
 */
#ifndef COVE_IMAGE_WHEEL_H
#define COVE_IMAGE_WHEEL_H

#include <stddef.h>

#include "util/error.h"

#define COVE_PYPI_INDEX "https://pypi.org/simple"

struct cove_wheel_tool {
	const char *image;      /* "ghcr.io/astral-sh/uv" */
	const char *project;    /* "uv" */
	const char *const *scripts; /* the wheel's scripts the image holds at its root: "uv", "uvx" */
	char version[64];       /* "0.8.13", "0.8" (the newest 0.8.x) or "latest" */
};

/* 1 (and t filled) if ref names a tool image Cove can make from a wheel, else 0. */
int cove_wheel_tool_ref(const char *ref, struct cove_wheel_tool *t);

/* Blocking (a worker thread's): resolve t's version on the index, download the wheel for this machine's
 * architecture (statically linked musllinux builds first, as the image has), check its sha256, and store its
 * scripts as the layer layers_dir/<hex>/fs (hex: the wheel's sha256; a layer already stored is not fetched
 * again). *hex and *note (a line for the build log saying where the tool came from) malloc'd. 0, or -1 + err
 * (FAILED_PRECONDITION when the index is out of reach, NOT_FOUND when it has no such version). */
int cove_wheel_tool_layer(const struct cove_wheel_tool *t, const char *index_url, const char *layers_dir, char **hex,
			  char **note, struct cove_error **err);

/* Versions as PyPI orders plain releases ("0.10.2" > "0.9.30"); <0, 0, >0. Exposed for tests. */
int cove_wheel_version_cmp(const char *a, const char *b);

#endif
