/*
 * oauth-driver: runs popbridge's OAuth2 client code (src/oauth/) against a
 * real authorization server, for tests/integration/test_oauth.py. Built by
 * the Makefile as build/asan/oauth-driver (ASan+UBSan).
 *
 *   oauth-driver [OPTIONS] device       device grant: prints
 *        "verification_uri URI", "user_code CODE",
 *        "verification_uri_complete URI" (when sent), then "done 0" (the
 *        refresh token written to --state, the access token to --access)
 *        or "done CODE WHY"
 *   oauth-driver [OPTIONS] code         code grant with PKCE: prints
 *        "url URL" and "redirect URI"; each line read from stdin is a
 *        pasted redirect URL ("paste CODE" answers it); the listener takes
 *        the browser's redirect; ends with "done ..." as above
 *   oauth-driver [OPTIONS] tokens STEP...
 *        one account's token cache (oauth/token_cache.h), the refresh
 *        token read from --state, rotations written back to it; steps:
 *          get       one login asking for an access token
 *          get*N     N logins at once (they share one refresh)
 *          sleep:MS  wait
 *          reject    the server refused the current access token
 *          wait      read a line from stdin first (the test changes the
 *                    server meanwhile)
 *        prints "step I get ok" / "step I get err CODE" per answer (never
 *        a token), the access token of the last success to --access, and
 *        "requests N" (token requests sent) at the end
 *   oauth-driver [OPTIONS] sasl MECH USER HOST PORT
 *        the base64 initial response of MECH (OAUTHBEARER or XOAUTH2) for
 *        the access token in --access, written to --out
 *   oauth-driver sasl-error B64     the decoded error challenge
 *
 * Options: --token-url --device-url --auth-url --client-id
 * --client-secret --scope --timeout-ms --ca-file --state FILE --access
 * FILE --out FILE --account NAME --ms-per-s N (the device flow's
 * seconds, for tests). popbridge's log goes to stderr at debug level;
 * tokens go only to the files named.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "oauth/authorize.h"
#include "oauth/http.h"
#include "oauth/sasl.h"
#include "oauth/token.h"
#include "oauth/token_cache.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"

static uv_loop_t *loop;
static struct http_client *hc;
static struct oauth_transport tr;
static struct oauth_client client;
static const char *state_file, *access_file, *out_file, *ca_file;
static const char *account = "test";
static unsigned timeout_ms = 5000, ms_per_s;
static int exit_code;

static void
say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int
write_secret(const char *path, const char *p, size_t n)
{
	char tmp[4096];
	int fd;

	if (path == NULL)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, p, n) != (ssize_t)n || fsync(fd) < 0) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return rename(tmp, path) < 0 ? -errno : 0;
}

static int
read_secret(const char *path, struct buf *b)
{
	char chunk[4096];
	ssize_t k;
	int fd, r = 0;

	if (path == NULL)
		return -EINVAL;
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	while ((k = read(fd, chunk, sizeof(chunk))) > 0 && r == 0)
		r = buf_append(b, chunk, (size_t)k);
	close(fd);
	while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r'))
		b->len--;
	return r;
}

/* -- authorize ---------------------------------------------------------------- */

static struct oauth_authorize *run;
static uv_pipe_t in_pipe;
static int in_open;
static char in_buf[16384];
static size_t in_len;

static void
show_device(void *ctx, const struct oauth_device_auth *d)
{
	(void)ctx;
	say("verification_uri %s", d->verification_uri);
	say("user_code %s", d->user_code);
	if (d->verification_uri_complete[0] != '\0')
		say("verification_uri_complete %s", d->verification_uri_complete);
	say("expires_in %u interval %u", d->expires_in, d->interval);
}

static void
show_url(void *ctx, const char *url, const char *redirect)
{
	(void)ctx;
	say("url %s", url);
	say("redirect %s", redirect);
}

static void
on_in_closed(uv_handle_t *h)
{
	(void)h;
}

static void
close_stdin(void)
{
	if (in_open) {
		in_open = 0;
		uv_close((uv_handle_t *)&in_pipe, on_in_closed);
	}
}

static void
done(void *ctx, int err, const struct oauth_token_resp *t, const char *why)
{
	(void)ctx;
	if (err == 0) {
		if (write_secret(state_file, t->refresh.data, t->refresh.len) < 0 ||
		    write_secret(access_file, t->access.data, t->access.len) < 0) {
			say("done %d could not write the token files", -EIO);
			exit_code = 1;
		} else {
			say("done 0 expires_in %u", t->expires_in);
		}
	} else {
		say("done %d %s", err, why);
		exit_code = 2;
	}
	close_stdin();
	uv_stop(loop);
}

static void
in_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	(void)h;
	(void)s;
	*b = uv_buf_init(in_buf + in_len, (unsigned)(sizeof(in_buf) - 1 - in_len));
}

