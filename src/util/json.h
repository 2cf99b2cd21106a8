/* A small JSON reader (RFC 8259), and the few writers its users need (the sandbox filesystem helper's commands,
 * registry manifests and image configs).
 * Values live in one arena per parse; strings are NUL-terminated UTF-8 (a string holding U+0000 is refused,
 * so C string functions see all of it). Nesting is limited to JSON_MAX_DEPTH. */
#ifndef COVE_UTIL_JSON_H
#define COVE_UTIL_JSON_H

#include <stddef.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 64

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_value {
	enum json_type type;
	int boolean;
	double number;
	char *string;             /* JSON_STRING */
	struct json_value **items; /* JSON_ARRAY values, JSON_OBJECT values */
	char **keys;              /* JSON_OBJECT keys */
	size_t n;
};

struct json_doc;

/* Parse len bytes. NULL on malformed input, with a short reason in err (if not NULL, err_len > 0). */
struct json_doc *json_parse(const char *text, size_t len, char *err, size_t err_len);
const struct json_value *json_root(const struct json_doc *doc);
void json_free(struct json_doc *doc);
/* The value of key in an object (the last one if repeated), or NULL. */
const struct json_value *json_get(const struct json_value *obj, const char *key);

/* Write s as a JSON string; bytes that are not valid UTF-8 become U+FFFD. */
void json_write_string(FILE *f, const char *s);

#endif
