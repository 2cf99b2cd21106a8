/* Container output is bytes; log records are protobuf strings, which must be valid UTF-8. */
#ifndef COVE_UTIL_UTF8_H
#define COVE_UTIL_UTF8_H

#include <stddef.h>

struct cove_utf8_carry {
	unsigned char buf[4];
	size_t len; /* bytes of an incomplete sequence held from the previous chunk */
};

/* Append the valid UTF-8 form of (carry + data) to a new malloc'd, NUL-terminated string: invalid bytes
 * become U+FFFD; an incomplete sequence at the end is kept in carry for the next chunk (flush with
 * data == NULL, len == 0, which turns a held incomplete sequence into U+FFFD). *out_len excludes the NUL. */
char *cove_utf8_sanitize(struct cove_utf8_carry *carry, const char *data, size_t len, size_t *out_len);

#endif
