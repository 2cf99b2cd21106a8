/* Exchanges: a routed request as a function call. The call's input is the request's ASGI scope; the body
 * streams into the call's data-in, the app's messages come out of data-out and become the HTTP response (or
 * WebSocket frames), chunk by chunk.
 *
 * An exchange lives until its call's output is recorded and every data-out chunk has been read, even when its
 * connection is gone: a detached ("orphan") exchange reads and drops what the app still sends, so that a
 * finished call leaves no chunks behind in memory. A request that gets no response start within the request
 * timeout is answered with a 303 to its result URL and "parked" until a request for that URL picks it up.
 *
 * Scheduler notifications only activate an exchange's pump event; all work happens in event callbacks, so
 * nothing here runs inside the scheduler's own loops. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "blob/blobstore.h"
#include "gateway/gateway_internal.h"
#include "gateway/ws.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/log.h"
#include "util/pb.h"

#define PARKED_MAX_S (20 * 150.0) /* a result URL is served for as long as 20 redirects last */
#define RESULT_TTL_S 600.0        /* a finished result nobody picked up is dropped after this */
#define BODY_CHUNK (1024 * 1024)  /* request body bytes per data-in chunk */
#define OUT_HIGH (4 * 1024 * 1024) /* stop reading the app's response while this much waits for the client */

static struct cove_sched *
sched_of(const struct cove_gateway *gw)
{
	return gw->ctx->sched;
}

/* ---- data-in: messages to the app ---- */

static void
put_asgi(struct gw_exchange *ex, const Modal__Client__Asgi *msg)
{
	size_t len;
	cleanup_free uint8_t *bytes = pb_pack(&msg->base, &len);
	Modal__Client__DataChunk chunk = MODAL__CLIENT__DATA_CHUNK__INIT;
	chunk.data_format = MODAL__CLIENT__DATA_FORMAT__DATA_FORMAT_ASGI;
	chunk.index = ex->in_next++;
	chunk.data_oneof_case = MODAL__CLIENT__DATA_CHUNK__DATA_ONEOF_DATA;
	chunk.data.data = bytes;
	chunk.data.len = len;
	Modal__Client__DataChunk *chunks[] = {&chunk};
	struct cove_error *err = NULL;
	if (cove_sched_data_put(sched_of(ex->gw), ex->fc, COVE_DATA_IN, chunks, 1, &err) < 0) {
		log_warn("gateway: %s: data-in: %s", ex->fc_id, err->msg);
		cove_error_free(err);
	}
}

static void
put_request(struct gw_exchange *ex, const uint8_t *body, size_t len, int more)
{
	Modal__Client__Asgi__HttpRequest r = MODAL__CLIENT__ASGI__HTTP_REQUEST__INIT;
	r.body.data = (uint8_t *)body;
	r.body.len = len;
	r.more_body = more;
	Modal__Client__Asgi a = MODAL__CLIENT__ASGI__INIT;
	a.type_case = MODAL__CLIENT__ASGI__TYPE_HTTP_REQUEST;
	a.http_request = &r;
	put_asgi(ex, &a);
}

static void
put_ws_disconnect(struct gw_exchange *ex, int code)
{
	Modal__Client__Asgi__WebsocketDisconnect d = MODAL__CLIENT__ASGI__WEBSOCKET_DISCONNECT__INIT;
	d._code_case = MODAL__CLIENT__ASGI__WEBSOCKET_DISCONNECT___CODE_CODE;
	d.code = (uint32_t)code;
	Modal__Client__Asgi a = MODAL__CLIENT__ASGI__INIT;
	a.type_case = MODAL__CLIENT__ASGI__TYPE_WEBSOCKET_DISCONNECT;
	a.websocket_disconnect = &d;
	put_asgi(ex, &a);
}

/* The client is gone (or we gave up on it): the app hears of it once. A request nobody has started yet is
 * cancelled instead. */
static void
tell_disconnect(struct gw_exchange *ex, int ws_code)
{
	if (ex->disconnected || ex->output_seen)
		return;
	ex->disconnected = 1;
	if (ex->fc->n_inputs > 0 && ex->fc->inputs[0]->state == COVE_INPUT_PENDING) {
		cove_sched_call_cancel(sched_of(ex->gw), ex->fc, 0);
		return;
	}
	if (ex->websocket) {
		put_ws_disconnect(ex, ws_code);
	} else {
		Modal__Client__Asgi__HttpDisconnect d = MODAL__CLIENT__ASGI__HTTP_DISCONNECT__INIT;
		Modal__Client__Asgi a = MODAL__CLIENT__ASGI__INIT;
		a.type_case = MODAL__CLIENT__ASGI__TYPE_HTTP_DISCONNECT;
		a.http_disconnect = &d;
		put_asgi(ex, &a);
	}
}

/* ---- WebSocket frames ---- */

static void
ws_send_frame(struct gw_conn *c, int opcode, const void *data, size_t len)
{
	uint8_t hdr[10];
	size_t n = cove_ws_frame_header(hdr, opcode, len);
	cove_gateway_out(c, hdr, n);
	cove_gateway_out(c, data, len);
}

