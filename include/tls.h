#ifndef POPBRIDGE_TLS_H
#define POPBRIDGE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/*
 * TLS over memory BIOs (OpenSSL 3), for both roles. This layer knows
 * nothing of sockets or libuv: encrypted bytes go in with tls_feed and come
 * out with tls_take_output; plaintext goes in with tls_write and comes out
 * with tls_read. Errors are static or per-connection strings, NULL meaning
 * success.
 */

struct tls_ctx;		/* shared configuration (an SSL_CTX) */
struct tls;		/* one connection */

/* Server side: certificate chain and key files, minimum version 10, 11,
 * 12 or 13 (1.0 and 1.1 lower the security level only when asked for).
 * Returns NULL with a reason in *err_r. */
struct tls_ctx *tls_ctx_new_server(const char *cert_file, const char *key_file,
				   int min_version, const char **err_r);

/* Client side: TLS 1.2 minimum; verifies the chain against ca_file or the
 * system store when verify is true. */
struct tls_ctx *tls_ctx_new_client(const char *ca_file, bool verify,
				   const char **err_r);

/* Reference counted: each tls_new holds a reference, so a context replaced
 * on reload lives until its last connection ends. */
void tls_ctx_unref(struct tls_ctx **ctx);

/* A connection in the context's role. Client: host is sent as SNI and
 * checked against the certificate when verifying. NULL on failure. */
struct tls *tls_new(struct tls_ctx *ctx, const char *host);
void tls_free(struct tls **t);

/* Encrypted bytes received from the peer. Returns 0 or -1. */
int tls_feed(struct tls *t, const void *p, size_t n);

/* Advances the handshake: 1 done, 0 needs more input (send any output
 * first), -1 failed (tls_error says why: "certificate has expired",
 * "hostname mismatch", "unable to get local issuer certificate", ...). */
int tls_handshake(struct tls *t);

/* Decrypted bytes: > 0 bytes read, 0 need more input, -1 error or the
 * peer closed (tls_closed tells which). */
long tls_read(struct tls *t, void *p, size_t n);

/* Encrypts p[0..n) into the output. Returns 0 or -1. */
int tls_write(struct tls *t, const void *p, size_t n);

/* Moves every pending encrypted byte into out. Returns 0 or a buf error. */
int tls_take_output(struct tls *t, struct buf *out);

bool tls_closed(const struct tls *t);
const char *tls_error(const struct tls *t);

/* Sends close_notify (take the output afterwards). */
void tls_shutdown(struct tls *t);

#endif
