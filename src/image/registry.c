/* Registry client (see registry.h): libcurl's easy interface, one handle per pull (so connections are reused
 * between the manifest, the config and the layers), blocking. */
#include "image/registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "image/reference.h"
#include "image/unpack.h"
#include "util/alloc.h"
#include "util/curl.h"
#include "util/fsutil.h"
#include "util/hash.h"
#include "util/json.h"

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

#define MANIFEST_MAX (4u << 20)    /* bytes: a manifest or index */
#define CONFIG_MAX (16u << 20)     /* bytes: a config blob */
#define ERROR_BODY_MAX (16u << 10) /* bytes kept of an error answer */
#define INDEX_DEPTH_MAX 3          /* an index may point at an index this many times */
#define PROGRESS_EVERY_S 5.0
#define CONNECT_TIMEOUT_S 30L
#define STALL_TIME_S 120L /* a transfer slower than 1 byte/s for this long is given up */

#if defined(__x86_64__)
#define HOST_ARCH "amd64"
#elif defined(__aarch64__)
#define HOST_ARCH "arm64"
#elif defined(__i386__)
#define HOST_ARCH "386"
#elif defined(__arm__)
#define HOST_ARCH "arm"
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
#define HOST_ARCH "ppc64le"
#elif defined(__s390x__)
#define HOST_ARCH "s390x"
#elif defined(__riscv) && __riscv_xlen == 64
#define HOST_ARCH "riscv64"
#else
#define HOST_ARCH "amd64"
#endif

struct puller {
	const struct cove_registry_opts *opts;
	const char *ref_text; /* as the caller wrote it */
	struct cove_image_ref ref;
	char *base;  /* "https://registry-1.docker.io", or the mirror; no trailing slash */
	char *where; /* the registry as messages name it: "docker.io", "127.0.0.1:5000", "registry mirror URL" */
	char *host;  /* the host contacted, for "cannot reach" */
	char *auth;  /* "Authorization: ..." header, once the registry asked for one */
	CURL *curl;
	char curl_err[CURL_ERROR_SIZE];
	cove_registry_log_fn log;
	void *log_arg;
};

/* One HTTP exchange's answer. A 2xx body goes to fd (hashed as it arrives) when fd >= 0, else to body; any
 * other answer's body goes to body, cut at ERROR_BODY_MAX. */
struct response {
	struct puller *p;
	long status;
	char *content_type;
	char *www_auth;
	char *body;
	size_t len, max;
	int overflow; /* a 2xx body to memory passed max */
	int fd;
	struct cove_sha256_ctx *sha;
	uint64_t got, expect; /* expect: the size the manifest gives (0: unknown) */
	int too_long;         /* a 2xx body to fd passed expect */
	int write_errno;
	const char *progress; /* short name for progress lines, or NULL */
	double last_report;
};

