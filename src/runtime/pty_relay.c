/* cove-pty-relay: runs a command on a pseudo-terminal of the container's own devpts and relays it to this
 * program's stdio, for runtimes that hand the container Cove's descriptors rather than a terminal of its own
 * (under gVisor a host terminal is not a /dev/pts device: `tty` and job control need one made inside).
 *
 *   cove-pty-relay -- ARGV...
 *
 * The command leads a session with the terminal as its controlling one; the window size follows stdin's (on
 * SIGWINCH). Exits as the command did (a signal is re-raised), after its output is drained; children it
 * inherits as PID 1 are reaped. Static: it is bound into images with a libc of their own. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t winch;

static void
on_winch(int sig)
{
	(void)sig;
	winch = 1;
}

static void
copy_winsize(int from, int to)
{
	struct winsize ws;
	if (ioctl(from, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
		ioctl(to, TIOCSWINSZ, &ws);
}

static int
write_all(int fd, const char *p, size_t n)
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

static void __attribute__((noreturn))
die(const char *what, const char *arg)
{
	fprintf(stderr, "cove-pty-relay: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
	_exit(126);
}

int
main(int argc, char **argv)
{
	int i = 1;
	if (i < argc && strcmp(argv[i], "--") == 0)
		i++;
	if (i >= argc) {
		fprintf(stderr, "usage: cove-pty-relay -- ARGV...\n");
		return 2;
	}
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		die("open", "/dev/ptmx");
	char slave[128];
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, slave, sizeof(slave)) != 0)
		die("set up the terminal", NULL);
	copy_winsize(0, m);
	pid_t pid = fork();
	if (pid < 0)
		die("fork", NULL);
	if (pid == 0) {
		setsid();
		int s = open(slave, O_RDWR);
		if (s < 0)
			die("open", slave);
		ioctl(s, TIOCSCTTY, 0);
		dup2(s, 0);
		dup2(s, 1);
		dup2(s, 2);
		if (s > 2)
			close(s);
		execvp(argv[i], argv + i);
		int e = errno;
		fprintf(stderr, "exec: \"%s\": %s\n", argv[i], strerror(e));
		_exit(e == ENOENT ? 127 : 126);
	}
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
			copy_winsize(0, m);
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
				if (write_all(1, buf, (size_t)k) < 0)
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
				write_all(m, buf, (size_t)k);
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
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		signal(sig, SIG_DFL);
		kill(getpid(), sig);
		_exit(128 + sig);
	}
	return WEXITSTATUS(status);
}
