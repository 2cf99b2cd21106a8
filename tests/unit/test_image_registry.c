/* Registry client: WWW-Authenticate parsing, image config parsing, and whole pulls against a small fake
 * registry in a thread on 127.0.0.1 (an index with several platforms, Bearer and Basic auth, a corrupted blob,
 * a missing tag, a closed port, a mirror for docker.io names). The real registry is tests/e2e's business. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/registry.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/hash.h"

/* --- WWW-Authenticate and config parsing --------------------------------------------------------------- */

static void
test_challenge(void **state)
{
	(void)state;
	struct cove_auth_challenge c;
	assert_int_equal(cove_auth_challenge_parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
						   "scope=\"repository:library/python:pull\"",
						   &c),
			 0);
	assert_string_equal(c.scheme, "Bearer");
	assert_string_equal(c.realm, "https://auth.docker.io/token");
	assert_string_equal(c.service, "registry.docker.io");
	assert_string_equal(c.scope, "repository:library/python:pull");
	cove_auth_challenge_free(&c);

	assert_int_equal(cove_auth_challenge_parse("  bearer Realm=http://x/t , scope=\"a:b:pull,push\", error=\"insufficient_scope\"", &c), 0);
	assert_string_equal(c.scheme, "bearer");
	assert_string_equal(c.realm, "http://x/t");
	assert_null(c.service);
	assert_string_equal(c.scope, "a:b:pull,push");
	cove_auth_challenge_free(&c);

	assert_int_equal(cove_auth_challenge_parse("Basic realm=\"Registry \\\"Realm\\\"\"", &c), 0);
	assert_string_equal(c.scheme, "Basic");
	assert_string_equal(c.realm, "Registry \"Realm\"");
	cove_auth_challenge_free(&c);

	assert_int_equal(cove_auth_challenge_parse("Basic", &c), 0);
	assert_null(c.realm);
	cove_auth_challenge_free(&c);

	assert_int_equal(cove_auth_challenge_parse("", &c), -1);
	assert_int_equal(cove_auth_challenge_parse("Bearer realm=\"unterminated", &c), -1);
	assert_null(c.scheme);
}

static void
test_config(void **state)
{
	(void)state;
	const char *json = "{\"architecture\":\"amd64\",\"config\":{\"Env\":[\"PATH=/usr/bin\",\"A=b=c\"],"
			   "\"WorkingDir\":\"/app\",\"User\":\"1000:1000\",\"Entrypoint\":null,\"Cmd\":[\"python3\",\"-c\",\"1\"]},"
			   "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
	struct cove_image_config c;
	struct cove_error *err = NULL;
	assert_int_equal(cove_image_config_parse(json, strlen(json), &c, &err), 0);
	assert_int_equal(c.n_env, 2);
	assert_string_equal(c.env[1], "A=b=c");
	assert_string_equal(c.workdir, "/app");
	assert_string_equal(c.user, "1000:1000");
	assert_int_equal(c.n_entrypoint, 0);
	assert_null(c.entrypoint);
	assert_int_equal(c.n_cmd, 3);
	assert_string_equal(c.cmd[0], "python3");
	cove_image_config_free(&c);

	assert_int_equal(cove_image_config_parse("{}", 2, &c, &err), 0);
	assert_null(c.workdir);
	cove_image_config_free(&c);

	static const char *bad[] = {"[]", "{\"config\":{\"Env\":\"x\"}}", "{\"config\":{\"Cmd\":[1]}}",
				    "{\"config\":{\"WorkingDir\":3}}", "{", "{\"config\":7}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		assert_int_equal(cove_image_config_parse(bad[i], strlen(bad[i]), &c, &err), -1);
		assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
		cove_error_free(err);
	}
}

/* --- a fake registry --------------------------------------------------------------------------------- */

enum auth_mode { AUTH_NONE, AUTH_BEARER, AUTH_BASIC };

struct blob {
	char digest[72];
	char *data;
	size_t len;
	const char *type;
};

struct fake {
	int listen_fd;
	int port;
	volatile int stop;
	pthread_t thread;
	enum auth_mode auth;
	int corrupt_layer;
	int redirect_blobs; /* answer blob GETs with a 307 to /redirected/<digest>, served without auth */
	struct blob layer, config, manifest, index;
	int requests, layer_gets, token_gets;
	char root[64];
	char *layers_dir;
	char *ref;
};

