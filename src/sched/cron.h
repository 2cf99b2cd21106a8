/* Cron expressions (the five-field form Modal's modal.Cron takes, with names and @macros) and the next
 * time one fires, in a time zone. Pure functions: no event loop, no store. */
#ifndef COVE_SCHED_CRON_H
#define COVE_SCHED_CRON_H

#include <stdint.h>
#include <time.h>

#include "util/error.h"

struct cove_cron {
	uint64_t minutes; /* bit m: minute m (0-59) */
	uint32_t hours;   /* 0-23 */
	uint32_t days;    /* bit d: day of month d (1-31) */
	uint16_t months;  /* bit m: month m (1-12) */
	uint8_t weekdays; /* bit w: day of week w (0 = Sunday) */
	int days_any;     /* day-of-month field was '*' */
	int weekdays_any; /* day-of-week field was '*' */
};

/* Parse "m h dom mon dow" (each field: '*', 'a', 'a-b', with '/step', comma lists; month and weekday names;
 * 7 = Sunday) or @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly. 0 or -1 + INVALID_ARGUMENT
 * naming the bad field. */
int cove_cron_parse(const char *expr, struct cove_cron *c, struct cove_error **err);

/* The first time strictly after `after` (Unix seconds) at which c fires, in time zone tz (an IANA name;
 * NULL or "" means UTC). -1 if none within 5 years (e.g. "0 0 30 2 *"). */
int64_t cove_cron_next(const struct cove_cron *c, int64_t after, const char *tz);

#endif
