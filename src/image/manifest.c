/* The layer store (<image dir>/layers/<hex>/fs) and built images' manifests (<image dir>/images/<id>): reading
 * and writing them, the cache chain that names layers, snapshot images, disk use and garbage collection. */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "api/api.h"
#include "blob/blobstore.h"
#include "image/build.h"
#include "image/builder.h"
#include "image/dockerfile.h"
#include "image/registry.h"
#include "runtime/runtime.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/fsutil.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/map.h"
#include "util/pb.h"
#include "util/workq.h"

/* ---- manifests ---- */

static void
escape_line(FILE *f, const char *key, const char *value)
{
	fprintf(f, "%s ", key);
	for (const char *p = value; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else
			fputc(*p, f);
	}
	fputc('\n', f);
}

static char *
unescape(const char *s)
{
	char *out = xmalloc(strlen(s) + 1), *o = out;
	for (; *s; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			*o++ = *s == 'n' ? '\n' : *s;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

int
build_manifest_write(struct cove_builder *b, const struct build *bd, struct cove_error **err)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	fprintf(f, "cove-image 1\n");
	escape_line(f, "state", bd->state);
	for (size_t i = 0; i < bd->layers.n; i++)
		escape_line(f, "layer", bd->layers.v[i]);
	for (size_t i = 0; i < bd->env.n; i++)
		escape_line(f, "env", bd->env.v[i]);
	if (bd->workdir)
		escape_line(f, "workdir", bd->workdir);
	if (bd->user)
		escape_line(f, "user", bd->user);
	for (size_t i = 0; i < bd->shell.n; i++)
		escape_line(f, "shell", bd->shell.v[i]);
	for (size_t i = 0; i < bd->cmd.n; i++)
		escape_line(f, "cmd", bd->cmd.v[i]);
	for (size_t i = 0; i < bd->entrypoint.n; i++)
		escape_line(f, "entrypoint", bd->entrypoint.v[i]);
	fclose(f);
	cleanup_free char *path = xasprintf("%s/%s", b->images_dir, bd->image_id);
	int r = cove_write_file_atomic(path, text, len, 0644, err);
	free(text);
	return r;
}

/* Read a manifest into info and, if shell is not NULL, the SHELL list. */
int
build_manifest_read(struct cove_builder *b, const char *image_id, struct cove_image_info *info, struct strv *shell,
	      struct cove_error **err)
{
	if (strchr(image_id, '/') || image_id[0] == '.')
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "bad image id %s", image_id);
	cleanup_free char *path = xasprintf("%s/%s", b->images_dir, image_id);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return cove_error_set(err, COVE_NOT_FOUND, "Image %s is not built", image_id);
	struct strv layers = {0}, env = {0}, cmd = {0}, ep = {0};
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	memset(info, 0, sizeof(*info));
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		char *sp = strchr(line, ' ');
		if (sp == NULL)
			continue;
		*sp = '\0';
		char *v = unescape(sp + 1);
		if (strcmp(line, "layer") == 0)
			strv_add(&layers, v);
		else if (strcmp(line, "env") == 0)
			strv_add(&env, v);
		else if (strcmp(line, "cmd") == 0)
			strv_add(&cmd, v);
		else if (strcmp(line, "entrypoint") == 0)
			strv_add(&ep, v);
		else if (strcmp(line, "shell") == 0 && shell)
			strv_add(shell, v);
		else if (strcmp(line, "workdir") == 0 && info->workdir == NULL)
			info->workdir = xstrdup(v);
		else if (strcmp(line, "user") == 0 && info->user == NULL)
			info->user = xstrdup(v);
		else if (strcmp(line, "state") == 0 && info->state == NULL)
			info->state = xstrdup(v);
		free(v);
	}
	free(line);
	fclose(f);
	info->layers = layers.v;
	info->n_layers = layers.n;
	info->env = env.v;
	info->n_env = env.n;
	info->cmd = cmd.v;
	info->n_cmd = cmd.n;
	info->entrypoint = ep.v;
	info->n_entrypoint = ep.n;
	if (info->state == NULL || info->n_layers == 0) {
		struct cove_image_info tmp = *info;
		cove_image_info_free(xmemdup(&tmp, sizeof(tmp)));
		memset(info, 0, sizeof(*info));
		return cove_error_set(err, COVE_DATA_LOSS, "the manifest of image %s is incomplete", image_id);
	}
	return 0;
}

