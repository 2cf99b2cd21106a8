/* Decoding the filesystem helper's commands (see fs_command.h). */
#include "sandbox/fs_command.h"

#include <stdio.h>
#include <string.h>

static int
failf(char *err, size_t err_len, const char *why, const char *what)
{
	if (err && err_len)
		snprintf(err, err_len, "%s%s", why, what ? what : "");
	return -1;
}

static const struct {
	const char *name;
	enum fs_op op;
} ops[] = {
	{"ReadFile", FS_READ}, {"WriteFile", FS_WRITE}, {"ListFiles", FS_LIST}, {"MakeDirectory", FS_MKDIR},
	{"Remove", FS_REMOVE}, {"Stat", FS_STAT},       {"Watch", FS_WATCH},
};

static const struct {
	const char *name;
	unsigned bit;
} events[] = {
	{"Access", FS_EV_ACCESS},     {"Create", FS_EV_CREATE},   {"Modify", FS_EV_MODIFY},
	{"Remove", FS_EV_REMOVE},     {"Rename", FS_EV_RENAME},   {"RenameFrom", FS_EV_RENAME},
	{"RenameTo", FS_EV_RENAME},   {"Unknown", FS_EV_UNKNOWN},
};

static int
get_bool(const struct json_value *args, const char *key, int dflt, int *out, char *err, size_t err_len)
{
	const struct json_value *v = json_get(args, key);
	if (v == NULL || v->type == JSON_NULL) {
		*out = dflt;
		return 0;
	}
	if (v->type != JSON_BOOL)
		return failf(err, err_len, "not a boolean: ", key);
	*out = v->boolean;
	return 0;
}

int
fs_command_parse(const char *text, size_t len, struct json_doc **doc, struct fs_command *cmd, char *err,
		 size_t err_len)
{
	memset(cmd, 0, sizeof(*cmd));
	*doc = json_parse(text, len, err, err_len);
	if (*doc == NULL)
		return -1;
	const struct json_value *root = json_root(*doc);
	if (root->type != JSON_OBJECT || root->n != 1)
		return failf(err, err_len, "a command is an object with one member", NULL);
	size_t i = 0;
	while (i < sizeof(ops) / sizeof(ops[0]) && strcmp(ops[i].name, root->keys[0]) != 0)
		i++;
	if (i == sizeof(ops) / sizeof(ops[0]))
		return failf(err, err_len, "unknown command ", root->keys[0]);
	cmd->op = ops[i].op;
	const struct json_value *args = root->items[0];
	if (args->type != JSON_OBJECT)
		return failf(err, err_len, "the command's arguments are not an object: ", root->keys[0]);
	const struct json_value *path = json_get(args, "path");
	if (path == NULL || path->type != JSON_STRING || path->string[0] != '/')
		return failf(err, err_len, "path must be an absolute path", NULL);
	cmd->path = path->string;
	cmd->filter = FS_EV_ALL;
	cmd->timeout_s = -1;
	switch (cmd->op) {
	case FS_MKDIR:
		return get_bool(args, "parents", 1, &cmd->flag, err, err_len);
	case FS_REMOVE:
		return get_bool(args, "recursive", 0, &cmd->flag, err, err_len);
	case FS_WATCH: {
		if (get_bool(args, "recursive", 0, &cmd->flag, err, err_len) < 0)
			return -1;
		const struct json_value *t = json_get(args, "timeout_secs");
		if (t && t->type != JSON_NULL) {
			if (t->type != JSON_NUMBER || !(t->number >= 0) || t->number > 1e9)
				return failf(err, err_len, "timeout_secs must be a number of seconds or null", NULL);
			cmd->timeout_s = t->number;
		}
		const struct json_value *f = json_get(args, "filter");
		if (f && f->type != JSON_NULL) {
			if (f->type != JSON_ARRAY)
				return failf(err, err_len, "filter must be a list of event types or null", NULL);
			cmd->filter = 0;
			for (size_t k = 0; k < f->n; k++) {
				const struct json_value *e = f->items[k];
				size_t j = 0;
				if (e->type != JSON_STRING)
					return failf(err, err_len, "filter entries are event type names", NULL);
				while (j < sizeof(events) / sizeof(events[0]) && strcmp(events[j].name, e->string) != 0)
					j++;
				if (j == sizeof(events) / sizeof(events[0]))
					return failf(err, err_len, "unknown event type ", e->string);
				cmd->filter |= events[j].bit;
			}
		}
		return 0;
	}
	default:
		return 0;
	}
}
