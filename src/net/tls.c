/* OpenSSL over memory BIOs: contexts for the server and client side,
 * handshakes and records; no libuv inside. */
#include "net/tls.h"
#include "util/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/*
 * Plaintext written before the handshake completes: a POP3 greeting or a
 * few pipelined IMAP commands, never a message body.
 */
#define TLS_EARLY_MAX (64 * 1024)

/*
 * A memory BIO keeps its largest allocation forever; once one has held more
 * than this and is empty again, a fresh BIO replaces it so that a session
 * that once moved a big message is cheap again while idle. The price is one
 * BIO allocation per large burst, small next to encrypting it.
 */
#define TLS_BIO_KEEP (64 * 1024)

/* Big enough for any OpenSSL error line (the library uses 256). */
#define TLS_ERR_MAX 256

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	bool server;
	bool verify;
	unsigned refs;
};

struct tls {
	struct tls_ctx *ctx;
	SSL *ssl;
	struct buf early;	/* plaintext waiting for the handshake */
	bool closed;
	bool cert_rejected;	/* the peer's alert refused our certificate */
	const char *error;	/* NULL, a static string or errbuf */
	char errbuf[TLS_ERR_MAX];
};

static const uint64_t common_options = SSL_OP_NO_COMPRESSION |
				      SSL_OP_NO_RENEGOTIATION;
/* SSL_write may be retried from the early buffer after it moved. Not
 * SSL_MODE_RELEASE_BUFFERS: it frees and reallocates the record buffers
 * around every record of a transfer; tls_release frees them once idle. */
static const long common_modes = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;

/* SSL_get_error needs an empty error queue before each call; clearing it
 * walks every slot, so only a queue that holds something is cleared (the
 * relay makes a call per record). */
static void
clear_errors(void)
{
	if (ERR_peek_error() != 0)
		ERR_clear_error();
}

static struct tls_ctx *
ctx_wrap(SSL_CTX *ssl_ctx, bool server, bool verify, const char **err_r)
{
	struct tls_ctx *ctx;

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL) {
		SSL_CTX_free(ssl_ctx);
		*err_r = "out of memory";
		return NULL;
	}
	ctx->ssl_ctx = ssl_ctx;
	ctx->server = server;
	ctx->verify = verify;
	ctx->refs = 1;
	return ctx;
}

static int
version_of(int min_version)
{
	switch (min_version) {
	case 10: return TLS1_VERSION;
	case 11: return TLS1_1_VERSION;
	case 12: return TLS1_2_VERSION;
	case 13: return TLS1_3_VERSION;
	default: return 0;
	}
}

static const char key_mismatch[] =
	"the private key does not match the certificate";

/* Loading a key of the certificate's type already compares the two. */
static const char *
key_error(void)
{
	unsigned long e = ERR_peek_last_error();

	if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
	    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
		return key_mismatch;
	return "cannot load the private key file";
}

static const char *
server_setup(SSL_CTX *c, const char *cert_file, const char *key_file,
	     int version)
{
	SSL_CTX_set_options(c, common_options);
	SSL_CTX_set_mode(c, common_modes);
	/* Whole runs of records from the input BIO per read, not a header
	 * and then a body. */
	SSL_CTX_set_read_ahead(c, 1);
	if (!SSL_CTX_set_min_proto_version(c, version))
		return "cannot set the minimum TLS version";
	/*
	 * TLS 1.0 and 1.1 sign with SHA-1 and MD5, which security level 2
	 * (Debian's default) refuses; lowered only for a configured tls_min.
	 */
	if (version < TLS1_2_VERSION) {
		SSL_CTX_set_security_level(c, 0);
		if (!SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0"))
			return "cannot enable the TLS 1.0/1.1 ciphers";
	}
	if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1)
		return "cannot load the certificate chain file";
	if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1)
		return key_error();
	if (SSL_CTX_check_private_key(c) != 1)
		return key_mismatch;
	return NULL;
}