int
cove_builder_image(struct cove_builder *b, const char *image_id, struct cove_image_info **out, struct cove_error **err)
{
	struct cove_image_info *info = xcalloc(1, sizeof(*info));
	if (build_manifest_read(b, image_id, info, NULL, err) < 0) {
		free(info);
		return -1;
	}
	*out = info;
	return 0;
}

void
build_free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
cove_image_info_free(struct cove_image_info *info)
{
	if (info == NULL)
		return;
	build_free_list(info->layers, info->n_layers);
	build_free_list(info->env, info->n_env);
	build_free_list(info->cmd, info->n_cmd);
	build_free_list(info->entrypoint, info->n_entrypoint);
	free(info->workdir);
	free(info->user);
	free(info->state);
	free(info);
}

/* ---- the cache chain ---- */

void
build_chain(struct build *bd, const char *what, const char *extra)
{
	struct cove_sha256_ctx *h = cove_sha256_new();
	cove_sha256_update(h, bd->state, strlen(bd->state));
	cove_sha256_update(h, "\n", 1);
	cove_sha256_update(h, what, strlen(what));
	if (extra) {
		cove_sha256_update(h, "\n", 1);
		cove_sha256_update(h, extra, strlen(extra));
	}
	uint8_t d[32];
	cove_sha256_final(h, d);
	cove_hex(d, 32, bd->state);
	bd->state[64] = '\0';
}

