/* Deployed apps, classes, bound class instances, and bringing them back after a restart. */
#include <stdio.h>
#include <string.h>

#include "sched/sched.h"
#include "sched/sched_internal.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/pb.h"

static char *
deployed_key(const char *env, const char *name)
{
	return xasprintf("%s/%s", env, name);
}

struct cove_app *
cove_sched_app_by_name(struct cove_sched *s, const char *env, const char *name)
{
	cleanup_free char *key = deployed_key(env, name);
	return cove_map_get(&s->deployed, key);
}

int
cove_sched_app_deploy(struct cove_sched *s, struct cove_app *app, const char *name, struct cove_error **err)
{
	struct cove_app *other = cove_sched_app_by_name(s, app->env, name);
	if (other && other != app)
		return cove_error_set(err, COVE_ALREADY_EXISTS, "an app named '%s' is already deployed in '%s' (%s)", name,
				      app->env, other->id);
	free(app->name);
	app->name = xstrdup(name);
	cleanup_free char *key = deployed_key(app->env, name);
	cove_map_put(&s->deployed, key, app);
	return cove_sched_app_set_state(s, app, MODAL__CLIENT__APP_STATE__APP_STATE_DEPLOYED, err);
}

void
cove_sched_app_undeploy(struct cove_sched *s, struct cove_app *app)
{
	if (app->name[0] == '\0')
		return;
	cleanup_free char *key = deployed_key(app->env, app->name);
	if (cove_map_get(&s->deployed, key) == app)
		cove_map_del(&s->deployed, key);
}

const struct cove_map *
cove_sched_apps(struct cove_sched *s)
{
	return &s->apps;
}

void
cove_sched_class_register(struct cove_sched *s, struct cove_app *app, const char *class_id)
{
	cove_map_put(&s->classes, class_id, app);
}

struct cove_app *
cove_sched_class_app(struct cove_sched *s, const char *class_id)
{
	return class_id ? cove_map_get(&s->classes, class_id) : NULL;
}

int
cove_sched_class_publish(struct cove_sched *s, struct cove_app *app, const char *tag, const char *class_id,
			 struct cove_error **err)
{
	if (cove_sched_class_app(s, class_id) != app)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "class %s (%s) was not created in app %s", class_id, tag,
				      app->id);
	free(cove_map_put(&app->classes, tag, xstrdup(class_id)));
	return cove_store_object_put(s->ctx->store, class_id, "class", app->id, app->env, tag, "", 0, err);
}

/* Apply FunctionOptions (with_options, with_concurrency, with_batching) to a copy of a definition. */
static void
apply_options(Modal__Client__Function *def, const Modal__Client__FunctionOptions *o)
{
	if (o->_timeout_secs_case)
		def->timeout_secs = o->timeout_secs;
	if (o->_concurrency_limit_case)
		def->concurrency_limit = o->concurrency_limit;
	if (o->_task_idle_timeout_secs_case)
		def->task_idle_timeout_secs = o->task_idle_timeout_secs;
	if (o->_max_concurrent_inputs_case)
		def->max_concurrent_inputs = o->max_concurrent_inputs;
	if (o->_target_concurrent_inputs_case)
		def->target_concurrent_inputs = o->target_concurrent_inputs;
	if (o->_batch_max_size_case)
		def->batch_max_size = o->batch_max_size;
	if (o->_batch_linger_ms_case)
		def->batch_linger_ms = o->batch_linger_ms;
	if (o->_warm_pool_size_case)
		def->warm_pool_size = o->warm_pool_size;
}

struct cove_function *
cove_sched_function_bind(struct cove_sched *s, struct cove_function *base, const uint8_t *params, size_t params_len,
			 const Modal__Client__FunctionOptions *opts, struct cove_error **err)
{
	(void)err;
	/* Same parameters and options: the same bound function (and its warm containers). */
	size_t olen = 0;
	cleanup_free uint8_t *obytes = opts ? pb_pack(&opts->base, &olen) : NULL;
	size_t klen = params_len + olen + 8;
	cleanup_free uint8_t *key = xmalloc(klen);
	memcpy(key, &params_len, 8);
	if (params_len)
		memcpy(key + 8, params, params_len);
	if (olen)
		memcpy(key + 8 + params_len, obytes, olen);
	char digest[65];
	cove_sha256_hex(key, klen, digest);
	struct cove_function *fn = cove_map_get(&base->bound, digest);
	if (fn)
		return fn;
	fn = xcalloc(1, sizeof(*fn));
	fn->id = cove_id_new("fu");
	fn->tag = xstrdup(base->tag);
	fn->app = base->app;
	fn->parent = base;
	fn->def = pb_dup(&base->def->base);
	if (opts) {
		apply_options(fn->def, opts);
		/* Secrets from options add to (or replace) the class's own. */
		if (opts->n_secret_ids) {
			size_t keep = opts->replace_secret_ids ? 0 : fn->def->n_secret_ids;
			char **ids = xcalloc(keep + opts->n_secret_ids, sizeof(char *));
			for (size_t i = 0; i < keep; i++)
				ids[i] = fn->def->secret_ids[i];
			for (size_t i = 0; i < opts->n_secret_ids; i++)
				ids[keep + i] = opts->secret_ids[i];
			Modal__Client__Function tmp = *fn->def;
			tmp.n_secret_ids = keep + opts->n_secret_ids;
			tmp.secret_ids = ids;
			Modal__Client__Function *copy = pb_dup(&tmp.base);
			free(ids);
			pb_free(fn->def);
			fn->def = copy;
		}
	}
	fn->meta = pb_dup(&base->meta->base);
	fn->params = params_len ? xmemdup(params, params_len) : NULL;
	fn->params_len = params_len;
	cove_map_put(&s->functions, fn->id, fn);
	cove_map_put(&base->bound, digest, fn);
	return fn;
}

