/* The daemon: arguments, configuration, TLS contexts, the loop, signals
 * (SIGHUP reloads, SIGTERM/SIGINT stop gracefully) and shutdown. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "accounts/account_file.h"
#include "accounts/account_oauth.h"
#include "accounts/account_store.h"
#include "daemon/authorize_cmd.h"
#include "daemon/config.h"
#include "daemon/passwd_cmd.h"
#include "daemon/privs.h"
#include "daemon/server.h"
#include "daemon/version.h"
#include "net/listener.h"
#include "net/tls.h"
#include "util/log.h"

#define DEFAULT_CONFIG "/etc/popbridge.ini"

struct daemon {
	uv_loop_t *loop;
	struct server srv;
	struct listeners listeners;
	struct config *cfg;		/* for new sessions; each session
					 * holds a reference to its own */
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t grace;
	uv_timer_t drain;		/* the stop waits for token requests */
	uint64_t drain_until;
	int exit_code;
};

/*
 * Creates the TLS contexts the configuration asks for: the server one
 * from cert and key, the client one unless the upstream is plaintext.
 * Returns 0, or -1 after saying why.
 */
static int
tls_setup(const struct config *cfg, struct tls_ctx **server_r,
	  struct tls_ctx **client_r)
{
	const char *err = NULL;

	*server_r = *client_r = NULL;
	if (cfg->listen.cert != NULL) {
		*server_r = tls_ctx_new_server(cfg->listen.cert,
					       cfg->listen.key,
					       cfg->listen.tls_min, &err);
		if (*server_r == NULL) {
			log_error("%s: [listen] cert/key: %s", cfg->path, err);
			return -1;
		}
		if (cfg->listen.tls_min < 12)
			log_warn("[listen] tls_min = 1.%d: TLS 1.0 and 1.1 are "
				 "broken and OpenSSL's security level is "
				 "lowered for them; allow them only for devices "
				 "that cannot do better",
				 cfg->listen.tls_min - 10);
	}
	if (cfg->upstream.tls != UPSTREAM_TLS_NONE) {
		*client_r = tls_ctx_new_client(cfg->upstream.ca_file,
					       cfg->upstream.verify, &err);
		if (*client_r == NULL) {
			log_error("%s: [upstream] TLS: %s", cfg->path, err);
			tls_ctx_unref(server_r);
			return -1;
		}
		if (!cfg->upstream.verify)
			log_warn("[upstream] verify = no: the certificate of %s "
				 "is NOT checked; anyone on the path can read "
				 "passwords and mail", cfg->upstream.host);
	} else {
		log_warn("[upstream] tls = none: passwords and mail travel to "
			 "%s in clear", cfg->upstream.host);
	}
	return 0;
}

/* The TLS contexts, then the accounts' (which share [upstream]'s where
 * they can) attached to cfg. Returns 0, or -1 after saying why. */
static int
contexts_setup(struct config *cfg, struct tls_ctx **server_r,
	       struct tls_ctx **client_r)
{
	if (tls_setup(cfg, server_r, client_r) < 0)
		return -1;
	if (account_store_attach(cfg, *client_r) < 0) {
		tls_ctx_unref(server_r);
		tls_ctx_unref(client_r);
		return -1;
	}
	return 0;
}

/* --check-config: what each account's file holds, as comments (never a
 * secret: labels and whether one is stored). */
static void
accounts_print(const struct config *cfg, FILE *out)
{
	struct safe_file_dir d = { .fd = -1 };
	struct account_file *f;
	char err[512];
	size_t i, j;
	int opened, r;

	if (cfg->accounts.n == 0)
		return;
	f = malloc(sizeof(*f));
	if (f == NULL)
		return;
	opened = safe_file_open_dir(&d, cfg->state.dir, err, sizeof(err));
	fputc('\n', out);
	for (i = 0; i < cfg->accounts.n; i++) {
		const char *name = cfg->accounts.list[i]->account.name;
		bool oauth = cfg->accounts.list[i]->account.auth ==
			     ACCOUNT_AUTH_OAUTH2;

		r = opened;
		if (r == 0)
			r = account_file_load(&d, name, f, err, sizeof(err));
		if (r == -ENOENT) {
			fprintf(out, "; account %s: no device yet (popbridge "
				"%s %s%s)\n", name, oauth ? "authorize" : "passwd",
				name, oauth ? "" : " --device LABEL");
			continue;
		}
		if (r < 0) {
			fprintf(out, "; account %s: unusable: %s\n", name, err);
			fprintf(stderr, "popbridge: account %s: %s\n", name,
				err);
			continue;
		}
		fprintf(out, "; account %s: %zu device%s", name, f->n_devices,
			f->n_devices == 1 ? "" : "s");
		for (j = 0; j < f->n_devices; j++)
			fprintf(out, "%s%s", j ? ", " : " (",
				f->devices[j].label);
		if (oauth && f->has_upstream)
			fprintf(out, "%s; authorized (refresh token stored, not "
				"shown)\n", f->n_devices ? ")" : "");
		else if (oauth)
			fprintf(out, "%s; not authorized yet (popbridge authorize "
				"%s)\n", f->n_devices ? ")" : "", name);
		else
			fprintf(out, "%s; upstream secret %s\n",
				f->n_devices ? ")" : "",
				f->has_upstream ? "stored (not shown)"
						: "not stored");
	}
	safe_file_close_dir(&d, NULL, 0);
	free(f);
}

