/* Allocation that aborts on failure: no NULL checks after these. */
#ifndef COVE_UTIL_ALLOC_H
#define COVE_UTIL_ALLOC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

static inline void
cleanup_freep(void *p)
{
	free(*(void **)p);
}
static inline void
cleanup_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define cleanup_free __attribute__((cleanup(cleanup_freep)))
#define cleanup_close __attribute__((cleanup(cleanup_closep)))

/* Hand an owned pointer out: `*out = steal_pointer(&p);` leaves p NULL so cleanup does nothing. */
static inline void *
steal_pointer(void *pp)
{
	void **p = pp;
	void *v = *p;
	*p = NULL;
	return v;
}

#endif
