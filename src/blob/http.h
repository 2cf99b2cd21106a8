/* The blob HTTP/1.1 port: what the client's blob_utils speaks. Every request must carry a signature Cove made
 * (blob/url_sign.h: HMAC-SHA256 over the method, the path, its parameters and an expiry); one without, with a
 * wrong or expired one, or one made for another method or object gets 403 before any of its body is read.
 *   PUT  /blob/<id>                 single-part upload; 200 with ETag "\"<md5 hex>\"" of the body
 *   PUT  /blob/<id>/part/<n>        multipart part n (1-based); 200 with the part's md5 ETag
 *   POST /blob/<id>/complete        S3 CompleteMultipartUpload XML; joins the parts in PartNumber order into
 *                                   the blob; body contains the ETag md5(concat(part md5 digests))-N
 *   GET  /blob/<id>                 the blob's bytes (Content-Length); HEAD too; a single "Range: bytes=a-b",
 *                                   "a-" or "-n" gets 206 (416 if unsatisfiable); other Range forms are ignored
 *   PUT  /block/<sha256 hex>        a volume block (at most 8 MiB, hashing to its name: 400 otherwise); the body
 *                                   of the 200 is the name (the v2 client echoes it as put_response)
 *   GET  /block/<sha256 hex>[?off=N&len=N&pad=1]
 *                                   a slice of a volume block (default: what is stored of all of it); pad=1 adds
 *                                   the trailing zeros the stored block leaves out; the whole stored block comes
 *                                   with a Repr-Digest (sha-256) header; HEAD too
 * (each followed by the signature's "exp=<unix time>&sig=<hex>" parameters).
 * Bad ids, unknown blobs and malformed requests get 4xx (S3-style XML error bodies), other methods 405, a full
 * disk or I/O error 503 (the client retries).
 *
 * Bounds: a request head is at most 64 KiB and must be complete within the head timeout (408); bodies go to disk
 * as they arrive (the only body held in memory is a signed completion's XML, at most 4 MiB), so a connection holds
 * at most 256 KiB of input; at most COVE_BLOB_HTTP_MAX_CONNS connections (more are closed at once); an idle
 * keep-alive connection, a body that stalls and a client that reads nothing of an answer are closed after their
 * timeouts. Accept pauses for a second when descriptors run out. Disk writes (fsync included) run in the event
 * loop. */
#ifndef COVE_BLOB_HTTP_H
#define COVE_BLOB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct event_base;
struct cove_blobstore;
struct cove_blob_http;

/* Listen on address:port (port 0: a free port) and serve bs, which must outlive h (its URL key signs and checks
 * the URLs); callbacks run in base's loop. NULL + *err if the address cannot be bound. */
struct cove_blob_http *cove_blob_http_new(struct event_base *base, const char *address, int port,
					  struct cove_blobstore *bs, struct cove_error **err);
int cove_blob_http_port(const struct cove_blob_http *h);
/* "http://<address>:<port>" ("[<address>]" for IPv6; owned by h). */
const char *cove_blob_http_base_url(const struct cove_blob_http *h);
void cove_blob_http_free(struct cove_blob_http *h);

/* The signed URLs the API hands to clients (caller frees), valid for ttl_s seconds: <base>/blob/<id> for GET (and
 * HEAD) or PUT, <base>/blob/<id>/part/<n> (n from 1, PUT), <base>/blob/<id>/complete (POST), a volume block's
 * <base>/block/<hex> for PUT or GET, and a GET of bytes [off, off + len) of the block as its file holds it (pad: with
 * the zeros the stored block leaves out). API code never spells paths. */
char *cove_blob_http_get_url(const struct cove_blob_http *h, const char *id, uint32_t ttl_s);
char *cove_blob_http_put_url(const struct cove_blob_http *h, const char *id, uint32_t ttl_s);
char *cove_blob_http_part_url(const struct cove_blob_http *h, const char *id, int part_number, uint32_t ttl_s);
char *cove_blob_http_complete_url(const struct cove_blob_http *h, const char *id, uint32_t ttl_s);
char *cove_blob_http_block_put_url(const struct cove_blob_http *h, const uint8_t hash[32], uint32_t ttl_s);
char *cove_blob_http_block_get_url(const struct cove_blob_http *h, const uint8_t hash[32], uint32_t ttl_s);
char *cove_blob_http_block_slice_url(const struct cove_blob_http *h, const uint8_t hash[32], uint64_t off, uint64_t len,
				     int pad, uint32_t ttl_s);
/* Any signed URL: method on path with extra query params (NULL for none). For the functions above and tests. */
char *cove_blob_http_sign(const struct cove_blob_http *h, const char *method, const char *path, const char *params,
			  uint32_t ttl_s);

/* How long a URL lives: an hour (S3 presigned URLs' usual lifetime, and far more than a request needs) plus a
 * second per MiB the flow moves, so that a slow multipart upload, a big VolumePutFiles2 batch or a volume read_file
 * consumed slowly (the client gets every URL up front) still finds its last URLs valid; at most a week (S3's
 * maximum). A download URL is asked for right before its download (BlobGet, for inputs and outputs alike, even
 * when FunctionGetOutputs results are fetched long after the call), so none is held for long. */
#define COVE_BLOB_URL_TTL_S 3600u
#define COVE_BLOB_URL_MIN_RATE ((uint64_t)1 << 20)
#define COVE_BLOB_URL_MAX_TTL_S (7u * 24 * 3600)
uint32_t cove_blob_url_ttl(uint64_t bytes);
/* COVE_BLOB_URL_TTL=<seconds> in the server's environment caps every URL's lifetime (for tests of expiry). */

/* Largest request body accepted: a single PUT may carry the client's whole 1 GiB single-part maximum. */
#define COVE_BLOB_HTTP_MAX_BODY ((size_t)1100 << 20)
/* Connections served at once (more are closed on accept). */
#define COVE_BLOB_HTTP_MAX_CONNS 1024
/* For tests: change the body limit, the connection cap, the timeouts (defaults 30 s for a head, 60 s idle, 60 s
 * for a stalled body or answer; COVE_BLOB_HEAD_TIMEOUT, COVE_BLOB_IDLE_TIMEOUT, COVE_BLOB_STALL_TIMEOUT in the
 * environment), or the clock URLs are signed and checked by (unix seconds; NULL: time(2)). */
void cove_blob_http_set_max_body(struct cove_blob_http *h, size_t max_body);
void cove_blob_http_set_max_conns(struct cove_blob_http *h, int max_conns);
void cove_blob_http_set_timeouts(struct cove_blob_http *h, double head_s, double idle_s, double stall_s);
void cove_blob_http_set_clock(struct cove_blob_http *h, int64_t (*clock)(void));
/* Connections open now. */
int cove_blob_http_conns(const struct cove_blob_http *h);

/* Parse an S3 CompleteMultipartUpload body (network input: bounded, no recursion, only the &quot;-style
 * entities an ETag needs). *parts (malloc'd, caller frees) gets PartNumber/ETag pairs in document order; other
 * elements inside a <Part> are ignored. Ordering rules are cove_blobstore_complete_multipart's.
 * 0, or -1 + INVALID_ARGUMENT saying what is wrong. */
struct cove_blob_part;
int cove_blob_http_parse_complete(const char *body, size_t len, struct cove_blob_part **parts, size_t *n_parts,
				  struct cove_error **err);

#endif
