/* FROM: earlier images of the chain and earlier stages, registry images (pulled on a worker thread), and
 * Debian-based Python bases built from Debian's packages when no registry can serve them; multi-stage builds. */
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

/* ---- base images ---- */

struct debian_base {
	const char *codename;
	const char *python; /* the minor version Debian ships */
};

static const struct debian_base debian_bases[] = {
	{"bullseye", "3.9"},
	{"bookworm", "3.11"},
	{"trixie", "3.13"},
};

static void
base_config(struct build *bd)
{
	env_set(&bd->env, "PATH", DEFAULT_PATH);
	env_set(&bd->env, "LANG", "C.UTF-8");
}

static void
set_base_state(struct build *bd, const char *what)
{
	memset(bd->state, 0, sizeof(bd->state));
	build_chain(bd, "FROM", what);
}

/* "python:3.11.12-slim-bookworm", "python:3.11-slim", "debian:bookworm-slim", "debian:bookworm": the Debian
 * release, and the Python version asked for (NULL: none). 0 if it is not such a reference. */
static int
debian_ref(const char *ref, char *codename, size_t cn, char *python, size_t pn)
{
	const char *r = ref;
	if (strncmp(r, "docker.io/", 10) == 0)
		r += 10;
	if (strncmp(r, "library/", 8) == 0)
		r += 8;
	python[0] = '\0';
	if (strncmp(r, "python:", 7) == 0) {
		const char *tag = r + 7;
		const char *dash = strchr(tag, '-');
		if (dash == NULL)
			return 0;
		snprintf(python, pn, "%.*s", (int)(dash - tag), tag);
		const char *slim = strstr(dash, "-slim-");
		if (slim == NULL)
			return 0;
		snprintf(codename, cn, "%s", slim + 6);
		return 1;
	}
	if (strncmp(r, "debian:", 7) == 0) {
		snprintf(codename, cn, "%s", r + 7);
		char *s = strstr(codename, "-slim");
		if (s)
			*s = '\0';
		return 1;
	}
	return 0;
}

static const char *
host_debian_mirror(void)
{
	static char mirror[512];
	if (mirror[0])
		return mirror;
	snprintf(mirror, sizeof(mirror), "http://deb.debian.org/debian");
	FILE *f = fopen("/etc/apt/sources.list.d/debian.sources", "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		char url[400];
		if (sscanf(line, "URIs: %399s", url) == 1 && strstr(url, "security") == NULL) {
			snprintf(mirror, sizeof(mirror), "%s", url);
			break;
		}
	}
	if (f)
		fclose(f);
	return mirror;
}

static void debian_output(void *owner, int fd, const char *data, size_t len);
static void debian_exit(void *owner, int status);

/* Debian's own packages for a Python base: debootstrap (minbase, python3 with its headers, pip, venv), made
 * pip-friendly. The headers (python3-dev) are there because python:X-slim, Modal's base, has them: building an
 * sdist with a C extension needs Python.h. */