static const char *
header_value(const char *req, const char *name)
{
	static char value[512];
	size_t n = strlen(name);
	for (const char *p = strstr(req, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
			const char *v = p + 3 + n;
			while (*v == ' ')
				v++;
			size_t len = strcspn(v, "\r\n");
			if (len >= sizeof(value))
				len = sizeof(value) - 1;
			memcpy(value, v, len);
			value[len] = '\0';
			return value;
		}
	}
	return NULL;
}

static void
reply(int fd, int status, const char *extra_headers, const char *type, const char *body, size_t len)
{
	char head[1024];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s%s%s%s\r\n", status, len,
			 type ? "Content-Type: " : "", type ? type : "", type ? "\r\n" : "", extra_headers ? extra_headers : "");
	if (write(fd, head, (size_t)n) != n)
		return;
	if (len && write(fd, body, len) != (ssize_t)len)
		return;
}

static const char errors_unknown[] = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}";
/* "user:pass" */
#define GOOD_BASIC "Basic dXNlcjpwYXNz"

static void
serve_one(struct fake *f, int fd)
{
	char req[8192];
	size_t len = 0;
	while (len < sizeof(req) - 1) {
		ssize_t r = read(fd, req + len, sizeof(req) - 1 - len);
		if (r <= 0)
			return;
		len += (size_t)r;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	f->requests++;
	char path[1024];
	if (sscanf(req, "GET %1023s HTTP/1.1", path) != 1) {
		reply(fd, 400, NULL, NULL, "", 0);
		return;
	}
	const char *authz = header_value(req, "Authorization");
	if (strncmp(path, "/redirected/", 12) == 0) {
		const struct blob *r = strcmp(path + 12, f->layer.digest) == 0    ? &f->layer
				       : strcmp(path + 12, f->config.digest) == 0 ? &f->config
										  : NULL;
		if (r == &f->layer)
			f->layer_gets++;
		if (r)
			reply(fd, 200, NULL, r->type, r->data, r->len);
		else
			reply(fd, 404, NULL, NULL, "", 0);
		return;
	}
	if (strncmp(path, "/token?", 7) == 0) {
		f->token_gets++;
		if (authz == NULL || strcmp(authz, GOOD_BASIC) != 0) {
			reply(fd, 401, NULL, "application/json", "{\"details\":\"bad credentials\"}", 29);
			return;
		}
		if (strstr(path, "service=fake") == NULL || strstr(path, "scope=repository%3Atest%2Fapp%3Apull") == NULL) {
			reply(fd, 400, NULL, NULL, "", 0);
			return;
		}
		const char *tok = "{\"token\":\"tok-123\"}";
		reply(fd, 200, NULL, "application/json", tok, strlen(tok));
		return;
	}
	if (f->auth == AUTH_BEARER && (authz == NULL || strcmp(authz, "Bearer tok-123") != 0)) {
		char h[256];
		snprintf(h, sizeof(h),
			 "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"fake\","
			 "scope=\"repository:test/app:pull\"\r\n",
			 f->port);
		reply(fd, 401, h, "application/json", "{}", 2);
		return;
	}
	if (f->auth == AUTH_BASIC && (authz == NULL || strcmp(authz, GOOD_BASIC) != 0)) {
		reply(fd, 401, "WWW-Authenticate: Basic realm=\"fake\"\r\n", "application/json", "{}", 2);
		return;
	}
	const struct blob *b = NULL;
	char want[1100];
	const struct blob *all[] = {&f->index, &f->manifest, &f->config, &f->layer};
	if (strstr(path, "/manifests/")) {
		if (strstr(path, "/manifests/v1"))
			b = &f->index;
		for (size_t i = 0; i < 2 && b == NULL; i++) {
			snprintf(want, sizeof(want), "/v2/test/app/manifests/%s", all[i]->digest);
			if (strcmp(path, want) == 0)
				b = all[i];
		}
		if (strncmp(path, "/v2/test/app/", 13) != 0 && strncmp(path, "/v2/library/app/", 16) != 0)
			b = NULL;
	} else {
		for (size_t i = 2; i < 4 && b == NULL; i++) {
			snprintf(want, sizeof(want), "/v2/test/app/blobs/%s", all[i]->digest);
			if (strcmp(path, want) == 0)
				b = all[i];
		}
	}
	if (b == NULL) {
		reply(fd, 404, NULL, "application/json", errors_unknown, strlen(errors_unknown));
		return;
	}
	if ((b == &f->layer || b == &f->config) && f->redirect_blobs) {
		char h[256];
		snprintf(h, sizeof(h), "Location: /redirected/%s\r\n", b->digest);
		reply(fd, 307, h, "text/html", "<a>moved</a>", 12);
		return;
	}
	if (b == &f->layer) {
		f->layer_gets++;
		if (f->corrupt_layer) {
			char *copy = xmemdup(b->data, b->len);
			copy[b->len / 2] ^= 1;
			reply(fd, 200, NULL, b->type, copy, b->len);
			free(copy);
			return;
		}
	}
	reply(fd, 200, NULL, b->type, b->data, b->len);
}

static void *
serve(void *arg)
{
	struct fake *f = arg;
	while (!f->stop) {
		struct pollfd pfd = {.fd = f->listen_fd, .events = POLLIN};
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int fd = accept(f->listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		serve_one(f, fd);
		close(fd);
	}
	return NULL;
}

static void
blob_set(struct blob *b, char *data, size_t len, const char *type)
{
	char hex[65];
	cove_sha256_hex(data, len, hex);
	snprintf(b->digest, sizeof(b->digest), "sha256:%s", hex);
	b->data = data;
	b->len = len;
	b->type = type;
}

static void
make_layer(struct blob *b)
{
	size_t cap = 1 << 16, used = 0;
	char *buf = xmalloc(cap);
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_gzip(a);
	assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "hello.txt");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, 6);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	assert_int_equal(archive_write_data(a, "hello\n", 6), 6);
	archive_entry_free(e);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	blob_set(b, buf, used, "application/octet-stream");
}

