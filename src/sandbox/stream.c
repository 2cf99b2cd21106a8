/* Output streams of sandbox processes and the calls reading them (see stream.h for the contract). */
#include "sandbox/stream.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "api.pb-c.h"
#include "api/api.h"
#include "grpc/server.h"
#include "task_command_router.pb-c.h"
#include "util/alloc.h"
#include "util/log.h"

/* How soon a reader whose connection is behind tries again. */
#define RETRY_US 2000

struct cove_stream_reader {
	struct cove_stream_reader *next, *prev;
	struct cove_stream *s;
	struct cove_call *call;
	uint64_t pos;
	int framing;
	int fd;
	struct cove_utf8_carry carry; /* LOGS_V1: an incomplete UTF-8 sequence held back */
	struct event *retry;
	struct event *timeout;
};

static void flow_check(struct cove_stream *s);

void
cove_stream_init(struct cove_stream *s, struct event_base *ev, int mode, size_t ring_keep,
		 void (*set_reading)(void *arg, int reading), void *arg)
{
	memset(s, 0, sizeof(*s));
	s->ev = ev;
	s->mode = mode;
	s->ring_keep = ring_keep;
	s->set_reading = set_reading;
	s->arg = arg;
}

uint64_t
cove_stream_end_offset(const struct cove_stream *s)
{
	return s->base + s->len;
}

/* Forget the oldest n kept bytes. */
static void
drop(struct cove_stream *s, size_t n)
{
	if (n > s->len)
		n = s->len;
	s->head += n;
	s->len -= n;
	s->base += n;
	if (s->len == 0)
		s->head = 0;
}

static void
reader_unlink(struct cove_stream_reader *r)
{
	struct cove_stream *s = r->s;
	if (r->prev)
		r->prev->next = r->next;
	else
		s->readers = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
}

static void
reader_free(struct cove_stream_reader *r)
{
	reader_unlink(r);
	if (r->retry)
		event_free(r->retry);
	if (r->timeout)
		event_free(r->timeout);
	free(r);
}

/* Send bytes [r->pos, r->pos + n), which are kept. */
static void
reader_send(struct cove_stream_reader *r, size_t n, int eof)
{
	struct cove_stream *s = r->s;
	static const uint8_t none[1];
	const uint8_t *data = n ? s->buf + s->head + (size_t)(r->pos - s->base) : none;
	switch (r->framing) {
	case COVE_STREAM_EXEC: {
		Modal__TaskCommandRouter__TaskExecStdioReadResponse m =
			MODAL__TASK_COMMAND_ROUTER__TASK_EXEC_STDIO_READ_RESPONSE__INIT;
		m.data.data = (uint8_t *)data;
		m.data.len = n;
		cove_api_send(r->call, &m.base);
		break;
	}
	case COVE_STREAM_SANDBOX_V2: {
		Modal__TaskCommandRouter__SandboxStdioReadV2Response m =
			MODAL__TASK_COMMAND_ROUTER__SANDBOX_STDIO_READ_V2_RESPONSE__INIT;
		m.data.data = (uint8_t *)data;
		m.data.len = n;
		m.starting_offset = r->pos;
		cove_api_send(r->call, &m.base);
		break;
	}
	default: {
		/* Log items are strings: whole UTF-8 sequences only, and the entry id is the offset of the first
		 * byte not yet delivered (an incomplete sequence held back is sent again after a reconnect). */
		size_t tn;
		cleanup_free char *text = cove_utf8_sanitize(&r->carry, (const char *)data, n, &tn);
		if (eof && r->carry.len) {
			size_t more;
			cleanup_free char *tail = cove_utf8_sanitize(&r->carry, NULL, 0, &more);
			text = xrealloc(text, tn + more + 1);
			memcpy(text + tn, tail, more + 1);
			tn += more;
		}
		if (tn == 0 && !eof)
			break;
		char entry[32];
		snprintf(entry, sizeof(entry), "%llu", (unsigned long long)(r->pos + n - r->carry.len));
		Modal__Client__TaskLogs item = MODAL__CLIENT__TASK_LOGS__INIT;
		Modal__Client__TaskLogs *items[] = {&item};
		item.data = text;
		item.file_descriptor = r->fd;
		Modal__Client__TaskLogsBatch b = MODAL__CLIENT__TASK_LOGS_BATCH__INIT;
		b.entry_id = entry;
		b.n_items = tn ? 1 : 0;
		b.items = items;
		b.eof = eof;
		cove_api_send(r->call, &b.base);
		break;
	}
	}
}

static void reader_retry(evutil_socket_t fd, short what, void *arg);

/* Send what the reader has not had, as far as its connection keeps up; finish it at the end of the stream.
 * Returns 1 if the reader is gone. */
static int
reader_pump(struct cove_stream_reader *r)
{
	struct cove_stream *s = r->s;
	if (r->pos < s->base)
		r->pos = s->base; /* what it missed is no longer kept (RING) */
	uint64_t end = cove_stream_end_offset(s);
	while (r->pos < end) {
		if (cove_call_pending_bytes(r->call) >= COVE_STREAM_READER_QUEUE) {
			if (r->retry == NULL)
				r->retry = evtimer_new(s->ev, reader_retry, r);
			struct timeval tv = {0, RETRY_US};
			evtimer_add(r->retry, &tv);
			return 0;
		}
		uint64_t n = end - r->pos;
		if (n > COVE_STREAM_CHUNK)
			n = COVE_STREAM_CHUNK;
		reader_send(r, (size_t)n, s->eof && r->pos + n == end && r->framing == COVE_STREAM_LOGS_V1);
		r->pos += n;
		if (s->eof && r->pos == end && r->framing == COVE_STREAM_LOGS_V1) {
			cove_call_finish(r->call, COVE_OK, NULL);
			reader_free(r);
			return 1;
		}
	}
	if (s->eof) {
		if (r->framing == COVE_STREAM_LOGS_V1)
			reader_send(r, 0, 1);
		cove_call_finish(r->call, COVE_OK, NULL);
		reader_free(r);
		return 1;
	}
	return 0;
}

