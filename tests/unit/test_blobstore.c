/* Blob store: ids, whole-file writes, streaming writers, multipart joins, content files, crash leftovers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blob/blobstore.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/hash.h"

struct fixture {
	char root[64];
	struct cove_blobstore *bs;
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/cove-blobstore-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	struct cove_error *err = NULL;
	f->bs = cove_blobstore_open(f->root, &err);
	assert_null(err);
	assert_non_null(f->bs);
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
fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* Entries of dir whose name starts with prefix. */
static int
count_entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int
temp_files(struct fixture *f)
{
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/blobs", f->root);
	int n = count_entries(dir, ".tmp-");
	snprintf(dir, sizeof(dir), "%s/files", f->root);
	return n + count_entries(dir, ".tmp-");
}

static void
test_ids(void **state)
{
	struct fixture *f = *state;
	char *id = cove_blobstore_new_id(f->bs);
	assert_int_equal(strlen(id), 25);
	assert_memory_equal(id, "bl-", 3);
	assert_true(cove_blobstore_valid_id(id));
	char *id2 = cove_blobstore_new_id(f->bs);
	assert_string_not_equal(id, id2);
	free(id);
	free(id2);

	assert_true(cove_blobstore_valid_id("bl-abc123XYZ"));
	const char *bad[] = {
		"", "bl", "bl-", "bl-../etc", "bl-a/b", "bl-a.b", "bl-a b", "xx-abc", "BL-abc", "bl_abc", "bl--a",
		"bl-abc\n", "/bl-abc",
		"bl-01234567890123456789012345678901234567890123456789012345678901234", /* 65 chars */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(cove_blobstore_valid_id(bad[i]));
		assert_null(cove_blobstore_blob_path(f->bs, bad[i]));
		assert_false(cove_blobstore_has_blob(f->bs, bad[i]));
	}
	assert_false(cove_blobstore_valid_id(NULL));
	assert_null(cove_blobstore_blob_path(f->bs, NULL));
}

