/* Volume pieces that need no server: path normalization, the block store (write, verify, probe, read, sync) and
 * block garbage collection with its grace period and references. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "blob/blobstore.h"
#include "store/volume.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/hash.h"

static void
check_path(const char *in, int allow_root, const char *want)
{
	char *out = NULL;
	const char *why = NULL;
	int rc = cove_vpath_normalize(in, allow_root, &out, &why);
	if (want == NULL) {
		assert_int_equal(rc, -1);
		assert_non_null(why);
		return;
	}
	assert_int_equal(rc, 0);
	assert_string_equal(out, want);
	free(out);
}

static void
test_paths(void **state)
{
	(void)state;
	check_path("/a/b.txt", 0, "a/b.txt");
	check_path("a//b/./c/", 0, "a/b/c");
	check_path("./x", 0, "x");
	check_path("/", 1, "");
	check_path("", 1, "");
	check_path(".", 1, "");
	check_path("/", 0, NULL);
	check_path("a/../b", 0, NULL);
	check_path("..", 1, NULL);
	check_path("/a/..", 1, NULL);
	check_path("caf\xc3\xa9", 0, "caf\xc3\xa9");
	check_path("bad\xff", 0, NULL);
	check_path("over\xc0\xaf", 0, NULL); /* an overlong '/' */
	char name[300];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	check_path(name, 0, NULL);
	char *parent = cove_vpath_parent("a/b/c");
	assert_string_equal(parent, "a/b");
	free(parent);
	parent = cove_vpath_parent("top");
	assert_string_equal(parent, "");
	free(parent);
	assert_int_equal(cove_vfile_n_blocks(0), 0);
	assert_int_equal(cove_vfile_n_blocks(1), 1);
	assert_int_equal(cove_vfile_n_blocks(COVE_BLOCK_SIZE), 1);
	assert_int_equal(cove_vfile_n_blocks(COVE_BLOCK_SIZE + 1), 2);
}

struct fixture {
	char root[64];
	struct cove_blobstore *bs;
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/cove-volume-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	struct cove_error *err = NULL;
	f->bs = cove_blobstore_open(f->root, &err);
	assert_null(err);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	cove_blobstore_free(f->bs);
	struct cove_error *err = NULL;
	cove_remove_tree(f->root, &err);
	cove_error_free(err);
	free(f);
	return 0;
}

static void
put(struct cove_blobstore *bs, const char *text, uint8_t hash[32])
{
	cove_sha256(text, strlen(text), hash);
	struct iovec iov[2] = {{(void *)text, 2}, {(void *)(text + 2), strlen(text) - 2}};
	struct cove_error *err = NULL;
	assert_int_equal(cove_blobstore_block_writev(bs, hash, iov, 2, &err), 0);
	assert_null(err);
}

