/* COPY and ADD: from the build context (the context mount and the files sent inline), and --from an earlier
 * stage or image (its layers merged as an overlay would). */
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

/* ---- COPY (from the context mount) ---- */

static char *normalize_src(const char *s);

/* Remove what is at path (a tree), if anything. */
static void
remove_any(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		struct cove_error *ignored = NULL;
		cove_remove_tree(path, &ignored);
		cove_error_free(ignored);
	} else {
		unlink(path);
	}
}

static int
is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == 0;
}

/* Merge the tree at src (one layer's view of a path) onto dst, as an overlay stacks it: files and links
 * replace, whiteouts delete, an opaque directory hides what was there before. */
static int
merge_tree(const char *src, const char *dst, struct cove_error **err)
{
	struct stat st;
	if (lstat(src, &st) < 0)
		return 0;
	if (is_whiteout(&st)) {
		remove_any(dst);
		return 0;
	}
	if (S_ISDIR(st.st_mode)) {
		struct stat dt;
		char v[2];
		int opaque = getxattr(src, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y';
		if (opaque || (lstat(dst, &dt) == 0 && !S_ISDIR(dt.st_mode)))
			remove_any(dst);
		if (mkdir(dst, st.st_mode & 07777) < 0 && errno != EEXIST)
			return cove_error_set_errno(err, errno, "COPY: mkdir %s", dst);
		chmod(dst, st.st_mode & 07777);
		DIR *d = opendir(src);
		if (d == NULL)
			return cove_error_set_errno(err, errno, "COPY: read %s", src);
		struct dirent *e;
		int rv = 0;
		while (rv == 0 && (e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			cleanup_free char *s2 = xasprintf("%s/%s", src, e->d_name);
			cleanup_free char *d2 = xasprintf("%s/%s", dst, e->d_name);
			rv = merge_tree(s2, d2, err);
		}
		closedir(d);
		return rv;
	}
	remove_any(dst);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(src, target, sizeof(target) - 1);
		if (n < 0)
			return cove_error_set_errno(err, errno, "COPY: readlink %s", src);
		target[n] = '\0';
		if (symlink(target, dst) < 0)
			return cove_error_set_errno(err, errno, "COPY: symlink %s", dst);
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return 0; /* devices, fifos, sockets: not copied */
	cleanup_free uint8_t *content = NULL;
	size_t len = 0;
	if (cove_read_file(src, &content, &len, err) < 0 ||
	    cove_write_file_atomic(dst, content, len, (int)(st.st_mode & 07777), err) < 0)
		return -1;
	return 0;
}

/* COPY --from=<stage or earlier image> SRC... DST: the sources as the other image sees them (its layers
 * merged), into a new layer. */
static int
step_copy_from(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err)
{
	struct strv layers = {0};
	char state[65] = "";
	const struct stage *st = build_stage_find(bd, c->from);
	if (st) {
		strv_copy(&layers, &st->layers);
		memcpy(state, st->state, sizeof(state));
	} else {
		for (size_t i = 0; i < bd->def->n_base_images && layers.n == 0; i++) {
			const Modal__Client__BaseImage *bi = bd->def->base_images[i];
			if (strcmp(bi->docker_tag, c->from) != 0)
				continue;
			struct cove_image_info info;
			if (build_manifest_read(bd->b, bi->image_id, &info, NULL, err) < 0)
				return cove_error_wrap(err, "%s --from=%s", c->keyword, c->from);
			for (size_t k = 0; k < info.n_layers; k++)
				strv_add(&layers, info.layers[k]);
			snprintf(state, sizeof(state), "%s", info.state);
			cove_image_info_free(xmemdup(&info, sizeof(info)));
		}
	}
	if (layers.n == 0)
		return cove_error_set(err, COVE_UNIMPLEMENTED,
				      "%s --from=%s: Cove's builder copies from earlier stages and images of this build only; "
				      "for a registry image, add a stage: FROM %s AS src, then %s --from=src ...",
				      c->keyword, c->from, c->from, c->keyword);
	cleanup_free char *dst_raw = build_expand(bd, c->args[c->n_args - 1]);
	cleanup_free char *dst = dst_raw[0] == '/' ? xstrdup(dst_raw)
					       : xasprintf("%s/%s", bd->workdir ? bd->workdir : "", dst_raw);
	size_t dl = strlen(dst);
	int dst_dir = c->n_args > 2 || (dl && dst[dl - 1] == '/');
	while (dl > 1 && dst[dl - 1] == '/')
		dst[--dl] = '\0';
	build_chain(bd, c->text, state);
	int rv = 0;
	if (!build_layer_needed(bd)) {
		build_logf(bd, "  (cached)\n");
	} else {
		char rnd[17];
		cove_random_base62(rnd, 16);
		rnd[16] = '\0';
		cleanup_free char *tmp = xasprintf("%s/copy-%s", bd->b->tmp_dir, rnd);
		for (size_t s = 0; s + 1 < c->n_args && rv == 0; s++) {
			cleanup_free char *src = normalize_src(c->args[s]);
			const char *base = strrchr(src, '/') + 1;
			int src_is_dir = 0, found = 0;
			for (size_t k = 0; k < layers.n; k++) {
				cleanup_free char *p = xasprintf("%s/%s%s", bd->b->layers_dir, layers.v[k], src);
				struct stat sst;
				if (lstat(p, &sst) == 0) {
					found = !is_whiteout(&sst);
					src_is_dir = S_ISDIR(sst.st_mode);
				}
			}
			if (!found) {
				rv = cove_error_set(err, COVE_NOT_FOUND, "%s %s: %s not found in %s", c->keyword, c->text,
						    c->args[s], c->from);
				break;
			}
			cleanup_free char *target = src_is_dir || !dst_dir ? xasprintf("%s%s", tmp, dst)
									   : xasprintf("%s%s/%s", tmp, dst, base);
			cleanup_free char *parent = xstrdup(target);
			*strrchr(parent, '/') = '\0';
			if (cove_mkdirs(parent, err) < 0) {
				rv = -1;
				break;
			}
			for (size_t k = 0; k < layers.n && rv == 0; k++) {
				cleanup_free char *p = xasprintf("%s/%s%s", bd->b->layers_dir, layers.v[k], src);
				rv = merge_tree(p, target, err);
			}
		}
		if (rv == 0) {
			struct stat tst;
			if (stat(tmp, &tst) < 0)
				cove_mkdirs(tmp, NULL);
			rv = build_layer_commit(bd, tmp, err) < 0 ? -1 : 0;
			if (rv == 0)
				build_logf(bd, "  copied from %s\n", c->from);
			strv_clear(&layers);
			struct cove_error *ignored = NULL;
			cove_remove_tree(tmp, &ignored);
			cove_error_free(ignored);
			return 1;
		}
		struct cove_error *ignored = NULL;
		cove_remove_tree(tmp, &ignored);
		cove_error_free(ignored);
	}
	if (rv == 0) {
		char *rel = xasprintf("%s/fs", bd->layer_hex);
		strv_add(&bd->layers, rel);
		free(rel);
	}
	strv_clear(&layers);
	return rv < 0 ? -1 : 1;
}

static char *
normalize_src(const char *s)
{
	while (s[0] == '.' && s[1] == '/')
		s += 2;
	if (strcmp(s, ".") == 0 || *s == '\0')
		return xstrdup("/");
	char *p = s[0] == '/' ? xstrdup(s) : xasprintf("/%s", s);
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	if (n >= 2 && strcmp(p + n - 2, "/.") == 0)
		p[n - 2 == 0 ? 1 : n - 2] = '\0';
	return p;
}

/* A file of the build context: from the context mount (content in the blob store), or sent inline with the
 * image definition (Image.context_files: requirements files and the like). */
struct ctx_file {
	const char *filename; /* absolute, from the context's root */
	char sha256[65];
	unsigned mode;
	const ProtobufCBinaryData *inline_data; /* NULL: in the blob store */
};

struct copy_item {
	const struct ctx_file *f;
	char *dest;
};

static int
copy_item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct copy_item *)a)->dest, ((const struct copy_item *)b)->dest);
}

