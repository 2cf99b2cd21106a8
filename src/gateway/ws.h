/* WebSocket (RFC 6455) pieces for the web gateway: the handshake's accept key, frame headers in both
 * directions, and the checks a server makes on what a client sends. Pure functions, fuzzed with the HTTP
 * parser (tests/fuzz/fuzz_http.c). */
#ifndef COVE_GATEWAY_WS_H
#define COVE_GATEWAY_WS_H

#include <stddef.h>
#include <stdint.h>

enum {
	COVE_WS_CONT = 0x0,
	COVE_WS_TEXT = 0x1,
	COVE_WS_BINARY = 0x2,
	COVE_WS_CLOSE = 0x8,
	COVE_WS_PING = 0x9,
	COVE_WS_PONG = 0xA,
};

/* Close codes the gateway sends. */
enum {
	COVE_WS_NORMAL = 1000,
	COVE_WS_PROTOCOL_ERROR = 1002,
	COVE_WS_NO_STATUS = 1005,
	COVE_WS_ABNORMAL = 1006,
	COVE_WS_INVALID_DATA = 1007,
	COVE_WS_TOO_BIG = 1009,
	COVE_WS_INTERNAL_ERROR = 1011,
};

/* A message (all its fragments together) larger than this closes the connection with 1009. */
#define COVE_WS_MAX_MESSAGE (16 * 1024 * 1024)

struct cove_ws_frame {
	int fin;
	int opcode;
	int masked;
	uint8_t mask[4];
	uint64_t payload_len;
	size_t header_len;
};

/* Parse a client frame's header at buf[0..len). Returns the header length (> 0), 0 if more bytes are needed,
 * or -1 for a frame a server must refuse (1002): reserved bits or opcodes, an unmasked frame, a fragmented or
 * oversized (> 125 bytes) control frame, a non-minimal or > 2^63 length. */
int cove_ws_parse_header(const uint8_t *buf, size_t len, struct cove_ws_frame *f);
/* XOR data[0..len) with mask, as bytes at offset `offset` of the payload. */
void cove_ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);
/* A server frame header (unmasked, FIN set) for a payload of len bytes into out; returns its length. */
size_t cove_ws_frame_header(uint8_t out[10], int opcode, uint64_t len);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (out: 28 chars + NUL). */
void cove_ws_accept_key(const char *key, size_t key_len, char out[29]);
/* 1 if a Sec-WebSocket-Key is valid: base64 of 16 bytes (24 chars ending in "=="). */
int cove_ws_key_valid(const char *key, size_t key_len);
/* A close frame's payload: *code (COVE_WS_NO_STATUS if empty) and the reason's span. -1 if malformed (one
 * byte, a code a client may not send, or a reason that is not UTF-8). */
int cove_ws_parse_close(const uint8_t *payload, size_t len, int *code, size_t *reason_off, size_t *reason_len);
/* 1 if data[0..len) is valid UTF-8 (RFC 3629: no overlongs, surrogates or values above U+10FFFF). */
int cove_ws_utf8_valid(const uint8_t *data, size_t len);

#endif
