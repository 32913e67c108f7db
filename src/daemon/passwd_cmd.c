/* popbridge passwd: device passwords and the upstream secret of an
 * account, read from standard input or a terminal, into the account's
 * file. */
#include "daemon/passwd_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "accounts/account_file.h"
#include "accounts/account_keys.h"
#include "daemon/cmd.h"
#include "daemon/config.h"
#include "store/safe_file.h"
#include "util/buf.h"
#include "util/error.h"

/* --generate: 24 letters and digits, about 143 bits. */
#define GENERATED_LEN 24
/* After "expected at least N characters" of a short device password. */
#define GENERATE_HINT "; --generate makes a strong one"

enum mode {
	MODE_DEVICE,		/* set a device password (the default) */
	MODE_REVOKE,
	MODE_UPSTREAM,
	MODE_LIST,
};

struct opts {
	const char *config;
	const char *account;
	const char *label;
	bool label_set;
	bool revoke, upstream, generate, list;
	enum mode mode;
};

static void
usage(FILE *out)
{
	fputs("usage: popbridge [-c FILE] passwd ACCOUNT [--device LABEL] "
	      "[--generate]\n"
	      "       popbridge [-c FILE] passwd ACCOUNT --device LABEL "
	      "--revoke\n"
	      "       popbridge [-c FILE] passwd ACCOUNT --upstream\n"
	      "       popbridge [-c FILE] passwd ACCOUNT --list\n"
	      "\n"
	      "Sets a device password of an [account NAME] (label \"default\" "
	      "without\n"
	      "--device), revokes one, stores the account's upstream secret, "
	      "or lists the\n"
	      "devices. Secrets are read one per line from standard input, or "
	      "prompted for\n"
	      "on a terminal: a new device password (none with --generate, "
	      "which prints\n"
	      "one), then, once the account has a device, an existing device "
	      "password; for\n"
	      "--upstream, the upstream secret, then a device password.\n",
	      out);
}

