/* The store: Cove's durable state in one SQLite file (WAL mode).
 *
 * Every write returns only after SQLite has committed it to the WAL, so anything acknowledged to a client
 * survives a crash of Cove (kill -9). synchronous=NORMAL: a power loss may lose the last transactions, a
 * process crash loses nothing. Callers that write many rows for one RPC wrap them in begin/commit.
 * Schema versions are numbered migrations (PRAGMA user_version). All functions run on the event loop thread. */
#ifndef COVE_STORE_STORE_H
#define COVE_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct cove_store;
struct sqlite3;

struct cove_store *cove_store_open(const char *path, struct cove_error **err);
void cove_store_close(struct cove_store *s);

/* The SQLite handle, for modules that own tables of their own (their schema still comes from the numbered
 * migrations in store.c). */
struct sqlite3 *cove_store_sqlite(struct cove_store *s);

/* Group several writes into one transaction. begin/commit nest (only the outermost commits). */
int cove_store_begin(struct cove_store *s, struct cove_error **err);
int cove_store_commit(struct cove_store *s, struct cove_error **err);
int cove_store_rollback(struct cove_store *s);

/* Tokens: the secret is stored as its sha256. check returns 1 if the pair is valid, else 0. */
int cove_store_token_add(struct cove_store *s, const char *token_id, const char *token_secret,
			 struct cove_error **err);
int cove_store_token_check(struct cove_store *s, const char *token_id, const char *token_secret);
/* Record that a token authenticated a call at when (Unix seconds); a failure is logged, not returned. */
int cove_store_token_touch(struct cove_store *s, const char *token_id, double when);
struct cove_store_token {
	char *id;
	double created_at;
	double last_used_at; /* 0: never */
};
/* Every token, oldest first (*out: free with cove_store_tokens_free). */
int cove_store_token_list(struct cove_store *s, struct cove_store_token **out, size_t *n, struct cove_error **err);
void cove_store_tokens_free(struct cove_store_token *v, size_t n);
/* Delete a token: NOT_FOUND if there is none. A running server refuses it from its next call on (auth.c
 * notices through cove_store_data_version). */
int cove_store_token_revoke(struct cove_store *s, const char *token_id, struct cove_error **err);
/* SQLite's data_version: it changes whenever another connection (another process) has committed. -1 on error. */
int64_t cove_store_data_version(struct cove_store *s);
/* Any one stored token id (the first created), or NULL if none. Caller frees. */
char *cove_store_token_first(struct cove_store *s);
/* Key/value settings (e.g. the first token's secret kept for client.env). Caller frees; NULL if unset. */
char *cove_store_meta_get(struct cove_store *s, const char *key);
int cove_store_meta_set(struct cove_store *s, const char *key, const char *value, struct cove_error **err);
/* The keys that start with prefix, sorted (*keys NULL-terminated, each and the array malloc'd; NULL if none). */
int cove_store_meta_keys(struct cove_store *s, const char *prefix, char ***keys, size_t *n, struct cove_error **err);
/* 1 if the key was there and is gone, 0 if there was none, -1 on error. */
int cove_store_meta_delete(struct cove_store *s, const char *key, struct cove_error **err);

/* Objects: one row per Modal object (function, mount, image, secret, ...), its definition as bytes
 * (a serialized protobuf message; kind says which). name is NULL for anonymous objects. */
int cove_store_object_put(struct cove_store *s, const char *id, const char *kind, const char *app_id,
			  const char *env, const char *name, const void *data, size_t len, struct cove_error **err);
/* NOT_FOUND if missing. *data malloc'd (caller frees). kind_out may be NULL. */
int cove_store_object_get(struct cove_store *s, const char *id, char **kind_out, uint8_t **data, size_t *len,
			  struct cove_error **err);
/* The id of the named object of a kind in an environment; NOT_FOUND if none. Caller frees. */
int cove_store_object_find(struct cove_store *s, const char *kind, const char *env, const char *name, char **id,
			   struct cove_error **err);

int cove_store_object_delete(struct cove_store *s, const char *id, struct cove_error **err);

/* Apps. */
struct cove_store_app {
	const char *id;
	const char *name; /* "" for unnamed */
	const char *env;
	const char *description;
	int state; /* AppState */
	double created_at;
	double stopped_at; /* 0 if running */
};
int cove_store_app_put(struct cove_store *s, const struct cove_store_app *a, struct cove_error **err);

int cove_store_app_mark_stopped(struct cove_store *s, const char *app_id, struct cove_error **err);

/* Function calls, their inputs (serialized FunctionInput) and outputs (serialized FunctionGetOutputsItem).
 * parent_input_id: the input whose code made the call (NULL: a call from outside any function). */
int cove_store_call_put(struct cove_store *s, const char *call_id, const char *function_id, int call_type,
			int invocation_type, const char *parent_input_id, struct cove_error **err);
int cove_store_input_put(struct cove_store *s, const char *input_id, const char *call_id, int idx,
			 const void *data, size_t len, struct cove_error **err);
/* A call's results outlived their lifetime: delete its inputs and outputs (the call row stays). */
int cove_store_call_expire(struct cove_store *s, const char *call_id, struct cove_error **err);
/* NOT_FOUND if the input has no output. *data malloc'd. */
int cove_store_output_get(struct cove_store *s, const char *input_id, uint8_t **data, size_t *len,
			  struct cove_error **err);
int cove_store_output_put(struct cove_store *s, const char *input_id, const char *call_id, int idx,
			  int retry_count, const void *data, size_t len, struct cove_error **err);

/* Read back at start. Each calls cb per row (borrowed values, valid during the call); cb < 0 stops with an
 * error. */
int cove_store_each_app(struct cove_store *s, int (*cb)(void *arg, const struct cove_store_app *a), void *arg,
			struct cove_error **err);
/* Objects of a kind belonging to an app (app_id NULL: to none). */
int cove_store_each_object(struct cove_store *s, const char *kind, const char *app_id,
			   int (*cb)(void *arg, const char *id, const char *name, const uint8_t *data, size_t len),
			   void *arg, struct cove_error **err);
/* parent_input_id NULL when there is none. */
int cove_store_each_call(struct cove_store *s, const char *function_id,
			 int (*cb)(void *arg, const char *call_id, int call_type, int invocation_type,
				   const char *parent_input_id),
			 void *arg, struct cove_error **err);
/* Inputs of a call with their output (NULL if none yet). */
int cove_store_each_input(struct cove_store *s, const char *call_id,
			  int (*cb)(void *arg, const char *input_id, int idx, const uint8_t *data, size_t len,
				    const uint8_t *output, size_t output_len),
			  void *arg, struct cove_error **err);

#endif
