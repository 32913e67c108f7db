/*
 * latrelay — a TCP relay that delays every byte by a fixed time in each
 * direction, for figure 7 of `make bench` (tests/bench/run.sh) and for
 * tests/integration/test_window.py: a mail server 2 x DELAY_MS away.
 *
 *   latrelay [-H] [-q MB] PORT UPSTREAM_PORT DELAY_MS
 *
 * Listens on 127.0.0.1:PORT (0: a port the kernel picks) and, for every
 * connection accepted, connects to 127.0.0.1:UPSTREAM_PORT; prints
 * "READY <port>" on stdout once listening. Any number of connections are
 * relayed at once, by one poll loop (ppoll, nanosecond timeouts).
 *
 * Each chunk read from either side is stamped with the time it was read
 * and queued; it is written to the other side DELAY_MS after that, never
 * sooner, and in order. Nothing else limits the rate: every read takes
 * what the socket holds (up to 256 KiB), so a direction carries as much as
 * the machine can copy, each byte DELAY_MS late. The only bound is on what
 * one direction may hold in its queue (-q, default 256 MB, which at 20 ms
 * is 12 GB/s): beyond it the relay stops reading that side until the other
 * side takes some, as TCP's window would. An end of stream (FIN) travels
 * the same way: the other side is shut down for writing DELAY_MS after it
 * was seen; a connection ends once both directions have ended, or at once
 * when either socket fails (the other is then closed too).
 *
 * What is not modelled by default is TCP's handshake: the client's
 * connect() completes at once and the upstream connection is opened when
 * the client's arrives, so a server greeting reaches the client DELAY_MS
 * after connect() returned. With -H the upstream connection is opened
 * 3 x DELAY_MS after the client's was accepted (SYN, SYN-ACK, ACK), so that
 * the greeting arrives 2 round trips after connect(), as over a real link;
 * what the client sends meanwhile waits.
 *
 * Signals (for the integration tests):
 *   SIGUSR1  reset every current connection, both sides (RST: SO_LINGER 0);
 *            the listener stays, new connections are relayed as before
 *   SIGUSR2  stall every current connection: nothing more is read or
 *            written on them, in either direction, until a peer closes
 *            (then both sides are closed) or SIGUSR1; new connections are
 *            relayed as before
 *   SIGTERM, SIGINT  exit (every connection closed)
 * stderr: one line per connection when it ends (octets each way, why).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READSZ (256u * 1024)

struct chunk {
	struct chunk *next;
	int64_t due;			/* ns, CLOCK_MONOTONIC */
	size_t len, off;
	int eof;			/* an end of stream, no data */
	char data[];
};

struct dir {
	int from, to;			/* indexes into conn.fd */
	struct chunk *head, *tail;
	size_t queued;			/* octets read, not yet written */
	uint64_t octets;		/* octets written */
	int eof_read, eof_sent;
	int blocked;			/* the last write would have blocked */
};

struct conn {
	struct conn *next;
	unsigned id;
	int fd[2];			/* 0: the client, 1: upstream */
	int64_t connect_at;		/* when to open upstream (-H) */
	int connecting;			/* upstream connect() in progress */
	int up;				/* upstream connected */
	int stalled;
	int dead;
	struct dir d[2];		/* 0: client -> upstream, 1: back */
	int pi[2];			/* pollfd index of each fd, or -1 */
};

static int64_t delay_ns;
static int handshake;
static size_t queue_cap = 256u << 20;
static int upstream_port;
static char rbuf[READSZ];
static struct conn *conns;
static unsigned n_conns, next_id;
static volatile sig_atomic_t got_usr1, got_usr2, got_term;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else if (sig == SIGUSR2)
		got_usr2 = 1;
	else
		got_term = 1;
}

static struct sockaddr_in
loopback(int port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static void
nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
free_queue(struct dir *d)
{
	struct chunk *c = d->head, *n;

	for (; c != NULL; c = n) {
		n = c->next;
		free(c);
	}
	d->head = d->tail = NULL;
	d->queued = 0;
}

/* Ends a connection: closes both sockets (with an RST when reset is set)
 * and logs it. */
static void
conn_close(struct conn *c, int reset, const char *why)
{
	struct linger lg = { 1, 0 };
	int i;

	if (c->dead)
		return;
	for (i = 0; i < 2; i++) {
		if (c->fd[i] < 0)
			continue;
		if (reset)
			setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg,
				   sizeof(lg));
		close(c->fd[i]);
		c->fd[i] = -1;
	}
	free_queue(&c->d[0]);
	free_queue(&c->d[1]);
	c->dead = 1;
	fprintf(stderr, "latrelay: connection %u ended (%s): %" PRIu64
		" octets up, %" PRIu64 " down\n", c->id, why, c->d[0].octets,
		c->d[1].octets);
}