static void
say(struct puller *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(struct puller *p, const char *fmt, ...)
{
	if (p->log == NULL)
		return;
	va_list ap;
	va_start(ap, fmt);
	cleanup_free char *line = xvasprintf(fmt, ap);
	va_end(ap);
	p->log(p->log_arg, line);
}

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
human_size(uint64_t n, char out[32])
{
	if (n < 1024)
		snprintf(out, 32, "%llu B", (unsigned long long)n);
	else if (n < (1u << 20))
		snprintf(out, 32, "%.1f KiB", (double)n / 1024);
	else if (n < (1u << 30))
		snprintf(out, 32, "%.1f MiB", (double)n / (1 << 20));
	else
		snprintf(out, 32, "%.2f GiB", (double)n / (1 << 30));
}

/* "sha256:0123456789ab": a digest shortened for progress lines. */
static void
short_digest(const char *digest, char out[24])
{
	snprintf(out, 24, "%.19s", digest);
}

static void
response_reset_headers(struct response *r)
{
	free(r->content_type);
	free(r->www_auth);
	r->content_type = NULL;
	r->www_auth = NULL;
}

static void
response_free(struct response *r)
{
	response_reset_headers(r);
	free(r->body);
	r->body = NULL;
	if (r->sha) {
		uint8_t discard[32];
		cove_sha256_final(r->sha, discard);
		r->sha = NULL;
	}
}

static char *
trimmed(const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	return xstrndup(s, n);
}

static size_t
on_header(char *buf, size_t size, size_t nitems, void *arg)
{
	struct response *r = arg;
	size_t n = size * nitems;
	if (n > 5 && memcmp(buf, "HTTP/", 5) == 0) {
		/* A new answer (after a redirect, or a 100 Continue): forget the last one's headers. */
		response_reset_headers(r);
		const char *sp = memchr(buf, ' ', n);
		r->status = 0;
		if (sp)
			for (const char *q = sp + 1; q < buf + n && *q >= '0' && *q <= '9'; q++)
				r->status = r->status * 10 + (*q - '0');
		return n;
	}
	const char *colon = memchr(buf, ':', n);
	if (colon == NULL)
		return n;
	size_t name_len = (size_t)(colon - buf);
	const char *value = colon + 1;
	size_t value_len = n - name_len - 1;
	if (name_len == 12 && strncasecmp(buf, "content-type", 12) == 0 && r->content_type == NULL)
		r->content_type = trimmed(value, value_len);
	else if (name_len == 16 && strncasecmp(buf, "www-authenticate", 16) == 0 && r->www_auth == NULL)
		r->www_auth = trimmed(value, value_len);
	return n;
}

static size_t
on_body(char *buf, size_t size, size_t nitems, void *arg)
{
	struct response *r = arg;
	size_t n = size * nitems;
	int ok = r->status >= 200 && r->status < 300;
	if (ok && r->fd >= 0) {
		if (r->expect && r->got + n > r->expect) {
			r->too_long = 1;
			return 0;
		}
		for (size_t off = 0; off < n;) {
			ssize_t w = write(r->fd, buf + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				r->write_errno = errno;
				return 0;
			}
			off += (size_t)w;
		}
		cove_sha256_update(r->sha, buf, n);
		r->got += n;
		if (r->progress && r->expect) {
			double t = now_s();
			if (t - r->last_report >= PROGRESS_EVERY_S) {
				r->last_report = t;
				char got[32], total[32];
				human_size(r->got, got);
				human_size(r->expect, total);
				say(r->p, "layer %s: %s of %s", r->progress, got, total);
			}
		}
		return n;
	}
	size_t max = ok ? r->max : ERROR_BODY_MAX;
	if (r->len + n > max) {
		if (ok) {
			r->overflow = 1;
			return 0;
		}
		n = max - r->len; /* keep the start of an error answer, drop the rest */
		if (n == 0)
			return size * nitems;
	}
	r->body = xrealloc(r->body, r->len + n + 1);
	memcpy(r->body + r->len, buf, n);
	r->len += n;
	r->body[r->len] = '\0';
	return size * nitems;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* How to make an image that cannot be reached available: depends on where it lives. */
static const char *
reach_hint(struct puller *p)
{
	if (p->ref.docker_hub && p->opts->mirror)
		return "check that the registry mirror runs and this machine can reach it, or push the image to a "
		       "registry this machine can reach and use that reference";
	if (p->ref.docker_hub)
		return "on a machine without access to Docker Hub, use a registry mirror that has the image "
		       "(--registry-mirror URL), or push the image to a registry this machine can reach (e.g. `skopeo "
		       "copy docker://IMAGE docker://127.0.0.1:5000/NAME`) and use that reference";
	return "check that the registry runs and this machine can reach it, or push the image to a registry this "
	       "machine can reach (e.g. `skopeo copy docker://IMAGE docker://127.0.0.1:5000/NAME`) and use that "
	       "reference";
}

/* GET url (served by host, for messages). 0 with r->status set (any status), or -1 + *err when no answer came
 * (or the body went wrong). */
static int
http_get(struct puller *p, const char *host, const char *url, const char *accept, const char *auth,
	 struct response *r, struct cove_error **err)
{
	CURL *c = p->curl;
	curl_easy_reset(c);
	p->curl_err[0] = '\0';
	struct curl_slist *headers = NULL;
	if (accept)
		headers = curl_slist_append(headers, accept);
	if (auth)
		headers = curl_slist_append(headers, auth);
	cove_curl_defaults(c, CONNECT_TIMEOUT_S, STALL_TIME_S, p->curl_err);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	r->p = p;
	r->status = 0;
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(headers);
	if (rc == CURLE_OK)
		return 0;
	if (r->overflow)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s answered more than %zu bytes for %s", p->where,
				      r->max, url);
	if (r->too_long)
		return cove_error_set(err, COVE_DATA_LOSS, "%s sent more than the %llu bytes the manifest gives for %s",
				      p->where, (unsigned long long)r->expect, url);
	if (r->write_errno)
		return cove_error_set_errno(err, r->write_errno, "write what %s sent for %s", p->where, url);
	const char *why = p->curl_err[0] ? p->curl_err : curl_easy_strerror(rc);
	long answered = 0; /* the last answer's status (a proxy's CONNECT answer does not count) */
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &answered);
	if (answered == 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "cannot reach registry %s for image %s: %s; %s",
				      host, p->ref_text, why, reach_hint(p));
	return cove_error_set(err, COVE_UNAVAILABLE, "download of %s from %s broke off: %s", url, p->where, why);
}

/* The registry's own words from an error answer ({"errors": [{"code": ..., "message": ...}]}), or NULL. */
static char *
registry_error_text(const struct response *r)
{
	if (r->body == NULL)
		return NULL;
	struct json_doc *doc = json_parse(r->body, r->len, NULL, 0);
	if (doc == NULL)
		return NULL;
	char *text = NULL;
	const struct json_value *errors = json_get(json_root(doc), "errors");
	if (errors && errors->type == JSON_ARRAY && errors->n > 0 && errors->items[0]->type == JSON_OBJECT) {
		const struct json_value *code = json_get(errors->items[0], "code");
		const struct json_value *msg = json_get(errors->items[0], "message");
		const char *cs = code && code->type == JSON_STRING ? code->string : NULL;
		const char *ms = msg && msg->type == JSON_STRING ? msg->string : NULL;
		if (cs && ms)
			text = xasprintf("%.100s: %.300s", cs, ms);
		else if (cs || ms)
			text = xasprintf("%.300s", cs ? cs : ms);
	}
	json_free(doc);
	return text;
}

