/*
 * libFuzzer target for a whole POP3 session: the real session, POP3
 * server, upstream and IMAP client code (all of src/ but main.c) on a
 * libuv loop in this process, between a scripted POP3 client and a fake
 * IMAP server whose replies are the fuzz input. What the parser hands to
 * the code above it (FETCH items, literals, quoted and empty bodies,
 * response codes) is what this target exercises; fuzz_imap_parse covers
 * the parser alone.
 *
 * Input: one flags byte, then IMAP server chunks separated by "~~~\n".
 * The first chunk is the greeting, sent as soon as popbridge connects;
 * each command line popbridge sends after that (a literal's continuation
 * too) is answered with the next chunk. In a chunk, "T " at the start of a
 * line becomes the tag of the last command ("P7 "). When popbridge waits
 * and nothing moves, the harness sends the next chunk anyway, then closes
 * the IMAP side once the chunks are used up, then the POP3 client: every
 * input ends, without waiting for any timeout.
 *
 * Flags byte (each bit picks one configuration or client variant):
 *   bits 0-1  on_delete = expunge, trash, seen, keep
 *   bit 2     mark_seen = yes
 *   bit 3     folders = INBOX, Junk (else INBOX)
 *   bit 4     since = 2020-01-01 (UID SEARCH SINCE at login)
 *   bit 5     read_ahead = 0 (else 4 MB)
 *   bit 6     the client waits for each response (else it pipelines)
 *   bit 7     AUTH PLAIN with an initial response (else USER and PASS)
 *
 * The client sends: login, STAT, LIST, UIDL, RETR 1, TOP 1 0, TOP 1 3,
 * TOP 2 99999999, RETR 2, DELE 1, QUIT. Waiting for each response, it also
 * checks the framing of what it reads: status lines start with +OK or
 * -ERR; in a multi-line body every LF follows a CR and a line that starts
 * with '.' is the terminator or byte-stuffed.
 *
 * The IMAP server listens on 127.0.0.1 on an ephemeral port (tls = none)
 * and the POP3 client reaches popbridge through a second listener of the
 * harness, whose accept hands the connection to session_start as
 * listener.c does. The UID maps go to a private directory (under $TMPDIR,
 * else /dev/shm, else /tmp: popbridge-fuzz.PID.XXXXXX) emptied after every
 * input and removed at exit, or by a later run after a crash.
 * After each input every session has ended and every libuv handle
 * popbridge opened has closed; one left behind aborts with a list.
 *
 * POPBRIDGE_FUZZ_TRACE=1 prints both conversations and popbridge's debug
 * log to stderr (for replaying one input).
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "daemon/config.h"
#include "daemon/server.h"
#include "net/conn.h"
#include "pop3/session.h"
#include "store/mapstore.h"
#include "util/log.h"
#include "fuzz_common.h"

#define SEP "~~~\n"
#define DIR_PREFIX "popbridge-fuzz."
#define SEP_LEN (sizeof(SEP) - 1)
#define N_VARIANTS 64		/* configurations: flags bits 0-5 */
/* Loop turns per input before the harness gives up waiting and tears
 * down (a bound, not a verdict: inputs end long before it). */
#define TURNS_MAX 100000
/* Teardown must finish this fast once both peers are gone. */
#define TEARDOWN_MS 2000

enum {
	F_ON_DELETE = 3,
	F_MARK_SEEN = 1 << 2,
	F_JUNK = 1 << 3,
	F_SINCE = 1 << 4,
	F_NO_AHEAD = 1 << 5,
	F_LOCKSTEP = 1 << 6,
	F_AUTH_PLAIN = 1 << 7,
};

struct step {
	const char *line;
	bool multi;		/* a multi-line response after +OK */
};