struct tls_ctx *
tls_ctx_new_server(const char *cert_file, const char *key_file,
		   int min_version, const char **err_r)
{
	SSL_CTX *c;
	const char *err;
	int version;

	version = version_of(min_version);
	if (version == 0) {
		*err_r = "the minimum TLS version must be 1.0, 1.1, 1.2 or 1.3";
		return NULL;
	}
	ERR_clear_error();
	c = SSL_CTX_new(TLS_server_method());
	if (c == NULL) {
		*err_r = "cannot create a TLS context";
		return NULL;
	}
	err = server_setup(c, cert_file, key_file, version);
	ERR_clear_error();
	if (err != NULL) {
		SSL_CTX_free(c);
		*err_r = err;
		return NULL;
	}
	return ctx_wrap(c, true, false, err_r);
}

static const char *
client_setup(SSL_CTX *c, const char *ca_file, bool verify)
{
	SSL_CTX_set_options(c, common_options);
	SSL_CTX_set_mode(c, common_modes);
	/* Whole runs of records from the input BIO per read, not a header
	 * and then a body. */
	SSL_CTX_set_read_ahead(c, 1);
	if (!SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION))
		return "cannot set the minimum TLS version";
	if (!verify) {
		SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
		return NULL;
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL && ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1)
			return "cannot load the CA file";
	} else if (SSL_CTX_set_default_verify_paths(c) != 1) {
		return "cannot load the system trust store";
	}
	return NULL;
}

struct tls_ctx *
tls_ctx_new_client(const char *ca_file, bool verify, const char **err_r)
{
	SSL_CTX *c;
	const char *err;

	ERR_clear_error();
	c = SSL_CTX_new(TLS_client_method());
	if (c == NULL) {
		*err_r = "cannot create a TLS context";
		return NULL;
	}
	err = client_setup(c, ca_file, verify);
	ERR_clear_error();
	if (err != NULL) {
		SSL_CTX_free(c);
		*err_r = err;
		return NULL;
	}
	return ctx_wrap(c, false, verify, err_r);
}

struct tls_ctx *
tls_ctx_ref(struct tls_ctx *ctx)
{
	if (ctx != NULL)
		ctx->refs++;
	return ctx;
}

void
tls_ctx_unref(struct tls_ctx **ctxp)
{
	struct tls_ctx *ctx = *ctxp;

	if (ctx == NULL)
		return;
	*ctxp = NULL;
	if (--ctx->refs > 0)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

static BIO *
new_rbio(void)
{
	BIO *b = BIO_new(BIO_s_mem());

	/* An empty input BIO means "wait for more", not end of stream. */
	if (b != NULL)
		BIO_set_mem_eof_return(b, -1);
	return b;
}

static bool
is_ip_literal(const char *host)
{
	struct in6_addr a;

	return inet_pton(AF_INET, host, &a) == 1 ||
	       inet_pton(AF_INET6, host, &a) == 1;
}

static int
client_setup_host(struct tls *t, const char *host)
{
	bool ip;

	if (host == NULL || host[0] == '\0')
		return 0;
	ip = is_ip_literal(host);
	/* RFC 6066 §3: literal IP addresses are not sent as SNI. */
	if (!ip && SSL_set_tlsext_host_name(t->ssl, host) != 1)
		return -EPROTO;
	if (!t->ctx->verify)
		return 0;
	if (ip)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl),
						     host) == 1 ? 0 : -EPROTO;
	SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return SSL_set1_host(t->ssl, host) == 1 ? 0 : -EPROTO;
}

static int
ssl_setup(struct tls *t, const char *host)
{
	BIO *in, *out;

	t->ssl = SSL_new(t->ctx->ssl_ctx);
	if (t->ssl == NULL)
		return -ENOMEM;
	in = new_rbio();
	out = BIO_new(BIO_s_mem());
	if (in == NULL || out == NULL) {
		BIO_free(in);
		BIO_free(out);
		return -ENOMEM;
	}
	SSL_set_bio(t->ssl, in, out);
	if (t->ctx->server) {
		SSL_set_accept_state(t->ssl);
		return 0;
	}
	SSL_set_connect_state(t->ssl);
	return client_setup_host(t, host);
}

