/* The web gateway: Cove's HTTP/1.1 (and WebSocket) front for web endpoints (`fastapi_endpoint`, `asgi_app`,
 * `wsgi_app`, `web_server`, and class methods with those decorators).
 *
 * URLs. Each endpoint gets a host label, and its URL is http://<label>.localhost:<port> (browsers and curl
 * resolve *.localhost to loopback). The label is the decorator's `label=`, else <app>-<function> (for class
 * methods <app>-<class>-<method>), lower-cased with runs of other characters turned into "-", at most 63
 * characters (longer ones are cut and end in a hash); ephemeral apps (`modal run`, `modal serve`) add "-dev"
 * (or "-<MODAL_DEV_SUFFIX>"), and environments other than the default prefix "<env>--". `custom_domains`
 * names route too. Clients that cannot resolve *.localhost send the request to the gateway's address with a
 * `Host: <label>.localhost` header, or put the label first in the path (http://127.0.0.1:<port>/<label>/...;
 * the app then sees root_path "/<label>").
 *
 * A request becomes a function call whose input is the pickled ((scope,), {}); its body streams to the app
 * on the call's data-in stream and the app's response streams back from data-out, chunk by chunk. The
 * README's "Web endpoints" section lists the limits and timeouts. */
#ifndef COVE_GATEWAY_GATEWAY_H
#define COVE_GATEWAY_GATEWAY_H

#include "api.pb-c.h"
#include "util/error.h"

struct cove_ctx;
struct cove_app;
struct cove_store;
struct cove_gateway;

/* Listen on ctx->cfg.address:port. Port 0 reuses the port of the state directory's previous run when it is
 * free (so URLs stay the same across restarts), else picks a free one. Writes <state-dir>/web.url
 * ("http://<address>:<port>"). NULL + *err if the port cannot be bound. */
struct cove_gateway *cove_gateway_new(struct cove_ctx *ctx, int port, struct cove_error **err);
int cove_gateway_port(const struct cove_gateway *gw);
/* "http://<address>:<port>" (owned by gw). */
const char *cove_gateway_base_url(const struct cove_gateway *gw);
/* The endpoints' URLs as "<head><label><tail>" (valid for the gateway's life). */
const char *cove_gateway_url_template(struct cove_gateway *gw);
/* Close every connection (apps still running get a disconnect) and free. NULL is a no-op. */
void cove_gateway_free(struct cove_gateway *gw);

/* web_url assignment (api/function.c).
 * precreate: the URL of a FunctionPrecreate's function (caller frees; NULL if it is not a web endpoint), and
 * web_url filled into its method definitions in place.
 * assign: fill def's web_url, web_url_info and custom_domain_info, and its method definitions'. */
char *cove_gateway_precreate_url(struct cove_gateway *gw, const struct cove_app *app,
				 Modal__Client__FunctionPrecreateRequest *req);
void cove_gateway_assign_urls(struct cove_gateway *gw, const struct cove_app *app, Modal__Client__Function *def);
/* After restored apps are back (server start): point their web URLs at this run's port. */
void cove_gateway_restore(struct cove_gateway *gw);

/* Proxy auth tokens (requires_proxy_auth=True): a request must carry Modal-Key: <id> and Modal-Secret:
 * <secret> of one of these. Create one: *id ("wk-...") and *secret ("ws-...") are malloc'd. */
int cove_gateway_proxy_token_create(struct cove_store *store, char **id, char **secret, struct cove_error **err);
/* The proxy auth tokens' ids (NULL-terminated, malloc'd), and revoking one (NOT_FOUND if there is none): the
 * gateway reads the store on every request, so a revoked token fails at once. */
int cove_gateway_proxy_token_list(struct cove_store *store, char ***ids, size_t *n, struct cove_error **err);
int cove_gateway_proxy_token_revoke(struct cove_store *store, const char *id, struct cove_error **err);

#endif
