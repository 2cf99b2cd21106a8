/* An app's layout (AppGetLayout, and each container's arguments): its functions, classes and objects. */
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


Modal__Client__AppLayout *
cove_sched_app_layout(struct cove_sched *s, struct cove_app *app)
{
	(void)s;
	size_t cap = app->functions.len + app->classes.len + 16, n = 0;
	Modal__Client__Object *objs = xcalloc(cap, sizeof(*objs));
	Modal__Client__Object **objp = xcalloc(cap, sizeof(*objp));
	Modal__Client__ClassHandleMetadata class_meta = MODAL__CLIENT__CLASS_HANDLE_METADATA__INIT;
	Modal__Client__AppLayout__FunctionIdsEntry *fids = xcalloc(app->functions.len + 1, sizeof(*fids));
	Modal__Client__AppLayout__FunctionIdsEntry **fidp = xcalloc(app->functions.len + 1, sizeof(*fidp));
	Modal__Client__AppLayout__ClassIdsEntry *cids = xcalloc(app->classes.len + 1, sizeof(*cids));
	Modal__Client__AppLayout__ClassIdsEntry **cidp = xcalloc(app->classes.len + 1, sizeof(*cidp));
	size_t nf = 0, nc = 0;
	struct cove_map seen = {0};
	size_t it = 0;
	const char *key;
	void *v;
	while (cove_map_next(&app->functions, &it, &key, &v)) {
		struct cove_function *fn = v;
		if (fn->meta == NULL)
			continue;
		Modal__Client__AppLayout__FunctionIdsEntry e = MODAL__CLIENT__APP_LAYOUT__FUNCTION_IDS_ENTRY__INIT;
		e.key = (char *)key;
		e.value = fn->id;
		fids[nf] = e;
		fidp[nf] = &fids[nf];
		nf++;
		Modal__Client__Object o = MODAL__CLIENT__OBJECT__INIT;
		o.object_id = fn->id;
		o.handle_metadata_oneof_case = MODAL__CLIENT__OBJECT__HANDLE_METADATA_ONEOF_FUNCTION_HANDLE_METADATA;
		o.function_handle_metadata = fn->meta;
		objs[n] = o;
		objp[n] = &objs[n];
		n++;
		cove_map_put(&seen, fn->id, fn);
	}
	it = 0;
	while (cove_map_next(&app->classes, &it, &key, &v)) {
		Modal__Client__AppLayout__ClassIdsEntry e = MODAL__CLIENT__APP_LAYOUT__CLASS_IDS_ENTRY__INIT;
		e.key = (char *)key;
		e.value = v;
		cids[nc] = e;
		cidp[nc] = &cids[nc];
		nc++;
		Modal__Client__Object o = MODAL__CLIENT__OBJECT__INIT;
		o.object_id = v;
		o.handle_metadata_oneof_case = MODAL__CLIENT__OBJECT__HANDLE_METADATA_ONEOF_CLASS_HANDLE_METADATA;
		o.class_handle_metadata = &class_meta;
		if (n == cap) {
			cap *= 2;
			objs = xrealloc(objs, cap * sizeof(*objs));
			objp = xrealloc(objp, cap * sizeof(*objp));
		}
		objs[n] = o;
		n++;
		cove_map_put(&seen, v, v);
	}
	/* Every object a function depends on must be present, even without metadata. */
	it = 0;
	while (cove_map_next(&app->functions, &it, NULL, &v)) {
		struct cove_function *fn = v;
		if (fn->def == NULL)
			continue;
		for (size_t i = 0; i < fn->def->n_object_dependencies; i++) {
			const char *dep = fn->def->object_dependencies[i]->object_id;
			if (cove_map_get(&seen, dep))
				continue;
			cove_map_put(&seen, dep, (void *)dep);
			if (n == cap) {
				cap *= 2;
				objs = xrealloc(objs, cap * sizeof(*objs));
				objp = xrealloc(objp, cap * sizeof(*objp));
			}
			Modal__Client__Object o = MODAL__CLIENT__OBJECT__INIT;
			o.object_id = (char *)dep;
			objs[n++] = o;
		}
	}
	for (size_t i = 0; i < n; i++)
		objp[i] = &objs[i];
	Modal__Client__AppLayout layout = MODAL__CLIENT__APP_LAYOUT__INIT;
	layout.n_objects = n;
	layout.objects = objp;
	layout.n_function_ids = nf;
	layout.function_ids = fidp;
	layout.n_class_ids = nc;
	layout.class_ids = cidp;
	Modal__Client__AppLayout *copy = pb_dup(&layout.base);
	cove_map_clear(&seen);
	free(objs);
	free(objp);
	free(fids);
	free(fidp);
	free(cids);
	free(cidp);
	return copy;
}

void
cove_sched_layout_free(Modal__Client__AppLayout *layout)
{
	pb_free(layout);
}