static void
start_upstream(struct conn *c)
{
	struct sockaddr_in a = loopback(upstream_port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		conn_close(c, 1, "socket() failed");
		return;
	}
	nodelay(fd);
	c->fd[1] = fd;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		c->up = 1;
		return;
	}
	if (errno != EINPROGRESS) {
		conn_close(c, 1, "cannot connect upstream");
		return;
	}
	c->connecting = 1;
}

static void
accept_one(int ls)
{
	struct conn *c;
	int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	nodelay(fd);
	c->id = ++next_id;
	c->fd[0] = fd;
	c->fd[1] = -1;
	c->d[0].from = 0;
	c->d[0].to = 1;
	c->d[1].from = 1;
	c->d[1].to = 0;
	c->connect_at = now_ns() + (handshake ? 3 * delay_ns : 0);
	c->next = conns;
	conns = c;
	n_conns++;
	if (!handshake)
		start_upstream(c);
}

/* Reads what the socket holds into the direction's queue. */
static void
read_side(struct conn *c, struct dir *d, int64_t t)
{
	ssize_t n;
	struct chunk *ch;

	n = read(c->fd[d->from], rbuf, sizeof(rbuf));
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_close(c, 1, strerror(errno));
		return;
	}
	ch = malloc(sizeof(*ch) + (size_t)n);
	if (ch == NULL) {
		conn_close(c, 1, "out of memory");
		return;
	}
	ch->next = NULL;
	ch->due = t + delay_ns;
	ch->len = (size_t)n;
	ch->off = 0;
	ch->eof = n == 0;
	memcpy(ch->data, rbuf, (size_t)n);
	if (d->tail != NULL)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->queued += (size_t)n;
	if (n == 0)
		d->eof_read = 1;
}

/* Writes every chunk that is due; stops when the socket is full. */
static void
flush_side(struct conn *c, struct dir *d, int64_t t)
{
	d->blocked = 0;
	while (d->head != NULL && d->head->due <= t) {
		struct chunk *ch = d->head;

		if (ch->eof) {
			shutdown(c->fd[d->to], SHUT_WR);
			d->eof_sent = 1;
		} else {
			while (ch->off < ch->len) {
				ssize_t w = send(c->fd[d->to], ch->data + ch->off,
						 ch->len - ch->off, MSG_NOSIGNAL);

				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0 && errno == EAGAIN) {
					d->blocked = 1;
					return;
				}
				if (w <= 0) {
					conn_close(c, 1, strerror(errno));
					return;
				}
				ch->off += (size_t)w;
				d->queued -= (size_t)w;
				d->octets += (uint64_t)w;
			}
		}
		d->head = ch->next;
		if (d->head == NULL)
			d->tail = NULL;
		free(ch);
	}
}

static void
reap(void)
{
	struct conn **pp = &conns, *c;

	while ((c = *pp) != NULL) {
		if (!c->dead && c->d[0].eof_sent && c->d[1].eof_sent)
			conn_close(c, 0, "closed");
		if (c->dead) {
			*pp = c->next;
			free(c);
			n_conns--;
		} else {
			pp = &c->next;
		}
	}
}

