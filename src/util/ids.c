#include "util/ids.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "util/alloc.h"

void
cove_random_base62(char *out, size_t n)
{
	static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	size_t i = 0;
	while (i < n) {
		uint8_t buf[64];
		ssize_t got = getrandom(buf, sizeof(buf), 0);
		if (got <= 0)
			abort();
		for (ssize_t j = 0; j < got && i < n; j++) {
			/* 248 = 4 * 62: reject the tail so every character is equally likely. */
			if (buf[j] < 248)
				out[i++] = alphabet[buf[j] % 62];
		}
	}
}

char *
cove_id_new(const char *prefix)
{
	size_t plen = strlen(prefix);
	char *id = xmalloc(plen + 1 + 22 + 1);
	memcpy(id, prefix, plen);
	id[plen] = '-';
	cove_random_base62(id + plen + 1, 22);
	id[plen + 23] = '\0';
	return id;
}

int
cove_id_valid(const char *s, const char *prefix)
{
	if (s == NULL)
		return 0;
	size_t plen = strlen(prefix);
	if (strncmp(s, prefix, plen) != 0 || s[plen] != '-')
		return 0;
	const char *p = s + plen + 1;
	size_t n = 0;
	for (; *p; p++, n++) {
		char c = *p;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return 0;
	}
	return n >= 1 && n <= 64;
}