/* ---- restore ---- */

struct restore {
	struct cove_sched *s;
	struct cove_app *app;
	struct cove_function *fn;
	struct cove_fcall *fc;
	char **stale; /* apps to mark stopped */
	size_t n_stale;
	size_t n_fns, n_calls, n_pending;
};

static int
restore_app(void *arg, const struct cove_store_app *a)
{
	struct restore *r = arg;
	if (a->state == MODAL__CLIENT__APP_STATE__APP_STATE_DEPLOYED && a->name && *a->name) {
		struct cove_app *app = cove_sched_app_insert(r->s, a->id, a->name, a->env, a->description, a->state,
							     a->created_at);
		cleanup_free char *key = deployed_key(app->env, app->name);
		cove_map_put(&r->s->deployed, key, app);
		return 0;
	}
	if (a->stopped_at == 0) {
		/* Its client and containers are gone with the previous run. */
		r->stale = xrealloc(r->stale, (r->n_stale + 1) * sizeof(char *));
		r->stale[r->n_stale++] = xstrdup(a->id);
	}
	return 0;
}

static int
restore_input(void *arg, const char *input_id, int idx, const uint8_t *data, size_t len, const uint8_t *output,
	      size_t output_len)
{
	struct restore *r = arg;
	cove_sched_input_restore(r->s, r->fc, input_id, idx, data, len, output, output_len);
	if (output == NULL)
		r->n_pending++;
	return 0;
}

static int
restore_call(void *arg, const char *call_id, int call_type, int invocation_type)
{
	struct restore *r = arg;
	r->fc = cove_sched_call_insert(r->s, r->fn, call_id, call_type, invocation_type);
	r->n_calls++;
	struct cove_error *err = NULL;
	if (cove_store_each_input(r->s->ctx->store, call_id, restore_input, r, &err) < 0) {
		log_warn("restore call %s: %s", call_id, err->msg);
		cove_error_free(err);
	}
	return 0;
}

static int
restore_function(void *arg, const char *id, const char *name, const uint8_t *data, size_t len)
{
	(void)name;
	struct restore *r = arg;
	Modal__Client__FunctionCreateResponse *rec = pb_unpack(&modal__client__function_create_response__descriptor, data, len);
	if (rec == NULL || rec->function == NULL || rec->handle_metadata == NULL) {
		log_warn("restore: function %s is corrupt in the store; skipping it", id);
		pb_free(rec);
		return 0;
	}
	struct cove_function *fn = cove_sched_function_insert(r->s, r->app, id, rec->function->function_name);
	fn->def = rec->function;
	fn->meta = rec->handle_metadata;
	rec->function = NULL;
	rec->handle_metadata = NULL;
	pb_free(rec);
	r->n_fns++;
	r->fn = fn;
	struct cove_error *err = NULL;
	if (cove_store_each_call(r->s->ctx->store, fn->id, restore_call, r, &err) < 0) {
		log_warn("restore calls of %s: %s", fn->id, err->msg);
		cove_error_free(err);
	}
	return 0;
}

static int
restore_class(void *arg, const char *id, const char *name, const uint8_t *data, size_t len)
{
	(void)data;
	(void)len;
	struct restore *r = arg;
	if (name == NULL)
		return 0;
	cove_map_put(&r->s->classes, id, r->app);
	free(cove_map_put(&r->app->classes, name, xstrdup(id)));
	return 0;
}

int
cove_sched_restore(struct cove_sched *s, struct cove_error **err)
{
	struct restore r = {.s = s};
	int rv = -1;
	if (cove_store_each_app(s->ctx->store, restore_app, &r, err) < 0)
		goto out;
	size_t it = 0;
	void *v;
	while (cove_map_next(&s->apps, &it, NULL, &v)) {
		r.app = v;
		if (cove_store_each_object(s->ctx->store, "function", r.app->id, restore_function, &r, err) < 0 ||
		    cove_store_each_object(s->ctx->store, "class", r.app->id, restore_class, &r, err) < 0)
			goto out;
	}
	for (size_t i = 0; i < r.n_stale; i++) {
		struct cove_store_app row = {.id = r.stale[i]};
		(void)row;
		if (cove_store_app_mark_stopped(s->ctx->store, r.stale[i], err) < 0)
			goto out;
	}
	if (r.n_fns || r.n_stale)
		log_info("restored %zu deployed apps (%zu functions, %zu calls, %zu unfinished inputs); %zu apps from the "
			 "previous run marked stopped",
			 s->apps.len, r.n_fns, r.n_calls, r.n_pending, r.n_stale);
	it = 0;
	while (cove_map_next(&s->functions, &it, NULL, &v))
		cove_sched_kick(s, v);
	rv = 0;
out:
	for (size_t i = 0; i < r.n_stale; i++)
		free(r.stale[i]);
	free(r.stale);
	return rv;
}