static const struct step login_user[] = {
	{ "USER fuzz\r\n", false },
	{ "PASS secret\r\n", false },
};
/* base64("\0fuzz\0secret") */
static const struct step login_plain[] = {
	{ "AUTH PLAIN AGZ1enoAc2VjcmV0\r\n", false },
};
static const struct step script[] = {
	{ "STAT\r\n", false },
	{ "LIST\r\n", true },
	{ "UIDL\r\n", true },
	{ "RETR 1\r\n", true },
	{ "TOP 1 0\r\n", true },
	{ "TOP 1 3\r\n", true },
	{ "TOP 2 99999999\r\n", true },
	{ "RETR 2\r\n", true },
	{ "DELE 1\r\n", false },
	{ "QUIT\r\n", false },
};
#define N_SCRIPT (sizeof(script) / sizeof(script[0]))

struct peer {
	uv_tcp_t tcp;
	bool used;		/* initialised, not yet closed */
	bool eof;
};

/* The fake IMAP server's side of the upstream connection. */
struct imap_side {
	struct peer p;
	bool line_start;
	bool in_tag;
	char word[16];		/* the first word of the line being read */
	size_t word_len;
	char tag[16];		/* of the last command: "P7" */
};

/* The scripted POP3 client. */
struct pop3_side {
	struct peer p;
	uv_connect_t connect;
	bool lockstep;
	const struct step *login;
	size_t n_login;
	size_t next;		/* steps sent */
	/* lockstep: reading the response to step next - 1 (or the
	 * greeting while next is 0) */
	bool greeted;
	bool in_body;
	const struct step *waiting;
	/* the line being read */
	size_t line_len;
	char head[2];
	bool prev_cr;
};

struct run {
	const uint8_t *data;
	size_t size;
	size_t pos;		/* next chunk starts here; size when none */
	size_t chunks_sent;
	struct server srv;
	struct imap_side imap;
	struct pop3_side pop3;
	unsigned extra_upstreams;	/* refused: one per input */
	unsigned writes;		/* the peers' writes in flight */
};

static struct {
	bool ready;
	bool trace;
	uv_loop_t loop;
	uv_tcp_t imap_listen;
	uv_tcp_t pop3_listen;
	struct sockaddr_in pop3_addr;
	uint16_t imap_port;
	char dir[256];
	struct config *cfg[N_VARIANTS];
	char read_buf[64 * 1024];
} h;

static struct run run;

/* --- helpers ------------------------------------------------------------ */

static void
trace(const char *who, const char *p, size_t n)
{
	if (!h.trace)
		return;
	fprintf(stderr, "---- %s (%zu bytes)\n", who, n);
	fwrite(p, 1, n, stderr);
	if (n > 0 && p[n - 1] != '\n')
		fputs("\n", stderr);
}

static void
on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
	(void)hd;
	(void)suggested;
	b->base = h.read_buf;
	b->len = sizeof(h.read_buf);
}

struct wreq {
	uv_write_t req;
	char data[];
};

static void
on_written(uv_write_t *req, int status)
{
	(void)status;
	run.writes--;
	free(req);
}

/* Copies p[0..n) out and writes it; failures show as a read error. */
static void
peer_send(struct peer *p, const char *data, size_t n)
{
	struct wreq *w;
	uv_buf_t b;

	if (!p->used || n == 0)
		return;
	w = xmalloc(sizeof(*w) + n);
	memcpy(w->data, data, n);
	b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&p->tcp, &b, 1, on_written) < 0)
		free(w);
	else
		run.writes++;
}

static void
free_handle(uv_handle_t *hd)
{
	free(hd);
}

static void
peer_close(struct peer *p)
{
	if (!p->used)
		return;
	p->used = false;
	uv_close((uv_handle_t *)&p->tcp, NULL);
}

/* --- the IMAP server ---------------------------------------------------- */

static bool
chunks_left(void)
{
	return run.pos < run.size;
}

NO_COVERAGE static const char *
find_sep(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i + SEP_LEN <= n; i++) {
		if (p[i] == SEP[0] && memcmp(p + i, SEP, SEP_LEN) == 0)
			return p + i;
	}
	return NULL;
}