static int
debian_base(struct build *bd, const char *ref, const char *codename, const char *python, struct cove_error **err)
{
	const struct debian_base *db = NULL;
	for (size_t i = 0; i < sizeof(debian_bases) / sizeof(debian_bases[0]); i++)
		if (strcmp(debian_bases[i].codename, codename) == 0)
			db = &debian_bases[i];
	if (db == NULL)
		return cove_error_set(err, COVE_NOT_FOUND,
				      "image %s cannot be pulled (Cove reaches no registry for it) and Cove can build Debian "
				      "bases only for bullseye, bookworm and trixie; make it available through a registry "
				      "mirror (cove serve --registry-mirror URL)",
				      ref);
	if (python[0] && strncmp(python, db->python, strlen(db->python)) != 0) {
		return cove_error_set(err, COVE_NOT_FOUND,
				      "image %s cannot be pulled (Cove reaches no registry for it), and Debian %s ships "
				      "Python %s, not %s: use python_version=\"%s\", or make the image available through a "
				      "registry mirror (cove serve --registry-mirror URL)",
				      ref, codename, db->python, python, db->python);
	}
	if (access("/usr/sbin/debootstrap", X_OK) < 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "image %s cannot be pulled (Cove reaches no registry for it), and building it from "
				      "Debian's packages needs debootstrap (apt-get install debootstrap)",
				      ref);
	char what[128];
	snprintf(what, sizeof(what), "cove-debian-base:%s:%s:v2", codename, python[0] ? db->python : "none");
	set_base_state(bd, what);
	base_config(bd);
	memcpy(bd->layer_hex, bd->state, 65);
	build_logf(bd, "Using Cove's %s base for %s: Debian %s%s%s from Debian's packages (debootstrap)\n",
		   python[0] ? "Python" : "Debian", ref, codename, python[0] ? " with Python " : "",
		   python[0] ? db->python : "");
	if (build_layer_exists(bd->b, bd->layer_hex)) {
		char *rel = xasprintf("%s/fs", bd->layer_hex);
		strv_add(&bd->layers, rel);
		free(rel);
		return 1;
	}
	const char *mirror = bd->b->debian_mirror ? bd->b->debian_mirror : host_debian_mirror();
	char rnd[17];
	cove_random_base62(rnd, 16);
	rnd[16] = '\0';
	bd->scratch = xasprintf("%s/debian-%s", bd->b->tmp_dir, rnd);
	const char *include = python[0] ? "--include=python3,python3-dev,python3-pip,python3-venv,python-is-python3,"
					  "ca-certificates"
					: "--include=ca-certificates";
	cleanup_free char *script = xasprintf(
		"set -e; debootstrap --variant=minbase %s %s '%s/fs' '%s'; cd '%s/fs';"
		" rm -f usr/lib/python3*/EXTERNALLY-MANAGED; rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*;"
		" printf 'APT::Install-Recommends \"false\";\\n' > etc/apt/apt.conf.d/90cove; mkdir -p root",
		include, codename, bd->scratch, mirror, bd->scratch);
	char *argv[] = {"/bin/sh", "-c", script, NULL};
	char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
			"DEBIAN_FRONTEND=noninteractive", NULL};
	static const struct cove_runtime_callbacks cb = {.on_output = debian_output, .on_exit = debian_exit};
	if (cove_mkdirs(bd->scratch, err) < 0)
		return -1;
	struct cove_container_spec spec = {.id = bd->image_id, .workdir = "/", .argv = argv, .envp = envp, .cb = &cb};
	struct cove_runtime *rt = bd->b->ctx->runtime;
	if (rt->ops->start(rt, &spec, bd, &bd->container, err) < 0)
		return cove_error_wrap(err, "debootstrap %s", codename);
	return 0;
}

static void
debian_output(void *owner, int fd, const char *data, size_t len)
{
	(void)fd;
	build_log(owner, data, len);
}

static void
debian_exit(void *owner, int status)
{
	struct build *bd = owner;
	bd->container = NULL;
	struct cove_error *err = NULL;
	cleanup_free char *fs = xasprintf("%s/fs", bd->scratch);
	if (status != 0) {
		cove_error_set(&err, COVE_FAILED_PRECONDITION, "building the Debian base with debootstrap failed (status %d)",
			       status);
	} else {
		build_layer_commit(bd, fs, &err);
	}
	build_step_done(bd, err, 1);
}

/* A registry pull, on a worker thread. */
struct pull_job {
	struct build *bd;
	char *ref;
	struct cove_registry_opts opts;
	char *username, *password;
	struct cove_pulled_image img;
	struct cove_error *err;
	char *log;
	size_t log_len;
	FILE *log_f;
};

static void
pull_log(void *arg, const char *line)
{
	struct pull_job *j = arg;
	fprintf(j->log_f, "%s\n", line);
}

static void
pull_work(void *arg)
{
	struct pull_job *j = arg;
	cove_registry_pull(&j->opts, j->ref, j->bd->b->layers_dir, pull_log, j, &j->img, &j->err);
	fclose(j->log_f);
}