int
build_step_copy(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err)
{
	if (c->from)
		return step_copy_from(bd, c, err);
	const Modal__Client__Image *def = bd->def;
	int has_mount = def->context_mount_id && *def->context_mount_id;
	if (!has_mount && def->n_context_files == 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s %s: the image has no build context", c->keyword, c->text);
	Modal__Client__MountGetOrCreateRequest *m = NULL;
	if (has_mount) {
		cleanup_free uint8_t *data = NULL;
		size_t len = 0;
		if (cove_store_object_get(bd->b->ctx->store, def->context_mount_id, NULL, &data, &len, err) < 0)
			return cove_error_wrap(err, "context mount %s", def->context_mount_id);
		m = pb_unpack(&modal__client__mount_get_or_create_request__descriptor, data, len);
		if (m == NULL)
			return cove_error_set(err, COVE_DATA_LOSS, "mount %s is corrupt in the store", def->context_mount_id);
	}
	size_t n_files = (m ? m->n_files : 0) + def->n_context_files;
	struct ctx_file *files = xcalloc(n_files + 1, sizeof(*files));
	size_t nf = 0;
	for (size_t i = 0; m && i < m->n_files; i++) {
		files[nf].filename = m->files[i]->filename;
		snprintf(files[nf].sha256, sizeof(files[nf].sha256), "%s", m->files[i]->sha256_hex);
		files[nf].mode = m->files[i]->_mode_case ? m->files[i]->mode & 07777 : 0644;
		nf++;
	}
	for (size_t i = 0; i < def->n_context_files; i++) {
		const Modal__Client__ImageContextFile *cf = def->context_files[i];
		if (cf->filename == NULL || cf->filename[0] != '/' || strstr(cf->filename, "/../")) {
			free(files);
			if (m)
				pb_free(m);
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "context file %s: not an absolute, normalized path",
					      cf->filename ? cf->filename : "");
		}
		files[nf].filename = cf->filename;
		cove_sha256_hex(cf->data.data, cf->data.len, files[nf].sha256);
		files[nf].mode = 0644;
		files[nf].inline_data = &cf->data;
		nf++;
	}
	cleanup_free char *dst_raw = build_expand(bd, c->args[c->n_args - 1]);
	char *dst = dst_raw[0] == '/' ? xstrdup(dst_raw)
				       : xasprintf("%s/%s", bd->workdir ? bd->workdir : "", dst_raw);
	size_t dl = strlen(dst);
	int dst_dir = c->n_args > 2 || (dl && dst[dl - 1] == '/');
	while (dl > 1 && dst[dl - 1] == '/')
		dst[--dl] = '\0';
	struct copy_item *items = NULL;
	size_t n_items = 0;
	int rv = 0;
	for (size_t s = 0; s + 1 < c->n_args && rv == 0; s++) {
		cleanup_free char *src = normalize_src(c->args[s]);
		int glob = strpbrk(src, "*?[") != NULL;
		size_t found = 0;
		for (size_t i = 0; i < nf; i++) {
			const char *fn = files[i].filename;
			size_t sl = strlen(src);
			char *dest = NULL;
			if (strcmp(src, "/") == 0) {
				dest = xasprintf("%s%s", strcmp(dst, "/") == 0 ? "" : dst, fn);
			} else if (strcmp(fn, src) == 0 || (glob && fnmatch(src, fn, FNM_PATHNAME) == 0)) {
				const char *base = strrchr(fn, '/') + 1;
				dest = dst_dir || glob ? xasprintf("%s/%s", strcmp(dst, "/") == 0 ? "" : dst, base) : xstrdup(dst);
			} else if (strncmp(fn, src, sl) == 0 && fn[sl] == '/') {
				dest = xasprintf("%s%s", strcmp(dst, "/") == 0 ? "" : dst, fn + sl);
			} else if (glob) {
				/* A pattern that matches a directory: copy what is below it. */
				char *prefix = xstrdup(fn);
				for (char *slash = strrchr(prefix, '/'); slash && slash != prefix; slash = strrchr(prefix, '/')) {
					*slash = '\0';
					if (fnmatch(src, prefix, FNM_PATHNAME) == 0) {
						const char *base = strrchr(prefix, '/') + 1;
						dest = xasprintf("%s/%s%s", strcmp(dst, "/") == 0 ? "" : dst, base,
								 fn + strlen(prefix));
						break;
					}
				}
				free(prefix);
			}
			if (dest == NULL)
				continue;
			items = xrealloc(items, (n_items + 1) * sizeof(*items));
			items[n_items++] = (struct copy_item){&files[i], dest};
			found++;
		}
		if (found == 0)
			rv = cove_error_set(err, COVE_NOT_FOUND, "%s %s: %s not found in the build context", c->keyword,
					    c->text, c->args[s]);
	}
	/* The layer's key: what lands where, with which content and mode, in an order of its own (the client
	 * uploads a directory's files in no particular order). */
	if (n_items > 1)
		qsort(items, n_items, sizeof(*items), copy_item_cmp);
	unsigned chmod_mode = c->chmod ? (unsigned)strtoul(c->chmod, NULL, 8) : 0;
	char *digest_text = NULL;
	size_t digest_len = 0;
	FILE *df = open_memstream(&digest_text, &digest_len);
	for (size_t i = 0; i < n_items; i++)
		fprintf(df, "%s %s %o\n", items[i].dest, items[i].f->sha256, chmod_mode ? chmod_mode : items[i].f->mode);
	fclose(df);
	if (rv == 0) {
		build_chain(bd, c->text, digest_text);
		if (!build_layer_needed(bd)) {
			build_logf(bd, "  (cached)\n");
			char *rel = xasprintf("%s/fs", bd->layer_hex);
			strv_add(&bd->layers, rel);
			free(rel);
		} else {
			char rnd[17];
			cove_random_base62(rnd, 16);
			rnd[16] = '\0';
			cleanup_free char *tmp = xasprintf("%s/copy-%s", bd->b->tmp_dir, rnd);
			for (size_t i = 0; i < n_items && rv == 0; i++) {
				const struct ctx_file *f = items[i].f;
				cleanup_free char *path = xasprintf("%s%s", tmp, items[i].dest);
				cleanup_free char *dir = xstrdup(path);
				*strrchr(dir, '/') = '\0';
				int mode = (int)(chmod_mode ? chmod_mode : f->mode);
				if (cove_mkdirs(dir, err) < 0) {
					rv = cove_error_wrap(err, "%s %s", c->keyword, items[i].dest);
				} else if (f->inline_data) {
					if (cove_write_file_atomic(path, f->inline_data->data, f->inline_data->len, mode, err) < 0)
						rv = cove_error_wrap(err, "%s %s", c->keyword, items[i].dest);
				} else {
					cleanup_free char *blob = cove_blobstore_file_path(bd->b->ctx->blobs, f->sha256);
					cleanup_free uint8_t *content = NULL;
					size_t clen = 0;
					if (cove_read_file(blob, &content, &clen, err) < 0 ||
					    cove_write_file_atomic(path, content, clen, mode, err) < 0)
						rv = cove_error_wrap(err, "%s %s", c->keyword, items[i].dest);
				}
			}
			if (rv == 0)
				rv = build_layer_commit(bd, tmp, err);
			struct cove_error *ignored = NULL;
			cove_remove_tree(tmp, &ignored);
			cove_error_free(ignored);
			if (rv == 0)
				build_logf(bd, "  copied %zu file%s\n", n_items, n_items == 1 ? "" : "s");
		}
	}
	free(digest_text);
	for (size_t i = 0; i < n_items; i++)
		free(items[i].dest);
	free(items);
	free(files);
	free(dst);
	if (m)
		pb_free(m);
	return rv < 0 ? -1 : 1;
}
