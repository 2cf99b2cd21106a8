/* Which runtime Cove runs containers with, and what a function's container looks like under the linux
 * runtime: its image's layers, config and environment, the client package, its limits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "image/builder.h"
#include "runtime/runtime.h"
#include "sched/isolate.h"
#include "server.h"
#include "util/alloc.h"
#include "util/log.h"

/* The directory holding the modal package of `python` (its site-packages), or NULL. */
static char *
find_client_deps(const char *python)
{
	cleanup_free char *cmd = xasprintf("'%s' -c 'import modal, os; print(os.path.dirname(os.path.dirname(modal.__file__)))' "
					   "2>/dev/null",
					   python);
	FILE *p = popen(cmd, "re");
	if (p == NULL)
		return NULL;
	char line[4096];
	char *out = NULL;
	if (fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '/')
			out = xstrdup(line);
	}
	pclose(p);
	return out;
}

/* A program of Cove's next to the cove binary (a build tree), else where it is installed. */
static char *
libexec_path(const char *name)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			char *cand = xasprintf("%s/%s", exe, name);
			if (access(cand, X_OK) == 0)
				return cand;
			free(cand);
		}
	}
	return xasprintf("%s/%s", COVE_LIBEXECDIR, name);
}

char *
cove_isolate_helper_path(void)
{
	return libexec_path("cove-container");
}

/* One "kind=isolation" of --isolation: 1 gvisor, 0 linux, -1 neither. */
static int
isolation_kind(const char *s, size_t n)
{
	if (n == 6 && strncmp(s, "gvisor", 6) == 0)
		return 1;
	if (n == 5 && strncmp(s, "linux", 5) == 0)
		return 0;
	return -1;
}

int
cove_isolate_choose(const char *isolation, const char *runsc, struct cove_isolation_choice *out,
		    struct cove_error **err)
{
	memset(out, 0, sizeof(*out));
	int sb = -1, fn = 0; /* -1: gvisor where runsc is found */
	if (isolation && strcmp(isolation, "process") == 0)
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "--isolation process: use --runtime process (no isolation at all)");
	if (isolation && strchr(isolation, '=') == NULL) {
		int k = isolation_kind(isolation, strlen(isolation));
		if (k < 0)
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "--isolation %s: expected gvisor, linux, or sandboxes=K,functions=K", isolation);
		sb = fn = k;
	} else if (isolation) {
		if (isolation[strlen(isolation) - 1] == ',')
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "--isolation %s: a trailing ','", isolation);
		for (const char *p = isolation; *p;) {
			size_t n = strcspn(p, ",");
			const char *eq = memchr(p, '=', n);
			int k = eq ? isolation_kind(eq + 1, n - (size_t)(eq + 1 - p)) : -1;
			size_t kn = eq ? (size_t)(eq - p) : 0;
			if (k >= 0 && kn == 9 && strncmp(p, "sandboxes", 9) == 0)
				sb = k;
			else if (k >= 0 && kn == 9 && strncmp(p, "functions", 9) == 0)
				fn = k;
			else
				return cove_error_set(err, COVE_INVALID_ARGUMENT,
						      "--isolation %s: expected gvisor, linux, or sandboxes=K,functions=K "
						      "(K: gvisor or linux)",
						      isolation);
			p += n + (p[n] == ',');
		}
	}
	out->runsc = cove_runtime_runsc_find(runsc);
	struct cove_error *why = NULL;
	if (out->runsc == NULL && runsc)
		cove_error_set(&why, COVE_FAILED_PRECONDITION, "gVisor: --runsc %s: %s", runsc,
			       access(runsc, X_OK) < 0 ? strerror(errno) : "not usable");
	if (why || cove_runtime_runsc_check(out->runsc, &why) < 0) {
		if (sb == 1 || fn == 1) {
			*err = why;
			return cove_error_wrap(err, "--isolation gvisor");
		}
		if (sb < 0)
			out->not_gvisor = xstrdup(why->msg);
		cove_error_free(why);
		sb = 0;
	} else if (sb < 0) {
		sb = 1;
	}
	out->sandboxes_gvisor = sb;
	out->functions_gvisor = fn;
	return 0;
}