static void
usage(void)
{
	fputs("usage: latrelay [-H] [-q MB] PORT UPSTREAM_PORT DELAY_MS\n"
	      "       (see the comment at the top of tests/bench/latrelay.c)\n",
	      stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	struct pollfd *pf = NULL;
	size_t pf_cap = 0;
	struct sigaction sa;
	sigset_t block, waitmask;
	int ls, one = 1, opt;
	double ms;

	while ((opt = getopt(argc, argv, "Hq:")) != -1) {
		switch (opt) {
		case 'H': handshake = 1; break;
		case 'q': queue_cap = (size_t)strtoul(optarg, NULL, 10) << 20; break;
		default: usage();
		}
	}
	if (argc - optind != 3)
		usage();
	upstream_port = atoi(argv[optind + 1]);
	ms = strtod(argv[optind + 2], NULL);
	if (upstream_port <= 0 || ms < 0 || queue_cap == 0)
		usage();
	delay_ns = (int64_t)(ms * 1e6);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* The signals arrive only inside ppoll, so none is missed between
	 * a check of the flags and the wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	sigdelset(&waitmask, SIGUSR2);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);

	a = loopback(atoi(argv[optind]));
	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ls < 0 ||
	    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 128) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0) {
		perror("latrelay: listen");
		return 1;
	}
	printf("READY %d\n", ntohs(a.sin_port));
	fflush(stdout);

	while (!got_term) {
		struct conn *c;
		int64_t t = now_ns(), next = -1;
		size_t np = 0;
		struct timespec ts, *tsp = NULL;
		int r, i;

		if (got_usr1) {
			got_usr1 = 0;
			for (c = conns; c != NULL; c = c->next)
				conn_close(c, 1, "reset (SIGUSR1)");
		}
		if (got_usr2) {
			got_usr2 = 0;
			for (c = conns; c != NULL; c = c->next)
				c->stalled = 1;
		}
		/* Due work first: upstream connections, writes. */
		for (c = conns; c != NULL; c = c->next) {
			if (c->dead || c->stalled)
				continue;
			if (!c->up && !c->connecting && c->fd[1] < 0 &&
			    c->connect_at <= t)
				start_upstream(c);
			if (c->up) {
				flush_side(c, &c->d[0], t);
				if (!c->dead)
					flush_side(c, &c->d[1], t);
			}
		}
		reap();
		if (pf_cap < 1 + 2 * (size_t)n_conns) {
			pf_cap = 2 * (1 + 2 * (size_t)n_conns);
			pf = realloc(pf, pf_cap * sizeof(*pf));
			if (pf == NULL) {
				fputs("latrelay: out of memory\n", stderr);
				return 1;
			}
		}
		pf[np++] = (struct pollfd){ .fd = ls, .events = POLLIN };
		for (c = conns; c != NULL; c = c->next) {
			c->pi[0] = c->pi[1] = -1;
			for (i = 0; i < 2; i++) {
				struct dir *in = &c->d[i], *out = &c->d[1 - i];
				short ev = 0;

				if (c->fd[i] < 0)
					continue;
				if (c->stalled) {
					ev = POLLRDHUP;
				} else if (i == 1 && c->connecting) {
					ev = POLLOUT;
				} else {
					/* fd i is what direction i reads
					 * and direction 1-i writes. */
					if (!in->eof_read && in->queued < queue_cap)
						ev |= POLLIN;
					if (out->blocked)
						ev |= POLLOUT;
					/* Nothing to wait for on it (ended
					 * one way, full or idle the other):
					 * a later write finds any error. */
					if (ev == 0)
						continue;
				}
				c->pi[i] = (int)np;
				pf[np++] = (struct pollfd){ .fd = c->fd[i], .events = ev };
			}
			if (c->stalled)
				continue;
			if (!c->up && !c->connecting &&
			    (next < 0 || c->connect_at < next))
				next = c->connect_at;
			if (c->up)
				for (i = 0; i < 2; i++) {
					struct chunk *h = c->d[i].head;

					if (h != NULL && !c->d[i].blocked &&
					    (next < 0 || h->due < next))
						next = h->due;
				}
		}
		if (next >= 0) {
			int64_t w = next - t;

			if (w < 0)
				w = 0;
			ts.tv_sec = (time_t)(w / 1000000000);
			ts.tv_nsec = (long)(w % 1000000000);
			tsp = &ts;
		}
		r = ppoll(pf, (nfds_t)np, tsp, &waitmask);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("latrelay: ppoll");
			return 1;
		}
		t = now_ns();
		for (c = conns; c != NULL; c = c->next) {
			for (i = 0; i < 2 && !c->dead; i++) {
				short re;

				if (c->pi[i] < 0 || c->fd[i] < 0)
					continue;
				re = pf[c->pi[i]].revents;
				if (re == 0)
					continue;
				if (c->stalled) {
					conn_close(c, 0, "peer closed while stalled");
					break;
				}
				if (i == 1 && c->connecting) {
					int err = 0;
					socklen_t el = sizeof(err);

					getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR,
						   &err, &el);
					if (err != 0) {
						conn_close(c, 1, "upstream connect failed");
						break;
					}
					c->connecting = 0;
					c->up = 1;
					continue;
				}
				if (re & (POLLIN | POLLHUP | POLLERR)) {
					if (!c->d[i].eof_read)
						read_side(c, &c->d[i], t);
					else if (re & POLLERR)
						conn_close(c, 1, "socket error");
				}
				if (!c->dead && (re & POLLOUT) && c->up)
					flush_side(c, &c->d[1 - i], t);
			}
		}
		if (pf[0].revents & POLLIN)
			for (r = 0; r < 64; r++) {
				unsigned before = n_conns;

				accept_one(ls);
				if (n_conns == before)
					break;
			}
	}
	for (struct conn *c = conns; c != NULL; c = c->next)
		conn_close(c, 0, "relay stopped");
	reap();
	close(ls);
	free(pf);
	return 0;
}
