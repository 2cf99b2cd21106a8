/* WebSocket framing and handshake helpers (see ws.h). */
#include "gateway/ws.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int
cove_ws_parse_header(const uint8_t *buf, size_t len, struct cove_ws_frame *f)
{
	if (len < 2)
		return 0;
	uint8_t b0 = buf[0], b1 = buf[1];
	if (b0 & 0x70)
		return -1; /* RSV1-3: no extension was negotiated */
	f->fin = (b0 & 0x80) != 0;
	f->opcode = b0 & 0x0f;
	f->masked = (b1 & 0x80) != 0;
	switch (f->opcode) {
	case COVE_WS_CONT:
	case COVE_WS_TEXT:
	case COVE_WS_BINARY:
	case COVE_WS_CLOSE:
	case COVE_WS_PING:
	case COVE_WS_PONG:
		break;
	default:
		return -1;
	}
	if (!f->masked)
		return -1; /* clients must mask (RFC 6455 section 5.1) */
	uint64_t plen = b1 & 0x7f;
	size_t pos = 2;
	if (plen == 126) {
		if (len < 4)
			return 0;
		plen = ((uint64_t)buf[2] << 8) | buf[3];
		if (plen < 126)
			return -1;
		pos = 4;
	} else if (plen == 127) {
		if (len < 10)
			return 0;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = (plen << 8) | buf[2 + i];
		if (plen >> 63 || plen <= 0xffff)
			return -1;
		pos = 10;
	}
	if (f->opcode >= COVE_WS_CLOSE && (!f->fin || plen > 125))
		return -1;
	if (len < pos + 4)
		return 0;
	memcpy(f->mask, buf + pos, 4);
	f->payload_len = plen;
	f->header_len = pos + 4;
	return (int)f->header_len;
}

void
cove_ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		data[i] ^= mask[(offset + i) & 3];
}

size_t
cove_ws_frame_header(uint8_t out[10], int opcode, uint64_t len)
{
	out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

void
cove_ws_accept_key(const char *key, size_t key_len, char out[29])
{
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (c == NULL || EVP_DigestInit_ex(c, EVP_sha1(), NULL) != 1 || EVP_DigestUpdate(c, key, key_len) != 1 ||
	    EVP_DigestUpdate(c, WS_GUID, strlen(WS_GUID)) != 1 || EVP_DigestFinal_ex(c, digest, &dlen) != 1 || dlen != 20)
		abort();
	EVP_MD_CTX_free(c);
	EVP_EncodeBlock((unsigned char *)out, digest, 20);
	out[28] = '\0';
}

int
cove_ws_key_valid(const char *key, size_t key_len)
{
	if (key_len != 24 || key[22] != '=' || key[23] != '=')
		return 0;
	for (size_t i = 0; i < 22; i++) {
		char c = key[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return 0;
	}
	return 1;
}

int
cove_ws_utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp, min;
		if ((c & 0xe0) == 0xc0) {
			n = 2;
			cp = c & 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 3;
			cp = c & 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return 0;
		}
		if (len - i < n)
			return 0;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n;
	}
	return 1;
}

int
cove_ws_parse_close(const uint8_t *payload, size_t len, int *code, size_t *reason_off, size_t *reason_len)
{
	*reason_off = 0;
	*reason_len = 0;
	if (len == 0) {
		*code = COVE_WS_NO_STATUS;
		return 0;
	}
	if (len == 1)
		return -1;
	int c = (payload[0] << 8) | payload[1];
	/* Codes a peer may send (RFC 6455 section 7.4): 1000-1003, 1007-1014, and 3000-4999. */
	if (!((c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)))
		return -1;
	if (!cove_ws_utf8_valid(payload + 2, len - 2))
		return -1;
	*code = c;
	*reason_off = 2;
	*reason_len = len - 2;
	return 0;
}
