/* cgroups for the linux runtime. v2: one group with cpu.max/cpu.weight/memory.max/memory.low. v1: a group in
 * the memory hierarchy (limit_in_bytes, soft_limit_in_bytes, and memsw where swap accounting is on, so a
 * container cannot swap its way past the limit) and one in the cpu hierarchy (cfs quota and shares). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/cgroup.h"
#include "util/alloc.h"
#include "util/log.h"

#define ROOT "/sys/fs/cgroup"

struct cove_cgroup {
	int v2;
	char *dirs[3];
	size_t n_dirs;
	char *procs[3];
	char *mem_dir; /* where the oom verdict is read */
};

const char *
cove_cgroup_kind(void)
{
	if (access(ROOT "/cgroup.controllers", F_OK) == 0)
		return "v2";
	if (access(ROOT "/memory/memory.limit_in_bytes", F_OK) == 0 && access(ROOT "/cpu", F_OK) == 0)
		return "v1";
	return NULL;
}

static int
write_value(const char *dir, const char *file, const char *value, struct cove_error **err)
{
	cleanup_free char *path = xasprintf("%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "cgroup: open %s: %s", path, strerror(errno));
	ssize_t n = write(fd, value, strlen(value));
	int e = errno;
	close(fd);
	if (n < 0)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "cgroup: write %s to %s: %s", value, path, strerror(e));
	return 0;
}

static int
make_dir(struct cove_cgroup *cg, const char *parent, const char *id, struct cove_error **err)
{
	cleanup_free char *base = xasprintf("%s/cove", parent);
	if (mkdir(base, 0755) < 0 && errno != EEXIST)
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "cgroup: mkdir %s: %s", base, strerror(errno));
	if (cg->v2) /* let the containers below use the controllers */
		write_value(base, "cgroup.subtree_control", "+cpu +memory +pids", NULL);
	char *dir = xasprintf("%s/%s", base, id);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		int e = errno;
		free(dir);
		return cove_error_set(err, COVE_FAILED_PRECONDITION, "cgroup: mkdir %s/%s: %s", base, id, strerror(e));
	}
	cg->dirs[cg->n_dirs] = dir;
	cg->procs[cg->n_dirs] = xasprintf("%s/cgroup.procs", dir);
	cg->n_dirs++;
	return 0;
}

static int
setup_v2(struct cove_cgroup *cg, const char *id, const struct cove_container_limits *l, struct cove_error **err)
{
	write_value(ROOT, "cgroup.subtree_control", "+cpu +memory +pids", NULL);
	if (make_dir(cg, ROOT, id, err) < 0)
		return -1;
	const char *dir = cg->dirs[0];
	cg->mem_dir = xstrdup(dir);
	char v[64];
	if (l->memory_mb_max) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_mb_max << 20);
		if (write_value(dir, "memory.max", v, err) < 0)
			return -1;
		write_value(dir, "memory.swap.max", "0", NULL);
	}
	if (l->memory_mb) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_mb << 20);
		write_value(dir, "memory.low", v, NULL);
	}
	if (l->milli_cpu_max) {
		snprintf(v, sizeof(v), "%u 100000", l->milli_cpu_max * 100);
		if (write_value(dir, "cpu.max", v, err) < 0)
			return -1;
	}
	if (l->milli_cpu) {
		unsigned w = l->milli_cpu / 10; /* 1 core = 100, the default weight */
		snprintf(v, sizeof(v), "%u", w < 1 ? 1 : w > 10000 ? 10000 : w);
		write_value(dir, "cpu.weight", v, NULL);
	}
	return 0;
}

