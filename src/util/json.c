/* JSON reading and writing (see json.h). Self-contained (libc only): the sandbox filesystem helper links only
 * this and fs_command.c. */
#include "util/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Every allocation of a parse, freed together. */
struct json_doc {
	void **blocks;
	size_t n, cap;
	struct json_value *root;
};

struct parser {
	struct json_doc *doc;
	const char *p, *end;
	int depth;
	char *err;
	size_t err_len;
};

static void *
doc_alloc(struct json_doc *doc, size_t size)
{
	if (doc->n == doc->cap) {
		size_t cap = doc->cap ? doc->cap * 2 : 16;
		void **b = realloc(doc->blocks, cap * sizeof(*b));
		if (b == NULL)
			abort();
		doc->blocks = b;
		doc->cap = cap;
	}
	void *m = calloc(1, size ? size : 1);
	if (m == NULL)
		abort();
	doc->blocks[doc->n++] = m;
	return m;
}

static int
fail(struct parser *ps, const char *why)
{
	if (ps->err && ps->err_len) {
		size_t n = strlen(why);
		if (n >= ps->err_len)
			n = ps->err_len - 1;
		memcpy(ps->err, why, n);
		ps->err[n] = '\0';
	}
	return -1;
}

static void
skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int
hex4(const char *s, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t
put_utf8(char *out, unsigned cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is not one. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	size_t len;
	uint32_t cp;
	if ((s[0] & 0xE0) == 0xC0) {
		len = 2;
		cp = s[0] & 0x1F;
	} else if ((s[0] & 0xF0) == 0xE0) {
		len = 3;
		cp = s[0] & 0x0F;
	} else if ((s[0] & 0xF8) == 0xF0) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

static int
parse_string(struct parser *ps, char **out)
{
	/* ps->p is at the opening quote. The decoded string is never longer than its source. */
	const char *s = ps->p + 1;
	const char *q = s;
	while (q < ps->end && *q != '"') {
		if (*q == '\\')
			q++;
		q++;
	}
	if (q >= ps->end)
		return fail(ps, "unterminated string");
	char *buf = doc_alloc(ps->doc, (size_t)(q - s) + 1);
	size_t o = 0;
	const char *p = s;
	while (p < q) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20)
			return fail(ps, "control character in a string");
		if (c != '\\') {
			size_t n = utf8_len((const unsigned char *)p, (size_t)(q - p));
			if (n == 0)
				return fail(ps, "invalid UTF-8 in a string");
			memcpy(buf + o, p, n);
			o += n;
			p += n;
			continue;
		}
		p++;
		switch (*p) {
		case '"': buf[o++] = '"'; break;
		case '\\': buf[o++] = '\\'; break;
		case '/': buf[o++] = '/'; break;
		case 'b': buf[o++] = '\b'; break;
		case 'f': buf[o++] = '\f'; break;
		case 'n': buf[o++] = '\n'; break;
		case 'r': buf[o++] = '\r'; break;
		case 't': buf[o++] = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if (q - p < 5 || hex4(p + 1, &cp) < 0)
				return fail(ps, "bad \\u escape");
			p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (q - p < 7 || p[1] != '\\' || p[2] != 'u' || hex4(p + 3, &lo) < 0 || lo < 0xDC00 ||
				    lo > 0xDFFF)
					return fail(ps, "unpaired surrogate in a \\u escape");
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				p += 6;
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				return fail(ps, "unpaired surrogate in a \\u escape");
			}
			if (cp == 0)
				return fail(ps, "NUL in a string");
			/* A \u escape of up to 12 source bytes never decodes to more than 4. */
			o += put_utf8(buf + o, cp);
			break;
		}
		default:
			return fail(ps, "bad escape in a string");
		}
		p++;
	}
	buf[o] = '\0';
	*out = buf;
	ps->p = q + 1;
	return 0;
}

static int parse_value(struct parser *ps, struct json_value **out);

static int
parse_number(struct parser *ps, double *out)
{
	const char *p = ps->p;
	if (p < ps->end && *p == '-')
		p++;
	if (p >= ps->end || !(*p >= '0' && *p <= '9'))
		return fail(ps, "bad number");
	if (*p == '0')
		p++;
	else
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	if (p < ps->end && *p == '.') {
		p++;
		if (p >= ps->end || !(*p >= '0' && *p <= '9'))
			return fail(ps, "bad number");
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < ps->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= ps->end || !(*p >= '0' && *p <= '9'))
			return fail(ps, "bad number");
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	char tmp[64];
	size_t n = (size_t)(p - ps->p);
	if (n >= sizeof(tmp))
		return fail(ps, "number too long");
	memcpy(tmp, ps->p, n);
	tmp[n] = '\0';
	*out = strtod(tmp, NULL);
	ps->p = p;
	return 0;
}

