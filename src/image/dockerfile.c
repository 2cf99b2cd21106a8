/* Dockerfile command parsing: keywords, flags, exec (JSON) vs shell form, ENV/ARG pairs, and variable
 * expansion. Every input comes from a client, so nothing here trusts lengths or nesting. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image/dockerfile.h"
#include "util/alloc.h"
#include "util/json.h"

static const struct {
	const char *kw;
	enum cove_df_op op;
} keywords[] = {
	{"FROM", COVE_DF_FROM},       {"RUN", COVE_DF_RUN},         {"COPY", COVE_DF_COPY},
	{"ADD", COVE_DF_COPY},        {"ENV", COVE_DF_ENV},         {"ARG", COVE_DF_ARG},
	{"WORKDIR", COVE_DF_WORKDIR}, {"USER", COVE_DF_USER},       {"SHELL", COVE_DF_SHELL},
	{"CMD", COVE_DF_CMD},         {"ENTRYPOINT", COVE_DF_ENTRYPOINT}, {"LABEL", COVE_DF_NOOP},
	{"EXPOSE", COVE_DF_NOOP},     {"VOLUME", COVE_DF_NOOP},     {"STOPSIGNAL", COVE_DF_NOOP},
	{"HEALTHCHECK", COVE_DF_NOOP}, {"MAINTAINER", COVE_DF_NOOP}, {"ONBUILD", COVE_DF_NOOP},
};

size_t
cove_dockerfile_lines(char *const *lines, size_t n, char ***out)
{
	char **v = NULL;
	size_t nv = 0;
	char *cur = NULL;
	size_t cur_len = 0;
	for (size_t i = 0; i < n; i++) {
		const char *l = lines[i];
		while (*l == ' ' || *l == '\t')
			l++;
		if (cur == NULL && (*l == '\0' || *l == '#'))
			continue;
		if (cur && *l == '#') /* a comment inside a continued command */
			continue;
		size_t len = strlen(l);
		while (len && (l[len - 1] == '\r' || l[len - 1] == ' ' || l[len - 1] == '\t'))
			len--;
		int cont = len && l[len - 1] == '\\';
		if (cont)
			len--;
		cur = xrealloc(cur, cur_len + len + 2);
		if (cur_len)
			cur[cur_len++] = ' ';
		memcpy(cur + cur_len, l, len);
		cur_len += len;
		cur[cur_len] = '\0';
		if (!cont) {
			v = xrealloc(v, (nv + 1) * sizeof(char *));
			v[nv++] = cur;
			cur = NULL;
			cur_len = 0;
		}
	}
	if (cur) {
		v = xrealloc(v, (nv + 1) * sizeof(char *));
		v[nv++] = cur;
	}
	*out = v;
	return nv;
}

static void
add_arg(struct cove_df_cmd *c, char *s)
{
	c->args = xrealloc(c->args, (c->n_args + 1) * sizeof(char *));
	c->args[c->n_args++] = s;
}

/* A JSON array of strings, or -1 (not exec form). */
static int
parse_json_array(const char *text, struct cove_df_cmd *c)
{
	if (*text != '[')
		return -1;
	char why[64];
	struct json_doc *doc = json_parse(text, strlen(text), why, sizeof(why));
	if (doc == NULL)
		return -1;
	const struct json_value *v = json_root(doc);
	int ok = v->type == JSON_ARRAY;
	for (size_t i = 0; ok && i < v->n; i++)
		ok = v->items[i]->type == JSON_STRING;
	if (ok) {
		for (size_t i = 0; i < v->n; i++)
			add_arg(c, xstrdup(v->items[i]->string));
		c->json = 1;
	}
	json_free(doc);
	return ok ? 0 : -1;
}

