#ifndef POPBRIDGE_TLS_H
#define POPBRIDGE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/*
 * TLS over memory BIOs (OpenSSL 3), for both roles. This layer knows
 * nothing of sockets or libuv: encrypted bytes go in with tls_feed and come
 * out with tls_take_output; plaintext goes in with tls_write and comes out
 * with tls_read. Errors are static or per-connection strings, NULL meaning
 * success.
 *
 * After every call that may produce output (tls_handshake, tls_read,
 * tls_write, tls_shutdown) the caller takes the output and sends it. Not
 * thread-safe: a context and its connections belong to one thread.
 */

struct tls_ctx;		/* shared configuration (an SSL_CTX) */
struct tls;		/* one connection */

/* Server side: certificate chain (leaf first) and key files, PEM; minimum
 * version 10, 11, 12 or 13 (1.0 and 1.1 lower the security level to 0 and
 * allow the old ciphers, only when asked for). Returns NULL with a static
 * reason in *err_r. */
struct tls_ctx *tls_ctx_new_server(const char *cert_file, const char *key_file,
				   int min_version, const char **err_r);

/* Client side: TLS 1.2 minimum; verifies the chain against ca_file (NULL or
 * "" for the system store) when verify is true. NULL with a static reason in
 * *err_r on failure. */
struct tls_ctx *tls_ctx_new_client(const char *ca_file, bool verify,
				   const char **err_r);

/* Reference counted: the creator holds one reference and each tls_new one
 * more, so a context replaced on reload lives until its last connection
 * ends. Drops a reference and sets *ctx to NULL; NULL is ignored. */
void tls_ctx_unref(struct tls_ctx **ctx);
/* Takes one more reference; returns ctx (NULL allowed). */
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx);

/* A connection in the context's role. Client: host (NULL for none) is sent
 * as SNI unless it is an IP literal, and checked against the certificate's
 * names or addresses when verifying. Server: host is ignored. NULL on
 * failure. tls_free releases the connection and its context reference and
 * sets *t to NULL. */
struct tls *tls_new(struct tls_ctx *ctx, const char *host);
void tls_free(struct tls **t);

/* Encrypted bytes received from the peer; all are kept until read.
 * Returns 0, or -ENOMEM. */
int tls_feed(struct tls *t, const void *p, size_t n);

/* Advances the handshake: 1 done, 0 needs more input (send any output
 * first), -EPROTO failed (tls_error says why: "certificate has expired",
 * "hostname mismatch", "unable to get local issuer certificate", ...; else
 * OpenSSL's error line). Once it is done, plaintext written earlier is
 * encrypted. tls_read also advances the handshake, so calling this is
 * optional. */
int tls_handshake(struct tls *t);

/* Decrypted bytes: > 0 bytes read, 0 need more input, -EPIPE the peer
 * closed (tls_closed is true), -EPROTO an error (tls_error says which). */
long tls_read(struct tls *t, void *p, size_t n);

/* Encrypts p[0..n) into the output; any n. Before the handshake is done,
 * the plaintext is kept (at most 64 KiB) and encrypted when it completes.
 * Returns 0, or -ENOBUFS (too much before the handshake) or -EPROTO, with
 * tls_error set (nothing is dropped silently). */
int tls_write(struct tls *t, const void *p, size_t n);

/* Moves pending encrypted bytes into out, as many as out's maximum allows.
 * Returns 0 when all moved; -ENOBUFS when out is full and bytes remain (send
 * out, then call again); -ENOMEM; -EIO if OpenSSL misbehaves. */
int tls_take_output(struct tls *t, struct buf *out);

/* Frees the record buffers when nothing is half processed in them; they
 * come back with the next record. For a connection that has gone quiet. */
void tls_release(struct tls *t);

/* True once the peer's close_notify was read. */
bool tls_closed(const struct tls *t);
/* NULL, or why the connection failed: a static string or one owned by t,
 * valid until tls_free. Once set, tls_handshake, tls_read and tls_write
 * fail; the output may still hold an alert for the peer. */
const char *tls_error(const struct tls *t);

/* True once the handshake began (a hello was read or sent). */
bool tls_hello_seen(const struct tls *t);
/* True when the peer ended the handshake with an alert refusing our
 * certificate (unknown CA, bad or expired certificate, ...). */
bool tls_cert_rejected(const struct tls *t);

/* Sends close_notify after any kept plaintext (take the output afterwards).
 * Does nothing before the handshake is done. */
void tls_shutdown(struct tls *t);

#endif
