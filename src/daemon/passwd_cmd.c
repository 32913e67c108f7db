/* popbridge passwd: device passwords and the upstream secret of an
 * account, read from standard input or a terminal, into the account's
 * file. */
#include "daemon/passwd_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "accounts/account_file.h"
#include "accounts/account_keys.h"
#include "daemon/config.h"
#include "store/safe_file.h"
#include "util/buf.h"
#include "util/error.h"

/* A device password must travel in "PASS <password>" within RFC 2449's
 * 255 octets, and resist guessing a little even offline. */
#define DEVICE_PW_MIN 8
#define DEVICE_PW_MAX 250
/* --generate: 24 letters and digits, about 143 bits. */
#define GENERATED_LEN 24
#define DEFAULT_LABEL "default"

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

/* The terminal's settings while echo is off, for the signal handler. */
static struct termios saved_tty;
static volatile sig_atomic_t echo_off;

__attribute__((format(printf, 1, 2))) static int
fail(const char *fmt, ...)
{
	va_list ap;

	fputs("popbridge: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

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

static void
restore_tty(void)
{
	if (echo_off) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
		echo_off = 0;
	}
}

static void
on_signal(int sig)
{
	restore_tty();
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Reads one line from standard input into out (a secret buffer), its line
 * end (LF, or CRLF) stripped. Returns 0; -ENODATA at the end of the input
 * with nothing read; -EMSGSIZE for more than max bytes; -EINVAL for a NUL;
 * -EIO.
 */
static int
read_line(struct buf *out, size_t max)
{
	char ch = 0;
	ssize_t n;
	int r = 0;

	buf_wipe(out);
	for (;;) {
		n = read(STDIN_FILENO, &ch, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -EIO;
			break;
		}
		if (n == 0) {
			if (out->len == 0)
				r = -ENODATA;
			break;
		}
		if (ch == '\n')
			break;
		/* One byte beyond max, for a CR that goes with the LF. */
		if (out->len > max || buf_append(out, &ch, 1) < 0) {
			r = -EMSGSIZE;
			break;
		}
	}
	OPENSSL_cleanse(&ch, sizeof(ch));
	if (r == 0 && out->len > 0 && out->data[out->len - 1] == '\r') {
		out->data[--out->len] = '\0';
	}
	if (r == 0 && out->len > max)
		r = -EMSGSIZE;
	if (r == 0 && memchr(out->data, '\0', out->len) != NULL)
		r = -EINVAL;
	if (r < 0)
		buf_wipe(out);
	return r;
}

/* read_line with a prompt and no echo on a terminal. */
static int
prompt_line(const char *prompt, struct buf *out, size_t max)
{
	struct termios t;
	int r;

	fputs(prompt, stderr);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &saved_tty) < 0)
		return -EIO;
	t = saved_tty;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0) {
		echo_off = 0;
		return -EIO;
	}
	r = read_line(out, max);
	restore_tty();
	return r;
}

static const char *
input_error(int r)
{
	switch (r) {
	case -ENODATA:
		return "no line (expected one secret a line on standard input)";
	case -EMSGSIZE:
		return "too long";
	case -EINVAL:
		return "a NUL byte in it";
	default:
		return err_text(r);
	}
}

/*
 * One secret, what says what it is for: from standard input, or from the
 * terminal, asked twice when it is new (confirm). Returns 0 or 1 (after
 * saying why).
 */
static int
get_secret(bool tty, const char *what, bool confirm, size_t min, size_t max,
	   struct buf *out)
{
	char prompt[160];
	struct buf again;
	int r;