static void
pump_all(struct cove_stream *s)
{
	struct cove_stream_reader *next;
	for (struct cove_stream_reader *r = s->readers; r; r = next) {
		next = r->next;
		reader_pump(r);
	}
	flow_check(s);
}

static void
reader_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_stream_reader *r = arg;
	struct cove_stream *s = r->s;
	reader_pump(r);
	flow_check(s);
}

static void
reader_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct cove_stream_reader *r = arg;
	struct cove_stream *s = r->s;
	/* A V1 log long-poll ends empty-handed; the client asks again from its last entry. */
	cove_call_finish(r->call, COVE_OK, NULL);
	reader_free(r);
	flow_check(s);
}

static void
reader_cancelled(struct cove_call *call, void *arg)
{
	(void)call;
	struct cove_stream_reader *r = arg;
	struct cove_stream *s = r->s;
	reader_free(r);
	flow_check(s);
}

/* FLOW: trim what every reader is past (keeping a window), and pause or resume the producer. */
static void
flow_check(struct cove_stream *s)
{
	if (s->mode != COVE_STREAM_FLOW)
		return;
	uint64_t floor = s->acked;
	if (s->readers) {
		uint64_t min = UINT64_MAX;
		for (struct cove_stream_reader *r = s->readers; r; r = r->next)
			if (r->pos < min)
				min = r->pos;
		floor = min > COVE_STREAM_RETAIN ? min - COVE_STREAM_RETAIN : 0;
		uint64_t waiting = cove_stream_end_offset(s) - min;
		if (floor > s->base)
			drop(s, (size_t)(floor - s->base));
		if (!s->paused && waiting > COVE_STREAM_HIGH && !s->eof) {
			s->paused = 1;
			if (s->set_reading)
				s->set_reading(s->arg, 0);
		} else if (s->paused && waiting < COVE_STREAM_LOW) {
			s->paused = 0;
			if (s->set_reading)
				s->set_reading(s->arg, 1);
		}
		return;
	}
	if (floor > s->base)
		drop(s, (size_t)(floor - s->base));
	/* Nobody reads: keep up to UNREAD bytes for a reader still to come, then hold the producer. */
	uint64_t waiting = cove_stream_end_offset(s) - (s->acked > s->base ? s->acked : s->base);
	if (!s->paused && waiting > COVE_STREAM_UNREAD && !s->eof) {
		s->paused = 1;
		if (s->set_reading)
			s->set_reading(s->arg, 0);
	} else if (s->paused && waiting < COVE_STREAM_LOW) {
		s->paused = 0;
		if (s->set_reading)
			s->set_reading(s->arg, 1);
	}
}

void
cove_stream_append(struct cove_stream *s, const void *data, size_t len)
{
	if (len == 0 || s->eof)
		return;
	if (s->mode == COVE_STREAM_DISCARD) {
		s->base += len;
		pump_all(s);
		return;
	}
	if (s->head + s->len + len > s->cap) {
		if (s->head > 0 && s->head >= s->len) {
			/* Compact: moves at most as many bytes as were dropped since the last compaction. */
			memmove(s->buf, s->buf + s->head, s->len);
			s->head = 0;
		}
		if (s->head + s->len + len > s->cap) {
			size_t cap = s->cap ? s->cap : 64 * 1024;
			while (cap < s->head + s->len + len)
				cap *= 2;
			s->buf = xrealloc(s->buf, cap);
			s->cap = cap;
		}
	}
	memcpy(s->buf + s->head + s->len, data, len);
	s->len += len;
	if (s->mode == COVE_STREAM_RING && s->len > s->ring_keep)
		drop(s, s->len - s->ring_keep);
	pump_all(s);
}

void
cove_stream_close(struct cove_stream *s)
{
	if (s->eof)
		return;
	s->eof = 1;
	if (s->paused) {
		s->paused = 0;
		if (s->set_reading)
			s->set_reading(s->arg, 1);
	}
	pump_all(s);
}

void
cove_stream_read(struct cove_stream *s, struct cove_call *call, uint64_t offset, int framing, int fd,
		 double timeout_s)
{
	/* No client can have bytes that were never produced: an offset past the end reads from the end. */
	if (offset > cove_stream_end_offset(s))
		offset = cove_stream_end_offset(s);
	struct cove_stream_reader *r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->call = call;
	r->pos = offset;
	r->framing = framing;
	r->fd = fd;
	if (offset > s->acked)
		s->acked = offset;
	r->next = s->readers;
	if (s->readers)
		s->readers->prev = r;
	s->readers = r;
	cove_call_on_cancel(call, reader_cancelled, r);
	if (timeout_s > 0) {
		r->timeout = evtimer_new(s->ev, reader_timeout, r);
		struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
		evtimer_add(r->timeout, &tv);
	}
	/* Past the end is where the stream will be: wait there. */
	reader_pump(r);
	flow_check(s);
}

void
cove_stream_release(struct cove_stream *s, int code, const char *message)
{
	while (s->readers) {
		struct cove_stream_reader *r = s->readers;
		if (code == COVE_OK && r->framing == COVE_STREAM_LOGS_V1)
			reader_send(r, 0, 1);
		cove_call_finish(r->call, code, code == COVE_OK ? NULL : message);
		reader_free(r);
	}
	/* The bytes go; the offsets stay (readers that come later start at the end). */
	free(s->buf);
	s->buf = NULL;
	s->base += s->len;
	s->head = s->len = s->cap = 0;
}