/* Split on whitespace, honouring "double" and 'single' quotes and backslash escapes. */
static int
split_words(const char *s, struct cove_df_cmd *c)
{
	while (*s) {
		while (isspace((unsigned char)*s))
			s++;
		if (*s == '\0')
			break;
		size_t cap = strlen(s) + 1, n = 0;
		char *w = xmalloc(cap);
		char q = 0;
		while (*s && (q || !isspace((unsigned char)*s))) {
			if (q == 0 && (*s == '"' || *s == '\'')) {
				q = *s++;
				continue;
			}
			if (q && *s == q) {
				q = 0;
				s++;
				continue;
			}
			if (*s == '\\' && q != '\'' && s[1]) {
				s++;
			}
			w[n++] = *s++;
		}
		w[n] = '\0';
		if (q) {
			free(w);
			return -1;
		}
		add_arg(c, w);
	}
	return 0;
}

/* Split on unquoted whitespace, keeping quotes and backslashes (cove_dockerfile_word processes them). */
static int
split_words_raw(const char *s, struct cove_df_cmd *c)
{
	while (*s) {
		while (isspace((unsigned char)*s))
			s++;
		if (*s == '\0')
			break;
		const char *start = s;
		char q = 0;
		while (*s && (q || !isspace((unsigned char)*s))) {
			if (q == 0 && (*s == '"' || *s == '\''))
				q = *s;
			else if (q && *s == q)
				q = 0;
			else if (*s == '\\' && q != '\'' && s[1])
				s++;
			s++;
		}
		if (q)
			return -1;
		add_arg(c, xstrndup(start, (size_t)(s - start)));
	}
	return 0;
}

static int
parse_pairs(const char *text, struct cove_df_cmd *c, int is_arg, struct cove_error **err)
{
	struct cove_df_cmd words = {0};
	if (split_words_raw(text, &words) < 0) {
		cove_df_cmd_clear(&words);
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s %s: unbalanced quotes", c->keyword, text);
	}
	if (words.n_args == 0) {
		cove_df_cmd_clear(&words);
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s needs at least one argument", c->keyword);
	}
	/* Legacy "ENV NAME value with spaces". */
	if (!is_arg && strchr(words.args[0], '=') == NULL) {
		const char *rest = text;
		while (*rest && !isspace((unsigned char)*rest))
			rest++;
		while (isspace((unsigned char)*rest))
			rest++;
		if (*rest == '\0') {
			cove_df_cmd_clear(&words);
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "ENV %s: missing a value", text);
		}
		add_arg(c, xstrdup(words.args[0]));
		add_arg(c, xstrdup(rest));
		cove_df_cmd_clear(&words);
		return 0;
	}
	for (size_t i = 0; i < words.n_args; i++) {
		char *eq = strchr(words.args[i], '=');
		if (eq == NULL && !is_arg) {
			cove_df_cmd_clear(&words);
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "ENV %s: expected NAME=value", text);
		}
		if (eq == words.args[i]) {
			cove_df_cmd_clear(&words);
			return cove_error_set(err, COVE_INVALID_ARGUMENT, "%s %s: empty variable name", c->keyword, text);
		}
		if (eq) {
			add_arg(c, xstrndup(words.args[i], (size_t)(eq - words.args[i])));
			add_arg(c, xstrdup(eq + 1));
		} else {
			add_arg(c, xstrdup(words.args[i]));
			add_arg(c, NULL);
		}
	}
	cove_df_cmd_clear(&words);
	return 0;
}

