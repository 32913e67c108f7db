/* popbridge authorize: an OAuth2 grant for an account, its refresh token
 * sealed into the account's file as the upstream secret. */
#include "daemon/authorize_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <openssl/crypto.h>

#include "accounts/account_file.h"
#include "accounts/account_keys.h"
#include "daemon/cmd.h"
#include "daemon/config.h"
#include "oauth/authorize.h"
#include "oauth/flows.h"
#include "oauth/http.h"
#include "oauth/preset.h"
#include "oauth/token_cache.h"
#include "store/safe_file.h"
#include "util/buf.h"
#include "util/error.h"

/* A pasted line: a redirect URL and some blanks around it. */
#define PASTE_LINE_MAX (OAUTH_REDIRECT_MAX + 256)
/* What standard input may bring in all before it is no longer read (a
 * person pastes a few URLs; /dev/zero would bring garbage forever). */
#define PASTE_INPUT_MAX (1024u * 1024)

struct opts {
	const char *config;
	const char *account;
	const char *label;
	bool label_set;
	enum authorize_flow flow;
};

/* Standard input after the password line, read on the loop (loopback
 * flow): a stream (terminal, pipe, socket) or, for a regular file or a
 * device such as /dev/null, reads on the threadpool until its end. */
enum in_kind { IN_NONE, IN_STREAM, IN_FILE };

struct paste_in {
	enum in_kind kind;
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tty_t tty;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} h;
	uv_fs_t fs;
	bool stopped;		/* no more reading, no more lines */
	bool skipping;		/* a line over PASTE_LINE_MAX, to its end */
	bool prompt_shown;	/* the terminal's cursor is after a prompt */
	int flags;		/* fd 0's, before libuv made it non-blocking */
	size_t total;
	struct buf line;	/* secret: a pasted URL holds the code */
	char chunk[4096];	/* wiped after use */
};

/* One run of the flow on the loop. */
struct authz {
	uv_loop_t loop;
	struct http_client *hc;
	struct oauth_transport tr;
	struct oauth_authorize *a;
	const char *account;
	bool tty;		/* standard input is a terminal */
	bool ended;
	bool ours;		/* err is a failure here, not the flow's */
	int err;
	char why[OAUTH_TEXT_MAX + 256];
	struct buf refresh;	/* secret */
	char redirect_uri[64];
	struct paste_in in;
};

static void
usage(FILE *out)
{
	fputs("usage: popbridge [-c FILE] authorize ACCOUNT "
	      "[--flow device|loopback] [--device LABEL]\n"
	      "\n"
	      "Authorizes popbridge at an [account NAME] with auth = oauth2 "
	      "and stores the\n"
	      "refresh token the provider grants, encrypted, as the account's "
	      "upstream\n"
	      "secret. First it reads one line from standard input (or asks "
	      "without echo on\n"
	      "a terminal): the password of the account's first device "
	      "(\"default\", or\n"
	      "--device's) when it has none yet, else an existing device's "
	      "password.\n"
	      "\n"
	      "  --flow device     print a URL and a code (one line each) to "
	      "enter in a\n"
	      "                    browser on any machine (the default for "
	      "oauth = microsoft)\n"
	      "  --flow loopback   print a URL to open in a browser; it comes "
	      "back to a\n"
	      "                    listener on 127.0.0.1, or paste the URL it "
	      "ended at as a\n"
	      "                    line of standard input (the default for "
	      "oauth = google)\n"
	      "  --device LABEL    the label of the first device (default "
	      "\"default\")\n",
	      out);
}

int
authorize_flow_pick(const char *preset, const struct oauth_client *cl,
		    enum authorize_flow want, const char **why_r)
{
	bool device = cl->device_url != NULL && cl->device_url[0] != '\0';
	bool loopback = cl->auth_url != NULL && cl->auth_url[0] != '\0';
	enum authorize_flow best;