/* The UID maps live in [state] dir: create it (one level, private) when
 * missing, and refuse to start when it cannot be written. */
static int
state_dir_ready(const struct config *cfg)
{
	const char *dir = cfg->state.dir;
	struct stat st;

	if (stat(dir, &st) < 0 && errno == ENOENT && mkdir(dir, 0700) == 0)
		log_info("created state directory %s", dir);
	if (stat(dir, &st) < 0) {
		log_error("%s: [state] dir: %s: %s", cfg->path, dir,
			  strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) < 0) {
		log_error("%s: [state] dir: %s is not a writable directory",
			  cfg->path, dir);
		return -1;
	}
	return 0;
}

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: popbridge [-c FILE] [--check-config]\n"
		"       popbridge [-c FILE] passwd ACCOUNT [--device LABEL] "
		"[--revoke]\n"
		"                 [--upstream] [--generate] [--list]\n"
		"       popbridge [-c FILE] authorize ACCOUNT "
		"[--flow device|loopback]\n"
		"                 [--device LABEL]\n"
		"       popbridge --version | --help\n"
		"\n"
		"A POP3 server whose maildrop is an IMAP mailbox.\n"
		"\n"
		"  -c, --config FILE   configuration file (default %s)\n"
		"  -t, --check-config  check the configuration, print the\n"
		"                      effective settings and exit\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n"
		"\n"
		"passwd sets, revokes and lists an account's device "
		"passwords and stores\n"
		"its upstream secret (popbridge passwd --help). authorize "
		"obtains an OAuth2\n"
		"grant for an auth = oauth2 account and stores its refresh "
		"token (popbridge\n"
		"authorize --help).\n",
		DEFAULT_CONFIG);
}

static void
close_handle(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* A refresh in flight may rotate the refresh token: the stop waits for
 * it (and for its save), at most the request's own bound. */
static void
on_drain(uv_timer_t *t)
{
	struct daemon *d = t->data;

	if (account_oauth_busy(d->srv.oauth) &&
	    uv_now(d->loop) < d->drain_until)
		return;
	uv_timer_stop(t);
	uv_stop(d->loop);
}

static void
on_server_idle(struct server *srv)
{
	struct daemon *d = srv->loop->data;

	log_info("all sessions ended; stopping");
	if (!account_oauth_busy(d->srv.oauth)) {
		uv_stop(d->loop);
		return;
	}
	log_info("waiting for OAuth2 token requests to finish");
	d->drain_until = uv_now(d->loop) + d->cfg->upstream.timeout * 1000ull;
	uv_timer_start(&d->drain, on_drain, 100, 100);
}

static void
on_grace_expired(uv_timer_t *t)
{
	struct daemon *d = t->data;

	log_warn("shutdown_grace expired: closing %u sessions",
		 d->srv.n_sessions);
	server_end_all(&d->srv, "shutdown");
}

static void
on_stop_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;

	if (d->srv.stopping) {
		log_warn("second signal: closing now");
		on_grace_expired(&d->grace);
		return;
	}
	log_info("signal %d: stop accepting, %u sessions may finish within "
		 "%us", signum, d->srv.n_sessions,
		 d->cfg->limits.shutdown_grace);
	uv_timer_start(&d->grace, on_grace_expired,
		       (uint64_t)d->cfg->limits.shutdown_grace * 1000, 0);
	uv_unref((uv_handle_t *)&d->grace);
	listener_stop(&d->listeners);
}