	if (!tty) {
		r = read_line(out, max);
		if (r < 0)
			return fail("%s: %s", what, input_error(r));
	} else {
		snprintf(prompt, sizeof(prompt), "%c%s: ",
			 what[0] >= 'a' && what[0] <= 'z' ? what[0] - 'a' + 'A'
							  : what[0],
			 what + 1);
		r = prompt_line(prompt, out, max);
		if (r < 0)
			return fail("%s: %s", what, input_error(r));
		if (confirm) {
			buf_init_secret(&again, max + 1);
			r = prompt_line("Again: ", &again, max);
			if (r == 0 && (again.len != out->len ||
				       CRYPTO_memcmp(again.data, out->data,
						     out->len) != 0))
				r = -EBADMSG;
			buf_free(&again);
			if (r == -EBADMSG)
				return fail("%s: the two entries differ", what);
			if (r < 0)
				return fail("%s: %s", what, input_error(r));
		}
	}
	if (out->len < min) {
		buf_wipe(out);
		if (min <= 1)
			return fail("%s: empty", what);
		return fail("%s: too short (expected at least %zu characters; "
			    "--generate makes a strong one)", what, min);
	}
	return 0;
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
			fail("passwd: see popbridge passwd --help");
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fail("passwd: expected one ACCOUNT, got %d (see popbridge passwd "
		     "--help)", argc - optind);
		return 2;
	}
	o->account = argv[optind];
	if (o->list && (o->revoke || o->upstream || o->generate ||
			o->label_set)) {
		fail("passwd: --list goes alone");
		return 2;
	}
	if (o->upstream && (o->revoke || o->generate || o->label_set)) {
		fail("passwd: --upstream goes without --device, --revoke and "
		     "--generate");
		return 2;
	}
	if (o->revoke && (!o->label_set || o->generate)) {
		fail("passwd: --revoke needs --device LABEL, and no "
		     "--generate");
		return 2;
	}
	o->mode = o->list ? MODE_LIST : o->revoke ? MODE_REVOKE
			  : o->upstream ? MODE_UPSTREAM : MODE_DEVICE;
	if (!o->label_set)
		o->label = DEFAULT_LABEL;
	if (!account_file_name_ok(o->label)) {
		fail("passwd: bad device label \"%s\" (expected 1-%d letters, "
		     "digits, '.', '_' or '-', starting with a letter or "
		     "digit)", o->label, ACCOUNT_LABEL_MAX);
		return 2;
	}
	return 0;
}

/* The state directory, created (private) when missing, as the daemon
 * does. */
static int
open_state(const struct config *cfg, struct safe_file_dir *d)
{
	char err[512];

	if (mkdir(cfg->state.dir, 0700) == 0)
		fprintf(stderr, "popbridge: created state directory %s\n",
			cfg->state.dir);
	if (safe_file_open_dir(d, cfg->state.dir, err, sizeof(err)) < 0)
		return fail("[state] dir: %s", err);
	/* Two passwd commands at once would each write a whole file and
	 * the last would win: they take turns. */
	while (flock(d->fd, LOCK_EX) < 0) {
		if (errno != EINTR)
			return fail("cannot lock %s: %s", cfg->state.dir,
				    strerror(errno));
	}
	return 0;
}

/* The daemon, not root, reads the file: as root, give it to the state
 * directory's owner (the daemon's user; privs.c hands the directory over
 * the same way). */