struct tls *
tls_new(struct tls_ctx *ctx, const char *host)
{
	struct tls *t;

	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->ctx = ctx;
	ctx->refs++;
	buf_init(&t->early, TLS_EARLY_MAX);
	ERR_clear_error();
	if (ssl_setup(t, host) < 0) {
		ERR_clear_error();
		tls_free(&t);
		return NULL;
	}
	return t;
}

void
tls_free(struct tls **tp)
{
	struct tls *t = *tp;

	if (t == NULL)
		return;
	*tp = NULL;
	SSL_free(t->ssl);
	buf_wipe(&t->early);
	buf_free(&t->early);
	tls_ctx_unref(&t->ctx);
	free(t);
}

/* Records why the last SSL call failed and empties the error queue. */
static void
set_error(struct tls *t, int ssl_err)
{
	unsigned long e = ERR_peek_error();
	long vr = SSL_get_verify_result(t->ssl);

	if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
		switch (ERR_GET_REASON(e)) {
		case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
			t->cert_rejected = true;
			break;
		default:
			/* Any other failure says nothing about our
			 * certificate: the error text below tells it. */
			break;
		}
	}
	if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
	    vr != X509_V_OK) {
		t->error = X509_verify_cert_error_string(vr);
	} else if (e != 0) {
		ERR_error_string_n(e, t->errbuf, sizeof(t->errbuf));
		t->error = t->errbuf;
	} else if (ssl_err == SSL_ERROR_SYSCALL) {
		t->error = "unexpected end of the TLS stream";
	} else {
		t->error = "TLS protocol error";
	}
	ERR_clear_error();
}

int
tls_feed(struct tls *t, const void *p, size_t n)
{
	const char *s = p;
	BIO *in = SSL_get_rbio(t->ssl);

	while (n > 0) {
		int k = n > INT_MAX ? INT_MAX : (int)n;

		if (BIO_write(in, s, k) != k) {
			ERR_clear_error();
			t->error = "out of memory";
			return -ENOMEM;
		}
		s += k;
		n -= (size_t)k;
	}
	return 0;
}

/*
 * Writes the whole early buffer in one call so that a retry after
 * SSL_ERROR_WANT_* repeats the same bytes, as SSL_write requires.
 * Returns 1 flushed, 0 blocked (data kept), -1 error.
 */
static int
flush_early(struct tls *t)
{
	while (t->early.len > 0) {
		int k, r;

		k = t->early.len > INT_MAX ? INT_MAX : (int)t->early.len;
		ERR_clear_error();
		r = SSL_write(t->ssl, t->early.data, k);
		if (r <= 0) {
			int e = SSL_get_error(t->ssl, r);

			if (e == SSL_ERROR_WANT_READ ||
			    e == SSL_ERROR_WANT_WRITE)
				return 0;
			set_error(t, e);
			return -EPROTO;
		}
		buf_consume(&t->early, (size_t)r);
	}
	buf_free(&t->early);
	return 1;
}

/* Flushes early plaintext once the handshake is done. 0 or -1. */
static int
after_handshake(struct tls *t)
{
	if (t->early.len == 0 || !SSL_is_init_finished(t->ssl))
		return 0;
	return flush_early(t) < 0 ? -EPROTO : 0;
}

int
tls_handshake(struct tls *t)
{
	int r, e;

	if (t->error != NULL)
		return -EPROTO;
	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1)
		return after_handshake(t) < 0 ? -EPROTO : 1;
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	set_error(t, e);
	return -EPROTO;
}

/* Swaps an empty, oversized input BIO for a fresh one (TLS_BIO_KEEP). */
static void
trim_rbio(struct tls *t)
{
	BIO *in = SSL_get_rbio(t->ssl), *fresh;
	BUF_MEM *m = NULL;

	if (BIO_ctrl_pending(in) != 0)
		return;
	BIO_get_mem_ptr(in, &m);
	if (m == NULL || m->max <= TLS_BIO_KEEP)
		return;
	fresh = new_rbio();
	if (fresh != NULL)
		SSL_set0_rbio(t->ssl, fresh);
}