static void
pull_done(void *arg)
{
	struct pull_job *j = arg;
	struct build *bd = j->bd;
	build_log(bd, j->log, j->log_len);
	free(j->log);
	if (j->err) {
		build_fail(bd, j->err);
	} else {
		set_base_state(bd, j->img.digest ? j->img.digest : j->ref);
		base_config(bd);
		for (size_t i = 0; i < j->img.n_layers; i++) {
			char *rel = xasprintf("%s/fs", j->img.layers[i]);
			strv_add(&bd->layers, rel);
			free(rel);
		}
		const struct cove_image_config *c = &j->img.config;
		for (size_t i = 0; i < c->n_env; i++) {
			char *eq = strchr(c->env[i], '=');
			if (eq) {
				char *name = xstrndup(c->env[i], (size_t)(eq - c->env[i]));
				env_set(&bd->env, name, eq + 1);
				free(name);
			}
		}
		if (c->workdir && *c->workdir)
			bd->workdir = xstrdup(c->workdir);
		if (c->user && *c->user)
			bd->user = xstrdup(c->user);
		for (size_t i = 0; i < c->n_cmd; i++)
			strv_add(&bd->cmd, c->cmd[i]);
		for (size_t i = 0; i < c->n_entrypoint; i++)
			strv_add(&bd->entrypoint, c->entrypoint[i]);
		bd->step++;
	}
	cove_pulled_image_free(&j->img);
	free(j->ref);
	free(j->username);
	free(j->password);
	int failed = bd->done;
	free(j);
	if (!failed)
		build_next(bd);
}

/* End the current stage: keep it for COPY --from and FROM, and start afresh. */
void
build_stage_push(struct build *bd)
{
	bd->stages = xrealloc(bd->stages, (bd->n_stages + 1) * sizeof(*bd->stages));
	struct stage *s = &bd->stages[bd->n_stages++];
	memset(s, 0, sizeof(*s));
	s->name = bd->stage_name;
	bd->stage_name = NULL;
	memcpy(s->state, bd->state, sizeof(s->state));
	s->layers = bd->layers;
	s->env = bd->env;
	s->shell = bd->shell;
	s->cmd = bd->cmd;
	s->entrypoint = bd->entrypoint;
	s->workdir = bd->workdir;
	s->user = bd->user;
	memset(&bd->layers, 0, sizeof(bd->layers));
	memset(&bd->env, 0, sizeof(bd->env));
	memset(&bd->shell, 0, sizeof(bd->shell));
	memset(&bd->cmd, 0, sizeof(bd->cmd));
	memset(&bd->entrypoint, 0, sizeof(bd->entrypoint));
	bd->workdir = bd->user = NULL;
	memset(bd->state, 0, sizeof(bd->state));
}

void
build_stages_free(struct build *bd)
{
	for (size_t i = 0; i < bd->n_stages; i++) {
		struct stage *s = &bd->stages[i];
		free(s->name);
		strv_clear(&s->layers);
		strv_clear(&s->env);
		strv_clear(&s->shell);
		strv_clear(&s->cmd);
		strv_clear(&s->entrypoint);
		free(s->workdir);
		free(s->user);
	}
	free(bd->stages);
	bd->stages = NULL;
	bd->n_stages = 0;
	free(bd->stage_name);
	bd->stage_name = NULL;
}

/* A stage by name, or by index as Docker allows ("0"). */
const struct stage *
build_stage_find(const struct build *bd, const char *name)
{
	for (size_t i = 0; i < bd->n_stages; i++)
		if (bd->stages[i].name && strcasecmp(bd->stages[i].name, name) == 0)
			return &bd->stages[i];
	char *end;
	unsigned long idx = strtoul(name, &end, 10);
	if (*name && *end == '\0' && idx < bd->n_stages)
		return &bd->stages[idx];
	return NULL;
}

