/* Sockets of another network namespace (see netns.h). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"
#include "util/netif.h"
#include "util/netns.h"

int
cove_netns_listen_tcp(int netns_fd, int port, struct cove_error **err)
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return cove_error_set_errno(err, errno, "open this thread's network namespace");
	if (setns(netns_fd, CLONE_NEWNET) < 0) {
		int e = errno;
		close(self);
		return cove_error_set_errno(err, e, "enter a container's network namespace");
	}
	cove_loopback_up();
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int e = errno;
	const char *what = "socket";
	if (s >= 0) {
		int one = 1;
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0)
			what = "bind", e = errno;
		else if (listen(s, 128) < 0)
			what = "listen", e = errno;
		else
			what = NULL;
		if (what) {
			close(s);
			s = -1;
		}
	}
	if (setns(self, CLONE_NEWNET) < 0) {
		log_error("cannot return to Cove's own network namespace: %s", strerror(errno));
		abort();
	}
	close(self);
	if (s < 0)
		return cove_error_set_errno(err, e, "listen on 127.0.0.1:%d in a container's network namespace (%s)", port,
					    what);
	return s;
}
