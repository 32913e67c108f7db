#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/tls.h"

/*
 * Certificates are made with the OpenSSL API in a temporary directory for
 * each test (Criterion runs every test in its own process); P-256 keys keep
 * that to a few milliseconds.
 */

#define DAY (24L * 60 * 60)
#define BIG (1024 * 1024)
#define PUMP_MAX (8 * 1024 * 1024)

static char dir[64];

static const char *
path(const char *name)
{
	static char p[8][128];
	static int i;

	i = (i + 1) % 8;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	cr_assert_not_null(ext);
	cr_assert(X509_add_ext(x, ext, -1));
	X509_EXTENSION_free(ext);
}

/* issuer NULL makes a self-signed CA; san NULL omits subjectAltName. */
static X509 *
make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn,
	  const char *san, long from, long to)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name = X509_get_subject_name(x);

	cr_assert(X509_set_version(x, 2));
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	cr_assert(X509_set_pubkey(x, key));
	if (issuer == NULL) {
		add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
		add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
	}
	if (san != NULL)
		add_ext(x, issuer ? issuer : x, NID_subject_alt_name, san);
	cr_assert(X509_sign(x, issuer_key, EVP_sha256()) > 0);
	return x;
}

static void
write_pem(const char *name, X509 *a, X509 *b, EVP_PKEY *key)
{
	FILE *f = fopen(path(name), "w");

	cr_assert_not_null(f);
	if (a != NULL)
		cr_assert(PEM_write_X509(f, a));
	if (b != NULL)
		cr_assert(PEM_write_X509(f, b));
	if (key != NULL)
		cr_assert(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL,
					       NULL));
	cr_assert_eq(fclose(f), 0);
}

