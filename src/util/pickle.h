/* A small writer of Python pickles (protocol 4), for the values a web request's ASGI scope is made of: None,
 * bool, int, str, bytes, and tuples, lists and dicts of them, and for calls of a named callable (an exception
 * Cove raises in the caller: `modal.exception.InputCancellation("...")`). What it writes, `pickle.loads` reads (checked
 * by tests/unit/test_pickle.c against the real interpreter).
 *
 *   struct cove_pickle p;
 *   cove_pickle_init(&p);
 *   cove_pickle_begin(&p, COVE_PICKLE_TUPLE);   // ((scope,), {})
 *   cove_pickle_begin(&p, COVE_PICKLE_TUPLE);
 *   cove_pickle_begin(&p, COVE_PICKLE_DICT);
 *   cove_pickle_str(&p, "type"); cove_pickle_str(&p, "http");
 *   ...
 *   cove_pickle_end(&p); cove_pickle_end(&p);
 *   cove_pickle_begin(&p, COVE_PICKLE_DICT); cove_pickle_end(&p);
 *   cove_pickle_end(&p);
 *   uint8_t *bytes = cove_pickle_finish(&p, &len);   // caller frees
 *
 * Inside a dict, values alternate key, value. Strings are written as valid UTF-8: invalid bytes become U+FFFD,
 * so that the result always loads. Misuse (end without begin, an odd number of dict items, finishing with
 * containers open) is a programming error and aborts. Allocation aborts on failure, as everywhere. */
#ifndef COVE_UTIL_PICKLE_H
#define COVE_UTIL_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#define COVE_PICKLE_MAX_DEPTH 32

enum cove_pickle_kind { COVE_PICKLE_TUPLE, COVE_PICKLE_LIST, COVE_PICKLE_DICT, COVE_PICKLE_CALL };

struct cove_pickle {
	uint8_t *buf;
	size_t len, cap;
	int depth;
	enum cove_pickle_kind kinds[COVE_PICKLE_MAX_DEPTH];
	size_t items[COVE_PICKLE_MAX_DEPTH];
};

void cove_pickle_init(struct cove_pickle *p);
void cove_pickle_none(struct cove_pickle *p);
void cove_pickle_bool(struct cove_pickle *p, int v);
void cove_pickle_int(struct cove_pickle *p, int64_t v);
/* A str from UTF-8 (NUL-terminated, or len bytes). */
void cove_pickle_str(struct cove_pickle *p, const char *s);
void cove_pickle_strn(struct cove_pickle *p, const char *s, size_t len);
void cove_pickle_bytes(struct cove_pickle *p, const void *data, size_t len);
/* Open a container; its items follow until cove_pickle_end. (Not COVE_PICKLE_CALL: use begin_call.) */
void cove_pickle_begin(struct cove_pickle *p, enum cove_pickle_kind kind);
/* A call of module.qualname (found by the reader as `import module; module.qualname`) with the positional
 * arguments that follow until cove_pickle_end: one value. */
void cove_pickle_begin_call(struct cove_pickle *p, const char *module, const char *qualname);
void cove_pickle_end(struct cove_pickle *p);
/* The finished pickle (malloc'd, *len set); p is left empty. */
uint8_t *cove_pickle_finish(struct cove_pickle *p, size_t *len);
/* Drop an unfinished pickle. */
void cove_pickle_free(struct cove_pickle *p);

#endif
