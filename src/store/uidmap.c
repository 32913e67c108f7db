#include "store/uidmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "store/safe_file.h"
#include "util/buf.h"
#include "util/error.h"

/*
 * The map file, version 2: lines ending in LF, fields separated by one
 * space, numbers in decimal without leading zeros.
 *
 *   popbridge-uidmap 2
 *   folder "INBOX" uidvalidity 1700000000 baseline 1700000000 17 entries 2
 *   17 1700000000 17 2048 er 00112233445566778899aabbccddeeff 2046 -
 *   18 1650000000 3 900 - - 0 <32 hex digits>
 *   folder "Old%20Mail" uidvalidity 5 baseline - entries 0
 *   end 2 <64 hex digits: SHA-256 of every byte before this line>
 *
 * An entry line is: uid, uidl_validity, uidl_uid, size, flags ("-", or
 * any of "h" hidden, "e" exact size, "r" retrieved, "o" old-style
 * fingerprint, in that order), fingerprint ("-" or 32 hex digits), the
 * server's size the exact size was learned against (0: unknown), and the
 * server's own identity (EMAILID or X-GM-MSGID) as 32 hex digits of its
 * SHA-256, or "-". Version 1 files (no last two fields, fingerprints over
 * every header line) are read as well: their fingerprints get "o", and an
 * exact size (learned only from a whole RETR) also means "r".
 * Entries follow their folder in ascending UID order.
 * Folder names are quoted; bytes outside 0x21-0x7e, '"' and '%' are
 * written as %XX. The end line holds the total entry count and a checksum,
 * so a truncated or damaged file is refused as a whole. Later versions
 * must keep the first line's form and the checksum of the end line, so
 * that this code tells a newer map from a damaged one.
 */
#define MAGIC "popbridge-uidmap "
#define VERSION 2
/* The oldest version still read. */
#define VERSION_MIN 1

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

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static char *
put_hex(char *w, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		*w++ = hexdigits[p[i] >> 4];
		*w++ = hexdigits[p[i] & 15];
	}
	return w;
}

static int
sha256(const void *p, size_t n, uint8_t md_r[SHA256_LEN])
{
	return EVP_Digest(p, n, md_r, NULL, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

/* ---- file name ---- */

static int
account_hash(const char *host, uint16_t port, const char *user,
	     size_t user_len, uint8_t md_r[SHA256_LEN])
{
	char portbuf[8];
	EVP_MD_CTX *ctx;
	int n, ok;

	n = snprintf(portbuf, sizeof(portbuf), "%u", (unsigned)port);
	if (n < 0 || (size_t)n >= sizeof(portbuf))
		return -1;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return -1;
	/* The NULs keep ("h1", 23, u) apart from ("h", 123, u). */
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, host, strlen(host) + 1) == 1 &&
	     EVP_DigestUpdate(ctx, portbuf, (size_t)n + 1) == 1 &&
	     EVP_DigestUpdate(ctx, user, user_len) == 1 &&
	     EVP_DigestFinal_ex(ctx, md_r, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
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
	*put_hex(name_r, md, 16) = '\0';
}

/* ---- the map in memory ---- */

static void
folder_clear(struct uidmap_folder *f)
{
	free(f->name);
	free(f->entries);
	memset(f, 0, sizeof(*f));
}

void
uidmap_free(struct uidmap **mp)
{
	struct uidmap *m = *mp;
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n_folders; i++)
		folder_clear(&m->folders[i]);
	free(m->folders);
	free(m->path);
	free(m);
	*mp = NULL;
}

static struct uidmap *
map_new(const char *dir, const char *file_name)
{
	size_t dl = strlen(dir), nl = strlen(file_name);
	bool slash = dl > 0 && dir[dl - 1] == '/';
	struct uidmap *m;

	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	/* Allocated in full so that folder pointers stay valid. */
	m->folders = calloc(UIDMAP_FOLDERS_MAX, sizeof(*m->folders));
	m->path = malloc(dl + 1 + nl + 1);
	if (m->folders == NULL || m->path == NULL) {
		uidmap_free(&m);
		return NULL;
	}
	memcpy(m->path, dir, dl);
	if (!slash)
		m->path[dl++] = '/';
	memcpy(m->path + dl, file_name, nl + 1);
	return m;
}

static struct uidmap_folder *
folder_get(struct uidmap *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->n_folders; i++) {
		if (strcmp(m->folders[i].name, name) == 0)
			return &m->folders[i];
	}
	return NULL;
}

