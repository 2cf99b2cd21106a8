/* A tool image's layer made from the tool's PyPI wheel (see wheel.h). */
#include "image/wheel.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/curl.h"
#include "util/fsutil.h"
#include "util/hash.h"
#include "util/json.h"


#define INDEX_MAX (16u << 20)       /* the index page of one project */
#define WHEEL_MAX (512ull << 20)    /* one wheel */
#define SCRIPT_MAX (256ull << 20)   /* one binary in it */
#define CONNECT_TIMEOUT_S 20L
#define STALL_TIME_S 60L
#define INDEX_TIMEOUT_S 120L
#define WHEEL_TIMEOUT_S 900L

static const char *const uv_scripts[] = {"uv", "uvx", NULL};

static const struct {
	const char *prefix; /* "<image>:" */
	const char *image, *project;
	const char *const *scripts;
} tools[] = {
	{"ghcr.io/astral-sh/uv:", "ghcr.io/astral-sh/uv", "uv", uv_scripts},
};

/* "1", "0.8", "0.8.13": digits in dot-separated parts. */
static int
plain_version(const char *v, size_t n)
{
	if (n == 0 || v[0] == '.' || v[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= '0' && v[i] <= '9') || (v[i] == '.' && v[i + 1] != '.')))
			return 0;
	return 1;
}

int
cove_wheel_tool_ref(const char *ref, struct cove_wheel_tool *t)
{
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		size_t pl = strlen(tools[i].prefix);
		if (strncmp(ref, tools[i].prefix, pl) != 0)
			continue;
		const char *tag = ref + pl;
		size_t n = strlen(tag);
		if (n >= sizeof(t->version) || !(strcmp(tag, "latest") == 0 || plain_version(tag, n)))
			return 0;
		t->image = tools[i].image;
		t->project = tools[i].project;
		t->scripts = tools[i].scripts;
		memcpy(t->version, tag, n + 1);
		return 1;
	}
	return 0;
}

int
cove_wheel_version_cmp(const char *a, const char *b)
{
	while (*a || *b) {
		char *ea = (char *)a, *eb = (char *)b;
		unsigned long x = *a ? strtoul(a, &ea, 10) : 0, y = *b ? strtoul(b, &eb, 10) : 0;
		if (x != y)
			return x < y ? -1 : 1;
		a = *ea == '.' ? ea + 1 : ea;
		b = *eb == '.' ? eb + 1 : eb;
	}
	return 0;
}

/* ---- HTTP ---- */

struct sink {
	char *buf; /* into memory, or */
	size_t len, cap;
	int fd; /* into a file (>= 0), hashed */
	struct cove_sha256_ctx *sha;
	unsigned long long got, max;
	int overflow, write_errno;
};

