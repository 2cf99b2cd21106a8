/* One output stream of a sandbox process (stdout or stderr), addressed by byte offset from the start of the
 * process, and the gRPC calls reading it.
 *
 * Readers are server-streaming calls (TaskExecStdioRead, SandboxStdioReadV2, SandboxGetLogs) that start at an
 * offset and get every byte from there, in order, until the stream ends. A reader is sent at most
 * COVE_STREAM_READER_QUEUE bytes ahead of what its connection has taken, so a slow client holds the stream back
 * instead of piling up memory.
 *
 * Retention, by mode:
 *   FLOW    (exec output) every byte is kept until readers are past it (a window of COVE_STREAM_RETAIN bytes is
 *           kept behind the slowest, for a reader that reconnects after a broken connection); when more than
 *           COVE_STREAM_HIGH bytes wait for the slowest reader (COVE_STREAM_UNREAD with no reader yet: output
 *           read after the process exits), set_reading(arg, 0) pauses the producer until they drop below
 *           COVE_STREAM_LOW, so the process blocks on a full pipe as it would with any slow reader.
 *   RING    (a sandbox's entrypoint) the newest ring_keep bytes are kept and the producer never waits; a reader
 *           that fell behind skips to the oldest byte kept (V2 readers learn the offset it starts at).
 *   DISCARD (StreamType.DEVNULL) nothing is kept; readers see only the end.
 *
 * All of it runs on the event loop. */
#ifndef COVE_SANDBOX_STREAM_H
#define COVE_SANDBOX_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "util/utf8.h"

struct event_base;
struct event;
struct cove_call;

#define COVE_STREAM_HIGH (4u << 20)
#define COVE_STREAM_LOW (1u << 20)
#define COVE_STREAM_UNREAD (64u << 20)
#define COVE_STREAM_RETAIN (4u << 20)
#define COVE_STREAM_READER_QUEUE (1u << 20)
#define COVE_STREAM_CHUNK (1u << 20)

enum cove_stream_mode { COVE_STREAM_FLOW, COVE_STREAM_RING, COVE_STREAM_DISCARD };

/* How a reader frames what it sends. */
enum cove_stream_framing {
	COVE_STREAM_EXEC,       /* TaskExecStdioReadResponse{data} */
	COVE_STREAM_SANDBOX_V2, /* SandboxStdioReadV2Response{data, starting_offset} */
	COVE_STREAM_LOGS_V1,    /* TaskLogsBatch{items[{data as UTF-8 text}], entry_id = offset, eof at the end} */
};

struct cove_stream_reader;

struct cove_stream {
	uint8_t *buf;  /* bytes [base, base + len) at buf[head ...] */
	size_t head, len, cap;
	uint64_t base; /* offset of the oldest byte kept */
	uint64_t acked; /* a read started here: its client has every byte before it */
	int mode;      /* enum cove_stream_mode */
	size_t ring_keep;
	int eof;
	int paused;    /* the producer was told to stop */
	struct cove_stream_reader *readers;
	struct event_base *ev;
	void (*set_reading)(void *arg, int reading); /* FLOW: pause (0) / resume (1) the producer; may be NULL */
	void *arg;
};

void cove_stream_init(struct cove_stream *s, struct event_base *ev, int mode, size_t ring_keep,
		      void (*set_reading)(void *arg, int reading), void *arg);
/* Finish every reader with code/message (OK ends them as at the end of the stream) and free the bytes. */
void cove_stream_release(struct cove_stream *s, int code, const char *message);

/* Offset one past the newest byte. */
uint64_t cove_stream_end_offset(const struct cove_stream *s);
void cove_stream_append(struct cove_stream *s, const void *data, size_t len);
/* No more bytes: readers finish once they have everything. */
void cove_stream_close(struct cove_stream *s);

/* Serve call from offset (0 = the beginning) with the given framing; it owns the call from now on and
 * finishes it at the end of the stream, or with OK after timeout_s (> 0; V1 logs long-poll), or drops it if
 * the client goes away. fd is the FileDescriptor value V1 items carry. */
void cove_stream_read(struct cove_stream *s, struct cove_call *call, uint64_t offset, int framing, int fd,
		      double timeout_s);

#endif
