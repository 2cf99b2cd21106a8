/* Data streams of a function call: generator items (out) and web request bodies (in). */
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

static void
send_after(struct cove_datachan *ch, struct cove_waiter *w)
{
	for (size_t i = (size_t)w->cursor; i < ch->n; i++) {
		cove_call_send(w->call, ch->chunks[i], ch->lens[i]);
		w->cursor = (int64_t)i + 1;
	}
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
			ch->cap = cap;
		}
		if (ch->chunks[slot])
			continue; /* a retry of what we have */
		ch->chunks[slot] = pb_pack(&chunks[i]->base, &ch->lens[slot]);
		if (slot + 1 > ch->top)
			ch->top = slot + 1;
	}
	while (ch->n < ch->top && ch->chunks[ch->n])
		ch->n++;
	for (struct cove_waiter *w = ch->waiters.head; w; w = w->next)
		send_after(ch, w);
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
		for (size_t i = 0; i < ch->top; i++)
			free(ch->chunks[i]);
		free(ch->chunks);
		free(ch->lens);
	}
}
