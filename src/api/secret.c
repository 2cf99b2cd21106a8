/* Secrets: sets of environment variables, injected into containers. Values never leave the server except
 * into a container's environment. */
#include <string.h>

#include "api/api.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/ids.h"
#include "util/pb.h"

static int
valid_env_key(const char *k)
{
	if (k == NULL || *k == '\0' || strlen(k) > 1024)
		return 0;
	for (const char *p = k; *p; p++)
		if (*p == '=')
			return 0;
	return 1;
}

static void
reply_secret(struct cove_api_req *req, const char *id, const char *name, const char *env,
	     const Modal__Client__SecretGetOrCreateRequest *def)
{
	char **keys = xcalloc(def->n_env_dict, sizeof(char *));
	for (size_t i = 0; i < def->n_env_dict; i++)
		keys[i] = def->env_dict[i]->key;
	Modal__Client__SecretMetadata meta = MODAL__CLIENT__SECRET_METADATA__INIT;
	meta.name = (char *)(name ? name : "");
	meta.environment_name = (char *)env;
	meta.n_keys = def->n_env_dict;
	meta.keys = keys;
	Modal__Client__SecretGetOrCreateResponse resp = MODAL__CLIENT__SECRET_GET_OR_CREATE_RESPONSE__INIT;
	resp.secret_id = (char *)id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
	free(keys);
}

void
cove_api_SecretGetOrCreate(struct cove_api_req *req)
{
	const Modal__Client__SecretGetOrCreateRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	for (size_t i = 0; i < r->n_env_dict; i++) {
		if (!valid_env_key(r->env_dict[i]->key)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "secret key '%s' is not a valid environment "
					   "variable name", r->env_dict[i]->key);
			return;
		}
	}
	const char *name = r->deployment_name && *r->deployment_name ? r->deployment_name : NULL;
	int ctype = r->object_creation_type;
	if (name) {
		cleanup_free char *existing = NULL;
		int found = cove_store_object_find(req->ctx->store, "secret", env, name, &existing, &err) == 0;
		cove_error_free(err);
		err = NULL;
		if (found && ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS) {
			cove_api_fail_code(req->call, COVE_ALREADY_EXISTS, "Secret '%s' already exists in environment '%s'",
					   name, env);
			return;
		}
		if (ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED) {
			if (!found) {
				cove_api_fail_code(req->call, COVE_NOT_FOUND, "Secret '%s' not found in environment '%s'", name,
						   env);
				return;
			}
			cleanup_free uint8_t *data = NULL;
			size_t len = 0;
			if (cove_store_object_get(req->ctx->store, existing, NULL, &data, &len, &err) < 0) {
				cove_api_fail(req->call, err);
				return;
			}
			Modal__Client__SecretGetOrCreateRequest *def =
				pb_unpack(&modal__client__secret_get_or_create_request__descriptor, data, len);
			if (def == NULL) {
				cove_api_fail_code(req->call, COVE_DATA_LOSS, "Secret '%s' is corrupt in the store", name);
				return;
			}
			for (size_t i = 0; i < r->n_required_keys; i++) {
				int have = 0;
				for (size_t j = 0; j < def->n_env_dict && !have; j++)
					have = strcmp(def->env_dict[j]->key, r->required_keys[i]) == 0;
				if (!have) {
					cove_api_fail_code(req->call, COVE_NOT_FOUND, "Secret '%s' is missing required key '%s'",
							   name, r->required_keys[i]);
					pb_free(def);
					return;
				}
			}
			reply_secret(req, existing, name, env, def);
			pb_free(def);
			return;
		}
	}
	cleanup_free char *id = cove_id_new("st");
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&r->base, &len);
	if (cove_store_object_put(req->ctx->store, id, "secret", r->app_id, env, name, bytes, len, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	reply_secret(req, id, name, env, r);
}