/* FROM: 1 done now, 0 continues asynchronously, -1 error. */
int
build_step_from(struct build *bd, const struct cove_df_cmd *c, struct cove_error **err)
{
	cleanup_free char *ref = cove_dockerfile_expand(c->args[0], bd->args.v, bd->args.n);
	const struct stage *st = build_stage_find(bd, ref);
	if (st && !(ref[0] >= '0' && ref[0] <= '9')) {
		memcpy(bd->state, st->state, sizeof(bd->state));
		strv_copy(&bd->layers, &st->layers);
		strv_copy(&bd->env, &st->env);
		strv_copy(&bd->shell, &st->shell);
		strv_copy(&bd->cmd, &st->cmd);
		strv_copy(&bd->entrypoint, &st->entrypoint);
		bd->workdir = st->workdir ? xstrdup(st->workdir) : NULL;
		bd->user = st->user ? xstrdup(st->user) : NULL;
		return 1;
	}
	for (size_t i = 0; i < bd->def->n_base_images; i++) {
		const Modal__Client__BaseImage *bi = bd->def->base_images[i];
		if (strcmp(bi->docker_tag, ref) != 0)
			continue;
		struct cove_image_info parent;
		struct strv shell = {0};
		if (build_manifest_read(bd->b, bi->image_id, &parent, &shell, err) < 0)
			return cove_error_wrap(err, "base image %s", bi->image_id);
		memcpy(bd->state, parent.state, 64);
		bd->state[64] = '\0';
		for (size_t k = 0; k < parent.n_layers; k++)
			strv_add(&bd->layers, parent.layers[k]);
		for (size_t k = 0; k < parent.n_env; k++)
			strv_add(&bd->env, parent.env[k]);
		for (size_t k = 0; k < parent.n_cmd; k++)
			strv_add(&bd->cmd, parent.cmd[k]);
		for (size_t k = 0; k < parent.n_entrypoint; k++)
			strv_add(&bd->entrypoint, parent.entrypoint[k]);
		bd->shell = shell;
		bd->workdir = parent.workdir;
		bd->user = parent.user;
		parent.workdir = parent.user = NULL;
		struct cove_image_info *p = xmemdup(&parent, sizeof(parent));
		cove_image_info_free(p);
		return 1;
	}
	if (strcmp(ref, "scratch") == 0) {
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "FROM scratch: an image needs a base with files in it (Cove's containers run Python)");
	}
	char codename[64], python[32];
	struct cove_builder *b = bd->b;
	/* Debian-based Python images are built from Debian's packages unless a mirror is configured to serve
	 * them (Docker Hub itself is out of reach for an air-gapped Cove). */
	if (b->registry_mirror == NULL && debian_ref(ref, codename, sizeof(codename), python, sizeof(python)))
		return debian_base(bd, ref, codename, python, err);
	struct pull_job *j = xcalloc(1, sizeof(*j));
	j->bd = bd;
	j->ref = xstrdup(ref);
	j->opts.mirror = b->registry_mirror;
	j->opts.insecure = (const char *const *)b->insecure.v;
	j->opts.n_insecure = b->insecure.n;
	/* from_registry(..., secret=): the registry's credentials, as the docs name them. */
	const Modal__Client__ImageRegistryConfig *rc = bd->def->image_registry_config;
	if (rc && rc->secret_id && *rc->secret_id) {
		struct strv creds = {0};
		const char *secret_id = rc->secret_id;
		struct cove_error *serr = NULL;
		cleanup_free uint8_t *data = NULL;
		size_t len = 0;
		if (cove_store_object_get(b->ctx->store, secret_id, NULL, &data, &len, &serr) == 0) {
			Modal__Client__SecretGetOrCreateRequest *sec =
				pb_unpack(&modal__client__secret_get_or_create_request__descriptor, data, len);
			for (size_t k = 0; sec && k < sec->n_env_dict; k++)
				env_set(&creds, sec->env_dict[k]->key, sec->env_dict[k]->value);
			if (sec)
				pb_free(sec);
		}
		cove_error_free(serr);
		for (size_t k = 0; k < creds.n; k++) {
			if (strncmp(creds.v[k], "REGISTRY_USERNAME=", 18) == 0)
				j->username = xstrdup(creds.v[k] + 18);
			else if (strncmp(creds.v[k], "REGISTRY_PASSWORD=", 18) == 0)
				j->password = xstrdup(creds.v[k] + 18);
		}
		strv_clear(&creds);
		if (j->username == NULL || j->password == NULL) {
			free(j->username);
			free(j->password);
			free(j->ref);
			free(j);
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "image %s: the registry secret %s must set REGISTRY_USERNAME and REGISTRY_PASSWORD",
					      ref, secret_id);
		}
		j->opts.username = j->username;
		j->opts.password = j->password;
	}
	j->log_f = open_memstream(&j->log, &j->log_len);
	build_logf(bd, "Pulling %s\n", ref);
	cove_workq_submit(b->workq, pull_work, pull_done, j);
	return 0;
}