static void
test_blocks(void **state)
{
	struct fixture *f = *state;
	uint8_t h[32], other[32];
	put(f->bs, "block content", h);
	put(f->bs, "block content", h); /* again: nothing changes */
	uint64_t len = 0;
	struct cove_error *err = NULL;
	assert_int_equal(cove_blobstore_block_probe(f->bs, h, &len, &err), 1);
	assert_int_equal(len, strlen("block content"));
	int fd = -1;
	assert_int_equal(cove_blobstore_block_open(f->bs, h, &fd, &len, &err), 0);
	char buf[64] = {0};
	assert_int_equal(read(fd, buf, sizeof(buf)), 13);
	close(fd);
	assert_string_equal(buf, "block content");
	assert_int_equal(cove_blobstore_sync_blocks(f->bs, &err), 0);
	assert_int_equal(cove_blobstore_sync_blocks(f->bs, &err), 0);

	/* Content that does not hash to its name is refused. */
	cove_sha256("something else", 14, other);
	struct iovec iov = {"not it", 6};
	assert_int_equal(cove_blobstore_block_writev(f->bs, other, &iov, 1, &err), -1);
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	cove_error_free(err);
	err = NULL;
	assert_int_equal(cove_blobstore_block_probe(f->bs, other, &len, &err), 0);
	assert_int_equal(cove_blobstore_block_open(f->bs, other, &fd, &len, &err), -1);
	assert_int_equal(err->code, COVE_NOT_FOUND);
	cove_error_free(err);
	err = NULL;

	/* The empty block always exists and is never stored. */
	assert_int_equal(cove_blobstore_block_probe(f->bs, cove_block_empty_hash, &len, &err), 1);
	assert_int_equal(len, 0);
	assert_int_equal(cove_blobstore_block_open(f->bs, cove_block_empty_hash, &fd, &len, &err), 0);
	assert_int_equal(fd, -1);

	/* Too big. */
	uint8_t *big = xcalloc(1, COVE_BLOCK_SIZE + 1);
	struct iovec biov = {big, COVE_BLOCK_SIZE + 1};
	assert_int_equal(cove_blobstore_block_writev(f->bs, other, &biov, 1, &err), -1);
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	cove_error_free(err);
	free(big);

	uint8_t parsed[32];
	char hex[65];
	cove_hex(h, 32, hex);
	assert_int_equal(cove_block_hash_parse(hex, parsed), 0);
	assert_memory_equal(parsed, h, 32);
	assert_int_equal(cove_block_hash_parse("abc", parsed), -1);
	hex[5] = 'g';
	assert_int_equal(cove_block_hash_parse(hex, parsed), -1);
}

struct refs {
	uint8_t keep[32];
	int asked;
};

static int
referenced(void *arg, const uint8_t hash[32])
{
	struct refs *r = arg;
	r->asked++;
	return memcmp(hash, r->keep, 32) == 0;
}

/* Make a block look untouched for an hour. */
static void
age(struct fixture *f, const uint8_t h[32])
{
	char hex[65];
	cove_hex(h, 32, hex);
	char path[256];
	snprintf(path, sizeof(path), "%s/volumes/blocks/%.2s/%s", f->root, hex, hex);
	struct timeval tv[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
	assert_int_equal(utimes(path, tv), 0);
}

static void
test_gc(void **state)
{
	struct fixture *f = *state;
	uint8_t a[32], b[32], c[32];
	put(f->bs, "kept: referenced", a);
	put(f->bs, "dropped: old and unreferenced", b);
	put(f->bs, "kept: young", c);
	age(f, a);
	age(f, b);
	struct refs r;
	memcpy(r.keep, a, 32);
	r.asked = 0;
	struct cove_blocks_gc_stats st;
	struct cove_error *err = NULL;
	assert_int_equal(cove_blocks_gc(f->root, 600, referenced, &r, &st, &err), 0);
	assert_int_equal(st.scanned, 3);
	assert_int_equal(st.removed, 1);
	assert_int_equal(st.kept_referenced, 1);
	assert_int_equal(st.kept_recent, 1);
	assert_int_equal(r.asked, 2); /* only about the old ones */
	uint64_t len;
	assert_int_equal(cove_blobstore_block_probe(f->bs, b, &len, &err), 0);
	assert_int_equal(cove_blobstore_block_probe(f->bs, a, &len, &err), 1);
	assert_int_equal(cove_blocks_stored_size(f->root, c), (int64_t)strlen("kept: young"));
	assert_int_equal(cove_blocks_stored_size(f->root, b), -1);

	/* A probe refreshes a block's clock: an old unreferenced block that someone is about to use stays. */
	age(f, c);
	assert_int_equal(cove_blobstore_block_probe(f->bs, c, &len, &err), 1);
	assert_int_equal(cove_blocks_gc(f->root, 600, referenced, &r, &st, &err), 0);
	assert_int_equal(st.removed, 0);
	/* With no grace at all, it goes. */
	assert_int_equal(cove_blocks_gc(f->root, 0, referenced, &r, &st, &err), 0);
	assert_int_equal(st.removed, 1);
	assert_int_equal(cove_blobstore_block_probe(f->bs, c, &len, &err), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths),
		cmocka_unit_test_setup_teardown(test_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