static void
in_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	char *nl;
	size_t len;
	int r;

	(void)s;
	(void)b;
	if (n < 0) {
		close_stdin();
		return;
	}
	in_len += (size_t)n;
	while ((nl = memchr(in_buf, '\n', in_len)) != NULL) {
		len = (size_t)(nl - in_buf);
		if (run != NULL) {
			r = oauth_authorize_paste(run, in_buf, len);
			say("paste %d", r);
		}
		memmove(in_buf, nl + 1, in_len - len - 1);
		in_len -= len + 1;
	}
	if (in_len == sizeof(in_buf) - 1)
		in_len = 0;
}

static void
open_stdin(int read_it)
{
	if (uv_pipe_init(loop, &in_pipe, 0) == 0 && uv_pipe_open(&in_pipe, 0) == 0) {
		in_open = 1;
		if (read_it)
			uv_read_start((uv_stream_t *)&in_pipe, in_alloc, in_read);
	}
}

static int
do_authorize(int device)
{
	struct oauth_authorize_cfg cfg = {
		.client = client,
		.timeout_ms = timeout_ms,
		.ca_file = ca_file,
		.ms_per_s = ms_per_s,
	};
	struct oauth_authorize_cb cb = {
		.show_device = show_device,
		.show_url = show_url,
		.done = done,
	};
	int r;

	if (!device)
		open_stdin(1);
	r = device ? oauth_authorize_device(loop, &tr, &cfg, &cb, &run)
		   : oauth_authorize_code(loop, &tr, &cfg, &cb, &run);
	if (r < 0) {
		say("done %d %s", r, err_text(r));
		close_stdin();
		return 2;
	}
	uv_run(loop, UV_RUN_DEFAULT);
	oauth_authorize_free(&run);
	return exit_code;
}

/* -- tokens ------------------------------------------------------------------------ */

static struct oauth_tokens *tokens;
static char **steps;
static int nsteps, at, outstanding;
static uv_timer_t step_timer;
static struct buf last_access;
static unsigned answers;

struct saver {
	struct oauth_saver s;
};

static int
save(struct oauth_saver *s, const char *refresh, size_t n)
{
	(void)s;
	return write_secret(state_file, refresh, n);
}

static void
release(struct oauth_saver *s)
{
	free(s);
}

static void next_step(void);

static void
on_token(void *ctx, int err, const char *token, size_t len)
{
	unsigned idx = (unsigned)(uintptr_t)ctx;

	answers++;
	if (err == 0) {
		buf_wipe(&last_access);
		buf_append(&last_access, token, len);
		say("step %u get ok", idx);
	} else {
		say("step %u get err %d %s", idx, err, err_text(err));
	}
	if (--outstanding == 0)
		next_step();
}

static int
one_get(unsigned idx)
{
	struct buf rt;
	struct saver *sv;
	int r;

	buf_init_secret(&rt, OAUTH_TOKEN_MAX);
	r = read_secret(state_file, &rt);
	if (r < 0) {
		say("step %u get err %d cannot read the state file", idx, r);
		buf_free(&rt);
		return r;
	}
	sv = calloc(1, sizeof(*sv));
	sv->s.save = save;
	sv->s.release = release;
	r = oauth_tokens_get(tokens, rt.data, rt.len, &sv->s, on_token,
			     (void *)(uintptr_t)idx, NULL);
	buf_free(&rt);
	if (r < 0)
		say("step %u get err %d (refused at once)", idx, r);
	else
		outstanding++;
	return r;
}

static void
on_step_timer(uv_timer_t *t)
{
	(void)t;
	next_step();
}

static void
on_wait_line(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	(void)b;
	if (n == 0)
		return;
	uv_read_stop(s);
	in_len = 0;
	next_step();
}

static void
end_tokens(void)
{
	say("requests %u", oauth_tokens_requests(tokens));
	if (last_access.len > 0 &&
	    write_secret(access_file, last_access.data, last_access.len) < 0)
		exit_code = 1;
	buf_free(&last_access);
	oauth_tokens_free(&tokens);
	uv_close((uv_handle_t *)&step_timer, NULL);
	close_stdin();
	http_client_free(&hc);
}

static void
next_step(void)
{
	const char *s;
	unsigned i, n;

	for (;;) {
		if (at >= nsteps) {
			end_tokens();
			return;
		}
		s = steps[at++];
		if (strcmp(s, "get") == 0 || strncmp(s, "get*", 4) == 0) {
			n = s[3] == '*' ? (unsigned)atoi(s + 4) : 1;
			for (i = 0; i < n; i++)
				one_get((unsigned)at);
			if (outstanding > 0)
				return;
		} else if (strncmp(s, "sleep:", 6) == 0) {
			uv_timer_start(&step_timer, on_step_timer,
				       (uint64_t)atoi(s + 6), 0);
			return;
		} else if (strcmp(s, "reject") == 0) {
			oauth_tokens_reject(tokens, last_access.data, last_access.len);
			say("step %u rejected", (unsigned)at);
		} else if (strcmp(s, "wait") == 0) {
			say("step %u waiting", (unsigned)at);
			uv_read_start((uv_stream_t *)&in_pipe, in_alloc, on_wait_line);
			return;
		} else {
			say("step %u unknown %s", (unsigned)at, s);
			exit_code = 2;
		}
	}
}