static void
ws_send_close(struct gw_exchange *ex, int code, const char *reason, size_t reason_len)
{
	struct gw_conn *c = ex->conn;
	if (c == NULL || ex->ws_close_sent)
		return;
	uint8_t payload[125];
	payload[0] = (uint8_t)(code >> 8);
	payload[1] = (uint8_t)code;
	size_t n = reason_len > 123 ? 123 : reason_len;
	/* Never cut a UTF-8 sequence in half. */
	while (n > 0 && n < reason_len && ((unsigned char)reason[n] & 0xc0) == 0x80)
		n--;
	if (n)
		memcpy(payload + 2, reason, n);
	ws_send_frame(c, COVE_WS_CLOSE, payload, n + 2);
	ex->ws_close_sent = 1;
}

/* A protocol error by the client: close with code, tell the app, and drop the connection. */
static void
ws_fail(struct gw_conn *c, int code)
{
	struct gw_exchange *ex = c->ex;
	ws_send_close(ex, code, NULL, 0);
	tell_disconnect(ex, code);
	cove_exchange_detach(ex, 0);
	cove_gateway_conn_close(c);
}

static void
ws_deliver(struct gw_exchange *ex, int opcode, uint8_t *data, size_t len)
{
	Modal__Client__Asgi__WebsocketReceive r = MODAL__CLIENT__ASGI__WEBSOCKET_RECEIVE__INIT;
	cleanup_free char *text = NULL;
	if (opcode == COVE_WS_TEXT) {
		if (!cove_ws_utf8_valid(data, len)) {
			ws_fail(ex->conn, COVE_WS_INVALID_DATA);
			return;
		}
		text = xstrndup((const char *)data, len);
		r.content_case = MODAL__CLIENT__ASGI__WEBSOCKET_RECEIVE__CONTENT_TEXT;
		r.text = text;
	} else {
		r.content_case = MODAL__CLIENT__ASGI__WEBSOCKET_RECEIVE__CONTENT_BYTES;
		r.bytes.data = data;
		r.bytes.len = len;
	}
	Modal__Client__Asgi a = MODAL__CLIENT__ASGI__INIT;
	a.type_case = MODAL__CLIENT__ASGI__TYPE_WEBSOCKET_RECEIVE;
	a.websocket_receive = &r;
	put_asgi(ex, &a);
}

/* Frames from the client, once the app has accepted the WebSocket. */
void
cove_exchange_ws_read(struct gw_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (c->state == C_WS && c->ex) {
		struct gw_exchange *ex = c->ex;
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return;
		struct cove_ws_frame f;
		const uint8_t *head = evbuffer_pullup(in, (ssize_t)(avail < 14 ? avail : 14));
		int rv = cove_ws_parse_header(head, avail < 14 ? avail : 14, &f);
		if (rv == 0)
			return;
		if (rv < 0) {
			ws_fail(c, COVE_WS_PROTOCOL_ERROR);
			return;
		}
		if (f.payload_len > COVE_WS_MAX_MESSAGE ||
		    ((f.opcode == COVE_WS_CONT) && ex->ws_msg_len + f.payload_len > COVE_WS_MAX_MESSAGE)) {
			ws_fail(c, COVE_WS_TOO_BIG);
			return;
		}
		if (avail < f.header_len + f.payload_len)
			return;
		evbuffer_drain(in, f.header_len);
		size_t plen = (size_t)f.payload_len;
		cleanup_free uint8_t *payload = xmalloc(plen ? plen : 1);
		if (plen)
			evbuffer_remove(in, payload, plen);
		cove_ws_unmask(payload, plen, f.mask, 0);
		switch (f.opcode) {
		case COVE_WS_TEXT:
		case COVE_WS_BINARY:
			if (ex->ws_msg) {
				ws_fail(c, COVE_WS_PROTOCOL_ERROR); /* a new message inside a fragmented one */
				return;
			}
			if (f.fin) {
				ws_deliver(ex, f.opcode, payload, plen);
			} else {
				ex->ws_msg = steal_pointer(&payload);
				ex->ws_msg_len = plen;
				ex->ws_msg_op = f.opcode;
			}
			break;
		case COVE_WS_CONT:
			if (ex->ws_msg == NULL) {
				ws_fail(c, COVE_WS_PROTOCOL_ERROR);
				return;
			}
			ex->ws_msg = xrealloc(ex->ws_msg, ex->ws_msg_len + plen + 1);
			memcpy(ex->ws_msg + ex->ws_msg_len, payload, plen);
			ex->ws_msg_len += plen;
			if (f.fin) {
				cleanup_free uint8_t *msg = steal_pointer(&ex->ws_msg);
				size_t mlen = ex->ws_msg_len;
				ex->ws_msg_len = 0;
				ws_deliver(ex, ex->ws_msg_op, msg, mlen);
			}
			break;
		case COVE_WS_PING:
			ws_send_frame(c, COVE_WS_PONG, payload, plen);
			break;
		case COVE_WS_PONG:
			break;
		case COVE_WS_CLOSE: {
			int code;
			size_t roff, rlen;
			if (cove_ws_parse_close(payload, plen, &code, &roff, &rlen) < 0) {
				ws_fail(c, COVE_WS_PROTOCOL_ERROR);
				return;
			}
			/* Echo the close (RFC 6455 section 5.5.1), tell the app, and end the connection. */
			ws_send_close(ex, code == COVE_WS_NO_STATUS ? COVE_WS_NORMAL : code, NULL, 0);
			tell_disconnect(ex, code);
			cove_exchange_detach(ex, 0);
			cove_gateway_conn_close(c);
			return;
		}
		}
	}
}

