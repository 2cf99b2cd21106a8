/* The OCI config writer: what it writes parses as JSON and holds the process, mounts, namespaces, limits and the
 * runc/Docker defaults; descriptions an OCI runtime would refuse are refused here, naming what is wrong. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "runtime/oci_spec.h"
#include "util/alloc.h"
#include "util/json.h"

static char *
write_config(const struct cove_oci_spec *s, struct cove_error **err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int r = cove_oci_write_config(f, s, err);
	fclose(f);
	if (r < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static const struct json_value *
get(const struct json_value *v, const char *path)
{
	/* "a.b.c" through objects */
	char key[64];
	while (v && *path) {
		size_t n = strcspn(path, ".");
		snprintf(key, sizeof(key), "%.*s", (int)n, path);
		v = json_get(v, key);
		path += n + (path[n] == '.');
	}
	return v;
}

static int
array_has(const struct json_value *a, const char *s)
{
	for (size_t i = 0; a && i < a->n; i++)
		if (a->items[i]->type == JSON_STRING && strcmp(a->items[i]->string, s) == 0)
			return 1;
	return 0;
}

static const struct json_value *
mount_at(const struct json_value *root, const char *dest)
{
	const struct json_value *m = json_get(root, "mounts");
	for (size_t i = 0; m && i < m->n; i++) {
		const struct json_value *d = json_get(m->items[i], "destination");
		if (d && strcmp(d->string, dest) == 0)
			return m->items[i];
	}
	return NULL;
}

static void
test_full_description(void **state)
{
	(void)state;
	char *argv[] = {"python", "-c", "print(\"hi\")\n", NULL};
	char *envp[] = {"PATH=/usr/bin:/bin", "QUOTE=a\"b\\c", NULL};
	struct cove_container_mount mounts[] = {
		{.source = "/srv/vol", .target = "/data", .read_only = 0},
		{.source = "/usr/lib/cove/tools", .target = "/__modal/.bin/tools", .read_only = 1},
	};
	struct cove_container_limits limits = {.milli_cpu = 500, .milli_cpu_max = 2000, .memory_mb = 64,
					       .memory_mb_max = 128};
	struct cove_oci_spec s = {
		.process = {.argv = argv, .envp = envp, .cwd = "/work", .uid = 1000, .gid = 100, .terminal = 1,
			    .rows = 24, .cols = 80},
		.root = "/state/tasks/ta-1/fs/rootfs",
		.hostname = "ta-1",
		.mounts = mounts,
		.n_mounts = 2,
		.limits = &limits,
		.pids_max = 4096,
		.cgroups_path = "/cove/ta-1",
	};
	struct cove_error *err = NULL;
	char *text = write_config(&s, &err);
	assert_non_null(text);
	char why[128];
	struct json_doc *doc = json_parse(text, strlen(text), why, sizeof(why));
	if (doc == NULL)
		fail_msg("not JSON (%s): %s", why, text);
	const struct json_value *r = json_root(doc);
	assert_string_equal(get(r, "ociVersion")->string, "1.0.2");
	const struct json_value *args = get(r, "process.args");
	assert_int_equal(args->n, 3);
	assert_string_equal(args->items[2]->string, "print(\"hi\")\n");
	assert_true(array_has(get(r, "process.env"), "QUOTE=a\"b\\c"));
	assert_string_equal(get(r, "process.cwd")->string, "/work");
	assert_int_equal((int)get(r, "process.user.uid")->number, 1000);
	assert_int_equal((int)get(r, "process.user.gid")->number, 100);
	assert_true(get(r, "process.terminal")->boolean);
	assert_int_equal((int)get(r, "process.consoleSize.height")->number, 24);
	assert_true(get(r, "process.noNewPrivileges")->boolean);
	/* Docker's capabilities without CAP_NET_RAW; a non-root user holds none of them. */
	const struct json_value *bounding = get(r, "process.capabilities.bounding");
	assert_true(array_has(bounding, "CAP_CHOWN"));
	assert_true(array_has(bounding, "CAP_NET_BIND_SERVICE"));
	assert_false(array_has(bounding, "CAP_NET_RAW"));
	assert_false(array_has(bounding, "CAP_SYS_ADMIN"));
	assert_int_equal(get(r, "process.capabilities.effective")->n, 0);
	assert_int_equal(get(r, "process.capabilities.permitted")->n, 0);
	assert_string_equal(get(r, "root.path")->string, "/state/tasks/ta-1/fs/rootfs");
	assert_string_equal(get(r, "hostname")->string, "ta-1");
	/* The default mounts, then the binds with nosuid and nodev. */
	const struct json_value *proc = mount_at(r, "/proc");
	assert_non_null(proc);
	assert_string_equal(json_get(proc, "type")->string, "proc");
	assert_true(array_has(json_get(mount_at(r, "/sys"), "options"), "ro"));
	assert_non_null(mount_at(r, "/dev/pts"));
	assert_non_null(mount_at(r, "/dev/shm"));
	assert_non_null(mount_at(r, "/dev/mqueue"));
	const struct json_value *data = mount_at(r, "/data");
	assert_string_equal(json_get(data, "source")->string, "/srv/vol");
	assert_string_equal(json_get(data, "type")->string, "bind");
	assert_true(array_has(json_get(data, "options"), "nosuid"));
	assert_true(array_has(json_get(data, "options"), "nodev"));
	assert_true(array_has(json_get(data, "options"), "rw"));
	assert_true(array_has(json_get(mount_at(r, "/__modal/.bin/tools"), "options"), "ro"));
	/* Namespaces: a network namespace of its own unless the host's is asked for. */
	const struct json_value *ns = get(r, "linux.namespaces");
	int net = 0, pid = 0, cgroup = 0;
	for (size_t i = 0; i < ns->n; i++) {
		const char *t = json_get(ns->items[i], "type")->string;
		net |= strcmp(t, "network") == 0;
		pid |= strcmp(t, "pid") == 0;
		cgroup |= strcmp(t, "cgroup") == 0;
	}
	assert_true(net && pid && cgroup);
	assert_string_equal(get(r, "linux.cgroupsPath")->string, "/cove/ta-1");
	assert_int_equal((long long)get(r, "linux.resources.memory.limit")->number, 128ll << 20);
	assert_int_equal((long long)get(r, "linux.resources.memory.reservation")->number, 64ll << 20);
	assert_int_equal((long long)get(r, "linux.resources.cpu.quota")->number, 200000);
	assert_int_equal((long long)get(r, "linux.resources.cpu.period")->number, 100000);
	assert_int_equal((long long)get(r, "linux.resources.cpu.shares")->number, 512);
	assert_int_equal((long long)get(r, "linux.resources.pids.limit")->number, 4096);
	assert_true(array_has(get(r, "linux.maskedPaths"), "/proc/kcore"));
	assert_true(array_has(get(r, "linux.maskedPaths"), "/proc/keys"));
	assert_true(array_has(get(r, "linux.maskedPaths"), "/sys/firmware"));
	assert_true(array_has(get(r, "linux.readonlyPaths"), "/proc/sys"));
	assert_true(array_has(get(r, "linux.readonlyPaths"), "/proc/sysrq-trigger"));
	assert_null(get(r, "linux.seccomp"));
	json_free(doc);
	free(text);
}

