/* What popbridge passwd and popbridge authorize share: failures, secrets
 * from standard input or a terminal, the locked state directory. */
#include "daemon/cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "accounts/account_keys.h"
#include "util/error.h"

/* The terminal's settings while echo is off, for the signal handler. */
static struct termios saved_tty;
static volatile sig_atomic_t echo_off;

int
cmd_fail(const char *fmt, ...)
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

void
cmd_protect(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	size_t i;

	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], on_signal);
	/* Secrets pass through this process: no core file of it. */
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
}

int
cmd_read_line(struct buf *out, size_t max)
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

/* cmd_read_line with a prompt and no echo on a terminal. */
static int
prompt_line(const char *prompt, struct buf *out, size_t max)
{
	struct termios t;
	int r;

	/* Echo off before the prompt shows, as getpass does: what is typed
	 * once it shows must neither be echoed nor flushed away. */
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
	fputs(prompt, stderr);
	fflush(stderr);
	r = cmd_read_line(out, max);
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

int
cmd_get_secret(bool tty, const char *what, bool confirm, size_t min,
	       size_t max, const char *short_hint, struct buf *out)
{
	char prompt[160];
	struct buf again;
	int r;

	if (!tty) {
		r = cmd_read_line(out, max);
		if (r < 0)
			return cmd_fail("%s: %s", what, input_error(r));
	} else {
		snprintf(prompt, sizeof(prompt), "%c%s: ",
			 what[0] >= 'a' && what[0] <= 'z' ? what[0] - 'a' + 'A'
							  : what[0],
			 what + 1);
		r = prompt_line(prompt, out, max);
		if (r < 0)
			return cmd_fail("%s: %s", what, input_error(r));
		if (confirm) {
			buf_init_secret(&again, max + 1);
			r = prompt_line("Again: ", &again, max);
			if (r == 0 && (again.len != out->len ||
				       CRYPTO_memcmp(again.data, out->data,
						     out->len) != 0))
				r = -EBADMSG;
			buf_free(&again);
			if (r == -EBADMSG)
				return cmd_fail("%s: the two entries differ",
						what);
			if (r < 0)
				return cmd_fail("%s: %s", what,
						input_error(r));
		}
	}
	if (out->len < min) {
		buf_wipe(out);
		if (min <= 1)
			return cmd_fail("%s: empty", what);
		return cmd_fail("%s: too short (expected at least %zu "
				"characters%s)", what, min, short_hint);
	}
	return 0;
}

int
cmd_state_open(const struct config *cfg, bool lock, struct safe_file_dir *d)
{
	char err[512];

	if (mkdir(cfg->state.dir, 0700) == 0)
		fprintf(stderr, "popbridge: created state directory %s\n",
			cfg->state.dir);
	if (safe_file_open_dir(d, cfg->state.dir, err, sizeof(err)) < 0)
		return cmd_fail("[state] dir: %s", err);
	while (lock && flock(d->fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			cmd_fail("cannot lock %s: %s", cfg->state.dir,
				 strerror(errno));
			safe_file_close_dir(d, NULL, 0);
			return 1;
		}
	}
	return 0;
}

int
cmd_account_load(const struct safe_file_dir *d, const char *account,
		 struct account_file *f)
{
	char err[512];
	int r;

	r = account_file_load(d, account, f, err, sizeof(err));
	if (r == 0 || r == -ENOENT)
		return 0;
	if (r == -EBADMSG)
		return cmd_fail("%s (nothing changed; move the file aside to "
				"start the account afresh)", err);
	return cmd_fail("%s", err);
}

int
cmd_unlock(const struct account_file *f, const char *account,
	   const char *pass, size_t n, const char *refused,
	   uint8_t key_r[ACCOUNT_KEY_LEN])
{
	int r = account_keys_unlock(f, pass, n, key_r, NULL);

	if (r == -EACCES)
		return cmd_fail("account %s: %s", account, refused);
	if (r == -EBADMSG)
		return cmd_fail("account %s: the device's key does not open: "
				"the file was altered", account);
	if (r < 0)
		return cmd_fail("account %s: %s", account, err_text(r));
	return 0;
}

int
cmd_account_save(const struct safe_file_dir *d, const struct account_file *f)
{
	char name[ACCOUNT_FILE_NAME_MAX], err[512];
	struct stat st;

	if (account_file_save(d, f, err, sizeof(err)) < 0)
		return cmd_fail("%s", err);
	if (geteuid() != 0 || fstat(d->fd, &st) < 0 || st.st_uid == 0)
		return 0;
	account_file_name(f->name, name);
	if (fchownat(d->fd, name, st.st_uid, st.st_gid,
		     AT_SYMLINK_NOFOLLOW) < 0)
		return cmd_fail("cannot give %s/%s to the state directory's "
				"owner: %s", d->path, name, strerror(errno));
	return 0;
}

const struct config *
cmd_config_account(const char *path, const char *name, struct config **cfg_r)
{
	char err[CONFIG_ERR_MAX];
	const struct config *acct;

	if (config_load(path, cfg_r, err, sizeof(err)) < 0) {
		cmd_fail("%s", err);
		return NULL;
	}
	acct = config_account_named(*cfg_r, name);
	if (acct == NULL) {
		cmd_fail("%s: no [account %s] section (expected an account "
			 "the configuration names)", path, name);
		config_free(cfg_r);
	}
	return acct;
}
