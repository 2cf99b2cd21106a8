/* Cron parsing and next-fire computation, checked against hand-computed times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sched/cron.h"

/* 2026-11-27 15:47:00 UTC, a Friday. */
#define T0 1795794420LL

static int64_t
next(const char *expr, int64_t after, const char *tz)
{
	struct cove_cron c;
	struct cove_error *err = NULL;
	assert_int_equal(cove_cron_parse(expr, &c, &err), 0);
	return cove_cron_next(&c, after, tz);
}

static void
test_every_minute(void **state)
{
	(void)state;
	assert_int_equal(next("* * * * *", T0, NULL), T0 + 60);
	assert_int_equal(next("* * * * *", T0 + 59, NULL), T0 + 60);
}

static void
test_hourly_and_steps(void **state)
{
	(void)state;
	/* next :00 after 15:47 is 16:00 */
	assert_int_equal(next("@hourly", T0, NULL), T0 + 13 * 60);
	/* every 15 minutes: 16:00 */
	assert_int_equal(next("*/15 * * * *", T0, NULL), T0 + 13 * 60);
	/* 5/20 = 5,25,45: next is 16:05 */
	assert_int_equal(next("5/20 * * * *", T0, NULL), T0 + 18 * 60);
	/* list and range */
	assert_int_equal(next("0 9-17 * * *", T0, NULL), T0 + 13 * 60);
}

static void
test_days(void **state)
{
	(void)state;
	/* daily at 08:00 UTC: tomorrow 2026-11-28 08:00 */
	assert_int_equal(next("0 8 * * *", T0, NULL), T0 + (24 - 15) * 3600 - 47 * 60 + 8 * 3600);
	/* Mondays at 00:00: 2026-11-30 00:00 (T0 is Friday 15:47) */
	int64_t monday = T0 - (15 * 3600 + 47 * 60) + 3 * 86400;
	assert_int_equal(next("0 0 * * mon", T0, NULL), monday);
	assert_int_equal(next("0 0 * * 1", T0, NULL), monday);
	/* 7 is Sunday too: 2026-11-29 00:00 */
	assert_int_equal(next("0 0 * * 7", T0, NULL), monday - 86400);
	/* first of the month: 2026-12-01 00:00 */
	assert_int_equal(next("@monthly", T0, NULL), monday + 86400);
	/* never: Feb 30 */
	assert_int_equal(next("0 0 30 2 *", T0, NULL), -1);
}

static void
test_timezone(void **state)
{
	(void)state;
	/* 09:00 in New York (EST, UTC-5 in late November) = 14:00 UTC, so tomorrow's. */
	int64_t midnight = T0 - (15 * 3600 + 47 * 60);
	assert_int_equal(next("0 9 * * *", T0, "America/New_York"), midnight + 86400 + 14 * 3600);
}

static void
test_errors(void **state)
{
	(void)state;
	const char *bad[] = {"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
			     "*/0 * * * *", "a * * * *", "1-2-3 * * * *", "5-1 * * * *", "* * * * * *"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cove_cron c;
		struct cove_error *err = NULL;
		assert_int_equal(cove_cron_parse(bad[i], &c, &err), -1);
		assert_non_null(err);
		assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
		cove_error_free(err);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_minute), cmocka_unit_test(test_hourly_and_steps), cmocka_unit_test(test_days),
		cmocka_unit_test(test_timezone),     cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
