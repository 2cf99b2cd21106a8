/* Functions: FunctionPrecreate reserves an id and its handle metadata; FunctionCreate stores the definition. */
#include <string.h>

#include "api/api.h"
#include "gateway/gateway.h"
#include "sched/sched.h"
#include "server.h"
#include "util/alloc.h"
#include "util/pb.h"

struct meta_src {
	const char *app_id;
	const char *function_name;
	int function_type;
	size_t n_in;
	Modal__Client__DataFormat *in;
	size_t n_out;
	Modal__Client__DataFormat *out;
	Modal__Client__ClassParameterInfo *class_parameter_info;
	Modal__Client__FunctionSchema *function_schema;
	const char *web_url;
	/* method definitions, as key/value pairs */
	size_t n_methods;
	const char **method_names;
	Modal__Client__MethodDefinition **methods;
};

/* The handle metadata the client hydrates a Function with; owned copy. */
static Modal__Client__FunctionHandleMetadata *
build_meta(const struct meta_src *src)
{
	Modal__Client__FunctionHandleMetadata m = MODAL__CLIENT__FUNCTION_HANDLE_METADATA__INIT;
	m.function_name = (char *)src->function_name;
	m.function_type = src->function_type;
	m.n_supported_input_formats = src->n_in;
	m.supported_input_formats = src->in;
	m.n_supported_output_formats = src->n_out;
	m.supported_output_formats = src->out;
	m.class_parameter_info = src->class_parameter_info;
	m.function_schema = src->function_schema;
	m.app_id = (char *)src->app_id;
	m.web_url = (char *)(src->web_url ? src->web_url : "");
	m.n_method_handle_metadata = src->n_methods;
	Modal__Client__FunctionHandleMetadata__MethodHandleMetadataEntry *entries =
		xcalloc(src->n_methods, sizeof(*entries));
	Modal__Client__FunctionHandleMetadata *values = xcalloc(src->n_methods, sizeof(*values));
	m.method_handle_metadata = xcalloc(src->n_methods, sizeof(*m.method_handle_metadata));
	cleanup_free char **names = xcalloc(src->n_methods, sizeof(char *));
	for (size_t i = 0; i < src->n_methods; i++) {
		const Modal__Client__MethodDefinition *def = src->methods[i];
		Modal__Client__FunctionHandleMetadata__MethodHandleMetadataEntry e =
			MODAL__CLIENT__FUNCTION_HANDLE_METADATA__METHOD_HANDLE_METADATA_ENTRY__INIT;
		Modal__Client__FunctionHandleMetadata v = MODAL__CLIENT__FUNCTION_HANDLE_METADATA__INIT;
		names[i] = xasprintf("%s", def->function_name);
		v.function_name = names[i];
		v.function_type = def->function_type;
		v.use_method_name = (char *)src->method_names[i];
		v.is_method = 1;
		v.app_id = (char *)src->app_id;
		v.web_url = def->web_url;
		v.function_schema = def->function_schema;
		v.n_supported_input_formats = def->n_supported_input_formats;
		v.supported_input_formats = def->supported_input_formats;
		v.n_supported_output_formats = def->n_supported_output_formats;
		v.supported_output_formats = def->supported_output_formats;
		v.class_parameter_info = src->class_parameter_info;
		values[i] = v;
		e.key = (char *)src->method_names[i];
		e.value = &values[i];
		entries[i] = e;
		m.method_handle_metadata[i] = &entries[i];
	}
	Modal__Client__FunctionHandleMetadata *copy = pb_dup(&m.base);
	for (size_t i = 0; i < src->n_methods; i++)
		free(names[i]);
	free(m.method_handle_metadata);
	free(entries);
	free(values);
	return copy;
}

/* FunctionData as the client reads it (FunctionInfo): borrowed from fn. */
struct function_data {
	Modal__Client__FunctionData data;
	Modal__Client__FunctionData__RankedFunction ranked;
	Modal__Client__FunctionData__RankedFunction *list[1];
};

static void
function_data_of(const struct cove_function *fn, struct function_data *fd)
{
	Modal__Client__FunctionData__RankedFunction ranked = MODAL__CLIENT__FUNCTION_DATA__RANKED_FUNCTION__INIT;
	Modal__Client__FunctionData data = MODAL__CLIENT__FUNCTION_DATA__INIT;
	fd->ranked = ranked;
	fd->ranked.function = fn->def;
	fd->list[0] = &fd->ranked;
	fd->data = data;
	fd->data.module_name = fn->def->module_name;
	fd->data.function_name = fn->def->function_name;
	fd->data.function_type = fn->def->function_type;
	fd->data.timeout_secs = fn->def->timeout_secs;
	fd->data.is_class = fn->def->is_class;
	fd->data.class_parameter_info = fn->def->class_parameter_info;
	fd->data.n_ranked_functions = 1;
	fd->data.ranked_functions = fd->list;
}