static size_t
on_data(char *data, size_t size, size_t nitems, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nitems;
	if (s->got + n > s->max) {
		s->overflow = 1;
		return 0;
	}
	s->got += n;
	if (s->fd >= 0) {
		cove_sha256_update(s->sha, data, n);
		for (size_t off = 0; off < n;) {
			ssize_t w = write(s->fd, data + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				s->write_errno = errno;
				return 0;
			}
			off += (size_t)w;
		}
		return n;
	}
	if (s->len + n + 1 > s->cap) {
		while (s->len + n + 1 > s->cap)
			s->cap = s->cap ? 2 * s->cap : 65536;
		s->buf = xrealloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

/* GET url into s: 0 with a 2xx answer, else -1 + err naming what. */
/* shown: url as messages may name it (cove_url_redacted). */
static int
http_get(const char *url, const char *shown, const char *accept, struct sink *s, const char *what,
	 struct cove_error **err)
{
	CURL *c = curl_easy_init();
	if (c == NULL)
		return cove_error_set(err, COVE_INTERNAL, "%s: cannot start an HTTP client", what);
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *headers = accept ? curl_slist_append(NULL, accept) : NULL;
	cove_curl_defaults(c, CONNECT_TIMEOUT_S, STALL_TIME_S, errbuf);
	/* A whole transfer's bound too: a trickle that never stalls must not hold a worker (and shutdown) forever. */
	curl_easy_setopt(c, CURLOPT_TIMEOUT, s->fd >= 0 ? WHEEL_TIMEOUT_S : INDEX_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(c);
	if (s->overflow)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s: %s sent more than %llu bytes", what, shown, s->max);
	if (s->write_errno)
		return cove_error_set_errno(err, s->write_errno, "%s: write what %s sent", what, shown);
	/* curl's own message may quote the URL it was given: not shown when that holds credentials. */
	const char *why = errbuf[0] && strcmp(url, shown) == 0 ? errbuf : curl_easy_strerror(rc);
	if (rc != CURLE_OK)
		return cove_error_set(err, status ? COVE_UNAVAILABLE : COVE_FAILED_PRECONDITION, "%s: cannot get %s: %s",
				      what, shown, why);
	if (status < 200 || status >= 300)
		return cove_error_set(err, status == 404 ? COVE_NOT_FOUND : COVE_UNAVAILABLE, "%s: %s answered %ld", what,
				      shown, status);
	return 0;
}

/* ---- the index ---- */

struct pick {
	char version[64];
	char *filename, *url, sha256[65];
	int rank; /* 2: musllinux (static), 1: manylinux */
};

/* "<project>-<version>-...": the version, if the file is a wheel of project. */
static int
wheel_version(const char *filename, const char *project, char *out, size_t cap)
{
	size_t pl = strlen(project), n = strlen(filename);
	if (n < 4 || strcmp(filename + n - 4, ".whl") != 0 || strncmp(filename, project, pl) != 0 || filename[pl] != '-')
		return 0;
	const char *v = filename + pl + 1;
	const char *dash = strchr(v, '-');
	if (dash == NULL || (size_t)(dash - v) >= cap || !plain_version(v, (size_t)(dash - v)))
		return 0;
	memcpy(out, v, (size_t)(dash - v));
	out[dash - v] = '\0';
	return 1;
}

static int
wanted_version(const char *want, const char *v)
{
	if (strcmp(want, "latest") == 0)
		return 1;
	size_t n = strlen(want);
	return strcmp(v, want) == 0 || (strncmp(v, want, n) == 0 && v[n] == '.' && strchr(want, '.') &&
					 strchr(strchr(want, '.') + 1, '.') == NULL);
}

static int
platform_rank(const char *filename, const char *arch)
{
	cleanup_free char *tag = xasprintf("_%s.", arch);
	cleanup_free char *tag2 = xasprintf("_%s-", arch);
	if (strstr(filename, tag) == NULL && strstr(filename, tag2) == NULL)
		return 0;
	if (strstr(filename, "musllinux_"))
		return 2;
	if (strstr(filename, "manylinux"))
		return 1;
	return 0;
}

static int
pick_wheel(const struct cove_wheel_tool *t, const struct json_value *root, const char *arch, struct pick *best)
{
	const struct json_value *files = json_get(root, "files");
	if (files == NULL || files->type != JSON_ARRAY)
		return -1;
	for (size_t i = 0; i < files->n; i++) {
		const struct json_value *f = files->items[i];
		const struct json_value *name = json_get(f, "filename"), *url = json_get(f, "url");
		const struct json_value *hashes = json_get(f, "hashes"), *yanked = json_get(f, "yanked");
		const struct json_value *sha = hashes ? json_get(hashes, "sha256") : NULL;
		if (!name || name->type != JSON_STRING || !url || url->type != JSON_STRING || !sha ||
		    sha->type != JSON_STRING || strlen(sha->string) != 64)
			continue;
		if (yanked && ((yanked->type == JSON_BOOL && yanked->boolean) || yanked->type == JSON_STRING))
			continue;
		char v[64];
		int rank = platform_rank(name->string, arch);
		if (rank == 0 || !wheel_version(name->string, t->project, v, sizeof(v)) || !wanted_version(t->version, v))
			continue;
		int c = best->filename ? cove_wheel_version_cmp(v, best->version) : 1;
		if (c < 0 || (c == 0 && rank <= best->rank))
			continue;
		free(best->filename);
		free(best->url);
		snprintf(best->version, sizeof(best->version), "%s", v);
		best->filename = xstrdup(name->string);
		best->url = xstrdup(url->string);
		for (int k = 0; k < 65; k++)
			best->sha256[k] = (char)(sha->string[k] >= 'A' && sha->string[k] <= 'F' ? sha->string[k] + 32
												  : sha->string[k]);
		best->rank = rank;
	}
	return 0;
}

/* A file's URL as the index gives it, made absolute against the page it is on. */
static char *
absolute_url(const char *page, const char *url)
{
	CURLU *u = curl_url();
	char *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, page, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) == CURLUE_OK)
		curl_url_get(u, CURLUPART_URL, &out, 0);
	char *r = out ? xstrdup(out) : NULL;
	curl_free(out);
	curl_url_cleanup(u);
	return r;
}

/* ---- the layer ---- */

/* The wheel's scripts (<name>-<version>.data/scripts/<script>) into fs as /<script>, mode 0755. Nothing else
 * of the wheel is written, so its paths never matter. */
static int
extract_scripts(const struct cove_wheel_tool *t, const char *wheel, const char *fs, struct cove_error **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_zip(a);
	int rv = -1;
	unsigned found = 0;
	cleanup_close int dir = -1;
	if (archive_read_open_filename(a, wheel, 65536) != ARCHIVE_OK) {
		cove_error_set(err, COVE_DATA_LOSS, "read %s: %s", wheel, archive_error_string(a));
		goto out;
	}
	dir = open(fs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0) {
		cove_error_set_errno(err, errno, "open %s", fs);
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *path = archive_entry_pathname(e);
		const char *slash = path ? strstr(path, ".data/scripts/") : NULL;
		if (slash == NULL || strchr(path, '/') < slash)
			continue;
		const char *name = slash + strlen(".data/scripts/");
		int k = -1;
		for (int i = 0; t->scripts[i]; i++)
			if (strcmp(name, t->scripts[i]) == 0)
				k = i;
		if (k < 0 || (found & (1u << k)) || archive_entry_filetype(e) != AE_IFREG)
			continue;
		if (archive_entry_size(e) > (la_int64_t)SCRIPT_MAX) {
			cove_error_set(err, COVE_INVALID_ARGUMENT, "%s: %s is larger than %llu bytes", wheel, path, SCRIPT_MAX);
			goto out;
		}
		cleanup_close int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
		if (fd < 0 || fchmod(fd, 0755) < 0) {
			cove_error_set_errno(err, errno, "create %s/%s", fs, name);
			goto out;
		}
		if (archive_read_data_into_fd(a, fd) != ARCHIVE_OK) {
			cove_error_set(err, COVE_DATA_LOSS, "%s: %s: %s", wheel, path, archive_error_string(a));
			goto out;
		}
		if (fsync(fd) < 0) {
			cove_error_set_errno(err, errno, "write %s/%s", fs, name);
			goto out;
		}
		found |= 1u << k;
	}
	if (r != ARCHIVE_EOF) {
		cove_error_set(err, COVE_DATA_LOSS, "read %s: %s", wheel, archive_error_string(a));
		goto out;
	}
	if (!(found & 1u)) {
		cove_error_set(err, COVE_DATA_LOSS, "the wheel %s has no %s script", wheel, t->scripts[0]);
		goto out;
	}
	rv = 0;
out:
	archive_read_free(a);
	return rv;
}

static const char *
machine_arch(void)
{
	struct utsname u;
	if (uname(&u) < 0)
		return NULL;
	if (strcmp(u.machine, "x86_64") == 0)
		return "x86_64";
	if (strcmp(u.machine, "aarch64") == 0 || strcmp(u.machine, "arm64") == 0)
		return "aarch64";
	return NULL;
}

int
cove_wheel_tool_layer(const struct cove_wheel_tool *t, const char *index_url, const char *layers_dir, char **hex,
		      char **note, struct cove_error **err)
{
	const char *arch = machine_arch();
	if (arch == NULL)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "%s:%s: Cove makes it from the %s wheel only on x86_64 and aarch64 machines", t->image,
				      t->version, t->project);
	size_t il = strlen(index_url);
	while (il > 0 && index_url[il - 1] == '/')
		il--;
	cleanup_free char *page = xasprintf("%.*s/%s/", (int)il, index_url, t->project);
	cleanup_free char *shown_page = cove_url_redacted(page);
	cleanup_free char *index = xstrndup(index_url, il);
	cleanup_free char *shown_index = cove_url_redacted(index);
	cleanup_free char *what = xasprintf("%s:%s from the %s wheel", t->image, t->version, t->project);
	struct sink idx = {.fd = -1, .max = INDEX_MAX};
	if (http_get(page, shown_page, "Accept: application/vnd.pypi.simple.v1+json", &idx, what, err) < 0) {
		free(idx.buf);
		return cove_error_wrap(err, "%s is out of reach here and so is the package index (set PIP_INDEX_URL for "
					    "cove serve to use another)",
				       t->image);
	}
	char why[128] = "";
	struct json_doc *doc = json_parse(idx.buf ? idx.buf : "", idx.len, why, sizeof(why));
	free(idx.buf);
	if (doc == NULL)
		return cove_error_set(err, COVE_DATA_LOSS, "%s: %s is not the JSON simple API (PEP 691): %s", what, shown_page,
				      why);
	struct pick best = {0};
	int bad = pick_wheel(t, json_root(doc), arch, &best);
	json_free(doc);
	if (bad < 0 || best.filename == NULL) {
		free(best.filename);
		free(best.url);
		return cove_error_set(err, COVE_NOT_FOUND, "%s: %s lists no %s wheel for Linux %s%s%s", what, shown_page,
				      t->project, arch, strcmp(t->version, "latest") ? " of version " : "",
				      strcmp(t->version, "latest") ? t->version : "");
	}
	cleanup_free char *filename = best.filename;
	cleanup_free char *url = absolute_url(page, best.url);
	free(best.url);
	cleanup_free char *shown_url = url ? cove_url_redacted(url) : NULL;
	cleanup_free char *key = xasprintf("cove-wheel-tool:%s", best.sha256);
	char layer[65];
	cove_sha256_hex(key, strlen(key), layer);
	cleanup_free char *final = xasprintf("%s/%s", layers_dir, layer);
	*note = xasprintf("%s %s: from the wheel %s (sha256 %.12s) on %s, the same binaries as %s:%s", t->project,
			  best.version, filename, best.sha256, shown_index, t->image, t->version);
	struct stat st;
	if (stat(final, &st) == 0) {
		*hex = xstrdup(layer);
		return 0;
	}
	if (url == NULL) {
		free(*note);
		*note = NULL;
		return cove_error_set(err, COVE_DATA_LOSS, "%s: %s gives no usable URL for %s", what, shown_page, filename);
	}
	cleanup_free char *tmp = xasprintf("%s/.tmp-XXXXXX", layers_dir);
	if (mkdtemp(tmp) == NULL) {
		free(*note);
		*note = NULL;
		return cove_error_set_errno(err, errno, "create a temporary directory in %s", layers_dir);
	}
	cleanup_free char *wheel = xasprintf("%s/wheel.whl", tmp);
	cleanup_free char *fs = xasprintf("%s/fs", tmp);
	int rv = -1;
	struct sink w = {.max = WHEEL_MAX, .sha = cove_sha256_new()};
	w.fd = open(wheel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w.fd < 0) {
		cove_error_set_errno(err, errno, "create %s", wheel);
		goto out;
	}
	if (http_get(url, shown_url, NULL, &w, what, err) < 0)
		goto out;
	uint8_t d[32];
	char got[65];
	cove_sha256_final(w.sha, d);
	w.sha = NULL;
	cove_hex(d, 32, got);
	if (strcmp(got, best.sha256) != 0) {
		cove_error_set(err, COVE_DATA_LOSS, "%s: %s has sha256 %s, not the %s the index gives", what, shown_url,
			       got, best.sha256);
		goto out;
	}
	if (mkdir(fs, 0755) < 0 || chmod(fs, 0755) < 0 || chmod(tmp, 0755) < 0) {
		cove_error_set_errno(err, errno, "create %s", fs);
		goto out;
	}
	if (extract_scripts(t, wheel, fs, err) < 0)
		goto out;
	unlink(wheel);
	if (rename(tmp, final) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
		cove_error_set_errno(err, errno, "rename %s to %s", tmp, final);
		goto out;
	}
	*hex = xstrdup(layer);
	rv = 0;
out:
	if (w.fd >= 0)
		close(w.fd);
	if (w.sha) {
		uint8_t ignored[32];
		cove_sha256_final(w.sha, ignored);
	}
	if (access(tmp, F_OK) == 0) {
		struct cove_error *e = NULL;
		cove_remove_tree(tmp, &e);
		cove_error_free(e);
	}
	if (rv < 0) {
		free(*note);
		*note = NULL;
	}
	return rv;
}
