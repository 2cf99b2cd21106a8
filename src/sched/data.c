/* Data streams of a function call: generator items and web responses (out), web request bodies and
 * WebSocket messages (in). Readers are containers and clients over gRPC (parked FunctionCallGetData*
 * streams) and, inside the server, the web gateway (subscribers, which read chunks directly and release
 * them once used, so that a long streamed response is not held in memory). */
#include <event2/event.h>
#include <string.h>

#include "api/api.h"
#include "grpc/server.h"
#include "sched/sched.h"
#include "util/alloc.h"
#include "util/pb.h"

/* How long a reader's stream stays open waiting for more; the client reopens it right away. */
#define DATA_POLL_S 55.0
#define MAX_CHUNKS_PER_PUT 10000
#define MAX_AHEAD 100000

struct cove_data_sub {
	struct cove_data_sub *next, *prev;
	struct cove_datachan *ch;
	void (*notify)(void *arg);
	void *arg;
};

static void
release_upto(struct cove_datachan *ch, size_t upto)
{
	if (upto > ch->n)
		upto = ch->n; /* only what has arrived contiguously can be done with */
	for (size_t i = ch->released; i < upto; i++) {
		free(ch->chunks[i]);
		ch->chunks[i] = NULL;
		ch->lens[i] = 0;
	}
	if (upto > ch->released)
		ch->released = upto;
}

static void
send_after(struct cove_datachan *ch, struct cove_waiter *w)
{
	if ((size_t)w->cursor < ch->released)
		w->cursor = (int64_t)ch->released; /* released chunks are gone for every reader */
	for (size_t i = (size_t)w->cursor; i < ch->n; i++) {
		cove_call_send(w->call, ch->chunks[i], ch->lens[i]);
		w->cursor = (int64_t)i + 1;
	}
	if (ch->release_delivered)
		release_upto(ch, (size_t)w->cursor);
}

static void
notify_subs(struct cove_datachan *ch)
{
	for (struct cove_data_sub *sub = ch->subs; sub; sub = sub->next)
		sub->notify(sub->arg);
}

static void
data_timeout(struct cove_waiter *w)
{
	cove_call_finish(w->call, COVE_OK, NULL);
	cove_waiter_done(w);
}

int
cove_sched_data_put(struct cove_sched *s, struct cove_fcall *fc, int which, Modal__Client__DataChunk **chunks, size_t n,
		    struct cove_error **err)
{
	(void)s;
	struct cove_datachan *ch = &fc->data[which];
	if (n > MAX_CHUNKS_PER_PUT)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "at most %d data chunks per request", MAX_CHUNKS_PER_PUT);
	for (size_t i = 0; i < n; i++) {
		uint64_t idx = chunks[i]->index;
		/* Writers may send in parallel, so chunks can arrive out of order, but not absurdly far ahead. */
		if (idx == 0 || idx > ch->n + MAX_AHEAD)
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "data chunk index %llu is out of range (next is %zu)",
					      (unsigned long long)idx, ch->n + 1);
	}
	for (size_t i = 0; i < n; i++) {
		size_t slot = (size_t)chunks[i]->index - 1;
		if (slot >= ch->cap) {
			size_t cap = ch->cap ? ch->cap : 16;
			while (cap <= slot)
				cap *= 2;
			ch->chunks = xrealloc(ch->chunks, cap * sizeof(*ch->chunks));
			ch->lens = xrealloc(ch->lens, cap * sizeof(*ch->lens));
			memset(ch->chunks + ch->cap, 0, (cap - ch->cap) * sizeof(*ch->chunks));
			memset(ch->lens + ch->cap, 0, (cap - ch->cap) * sizeof(*ch->lens));
			ch->cap = cap;
		}
		if (slot < ch->released || ch->chunks[slot])
			continue; /* a retry of what we have (or had) */
		ch->chunks[slot] = pb_pack(&chunks[i]->base, &ch->lens[slot]);
		if (slot + 1 > ch->top)
			ch->top = slot + 1;
	}
	size_t before = ch->n;
	while (ch->n < ch->top && ch->chunks[ch->n])
		ch->n++;
	for (struct cove_waiter *w = ch->waiters.head; w; w = w->next)
		send_after(ch, w);
	if (ch->n > before)
		notify_subs(ch);
	return 0;
}

void
cove_sched_data_get(struct cove_sched *s, struct cove_call *call, struct cove_fcall *fc, int which, uint64_t last_index)
{
	struct cove_datachan *ch = &fc->data[which];
	struct cove_waiter *w = cove_waiter_park(cove_sched_base(s), s, &ch->waiters, call, fc, DATA_POLL_S, data_timeout);
	w->cursor = last_index > ch->n ? (int64_t)ch->n : (int64_t)last_index;
	send_after(ch, w);
}

void
cove_sched_data_free(struct cove_fcall *fc)
{
	for (int k = 0; k < 2; k++) {
		struct cove_datachan *ch = &fc->data[k];
		while (ch->waiters.head) {
			struct cove_waiter *w = ch->waiters.head;
			cove_call_finish(w->call, COVE_UNAVAILABLE, "server shutting down");
			cove_waiter_done(w);
		}
		while (ch->subs)
			cove_sched_data_unsubscribe(ch->subs);
		for (size_t i = 0; i < ch->top; i++)
			free(ch->chunks[i]);
		free(ch->chunks);
		free(ch->lens);
	}
}

struct cove_data_sub *
cove_sched_data_subscribe(struct cove_fcall *fc, int which, void (*notify)(void *arg), void *arg)
{
	struct cove_datachan *ch = &fc->data[which];
	struct cove_data_sub *sub = xcalloc(1, sizeof(*sub));
	sub->ch = ch;
	sub->notify = notify;
	sub->arg = arg;
	sub->next = ch->subs;
	if (ch->subs)
		ch->subs->prev = sub;
	ch->subs = sub;
	return sub;
}

void
cove_sched_data_unsubscribe(struct cove_data_sub *sub)
{
	if (sub == NULL)
		return;
	struct cove_datachan *ch = sub->ch;
	if (sub->prev)
		sub->prev->next = sub->next;
	else
		ch->subs = sub->next;
	if (sub->next)
		sub->next->prev = sub->prev;
	free(sub);
}

size_t
cove_sched_data_count(const struct cove_fcall *fc, int which)
{
	return fc->data[which].n;
}

const uint8_t *
cove_sched_data_chunk(const struct cove_fcall *fc, int which, size_t index, size_t *len)
{
	const struct cove_datachan *ch = &fc->data[which];
	if (index == 0 || index > ch->top || index <= ch->released || ch->chunks[index - 1] == NULL)
		return NULL;
	*len = ch->lens[index - 1];
	return ch->chunks[index - 1];
}

void
cove_sched_data_release(struct cove_fcall *fc, int which, size_t upto)
{
	release_upto(&fc->data[which], upto);
}

void
cove_sched_data_release_on_delivery(struct cove_fcall *fc, int which)
{
	fc->data[which].release_delivered = 1;
}

void
cove_sched_data_output_recorded(struct cove_fcall *fc)
{
	for (int k = 0; k < 2; k++)
		notify_subs(&fc->data[k]);
}
