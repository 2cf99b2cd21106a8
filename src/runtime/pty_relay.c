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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/pty_io.h"

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
	cove_pty_copy_winsize(0, m);
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
	int status = cove_pty_relay(m, pid);
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		signal(sig, SIG_DFL);
		kill(getpid(), sig);
		_exit(128 + sig);
	}
	return WEXITSTATUS(status);
}
