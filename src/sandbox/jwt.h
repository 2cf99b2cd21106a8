/* Short-lived bearer tokens: JSON Web Tokens signed with HMAC-SHA256 (HS256) under a key that lives only in
 * this server process, so a token is worth nothing after a restart.
 *
 * Cove issues them for the task command router (audience "tcr", subject: the task the bearer may reach) and
 * for AuthTokenGet (audience "auth"). The client reads `exp` without checking the signature; Cove checks the
 * signature, the audience and the expiry of every token presented to it. */
#ifndef COVE_SANDBOX_JWT_H
#define COVE_SANDBOX_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define COVE_JWT_KEY_BYTES 32

/* A new random key. */
void cove_jwt_key_new(uint8_t key[COVE_JWT_KEY_BYTES]);
/* header.payload.signature with {"sub", "aud", "iat", "exp"}; subject and audience are ids ([A-Za-z0-9_-],
 * at most 128 bytes; anything else aborts: callers pass their own ids). Caller frees. */
char *cove_jwt_issue(const uint8_t key[COVE_JWT_KEY_BYTES], const char *subject, const char *audience, int64_t now,
		     int64_t lifetime_s);
/* 0 and the subject in sub (at most subcap - 1 bytes, NUL-terminated) if token carries a valid signature
 * under key, the audience and an expiry after now; else -1 + UNAUTHENTICATED saying which check failed. */
int cove_jwt_verify(const uint8_t key[COVE_JWT_KEY_BYTES], const char *token, const char *audience, int64_t now,
		    char *sub, size_t subcap, struct cove_error **err);

#endif