/* Sends the next chunk with "T " at line starts replaced by the tag. */
static void
send_chunk(void)
{
	const char *p = (const char *)run.data + run.pos;
	const char *end = (const char *)run.data + run.size;
	const char *sep = find_sep(p, (size_t)(end - p));
	size_t n = sep != NULL ? (size_t)(sep - p) : (size_t)(end - p);
	size_t tl = strlen(run.imap.tag), i, k = 0;
	char *out;

	run.pos = sep != NULL ? (size_t)(sep + SEP_LEN - (const char *)run.data)
			      : run.size;
	run.chunks_sent++;
	/* At worst every second byte starts a "T " placeholder. */
	out = xmalloc(n / 2 * (tl + 1) + n + 1);
	for (i = 0; i < n; i++) {
		if (tl > 0 && i + 1 < n && p[i] == 'T' && p[i + 1] == ' ' &&
		    (i == 0 || p[i - 1] == '\n')) {
			memcpy(out + k, run.imap.tag, tl);
			k += tl;
			continue;	/* the space is copied next */
		}
		out[k++] = p[i];
	}
	trace("imap server sends", out, k);
	peer_send(&run.imap.p, out, k);
	free(out);
}

static bool
is_tag(const char *w, size_t n)
{
	size_t i;

	if (n < 2 || w[0] != 'P')
		return false;
	for (i = 1; i < n; i++) {
		if (w[i] < '0' || w[i] > '9')
			return false;
	}
	return true;
}

/* A command line (or a continuation line) from popbridge is complete. */
static void
imap_line_done(void)
{
	struct imap_side *s = &run.imap;

	if (is_tag(s->word, s->word_len)) {
		memcpy(s->tag, s->word, s->word_len);
		s->tag[s->word_len] = '\0';
	}
	if (chunks_left())
		send_chunk();
}

NO_COVERAGE static void
imap_scan(const char *p, size_t n)
{
	struct imap_side *s = &run.imap;
	size_t i;

	for (i = 0; i < n && s->p.used; i++) {
		char c = p[i];

		if (s->line_start) {
			s->line_start = false;
			s->in_tag = true;
			s->word_len = 0;
		}
		if (s->in_tag) {
			if (c == ' ' || c == '\r' || c == '\n') {
				s->in_tag = false;
			} else if (s->word_len < sizeof(s->word) - 1) {
				s->word[s->word_len++] = c;
			} else {
				s->word_len = 0;	/* too long for a tag */
				s->in_tag = false;
			}
		}
		if (c == '\n') {
			s->line_start = true;
			imap_line_done();
		}
	}
}

static void
on_imap_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	(void)st;
	if (n < 0) {
		run.imap.p.eof = true;
		peer_close(&run.imap.p);
		return;
	}
	trace("popbridge sends upstream", b->base, (size_t)n);
	imap_scan(b->base, (size_t)n);
}

static void
on_imap_connection(uv_stream_t *server, int status)
{
	struct imap_side *s = &run.imap;
	uv_tcp_t *extra;

	if (status < 0)
		return;
	if (s->p.used || s->p.eof) {
		/* A second upstream connection in one input: refused. */
		run.extra_upstreams++;
		extra = xmalloc(sizeof(*extra));
		CHECK(uv_tcp_init(&h.loop, extra) == 0);
		(void)uv_accept(server, (uv_stream_t *)extra);
		uv_close((uv_handle_t *)extra, free_handle);
		return;
	}
	CHECK(uv_tcp_init(&h.loop, &s->p.tcp) == 0);
	s->p.used = true;
	if (uv_accept(server, (uv_stream_t *)&s->p.tcp) < 0 ||
	    uv_read_start((uv_stream_t *)&s->p.tcp, on_alloc,
			  on_imap_read) < 0) {
		peer_close(&s->p);
		return;
	}
	s->line_start = true;
	if (chunks_left())
		send_chunk();		/* the greeting */
}

/* --- the POP3 client ---------------------------------------------------- */

static const struct step *
step_at(size_t i)
{
	struct pop3_side *c = &run.pop3;

	if (i < c->n_login)
		return &c->login[i];
	i -= c->n_login;
	return i < N_SCRIPT ? &script[i] : NULL;
}

static void
pop3_send_next(void)
{
	struct pop3_side *c = &run.pop3;
	const struct step *st = step_at(c->next);

	c->waiting = st;
	if (st == NULL)
		return;
	c->next++;
	trace("pop3 client sends", st->line, strlen(st->line));
	peer_send(&c->p, st->line, strlen(st->line));
}