void
cove_isolation_choice_clear(struct cove_isolation_choice *c)
{
	free(c->runsc);
	free(c->not_gvisor);
	memset(c, 0, sizeof(*c));
}

/* Wrap the linux runtime in the gvisor one for the kinds that get it. */
static struct cove_runtime *
with_gvisor(struct cove_ctx *ctx, const struct cove_runtime_callbacks *cb, struct cove_runtime *rt,
	    const struct cove_isolation_choice *ch, struct cove_error **err)
{
	if (!ch->sandboxes_gvisor && !ch->functions_gvisor)
		return rt;
	cleanup_free char *root = xasprintf("%s/runsc", ctx->cfg.state_dir);
	cleanup_free char *relay = libexec_path("cove-pty-relay");
	struct cove_runsc_opts o = {
		.runsc = ch->runsc,
		.state_root = root,
		.relay = relay,
		.workloads = (ch->sandboxes_gvisor ? 1u << COVE_WORKLOAD_SANDBOX : 0) |
			     (ch->functions_gvisor ? 1u << COVE_WORKLOAD_FUNCTION : 0),
	};
	return cove_runtime_runsc_new(ctx->base, cb, rt, &o, err);
}

/* The CA bundle containers get: the one asked for, else the host's (so that they trust what Cove's host
 * trusts, e.g. a proxy's CA on a corporate network), or none. */
const char *
cove_isolate_ca_bundle(const struct cove_ctx *ctx)
{
	const char *c = ctx->cfg.ca_bundle;
	if (c)
		return strcmp(c, "none") == 0 ? NULL : c;
	return access(COVE_CA_PATH, R_OK) == 0 ? COVE_CA_PATH : NULL;
}

struct cove_runtime *
cove_sched_runtime_new(struct cove_ctx *ctx, const struct cove_runtime_callbacks *cb, struct cove_error **err)
{
	const char *want = ctx->cfg.runtime;
	if (want && strcmp(want, "process") != 0 && strcmp(want, "linux") != 0) {
		cove_error_set(err, COVE_INVALID_ARGUMENT, "unknown runtime %s (linux or process)", want);
		return NULL;
	}
	struct cove_isolation_choice ch;
	if (cove_isolate_choose(ctx->cfg.isolation, ctx->cfg.runsc, &ch, err) < 0)
		return NULL;
	if (want == NULL || strcmp(want, "linux") == 0) {
		cleanup_free char *helper = cove_isolate_helper_path();
		struct cove_error *why = NULL;
		struct cove_runtime *rt = cove_runtime_linux_new(ctx->base, cb, helper, &why);
		char *deps = NULL;
		if (rt) {
			deps = ctx->cfg.client_deps ? xstrdup(ctx->cfg.client_deps) : find_client_deps(ctx->cfg.python);
			if (deps == NULL) {
				cove_error_set(&why, COVE_FAILED_PRECONDITION,
					       "the linux runtime mounts the modal client into containers, and %s has no modal "
					       "package (pass --client-deps DIR)",
					       ctx->cfg.python);
				rt->ops->free(rt);
				rt = NULL;
			}
		}
		if (rt) {
			cleanup_free char *image_dir =
				ctx->cfg.image_dir ? xstrdup(ctx->cfg.image_dir) : xasprintf("%s/images", ctx->cfg.state_dir);
			struct cove_builder_opts o = {
				.image_dir = image_dir,
				.registry_mirror = ctx->cfg.registry_mirror,
				.insecure = ctx->cfg.insecure_registries,
				.n_insecure = ctx->cfg.n_insecure_registries,
				.debian_mirror = ctx->cfg.debian_mirror,
				.ca_bundle = cove_isolate_ca_bundle(ctx),
			};
			const char *cg = cove_runtime_linux_cgroup_kind(rt);
			struct cove_runtime *top = with_gvisor(ctx, cb, rt, &ch, err);
			if (top == NULL) {
				rt->ops->free(rt);
				free(deps);
				cove_error_free(why);
				cove_isolation_choice_clear(&ch);
				return NULL;
			}
			ctx->runtime = top; /* the builder runs its build steps with it (under linux) */
			ctx->builder = cove_builder_new(ctx, &o, err);
			if (ctx->builder == NULL) {
				top->ops->free(top);
				ctx->runtime = NULL;
				free(deps);
				cove_error_free(why);
				cove_isolation_choice_clear(&ch);
				return NULL;
			}
			ctx->client_deps = deps;
			log_info("runtime: linux (namespaces, overlayfs, cgroups %s); images in %s; client from %s", cg,
				 image_dir, deps);
			log_info("isolation: sandboxes under %s, functions under %s%s%s%s", ch.sandboxes_gvisor ? "gvisor" : "linux",
				 ch.functions_gvisor ? "gvisor" : "linux", ch.runsc && top != rt ? " (runsc " : "",
				 ch.runsc && top != rt ? ch.runsc : "", ch.runsc && top != rt ? ")" : "");
			if (ch.not_gvisor)
				log_info("isolation: sandboxes are not under gVisor: %s", ch.not_gvisor);
			cove_isolation_choice_clear(&ch);
			return top;
		}
		if (want || ((ch.sandboxes_gvisor || ch.functions_gvisor) && ctx->cfg.isolation)) {
			cove_isolation_choice_clear(&ch);
			if (want == NULL)
				cove_error_wrap(&why, "--isolation gvisor needs the linux runtime");
			*err = why;
			return NULL;
		}
		log_info("runtime: process (no isolation: %s)", why->msg);
		cove_error_free(why);
	}
	cove_isolation_choice_clear(&ch);
	return cove_runtime_process_new(ctx->base, cb, err);
}