#if defined(__x86_64__)
#define ARCH "amd64"
#define OTHER_ARCH "arm64"
#else
#define ARCH "arm64"
#define OTHER_ARCH "amd64"
#endif

static int
fake_setup(void **state)
{
	struct fake *f = xcalloc(1, sizeof(*f));
	make_layer(&f->layer);
	char *config = xstrdup("{\"architecture\":\"" ARCH "\",\"os\":\"linux\",\"config\":{\"Env\":[\"GREETING=hi\"],"
			       "\"WorkingDir\":\"/srv\",\"Cmd\":[\"cat\",\"/hello.txt\"]}}");
	blob_set(&f->config, config, strlen(config), "application/octet-stream");
	char *manifest = xasprintf("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
				   "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
				   "\"size\":%zu},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
				   "\"digest\":\"%s\",\"size\":%zu}]}",
				   f->config.digest, f->config.len, f->layer.digest, f->layer.len);
	blob_set(&f->manifest, manifest, strlen(manifest), "application/vnd.oci.image.manifest.v1+json");
	const char *decoy = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
	char *index = xasprintf(
		"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
		"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":10,"
		"\"platform\":{\"architecture\":\"" OTHER_ARCH "\",\"os\":\"linux\"}},"
		"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu,"
		"\"platform\":{\"architecture\":\"" ARCH "\",\"os\":\"linux\"}},"
		"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":10,"
		"\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}}]}",
		decoy, f->manifest.digest, f->manifest.len, decoy);
	blob_set(&f->index, index, strlen(index), "application/vnd.oci.image.index.v1+json");

	f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->listen_fd, 16), 0);
	socklen_t sl = sizeof(sa);
	getsockname(f->listen_fd, (struct sockaddr *)&sa, &sl);
	f->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);

	snprintf(f->root, sizeof(f->root), "/tmp/cove-registry-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	f->layers_dir = xasprintf("%s/images/layers", f->root);
	f->ref = xasprintf("127.0.0.1:%d/test/app:v1", f->port);
	*state = f;
	return 0;
}

static int
fake_teardown(void **state)
{
	struct fake *f = *state;
	f->stop = 1;
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	struct cove_error *err = NULL;
	cove_remove_tree(f->root, &err);
	cove_error_free(err);
	free(f->layer.data);
	free(f->config.data);
	free(f->manifest.data);
	free(f->index.data);
	free(f->layers_dir);
	free(f->ref);
	free(f);
	return 0;
}

struct log {
	char text[8192];
};

