/* The accounts of one configuration at run time: their TLS contexts and
 * their files, read again when popbridge passwd replaced them. */
#include "accounts/account_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "net/tls.h"
#include "store/safe_file.h"
#include "util/error.h"
#include "util/log.h"

/* The file as last read, and what identified it on disk. */
struct entry {
	struct tls_ctx *tls;
	bool read;		/* the fields below mean something */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	int status;		/* of the last read: 0, -ENOENT, -EBADMSG... */
	char err[256];
	struct account_file file;
};

struct account_store {
	const struct config *cfg;	/* the one it is attached to */
	struct tls_ctx *root_tls;
	size_t n;
	struct entry entries[];
};

static void
store_free(void *p)
{
	struct account_store *st = p;
	size_t i;

	if (st == NULL)
		return;
	for (i = 0; i < st->n; i++) {
		tls_ctx_unref(&st->entries[i].tls);
		/* No secret in it, but no need to leave it about either. */
		memset(&st->entries[i].file, 0, sizeof(st->entries[i].file));
	}
	tls_ctx_unref(&st->root_tls);
	free(st);
}

/* The account's context: [upstream]'s when the settings are the same. */
static int
tls_for(const struct config *root, struct tls_ctx *root_tls,
	const struct config *acct, struct tls_ctx **tls_r)
{
	const char *ca = acct->upstream.ca_file, *rca = root->upstream.ca_file;
	const char *err = NULL;

	*tls_r = NULL;
	if (acct->upstream.tls == UPSTREAM_TLS_NONE) {
		log_warn("[account %s] tls = none: its password and mail travel "
			 "to %s in clear", acct->account.name,
			 acct->upstream.host);
		return 0;
	}
	if (!acct->upstream.verify)
		log_warn("[account %s] verify = no: the certificate of %s is NOT "
			 "checked; anyone on the path can read its password "
			 "and mail", acct->account.name, acct->upstream.host);
	if (root_tls != NULL && acct->upstream.verify == root->upstream.verify &&
	    ((ca == NULL && rca == NULL) ||
	     (ca != NULL && rca != NULL && strcmp(ca, rca) == 0))) {
		*tls_r = tls_ctx_ref(root_tls);
		return 0;
	}
	*tls_r = tls_ctx_new_client(ca, acct->upstream.verify, &err);
	if (*tls_r == NULL) {
		log_error("%s: [account %s] TLS: %s", root->path,
			  acct->account.name, err);
		return -EINVAL;
	}
	return 0;
}

int
account_store_attach(struct config *cfg, struct tls_ctx *root_tls)
{
	struct account_store *st;
	size_t i;
	int r;

	st = calloc(1, sizeof(*st) + cfg->accounts.n * sizeof(st->entries[0]));
	if (st == NULL) {
		log_error("accounts: out of memory");
		return -ENOMEM;
	}
	st->cfg = cfg;
	st->root_tls = tls_ctx_ref(root_tls);
	st->n = cfg->accounts.n;
	for (i = 0; i < st->n; i++) {
		r = tls_for(cfg, root_tls, cfg->accounts.list[i],
			    &st->entries[i].tls);
		if (r < 0) {
			store_free(st);
			return r;
		}
	}
	cfg->runtime = st;
	cfg->runtime_free = store_free;
	return 0;
}

struct account_store *
account_store_of(const struct config *cfg)
{
	return config_root(cfg)->runtime;
}

static struct entry *
entry_of(const struct account_store *st, const struct config *acct)
{
	size_t i;

	for (i = 0; i < st->n; i++) {
		if (st->cfg->accounts.list[i] == acct)
			return (struct entry *)&st->entries[i];
	}
	return NULL;
}

struct tls_ctx *
account_store_tls(const struct account_store *st, const struct config *acct)
{
	struct entry *e = entry_of(st, acct);

	return e != NULL ? e->tls : NULL;
}

struct tls_ctx *
account_store_root_tls(const struct account_store *st)
{
	return st->root_tls;
}

static void
reload(struct entry *e, const struct config *acct, const struct stat *st)
{
	struct safe_file_dir d = { .fd = -1 };
	const char *dir = acct->state.dir;
	int r;

	e->read = true;
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->size = st->st_size;
	e->mtime = st->st_mtim;
	e->err[0] = '\0';
	r = safe_file_open_dir(&d, dir, e->err, sizeof(e->err));
	if (r == 0) {
		r = account_file_load(&d, acct->account.name, &e->file, e->err,
				      sizeof(e->err));
		safe_file_close_dir(&d, NULL, 0);
	}
	e->status = r;
	if (r == 0)
		log_info("account %s: %zu device%s, upstream secret %s",
			 acct->account.name, e->file.n_devices,
			 e->file.n_devices == 1 ? "" : "s",
			 e->file.has_upstream ? "stored" : "not stored");
	else if (r != -ENOENT)
		log_error("account %s: %s; its logins fail until the file is "
			  "repaired or moved aside", acct->account.name, e->err);
}

int
account_store_file(struct account_store *st, const struct config *acct,
		   const struct account_file **f_r, char *err, size_t errlen)
{
	char path[4096], name[ACCOUNT_FILE_NAME_MAX];
	struct entry *e = entry_of(st, acct);
	struct stat sb;

	*f_r = NULL;
	if (e == NULL) {
		snprintf(err, errlen, "not an account of this configuration");
		return -EINVAL;
	}
	account_file_name(acct->account.name, name);
	snprintf(path, sizeof(path), "%s/%s", acct->state.dir, name);
	if (stat(path, &sb) < 0) {
		int code = errno;

		if (code != ENOENT) {
			snprintf(err, errlen, "%s: %s", path, strerror(code));
			return -code;
		}
		/* No file: no device. Forget what was read before. */
		e->read = false;
		account_file_init(&e->file, acct->account.name);
		*f_r = &e->file;
		return -ENOENT;
	}
	if (!e->read || sb.st_dev != e->dev || sb.st_ino != e->ino ||
	    sb.st_size != e->size || sb.st_mtim.tv_sec != e->mtime.tv_sec ||
	    sb.st_mtim.tv_nsec != e->mtime.tv_nsec)
		reload(e, acct, &sb);
	if (e->status < 0 && e->status != -ENOENT) {
		snprintf(err, errlen, "%s", e->err);
		return e->status;
	}
	*f_r = &e->file;
	return e->status;
}

size_t
account_store_map_user(const struct config *acct, char *out, size_t out_len)
{
	const char *u = acct->account.upstream_user, *a = acct->account.name;
	size_t n = 0, ulen = strlen(u);

	if (out_len < ulen + sizeof("\0account ") + strlen(a))
		return 0;
	memcpy(out, u, ulen);
	n = ulen;
	out[n++] = '\0';
	memcpy(out + n, "account ", 8);
	n += 8;
	for (; *a != '\0'; a++)
		out[n++] = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
	return n;
}