/* An answer that is not 2xx, as an error. what: "image" for manifests, else what was fetched. */
static int
status_error(struct puller *p, const struct response *r, const char *what, struct cove_error **err)
{
	cleanup_free char *text = registry_error_text(r);
	cleanup_free char *detail = text ? xasprintf(" (HTTP %ld: %s)", r->status, text) : xasprintf(" (HTTP %ld)", r->status);
	switch (r->status) {
	case 401:
	case 403:
		return cove_error_set(err, COVE_PERMISSION_DENIED,
				      "pull access to image %s denied by %s%s: the image does not exist there, or it needs "
				      "credentials that were not given or were refused",
				      p->ref_text, p->where, detail);
	case 404:
		if (what == NULL)
			return cove_error_set(err, COVE_NOT_FOUND, "image %s not found in %s%s", p->ref_text, p->where,
					      detail);
		return cove_error_set(err, COVE_NOT_FOUND, "%s of image %s not found in %s%s", what, p->ref_text,
				      p->where, detail);
	case 429:
		return cove_error_set(err, COVE_UNAVAILABLE,
				      "%s limits how fast pulls may go%s: try again later, or use a registry mirror", p->where,
				      detail);
	default:
		if (r->status >= 500)
			return cove_error_set(err, COVE_UNAVAILABLE, "%s failed to serve %s of image %s%s", p->where,
					      what ? what : "the manifest", p->ref_text, detail);
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "%s refused to serve %s of image %s%s", p->where,
				      what ? what : "the manifest", p->ref_text, detail);
	}
}

static char *
base64(const char *s)
{
	size_t n = strlen(s);
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	return out;
}

static char *
basic_auth_header(const struct cove_registry_opts *o)
{
	cleanup_free char *pair = xasprintf("%s:%s", o->username, o->password ? o->password : "");
	cleanup_free char *b = base64(pair);
	return xasprintf("Authorization: Basic %s", b);
}

int
cove_auth_challenge_parse(const char *header, struct cove_auth_challenge *out)
{
	memset(out, 0, sizeof(*out));
	const char *s = header;
	while (*s == ' ' || *s == '\t')
		s++;
	const char *scheme = s;
	while (*s && *s != ' ' && *s != '\t' && *s != ',')
		s++;
	if (s == scheme)
		return -1;
	out->scheme = xstrndup(scheme, (size_t)(s - scheme));
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		if (*s == '\0')
			return 0;
		const char *key = s;
		while (*s && *s != '=' && *s != ',' && *s != ' ')
			s++;
		size_t key_len = (size_t)(s - key);
		while (*s == ' ')
			s++;
		if (*s != '=') {
			/* A token68 or the next challenge's scheme: this challenge is done. */
			return 0;
		}
		s++;
		while (*s == ' ')
			s++;
		char *value;
		if (*s == '"') {
			s++;
			size_t cap = strlen(s) + 1, n = 0;
			value = xmalloc(cap);
			while (*s && *s != '"') {
				if (*s == '\\' && s[1])
					s++;
				value[n++] = *s++;
			}
			value[n] = '\0';
			if (*s != '"') {
				free(value);
				cove_auth_challenge_free(out);
				return -1;
			}
			s++;
		} else {
			const char *v = s;
			while (*s && *s != ',' && *s != ' ')
				s++;
			value = xstrndup(v, (size_t)(s - v));
		}
		char **slot = NULL;
		if (key_len == 5 && strncasecmp(key, "realm", 5) == 0)
			slot = &out->realm;
		else if (key_len == 7 && strncasecmp(key, "service", 7) == 0)
			slot = &out->service;
		else if (key_len == 5 && strncasecmp(key, "scope", 5) == 0)
			slot = &out->scope;
		if (slot && *slot == NULL)
			*slot = value;
		else
			free(value);
	}
}

void
cove_auth_challenge_free(struct cove_auth_challenge *c)
{
	if (c == NULL)
		return;
	free(c->scheme);
	free(c->realm);
	free(c->service);
	free(c->scope);
	memset(c, 0, sizeof(*c));
}

static char *
escape(CURL *c, const char *s)
{
	char *e = curl_easy_escape(c, s, 0);
	if (e == NULL)
		abort();
	char *out = xstrdup(e);
	curl_free(e);
	return out;
}

/* The URL's host[:port], for messages. */
static char *
url_host(const char *url)
{
	const char *s = strstr(url, "://");
	s = s ? s + 3 : url;
	return xstrndup(s, strcspn(s, "/"));
}

