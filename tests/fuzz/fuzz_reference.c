/* libFuzzer target: image reference parsing (src/image/reference.c), which reads whatever image name a client
 * or a Dockerfile's FROM hands it. Every input must either parse or be refused with INVALID_ARGUMENT, with no
 * sanitizer report; a parsed reference keeps its invariants, and its canonical form parses to the same thing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/reference.h"
#include "util/alloc.h"

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	struct cove_image_ref r;
	struct cove_error *err = NULL;
	if (cove_image_ref_parse(text, &r, &err) < 0) {
		if (err == NULL || err->code != COVE_INVALID_ARGUMENT || r.registry != NULL)
			abort();
		cove_error_free(err);
		free(text);
		return 0;
	}
	if (r.registry == NULL || r.repository == NULL || (r.tag == NULL && r.digest == NULL) ||
	    cove_image_ref_manifest_ref(&r) == NULL || r.registry[0] == '\0' || r.repository[0] == '\0' ||
	    strchr(r.repository, ':') || strchr(r.repository, '@') || strchr(r.registry, '/'))
		abort();
	/* registry/repository[:tag][@digest] says the same thing again ("docker.io" for Docker Hub, as Docker
	 * writes it: the length limit counts that name). */
	char *canon = xasprintf("%s/%s%s%s%s%s", r.docker_hub ? "docker.io" : r.registry, r.repository, r.tag ? ":" : "", r.tag ? r.tag : "",
				r.digest ? "@" : "", r.digest ? r.digest : "");
	struct cove_image_ref again;
	if (cove_image_ref_parse(canon, &again, &err) < 0 || !same(r.registry, again.registry) ||
	    !same(r.repository, again.repository) || !same(r.tag, again.tag) || !same(r.digest, again.digest) ||
	    r.docker_hub != again.docker_hub)
		abort();
	cove_image_ref_free(&again);
	cove_image_ref_free(&r);
	free(canon);
	free(text);
	return 0;
}