struct uidmap_folder *
uidmap_folder(struct uidmap *m, const char *name, bool create)
{
	struct uidmap_folder *f = folder_get(m, name);

	if (f != NULL || !create || m->n_folders == UIDMAP_FOLDERS_MAX)
		return f;
	f = &m->folders[m->n_folders];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	if (f->name == NULL)
		return NULL;
	m->n_folders++;
	m->dirty = true;
	return f;
}

struct uidmap_entry *
uidmap_find(struct uidmap_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->count, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (f->entries[mid].uid == uid)
			return &f->entries[mid];
		if (f->entries[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- parsing ---- */

/* A cursor over the file; why is set by the first failure. */
struct rd {
	const char *p, *end;
	size_t line;
	const char *why;
};

static int
fail(struct rd *r, const char *why)
{
	if (r->why == NULL)
		r->why = why;
	return -1;
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
		return -1;
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
		return -1;
	*v_r = (uint32_t)v;
	return 0;
}

/* A number and the space after it. */
static int
num32_sp(struct rd *r, uint32_t *v_r)
{
	if (num32(r, v_r) < 0)
		return -1;
	return lit(r, " ", "space expected");
}

/* The value of one digit of digits ("0123456789abcdef" or upper case). */
static int
xdigit(char c, const char *digits)
{
	const char *d = c != '\0' ? memchr(digits, c, 16) : NULL;

	return d != NULL ? (int)(d - digits) : -1;
}

static int
hex(struct rd *r, uint8_t *out, size_t n)
{
	size_t i;
	int hi, lo;

	if ((size_t)(r->end - r->p) < 2 * n)
		return fail(r, "hex digits expected");
	for (i = 0; i < n; i++) {
		hi = xdigit(r->p[2 * i], hexdigits);
		lo = xdigit(r->p[2 * i + 1], hexdigits);
		if (hi < 0 || lo < 0)
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
		hi = q - s > 2 ? xdigit(s[1], HEXUPPER) : -1;
		lo = q - s > 2 ? xdigit(s[2], HEXUPPER) : -1;
		if (hi < 0 || lo < 0 || (hi | lo) == 0)
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
		return -1;
	s = r->p;
	q = memchr(s, '"', (size_t)(r->end - s));
	if (q == NULL)
		return fail(r, "unterminated folder name");
	name = malloc((size_t)(q - s) + 1);
	if (name == NULL)
		return fail(r, "out of memory");
	if (unescape(r, s, q, name) < 0) {
		free(name);
		return -1;
	}
	*name_r = name;
	r->p = q + 1;
	return 0;
}

static int
baseline(struct rd *r, struct uidmap_folder *f)
{
	if (lit(r, "baseline ", "\"baseline\" expected") < 0)
		return -1;
	if (r->p < r->end && *r->p == '-') {
		r->p++;
		return lit(r, " ", "space expected");
	}
	f->has_baseline = true;
	if (num32_sp(r, &f->baseline_validity) < 0 ||
	    num32_sp(r, &f->baseline_uidnext) < 0)
		return -1;
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
		return -1;
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
		return -1;
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
		return fail(r, "out of memory");
	f->cap = (size_t)n;
	for (i = 0; i < n; i++) {
		if (entry(r, version, &f->entries[i]) < 0)
			return -1;
		if (i > 0 && f->entries[i].uid <= f->entries[i - 1].uid)
			return fail(r, "UIDs not ascending");
		if (eol(r) < 0)
			return -1;
		f->count++;
	}
	return 0;
}

/* The folder line and its entries; the folder is m's next one. */
static int
folder(struct rd *r, uint64_t version, struct uidmap *m, uint64_t *total)
{
	struct uidmap_folder *f = &m->folders[m->n_folders];
	char *name;
	uint64_t n;

	if (lit(r, "folder ", "\"folder\" expected") < 0 ||
	    quoted_name(r, &name) < 0)
		return -1;
	if (folder_get(m, name) != NULL) {
		free(name);
		return fail(r, "folder listed twice");
	}
	memset(f, 0, sizeof(*f));
	f->name = name;
	m->n_folders++;
	if (lit(r, " uidvalidity ", "\"uidvalidity\" expected") < 0 ||
	    num32_sp(r, &f->uidvalidity) < 0 || baseline(r, f) < 0 ||
	    lit(r, "entries ", "\"entries\" expected") < 0 ||
	    num(r, UINT64_MAX, &n) < 0 || eol(r) < 0)
		return -1;
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
			return -1;
	}
	if (seen != total)
		return fail(r, "entry count differs from the end line");
	return 0;
}

/* "end <count> <checksum>" as the last line, checked against the rest. */
static int
trailer(const char *data, size_t len, size_t *body_end_r, uint64_t *total_r,
	const char **why_r)
{
	uint8_t want[SHA256_LEN], got[SHA256_LEN];
	struct rd r;
	size_t start;

	*why_r = "truncated (no end line)";
	if (data[len - 1] != '\n')
		return -1;
	for (start = len - 1; start > 0 && data[start - 1] != '\n'; start--)
		;
	r = (struct rd){ .p = data + start, .end = data + len };
	if (lit(&r, "end ", "") < 0 || num(&r, UINT64_MAX, total_r) < 0 ||
	    lit(&r, " ", "") < 0 || hex(&r, want, SHA256_LEN) < 0 ||
	    lit(&r, "\n", "") < 0 || r.p != r.end)
		return -1;
	*why_r = "cannot compute the checksum";
	if (sha256(data, start, got) < 0)
		return -1;
	*why_r = "checksum mismatch";
	if (memcmp(want, got, SHA256_LEN) != 0)
		return -1;
	*body_end_r = start;
	return 0;
}

/* The first line; 1 when it names a version other than ours. */
static int
head(struct rd *r, uint64_t *version_r)
{
	if (lit(r, MAGIC, "not a popbridge UID map") < 0 ||
	    num(r, UINT64_MAX, version_r) < 0)
		return -1;
	if (*version_r < VERSION_MIN || *version_r > VERSION)
		return 1;
	return eol(r);
}

/*
 * A newer version is refused without the word "corrupt" (callers replace
 * corrupt maps, and a downgrade must not lose one), but only when its end
 * line checks out: a damaged version digit is corruption.
 */
static int
parse(struct uidmap *m, const char *data, size_t len, char *err,
      size_t errlen)
{
	struct rd r = { .p = data, .end = data + len, .line = 1 };
	uint64_t version, total;
	const char *why;
	size_t body_end;
	int h;

	h = head(&r, &version);
	if (h < 0) {
		set_err(err, errlen, "%s is corrupt: line 1: %s", m->path,
			r.why);
		return -EBADMSG;
	}
	if (trailer(data, len, &body_end, &total, &why) < 0) {
		set_err(err, errlen, "%s is corrupt: %s", m->path, why);
		return -EBADMSG;
	}
	if (h > 0) {
		set_err(err, errlen, "%s: unsupported map version %llu "
			"(written by a newer popbridge?)", m->path,
			(unsigned long long)version);
		return -EPROTONOSUPPORT;
	}
	r.end = data + body_end;
	if (body(&r, version, m, total) < 0) {
		set_err(err, errlen, "%s is corrupt: line %zu: %s", m->path,
			r.line, r.why);
		return -EBADMSG;
	}
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
		set_err(err, errlen, "state directory %s does not exist", dir);
	else if (r < 0)
		set_err(err, errlen, "cannot open state directory %s: %s",
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
		set_err(err, errlen, "%s is corrupt: too large", m->path);
		return -EBADMSG;
	default:
		return r;	/* not the file's fault: err says why */
	}
	if (len == 0) {
		set_err(err, errlen, "%s is corrupt: empty", m->path);
		r = -EBADMSG;
	} else {
		r = parse(m, data, len, err, errlen);
	}
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
		set_err(err, errlen, "bad UID map location \"%s\", \"%s\"",
			dir, file_name);
		return -EIO;
	}
	m = map_new(dir, file_name);
	if (m == NULL) {
		set_err(err, errlen, "out of memory");
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
	if (r < 0) {
		uidmap_free(&m);
		return r == -EBADMSG || r == -EPROTONOSUPPORT ? r : -EIO;
	}
	*map_r = m;
	return 0;
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
		w = put_hex(w, e->fp, UIDMAP_FP_LEN);
	else
		*w++ = '-';
	w = buf_put_u64(put_str(w, " "), e->listed);
	*w++ = ' ';
	if (e->flags & UIDMAP_HAS_OID)
		w = put_hex(w, e->oid, UIDMAP_FP_LEN);
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

/* The whole file in one buffer, end line included. */
static int
render(const struct uidmap *m, char **data_r, size_t *len_r, char *err,
       size_t errlen)
{
	uint8_t md[SHA256_LEN];
	uint64_t total = 0;
	char *data, *w;
	size_t i, j;

	data = malloc(render_bound(m));
	if (data == NULL) {
		set_err(err, errlen, "%s: out of memory", m->path);
		return -1;
	}
	w = buf_put_u64(put_str(data, MAGIC), VERSION);
	*w++ = '\n';
	for (i = 0; i < m->n_folders; i++) {
		w = put_folder(w, &m->folders[i]);
		for (j = 0; j < m->folders[i].count; j++)
			w = put_entry(w, &m->folders[i].entries[j]);
		total += m->folders[i].count;
	}
	if (sha256(data, (size_t)(w - data), md) < 0) {
		set_err(err, errlen, "%s: cannot compute the checksum",
			m->path);
		free(data);
		return -1;
	}
	w = buf_put_u64(put_str(w, "end "), total);
	w = put_hex(put_str(w, " "), md, SHA256_LEN);
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
		set_err(err, errlen, "%s: out of memory", m->path);
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
	if (render(m, &data, &len, err, errlen) < 0)
		return -1;
	if (len > UIDMAP_FILE_MAX) {
		set_err(err, errlen, "%s: map too large (%zu bytes)", m->path,
			len);
		free(data);
		return -1;
	}
	r = write_map(m, data, len, err, errlen);
	free(data);
	if (r < 0)
		return -1;
	m->dirty = false;
	return 0;
}

/* ---- sync ---- */

static bool
ascending(const uint32_t *uids, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++) {
		if (uids[i] <= uids[i - 1])
			return false;
	}
	return true;
}

/* Room for n entries and some growth; 0 when that overflows. */
static size_t
entries_cap(size_t n)
{
	if (n > SIZE_MAX / sizeof(struct uidmap_entry) / 2)
		return 0;
	return n + n / 8 + 16;
}

static void
fresh_entry(struct uidmap_entry *e, uint32_t validity, uint32_t uid)
{
	memset(e, 0, sizeof(*e));
	e->uid = uid;
	e->uidl_validity = validity;
	e->uidl_uid = uid;
}

/* How many entries the listing keeps. */
static size_t
count_kept(const struct uidmap_folder *f, const uint32_t *uids, size_t n)
{
	size_t i = 0, j = 0, kept = 0;

	while (i < f->count && j < n) {
		if (f->entries[i].uid < uids[j]) {
			i++;
		} else if (f->entries[i].uid > uids[j]) {
			j++;
		} else {
			kept++;
			i++;
			j++;
		}
	}
	return kept;
}

/* Drops, in place, the entries whose UIDs are not listed. */
static void
prune(struct uidmap_folder *f, const uint32_t *uids, size_t n)
{
	size_t i, j = 0, w = 0;

	for (i = 0; i < f->count; i++) {
		while (j < n && uids[j] < f->entries[i].uid)
			j++;
		if (j < n && uids[j] == f->entries[i].uid)
			f->entries[w++] = f->entries[i];
	}
	f->count = w;
}

/*
 * Adds the missing entries in place, every entry being listed: from the
 * end, writes never overtake the entries still to be moved.
 */
static void
merge_backward(struct uidmap_folder *f, const uint32_t *uids, size_t n)
{
	struct uidmap_entry *e = f->entries;
	size_t i = f->count, j = n;

	while (j-- > 0) {
		if (i > 0 && e[i - 1].uid == uids[j])
			e[j] = e[--i];
		else
			fresh_entry(&e[j], f->uidvalidity, uids[j]);
	}
}

static int
grow(struct uidmap_folder *f, size_t n)
{
	struct uidmap_entry *e;
	size_t cap;

	if (n <= f->cap)
		return 0;
	cap = entries_cap(n);
	if (cap == 0)
		return -ENOMEM;
	e = realloc(f->entries, cap * sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	f->entries = e;
	f->cap = cap;
	return 0;
}

int
uidmap_sync(struct uidmap *m, struct uidmap_folder *f,
	    const uint32_t *uids, size_t n)
{
	size_t kept;
	int r = 0;

	if (!ascending(uids, n))
		return -EINVAL;
	kept = count_kept(f, uids, n);
	if (kept == f->count && kept == n)
		return 0;
	/* First, so that a failure changes nothing. */
	r = grow(f, n);
	if (r < 0)
		return r;
	if (kept < f->count)
		prune(f, uids, n);
	if (n > kept)
		merge_backward(f, uids, n);
	f->count = n;
	m->dirty = true;
	return 0;
}

/* ---- rematch ---- */

/*
 * An old entry's sort key: the fingerprint as two big-endian words, and
 * its index, which orders by UID as the entries do. 32 bytes, which qsort
 * moves directly.
 */
struct fpkey {
	uint64_t hi, lo;
	uint64_t size;
	uint32_t idx;
};

/*
 * Old entries sorted by fingerprint (and size), then UID; next[g] is where
 * the search for an unused candidate resumes in the run starting at g, so
 * every position is skipped at most once.
 */
struct fpindex {
	struct fpkey *v;
	size_t *next;
	size_t n;
	bool by_size;
};

/* What identifies a message, strongest first: the server's own id, the
 * fingerprint, the fingerprint version 1 wrote. */
enum key_kind {
	KEY_OID = 0,
	KEY_FP,
	KEY_OLD_FP,
	KEY_KINDS,
};

struct rematch {
	bool *used;		/* per old entry */
	size_t *match;		/* per current message: old index or NONE */
	struct fpindex any[KEY_KINDS], by_size[KEY_KINDS];
};

#define NONE SIZE_MAX

static bool
has_fp(const uint8_t fp[UIDMAP_FP_LEN])
{
	static const uint8_t zero[UIDMAP_FP_LEN];

	/* All zeros is what a failed hasher gives: not a fingerprint. */
	return memcmp(fp, zero, UIDMAP_FP_LEN) != 0;
}

static uint64_t
be64(const uint8_t *p)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static struct fpkey
key_of(const uint8_t fp[UIDMAP_FP_LEN], uint64_t size, size_t idx)
{
	return (struct fpkey){ .hi = be64(fp), .lo = be64(fp + 8),
			       .size = size, .idx = (uint32_t)idx };
}

#define CMP(a, b) (((a) > (b)) - ((a) < (b)))

static int
cmp_key(const struct fpkey *a, const struct fpkey *b, bool by_size)
{
	if (a->hi != b->hi)
		return CMP(a->hi, b->hi);
	if (a->lo != b->lo)
		return CMP(a->lo, b->lo);
	return by_size ? CMP(a->size, b->size) : 0;
}

static int
cmp_fp(const void *x, const void *y)
{
	const struct fpkey *a = x, *b = y;
	int c = cmp_key(a, b, false);

	return c != 0 ? c : CMP(a->idx, b->idx);
}

static int
cmp_fp_size(const void *x, const void *y)
{
	const struct fpkey *a = x, *b = y;
	int c = cmp_key(a, b, true);

	return c != 0 ? c : CMP(a->idx, b->idx);
}

/* The entry's key of that kind, or NULL. */
static const uint8_t *
entry_key(const struct uidmap_entry *e, enum key_kind kind)
{
	bool old;

	switch (kind) {
	case KEY_OID:
		return (e->flags & UIDMAP_HAS_OID) ? e->oid : NULL;
	case KEY_FP:
	case KEY_OLD_FP:
		if (!(e->flags & UIDMAP_HAS_FP) || !has_fp(e->fp))
			return NULL;
		/* Each fingerprint is compared with its own version's. */
		old = (e->flags & UIDMAP_OLD_FP) != 0;
		return old == (kind == KEY_OLD_FP) ? e->fp : NULL;
	case KEY_KINDS:
		break;
	}
	return NULL;
}

static const uint8_t *
cur_key(const struct uidmap_current *c, enum key_kind kind)
{
	switch (kind) {
	case KEY_OID:
		return c->has_oid ? c->oid : NULL;
	case KEY_FP:
		return c->has_fp && has_fp(c->fp) ? c->fp : NULL;
	case KEY_OLD_FP:
		return c->has_fp && has_fp(c->old_fp) ? c->old_fp : NULL;
	case KEY_KINDS:
		break;
	}
	return NULL;
}

static int
index_build(struct fpindex *x, const struct uidmap_folder *f, bool by_size,
	    enum key_kind kind)
{
	const uint8_t *k;
	size_t i;

	x->by_size = by_size;
	x->n = 0;
	x->v = malloc((f->count ? f->count : 1) * sizeof(*x->v));
	x->next = malloc((f->count ? f->count : 1) * sizeof(*x->next));
	if (x->v == NULL || x->next == NULL)
		return -ENOMEM;
	for (i = 0; i < f->count; i++) {
		k = entry_key(&f->entries[i], kind);
		if (k != NULL)
			x->v[x->n++] = key_of(k, f->entries[i].size, i);
	}
	for (i = 0; i < x->n; i++)
		x->next[i] = i;
	qsort(x->v, x->n, sizeof(*x->v), by_size ? cmp_fp_size : cmp_fp);
	return 0;
}

static void
index_free(struct fpindex *x)
{
	free(x->v);
	free(x->next);
}

/* The first unused old entry with that key, marked used, or NONE. */
static size_t
index_take(struct rematch *rm, struct fpindex *x, const struct fpkey *k)
{
	size_t lo = 0, hi = x->n, mid, g, p;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (cmp_key(&x->v[mid], k, x->by_size) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	g = lo;
	if (g == x->n || cmp_key(&x->v[g], k, x->by_size) != 0)
		return NONE;
	p = x->next[g];
	while (p < x->n && cmp_key(&x->v[p], k, x->by_size) == 0 &&
	       rm->used[x->v[p].idx])
		p++;
	x->next[g] = p;
	if (p == x->n || cmp_key(&x->v[p], k, x->by_size) != 0)
		return NONE;
	rm->used[x->v[p].idx] = true;
	x->next[g] = p + 1;
	return x->v[p].idx;
}

/* One kind of key: equal sizes first over all messages (not for the
 * server's id, which needs no tie-break), then any candidate, by UID. */
static void
match_kind(struct rematch *rm, const struct uidmap_current *cur, size_t n,
	   enum key_kind kind)
{
	const uint8_t *key;
	struct fpkey k;
	size_t j;

	if (kind != KEY_OID) {
		for (j = 0; j < n; j++) {
			key = cur_key(&cur[j], kind);
			if (rm->match[j] != NONE || key == NULL)
				continue;
			k = key_of(key, cur[j].size, 0);
			rm->match[j] = index_take(rm, &rm->by_size[kind], &k);
		}
	}
	for (j = 0; j < n; j++) {
		key = cur_key(&cur[j], kind);
		if (rm->match[j] != NONE || key == NULL)
			continue;
		k = key_of(key, cur[j].size, 0);
		rm->match[j] = index_take(rm, &rm->any[kind], &k);
	}
}

static size_t
match_all(struct rematch *rm, const struct uidmap_current *cur, size_t n)
{
	size_t j, matched = 0;
	int kind;

	for (j = 0; j < n; j++)
		rm->match[j] = NONE;
	for (kind = 0; kind < KEY_KINDS; kind++)
		match_kind(rm, cur, n, (enum key_kind)kind);
	for (j = 0; j < n; j++)
		matched += rm->match[j] != NONE;
	return matched;
}

static void
rematched_entry(struct uidmap *m, struct uidmap_entry *e,
		const struct uidmap_entry *old, const struct uidmap_current *c,
		uint32_t validity)
{
	if (old == NULL) {
		fresh_entry(e, validity, c->uid);
		e->size = c->size;
	} else {
		*e = *old;
		e->uid = c->uid;
		/* A rebuilt mbox rewrites headers: the size may have moved. */
		if (!uidmap_check_size(m, e, c->size))
			e->size = c->size;
	}
	/* What the current message says about itself is the newest. */
	if (cur_key(c, KEY_FP) != NULL)
		uidmap_set_fp(m, e, c->fp);
	if (c->has_oid)
		uidmap_set_oid(m, e, c->oid);
}

static void
rematch_free(struct rematch *rm)
{
	int kind;

	free(rm->used);
	free(rm->match);
	for (kind = 0; kind < KEY_KINDS; kind++) {
		index_free(&rm->any[kind]);
		index_free(&rm->by_size[kind]);
	}
}

static bool
cur_ascending(const struct uidmap_current *cur, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++) {
		if (cur[i].uid <= cur[i - 1].uid)
			return false;
	}
	return true;
}

int
uidmap_rematch(struct uidmap *m, struct uidmap_folder *f,
	       uint32_t new_validity, const struct uidmap_current *cur,
	       size_t n, size_t *matched_r)
{
	struct rematch rm = { 0 };
	struct uidmap_entry *e;
	size_t j, matched, cap;
	bool bad;
	int kind;

	if (!cur_ascending(cur, n))
		return -EINVAL;
	if (f->count > UINT32_MAX)
		return -ENOMEM;
	rm.used = calloc(f->count ? f->count : 1, sizeof(*rm.used));
	rm.match = malloc((n ? n : 1) * sizeof(*rm.match));
	cap = entries_cap(n);
	e = cap != 0 ? malloc(cap * sizeof(*e)) : NULL;
	bad = rm.used == NULL || rm.match == NULL || e == NULL;
	for (kind = 0; kind < KEY_KINDS && !bad; kind++)
		bad = index_build(&rm.any[kind], f, false, kind) < 0 ||
		      index_build(&rm.by_size[kind], f, true, kind) < 0;
	if (bad) {
		rematch_free(&rm);
		free(e);
		return -ENOMEM;
	}
	matched = match_all(&rm, cur, n);
	for (j = 0; j < n; j++)
		rematched_entry(m, &e[j], rm.match[j] == NONE ? NULL :
				&f->entries[rm.match[j]], &cur[j], new_validity);
	rematch_free(&rm);
	free(f->entries);
	f->entries = e;
	f->count = n;
	f->cap = cap;
	f->uidvalidity = new_validity;
	m->dirty = true;
	if (matched_r != NULL)
		*matched_r = matched;
	return 0;
}

/* ---- setters ---- */

void
uidmap_set_size(struct uidmap *m, struct uidmap_entry *e, uint64_t size,
		uint64_t listed)
{
	if (e->size == size && e->listed == listed &&
	    (e->flags & UIDMAP_EXACT))
		return;
	e->size = size;
	e->listed = listed;
	e->flags |= UIDMAP_EXACT;
	m->dirty = true;
}

bool
uidmap_check_size(struct uidmap *m, struct uidmap_entry *e, uint64_t listed)
{
	if (!(e->flags & UIDMAP_EXACT))
		return false;
	if (e->listed == listed)
		return true;
	if (e->listed == 0) {
		/* Learned by version 1, which kept no server size: from now on
		 * it is this one. */
		e->listed = listed;
	} else {
		e->flags &= (uint8_t)~UIDMAP_EXACT;
		e->listed = 0;
		e->size = listed;
	}
	m->dirty = true;
	return (e->flags & UIDMAP_EXACT) != 0;
}

void
uidmap_set_retrieved(struct uidmap *m, struct uidmap_entry *e)
{
	if (e->flags & UIDMAP_RETRIEVED)
		return;
	e->flags |= UIDMAP_RETRIEVED;
	m->dirty = true;
}

void
uidmap_set_oid(struct uidmap *m, struct uidmap_entry *e,
	       const uint8_t oid[UIDMAP_FP_LEN])
{
	if ((e->flags & UIDMAP_HAS_OID) &&
	    memcmp(e->oid, oid, UIDMAP_FP_LEN) == 0)
		return;
	memcpy(e->oid, oid, UIDMAP_FP_LEN);
	e->flags |= UIDMAP_HAS_OID;
	m->dirty = true;
}

void
uidmap_set_fp(struct uidmap *m, struct uidmap_entry *e,
	      const uint8_t fp[UIDMAP_FP_LEN])
{
	if ((e->flags & UIDMAP_HAS_FP) && !(e->flags & UIDMAP_OLD_FP) &&
	    memcmp(e->fp, fp, UIDMAP_FP_LEN) == 0)
		return;
	memcpy(e->fp, fp, UIDMAP_FP_LEN);
	e->flags = (uint8_t)((e->flags | UIDMAP_HAS_FP) & ~UIDMAP_OLD_FP);
	m->dirty = true;
}

void
uidmap_set_hidden(struct uidmap *m, struct uidmap_entry *e)
{
	if (e->flags & UIDMAP_HIDDEN)
		return;
	e->flags |= UIDMAP_HIDDEN;
	m->dirty = true;
}

void
uidmap_set_baseline(struct uidmap *m, struct uidmap_folder *f,
		    uint32_t validity, uint32_t uidnext)
{
	if (f->has_baseline && f->baseline_validity == validity &&
	    f->baseline_uidnext == uidnext)
		return;
	f->has_baseline = true;
	f->baseline_validity = validity;
	f->baseline_uidnext = uidnext;
	m->dirty = true;
}