/* Answer a 401's challenge: fetch a Bearer token, or settle on Basic auth. 0 (p->auth set), or -1 + *err. */
static int
authenticate(struct puller *p, const char *www_auth, struct cove_error **err)
{
	const struct cove_registry_opts *o = p->opts;
	struct cove_auth_challenge ch;
	cleanup_free char *default_scope = NULL, *scope = NULL, *service = NULL, *url = NULL, *basic = NULL;
	cleanup_free char *realm_host = NULL;
	if (www_auth == NULL || cove_auth_challenge_parse(www_auth, &ch) < 0)
		return cove_error_set(err, COVE_PERMISSION_DENIED,
				      "pull access to image %s denied by %s (HTTP 401 without a challenge Cove reads)",
				      p->ref_text, p->where);
	int rv = -1;
	if (strcasecmp(ch.scheme, "Basic") == 0) {
		if (o->username == NULL) {
			cove_error_set(err, COVE_PERMISSION_DENIED,
				       "%s asks for a user name and password to pull image %s, and none were given", p->where,
				       p->ref_text);
			goto out;
		}
		free(p->auth);
		p->auth = basic_auth_header(o);
		rv = 0;
		goto out;
	}
	if (strcasecmp(ch.scheme, "Bearer") != 0 || ch.realm == NULL ||
	    !(strncmp(ch.realm, "https://", 8) == 0 || strncmp(ch.realm, "http://", 7) == 0)) {
		cove_error_set(err, COVE_PERMISSION_DENIED,
			       "pull access to image %s denied by %s (it asks for \"%.200s\" authentication, which Cove "
			       "does not speak)",
			       p->ref_text, p->where, www_auth);
		goto out;
	}
	default_scope = xasprintf("repository:%s:pull", p->ref.repository);
	scope = escape(p->curl, ch.scope ? ch.scope : default_scope);
	service = ch.service ? escape(p->curl, ch.service) : NULL;
	url = xasprintf("%s%s%s%s%sscope=%s", ch.realm, strchr(ch.realm, '?') ? "&" : "?",
					   service ? "service=" : "", service ? service : "", service ? "&" : "", scope);
	basic = o->username ? basic_auth_header(o) : NULL;
	struct response r = {.fd = -1, .max = 1u << 20};
	realm_host = url_host(ch.realm);
	if (http_get(p, realm_host, url, "Accept: application/json", basic, &r, err) < 0) {
		response_free(&r);
		cove_error_wrap(err, "get a token from %.200s", ch.realm);
		goto out;
	}
	if (r.status == 401 || r.status == 403) {
		cleanup_free char *text = registry_error_text(&r);
		cove_error_set(err, COVE_PERMISSION_DENIED, "the token service %.200s of %s refused %s to pull image %s (HTTP %ld%s%s)",
			       ch.realm, p->where, o->username ? "the credentials given" : "anonymous access", p->ref_text,
			       r.status, text ? ": " : "", text ? text : "");
		response_free(&r);
		goto out;
	}
	if (r.status < 200 || r.status >= 300) {
		cove_error_set(err, COVE_UNAVAILABLE, "the token service %.200s of %s answered HTTP %ld for image %s",
			       ch.realm, p->where, r.status, p->ref_text);
		response_free(&r);
		goto out;
	}
	struct json_doc *doc = r.body ? json_parse(r.body, r.len, NULL, 0) : NULL;
	response_free(&r);
	const struct json_value *tok = doc ? json_get(json_root(doc), "token") : NULL;
	if (tok == NULL || tok->type != JSON_STRING || tok->string[0] == '\0')
		tok = doc ? json_get(json_root(doc), "access_token") : NULL;
	if (tok == NULL || tok->type != JSON_STRING || tok->string[0] == '\0' || strpbrk(tok->string, "\r\n")) {
		json_free(doc);
		cove_error_set(err, COVE_UNAVAILABLE, "the token service %.200s of %s answered no token for image %s",
			       ch.realm, p->where, p->ref_text);
		goto out;
	}
	free(p->auth);
	p->auth = xasprintf("Authorization: Bearer %s", tok->string);
	json_free(doc);
	rv = 0;
out:
	cove_auth_challenge_free(&ch);
	return rv;
}

/* GET base + path, authenticating on a 401 (once per request: a token may expire during a long pull). 0 with
 * r->status (any), or -1 + *err. */
static int
registry_get(struct puller *p, const char *path, const char *accept, struct response *r, struct cove_error **err)
{
	cleanup_free char *url = xasprintf("%s%s", p->base, path);
	for (int attempt = 0;; attempt++) {
		response_reset_headers(r);
		free(r->body);
		r->body = NULL;
		r->len = 0;
		if (http_get(p, p->host, url, accept, p->auth, r, err) < 0)
			return -1;
		if (r->status != 401 || attempt > 0)
			return 0;
		cleanup_free char *challenge = r->www_auth ? xstrdup(r->www_auth) : NULL;
		int had_auth = p->auth != NULL;
		if (authenticate(p, challenge, err) < 0)
			return -1;
		/* Basic credentials that were already sent will not do better a second time. */
		if (had_auth && strncmp(p->auth, "Authorization: Basic", 20) == 0)
			return 0;
	}
}

static int
valid_sha256_digest(const char *d)
{
	if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71)
		return 0;
	for (const char *c = d + 7; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return 0;
	return 1;
}

static const char *
jstr(const struct json_value *obj, const char *key)
{
	const struct json_value *v = obj ? json_get(obj, key) : NULL;
	return v && v->type == JSON_STRING ? v->string : NULL;
}

struct manifest {
	char *body;
	size_t len;
	char *media_type; /* one of the MT_* manifest types */
	char *digest;
	struct json_doc *doc;
};

static void
manifest_free(struct manifest *m)
{
	free(m->body);
	free(m->media_type);
	free(m->digest);
	json_free(m->doc);
	memset(m, 0, sizeof(*m));
}

static int
is_index_type(const char *mt)
{
	return strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0;
}

