/* Deployed apps, classes, bound class instances, and bringing them back after a restart. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
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

/* A setting of the definition's autoscaler block too, where it has one (that block wins over the older fields
 * when both are set: see sched.c's SETTING). */
#define AUTOSCALER_SET(def, field, FIELD, value)                                                               \
	do {                                                                                                   \
		if ((def)->autoscaler_settings) {                                                              \
			(def)->autoscaler_settings->_##field##_case =                                          \
				MODAL__CLIENT__AUTOSCALER_SETTINGS___##FIELD##_##FIELD;                        \
			(def)->autoscaler_settings->field = (value);                                           \
		}                                                                                              \
	} while (0)

/* names[0..n) + more[0..m) (or more alone with replace): a new array of borrowed pointers (caller frees it). */
static void **
joined(void **names, size_t n, void **more, size_t m, int replace, size_t *out_n)
{
	size_t keep = replace ? 0 : n;
	void **v = xcalloc(keep + m + 1, sizeof(void *));
	for (size_t i = 0; i < keep; i++)
		v[i] = names[i];
	for (size_t i = 0; i < m; i++)
		v[keep + i] = more[i];
	*out_n = keep + m;
	return v;
}

/* The definition with FunctionOptions (with_options, with_concurrency, with_batching) applied: a new copy (the
 * caller frees it), or NULL + *err for an option Cove does not serve (it fails loudly rather than be dropped).
 * Scalars replace the definition's; resources and the retry policy replace its whole block, as the client
 * merges them before sending; secrets, volumes and mounts add to the definition's unless the options say
 * replace. Region, cloud and routing region are kept, as for the function itself (not enforced). */
static Modal__Client__Function *
with_options(const Modal__Client__Function *def, const Modal__Client__FunctionOptions *o, struct cove_error **err)
{
	if (o->n_cloud_bucket_mounts > 0) {
		cove_error_set(err, COVE_UNIMPLEMENTED, "with_options: CloudBucketMount volumes are not served by Cove");
		return NULL;
	}
	Modal__Client__Function tmp = *def;
	cleanup_free void **secrets = NULL, **volumes = NULL, **mounts = NULL;
	if (o->n_secret_ids || o->replace_secret_ids) {
		secrets = joined((void **)def->secret_ids, def->n_secret_ids, (void **)o->secret_ids, o->n_secret_ids,
				 o->replace_secret_ids, &tmp.n_secret_ids);
		tmp.secret_ids = (char **)secrets;
	}
	if (o->n_volume_mounts || o->replace_volume_mounts) {
		volumes = joined((void **)def->volume_mounts, def->n_volume_mounts, (void **)o->volume_mounts,
				 o->n_volume_mounts, o->replace_volume_mounts, &tmp.n_volume_mounts);
		tmp.volume_mounts = (Modal__Client__VolumeMount **)volumes;
	}
	if (o->n_mount_ids) {
		mounts = joined((void **)def->mount_ids, def->n_mount_ids, (void **)o->mount_ids, o->n_mount_ids, 0,
				&tmp.n_mount_ids);
		tmp.mount_ids = (char **)mounts;
	}
	if (o->_resources_case && o->resources)
		tmp.resources = o->resources;
	if (o->_retry_policy_case && o->retry_policy)
		tmp.retry_policy = o->retry_policy;
	if (o->_scheduler_placement_case && o->scheduler_placement) {
		tmp._scheduler_placement_case = MODAL__CLIENT__FUNCTION___SCHEDULER_PLACEMENT_SCHEDULER_PLACEMENT;
		tmp.scheduler_placement = o->scheduler_placement;
	}
	if (o->_cloud_provider_str_case && o->cloud_provider_str)
		tmp.cloud_provider_str = o->cloud_provider_str;
	if (o->_routing_region_case && o->routing_region)
		tmp.routing_region = o->routing_region;
	/* One copy of it all: what tmp borrows from def and from the options is owned by the copy alone. */
	Modal__Client__Function *out = pb_dup(&tmp.base);
	if (o->_timeout_secs_case)
		out->timeout_secs = o->timeout_secs;
	if (o->_concurrency_limit_case) {
		out->concurrency_limit = o->concurrency_limit;
		AUTOSCALER_SET(out, max_containers, MAX_CONTAINERS, o->concurrency_limit);
	}
	if (o->_task_idle_timeout_secs_case) {
		out->task_idle_timeout_secs = o->task_idle_timeout_secs;
		AUTOSCALER_SET(out, scaledown_window, SCALEDOWN_WINDOW, o->task_idle_timeout_secs);
	}
	if (o->_warm_pool_size_case) {
		out->warm_pool_size = o->warm_pool_size;
		AUTOSCALER_SET(out, min_containers, MIN_CONTAINERS, o->warm_pool_size);
	}
	if (o->_buffer_containers_case) {
		out->_experimental_buffer_containers = o->buffer_containers;
		AUTOSCALER_SET(out, buffer_containers, BUFFER_CONTAINERS, o->buffer_containers);
	}
	if (o->_max_concurrent_inputs_case)
		out->max_concurrent_inputs = o->max_concurrent_inputs;
	if (o->_target_concurrent_inputs_case)
		out->target_concurrent_inputs = o->target_concurrent_inputs;
	if (o->_batch_max_size_case)
		out->batch_max_size = o->batch_max_size;
	if (o->_batch_linger_ms_case)
		out->batch_linger_ms = o->batch_linger_ms;
	return out;
}