/* ---- the app's messages (data-out) ---- */

static int
hop_by_hop(const uint8_t *name, size_t n)
{
	static const char *const names[] = {"connection", "keep-alive", "transfer-encoding", "upgrade",
					    "proxy-connection", "te", "trailer"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp((const char *)name, names[i], n) == 0)
			return 1;
	return 0;
}

/* The app's response headers, checked and copied to the client; hop-by-hop ones are ours to set. *cl gets a
 * Content-Length (-1 if none). -1 if a header is not valid HTTP. */
static int
write_app_headers(struct gw_conn *c, size_t n, const ProtobufCBinaryData *h, int64_t *cl, int skip_ws)
{
	if (cl)
		*cl = -1;
	for (size_t i = 0; i + 1 < n; i += 2) {
		const ProtobufCBinaryData *name = &h[i], *value = &h[i + 1];
		if (!cove_http_is_token((const char *)name->data, name->len) ||
		    !cove_http_is_field_value((const char *)value->data, value->len))
			return -1;
		if (hop_by_hop(name->data, name->len))
			continue;
		if (skip_ws && name->len > 14 && strncasecmp((const char *)name->data, "sec-websocket-", 14) == 0)
			continue;
		if (cl && name->len == 14 && strncasecmp((const char *)name->data, "content-length", 14) == 0) {
			uint64_t v = 0;
			if (value->len == 0 || value->len > 18)
				return -1;
			for (size_t k = 0; k < value->len; k++) {
				if (value->data[k] < '0' || value->data[k] > '9')
					return -1;
				v = v * 10 + (uint64_t)(value->data[k] - '0');
			}
			if (*cl >= 0 && (uint64_t)*cl != v)
				return -1;
			*cl = (int64_t)v;
		}
		cove_gateway_out(c, name->data, name->len);
		cove_gateway_out(c, ": ", 2);
		cove_gateway_out(c, value->data, value->len);
		cove_gateway_out(c, "\r\n", 2);
	}
	return 0;
}

/* The response is complete on the client's side: the connection moves on, the exchange waits for its
 * output without it. */
static void
response_complete(struct gw_exchange *ex)
{
	struct gw_conn *c = ex->conn;
	ex->resp_done = 1;
	if (c == NULL)
		return;
	int reuse = ex->keep_alive && ex->body_done && ex->resp_mode != RESP_CLOSE;
	/* An app that answered before reading the whole body would otherwise wait for the rest forever. */
	cove_exchange_detach(ex, !ex->body_done);
	if (reuse)
		cove_gateway_conn_next(c);
	else
		cove_gateway_conn_close(c);
}

static void
response_start(struct gw_exchange *ex, const Modal__Client__Asgi__HttpResponseStart *s)
{
	struct gw_conn *c = ex->conn;
	if (ex->resp_started) {
		log_warn("gateway: %s: the app started its response twice; ignored", ex->fc_id);
		return;
	}
	int status = (int)s->status;
	if (status < 200 || status > 599) {
		log_warn("gateway: %s: the app answered with status %d", ex->fc_id, status);
		ex->resp_started = 1;
		cove_gateway_respond_error(c, 502, "the app sent an invalid response status", 1);
		tell_disconnect(ex, COVE_WS_ABNORMAL);
		cove_exchange_detach(ex, 0);
		return;
	}
	struct evbuffer *out = cove_gateway_output(c);
	size_t mark = evbuffer_get_length(out);
	cove_gateway_outf(c, "HTTP/1.1 %d %s\r\n", status, cove_http_reason(status));
	int64_t cl;
	if (write_app_headers(c, s->n_headers, s->headers, &cl, 0) < 0) {
		/* Nothing of this response has gone out yet: take it back and say what happened. */
		struct evbuffer *keep = evbuffer_new();
		evbuffer_remove_buffer(out, keep, mark);
		evbuffer_drain(out, evbuffer_get_length(out));
		evbuffer_add_buffer(out, keep);
		evbuffer_free(keep);
		log_warn("gateway: %s: the app sent an invalid response header", ex->fc_id);
		ex->resp_started = 1;
		cove_gateway_respond_error(c, 502, "the app sent an invalid response header", 1);
		tell_disconnect(ex, COVE_WS_ABNORMAL);
		cove_exchange_detach(ex, 0);
		return;
	}
	ex->resp_started = 1;
	if (ex->head_only || status == 204 || status == 304) {
		ex->resp_mode = RESP_NONE;
	} else if (cl >= 0) {
		ex->resp_mode = RESP_LENGTH;
		ex->resp_left = (uint64_t)cl;
	} else if (ex->http10) {
		ex->resp_mode = RESP_CLOSE;
		ex->keep_alive = 0;
	} else {
		ex->resp_mode = RESP_CHUNKED;
		cove_gateway_outf(c, "transfer-encoding: chunked\r\n");
	}
	if (!ex->keep_alive || !ex->body_done)
		cove_gateway_outf(c, "connection: close\r\n");
	cove_gateway_out(c, "\r\n", 2);
	if (!ex->body_done)
		ex->keep_alive = 0;
}