/* Fetch and check the manifest that reference (a tag or a digest) names. */
static int
fetch_manifest(struct puller *p, const char *reference, struct manifest *m, struct cove_error **err)
{
	memset(m, 0, sizeof(*m));
	cleanup_free char *path = xasprintf("/v2/%s/manifests/%s", p->ref.repository, reference);
	struct response r = {.fd = -1, .max = MANIFEST_MAX};
	cleanup_free char *ct = NULL;
	int rv = -1;
	if (registry_get(p, path,
			 "Accept: " MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_DOCKER_MANIFEST, &r,
			 err) < 0)
		goto out;
	if (r.status < 200 || r.status >= 300) {
		status_error(p, &r, NULL, err);
		goto out;
	}
	char hex[65];
	cove_sha256_hex(r.body ? r.body : "", r.len, hex);
	m->digest = xasprintf("sha256:%s", hex);
	if (strncmp(reference, "sha256:", 7) == 0 && strcmp(reference, m->digest) != 0) {
		cove_error_set(err, COVE_DATA_LOSS, "%s answered a manifest whose digest is %s for %s of image %s",
			       p->where, m->digest, reference, p->ref_text);
		goto out;
	}
	char why[96];
	m->doc = r.body ? json_parse(r.body, r.len, why, sizeof(why)) : NULL;
	if (m->doc == NULL || json_root(m->doc)->type != JSON_OBJECT) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "the manifest of image %s in %s is not a JSON object%s%s",
			       p->ref_text, p->where, m->doc ? "" : ": ", m->doc ? "" : (r.body ? why : "it is empty"));
		goto out;
	}
	const struct json_value *root = json_root(m->doc);
	/* The body's mediaType, else the Content-Type, else what the fields say. */
	const char *mt = jstr(root, "mediaType");
	if (mt == NULL && r.content_type) {
		ct = xstrndup(r.content_type, strcspn(r.content_type, "; "));
		mt = ct;
	}
	if (mt == NULL || !(strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_OCI_MANIFEST) == 0 ||
			    strcmp(mt, MT_DOCKER_LIST) == 0 || strcmp(mt, MT_DOCKER_MANIFEST) == 0)) {
		const struct json_value *sv = json_get(root, "schemaVersion");
		if (sv && sv->type == JSON_NUMBER && sv->number == 1) {
			cove_error_set(err, COVE_INVALID_ARGUMENT,
				       "image %s in %s has a schema 1 manifest, which Cove does not read: push it again with "
				       "a current tool (e.g. skopeo copy)",
				       p->ref_text, p->where);
			goto out;
		}
		if (json_get(root, "manifests"))
			mt = MT_OCI_INDEX;
		else if (json_get(root, "layers"))
			mt = MT_OCI_MANIFEST;
		else {
			cove_error_set(err, COVE_INVALID_ARGUMENT,
				       "image %s in %s has a manifest of type %.100s, which is not a container image",
				       p->ref_text, p->where, mt ? mt : "(none)");
			goto out;
		}
	}
	m->media_type = xstrdup(mt);
	m->body = steal_pointer(&r.body);
	m->len = r.len;
	rv = 0;
out:
	response_free(&r);
	if (rv < 0)
		manifest_free(m);
	return rv;
}

/* From an index, the digest of the linux/HOST_ARCH manifest (borrowed from m). */
static int
pick_platform(struct puller *p, const struct manifest *m, const char **digest, struct cove_error **err)
{
	const struct json_value *list = json_get(json_root(m->doc), "manifests");
	if (list == NULL || list->type != JSON_ARRAY)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the index of image %s in %s has no manifests list",
				      p->ref_text, p->where);
	const char *best = NULL, *only_unlabelled = NULL;
	int best_score = 0;
	size_t unlabelled = 0;
	char have[512] = "";
	size_t have_len = 0;
	for (size_t i = 0; i < list->n; i++) {
		const struct json_value *e = list->items[i];
		const char *d = jstr(e, "digest");
		if (e->type != JSON_OBJECT || d == NULL)
			continue;
		const struct json_value *plat = json_get(e, "platform");
		if (plat == NULL || plat->type != JSON_OBJECT) {
			unlabelled++;
			only_unlabelled = d;
			continue;
		}
		const char *os = jstr(plat, "os"), *arch = jstr(plat, "architecture"), *variant = jstr(plat, "variant");
		if (os == NULL || arch == NULL || strcmp(os, "unknown") == 0)
			continue; /* attestations and the like */
		if (have_len < sizeof(have) - 64)
			have_len += (size_t)snprintf(have + have_len, sizeof(have) - have_len, "%s%.20s/%.20s%s%.10s",
						     have_len ? ", " : "", os, arch, variant ? "/" : "", variant ? variant : "");
		if (strcmp(os, "linux") != 0 || strcmp(arch, HOST_ARCH) != 0)
			continue;
		/* On arm64, v8 (or no variant) before later ones; otherwise the first match. */
		int score = variant == NULL || strcmp(variant, "v8") == 0 ? 2 : 1;
		if (score > best_score) {
			best = d;
			best_score = score;
		}
	}
	if (best == NULL && unlabelled == 1 && have_len == 0)
		best = only_unlabelled;
	if (best == NULL)
		return cove_error_set(err, COVE_NOT_FOUND, "image %s not found in %s for linux/" HOST_ARCH " (it has %s)",
				      p->ref_text, p->where, have_len ? have : "no platform Cove reads");
	if (!valid_sha256_digest(best))
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "the index of image %s in %s names a manifest by %.100s, which is not a sha256 digest",
				      p->ref_text, p->where, best);
	*digest = best;
	return 0;
}

