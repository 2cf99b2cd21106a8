/* The gRPC front: prior-knowledge HTTP/2 (h2c) on libevent + nghttp2, gRPC message framing, deadlines,
 * status trailers. It knows nothing of protobuf or Modal: it hands each request's bytes to a router and
 * sends the bytes the handler gives back.
 *
 * Lifetime of a call: the front creates a struct cove_call when a request stream opens, and calls the
 * router once the client has half-closed the stream (END_STREAM), with the first de-framed message.
 * The handler then owns the duty to finish the call exactly once, now or later (long polls), with
 * cove_call_finish(). Until then it may send any number of messages (server streaming).
 * If the client resets the stream, the connection drops, or the grpc-timeout deadline passes first, the
 * front runs the call's cancel hook (if set) and the call is gone: the handler must drop its pointer in
 * that hook and never touch the call again. After cove_call_finish() the handler must not touch it either.
 */
#ifndef COVE_GRPC_SERVER_H
#define COVE_GRPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct event_base;
struct cove_call;
struct cove_grpc_server;

/* Called once per request, in the event loop. `path` is the :path ("/modal.client.ModalClient/AppCreate");
 * `msg`/`len` is the first message's payload (len 0 and msg non-NULL for an empty message);
 * `n_messages` is how many messages the client sent (0 if none, >1 for client streaming). */
typedef void (*cove_grpc_router_fn)(struct cove_call *call, const char *path, const uint8_t *msg, size_t len,
				    size_t n_messages, void *ctx);

/* Limits (0 in any of them: the default). Requests that would take a buffer past a byte limit are answered
 * RESOURCE_EXHAUSTED at once and the rest of their body is dropped unbuffered. */
struct cove_grpc_options {
	const char *address;       /* "127.0.0.1" */
	int port;                  /* 0: pick a free port */
	size_t max_message_bytes;  /* larger messages answer RESOURCE_EXHAUSTED; default 100 MiB + 1 KiB */
	const char *unix_path;     /* also listen on this Unix socket (replacing a stale one); NULL: not */
	size_t max_connection_buffer_bytes; /* request bytes (headers, messages) held per connection; 256 MiB */
	size_t max_buffer_bytes;   /* request bytes held across all connections; default 1 GiB */
	size_t max_connections;    /* open connections; default half the descriptor limit (RLIMIT_NOFILE) */
	int64_t handshake_timeout_ms; /* close a connection without the client preface and SETTINGS; 10 s */
	int64_t idle_timeout_ms;   /* close (GOAWAY) a connection that has had no stream for this long; 300 s */
};

/* Fill the limits from the environment (COVE_GRPC_MAX_CONNECTIONS, COVE_GRPC_HANDSHAKE_TIMEOUT and
 * COVE_GRPC_IDLE_TIMEOUT in seconds, COVE_GRPC_MAX_CONNECTION_BUFFER and COVE_GRPC_MAX_BUFFER in bytes);
 * unset variables leave the field as it is. -1 and *err on a malformed value. */
int cove_grpc_options_from_env(struct cove_grpc_options *opts, struct cove_error **err);

/* Bind and listen. Returns NULL and fills *err on failure (address in use, ...). */
struct cove_grpc_server *cove_grpc_server_new(struct event_base *base, const struct cove_grpc_options *opts,
					      cove_grpc_router_fn router, void *router_ctx, struct cove_error **err);
/* Client streaming. With a hook set, a request that carries more than one message has each of its messages
 * handed to the hook as it arrives (index 0, 1, ...; message 0 when message 1 begins), before the router is
 * called at the end of the request as usual (with message 0 and the count). A request of one message never
 * reaches the hook. The hook runs while the request is still arriving: it may set the call's data and cancel
 * hook, but must not send or finish; the router answers the call. */
typedef void (*cove_grpc_message_fn)(struct cove_call *call, const char *path, size_t index, const uint8_t *msg,
				     size_t len, void *ctx);
void cove_grpc_server_set_message_hook(struct cove_grpc_server *srv, cove_grpc_message_fn fn, void *ctx);
/* Admission: with a hook set, every request is put to it when its headers are complete, before any byte of
 * its body is buffered. Returns 0 to admit; -1 with *err to answer the call at once with err's code and
 * message (the rest of the request is dropped unbuffered and the client told to stop sending it). The hook
 * sees the headers (cove_call_header) and must not send, finish or keep the call. A connection counts as
 * trusted once it had a request admitted: only connections never admitted are shed under pressure. */
typedef int (*cove_grpc_admit_fn)(struct cove_call *call, const char *path, void *ctx, struct cove_error **err);
void cove_grpc_server_set_admit_hook(struct cove_grpc_server *srv, cove_grpc_admit_fn fn, void *ctx);
/* One more listening socket served like the server's own (a socket of a container's network namespace, say):
 * the server takes fd (listening already) and closes it when the listener is freed (before the server). NULL and
 * *err if libevent cannot take it (fd is closed then too). */
struct cove_grpc_listener;
struct cove_grpc_listener *cove_grpc_server_listen_fd(struct cove_grpc_server *srv, int fd, struct cove_error **err);
/* Stop accepting on it (connections accepted there go on) and close it. NULL is ignored. */
void cove_grpc_listener_free(struct cove_grpc_listener *l);
/* The port actually bound (useful with port 0). */
int cove_grpc_server_port(const struct cove_grpc_server *srv);
/* Close the listener and every connection (cancel hooks run for open calls), then free. */
void cove_grpc_server_free(struct cove_grpc_server *srv);

/* Request metadata: the value of a request header (lower-case name), or NULL. Valid until the call ends. */
const char *cove_call_header(const struct cove_call *call, const char *name);
/* The method path, valid until the call ends. */
const char *cove_call_path(const struct cove_call *call);
/* Milliseconds left before the client's grpc-timeout deadline; -1 if the client sent none. */
int64_t cove_call_remaining_ms(const struct cove_call *call);

/* Queue one response message (framed by the front). Response headers go out with the first one. */
void cove_call_send(struct cove_call *call, const uint8_t *msg, size_t len);
/* Response bytes queued and not yet taken by the connection: a streaming handler keeps this small so that a
 * slow reader holds the producer back instead of piling up memory. */
size_t cove_call_pending_bytes(const struct cove_call *call);
/* End the call: grpc-status `code` and, when non-empty, grpc-message `message` (percent-encoded by the
 * front) in trailers, after every queued message. With no message sent, a trailers-only response. */
void cove_call_finish(struct cove_call *call, int code, const char *message);

/* Hook run if the call ends before the handler finishes it (see above). One hook per call; NULL clears. */
typedef void (*cove_call_cancel_fn)(struct cove_call *call, void *arg);
void cove_call_on_cancel(struct cove_call *call, cove_call_cancel_fn fn, void *arg);

/* One pointer of handler state per call. */
void cove_call_set_data(struct cove_call *call, void *data);
void *cove_call_get_data(const struct cove_call *call);

#endif