/* GENERATED_LEN letters and digits, uniformly drawn. */
static int
generate(struct buf *out)
{
	static const char set[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char b[64];
	size_t i;
	int r = 0;

	buf_wipe(out);
	while (r == 0 && out->len < GENERATED_LEN) {
		r = account_random(b, sizeof(b));
		/* 248 = 4 * 62: the bytes above would favour some letters. */
		for (i = 0; r == 0 && i < sizeof(b) && out->len < GENERATED_LEN;
		     i++) {
			if (b[i] < 248)
				r = buf_append(out, &set[b[i] % 62], 1);
		}
	}
	OPENSSL_cleanse(b, sizeof(b));
	return r;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "device", required_argument, NULL, 'd' },
		{ "revoke", no_argument, NULL, 'r' },
		{ "upstream", no_argument, NULL, 'u' },
		{ "generate", no_argument, NULL, 'g' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;		/* glibc: start over, argv[0] is "passwd" */
	argv[0] = (char *)"popbridge passwd";	/* getopt's messages */
	while ((c = getopt_long(argc, argv, "c:d:ruglh", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'd':
			o->label = optarg;
			o->label_set = true;
			break;
		case 'r':
			o->revoke = true;
			break;
		case 'u':
			o->upstream = true;
			break;
		case 'g':
			o->generate = true;
			break;
		case 'l':
			o->list = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:	/* getopt said what */
			cmd_fail("passwd: see popbridge passwd --help");
			return 2;
		}
	}
	if (optind + 1 != argc) {
		cmd_fail("passwd: expected one ACCOUNT, got %d (see popbridge "
			 "passwd --help)", argc - optind);
		return 2;
	}
	o->account = argv[optind];
	if (o->list && (o->revoke || o->upstream || o->generate ||
			o->label_set)) {
		cmd_fail("passwd: --list goes alone");
		return 2;
	}
	if (o->upstream && (o->revoke || o->generate || o->label_set)) {
		cmd_fail("passwd: --upstream goes without --device, --revoke "
			 "and --generate");
		return 2;
	}
	if (o->revoke && (!o->label_set || o->generate)) {
		cmd_fail("passwd: --revoke needs --device LABEL, and no "
			 "--generate");
		return 2;
	}
	o->mode = o->list ? MODE_LIST : o->revoke ? MODE_REVOKE
			  : o->upstream ? MODE_UPSTREAM : MODE_DEVICE;
	if (!o->label_set)
		o->label = CMD_DEFAULT_LABEL;
	if (!account_file_name_ok(o->label)) {
		cmd_fail("passwd: bad device label \"%s\" (expected 1-%d "
			 "letters, digits, '.', '_' or '-', starting with a "
			 "letter or digit)", o->label, ACCOUNT_LABEL_MAX);
		return 2;
	}
	return 0;
}

static void
list_devices(const struct account_file *f)
{
	char when[32];
	size_t i;

	for (i = 0; i < f->n_devices; i++) {
		time_t t = (time_t)f->devices[i].created;
		struct tm tm;

		if (gmtime_r(&t, &tm) == NULL ||
		    strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm) == 0)
			snprintf(when, sizeof(when), "?");
		printf("device %s (set %s)\n", f->devices[i].label, when);
	}
	printf("upstream secret: %s\n",
	       f->has_upstream ? "stored" : "not stored");
}

/* Unlocks the account key with an existing device's password (the next
 * line of input). Returns 0 or 1 (after saying why). */
static int
unlock(bool tty, const struct opts *o, const struct account_file *f,
       uint8_t key[ACCOUNT_KEY_LEN])
{
	struct buf pw;
	char what[96];
	int r;

	snprintf(what, sizeof(what), "an existing device password of "
		 "account %s", o->account);
	buf_init_secret(&pw, CMD_DEVICE_PW_MAX + 2);
	r = cmd_get_secret(tty, what, false, 1, CMD_DEVICE_PW_MAX, "", &pw);
	if (r == 0)
		r = cmd_unlock(f, o->account, pw.data, pw.len,
			       "that password is no device's (expected the "
			       "password of one of its devices: see --list)",
			       key);
	buf_free(&pw);
	return r;
}

static int
set_device(bool tty, const struct opts *o, struct account_file *f,
	   struct buf *generated)
{
	const struct account_kdf kdf = ACCOUNT_KDF_DEFAULT;
	uint8_t key[ACCOUNT_KEY_LEN];
	struct buf pw;
	char what[96];
	bool had = account_file_device(f, o->label) != NULL;
	int r = 0;

	buf_init_secret(&pw, CMD_DEVICE_PW_MAX + 2);
	if (o->generate) {
		if (generate(generated) < 0 ||
		    buf_append(&pw, generated->data, generated->len) < 0)
			r = cmd_fail("cannot generate a password");
	} else {
		snprintf(what, sizeof(what), "new password for device %s of "
			 "account %s", o->label, o->account);
		r = cmd_get_secret(tty, what, true, CMD_DEVICE_PW_MIN,
				   CMD_DEVICE_PW_MAX, GENERATE_HINT, &pw);
	}
	/* The account key: the one the devices share, else a new one. */
	if (r == 0 && f->n_devices > 0)
		r = unlock(tty, o, f, key);
	else if (r == 0 && account_keys_new(key) < 0)
		r = cmd_fail("cannot make an account key");
	if (r == 0) {
		r = account_keys_set_device(f, o->label, pw.data, pw.len, key,
					    &kdf, (uint64_t)time(NULL));
		if (r == -ENOSPC)
			r = cmd_fail("account %s has %d devices already "
				     "(expected at most %d: revoke one first)",
				     o->account, ACCOUNT_DEVICES_MAX,
				     ACCOUNT_DEVICES_MAX);
		else if (r < 0)
			r = cmd_fail("account %s: %s", o->account, err_text(r));
	}
	if (r == 0)
		fprintf(stderr, "popbridge: account %s: device %s %s (%zu "
			"device%s)\n", o->account, o->label,
			had ? "changed" : "added", f->n_devices,
			f->n_devices == 1 ? "" : "s");
	OPENSSL_cleanse(key, sizeof(key));
	buf_free(&pw);
	return r;
}

static int
set_upstream(bool tty, const struct opts *o, const struct config *acct,
	     struct account_file *f)
{
	uint8_t key[ACCOUNT_KEY_LEN];
	struct buf secret;
	char what[160];
	int r;

	if (f->n_devices == 0)
		return cmd_fail("account %s has no device yet (expected one "
				"first: popbridge passwd %s --device LABEL)",
				o->account, o->account);
	snprintf(what, sizeof(what), "upstream password of %.64s at %.64s",
		 acct->account.upstream_user, acct->upstream.host);
	buf_init_secret(&secret, ACCOUNT_SECRET_MAX + 2);
	r = cmd_get_secret(tty, what, true, 1, ACCOUNT_SECRET_MAX, "", &secret);
	if (r == 0)
		r = unlock(tty, o, f, key);
	if (r == 0 && account_keys_seal_secret(f, key, secret.data,
					       secret.len) < 0)
		r = cmd_fail("account %s: cannot seal the secret", o->account);
	if (r == 0)
		fprintf(stderr, "popbridge: account %s: upstream secret "
			"stored\n", o->account);
	OPENSSL_cleanse(key, sizeof(key));
	buf_free(&secret);
	return r;
}

static int
revoke_device(const struct opts *o, struct account_file *f)
{
	int r = account_keys_revoke(f, o->label);

	if (r == -ENOENT)
		return cmd_fail("account %s has no device %s (see --list)",
				o->account, o->label);
	if (r == 1)
		fprintf(stderr, "popbridge: account %s: device %s revoked; it "
			"was the last, so the account key and the upstream "
			"secret are gone (store it again after adding a "
			"device)\n", o->account, o->label);
	else
		fprintf(stderr, "popbridge: account %s: device %s revoked (%zu "
			"device%s left)\n", o->account, o->label, f->n_devices,
			f->n_devices == 1 ? "" : "s");
	return 0;
}

static int
run(const struct opts *o, const struct config *cfg, const struct config *acct,
    struct account_file *f, struct buf *generated)
{
	struct safe_file_dir d = { .fd = -1 };
	const char *name = acct->account.name;
	bool tty = isatty(STDIN_FILENO);
	int r = 0;

	if (cmd_state_open(cfg, true, &d) != 0)
		return 1;
	if (cmd_account_load(&d, name, f) != 0) {
		safe_file_close_dir(&d, NULL, 0);
		return 1;
	}
	switch (o->mode) {
	case MODE_LIST:
		list_devices(f);
		safe_file_close_dir(&d, NULL, 0);
		return 0;
	case MODE_DEVICE:
		r = set_device(tty, o, f, generated);
		break;
	case MODE_UPSTREAM:
		r = set_upstream(tty, o, acct, f);
		break;
	case MODE_REVOKE:
		r = revoke_device(o, f);
		break;
	}
	if (r == 0)
		r = cmd_account_save(&d, f);
	safe_file_close_dir(&d, NULL, 0);
	return r;
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
passwd_cmd(const char *config_path, int argc, char **argv)
{
	struct opts o = { .config = config_path };
	struct config *cfg = NULL;
	const struct config *acct;
	struct account_file *f;
	struct buf generated;
	int r;

	r = parse_opts(argc, argv, &o);
	if (r != 0)
		return r;
	acct = cmd_config_account(o.config, o.account, &cfg);
	if (acct == NULL)
		return 1;
	/* Its secret is the refresh token only authorize obtains. */
	if (o.mode == MODE_UPSTREAM &&
	    acct->account.auth == ACCOUNT_AUTH_OAUTH2) {
		r = cmd_fail("account %s uses OAuth2: run popbridge authorize "
			     "%s", o.account, o.account);
		config_free(&cfg);
		return r;
	}
	cmd_protect();
	/* Large, and no secret in it: the heap rather than the stack. */
	f = malloc(sizeof(*f));
	buf_init_secret(&generated, GENERATED_LEN + 2);
	r = f == NULL ? cmd_fail("out of memory")
		      : run(&o, cfg, acct, f, &generated);
	/* Straight to the descriptor: no copy in stdio's buffer. */
	if (r == 0 && generated.len > 0 &&
	    (buf_append(&generated, "\n", 1) < 0 ||
	     write_all(STDOUT_FILENO, generated.data, generated.len) < 0))
		r = cmd_fail("cannot write the password: %s", strerror(errno));
	fflush(stdout);
	buf_free(&generated);
	free(f);
	config_free(&cfg);
	return r;
}
