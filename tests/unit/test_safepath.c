/* Walks beneath a root: symlinks (absolute, relative, dangling, in the middle and at the end), "..", absolute
 * paths and magic links are refused (or, with COVE_SAFE_IN_ROOT, resolved inside the root); directories are made
 * without following anything; only regular files open as such (never a FIFO); rm -rf never leaves its tree. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "util/safepath.h"

struct fixture {
	char dir[64];
	char *root;    /* the tree walked */
	char *outside; /* a directory next to it, which nothing may reach */
	int rootfd;
};

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/cove-safepath-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->root = xasprintf("%s/root", f->dir);
	f->outside = xasprintf("%s/outside", f->dir);
	assert_int_equal(mkdir(f->root, 0755), 0);
	assert_int_equal(mkdir(f->outside, 0755), 0);
	cleanup_free char *secret = xasprintf("%s/secret", f->outside);
	write_text(secret, "host secret");
	cleanup_free char *a = xasprintf("%s/a", f->root);
	cleanup_free char *ab = xasprintf("%s/a/b", f->root);
	cleanup_free char *file = xasprintf("%s/a/b/file", f->root);
	assert_int_equal(mkdir(a, 0755), 0);
	assert_int_equal(mkdir(ab, 0755), 0);
	write_text(file, "inside");
	/* Links a hostile tree would hold. */
	cleanup_free char *l1 = xasprintf("%s/abs", f->root);
	cleanup_free char *l2 = xasprintf("%s/up", f->root);
	cleanup_free char *l3 = xasprintf("%s/a/rel", f->root);
	cleanup_free char *l4 = xasprintf("%s/slash", f->root);
	assert_int_equal(symlink(f->outside, l1), 0);
	assert_int_equal(symlink("../outside", l2), 0);
	assert_int_equal(symlink("b", l3), 0);
	assert_int_equal(symlink("/", l4), 0);
	cleanup_free char *fifo = xasprintf("%s/fifo", f->root);
	assert_int_equal(mkfifo(fifo, 0644), 0);
	f->rootfd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->rootfd >= 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	close(f->rootfd);
	struct cove_error *err = NULL;
	assert_int_equal(cove_remove_tree(f->dir, &err), 0);
	free(f->root);
	free(f->outside);
	free(f);
	return 0;
}

static void
assert_refused(int fd, int e)
{
	if (fd >= 0)
		close(fd);
	assert_true(fd < 0);
	assert_int_equal(errno, e);
}

static void
test_open_beneath_refuses_every_way_out(void **state)
{
	struct fixture *f = *state;
	int fd = cove_safe_open(f->rootfd, "a/b/file", O_RDONLY, 0, 0);
	assert_true(fd >= 0);
	char buf[16] = {0};
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), 6);
	assert_string_equal(buf, "inside");
	close(fd);
	assert_refused(cove_safe_open(f->rootfd, "abs/secret", O_RDONLY, 0, 0), ELOOP);
	assert_refused(cove_safe_open(f->rootfd, "up/secret", O_RDONLY, 0, 0), ELOOP);
	assert_refused(cove_safe_open(f->rootfd, "slash", O_RDONLY | O_DIRECTORY, 0, 0), ELOOP);
	/* Even a link that stays inside is not followed. */
	assert_refused(cove_safe_open(f->rootfd, "a/rel/file", O_RDONLY, 0, 0), ELOOP);
	assert_refused(cove_safe_open(f->rootfd, "../outside/secret", O_RDONLY, 0, 0), EXDEV);
	assert_refused(cove_safe_open(f->rootfd, f->outside, O_RDONLY | O_DIRECTORY, 0, 0), EXDEV);
	assert_refused(cove_safe_open(f->rootfd, "/proc/self/root/etc/passwd", O_RDONLY, 0, 0), EXDEV);
	/* ".." that stays below the root is fine. */
	fd = cove_safe_open(f->rootfd, "a/../a/b/file", O_RDONLY, 0, 0);
	assert_true(fd >= 0);
	close(fd);
	/* The link itself, when asked for. */
	fd = cove_safe_open(f->rootfd, "abs", O_PATH | O_NOFOLLOW, 0, 0);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	close(fd);
}

static void
test_in_root_resolves_links_inside_the_root(void **state)
{
	struct fixture *f = *state;
	/* "/" inside the tree is its root: slash/a/b/file is a/b/file, and abs/secret is not the host's. */
	int fd = cove_safe_open(f->rootfd, "slash/a/b/file", O_RDONLY, 0, COVE_SAFE_IN_ROOT);
	assert_true(fd >= 0);
	close(fd);
	fd = cove_safe_open(f->rootfd, "a/rel/file", O_RDONLY, 0, COVE_SAFE_IN_ROOT);
	assert_true(fd >= 0);
	close(fd);
	assert_refused(cove_safe_open(f->rootfd, "abs/secret", O_RDONLY, 0, COVE_SAFE_IN_ROOT), ENOENT);
	assert_refused(cove_safe_open(f->rootfd, "up/secret", O_RDONLY, 0, COVE_SAFE_IN_ROOT), ENOENT);
	assert_refused(cove_safe_open(f->rootfd, "../../../outside/secret", O_RDONLY, 0, COVE_SAFE_IN_ROOT), ENOENT);
}