static int
setup_v1(struct cove_cgroup *cg, const char *id, const struct cove_container_limits *l, struct cove_error **err)
{
	if (make_dir(cg, ROOT "/memory", id, err) < 0)
		return -1;
	const char *mem = cg->dirs[0];
	cg->mem_dir = xstrdup(mem);
	char v[64];
	if (l->memory_mb_max) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_mb_max << 20);
		if (write_value(mem, "memory.limit_in_bytes", v, err) < 0)
			return -1;
		cleanup_free char *memsw = xasprintf("%s/memory.memsw.limit_in_bytes", mem);
		if (access(memsw, F_OK) == 0 && write_value(mem, "memory.memsw.limit_in_bytes", v, err) < 0)
			return -1;
		/* No swapping the overflow out: the limit is the limit. */
		write_value(mem, "memory.swappiness", "0", NULL);
	}
	if (l->memory_mb) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_mb << 20);
		write_value(mem, "memory.soft_limit_in_bytes", v, NULL);
	}
	if (make_dir(cg, ROOT "/cpu", id, err) < 0)
		return -1;
	const char *cpu = cg->dirs[1];
	if (l->milli_cpu_max) {
		snprintf(v, sizeof(v), "%u", l->milli_cpu_max * 100);
		if (write_value(cpu, "cpu.cfs_period_us", "100000", err) < 0 || write_value(cpu, "cpu.cfs_quota_us", v, err) < 0)
			return -1;
	}
	if (l->milli_cpu) {
		unsigned shares = l->milli_cpu * 1024 / 1000;
		snprintf(v, sizeof(v), "%u", shares < 2 ? 2 : shares);
		write_value(cpu, "cpu.shares", v, NULL);
	}
	return 0;
}

int
cove_cgroup_create(const char *id, const struct cove_container_limits *limits, struct cove_cgroup **out,
		   struct cove_error **err)
{
	static const struct cove_container_limits none;
	const char *kind = cove_cgroup_kind();
	if (kind == NULL)
		return cove_error_set(err, COVE_FAILED_PRECONDITION,
				      "cgroup: no cgroup hierarchy with the cpu and memory controllers at " ROOT);
	struct cove_cgroup *cg = xcalloc(1, sizeof(*cg));
	cg->v2 = strcmp(kind, "v2") == 0;
	int r = cg->v2 ? setup_v2(cg, id, limits ? limits : &none, err) : setup_v1(cg, id, limits ? limits : &none, err);
	if (r < 0) {
		cove_error_wrap(err, "container %s", id);
		cove_cgroup_destroy(cg);
		return -1;
	}
	*out = cg;
	return 0;
}

const char *const *
cove_cgroup_procs(const struct cove_cgroup *cg, size_t *n_procs)
{
	*n_procs = cg->n_dirs;
	return (const char *const *)cg->procs;
}

int
cove_cgroup_oom_killed(const struct cove_cgroup *cg)
{
	if (cg->mem_dir == NULL)
		return 0;
	cleanup_free char *path = xasprintf("%s/%s", cg->mem_dir, cg->v2 ? "memory.events" : "memory.oom_control");
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 0;
	char key[64];
	unsigned long long n;
	int killed = 0;
	while (fscanf(f, "%63s %llu", key, &n) == 2)
		if (strcmp(key, "oom_kill") == 0 && n > 0)
			killed = 1;
	fclose(f);
	return killed;
}

static void
sweep_dir(const char *base)
{
	DIR *d = opendir(base);
	if (d == NULL)
		return;
	time_t now = time(NULL);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *p = xasprintf("%s/%s", base, e->d_name);
		struct stat st;
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode) && now - st.st_mtime > 60)
			rmdir(p); /* fails (EBUSY) where processes remain: then it is not ours to take */
	}
	closedir(d);
}

void
cove_cgroup_sweep(void)
{
	static const char *const bases[] = {ROOT "/cove", ROOT "/memory/cove", ROOT "/cpu/cove"};
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++)
		sweep_dir(bases[i]);
}

void
cove_cgroup_destroy(struct cove_cgroup *cg)
{
	if (cg == NULL)
		return;
	for (size_t i = 0; i < cg->n_dirs; i++) {
		/* The last processes may still be leaving the group for a moment after their parent was reaped. */
		for (int tries = 0; rmdir(cg->dirs[i]) < 0 && errno == EBUSY && tries < 50; tries++) {
			struct timespec ts = {0, 2 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		free(cg->dirs[i]);
		free(cg->procs[i]);
	}
	free(cg->mem_dir);
	free(cg);
}
