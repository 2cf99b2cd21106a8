/* Web endpoint URLs and routing: host labels, the URLs handed to clients, the table from host to function,
 * and proxy auth tokens. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gateway/gateway_internal.h"
#include "sched/sched.h"
#include "server.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/pb.h"

#define LABEL_MAX 63
#define DEFAULT_ENV "main"
#define HOST_SUFFIX ".localhost"
#define PROXY_TOKEN_KEY "proxy-token/"

/* ---- labels and URLs ---- */

/* Lower-case [a-z0-9] runs joined by single "-", no "-" at either end. */
static void
normalize_into(char *out, size_t cap, size_t *len, const char *s)
{
	int dash = *len > 0 && out[*len - 1] != '-';
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = (unsigned char)tolower(*p);
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			if (dash && *len > 0 && out[*len - 1] != '-' && *len + 1 < cap)
				out[(*len)++] = '-';
			dash = 0;
			if (*len + 1 < cap)
				out[(*len)++] = (char)c;
		} else {
			dash = 1;
		}
	}
	out[*len] = '\0';
}

static int
is_web(const Modal__Client__WebhookConfig *wc)
{
	return wc && wc->type != MODAL__CLIENT__WEBHOOK_TYPE__WEBHOOK_TYPE_UNSPECIFIED;
}

/* The app's name as a label part: its deployed name, else its description (the App's name). */
static const char *
app_label_name(const struct cove_app *app)
{
	if (app->name && app->name[0])
		return app->name;
	if (app->description && app->description[0])
		return app->description;
	return "app";
}

/* `modal run` and `modal serve` create EPHEMERAL (or DETACHED) apps; `modal deploy` creates an INITIALIZING
 * one, named when it is published. */
static int
app_is_ephemeral(const struct cove_app *app)
{
	if (app->name && app->name[0])
		return 0;
	return app->state == MODAL__CLIENT__APP_STATE__APP_STATE_EPHEMERAL ||
	       app->state == MODAL__CLIENT__APP_STATE__APP_STATE_DETACHED ||
	       app->state == MODAL__CLIENT__APP_STATE__APP_STATE_DETACHED_DISCONNECTED;
}

/* The host label of an endpoint. fn_name: the function's name, or "<Class>.*" with method; *truncated set when
 * it had to be cut to 63 characters. */
static void
make_label(const struct cove_app *app, const char *fn_name, const char *method, const Modal__Client__WebhookConfig *wc,
	   char out[LABEL_MAX + 1], int *truncated)
{
	char buf[1024];
	size_t len = 0;
	buf[0] = '\0';
	if (app->env && app->env[0] && strcmp(app->env, DEFAULT_ENV) != 0) {
		normalize_into(buf, sizeof(buf), &len, app->env);
		if (len + 2 < sizeof(buf)) {
			buf[len++] = '-';
			buf[len++] = '-';
			buf[len] = '\0';
		}
	}
	size_t base = len;
	if (wc->requested_suffix && wc->requested_suffix[0]) {
		normalize_into(buf, sizeof(buf), &len, wc->requested_suffix);
	} else {
		normalize_into(buf, sizeof(buf), &len, app_label_name(app));
		char fn[512];
		snprintf(fn, sizeof(fn), "-%s", fn_name);
		size_t fl = strlen(fn);
		if (fl >= 2 && strcmp(fn + fl - 2, ".*") == 0)
			fn[fl - 2] = '\0';
		normalize_into(buf, sizeof(buf), &len, fn);
		if (method) {
			char m[300];
			snprintf(m, sizeof(m), "-%s", method);
			normalize_into(buf, sizeof(buf), &len, m);
		}
	}
	if (len == base)
		normalize_into(buf, sizeof(buf), &len, "web");
	if (app_is_ephemeral(app)) {
		char sfx[300];
		snprintf(sfx, sizeof(sfx), "-%s", wc->ephemeral_suffix && wc->ephemeral_suffix[0] ? wc->ephemeral_suffix : "dev");
		normalize_into(buf, sizeof(buf), &len, sfx);
	}
	*truncated = 0;
	if (len > LABEL_MAX) {
		/* Cut, and keep labels of different long names apart with a hash of the whole. */
		char hex[65];
		cove_sha256_hex(buf, len, hex);
		size_t keep = LABEL_MAX - 7;
		while (keep > 0 && buf[keep - 1] == '-')
			keep--;
		snprintf(buf + keep, sizeof(buf) - keep, "-%.6s", hex);
		len = strlen(buf);
		*truncated = 1;
	}
	memcpy(out, buf, len + 1);
}