/* Fetch a blob into memory (at most max bytes) and check its digest. */
static int
fetch_blob_mem(struct puller *p, const char *digest, uint64_t size, size_t max, const char *what, char **body,
	       size_t *len, struct cove_error **err)
{
	cleanup_free char *path = xasprintf("/v2/%s/blobs/%s", p->ref.repository, digest);
	struct response r = {.fd = -1, .max = max};
	int rv = -1;
	if (registry_get(p, path, NULL, &r, err) < 0)
		goto out;
	if (r.status < 200 || r.status >= 300) {
		status_error(p, &r, what, err);
		goto out;
	}
	char hex[65];
	cove_sha256_hex(r.body ? r.body : "", r.len, hex);
	if (strcmp(hex, digest + 7) != 0 || (size && r.len != size)) {
		cove_error_set(err, COVE_DATA_LOSS, "%s sent %s of image %s with digest sha256:%s and %zu bytes, not %s",
			       p->where, what, p->ref_text, hex, r.len, digest);
		goto out;
	}
	*body = r.body ? steal_pointer(&r.body) : xstrdup("");
	*len = r.len;
	rv = 0;
out:
	response_free(&r);
	return rv;
}

static int
string_array(const struct json_value *v, const char *what, char ***out, size_t *n, struct cove_error **err)
{
	if (v == NULL || v->type == JSON_NULL)
		return 0;
	if (v->type != JSON_ARRAY)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the image config's %s is not a list of strings", what);
	for (size_t i = 0; i < v->n; i++)
		if (v->items[i]->type != JSON_STRING)
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "the image config's %s is not a list of strings",
					      what);
	*out = xcalloc(v->n + 1, sizeof(**out));
	for (size_t i = 0; i < v->n; i++)
		(*out)[i] = xstrdup(v->items[i]->string);
	*n = v->n;
	return 0;
}

static int
optional_string(const struct json_value *obj, const char *key, char **out, struct cove_error **err)
{
	const struct json_value *v = json_get(obj, key);
	if (v == NULL || v->type == JSON_NULL)
		return 0;
	if (v->type != JSON_STRING)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the image config's %s is not a string", key);
	if (v->string[0])
		*out = xstrdup(v->string);
	return 0;
}

int
cove_image_config_parse(const char *json, size_t len, struct cove_image_config *out, struct cove_error **err)
{
	memset(out, 0, sizeof(*out));
	char why[96];
	struct json_doc *doc = json_parse(json, len, why, sizeof(why));
	if (doc == NULL)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the image config is not JSON: %s", why);
	int rv = -1;
	const struct json_value *root = json_root(doc);
	if (root->type != JSON_OBJECT) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "the image config is not a JSON object");
		goto out;
	}
	const struct json_value *c = json_get(root, "config");
	if (c == NULL || c->type == JSON_NULL) {
		rv = 0;
		goto out;
	}
	if (c->type != JSON_OBJECT) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "the image config's config is not an object");
		goto out;
	}
	if (string_array(json_get(c, "Env"), "Env", &out->env, &out->n_env, err) < 0 ||
	    string_array(json_get(c, "Entrypoint"), "Entrypoint", &out->entrypoint, &out->n_entrypoint, err) < 0 ||
	    string_array(json_get(c, "Cmd"), "Cmd", &out->cmd, &out->n_cmd, err) < 0 ||
	    optional_string(c, "WorkingDir", &out->workdir, err) < 0 || optional_string(c, "User", &out->user, err) < 0)
		goto out;
	rv = 0;
out:
	json_free(doc);
	if (rv < 0)
		cove_image_config_free(out);
	return rv;
}

static void
free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
cove_image_config_free(struct cove_image_config *c)
{
	if (c == NULL)
		return;
	free_strings(c->env, c->n_env);
	free_strings(c->entrypoint, c->n_entrypoint);
	free_strings(c->cmd, c->n_cmd);
	free(c->workdir);
	free(c->user);
	memset(c, 0, sizeof(*c));
}

void
cove_pulled_image_free(struct cove_pulled_image *img)
{
	if (img == NULL)
		return;
	free_strings(img->layers, img->n_layers);
	free(img->digest);
	cove_image_config_free(&img->config);
	memset(img, 0, sizeof(*img));
}

static int
is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void
remove_quietly(const char *path)
{
	struct cove_error *e = NULL;
	cove_remove_tree(path, &e);
	cove_error_free(e);
}

/* Make data and directory entries durable before a layer directory appears under its final name. */
static void
sync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
}

/* Download the layer blob (digest, size bytes) into tmp/blob, check it, unpack it into tmp/fs and rename tmp
 * to layers_dir/<hex>. */
