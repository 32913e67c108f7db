/*
 * pbbench — the client side of `make bench` (tests/bench/run.sh).
 *
 * One program, one I/O layer for both protocols, so that POP3 through
 * popbridge and IMAP straight to the server are driven with exactly the
 * same efficiency: blocking sockets, TCP_NODELAY, one 256 KiB receive
 * buffer, read() or SSL_read() into it, nothing copied out of it.
 *
 *   pbbench pop3-retr  COMMON [--count N]   RETR 1..N (timed), after STAT
 *   pbbench imap-fetch COMMON [--count N]   UID FETCH uid BODY.PEEK[] for
 *                                           the first N UIDs (timed)
 *   pbbench pop3-list  COMMON               connect, USER, PASS, STAT, UIDL
 *                                           (all timed)
 *   pbbench imap-list  COMMON               connect, LOGIN, SELECT INBOX,
 *                                           UID FETCH 1:* (UID RFC822.SIZE)
 *                                           (all timed)
 *   pbbench pop3-idle  COMMON --sessions N [--login] [--window W]
 *                      opens N POP3 sessions (greeted, or logged in with
 *                      --login), prints "READY ok=.. fail=..", holds them
 *                      until stdin reaches EOF, then drops them
 *
 * Figure 7 (a mail server a round trip away, through tests/bench/latrelay.c);
 * each of these times one whole session, from connect() to the last byte of
 * the last response (QUIT or LOGOUT after that is not timed), and also
 * prints login= (PASS -> +OK, or LOGIN -> OK) and greet= (connect -> the
 * greeting):
 *   pbbench pop3-login    COMMON            USER, PASS (time= is PASS ->
 *                                           +OK), STAT (stat= is PASS ->
 *                                           STAT's +OK)
 *   pbbench pop3-seq      COMMON [--count N] USER, PASS, STAT, then RETR 1..N
 *                                           one at a time (each sent when
 *                                           the previous one has ended)
 *   pbbench pop3-pipe     COMMON [--count N] the same RETRs all in one write
 *                                           after STAT's reply, as mpop does
 *   pbbench pop3-top-seq  COMMON [--count N] TOP n 0 of 1..N one at a time
 *   pbbench pop3-top-pipe COMMON [--count N] TOP n 0 of 1..N in one write
 *   pbbench imap-all      COMMON            LOGIN, SELECT INBOX,
 *                                           UID FETCH 1:* BODY.PEEK[]
 *   pbbench imap-hdr      COMMON            LOGIN, SELECT INBOX,
 *                                           UID FETCH 1:* BODY.PEEK[HEADER]
 *   (bytes= is the octets of the messages, or of the headers: TOP n 0
 *   delivers the header block and its blank line, BODY[HEADER] the same)
 *
 *   pbbench pop3-rss   COMMON --pid PID --pick largest|smallest
 *                      [--rate MBPS]
 *                      logs in, resets PID's peak RSS (/proc/PID/clear_refs,
 *                      when allowed), RETRs the largest or smallest message
 *                      (optionally reading at most MBPS MB/s) while sampling
 *                      PID's VmRSS, and reports the baseline and the peak
 *
 *   COMMON: --port P --user U --pass PW [--host 127.0.0.1] [--tls --ca FILE]
 *           [--timeout SECONDS] (default 300; every mode is bounded by it)
 *
 * Output: one line of key=value pairs on stdout. Errors: "pbbench: ..." on
 * stderr, exit status 2. The POP3 side validates every response (+OK,
 * CRLF.CRLF terminator, byte counts with the dot-stuffing removed); the IMAP
 * side parses literals and counts their octets.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define BUFSZ (256u * 1024)

static const char *o_host = "127.0.0.1";
static int o_port;
static const char *o_user, *o_pass;
static int o_tls;
static const char *o_ca;
static unsigned o_count = 0;
static unsigned o_sessions = 0;
static int o_login;
static unsigned o_window = 64;
static long o_pid;
static const char *o_pick = "largest";
static double o_rate;		/* MB/s, 0 = unlimited */
static unsigned o_timeout = 300;

