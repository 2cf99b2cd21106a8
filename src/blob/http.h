/* The blob HTTP/1.1 port: what the client's blob_utils speaks.
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
 * Bad ids, unknown blobs and malformed requests get 4xx (S3-style XML error bodies), other methods 405, a full
 * disk or I/O error 503 (the client retries). Runs on libevent's evhttp in the caller's event loop; evhttp holds
 * a whole request body in memory before the handler runs (there is no server-side body streaming in libevent
 * 2.1), so a body is limited to COVE_BLOB_HTTP_MAX_BODY (413 beyond it) and memory use grows with concurrent
 * uploads: keep multipart part_length moderate. Disk writes (fsync included) run in the event loop. */
#ifndef COVE_BLOB_HTTP_H
#define COVE_BLOB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct event_base;
struct cove_blobstore;
struct cove_blob_http;

/* Listen on address:port (port 0: a free port) and serve bs, which must outlive h; evhttp's callbacks run
 * in base's loop. NULL + *err if the address cannot be bound. */
struct cove_blob_http *cove_blob_http_new(struct event_base *base, const char *address, int port,
					  struct cove_blobstore *bs, struct cove_error **err);
int cove_blob_http_port(const struct cove_blob_http *h);
/* "http://<address>:<port>" ("[<address>]" for IPv6; owned by h). */
const char *cove_blob_http_base_url(const struct cove_blob_http *h);
void cove_blob_http_free(struct cove_blob_http *h);

/* The URLs the API hands to clients (caller frees); they use the base URL above, so API code never spells
 * paths: <base>/blob/<id>, <base>/blob/<id>/part/<n> (n from 1), <base>/blob/<id>/complete. */
char *cove_blob_http_url(const struct cove_blob_http *h, const char *id);
char *cove_blob_http_part_url(const struct cove_blob_http *h, const char *id, int part_number);
char *cove_blob_http_complete_url(const struct cove_blob_http *h, const char *id);
/* Volume block URLs: <base>/block/<hex> (PUT) and a GET of bytes [off, off + len) of the block as its file holds
 * it (pad: with the zeros the stored block leaves out). */
char *cove_blob_http_block_url(const struct cove_blob_http *h, const uint8_t hash[32]);
char *cove_blob_http_block_slice_url(const struct cove_blob_http *h, const uint8_t hash[32], uint64_t off, uint64_t len,
				     int pad);

/* Largest request body accepted: a single PUT may carry the client's whole 1 GiB single-part maximum. */
#define COVE_BLOB_HTTP_MAX_BODY ((size_t)1100 << 20)
/* Change that limit (for tests). */
void cove_blob_http_set_max_body(struct cove_blob_http *h, size_t max_body);

/* Parse an S3 CompleteMultipartUpload body (network input: bounded, no recursion, only the &quot;-style
 * entities an ETag needs). *parts (malloc'd, caller frees) gets PartNumber/ETag pairs in document order; other
 * elements inside a <Part> are ignored. Ordering rules are cove_blobstore_complete_multipart's.
 * 0, or -1 + INVALID_ARGUMENT saying what is wrong. */
struct cove_blob_part;
int cove_blob_http_parse_complete(const char *body, size_t len, struct cove_blob_part **parts, size_t *n_parts,
				  struct cove_error **err);

#endif