int
cove_dockerfile_parse(const char *line, struct cove_df_cmd *out, struct cove_error **err)
{
	struct cove_df_cmd c = {0};
	while (isspace((unsigned char)*line))
		line++;
	size_t kwlen = 0;
	while (line[kwlen] && !isspace((unsigned char)line[kwlen]))
		kwlen++;
	size_t k;
	for (k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++)
		if (strlen(keywords[k].kw) == kwlen && strncasecmp(line, keywords[k].kw, kwlen) == 0)
			break;
	if (k == sizeof(keywords) / sizeof(keywords[0]))
		return cove_error_set(err, COVE_INVALID_ARGUMENT, "unknown Dockerfile instruction: %.*s", (int)(kwlen > 40 ? 40 : kwlen),
				      line);
	c.op = keywords[k].op;
	c.keyword = xstrdup(keywords[k].kw);
	const char *rest = line + kwlen;
	while (isspace((unsigned char)*rest))
		rest++;
	/* Flags (--from=, --chmod=, --chown=, --link, --mount=...). */
	while (rest[0] == '-' && rest[1] == '-' && (c.op == COVE_DF_COPY || c.op == COVE_DF_RUN || c.op == COVE_DF_FROM)) {
		const char *end = rest;
		while (*end && !isspace((unsigned char)*end))
			end++;
		char *flag = xstrndup(rest, (size_t)(end - rest));
		if (strncmp(flag, "--from=", 7) == 0 && c.op == COVE_DF_COPY) {
			free(c.from);
			c.from = xstrdup(flag + 7);
		} else if (strncmp(flag, "--chmod=", 8) == 0 && c.op == COVE_DF_COPY) {
			free(c.chmod);
			c.chmod = xstrdup(flag + 8);
		} else if (strncmp(flag, "--chown=", 8) != 0 && strcmp(flag, "--link") != 0 &&
			   strncmp(flag, "--platform=", 11) != 0) {
			cove_error_set(err, COVE_INVALID_ARGUMENT, "%s: unsupported flag %s", c.keyword, flag);
			free(flag);
			cove_df_cmd_clear(&c);
			return -1;
		}
		free(flag);
		rest = end;
		while (isspace((unsigned char)*rest))
			rest++;
	}
	c.text = xstrdup(rest);
	size_t tl = strlen(c.text);
	while (tl && isspace((unsigned char)c.text[tl - 1]))
		c.text[--tl] = '\0';
	int r = 0;
	switch (c.op) {
	case COVE_DF_RUN:
	case COVE_DF_CMD:
	case COVE_DF_ENTRYPOINT:
		if (parse_json_array(c.text, &c) < 0)
			add_arg(&c, xstrdup(c.text));
		if (c.op == COVE_DF_RUN && (c.n_args == 0 || (!c.json && *c.text == '\0')))
			r = cove_error_set(err, COVE_INVALID_ARGUMENT, "RUN needs a command");
		break;
	case COVE_DF_SHELL:
		if (parse_json_array(c.text, &c) < 0 || c.n_args == 0)
			r = cove_error_set(err, COVE_INVALID_ARGUMENT, "SHELL needs a JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"]");
		break;
	case COVE_DF_COPY:
		if (parse_json_array(c.text, &c) < 0 && split_words(c.text, &c) < 0)
			r = cove_error_set(err, COVE_INVALID_ARGUMENT, "%s %s: unbalanced quotes", c.keyword, c.text);
		else if (c.n_args < 2)
			r = cove_error_set(err, COVE_INVALID_ARGUMENT, "%s needs a source and a destination: %s %s", c.keyword,
					   c.keyword, c.text);
		break;
	case COVE_DF_FROM:
		if (split_words(c.text, &c) < 0 || (c.n_args != 1 && !(c.n_args == 3 && strcasecmp(c.args[1], "AS") == 0)))
			r = cove_error_set(err, COVE_INVALID_ARGUMENT, "FROM expects an image reference: FROM %s", c.text);
		else if (c.n_args == 3) {
			free(c.args[1]);
			c.args[1] = c.args[2];
			c.n_args = 2;
		}
		break;
	case COVE_DF_ENV:
	case COVE_DF_ARG:
		r = parse_pairs(c.text, &c, c.op == COVE_DF_ARG, err);
		break;
	case COVE_DF_WORKDIR:
	case COVE_DF_USER:
		if (*c.text == '\0')
			r = cove_error_set(err, COVE_INVALID_ARGUMENT, "%s needs an argument", c.keyword);
		else
			add_arg(&c, xstrdup(c.text));
		break;
	case COVE_DF_NOOP:
		break;
	}
	if (r < 0) {
		cove_df_cmd_clear(&c);
		return -1;
	}
	*out = c;
	return 0;
}

