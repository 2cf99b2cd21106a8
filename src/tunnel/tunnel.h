/* TLS in front of a sandbox's encrypted ports (`encrypted_ports=`): Cove's own certificate authority, a server
 * certificate it signs for the host's loopback, and TLS-terminating forwarders.
 *
 * The authority lives in <state>/tls (ca.pem, ca.key; server.pem, server.key), made on first use and kept
 * across restarts, so that a client told to trust ca.pem once (SSL_CERT_FILE, `curl --cacert`, or
 * ssl.create_default_context(cafile=...)) trusts every tunnel of this server. Keys are P-256, readable by
 * root only; the server certificate names IP 127.0.0.1 and DNS localhost and is remade before it expires.
 *
 *   struct cove_tls *tls = cove_tls_load(state_dir, &err);
 *   struct cove_tls_front *f = cove_tls_front_new(base, tls, plain_port, &err);
 *   cove_tls_front_port(f);   // clients connect here with TLS; bytes go on, decrypted, to 127.0.0.1:plain_port
 *   cove_tls_front_free(f);   // closes the listener and every connection
 *
 * A front takes at most COVE_TLS_FRONT_MAX_CONNS connections at once; a TLS handshake must finish within
 * COVE_TLS_HANDSHAKE_S seconds, and nothing is read from a client before it has. */
#ifndef COVE_TUNNEL_TUNNEL_H
#define COVE_TUNNEL_TUNNEL_H

#include "util/error.h"

#define COVE_TLS_FRONT_MAX_CONNS 1024
#define COVE_TLS_HANDSHAKE_S 10

struct event_base;
struct cove_tls;
struct cove_tls_front;

struct cove_tls *cove_tls_load(const char *state_dir, struct cove_error **err);
void cove_tls_free(struct cove_tls *tls);
/* <state>/tls/ca.pem: what clients trust. */
const char *cove_tls_ca_path(const struct cove_tls *tls);

struct cove_tls_front *cove_tls_front_new(struct event_base *base, struct cove_tls *tls, unsigned short backend_port,
					  struct cove_error **err);
unsigned short cove_tls_front_port(const struct cove_tls_front *f);
void cove_tls_front_free(struct cove_tls_front *f);

#endif