static void
on_reload_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	char err[CONFIG_ERR_MAX];
	struct tls_ctx *server, *client;
	struct config *cfg;

	(void)signum;
	if (config_load(d->cfg->path, &cfg, err, sizeof(err)) < 0) {
		log_error("reload failed, keeping the old configuration: %s",
			  err);
		return;
	}
	if (state_dir_ready(cfg) < 0 || privs_check_reload(d->cfg, cfg) < 0 ||
	    contexts_setup(cfg, &server, &client) < 0) {
		log_error("reload failed, keeping the old configuration");
		config_free(&cfg);
		return;
	}
	/* Connections hold references to the contexts they use. */
	tls_ctx_unref(&d->srv.tls_server);
	tls_ctx_unref(&d->srv.tls_client);
	d->srv.tls_server = server;
	d->srv.tls_client = client;
	/* Sessions keep the configuration they started with: theirs lives
	 * as long as they hold it. */
	config_free(&d->cfg);
	d->cfg = cfg;
	d->srv.cfg = cfg;
	if (d->srv.oauth != NULL)
		account_oauth_prune(d->srv.oauth, cfg);
	log_set_level(cfg->log.level);
	log_info("configuration reloaded from %s (listen addresses change "
		 "only on restart); %zu account%s", cfg->path,
		 cfg->accounts.n, cfg->accounts.n == 1 ? "" : "s");
}

static int
run(struct daemon *d)
{
	int r;

	d->loop = uv_default_loop();
	d->loop->data = d;
	d->srv.on_idle = on_server_idle;
	d->srv.loop = d->loop;
	d->srv.cfg = d->cfg;
	r = listener_start(&d->listeners, &d->srv);
	if (r < 0 || privs_drop(d->cfg) < 0)
		return 1;
	uv_signal_init(d->loop, &d->sigterm);
	uv_signal_init(d->loop, &d->sigint);
	uv_signal_init(d->loop, &d->sighup);
	uv_timer_init(d->loop, &d->grace);
	uv_timer_init(d->loop, &d->drain);
	d->sigterm.data = d->sigint.data = d->sighup.data = d;
	d->grace.data = d->drain.data = d;
	uv_signal_start(&d->sigterm, on_stop_signal, SIGTERM);
	uv_signal_start(&d->sigint, on_stop_signal, SIGINT);
	uv_signal_start(&d->sighup, on_reload_signal, SIGHUP);
	log_info("%s %s started; upstream %s:%u; %zu account%s (unknown "
		 "users %s)", POPBRIDGE_NAME, POPBRIDGE_VERSION,
		 d->cfg->upstream.host, (unsigned)d->cfg->upstream.port,
		 d->cfg->accounts.n, d->cfg->accounts.n == 1 ? "" : "s",
		 d->cfg->accounts.unknown_users == UNKNOWN_USERS_REFUSE
			 ? "refused" : "pass through");
	uv_run(d->loop, UV_RUN_DEFAULT);
	account_oauth_free(&d->srv.oauth);
	/* Let every handle close so that memory checkers see no leak. */
	uv_walk(d->loop, close_handle, NULL);
	uv_run(d->loop, UV_RUN_DEFAULT);
	uv_loop_close(d->loop);
	log_info("stopped");
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG;
	char err[CONFIG_ERR_MAX];
	struct daemon d;
	int check = 0, c, code;

	/* "+": options stop at a command ("passwd"), which has its own. */
	while ((c = getopt_long(argc, argv, "+c:tVh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			printf("%s %s\n", POPBRIDGE_NAME, POPBRIDGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc && strcmp(argv[optind], "passwd") == 0 && !check)
		return passwd_cmd(path, argc - optind, argv + optind);
	if (optind < argc && strcmp(argv[optind], "authorize") == 0 && !check)
		return authorize_cmd(path, argc - optind, argv + optind);
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	memset(&d, 0, sizeof(d));
	if (config_load(path, &d.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "popbridge: %s\n", err);
		return 1;
	}
	if (check) {
		/* The certificate, key and CA files must load too. */
		log_set_level(LOG_ERROR);
		code = contexts_setup(d.cfg, &d.srv.tls_server,
				      &d.srv.tls_client);
		tls_ctx_unref(&d.srv.tls_server);
		tls_ctx_unref(&d.srv.tls_client);
		if (code == 0) {
			config_print(d.cfg, stdout);
			accounts_print(d.cfg, stdout);
		}
		config_free(&d.cfg);
		return code == 0 ? 0 : 1;
	}
	log_set_level(d.cfg->log.level);
	if (state_dir_ready(d.cfg) < 0) {
		config_free(&d.cfg);
		return 1;
	}
	mapstore_clean_stale(d.cfg->state.dir);
	if (contexts_setup(d.cfg, &d.srv.tls_server, &d.srv.tls_client) < 0) {
		config_free(&d.cfg);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	code = run(&d);
	server_free(&d.srv);
	config_free(&d.cfg);
	return code;
}