void
cove_df_cmd_clear(struct cove_df_cmd *c)
{
	for (size_t i = 0; i < c->n_args; i++)
		free(c->args[i]);
	free(c->args);
	free(c->keyword);
	free(c->text);
	free(c->from);
	free(c->chmod);
	memset(c, 0, sizeof(*c));
}

static const char *
lookup(const char *name, size_t len, char *const *vars, size_t n_vars)
{
	for (size_t i = n_vars; i-- > 0;)
		if (strncmp(vars[i], name, len) == 0 && vars[i][len] == '=')
			return vars[i] + len + 1;
	return NULL;
}

struct sbuf {
	char *p;
	size_t n, cap;
};

static void
sb_add(struct sbuf *b, const char *s, size_t len)
{
	if (b->n + len + 1 > b->cap) {
		b->cap = (b->n + len + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, len);
	b->n += len;
	b->p[b->n] = '\0';
}

/* Expand the $NAME or ${...} at *s (which points at the '$') into b; advance *s past it. */
static void
expand_dollar(const char **sp, struct sbuf *b, char *const *vars, size_t n_vars)
{
	const char *s = *sp;
	if (s[1] == '{') {
		const char *end = strchr(s + 2, '}');
		if (end == NULL) {
			sb_add(b, s, strlen(s));
			*sp = s + strlen(s);
			return;
		}
		const char *name = s + 2;
		size_t nl = 0;
		while (name + nl < end && (isalnum((unsigned char)name[nl]) || name[nl] == '_'))
			nl++;
		const char *val = lookup(name, nl, vars, n_vars);
		const char *mod = name + nl;
		if (mod + 1 < end && mod[0] == ':' && (mod[1] == '-' || mod[1] == '+')) {
			const char *word = mod + 2;
			size_t wl = (size_t)(end - word);
			if (mod[1] == '-')
				val && *val ? sb_add(b, val, strlen(val)) : sb_add(b, word, wl);
			else if (val && *val)
				sb_add(b, word, wl);
		} else if (val) {
			sb_add(b, val, strlen(val));
		}
		*sp = end + 1;
		return;
	}
	size_t nl = 0;
	while (isalnum((unsigned char)s[1 + nl]) || s[1 + nl] == '_')
		nl++;
	if (nl == 0) {
		sb_add(b, s, 1);
		*sp = s + 1;
		return;
	}
	const char *val = lookup(s + 1, nl, vars, n_vars);
	if (val)
		sb_add(b, val, strlen(val));
	*sp = s + 1 + nl;
}

char *
cove_dockerfile_expand(const char *s, char *const *vars, size_t n_vars)
{
	struct sbuf b = {0};
	sb_add(&b, "", 0);
	while (*s) {
		if (s[0] == '\\' && s[1] == '$') {
			sb_add(&b, "$", 1);
			s += 2;
		} else if (*s == '$') {
			expand_dollar(&s, &b, vars, n_vars);
		} else {
			sb_add(&b, s++, 1);
		}
	}
	return b.p;
}

char *
cove_dockerfile_word(const char *s, char *const *vars, size_t n_vars)
{
	struct sbuf b = {0};
	sb_add(&b, "", 0);
	char q = 0;
	while (*s) {
		if (q == '\'') {
			if (*s == '\'')
				q = 0;
			else
				sb_add(&b, s, 1);
			s++;
		} else if (*s == '\\' && s[1]) {
			/* In double quotes only \", \\ and \$ are escapes; elsewhere any character is. */
			if (q == '"' && s[1] != '"' && s[1] != '\\' && s[1] != '$')
				sb_add(&b, s, 2);
			else
				sb_add(&b, s + 1, 1);
			s += 2;
		} else if (*s == '$') {
			expand_dollar(&s, &b, vars, n_vars);
		} else if (q == 0 && (*s == '"' || *s == '\'')) {
			q = *s++;
		} else if (q == '"' && *s == '"') {
			q = 0;
			s++;
		} else {
			sb_add(&b, s++, 1);
		}
	}
	return b.p;
}
