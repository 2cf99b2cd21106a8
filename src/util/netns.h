/* Sockets of another network namespace: a listener made while the calling thread is, for a moment, in that
 * namespace (a socket stays in the namespace it was made in), so the caller serves it from its own. */
#ifndef COVE_UTIL_NETNS_H
#define COVE_UTIL_NETNS_H

#include "util/error.h"

/* A TCP socket listening on 127.0.0.1:port in the network namespace netns_fd (its loopback brought up), non-
 * blocking and O_CLOEXEC: its descriptor, or -1 + *err. The calling thread is back in its own namespace either
 * way (if it cannot return, the process aborts rather than go on in the wrong one). Needs CAP_SYS_ADMIN. */
int cove_netns_listen_tcp(int netns_fd, int port, struct cove_error **err);

#endif
