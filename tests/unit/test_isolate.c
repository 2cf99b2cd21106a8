/* --isolation and --runsc: which isolation each kind of workload gets, and the refusals, each naming why. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "sched/isolate.h"

/* Any executable stands in for runsc: the choice only needs one that runs. */
#define RUNSC "/bin/true"

static void
test_choices(void **state)
{
	(void)state;
	static const struct {
		const char *isolation;
		int sandboxes, functions;
	} cases[] = {
		{NULL, 1, 0},
		{"gvisor", 1, 1},
		{"linux", 0, 0},
		{"sandboxes=gvisor", 1, 0},
		{"sandboxes=linux", 0, 0},
		{"functions=gvisor", 1, 1},
		{"sandboxes=linux,functions=gvisor", 0, 1},
		{"functions=linux,sandboxes=gvisor", 1, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cove_isolation_choice ch;
		struct cove_error *err = NULL;
		if (cove_isolate_choose(cases[i].isolation, RUNSC, &ch, &err) < 0)
			fail_msg("%s: %s", cases[i].isolation, err->msg);
		assert_int_equal(ch.sandboxes_gvisor, cases[i].sandboxes);
		assert_int_equal(ch.functions_gvisor, cases[i].functions);
		assert_string_equal(ch.runsc, RUNSC);
		assert_null(ch.not_gvisor);
		cove_isolation_choice_clear(&ch);
	}
}

static void
test_without_runsc(void **state)
{
	(void)state;
	/* The default falls back to linux and says why; asking for gvisor is refused. */
	struct cove_isolation_choice ch;
	struct cove_error *err = NULL;
	assert_int_equal(cove_isolate_choose(NULL, "/nonexistent/runsc", &ch, &err), 0);
	assert_int_equal(ch.sandboxes_gvisor, 0);
	assert_int_equal(ch.functions_gvisor, 0);
	assert_non_null(ch.not_gvisor);
	assert_non_null(strstr(ch.not_gvisor, "/nonexistent/runsc"));
	cove_isolation_choice_clear(&ch);
	static const char *const asked[] = {"gvisor", "sandboxes=gvisor", "functions=gvisor"};
	for (size_t i = 0; i < 3; i++) {
		err = NULL;
		assert_int_equal(cove_isolate_choose(asked[i], "/nonexistent/runsc", &ch, &err), -1);
		assert_int_equal(err->code, COVE_FAILED_PRECONDITION);
		assert_non_null(strstr(err->msg, "--isolation gvisor"));
		assert_non_null(strstr(err->msg, "/nonexistent/runsc"));
		cove_error_free(err);
		cove_isolation_choice_clear(&ch);
	}
}

static void
test_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {"", "vm", "gvisor,linux", "sandboxes=", "sandboxes=vm", "sandbox=gvisor",
					  "functions=gvisor,", "=gvisor", "process"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cove_isolation_choice ch;
		struct cove_error *err = NULL;
		if (cove_isolate_choose(bad[i], RUNSC, &ch, &err) == 0)
			fail_msg("--isolation '%s' was accepted", bad[i]);
		assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
		assert_non_null(strstr(err->msg, "--isolation"));
		cove_error_free(err);
		cove_isolation_choice_clear(&ch);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_choices),
		cmocka_unit_test(test_without_runsc),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
