/* Secrets: sets of environment variables, injected into containers. Values never leave the server except
 * into a container's environment: every answer carries names and keys only.
 *
 * A secret is a row of the objects table (kind "secret") whose data is the SecretGetOrCreateRequest that
 * defined it (the scheduler reads env_dict from it when it starts a container). Named secrets are unique per
 * environment; updates rewrite the row in place, so functions that hold the id see the new values. */
#include <sqlite3.h>
#include <string.h>

#include "api/api.h"
#include "server.h"
#include "store/kv.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/ids.h"
#include "util/pb.h"

#define MAX_SECRET_KEYS 1000
#define MAX_KEY_BYTES 1024
#define MAX_VALUE_BYTES (1024 * 1024)

typedef Modal__Client__SecretGetOrCreateRequest SecretDef;
typedef Modal__Client__SecretGetOrCreateRequest__EnvDictEntry SecretEntry;

static void
finalize_stmt(sqlite3_stmt **st)
{
	if (*st)
		sqlite3_finalize(*st);
}
#define cleanup_stmt __attribute__((cleanup(finalize_stmt)))

/* One stored secret: its row and its parsed definition. */
struct secret {
	char *id;
	char *env;
	char *name; /* NULL: anonymous */
	char *app_id;
	double created_at;
	SecretDef *def;
};

static void
secret_clear(struct secret *s)
{
	free(s->id);
	free(s->env);
	free(s->name);
	free(s->app_id);
	if (s->def)
		pb_free(s->def);
	memset(s, 0, sizeof(*s));
}
#define cleanup_secret __attribute__((cleanup(secret_clear)))

static char *
dup_col(sqlite3_stmt *st, int i)
{
	const char *v = (const char *)sqlite3_column_text(st, i);
	return v ? xstrdup(v) : NULL;
}

/* Fill s from the current row of st: id, env, name, app_id, created_at, data. */
static int
secret_from_row(sqlite3_stmt *st, struct secret *s, struct cove_error **err)
{
	s->id = dup_col(st, 0);
	s->env = dup_col(st, 1);
	s->name = dup_col(st, 2);
	s->app_id = dup_col(st, 3);
	s->created_at = sqlite3_column_double(st, 4);
	s->def = pb_unpack(&modal__client__secret_get_or_create_request__descriptor, sqlite3_column_blob(st, 5),
			   (size_t)sqlite3_column_bytes(st, 5));
	if (s->env == NULL)
		s->env = xstrdup("");
	if (s->def == NULL)
		return cove_error_set(err, COVE_DATA_LOSS, "Secret %s is corrupt in the store", s->id);
	return 0;
}

#define SECRET_COLUMNS "SELECT id, env, name, app_id, created_at, data FROM objects WHERE kind = 'secret' "

/* Load by id, or by (env, name) (the newest, should an older Cove have left several). 1 if found, 0 if
 * not, -1 on error. */
static int
secret_load(struct cove_store *store, const char *id, const char *env, const char *name, struct secret *s,
	    struct cove_error **err)
{
	sqlite3 *db = cove_store_sqlite(store);
	cleanup_stmt sqlite3_stmt *st = NULL;
	const char *sql = id ? SECRET_COLUMNS "AND id = ?"
			     : SECRET_COLUMNS "AND env = ? AND name = ? ORDER BY created_at DESC LIMIT 1";
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return cove_error_set(err, COVE_INTERNAL, "store: read secret: %s", sqlite3_errmsg(db));
	if (id) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	} else {
		sqlite3_bind_text(st, 1, env, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	}
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return cove_error_set(err, COVE_INTERNAL, "store: read secret: %s", sqlite3_errmsg(db));
	return secret_from_row(st, s, err) < 0 ? -1 : 1;
}

int
cove_secret_scope(struct cove_store *store, const char *id, char **env, char **name, char **app_id)
{
	if (!cove_id_valid(id, "st"))
		return 0;
	cleanup_secret struct secret s = {0};
	struct cove_error *err = NULL;
	int rc = secret_load(store, id, NULL, NULL, &s, &err);
	cove_error_free(err);
	if (rc <= 0)
		return rc;
	*env = steal_pointer(&s.env);
	*name = steal_pointer(&s.name);
	*app_id = steal_pointer(&s.app_id);
	return 1;
}

