/* Errors travel as a return code plus a struct cove_error (see docs/error-handling.md).
 *
 * A function that can fail returns int (< 0) or NULL and fills *err; on success *err is untouched.
 * The error carries the gRPC status the client maps to a modal.exception, and a message the user reads. */
#ifndef COVE_UTIL_ERROR_H
#define COVE_UTIL_ERROR_H

#include <stdarg.h>

/* gRPC status codes (grpc/status.h), the only vocabulary errors use. */
enum cove_status {
	COVE_OK = 0,
	COVE_CANCELLED = 1,
	COVE_UNKNOWN = 2,
	COVE_INVALID_ARGUMENT = 3,
	COVE_DEADLINE_EXCEEDED = 4,
	COVE_NOT_FOUND = 5,
	COVE_ALREADY_EXISTS = 6,
	COVE_PERMISSION_DENIED = 7,
	COVE_RESOURCE_EXHAUSTED = 8,
	COVE_FAILED_PRECONDITION = 9,
	COVE_ABORTED = 10,
	COVE_OUT_OF_RANGE = 11,
	COVE_UNIMPLEMENTED = 12,
	COVE_INTERNAL = 13,
	COVE_UNAVAILABLE = 14,
	COVE_DATA_LOSS = 15,
	COVE_UNAUTHENTICATED = 16,
};

struct cove_error {
	int code;  /* enum cove_status */
	char *msg; /* what the user reads; owned */
};

/* Fill *err (if err is not NULL and *err is NULL) and return -1, so callers can `return cove_error_set(...)`. */
int cove_error_set(struct cove_error **err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Same, appending ": strerror(errno_value)". */
int cove_error_set_errno(struct cove_error **err, int errno_value, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prefix the message with context ("create sandbox sb-1: <old message>"); returns -1. No-op if *err is NULL. */
int cove_error_wrap(struct cove_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cove_error_free(struct cove_error *err);
const char *cove_status_name(int code);

static inline void
cove_error_cleanup(struct cove_error **err)
{
	if (*err)
		cove_error_free(*err);
}
#define cleanup_error __attribute__((cleanup(cove_error_cleanup)))

#endif