int
cove_isolate_prepare(struct cove_ctx *ctx, const Modal__Client__Function *def, const char *task_dir,
		     struct cove_isolated *out, struct cove_error **err)
{
	cleanup_free char *what = xasprintf("function %s", def->function_name);
	return cove_isolate_prepare_image(ctx, what, def->image_id, def->resources, task_dir, out, err);
}

int
cove_isolate_prepare_image(struct cove_ctx *ctx, const char *what, const char *image_id,
			   const Modal__Client__Resources *res, const char *task_dir, struct cove_isolated *out,
			   struct cove_error **err)
{
	memset(out, 0, sizeof(*out));
	const Modal__Client__GPUConfig *gpu = res ? res->gpu_config : NULL;
	if (gpu && (gpu->count > 0 || (gpu->gpu_type && *gpu->gpu_type)) && access("/dev/nvidiactl", F_OK) < 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "%s asks for a GPU (%s%s%u) but this host has no NVIDIA GPU (/dev/nvidiactl is "
				      "missing)",
				      what, gpu->gpu_type && *gpu->gpu_type ? gpu->gpu_type : "any", " x",
				      gpu->count ? gpu->count : 1);
	if (gpu && (gpu->count > 0 || (gpu->gpu_type && *gpu->gpu_type)))
		return cove_error_set(err, COVE_UNIMPLEMENTED,
				      "%s asks for a GPU: passing NVIDIA devices into containers is not supported by Cove's "
				      "linux runtime yet",
				      what);
	if (cove_builder_image(ctx->builder, image_id, &out->image, err) < 0)
		return cove_error_wrap(err, "%s", what);
	size_t n = out->image->n_layers;
	out->layers = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out->layers[i] = out->image->layers[n - 1 - i];
	out->scratch = xasprintf("%s/fs", task_dir);
	out->upper = xasprintf("%s/fs/upper", task_dir);
	out->rootfs.layers_dir = cove_builder_layers_dir(ctx->builder);
	out->rootfs.layers = (const char *const *)out->layers;
	out->rootfs.n_layers = n;
	out->rootfs.scratch = out->scratch;
	out->rootfs.user = out->image->user;
	out->rootfs.block_network = 0; /* functions dial Cove's API over the host's loopback (unless blocked) */
	if (res) {
		out->limits.milli_cpu = res->milli_cpu;
		out->limits.milli_cpu_max = res->milli_cpu_max;
		out->limits.memory_mb = res->memory_mb;
		out->limits.memory_mb_max = res->memory_mb_max;
		out->limits.disk_mb = res->ephemeral_disk_mb;
	}
	return 0;
}

void
cove_isolate_clear(struct cove_isolated *iso)
{
	cove_image_info_free(iso->image);
	free(iso->layers);
	free(iso->scratch);
	free(iso->upper);
	free(iso->ports);
	free(iso->host_ports);
	memset(iso, 0, sizeof(*iso));
}
