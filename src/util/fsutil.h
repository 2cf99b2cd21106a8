/* Small file-system helpers. */
#ifndef COVE_UTIL_FSUTIL_H
#define COVE_UTIL_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* mkdir -p with mode 0755. 0 or -1 + *err. */
int cove_mkdirs(const char *path, struct cove_error **err);
/* Write data to path atomically: temp file in the same directory, fsync, rename, fsync the directory. */
int cove_write_file_atomic(const char *path, const void *data, size_t len, int mode, struct cove_error **err);
/* Read a whole file (malloc'd, NUL-terminated beyond len). -1 + NOT_FOUND if missing. */
int cove_read_file(const char *path, uint8_t **out, size_t *len, struct cove_error **err);
/* Copy what is left of in (from its offset) to out: copy_file_range, or reads and writes where that does not work.
 * 0 or -1 + errno. */
int cove_copy_fd(int in, int out);
/* rm -rf (best effort; returns 0 or -1 + *err for the first failure). */
int cove_remove_tree(const char *path, struct cove_error **err);

#endif
