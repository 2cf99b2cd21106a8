#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>

int cove_log_min_level = COVE_LOG_INFO;

void
cove_log(int level, const char *fmt, ...)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	if (level < cove_log_min_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cove: %s: ", names[level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}
