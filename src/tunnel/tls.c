/* Cove's certificate authority and the server certificate of its TLS fronts (see tunnel.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tunnel/tls_internal.h"
#include "util/alloc.h"
#include "util/fsutil.h"

#define CA_DAYS 3650
#define SERVER_DAYS 90

static int
ssl_error(struct cove_error **err, const char *what)
{
	char buf[256] = "";
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return cove_error_set(err, COVE_INTERNAL, "TLS: %s%s%s", what, buf[0] ? ": " : "", buf);
}

static int
add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ex == NULL)
		return -1;
	int ok = X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	return ok ? 0 : -1;
}

/* A certificate for key: the authority's own (issuer NULL: self-signed) or a server's, signed by issuer. */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long days)
{
	X509 *x = X509_new();
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	int ok = x && RAND_bytes(serial, sizeof(serial)) == 1;
	serial[0] &= 0x7f; /* positive */
	ok = ok && X509_set_version(x, 2) && (bn = BN_bin2bn(serial, sizeof(serial), NULL)) &&
	     BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) && X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
	     X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L) && X509_set_pubkey(x, key);
	BN_free(bn);
	X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
	ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Cove", -1, -1, 0) &&
	     X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) &&
	     X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509 *signer = issuer ? issuer : x;
	if (ok && issuer == NULL)
		ok = add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
		     add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
		     add_ext(x, signer, NID_subject_key_identifier, "hash") == 0;
	else if (ok)
		ok = add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
		     add_ext(x, signer, NID_key_usage, "critical,digitalSignature") == 0 &&
		     add_ext(x, signer, NID_ext_key_usage, "serverAuth") == 0 &&
		     add_ext(x, signer, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost") == 0 &&
		     add_ext(x, signer, NID_authority_key_identifier, "keyid") == 0;
	ok = ok && X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* Write a PEM file atomically, readable by its owner only when it holds a key. */
static int
write_pem(const char *path, EVP_PKEY *key, X509 *cert, struct cove_error **err)
{
	cleanup_free char *tmp = xasprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, key ? 0600 : 0644);
	if (fd < 0)
		return cove_error_set_errno(err, errno, "create %s", tmp);
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return cove_error_set_errno(err, errno, "open %s", tmp);
	}
	int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
	if (fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return cove_error_set(err, COVE_INTERNAL, "TLS: write %s", path);
	}
	return 0;
}

static int
read_pem(const char *path, EVP_PKEY **key, X509 **cert)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -1;
	if (key)
		*key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	else
		*cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return (key ? *key != NULL : *cert != NULL) ? 0 : -1;
}

struct cove_tls *
cove_tls_load(const char *state_dir, struct cove_error **err)
{
	cleanup_free char *dir = xasprintf("%s/tls", state_dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		cove_error_set_errno(err, errno, "create %s", dir);
		return NULL;
	}
	cleanup_free char *ca_path = xasprintf("%s/ca.pem", dir);
	cleanup_free char *ca_key_path = xasprintf("%s/ca.key", dir);
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *cert = NULL;
	SSL_CTX *ctx = NULL;
	struct cove_tls *tls = NULL;
	if (read_pem(ca_key_path, &ca_key, NULL) < 0 || read_pem(ca_path, NULL, &ca) < 0 ||
	    X509_check_private_key(ca, ca_key) != 1) {
		EVP_PKEY_free(ca_key);
		X509_free(ca);
		ca = NULL;
		ERR_clear_error();
		if ((ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL ||
		    (ca = make_cert(ca_key, "Cove tunnels CA", NULL, NULL, CA_DAYS)) == NULL) {
			ssl_error(err, "make the certificate authority");
			goto out;
		}
		if (write_pem(ca_key_path, ca_key, NULL, err) < 0 || write_pem(ca_path, NULL, ca, err) < 0)
			goto out;
	}
	/* The server's key and certificate are made anew at each start: clients trust the authority. */
	if ((key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL ||
	    (cert = make_cert(key, "127.0.0.1", ca, ca_key, SERVER_DAYS)) == NULL) {
		ssl_error(err, "make the server certificate");
		goto out;
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || !SSL_CTX_use_certificate(ctx, cert) ||
	    !SSL_CTX_use_PrivateKey(ctx, key) || !SSL_CTX_add1_chain_cert(ctx, ca) || !SSL_CTX_check_private_key(ctx)) {
		ssl_error(err, "set up the server context");
		SSL_CTX_free(ctx);
		goto out;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	tls = xcalloc(1, sizeof(*tls));
	tls->ctx = ctx;
	tls->ca_path = ca_path;
	ca_path = NULL;
out:
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
	X509_free(ca);
	X509_free(cert);
	return tls;
}

void
cove_tls_free(struct cove_tls *tls)
{
	if (tls == NULL)
		return;
	SSL_CTX_free(tls->ctx);
	free(tls->ca_path);
	free(tls);
}

const char *
cove_tls_ca_path(const struct cove_tls *tls)
{
	return tls->ca_path;
}
