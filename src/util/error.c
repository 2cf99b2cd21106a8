#include "util/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

static int
error_vset(struct cove_error **err, int code, const char *suffix, const char *fmt, va_list ap)
{
	if (err == NULL || *err != NULL)
		return -1;
	struct cove_error *e = xmalloc(sizeof(*e));
	char *msg = xvasprintf(fmt, ap);
	e->code = code;
	if (suffix) {
		e->msg = xasprintf("%s: %s", msg, suffix);
		free(msg);
	} else {
		e->msg = msg;
	}
	*err = e;
	return -1;
}

int
cove_error_set(struct cove_error **err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_vset(err, code, NULL, fmt, ap);
	va_end(ap);
	return -1;
}

int
cove_error_set_errno(struct cove_error **err, int errno_value, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_vset(err, COVE_INTERNAL, strerror(errno_value), fmt, ap);
	va_end(ap);
	return -1;
}

int
cove_error_wrap(struct cove_error **err, const char *fmt, ...)
{
	if (err == NULL || *err == NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *ctx = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s: %s", ctx, (*err)->msg);
	free(ctx);
	free((*err)->msg);
	(*err)->msg = msg;
	return -1;
}

void
cove_error_free(struct cove_error *err)
{
	if (err == NULL)
		return;
	free(err->msg);
	free(err);
}

const char *
cove_status_name(int code)
{
	static const char *names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
		"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
	};
	if (code < 0 || code >= (int)(sizeof(names) / sizeof(names[0])))
		return "UNKNOWN";
	return names[code];
}