static int
valid_tag(const char *tag)
{
	if (tag == NULL || *tag == '\0' || strlen(tag) > 256)
		return 0;
	for (const char *p = tag; *p; p++)
		if ((unsigned char)*p < 0x20)
			return 0;
	return 1;
}

void
cove_api_FunctionPrecreate(struct cove_api_req *req)
{
	const Modal__Client__FunctionPrecreateRequest *r = (const void *)req->msg;
	struct cove_app *app = cove_sched_app_get(req->ctx->sched, r->app_id);
	if (app == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "App %s not found", r->app_id);
		return;
	}
	if (!valid_tag(r->function_name)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "FunctionPrecreate: invalid function name");
		return;
	}
	struct cove_error *err = NULL;
	struct cove_function *fn =
		cove_sched_function_precreate(req->ctx->sched, app, r->function_name, r->existing_function_id, &err);
	if (fn == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	/* Web endpoints: the function's URL, and its methods' (filled into the request's definitions). */
	cleanup_free char *web_url =
		cove_gateway_precreate_url(req->ctx->gateway, app, (Modal__Client__FunctionPrecreateRequest *)r);
	struct meta_src src = {
		.app_id = app->id,
		.function_name = r->function_name,
		.function_type = r->function_type,
		.n_in = r->n_supported_input_formats,
		.in = r->supported_input_formats,
		.n_out = r->n_supported_output_formats,
		.out = r->supported_output_formats,
		.function_schema = r->function_schema,
		.web_url = web_url,
		.n_methods = r->n_method_definitions,
	};
	src.method_names = xcalloc(r->n_method_definitions, sizeof(char *));
	src.methods = xcalloc(r->n_method_definitions, sizeof(void *));
	for (size_t i = 0; i < r->n_method_definitions; i++) {
		src.method_names[i] = r->method_definitions[i]->key;
		src.methods[i] = r->method_definitions[i]->value;
	}
	pb_free(fn->meta);
	fn->meta = build_meta(&src);
	free(src.method_names);
	free(src.methods);
	Modal__Client__FunctionPrecreateResponse resp = MODAL__CLIENT__FUNCTION_PRECREATE_RESPONSE__INIT;
	resp.function_id = fn->id;
	resp.handle_metadata = fn->meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_FunctionCreate(struct cove_api_req *req)
{
	const Modal__Client__FunctionCreateRequest *r = (const void *)req->msg;
	struct cove_app *app = cove_sched_app_get(req->ctx->sched, r->app_id);
	if (app == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "App %s not found", r->app_id);
		return;
	}
	/* A list of GPU choices arrives as ranked copies of the definition; rank 0 is what we run. */
	const Modal__Client__Function *given = r->function;
	if (given == NULL && r->function_data && r->function_data->n_ranked_functions > 0)
		given = r->function_data->ranked_functions[0]->function;
	if (given == NULL) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "FunctionCreate: no function definition given");
		return;
	}
	if (!valid_tag(given->function_name)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "FunctionCreate: invalid function name");
		return;
	}
	if (given->definition_type == MODAL__CLIENT__FUNCTION__DEFINITION_TYPE__DEFINITION_TYPE_FILE &&
	    (given->module_name == NULL || *given->module_name == '\0')) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "FunctionCreate: function %s has no module name",
				   given->function_name);
		return;
	}
	struct cove_error *err = NULL;
	struct cove_function *fn = NULL;
	if (r->existing_function_id && *r->existing_function_id) {
		fn = cove_sched_function_get(req->ctx->sched, r->existing_function_id);
		if (fn == NULL || fn->app != app) {
			cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function %s not found in app %s",
					   r->existing_function_id, app->id);
			return;
		}
	} else {
		fn = cove_sched_function_precreate(req->ctx->sched, app, given->function_name, NULL, &err);
		if (fn == NULL) {
			cove_api_fail(req->call, err);
			return;
		}
	}
	Modal__Client__Function *def = pb_dup(&given->base);
	cove_gateway_assign_urls(req->ctx->gateway, app, def); /* web endpoints' URLs */
	struct meta_src src = {
		.app_id = app->id,
		.function_name = def->function_name,
		.function_type = def->function_type,
		.n_in = def->n_supported_input_formats,
		.in = def->supported_input_formats,
		.n_out = def->n_supported_output_formats,
		.out = def->supported_output_formats,
		.class_parameter_info = def->class_parameter_info,
		.function_schema = def->function_schema,
		.web_url = def->web_url,
		.n_methods = def->n_method_definitions,
	};
	src.method_names = xcalloc(def->n_method_definitions, sizeof(char *));
	src.methods = xcalloc(def->n_method_definitions, sizeof(void *));
	for (size_t i = 0; i < def->n_method_definitions; i++) {
		src.method_names[i] = def->method_definitions[i]->key;
		src.methods[i] = def->method_definitions[i]->value;
	}
	pb_free(fn->meta);
	fn->meta = build_meta(&src);
	free(src.method_names);
	free(src.methods);
	if (cove_sched_function_define(req->ctx->sched, fn, def, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	/* The client reads the definition back from function_data (FunctionInfo) and function. */
	struct function_data fd;
	function_data_of(fn, &fd);
	Modal__Client__FunctionCreateResponse resp = MODAL__CLIENT__FUNCTION_CREATE_RESPONSE__INIT;
	resp.function_id = fn->id;
	resp.function = fn->def;
	resp.handle_metadata = fn->meta;
	resp.function_data = (r->function_data && r->function_data->n_ranked_functions > 0) ? r->function_data : &fd.data;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_FunctionGet(struct cove_api_req *req)
{
	const Modal__Client__FunctionGetRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	struct cove_app *app = cove_sched_app_by_name(req->ctx->sched, env, r->app_name);
	if (app == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "App '%s' not found in environment '%s'", r->app_name, env);
		return;
	}
	struct cove_function *fn = cove_map_get(&app->functions, r->object_tag);
	if (fn == NULL || fn->def == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function '%s' not found in app '%s'", r->object_tag,
				   r->app_name);
		return;
	}
	struct function_data fd;
	function_data_of(fn, &fd);
	Modal__Client__FunctionGetResponse resp = MODAL__CLIENT__FUNCTION_GET_RESPONSE__INIT;
	resp.function_id = fn->id;
	resp.handle_metadata = fn->meta;
	resp.function = &fd.data;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_FunctionBindParams(struct cove_api_req *req)
{
	const Modal__Client__FunctionBindParamsRequest *r = (const void *)req->msg;
	struct cove_function *base = cove_sched_function_get(req->ctx->sched, r->function_id);
	if (base == NULL || base->def == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function %s not found", r->function_id);
		return;
	}
	if (base->parent != NULL) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "Function %s is already bound", r->function_id);
		return;
	}
	/* A class's service function binds parameters and options; a plain function only options (with_options,
	 * with_concurrency, with_batching). */
	if (!base->def->is_class && r->serialized_params.len > 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "Function %s is not a class service function: it takes no parameters", r->function_id);
		return;
	}
	struct cove_error *err = NULL;
	struct cove_function *fn = cove_sched_function_bind(req->ctx->sched, base, r->serialized_params.data,
							    r->serialized_params.len, r->function_options, &err);
	if (fn == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	Modal__Client__FunctionBindParamsResponse resp = MODAL__CLIENT__FUNCTION_BIND_PARAMS_RESPONSE__INIT;
	resp.bound_function_id = fn->id;
	resp.handle_metadata = fn->meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_FunctionUpdateSchedulingParams(struct cove_api_req *req)
{
	const Modal__Client__FunctionUpdateSchedulingParamsRequest *r = (const void *)req->msg;
	struct cove_function *fn = cove_sched_function_get(req->ctx->sched, r->function_id);
	if (fn == NULL || fn->def == NULL) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Function %s not found", r->function_id);
		return;
	}
	const Modal__Client__AutoscalerSettings *u = r->settings;
	if (u && u->_scaledown_window_case && (u->scaledown_window < 2 || u->scaledown_window > 3600)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "scaledown_window must be between 2 and 3600 seconds");
		return;
	}
	if (u && u->_max_containers_case && u->_min_containers_case && u->min_containers > u->max_containers) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "min_containers (%u) exceeds max_containers (%u)",
				   u->min_containers, u->max_containers);
		return;
	}
	Modal__Client__AutoscalerSettings legacy = MODAL__CLIENT__AUTOSCALER_SETTINGS__INIT;
	if (u == NULL && r->warm_pool_size_override) {
		legacy._min_containers_case = MODAL__CLIENT__AUTOSCALER_SETTINGS___MIN_CONTAINERS_MIN_CONTAINERS;
		legacy.min_containers = r->warm_pool_size_override;
		u = &legacy;
	}
	Modal__Client__AutoscalerSettings *current = cove_sched_function_autoscaler(req->ctx->sched, fn, u);
	Modal__Client__FunctionUpdateSchedulingParamsResponse resp =
		MODAL__CLIENT__FUNCTION_UPDATE_SCHEDULING_PARAMS_RESPONSE__INIT;
	resp.current_settings = current;
	cove_api_reply(req->call, &resp.base);
	pb_free(current);
}
