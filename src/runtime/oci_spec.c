/* config.json for an OCI runtime (runtime-spec v1.0.2, https://github.com/opencontainers/runtime-spec/blob/
 * v1.0.2/config.md). Where a default comes from is said beside it: `runc spec` (runc's libcontainer/specconv
 * Example()), Docker (moby's oci/defaults.go and oci/caps/defaults.go), or systemd. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/oci_spec.h"
#include "util/alloc.h"
#include "util/json.h"

/* Docker's default capabilities (moby oci/caps/defaults.go), less CAP_NET_RAW (with it, a container can open
 * AF_PACKET sockets and read other containers' traffic on a shared interface) and CAP_MKNOD, as the linux
 * runtime's containers (container_init.c). */
const char *const cove_oci_default_caps[] = {
	"CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",     "CAP_FOWNER",
	"CAP_SETGID",  "CAP_SETUID",       "CAP_SETFCAP",    "CAP_SETPCAP",          "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL",      "CAP_AUDIT_WRITE", NULL,
};

/* `runc spec`'s maskedPaths and readonlyPaths. */
static const char *const masked_paths[] = {
	"/proc/acpi",        "/proc/asound",   "/proc/kcore",       "/proc/keys",  "/proc/latency_stats",
	"/proc/timer_list",  "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", NULL,
};
static const char *const readonly_paths[] = {
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
};

/* `runc spec`'s mounts, with Docker's 64 MiB /dev/shm. */
struct default_mount {
	const char *dest, *type, *source;
	const char *const options[8];
};
static const struct default_mount default_mounts[] = {
	{"/proc", "proc", "proc", {"nosuid", "noexec", "nodev", NULL}},
	{"/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k", NULL}},
	{"/dev/pts", "devpts", "devpts", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5", NULL}},
	{"/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k", NULL}},
	{"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev", NULL}},
	{"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro", NULL}},
};

/* RLIMIT_NOFILE as systemd (since v240) gives every service: soft 1024 for select(), hard 512 Ki for those that
 * raise it. `runc spec` has 1024 for both, which Python servers outgrow. */
#define NOFILE_SOFT 1024
#define NOFILE_HARD 524288

static void
str(FILE *f, const char *s)
{
	json_write_string(f, s);
}

static void
str_array(FILE *f, const char *const *v)
{
	fputc('[', f);
	for (size_t i = 0; v && v[i]; i++) {
		if (i)
			fputc(',', f);
		str(f, v[i]);
	}
	fputc(']', f);
}

static int
absolute(const char *what, const char *path, struct cove_error **err)
{
	if (path == NULL || path[0] != '/')
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "OCI config: %s must be an absolute path, got %s", what,
				      path ? path : "(none)");
	return 0;
}

static int
check_process(const struct cove_oci_process *p, struct cove_error **err)
{
	if (p->argv == NULL || p->argv[0] == NULL || p->argv[0][0] == '\0')
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "OCI config: the process has no command");
	if (p->cwd && absolute("the process's cwd", p->cwd, err) < 0)
		return -1;
	for (char *const *e = p->envp; e && *e; e++)
		if (strchr(*e, '=') == NULL || **e == '=')
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "OCI config: environment entry %s is not NAME=value",
					      *e);
	return 0;
}