static void
response_body(struct gw_exchange *ex, const Modal__Client__Asgi__HttpResponseBody *b)
{
	struct gw_conn *c = ex->conn;
	if (!ex->resp_started) {
		log_warn("gateway: %s: the app sent a body before starting its response; ignored", ex->fc_id);
		return;
	}
	size_t len = b->body.len;
	switch (ex->resp_mode) {
	case RESP_NONE:
		break;
	case RESP_LENGTH: {
		size_t n = (uint64_t)len > ex->resp_left ? (size_t)ex->resp_left : len;
		cove_gateway_out(c, b->body.data, n);
		ex->resp_left -= n;
		if (n < len) {
			log_warn("gateway: %s: the app sent more than its Content-Length", ex->fc_id);
			ex->keep_alive = 0;
		}
		break;
	}
	case RESP_CHUNKED:
		if (len) {
			cove_gateway_outf(c, "%zx\r\n", len);
			cove_gateway_out(c, b->body.data, len);
			cove_gateway_out(c, "\r\n", 2);
		}
		break;
	case RESP_CLOSE:
		cove_gateway_out(c, b->body.data, len);
		break;
	}
	if (b->more_body)
		return;
	if (ex->resp_mode == RESP_CHUNKED)
		cove_gateway_out(c, "0\r\n\r\n", 5);
	if (ex->resp_mode == RESP_LENGTH && ex->resp_left > 0)
		ex->keep_alive = 0; /* short body: only closing tells the client */
	response_complete(ex);
}

static void
ws_accept(struct gw_exchange *ex, const Modal__Client__Asgi__WebsocketAccept *a)
{
	struct gw_conn *c = ex->conn;
	if (ex->ws_open || ex->resp_started)
		return;
	struct evbuffer *out = cove_gateway_output(c);
	size_t mark = evbuffer_get_length(out);
	cove_gateway_outf(c,
			  "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
			  "sec-websocket-accept: %s\r\n",
			  ex->ws_accept);
	int bad = 0;
	if (a->_subprotocol_case == MODAL__CLIENT__ASGI__WEBSOCKET_ACCEPT___SUBPROTOCOL_SUBPROTOCOL && a->subprotocol &&
	    a->subprotocol[0]) {
		if (cove_http_is_token(a->subprotocol, strlen(a->subprotocol)))
			cove_gateway_outf(c, "sec-websocket-protocol: %s\r\n", a->subprotocol);
		else
			bad = 1;
	}
	if (bad || write_app_headers(c, a->n_headers, a->headers, NULL, 1) < 0) {
		struct evbuffer *keep = evbuffer_new();
		evbuffer_remove_buffer(out, keep, mark);
		evbuffer_drain(out, evbuffer_get_length(out));
		evbuffer_add_buffer(out, keep);
		evbuffer_free(keep);
		ex->resp_started = 1;
		cove_gateway_respond_error(c, 502, "the app accepted the WebSocket with an invalid header", 1);
		tell_disconnect(ex, COVE_WS_ABNORMAL);
		cove_exchange_detach(ex, 0);
		return;
	}
	cove_gateway_out(c, "\r\n", 2);
	ex->resp_started = 1;
	ex->ws_open = 1;
	c->state = C_WS;
	/* Frames can be up to a message long. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, COVE_WS_MAX_MESSAGE + 14);
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		event_active(c->resume, EV_READ, 0);
}

static void
ws_app_close(struct gw_exchange *ex, const Modal__Client__Asgi__WebsocketClose *cl)
{
	struct gw_conn *c = ex->conn;
	if (!ex->ws_open) {
		/* Closed before accepting: the handshake is refused (ASGI: 403). */
		ex->resp_started = 1;
		cove_gateway_respond_error(c, 403, "the app refused the WebSocket", 1);
		cove_exchange_detach(ex, 0);
		return;
	}
	int code = cl->_code_case == MODAL__CLIENT__ASGI__WEBSOCKET_CLOSE___CODE_CODE ? (int)cl->code : COVE_WS_NORMAL;
	if (!((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)))
		code = COVE_WS_NORMAL;
	const char *reason = cl->reason ? cl->reason : "";
	ws_send_close(ex, code, reason, strlen(reason));
	cove_exchange_detach(ex, 0);
	cove_gateway_conn_close(c);
}

static void
ws_app_send(struct gw_exchange *ex, const Modal__Client__Asgi__WebsocketSend *s)
{
	if (!ex->ws_open || ex->ws_close_sent)
		return;
	if (s->content_case == MODAL__CLIENT__ASGI__WEBSOCKET_SEND__CONTENT_TEXT)
		ws_send_frame(ex->conn, COVE_WS_TEXT, s->text, strlen(s->text));
	else if (s->content_case == MODAL__CLIENT__ASGI__WEBSOCKET_SEND__CONTENT_BYTES)
		ws_send_frame(ex->conn, COVE_WS_BINARY, s->bytes.data, s->bytes.len);
}

