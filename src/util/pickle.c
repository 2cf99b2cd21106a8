/* Pickle protocol 4 writer (see pickle.h). Opcodes as in CPython's Lib/pickletools.py; no memo and no
 * frames, both optional for the reader. */
#include "util/pickle.h"

#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/log.h"

#define OP_PROTO 0x80
#define OP_STOP '.'
#define OP_NONE 'N'
#define OP_NEWTRUE 0x88
#define OP_NEWFALSE 0x89
#define OP_BININT 'J'
#define OP_BININT1 'K'
#define OP_BININT2 'M'
#define OP_LONG1 0x8a
#define OP_SHORT_BINUNICODE 0x8c
#define OP_BINUNICODE 'X'
#define OP_BINUNICODE8 0x8d
#define OP_SHORT_BINBYTES 'C'
#define OP_BINBYTES 'B'
#define OP_BINBYTES8 0x8e
#define OP_MARK '('
#define OP_TUPLE 't'
#define OP_EMPTY_LIST ']'
#define OP_APPENDS 'e'
#define OP_EMPTY_DICT '}'
#define OP_SETITEMS 'u'
#define OP_STACK_GLOBAL 0x93
#define OP_REDUCE 'R'

static void
put(struct cove_pickle *p, const void *data, size_t n)
{
	if (p->len + n > p->cap) {
		size_t cap = p->cap ? p->cap : 256;
		while (cap < p->len + n)
			cap *= 2;
		p->buf = xrealloc(p->buf, cap);
		p->cap = cap;
	}
	memcpy(p->buf + p->len, data, n);
	p->len += n;
}

static void
put_byte(struct cove_pickle *p, uint8_t b)
{
	put(p, &b, 1);
}

static void
put_le(struct cove_pickle *p, uint64_t v, int n)
{
	uint8_t b[8];
	for (int i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(p, b, (size_t)n);
}

static void
misuse(const char *what)
{
	log_error("pickle: %s", what);
	abort();
}

/* One more value in the innermost container (or at the top). */
static void
count_item(struct cove_pickle *p)
{
	p->items[p->depth]++;
	if (p->depth == 0 && p->items[0] > 1)
		misuse("more than one value at the top level");
}

void
cove_pickle_init(struct cove_pickle *p)
{
	memset(p, 0, sizeof(*p));
	put_byte(p, OP_PROTO);
	put_byte(p, 4);
}

void
cove_pickle_none(struct cove_pickle *p)
{
	put_byte(p, OP_NONE);
	count_item(p);
}

void
cove_pickle_bool(struct cove_pickle *p, int v)
{
	put_byte(p, v ? OP_NEWTRUE : OP_NEWFALSE);
	count_item(p);
}

void
cove_pickle_int(struct cove_pickle *p, int64_t v)
{
	if (v >= 0 && v < 256) {
		put_byte(p, OP_BININT1);
		put_le(p, (uint64_t)v, 1);
	} else if (v >= 0 && v < 65536) {
		put_byte(p, OP_BININT2);
		put_le(p, (uint64_t)v, 2);
	} else if (v >= INT32_MIN && v <= INT32_MAX) {
		put_byte(p, OP_BININT);
		put_le(p, (uint64_t)(uint32_t)(int32_t)v, 4);
	} else {
		/* LONG1: n bytes of two's complement, little-endian. */
		put_byte(p, OP_LONG1);
		put_byte(p, 8);
		put_le(p, (uint64_t)v, 8);
	}
	count_item(p);
}

static void
put_sized(struct cove_pickle *p, uint8_t op1, uint8_t op4, uint8_t op8, const void *data, size_t n)
{
	if (n < 256) {
		put_byte(p, op1);
		put_le(p, n, 1);
	} else if ((uint64_t)n <= UINT32_MAX) {
		put_byte(p, op4);
		put_le(p, n, 4);
	} else {
		put_byte(p, op8);
		put_le(p, n, 8);
	}
	put(p, data, n);
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or -1 (RFC 3629: no overlongs, surrogates or
 * values above U+10FFFF; a sequence cut short is invalid). NUL is valid: pickles are length-prefixed. */
static int
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	int need;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		need = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
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
	} else {
		return -1;
	}
	if (n < (size_t)need)
		return -1;
	for (int i = 1; i < need; i++) {
		unsigned char b = s[i];
		if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
			return -1;
	}
	return need;
}