	*why_r = NULL;
	switch (want) {
	case AUTHORIZE_FLOW_DEVICE:
		if (device)
			return AUTHORIZE_FLOW_DEVICE;
		*why_r = "--flow device needs a device authorization endpoint "
			 "(expected oauth_device_url)";
		return -EINVAL;
	case AUTHORIZE_FLOW_LOOPBACK:
		if (loopback)
			return AUTHORIZE_FLOW_LOOPBACK;
		*why_r = "--flow loopback needs an authorization endpoint "
			 "(expected oauth_authorization_url)";
		return -EINVAL;
	case AUTHORIZE_FLOW_DEFAULT:
		break;
	}
	if (preset != NULL && strcasecmp(preset, "google") == 0)
		best = AUTHORIZE_FLOW_LOOPBACK;
	else if (preset != NULL && strcasecmp(preset, "microsoft") == 0)
		best = AUTHORIZE_FLOW_DEVICE;
	else
		best = device ? AUTHORIZE_FLOW_DEVICE : AUTHORIZE_FLOW_LOOPBACK;
	if (best == AUTHORIZE_FLOW_DEVICE && !device)
		best = AUTHORIZE_FLOW_LOOPBACK;
	else if (best == AUTHORIZE_FLOW_LOOPBACK && !loopback)
		best = AUTHORIZE_FLOW_DEVICE;
	if ((best == AUTHORIZE_FLOW_DEVICE && !device) ||
	    (best == AUTHORIZE_FLOW_LOOPBACK && !loopback)) {
		*why_r = "no way to authorize (expected oauth_device_url or "
			 "oauth_authorization_url)";
		return -EINVAL;
	}
	return best;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "flow", required_argument, NULL, 'f' },
		{ "device", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;		/* glibc: start over, argv[0] is "authorize" */
	argv[0] = (char *)"popbridge authorize";	/* getopt's messages */
	while ((c = getopt_long(argc, argv, "c:f:d:h", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'f':
			if (strcmp(optarg, "device") == 0) {
				o->flow = AUTHORIZE_FLOW_DEVICE;
			} else if (strcmp(optarg, "loopback") == 0) {
				o->flow = AUTHORIZE_FLOW_LOOPBACK;
			} else {
				cmd_fail("authorize: --flow %s (expected "
					 "device or loopback)", optarg);
				return 2;
			}
			break;
		case 'd':
			o->label = optarg;
			o->label_set = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:	/* getopt said what */
			cmd_fail("authorize: see popbridge authorize --help");
			return 2;
		}
	}
	if (optind + 1 != argc) {
		cmd_fail("authorize: expected one ACCOUNT, got %d (see "
			 "popbridge authorize --help)", argc - optind);
		return 2;
	}
	o->account = argv[optind];
	if (!o->label_set)
		o->label = CMD_DEFAULT_LABEL;
	if (!account_file_name_ok(o->label)) {
		cmd_fail("authorize: bad device label \"%s\" (expected 1-%d "
			 "letters, digits, '.', '_' or '-', starting with a "
			 "letter or digit)", o->label, ACCOUNT_LABEL_MAX);
		return 2;
	}
	return 0;
}

/* -- before the flow: the device password ---------------------------------- */

/*
 * Reads the password line and checks it against the account's file as it
 * is now: an existing device's (the account key opens), or, with no
 * device yet, a new one for the first device (*first_r). Returns 0 or 1.
 */
static int
get_password(const struct opts *o, const struct config *cfg, bool tty,
	     struct account_file *f, struct buf *pw, bool *first_r)
{
	struct safe_file_dir d = { .fd = -1 };
	uint8_t key[ACCOUNT_KEY_LEN];
	char what[128], refused[160];
	int r;

	if (cmd_state_open(cfg, false, &d) != 0)
		return 1;
	r = cmd_account_load(&d, o->account, f);
	safe_file_close_dir(&d, NULL, 0);
	if (r != 0)
		return r;
	*first_r = f->n_devices == 0;
	if (*first_r) {
		if (tty)
			fprintf(stderr, "popbridge: account %s has no device "
				"yet: the password you choose now is device "
				"%s's, the one its POP3 client logs in with\n",
				o->account, o->label);
		snprintf(what, sizeof(what), "new password for device %s of "
			 "account %s", o->label, o->account);
		return cmd_get_secret(tty, what, true, CMD_DEVICE_PW_MIN,
				      CMD_DEVICE_PW_MAX, "", pw);
	}
	if (o->label_set)
		fprintf(stderr, "popbridge: account %s has devices already: "
			"--device %s names only a first device, and is "
			"ignored\n", o->account, o->label);
	snprintf(what, sizeof(what), "an existing device password of "
		 "account %s", o->account);
	r = cmd_get_secret(tty, what, false, 1, CMD_DEVICE_PW_MAX, "", pw);
	if (r != 0)
		return r;
	snprintf(refused, sizeof(refused), "that password is no device's "
		 "(expected the password of one of its devices: see "
		 "popbridge passwd %s --list)", o->account);
	r = cmd_unlock(f, o->account, pw->data, pw->len, refused, key);
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}

/* -- standard input on the loop (loopback flow) ---------------------------- */

static void paste_line(struct authz *z);

static void
prompt(struct authz *z)
{
	if (z->tty && !z->in.stopped && !z->ended) {
		fputs("or paste the URL your browser ended at: ", stderr);
		fflush(stderr);
		z->in.prompt_shown = true;
	}
}

/* A message on standard error, on a line of its own even after a
 * prompt. */
__attribute__((format(printf, 2, 3))) static void
say(struct authz *z, const char *fmt, ...)
{
	va_list ap;

	if (z->in.prompt_shown) {
		fputc('\n', stderr);
		z->in.prompt_shown = false;
	}
	fputs("popbridge: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
on_in_closed(uv_handle_t *h)
{
	struct authz *z = h->data;

	/* libuv never closes fd 0; it may have made it non-blocking. */
	if (z->in.flags >= 0)
		fcntl(STDIN_FILENO, F_SETFL, z->in.flags);
}

static void
in_stop(struct authz *z)
{
	struct paste_in *in = &z->in;

	if (in->stopped)
		return;
	in->stopped = true;
	buf_wipe(&in->line);
	/* A file read in flight ends by itself; nothing follows it. */
	if (in->kind == IN_STREAM)
		uv_close(&in->h.handle, on_in_closed);
}

static void
in_bytes(struct authz *z, const char *p, size_t n)
{
	struct paste_in *in = &z->in;
	const char *nl;
	size_t k;

	in->total += n;
	while (n > 0 && !in->stopped) {
		nl = memchr(p, '\n', n);
		k = nl != NULL ? (size_t)(nl - p) : n;
		if (!in->skipping && buf_append(&in->line, p, k) < 0) {
			buf_wipe(&in->line);
			in->skipping = true;
		}
		if (nl == NULL)
			break;
		if (in->skipping) {
			say(z, "that line is too long for a redirect URL: "
			    "ignored; still waiting");
			in->skipping = false;
			prompt(z);
		} else {
			paste_line(z);
		}
		buf_wipe(&in->line);
		p += k + 1;
		n -= k + 1;
	}
	if (!in->stopped && in->total > PASTE_INPUT_MAX) {
		say(z, "too much on standard input: no longer reading it "
		    "(still waiting for the browser)");
		in_stop(z);
	}
}

/* The end of standard input: a last line without a line end is one,
 * then only the listener is waited for. */
static void
in_eof(struct authz *z)
{
	struct paste_in *in = &z->in;

	if (in->stopped)
		return;
	if (in->line.len > 0 && !in->skipping)
		paste_line(z);
	if (in->stopped)
		return;
	if (z->tty)
		say(z, "no more input: waiting for the browser only");
	in_stop(z);
}

static void
in_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
	struct authz *z = h->data;

	(void)size;
	*b = uv_buf_init(z->in.chunk, sizeof(z->in.chunk));
}

static void
on_in_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct authz *z = s->data;

	if (n > 0) {
		/* A line the user typed ends the prompt. */
		z->in.prompt_shown = false;
		in_bytes(z, b->base, (size_t)n);
		OPENSSL_cleanse(b->base, (size_t)n);
	} else if (n < 0) {
		in_eof(z);
	}
}

static void file_next(struct authz *z);

static void
on_file_read(uv_fs_t *req)
{
	struct authz *z = req->data;
	ssize_t n = req->result;

	uv_fs_req_cleanup(req);
	if (z->in.stopped)
		return;
	if (n > 0) {
		in_bytes(z, z->in.chunk, (size_t)n);
		OPENSSL_cleanse(z->in.chunk, (size_t)n);
		file_next(z);
	} else {
		in_eof(z);
	}
}

static void
file_next(struct authz *z)
{
	uv_buf_t b = uv_buf_init(z->in.chunk, sizeof(z->in.chunk));

	if (z->in.stopped)
		return;
	z->in.fs.data = z;
	/* Offset -1: on from where the password line ended. */
	if (uv_fs_read(&z->loop, &z->in.fs, STDIN_FILENO, &b, 1, -1,
		       on_file_read) < 0)
		z->in.stopped = true;
}

static void
in_start(struct authz *z)
{
	struct paste_in *in = &z->in;
	int r;

	in->flags = fcntl(STDIN_FILENO, F_GETFL);
	switch (uv_guess_handle(STDIN_FILENO)) {
	case UV_TTY:
		r = uv_tty_init(&z->loop, &in->h.tty, STDIN_FILENO, 1);
		break;
	case UV_NAMED_PIPE:
		r = uv_pipe_init(&z->loop, &in->h.pipe, 0);
		if (r == 0) {
			in->kind = IN_STREAM;
			r = uv_pipe_open(&in->h.pipe, STDIN_FILENO);
		}
		break;
	case UV_TCP:
		r = uv_tcp_init(&z->loop, &in->h.tcp);
		if (r == 0) {
			in->kind = IN_STREAM;
			r = uv_tcp_open(&in->h.tcp, STDIN_FILENO);
		}
		break;
	case UV_FILE:
		in->kind = IN_FILE;
		file_next(z);
		return;
	default:		/* closed, or nothing to read from */
		in->stopped = true;
		return;
	}
	if (r == 0) {
		in->kind = IN_STREAM;
		in->h.handle.data = z;
		r = uv_read_start(&in->h.stream, in_alloc, on_in_read);
	}
	if (r < 0) {
		say(z, "cannot read standard input (%s): waiting for the "
		    "browser only", uv_strerror(r));
		if (in->kind == IN_STREAM) {
			in->h.handle.data = z;
			in_stop(z);
		}
		in->stopped = true;
	}
}

/* -- the flow ---------------------------------------------------------------- */

static void
end_run(struct authz *z)
{
	z->ended = true;
	in_stop(z);
	oauth_authorize_free(&z->a);
	http_client_free(&z->hc);
}

static void
paste_line(struct authz *z)
{
	struct buf *l = &z->in.line;
	size_t i = 0;
	int r;

	while (i < l->len && (l->data[i] == ' ' || l->data[i] == '\t' ||
			      l->data[i] == '\r'))
		i++;
	if (i == l->len) {
		prompt(z);
		return;
	}
	r = oauth_authorize_paste(z->a, l->data, l->len);
	switch (r) {
	case 0:
		/* Taken (or the server's refusal, which ends the run). */
		if (!z->ended) {
			say(z, "the URL is taken: asking for the tokens");
			in_stop(z);
		}
		return;
	case -ESRCH:
		say(z, "that URL is from another attempt (its state is not "
		    "this one's): ignored; still waiting");
		break;
	case -EALREADY:
		in_stop(z);
		return;
	default:
		say(z, "that is not the URL the browser ended at (expected "
		    "%s?code=...&state=...): ignored; still waiting",
		    z->redirect_uri);
		break;
	}
	prompt(z);
}

static void
show_device(void *ctx, const struct oauth_device_auth *d)
{
	struct authz *z = ctx;

	fprintf(stderr, "popbridge: account %s: open this URL in a browser, "
		"on this machine or any other, and enter the code below it:\n",
		z->account);
	printf("%s\n%s\n", d->verification_uri, d->user_code);
	fflush(stdout);
	if (d->verification_uri_complete[0] != '\0')
		fprintf(stderr, "popbridge: or open %s (the code filled in)\n",
			d->verification_uri_complete);
	if (d->expires_in >= 120)
		fprintf(stderr, "popbridge: waiting for the authorization (the "
			"code expires in %u minutes)\n", d->expires_in / 60);
	else
		fprintf(stderr, "popbridge: waiting for the authorization (the "
			"code expires in %u seconds)\n", d->expires_in);
}

static void
show_url(void *ctx, const char *url, const char *redirect_uri)
{
	struct authz *z = ctx;

	snprintf(z->redirect_uri, sizeof(z->redirect_uri), "%s", redirect_uri);
	fprintf(stderr, "popbridge: account %s: open this URL in a browser "
		"and allow access:\n", z->account);
	printf("%s\n", url);
	fflush(stdout);
	if (z->tty)
		fprintf(stderr, "popbridge: waiting for the browser to come "
			"back to %s on this machine;\n", redirect_uri);
	else
		fprintf(stderr, "popbridge: waiting for the browser to come "
			"back to %s on this machine, or for the URL it ended "
			"at on standard input\n", redirect_uri);
}

static void
done(void *ctx, int err, const struct oauth_token_resp *tokens,
     const char *why)
{
	struct authz *z = ctx;

	z->err = err;
	if (err == 0 && buf_append(&z->refresh, tokens->refresh.data,
				   tokens->refresh.len) < 0) {
		z->err = -EMSGSIZE;
		buf_wipe(&z->refresh);
	}
	snprintf(z->why, sizeof(z->why), "%s", why);
	if (z->in.prompt_shown) {
		fputc('\n', stderr);
		z->in.prompt_shown = false;
	}
	end_run(z);
}

/* The one line for a flow that failed. */
static int
flow_failed(const struct authz *z)
{
	const char *a = z->account;

	if (z->ours)
		return cmd_fail("account %s: %s", a, z->why);
	switch (z->err) {
	case -EACCES:
		return cmd_fail("account %s: not authorized: %s (run "
				"popbridge authorize %s again and allow "
				"access)", a, z->why, a);
	case -ETIMEDOUT:	/* the code expired, or a request's bound */
		return cmd_fail("account %s: %s (run popbridge authorize %s "
				"again)", a, z->why, a);
	case -EPERM:
		return cmd_fail("account %s: %s (check oauth_client_id, "
				"oauth_client_secret and the app "
				"registration)", a, z->why);
	case -ENODATA:
		return cmd_fail("account %s: %s: the scope needs offline "
				"access (check oauth_scope)", a, z->why);
	case -EMSGSIZE:
		return cmd_fail("account %s: the refresh token is longer than "
				"the %d bytes popbridge stores: nothing stored",
				a, ACCOUNT_SECRET_MAX);
	default:
		return cmd_fail("account %s: %s (is the authorization server "
				"reachable? check the network, the oauth_*_url "
				"keys and oauth_ca_file)", a, z->why);
	}
}

/* Runs the flow to its end: 0 with the refresh token in z->refresh, or
 * 1. */
static int
run_flow(struct authz *z, const struct config *acct, enum authorize_flow flow,
	 const struct oauth_client *client)
{
	const struct config_oauth *o = &acct->account.oauth;
	struct oauth_authorize_cfg cfg = {
		.client = *client,
		.timeout_ms = acct->upstream.timeout * 1000u,
		.ca_file = o->ca_file,
	};
	struct oauth_authorize_cb cb = {
		.show_device = show_device,
		.show_url = show_url,
		.done = done,
		.ctx = z,
	};
	int r;

	r = uv_loop_init(&z->loop);
	if (r < 0)
		return cmd_fail("cannot start the event loop: %s",
				uv_strerror(r));
	r = http_client_new(&z->loop, &z->hc);
	if (r == 0) {
		oauth_transport_http(&z->tr, z->hc);
		r = flow == AUTHORIZE_FLOW_DEVICE
			    ? oauth_authorize_device(&z->loop, &z->tr, &cfg,
						     &cb, &z->a)
			    : oauth_authorize_code(&z->loop, &z->tr, &cfg, &cb,
						   &z->a);
		if (r < 0) {
			snprintf(z->why, sizeof(z->why), "cannot start the "
				 "%s flow (%s)", flow == AUTHORIZE_FLOW_DEVICE
				 ? "device" : "loopback", err_text(r));
			z->err = r;
			z->ours = true;
			end_run(z);
		}
	} else {
		snprintf(z->why, sizeof(z->why), "cannot start the HTTP "
			 "client (%s)", err_text(r));
		z->err = r;
		z->ours = true;
		z->ended = true;
	}
	if (!z->ended && flow == AUTHORIZE_FLOW_LOOPBACK) {
		in_start(z);
		prompt(z);
	}
	uv_run(&z->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&z->loop) != 0)
		fprintf(stderr, "popbridge: handles left open at exit\n");
	if (z->err == 0 && z->refresh.len > ACCOUNT_SECRET_MAX)
		z->err = -EMSGSIZE;
	return z->err == 0 ? 0 : flow_failed(z);
}

