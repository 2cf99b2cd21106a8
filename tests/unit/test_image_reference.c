/* Image references: Docker's normalisation (Docker Hub, library/, default tag), registries with ports and
 * IPv6, digests, and the malformed ones refused with a message naming the reference. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "image/reference.h"
#include "util/alloc.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct ok_case {
	const char *ref, *registry, *repository, *tag, *digest;
	int hub;
};

static void
test_valid(void **state)
{
	(void)state;
	static const struct ok_case cases[] = {
		{"python:3.11-slim-bookworm", "registry-1.docker.io", "library/python", "3.11-slim-bookworm", NULL, 1},
		{"python", "registry-1.docker.io", "library/python", "latest", NULL, 1},
		{"ubuntu:22.04", "registry-1.docker.io", "library/ubuntu", "22.04", NULL, 1},
		{"user/app", "registry-1.docker.io", "user/app", "latest", NULL, 1},
		{"docker.io/library/python:3", "registry-1.docker.io", "library/python", "3", NULL, 1},
		{"docker.io/python", "registry-1.docker.io", "library/python", "latest", NULL, 1},
		{"index.docker.io/user/app:v2", "registry-1.docker.io", "user/app", "v2", NULL, 1},
		{"ghcr.io/org/name:tag", "ghcr.io", "org/name", "tag", NULL, 0},
		{"ghcr.io/org/sub/name", "ghcr.io", "org/sub/name", "latest", NULL, 0},
		{"127.0.0.1:5000/team/app:v1", "127.0.0.1:5000", "team/app", "v1", NULL, 0},
		{"localhost:5000/x", "localhost:5000", "x", "latest", NULL, 0},
		{"localhost/x:1", "localhost", "x", "1", NULL, 0},
		{"[::1]:5000/x:y", "[::1]:5000", "x", "y", NULL, 0},
		{"Registry.Example/x", "Registry.Example", "x", "latest", NULL, 0},
		{"name@sha256:" HEX64, "registry-1.docker.io", "library/name", NULL, "sha256:" HEX64, 1},
		{"ghcr.io/a/b:t@sha256:" HEX64, "ghcr.io", "a/b", "t", "sha256:" HEX64, 0},
		{"a.b-c--d/f_g", "a.b-c--d", "f_g", "latest", NULL, 0},
		{"x/a.b-c__d---e_f:_T.a-g", "registry-1.docker.io", "x/a.b-c__d---e_f", "_T.a-g", NULL, 1},
		{"localhost:5000", "registry-1.docker.io", "library/localhost", "5000", NULL, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ok_case *c = &cases[i];
		struct cove_image_ref r;
		struct cove_error *err = NULL;
		if (cove_image_ref_parse(c->ref, &r, &err) < 0)
			fail_msg("%s: %s", c->ref, err->msg);
		assert_string_equal(r.registry, c->registry);
		assert_string_equal(r.repository, c->repository);
		if (c->tag)
			assert_string_equal(r.tag, c->tag);
		else
			assert_null(r.tag);
		if (c->digest)
			assert_string_equal(r.digest, c->digest);
		else
			assert_null(r.digest);
		assert_int_equal(r.docker_hub, c->hub);
		assert_string_equal(cove_image_ref_manifest_ref(&r), c->digest ? c->digest : c->tag);
		cove_image_ref_free(&r);
		assert_null(r.registry);
	}
}

static void
test_invalid(void **state)
{
	(void)state;
	static const char *bad[] = {
		"",
		"Python",
		"python:",
		"python:-x",
		":tag",
		"/x",
		"x/",
		"x//y",
		"ghcr.io/",
		"a b",
		"x\n",
		"name@sha256:abc",
		"name@sha256:" HEX64 "00",
		"name@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"name@md5:0123456789abcdef0123456789abcdef",
		"name@",
		"127.0.0.1:99999/x",
		"127.0.0.1:0/x",
		"127.0.0.1:/x",
		"host:port/x",
		"-host.io/x",
		"host-.io/x",
		"[::1/x",
		"[]/x",
		"ghcr.io/Org/x",
		"x/a..b",
		"x/a._b",
		"x/a___b",
		"x/-a",
		"x/a-",
		"x:tag:tag",
		HEX64,
		"\xc3\xa9t\xc3\xa9",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cove_image_ref r;
		struct cove_error *err = NULL;
		if (cove_image_ref_parse(bad[i], &r, &err) == 0)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_non_null(err);
		assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
		assert_non_null(strstr(err->msg, "invalid image reference"));
		assert_null(r.registry);
		cove_error_free(err);
	}
}

static void
test_message_names_reference(void **state)
{
	(void)state;
	struct cove_image_ref r;
	struct cove_error *err = NULL;
	assert_int_equal(cove_image_ref_parse("ghcr.io/Org/App:1", &r, &err), -1);
	assert_non_null(strstr(err->msg, "\"ghcr.io/Org/App:1\""));
	assert_non_null(strstr(err->msg, "lowercase"));
	cove_error_free(err);
	err = NULL;
	/* Control characters are escaped, not printed. */
	assert_int_equal(cove_image_ref_parse("a\x1b[2Jb", &r, &err), -1);
	assert_non_null(strstr(err->msg, "\\x1b"));
	assert_null(strchr(err->msg, '\x1b'));
	cove_error_free(err);
}

static void
test_long_names(void **state)
{
	(void)state;
	/* 255 for the normalised name: "docker.io/library/" + 237. */
	char name[300];
	memset(name, 'a', sizeof(name));
	name[237] = '\0';
	struct cove_image_ref r;
	struct cove_error *err = NULL;
	assert_int_equal(cove_image_ref_parse(name, &r, &err), 0);
	cove_image_ref_free(&r);
	name[237] = 'a';
	name[238] = '\0';
	assert_int_equal(cove_image_ref_parse(name, &r, &err), -1);
	assert_non_null(strstr(err->msg, "255"));
	cove_error_free(err);
	err = NULL;

	/* Tags: up to 128 characters. */
	char ref[200] = "x:";
	memset(ref + 2, 't', 128);
	ref[130] = '\0';
	assert_int_equal(cove_image_ref_parse(ref, &r, &err), 0);
	assert_int_equal(strlen(r.tag), 128);
	cove_image_ref_free(&r);
	ref[130] = 't';
	ref[131] = '\0';
	assert_int_equal(cove_image_ref_parse(ref, &r, &err), -1);
	assert_non_null(strstr(err->msg, "128"));
	cove_error_free(err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_message_names_reference),
		cmocka_unit_test(test_long_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