static SSL_CTX *ssl_ctx;

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("pbbench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This process's CPU time so far (user + system), in seconds. */
static double
cpu_self(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		(double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ------------------------------------------------------------------ I/O */

struct io {
	int fd;
	SSL *ssl;
	char *buf;
	size_t off, len;
	uint64_t rx;
};

static void
tls_init(void)
{
	X509_VERIFY_PARAM *vp;

	ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (ssl_ctx == NULL)
		die("SSL_CTX_new failed");
	if (o_ca != NULL) {
		if (SSL_CTX_load_verify_locations(ssl_ctx, o_ca, NULL) != 1)
			die("cannot load CA file %s", o_ca);
	} else if (SSL_CTX_set_default_verify_paths(ssl_ctx) != 1) {
		die("no default trust store");
	}
	SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
	vp = SSL_CTX_get0_param(ssl_ctx);
	if (X509_VERIFY_PARAM_set1_ip_asc(vp, o_host) != 1)
		X509_VERIFY_PARAM_set1_host(vp, o_host, 0);
}

static int
tcp_connect(int nonblock)
{
	struct sockaddr_in sin;
	int fd, one = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)o_port);
	if (inet_pton(AF_INET, o_host, &sin.sin_addr) != 1)
		die("--host must be an IPv4 address: %s", o_host);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC |
		    (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 &&
	    !(nonblock && errno == EINPROGRESS)) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void
io_open(struct io *io)
{
	memset(io, 0, sizeof(*io));
	io->buf = malloc(BUFSZ);
	if (io->buf == NULL)
		die("out of memory");
	io->fd = tcp_connect(0);
	if (io->fd < 0)
		die("connect to %s:%d: %s", o_host, o_port, strerror(errno));
	if (o_tls) {
		io->ssl = SSL_new(ssl_ctx);
		if (io->ssl == NULL || SSL_set_fd(io->ssl, io->fd) != 1)
			die("SSL_new failed");
		if (SSL_connect(io->ssl) != 1) {
			char e[256];

			ERR_error_string_n(ERR_get_error(), e, sizeof(e));
			die("TLS handshake with %s:%d failed: %s", o_host,
			    o_port, e);
		}
	}
}

static void
io_close(struct io *io)
{
	if (io->ssl != NULL) {
		SSL_shutdown(io->ssl);
		SSL_free(io->ssl);
	}
	close(io->fd);
	free(io->buf);
	io->buf = NULL;
}

/* Reads more into buf[len..BUFSZ), compacting first when the buffer is
 * empty or full. Dies on EOF or error. */
static void
io_more(struct io *io)
{
	ssize_t n;

	if (io->off == io->len) {
		io->off = io->len = 0;
	} else if (io->len == BUFSZ || io->off > BUFSZ / 2) {
		memmove(io->buf, io->buf + io->off, io->len - io->off);
		io->len -= io->off;
		io->off = 0;
	}
	if (io->len == BUFSZ)
		die("response line longer than %u bytes", BUFSZ);
	if (io->ssl != NULL) {
		int r = SSL_read(io->ssl, io->buf + io->len,
				 (int)(BUFSZ - io->len));

		if (r <= 0)
			die("TLS read from port %d: connection closed or "
			    "failed (SSL error %d)", o_port,
			    SSL_get_error(io->ssl, r));
		n = r;
	} else {
		do {
			n = read(io->fd, io->buf + io->len, BUFSZ - io->len);
		} while (n < 0 && errno == EINTR);
		if (n < 0)
			die("read from port %d: %s", o_port, strerror(errno));
		if (n == 0)
			die("port %d closed the connection", o_port);
	}
	io->len += (size_t)n;
	io->rx += (uint64_t)n;
}

static void
io_write(struct io *io, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;

		if (io->ssl != NULL) {
			int r = SSL_write(io->ssl, p, (int)n);

			if (r <= 0)
				die("TLS write failed");
			w = r;
		} else {
			w = write(io->fd, p, n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				die("write to port %d: %s", o_port,
				    strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
}

static void
io_printf(struct io *io, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		die("command too long");
	io_write(io, line, (size_t)n);
}

/* The next line, without its CRLF (NUL-terminated in place); valid until
 * the next io_* call. */
static char *
io_line(struct io *io, size_t *n_r)
{
	for (;;) {
		char *p = io->buf + io->off;
		char *q = memchr(p, '\n', io->len - io->off);

		if (q != NULL) {
			size_t n = (size_t)(q - p);

			io->off += n + 1;
			if (n > 0 && p[n - 1] == '\r')
				n--;
			p[n] = '\0';
			*n_r = n;
			return p;
		}
		io_more(io);
	}
}

static void
io_skip(struct io *io, uint64_t n)
{
	while (n > 0) {
		size_t k;

		if (io->off == io->len)
			io_more(io);
		k = io->len - io->off;
		if (k > n)
			k = (size_t)n;
		io->off += k;
		n -= k;
	}
}

/* ----------------------------------------------------------------- POP3 */

static char *
pop3_ok(struct io *io, const char *what)
{
	size_t n;
	char *l = io_line(io, &n);

	if (strncmp(l, "+OK", 3) != 0)
		die("%s: expected +OK, got: %.200s", what, l);
	return l;
}

/* The length of p[0..n) up to a '.' that starts a line (bol: p[0] does),
 * or n. Dots are rare in most mail, so memchr skips far. */
static size_t
to_dot_line(const char *p, size_t n, int bol)
{
	const char *q = p;

	while ((q = memchr(q, '.', n - (size_t)(q - p))) != NULL) {
		if (q == p ? bol : q[-1] == '\n')
			return (size_t)(q - p);
		q++;
	}
	return n;
}

/* Reads a multi-line body up to CRLF.CRLF; returns the octets with the
 * dot-stuffing removed and, when lines_r is set, counts the lines. */
static uint64_t
pop3_multiline(struct io *io, uint64_t *lines_r)
{
	uint64_t bytes = 0, lines = 0;
	int bol = 1;

	for (;;) {
		char *p, *q;
		size_t n, k;

		if (io->off == io->len)
			io_more(io);
		p = io->buf + io->off;
		n = io->len - io->off;
		if (bol && p[0] == '.') {
			if (n < 3) {
				io_more(io);
				continue;
			}
			if (p[1] == '\r' && p[2] == '\n') {
				io->off += 3;
				break;
			}
			p++;		/* a stuffed dot */
			n--;
			io->off++;
			bol = 0;
		}
		if (lines_r == NULL) {
			/* Only the dot lines matter. */
			k = to_dot_line(p, n, bol);
			if (k > 0)
				bol = p[k - 1] == '\n';
			bytes += k;
			io->off += k;
			continue;
		}
		bol = 0;
		q = memchr(p, '\n', n);
		if (q == NULL) {
			bytes += n;
			io->off = io->len;
			continue;
		}
		bytes += (uint64_t)(q - p) + 1;
		io->off += (size_t)(q - p) + 1;
		bol = 1;
		lines++;
	}
	if (lines_r != NULL)
		*lines_r = lines;
	return bytes;
}

static void
pop3_login(struct io *io)
{
	pop3_ok(io, "greeting");
	io_printf(io, "USER %s\r\n", o_user);
	pop3_ok(io, "USER");
	io_printf(io, "PASS %s\r\n", o_pass);
	pop3_ok(io, "PASS");
}

static void
pop3_stat(struct io *io, unsigned *count, uint64_t *total)
{
	unsigned long long t;
	char *l;

	io_write(io, "STAT\r\n", 6);
	l = pop3_ok(io, "STAT");
	if (sscanf(l, "+OK %u %llu", count, &t) != 2)
		die("bad STAT reply: %.200s", l);
	*total = t;
}

static void
pop3_quit(struct io *io)
{
	io_write(io, "QUIT\r\n", 6);
	pop3_ok(io, "QUIT");
}

static int
mode_pop3_retr(void)
{
	struct io io;
	unsigned count, i, n;
	uint64_t total, bytes = 0;
	double t0, t1, ts;

	ts = now();
	io_open(&io);
	pop3_login(&io);
	pop3_stat(&io, &count, &total);
	n = o_count == 0 || o_count > count ? count : o_count;
	if (n == 0)
		die("the maildrop is empty");
	t0 = now();
	for (i = 1; i <= n; i++) {
		io_printf(&io, "RETR %u\r\n", i);
		pop3_ok(&io, "RETR");
		bytes += pop3_multiline(&io, NULL);
	}
	t1 = now();
	pop3_quit(&io);
	io_close(&io);
	printf("time=%.6f msgs=%u bytes=%" PRIu64 " stat_msgs=%u "
	       "stat_bytes=%" PRIu64 " session=%.6f cpu=%.3f\n",
	       t1 - t0, n, bytes, count, total, now() - ts, cpu_self());
	return 0;
}

static int
mode_pop3_list(void)
{
	struct io io;
	unsigned count;
	uint64_t total, lines;
	double t0, t1;

	t0 = now();
	io_open(&io);
	pop3_login(&io);
	pop3_stat(&io, &count, &total);
	io_write(&io, "UIDL\r\n", 6);
	pop3_ok(&io, "UIDL");
	pop3_multiline(&io, &lines);
	t1 = now();
	pop3_quit(&io);
	io_close(&io);
	if (lines != count)
		die("UIDL listed %" PRIu64 " messages, STAT said %u", lines,
		    count);
	printf("time=%.6f msgs=%u bytes=%" PRIu64 " cpu=%.3f\n", t1 - t0,
	       count, total, cpu_self());
	return 0;
}

/* ----------------------------------------------------------------- IMAP */

struct imap_res {
	uint64_t lit_bytes;
	unsigned fetches;
	uint32_t *uids;		/* from "* SEARCH", when wanted */
	size_t n_uids, cap_uids;
	int want_uids;
};

static unsigned imap_seq;

/* If the line ends with {N} or {N+}, returns N, else -1. */
static long long
literal_len(const char *l, size_t n)
{
	size_t i;

	if (n < 3 || l[n - 1] != '}')
		return -1;
	i = n - 2;
	if (l[i] == '+')
		i--;
	while (i > 0 && l[i] >= '0' && l[i] <= '9')
		i--;
	if (l[i] != '{' || i + 2 > n - 1)
		return -1;
	return strtoll(l + i + 1, NULL, 10);
}

static void
search_uids(struct imap_res *r, const char *l)
{
	const char *p = l + 8;	/* "* SEARCH" */

	while (*p == ' ') {
		char *end;
		unsigned long v = strtoul(p + 1, &end, 10);

		if (end == p + 1)
			break;
		if (r->n_uids == r->cap_uids) {
			r->cap_uids = r->cap_uids ? r->cap_uids * 2 : 1024;
			r->uids = realloc(r->uids,
					  r->cap_uids * sizeof(*r->uids));
			if (r->uids == NULL)
				die("out of memory");
		}
		r->uids[r->n_uids++] = (uint32_t)v;
		p = end;
	}
}

/* Sends "tag CMD" and reads up to the tagged reply; dies unless OK. */
static void
imap_cmd(struct io *io, struct imap_res *r, const char *fmt, ...)
{
	char cmd[1024], tag[16];
	va_list ap;
	size_t taglen, n;
	int len;

	snprintf(tag, sizeof(tag), "a%u", ++imap_seq);
	taglen = strlen(tag);
	va_start(ap, fmt);
	len = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= sizeof(cmd))
		die("command too long");
	io_printf(io, "%s %s\r\n", tag, cmd);
	for (;;) {
		char *l = io_line(io, &n);
		long long lit;

		if (n > taglen && memcmp(l, tag, taglen) == 0 &&
		    l[taglen] == ' ') {
			if (strncmp(l + taglen + 1, "OK", 2) != 0)
				die("IMAP %s: %.200s", cmd, l);
			return;
		}
		if (l[0] == '*' && n > 8 && strstr(l, " FETCH (") != NULL)
			r->fetches++;
		else if (r->want_uids && strncmp(l, "* SEARCH", 8) == 0)
			search_uids(r, l);
		while ((lit = literal_len(l, n)) >= 0) {
			io_skip(io, (uint64_t)lit);
			r->lit_bytes += (uint64_t)lit;
			l = io_line(io, &n);
		}
	}
}

/* An IMAP quoted string. */
static void
quote(char *dst, size_t cap, const char *s)
{
	size_t o = 0;

	dst[o++] = '"';
	for (; *s != '\0' && o + 3 < cap; s++) {
		if (*s == '"' || *s == '\\')
			dst[o++] = '\\';
		dst[o++] = *s;
	}
	dst[o++] = '"';
	dst[o] = '\0';
}

static void
imap_login(struct io *io)
{
	struct imap_res r = { 0 };
	char qu[512], qp[512];
	size_t n;
	char *l = io_line(io, &n);

	if (strncmp(l, "* OK", 4) != 0)
		die("IMAP greeting: %.200s", l);
	quote(qu, sizeof(qu), o_user);
	quote(qp, sizeof(qp), o_pass);
	imap_cmd(io, &r, "LOGIN %s %s", qu, qp);
}

static void
imap_logout(struct io *io)
{
	struct imap_res r = { 0 };

	imap_cmd(io, &r, "LOGOUT");
}

static int
mode_imap_fetch(void)
{
	struct io io;
	struct imap_res r = { 0 }, f = { 0 };
	size_t i, n;
	double t0, t1, ts;

	ts = now();
	io_open(&io);
	imap_login(&io);
	imap_cmd(&io, &r, "SELECT INBOX");
	r.want_uids = 1;
	imap_cmd(&io, &r, "UID SEARCH ALL");
	n = o_count == 0 || o_count > r.n_uids ? r.n_uids : o_count;
	if (n == 0)
		die("the mailbox is empty");
	t0 = now();
	for (i = 0; i < n; i++)
		imap_cmd(&io, &f, "UID FETCH %u BODY.PEEK[]", r.uids[i]);
	t1 = now();
	imap_logout(&io);
	io_close(&io);
	if (f.fetches != n)
		die("%u FETCH responses for %zu UIDs", f.fetches, n);
	printf("time=%.6f msgs=%zu bytes=%" PRIu64 " session=%.6f cpu=%.3f\n",
	       t1 - t0, n, f.lit_bytes, now() - ts, cpu_self());
	return 0;
}

static int
mode_imap_list(void)
{
	struct io io;
	struct imap_res r = { 0 };
	double t0, t1;

	t0 = now();
	io_open(&io);
	imap_login(&io);
	imap_cmd(&io, &r, "SELECT INBOX");
	r.fetches = 0;
	imap_cmd(&io, &r, "UID FETCH 1:* (UID RFC822.SIZE)");
	t1 = now();
	imap_logout(&io);
	io_close(&io);
	printf("time=%.6f msgs=%u cpu=%.3f\n", t1 - t0, r.fetches, cpu_self());
	return 0;
}

/* ------------------------------------------- figure 7: whole sessions */

/* connect() .. greeting .. USER .. PASS -> +OK; sets the times. */
static void
pop3_timed_login(struct io *io, double *t_conn, double *greet, double *login)
{
	double t1;

	*t_conn = now();
	io_open(io);
	pop3_ok(io, "greeting");
	*greet = now() - *t_conn;
	io_printf(io, "USER %s\r\n", o_user);
	pop3_ok(io, "USER");
	io_printf(io, "PASS %s\r\n", o_pass);
	t1 = now();
	pop3_ok(io, "PASS");
	*login = now() - t1;
}

static int
mode_pop3_login(void)
{
	struct io io;
	unsigned count;
	uint64_t total;
	double t0, greet, login;

	double t1, stat;

	pop3_timed_login(&io, &t0, &greet, &login);
	t1 = now();
	pop3_stat(&io, &count, &total);
	stat = now() - t1;
	pop3_quit(&io);
	io_close(&io);
	printf("time=%.6f stat=%.6f greet=%.6f msgs=%u bytes=%" PRIu64
	       " session=%.6f cpu=%.3f\n", login, login + stat, greet, count,
	       total, now() - t0, cpu_self());
	return 0;
}

/* RETR (top = 0) or TOP n 0 (top = 1) of messages 1..N, one at a time or
 * all in one write (pipe), after USER, PASS, STAT. */
static int
pop3_session(int top, int pipe)
{
	struct io io;
	unsigned count, i, n;
	uint64_t total, bytes = 0;
	double t0, t1, greet, login;

	pop3_timed_login(&io, &t0, &greet, &login);
	pop3_stat(&io, &count, &total);
	n = o_count == 0 || o_count > count ? count : o_count;
	if (n == 0)
		die("the maildrop is empty");
	if (pipe) {
		size_t cap = (size_t)n * 32, len = 0;
		char *cmds = malloc(cap);

		if (cmds == NULL)
			die("out of memory");
		for (i = 1; i <= n; i++)
			len += (size_t)snprintf(cmds + len, cap - len,
						top ? "TOP %u 0\r\n" :
						"RETR %u\r\n", i);
		io_write(&io, cmds, len);
		free(cmds);
	}
	for (i = 1; i <= n; i++) {
		if (!pipe)
			io_printf(&io, top ? "TOP %u 0\r\n" : "RETR %u\r\n",
				  i);
		pop3_ok(&io, top ? "TOP" : "RETR");
		bytes += pop3_multiline(&io, NULL);
	}
	t1 = now();
	pop3_quit(&io);
	io_close(&io);
	printf("time=%.6f login=%.6f greet=%.6f msgs=%u bytes=%" PRIu64
	       " stat_msgs=%u stat_bytes=%" PRIu64 " cpu=%.3f\n", t1 - t0,
	       login, greet, n, bytes, count, total, cpu_self());
	return 0;
}

/* LOGIN, SELECT, UID FETCH 1:* BODY.PEEK[section], each sent when the
 * previous one has been answered, as an IMAP client does it. */
static int
imap_session(const char *section)
{
	struct io io;
	struct imap_res r = { 0 }, f = { 0 };
	char qu[512], qp[512], *l;
	size_t n;
	double t0, t1, t2, greet;

	t0 = now();
	io_open(&io);
	l = io_line(&io, &n);
	if (strncmp(l, "* OK", 4) != 0)
		die("IMAP greeting: %.200s", l);
	greet = now() - t0;
	quote(qu, sizeof(qu), o_user);
	quote(qp, sizeof(qp), o_pass);
	t1 = now();
	imap_cmd(&io, &r, "LOGIN %s %s", qu, qp);
	t2 = now() - t1;
	imap_cmd(&io, &r, "SELECT INBOX");
	imap_cmd(&io, &f, "UID FETCH 1:* BODY.PEEK[%s]", section);
	t1 = now();
	imap_logout(&io);
	io_close(&io);
	printf("time=%.6f login=%.6f greet=%.6f msgs=%u bytes=%" PRIu64
	       " cpu=%.3f\n", t1 - t0, t2, greet, f.fetches, f.lit_bytes,
	       cpu_self());
	return 0;
}

/* ----------------------------------------------------------- RSS probe */

static long
proc_status_kb(long pid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (f == NULL)
		die("cannot read %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/* Resets the peak RSS (VmHWM) to the current RSS; 0 when done. */
static int
reset_hwm(long pid)
{
	char path[64];
	int fd, ok;

	snprintf(path, sizeof(path), "/proc/%ld/clear_refs", pid);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ok = write(fd, "5", 1) == 1;
	close(fd);
	return ok ? 0 : -1;
}

static int
mode_pop3_rss(void)
{
	struct io io;
	unsigned count, i, pick = 0;
	uint64_t total, size = 0, bytes = 0, lines;
	long base, peak, hwm, v;
	double t0, t1;
	int hwm_ok;
	size_t n;

	if (o_pid <= 0)
		die("--pid is required");
	io_open(&io);
	pop3_login(&io);
	pop3_stat(&io, &count, &total);
	io_write(&io, "LIST\r\n", 6);
	pop3_ok(&io, "LIST");
	for (i = 0; i < count + 1; i++) {
		char *l = io_line(&io, &n);
		unsigned num;
		unsigned long long sz;

		if (strcmp(l, ".") == 0)
			break;
		if (sscanf(l, "%u %llu", &num, &sz) != 2)
			die("bad LIST line: %.200s", l);
		if (pick == 0 ||
		    (strcmp(o_pick, "largest") == 0 ? sz > size : sz < size)) {
			pick = num;
			size = sz;
		}
	}
	if (pick == 0)
		die("the maildrop is empty");
	hwm_ok = reset_hwm(o_pid) == 0;
	base = proc_status_kb(o_pid, "VmRSS");
	peak = base;
	io_printf(&io, "RETR %u\r\n", pick);
	t0 = now();
	pop3_ok(&io, "RETR");
	/* The body, read at the requested rate, with an RSS sample after
	 * every buffer; the same terminator logic as pop3_multiline, with a
	 * pause between reads. */
	{
		int bol = 1;
		double start = now();

		for (;;) {
			char *p, *q;

			if (io.off == io.len) {
				if (o_rate > 0) {
					double due = start + (double)io.rx /
						(o_rate * 1e6);
					double d = due - now();

					if (d > 0) {
						struct timespec ts = {
							(time_t)d,
							(long)((d - (double)(time_t)d) * 1e9)
						};

						nanosleep(&ts, NULL);
					}
				}
				io_more(&io);
				v = proc_status_kb(o_pid, "VmRSS");
				if (v > peak)
					peak = v;
			}
			p = io.buf + io.off;
			n = io.len - io.off;
			if (bol) {
				if (p[0] == '.') {
					if (n < 3) {
						io_more(&io);
						continue;
					}
					if (p[1] == '\r' && p[2] == '\n') {
						io.off += 3;
						break;
					}
					p++;
					n--;
					io.off++;
				}
				bol = 0;
			}
			q = memchr(p, '\n', n);
			if (q == NULL) {
				bytes += n;
				io.off = io.len;
				continue;
			}
			bytes += (uint64_t)(q - p) + 1;
			io.off += (size_t)(q - p) + 1;
			bol = 1;
		}
	}
	t1 = now();
	hwm = proc_status_kb(o_pid, "VmHWM");
	v = proc_status_kb(o_pid, "VmRSS");
	if (v > peak)
		peak = v;
	if (hwm_ok && hwm > peak)
		peak = hwm;
	(void)lines;
	pop3_quit(&io);
	io_close(&io);
	printf("base_kb=%ld peak_kb=%ld hwm_reset=%d msg=%u size=%" PRIu64
	       " bytes=%" PRIu64 " time=%.6f\n", base, peak, hwm_ok, pick,
	       size, bytes, t1 - t0);
	return 0;
}

/* ------------------------------------------------------- idle sessions */

enum { S_CONNECTING, S_GREET, S_USER, S_PASS, S_DONE, S_FAILED };

struct sess {
	int fd;
	int state;
	unsigned len;
	char buf[256];
};

static char first_error[300];

static void
sess_fail(struct sess *s, int ep, const char *why)
{
	if (first_error[0] == '\0')
		snprintf(first_error, sizeof(first_error), "%s", why);
	epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	s->state = S_FAILED;
}

static void
sess_send(struct sess *s, int ep, const char *fmt, const char *arg)
{
	char line[600];
	int n = snprintf(line, sizeof(line), fmt, arg);

	/* A few bytes on a fresh socket: the kernel takes them at once. */
	if (write(s->fd, line, (size_t)n) != n)
		sess_fail(s, ep, "short write");
}

/* Handles input; returns 1 when the session reached S_DONE or failed. */
static int
sess_input(struct sess *s, int ep)
{
	for (;;) {
		ssize_t r = read(s->fd, s->buf + s->len,
				 sizeof(s->buf) - 1 - s->len);
		char *nl;

		if (r < 0 && errno == EAGAIN)
			return 0;
		if (r <= 0) {
			sess_fail(s, ep, r == 0 ? "server closed the connection"
					       : strerror(errno));
			return 1;
		}
		s->len += (unsigned)r;
		s->buf[s->len] = '\0';
		while ((nl = strchr(s->buf, '\n')) != NULL) {
			char line[256];
			size_t ll = (size_t)(nl - s->buf);

			memcpy(line, s->buf, ll);
			line[ll] = '\0';
			memmove(s->buf, nl + 1, s->len - ll - 1);
			s->len -= (unsigned)ll + 1;
			s->buf[s->len] = '\0';
			if (strncmp(line, "+OK", 3) != 0) {
				char why[300];

				snprintf(why, sizeof(why), "%s", line);
				why[strcspn(why, "\r")] = '\0';
				sess_fail(s, ep, why);
				return 1;
			}
			switch (s->state) {
			case S_GREET:
				if (!o_login) {
					s->state = S_DONE;
					break;
				}
				sess_send(s, ep, "USER %s\r\n", o_user);
				if (s->state != S_FAILED)
					s->state = S_USER;
				break;
			case S_USER:
				sess_send(s, ep, "PASS %s\r\n", o_pass);
				if (s->state != S_FAILED)
					s->state = S_PASS;
				break;
			case S_PASS:
				s->state = S_DONE;
				break;
			default:
				sess_fail(s, ep, "unexpected input");
				return 1;
			}
			if (s->state == S_FAILED)
				return 1;
			if (s->state == S_DONE) {
				epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
				return 1;
			}
		}
		if (s->len >= sizeof(s->buf) - 1) {
			sess_fail(s, ep, "line too long");
			return 1;
		}
	}
}

static int
mode_pop3_idle(void)
{
	struct sess *ss;
	struct epoll_event evs[256];
	unsigned started = 0, active = 0, ok = 0, fail = 0, i;
	double t0 = now(), deadline = t0 + o_timeout;
	char junk[64];
	int ep;

	if (o_sessions == 0)
		die("--sessions is required");
	ss = calloc(o_sessions, sizeof(*ss));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ss == NULL || ep < 0)
		die("out of memory");
	while (ok + fail < o_sessions) {
		int nev;

		if (now() > deadline)
			die("timed out after %us with %u of %u sessions "
			    "open (%u failed; first error: %s)", o_timeout,
			    ok, o_sessions, fail, first_error);
		while (active < o_window && started < o_sessions) {
			struct sess *s = &ss[started++];
			struct epoll_event ev;

			s->fd = tcp_connect(1);
			if (s->fd < 0) {
				snprintf(junk, sizeof(junk), "connect: %s",
					 strerror(errno));
				if (first_error[0] == '\0')
					snprintf(first_error,
						 sizeof(first_error), "%s",
						 junk);
				s->state = S_FAILED;
				fail++;
				continue;
			}
			s->state = S_CONNECTING;
			ev.events = EPOLLOUT | EPOLLIN;
			ev.data.ptr = s;
			if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
				die("epoll_ctl: %s", strerror(errno));
			active++;
		}
		nev = epoll_wait(ep, evs, 256, 1000);
		for (i = 0; i < (unsigned)(nev > 0 ? nev : 0); i++) {
			struct sess *s = evs[i].data.ptr;
			int done;

			if (s->state == S_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof(err);
				struct epoll_event ev;

				getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err,
					   &el);
				if (err != 0) {
					sess_fail(s, ep, strerror(err));
					active--;
					fail++;
					continue;
				}
				s->state = S_GREET;
				ev.events = EPOLLIN;
				ev.data.ptr = s;
				epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
			}
			done = sess_input(s, ep);
			if (done) {
				active--;
				if (s->state == S_DONE)
					ok++;
				else
					fail++;
			}
		}
	}
	printf("READY ok=%u fail=%u time=%.3f first_error=\"%s\"\n", ok, fail,
	       now() - t0, first_error);
	fflush(stdout);
	/* Hold the sessions until stdin ends (or the timeout passes). */
	{
		double end = now() + o_timeout;

		alarm(o_timeout + 5);
		while (now() < end && read(0, junk, sizeof(junk)) > 0)
			;
	}
	for (i = 0; i < o_sessions; i++)
		if (ss[i].fd > 0)
			close(ss[i].fd);
	return 0;
}

/* ----------------------------------------------------------------- main */

static void
usage(void)
{
	fputs("usage: pbbench pop3-retr|imap-fetch|pop3-list|imap-list|"
	      "pop3-idle|pop3-rss|pop3-login|pop3-seq|pop3-pipe|"
	      "pop3-top-seq|pop3-top-pipe|imap-all|imap-hdr\n"
	      "       --port P --user U --pass PW [options]\n"
	      "       (see the comment at the top of tests/bench/pbbench.c)\n",
	      stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "user", required_argument, NULL, 'u' },
		{ "pass", required_argument, NULL, 'w' },
		{ "tls", no_argument, NULL, 't' },
		{ "ca", required_argument, NULL, 'c' },
		{ "count", required_argument, NULL, 'n' },
		{ "sessions", required_argument, NULL, 's' },
		{ "login", no_argument, NULL, 'l' },
		{ "window", required_argument, NULL, 'W' },
		{ "pid", required_argument, NULL, 'P' },
		{ "pick", required_argument, NULL, 'k' },
		{ "rate", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	const char *mode;
	struct rlimit rl;
	int c;

	if (argc < 2)
		usage();
	mode = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'h': o_host = optarg; break;
		case 'p': o_port = atoi(optarg); break;
		case 'u': o_user = optarg; break;
		case 'w': o_pass = optarg; break;
		case 't': o_tls = 1; break;
		case 'c': o_ca = optarg; break;
		case 'n': o_count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': o_sessions = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'l': o_login = 1; break;
		case 'W': o_window = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'P': o_pid = strtol(optarg, NULL, 10); break;
		case 'k': o_pick = optarg; break;
		case 'r': o_rate = strtod(optarg, NULL); break;
		case 'T': o_timeout = (unsigned)strtoul(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (o_port <= 0 || o_user == NULL || o_pass == NULL)
		usage();
	if (o_window == 0)
		o_window = 1;
	signal(SIGPIPE, SIG_IGN);
	/* Every mode is bounded: SIGALRM ends a wedged run (pop3-idle
	 * re-arms it for its holding phase). */
	alarm(o_timeout);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (o_tls)
		tls_init();
	if (strcmp(mode, "pop3-retr") == 0)
		return mode_pop3_retr();
	if (strcmp(mode, "imap-fetch") == 0)
		return mode_imap_fetch();
	if (strcmp(mode, "pop3-list") == 0)
		return mode_pop3_list();
	if (strcmp(mode, "imap-list") == 0)
		return mode_imap_list();
	if (strcmp(mode, "pop3-idle") == 0)
		return mode_pop3_idle();
	if (strcmp(mode, "pop3-rss") == 0)
		return mode_pop3_rss();
	if (strcmp(mode, "pop3-login") == 0)
		return mode_pop3_login();
	if (strcmp(mode, "pop3-seq") == 0)
		return pop3_session(0, 0);
	if (strcmp(mode, "pop3-pipe") == 0)
		return pop3_session(0, 1);
	if (strcmp(mode, "pop3-top-seq") == 0)
		return pop3_session(1, 0);
	if (strcmp(mode, "pop3-top-pipe") == 0)
		return pop3_session(1, 1);
	if (strcmp(mode, "imap-all") == 0)
		return imap_session("");
	if (strcmp(mode, "imap-hdr") == 0)
		return imap_session("HEADER");
	usage();
	return 2;
}