static char *
label_url(const struct cove_gateway *gw, const char *label)
{
	return xasprintf("%s%s%s", gw->url_head, label, gw->url_tail);
}

/* Replace each {port} of t with the web port (malloc'd). */
static char *
with_port(const char *t, int port)
{
	size_t cap = strlen(t) + 1, len = 0;
	char *out = xmalloc(cap);
	for (const char *p = t; *p;) {
		if (strncmp(p, "{port}", 6) == 0) {
			char num[16];
			int n = snprintf(num, sizeof(num), "%d", port);
			cap += (size_t)n;
			out = xrealloc(out, cap);
			memcpy(out + len, num, (size_t)n);
			len += (size_t)n;
			p += 6;
		} else {
			out[len++] = *p++;
		}
	}
	out[len] = '\0';
	return out;
}

static int
host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

int
cove_route_set_template(struct cove_gateway *gw, const char *tmpl, struct cove_error **err)
{
	cleanup_free char *t = tmpl ? with_port(tmpl, gw->port) : xasprintf("%s/{label}", gw->base_url);
	for (char *p = t; *p && *p != '{'; p++)
		*p = (char)tolower((unsigned char)*p);
	size_t scheme = strncmp(t, "http://", 7) == 0 ? 7 : strncmp(t, "https://", 8) == 0 ? 8 : 0;
	char *at = strstr(t, "{label}");
	if (scheme == 0 || at == NULL || strstr(at + 7, "{label}") || strchr(at + 7, '{'))
		return cove_error_set(err, COVE_INVALID_ARGUMENT,
				      "web URL template '%s': it must be an http:// or https:// URL with {label} once "
				      "(and {port} where the web port goes)",
				      tmpl);
	char *head = xstrndup(t, (size_t)(at - t));
	const char *tail = at + 7;
	char *suffix = NULL, *path_host = NULL;
	if (at == t + scheme) {
		/* Host form: "{label}.<domain>", then at most a port and a "/". */
		size_t n = 0;
		while (host_char(tail[n]))
			n++;
		const char *rest = tail + n;
		if (rest[0] == ':')
			for (rest++; *rest >= '0' && *rest <= '9'; rest++)
				;
		if (n < 2 || tail[0] != '.' || tail[n - 1] == '.' || !(rest[0] == '\0' || strcmp(rest, "/") == 0)) {
			free(head);
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "web URL template '%s': after {label} comes the rest of the host name "
					      "(\".apps.example.com\"), then at most a port",
					      tmpl);
		}
		suffix = xstrndup(tail, n);
	} else {
		/* Path form: "<host>[:port]/{label}", nothing after. */
		const char *h = t + scheme;
		size_t n = 0;
		while (h + n < at && (host_char(h[n]) || h[n] == '[' || h[n] == ']' || h[n] == ':'))
			n++;
		if (n == 0 || h + n + 1 != at || h[n] != '/' || *tail != '\0') {
			free(head);
			return cove_error_set(err, COVE_INVALID_ARGUMENT,
					      "web URL template '%s': {label} is the first label of the host "
					      "(http://{label}.example.com) or the whole path (http://example.com/{label})",
					      tmpl);
		}
		const char *colon = h[0] == '[' ? strstr(h, "]") : memchr(h, ':', n);
		size_t hl = colon && colon < h + n ? (size_t)(colon - h) + (h[0] == '[') : n;
		path_host = xstrndup(h, hl);
	}
	free(gw->url_head);
	free(gw->url_tail);
	free(gw->host_suffix);
	free(gw->path_host);
	gw->url_head = head;
	gw->url_tail = xstrdup(tail);
	gw->host_suffix = suffix;
	gw->path_host = path_host;
	return 0;
}

