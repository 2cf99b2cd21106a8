/* libFuzzer target: the OCI config writer (src/runtime/oci_spec.c), fed what a container's description holds
 * that users choose (the command, environment, working directory, hostname, mount paths, limits). Whatever it
 * accepts must come out as JSON that parses, with every argument and variable in place; what it refuses must
 * say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/oci_spec.h"
#include "util/json.h"

#define MAX_FIELDS 64

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* NUL-separated fields: root, cwd, hostname, then up to 8 mount source/target pairs (a field "--" ends
	 * them), then argv (until "--"), then env. The first byte picks flags and limits. */
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	char *copy = malloc(size);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	char *fields[MAX_FIELDS];
	size_t n = 0;
	for (char *p = copy; n < MAX_FIELDS && p < copy + size - 1; p += strlen(p) + 1)
		fields[n++] = p;
	size_t i = 0;
	const char *root = i < n ? fields[i++] : "/r";
	const char *cwd = i < n ? fields[i++] : NULL;
	const char *hostname = i < n ? fields[i++] : NULL;
	struct cove_container_mount mounts[8];
	size_t n_mounts = 0;
	while (i + 1 < n && n_mounts < 8 && strcmp(fields[i], "--") != 0) {
		mounts[n_mounts] = (struct cove_container_mount){.source = fields[i], .target = fields[i + 1],
								 .read_only = (int)(n_mounts & 1)};
		n_mounts++;
		i += 2;
	}
	if (i < n && strcmp(fields[i], "--") == 0)
		i++;
	char *argv[MAX_FIELDS + 1], *envp[MAX_FIELDS + 1];
	size_t argc = 0, envc = 0;
	while (i < n && strcmp(fields[i], "--") != 0)
		argv[argc++] = fields[i++];
	argv[argc] = NULL;
	if (i < n)
		i++;
	while (i < n)
		envp[envc++] = fields[i++];
	envp[envc] = NULL;
	struct cove_container_limits limits = {.milli_cpu = flags * 7u, .milli_cpu_max = flags * 13u,
					       .memory_mb = flags, .memory_mb_max = flags * 3u};
	static const char *const allow[] = {"read", "write"};
	struct cove_oci_spec s = {
		.process = {.argv = argv, .envp = envp, .cwd = (flags & 1) ? cwd : NULL, .uid = flags & 2 ? 1000 : 0,
			    .terminal = flags & 4, .rows = flags, .cols = flags},
		.root = root,
		.hostname = (flags & 8) ? hostname : NULL,
		.mounts = mounts,
		.n_mounts = n_mounts,
		.net_host = flags & 16,
		.limits = (flags & 32) ? &limits : NULL,
		.pids_max = flags,
		.cgroups_path = (flags & 64) ? cwd : NULL,
		.seccomp_allow = (flags & 128) ? allow : NULL,
		.n_seccomp_allow = 2,
	};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct cove_error *err = NULL;
	int r = cove_oci_write_config(f, &s, &err);
	fclose(f);
	if (r < 0) {
		if (err == NULL || err->msg == NULL || err->msg[0] == '\0')
			abort(); /* a refusal says why */
		cove_error_free(err);
	} else {
		struct json_doc *doc = json_parse(buf, len, NULL, 0);
		if (doc == NULL)
			abort(); /* not JSON */
		const struct json_value *proc = json_get(json_root(doc), "process");
		const struct json_value *a = proc ? json_get(proc, "args") : NULL;
		const struct json_value *e = proc ? json_get(proc, "env") : NULL;
		if (a == NULL || a->n != argc || e == NULL || e->n != envc)
			abort(); /* an argument or variable lost or split */
		const struct json_value *m = json_get(json_root(doc), "mounts");
		if (m == NULL || m->n != 6 + n_mounts)
			abort();
		json_free(doc);
	}
	free(buf);
	free(copy);
	return 0;
}
