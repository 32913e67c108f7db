/*
 * relay — the cheapest proxy there is, for `make bench` (tests/bench/run.sh):
 * the floor under figure 1. It accepts one connection at a time on
 * 127.0.0.1:PORT, connects to 127.0.0.1:UPSTREAM and copies bytes both ways
 * with read() and write() through one 128 KiB buffer (popbridge's read
 * size), looking at nothing. IMAP through it against IMAP straight to the
 * server is what one more hop costs on this machine, before any protocol
 * work.
 *
 *   relay PORT UPSTREAM      runs until killed; prints "READY" once listening
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ (128u * 1024)

static char buf[BUFSZ];

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

/* Copies what one read gives from `from` to `to`; 0 at EOF or error. */
static int
copy_once(int from, int to)
{
	ssize_t n = read(from, buf, sizeof(buf)), w;
	size_t off = 0;

	if (n <= 0)
		return 0;
	while (off < (size_t)n) {
		w = write(to, buf + off, (size_t)n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return 0;
		off += (size_t)w;
	}
	return 1;
}

static void
serve(int c, int upstream_port)
{
	struct sockaddr_in a = loopback(upstream_port);
	struct pollfd pf[2];
	int u, one = 1, i, open = 1;

	u = socket(AF_INET, SOCK_STREAM, 0);
	if (u < 0 || connect(u, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("relay: connect");
		if (u >= 0)
			close(u);
		return;
	}
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pf[0] = (struct pollfd){ .fd = c, .events = POLLIN };
	pf[1] = (struct pollfd){ .fd = u, .events = POLLIN };
	while (open) {
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < 2 && open; i++)
			if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
				open = copy_once(pf[i].fd, pf[1 - i].fd);
	}
	close(u);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in a;
	int ls, c, one = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: relay PORT UPSTREAM_PORT\n");
		return 2;
	}
	a = loopback(atoi(argv[1]));
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 ||
	    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 16) < 0) {
		perror("relay: listen");
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	for (;;) {
		c = accept(ls, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			perror("relay: accept");
			return 1;
		}
		serve(c, atoi(argv[2]));
		close(c);
	}
}