/* The routing key of one of our label URLs ("<label>.localhost", whatever the template), or NULL. Caller frees. */
static char *
url_label_key(const struct cove_gateway *gw, const char *url)
{
	size_t hl = strlen(gw->url_head), tl = strlen(gw->url_tail), n = url ? strlen(url) : 0;
	if (n <= hl + tl || strncmp(url, gw->url_head, hl) != 0 || strcmp(url + n - tl, gw->url_tail) != 0)
		return NULL;
	size_t ll = n - hl - tl;
	if (ll > LABEL_MAX || memchr(url + hl, '/', ll) || memchr(url + hl, '.', ll))
		return NULL;
	return xasprintf("%.*s" HOST_SUFFIX, (int)ll, url + hl);
}

/* A custom domain as a host name: lower-case, no port, no trailing dot; NULL if it is not a host name. */
static char *
domain_host(const char *name)
{
	size_t n = strlen(name);
	while (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return NULL;
	char *h = xstrndup(name, n);
	for (char *p = h; *p; p++) {
		*p = (char)tolower((unsigned char)*p);
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.')) {
			free(h);
			return NULL;
		}
	}
	return h;
}

/* Replace a string field of an unpacked message (freeing the old one unless it is the shared default). */
static void
set_str(char **field, const char *value)
{
	if (*field && *field != (char *)protobuf_c_empty_string)
		free(*field);
	*field = xstrdup(value);
}

static void
set_url_info(Modal__Client__WebUrlInfo **field, int truncated)
{
	pb_free(*field);
	Modal__Client__WebUrlInfo init = MODAL__CLIENT__WEB_URL_INFO__INIT;
	Modal__Client__WebUrlInfo *info = xmalloc(sizeof(*info));
	*info = init;
	info->truncated = truncated;
	*field = info;
}

static void
set_domains(struct cove_gateway *gw, const Modal__Client__WebhookConfig *wc, size_t *n_field,
	    Modal__Client__CustomDomainInfo ***field)
{
	for (size_t i = 0; i < *n_field; i++)
		pb_free((*field)[i]);
	free(*field);
	*field = NULL;
	*n_field = 0;
	if (wc->n_custom_domains == 0)
		return;
	*field = xcalloc(wc->n_custom_domains, sizeof(**field));
	for (size_t i = 0; i < wc->n_custom_domains; i++) {
		cleanup_free char *host = wc->custom_domains[i] ? domain_host(wc->custom_domains[i]->name) : NULL;
		if (host == NULL)
			continue;
		Modal__Client__CustomDomainInfo init = MODAL__CLIENT__CUSTOM_DOMAIN_INFO__INIT;
		Modal__Client__CustomDomainInfo *d = xmalloc(sizeof(*d));
		*d = init;
		d->url = xasprintf("http://%s:%d", host, gw->port);
		(*field)[(*n_field)++] = d;
	}
}

char *
cove_gateway_precreate_url(struct cove_gateway *gw, const struct cove_app *app,
			   Modal__Client__FunctionPrecreateRequest *req)
{
	char label[LABEL_MAX + 1];
	int truncated;
	for (size_t i = 0; i < req->n_method_definitions; i++) {
		Modal__Client__FunctionPrecreateRequest__MethodDefinitionsEntry *e = req->method_definitions[i];
		if (e == NULL || e->value == NULL || !is_web(e->value->webhook_config))
			continue;
		make_label(app, req->function_name, e->key, e->value->webhook_config, label, &truncated);
		cleanup_free char *url = label_url(gw, label);
		set_str(&e->value->web_url, url);
	}
	if (!is_web(req->webhook_config))
		return NULL;
	make_label(app, req->function_name, NULL, req->webhook_config, label, &truncated);
	return label_url(gw, label);
}

void
cove_gateway_assign_urls(struct cove_gateway *gw, const struct cove_app *app, Modal__Client__Function *def)
{
	char label[LABEL_MAX + 1];
	int truncated;
	gw->routes_dirty = 1;
	for (size_t i = 0; i < def->n_method_definitions; i++) {
		Modal__Client__Function__MethodDefinitionsEntry *e = def->method_definitions[i];
		if (e == NULL || e->value == NULL || !is_web(e->value->webhook_config))
			continue;
		Modal__Client__MethodDefinition *m = e->value;
		make_label(app, def->function_name, e->key, m->webhook_config, label, &truncated);
		cleanup_free char *url = label_url(gw, label);
		set_str(&m->web_url, url);
		set_url_info(&m->web_url_info, truncated);
		set_domains(gw, m->webhook_config, &m->n_custom_domain_info, &m->custom_domain_info);
	}
	if (!is_web(def->webhook_config))
		return;
	make_label(app, def->function_name, NULL, def->webhook_config, label, &truncated);
	cleanup_free char *url = label_url(gw, label);
	set_str(&def->web_url, url);
	set_url_info(&def->web_url_info, truncated);
	set_domains(gw, def->webhook_config, &def->n_custom_domain_info, &def->custom_domain_info);
}

