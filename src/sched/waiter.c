/* Parked long polls: a gRPC call waiting for something, answered by whoever produces it or by its timer. */
#include <event2/event.h>
#include <stdlib.h>

#include "grpc/server.h"
#include "sched/sched.h"
#include "util/alloc.h"


static void
waiter_unlink(struct cove_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		w->list->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
}

void
cove_waiter_free(struct cove_waiter *w)
{
	waiter_unlink(w);
	if (w->timer)
		event_free(w->timer);
	free(w);
}

/* The call was finished (which also drops its cancel hook in the front): never touch it again here. */
void
cove_waiter_done(struct cove_waiter *w)
{
	cove_waiter_free(w);
}

static void
waiter_cancelled(struct cove_call *call, void *arg)
{
	(void)call;
	struct cove_waiter *w = arg;
	if (w->on_cancel)
		w->on_cancel(w);
	cove_waiter_free(w);
}

static void
waiter_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_waiter *w = arg;
	w->on_timeout(w);
}

struct cove_waiter *
cove_waiter_park(struct event_base *base, struct cove_sched *s, struct cove_waitlist *list, struct cove_call *call, void *owner, double timeout_s,
	    void (*on_timeout)(struct cove_waiter *))
{
	struct cove_waiter *w = xcalloc(1, sizeof(*w));
	w->sched = s;
	w->list = list;
	w->call = call;
	w->owner = owner;
	w->on_timeout = on_timeout;
	w->next = list->head;
	if (list->head)
		list->head->prev = w;
	list->head = w;
	w->timer = evtimer_new(base, waiter_timer, w);
	if (timeout_s < 0)
		timeout_s = 0;
	struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
	evtimer_add(w->timer, &tv);
	cove_call_on_cancel(call, waiter_cancelled, w);
	return w;
}