/* One data-out chunk: an ASGI message from the app. */
static void
handle_chunk(struct gw_exchange *ex, const uint8_t *bytes, size_t len)
{
	Modal__Client__DataChunk *chunk = pb_unpack(&modal__client__data_chunk__descriptor, bytes, len);
	if (chunk == NULL)
		return; /* we packed it ourselves: cannot happen */
	uint8_t *blob = NULL;
	const uint8_t *data = NULL;
	size_t dlen = 0;
	if (chunk->data_oneof_case == MODAL__CLIENT__DATA_CHUNK__DATA_ONEOF_DATA) {
		data = chunk->data.data;
		dlen = chunk->data.len;
	} else if (chunk->data_oneof_case == MODAL__CLIENT__DATA_CHUNK__DATA_ONEOF_DATA_BLOB_ID) {
		struct cove_error *err = NULL;
		if (cove_blobstore_read_blob(ex->gw->ctx->blobs, chunk->data_blob_id, &blob, &dlen, &err) < 0) {
			log_warn("gateway: %s: %s", ex->fc_id, err->msg);
			cove_error_free(err);
			pb_free(chunk);
			return;
		}
		data = blob;
	}
	Modal__Client__Asgi *m = NULL;
	if (chunk->data_format == MODAL__CLIENT__DATA_FORMAT__DATA_FORMAT_ASGI)
		m = pb_unpack(&modal__client__asgi__descriptor, data ? data : (const uint8_t *)"", dlen);
	if (m && ex->conn && !ex->resp_done) {
		switch (m->type_case) {
		case MODAL__CLIENT__ASGI__TYPE_HTTP_RESPONSE_START: response_start(ex, m->http_response_start); break;
		case MODAL__CLIENT__ASGI__TYPE_HTTP_RESPONSE_BODY: response_body(ex, m->http_response_body); break;
		case MODAL__CLIENT__ASGI__TYPE_WEBSOCKET_ACCEPT:
			if (ex->websocket)
				ws_accept(ex, m->websocket_accept);
			break;
		case MODAL__CLIENT__ASGI__TYPE_WEBSOCKET_SEND:
			if (ex->websocket)
				ws_app_send(ex, m->websocket_send);
			break;
		case MODAL__CLIENT__ASGI__TYPE_WEBSOCKET_CLOSE:
			if (ex->websocket)
				ws_app_close(ex, m->websocket_close);
			break;
		default: break; /* trailers and anything else: not sent */
		}
	}
	pb_free(m);
	pb_free(chunk);
	free(blob);
}

/* The call's output, read once: its status and, for a clean end, how many data-out chunks it made. */
static void
read_output(struct gw_exchange *ex)
{
	struct cove_fcall *fc = ex->fc;
	if (ex->output_seen || fc->n_outputs == 0)
		return;
	ex->output_seen = 1;
	ex->ready_at = cove_gateway_now();
	ex->result_status = MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_INTERNAL_FAILURE;
	ex->items_total = 0;
	const struct cove_output *o = &fc->outputs[0];
	Modal__Client__FunctionGetOutputsItem *item =
		o->item ? pb_unpack(&modal__client__function_get_outputs_item__descriptor, o->item, o->len) : NULL;
	if (item && item->result) {
		ex->result_status = item->result->status;
		if (item->result->status != MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS) {
			log_info("gateway: %s (%s): the web function ended with status %d: %s", ex->fc_id, ex->fn->tag,
				 item->result->status, item->result->exception ? item->result->exception : "");
			/* An internal failure with no data is Cove's, not the app's (a container that could not start:
			 * no GPU, an image that did not build): its message says what to fix and may be shown. An app's
			 * exception carries data (the pickled exception) and stays in the app's logs. */
			if (item->result->status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_INTERNAL_FAILURE &&
			    item->result->data_oneof_case == MODAL__CLIENT__GENERIC_RESULT__DATA_ONEOF__NOT_SET &&
			    item->result->exception && *item->result->exception) {
				free(ex->cove_failure);
				ex->cove_failure = xstrdup(item->result->exception);
			}
		} else if (item->data_format == MODAL__CLIENT__DATA_FORMAT__DATA_FORMAT_GENERATOR_DONE &&
			   item->result->data_oneof_case == MODAL__CLIENT__GENERIC_RESULT__DATA_ONEOF_DATA) {
			Modal__Client__GeneratorDone *done = pb_unpack(&modal__client__generator_done__descriptor,
								      item->result->data.data, item->result->data.len);
			if (done)
				ex->items_total = done->items_total;
			pb_free(done);
		}
	}
	pb_free(item);
}

static const char *
failure_message(const struct gw_exchange *ex, int *http)
{
	if (ex->cove_failure) {
		*http = 503;
		return ex->cove_failure;
	}
	switch (ex->result_status) {
	case MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TIMEOUT:
		*http = 504;
		return "the web function timed out";
	case MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_TERMINATED:
		*http = 503;
		return "the request was cancelled (the app stopped or the call was cancelled)";
	default:
		*http = 500;
		return "internal error: the web function failed; see the app's logs";
	}
}