static int
pull_layer(struct puller *p, const char *layers_dir, const char *digest, uint64_t size, struct cove_error **err)
{
	const char *hex = digest + 7;
	char shown[24], total[32];
	short_digest(digest, shown);
	human_size(size, total);
	cleanup_free char *tmp = xasprintf("%s/.tmp-XXXXXX", layers_dir);
	if (mkdtemp(tmp) == NULL)
		return cove_error_set_errno(err, errno, "create a temporary directory in %s", layers_dir);
	cleanup_free char *blob = xasprintf("%s/blob", tmp);
	cleanup_free char *fs = xasprintf("%s/fs", tmp);
	cleanup_free char *final = xasprintf("%s/%s", layers_dir, hex);
	cleanup_free char *path = xasprintf("/v2/%s/blobs/%s", p->ref.repository, digest);
	cleanup_free char *what = xasprintf("layer %s", digest);
	struct response r = {.fd = -1, .expect = size, .progress = shown};
	int rv = -1;
	say(p, "pulling layer %s (%s)", shown, size ? total : "size unknown");
	double t0 = now_s();
	r.last_report = t0;
	r.fd = open(blob, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (r.fd < 0) {
		cove_error_set_errno(err, errno, "create %s", blob);
		goto out;
	}
	r.sha = cove_sha256_new();
	if (registry_get(p, path, NULL, &r, err) < 0)
		goto out;
	if (r.status < 200 || r.status >= 300) {
		status_error(p, &r, what, err);
		goto out;
	}
	uint8_t d[32];
	char got_hex[65];
	cove_sha256_final(r.sha, d);
	r.sha = NULL;
	cove_hex(d, 32, got_hex);
	if (strcmp(got_hex, hex) != 0 || (size && r.got != size)) {
		cove_error_set(err, COVE_DATA_LOSS,
			       "%s sent layer %s of image %s with digest sha256:%s and %llu bytes, not the %llu bytes with "
			       "that digest the manifest names",
			       p->where, digest, p->ref_text, got_hex, (unsigned long long)r.got, (unsigned long long)size);
		goto out;
	}
	close(r.fd);
	r.fd = -1;
	if (mkdir(fs, 0755) < 0 || chmod(fs, 0755) < 0 || chmod(tmp, 0755) < 0) {
		cove_error_set_errno(err, errno, "create %s", fs);
		goto out;
	}
	struct cove_unpack_report rep;
	if (cove_unpack_layer(blob, fs, &rep, err) < 0)
		goto out;
	if (rep.devices_left_out)
		say(p, "layer %s: left out %u device node%s, %s%s (a container's /dev comes from Cove)", shown,
		    rep.devices_left_out, rep.devices_left_out == 1 ? "" : "s", rep.first_device,
		    rep.devices_left_out > 1 ? " and others" : "");
	unlink(blob);
	sync_dir(tmp);
	if (rename(tmp, final) < 0) {
		if (errno != EEXIST && errno != ENOTEMPTY) {
			cove_error_set_errno(err, errno, "rename %s to %s", tmp, final);
			goto out;
		}
		say(p, "layer %s: another pull stored it first", shown);
		remove_quietly(tmp);
	} else {
		sync_dir(layers_dir);
	}
	say(p, "layer %s: %s in %.1f s", shown, total, now_s() - t0);
	rv = 0;
out:
	if (r.fd >= 0)
		close(r.fd);
	response_free(&r);
	if (rv < 0) {
		remove_quietly(tmp);
		/* Local trouble and unpacking errors get told which image they are about (the registry's name it already). */
		if (err && *err && strstr((*err)->msg, p->ref_text) == NULL)
			cove_error_wrap(err, "layer %s of image %s", digest, p->ref_text);
	}
	return rv;
}

/* 127.0.0.0/8, written as a dotted quad. */
static int
is_ipv4_loopback(const char *host, size_t n)
{
	unsigned parts[4], k = 0, v = 0, digits = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && host[i] >= '0' && host[i] <= '9' && digits < 3) {
			v = v * 10 + (unsigned)(host[i] - '0');
			digits++;
			continue;
		}
		if ((i < n && host[i] != '.') || digits == 0 || v > 255 || k == 4)
			return 0;
		parts[k++] = v;
		v = digits = 0;
	}
	return k == 4 && parts[0] == 127;
}

/* Plain HTTP for loopback registries and the ones listed as insecure. */
static int
registry_is_insecure(const struct cove_registry_opts *o, const char *registry)
{
	size_t host_len;
	if (registry[0] == '[') {
		const char *close_br = strchr(registry, ']');
		host_len = close_br ? (size_t)(close_br - registry) + 1 : strlen(registry);
	} else {
		host_len = strcspn(registry, ":");
	}
	if ((host_len == 9 && strncmp(registry, "localhost", 9) == 0) ||
	    (host_len == 5 && strncmp(registry, "[::1]", 5) == 0) || is_ipv4_loopback(registry, host_len))
		return 1;
	for (size_t i = 0; i < o->n_insecure; i++) {
		const char *e = o->insecure[i];
		if (strncmp(e, "http://", 7) == 0)
			e += 7;
		else if (strncmp(e, "https://", 8) == 0)
			e += 8;
		size_t n = strlen(e);
		while (n && e[n - 1] == '/')
			n--;
		if ((n == strlen(registry) && strncmp(e, registry, n) == 0) || (n == host_len && strncmp(e, registry, n) == 0))
			return 1;
	}
	return 0;
}


static int
puller_init(struct puller *p, const struct cove_registry_opts *opts, const char *ref, struct cove_error **err)
{
	static const struct cove_registry_opts none = {0};
	p->opts = opts ? opts : &none;
	p->ref_text = ref;
	if (cove_image_ref_parse(ref, &p->ref, err) < 0)
		return -1;
	const char *mirror = p->opts->mirror;
	if (p->ref.docker_hub && mirror && *mirror) {
		if (strncmp(mirror, "http://", 7) != 0 && strncmp(mirror, "https://", 8) != 0)
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "the registry mirror \"%.200s\" is not an http:// or https:// URL", mirror);
		size_t n = strlen(mirror);
		while (n && mirror[n - 1] == '/')
			n--;
		p->base = xstrndup(mirror, n);
		p->where = xasprintf("registry mirror %s", p->base);
		p->host = url_host(p->base);
	} else {
		p->base = xasprintf("%s://%s", registry_is_insecure(p->opts, p->ref.registry) ? "http" : "https",
				    p->ref.registry);
		p->where = xstrdup(p->ref.docker_hub ? "docker.io" : p->ref.registry);
		p->host = xstrdup(p->ref.registry);
	}
	pthread_once(&curl_once, curl_init_once);
	p->curl = curl_easy_init();
	if (p->curl == NULL)
		return cove_error_set(err, COVE_INTERNAL, "pull image %s: cannot start libcurl", ref);
	return 0;
}