static void
test_write_read_blob(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	const char *id = "bl-writeread1";
	assert_false(cove_blobstore_has_blob(f->bs, id));
	assert_int_equal(cove_blobstore_write_blob(f->bs, id, "hello", 5, &err), 0);
	assert_null(err);
	assert_true(cove_blobstore_has_blob(f->bs, id));

	uint8_t *out = NULL;
	size_t len = 0;
	assert_int_equal(cove_blobstore_read_blob(f->bs, id, &out, &len, &err), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(out, "hello", 5);
	free(out);

	/* Replacing. */
	assert_int_equal(cove_blobstore_write_blob(f->bs, id, "bye", 3, &err), 0);
	assert_int_equal(cove_blobstore_read_blob(f->bs, id, &out, &len, &err), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "bye", 3);
	free(out);

	/* Empty blob. */
	assert_int_equal(cove_blobstore_write_blob(f->bs, "bl-empty", "", 0, &err), 0);
	assert_int_equal(cove_blobstore_read_blob(f->bs, "bl-empty", &out, &len, &err), 0);
	assert_int_equal(len, 0);
	free(out);

	char *path = cove_blobstore_blob_path(f->bs, id);
	char want[128];
	snprintf(want, sizeof(want), "%s/blobs/%s", f->root, id);
	assert_string_equal(path, want);
	free(path);

	assert_int_equal(cove_blobstore_read_blob(f->bs, "bl-missing", &out, &len, &err), -1);
	assert_int_equal(err->code, COVE_NOT_FOUND);
	assert_non_null(strstr(err->msg, "bl-missing"));
	cove_error_free(err);
	err = NULL;

	assert_int_equal(cove_blobstore_read_blob(f->bs, "bl-../x", &out, &len, &err), -1);
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	cove_error_free(err);
	err = NULL;
	assert_int_equal(cove_blobstore_write_blob(f->bs, "../../x", "a", 1, &err), -1);
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	cove_error_free(err);
	assert_int_equal(temp_files(f), 0);
}

static void
test_open_blob(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	assert_int_equal(cove_blobstore_write_blob(f->bs, "bl-open", "0123456789", 10, &err), 0);
	int fd = -1;
	uint64_t size = 0;
	assert_int_equal(cove_blobstore_open_blob(f->bs, "bl-open", &fd, &size, &err), 0);
	assert_true(fd >= 0);
	assert_int_equal(size, 10);
	char buf[16];
	assert_int_equal(read(fd, buf, sizeof(buf)), 10);
	assert_memory_equal(buf, "0123456789", 10);
	close(fd);

	assert_int_equal(cove_blobstore_open_blob(f->bs, "bl-nope", &fd, &size, &err), -1);
	assert_int_equal(err->code, COVE_NOT_FOUND);
	cove_error_free(err);
	err = NULL;
	assert_int_equal(cove_blobstore_open_blob(f->bs, "nope", &fd, &size, &err), -1);
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	cove_error_free(err);
}

static void
test_writer(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	struct cove_blob_writer *w = cove_blobstore_blob_writer(f->bs, "bl-stream", &err);
	assert_non_null(w);
	/* Not visible until commit. */
	assert_false(cove_blobstore_has_blob(f->bs, "bl-stream"));
	assert_int_equal(temp_files(f), 1);
	assert_int_equal(cove_blob_writer_write(w, "abc", 3, &err), 0);
	struct iovec iov[3] = {{"def", 3}, {"", 0}, {"ghij", 4}};
	assert_int_equal(cove_blob_writer_writev(w, iov, 3, &err), 0);
	/* More iovecs than one writev batch. */
	struct iovec many[150];
	for (int i = 0; i < 150; i++) {
		many[i].iov_base = (void *)"k";
		many[i].iov_len = 1;
	}
	assert_int_equal(cove_blob_writer_writev(w, many, 150, &err), 0);
	uint8_t md5[16];
	assert_int_equal(cove_blob_writer_commit(w, NULL, md5, &err), 0);
	assert_null(err);
	assert_int_equal(temp_files(f), 0);

	char want[160 + 1];
	memcpy(want, "abcdefghij", 10);
	memset(want + 10, 'k', 150);
	uint8_t want_md5[16];
	cove_md5(want, 160, want_md5);
	assert_memory_equal(md5, want_md5, 16);
	uint8_t *out;
	size_t len;
	assert_int_equal(cove_blobstore_read_blob(f->bs, "bl-stream", &out, &len, &err), 0);
	assert_int_equal(len, 160);
	assert_memory_equal(out, want, 160);
	free(out);

	/* Content-MD5 mismatch: nothing changes, nothing is left behind. */
	w = cove_blobstore_blob_writer(f->bs, "bl-stream", &err);
	assert_int_equal(cove_blob_writer_write(w, "other", 5, &err), 0);
	uint8_t wrong[16] = {0};
	assert_int_equal(cove_blob_writer_commit(w, wrong, md5, &err), -1);
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	assert_string_equal(err->msg, "The Content-MD5 you specified did not match what we received.");
	cove_error_free(err);
	err = NULL;
	assert_int_equal(temp_files(f), 0);
	assert_int_equal(cove_blobstore_read_blob(f->bs, "bl-stream", &out, &len, &err), 0);
	assert_int_equal(len, 160);
	free(out);

	/* Matching Content-MD5. */
	w = cove_blobstore_blob_writer(f->bs, "bl-stream", &err);
	assert_int_equal(cove_blob_writer_write(w, "other", 5, &err), 0);
	cove_md5("other", 5, want_md5);
	assert_int_equal(cove_blob_writer_commit(w, want_md5, NULL, &err), 0);
	assert_int_equal(cove_blobstore_read_blob(f->bs, "bl-stream", &out, &len, &err), 0);
	assert_int_equal(len, 5);
	free(out);

	/* Abort. */
	w = cove_blobstore_blob_writer(f->bs, "bl-aborted", &err);
	assert_int_equal(cove_blob_writer_write(w, "x", 1, &err), 0);
	cove_blob_writer_abort(w);
	cove_blob_writer_abort(NULL);
	assert_false(cove_blobstore_has_blob(f->bs, "bl-aborted"));
	assert_int_equal(temp_files(f), 0);

	assert_null(cove_blobstore_blob_writer(f->bs, "bl-a/b", &err));
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	cove_error_free(err);
}

static void
write_part(struct fixture *f, const char *id, int n, const void *data, size_t len, uint8_t md5[16])
{
	struct cove_error *err = NULL;
	struct cove_blob_writer *w = cove_blobstore_part_writer(f->bs, id, n, &err);
	assert_non_null(w);
	assert_int_equal(cove_blob_writer_write(w, data, len, &err), 0);
	assert_int_equal(cove_blob_writer_commit(w, NULL, md5, &err), 0);
	assert_null(err);
}

static void
expected_etag(const struct cove_blob_part *parts, size_t n, char out[COVE_BLOB_ETAG_MAX])
{
	uint8_t *cat = xmalloc(16 * n);
	for (size_t i = 0; i < n; i++)
		memcpy(cat + 16 * i, parts[i].md5, 16);
	char hex[33];
	cove_md5_hex(cat, 16 * n, hex);
	free(cat);
	snprintf(out, COVE_BLOB_ETAG_MAX, "%s-%u", hex, (unsigned)n);
}

static void
test_multipart(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	const char *id = "bl-multi";
	/* Sizes past 1 MiB exercise the copy loop's chunking. */
	size_t sizes[3] = {3u << 20, (1u << 20) + 17, 5};
	uint8_t *data[3];
	struct cove_blob_part parts[3];
	for (int i = 2; i >= 0; i--) { /* parts may arrive in any order */
		data[i] = xmalloc(sizes[i]);
		fill(data[i], sizes[i], (unsigned)i + 1);
		parts[i].number = i + 1;
		write_part(f, id, i + 1, data[i], sizes[i], parts[i].md5);
	}
	/* Parts are not the blob. */
	assert_false(cove_blobstore_has_blob(f->bs, id));

	char etag[COVE_BLOB_ETAG_MAX], want[COVE_BLOB_ETAG_MAX];
	assert_int_equal(cove_blobstore_complete_multipart(f->bs, id, parts, 3, etag, &err), 0);
	assert_null(err);
	expected_etag(parts, 3, want);
	assert_string_equal(etag, want);

	uint8_t *out;
	size_t len;
	assert_int_equal(cove_blobstore_read_blob(f->bs, id, &out, &len, &err), 0);
	assert_int_equal(len, sizes[0] + sizes[1] + sizes[2]);
	assert_memory_equal(out, data[0], sizes[0]);
	assert_memory_equal(out + sizes[0], data[1], sizes[1]);
	assert_memory_equal(out + sizes[0] + sizes[1], data[2], sizes[2]);
	free(out);
	for (int i = 0; i < 3; i++)
		free(data[i]);

	/* The parts are gone; completing again finds no upload. */
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/blobs/.staging/%s", f->root, id);
	struct stat st;
	assert_int_equal(stat(dir, &st), -1);
	assert_int_equal(cove_blobstore_complete_multipart(f->bs, id, parts, 3, etag, &err), -1);
	assert_int_equal(err->code, COVE_NOT_FOUND);
	cove_error_free(err);
	assert_int_equal(temp_files(f), 0);
}

static void
test_multipart_gaps_and_rewrites(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	const char *id = "bl-gaps";
	struct cove_blob_part parts[2];
	uint8_t ignored[16];
	write_part(f, id, 2, "first try", 9, ignored);
	write_part(f, id, 2, "AB", 2, parts[0].md5); /* a retried part replaces the earlier one */
	parts[0].number = 2;
	write_part(f, id, 7, "CD", 2, parts[1].md5);
	parts[1].number = 7;
	write_part(f, id, 5, "unlisted", 8, ignored); /* parts not listed are dropped */
	char etag[COVE_BLOB_ETAG_MAX], want[COVE_BLOB_ETAG_MAX];
	assert_int_equal(cove_blobstore_complete_multipart(f->bs, id, parts, 2, etag, &err), 0);
	expected_etag(parts, 2, want);
	assert_string_equal(etag, want);
	uint8_t *out;
	size_t len;
	assert_int_equal(cove_blobstore_read_blob(f->bs, id, &out, &len, &err), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(out, "ABCD", 4);
	free(out);
	/* An empty part is fine too. */
	write_part(f, "bl-emptypart", 1, "", 0, parts[0].md5);
	parts[0].number = 1;
	assert_int_equal(cove_blobstore_complete_multipart(f->bs, "bl-emptypart", parts, 1, etag, &err), 0);
	assert_true(cove_blobstore_has_blob(f->bs, "bl-emptypart"));
}

static void
expect_error(int r, struct cove_error **err, int code)
{
	assert_int_equal(r, -1);
	assert_non_null(*err);
	assert_int_equal((*err)->code, code);
	cove_error_free(*err);
	*err = NULL;
}

static void
test_multipart_errors(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	const char *id = "bl-errs";
	char etag[COVE_BLOB_ETAG_MAX];
	struct cove_blob_part parts[3];
	write_part(f, id, 1, "one", 3, parts[0].md5);
	write_part(f, id, 2, "two", 3, parts[1].md5);
	parts[0].number = 1;
	parts[1].number = 2;

	/* No such upload. */
	expect_error(cove_blobstore_complete_multipart(f->bs, "bl-none", parts, 2, etag, &err), &err,
		     COVE_NOT_FOUND);
	/* Bad id. */
	expect_error(cove_blobstore_complete_multipart(f->bs, "bl-../x", parts, 2, etag, &err), &err,
		     COVE_INVALID_ARGUMENT);
	/* No parts. */
	expect_error(cove_blobstore_complete_multipart(f->bs, id, parts, 0, etag, &err), &err,
		     COVE_INVALID_ARGUMENT);
	/* Missing part. */
	parts[2] = parts[1];
	parts[2].number = 3;
	expect_error(cove_blobstore_complete_multipart(f->bs, id, parts, 3, etag, &err), &err,
		     COVE_INVALID_ARGUMENT);
	/* Out of order, duplicated. */
	struct cove_blob_part swapped[2] = {parts[1], parts[0]};
	expect_error(cove_blobstore_complete_multipart(f->bs, id, swapped, 2, etag, &err), &err,
		     COVE_INVALID_ARGUMENT);
	struct cove_blob_part dup[2] = {parts[0], parts[0]};
	expect_error(cove_blobstore_complete_multipart(f->bs, id, dup, 2, etag, &err), &err, COVE_INVALID_ARGUMENT);
	/* Out of range numbers. */
	struct cove_blob_part zero[1] = {parts[0]};
	zero[0].number = 0;
	expect_error(cove_blobstore_complete_multipart(f->bs, id, zero, 1, etag, &err), &err, COVE_INVALID_ARGUMENT);
	zero[0].number = COVE_BLOB_MAX_PARTS + 1;
	expect_error(cove_blobstore_complete_multipart(f->bs, id, zero, 1, etag, &err), &err, COVE_INVALID_ARGUMENT);
	/* Wrong ETag. */
	struct cove_blob_part wrong[2] = {parts[0], parts[1]};
	wrong[1].md5[0] ^= 1;
	expect_error(cove_blobstore_complete_multipart(f->bs, id, wrong, 2, etag, &err), &err,
		     COVE_INVALID_ARGUMENT);

	/* Failures leave no temporary blob, no blob, and the parts in place: the right list still works. */
	assert_int_equal(temp_files(f), 0);
	assert_false(cove_blobstore_has_blob(f->bs, id));
	assert_int_equal(cove_blobstore_complete_multipart(f->bs, id, parts, 2, etag, &err), 0);
	uint8_t *out;
	size_t len;
	assert_int_equal(cove_blobstore_read_blob(f->bs, id, &out, &len, &err), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(out, "onetwo", 6);
	free(out);

	/* Part writers validate too. */
	assert_null(cove_blobstore_part_writer(f->bs, id, 0, &err));
	expect_error(-1, &err, COVE_INVALID_ARGUMENT);
	assert_null(cove_blobstore_part_writer(f->bs, id, COVE_BLOB_MAX_PARTS + 1, &err));
	expect_error(-1, &err, COVE_INVALID_ARGUMENT);
	assert_null(cove_blobstore_part_writer(f->bs, "bl-..", 1, &err));
	expect_error(-1, &err, COVE_INVALID_ARGUMENT);
	struct cove_blob_writer *w = cove_blobstore_part_writer(f->bs, id, COVE_BLOB_MAX_PARTS, &err);
	assert_non_null(w);
	cove_blob_writer_abort(w);
}

static void
test_files(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	char sha[65];
	cove_sha256_hex("content", 7, sha);
	assert_false(cove_blobstore_has_file(f->bs, sha));
	assert_int_equal(cove_blobstore_write_file(f->bs, sha, "content", 7, &err), 0);
	assert_null(err);
	assert_true(cove_blobstore_has_file(f->bs, sha));
	/* Idempotent. */
	assert_int_equal(cove_blobstore_write_file(f->bs, sha, "content", 7, &err), 0);
	char *path = cove_blobstore_file_path(f->bs, sha);
	char want[160];
	snprintf(want, sizeof(want), "%s/files/%s", f->root, sha);
	assert_string_equal(path, want);
	uint8_t *out;
	size_t len;
	assert_int_equal(cove_read_file(path, &out, &len, &err), 0);
	assert_int_equal(len, 7);
	assert_memory_equal(out, "content", 7);
	free(out);
	free(path);

	/* Wrong content for the name. */
	char other[65];
	cove_sha256_hex("other", 5, other);
	expect_error(cove_blobstore_write_file(f->bs, other, "content", 7, &err), &err, COVE_INVALID_ARGUMENT);
	assert_false(cove_blobstore_has_file(f->bs, other));

	/* Malformed names. */
	char upper[65];
	strcpy(upper, sha);
	for (int i = 0; i < 64; i++)
		if (upper[i] >= 'a' && upper[i] <= 'f')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	const char *bad[] = {"", "abc", upper, "../../../../../../../../../../../../../../../../../../../../etc/pass"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_error(cove_blobstore_write_file(f->bs, bad[i], "content", 7, &err), &err,
			     COVE_INVALID_ARGUMENT);
		assert_false(cove_blobstore_has_file(f->bs, bad[i]));
		assert_null(cove_blobstore_file_path(f->bs, bad[i]));
	}
	char longer[70];
	snprintf(longer, sizeof(longer), "%s0", sha);
	assert_null(cove_blobstore_file_path(f->bs, longer));
	assert_null(cove_blobstore_file_path(f->bs, NULL));
	assert_int_equal(temp_files(f), 0);
}

static void
test_file_from_blob(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	size_t n = (3u << 20) + 5;
	uint8_t *data = xmalloc(n);
	fill(data, n, 9);
	char sha[65];
	cove_sha256_hex(data, n, sha);
	assert_int_equal(cove_blobstore_write_blob(f->bs, "bl-src", data, n, &err), 0);

	/* A wrong hash is refused. */
	char other[65];
	cove_sha256_hex("x", 1, other);
	expect_error(cove_blobstore_file_from_blob(f->bs, other, "bl-src", &err), &err, COVE_INVALID_ARGUMENT);
	assert_false(cove_blobstore_has_file(f->bs, other));

	assert_int_equal(cove_blobstore_file_from_blob(f->bs, sha, "bl-src", &err), 0);
	assert_null(err);
	assert_true(cove_blobstore_has_file(f->bs, sha));
	char *path = cove_blobstore_file_path(f->bs, sha);
	uint8_t *out;
	size_t len;
	assert_int_equal(cove_read_file(path, &out, &len, &err), 0);
	assert_int_equal(len, n);
	assert_memory_equal(out, data, n);
	free(out);
	free(path);
	/* Present already: fine, even if the blob is gone. */
	assert_int_equal(cove_blobstore_write_blob(f->bs, "bl-src", "replaced", 8, &err), 0);
	assert_int_equal(cove_blobstore_file_from_blob(f->bs, sha, "bl-src", &err), 0);
	/* Replacing the blob did not touch the file that shared its inode. */
	path = cove_blobstore_file_path(f->bs, sha);
	assert_int_equal(cove_read_file(path, &out, &len, &err), 0);
	assert_int_equal(len, n);
	free(out);
	free(path);

	expect_error(cove_blobstore_file_from_blob(f->bs, other, "bl-gone", &err), &err, COVE_NOT_FOUND);
	expect_error(cove_blobstore_file_from_blob(f->bs, other, "bl-../x", &err), &err, COVE_INVALID_ARGUMENT);
	expect_error(cove_blobstore_file_from_blob(f->bs, "ABC", "bl-src", &err), &err, COVE_INVALID_ARGUMENT);
	assert_int_equal(temp_files(f), 0);
	free(data);
}

static void
touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
}

static void
test_reopen_sweeps(void **state)
{
	struct fixture *f = *state;
	struct cove_error *err = NULL;
	char path[200];
	/* Temporary files a crash left. */
	snprintf(path, sizeof(path), "%s/blobs/.tmp-crashed", f->root);
	touch(path);
	snprintf(path, sizeof(path), "%s/files/.tmp-crashed", f->root);
	touch(path);
	/* A fresh upload (kept, its temporaries dropped) and an abandoned one (dropped). */
	uint8_t md5[16];
	write_part(f, "bl-fresh", 1, "a", 1, md5);
	write_part(f, "bl-stale", 1, "b", 1, md5);
	snprintf(path, sizeof(path), "%s/blobs/.staging/bl-fresh/.tmp-crashed", f->root);
	touch(path);
	snprintf(path, sizeof(path), "%s/blobs/.staging/bl-stale", f->root);
	struct timeval old[2];
	gettimeofday(&old[0], NULL);
	old[0].tv_sec -= 8 * 24 * 3600;
	old[1] = old[0];
	assert_int_equal(utimes(path, old), 0);
	assert_int_equal(cove_blobstore_write_blob(f->bs, "bl-kept", "k", 1, &err), 0);

	cove_blobstore_free(f->bs);
	f->bs = cove_blobstore_open(f->root, &err);
	assert_non_null(f->bs);

	assert_int_equal(temp_files(f), 0);
	assert_true(cove_blobstore_has_blob(f->bs, "bl-kept"));
	struct stat st;
	assert_int_equal(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/blobs/.staging/bl-fresh", f->root);
	assert_int_equal(count_entries(path, ""), 1);
	struct cove_blob_part part = {.number = 1};
	cove_md5("a", 1, part.md5);
	char etag[COVE_BLOB_ETAG_MAX];
	assert_int_equal(cove_blobstore_complete_multipart(f->bs, "bl-fresh", &part, 1, etag, &err), 0);
}

/* Runs fn(root) in a child with its own mount namespace and a 1 MiB tmpfs at root, so a full disk can be
 * simulated without touching the host. Skips where namespaces are not allowed (not root, seccomp). */
static void
with_small_disk(void (*fn)(const char *root))
{
	char root[] = "/tmp/cove-blobstore-full-XXXXXX";
	assert_non_null(mkdtemp(root));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", root, "tmpfs", 0, "size=1m") < 0)
			_exit(77);
		fn(root);
		_exit(0);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	rmdir(root);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

#define CHILD_CHECK(cond)                                                                                        \
	do {                                                                                                     \
		if (!(cond)) {                                                                                   \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                                \
			_exit(1);                                                                                \
		}                                                                                                \
	} while (0)

static void
disk_full_child(const char *root)
{
	struct cove_error *err = NULL;
	struct cove_blobstore *bs = cove_blobstore_open(root, &err);
	CHILD_CHECK(bs != NULL);
	size_t n = 2u << 20;
	uint8_t *big = xcalloc(1, n);

	/* A whole blob that does not fit. */
	CHILD_CHECK(cove_blobstore_write_blob(bs, "bl-full", big, n, &err) == -1);
	CHILD_CHECK(err->code == COVE_RESOURCE_EXHAUSTED);
	cove_error_free(err);
	err = NULL;
	CHILD_CHECK(!cove_blobstore_has_blob(bs, "bl-full"));

	/* Parts that fit, a join that does not. */
	uint8_t md5[16];
	struct cove_blob_part parts[2];
	for (int i = 0; i < 2; i++) {
		struct cove_blob_writer *w = cove_blobstore_part_writer(bs, "bl-full", i + 1, &err);
		CHILD_CHECK(w != NULL);
		CHILD_CHECK(cove_blob_writer_write(w, big, 400u << 10, &err) == 0);
		CHILD_CHECK(cove_blob_writer_commit(w, NULL, md5, &err) == 0);
		parts[i].number = i + 1;
		memcpy(parts[i].md5, md5, 16);
	}
	char etag[COVE_BLOB_ETAG_MAX];
	CHILD_CHECK(cove_blobstore_complete_multipart(bs, "bl-full", parts, 2, etag, &err) == -1);
	CHILD_CHECK(err->code == COVE_RESOURCE_EXHAUSTED);
	cove_error_free(err);
	err = NULL;
	CHILD_CHECK(!cove_blobstore_has_blob(bs, "bl-full"));

	/* Nothing half-written is left, and the store still works once there is room. */
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/blobs", root);
	CHILD_CHECK(count_entries(dir, ".tmp-") == 0);
	CHILD_CHECK(cove_blobstore_write_blob(bs, "bl-small", "ok", 2, &err) == 0);
	free(big);
	cove_blobstore_free(bs);
}

static void
test_disk_full(void **state)
{
	(void)state;
	with_small_disk(disk_full_child);
}

static void
test_open_fails(void **state)
{
	(void)state;
	struct cove_error *err = NULL;
	/* A root under a regular file cannot be created. */
	char file[] = "/tmp/cove-blobstore-file-XXXXXX";
	int fd = mkstemp(file);
	assert_true(fd >= 0);
	close(fd);
	char root[64];
	snprintf(root, sizeof(root), "%s/root", file);
	assert_null(cove_blobstore_open(root, &err));
	assert_non_null(err);
	cove_error_free(err);
	unlink(file);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_blob, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_blob, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multipart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multipart_gaps_and_rewrites, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multipart_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_from_blob, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_sweeps, setup, teardown),
		cmocka_unit_test(test_open_fails),
		cmocka_unit_test(test_disk_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