/* -- after the flow: the file ------------------------------------------------ */

/*
 * Seals refresh into the account's file as it is now, under the lock:
 * unlocked again with pw (the devices may have changed during the flow),
 * or, for a first device, a new account key and the device. Returns 0 or
 * 1.
 */
static int
store(const struct opts *o, const struct config *cfg, const char *name,
      bool first, const struct buf *pw, const struct buf *refresh,
      struct account_file *f)
{
	const struct account_kdf kdf = ACCOUNT_KDF_DEFAULT;
	struct safe_file_dir d = { .fd = -1 };
	uint8_t key[ACCOUNT_KEY_LEN];
	char refused[256];
	bool added = false;
	int r;

	if (cmd_state_open(cfg, true, &d) != 0)
		return 1;
	r = cmd_account_load(&d, name, f);
	if (r == 0 && f->n_devices > 0) {
		if (first)
			snprintf(refused, sizeof(refused), "a device was added "
				 "meanwhile, and that password is not its: "
				 "nothing stored (run popbridge authorize %s "
				 "again with a device's password)",
				 o->account);
		else
			snprintf(refused, sizeof(refused), "that password is "
				 "no device's any more (changed or revoked "
				 "meanwhile): nothing stored (run popbridge "
				 "authorize %s again)", o->account);
		r = cmd_unlock(f, o->account, pw->data, pw->len, refused, key);
	} else if (r == 0 && !first) {
		r = cmd_fail("account %s has no device any more (revoked "
			     "meanwhile): nothing stored (add one with "
			     "popbridge passwd %s --device LABEL, then run "
			     "popbridge authorize %s again)", o->account,
			     o->account, o->account);
	} else if (r == 0) {
		if (account_keys_new(key) < 0)
			r = cmd_fail("cannot make an account key");
		else if (account_keys_set_device(f, o->label, pw->data,
						 pw->len, key, &kdf,
						 (uint64_t)time(NULL)) < 0)
			r = cmd_fail("account %s: cannot add device %s",
				     o->account, o->label);
		else
			added = true;
	}
	if (r == 0 && account_keys_seal_secret(f, key, refresh->data,
					       refresh->len) < 0)
		r = cmd_fail("account %s: cannot seal the refresh token",
			     o->account);
	OPENSSL_cleanse(key, sizeof(key));
	if (r == 0)
		r = cmd_account_save(&d, f);
	safe_file_close_dir(&d, NULL, 0);
	if (r == 0 && added)
		fprintf(stderr, "popbridge: account %s: device %s added (1 "
			"device)\n", o->account, o->label);
	if (r == 0)
		fprintf(stderr, "popbridge: account %s: authorized; refresh "
			"token stored\n", o->account);
	return r;
}