/* The secret of a request's id, or 0 after answering INVALID_ARGUMENT / NOT_FOUND / an error. */
static int
secret_by_id_or_fail(struct cove_api_req *req, const char *id, struct secret *s)
{
	if (!cove_id_valid(id, "st")) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: '%s' is not a Secret id (st-…)", req->method,
				   id ? id : "");
		return 0;
	}
	struct cove_error *err = NULL;
	int rc = secret_load(req->ctx->store, id, NULL, NULL, s, &err);
	if (rc < 0) {
		cove_api_fail(req->call, err);
		return 0;
	}
	if (rc == 0) {
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "Secret %s not found (it may have been deleted)", id);
		return 0;
	}
	return 1;
}

static int
valid_env_key(const char *k)
{
	if (k == NULL || *k == '\0' || strlen(k) > MAX_KEY_BYTES)
		return 0;
	for (const char *p = k; *p; p++)
		if (*p == '=')
			return 0;
	return 1;
}

/* Every key a valid variable name, every value within limits; -1 after answering. */
static int
check_env(struct cove_api_req *req, SecretEntry *const *entries, size_t n)
{
	if (n > MAX_SECRET_KEYS) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "a Secret holds at most %d keys, not %zu",
				   MAX_SECRET_KEYS, n);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!valid_env_key(entries[i]->key)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
					   "secret key '%s' is not a valid environment variable name", entries[i]->key);
			return -1;
		}
		if (entries[i]->value && strlen(entries[i]->value) > MAX_VALUE_BYTES) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
					   "the value of secret key '%s' is over the limit of 1 MiB", entries[i]->key);
			return -1;
		}
	}
	return 0;
}

/* Metadata of a secret: name and keys, never values. keys is a caller-provided array of n_env_dict. */
static void
fill_metadata(Modal__Client__SecretMetadata *meta, Modal__Client__CreationInfo *ci, char **keys,
	      const struct secret *s)
{
	for (size_t i = 0; i < s->def->n_env_dict; i++)
		keys[i] = s->def->env_dict[i]->key;
	ci->created_at = s->created_at;
	ci->created_by = "";
	meta->name = s->name ? s->name : "";
	meta->environment_name = s->env;
	meta->creation_info = ci;
	meta->n_keys = s->def->n_env_dict;
	meta->keys = keys;
}

static void
reply_secret(struct cove_api_req *req, const struct secret *s)
{
	cleanup_free char **keys = xcalloc(s->def->n_env_dict + 1, sizeof(char *));
	Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
	Modal__Client__SecretMetadata meta = MODAL__CLIENT__SECRET_METADATA__INIT;
	fill_metadata(&meta, &ci, keys, s);
	Modal__Client__SecretGetOrCreateResponse resp = MODAL__CLIENT__SECRET_GET_OR_CREATE_RESPONSE__INIT;
	resp.secret_id = s->id;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

/* Store def under id (a new row, or the existing row rewritten in place) and load it back. */
static int
secret_write(struct cove_api_req *req, const char *id, const char *app_id, const char *env, const char *name,
	     const SecretDef *def, struct secret *out, struct cove_error **err)
{
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&def->base, &len);
	if (cove_store_object_put(req->ctx->store, id, "secret", app_id, env, name, bytes, len, err) < 0)
		return -1;
	int rc = secret_load(req->ctx->store, id, NULL, NULL, out, err);
	if (rc == 0)
		return cove_error_set(err, COVE_INTERNAL, "Secret %s vanished after it was written", id);
	return rc < 0 ? -1 : 0;
}