static void
test_root_host_network_and_seccomp(void **state)
{
	(void)state;
	char *argv[] = {"/bin/true", NULL};
	static const char *const allow[] = {"read", "write", "exit_group"};
	struct cove_oci_spec s = {
		.process = {.argv = argv},
		.root = "/r",
		.net_host = 1,
		.seccomp_allow = allow,
		.n_seccomp_allow = 3,
	};
	struct cove_error *err = NULL;
	char *text = write_config(&s, &err);
	assert_non_null(text);
	struct json_doc *doc = json_parse(text, strlen(text), NULL, 0);
	assert_non_null(doc);
	const struct json_value *r = json_root(doc);
	assert_true(array_has(get(r, "process.capabilities.effective"), "CAP_CHOWN"));
	assert_false(array_has(get(r, "process.capabilities.effective"), "CAP_NET_RAW"));
	assert_string_equal(get(r, "process.cwd")->string, "/");
	assert_false(get(r, "process.terminal")->boolean);
	const struct json_value *ns = get(r, "linux.namespaces");
	for (size_t i = 0; i < ns->n; i++)
		assert_string_not_equal(json_get(ns->items[i], "type")->string, "network");
	assert_null(get(r, "linux.resources.memory"));
	assert_null(get(r, "linux.resources.pids"));
	assert_string_equal(get(r, "linux.seccomp.defaultAction")->string, "SCMP_ACT_ERRNO");
	const struct json_value *sys = get(r, "linux.seccomp.syscalls");
	assert_int_equal(sys->n, 1);
	assert_true(array_has(json_get(sys->items[0], "names"), "exit_group"));
	assert_string_equal(json_get(sys->items[0], "action")->string, "SCMP_ACT_ALLOW");
	json_free(doc);
	free(text);
}

static void
test_refused(void **state)
{
	(void)state;
	char *argv[] = {"sh", NULL};
	char *empty[] = {"", NULL};
	char *bad_env[] = {"NOEQUALS", NULL};
	struct cove_container_mount rel = {.source = "/a", .target = "data"};
	struct {
		struct cove_oci_spec s;
		const char *says;
	} cases[] = {
		{{.process = {.argv = argv}, .root = "rootfs"}, "root file system"},
		{{.process = {.argv = argv}}, "root file system"},
		{{.process = {.argv = empty}, .root = "/r"}, "no command"},
		{{.process = {.argv = argv, .cwd = "work"}, .root = "/r"}, "cwd"},
		{{.process = {.argv = argv, .envp = bad_env}, .root = "/r"}, "NOEQUALS"},
		{{.process = {.argv = argv}, .root = "/r", .mounts = &rel, .n_mounts = 1}, "mount's target"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cove_error *err = NULL;
		char *text = write_config(&cases[i].s, &err);
		assert_null(text);
		assert_non_null(err);
		assert_int_equal(err->code, COVE_INVALID_ARGUMENT);
		if (strstr(err->msg, cases[i].says) == NULL)
			fail_msg("case %zu: %s does not name %s", i, err->msg, cases[i].says);
		cove_error_free(err);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_description),
		cmocka_unit_test(test_root_host_network_and_seccomp),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
