/*
 * Shared by the OAuth unit tests: tests/lib/httpfixture.py started as a
 * child (a local HTTP server on a free 127.0.0.1 port, optionally TLS with
 * a test CA), and a loop runner with a guard timer. Tests run from the
 * repository root (make unit); FIXTURE_PY overrides the script's path.
 */
#ifndef POPBRIDGE_TEST_OAUTH_FIXTURE_H
#define POPBRIDGE_TEST_OAUTH_FIXTURE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

struct fixture {
	pid_t pid;
	int in_fd;		/* its stdin: closing it stops it */
	int port;
	char ca[512];		/* the test CA's PEM (TLS only) */
	char dir[256];		/* scratch for the CA */
};

static inline int
fixture_start(struct fixture *f, int tls)
{
	const char *py = getenv("FIXTURE_PY");
	int in[2], out[2];
	char line[1024];
	size_t n = 0;
	ssize_t k;

	memset(f, 0, sizeof(*f));
	f->in_fd = -1;
	if (py == NULL)
		py = "tests/lib/httpfixture.py";
	if (tls) {
		snprintf(f->dir, sizeof(f->dir), "/tmp/pb-httpfix.XXXXXX");
		if (mkdtemp(f->dir) == NULL)
			return -1;
	}
	if (pipe(in) < 0 || pipe(out) < 0)
		return -1;
	f->pid = fork();
	if (f->pid < 0)
		return -1;
	if (f->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		if (tls)
			execlp("python3", "python3", py, "--tls", f->dir,
			       (char *)NULL);
		else
			execlp("python3", "python3", py, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	f->in_fd = in[1];
	for (;;) {
		struct pollfd p = { .fd = out[0], .events = POLLIN };

		if (poll(&p, 1, 30000) <= 0)
			break;
		k = read(out[0], line + n, sizeof(line) - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
		line[n] = '\0';
		if (strchr(line, '\n') != NULL)
			break;
	}
	close(out[0]);
	line[n] = '\0';
	if (sscanf(line, "port %d", &f->port) != 1)
		return -1;
	if (tls) {
		char *ca = strstr(line, " ca ");
		char *nl = strchr(line, '\n');

		if (ca == NULL || nl == NULL)
			return -1;
		*nl = '\0';
		snprintf(f->ca, sizeof(f->ca), "%s", ca + 4);
	}
	return 0;
}

static inline void
fixture_stop(struct fixture *f)
{
	char cmd[300];

	if (f->in_fd >= 0)
		close(f->in_fd);
	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		waitpid(f->pid, NULL, 0);
	}
	if (f->dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", f->dir);
	}
	f->pid = 0;
	f->in_fd = -1;
}

static inline void
guard_fired(uv_timer_t *t)
{
	*(int *)t->data = 1;
	uv_stop(t->loop);
}

/* Runs loop until *flag is set or ms pass; returns 0, or -ETIMEDOUT. The
 * callback that sets the flag calls uv_stop: libuv's UV_RUN_ONCE runs due
 * timers before it polls, and would otherwise block in the poll after a
 * timer callback finished the job. */
static inline int
run_until(uv_loop_t *loop, const int *flag, unsigned ms)
{
	uv_timer_t guard;
	int fired = 0, r;

	uv_timer_init(loop, &guard);
	guard.data = &fired;
	uv_timer_start(&guard, guard_fired, ms, 0);
	while (!*flag && !fired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	r = *flag ? 0 : -ETIMEDOUT;
	return r;
}

/* Runs loop until nothing is left, bounded; 0 when uv_loop_close worked. */
static inline int
drain_loop(uv_loop_t *loop)
{
	int i;

	for (i = 0; i < 1000 && uv_loop_alive(loop); i++)
		uv_run(loop, UV_RUN_NOWAIT);
	return uv_loop_close(loop);
}

#endif
