/* mkdir -p with only async-signal-safe calls and no allocation: for a child between fork and exec, and for
 * cove-container. */
#ifndef COVE_RUNTIME_MKDIR_P_H
#define COVE_RUNTIME_MKDIR_P_H

#include <sys/types.h>

/* Make path and its missing parents with mode. 0, or -1 with errno (ENAMETOOLONG past PATH_MAX). */
int cove_mkdir_p(const char *path, mode_t mode);

#endif
