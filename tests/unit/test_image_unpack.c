/* Layer unpacking: tars written here with libarchive's writer (gzip, zstd, uncompressed) are unpacked and the
 * tree checked: files, modes, owners, mtimes, symlinks, hard links, xattrs, OCI whiteouts as overlay whiteouts
 * (0/0 character devices), opaque directories (trusted.overlay.opaque=y), and entries that would escape the
 * target refused. Needs root (owners, mknod, trusted.* xattrs). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image/unpack.h"
#include "util/alloc.h"
#include "util/fsutil.h"

enum kind { FILE_, DIR_, SYMLINK_, HARDLINK_, BLK_, CHR_, CHR0_ };

struct tar_entry {
	const char *name;
	enum kind kind;
	int mode;
	const char *data; /* FILE_ */
	const char *link; /* SYMLINK_ / HARDLINK_ target */
	int uid, gid;
	long mtime;
	const char *xattr, *xattr_value;
};

struct fixture {
	char root[64];
	char *tar;
	char *dest;
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/cove-unpack-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	f->tar = xasprintf("%s/layer.tar", f->root);
	f->dest = xasprintf("%s/fs", f->root);
	assert_int_equal(mkdir(f->dest, 0755), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	cove_remove_tree(f->root, &err);
	cove_error_free(err);
	free(f->tar);
	free(f->dest);
	free(f);
	return 0;
}

static void
write_tar(const char *path, int filter, const struct tar_entry *entries, size_t n)
{
	/* Names are UTF-8 here; the unpacker runs in the C locale as the server does (main() sets no locale). */
	assert_non_null(setlocale(LC_CTYPE, "C.UTF-8"));
	struct archive *a = archive_write_new();
	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	if (filter == ARCHIVE_FILTER_GZIP)
		assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	else if (filter == ARCHIVE_FILTER_ZSTD)
		assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		const struct tar_entry *t = &entries[i];
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, t->name);
		archive_entry_set_uid(e, t->uid);
		archive_entry_set_gid(e, t->gid);
		archive_entry_set_mtime(e, t->mtime ? t->mtime : 1000000000, 0);
		size_t size = 0;
		switch (t->kind) {
		case FILE_:
			archive_entry_set_filetype(e, AE_IFREG);
			size = t->data ? strlen(t->data) : 0;
			break;
		case DIR_: archive_entry_set_filetype(e, AE_IFDIR); break;
		case SYMLINK_:
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, t->link);
			break;
		case HARDLINK_:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, t->link);
			break;
		case BLK_:
			archive_entry_set_filetype(e, AE_IFBLK);
			archive_entry_set_rdev(e, makedev(8, 0));
			break;
		case CHR_:
			archive_entry_set_filetype(e, AE_IFCHR);
			archive_entry_set_rdev(e, makedev(1, 3));
			break;
		case CHR0_:
			archive_entry_set_filetype(e, AE_IFCHR);
			archive_entry_set_rdev(e, 0);
			break;
		}
		archive_entry_set_perm(e, t->mode ? t->mode : (t->kind == DIR_ ? 0755 : 0644));
		archive_entry_set_size(e, (la_int64_t)size);
		if (t->xattr)
			archive_entry_xattr_add_entry(e, t->xattr, t->xattr_value, strlen(t->xattr_value));
		if (archive_write_header(a, e) != ARCHIVE_OK)
			fail_msg("write %s: %s", t->name, archive_error_string(a));
		if (size)
			assert_int_equal(archive_write_data(a, t->data, size), (la_ssize_t)size);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	setlocale(LC_CTYPE, "C");
}

static char *
at(struct fixture *f, const char *rel)
{
	static char buf[512];
	snprintf(buf, sizeof(buf), "%s/%s", f->dest, rel);
	return buf;
}

static void
assert_file(struct fixture *f, const char *rel, const char *content)
{
	uint8_t *data = NULL;
	size_t len = 0;
	struct cove_error *err = NULL;
	if (cove_read_file(at(f, rel), &data, &len, &err) < 0)
		fail_msg("%s: %s", rel, err->msg);
	assert_int_equal(len, strlen(content));
	assert_memory_equal(data, content, len);
	free(data);
}