static void
puller_free(struct puller *p)
{
	cove_image_ref_free(&p->ref);
	free(p->base);
	free(p->where);
	free(p->host);
	free(p->auth);
	if (p->curl)
		curl_easy_cleanup(p->curl);
}

/* The config and layer descriptors of an image manifest, checked. */
static int
manifest_layers(struct puller *p, const struct manifest *m, const struct json_value **layers,
		const char **config_digest, uint64_t *config_size, struct cove_error **err)
{
	const struct json_value *root = json_root(m->doc);
	const struct json_value *config = json_get(root, "config");
	const char *cd = jstr(config, "digest");
	if (config == NULL || config->type != JSON_OBJECT || cd == NULL || !valid_sha256_digest(cd))
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "the manifest of image %s in %s has no config with a sha256 digest", p->ref_text, p->where);
	const char *cmt = jstr(config, "mediaType");
	if (cmt && strcmp(cmt, MT_OCI_CONFIG) != 0 && strcmp(cmt, MT_DOCKER_CONFIG) != 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "image %s in %s is not a container image (its config is %.100s)", p->ref_text, p->where,
				      cmt);
	const struct json_value *cs = json_get(config, "size");
	*config_size = cs && cs->type == JSON_NUMBER && cs->number > 0 ? (uint64_t)cs->number : 0;
	*config_digest = cd;
	const struct json_value *l = json_get(root, "layers");
	if (l == NULL || l->type != JSON_ARRAY)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "the manifest of image %s in %s has no layers list",
				      p->ref_text, p->where);
	for (size_t i = 0; i < l->n; i++) {
		const char *d = jstr(l->items[i], "digest");
		const char *mt = jstr(l->items[i], "mediaType");
		if (d == NULL || !valid_sha256_digest(d))
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "layer %zu of image %s in %s has no sha256 digest", i + 1, p->ref_text, p->where);
		if (mt && strstr(mt, "encrypted"))
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "layer %s of image %s in %s is encrypted (%.100s), which Cove does not read", d,
					      p->ref_text, p->where, mt);
	}
	*layers = l;
	return 0;
}

int
cove_registry_pull(const struct cove_registry_opts *opts, const char *ref, const char *layers_dir,
		   cove_registry_log_fn log_fn, void *arg, struct cove_pulled_image *out, struct cove_error **err)
{
	struct puller p = {.log = log_fn, .log_arg = arg};
	struct manifest m = {0};
	struct cove_pulled_image img = {0};
	cleanup_free char *config = NULL;
	size_t config_len = 0;
	const struct json_value *layers = NULL;
	const char *config_digest = NULL;
	uint64_t config_size = 0;
	int rv = -1;
	memset(out, 0, sizeof(*out));
	if (puller_init(&p, opts, ref, err) < 0)
		goto out;
	if (cove_mkdirs(layers_dir, err) < 0) {
		cove_error_wrap(err, "pull image %s", ref);
		goto out;
	}
	say(&p, "resolving %s in %s", ref, p.where);
	if (fetch_manifest(&p, cove_image_ref_manifest_ref(&p.ref), &m, err) < 0)
		goto out;
	img.digest = xstrdup(m.digest);
	for (int depth = 0; is_index_type(m.media_type); depth++) {
		const char *d = NULL;
		if (depth == INDEX_DEPTH_MAX) {
			cove_error_set(err, COVE_INVALID_ARGUMENT, "image %s in %s nests indexes more than %d deep", ref,
				       p.where, INDEX_DEPTH_MAX);
			goto out;
		}
		if (pick_platform(&p, &m, &d, err) < 0)
			goto out;
		cleanup_free char *digest = xstrdup(d);
		manifest_free(&m);
		if (fetch_manifest(&p, digest, &m, err) < 0)
			goto out;
	}
	if (manifest_layers(&p, &m, &layers, &config_digest, &config_size, err) < 0)
		goto out;
	say(&p, "image %s: manifest %s, %zu layers", ref, m.digest, layers->n);
	if (fetch_blob_mem(&p, config_digest, config_size, CONFIG_MAX, "the config", &config, &config_len, err) < 0 ||
	    cove_image_config_parse(config, config_len, &img.config, err) < 0)
		goto out;
	img.layers = xcalloc(layers->n + 1, sizeof(*img.layers));
	for (size_t i = 0; i < layers->n; i++) {
		const char *d = jstr(layers->items[i], "digest");
		const struct json_value *sz = json_get(layers->items[i], "size");
		uint64_t size = sz && sz->type == JSON_NUMBER && sz->number > 0 ? (uint64_t)sz->number : 0;
		cleanup_free char *dir = xasprintf("%s/%s", layers_dir, d + 7);
		char shown[24];
		short_digest(d, shown);
		if (is_dir(dir))
			say(&p, "layer %s already present", shown);
		else if (pull_layer(&p, layers_dir, d, size, err) < 0)
			goto out;
		img.layers[img.n_layers++] = xstrdup(d + 7);
	}
	say(&p, "pulled %s (%zu layers)", ref, img.n_layers);
	*out = img;
	memset(&img, 0, sizeof(img));
	rv = 0;
out:
	manifest_free(&m);
	cove_pulled_image_free(&img);
	puller_free(&p);
	return rv;
}