static void
make_certs(void)
{
	const char *good_san = "DNS:localhost,IP:127.0.0.1";
	EVP_PKEY *ca_key, *key;
	X509 *ca, *good, *expired, *wrong;

	strcpy(dir, "/tmp/test_tls.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	ca_key = EVP_EC_gen("P-256");
	key = EVP_EC_gen("P-256");
	cr_assert(ca_key != NULL && key != NULL);
	ca = make_cert(ca_key, NULL, ca_key, "popbridge test CA", NULL,
		       -DAY, 10 * DAY);
	good = make_cert(key, ca, ca_key, "localhost", good_san, -DAY, DAY);
	expired = make_cert(key, ca, ca_key, "localhost", good_san,
			    -2 * DAY, -DAY);
	wrong = make_cert(key, ca, ca_key, "wrong.example",
			  "DNS:wrong.example", -DAY, DAY);
	write_pem("ca.pem", ca, NULL, NULL);
	write_pem("ca.key", NULL, NULL, ca_key);
	write_pem("key.pem", NULL, NULL, key);
	write_pem("good.pem", good, NULL, NULL);
	write_pem("chain.pem", good, ca, NULL);
	write_pem("expired.pem", expired, NULL, NULL);
	write_pem("wrong.pem", wrong, NULL, NULL);
	X509_free(ca);
	X509_free(good);
	X509_free(expired);
	X509_free(wrong);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
}

static void
remove_certs(void)
{
	static const char *names[] = {
		"ca.pem", "ca.key", "key.pem", "good.pem", "chain.pem",
		"expired.pem", "wrong.pem",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(path(names[i]));
	rmdir(dir);
}

TestSuite(tls, .init = make_certs, .fini = remove_certs);

/*
 * One end of an in-memory connection: our tls, or a raw OpenSSL SSL for
 * peers our API deliberately cannot build (old versions, SNI inspection).
 */
struct peer {
	struct tls *t;
	SSL *raw;
	int hs;			/* last handshake result */
	bool closed;		/* close_notify seen */
	struct buf got;		/* plaintext received */
};

static void
peer_init(struct peer *p, struct tls *t, SSL *raw)
{
	cr_assert(t != NULL || raw != NULL);
	p->t = t;
	p->raw = raw;
	p->hs = 0;
	p->closed = false;
	buf_init(&p->got, PUMP_MAX);
}

static void
peer_free(struct peer *p)
{
	tls_free(&p->t);
	SSL_free(p->raw);
	p->raw = NULL;
	buf_free(&p->got);
}

static int
raw_handshake(SSL *s)
{
	int r = SSL_do_handshake(s);

	if (r == 1)
		return 1;
	r = SSL_get_error(s, r);
	ERR_clear_error();
	return r == SSL_ERROR_WANT_READ ? 0 : -1;
}

static long
raw_read(struct peer *p, char *b, size_t n)
{
	int r = SSL_read(p->raw, b, (int)n);

	if (r > 0)
		return r;
	if (SSL_get_error(p->raw, r) == SSL_ERROR_ZERO_RETURN)
		p->closed = true;
	ERR_clear_error();
	return -1;
}

/* Advances the handshake, then reads everything decryptable. */
static void
peer_progress(struct peer *p)
{
	char b[16384];
	long r;

	if (p->hs == 0)
		p->hs = p->t ? tls_handshake(p->t) : raw_handshake(p->raw);
	if (p->hs != 1 || p->closed)
		return;
	for (;;) {
		r = p->t ? tls_read(p->t, b, sizeof(b)) : raw_read(p, b,
								  sizeof(b));
		if (r <= 0)
			break;
		cr_assert_eq(buf_append(&p->got, b, (size_t)r), 0);
	}
	if (p->t != NULL && r < 0) {
		p->closed = tls_closed(p->t);
		cr_assert(p->closed, "tls_read: %s", tls_error(p->t));
	}
}

static void
peer_take(struct peer *p, struct buf *out)
{
	BIO *b;
	size_t n;

	if (p->t != NULL) {
		cr_assert_eq(tls_take_output(p->t, out), 0);
		return;
	}
	b = SSL_get_wbio(p->raw);
	n = BIO_ctrl_pending(b);
	if (n == 0)
		return;
	cr_assert_eq(buf_reserve(out, n), 0);
	cr_assert_eq(BIO_read(b, out->data + out->len, (int)n), (int)n);
	out->len += n;
}

static void
peer_feed(struct peer *p, const char *d, size_t n)
{
	if (p->t != NULL)
		cr_assert_eq(tls_feed(p->t, d, n), 0);
	else
		cr_assert_eq(BIO_write(SSL_get_rbio(p->raw), d, (int)n),
			     (int)n);
}

/* Moves from's output to to, step bytes per feed. Returns bytes moved. */
static size_t
move(struct peer *from, struct peer *to, size_t step)
{
	struct buf wire;
	size_t off, k, moved;

	buf_init(&wire, PUMP_MAX);
	peer_take(from, &wire);
	for (off = 0; off < wire.len; off += k) {
		k = wire.len - off < step ? wire.len - off : step;
		peer_feed(to, wire.data + off, k);
		peer_progress(to);
	}
	moved = wire.len;
	buf_free(&wire);
	return moved;
}

/* Runs both ends until no byte moves. */
static void
pump(struct peer *a, struct peer *b, size_t step)
{
	int rounds = 0;

	do {
		peer_progress(a);
		peer_progress(b);
		cr_assert(++rounds < 1000, "pump does not settle");
	} while (move(a, b, step) + move(b, a, step) > 0);
}

static struct tls_ctx *
server_ctx(const char *cert, int min_version)
{
	const char *err = NULL;
	struct tls_ctx *ctx;

	ctx = tls_ctx_new_server(path(cert), path("key.pem"), min_version,
				 &err);
	cr_assert_not_null(ctx, "server ctx: %s", err);
	return ctx;
}

static struct tls_ctx *
client_ctx(const char *ca, bool verify)
{
	const char *err = NULL;
	struct tls_ctx *ctx;

	ctx = tls_ctx_new_client(ca ? path(ca) : NULL, verify, &err);
	cr_assert_not_null(ctx, "client ctx: %s", err);
	return ctx;
}

/* A client and a server of ours; the contexts are released at once. */
static void
make_pair(struct peer *c, struct peer *s, struct tls_ctx *cctx,
	  struct tls_ctx *sctx, const char *host)
{
	peer_init(c, tls_new(cctx, host), NULL);
	peer_init(s, tls_new(sctx, NULL), NULL);
	tls_ctx_unref(&cctx);
	tls_ctx_unref(&sctx);
}

static void
assert_got(struct peer *p, const void *d, size_t n)
{
	cr_assert_eq(p->got.len, n);
	cr_assert_eq(memcmp(p->got.data, d, n), 0);
}

static void
handshake_and_talk(const char *host, size_t step)
{
	struct peer c, s;

	make_pair(&c, &s, client_ctx("ca.pem", true), server_ctx("good.pem", 12),
		  host);
	pump(&c, &s, step);
	cr_assert_eq(c.hs, 1, "client: %s", tls_error(c.t));
	cr_assert_eq(s.hs, 1, "server: %s", tls_error(s.t));
	cr_assert_null(tls_error(c.t));
	cr_assert_eq(tls_write(c.t, "USER bob\r\n", 10), 0);
	cr_assert_eq(tls_write(s.t, "+OK hi\r\n", 8), 0);
	pump(&c, &s, step);
	assert_got(&s, "USER bob\r\n", 10);
	assert_got(&c, "+OK hi\r\n", 8);
	peer_free(&c);
	peer_free(&s);
}

Test(tls, handshake_and_data_both_ways)
{
	handshake_and_talk("localhost", PUMP_MAX);
}

Test(tls, ip_literal_host_verified)
{
	handshake_and_talk("127.0.0.1", PUMP_MAX);
}

Test(tls, one_byte_at_a_time)
{
	handshake_and_talk("localhost", 1);
}

static char *
pattern(size_t n, unsigned seed)
{
	char *p = malloc(n);

	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)((i * 31 + seed) ^ (i >> 8));
	return p;
}

Test(tls, one_megabyte_both_ways)
{
	struct peer c, s;
	char *up = pattern(BIG, 1), *down = pattern(BIG, 2);

	make_pair(&c, &s, client_ctx("ca.pem", true), server_ctx("good.pem", 12),
		  "localhost");
	pump(&c, &s, PUMP_MAX);
	cr_assert(c.hs == 1 && s.hs == 1);
	cr_assert_eq(tls_write(c.t, up, BIG), 0);
	cr_assert_eq(tls_write(s.t, down, BIG), 0);
	pump(&c, &s, 65536);
	assert_got(&s, up, BIG);
	assert_got(&c, down, BIG);
	/* Again, after the output BIOs have been swapped for small ones. */
	buf_reset(&s.got);
	cr_assert_eq(tls_write(c.t, up, BIG), 0);
	pump(&c, &s, 4000);
	assert_got(&s, up, BIG);
	free(up);
	free(down);
	peer_free(&c);
	peer_free(&s);
}

Test(tls, close_notify)
{
	struct peer c, s;
	char b[16];

	make_pair(&c, &s, client_ctx("ca.pem", true), server_ctx("good.pem", 12),
		  "localhost");
	pump(&c, &s, PUMP_MAX);
	cr_assert_eq(tls_write(c.t, "QUIT\r\n", 6), 0);
	tls_shutdown(c.t);
	pump(&c, &s, PUMP_MAX);
	assert_got(&s, "QUIT\r\n", 6);
	cr_assert(tls_closed(s.t));
	cr_assert_null(tls_error(s.t));
	cr_assert_eq(tls_read(s.t, b, sizeof(b)), -EPIPE);
	cr_assert(!tls_closed(c.t));
	peer_free(&c);
	peer_free(&s);
}

Test(tls, writes_before_handshake)
{
	struct peer c, s;

	make_pair(&c, &s, client_ctx("ca.pem", true), server_ctx("good.pem", 12),
		  "localhost");
	/* Before anything at all, and on the server mid-handshake. */
	cr_assert_eq(tls_write(c.t, "CAPA\r\n", 6), 0);
	cr_assert_eq(tls_write(s.t, "+OK ", 4), 0);
	move(&c, &s, PUMP_MAX);
	cr_assert_eq(s.hs, 0);
	cr_assert_eq(tls_write(s.t, "ready\r\n", 7), 0);
	pump(&c, &s, PUMP_MAX);
	cr_assert(c.hs == 1 && s.hs == 1);
	assert_got(&s, "CAPA\r\n", 6);
	assert_got(&c, "+OK ready\r\n", 11);
	peer_free(&c);
	peer_free(&s);
}

Test(tls, early_writes_are_bounded)
{
	struct tls_ctx *cctx = client_ctx("ca.pem", true);
	struct tls *t = tls_new(cctx, "localhost");
	char *big = pattern(BIG, 3);

	tls_ctx_unref(&cctx);
	cr_assert_eq(tls_write(t, big, BIG), -ENOBUFS);
	cr_assert_str_eq(tls_error(t),
			 "too much data written before the TLS handshake");
	free(big);
	tls_free(&t);
	cr_assert_null(t);
}

/* The client's handshake fails with reason; the server sees it fail too. */
static void
expect_reject(struct tls_ctx *cctx, const char *cert, const char *host,
	      const char *reason)
{
	struct peer c, s;

	make_pair(&c, &s, cctx, server_ctx(cert, 12), host);
	pump(&c, &s, PUMP_MAX);
	cr_assert_eq(c.hs, -EPROTO);
	cr_assert_str_eq(tls_error(c.t), reason);
	cr_assert_eq(s.hs, -EPROTO);
	cr_assert_not_null(tls_error(s.t));
	peer_free(&c);
	peer_free(&s);
}

static void
expect_accept(struct tls_ctx *cctx, const char *cert, const char *host)
{
	struct peer c, s;

	make_pair(&c, &s, cctx, server_ctx(cert, 12), host);
	pump(&c, &s, PUMP_MAX);
	cr_assert_eq(c.hs, 1, "client: %s", tls_error(c.t));
	cr_assert_eq(s.hs, 1, "server: %s", tls_error(s.t));
	peer_free(&c);
	peer_free(&s);
}

Test(tls, unknown_ca)
{
	expect_reject(client_ctx(NULL, true), "good.pem", "localhost",
		      "unable to get local issuer certificate");
	expect_reject(client_ctx(NULL, true), "chain.pem", "localhost",
		      "self-signed certificate in certificate chain");
}

Test(tls, expired)
{
	expect_reject(client_ctx("ca.pem", true), "expired.pem", "localhost",
		      "certificate has expired");
}

Test(tls, wrong_host)
{
	expect_reject(client_ctx("ca.pem", true), "wrong.pem", "localhost",
		      "hostname mismatch");
	expect_reject(client_ctx("ca.pem", true), "good.pem", "127.0.0.2",
		      "IP address mismatch");
}

Test(tls, server_sees_client_alert)
{
	struct peer c, s;

	make_pair(&c, &s, client_ctx("ca.pem", true),
		  server_ctx("expired.pem", 12), "localhost");
	pump(&c, &s, PUMP_MAX);
	cr_assert_eq(s.hs, -EPROTO);
	cr_assert(strstr(tls_error(s.t), "certificate expired") != NULL,
		  "%s", tls_error(s.t));
	peer_free(&c);
	peer_free(&s);
}

Test(tls, verify_off_accepts_anything)
{
	expect_accept(client_ctx(NULL, false), "good.pem", "localhost");
	expect_accept(client_ctx(NULL, false), "expired.pem", "localhost");
	expect_accept(client_ctx(NULL, false), "wrong.pem", "localhost");
	expect_accept(client_ctx("ca.pem", false), "expired.pem", "127.0.0.2");
}

/* A raw OpenSSL server to see what our client sends. */
static SSL *
raw_server(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL *s;

	cr_assert(SSL_CTX_use_certificate_file(ctx, path("good.pem"),
					       SSL_FILETYPE_PEM) == 1);
	cr_assert(SSL_CTX_use_PrivateKey_file(ctx, path("key.pem"),
					      SSL_FILETYPE_PEM) == 1);
	s = SSL_new(ctx);
	SSL_CTX_free(ctx);
	SSL_set_bio(s, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	BIO_set_mem_eof_return(SSL_get_rbio(s), -1);
	SSL_set_accept_state(s);
	return s;
}

static void
check_sni(const char *host, const char *want)
{
	struct peer c, s;
	struct tls_ctx *cctx = client_ctx("ca.pem", true);
	const char *sni;

	peer_init(&c, tls_new(cctx, host), NULL);
	peer_init(&s, NULL, raw_server());
	tls_ctx_unref(&cctx);
	pump(&c, &s, PUMP_MAX);
	cr_assert(c.hs == 1 && s.hs == 1, "%s", tls_error(c.t));
	sni = SSL_get_servername(s.raw, TLSEXT_NAMETYPE_host_name);
	if (want == NULL)
		cr_assert_null(sni);
	else
		cr_assert_str_eq(sni, want);
	peer_free(&c);
	peer_free(&s);
}

Test(tls, sni_only_for_names)
{
	check_sni("localhost", "localhost");
	check_sni("127.0.0.1", NULL);
}

/* A raw OpenSSL client fixed at one protocol version. */
static SSL *
raw_client(int version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *c;

	SSL_CTX_set_min_proto_version(ctx, version);
	SSL_CTX_set_max_proto_version(ctx, version);
	/* Like an old device: OpenSSL itself refuses SHA-1 signatures. */
	if (version < TLS1_2_VERSION)
		cr_assert(SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0"));
	c = SSL_new(ctx);
	SSL_CTX_free(ctx);
	SSL_set_bio(c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	BIO_set_mem_eof_return(SSL_get_rbio(c), -1);
	SSL_set_connect_state(c);
	return c;
}

/*
 * Returns the server's handshake result against a raw client; *err_r is a
 * copy of the server's tls_error, which dies with the connection.
 */
static int
old_client(int server_min, int client_version, const char **err_r)
{
	static char err[256];
	struct peer c, s;
	struct tls_ctx *sctx = server_ctx("good.pem", server_min);
	int hs;

	peer_init(&c, NULL, raw_client(client_version));
	peer_init(&s, tls_new(sctx, NULL), NULL);
	tls_ctx_unref(&sctx);
	pump(&c, &s, PUMP_MAX);
	hs = s.hs;
	snprintf(err, sizeof(err), "%s", tls_error(s.t) ? tls_error(s.t) : "");
	*err_r = err;
	if (hs == 1) {
		cr_assert_eq(c.hs, 1);
		cr_assert_eq(SSL_version(c.raw), client_version);
		cr_assert_eq(SSL_write(c.raw, "STAT\r\n", 6), 6);
		cr_assert_eq(tls_write(s.t, "+OK 0 0\r\n", 9), 0);
		pump(&c, &s, PUMP_MAX);
		assert_got(&s, "STAT\r\n", 6);
		assert_got(&c, "+OK 0 0\r\n", 9);
	} else {
		cr_assert_eq(c.hs, -1);
	}
	peer_free(&c);
	peer_free(&s);
	return hs;
}

Test(tls, min_13_refuses_12_client)
{
	const char *err;

	cr_assert_eq(old_client(13, TLS1_2_VERSION, &err), -EPROTO);
	cr_assert(strstr(err, "unsupported protocol") != NULL, "%s", err);
	cr_assert_eq(old_client(13, TLS1_3_VERSION, &err), 1, "%s", err);
}

Test(tls, min_10_accepts_old_clients)
{
	const char *err;

	cr_assert_eq(old_client(10, TLS1_VERSION, &err), 1, "%s", err);
	cr_assert_eq(old_client(10, TLS1_1_VERSION, &err), 1, "%s", err);
	cr_assert_eq(old_client(11, TLS1_1_VERSION, &err), 1, "%s", err);
	cr_assert_eq(old_client(11, TLS1_VERSION, &err), -EPROTO);
}

Test(tls, default_12_refuses_old_clients)
{
	const char *err;

	cr_assert_eq(old_client(12, TLS1_VERSION, &err), -EPROTO);
	cr_assert(strstr(err, "unsupported protocol") != NULL, "%s", err);
	cr_assert_eq(old_client(12, TLS1_1_VERSION, &err), -EPROTO);
	cr_assert_eq(old_client(12, TLS1_2_VERSION, &err), 1, "%s", err);
}

static void
expect_ctx_error(const char *cert, const char *key, int min_version,
		 const char *reason)
{
	const char *err = NULL;

	cr_assert_null(tls_ctx_new_server(path(cert), path(key), min_version,
					  &err));
	cr_assert_str_eq(err, reason);
}

Test(tls, server_ctx_errors)
{
	const char *err = NULL;

	expect_ctx_error("good.pem", "key.pem", 14,
		"the minimum TLS version must be 1.0, 1.1, 1.2 or 1.3");
	expect_ctx_error("missing.pem", "key.pem", 12,
		"cannot load the certificate chain file");
	expect_ctx_error("good.pem", "missing.pem", 12,
		"cannot load the private key file");
	expect_ctx_error("good.pem", "ca.key", 12,
		"the private key does not match the certificate");
	cr_assert_null(tls_ctx_new_client(path("missing.pem"), true, &err));
	cr_assert_str_eq(err, "cannot load the CA file");
	cr_assert_eq(ERR_peek_error(), 0);
}

Test(tls, ctx_outlives_its_owner_reference)
{
	struct tls_ctx *sctx = server_ctx("chain.pem", 12);
	struct tls_ctx *cctx = client_ctx("ca.pem", true);
	struct peer c, s;

	peer_init(&s, tls_new(sctx, NULL), NULL);
	peer_init(&c, tls_new(cctx, "localhost"), NULL);
	/* A reload drops the owner's reference; the connection keeps it. */
	tls_ctx_unref(&sctx);
	tls_ctx_unref(&cctx);
	cr_assert(sctx == NULL && cctx == NULL);
	pump(&c, &s, PUMP_MAX);
	cr_assert(c.hs == 1 && s.hs == 1);
	peer_free(&c);
	peer_free(&s);
}

Test(tls, output_into_a_small_buffer)
{
	struct peer c, s;
	struct buf wire;
	char *up = pattern(BIG, 4);
	int r, rounds = 0;

	make_pair(&c, &s, client_ctx("ca.pem", true), server_ctx("good.pem", 12),
		  "localhost");
	pump(&c, &s, PUMP_MAX);
	cr_assert_eq(tls_write(c.t, up, BIG), 0);
	buf_init(&wire, 5000);
	do {
		r = tls_take_output(c.t, &wire);
		cr_assert(r == 0 || r == -ENOBUFS);
		cr_assert(wire.len > 0 && wire.len <= 5000);
		peer_feed(&s, wire.data, wire.len);
		peer_progress(&s);
		buf_reset(&wire);
		cr_assert(++rounds < 1000);
	} while (r == -ENOBUFS);
	assert_got(&s, up, BIG);
	buf_free(&wire);
	free(up);
	peer_free(&c);
	peer_free(&s);
}