int
build_layer_exists(struct cove_builder *b, const char *hex)
{
	cleanup_free char *p = xasprintf("%s/%s/fs", b->layers_dir, hex);
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The layer for the current state: its name, and whether it must be made (not cached, or forced). */
int
build_layer_needed(struct build *bd)
{
	memcpy(bd->layer_hex, bd->state, 65);
	if (bd->force) {
		char nonce[80];
		snprintf(nonce, sizeof(nonce), "%s-force-%ld-%d", bd->state, (long)time(NULL), rand());
		cove_sha256_hex(nonce, strlen(nonce), bd->layer_hex);
		return 1;
	}
	return !build_layer_exists(bd->b, bd->layer_hex);
}

/* Move a finished layer directory (its tree at src) into the store under bd->layer_hex. */
int
build_layer_commit(struct build *bd, const char *src, struct cove_error **err)
{
	struct cove_builder *b = bd->b;
	char rnd[17];
	cove_random_base62(rnd, 16);
	rnd[16] = '\0';
	cleanup_free char *tmp = xasprintf("%s/.tmp-%s", b->layers_dir, rnd);
	cleanup_free char *tmpfs = xasprintf("%s/fs", tmp);
	cleanup_free char *dst = xasprintf("%s/%s", b->layers_dir, bd->layer_hex);
	if (mkdir(tmp, 0755) < 0)
		return cove_error_set_errno(err, errno, "create %s", tmp);
	if (rename(src, tmpfs) < 0 || rename(tmp, dst) < 0) {
		int e = errno;
		struct cove_error *ignored = NULL;
		cove_remove_tree(tmp, &ignored);
		cove_error_free(ignored);
		if (e == EEXIST || e == ENOTEMPTY)
			goto add;
		return cove_error_set_errno(err, e, "store layer %s", bd->layer_hex);
	}
add:;
	char *rel = xasprintf("%s/fs", bd->layer_hex);
	strv_add(&bd->layers, rel);
	free(rel);
	return 0;
}

int
cove_builder_add_layer_image(struct cove_builder *b, const char *base_id, const char *layer_hex, const char *image_id,
			     struct cove_error **err)
{
	struct build bd = {.b = b};
	struct cove_image_info base;
	if (build_manifest_read(b, base_id, &base, &bd.shell, err) < 0)
		return cove_error_wrap(err, "image %s", base_id);
	bd.image_id = (char *)image_id;
	memcpy(bd.state, base.state, 64);
	build_chain(&bd, "snapshot", layer_hex);
	for (size_t i = 0; i < base.n_layers; i++)
		strv_add(&bd.layers, base.layers[i]);
	char *rel = xasprintf("%s/fs", layer_hex);
	strv_add(&bd.layers, rel);
	free(rel);
	for (size_t i = 0; i < base.n_env; i++)
		strv_add(&bd.env, base.env[i]);
	for (size_t i = 0; i < base.n_cmd; i++)
		strv_add(&bd.cmd, base.cmd[i]);
	for (size_t i = 0; i < base.n_entrypoint; i++)
		strv_add(&bd.entrypoint, base.entrypoint[i]);
	bd.workdir = base.workdir;
	bd.user = base.user;
	int r = build_manifest_write(b, &bd, err);
	strv_clear(&bd.layers);
	strv_clear(&bd.env);
	strv_clear(&bd.cmd);
	strv_clear(&bd.entrypoint);
	strv_clear(&bd.shell);
	struct cove_image_info *p = xmemdup(&base, sizeof(base));
	cove_image_info_free(p);
	return r;
}

/* ---- disk use and garbage collection ---- */

static uint64_t
tree_bytes(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0;
	uint64_t n = (uint64_t)st.st_blocks * 512;
	if (!S_ISDIR(st.st_mode))
		return n;
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char *p = xasprintf("%s/%s", path, e->d_name);
		n += tree_bytes(p);
		free(p);
	}
	if (d)
		closedir(d);
	return n;
}

int
cove_builder_usage(const char *image_dir, uint64_t *bytes, size_t *n_layers, size_t *n_images)
{
	cleanup_free char *layers = xasprintf("%s/layers", image_dir);
	cleanup_free char *images = xasprintf("%s/images", image_dir);
	*bytes = tree_bytes(image_dir);
	*n_layers = *n_images = 0;
	const char *dirs[2] = {layers, images};
	size_t *counts[2] = {n_layers, n_images};
	for (int i = 0; i < 2; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;
		while (d && (e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				(*counts[i])++;
		if (d)
			closedir(d);
	}
	return 0;
}

int
cove_builder_gc(const char *image_dir, size_t *n_removed, uint64_t *bytes_freed, struct cove_error **err)
{
	cleanup_free char *layers = xasprintf("%s/layers", image_dir);
	cleanup_free char *images = xasprintf("%s/images", image_dir);
	struct cove_map used = {0};
	DIR *d = opendir(images);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *p = xasprintf("%s/%s", images, e->d_name);
		FILE *f = fopen(p, "re");
		char line[512];
		while (f && fgets(line, sizeof(line), f)) {
			char hex[65];
			if (sscanf(line, "layer %64[0-9a-f]/fs", hex) == 1)
				cove_map_put(&used, hex, (void *)1);
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	*n_removed = 0;
	*bytes_freed = 0;
	int rv = 0;
	d = opendir(layers);
	while (d && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (cove_map_get(&used, e->d_name))
			continue;
		cleanup_free char *p = xasprintf("%s/%s", layers, e->d_name);
		uint64_t n = tree_bytes(p);
		if (cove_remove_tree(p, err) < 0) {
			rv = -1;
			break;
		}
		(*n_removed)++;
		*bytes_freed += n;
	}
	if (d)
		closedir(d);
	cove_map_clear(&used);
	return rv;
}
