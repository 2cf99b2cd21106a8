/* The runtime choice, and function containers under the linux runtime (isolate.c). */
#ifndef COVE_SCHED_ISOLATE_H
#define COVE_SCHED_ISOLATE_H

#include "api.pb-c.h"
#include "runtime/runtime.h"
#include "util/error.h"

struct cove_ctx;
struct cove_image_info;

/* The runtime ctx->cfg.runtime asks for (NULL: linux where this host can isolate, else process). With linux,
 * also ctx->builder and ctx->client_deps. NULL + error when the runtime asked for cannot run here. */
struct cove_runtime *cove_sched_runtime_new(struct cove_ctx *ctx, const struct cove_runtime_callbacks *cb,
					    struct cove_error **err);

/* The cove-container program: beside the cove binary, else in libexec. Caller frees. */
char *cove_isolate_helper_path(void);

/* Which isolation each workload kind gets, from --isolation (NULL: sandboxes under gvisor where runsc is found,
 * functions under linux) and --runsc (NULL: cove_runtime_runsc_find). Image builds always use linux. */
struct cove_isolation_choice {
	int sandboxes_gvisor, functions_gvisor;
	char *runsc;      /* the runsc found, or NULL */
	char *not_gvisor; /* why sandboxes are not under gVisor by default, or NULL */
};
/* INVALID_ARGUMENT for a malformed --isolation, FAILED_PRECONDITION when gvisor is asked for and runsc is not
 * found. */
int cove_isolate_choose(const char *isolation, const char *runsc, struct cove_isolation_choice *out,
			struct cove_error **err);
void cove_isolation_choice_clear(struct cove_isolation_choice *c);

/* The host file mounted at COVE_CA_PATH in containers, or NULL. */
const char *cove_isolate_ca_bundle(const struct cove_ctx *ctx);

/* What one function container needs under the linux runtime. */
struct cove_isolated {
	struct cove_image_info *image;
	const char **layers; /* top first, borrowed from image */
	char *scratch;       /* <task dir>/fs */
	char *upper;         /* <task dir>/fs/upper: files written here before start appear in the container */
	struct cove_container_rootfs rootfs;
	struct cove_container_limits limits;
	unsigned short *ports; /* rootfs.published_ports (malloc'd; freed by cove_isolate_clear) */
	unsigned short *host_ports; /* rootfs.published_host_ports (likewise) */
};

/* From the function's image (which must be built) and resources. FAILED_PRECONDITION for a GPU this host lacks. */
int cove_isolate_prepare(struct cove_ctx *ctx, const Modal__Client__Function *def, const char *task_dir,
			 struct cove_isolated *out, struct cove_error **err);
/* The same for any container (a sandbox): what names it in errors, its image and resources (NULL: none). */
int cove_isolate_prepare_image(struct cove_ctx *ctx, const char *what, const char *image_id,
			       const Modal__Client__Resources *res, const char *task_dir, struct cove_isolated *out,
			       struct cove_error **err);
void cove_isolate_clear(struct cove_isolated *iso);

#endif