static int
literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, "unexpected character");
	ps->p += n;
	return 0;
}

/* Grow an array of pointers by one (inside the arena: the old block just stays until the end). */
static void *
grow(struct json_doc *doc, void *old, size_t n, size_t elem)
{
	if (n & (n - 1))
		return old; /* room left: capacities are powers of two */
	void *m = doc_alloc(doc, (n ? n * 2 : 1) * elem);
	if (old)
		memcpy(m, old, n * elem);
	return m;
}

static int
parse_container(struct parser *ps, struct json_value *v, int object)
{
	char close = object ? '}' : ']';
	ps->p++;
	if (++ps->depth > JSON_MAX_DEPTH)
		return fail(ps, "nested too deeply");
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return 0;
	}
	for (;;) {
		char *key = NULL;
		skip_ws(ps);
		if (object) {
			if (ps->p >= ps->end || *ps->p != '"')
				return fail(ps, "expected a key");
			if (parse_string(ps, &key) < 0)
				return -1;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':')
				return fail(ps, "expected ':'");
			ps->p++;
		}
		struct json_value *item;
		if (parse_value(ps, &item) < 0)
			return -1;
		v->items = grow(ps->doc, v->items, v->n, sizeof(*v->items));
		if (object)
			v->keys = grow(ps->doc, v->keys, v->n, sizeof(*v->keys));
		v->items[v->n] = item;
		if (object)
			v->keys[v->n] = key;
		v->n++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			ps->depth--;
			return 0;
		}
		return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

static int
parse_value(struct parser *ps, struct json_value **out)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "unexpected end of input");
	struct json_value *v = doc_alloc(ps->doc, sizeof(*v));
	*out = v;
	switch (*ps->p) {
	case '{':
		v->type = JSON_OBJECT;
		return parse_container(ps, v, 1);
	case '[':
		v->type = JSON_ARRAY;
		return parse_container(ps, v, 0);
	case '"':
		v->type = JSON_STRING;
		return parse_string(ps, &v->string);
	case 't':
		v->type = JSON_BOOL;
		v->boolean = 1;
		return literal(ps, "true");
	case 'f':
		v->type = JSON_BOOL;
		return literal(ps, "false");
	case 'n':
		v->type = JSON_NULL;
		return literal(ps, "null");
	default:
		v->type = JSON_NUMBER;
		return parse_number(ps, &v->number);
	}
}

struct json_doc *
json_parse(const char *text, size_t len, char *err, size_t err_len)
{
	struct json_doc *doc = calloc(1, sizeof(*doc));
	if (doc == NULL)
		abort();
	struct parser ps = {.doc = doc, .p = text, .end = text + len, .err = err, .err_len = err_len};
	if (parse_value(&ps, &doc->root) < 0) {
		json_free(doc);
		return NULL;
	}
	skip_ws(&ps);
	if (ps.p != ps.end) {
		fail(&ps, "trailing characters after the value");
		json_free(doc);
		return NULL;
	}
	return doc;
}

const struct json_value *
json_root(const struct json_doc *doc)
{
	return doc->root;
}

void
json_free(struct json_doc *doc)
{
	if (doc == NULL)
		return;
	for (size_t i = 0; i < doc->n; i++)
		free(doc->blocks[i]);
	free(doc->blocks);
	free(doc);
}

const struct json_value *
json_get(const struct json_value *obj, const char *key)
{
	if (obj == NULL || obj->type != JSON_OBJECT)
		return NULL;
	const struct json_value *found = NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			found = obj->items[i];
	return found;
}

void
json_write_string(FILE *f, const char *s)
{
	fputc('"', f);
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c < 0x20) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			fputc(c, f);
			i++;
		} else {
			size_t len = utf8_len((const unsigned char *)s + i, n - i);
			if (len == 0) {
				fputs("\xEF\xBF\xBD", f);
				i++;
			} else {
				fwrite(s + i, 1, len, f);
				i += len;
			}
		}
	}
	fputc('"', f);
}
