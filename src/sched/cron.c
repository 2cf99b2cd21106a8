#include "sched/cron.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
					  "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* A number or (for months and weekdays) a three-letter name. Returns chars consumed, 0 if none. */
static int
parse_value(const char *s, int field, int *out)
{
	if (isdigit((unsigned char)s[0])) {
		int v = 0, n = 0;
		while (isdigit((unsigned char)s[n]) && n < 4)
			v = v * 10 + (s[n++] - '0');
		*out = v;
		return n;
	}
	const char *const *names = field == 3 ? month_names : field == 4 ? day_names : NULL;
	int count = field == 3 ? 12 : 7;
	if (names == NULL)
		return 0;
	for (int i = 0; i < count; i++) {
		if (strncasecmp(s, names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
			*out = field == 3 ? i + 1 : i;
			return 3;
		}
	}
	return 0;
}

/* One field into a bit set. */
static int
parse_field(const char *s, int field, uint64_t *bits, int *any)
{
	static const int lo[] = {0, 0, 1, 1, 0};
	static const int hi[] = {59, 23, 31, 12, 7};
	*bits = 0;
	*any = strcmp(s, "*") == 0;
	const char *p = s;
	for (;;) {
		int a, b, step = 1, n;
		if (*p == '*') {
			a = lo[field];
			b = hi[field] == 7 ? 6 : hi[field];
			p++;
		} else {
			if ((n = parse_value(p, field, &a)) == 0)
				return -1;
			p += n;
			b = a;
			if (*p == '-') {
				p++;
				if ((n = parse_value(p, field, &b)) == 0)
					return -1;
				p += n;
			}
		}
		if (*p == '/') {
			p++;
			if (!isdigit((unsigned char)*p))
				return -1;
			step = (int)strtol(p, (char **)&p, 10);
			if (step <= 0)
				return -1;
			if (a == b && p[-1] != '*')
				b = hi[field] == 7 ? 6 : hi[field]; /* "5/15" means from 5 to the end */
		}
		if (a < lo[field] || b > hi[field] || a > b)
			return -1;
		for (int v = a; v <= b; v += step)
			*bits |= 1ULL << (field == 4 && v == 7 ? 0 : v);
		if (*p == ',') {
			p++;
			continue;
		}
		return *p == '\0' ? 0 : -1;
	}
}

int
cove_cron_parse(const char *expr, struct cove_cron *c, struct cove_error **err)
{
	static const struct {
		const char *name, *expansion;
	} macros[] = {
		{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
		{"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
		{"@hourly", "0 * * * *"},
	};
	static const char *const field_names[] = {"minute", "hour", "day of month", "month", "day of week"};
	if (expr == NULL)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "empty cron expression");
	while (isspace((unsigned char)*expr))
		expr++;
	for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
		if (strcasecmp(expr, macros[i].name) == 0)
			expr = macros[i].expansion;
	cleanup_free char *copy = xstrdup(expr);
	char *fields[6] = {0};
	int n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (n == 6)
			break;
		fields[n++] = tok;
	}
	if (n != 5)
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "cron expression '%s' must have 5 fields (minute hour day-of-month month day-of-week)",
				      expr);
	memset(c, 0, sizeof(*c));
	uint64_t bits[5];
	int any[5];
	for (int i = 0; i < 5; i++)
		if (parse_field(fields[i], i, &bits[i], &any[i]) < 0)
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "cron expression '%s': invalid %s field '%s'", expr,
					      field_names[i], fields[i]);
	c->minutes = bits[0];
	c->hours = (uint32_t)bits[1];
	c->days = (uint32_t)bits[2];
	c->months = (uint16_t)bits[3];
	c->weekdays = (uint8_t)bits[4];
	c->days_any = any[2];
	c->weekdays_any = any[4];
	return 0;
}

static int
day_matches(const struct cove_cron *c, const struct tm *tm)
{
	int dom = (c->days >> tm->tm_mday) & 1;
	int dow = (c->weekdays >> tm->tm_wday) & 1;
	/* Classic cron: with both restricted, either one matching is enough. */
	if (!c->days_any && !c->weekdays_any)
		return dom || dow;
	return dom && dow;
}

/* mktime in the zone currently set. */
static int64_t
normalize(struct tm *tm)
{
	tm->tm_isdst = -1;
	return (int64_t)mktime(tm);
}

int64_t
cove_cron_next(const struct cove_cron *c, int64_t after, const char *tz)
{
	/* The C library only converts in "the" local zone: set it for this computation, put it back after.
	 * (The event loop is single-threaded.) */
	char *old_tz = getenv("TZ") ? xstrdup(getenv("TZ")) : NULL;
	setenv("TZ", tz && *tz ? tz : "UTC", 1);
	tzset();
	int64_t result = -1;
	time_t t = (time_t)(after - after % 60 + 60);
	struct tm tm;
	localtime_r(&t, &tm);
	tm.tm_sec = 0;
	int64_t limit = after + 5LL * 366 * 24 * 3600;
	for (int64_t now = normalize(&tm); now <= limit; now = normalize(&tm)) {
		localtime_r(&(time_t){(time_t)now}, &tm);
		if (!((c->months >> (tm.tm_mon + 1)) & 1)) {
			tm.tm_mon++;
			tm.tm_mday = 1;
			tm.tm_hour = 0;
			tm.tm_min = 0;
			continue;
		}
		if (!day_matches(c, &tm)) {
			tm.tm_mday++;
			tm.tm_hour = 0;
			tm.tm_min = 0;
			continue;
		}
		if (!((c->hours >> tm.tm_hour) & 1)) {
			tm.tm_hour++;
			tm.tm_min = 0;
			continue;
		}
		if (!((c->minutes >> tm.tm_min) & 1)) {
			tm.tm_min++;
			continue;
		}
		if (now > after) {
			result = now;
			break;
		}
		tm.tm_min++;
	}
	if (old_tz) {
		setenv("TZ", old_tz, 1);
		free(old_tz);
	} else {
		unsetenv("TZ");
	}
	tzset();
	return result;
}