/* The handle metadata clients get (FunctionGet, layouts) carries the URLs too. */
static void
refresh_meta(struct cove_function *fn)
{
	Modal__Client__FunctionHandleMetadata *meta = fn->meta;
	const Modal__Client__Function *def = fn->def;
	if (meta == NULL || def == NULL)
		return;
	if (is_web(def->webhook_config))
		set_str(&meta->web_url, def->web_url);
	for (size_t i = 0; i < meta->n_method_handle_metadata; i++) {
		Modal__Client__FunctionHandleMetadata__MethodHandleMetadataEntry *me = meta->method_handle_metadata[i];
		if (me == NULL || me->value == NULL || me->key == NULL)
			continue;
		for (size_t j = 0; j < def->n_method_definitions; j++) {
			const Modal__Client__Function__MethodDefinitionsEntry *de = def->method_definitions[j];
			if (de && de->value && de->key && strcmp(de->key, me->key) == 0 && is_web(de->value->webhook_config))
				set_str(&me->value->web_url, de->value->web_url);
		}
	}
}

void
cove_gateway_restore(struct cove_gateway *gw)
{
	const struct cove_map *apps = cove_sched_apps(gw->ctx->sched);
	size_t it = 0;
	void *v;
	while (cove_map_next(apps, &it, NULL, &v)) {
		struct cove_app *app = v;
		size_t jt = 0;
		void *fv;
		while (cove_map_next(&app->functions, &jt, NULL, &fv)) {
			struct cove_function *fn = fv;
			if (fn->def == NULL)
				continue;
			cove_gateway_assign_urls(gw, app, fn->def);
			refresh_meta(fn);
		}
	}
	gw->routes_dirty = 1;
}

/* ---- routing ---- */

static void
route_put(struct cove_gateway *gw, const char *host, const struct cove_function *fn, const char *method)
{
	struct cove_route_entry *old = cove_map_get(&gw->routes, host);
	if (old && old->app_created_at > fn->app->created_at)
		return; /* the label belongs to a newer app ("label stolen") */
	struct cove_route_entry *e = xcalloc(1, sizeof(*e));
	e->function_id = xstrdup(fn->id);
	e->method = method ? xstrdup(method) : NULL;
	e->app_created_at = fn->app->created_at;
	old = cove_map_put(&gw->routes, host, e);
	if (old) {
		free(old->function_id);
		free(old->method);
		free(old);
	}
}

/* The host of one of our URLs: "<label>.localhost" from "http://<label>.localhost:<port>", or a custom
 * domain from "http://<domain>:<port>". NULL if the URL is not one of ours. Caller frees. */
static char *
url_host(const char *url)
{
	if (url == NULL || strncmp(url, "http://", 7) != 0)
		return NULL;
	const char *h = url + 7;
	const char *colon = strchr(h, ':');
	if (colon == NULL || colon == h)
		return NULL;
	return xstrndup(h, (size_t)(colon - h));
}

static void
route_add_function(struct cove_gateway *gw, struct cove_function *fn)
{
	const Modal__Client__Function *def = fn->def;
	if (is_web(def->webhook_config)) {
		cleanup_free char *host = url_label_key(gw, def->web_url);
		if (host)
			route_put(gw, host, fn, NULL);
		for (size_t i = 0; i < def->n_custom_domain_info; i++) {
			cleanup_free char *d = url_host(def->custom_domain_info[i]->url);
			if (d)
				route_put(gw, d, fn, NULL);
		}
	}
	for (size_t i = 0; i < def->n_method_definitions; i++) {
		const Modal__Client__Function__MethodDefinitionsEntry *e = def->method_definitions[i];
		if (e == NULL || e->value == NULL || e->key == NULL || !is_web(e->value->webhook_config))
			continue;
		cleanup_free char *host = url_label_key(gw, e->value->web_url);
		if (host)
			route_put(gw, host, fn, e->key);
		for (size_t j = 0; j < e->value->n_custom_domain_info; j++) {
			cleanup_free char *d = url_host(e->value->custom_domain_info[j]->url);
			if (d)
				route_put(gw, d, fn, e->key);
		}
	}
}

