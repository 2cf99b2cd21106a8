/* Object ids as the client expects them: "<prefix>-<22 base62 chars>" (exactly one '-'). */
#ifndef COVE_UTIL_IDS_H
#define COVE_UTIL_IDS_H

#include <stddef.h>

/* A new random id with the given prefix ("ap", "fu", "fc", "in", "ta", "mo", "im", "st", "bl", ...).
 * Caller frees. Random from getrandom(2). */
char *cove_id_new(const char *prefix);
/* 1 if s is "<prefix>-" followed by 1..64 chars of [A-Za-z0-9], else 0. */
int cove_id_valid(const char *s, const char *prefix);
/* Fill out[n] with random base62 characters (no NUL). */
void cove_random_base62(char *out, size_t n);

#endif
