/* COPY and ADD: from the build context (the context mount and the files sent inline), and --from an earlier
 * stage or image (its layers merged as an overlay would). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "image/wheel.h"
#include "runtime/runtime.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/curl.h"
#include "util/fsutil.h"
#include "util/safepath.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/map.h"
#include "util/pb.h"
#include "util/workq.h"

/* ---- COPY --from (an earlier stage or image) ----
 *
 * The other image's layers were written by its build's containers, so every symlink in them is the
 * container's: nothing here follows one on the host. The source path is resolved in the merged layers as the
 * image itself would see it (a symlink on the way is followed inside the image's root: an absolute target
 * starts again from that root, and ".." stops there), then every layer is read and the layer being built is
 * written through directory descriptors opened beneath their roots without following symlinks (safepath.h). */

static char *normalize_src(const char *s);

#define MAX_LINKS 40 /* as the kernel's path resolution (MAXSYMLINKS) */
#define MAX_DEPTH 512

static int
is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == 0;
}

static int
is_opaque(int dirfd)
{
	char v[2];
	return fgetxattr(dirfd, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y';
}

/* The other image's layers, each open as a directory, bottom first. */
struct layer_stack {
	int *fds;
	size_t n;
};

static void
layer_stack_close(struct layer_stack *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->fds[i] >= 0)
			close(ls->fds[i]);
	free(ls->fds);
}

/* Where directory rel ("" is the root; no symlinks) stands in layer fd: 0 absent (this layer has nothing
 * there), 1 present (*dfd opened), 2 hidden (an ancestor is a whiteout, a file or a symlink in this layer, so
 * the layers below do not show through), with *opaque set if rel or an ancestor is an opaque directory. */
static int
layer_dir(int layer, const char *rel, int *dfd, int *opaque)
{
	*dfd = -1;
	*opaque = 0;
	int fd = cove_safe_open(layer, ".", O_RDONLY | O_DIRECTORY, 0, 0);
	if (fd < 0)
		return 0;
	cleanup_free char *copy = xstrdup(rel);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int next = cove_safe_open(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
		int e = errno;
		close(fd);
		if (next < 0)
			return e == ENOENT ? 0 : 2;
		fd = next;
		if (is_opaque(fd))
			*opaque = 1;
	}
	*dfd = fd;
	return 1;
}

/* Look name up in directory rel of the merged layers: the top-most layer that has it decides, as overlayfs
 * does. 1 found (*st), 0 not there (missing or whited out). */
static int
merged_lookup(const struct layer_stack *ls, const char *rel, const char *name, struct stat *st, size_t *layer)
{
	for (size_t k = ls->n; k-- > 0;) {
		int opaque = 0;
		cleanup_close int d = -1;
		int r = layer_dir(ls->fds[k], rel, &d, &opaque);
		if (r == 2)
			return 0;
		if (r == 1 && fstatat(d, name, st, AT_SYMLINK_NOFOLLOW) == 0) {
			*layer = k;
			return !is_whiteout(st);
		}
		if (opaque && r == 1)
			return 0; /* an opaque directory hides the layers below */
	}
	return 0;
}

/* Resolve src (absolute, in the other image) into *out ("" for its root, else "a/b" with no symlink on the
 * way; the last component itself may be one, copied as a link) and *st, what is there. 1 found, 0 not found,
 * -1 + *err (a symlink loop). */