static void
write_process(FILE *f, const struct cove_oci_process *p)
{
	fprintf(f, "{\"terminal\":%s,", p->terminal ? "true" : "false");
	if (p->terminal && p->rows && p->cols)
		fprintf(f, "\"consoleSize\":{\"height\":%u,\"width\":%u},", p->rows, p->cols);
	fprintf(f, "\"user\":{\"uid\":%u,\"gid\":%u,\"additionalGids\":[%u]},", (unsigned)p->uid, (unsigned)p->gid,
		(unsigned)p->gid);
	fputs("\"args\":", f);
	str_array(f, (const char *const *)p->argv);
	fputs(",\"env\":", f);
	str_array(f, (const char *const *)p->envp);
	fputs(",\"cwd\":", f);
	str(f, p->cwd ? p->cwd : "/");
	/* Docker gives root all five sets and anyone else none but the bounding set (moby#42553): a non-root
	 * process gains capabilities only through a file's, which no_new_privs stops as well. */
	fputs(",\"capabilities\":{\"bounding\":", f);
	str_array(f, cove_oci_default_caps);
	static const char *const none[] = {NULL};
	const char *const *held = p->uid == 0 ? cove_oci_default_caps : none;
	fputs(",\"effective\":", f);
	str_array(f, held);
	fputs(",\"permitted\":", f);
	str_array(f, held);
	fputs(",\"inheritable\":[],\"ambient\":[]}", f);
	fprintf(f, ",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"hard\":%u,\"soft\":%u}]", NOFILE_HARD, NOFILE_SOFT);
	fputs(",\"noNewPrivileges\":true}", f);
}

static int
finish(FILE *f, struct cove_error **err)
{
	if (fflush(f) != 0 || ferror(f))
		return cove_error_set_errno(err, errno ? errno : EIO, "OCI config: write");
	return 0;
}

int
cove_oci_write_process(FILE *f, const struct cove_oci_process *p, struct cove_error **err)
{
	if (check_process(p, err) < 0)
		return -1;
	write_process(f, p);
	return finish(f, err);
}