/* One line of a response has been read (lockstep only). */
static void
pop3_line_done(void)
{
	struct pop3_side *c = &run.pop3;
	bool dot = c->line_len >= 1 && c->head[0] == '.';
	bool ok = c->line_len >= 3 && memcmp(c->head, "+O", 2) == 0;

	if (c->in_body) {
		/* "." alone ends the body; any other line starting with a
		 * dot must have been stuffed. */
		if (dot && c->line_len == 2) {	/* ".\r" */
			c->in_body = false;
			pop3_send_next();
		} else if (dot) {
			CHECK(c->line_len >= 2 && c->head[1] == '.');
		}
		return;
	}
	CHECK(ok || (c->line_len >= 4 && memcmp(c->head, "-E", 2) == 0));
	if (!c->greeted) {
		c->greeted = true;
		pop3_send_next();
		return;
	}
	if (c->waiting != NULL && c->waiting->multi && ok) {
		c->in_body = true;
		return;
	}
	pop3_send_next();
}

NO_COVERAGE static void
pop3_scan(const char *p, size_t n)
{
	struct pop3_side *c = &run.pop3;
	size_t i;

	for (i = 0; i < n && c->p.used; i++) {
		char ch = p[i];

		if (ch == '\n') {
			/* popbridge ends every line with CRLF, stuffed bodies
			 * too (a bare LF becomes CRLF). */
			CHECK(c->prev_cr);
			pop3_line_done();
			c->line_len = 0;
			c->prev_cr = false;
			continue;
		}
		if (c->line_len < sizeof(c->head))
			c->head[c->line_len] = ch;
		c->line_len++;
		c->prev_cr = ch == '\r';
	}
}

static void
on_pop3_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	(void)st;
	if (n < 0) {
		run.pop3.p.eof = true;
		peer_close(&run.pop3.p);
		return;
	}
	trace("popbridge sends to the client", b->base, (size_t)n);
	if (run.pop3.lockstep)
		pop3_scan(b->base, (size_t)n);
}

static void
on_pop3_connected(uv_connect_t *req, int status)
{
	struct pop3_side *c = &run.pop3;
	size_t i;

	(void)req;
	if (!c->p.used)
		return;
	if (status < 0 ||
	    uv_read_start((uv_stream_t *)&c->p.tcp, on_alloc,
			  on_pop3_read) < 0) {
		peer_close(&c->p);
		return;
	}
	if (c->lockstep)
		return;		/* the greeting comes first */
	for (i = 0; step_at(i) != NULL; i++)
		pop3_send_next();
}

/* popbridge's side of the POP3 connection: what listener.c does for an
 * accepted client, without its limits. */
static void
on_pop3_connection(uv_stream_t *server, int status)
{
	struct conn *c;

	if (status < 0)
		return;
	c = conn_accept(&h.loop, server);
	CHECK(c != NULL);
	(void)session_start(&run.srv, c, 0);
}

/* --- setup -------------------------------------------------------------- */

static void
remove_dir_contents(const char *dir)
{
	char path[512];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		(void)unlink(path);
	}
	closedir(d);
}

static void
at_exit(void)
{
	size_t i;

	if (h.dir[0] != '\0') {
		remove_dir_contents(h.dir);
		(void)rmdir(h.dir);
	}
	for (i = 0; i < N_VARIANTS; i++)
		config_free(&h.cfg[i]);
}

/* A crash leaves its process's directory behind (libFuzzer exits without
 * atexit handlers): the next run removes those of processes gone. */
static void
remove_stale_dirs(const char *base)
{
	char path[512];
	struct dirent *e;
	long pid;
	char *end;
	DIR *d = opendir(base);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, DIR_PREFIX, strlen(DIR_PREFIX)) != 0)
			continue;
		pid = strtol(e->d_name + strlen(DIR_PREFIX), &end, 10);
		if (pid <= 0 || *end != '.' ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
		remove_dir_contents(path);
		(void)rmdir(path);
	}
	closedir(d);
}

