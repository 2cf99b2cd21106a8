#include "util/utf8.h"

#include <string.h>

#include "util/alloc.h"

/* Length of the valid UTF-8 sequence at s (n bytes available): > 0 valid, 0 incomplete but possibly valid,
 * -1 invalid. */
static int
seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	int need;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c == 0)
		return -1; /* protobuf-c strings end at NUL: never let one through */
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;
		if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F;
	} else
		return -1;
	for (int i = 1; i < need; i++) {
		if ((size_t)i >= n)
			return 0;
		unsigned char b = s[i];
		if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
			return -1;
	}
	return need;
}

char *
cove_utf8_sanitize(struct cove_utf8_carry *carry, const char *data, size_t len, size_t *out_len)
{
	size_t total = carry->len + len;
	unsigned char *in = xmalloc(total + 1);
	memcpy(in, carry->buf, carry->len);
	if (len)
		memcpy(in + carry->len, data, len);
	carry->len = 0;
	int flush = data == NULL;
	/* Worst case every byte becomes the 3-byte replacement character. */
	char *out = xmalloc(total * 3 + 1);
	size_t o = 0;
	for (size_t i = 0; i < total;) {
		int n = seq_len(in + i, total - i);
		if (n > 0) {
			memcpy(out + o, in + i, (size_t)n);
			o += (size_t)n;
			i += (size_t)n;
		} else if (n == 0 && !flush) {
			carry->len = total - i;
			memcpy(carry->buf, in + i, carry->len);
			break;
		} else {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i += 1;
		}
	}
	out[o] = '\0';
	free(in);
	*out_len = o;
	return out;
}