int
authorize_cmd(const char *config_path, int argc, char **argv)
{
	struct opts o = { .config = config_path };
	struct config *cfg = NULL;
	const struct config *acct;
	const struct config_oauth *oa;
	struct oauth_client client;
	struct account_file *f = NULL;
	struct authz *z = NULL;
	struct buf pw;
	const char *why;
	bool first = false;
	int flow, r;

	r = parse_opts(argc, argv, &o);
	if (r != 0)
		return r;
	acct = cmd_config_account(o.config, o.account, &cfg);
	if (acct == NULL)
		return 1;
	if (acct->account.auth != ACCOUNT_AUTH_OAUTH2) {
		r = cmd_fail("account %s has auth = password, not oauth2 "
			     "(store its password with popbridge passwd %s "
			     "--upstream)", o.account, o.account);
		config_free(&cfg);
		return r;
	}
	oa = &acct->account.oauth;
	client = config_oauth_client(acct);
	flow = authorize_flow_pick(oa->preset, &client, o.flow, &why);
	if (flow < 0) {
		cmd_fail("authorize: account %s: %s", o.account, why);
		config_free(&cfg);
		return 2;
	}
	cmd_protect();
	/* A browser that hangs up on the listener must not end us. */
	signal(SIGPIPE, SIG_IGN);
	buf_init_secret(&pw, CMD_DEVICE_PW_MAX + 2);
	/* Large, and no secret in it: the heap rather than the stack. */
	f = malloc(sizeof(*f));
	z = calloc(1, sizeof(*z));
	if (f == NULL || z == NULL) {
		r = cmd_fail("out of memory");
	} else {
		z->account = o.account;
		z->tty = isatty(STDIN_FILENO);
		buf_init_secret(&z->refresh, OAUTH_TOKEN_MAX);
		buf_init_secret(&z->in.line, PASTE_LINE_MAX);
		z->in.flags = -1;
		r = get_password(&o, cfg, z->tty, f, &pw, &first);
	}
	if (r == 0)
		r = run_flow(z, acct, (enum authorize_flow)flow, &client);
	if (r == 0)
		r = store(&o, cfg, acct->account.name, first, &pw, &z->refresh,
			  f);
	if (z != NULL) {
		buf_free(&z->refresh);
		buf_free(&z->in.line);
		OPENSSL_cleanse(z, sizeof(*z));
		free(z);
	}
	buf_free(&pw);
	free(f);
	config_free(&cfg);
	return r;
}