/* The output is in and every chunk before it has been read: answer what is left and free the exchange. */
static void
exchange_finish(struct gw_exchange *ex)
{
	struct gw_conn *c = ex->conn;
	if (c) {
		int ok = ex->result_status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS;
		if (!ex->resp_started) {
			int status;
			const char *msg = ok ? (ex->websocket ? "the app closed the WebSocket without accepting it"
							      : "internal error: the app returned without a response")
					     : failure_message(ex, &status);
			if (ok)
				status = ex->websocket ? 403 : 500;
			cove_exchange_detach(ex, 0);
			cove_gateway_respond_error(c, status, msg, !(ex->keep_alive && ex->body_done));
		} else if (ex->ws_open) {
			ws_send_close(ex, ok ? COVE_WS_NORMAL : COVE_WS_INTERNAL_ERROR, NULL, 0);
			cove_exchange_detach(ex, 0);
			cove_gateway_conn_close(c);
		} else if (ok && ex->resp_mode == RESP_CHUNKED) {
			/* The app returned mid-response: end the body properly. */
			cove_gateway_out(c, "0\r\n\r\n", 5);
			response_complete(ex);
		} else {
			/* A failure mid-response (or a short body): only an abrupt close tells the client. */
			cove_exchange_detach(ex, 0);
			cove_gateway_conn_free(c);
		}
	}
	cove_exchange_free(ex);
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct gw_exchange *ex = arg;
	struct cove_fcall *fc = ex->fc;
	read_output(ex);
	if (ex->parked) {
		/* Its chunks wait, untouched, for the request that picks the result up. */
		return;
	}
	while (ex->out_next <= cove_sched_data_count(fc, COVE_DATA_OUT)) {
		if (ex->conn && evbuffer_get_length(cove_gateway_output(ex->conn)) > OUT_HIGH)
			return; /* the connection's write callback pumps again once the client has caught up */
		size_t len;
		const uint8_t *chunk = cove_sched_data_chunk(fc, COVE_DATA_OUT, ex->out_next, &len);
		if (chunk)
			handle_chunk(ex, chunk, len);
		cove_sched_data_release(fc, COVE_DATA_OUT, ex->out_next);
		ex->out_next++;
	}
	if (!ex->output_seen)
		return;
	int ok = ex->result_status == MODAL__CLIENT__GENERIC_RESULT__GENERIC_STATUS__GENERIC_STATUS_SUCCESS;
	if (ok && ex->out_next <= ex->items_total)
		return; /* chunks the output counts have not all arrived yet */
	exchange_finish(ex);
}

static void
pump_notify(void *arg)
{
	struct gw_exchange *ex = arg;
	event_active(ex->pump, EV_READ, 0);
}

/* ---- exchanges ---- */

void
cove_exchange_free(struct gw_exchange *ex)
{
	struct cove_gateway *gw = ex->gw;
	log_debug("gateway: %s: done after %.3f s (status %d)", ex->fc_id, cove_gateway_now() - ex->created_at,
		  ex->result_status);
	if (ex->conn) {
		ex->conn->ex = NULL;
		ex->conn = NULL;
	}
	if (ex->parked)
		cove_map_del(&gw->parked, ex->fc_id);
	cove_sched_data_unsubscribe(ex->sub);
	/* Nothing will read this call's streams again. */
	cove_sched_data_release(ex->fc, COVE_DATA_IN, cove_sched_data_count(ex->fc, COVE_DATA_IN));
	cove_sched_data_release(ex->fc, COVE_DATA_OUT, cove_sched_data_count(ex->fc, COVE_DATA_OUT));
	event_free(ex->pump);
	if (ex->prev)
		ex->prev->next = ex->next;
	else
		gw->exchanges = ex->next;
	if (ex->next)
		ex->next->prev = ex->prev;
	free(ex->ws_msg);
	free(ex->target);
	free(ex->fc_id);
	free(ex->cove_failure);
	free(ex);
}

/* Part the exchange from its connection (which goes on, or closes, as the caller decides). tell_app: the
 * client went away before the response was done. */
void
cove_exchange_detach(struct gw_exchange *ex, int tell_app)
{
	if (tell_app)
		tell_disconnect(ex, COVE_WS_ABNORMAL);
	if (ex->conn) {
		ex->conn->ex = NULL;
		ex->conn = NULL;
	}
	ex->orphan = 1;
	event_active(ex->pump, EV_READ, 0);
}

static void
park(struct gw_exchange *ex)
{
	struct gw_conn *c = ex->conn;
	const char *sep = strchr(ex->target, '?') ? "&" : "?";
	cleanup_free char *loc = strstr(ex->target, RESULT_PARAM "=") ? xstrdup(ex->target)
									   : xasprintf("%s%s" RESULT_PARAM "=%s", ex->target, sep, ex->fc_id);
	cleanup_free char *hdr = xasprintf("location: %s\r\n", loc);
	ex->conn->ex = NULL;
	ex->conn = NULL;
	ex->parked = 1;
	ex->parked_at = cove_gateway_now();
	cove_map_put(&ex->gw->parked, ex->fc_id, ex);
	cove_gateway_respond(c, 303, hdr, "", !(ex->keep_alive && ex->body_done));
}

