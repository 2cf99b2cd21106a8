/* Tool images made from wheels (src/image/wheel.c): which references are such images, and how versions order.
 * Fetching from an index is covered end to end (tests/e2e/test_images.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "image/wheel.h"

static void
test_refs(void **state)
{
	(void)state;
	struct cove_wheel_tool t;
	assert_int_equal(cove_wheel_tool_ref("ghcr.io/astral-sh/uv:0.8.13", &t), 1);
	assert_string_equal(t.project, "uv");
	assert_string_equal(t.version, "0.8.13");
	assert_string_equal(t.scripts[0], "uv");
	assert_string_equal(t.scripts[1], "uvx");
	assert_null(t.scripts[2]);
	assert_int_equal(cove_wheel_tool_ref("ghcr.io/astral-sh/uv:latest", &t), 1);
	assert_string_equal(t.version, "latest");
	assert_int_equal(cove_wheel_tool_ref("ghcr.io/astral-sh/uv:0.8", &t), 1);
	/* Not a plain release of the tool's own image: a registry (or nothing) must serve it. */
	const char *no[] = {"ghcr.io/astral-sh/uv", "ghcr.io/astral-sh/uv:", "ghcr.io/astral-sh/uv:0.8.13-python3.12-bookworm",
			    "ghcr.io/astral-sh/uv@sha256:00", "ghcr.io/astral-sh/uv:1..2", "ghcr.io/astral-sh/uv:.1",
			    "ghcr.io/astral-sh/uvx:0.8.13", "docker.io/astral-sh/uv:0.8.13", "ghcr.io/astral-sh/uv:0.8.13/../x"};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_int_equal(cove_wheel_tool_ref(no[i], &t), 0);
}

static void
test_versions(void **state)
{
	(void)state;
	assert_true(cove_wheel_version_cmp("0.10.2", "0.9.30") > 0);
	assert_true(cove_wheel_version_cmp("0.9.30", "0.10.2") < 0);
	assert_int_equal(cove_wheel_version_cmp("1.0", "1"), 0);
	assert_int_equal(cove_wheel_version_cmp("1.2.3", "1.2.3"), 0);
	assert_true(cove_wheel_version_cmp("1.2.10", "1.2.9") > 0);
	assert_true(cove_wheel_version_cmp("2", "1.99.99") > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refs),
		cmocka_unit_test(test_versions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
