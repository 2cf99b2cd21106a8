/* Relaying a pseudo-terminal made inside a container to the descriptors Cove gave it (stdin, stdout), for
 * cove-container (--pty) and cove-pty-relay (under gVisor). Plain libc, no allocation: both programs are
 * small, and cove-pty-relay is linked statically. */
#ifndef COVE_RUNTIME_PTY_IO_H
#define COVE_RUNTIME_PTY_IO_H

#include <stddef.h>
#include <sys/types.h>

/* Give terminal `to` the window size of terminal `from` (nothing if from has none). */
void cove_pty_copy_winsize(int from, int to);

/* Write all n bytes (EINTR retried): 0, or -1 with errno. */
int cove_pty_write_all(int fd, const char *p, size_t n);

/* Relay between stdin/stdout and the terminal whose master is m until pid has exited and the terminal is
 * drained, with stdin's terminal (if it is one) raw meanwhile and window size changes (SIGWINCH) passed on.
 * Reaps every child that ends meanwhile (the caller may be PID 1). Returns pid's wait status. */
int cove_pty_relay(int m, pid_t pid);

#endif