void
cove_api_SecretGetOrCreate(struct cove_api_req *req)
{
	const SecretDef *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	const char *name = r->deployment_name && *r->deployment_name ? r->deployment_name : NULL;
	int ctype = r->object_creation_type;
	int anonymous = ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_EPHEMERAL ||
			ctype == MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP;
	switch (ctype) {
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_EPHEMERAL:
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP:
		break;
	default:
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "object creation type %d is not supported for a Secret",
				   ctype);
		return;
	}
	if (anonymous && name) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "an anonymous Secret has no name (got '%s')", name);
		return;
	}
	if (!anonymous && name == NULL) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "a Secret name is required");
		return;
	}
	if (name && !cove_kv_valid_name(name)) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
				   "invalid Secret name '%s': names may contain only alphanumeric characters, dashes, "
				   "periods and underscores, must be at most 64 characters, and must not look like an App ID",
				   name);
		return;
	}
	if (check_env(req, r->env_dict, r->n_env_dict) < 0)
		return;
	/* A container may make anonymous Secrets (it knows their values) and look up the ones its function was
	 * given, but not write the environment's named ones (docs/security.md). */
	if (req->client_type == COVE_CLIENT_TYPE_CONTAINER && !anonymous &&
	    ctype != MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED) {
		cove_api_fail_code(req->call, COVE_PERMISSION_DENIED,
				   "SecretGetOrCreate: a container may not create or overwrite the named Secret '%s' "
				   "(see docs/security.md)",
				   name);
		return;
	}
	cleanup_secret struct secret s = {0};
	if (anonymous) {
		cleanup_free char *id = cove_id_new("st");
		if (secret_write(req, id, r->app_id && *r->app_id ? r->app_id : NULL, env, NULL, r, &s, &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
		reply_secret(req, &s);
		return;
	}
	int found = secret_load(req->ctx->store, NULL, env, name, &s, &err);
	if (found < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	switch (ctype) {
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_UNSPECIFIED:
		if (!found) {
			cove_api_fail_code(req->call, COVE_NOT_FOUND, "Secret '%s' not found in environment '%s'", name, env);
			return;
		}
		for (size_t i = 0; i < r->n_required_keys; i++) {
			int have = 0;
			for (size_t j = 0; j < s.def->n_env_dict && !have; j++)
				have = strcmp(s.def->env_dict[j]->key, r->required_keys[i]) == 0;
			if (!have) {
				cove_api_fail_code(req->call, COVE_NOT_FOUND, "Secret '%s' is missing required key '%s'", name,
						   r->required_keys[i]);
				return;
			}
		}
		if (cove_auth_secret_ok(req, s.id, &err) < 0) {
			cove_api_fail(req->call, err);
			return;
		}
		reply_secret(req, &s);
		return;
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
		if (found) {
			reply_secret(req, &s);
			return;
		}
		break;
	case MODAL__CLIENT__OBJECT_CREATION_TYPE__OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
		if (found) {
			cove_api_fail_code(req->call, COVE_ALREADY_EXISTS, "Secret '%s' already exists in environment '%s'",
					   name, env);
			return;
		}
		break;
	default: /* CREATE_OVERWRITE_IF_EXISTS: same id, new values */
		break;
	}
	cleanup_free char *id = found ? xstrdup(s.id) : cove_id_new("st");
	secret_clear(&s);
	/* Only what defines the secret is kept: not the creation mode or a one-time key check. */
	SecretDef def = MODAL__CLIENT__SECRET_GET_OR_CREATE_REQUEST__INIT;
	def.deployment_name = (char *)name;
	def.environment_name = (char *)env;
	def.n_env_dict = r->n_env_dict;
	def.env_dict = r->env_dict;
	if (secret_write(req, id, NULL, env, name, &def, &s, &err) < 0) {
		cove_api_fail(req->call, err);
		return;
	}
	reply_secret(req, &s);
}

void
cove_api_SecretGetInfo(struct cove_api_req *req)
{
	const Modal__Client__SecretGetInfoRequest *r = (const void *)req->msg;
	cleanup_secret struct secret s = {0};
	if (!secret_by_id_or_fail(req, r->secret_id, &s))
		return;
	cleanup_free char **keys = xcalloc(s.def->n_env_dict + 1, sizeof(char *));
	Modal__Client__CreationInfo ci = MODAL__CLIENT__CREATION_INFO__INIT;
	Modal__Client__SecretMetadata meta = MODAL__CLIENT__SECRET_METADATA__INIT;
	fill_metadata(&meta, &ci, keys, &s);
	Modal__Client__SecretGetInfoResponse resp = MODAL__CLIENT__SECRET_GET_INFO_RESPONSE__INIT;
	resp.metadata = &meta;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_SecretUpdate(struct cove_api_req *req)
{
	const Modal__Client__SecretUpdateRequest *r = (const void *)req->msg;
	cleanup_secret struct secret s = {0};
	if (!secret_by_id_or_fail(req, r->secret_id, &s))
		return;
	/* The merged variables: existing ones updated in place or removed (an update without a value), new ones
	 * appended in request order. */
	size_t cap = s.def->n_env_dict + r->n_updates;
	SecretEntry **merged = xcalloc(cap + 1, sizeof(*merged));
	SecretEntry *fresh = xcalloc(r->n_updates + 1, sizeof(*fresh));
	size_t n = 0;
	for (size_t i = 0; i < s.def->n_env_dict; i++)
		merged[n++] = s.def->env_dict[i];
	int bad = 0;
	for (size_t u = 0; u < r->n_updates && !bad; u++) {
		const Modal__Client__SecretUpdateRequest__Update *up = r->updates[u];
		if (!valid_env_key(up->key)) {
			cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT,
					   "secret key '%s' is not a valid environment variable name", up->key);
			bad = 1;
			break;
		}
		int has_value = up->_value_case == MODAL__CLIENT__SECRET_UPDATE_REQUEST__UPDATE___VALUE_VALUE;
		size_t j = 0;
		while (j < n && strcmp(merged[j]->key, up->key) != 0)
			j++;
		if (!has_value) {
			if (j < n) {
				memmove(&merged[j], &merged[j + 1], (n - j - 1) * sizeof(*merged));
				n--;
			}
			continue;
		}
		SecretEntry *e = &fresh[u];
		modal__client__secret_get_or_create_request__env_dict_entry__init(e);
		e->key = up->key;
		e->value = up->value;
		if (j < n)
			merged[j] = e;
		else
			merged[n++] = e;
	}
	if (!bad && check_env(req, merged, n) < 0)
		bad = 1;
	if (!bad) {
		SecretDef def = MODAL__CLIENT__SECRET_GET_OR_CREATE_REQUEST__INIT;
		def.deployment_name = s.name;
		def.environment_name = s.env;
		def.n_env_dict = n;
		def.env_dict = merged;
		size_t len;
		cleanup_free uint8_t *bytes = pb_pack(&def.base, &len);
		struct cove_error *err = NULL;
		if (cove_store_object_put(req->ctx->store, s.id, "secret", s.app_id, s.env, s.name, bytes, len, &err) < 0) {
			cove_api_fail(req->call, err);
		} else {
			Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
			cove_api_reply(req->call, &resp.base);
		}
	}
	free(merged);
	free(fresh);
}

void
cove_api_SecretDelete(struct cove_api_req *req)
{
	const Modal__Client__SecretDeleteRequest *r = (const void *)req->msg;
	cleanup_secret struct secret s = {0};
	if (!secret_by_id_or_fail(req, r->secret_id, &s))
		return;
	sqlite3 *db = cove_store_sqlite(req->ctx->store);
	cleanup_stmt sqlite3_stmt *st = NULL;
	/* A named secret goes with every row of its name, so that no older copy surfaces in its place. */
	const char *sql = "DELETE FROM objects WHERE kind = 'secret' AND (id = ? OR (name IS NOT NULL AND env = ? AND name = ?))";
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		cove_api_fail_code(req->call, COVE_INTERNAL, "store: delete secret: %s", sqlite3_errmsg(db));
		return;
	}
	sqlite3_bind_text(st, 1, s.id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, s.env, -1, SQLITE_STATIC);
	if (s.name)
		sqlite3_bind_text(st, 3, s.name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
	if (sqlite3_step(st) != SQLITE_DONE) {
		cove_api_fail_code(req->call, COVE_INTERNAL, "store: delete secret %s: %s", s.id, sqlite3_errmsg(db));
		return;
	}
	Google__Protobuf__Empty resp = GOOGLE__PROTOBUF__EMPTY__INIT;
	cove_api_reply(req->call, &resp.base);
}

void
cove_api_SecretList(struct cove_api_req *req)
{
	const Modal__Client__SecretListRequest *r = (const void *)req->msg;
	struct cove_error *err = NULL;
	const char *env = cove_env_resolve(r->environment_name, &err);
	if (env == NULL) {
		cove_api_fail(req->call, err);
		return;
	}
	double before = r->pagination ? r->pagination->created_before : 0;
	int32_t max = r->pagination ? r->pagination->max_objects : 0;
	if (max < 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "SecretList: max_objects must not be negative");
		return;
	}
	if (max == 0 || max > 1000)
		max = max == 0 ? 100 : 1000;
	sqlite3 *db = cove_store_sqlite(req->ctx->store);
	cleanup_stmt sqlite3_stmt *st = NULL;
	/* The newest row of each name (SQLite takes the bare columns from the MAX row). */
	const char *sql = "SELECT id, env, name, app_id, c, data FROM "
			  "(SELECT id, env, name, app_id, MAX(created_at) AS c, data FROM objects "
			  " WHERE kind = 'secret' AND env = ? AND name IS NOT NULL GROUP BY name) "
			  "WHERE ? <= 0 OR c < ? ORDER BY c DESC LIMIT ?";
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		cove_api_fail_code(req->call, COVE_INTERNAL, "store: list secrets: %s", sqlite3_errmsg(db));
		return;
	}
	sqlite3_bind_text(st, 1, env, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 2, before);
	sqlite3_bind_double(st, 3, before);
	sqlite3_bind_int(st, 4, max);
	struct secret *rows = xcalloc((size_t)max, sizeof(*rows));
	size_t n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < (size_t)max) {
		if (secret_from_row(st, &rows[n], &err) < 0) {
			/* One unreadable secret should not hide the others: list it without keys. */
			cove_error_free(err);
			err = NULL;
			SecretDef empty = MODAL__CLIENT__SECRET_GET_OR_CREATE_REQUEST__INIT;
			rows[n].def = pb_dup(&empty.base);
		}
		n++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		cove_api_fail_code(req->call, COVE_INTERNAL, "store: list secrets: %s", sqlite3_errmsg(db));
	} else {
		Modal__Client__SecretListItem *items = xcalloc(n + 1, sizeof(*items));
		Modal__Client__SecretListItem **ptrs = xcalloc(n + 1, sizeof(*ptrs));
		Modal__Client__SecretMetadata *metas = xcalloc(n + 1, sizeof(*metas));
		Modal__Client__CreationInfo *cis = xcalloc(n + 1, sizeof(*cis));
		char ***keys = xcalloc(n + 1, sizeof(*keys));
		for (size_t i = 0; i < n; i++) {
			modal__client__secret_list_item__init(&items[i]);
			modal__client__secret_metadata__init(&metas[i]);
			modal__client__creation_info__init(&cis[i]);
			keys[i] = xcalloc(rows[i].def->n_env_dict + 1, sizeof(char *));
			fill_metadata(&metas[i], &cis[i], keys[i], &rows[i]);
			items[i].label = rows[i].name;
			items[i].created_at = rows[i].created_at;
			items[i].environment_name = rows[i].env;
			items[i].secret_id = rows[i].id;
			items[i].metadata = &metas[i];
			ptrs[i] = &items[i];
		}
		Modal__Client__SecretListResponse resp = MODAL__CLIENT__SECRET_LIST_RESPONSE__INIT;
		resp.n_items = n;
		resp.items = ptrs;
		resp.environment_name = (char *)env;
		cove_api_reply(req->call, &resp.base);
		for (size_t i = 0; i < n; i++)
			free(keys[i]);
		free(keys);
		free(items);
		free(ptrs);
		free(metas);
		free(cis);
	}
	for (size_t i = 0; i < n; i++)
		secret_clear(&rows[i]);
	free(rows);
}