static int
do_tokens(int argc, char **argv)
{
	struct oauth_tokens_cfg cfg = {
		.account = account,
		.client = client,
		.timeout_ms = timeout_ms,
		.ca_file = ca_file,
	};
	int r;

	steps = argv;
	nsteps = argc;
	buf_init_secret(&last_access, OAUTH_TOKEN_MAX);
	open_stdin(0);
	uv_timer_init(loop, &step_timer);
	r = oauth_tokens_new(loop, &tr, &cfg, &tokens);
	if (r < 0) {
		say("tokens %d %s", r, err_text(r));
		return 2;
	}
	next_step();
	uv_run(loop, UV_RUN_DEFAULT);
	return exit_code;
}

/* -- sasl ---------------------------------------------------------------------------- */

static int
do_sasl(int argc, char **argv)
{
	struct buf tok, out;
	enum oauth_mech m;
	int r;

	if (argc != 4)
		return 64;
	m = strcmp(argv[0], "XOAUTH2") == 0 ? OAUTH_MECH_XOAUTH2 :
	    strcmp(argv[0], "OAUTHBEARER") == 0 ? OAUTH_MECH_OAUTHBEARER :
	    OAUTH_MECH_NONE;
	buf_init_secret(&tok, OAUTH_TOKEN_MAX);
	buf_init_secret(&out, 64 * 1024);
	r = read_secret(access_file, &tok);
	if (r == 0)
		r = oauth_sasl_response_b64(&out, m, argv[1], argv[2],
					    (unsigned)atoi(argv[3]), tok.data,
					    tok.len);
	if (r == 0)
		r = write_secret(out_file, out.data, out.len);
	say("sasl %d", r);
	buf_free(&tok);
	buf_free(&out);
	return r < 0 ? 2 : 0;
}

static int
do_sasl_error(const char *b64)
{
	struct oauth_sasl_error e;
	int r = oauth_sasl_parse_error(b64, strlen(b64), &e);

	say("sasl-error %d status=%s scope=%s config=%s", r, e.status, e.scope,
	    e.config);
	return r < 0 ? 2 : 0;
}

/* -- main ------------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "token-url", required_argument, NULL, 't' },
		{ "device-url", required_argument, NULL, 'd' },
		{ "auth-url", required_argument, NULL, 'a' },
		{ "client-id", required_argument, NULL, 'i' },
		{ "client-secret", required_argument, NULL, 'S' },
		{ "scope", required_argument, NULL, 'o' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "ca-file", required_argument, NULL, 'C' },
		{ "state", required_argument, NULL, 's' },
		{ "access", required_argument, NULL, 'A' },
		{ "out", required_argument, NULL, 'O' },
		{ "account", required_argument, NULL, 'n' },
		{ "ms-per-s", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd;
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't': client.token_url = optarg; break;
		case 'd': client.device_url = optarg; break;
		case 'a': client.auth_url = optarg; break;
		case 'i': client.client_id = optarg; break;
		case 'S': client.client_secret = optarg; break;
		case 'o': client.scope = optarg; break;
		case 'T': timeout_ms = (unsigned)atoi(optarg); break;
		case 'C': ca_file = optarg; break;
		case 's': state_file = optarg; break;
		case 'A': access_file = optarg; break;
		case 'O': out_file = optarg; break;
		case 'n': account = optarg; break;
		case 'm': ms_per_s = (unsigned)atoi(optarg); break;
		default: return 64;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: oauth-driver [options] device|code|tokens|sasl|sasl-error ...\n");
		return 64;
	}
	cmd = argv[optind++];
	log_set_style(LOG_STYLE_SYSLOG);
	log_set_level(LOG_DEBUG);
	if (strcmp(cmd, "sasl") == 0)
		return do_sasl(argc - optind, argv + optind);
	if (strcmp(cmd, "sasl-error") == 0)
		return optind < argc ? do_sasl_error(argv[optind]) : 64;
	loop = uv_default_loop();
	r = http_client_new(loop, &hc);
	if (r < 0) {
		fprintf(stderr, "http_client_new: %s\n", err_text(r));
		return 2;
	}
	oauth_transport_http(&tr, hc);
	if (strcmp(cmd, "device") == 0 || strcmp(cmd, "code") == 0) {
		r = do_authorize(strcmp(cmd, "device") == 0);
		http_client_free(&hc);
	} else if (strcmp(cmd, "tokens") == 0) {
		r = do_tokens(argc - optind, argv + optind);
	} else {
		fprintf(stderr, "unknown command %s\n", cmd);
		http_client_free(&hc);
		r = 64;
	}
	uv_run(loop, UV_RUN_DEFAULT);
	if (uv_loop_close(loop) != 0)
		fprintf(stderr, "oauth-driver: handles left open at exit\n");
	return r;
}