static int
give_to_owner(const struct safe_file_dir *d, const char *account)
{
	char name[ACCOUNT_FILE_NAME_MAX];
	struct stat st;

	if (geteuid() != 0 || fstat(d->fd, &st) < 0 || st.st_uid == 0)
		return 0;
	account_file_name(account, name);
	if (fchownat(d->fd, name, st.st_uid, st.st_gid,
		     AT_SYMLINK_NOFOLLOW) < 0)
		return fail("cannot give %s/%s to the state directory's owner: "
			    "%s", d->path, name, strerror(errno));
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
	buf_init_secret(&pw, DEVICE_PW_MAX + 2);
	r = get_secret(tty, what, false, 1, DEVICE_PW_MAX, &pw);
	if (r == 0) {
		r = account_keys_unlock(f, pw.data, pw.len, key, NULL);
		if (r == -EACCES)
			r = fail("account %s: that password is no device's "
				 "(expected the password of one of its "
				 "devices: see --list)", o->account);
		else if (r == -EBADMSG)
			r = fail("account %s: the device's key does not open: "
				 "the file was altered", o->account);
		else if (r < 0)
			r = fail("account %s: %s", o->account, err_text(r));
	}
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

	buf_init_secret(&pw, DEVICE_PW_MAX + 2);
	if (o->generate) {
		if (generate(generated) < 0 ||
		    buf_append(&pw, generated->data, generated->len) < 0)
			r = fail("cannot generate a password");
	} else {
		snprintf(what, sizeof(what), "new password for device %s of "
			 "account %s", o->label, o->account);
		r = get_secret(tty, what, true, DEVICE_PW_MIN, DEVICE_PW_MAX,
			       &pw);
	}
	/* The account key: the one the devices share, else a new one. */
	if (r == 0 && f->n_devices > 0)
		r = unlock(tty, o, f, key);
	else if (r == 0 && account_keys_new(key) < 0)
		r = fail("cannot make an account key");
	if (r == 0) {
		r = account_keys_set_device(f, o->label, pw.data, pw.len, key,
					    &kdf, (uint64_t)time(NULL));
		if (r == -ENOSPC)
			r = fail("account %s has %d devices already (expected "
				 "at most %d: revoke one first)", o->account,
				 ACCOUNT_DEVICES_MAX, ACCOUNT_DEVICES_MAX);
		else if (r < 0)
			r = fail("account %s: %s", o->account, err_text(r));
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
		return fail("account %s has no device yet (expected one first: "
			    "popbridge passwd %s --device LABEL)", o->account,
			    o->account);
	snprintf(what, sizeof(what), "upstream password of %.64s at %.64s",
		 acct->account.upstream_user, acct->upstream.host);
	buf_init_secret(&secret, ACCOUNT_SECRET_MAX + 2);
	r = get_secret(tty, what, true, 1, ACCOUNT_SECRET_MAX, &secret);
	if (r == 0)
		r = unlock(tty, o, f, key);
	if (r == 0 && account_keys_seal_secret(f, key, secret.data,
					       secret.len) < 0)
		r = fail("account %s: cannot seal the secret", o->account);
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
		return fail("account %s has no device %s (see --list)",
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
	char err[512];
	int r;

	if (open_state(cfg, &d) != 0)
		return 1;
	r = account_file_load(&d, name, f, err, sizeof(err));
	if (r < 0 && r != -ENOENT) {
		safe_file_close_dir(&d, NULL, 0);
		if (r == -EBADMSG)
			return fail("%s (nothing changed; move the file aside "
				    "to start the account afresh)", err);
		return fail("%s", err);
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
	if (r == 0 && account_file_save(&d, f, err, sizeof(err)) < 0)
		r = fail("%s", err);
	if (r == 0)
		r = give_to_owner(&d, name);
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
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct opts o = { .config = config_path };
	char err[CONFIG_ERR_MAX];
	struct config *cfg = NULL;
	const struct config *acct;
	struct account_file *f;
	struct buf generated;
	size_t i;
	int r;

	r = parse_opts(argc, argv, &o);
	if (r != 0)
		return r;
	if (config_load(o.config, &cfg, err, sizeof(err)) < 0)
		return fail("%s", err);
	acct = config_account_named(cfg, o.account);
	if (acct == NULL) {
		r = fail("%s: no [account %s] section (expected an account "
			 "the configuration names)", o.config, o.account);
		config_free(&cfg);
		return r;
	}
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], on_signal);
	/* Secrets pass through this process: no core file of it. */
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	/* Large, and no secret in it: the heap rather than the stack. */
	f = malloc(sizeof(*f));
	buf_init_secret(&generated, GENERATED_LEN + 2);
	r = f == NULL ? fail("out of memory")
		      : run(&o, cfg, acct, f, &generated);
	/* Straight to the descriptor: no copy in stdio's buffer. */
	if (r == 0 && generated.len > 0 &&
	    (buf_append(&generated, "\n", 1) < 0 ||
	     write_all(STDOUT_FILENO, generated.data, generated.len) < 0))
		r = fail("cannot write the password: %s", strerror(errno));
	fflush(stdout);
	buf_free(&generated);
	free(f);
	config_free(&cfg);
	return r;
}