static int
resolve_source(const struct layer_stack *ls, const char *src, char **out, struct stat *st, struct cove_error **err)
{
	char *cur = xstrdup("");
	char *rest = xstrdup(src);
	int links = 0;
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR | 0755; /* the root */
	for (;;) {
		char *p = rest;
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		char *end = strchrnul(p, '/');
		cleanup_free char *c = xstrndup(p, (size_t)(end - p));
		char *after = xstrdup(end);
		free(rest);
		rest = after;
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			char *slash = strrchr(cur, '/');
			if (slash)
				*slash = '\0';
			else
				cur[0] = '\0';
			st->st_mode = S_IFDIR | 0755;
			continue;
		}
		size_t layer = 0;
		if (!S_ISDIR(st->st_mode) || !merged_lookup(ls, cur, c, st, &layer)) {
			free(cur);
			free(rest);
			return 0;
		}
		const char *more = rest;
		while (*more == '/')
			more++;
		if (S_ISLNK(st->st_mode) && *more) {
			/* A symlink on the way: followed inside the image. */
			if (++links > MAX_LINKS) {
				free(cur);
				free(rest);
				return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s: too many levels of symbolic links", src);
			}
			int d = -1, opaque = 0;
			char target[PATH_MAX];
			ssize_t n = -1;
			if (layer_dir(ls->fds[layer], cur, &d, &opaque) == 1)
				n = readlinkat(d, c, target, sizeof(target) - 1);
			if (d >= 0)
				close(d);
			if (n <= 0) {
				free(cur);
				free(rest);
				return 0;
			}
			target[n] = '\0';
			char *joined = xasprintf("%s/%s", target, rest);
			free(rest);
			rest = joined;
			if (target[0] == '/')
				cur[0] = '\0';
			st->st_mode = S_IFDIR | 0755; /* the directory the link is in */
			continue;
		}
		char *next = *cur ? xasprintf("%s/%s", cur, c) : xstrdup(c);
		free(cur);
		cur = next;
	}
	free(rest);
	*out = cur;
	return 1;
}

/* Merge entry sname of directory sdir (one layer's view of the source) onto dname in directory ddir, as an
 * overlay stacks it: files and links replace, whiteouts delete, an opaque directory hides what was there.
 * dname NULL: ddir itself is the destination (a directory). */