static void
test_open_dir_creates_without_following(void **state)
{
	struct fixture *f = *state;
	int fd = cove_safe_open_dir(f->rootfd, "x/y/z", 1, 0750);
	assert_true(fd >= 0);
	close(fd);
	cleanup_free char *made = xasprintf("%s/x/y/z", f->root);
	struct stat st;
	assert_int_equal(lstat(made, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* Through a symlink to the outside: refused, and nothing made there. */
	assert_refused(cove_safe_open_dir(f->rootfd, "abs/new/dir", 1, 0755), ELOOP);
	cleanup_free char *leaked = xasprintf("%s/new", f->outside);
	assert_int_equal(lstat(leaked, &st), -1);
	/* Through a file. */
	assert_refused(cove_safe_open_dir(f->rootfd, "a/b/file/sub", 1, 0755), ENOTDIR);
	/* Without create, a missing directory is ENOENT. */
	assert_refused(cove_safe_open_dir(f->rootfd, "nope/sub", 0, 0755), ENOENT);

	const char *name = NULL;
	fd = cove_safe_open_parent(f->rootfd, "p/q/leaf", 1, 0755, &name);
	assert_true(fd >= 0);
	assert_string_equal(name, "leaf");
	close(fd);
	fd = cove_safe_open_parent(f->rootfd, "top", 0, 0755, &name);
	assert_true(fd >= 0);
	assert_string_equal(name, "top");
	close(fd);
	assert_refused(cove_safe_open_parent(f->rootfd, "a/..", 0, 0755, &name), EINVAL);
	assert_refused(cove_safe_open_parent(f->rootfd, "", 0, 0755, &name), EINVAL);
	assert_refused(cove_safe_open_parent(f->rootfd, "abs/secret", 0, 0755, &name), ELOOP);
}

static void
test_open_regular_opens_only_regular_files(void **state)
{
	struct fixture *f = *state;
	cleanup_close int dir = cove_safe_open_dir(f->rootfd, "a/b", 0, 0);
	assert_true(dir >= 0);
	struct stat st;
	int fd = cove_safe_open_regular(dir, "file", &st);
	assert_true(fd >= 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 6);
	close(fd);
	/* A FIFO would block an open(2) for reading forever: it is refused without being opened. */
	assert_refused(cove_safe_open_regular(f->rootfd, "fifo", NULL), EINVAL);
	assert_refused(cove_safe_open_regular(f->rootfd, "abs", NULL), ELOOP);
	assert_refused(cove_safe_open_regular(f->rootfd, "a", NULL), EISDIR);
	assert_refused(cove_safe_open_regular(f->rootfd, "missing", NULL), ENOENT);
}

static void
test_remove_never_leaves_the_tree(void **state)
{
	struct fixture *f = *state;
	/* A tree full of links to the outside (and a link at its top): all of it goes, the outside stays. */
	cleanup_free char *victim = xasprintf("%s/victim", f->root);
	cleanup_free char *deep = xasprintf("%s/victim/d1/d2", f->root);
	struct cove_error *err = NULL;
	assert_int_equal(cove_mkdirs(deep, &err), 0);
	cleanup_free char *l1 = xasprintf("%s/victim/d1/out", f->root);
	cleanup_free char *l2 = xasprintf("%s/victim/d1/d2/out", f->root);
	assert_int_equal(symlink(f->outside, l1), 0);
	assert_int_equal(symlink(f->outside, l2), 0);
	cleanup_free char *file = xasprintf("%s/victim/d1/d2/f", f->root);
	write_text(file, "x");
	assert_int_equal(cove_safe_remove_at(f->rootfd, "victim"), 0);
	struct stat st;
	assert_int_equal(lstat(victim, &st), -1);
	assert_int_equal(cove_safe_remove_at(f->rootfd, "abs"), 0); /* the link, not what it points at */
	assert_int_equal(cove_safe_remove_at(f->rootfd, "missing"), 0);
	cleanup_free char *secret = xasprintf("%s/secret", f->outside);
	assert_int_equal(stat(secret, &st), 0);
	/* cove_remove_tree of a path whose last component is a symlink removes the link. */
	cleanup_free char *link = xasprintf("%s/up", f->root);
	assert_int_equal(cove_remove_tree(link, &err), 0);
	assert_int_equal(lstat(link, &st), -1);
	assert_int_equal(stat(secret, &st), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_beneath_refuses_every_way_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_in_root_resolves_links_inside_the_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_dir_creates_without_following, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_regular_opens_only_regular_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_never_leaves_the_tree, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