static const struct tar_entry layer[] = {
	{"./", DIR_, 0700, NULL, NULL, 0, 0, 0, NULL, NULL},
	{"app/", DIR_, 0750, NULL, NULL, 1000, 1001, 1500000000, NULL, NULL},
	{"app/main.py", FILE_, 0640, "print('hi')\n", NULL, 1000, 1001, 1600000000, NULL, NULL},
	{"app/link", SYMLINK_, 0777, NULL, "main.py", 1000, 1001, 0, NULL, NULL},
	{"app/abs-link", SYMLINK_, 0777, NULL, "/etc/passwd", 0, 0, 0, NULL, NULL},
	{"app/hard", HARDLINK_, 0640, NULL, "app/main.py", 1000, 1001, 1600000000, NULL, NULL},
	{"app/xattr.txt", FILE_, 0644, "x", NULL, 0, 0, 0, "user.cove", "hello"},
	{"app/redirect/", DIR_, 0755, NULL, NULL, 0, 0, 0, "trusted.overlay.redirect", "/etc"},
	{"./bin/tool", FILE_, 04755, "#!/bin/sh\n", NULL, 0, 0, 0, NULL, NULL},
	{"etc/.wh.passwd", FILE_, 0644, NULL, NULL, 0, 0, 0, NULL, NULL},
	{"var/cache/", DIR_, 0755, NULL, NULL, 0, 0, 0, NULL, NULL},
	{"var/cache/.wh..wh..opq", FILE_, 0644, NULL, NULL, 0, 0, 0, NULL, NULL},
	{"var/cache/new", FILE_, 0644, "fresh", NULL, 0, 0, 0, NULL, NULL},
	{".wh..wh.plnk/", DIR_, 0700, NULL, NULL, 0, 0, 0, NULL, NULL},
	{"opaque-only/.wh..wh..opq", FILE_, 0644, NULL, NULL, 0, 0, 0, NULL, NULL},
	{"empty", FILE_, 0600, NULL, NULL, 0, 0, 0, NULL, NULL},
	{"caf\xc3\xa9.txt", FILE_, 0644, "utf-8 name", NULL, 0, 0, 0, NULL, NULL},
};

