/* cgroups for the linux runtime. v2: one group with cpu.max/cpu.weight/memory.max/memory.low/pids.max. v1: a
 * group in the memory hierarchy (limit_in_bytes, soft_limit_in_bytes, and memsw where swap accounting is on, so a
 * container cannot swap its way past the limit), one in the cpu hierarchy (cfs quota and shares), one in the pids
 * hierarchy (pids.max) and one in the devices hierarchy (the devices a container may open). Under v2 the devices
 * a container may open are limited by nodev mounts and the missing CAP_MKNOD alone (a device filter there is a
 * BPF program). */
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

#define MAX_DIRS 4

struct cove_cgroup {
	int v2;
	char *dirs[MAX_DIRS];
	size_t n_dirs;
	char *procs[MAX_DIRS];
	char *late_procs; /* the devices group (v1), one of procs: joined once the root filesystem is assembled */
	char *mem_dir;    /* where the oom verdict is read */
};

/* Defaults for containers that set no limit of their own (cove serve --pids-limit, --memory-limit). */
static unsigned default_pids_max = COVE_CGROUP_DEFAULT_PIDS_MAX;
static unsigned default_memory_mb_max;

void
cove_cgroup_set_defaults(unsigned pids_max, unsigned memory_mb_max)
{
	default_pids_max = pids_max;
	default_memory_mb_max = memory_mb_max;
}

unsigned
cove_cgroup_default_pids_max(void)
{
	return default_pids_max;
}

unsigned
cove_cgroup_default_memory_mb_max(void)
{
	return default_memory_mb_max;
}

/* The devices a container may open, as the OCI runtime spec's defaults and runc allow them: null, zero, full,
 * random, urandom, tty, console, ptmx and the terminals of its own devpts. */
static const char *const allowed_devices[] = {
	"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",
	"c 136:* rwm",
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
	if (cg->n_dirs >= MAX_DIRS)
		return cove_error_set(err, COVE_INTERNAL, "cgroup: too many hierarchies");
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
	if (default_pids_max) {
		snprintf(v, sizeof(v), "%u", default_pids_max);
		if (write_value(dir, "pids.max", v, err) < 0)
			return -1;
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
	if (default_pids_max && access(ROOT "/pids", F_OK) == 0) {
		if (make_dir(cg, ROOT "/pids", id, err) < 0)
			return -1;
		snprintf(v, sizeof(v), "%u", default_pids_max);
		if (write_value(cg->dirs[cg->n_dirs - 1], "pids.max", v, err) < 0)
			return -1;
	}
	if (access(ROOT "/devices", F_OK) == 0) {
		if (make_dir(cg, ROOT "/devices", id, err) < 0)
			return -1;
		const char *dev = cg->dirs[cg->n_dirs - 1];
		if (write_value(dev, "devices.deny", "a", err) < 0)
			return -1;
		for (size_t i = 0; i < sizeof(allowed_devices) / sizeof(allowed_devices[0]); i++)
			if (write_value(dev, "devices.allow", allowed_devices[i], err) < 0)
				return -1;
		cg->late_procs = cg->procs[cg->n_dirs - 1];
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
	struct cove_container_limits l = limits ? *limits : none;
	if (l.memory_mb_max == 0 && default_memory_mb_max)
		l.memory_mb_max = default_memory_mb_max;
	int r = cg->v2 ? setup_v2(cg, id, &l, err) : setup_v1(cg, id, &l, err);
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
	/* The devices group, if any, is the last: it is left out here. */
	*n_procs = cg->n_dirs - (cg->late_procs ? 1 : 0);
	return (const char *const *)cg->procs;
}

const char *
cove_cgroup_late_procs(const struct cove_cgroup *cg)
{
	return cg->late_procs;
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
	static const char *const bases[] = {ROOT "/cove", ROOT "/memory/cove", ROOT "/cpu/cove", ROOT "/pids/cove",
					    ROOT "/devices/cove"};
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
