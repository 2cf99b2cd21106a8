/* Image reference parsing (see reference.h). The grammar is distribution/reference's, checked by hand:
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] component ( "/" component )*
 *   domain     := host [ ":" port ]          host := dns-label ( "." dns-label )* | "[" ipv6 "]"
 *   component  := alnum+ ( separator alnum+ )*   alnum := [a-z0-9]   separator := "." | "_" | "__" | "-"+
 *   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest     := "sha256:" [0-9a-f]{64}
 *
 * and a name, normalised ("docker.io/library/python"), is at most 255 characters. */
#include "image/reference.h"

#include <stdio.h>
#include <string.h>

#include "util/alloc.h"

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN 128
#define REF_MAX_LEN 1024
#define QUOTE_MAX 200

/* ref as a C-quoted string for messages: non-printable bytes escaped, long ones cut. */
static char *
quote(const char *ref)
{
	size_t n = strlen(ref);
	char *out = xmalloc(QUOTE_MAX * 4 + 8);
	char *p = out;
	*p++ = '"';
	for (size_t i = 0; i < n && i < QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)ref[i];
		if (c == '"' || c == '\\') {
			*p++ = '\\';
			*p++ = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			p += sprintf(p, "\\x%02x", c);
		} else {
			*p++ = (char)c;
		}
	}
	*p++ = '"';
	if (n > QUOTE_MAX)
		p += sprintf(p, "...");
	*p = '\0';
	return out;
}

static int
fail(struct cove_error **err, const char *ref, const char *why)
{
	cleanup_free char *q = quote(ref);
	return cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid image reference %s: %s", q, why);
}

static int
is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int
is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static int
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One path component, s[0..n): 1 if it matches the grammar. */
static int
valid_component(const char *s, size_t n)
{
	size_t i = 0;
	for (;;) {
		size_t start = i;
		while (i < n && is_lower_alnum(s[i]))
			i++;
		if (i == start)
			return 0;
		if (i == n)
			return 1;
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i++;
			if (i < n && s[i] == '_')
				i++;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return 0;
		}
	}
}

/* The repository path: components separated by single slashes. NULL if valid, else why not. */
static const char *
check_path(const char *s, size_t n)
{
	if (n == 0)
		return "the repository name is empty";
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '/')
			continue;
		if (i == start)
			return "the repository name has an empty path component";
		for (size_t j = start; j < i; j++)
			if (s[j] >= 'A' && s[j] <= 'Z')
				return "the repository name must be lowercase";
		if (!valid_component(s + start, i - start))
			return "a repository name component may only hold [a-z0-9] separated by '.', '_', '__' or '-'";
		start = i + 1;
	}
	return NULL;
}

/* The registry: host[:port] with host a DNS name or a bracketed IPv6 address. NULL if valid, else why not. */
static const char *
check_domain(const char *s, size_t n)
{
	size_t i = 0;
	if (n > 0 && s[0] == '[') {
		i = 1;
		while (i < n && (is_hex(s[i]) || s[i] == ':'))
			i++;
		if (i == 1 || i == n || s[i] != ']')
			return "the registry's IPv6 address must be hex digits and ':' in brackets";
		i++;
	} else {
		for (;;) {
			size_t start = i;
			while (i < n && (is_alnum(s[i]) || s[i] == '-'))
				i++;
			if (i == start || s[start] == '-' || s[i - 1] == '-')
				return "the registry host is not a valid host name";
			if (i < n && s[i] == '.') {
				i++;
				continue;
			}
			break;
		}
	}
	if (i == n)
		return NULL;
	if (s[i] != ':')
		return "the registry host is not a valid host name";
	i++;
	size_t digits = n - i;
	unsigned port = 0;
	if (digits == 0 || digits > 5)
		return "the registry port must be a number from 1 to 65535";
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return "the registry port must be a number from 1 to 65535";
		port = port * 10 + (unsigned)(s[i] - '0');
	}
	if (port == 0 || port > 65535)
		return "the registry port must be a number from 1 to 65535";
	return NULL;
}

