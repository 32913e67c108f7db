/* The header hasher (fingerprints that survive a folder rebuild) and the key
 * for a server's own message id; see store/fingerprint.h. */
#include "store/fingerprint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define SHA256_LEN 32

/* Normalised bytes are hashed in chunks of this size. */
#define HASH_CHUNK 512
/* Longest header field name looked at (longer ones are never skipped). */
#define FIELD_NAME_MAX 24

/*
 * Header fields that servers and local mail programs rewrite while the
 * message stays the same (mbox status and UID bookkeeping, mailer flags):
 * a fingerprint leaves them out, so that it survives the rewrite that
 * comes with a rebuild (GNU Mailutils, UW-IMAP, Mutt, Thunderbird).
 */
static const char *const volatile_fields[] = {
	"status", "x-status", "x-uid", "x-imap", "x-imapbase", "x-keywords",
	"x-mozilla-status", "x-mozilla-status2", "x-mozilla-keys",
	"content-length", "lines", "x-dovecot-uid", "x-label",
};

enum field_state {
	FIELD_NAME = 0,		/* reading a line's first bytes */
	FIELD_KEEP,		/* the line is hashed */
	FIELD_SKIP,		/* the line belongs to a volatile field */
};

struct uidmap_hasher {
	EVP_MD_CTX *ctx;	/* every header line (version 1) */
	EVP_MD_CTX *fctx;	/* without the volatile fields */
	EVP_MD *md;
	bool cr;		/* a CR seen, not yet known to end a line */
	bool bol;		/* at the beginning of a line */
	bool done;		/* the empty line was hashed */
	bool failed;		/* OpenSSL failed, or final without reset */
	bool old_too;		/* version 1's digest is wanted too */
	enum field_state field;
	bool skip_field;	/* the current field is volatile */
	char name[FIELD_NAME_MAX + 1];
	size_t name_len;
	char fout[HASH_CHUNK];	/* filtered bytes not yet digested */
	size_t fo;
};

void
uidmap_hasher_reset(struct uidmap_hasher *h)
{
	h->cr = false;
	h->bol = true;
	h->done = false;
	h->field = FIELD_NAME;
	h->skip_field = false;
	h->name_len = 0;
	h->fo = 0;
	h->failed = EVP_DigestInit_ex(h->fctx, h->md, NULL) != 1 ||
		    (h->old_too &&
		     EVP_DigestInit_ex(h->ctx, h->md, NULL) != 1);
}

struct uidmap_hasher *
uidmap_hasher_new(bool old_too)
{
	struct uidmap_hasher *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->old_too = old_too;
	h->ctx = EVP_MD_CTX_new();
	h->fctx = EVP_MD_CTX_new();
	h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (h->ctx == NULL || h->fctx == NULL || h->md == NULL) {
		uidmap_hasher_free(&h);
		return NULL;
	}
	uidmap_hasher_reset(h);
	if (h->failed)
		uidmap_hasher_free(&h);
	return h;
}

void
uidmap_hasher_free(struct uidmap_hasher **hp)
{
	struct uidmap_hasher *h = *hp;

	if (h == NULL)
		return;
	EVP_MD_CTX_free(h->ctx);
	EVP_MD_CTX_free(h->fctx);
	EVP_MD_free(h->md);
	free(h);
	*hp = NULL;
}

static void
update(struct uidmap_hasher *h, EVP_MD_CTX *ctx, const char *p, size_t n)
{
	if (n > 0 && !h->failed && EVP_DigestUpdate(ctx, p, n) != 1)
		h->failed = true;
}

/* Filtered bytes, digested a chunk at a time rather than byte by byte. */
static void
fput(struct uidmap_hasher *h, const char *p, size_t n)
{
	if (h->fo + n > sizeof(h->fout)) {
		update(h, h->fctx, h->fout, h->fo);
		h->fo = 0;
	}
	memcpy(h->fout + h->fo, p, n);
	h->fo += n;
}

static bool
volatile_field(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(volatile_fields) / sizeof(volatile_fields[0]);
	     i++) {
		if (strlen(volatile_fields[i]) == len &&
		    strncasecmp(volatile_fields[i], name, len) == 0)
			return true;
	}
	return false;
}

/* The line's first bytes decided it: hashed from its start, or not. */
static void
field_decide(struct uidmap_hasher *h, bool skip)
{
	h->field = skip ? FIELD_SKIP : FIELD_KEEP;
	if (!skip)
		fput(h, h->name, h->name_len);
	h->name_len = 0;
}

