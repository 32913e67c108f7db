/* An account's file: parse (strict: anything unexpected is damage),
 * render, its name, and load and save over store/safe_file. */
#include "accounts/account_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/base64.h"
#include "util/error.h"

/* Fields a line is split into at most: more than a device line has, so
 * that a line with too many says how many. */
#define FIELDS_MAX 16
/* Year 9999: a creation time beyond is damage, not a date. */
#define CREATED_MAX 253402300799ull

void
account_file_init(struct account_file *f, const char *name)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
}

bool
account_file_name_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') ||
			     (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');

		if (i == CONFIG_ACCOUNT_NAME_MAX)
			return false;
		if (!alnum && (i == 0 || (ch != '.' && ch != '_' && ch != '-')))
			return false;
	}
	return i > 0;
}

const struct account_device *
account_file_device(const struct account_file *f, const char *label)
{
	size_t i;

	for (i = 0; i < f->n_devices; i++) {
		if (strcasecmp(f->devices[i].label, label) == 0)
			return &f->devices[i];
	}
	return NULL;
}

void
account_file_name(const char *account, char name_r[ACCOUNT_FILE_NAME_MAX])
{
	size_t i, n = strlen("account-");

	memcpy(name_r, "account-", n);
	for (i = 0; account[i] != '\0' && n + 1 < ACCOUNT_FILE_NAME_MAX; i++) {
		char ch = account[i];

		name_r[n++] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	name_r[n] = '\0';
}

/* --- parsing --- */

struct field {
	const char *p;
	size_t len;
};

struct rd {
	char *why;
	size_t whylen;
	unsigned line;
	struct buf scratch;	/* base64 decoding */
};

__attribute__((format(printf, 2, 3))) static int
bad(struct rd *r, const char *fmt, ...)
{
	char msg[ACCOUNT_WHY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->line > 0)
		snprintf(r->why, r->whylen, "line %u: %s", r->line, msg);
	else
		snprintf(r->why, r->whylen, "%s", msg);
	return -EBADMSG;
}

static bool
field_is(const struct field *f, const char *s)
{
	return f->len == strlen(s) && memcmp(f->p, s, f->len) == 0;
}

/* Splits a line (without its LF) at single spaces into at most max
 * fields; -EBADMSG for an empty field (two spaces, a leading or trailing
 * one) or too many. */
static int
split(struct rd *r, const char *line, size_t len, struct field *fields,
      size_t max, size_t *n_r)
{
	size_t n = 0, start = 0, i;

	for (i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (i == start)
			return bad(r, "empty field (expected one space between "
				      "fields)");
		if (n == max)
			return bad(r, "too many fields");
		fields[n].p = line + start;
		fields[n].len = i - start;
		n++;
		start = i + 1;
	}
	*n_r = n;
	return 0;
}

/* A decimal number without sign or leading zero, up to max. */
static int
number(struct rd *r, const struct field *f, uint64_t max, const char *what,
       uint64_t *v_r)
{
	if ((f->len > 1 && f->p[0] == '0') ||
	    buf_parse_u64(f->p, f->len, max, v_r) < 0)
		return bad(r, "bad %s (expected a number up to %llu)", what,
			   (unsigned long long)max);
	return 0;
}

/* Exactly n bytes in canonical base64 (decoding and encoding again gives
 * the same text), or, with n_max, up to n_max bytes (*n_r says how many). */
static int
bytes(struct rd *r, const struct field *f, const char *what, size_t n,
      size_t n_max, void *out, size_t *n_r)
{
	size_t got;
	int ok;

	buf_reset(&r->scratch);
	ok = base64_decode(&r->scratch, f->p, f->len) == 0;
	got = r->scratch.len;
	if (ok && (n_max ? got < n || got > n_max : got != n))
		ok = 0;
	if (ok) {
		memcpy(out, r->scratch.data, got);
		buf_reset(&r->scratch);
		ok = base64_encode(&r->scratch, out, got) == 0 &&
		     r->scratch.len == f->len &&
		     memcmp(r->scratch.data, f->p, f->len) == 0;
	}
	if (!ok) {
		if (n_max)
			return bad(r, "bad %s (expected %zu to %zu bytes in "
				      "base64)", what, n, n_max);
		return bad(r, "bad %s (expected %zu bytes in base64)", what, n);
	}
	if (n_r != NULL)
		*n_r = got;
	return 0;
}

/* The text of a name field into dst, checked. */
static int
name_field(struct rd *r, const struct field *f, const char *what, char *dst)
{
	if (f->len > CONFIG_ACCOUNT_NAME_MAX)
		return bad(r, "bad %s (expected 1-%d letters, digits, '.', "
			      "'_' or '-')", what, CONFIG_ACCOUNT_NAME_MAX);
	memcpy(dst, f->p, f->len);
	dst[f->len] = '\0';
	if (!account_file_name_ok(dst))
		return bad(r, "bad %s (expected 1-%d letters, digits, '.', "
			      "'_' or '-')", what, CONFIG_ACCOUNT_NAME_MAX);
	return 0;
}

static int
device_line(struct rd *r, struct account_file *f, const struct field *fl,
	    size_t n)
{
	struct account_device *d;
	uint64_t v;
	int e;

	if (n != 11)
		return bad(r, "device: %zu fields (expected 11: device LABEL "
			      "CREATED scrypt LOG_N R P SALT VERIFIER NONCE "
			      "WRAPPED)", n);
	if (f->n_devices == ACCOUNT_DEVICES_MAX)
		return bad(r, "more than %d devices", ACCOUNT_DEVICES_MAX);
	d = &f->devices[f->n_devices];
	memset(d, 0, sizeof(*d));
	if ((e = name_field(r, &fl[1], "device label", d->label)) < 0)
		return e;
	if (account_file_device(f, d->label) != NULL)
		return bad(r, "device \"%s\" listed twice", d->label);
	if ((e = number(r, &fl[2], CREATED_MAX, "creation time",
			&d->created)) < 0)
		return e;
	if (!field_is(&fl[3], "scrypt"))
		return bad(r, "unknown key derivation \"%.*s\" (expected "
			      "scrypt)", (int)(fl[3].len > 20 ? 20 : fl[3].len),
			   fl[3].p);
	if ((e = number(r, &fl[4], ACCOUNT_KDF_LOG_N_MAX, "scrypt log N",
			&v)) < 0)
		return e;
	d->kdf.log_n = (unsigned)v;
	if ((e = number(r, &fl[5], ACCOUNT_KDF_R_MAX, "scrypt r", &v)) < 0)
		return e;
	d->kdf.r = (unsigned)v;
	if ((e = number(r, &fl[6], ACCOUNT_KDF_P_MAX, "scrypt p", &v)) < 0)
		return e;
	d->kdf.p = (unsigned)v;
	/* A cost the daemon would refuse to pay is refused here, before
	 * any login tries it; a weak one is refused as well: the file is
	 * only ever written with the default. */
	if (d->kdf.log_n < 10 || account_kdf_check(&d->kdf) < 0)
		return bad(r, "scrypt cost out of bounds (expected log N 10-%d "
			      "and at most %u MiB)", ACCOUNT_KDF_LOG_N_MAX,
			   ACCOUNT_KDF_MEM_MAX >> 20);
	if ((e = bytes(r, &fl[7], "salt", ACCOUNT_SALT_LEN, 0, d->salt,
		       NULL)) < 0 ||
	    (e = bytes(r, &fl[8], "verifier", ACCOUNT_VERIFIER_LEN, 0,
		       d->verifier, NULL)) < 0 ||
	    (e = bytes(r, &fl[9], "nonce", ACCOUNT_NONCE_LEN, 0, d->nonce,
		       NULL)) < 0 ||
	    (e = bytes(r, &fl[10], "wrapped key", ACCOUNT_WRAPPED_LEN, 0,
		       d->wrapped, NULL)) < 0)
		return e;
	f->n_devices++;
	return 0;
}

static int
upstream_line(struct rd *r, struct account_file *f, const struct field *fl,
	      size_t n)
{
	int e;

	if (n != 3)
		return bad(r, "upstream: %zu fields (expected 3: upstream "
			      "NONCE CIPHERTEXT)", n);
	if (f->has_upstream)
		return bad(r, "a second upstream line");
	if (f->n_devices == 0)
		return bad(r, "an upstream secret without a device (expected "
			      "device lines first)");
	if ((e = bytes(r, &fl[1], "nonce", ACCOUNT_NONCE_LEN, 0, f->up_nonce,
		       NULL)) < 0 ||
	    (e = bytes(r, &fl[2], "ciphertext", ACCOUNT_TAG_LEN + 1,
		       ACCOUNT_TAG_LEN + ACCOUNT_SECRET_MAX, f->up_ct,
		       &f->up_len)) < 0)
		return e;
	f->has_upstream = true;
	return 0;
}

static int
parse_line(struct rd *r, struct account_file *f, const char *account,
	   const char *line, size_t len)
{
	struct field fl[FIELDS_MAX];
	uint64_t version;
	size_t n = 0;
	int e;

	if (memchr(line, '\0', len) != NULL)
		return bad(r, "NUL byte");
	if (len > 0 && line[len - 1] == '\r')
		return bad(r, "CR at the end of the line (expected LF only)");
	if ((e = split(r, line, len, fl, FIELDS_MAX, &n)) < 0)
		return e;
	if (r->line == 1) {
		if (n != 2 || !field_is(&fl[0], "popbridge-account"))
			return bad(r, "not a popbridge account file (expected "
				      "\"popbridge-account %d\")",
				   ACCOUNT_FILE_VERSION);
		if (number(r, &fl[1], UINT32_MAX, "version", &version) < 0)
			return -EBADMSG;
		if (version != ACCOUNT_FILE_VERSION) {
			bad(r, "version %llu (this popbridge reads version %d)",
			    (unsigned long long)version, ACCOUNT_FILE_VERSION);
			return -EPROTONOSUPPORT;
		}
		return 0;
	}
	if (r->line == 2) {
		if (n != 2 || !field_is(&fl[0], "account"))
			return bad(r, "expected \"account NAME\"");
		if ((e = name_field(r, &fl[1], "account name", f->name)) < 0)
			return e;
		if (strcasecmp(f->name, account) != 0)
			return bad(r, "the file of account \"%s\", not \"%s\"",
				   f->name, account);
		return 0;
	}
	if (field_is(&fl[0], "device")) {
		if (f->has_upstream)
			return bad(r, "device after the upstream line");
		return device_line(r, f, fl, n);
	}
	if (field_is(&fl[0], "upstream"))
		return upstream_line(r, f, fl, n);
	return bad(r, "unknown record \"%.*s\" (expected device or upstream)",
		   (int)(fl[0].len > 20 ? 20 : fl[0].len), fl[0].p);
}

int
account_file_parse(const char *text, size_t len, const char *account,
		   struct account_file *f, char *why, size_t whylen)
{
	struct rd r = { .why = why, .whylen = whylen };
	const char *p = text, *end = text + len, *nl;
	int e = 0;

	account_file_init(f, account);
	buf_init(&r.scratch, ACCOUNT_FILE_MAX);
	while (p < end && e == 0) {
		r.line++;
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			e = bad(&r, "no line end (expected every line to end "
				    "with LF: a cut file?)");
			break;
		}
		e = parse_line(&r, f, account, p, (size_t)(nl - p));
		p = nl + 1;
	}
	if (e == 0 && r.line < 2) {
		const char *what = len == 0 ? "empty file" : "no account line";

		r.line = 0;
		e = bad(&r, "%s", what);
	}
	buf_free(&r.scratch);
	return e;
}