static const char *
check_tag(const char *s, size_t n)
{
	if (n == 0)
		return "the tag after ':' is empty";
	if (n > TAG_MAX_LEN)
		return "the tag is longer than 128 characters";
	if (!(is_alnum(s[0]) || s[0] == '_'))
		return "a tag must start with a letter, a digit or '_'";
	for (size_t i = 1; i < n; i++)
		if (!(is_alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return "a tag may only hold letters, digits, '_', '.' and '-'";
	return NULL;
}

static const char *
check_digest(const char *s)
{
	const char *colon = strchr(s, ':');
	if (colon == NULL)
		return "the digest after '@' must look like sha256:<64 hex digits>";
	if ((size_t)(colon - s) != 6 || strncmp(s, "sha256", 6) != 0)
		return "only sha256 digests are supported";
	const char *hex = colon + 1;
	size_t n = strlen(hex);
	if (n != 64)
		return "a sha256 digest has 64 hex digits";
	for (size_t i = 0; i < n; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			return "a sha256 digest has 64 lower-case hex digits";
	return NULL;
}

static int
is_registry_component(const char *s, size_t n)
{
	if (n == 9 && strncmp(s, "localhost", 9) == 0)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '.' || s[i] == ':' || s[i] == '[' || (s[i] >= 'A' && s[i] <= 'Z'))
			return 1;
	return 0;
}

int
cove_image_ref_parse(const char *ref, struct cove_image_ref *out, struct cove_error **err)
{
	memset(out, 0, sizeof(*out));
	size_t len = strlen(ref);
	if (len == 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "invalid image reference \"\": it is empty");
	if (len > REF_MAX_LEN)
		return fail(err, ref, "it is longer than 1024 characters");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)ref[i] <= 0x20 || (unsigned char)ref[i] >= 0x7f)
			return fail(err, ref, "it holds a space, a control character or a non-ASCII byte");

	const char *why = NULL;
	size_t name_end = len;
	const char *digest = NULL;
	const char *at = strchr(ref, '@');
	if (at) {
		digest = at + 1;
		name_end = (size_t)(at - ref);
		if ((why = check_digest(digest)) != NULL)
			return fail(err, ref, why);
	}
	/* A tag is a ':' after the last '/' (a ':' before it belongs to the registry's port). */
	const char *tag = NULL;
	size_t tag_len = 0;
	for (size_t i = name_end; i > 0; i--) {
		char c = ref[i - 1];
		if (c == '/')
			break;
		if (c == ':') {
			tag = ref + i;
			tag_len = name_end - i;
			name_end = i - 1;
			break;
		}
	}
	if (tag && (why = check_tag(tag, tag_len)) != NULL)
		return fail(err, ref, why);
	if (name_end == 0)
		return fail(err, ref, "the repository name is empty");

	const char *slash = memchr(ref, '/', name_end);
	const char *domain = NULL, *path = ref;
	size_t domain_len = 0, path_len = name_end;
	if (slash && is_registry_component(ref, (size_t)(slash - ref))) {
		domain = ref;
		domain_len = (size_t)(slash - ref);
		path = slash + 1;
		path_len = name_end - domain_len - 1;
		if ((why = check_domain(domain, domain_len)) != NULL)
			return fail(err, ref, why);
	}
	if ((why = check_path(path, path_len)) != NULL)
		return fail(err, ref, why);

	int hub = domain == NULL || (domain_len == 9 && strncmp(domain, "docker.io", 9) == 0) ||
		  (domain_len == 15 && strncmp(domain, "index.docker.io", 15) == 0) ||
		  (domain_len == 20 && strncmp(domain, COVE_IMAGE_REF_DOCKER_HUB, 20) == 0);
	if (domain == NULL && path_len == 64) {
		/* Docker refuses these too: they read as image ids. */
		size_t i = 0;
		while (i < 64 && is_hex(path[i]))
			i++;
		if (i == 64)
			return fail(err, ref, "a repository name cannot be 64 hex digits (that is an image id)");
	}
	/* Docker's limit, on the name as it normalises it: "docker.io/library/python". */
	int library = hub && memchr(path, '/', path_len) == NULL;
	if ((hub ? strlen("docker.io") : domain_len) + 1 + (library ? strlen("library/") : 0) + path_len > NAME_MAX_LEN)
		return fail(err, ref, "the name is longer than 255 characters");
	out->docker_hub = hub;
	out->registry = hub ? xstrdup(COVE_IMAGE_REF_DOCKER_HUB) : xstrndup(domain, domain_len);
	if (library)
		out->repository = xasprintf("library/%.*s", (int)path_len, path);
	else
		out->repository = xstrndup(path, path_len);
	if (tag)
		out->tag = xstrndup(tag, tag_len);
	else if (digest == NULL)
		out->tag = xstrdup("latest");
	if (digest)
		out->digest = xstrdup(digest);
	return 0;
}

void
cove_image_ref_free(struct cove_image_ref *r)
{
	if (r == NULL)
		return;
	free(r->registry);
	free(r->repository);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

const char *
cove_image_ref_manifest_ref(const struct cove_image_ref *r)
{
	return r->digest ? r->digest : r->tag;
}