static void
check_layer(struct fixture *f)
{
	struct stat st;
	assert_file(f, "app/main.py", "print('hi')\n");
	assert_int_equal(lstat(at(f, "app/main.py"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 1001);
	assert_int_equal(st.st_mtime, 1600000000);
	ino_t ino = st.st_ino;
	assert_int_equal(lstat(at(f, "app/hard"), &st), 0);
	assert_int_equal(st.st_ino, ino);
	assert_int_equal(st.st_nlink, 2);

	assert_int_equal(lstat(at(f, "app"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_mtime, 1500000000); /* set after its entries went in */

	char target[64];
	ssize_t n = readlink(at(f, "app/link"), target, sizeof(target));
	assert_int_equal(n, 7);
	assert_memory_equal(target, "main.py", 7);
	n = readlink(at(f, "app/abs-link"), target, sizeof(target));
	assert_int_equal(n, 11);
	assert_memory_equal(target, "/etc/passwd", 11);

	char value[32];
	n = getxattr(at(f, "app/xattr.txt"), "user.cove", value, sizeof(value));
	assert_int_equal(n, 5);
	assert_memory_equal(value, "hello", 5);
	assert_int_equal(getxattr(at(f, "app/redirect"), "trusted.overlay.redirect", value, sizeof(value)), -1);

	assert_int_equal(lstat(at(f, "bin/tool"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 04755);
	assert_file(f, "bin/tool", "#!/bin/sh\n");

	/* The whiteout: a 0/0 character device under the name it hides; no .wh. file. */
	assert_int_equal(lstat(at(f, "etc/passwd"), &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(major(st.st_rdev), 0);
	assert_int_equal(minor(st.st_rdev), 0);
	assert_int_equal(lstat(at(f, "etc/.wh.passwd"), &st), -1);

	n = getxattr(at(f, "var/cache"), "trusted.overlay.opaque", value, sizeof(value));
	assert_int_equal(n, 1);
	assert_int_equal(value[0], 'y');
	assert_int_equal(lstat(at(f, "var/cache/.wh..wh..opq"), &st), -1);
	assert_file(f, "var/cache/new", "fresh");
	n = getxattr(at(f, "opaque-only"), "trusted.overlay.opaque", value, sizeof(value));
	assert_int_equal(n, 1);
	assert_int_equal(getxattr(at(f, "app"), "trusted.overlay.opaque", value, sizeof(value)), -1);

	assert_int_equal(lstat(at(f, ".wh..wh.plnk"), &st), -1);
	assert_file(f, "empty", "");
	assert_file(f, "caf\xc3\xa9.txt", "utf-8 name");

	/* The root keeps its own mode, not the tar's "./" entry's. */
	assert_int_equal(lstat(f->dest, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
}

static void
unpack_ok(struct fixture *f)
{
	struct cove_error *err = NULL;
	if (cove_unpack_layer(f->tar, f->dest, NULL, &err) < 0)
		fail_msg("unpack: %s", err->msg);
}

static void
test_gzip(void **state)
{
	struct fixture *f = *state;
	write_tar(f->tar, ARCHIVE_FILTER_GZIP, layer, sizeof(layer) / sizeof(layer[0]));
	unpack_ok(f);
	check_layer(f);
}

static void
test_zstd(void **state)
{
	struct fixture *f = *state;
	write_tar(f->tar, ARCHIVE_FILTER_ZSTD, layer, sizeof(layer) / sizeof(layer[0]));
	unpack_ok(f);
	check_layer(f);
}

static void
test_uncompressed(void **state)
{
	struct fixture *f = *state;
	write_tar(f->tar, ARCHIVE_FILTER_NONE, layer, sizeof(layer) / sizeof(layer[0]));
	unpack_ok(f);
	check_layer(f);
}

static void
test_empty_layer(void **state)
{
	struct fixture *f = *state;
	write_tar(f->tar, ARCHIVE_FILTER_GZIP, NULL, 0);
	unpack_ok(f);
	FILE *fp = fopen(f->tar, "w");
	fclose(fp);
	unpack_ok(f);
}

/* A later entry replaces an earlier one, also a whiteout's device. */
static void
test_overwrite(void **state)
{
	struct fixture *f = *state;
	static const struct tar_entry e[] = {
		{"a", FILE_, 0644, "one", NULL, 0, 0, 0, NULL, NULL},
		{"a", FILE_, 0644, "two", NULL, 0, 0, 0, NULL, NULL},
		{".wh.b", FILE_, 0644, NULL, NULL, 0, 0, 0, NULL, NULL},
		{"b", FILE_, 0644, "back", NULL, 0, 0, 0, NULL, NULL},
	};
	write_tar(f->tar, ARCHIVE_FILTER_GZIP, e, 4);
	unpack_ok(f);
	assert_file(f, "a", "two");
	assert_file(f, "b", "back");
}

struct bad_case {
	const char *why;
	struct tar_entry e[3];
	size_t n;
	const char *outside; /* must not exist afterwards, relative to f->root */
};

static void
test_escapes_refused(void **state)
{
	struct fixture *f = *state;
	static const struct bad_case cases[] = {
		{"dotdot", {{"../escape", FILE_, 0644, "x", NULL, 0, 0, 0, NULL, NULL}}, 1, "escape"},
		{"dotdot inside", {{"a/../../escape", FILE_, 0644, "x", NULL, 0, 0, 0, NULL, NULL}}, 1, "escape"},
		{"absolute", {{"/tmp/cove-unpack-abs", FILE_, 0644, "x", NULL, 0, 0, 0, NULL, NULL}}, 1, NULL},
		{"through a symlink",
		 {{"lnk", SYMLINK_, 0777, NULL, "..", 0, 0, 0, NULL, NULL},
		  {"lnk/escape", FILE_, 0644, "x", NULL, 0, 0, 0, NULL, NULL}},
		 2,
		 "escape"},
		{"through an absolute symlink",
		 {{"lnk", SYMLINK_, 0777, NULL, "/tmp", 0, 0, 0, NULL, NULL},
		  {"lnk/cove-unpack-escape", FILE_, 0644, "x", NULL, 0, 0, 0, NULL, NULL}},
		 2,
		 NULL},
		{"hard link out",
		 {{"hard", HARDLINK_, 0644, NULL, "../layer.tar", 0, 0, 0, NULL, NULL}},
		 1,
		 NULL},
		{"hard link through a symlink",
		 {{"lnk", SYMLINK_, 0777, NULL, "..", 0, 0, 0, NULL, NULL},
		  {"hard", HARDLINK_, 0644, NULL, "lnk/layer.tar", 0, 0, 0, NULL, NULL}},
		 2,
		 NULL},
		{"whiteout through a symlink",
		 {{"lnk", SYMLINK_, 0777, NULL, "..", 0, 0, 0, NULL, NULL},
		  {"lnk/.wh.escape", FILE_, 0644, NULL, NULL, 0, 0, 0, NULL, NULL}},
		 2,
		 "escape"},
		{"opaque through a symlink",
		 {{"lnk", SYMLINK_, 0777, NULL, "..", 0, 0, 0, NULL, NULL},
		  {"lnk/.wh..wh..opq", FILE_, 0644, NULL, NULL, 0, 0, 0, NULL, NULL}},
		 2,
		 NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		struct cove_error *err = NULL;
		cove_remove_tree(f->dest, &err);
		assert_int_equal(mkdir(f->dest, 0755), 0);
		write_tar(f->tar, ARCHIVE_FILTER_NONE, c->e, c->n);
		if (cove_unpack_layer(f->tar, f->dest, NULL, &err) == 0)
			fail_msg("%s: unpacked", c->why);
		if (err->code != COVE_INVALID_ARGUMENT)
			fail_msg("%s: %s (%s)", c->why, err->msg, cove_status_name(err->code));
		assert_non_null(strstr(err->msg, "layer entry"));
		cove_error_free(err);
		if (c->outside) {
			char path[256];
			struct stat st;
			snprintf(path, sizeof(path), "%s/%s", f->root, c->outside);
			if (lstat(path, &st) == 0)
				fail_msg("%s: %s was created", c->why, path);
		}
		struct stat st;
		assert_int_equal(lstat("/tmp/cove-unpack-abs", &st), -1);
		assert_int_equal(lstat("/tmp/cove-unpack-escape", &st), -1);
		assert_int_equal(getxattr(f->root, "trusted.overlay.opaque", NULL, 0), -1);
	}
}

/* Device nodes are left out, whatever their numbers, and the report names the first and counts them all: an
 * image could otherwise hand a container the host's disks. The rest of the layer goes in. */
static void
test_devices_left_out(void **state)
{
	struct fixture *f = *state;
	static const struct {
		enum kind kind;
		const char *says;
	} cases[] = {{BLK_, "dev/node (block 8:0)"}, {CHR_, "dev/node (character 1:3)"},
		     {CHR0_, "dev/node (character 0:0)"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cove_error *err = NULL;
		cove_remove_tree(f->dest, &err);
		assert_int_equal(mkdir(f->dest, 0755), 0);
		struct tar_entry e[] = {{"dev/", DIR_, 0755, NULL, NULL, 0, 0, 0, NULL, NULL},
					{"dev/node", cases[i].kind, 0660, NULL, NULL, 0, 0, 0, NULL, NULL},
					{"dev/other", BLK_, 0660, NULL, NULL, 0, 0, 0, NULL, NULL},
					{"etc/kept", FILE_, 0644, "kept\n", NULL, 0, 0, 0, NULL, NULL}};
		write_tar(f->tar, ARCHIVE_FILTER_GZIP, e, 4);
		struct cove_unpack_report rep;
		memset(&rep, 0x55, sizeof(rep));
		if (cove_unpack_layer(f->tar, f->dest, &rep, &err) < 0)
			fail_msg("%s", err->msg);
		assert_int_equal(rep.devices_left_out, 2);
		assert_string_equal(rep.first_device, cases[i].says);
		struct stat st;
		assert_int_equal(lstat(at(f, "dev/node"), &st), -1);
		assert_int_equal(lstat(at(f, "dev/other"), &st), -1);
		assert_int_equal(lstat(at(f, "dev"), &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(lstat(at(f, "etc/kept"), &st), 0);
		/* Without a report it is the same. */
		cove_remove_tree(f->dest, &err);
		assert_int_equal(mkdir(f->dest, 0755), 0);
		assert_int_equal(cove_unpack_layer(f->tar, f->dest, NULL, &err), 0);
		assert_int_equal(lstat(at(f, "dev/node"), &st), -1);
	}
}

/* A directory the layer makes, then replaces by a symlink to the outside: libarchive sets directories' modes and
 * times when the layer ends, and that must not land on what the link points at. */
static void
test_replaced_directory_fixup_stays_inside(void **state)
{
	struct fixture *f = *state;
	cleanup_free char *outside = xasprintf("%s/outside", f->root);
	assert_int_equal(mkdir(outside, 0755), 0);
	struct stat before;
	assert_int_equal(stat(outside, &before), 0);
	struct tar_entry e[] = {{"a/", DIR_, 0700, NULL, NULL, 0, 0, 123, NULL, NULL},
				{"a", SYMLINK_, 0777, NULL, "../outside", 0, 0, 0, NULL, NULL}};
	write_tar(f->tar, ARCHIVE_FILTER_NONE, e, 2);
	struct cove_error *err = NULL;
	if (cove_unpack_layer(f->tar, f->dest, NULL, &err) < 0) {
		/* Refusing the layer is fine too. */
		cove_error_free(err);
	}
	struct stat after;
	assert_int_equal(stat(outside, &after), 0);
	assert_int_equal(after.st_mode & 07777, 0755);
	assert_int_equal(after.st_mtime, before.st_mtime);
}

static void
test_corrupt(void **state)
{
	struct fixture *f = *state;
	write_tar(f->tar, ARCHIVE_FILTER_GZIP, layer, sizeof(layer) / sizeof(layer[0]));
	/* Truncate the gzip stream in the middle. */
	struct stat st;
	assert_int_equal(stat(f->tar, &st), 0);
	assert_int_equal(truncate(f->tar, st.st_size / 2), 0);
	struct cove_error *err = NULL;
	assert_int_equal(cove_unpack_layer(f->tar, f->dest, NULL, &err), -1);
	assert_int_equal(err->code, COVE_DATA_LOSS);
	cove_error_free(err);
	err = NULL;

	FILE *fp = fopen(f->tar, "w");
	fputs("this is not a tar archive, not even close; it goes on for a while to fill a block or so......", fp);
	fclose(fp);
	assert_int_equal(cove_unpack_layer(f->tar, f->dest, NULL, &err), -1);
	if (err->code != COVE_DATA_LOSS)
		fail_msg("%s", err->msg);
	assert_non_null(strstr(err->msg, f->tar));
	cove_error_free(err);
	err = NULL;

	char *missing = xasprintf("%s/missing.tar", f->root);
	assert_int_equal(cove_unpack_layer(missing, f->dest, NULL, &err), -1);
	assert_int_equal(err->code, COVE_INTERNAL);
	assert_non_null(strstr(err->msg, "missing.tar"));
	free(missing);
	cove_error_free(err);
}

int
main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_image_unpack: needs root (owners, mknod, trusted.* xattrs); skipped\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_gzip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zstd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uncompressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_layer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overwrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_escapes_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_devices_left_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replaced_directory_fixup_stays_inside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