/* --- rendering --- */

static int
b64(struct buf *out, const void *p, size_t n)
{
	int e = buf_append(out, " ", 1);

	return e < 0 ? e : base64_encode(out, p, n);
}

int
account_file_render(const struct account_file *f, struct buf *out)
{
	size_t i;
	int e;

	e = buf_appendf(out, "popbridge-account %d\naccount %s\n",
			ACCOUNT_FILE_VERSION, f->name);
	for (i = 0; i < f->n_devices && e == 0; i++) {
		const struct account_device *d = &f->devices[i];

		e = buf_appendf(out, "device %s %llu scrypt %u %u %u",
				d->label, (unsigned long long)d->created,
				d->kdf.log_n, d->kdf.r, d->kdf.p);
		if (e == 0)
			e = b64(out, d->salt, sizeof(d->salt));
		if (e == 0)
			e = b64(out, d->verifier, sizeof(d->verifier));
		if (e == 0)
			e = b64(out, d->nonce, sizeof(d->nonce));
		if (e == 0)
			e = b64(out, d->wrapped, sizeof(d->wrapped));
		if (e == 0)
			e = buf_append(out, "\n", 1);
	}
	if (e == 0 && f->has_upstream) {
		e = buf_append_str(out, "upstream");
		if (e == 0)
			e = b64(out, f->up_nonce, sizeof(f->up_nonce));
		if (e == 0)
			e = b64(out, f->up_ct, f->up_len);
		if (e == 0)
			e = buf_append(out, "\n", 1);
	}
	return e;
}