struct cove_function *
cove_sched_function_bind(struct cove_sched *s, struct cove_function *base, const uint8_t *params, size_t params_len,
			 const Modal__Client__FunctionOptions *opts, struct cove_error **err)
{
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
	Modal__Client__Function *def = opts ? with_options(base->def, opts, err) : pb_dup(&base->def->base);
	if (def == NULL)
		return NULL;
	fn = xcalloc(1, sizeof(*fn));
	fn->id = cove_id_new("fu");
	fn->tag = xstrdup(base->tag);
	fn->app = base->app;
	fn->parent = base;
	fn->def = def;
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
restore_call(void *arg, const char *call_id, int call_type, int invocation_type, const char *parent_input_id)
{
	struct restore *r = arg;
	r->fc = cove_sched_call_insert(r->s, r->fn, call_id, call_type, invocation_type, parent_input_id);
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
restore_deployment(void *arg, const char *id, const char *name, const uint8_t *data, size_t len)
{
	(void)id;
	(void)data;
	(void)len;
	struct restore *r = arg;
	uint32_t v = name ? (uint32_t)strtoul(name, NULL, 10) : 0;
	if (v > r->app->version)
		r->app->version = v;
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
		    cove_store_each_object(s->ctx->store, "class", r.app->id, restore_class, &r, err) < 0 ||
		    cove_store_each_object(s->ctx->store, "deployment", r.app->id, restore_deployment, &r, err) < 0)
			goto out;
	}
	it = 0;
	while (cove_map_next(&s->apps, &it, NULL, &v))
		cove_sched_app_digest(s, v, ((struct cove_app *)v)->digest);
	for (size_t i = 0; i < r.n_stale; i++) {
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

/* ---- deployment history ---- */

static double
now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The rows of one deployment: every function's definition as of this version, and the history entry. */
static int
record_rows(struct cove_sched *s, struct cove_app *app, uint32_t version, double at, const char *client_version,
	    const char *tag, const Modal__Client__CommitInfo *commit, uint32_t rollback_version, struct cove_error **err)
{
	size_t it = 0;
	void *v;
	while (cove_map_next(&app->functions, &it, NULL, &v)) {
		struct cove_function *fn = v;
		if (fn->def == NULL || fn->parent)
			continue;
		Modal__Client__FunctionCreateResponse rec = MODAL__CLIENT__FUNCTION_CREATE_RESPONSE__INIT;
		rec.function_id = fn->id;
		rec.function = fn->def;
		rec.handle_metadata = fn->meta;
		size_t len;
		cleanup_free uint8_t *bytes = pb_pack(&rec.base, &len);
		cleanup_free char *id = xasprintf("%s@%u", fn->id, version);
		if (cove_store_object_put(s->ctx->store, id, "function_version", app->id, app->env, fn->tag, bytes, len,
					  err) < 0)
			return -1;
	}
	char vbuf[16];
	snprintf(vbuf, sizeof(vbuf), "%u", version);
	Modal__Client__AppDeploymentHistory h = MODAL__CLIENT__APP_DEPLOYMENT_HISTORY__INIT;
	h.app_id = app->id;
	h.version = version;
	h.client_version = (char *)(client_version ? client_version : "");
	h.deployed_at = at;
	h.deployed_by = "";
	h.tag = (char *)(tag ? tag : "");
	h.rollback_version = rollback_version;
	h.rollback_allowed = 1;
	if (commit) {
		h._commit_info_case = MODAL__CLIENT__APP_DEPLOYMENT_HISTORY___COMMIT_INFO_COMMIT_INFO;
		h.commit_info = (Modal__Client__CommitInfo *)commit;
	}
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&h.base, &len);
	cleanup_free char *id = xasprintf("%s#%u", app->id, version);
	return cove_store_object_put(s->ctx->store, id, "deployment", app->id, app->env, vbuf, bytes, len, err);
}

int
cove_sched_deployment_record(struct cove_sched *s, struct cove_app *app, const char *client_version, const char *tag,
			     const Modal__Client__CommitInfo *commit, uint32_t rollback_version, struct cove_error **err)
{
	uint32_t version = app->version + 1;
	double at = now_wall();
	if (cove_store_begin(s->ctx->store, err) < 0)
		return -1;
	if (record_rows(s, app, version, at, client_version, tag, commit, rollback_version, err) < 0 ||
	    cove_store_commit(s->ctx->store, err) < 0) {
		cove_store_rollback(s->ctx->store);
		return -1;
	}
	app->version = version;
	app->deployed_at = at;
	return 0;
}

struct history {
	Modal__Client__AppDeploymentHistory **items;
	size_t n;
};

static int
history_one(void *arg, const char *id, const char *name, const uint8_t *data, size_t len)
{
	(void)id;
	(void)name;
	struct history *h = arg;
	Modal__Client__AppDeploymentHistory *e = pb_unpack(&modal__client__app_deployment_history__descriptor, data, len);
	if (e == NULL)
		return 0;
	h->items = xrealloc(h->items, (h->n + 1) * sizeof(*h->items));
	h->items[h->n++] = e;
	return 0;
}

int
cove_sched_deployment_history(struct cove_sched *s, struct cove_app *app, Modal__Client__AppDeploymentHistory ***out,
			      size_t *n, struct cove_error **err)
{
	struct history h = {0};
	if (cove_store_each_object(s->ctx->store, "deployment", app->id, history_one, &h, err) < 0) {
		for (size_t i = 0; i < h.n; i++)
			pb_free(h.items[i]);
		free(h.items);
		return -1;
	}
	*out = h.items;
	*n = h.n;
	return 0;
}

struct rollback {
	struct cove_sched *s;
	struct cove_app *app;
	const char *suffix; /* "@<version>" */
	size_t n;
	struct cove_error **err;
	int failed;
};

static int
rollback_function(void *arg, const char *id, const char *name, const uint8_t *data, size_t len)
{
	struct rollback *r = arg;
	size_t il = strlen(id), sl = strlen(r->suffix);
	if (r->failed || il <= sl || strcmp(id + il - sl, r->suffix) != 0 || name == NULL)
		return 0;
	Modal__Client__FunctionCreateResponse *rec = pb_unpack(&modal__client__function_create_response__descriptor, data, len);
	if (rec == NULL || rec->function == NULL || rec->handle_metadata == NULL) {
		pb_free(rec);
		return 0;
	}
	struct cove_function *fn = cove_sched_function_get(r->s, rec->function_id);
	if (fn == NULL)
		fn = cove_sched_function_insert(r->s, r->app, rec->function_id, name);
	pb_free(fn->meta);
	fn->meta = rec->handle_metadata;
	rec->handle_metadata = NULL;
	Modal__Client__Function *def = rec->function;
	rec->function = NULL;
	pb_free(rec);
	if (cove_sched_function_define(r->s, fn, def, r->err) < 0)
		r->failed = 1;
	r->n++;
	return 0;
}

int
cove_sched_deployment_rollback(struct cove_sched *s, struct cove_app *app, uint32_t version, struct cove_error **err)
{
	if (version == 0 || version >= app->version)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "app %s has no earlier version %u (current version is %u)",
				      app->name, version, app->version);
	cleanup_free char *suffix = xasprintf("@%u", version);
	struct rollback r = {.s = s, .app = app, .suffix = suffix, .err = err};
	if (cove_store_each_object(s->ctx->store, "function_version", app->id, rollback_function, &r, err) < 0 || r.failed)
		return -1;
	if (r.n == 0)
		return cove_error_set(err, COVE_NOT_FOUND, "version %u of app %s has no recorded functions", version, app->name);
	cove_sched_app_drain(s, app);
	cove_sched_app_digest(s, app, app->digest);
	return cove_sched_deployment_record(s, app, NULL, NULL, NULL, version, err);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A secret by its content: from_dict secrets are new objects on every deploy, with the same variables. */
static char *
secret_content_id(struct cove_sched *s, const char *id)
{
	cleanup_free uint8_t *data = NULL;
	size_t len = 0;
	struct cove_error *err = NULL;
	if (cove_store_object_get(s->ctx->store, id, NULL, &data, &len, &err) < 0) {
		cove_error_free(err);
		return xstrdup(id);
	}
	char hex[65];
	cove_sha256_hex(data, len, hex);
	return xasprintf("secret:%s", hex);
}

void
cove_sched_app_digest(struct cove_sched *s, struct cove_app *app, char out[65])
{
	/* Tags sorted, so the digest does not depend on the map's layout. */
	const char **tags = xcalloc(app->functions.len + 1, sizeof(char *));
	size_t n = 0, it = 0;
	const char *key;
	void *v;
	while (cove_map_next(&app->functions, &it, &key, &v))
		if (((struct cove_function *)v)->def)
			tags[n++] = key;
	qsort(tags, n, sizeof(*tags), cmp_str);
	struct cove_sha256_ctx *h = cove_sha256_new();
	for (size_t i = 0; i < n; i++) {
		struct cove_function *fn = cove_map_get(&app->functions, tags[i]);
		/* The client lists mounts in the order its uploads finished: compare them as a set; secrets by
		 * what they hold. */
		Modal__Client__Function def = *fn->def;
		char **mounts = xcalloc(def.n_mount_ids + 1, sizeof(char *));
		if (def.n_mount_ids)
			memcpy(mounts, def.mount_ids, def.n_mount_ids * sizeof(char *));
		qsort(mounts, def.n_mount_ids, sizeof(char *), cmp_str);
		char **secrets = xcalloc(def.n_secret_ids + 1, sizeof(char *));
		for (size_t k = 0; k < def.n_secret_ids; k++)
			secrets[k] = secret_content_id(s, def.secret_ids[k]);
		qsort(secrets, def.n_secret_ids, sizeof(char *), cmp_str);
		def.mount_ids = mounts;
		def.secret_ids = secrets;
		/* object_dependencies carry the same ids again. */
		def.n_object_dependencies = 0;
		def.object_dependencies = NULL;
		size_t len;
		cleanup_free uint8_t *bytes = pb_pack(&def.base, &len);
		for (size_t k = 0; k < def.n_secret_ids; k++)
			free(secrets[k]);
		free(secrets);
		free(mounts);
		cove_sha256_update(h, tags[i], strlen(tags[i]) + 1);
		cove_sha256_update(h, bytes, len);
	}
	uint8_t d[32];
	cove_sha256_final(h, d);
	cove_hex(d, 32, out);
	free(tags);
}