static void
collect(void *arg, const char *line)
{
	struct log *l = arg;
	size_t n = strlen(l->text);
	snprintf(l->text + n, sizeof(l->text) - n, "%s\n", line);
}

/* Nothing but layer directories in the store: no temporary leftovers. */
static size_t
store_entries(struct fake *f, int *tmp)
{
	DIR *d = opendir(f->layers_dir);
	size_t n = 0;
	*tmp = 0;
	if (d == NULL)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
			continue;
		if (strncmp(e->d_name, ".tmp-", 5) == 0)
			(*tmp)++;
		n++;
	}
	closedir(d);
	return n;
}

static void
assert_pulled(struct fake *f, const struct cove_pulled_image *img)
{
	assert_int_equal(img->n_layers, 1);
	assert_string_equal(img->layers[0], f->layer.digest + 7);
	assert_string_equal(img->digest, f->index.digest);
	assert_int_equal(img->config.n_env, 1);
	assert_string_equal(img->config.env[0], "GREETING=hi");
	assert_string_equal(img->config.workdir, "/srv");
	assert_int_equal(img->config.n_cmd, 2);
	cleanup_free char *hello = xasprintf("%s/%s/fs/hello.txt", f->layers_dir, img->layers[0]);
	uint8_t *data = NULL;
	size_t len;
	struct cove_error *err = NULL;
	assert_int_equal(cove_read_file(hello, &data, &len, &err), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(data, "hello\n", 6);
	free(data);
}

static void
test_pull_anonymous(void **state)
{
	struct fake *f = *state;
	struct cove_pulled_image img;
	struct cove_error *err = NULL;
	struct log log = {{0}};
	if (cove_registry_pull(NULL, f->ref, f->layers_dir, collect, &log, &img, &err) < 0)
		fail_msg("%s", err->msg);
	assert_pulled(f, &img);
	assert_non_null(strstr(log.text, "pulling layer"));
	cove_pulled_image_free(&img);
	assert_int_equal(f->layer_gets, 1);
	int tmp;
	assert_int_equal(store_entries(f, &tmp), 1);
	assert_int_equal(tmp, 0);

	/* Again: the layer is there, nothing is downloaded. */
	memset(&log, 0, sizeof(log));
	assert_int_equal(cove_registry_pull(NULL, f->ref, f->layers_dir, collect, &log, &img, &err), 0);
	assert_pulled(f, &img);
	assert_non_null(strstr(log.text, "already present"));
	assert_null(strstr(log.text, "pulling layer"));
	assert_int_equal(f->layer_gets, 1);
	cove_pulled_image_free(&img);

	/* By digest (the platform manifest's), with no log. */
	cleanup_free char *by_digest = xasprintf("127.0.0.1:%d/test/app@%s", f->port, f->manifest.digest);
	assert_int_equal(cove_registry_pull(NULL, by_digest, f->layers_dir, NULL, NULL, &img, &err), 0);
	assert_string_equal(img.digest, f->manifest.digest);
	cove_pulled_image_free(&img);
}

static void
test_pull_bearer(void **state)
{
	struct fake *f = *state;
	f->auth = AUTH_BEARER;
	f->redirect_blobs = 1; /* as registries send blobs to their storage */
	struct cove_pulled_image img;
	struct cove_error *err = NULL;
	struct cove_registry_opts o = {.username = "user", .password = "pass"};
	if (cove_registry_pull(&o, f->ref, f->layers_dir, NULL, NULL, &img, &err) < 0)
		fail_msg("%s", err->msg);
	assert_pulled(f, &img);
	cove_pulled_image_free(&img);
	/* One token for the whole pull. */
	assert_int_equal(f->token_gets, 1);

	o.password = "wrong";
	assert_int_equal(cove_registry_pull(&o, f->ref, f->layers_dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_PERMISSION_DENIED);
	assert_non_null(strstr(err->msg, f->ref));
	cove_error_free(err);
	err = NULL;

	assert_int_equal(cove_registry_pull(NULL, f->ref, f->layers_dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_PERMISSION_DENIED);
	assert_non_null(strstr(err->msg, "anonymous"));
	cove_error_free(err);
}

static void
test_pull_basic(void **state)
{
	struct fake *f = *state;
	f->auth = AUTH_BASIC;
	struct cove_pulled_image img;
	struct cove_error *err = NULL;
	struct cove_registry_opts o = {.username = "user", .password = "pass"};
	if (cove_registry_pull(&o, f->ref, f->layers_dir, NULL, NULL, &img, &err) < 0)
		fail_msg("%s", err->msg);
	assert_pulled(f, &img);
	cove_pulled_image_free(&img);

	o.password = "nope";
	assert_int_equal(cove_registry_pull(&o, f->ref, f->layers_dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_PERMISSION_DENIED);
	assert_non_null(strstr(err->msg, f->ref));
	cove_error_free(err);
	err = NULL;

	assert_int_equal(cove_registry_pull(NULL, f->ref, f->layers_dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_PERMISSION_DENIED);
	assert_non_null(strstr(err->msg, "none were given"));
	cove_error_free(err);
}

static void
test_not_found(void **state)
{
	struct fake *f = *state;
	cleanup_free char *ref = xasprintf("127.0.0.1:%d/test/app:nope", f->port);
	cleanup_free char *want = xasprintf("image %s not found in 127.0.0.1:%d", ref, f->port);
	struct cove_pulled_image img;
	struct cove_error *err = NULL;
	assert_int_equal(cove_registry_pull(NULL, ref, f->layers_dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_NOT_FOUND);
	if (strstr(err->msg, want) == NULL)
		fail_msg("%s", err->msg);
	assert_non_null(strstr(err->msg, "manifest unknown"));
	cove_error_free(err);
}

static void
test_corrupt_layer(void **state)
{
	struct fake *f = *state;
	f->corrupt_layer = 1;
	struct cove_pulled_image img;
	struct cove_error *err = NULL;
	assert_int_equal(cove_registry_pull(NULL, f->ref, f->layers_dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_DATA_LOSS);
	assert_non_null(strstr(err->msg, f->layer.digest));
	cove_error_free(err);
	int tmp;
	assert_int_equal(store_entries(f, &tmp), 0);
	assert_int_equal(tmp, 0);
}

static void
test_unreachable(void **state)
{
	(void)state;
	/* A port that was just free: nothing listens there. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	socklen_t sl = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	close(fd);
	cleanup_free char *ref = xasprintf("127.0.0.1:%d/x/y:1", ntohs(sa.sin_port));
	char dir[] = "/tmp/cove-registry-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct cove_pulled_image img;
	struct cove_error *err = NULL;
	assert_int_equal(cove_registry_pull(NULL, ref, dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_FAILED_PRECONDITION);
	cleanup_free char *want = xasprintf("cannot reach registry 127.0.0.1:%d for image %s", ntohs(sa.sin_port), ref);
	if (strstr(err->msg, want) == NULL)
		fail_msg("%s", err->msg);
	cove_error_free(err);
	err = NULL;
	cove_remove_tree(dir, &err);

	/* A malformed reference never reaches the network. */
	assert_int_equal(cove_registry_pull(NULL, "UPPER", "/nonexistent", NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	cove_error_free(err);
}

static void
test_mirror(void **state)
{
	struct fake *f = *state;
	cleanup_free char *mirror = xasprintf("http://127.0.0.1:%d/", f->port);
	struct cove_registry_opts o = {.mirror = mirror};
	struct cove_pulled_image img;
	struct cove_error *err = NULL;
	/* docker.io/test/app:v1 comes from the mirror. */
	if (cove_registry_pull(&o, "test/app:v1", f->layers_dir, NULL, NULL, &img, &err) < 0)
		fail_msg("%s", err->msg);
	assert_pulled(f, &img);
	cove_pulled_image_free(&img);

	assert_int_equal(cove_registry_pull(&o, "test/app:gone", f->layers_dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_NOT_FOUND);
	cleanup_free char *want = xasprintf("image test/app:gone not found in registry mirror http://127.0.0.1:%d", f->port);
	if (strstr(err->msg, want) == NULL)
		fail_msg("%s", err->msg);
	cove_error_free(err);
	err = NULL;

	o.mirror = "ftp://x";
	assert_int_equal(cove_registry_pull(&o, "test/app:v1", f->layers_dir, NULL, NULL, &img, &err), -1);
	assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
	cove_error_free(err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_challenge),
		cmocka_unit_test(test_config),
		cmocka_unit_test_setup_teardown(test_pull_anonymous, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_pull_bearer, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_pull_basic, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_not_found, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_layer, fake_setup, fake_teardown),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test_setup_teardown(test_mirror, fake_setup, fake_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