static void
make_dir(void)
{
	const char *bases[] = { getenv("TMPDIR"), "/dev/shm", "/tmp" };
	size_t i;

	for (i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		if (bases[i] == NULL || bases[i][0] == '\0' ||
		    strlen(bases[i]) > 128 || access(bases[i], W_OK) < 0)
			continue;
		remove_stale_dirs(bases[i]);
		snprintf(h.dir, sizeof(h.dir), "%s/" DIR_PREFIX "%ld.XXXXXX",
			 bases[i], (long)getpid());
		if (mkdtemp(h.dir) != NULL)
			return;
	}
	fprintf(stderr, "fuzz_session: cannot create a state directory\n");
	abort();
}

static void
listen_on(uv_tcp_t *t, uv_connection_cb cb, struct sockaddr_in *bound)
{
	struct sockaddr_in sin;
	int len = sizeof(*bound);

	CHECK(uv_ip4_addr("127.0.0.1", 0, &sin) == 0);
	CHECK(uv_tcp_init(&h.loop, t) == 0);
	CHECK(uv_tcp_bind(t, (const struct sockaddr *)&sin, 0) == 0);
	CHECK(uv_listen((uv_stream_t *)t, 64, cb) == 0);
	CHECK(uv_tcp_getsockname(t, (struct sockaddr *)bound, &len) == 0);
}

