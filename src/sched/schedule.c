/* Schedules: deployed functions with modal.Cron or modal.Period are called by the server, with no
 * arguments, when their time comes. Missed times while Cove was down are not made up: the next time is
 * computed from when Cove comes back. */
#include <event2/event.h>
#include <string.h>
#include <time.h>

#include "sched/cron.h"
#include "sched/sched.h"
#include "sched/sched_internal.h"
#include "server.h"
#include "util/alloc.h"
#include "util/log.h"
#include "util/pb.h"

#define TICK_S 1

/* pickle protocol 4 of ((), {}): what the container unpacks as (args, kwargs). */
const uint8_t cove_empty_args_pickle[] = {0x80, 0x04, 0x95, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
					  0x00, 0x00, 0x29, 0x7d, 0x94, 0x86, 0x94, 0x2e};
const size_t cove_empty_args_pickle_len = sizeof(cove_empty_args_pickle);
#define empty_args cove_empty_args_pickle

static int64_t
next_time(const Modal__Client__Schedule *sch, int64_t after, struct cove_error **err)
{
	if (sch->schedule_oneof_case == MODAL__CLIENT__SCHEDULE__SCHEDULE_ONEOF_CRON) {
		struct cove_cron c;
		if (cove_cron_parse(sch->cron->cron_string, &c, err) < 0)
			return -1;
		return cove_cron_next(&c, after, sch->cron->timezone);
	}
	if (sch->schedule_oneof_case == MODAL__CLIENT__SCHEDULE__SCHEDULE_ONEOF_PERIOD) {
		const Modal__Client__Schedule__Period *p = sch->period;
		/* Calendar arithmetic for months and years, as modal.Period means them. */
		time_t t = (time_t)after;
		struct tm tm;
		gmtime_r(&t, &tm);
		tm.tm_year += p->years;
		tm.tm_mon += p->months;
		tm.tm_mday += p->weeks * 7 + p->days;
		tm.tm_hour += p->hours;
		tm.tm_min += p->minutes;
		int64_t next = (int64_t)timegm(&tm) + (int64_t)p->seconds;
		if (next <= after) {
			cove_error_set(err, COVE_INVALID_ARGUMENT, "a schedule's period must be positive");
			return -1;
		}
		return next;
	}
	cove_error_set(err, COVE_INVALID_ARGUMENT, "unknown schedule kind");
	return -1;
}

static void
fire(struct cove_sched *s, struct cove_function *fn)
{
	struct cove_error *err = NULL;
	struct cove_fcall *fc = cove_sched_call_create(s, fn, MODAL__CLIENT__FUNCTION_CALL_TYPE__FUNCTION_CALL_TYPE_UNARY,
						       MODAL__CLIENT__FUNCTION_CALL_INVOCATION_TYPE__FUNCTION_CALL_INVOCATION_TYPE_ASYNC,
						       NULL, &err);
	Modal__Client__FunctionInput input = MODAL__CLIENT__FUNCTION_INPUT__INIT;
	input.args_oneof_case = MODAL__CLIENT__FUNCTION_INPUT__ARGS_ONEOF_ARGS;
	input.args.data = (uint8_t *)empty_args;
	input.args.len = sizeof(empty_args);
	input.data_format = MODAL__CLIENT__DATA_FORMAT__DATA_FORMAT_PICKLE;
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&input.base, &len);
	if (fc == NULL || cove_sched_input_add(s, fc, 0, bytes, len, &err) == NULL) {
		log_error("schedule: cannot call %s (%s): %s", fn->tag, fn->id, err->msg);
		cove_error_free(err);
		return;
	}
	cleanup_free char *note = xasprintf("Scheduled call of %s (%s)\n", fn->tag, fc->id);
	cove_sched_app_log(s, fn->app, NULL, fn->id, 3, note, strlen(note));
	cove_sched_kick(s, fn);
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_sched *s = arg;
	int64_t now = (int64_t)time(NULL);
	size_t it = 0;
	void *v;
	while (cove_map_next(&s->functions, &it, NULL, &v)) {
		struct cove_function *fn = v;
		if (fn->def == NULL || fn->def->schedule == NULL || fn->parent != NULL ||
		    fn->app->state != MODAL__CLIENT__APP_STATE__APP_STATE_DEPLOYED || fn->app->stopping)
			continue;
		if (fn->next_fire == 0 || fn->schedule_seen != fn->def) {
			/* New or redeployed: start counting from now. */
			struct cove_error *err = NULL;
			fn->next_fire = next_time(fn->def->schedule, now, &err);
			fn->schedule_seen = fn->def;
			if (fn->next_fire < 0) {
				log_warn("schedule of %s (%s): %s", fn->tag, fn->id, err ? err->msg : "never fires");
				cove_error_free(err);
			}
			continue;
		}
		if (fn->next_fire < 0 || now < fn->next_fire)
			continue;
		fire(s, fn);
		fn->next_fire = next_time(fn->def->schedule, now, NULL);
	}
}

void
cove_sched_schedules_start(struct cove_sched *s)
{
	s->schedule_timer = event_new(s->ctx->base, -1, EV_PERSIST, tick, s);
	struct timeval tv = {TICK_S, 0};
	event_add(s->schedule_timer, &tv);
}