void
cove_route_clear(struct cove_gateway *gw)
{
	size_t it = 0;
	void *v;
	while (cove_map_next(&gw->routes, &it, NULL, &v)) {
		struct cove_route_entry *e = v;
		free(e->function_id);
		free(e->method);
		free(e);
	}
	cove_map_clear(&gw->routes);
}

static int
app_live(const struct cove_app *app)
{
	return !app->stopping && !app->done;
}

static void
routes_rebuild(struct cove_gateway *gw)
{
	cove_route_clear(gw);
	const struct cove_map *apps = cove_sched_apps(gw->ctx->sched);
	size_t it = 0;
	void *v;
	while (cove_map_next(apps, &it, NULL, &v)) {
		struct cove_app *app = v;
		if (!app_live(app))
			continue;
		size_t jt = 0;
		void *fv;
		while (cove_map_next(&app->functions, &jt, NULL, &fv)) {
			struct cove_function *fn = fv;
			if (fn->def && fn->parent == NULL)
				route_add_function(gw, fn);
		}
	}
	gw->routes_dirty = 0;
}

/* The endpoint's config: the function's, or its method's. */
static const Modal__Client__WebhookConfig *
endpoint_config(const struct cove_function *fn, const char *method)
{
	if (method == NULL)
		return is_web(fn->def->webhook_config) ? fn->def->webhook_config : NULL;
	for (size_t i = 0; i < fn->def->n_method_definitions; i++) {
		const Modal__Client__Function__MethodDefinitionsEntry *e = fn->def->method_definitions[i];
		if (e && e->value && e->key && strcmp(e->key, method) == 0)
			return is_web(e->value->webhook_config) ? e->value->webhook_config : NULL;
	}
	return NULL;
}

static int
try_lookup(struct cove_gateway *gw, const char *host, struct cove_route *out)
{
	const struct cove_route_entry *e = cove_map_get(&gw->routes, host);
	if (e == NULL)
		return 0;
	struct cove_function *fn = cove_sched_function_get(gw->ctx->sched, e->function_id);
	if (fn == NULL || fn->def == NULL || !app_live(fn->app))
		return -1;
	const Modal__Client__WebhookConfig *wc = endpoint_config(fn, e->method);
	if (wc == NULL)
		return -1;
	out->fn = fn;
	out->method = e->method;
	out->webhook = wc;
	out->label[0] = '\0';
	size_t n = strlen(host);
	size_t sl = strlen(HOST_SUFFIX);
	if (n > sl && n - sl < sizeof(out->label) && strcmp(host + n - sl, HOST_SUFFIX) == 0) {
		memcpy(out->label, host, n - sl);
		out->label[n - sl] = '\0';
	}
	return 1;
}

int
cove_route_lookup(struct cove_gateway *gw, const char *host, struct cove_route *out)
{
	if (gw->routes_dirty)
		routes_rebuild(gw);
	/* A host of the template's form ("<label>.apps.example.com") is the label's, whatever custom domain of
	 * that name an app may claim: the template's names belong to the labels. */
	cleanup_free char *key = NULL;
	size_t n = strlen(host), sl = gw->host_suffix ? strlen(gw->host_suffix) : 0;
	if (sl && n > sl && n - sl <= LABEL_MAX && strcmp(host + n - sl, gw->host_suffix) == 0 &&
	    memchr(host, '.', n - sl) == NULL)
		key = xasprintf("%.*s" HOST_SUFFIX, (int)(n - sl), host);
	const char *k = key ? key : host;
	if (try_lookup(gw, k, out) == 1)
		return 1;
	/* A miss or a stale entry: the apps may have changed since the table was built. */
	routes_rebuild(gw);
	return try_lookup(gw, k, out) == 1;
}

