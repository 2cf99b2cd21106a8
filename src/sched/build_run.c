/* Image.run_function: the builder function runs once in a container of its own; its writable layer is kept
 * for the image builder when the input has finished and the container has stopped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "image/builder.h"
#include "runtime/runtime.h"
#include "sched/isolate.h"
#include "sched/sched_internal.h"
#include "server.h"
#include "store/store.h"
#include "store/volview.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/map.h"
#include "util/pb.h"


struct cove_build_run {
	struct cove_fcall *fc;
	char *keep_dir;
	void (*done)(void *arg, const char *failure);
	void *arg;
	int finished;  /* its input has an output */
	char *failure; /* NULL: it succeeded */
	int kept;      /* the writable layer was moved to keep_dir */
};

int
cove_sched_run_builder(struct cove_sched *s, const char *function_id, const uint8_t *input, size_t len,
		       const char *keep_dir, void (*done)(void *arg, const char *failure), void *arg,
		       struct cove_error **err)
{
	struct cove_function *fn = cove_sched_function_get(s, function_id);
	if (fn == NULL || fn->def == NULL)
		return cove_error_set(err, COVE_NOT_FOUND, "builder function %s not found", function_id);
	if (fn->build_run)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "builder function %s is already running", fn->tag);
	struct cove_fcall *fc = cove_sched_call_create(s, fn, MODAL__CLIENT__FUNCTION_CALL_TYPE__FUNCTION_CALL_TYPE_UNARY,
						       MODAL__CLIENT__FUNCTION_CALL_INVOCATION_TYPE__FUNCTION_CALL_INVOCATION_TYPE_SYNC,
						       NULL, err);
	if (fc == NULL || cove_sched_input_add(s, fc, 0, input, len, err) == NULL)
		return cove_error_wrap(err, "run builder function %s", fn->tag);
	struct cove_build_run *br = xcalloc(1, sizeof(*br));
	br->fc = fc;
	br->keep_dir = xstrdup(keep_dir);
	br->done = done;
	br->arg = arg;
	fn->build_run = br;
	cove_sched_kick(s, fn);
	return 0;
}

/* Its input finished: stop the container, whose file system is then complete. */
void
sched_build_run_output(struct cove_sched *s, struct cove_fcall *fc, const Modal__Client__GenericResult *result)
{
	struct cove_build_run *br = fc->fn->build_run;
	if (br->fc != fc || br->finished)
		return;
	br->finished = 1;
	if (result->status != MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS)
		br->failure = xasprintf("run_function %s failed: %s", fc->fn->tag,
					result->exception && *result->exception ? result->exception : "(no message)");
	size_t it = 0;
	void *v;
	while (cove_map_next(&s->tasks, &it, NULL, &v)) {
		struct cove_task *t = v;
		if (t->fn == fc->fn && t->container)
			sched_task_stop(s, t, 1);
	}
}

/* A container of the builder function ended: after its input finished, its writable layer is the result. */
void
sched_build_run_task_exit(struct cove_sched *s, struct cove_task *t)
{
	(void)s;
	struct cove_function *fn = t->fn;
	struct cove_build_run *br = fn->build_run;
	if (!br->finished)
		return; /* a container that ended before the input did: the input runs again elsewhere, or fails */
	if (!br->failure && !br->kept && t->dir) {
		cleanup_free char *upper = xasprintf("%s/fs/upper", t->dir);
		cleanup_free char *modal = xasprintf("%s/__modal", upper);
		struct cove_error *ignored = NULL;
		cove_remove_tree(modal, &ignored); /* its arguments and mount points: not part of the image */
		cove_error_free(ignored);
		if (rename(upper, br->keep_dir) < 0)
			br->failure = xasprintf("run_function %s: keep its file system: %s", fn->tag, strerror(errno));
		else
			br->kept = 1;
	}
	if (!br->failure && !br->kept)
		br->failure = xasprintf("run_function %s: its container left no file system", fn->tag);
	fn->build_run = NULL;
	void (*done)(void *, const char *) = br->done;
	void *arg = br->arg;
	char *failure = br->failure;
	free(br->keep_dir);
	free(br);
	done(arg, failure);
	free(failure);
}