static long
read_failed(struct tls *t, int r)
{
	int e = SSL_get_error(t->ssl, r);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		ERR_clear_error();
		trim_rbio(t);
		/* This SSL_read may have finished the handshake. */
		return after_handshake(t) < 0 ? -EPROTO : 0;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		t->closed = true;
		return -EPIPE;
	}
	set_error(t, e);
	return -EPROTO;
}

long
tls_read(struct tls *t, void *p, size_t n)
{
	int r;

	if (t->closed)
		return -EPIPE;
	if (t->error != NULL)
		return -EPROTO;
	if (n == 0)
		return 0;
	clear_errors();
	r = SSL_read(t->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	if (r <= 0)
		return read_failed(t, r);
	return after_handshake(t) < 0 ? -EPROTO : r;
}

/* Keeps p[0..n) for later, or fails when the early buffer is full. */
static int
keep_early(struct tls *t, const void *p, size_t n)
{
	if (buf_append(&t->early, p, n) < 0) {
		t->error = "too much data written before the TLS handshake";
		return -ENOBUFS;
	}
	return 0;
}

int
tls_write(struct tls *t, const void *p, size_t n)
{
	const char *s = p;
	int r;

	if (t->error != NULL || after_handshake(t) < 0)
		return -EPROTO;
	if (!SSL_is_init_finished(t->ssl) || t->early.len > 0)
		return keep_early(t, p, n);
	while (n > 0) {
		int k = n > INT_MAX ? INT_MAX : (int)n, e;

		clear_errors();
		r = SSL_write(t->ssl, s, k);
		if (r <= 0) {
			e = SSL_get_error(t->ssl, r);
			if (e == SSL_ERROR_WANT_READ ||
			    e == SSL_ERROR_WANT_WRITE)
				return keep_early(t, s, n);
			set_error(t, e);
			return -EPROTO;
		}
		s += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Swaps a drained, oversized output BIO for a fresh one (TLS_BIO_KEEP). */
static void
trim_wbio(struct tls *t)
{
	BIO *out = SSL_get_wbio(t->ssl), *fresh;
	BUF_MEM *m = NULL;

	/* During the handshake a buffering BIO sits on top; leave it be. */
	if (!SSL_is_init_finished(t->ssl))
		return;
	BIO_get_mem_ptr(out, &m);
	if (m == NULL || m->max <= TLS_BIO_KEEP)
		return;
	fresh = BIO_new(BIO_s_mem());
	if (fresh != NULL)
		SSL_set0_wbio(t->ssl, fresh);
}

int
tls_take_output(struct tls *t, struct buf *out)
{
	BIO *b = SSL_get_wbio(t->ssl);
	size_t n;
	int r, k;

	while ((n = BIO_ctrl_pending(b)) > 0) {
		if (n > out->max - out->len)
			n = out->max - out->len;
		if (n > INT_MAX)
			n = INT_MAX;
		if (n == 0)
			return -ENOBUFS;
		r = buf_reserve(out, n);
		if (r < 0)
			return r;
		k = BIO_read(b, out->data + out->len, (int)n);
		if (k <= 0)
			return -EIO;
		out->len += (size_t)k;
	}
	trim_wbio(t);
	return 0;
}

void
tls_release(struct tls *t)
{
	/* Refused (harmlessly) while a record is half read or written. */
	if (SSL_is_init_finished(t->ssl))
		(void)SSL_free_buffers(t->ssl);
}

bool
tls_closed(const struct tls *t)
{
	return t->closed;
}

bool
tls_hello_seen(const struct tls *t)
{
	return !SSL_in_before(t->ssl);
}

bool
tls_cert_rejected(const struct tls *t)
{
	return t->cert_rejected;
}

const char *
tls_error(const struct tls *t)
{
	return t->error;
}

void
tls_shutdown(struct tls *t)
{
	if (!SSL_is_init_finished(t->ssl))
		return;
	(void)after_handshake(t);
	ERR_clear_error();
	(void)SSL_shutdown(t->ssl);
	ERR_clear_error();
}
