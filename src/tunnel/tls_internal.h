/* Between tls.c and front.c: the server context the fronts accept with. */
#ifndef COVE_TUNNEL_TLS_INTERNAL_H
#define COVE_TUNNEL_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "tunnel/tunnel.h"

struct cove_tls {
	SSL_CTX *ctx;
	char *ca_path;
};

#endif
