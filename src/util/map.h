/* A string-keyed hash map (open addressing, linear probing). Keys are copied; values are borrowed. */
#ifndef COVE_UTIL_MAP_H
#define COVE_UTIL_MAP_H

#include <stddef.h>

struct cove_map_slot {
	char *key; /* NULL: empty; TOMBSTONE: deleted */
	void *value;
};

struct cove_map {
	struct cove_map_slot *slots;
	size_t cap;  /* power of two, or 0 */
	size_t len;  /* live entries */
	size_t used; /* live + tombstones */
};

void *cove_map_get(const struct cove_map *m, const char *key);
/* Insert or replace; returns the previous value or NULL. */
void *cove_map_put(struct cove_map *m, const char *key, void *value);
/* Remove; returns the removed value or NULL. */
void *cove_map_del(struct cove_map *m, const char *key);
void cove_map_clear(struct cove_map *m);
/* Iterate: for (size_t i = 0; cove_map_next(m, &i, &k, &v);) ... (don't insert while iterating; deleting the
 * current key is fine). */
int cove_map_next(const struct cove_map *m, size_t *iter, const char **key, void **value);

#endif