/* One normalised byte of a line other than its end, for the filtered
 * digest. A line starting with a blank continues the field before it. */
static void
field_byte(struct uidmap_hasher *h, char c)
{
	if (h->field == FIELD_NAME) {
		if (h->name_len == 0 && (c == ' ' || c == '\t')) {
			h->field = h->skip_field ? FIELD_SKIP : FIELD_KEEP;
		} else if (c == ':') {
			h->skip_field = volatile_field(h->name, h->name_len);
			field_decide(h, h->skip_field);
		} else if (h->name_len == FIELD_NAME_MAX) {
			h->skip_field = false;
			field_decide(h, false);
		} else {
			h->name[h->name_len++] = c;
			return;
		}
	}
	if (h->field == FIELD_KEEP)
		fput(h, &c, 1);
}

static void
field_line_end(struct uidmap_hasher *h)
{
	if (h->field == FIELD_NAME && h->name_len > 0) {
		/* A line without a colon: not a field, kept. */
		h->skip_field = false;
		field_decide(h, false);
	}
	if (h->field != FIELD_SKIP)
		fput(h, "\r\n", 2);
	h->field = FIELD_NAME;
}

static void
line_end(struct uidmap_hasher *h)
{
	if (h->bol)
		h->done = true;
	h->bol = true;
	field_line_end(h);
}

/* One input byte; writes at most 3 normalised bytes to out. */
static size_t
step(struct uidmap_hasher *h, char c, char *out)
{
	size_t n = 0;

	if (h->cr) {
		h->cr = false;
		if (c == '\n') {
			memcpy(out, "\r\n", 2);
			line_end(h);
			return 2;
		}
		/* A lone CR is an ordinary byte. */
		out[n++] = '\r';
		field_byte(h, '\r');
		h->bol = false;
	}
	if (c == '\r') {
		h->cr = true;
	} else if (c == '\n') {
		memcpy(out + n, "\r\n", 2);
		n += 2;
		line_end(h);
	} else {
		out[n++] = c;
		field_byte(h, c);
		h->bol = false;
	}
	return n;
}

void
uidmap_hasher_feed(struct uidmap_hasher *h, const char *p, size_t n)
{
	char out[HASH_CHUNK];
	size_t i, o = 0;

	for (i = 0; i < n && !h->done; i++) {
		if (o > sizeof(out) - 3) {
			if (h->old_too)
				update(h, h->ctx, out, o);
			o = 0;
		}
		o += step(h, p[i], out + o);
	}
	if (h->old_too)
		update(h, h->ctx, out, o);
}

static bool
digest_final(struct uidmap_hasher *h, EVP_MD_CTX *ctx,
	     uint8_t fp_r[UIDMAP_FP_LEN])
{
	uint8_t md[SHA256_LEN];

	if (h->failed || EVP_DigestFinal_ex(ctx, md, NULL) != 1) {
		h->failed = true;
		return false;
	}
	memcpy(fp_r, md, UIDMAP_FP_LEN);
	return true;
}

void
uidmap_hasher_final(struct uidmap_hasher *h, uint8_t fp_r[UIDMAP_FP_LEN],
		    uint8_t old_fp_r[UIDMAP_FP_LEN])
{
	uint8_t old[UIDMAP_FP_LEN] = { 0 };
	bool ok;

	if (!h->done && h->cr) {
		if (h->old_too)
			update(h, h->ctx, "\r", 1);
		field_byte(h, '\r');
	}
	if (!h->done && h->field == FIELD_NAME && h->name_len > 0)
		field_decide(h, false);
	h->cr = false;
	h->done = true;
	update(h, h->fctx, h->fout, h->fo);
	h->fo = 0;
	ok = digest_final(h, h->fctx, fp_r) &&
	     (!h->old_too || digest_final(h, h->ctx, old));
	if (!ok) {
		memset(fp_r, 0, UIDMAP_FP_LEN);
		memset(old, 0, UIDMAP_FP_LEN);
	}
	if (old_fp_r != NULL)
		memcpy(old_fp_r, old, UIDMAP_FP_LEN);
	/* A second final before a reset would hash nothing. */
	h->failed = true;
}

int
uidmap_oid_hash(const char *id, size_t len, uint8_t oid_r[UIDMAP_FP_LEN])
{
	uint8_t md[SHA256_LEN];

	if (len == 0)
		return -EINVAL;
	if (EVP_Digest(id, len, md, NULL, EVP_sha256(), NULL) != 1)
		return -EIO;
	memcpy(oid_r, md, UIDMAP_FP_LEN);
	return 0;
}