void
cove_oci_write_seccomp(FILE *f, const char *const *allow, size_t n, int errno_ret)
{
	fprintf(f, "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":%d,", errno_ret ? errno_ret : EPERM);
	fputs("\"architectures\":[\"SCMP_ARCH_X86_64\",\"SCMP_ARCH_X86\",\"SCMP_ARCH_X32\"],\"syscalls\":[", f);
	if (n) {
		fputs("{\"names\":[", f);
		for (size_t i = 0; i < n; i++) {
			if (i)
				fputc(',', f);
			str(f, allow[i]);
		}
		fputs("],\"action\":\"SCMP_ACT_ALLOW\"}", f);
	}
	fputs("]}", f);
}

static void
write_mount(FILE *f, const char *dest, const char *type, const char *source, const char *const *options)
{
	fputs("{\"destination\":", f);
	str(f, dest);
	fputs(",\"type\":", f);
	str(f, type);
	fputs(",\"source\":", f);
	str(f, source);
	fputs(",\"options\":", f);
	str_array(f, options);
	fputc('}', f);
}

static void
write_resources(FILE *f, const struct cove_oci_spec *s)
{
	const struct cove_container_limits *l = s->limits;
	fputs("\"resources\":{", f);
	/* No device but the defaults (runc's allowlist: null, zero, full, random, urandom, tty, ptmx, pts). */
	fputs("\"devices\":[{\"allow\":false,\"access\":\"rwm\"}]", f);
	if (l && (l->memory_mb_max || l->memory_mb)) {
		fputs(",\"memory\":{", f);
		const char *sep = "";
		if (l->memory_mb_max) {
			fprintf(f, "\"limit\":%llu", (unsigned long long)l->memory_mb_max << 20);
			sep = ",";
		}
		if (l->memory_mb)
			fprintf(f, "%s\"reservation\":%llu", sep, (unsigned long long)l->memory_mb << 20);
		fputc('}', f);
	}
	if (l && (l->milli_cpu || l->milli_cpu_max)) {
		fputs(",\"cpu\":{", f);
		const char *sep = "";
		/* As the linux runtime: 1024 shares per core requested, a CFS quota per 100 ms period for the limit. */
		if (l->milli_cpu) {
			unsigned long long shares = (unsigned long long)l->milli_cpu * 1024 / 1000;
			fprintf(f, "\"shares\":%llu", shares < 2 ? 2 : shares);
			sep = ",";
		}
		if (l->milli_cpu_max)
			fprintf(f, "%s\"quota\":%llu,\"period\":100000", sep, (unsigned long long)l->milli_cpu_max * 100);
		fputc('}', f);
	}
	if (s->pids_max)
		fprintf(f, ",\"pids\":{\"limit\":%u}", s->pids_max);
	fputc('}', f);
}

int
cove_oci_write_config(FILE *f, const struct cove_oci_spec *s, struct cove_error **err)
{
	if (absolute("the root file system", s->root, err) < 0 || check_process(&s->process, err) < 0)
		return -1;
	for (size_t i = 0; i < s->n_mounts; i++)
		if (absolute("a mount's source", s->mounts[i].source, err) < 0 ||
		    absolute("a mount's target", s->mounts[i].target, err) < 0)
			return -1;
	if (s->cgroups_path && absolute("cgroupsPath", s->cgroups_path, err) < 0)
		return -1;
	fprintf(f, "{\"ociVersion\":\"%s\",\"process\":", COVE_OCI_VERSION);
	write_process(f, &s->process);
	fputs(",\"root\":{\"path\":", f);
	str(f, s->root);
	fputs(",\"readonly\":false}", f);
	if (s->hostname) {
		fputs(",\"hostname\":", f);
		str(f, s->hostname);
	}
	fputs(",\"mounts\":[", f);
	for (size_t i = 0; i < sizeof(default_mounts) / sizeof(default_mounts[0]); i++) {
		const struct default_mount *m = &default_mounts[i];
		if (i)
			fputc(',', f);
		write_mount(f, m->dest, m->type, m->source, m->options);
	}
	for (size_t i = 0; i < s->n_mounts; i++) {
		const struct cove_container_mount *m = &s->mounts[i];
		const char *const rw[] = {"rbind", "nosuid", "nodev", "rw", NULL};
		const char *const ro[] = {"rbind", "nosuid", "nodev", "ro", NULL};
		fputc(',', f);
		write_mount(f, m->target, "bind", m->source, m->read_only ? ro : rw);
	}
	fputs("],\"linux\":{\"namespaces\":[", f);
	static const char *const ns[] = {"pid", "ipc", "uts", "mount", "cgroup", NULL};
	for (size_t i = 0; ns[i]; i++)
		fprintf(f, "%s{\"type\":\"%s\"}", i ? "," : "", ns[i]);
	if (!s->net_host && s->net_path) {
		fputs(",{\"type\":\"network\",\"path\":", f);
		str(f, s->net_path);
		fputc('}', f);
	} else if (!s->net_host) {
		fputs(",{\"type\":\"network\"}", f);
	}
	fputs("],", f);
	if (s->cgroups_path) {
		fputs("\"cgroupsPath\":", f);
		str(f, s->cgroups_path);
		fputc(',', f);
	}
	write_resources(f, s);
	fputs(",\"maskedPaths\":", f);
	str_array(f, masked_paths);
	fputs(",\"readonlyPaths\":", f);
	str_array(f, readonly_paths);
	if (s->seccomp_allow) {
		fputs(",\"seccomp\":", f);
		cove_oci_write_seccomp(f, s->seccomp_allow, s->n_seccomp_allow, 0);
	}
	fputs("}}\n", f);
	return finish(f, err);
}

int
cove_oci_write_bundle(const char *dir, const struct cove_oci_spec *spec, struct cove_error **err)
{
	cleanup_free char *tmp = xasprintf("%s/config.json.tmp", dir);
	cleanup_free char *path = xasprintf("%s/config.json", dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return cove_error_set_errno(err, errno, "OCI bundle: create %s", tmp);
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return cove_error_set_errno(err, errno, "OCI bundle: %s", tmp);
	}
	int r = cove_oci_write_config(f, spec, err);
	if (fclose(f) != 0 && r == 0)
		r = cove_error_set_errno(err, errno, "OCI bundle: write %s", tmp);
	if (r == 0 && rename(tmp, path) < 0)
		r = cove_error_set_errno(err, errno, "OCI bundle: rename %s", tmp);
	if (r < 0)
		unlink(tmp);
	return r;
}