void
cove_pickle_strn(struct cove_pickle *p, const char *s, size_t len)
{
	const unsigned char *in = (const unsigned char *)s;
	size_t valid = 0;
	while (valid < len) {
		int n = utf8_seq(in + valid, len - valid);
		if (n < 0)
			break;
		valid += (size_t)n;
	}
	if (valid == len) {
		put_sized(p, OP_SHORT_BINUNICODE, OP_BINUNICODE, OP_BINUNICODE8, s, len);
	} else {
		/* Each byte that starts no valid sequence becomes U+FFFD. */
		cleanup_free char *out = xmalloc(len * 3);
		size_t o = 0;
		for (size_t i = 0; i < len;) {
			int n = utf8_seq(in + i, len - i);
			if (n > 0) {
				memcpy(out + o, in + i, (size_t)n);
				o += (size_t)n;
				i += (size_t)n;
			} else {
				memcpy(out + o, "\xEF\xBF\xBD", 3);
				o += 3;
				i++;
			}
		}
		put_sized(p, OP_SHORT_BINUNICODE, OP_BINUNICODE, OP_BINUNICODE8, out, o);
	}
	count_item(p);
}

void
cove_pickle_str(struct cove_pickle *p, const char *s)
{
	cove_pickle_strn(p, s, strlen(s));
}

void
cove_pickle_bytes(struct cove_pickle *p, const void *data, size_t len)
{
	put_sized(p, OP_SHORT_BINBYTES, OP_BINBYTES, OP_BINBYTES8, data, len);
	count_item(p);
}

void
cove_pickle_begin(struct cove_pickle *p, enum cove_pickle_kind kind)
{
	if (p->depth + 1 >= COVE_PICKLE_MAX_DEPTH)
		misuse("containers nested too deeply");
	count_item(p);
	switch (kind) {
	case COVE_PICKLE_TUPLE: break;
	case COVE_PICKLE_LIST: put_byte(p, OP_EMPTY_LIST); break;
	case COVE_PICKLE_DICT: put_byte(p, OP_EMPTY_DICT); break;
	case COVE_PICKLE_CALL: misuse("begin of a call without its callable (cove_pickle_begin_call)"); break;
	}
	put_byte(p, OP_MARK);
	p->depth++;
	p->kinds[p->depth] = kind;
	p->items[p->depth] = 0;
}

void
cove_pickle_begin_call(struct cove_pickle *p, const char *module, const char *qualname)
{
	if (p->depth + 1 >= COVE_PICKLE_MAX_DEPTH)
		misuse("containers nested too deeply");
	count_item(p);
	/* STACK_GLOBAL pops the module and the name, pushed as strings; the arguments become a tuple; REDUCE. */
	put_sized(p, OP_SHORT_BINUNICODE, OP_BINUNICODE, OP_BINUNICODE8, module, strlen(module));
	put_sized(p, OP_SHORT_BINUNICODE, OP_BINUNICODE, OP_BINUNICODE8, qualname, strlen(qualname));
	put_byte(p, OP_STACK_GLOBAL);
	put_byte(p, OP_MARK);
	p->depth++;
	p->kinds[p->depth] = COVE_PICKLE_CALL;
	p->items[p->depth] = 0;
}

void
cove_pickle_end(struct cove_pickle *p)
{
	if (p->depth == 0)
		misuse("end without begin");
	switch (p->kinds[p->depth]) {
	case COVE_PICKLE_TUPLE: put_byte(p, OP_TUPLE); break;
	case COVE_PICKLE_LIST: put_byte(p, OP_APPENDS); break;
	case COVE_PICKLE_DICT:
		if (p->items[p->depth] % 2)
			misuse("a dict with a key but no value");
		put_byte(p, OP_SETITEMS);
		break;
	case COVE_PICKLE_CALL:
		put_byte(p, OP_TUPLE);
		put_byte(p, OP_REDUCE);
		break;
	}
	p->depth--;
}

uint8_t *
cove_pickle_finish(struct cove_pickle *p, size_t *len)
{
	if (p->depth != 0 || p->items[0] != 1)
		misuse("finish with containers open or without exactly one value");
	put_byte(p, OP_STOP);
	uint8_t *out = p->buf;
	*len = p->len;
	memset(p, 0, sizeof(*p));
	return out;
}

void
cove_pickle_free(struct cove_pickle *p)
{
	free(p->buf);
	memset(p, 0, sizeof(*p));
}
