/* The commands of the sandbox filesystem helper (`modal-sandbox-fs-tools '<json>'`), as the client writes
 * them (modal/_utils/sandbox_fs_utils.py): {"ReadFile": {"path": ...}}, {"WriteFile": ...}, {"ListFiles": ...},
 * {"MakeDirectory": {"path", "parents"}}, {"Remove": {"path", "recursive"}}, {"Stat": ...} and
 * {"Watch": {"path", "recursive", "filter": [names] | null, "timeout_secs": n | null}}. */
#ifndef COVE_SANDBOX_FS_COMMAND_H
#define COVE_SANDBOX_FS_COMMAND_H

#include <stddef.h>

#include "util/json.h"

enum fs_op { FS_READ, FS_WRITE, FS_LIST, FS_MKDIR, FS_REMOVE, FS_STAT, FS_WATCH };

/* Watch event kinds (the names the client filters by). */
enum {
	FS_EV_ACCESS = 1 << 0,
	FS_EV_CREATE = 1 << 1,
	FS_EV_MODIFY = 1 << 2,
	FS_EV_REMOVE = 1 << 3,
	FS_EV_RENAME = 1 << 4, /* "Rename", "RenameFrom", "RenameTo" (the client reports them as Modify) */
	FS_EV_UNKNOWN = 1 << 5,
	FS_EV_ALL = (1 << 6) - 1,
};

struct fs_command {
	enum fs_op op;
	const char *path; /* absolute; borrowed from the parsed document */
	int flag;         /* MakeDirectory: parents (default true); Remove, Watch: recursive (default false) */
	unsigned filter;  /* Watch: FS_EV_* to report */
	double timeout_s; /* Watch: < 0 for none */
};

/* Decode the command in text. 0, or -1 with the reason in err. The document (freed by the caller with
 * json_free) backs the strings of *cmd. */
int fs_command_parse(const char *text, size_t len, struct json_doc **doc, struct fs_command *cmd, char *err,
		     size_t err_len);

#endif