/* Attach a request for a result URL to its parked exchange. */
void
cove_exchange_pick_up(struct gw_conn *c, const struct cove_route *route, const char *fc_id, int keep_alive,
		      int head_only, int http10, int has_body)
{
	struct gw_exchange *ex = cove_map_get(&c->gw->parked, fc_id);
	if (ex == NULL || ex->fn != route->fn) {
		cove_gateway_respond_error(c, 404, "no pending result for this function call", has_body || !keep_alive);
		return;
	}
	cove_map_del(&c->gw->parked, fc_id);
	ex->parked = 0;
	ex->conn = c;
	ex->keep_alive = keep_alive && !has_body;
	ex->head_only = head_only;
	ex->http10 = http10;
	ex->wait_since = cove_gateway_now();
	c->ex = ex;
	c->state = C_BUSY;
	event_active(ex->pump, EV_READ, 0);
}

void
cove_exchange_start(struct gw_conn *c, const struct cove_http_request *req, const struct cove_route *route,
		    struct cove_asgi_request *ar, int websocket, int keep_alive, int body_kind, uint64_t body_len)
{
	struct cove_gateway *gw = c->gw;
	struct cove_sched *s = sched_of(gw);
	struct cove_function *fn = route->fn;
	ar->websocket = websocket;
	ar->req = req;
	ar->client_host = c->peer_host;
	ar->client_port = c->peer_port;
	ar->server_host = gw->ctx->cfg.address;
	ar->server_port = gw->port;
	ar->strip_proxy_auth = route->webhook->requires_proxy_auth;
	size_t in_len;
	cleanup_free uint8_t *input = cove_asgi_function_input(ar, route->method, &in_len);
	struct cove_error *err = NULL;
	struct cove_fcall *fc = NULL;
	if (cove_store_begin(gw->ctx->store, &err) == 0) {
		fc = cove_sched_call_create(s, fn, MODAL__CLIENT__FUNCTION_CALL_TYPE__FUNCTION_CALL_TYPE_UNARY,
					    MODAL__CLIENT__FUNCTION_CALL_INVOCATION_TYPE__FUNCTION_CALL_INVOCATION_TYPE_SYNC, NULL,
					    &err);
		if (fc == NULL || cove_sched_input_add(s, fc, 0, input, in_len, &err) == NULL ||
		    cove_store_commit(gw->ctx->store, &err) < 0) {
			cove_store_rollback(gw->ctx->store);
			fc = NULL;
		}
	}
	if (fc == NULL) {
		log_error("gateway: cannot accept a request for %s: %s", fn->tag, err ? err->msg : "?");
		cove_error_free(err);
		cove_gateway_respond_error(c, 503, "the server could not accept the request", 1);
		return;
	}
	struct gw_exchange *ex = xcalloc(1, sizeof(*ex));
	ex->gw = gw;
	ex->conn = c;
	ex->fc = fc;
	ex->fc_id = xstrdup(fc->id);
	ex->fn = fn;
	ex->pump = event_new(gw->ctx->base, -1, 0, pump_cb, ex);
	if (ex->pump == NULL) {
		log_error("gateway: out of memory");
		abort();
	}
	ex->out_next = 1;
	ex->in_next = 1;
	ex->target = xstrndup(req->target, req->target_len);
	ex->head_only = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
	ex->http10 = req->version_minor == 0;
	ex->keep_alive = keep_alive;
	ex->websocket = websocket;
	ex->body_kind = body_kind;
	ex->body_left = body_len;
	ex->wait_since = ex->body_at = ex->created_at = cove_gateway_now();
	ex->next = gw->exchanges;
	if (gw->exchanges)
		gw->exchanges->prev = ex;
	gw->exchanges = ex;
	ex->sub = cove_sched_data_subscribe(fc, COVE_DATA_OUT, pump_notify, ex);
	cove_sched_data_release_on_delivery(fc, COVE_DATA_IN);
	c->ex = ex;
	c->state = C_BUSY;
	log_debug("gateway: %s: %.*s %.*s -> %s%s%s (%s)", c->peer_host, (int)req->method_len, req->method,
		  (int)req->target_len, req->target, fn->tag, route->method ? "." : "", route->method ? route->method : "",
		  ex->fc_id);
	if (websocket) {
		size_t klen = 0, n = 0;
		const char *key = cove_gateway_header(req, "sec-websocket-key", &klen, &n);
		cove_ws_accept_key(key, klen, ex->ws_accept);
		Modal__Client__Asgi__WebsocketConnect wc = MODAL__CLIENT__ASGI__WEBSOCKET_CONNECT__INIT;
		Modal__Client__Asgi a = MODAL__CLIENT__ASGI__INIT;
		a.type_case = MODAL__CLIENT__ASGI__TYPE_WEBSOCKET_CONNECT;
		a.websocket_connect = &wc;
		put_asgi(ex, &a);
		ex->body_done = 1;
	} else if (body_kind == COVE_HTTP_BODY_NONE) {
		put_request(ex, NULL, 0, 0);
		ex->body_done = 1;
	} else {
		size_t elen = 0, n = 0;
		const char *expect = cove_gateway_header(req, "expect", &elen, &n);
		if (expect && elen == 12 && strncasecmp(expect, "100-continue", 12) == 0 && req->version_minor == 1)
			cove_gateway_outf(c, "HTTP/1.1 100 Continue\r\n\r\n");
	}
	cove_sched_kick(s, fn);
}