static struct config *
variant(unsigned v)
{
	static const char *const on_delete[] = {
		"expunge", "trash", "seen", "keep",
	};
	char text[1024], err[CONFIG_ERR_MAX];

	if (h.cfg[v] != NULL)
		return h.cfg[v];
	snprintf(text, sizeof(text),
		 "[listen]\n"
		 "allow_plaintext_auth = always\n"
		 "[upstream]\n"
		 "host = 127.0.0.1\n"
		 "port = %u\n"
		 "tls = none\n"
		 "timeout = 30\n"
		 "read_ahead = %u\n"
		 "[maildrop]\n"
		 "folders = %s\n"
		 "since = %s\n"
		 "on_delete = %s\n"
		 "trash = Trash\n"
		 "mark_seen = %s\n"
		 "[state]\n"
		 "dir = %s\n"
		 "[limits]\n"
		 "idle_timeout = 600\n"
		 "auth_fail_delay = 0\n",
		 (unsigned)h.imap_port, (v & F_NO_AHEAD) ? 0u : 4u,
		 (v & F_JUNK) ? "INBOX, Junk" : "INBOX",
		 (v & F_SINCE) ? "2020-01-01" : "all",
		 on_delete[v & F_ON_DELETE],
		 (v & F_MARK_SEEN) ? "yes" : "no", h.dir);
	if (config_load_string(text, "fuzz_session.ini", &h.cfg[v], err,
			       sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	return h.cfg[v];
}

static void
setup(void)
{
	struct sockaddr_in imap_addr;
	const char *t = getenv("POPBRIDGE_FUZZ_TRACE");

	h.trace = t != NULL && t[0] != '\0' && strcmp(t, "0") != 0;
	log_set_level(h.trace ? LOG_DEBUG : LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	make_dir();
	atexit(at_exit);
	CHECK(uv_loop_init(&h.loop) == 0);
	listen_on(&h.imap_listen, on_imap_connection, &imap_addr);
	listen_on(&h.pop3_listen, on_pop3_connection, &h.pop3_addr);
	h.imap_port = ntohs(imap_addr.sin_port);
	h.ready = true;
}

/* --- driving the loop --------------------------------------------------- */

static void
count_handle(uv_handle_t *hd, void *arg)
{
	if (hd != (uv_handle_t *)&h.imap_listen &&
	    hd != (uv_handle_t *)&h.pop3_listen)
		++*(unsigned *)arg;
}

/* Handles of this input (popbridge's and the peers'), closing or not. */
static unsigned
input_handles(void)
{
	unsigned n = 0;

	uv_walk(&h.loop, count_handle, &n);
	return n;
}

/* Callbacks are due now, or the kernel has events for the loop (within
 * wait_ms). */
static bool
loop_busy(int wait_ms)
{
	struct pollfd p = { .fd = uv_backend_fd(&h.loop), .events = POLLIN };

	if (uv_backend_timeout(&h.loop) == 0)
		return true;
	return poll(&p, 1, wait_ms) > 0;
}

/* Requests that will complete without a peer's move: a resolve in the
 * thread pool, a connect, popbridge's writes (the peers always read). A
 * peer's write to a socket popbridge stopped reading waits for popbridge,
 * so it does not count. */
static bool
reqs_pending(void)
{
	return h.loop.active_reqs.count > run.writes;
}

/*
 * Turns the loop until nothing is due and nothing is on its way: no
 * callback pending, no socket event, no request outstanding (a resolve in
 * the thread pool, a connect, a write). popbridge's own timers are seconds
 * away and never count. Returns false when the turn bound was hit.
 */
static bool
settle(unsigned *turns)
{
	for (; *turns < TURNS_MAX; ++*turns) {
		if (loop_busy(0))
			uv_run(&h.loop, UV_RUN_NOWAIT);
		else if (reqs_pending())
			uv_run(&h.loop, UV_RUN_ONCE);	/* sleeps in poll */
		else
			return true;
	}
	return false;
}

/* popbridge waits for a peer: make the next peer move. */
static bool
escalate(void)
{
	if (run.imap.p.used && chunks_left()) {
		send_chunk();
		return true;
	}
	if (run.imap.p.used) {
		peer_close(&run.imap.p);
		return true;
	}
	if (run.pop3.p.used) {
		peer_close(&run.pop3.p);
		return true;
	}
	return false;
}

static void
print_handle(uv_handle_t *hd, void *arg)
{
	(void)arg;
	fprintf(stderr, "  %s handle %p%s%s\n", uv_handle_type_name(hd->type),
		(void *)hd, uv_is_active(hd) ? " active" : "",
		uv_is_closing(hd) ? " closing" : "");
}

static void
teardown(void)
{
	uint64_t start = uv_hrtime();
	unsigned idle = 0;

	/* What a shutdown does once its grace expires. */
	server_end_all(&run.srv, "fuzz input done");
	peer_close(&run.imap.p);
	peer_close(&run.pop3.p);
	while (input_handles() > 0) {
		if (loop_busy(idle) || h.loop.active_reqs.count > 0) {
			uv_run(&h.loop, UV_RUN_ONCE);
			idle = 0;
		} else if (++idle > 3 ||
			   uv_hrtime() - start > TEARDOWN_MS * 1000000ull) {
			/* Only popbridge's timers are left, seconds away:
			 * something was not closed with its session. */
			fprintf(stderr, "fuzz_session: handles left after "
				"the session ended:\n");
			uv_walk(&h.loop, print_handle, NULL);
			abort();
		}
	}
	CHECK(run.srv.n_sessions == 0);
	if (h.trace)
		fprintf(stderr, "---- done: %zu chunks sent, %s left\n",
			run.chunks_sent, chunks_left() ? "some" : "none");
	mapstore_free(&run.srv.maps);
	remove_dir_contents(h.dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned turns = 0;
	uint8_t flags;

	if (size < 1)
		return 0;
	if (!h.ready)
		setup();
	flags = data[0];
	memset(&run, 0, sizeof(run));
	run.data = data;
	run.size = size;
	run.pos = 1;
	run.srv.loop = &h.loop;
	run.srv.cfg = variant(flags % N_VARIANTS);
	run.pop3.lockstep = (flags & F_LOCKSTEP) != 0;
	if (flags & F_AUTH_PLAIN) {
		run.pop3.login = login_plain;
		run.pop3.n_login = sizeof(login_plain) / sizeof(login_plain[0]);
	} else {
		run.pop3.login = login_user;
		run.pop3.n_login = sizeof(login_user) / sizeof(login_user[0]);
	}

	CHECK(uv_tcp_init(&h.loop, &run.pop3.p.tcp) == 0);
	run.pop3.p.used = true;
	CHECK(uv_tcp_connect(&run.pop3.connect, &run.pop3.p.tcp,
			     (const struct sockaddr *)&h.pop3_addr,
			     on_pop3_connected) == 0);
	while (settle(&turns) && escalate())
		;
	teardown();
	return 0;
}
