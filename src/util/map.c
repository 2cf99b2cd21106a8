#include "util/map.h"

#include <stdint.h>
#include <string.h>

#include "util/alloc.h"

static char tombstone_key;
#define TOMBSTONE (&tombstone_key)

static uint64_t
hash_str(const char *s)
{
	/* FNV-1a, then a final mix so linear probing sees well-spread low bits. */
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static struct cove_map_slot *
find(const struct cove_map *m, const char *key)
{
	if (m->cap == 0)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = hash_str(key) & mask;; i = (i + 1) & mask) {
		struct cove_map_slot *s = &m->slots[i];
		if (s->key == NULL)
			return NULL;
		if (s->key != TOMBSTONE && strcmp(s->key, key) == 0)
			return s;
	}
}

static void
grow(struct cove_map *m)
{
	struct cove_map old = *m;
	size_t cap = old.cap ? old.cap * 2 : 16;
	/* Shrinking tombstones away is enough when the table is mostly dead. */
	if (old.cap && old.len * 4 < old.cap)
		cap = old.cap;
	m->slots = xcalloc(cap, sizeof(*m->slots));
	m->cap = cap;
	m->len = 0;
	m->used = 0;
	for (size_t i = 0; i < old.cap; i++) {
		struct cove_map_slot *s = &old.slots[i];
		if (s->key == NULL || s->key == TOMBSTONE)
			continue;
		size_t mask = cap - 1;
		size_t j = hash_str(s->key) & mask;
		while (m->slots[j].key != NULL)
			j = (j + 1) & mask;
		m->slots[j] = *s;
		m->len++;
		m->used++;
	}
	free(old.slots);
}

void *
cove_map_get(const struct cove_map *m, const char *key)
{
	struct cove_map_slot *s = find(m, key);
	return s ? s->value : NULL;
}

void *
cove_map_put(struct cove_map *m, const char *key, void *value)
{
	struct cove_map_slot *s = find(m, key);
	if (s) {
		void *old = s->value;
		s->value = value;
		return old;
	}
	if ((m->used + 1) * 4 >= m->cap * 3)
		grow(m);
	size_t mask = m->cap - 1;
	size_t i = hash_str(key) & mask;
	while (m->slots[i].key != NULL && m->slots[i].key != TOMBSTONE)
		i = (i + 1) & mask;
	if (m->slots[i].key == NULL)
		m->used++;
	m->slots[i].key = xstrdup(key);
	m->slots[i].value = value;
	m->len++;
	return NULL;
}

void *
cove_map_del(struct cove_map *m, const char *key)
{
	struct cove_map_slot *s = find(m, key);
	if (s == NULL)
		return NULL;
	void *old = s->value;
	free(s->key);
	s->key = TOMBSTONE;
	s->value = NULL;
	m->len--;
	return old;
}

void
cove_map_clear(struct cove_map *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].key != NULL && m->slots[i].key != TOMBSTONE)
			free(m->slots[i].key);
	}
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

int
cove_map_next(const struct cove_map *m, size_t *iter, const char **key, void **value)
{
	for (; *iter < m->cap; (*iter)++) {
		struct cove_map_slot *s = &m->slots[*iter];
		if (s->key == NULL || s->key == TOMBSTONE)
			continue;
		if (key)
			*key = s->key;
		if (value)
			*value = s->value;
		(*iter)++;
		return 1;
	}
	return 0;
}
