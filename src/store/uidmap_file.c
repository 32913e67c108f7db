/* The UID map's file: parsing versions 1 and 2, rendering version 2, the
 * account's file name, and uidmap_load and uidmap_save over store/safe_file. */
#include "store/uidmap_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "store/safe_file.h"
#include "store/uidmap.h"
#include "util/buf.h"
#include "util/error.h"

#define MAGIC "popbridge-uidmap "

/* Upper bounds of rendered lines, for one allocation per save. */
#define HEAD_LINE_MAX 32
#define FOLDER_LINE_MAX 128
#define ENTRY_LINE_MAX 160
#define END_LINE_MAX 128
/* "0 0 0 0 - -\n": the shortest entry line, to bound counts read. */
#define ENTRY_LINE_MIN 12
#define SHA256_LEN 32

static const char hexdigits[] = "0123456789abcdef";
#define HEXUPPER "0123456789ABCDEF"

/* 0, or -EIO when OpenSSL failed. */
static int
sha256(const void *p, size_t n, uint8_t md_r[SHA256_LEN])
{
	return EVP_Digest(p, n, md_r, NULL, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

/* ---- file name ---- */

/* SHA-256 over host, port and user: 0, -ENOMEM or -EIO (OpenSSL). */
static int
account_hash(const char *host, uint16_t port, const char *user,
	     size_t user_len, uint8_t md_r[SHA256_LEN])
{
	char portbuf[8];
	EVP_MD_CTX *ctx;
	int n, ok;

	n = snprintf(portbuf, sizeof(portbuf), "%u", (unsigned)port);
	if (n < 0 || (size_t)n >= sizeof(portbuf))
		return -EOVERFLOW;	/* cannot happen for 16 bits */
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return -ENOMEM;
	/* The NULs keep ("h1", 23, u) apart from ("h", 123, u). */
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, host, strlen(host) + 1) == 1 &&
	     EVP_DigestUpdate(ctx, portbuf, (size_t)n + 1) == 1 &&
	     EVP_DigestUpdate(ctx, user, user_len) == 1 &&
	     EVP_DigestFinal_ex(ctx, md_r, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

void
uidmap_file_name(const char *host, uint16_t port, const char *user,
		 size_t user_len, char name_r[33])
{
	uint8_t md[SHA256_LEN];

	/* An empty name, which uidmap_load refuses, never a shared one. */
	name_r[0] = '\0';
	if (account_hash(host, port, user, user_len, md) < 0)
		return;
	*buf_put_hex(name_r, md, 16) = '\0';
}

/* ---- parsing ---- */

/* A cursor over the file; code and why are set by the first failure, and
 * every function returns that code once something failed. */
struct rd {
	const char *p, *end;
	size_t line;
	int code;		/* -EBADMSG or -ENOMEM */
	const char *why;
};

static int
failed(struct rd *r, int code, const char *why)
{
	if (r->code == 0) {
		r->code = code;
		r->why = why;
	}
	return r->code;
}

/* Damage: what was expected, or what is wrong. */
static int
fail(struct rd *r, const char *why)
{
	return failed(r, -EBADMSG, why);
}

static int
no_memory(struct rd *r)
{
	return failed(r, -ENOMEM, "out of memory");
}

static int
lit(struct rd *r, const char *s, const char *why)
{
	size_t n = strlen(s);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, s, n) != 0)
		return fail(r, why);
	r->p += n;
	return 0;
}

static int
eol(struct rd *r)
{
	if (lit(r, "\n", "unexpected text at the end of a line") < 0)
		return r->code;
	r->line++;
	return 0;
}

static int
num(struct rd *r, uint64_t max, uint64_t *v_r)
{
	const char *s = r->p;

	while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
		r->p++;
	if (r->p == s)
		return fail(r, "number expected");
	if (*s == '0' && r->p - s > 1)
		return fail(r, "number with a leading zero");
	if (buf_parse_u64(s, (size_t)(r->p - s), max, v_r) < 0)
		return fail(r, "number out of range");
	return 0;
}

static int
num32(struct rd *r, uint32_t *v_r)
{
	uint64_t v;

	if (num(r, UINT32_MAX, &v) < 0)
		return r->code;
	*v_r = (uint32_t)v;
	return 0;
}

/* A number and the space after it. */
static int
num32_sp(struct rd *r, uint32_t *v_r)
{
	if (num32(r, v_r) < 0)
		return r->code;
	return lit(r, " ", "space expected");
}

/* The value of one digit of digits ("0123456789abcdef" or upper case). */
static bool
xdigit(char c, const char *digits, int *v_r)
{
	const char *d = c != '\0' ? memchr(digits, c, 16) : NULL;

	if (d == NULL)
		return false;
	*v_r = (int)(d - digits);
	return true;
}

static int
hex(struct rd *r, uint8_t *out, size_t n)
{
	size_t i;
	int hi, lo;

	if ((size_t)(r->end - r->p) < 2 * n)
		return fail(r, "hex digits expected");
	for (i = 0; i < n; i++) {
		if (!xdigit(r->p[2 * i], hexdigits, &hi) ||
		    !xdigit(r->p[2 * i + 1], hexdigits, &lo))
			return fail(r, "hex digits expected");
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	r->p += 2 * n;
	return 0;
}

static int
unescape(struct rd *r, const char *s, const char *q, char *out)
{
	int hi, lo;

	for (; s < q; s++) {
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return fail(r, "bad byte in a folder name");
		if (*s != '%') {
			*out++ = *s;
			continue;
		}
		if (q - s <= 2 || !xdigit(s[1], HEXUPPER, &hi) ||
		    !xdigit(s[2], HEXUPPER, &lo) || (hi | lo) == 0)
			return fail(r, "bad escape in a folder name");
		*out++ = (char)(hi << 4 | lo);
		s += 2;
	}
	*out = '\0';
	return 0;
}

static int
quoted_name(struct rd *r, char **name_r)
{
	const char *s, *q;
	char *name;

	if (lit(r, "\"", "folder name expected") < 0)
		return r->code;
	s = r->p;
	q = memchr(s, '"', (size_t)(r->end - s));
	if (q == NULL)
		return fail(r, "unterminated folder name");
	name = malloc((size_t)(q - s) + 1);
	if (name == NULL)
		return no_memory(r);
	if (unescape(r, s, q, name) < 0) {
		free(name);
		return r->code;
	}
	*name_r = name;
	r->p = q + 1;
	return 0;
}

static int
baseline(struct rd *r, struct uidmap_folder *f)
{
	if (lit(r, "baseline ", "\"baseline\" expected") < 0)
		return r->code;
	if (r->p < r->end && *r->p == '-') {
		r->p++;
		return lit(r, " ", "space expected");
	}
	f->has_baseline = true;
	if (num32_sp(r, &f->baseline_validity) < 0 ||
	    num32_sp(r, &f->baseline_uidnext) < 0)
		return r->code;
	return 0;
}

/* Flag letters in the order they are written. */
static const struct {
	char letter;
	uint8_t flag;
} flag_letters[] = {
	{ 'h', UIDMAP_HIDDEN },
	{ 'e', UIDMAP_EXACT },
	{ 'r', UIDMAP_RETRIEVED },
	{ 'o', UIDMAP_OLD_FP },
};
#define N_FLAG_LETTERS (sizeof(flag_letters) / sizeof(flag_letters[0]))

static int
flags(struct rd *r, uint64_t version, uint8_t *flags_r)
{
	size_t i, n = version == 1 ? 2 : N_FLAG_LETTERS;

	*flags_r = 0;
	if (r->p < r->end && *r->p == '-') {
		r->p++;
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (r->p < r->end && *r->p == flag_letters[i].letter) {
			*flags_r |= flag_letters[i].flag;
			r->p++;
		}
	}
	return *flags_r != 0 ? 0 : fail(r, "bad flags");
}

static int
fingerprint(struct rd *r, struct uidmap_entry *e)
{
	if (r->p < r->end && *r->p == '-') {
		r->p++;
		return 0;
	}
	e->flags |= UIDMAP_HAS_FP;
	return hex(r, e->fp, UIDMAP_FP_LEN);
}

static int
object_id(struct rd *r, struct uidmap_entry *e)
{
	if (r->p < r->end && *r->p == '-') {
		r->p++;
		return 0;
	}
	e->flags |= UIDMAP_HAS_OID;
	return hex(r, e->oid, UIDMAP_FP_LEN);
}

static int
entry(struct rd *r, uint64_t version, struct uidmap_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (num32_sp(r, &e->uid) < 0 || num32_sp(r, &e->uidl_validity) < 0 ||
	    num32_sp(r, &e->uidl_uid) < 0 || num(r, UINT64_MAX, &e->size) < 0 ||
	    lit(r, " ", "space expected") < 0 ||
	    flags(r, version, &e->flags) < 0 ||
	    lit(r, " ", "space expected") < 0 || fingerprint(r, e) < 0)
		return r->code;
	if (version == 1) {
		/* Version 1 hashed every header line, and learned an exact
		 * size only from a whole RETR. */
		if (e->flags & UIDMAP_HAS_FP)
			e->flags |= UIDMAP_OLD_FP;
		if (e->flags & UIDMAP_EXACT)
			e->flags |= UIDMAP_RETRIEVED;
		return 0;
	}
	if ((e->flags & UIDMAP_OLD_FP) && !(e->flags & UIDMAP_HAS_FP))
		return fail(r, "old-style flag without a fingerprint");
	if (lit(r, " ", "space expected") < 0 ||
	    num(r, UINT64_MAX, &e->listed) < 0 ||
	    lit(r, " ", "space expected") < 0 || object_id(r, e) < 0)
		return r->code;
	return 0;
}

static int
entries(struct rd *r, uint64_t version, struct uidmap_folder *f, uint64_t n)
{
	size_t i;

	if (n == 0)
		return 0;
	if (n > (uint64_t)(r->end - r->p) / ENTRY_LINE_MIN)
		return fail(r, "entry count larger than the file");
	f->entries = malloc((size_t)n * sizeof(*f->entries));
	if (f->entries == NULL)
		return no_memory(r);
	f->cap = (size_t)n;
	for (i = 0; i < n; i++) {
		if (entry(r, version, &f->entries[i]) < 0)
			return r->code;
		if (i > 0 && f->entries[i].uid <= f->entries[i - 1].uid)
			return fail(r, "UIDs not ascending");
		if (eol(r) < 0)
			return r->code;
		f->count++;
	}
	return 0;
}

/* The folder line and its entries; the folder becomes m's next one. */
static int
folder(struct rd *r, uint64_t version, struct uidmap *m, uint64_t *total)
{
	struct uidmap_folder *f;
	char *name = NULL;
	uint64_t n;

	if (lit(r, "folder ", "\"folder\" expected") < 0 ||
	    quoted_name(r, &name) < 0)
		return r->code;
	if (uidmap_folder(m, name, false) != NULL) {
		free(name);
		return fail(r, "folder listed twice");
	}
	f = uidmap_folder(m, name, true);
	free(name);
	if (f == NULL)
		return no_memory(r);
	if (lit(r, " uidvalidity ", "\"uidvalidity\" expected") < 0 ||
	    num32_sp(r, &f->uidvalidity) < 0 || baseline(r, f) < 0 ||
	    lit(r, "entries ", "\"entries\" expected") < 0 ||
	    num(r, UINT64_MAX, &n) < 0 || eol(r) < 0)
		return r->code;
	*total += n;
	return entries(r, version, f, n);
}

static int
body(struct rd *r, uint64_t version, struct uidmap *m, uint64_t total)
{
	uint64_t seen = 0;

	while (r->p < r->end) {
		if (m->n_folders == UIDMAP_FOLDERS_MAX)
			return fail(r, "too many folders");
		if (folder(r, version, m, &seen) < 0)
			return r->code;
	}
	if (seen != total)
		return fail(r, "entry count differs from the end line");
	return 0;
}

/*
 * "end <count> <checksum>" as the last line, checked against the rest:
 * 0, -EBADMSG (damaged) or -EIO (the checksum could not be computed), with
 * *why_r saying which.
 */
static int
trailer(const char *data, size_t len, size_t *body_end_r, uint64_t *total_r,
	const char **why_r)
{
	uint8_t want[SHA256_LEN], got[SHA256_LEN];
	struct rd r;
	size_t start;

	*why_r = "truncated (no end line)";
	if (data[len - 1] != '\n')
		return -EBADMSG;
	for (start = len - 1; start > 0 && data[start - 1] != '\n'; start--)
		;
	r = (struct rd){ .p = data + start, .end = data + len };
	if (lit(&r, "end ", "") < 0 || num(&r, UINT64_MAX, total_r) < 0 ||
	    lit(&r, " ", "") < 0 || hex(&r, want, SHA256_LEN) < 0 ||
	    lit(&r, "\n", "") < 0 || r.p != r.end)
		return -EBADMSG;
	*why_r = "cannot compute the checksum";
	if (sha256(data, start, got) < 0)
		return -EIO;
	*why_r = "checksum mismatch";
	if (memcmp(want, got, SHA256_LEN) != 0)
		return -EBADMSG;
	*body_end_r = start;
	return 0;
}

/* The first line; 1 when it names a version other than ours. */
static int
head(struct rd *r, uint64_t *version_r)
{
	if (lit(r, MAGIC, "not a popbridge UID map") < 0 ||
	    num(r, UINT64_MAX, version_r) < 0)
		return r->code;
	if (*version_r < UIDMAP_FILE_VERSION_MIN ||
	    *version_r > UIDMAP_FILE_VERSION)
		return 1;
	return eol(r);
}

/*
 * A newer version is refused without the word "corrupt" (callers replace
 * corrupt maps, and a downgrade must not lose one), but only when its end
 * line checks out: a damaged version digit is corruption.
 */
int
uidmap_file_parse(struct uidmap *m, const char *data, size_t len, char *err,
		  size_t errlen)
{
	struct rd r = { .p = data, .end = data + len, .line = 1 };
	uint64_t version, total;
	const char *why;
	size_t body_end;
	int h, t;

	if (len == 0) {
		err_set(err, errlen, "%s is corrupt: empty", m->path);
		return -EBADMSG;
	}
	h = head(&r, &version);
	if (h < 0) {
		err_set(err, errlen, "%s is corrupt: line 1: %s", m->path,
			r.why);
		return h;
	}
	t = trailer(data, len, &body_end, &total, &why);
	switch (t) {
	case 0:
		break;
	case -EBADMSG:
		err_set(err, errlen, "%s is corrupt: %s", m->path, why);
		return t;
	default:
		/* Not the file's fault: it is not called corrupt. */
		err_set(err, errlen, "%s: %s", m->path, why);
		return t;
	}
	if (h > 0) {
		err_set(err, errlen, "%s: unsupported map version %llu "
			"(written by a newer popbridge?)", m->path,
			(unsigned long long)version);
		return -EPROTONOSUPPORT;
	}
	r.end = data + body_end;
	switch (body(&r, version, m, total)) {
	case 0:
		break;
	case -ENOMEM:
		err_set(err, errlen, "%s: out of memory", m->path);
		return -ENOMEM;
	default:
		err_set(err, errlen, "%s is corrupt: line %zu: %s", m->path,
			r.line, r.why);
		return r.code;
	}
	m->dirty = false;
	return 0;
}

/* ---- reading and writing files ---- */

/* Opens the state directory, with messages that call it that. */
static int
open_state_dir(struct safe_file_dir *d, const char *dir, char *err,
	       size_t errlen)
{
	int r = safe_file_open_dir(d, dir, NULL, 0);

	if (r == -ENOENT)
		err_set(err, errlen, "state directory %s does not exist", dir);
	else if (r < 0)
		err_set(err, errlen, "cannot open state directory %s: %s",
			dir, err_text(r));
	return r;
}

/* Reads and parses the map's file; a missing file leaves the map empty. */
static int
read_map(struct uidmap *m, const struct safe_file_dir *d, const char *name,
	 char *err, size_t errlen)
{
	char *data;
	size_t len;
	int r;

	r = safe_file_read(d, name, UIDMAP_FILE_MAX, &data, &len, err, errlen);
	switch (r) {
	case 0:
		break;
	case -ENOENT:
		return 0;	/* a new account */
	case -EFBIG:
		err_set(err, errlen, "%s is corrupt: too large", m->path);
		return -EBADMSG;
	default:
		return r;	/* not the file's fault: err says why */
	}
	r = uidmap_file_parse(m, data, len, err, errlen);
	free(data);
	return r;
}

static bool
valid_file_name(const char *name)
{
	return name[0] != '\0' && strchr(name, '/') == NULL &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int
uidmap_load(const char *dir, const char *file_name, struct uidmap **map_r,
	    char *err, size_t errlen)
{
	struct safe_file_dir d;
	struct uidmap *m;
	int r, c;

	*map_r = NULL;
	if (dir[0] == '\0' || !valid_file_name(file_name)) {
		err_set(err, errlen, "bad UID map location \"%s\", \"%s\"",
			dir, file_name);
		return -EIO;
	}
	m = uidmap_new(dir, file_name);
	if (m == NULL) {
		err_set(err, errlen, "out of memory");
		return -EIO;
	}
	r = open_state_dir(&d, dir, err, errlen);
	if (r == 0) {
		r = read_map(m, &d, file_name, err, errlen);
		c = safe_file_close_dir(&d, r == 0 ? err : NULL,
					r == 0 ? errlen : 0);
		if (r == 0)
			r = c;
	}
	switch (r) {
	case 0:
		*map_r = m;
		return 0;
	case -EBADMSG:
	case -EPROTONOSUPPORT:
		break;
	default:
		/* Whatever is not the file's content (uidmap.h): err says
		 * what it was. */
		r = -EIO;
		break;
	}
	uidmap_free(&m);
	return r;
}

/* ---- rendering ---- */

static char *
put_str(char *w, const char *s)
{
	size_t n = strlen(s);

	memcpy(w, s, n);
	return w + n;
}

static char *
put_name(char *w, const char *name)
{
	const unsigned char *s;

	*w++ = '"';
	for (s = (const unsigned char *)name; *s != '\0'; s++) {
		if (*s < 0x21 || *s > 0x7e || *s == '"' || *s == '%') {
			*w++ = '%';
			*w++ = HEXUPPER[*s >> 4];
			*w++ = HEXUPPER[*s & 15];
		} else {
			*w++ = (char)*s;
		}
	}
	*w++ = '"';
	return w;
}

static char *
put_folder(char *w, const struct uidmap_folder *f)
{
	w = put_name(put_str(w, "folder "), f->name);
	w = buf_put_u64(put_str(w, " uidvalidity "), f->uidvalidity);
	if (f->has_baseline) {
		w = buf_put_u64(put_str(w, " baseline "), f->baseline_validity);
		w = buf_put_u64(put_str(w, " "), f->baseline_uidnext);
	} else {
		w = put_str(w, " baseline -");
	}
	w = buf_put_u64(put_str(w, " entries "), f->count);
	*w++ = '\n';
	return w;
}

static char *
put_entry(char *w, const struct uidmap_entry *e)
{
	char *flags_at;
	size_t i;

	w = buf_put_u64(w, e->uid);
	w = buf_put_u64(put_str(w, " "), e->uidl_validity);
	w = buf_put_u64(put_str(w, " "), e->uidl_uid);
	w = buf_put_u64(put_str(w, " "), e->size);
	*w++ = ' ';
	flags_at = w;
	for (i = 0; i < N_FLAG_LETTERS; i++) {
		if (e->flags & flag_letters[i].flag)
			*w++ = flag_letters[i].letter;
	}
	if (w == flags_at)
		*w++ = '-';
	*w++ = ' ';
	if (e->flags & UIDMAP_HAS_FP)
		w = buf_put_hex(w, e->fp, UIDMAP_FP_LEN);
	else
		*w++ = '-';
	w = buf_put_u64(put_str(w, " "), e->listed);
	*w++ = ' ';
	if (e->flags & UIDMAP_HAS_OID)
		w = buf_put_hex(w, e->oid, UIDMAP_FP_LEN);
	else
		*w++ = '-';
	*w++ = '\n';
	return w;
}

static size_t
render_bound(const struct uidmap *m)
{
	size_t n = HEAD_LINE_MAX + END_LINE_MAX, i;

	for (i = 0; i < m->n_folders; i++) {
		n += FOLDER_LINE_MAX + 3 * strlen(m->folders[i].name);
		n += m->folders[i].count * ENTRY_LINE_MAX;
	}
	return n;
}

int
uidmap_file_render(const struct uidmap *m, char **data_r, size_t *len_r,
		   char *err, size_t errlen)
{
	uint8_t md[SHA256_LEN];
	uint64_t total = 0;
	char *data, *w;
	size_t i, j;

	data = malloc(render_bound(m));
	if (data == NULL) {
		err_set(err, errlen, "%s: out of memory", m->path);
		return -ENOMEM;
	}
	w = buf_put_u64(put_str(data, MAGIC), UIDMAP_FILE_VERSION);
	*w++ = '\n';
	for (i = 0; i < m->n_folders; i++) {
		w = put_folder(w, &m->folders[i]);
		for (j = 0; j < m->folders[i].count; j++)
			w = put_entry(w, &m->folders[i].entries[j]);
		total += m->folders[i].count;
	}
	if (sha256(data, (size_t)(w - data), md) < 0) {
		err_set(err, errlen, "%s: cannot compute the checksum",
			m->path);
		free(data);
		return -EIO;
	}
	w = buf_put_u64(put_str(w, "end "), total);
	w = buf_put_hex(put_str(w, " "), md, SHA256_LEN);
	*w++ = '\n';
	*data_r = data;
	*len_r = (size_t)(w - data);
	return 0;
}

static int
write_map(const struct uidmap *m, const char *data, size_t len, char *err,
	  size_t errlen)
{
	const char *slash = strrchr(m->path, '/');
	size_t dl = slash > m->path ? (size_t)(slash - m->path) : 1;
	struct safe_file_dir d;
	char *dir;
	int r, c;

	dir = strndup(m->path, dl);
	if (dir == NULL) {
		err_set(err, errlen, "%s: out of memory", m->path);
		return -ENOMEM;
	}
	r = open_state_dir(&d, dir, err, errlen);
	if (r == 0) {
		r = safe_file_write(&d, slash + 1, data, len, err, errlen);
		c = safe_file_close_dir(&d, r == 0 ? err : NULL,
					r == 0 ? errlen : 0);
		if (r == 0)
			r = c;
	}
	free(dir);
	return r;
}

int
uidmap_save(struct uidmap *m, char *err, size_t errlen)
{
	char *data;
	size_t len;
	int r;

	if (!m->dirty)
		return 0;
	r = uidmap_file_render(m, &data, &len, err, errlen);
	if (r < 0)
		return r;
	if (len > UIDMAP_FILE_MAX) {
		/* uidmap_load would refuse it. */
		err_set(err, errlen, "%s: map too large (%zu bytes)", m->path,
			len);
		free(data);
		return -EFBIG;
	}
	r = write_map(m, data, len, err, errlen);
	free(data);
	if (r < 0)
		return r;
	m->dirty = false;
	return 0;
}