/* --- files --- */

int
account_file_load(const struct safe_file_dir *d, const char *account,
		  struct account_file *f, char *err, size_t errlen)
{
	char name[ACCOUNT_FILE_NAME_MAX], why[ACCOUNT_WHY_MAX];
	char *data = NULL;
	size_t len;
	int e;

	account_file_init(f, account);
	account_file_name(account, name);
	e = safe_file_read(d, name, ACCOUNT_FILE_MAX, &data, &len, err,
			   errlen);
	if (e < 0)
		return e;
	e = account_file_parse(data, len, account, f, why, sizeof(why));
	free(data);
	if (e < 0) {
		snprintf(err, errlen, "%s/%s: %s", d->path, name, why);
		account_file_init(f, account);
	}
	return e;
}

int
account_file_save(const struct safe_file_dir *d,
		  const struct account_file *f, char *err, size_t errlen)
{
	char name[ACCOUNT_FILE_NAME_MAX];
	struct buf text;
	int e;

	account_file_name(f->name, name);
	buf_init(&text, ACCOUNT_FILE_MAX);
	e = account_file_render(f, &text);
	if (e < 0)
		snprintf(err, errlen, "%s/%s: %s", d->path, name, err_text(e));
	else
		e = safe_file_write(d, name, text.data, text.len, err, errlen);
	buf_free(&text);
	return e;
}