static int
merge_at(int sdir, const char *sname, int ddir, const char *dname, const char *shown, int depth,
	 struct cove_error **err)
{
	struct stat st;
	if (fstatat(sdir, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	if (depth > MAX_DEPTH)
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "COPY: %s is nested more than %d levels deep", shown,
				      MAX_DEPTH);
	if (is_whiteout(&st)) {
		if (dname)
			cove_safe_remove_at(ddir, dname);
		return 0;
	}
	if (S_ISDIR(st.st_mode)) {
		cleanup_close int s = cove_safe_open(sdir, sname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
		if (s < 0)
			return cove_error_set_errno(err, errno, "COPY: read %s", shown);
		cleanup_close int d = -1;
		if (dname) {
			struct stat dt;
			if (is_opaque(s) || (fstatat(ddir, dname, &dt, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(dt.st_mode)))
				cove_safe_remove_at(ddir, dname);
			if (mkdirat(ddir, dname, st.st_mode & 07777) < 0 && errno != EEXIST)
				return cove_error_set_errno(err, errno, "COPY: mkdir %s", shown);
			d = cove_safe_open(ddir, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0);
		} else {
			d = dup(ddir);
		}
		if (d < 0)
			return cove_error_set_errno(err, errno, "COPY: open %s", shown);
		fchmod(d, st.st_mode & 07777);
		int dup_fd = dup(s);
		DIR *dir = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
		if (dir == NULL) {
			if (dup_fd >= 0)
				close(dup_fd);
			return cove_error_set_errno(err, errno, "COPY: read %s", shown);
		}
		struct dirent *e;
		int rv = 0;
		while (rv == 0 && (e = readdir(dir)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			cleanup_free char *sub = xasprintf("%s/%s", shown, e->d_name);
			rv = merge_at(s, e->d_name, d, e->d_name, sub, depth + 1, err);
		}
		closedir(dir);
		return rv;
	}
	if (dname == NULL)
		return 0;
	cove_safe_remove_at(ddir, dname);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(sdir, sname, target, sizeof(target) - 1);
		if (n < 0)
			return cove_error_set_errno(err, errno, "COPY: readlink %s", shown);
		target[n] = '\0';
		if (symlinkat(target, ddir, dname) < 0)
			return cove_error_set_errno(err, errno, "COPY: symlink %s", shown);
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return 0; /* devices, fifos, sockets: not copied */
	cleanup_close int in = cove_safe_open_regular(sdir, sname, &st);
	if (in < 0)
		return cove_error_set_errno(err, errno, "COPY: open %s", shown);
	cleanup_close int out = openat(ddir, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				       st.st_mode & 07777);
	if (out < 0)
		return cove_error_set_errno(err, errno, "COPY: create %s", shown);
	if (cove_copy_fd(in, out) < 0 || fchmod(out, st.st_mode & 07777) < 0 || fsync(out) < 0)
		return cove_error_set_errno(err, errno, "COPY: write %s", shown);
	return 0;
}

/* Copy the merged layers' entry at src (resolved, "" the root) onto rel below the directory root. */
static int
copy_from_layers(const struct layer_stack *ls, const char *src, int root, const char *rel, struct cove_error **err)
{
	cleanup_close int ddir = -1;
	const char *dname = NULL;
	if (*rel) {
		ddir = cove_safe_open_parent(root, rel, 1, 0755, &dname);
		if (ddir < 0)
			return cove_error_set_errno(err, errno, "COPY: create the directory of /%s", rel);
	} else {
		ddir = dup(root);
		if (ddir < 0)
			return cove_error_set_errno(err, errno, "COPY: /");
	}
	const char *slash = strrchr(src, '/');
	cleanup_free char *parent = slash ? xstrndup(src, (size_t)(slash - src)) : xstrdup("");
	const char *sname = *src ? (slash ? slash + 1 : src) : ".";
	cleanup_free char *shown = xasprintf("/%s", src);
	for (size_t k = 0; k < ls->n; k++) {
		int opaque = 0;
		cleanup_close int sdir = -1;
		int r = *src ? layer_dir(ls->fds[k], parent, &sdir, &opaque) : (sdir = dup(ls->fds[k])) >= 0;
		if (r == 2 || (r == 1 && opaque)) {
			/* Below a whiteout or an opaque directory of this layer: what the lower ones gave is hidden. */
			if (dname)
				cove_safe_remove_at(ddir, dname);
		}
		if (r != 1)
			continue;
		if (merge_at(sdir, sname, ddir, dname, shown, 0, err) < 0)
			return -1;
	}
	return 0;
}

/* COPY --from a tool image Cove makes from the tool's wheel (uv: ghcr.io/astral-sh/uv:<version>), on a worker
 * thread; when it is done the COPY step runs again and finds it. */
struct tool_job {
	struct build *bd;
	struct cove_wheel_tool tool;
	char *from, *index, *layers_dir;
	char *hex, *note;
	struct cove_error *err;
};

static void
tool_work(void *arg)
{
	struct tool_job *j = arg;
	cove_wheel_tool_layer(&j->tool, j->index, j->layers_dir, &j->hex, &j->note, &j->err);
}

static void
tool_done(void *arg)
{
	struct tool_job *j = arg;
	struct build *bd = j->bd;
	if (j->err) {
		build_fail(bd, j->err);
	} else {
		build_logf(bd, "  %s\n", j->note);
		free(bd->tool_from);
		free(bd->tool_layer);
		bd->tool_from = j->from;
		j->from = NULL;
		bd->tool_layer = xasprintf("%s/fs", j->hex);
		snprintf(bd->tool_state, sizeof(bd->tool_state), "%s", j->hex);
	}
	int failed = bd->done;
	free(j->from);
	free(j->index);
	free(j->layers_dir);
	free(j->hex);
	free(j->note);
	free(j);
	if (!failed) {
		bd->resumed = 1;
		build_next(bd);
	}
}

static int
tool_fetch(struct build *bd, const struct cove_df_cmd *c, const struct cove_wheel_tool *t)
{
	struct tool_job *j = xcalloc(1, sizeof(*j));
	j->bd = bd;
	j->tool = *t;
	j->from = xstrdup(c->from);
	const char *index = getenv("PIP_INDEX_URL");
	j->index = xstrdup(index && *index ? index : COVE_PYPI_INDEX);
	j->layers_dir = xstrdup(bd->b->layers_dir);
	cleanup_free char *shown = cove_url_redacted(j->index);
	build_logf(bd, "  %s: no registry here serves it; making it from the %s wheel on %s\n", c->from, t->project,
		   shown);
	cove_workq_submit(bd->b->workq, tool_work, tool_done, j);
	return 0;
}

/* COPY --from=<stage or earlier image> SRC... DST: the sources as the other image sees them (its layers
 * merged), into a new layer. 1 done, 0 continues asynchronously (a tool image being made), -1 error. */
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
	struct cove_wheel_tool tool;
	if (layers.n == 0 && cove_wheel_tool_ref(c->from, &tool)) {
		if (bd->tool_from == NULL || strcmp(bd->tool_from, c->from) != 0)
			return tool_fetch(bd, c, &tool);
		strv_add(&layers, bd->tool_layer);
		memcpy(state, bd->tool_state, sizeof(state));
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
		struct layer_stack ls = {.fds = xcalloc(layers.n, sizeof(int)), .n = layers.n};
		for (size_t k = 0; k < layers.n; k++) {
			cleanup_free char *p = xasprintf("%s/%s", bd->b->layers_dir, layers.v[k]);
			ls.fds[k] = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (ls.fds[k] < 0 && rv == 0)
				rv = cove_error_set_errno(err, errno, "%s --from=%s: open layer %s", c->keyword, c->from,
							  layers.v[k]);
		}
		char rnd[17];
		cove_random_base62(rnd, 16);
		rnd[16] = '\0';
		cleanup_free char *tmp = xasprintf("%s/copy-%s", bd->b->tmp_dir, rnd);
		cleanup_close int root = -1;
		if (rv == 0 && (mkdir(tmp, 0755) < 0 ||
				(root = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0))
			rv = cove_error_set_errno(err, errno, "%s: create %s", c->keyword, tmp);
		for (size_t s = 0; s + 1 < c->n_args && rv == 0; s++) {
			cleanup_free char *src = normalize_src(c->args[s]);
			const char *base = strrchr(src, '/') + 1;
			cleanup_free char *resolved = NULL;
			struct stat sst;
			int found = resolve_source(&ls, src, &resolved, &sst, err);
			if (found < 0) {
				rv = cove_error_wrap(err, "%s %s", c->keyword, c->text);
				break;
			}
			if (!found) {
				rv = cove_error_set(err, COVE_NOT_FOUND, "%s %s: %s not found in %s", c->keyword, c->text,
						    c->args[s], c->from);
				break;
			}
			int src_is_dir = S_ISDIR(sst.st_mode);
			cleanup_free char *target = src_is_dir || !dst_dir ? xasprintf("%s", dst + 1)
									   : *base ? xasprintf("%s%s%s", dst + 1, dst[1] ? "/" : "", base)
										   : xstrdup(dst + 1);
			rv = copy_from_layers(&ls, resolved, root, target, err);
		}
		layer_stack_close(&ls);
		if (rv == 0) {
			rv = build_layer_commit(bd, tmp, err) < 0 ? -1 : 0;
			if (rv == 0)
				build_logf(bd, "  copied from %s\n", c->from);
			strv_clear(&layers);
			struct cove_error *ignored = NULL;
			cove_remove_tree(tmp, &ignored);
			cove_error_free(ignored);
			return rv < 0 ? -1 : 1;
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

/* Write a new file `name` in directory dir (replacing what is there), durable before it is part of a layer. */
static int
write_file_at(int dir, const char *name, const void *data, size_t len, int mode)
{
	if (cove_safe_remove_at(dir, name) < 0)
		return -1;
	cleanup_close int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	for (const char *p = data; len > 0;) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return fsync(fd);
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
			/* Names come from the client: each lands beneath the new layer's root or nowhere. */
			cleanup_close int root = -1;
			if (mkdir(tmp, 0755) < 0 || (root = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
				rv = cove_error_set_errno(err, errno, "%s: create %s", c->keyword, tmp);
			for (size_t i = 0; i < n_items && rv == 0; i++) {
				const struct ctx_file *f = items[i].f;
				int mode = (int)(chmod_mode ? chmod_mode : f->mode);
				const char *name = NULL;
				cleanup_close int dir = cove_safe_open_parent(root, items[i].dest + 1, 1, 0755, &name);
				if (dir < 0) {
					rv = cove_error_set_errno(err, errno, "%s %s", c->keyword, items[i].dest);
				} else if (f->inline_data) {
					if (write_file_at(dir, name, f->inline_data->data, f->inline_data->len, mode) < 0)
						rv = cove_error_set_errno(err, errno, "%s %s", c->keyword, items[i].dest);
				} else {
					cleanup_free char *blob = cove_blobstore_file_path(bd->b->ctx->blobs, f->sha256);
					cleanup_free uint8_t *content = NULL;
					size_t clen = 0;
					if (cove_read_file(blob, &content, &clen, err) < 0)
						rv = cove_error_wrap(err, "%s %s", c->keyword, items[i].dest);
					else if (write_file_at(dir, name, content, clen, mode) < 0)
						rv = cove_error_set_errno(err, errno, "%s %s", c->keyword, items[i].dest);
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