int
cove_route_lookup_label(struct cove_gateway *gw, const char *label, struct cove_route *out)
{
	if (strlen(label) > LABEL_MAX)
		return 0;
	char host[LABEL_MAX + sizeof(HOST_SUFFIX)];
	snprintf(host, sizeof(host), "%s" HOST_SUFFIX, label);
	return cove_route_lookup(gw, host, out);
}

char *
cove_route_listing(struct cove_gateway *gw)
{
	routes_rebuild(gw);
	size_t cap = 256, len = 0;
	char *out = xmalloc(cap);
	out[0] = '\0';
	size_t it = 0;
	const char *host;
	void *v;
	while (cove_map_next(&gw->routes, &it, &host, &v)) {
		const struct cove_route_entry *e = v;
		/* A label: the URL handed out, and the browsers' *.localhost form if that is another. */
		size_t hn = strlen(host), sl = strlen(HOST_SUFFIX);
		cleanup_free char *label = hn > sl && strcmp(host + hn - sl, HOST_SUFFIX) == 0 ? xstrndup(host, hn - sl) : NULL;
		cleanup_free char *url = label ? label_url(gw, label) : xasprintf("http://%s:%d", host, gw->port);
		cleanup_free char *local = xasprintf("http://%s:%d", host, gw->port);
		int both = label && strcmp(url, local) != 0;
		cleanup_free char *line = xasprintf("%s%s%s -> %s%s%s\n", url, both ? " " : "", both ? local : "",
						    e->function_id, e->method ? " method " : "", e->method ? e->method : "");
		size_t n = strlen(line);
		if (len + n + 1 > cap) {
			while (len + n + 1 > cap)
				cap *= 2;
			out = xrealloc(out, cap);
		}
		memcpy(out + len, line, n + 1);
		len += n;
	}
	return out;
}

/* ---- proxy auth tokens ---- */

int
cove_gateway_proxy_token_create(struct cove_store *store, char **id, char **secret, struct cove_error **err)
{
	cleanup_free char *i = cove_id_new("wk");
	cleanup_free char *s = cove_id_new("ws");
	char hash[65];
	cove_sha256_hex(s, strlen(s), hash);
	cleanup_free char *key = xasprintf(PROXY_TOKEN_KEY "%s", i);
	if (cove_store_meta_set(store, key, hash, err) < 0)
		return cove_error_wrap(err, "create a proxy auth token");
	*id = steal_pointer(&i);
	*secret = steal_pointer(&s);
	return 0;
}

int
cove_gateway_proxy_token_list(struct cove_store *store, char ***ids, size_t *n, struct cove_error **err)
{
	if (cove_store_meta_keys(store, PROXY_TOKEN_KEY, ids, n, err) < 0)
		return -1;
	for (size_t i = 0; i < *n; i++)
		memmove((*ids)[i], (*ids)[i] + strlen(PROXY_TOKEN_KEY), strlen((*ids)[i]) - strlen(PROXY_TOKEN_KEY) + 1);
	return 0;
}

int
cove_gateway_proxy_token_revoke(struct cove_store *store, const char *id, struct cove_error **err)
{
	cleanup_free char *key = xasprintf(PROXY_TOKEN_KEY "%s", id);
	int rc = cove_store_meta_delete(store, key, err);
	if (rc == 0)
		return cove_error_set(err, COVE_NOT_FOUND, "no proxy auth token %s (see `cove token list`)", id);
	return rc < 0 ? -1 : 0;
}

int
cove_route_proxy_auth_ok(struct cove_gateway *gw, const char *key, size_t key_len, const char *secret,
			 size_t secret_len)
{
	if (key_len == 0 || key_len > 80 || secret_len == 0 || secret_len > 200)
		return 0;
	cleanup_free char *k = xstrndup(key, key_len);
	if (!cove_id_valid(k, "wk"))
		return 0;
	cleanup_free char *name = xasprintf(PROXY_TOKEN_KEY "%s", k);
	cleanup_free char *want = cove_store_meta_get(gw->ctx->store, name);
	if (want == NULL || strlen(want) != 64)
		return 0;
	char got[65];
	cove_sha256_hex(secret, secret_len, got);
	/* Compare every byte: the time taken says nothing about where they differ. */
	unsigned diff = 0;
	for (int i = 0; i < 64; i++)
		diff |= (unsigned)(got[i] ^ want[i]);
	return diff == 0;
}
