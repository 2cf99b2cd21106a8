/* Terminal relaying shared by cove-container and cove-pty-relay (see pty_io.h). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "runtime/pty_io.h"

static volatile sig_atomic_t winch;

static void
on_winch(int sig)
{
	(void)sig;
	winch = 1;
}

void
cove_pty_copy_winsize(int from, int to)
{
	struct winsize ws;
	if (ioctl(from, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
		ioctl(to, TIOCSWINSZ, &ws);
}

int
cove_pty_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
cove_pty_relay(int m, pid_t pid)
{
	struct termios raw, saved;
	int have_saved = tcgetattr(0, &saved) == 0;
	if (have_saved) {
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(0, TCSANOW, &raw);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_winch;
	sigaction(SIGWINCH, &sa, NULL);
	int status = 0, exited = 0, in_open = 1;
	char buf[16384];
	for (;;) {
		if (winch) {
			winch = 0;
			cove_pty_copy_winsize(0, m);
		}
		int st;
		pid_t r;
		while ((r = waitpid(-1, &st, WNOHANG)) > 0)
			if (r == pid) {
				status = st;
				exited = 1;
			}
		struct pollfd p[2] = {{.fd = m, .events = POLLIN}, {.fd = in_open ? 0 : -1, .events = POLLIN}};
		int n = poll(p, 2, exited ? 0 : 100);
		if (n < 0 && errno == EINTR)
			continue;
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t k = read(m, buf, sizeof(buf));
			if (k > 0) {
				if (cove_pty_write_all(1, buf, (size_t)k) < 0)
					break;
				continue;
			}
			if (k < 0 && errno == EINTR)
				continue;
			if (exited)
				break; /* EIO: no slave left open, and all is read */
		}
		if (in_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t k = read(0, buf, sizeof(buf));
			if (k > 0)
				cove_pty_write_all(m, buf, (size_t)k);
			else if (k == 0 || (errno != EINTR && errno != EAGAIN))
				in_open = 0;
		}
		if (exited && n == 0)
			break;
	}
	if (have_saved)
		tcsetattr(0, TCSANOW, &saved);
	if (!exited)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	return status;
}