/* ---- reading ---- */

static void
body_too_large(struct gw_exchange *ex)
{
	struct gw_conn *c = ex->conn;
	tell_disconnect(ex, COVE_WS_ABNORMAL);
	cove_exchange_detach(ex, 0);
	if (!ex->resp_started)
		cove_gateway_respond_error(c, 413, "request body too large", 1);
	else
		cove_gateway_conn_free(c);
}

static void
body_malformed(struct gw_exchange *ex)
{
	struct gw_conn *c = ex->conn;
	tell_disconnect(ex, COVE_WS_ABNORMAL);
	cove_exchange_detach(ex, 0);
	if (!ex->resp_started)
		cove_gateway_respond_error(c, 400, "malformed chunked body", 1);
	else
		cove_gateway_conn_free(c);
}

/* Stream what has arrived of the request body into data-in. */
void
cove_exchange_feed_body(struct gw_exchange *ex)
{
	struct gw_conn *c = ex->conn;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (ex->conn == c && !ex->body_done) {
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return;
		ex->body_at = cove_gateway_now();
		if (ex->body_kind == COVE_HTTP_BODY_LENGTH) {
			size_t n = avail;
			if ((uint64_t)n > ex->body_left)
				n = (size_t)ex->body_left;
			if (n > BODY_CHUNK)
				n = BODY_CHUNK;
			cleanup_free uint8_t *buf = xmalloc(n);
			evbuffer_remove(in, buf, n);
			ex->body_left -= n;
			ex->body_done = ex->body_left == 0;
			put_request(ex, buf, n, !ex->body_done);
			continue;
		}
		/* Chunked: decode up to a data-in chunk's worth. */
		size_t take = avail < BODY_CHUNK ? avail : BODY_CHUNK;
		const uint8_t *p = evbuffer_pullup(in, (ssize_t)take);
		cleanup_free uint8_t *out = xmalloc(take);
		size_t out_len = 0, pos = 0;
		while (pos < take && !ex->chunked.done) {
			size_t off, dlen;
			ssize_t used = cove_http_chunked_feed(&ex->chunked, p + pos, take - pos, &off, &dlen);
			if (used < 0) {
				body_malformed(ex);
				return;
			}
			memcpy(out + out_len, p + pos + off, dlen);
			out_len += dlen;
			pos += (size_t)used;
			if (used == 0)
				break;
		}
		evbuffer_drain(in, pos);
		ex->body_total += out_len;
		if (ex->body_total > ex->gw->max_body) {
			body_too_large(ex);
			return;
		}
		ex->body_done = ex->chunked.done;
		if (out_len > 0 || ex->body_done)
			put_request(ex, out, out_len, !ex->body_done);
		if (pos == 0)
			return;
	}
}

void
cove_exchange_kick(struct gw_exchange *ex)
{
	event_active(ex->pump, EV_READ, 0);
}

/* Once a second: requests with no answer in time (303, or 504 for a WebSocket), queued requests of apps that
 * stopped, and results nobody came back for. */
void
cove_exchange_tick(struct cove_gateway *gw, double now)
{
	struct gw_exchange *enext;
	for (struct gw_exchange *ex = gw->exchanges; ex; ex = enext) {
		enext = ex->next;
		if (ex->output_seen)
			goto parked;
		/* An app that stopped will never start what is still queued. */
		if (ex->fn->app->stopping && ex->fc->n_inputs > 0 && ex->fc->inputs[0]->state == COVE_INPUT_PENDING) {
			cove_sched_call_cancel(sched_of(gw), ex->fc, 0);
			continue;
		}
		if (ex->conn && !ex->resp_started && ex->body_done && now - ex->wait_since > gw->request_timeout_s) {
			if (ex->websocket) {
				struct gw_conn *c = ex->conn;
				cove_exchange_detach(ex, 1);
				cove_gateway_respond_error(c, 504, "the app did not accept the WebSocket in time", 1);
			} else {
				park(ex);
			}
			continue;
		}
	parked:
		if (ex->parked && ex->output_seen && now - ex->ready_at > RESULT_TTL_S) {
			cove_map_del(&gw->parked, ex->fc_id);
			ex->parked = 0;
			event_active(ex->pump, EV_READ, 0); /* orphaned: it reads what is left and frees itself */
		} else if (ex->parked && !ex->output_seen && now - ex->parked_at > PARKED_MAX_S) {
			cove_map_del(&gw->parked, ex->fc_id);
			ex->parked = 0;
			ex->orphan = 1;
			tell_disconnect(ex, COVE_WS_ABNORMAL);
		}
	}
}
