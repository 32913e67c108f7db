/* The header hasher and the server id key (store/fingerprint.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "store/fingerprint.h"

static void
sha16(const char *p, size_t n, uint8_t out[UIDMAP_FP_LEN])
{
	unsigned char md[32];

	cr_assert_eq(EVP_Digest(p, n, md, NULL, EVP_sha256(), NULL), 1);
	memcpy(out, md, UIDMAP_FP_LEN);
}

static void
fp_whole(struct uidmap_hasher *h, const char *msg, size_t n,
	 uint8_t out[UIDMAP_FP_LEN])
{
	uidmap_hasher_reset(h);
	uidmap_hasher_feed(h, msg, n);
	uidmap_hasher_final(h, out, NULL);
}

/* The same fingerprint however the message is split. */
static void
assert_splits(const char *msg, const uint8_t want[UIDMAP_FP_LEN],
	      const uint8_t *want_old)
{
	struct uidmap_hasher *h = uidmap_hasher_new(true);
	size_t n = strlen(msg), i, j;
	uint8_t got[UIDMAP_FP_LEN], old[UIDMAP_FP_LEN];

	cr_assert_not_null(h);
	for (i = 0; i <= n; i++) {
		for (j = i; j <= n; j++) {
			uidmap_hasher_reset(h);
			uidmap_hasher_feed(h, msg, i);
			uidmap_hasher_feed(h, msg + i, j - i);
			uidmap_hasher_feed(h, msg + j, n - j);
			uidmap_hasher_final(h, got, old);
			cr_assert_arr_eq(got, want, UIDMAP_FP_LEN,
					 "split %zu %zu of \"%s\"", i, j, msg);
			if (want_old != NULL)
				cr_assert_arr_eq(old, want_old, UIDMAP_FP_LEN,
						 "old, split %zu %zu of \"%s\"",
						 i, j, msg);
		}
	}
	uidmap_hasher_reset(h);
	for (i = 0; i < n; i++)
		uidmap_hasher_feed(h, msg + i, 1);
	uidmap_hasher_final(h, got, old);
	cr_assert_arr_eq(got, want, UIDMAP_FP_LEN);
	if (want_old != NULL)
		cr_assert_arr_eq(old, want_old, UIDMAP_FP_LEN);
	uidmap_hasher_free(&h);
	cr_assert_null(h);
	uidmap_hasher_free(&h);
}

/* msg hashes as exactly the bytes of hashed, in both versions (it has no
 * field that servers rewrite). */
static void
assert_hashes_as(const char *msg, const char *hashed)
{
	uint8_t want[UIDMAP_FP_LEN];

	sha16(hashed, strlen(hashed), want);
	assert_splits(msg, want, want);
}

/* The fingerprint hashes filtered; version 1's hashes all of old. */
static void
assert_hashes_filtered(const char *msg, const char *filtered, const char *old)
{
	uint8_t want[UIDMAP_FP_LEN], want_old[UIDMAP_FP_LEN];

	sha16(filtered, strlen(filtered), want);
	sha16(old, strlen(old), want_old);
	assert_splits(msg, want, want_old);
}

Test(fingerprint, leaves_out_what_servers_rewrite)
{
	assert_hashes_filtered(
		"From: a\r\nStatus: RO\r\nX-UID: 7\r\nSubject: b\r\n\r\nbody",
		"From: a\r\nSubject: b\r\n\r\n",
		"From: a\r\nStatus: RO\r\nX-UID: 7\r\nSubject: b\r\n\r\n");
	/* Case, continuation lines, and names that only start alike. */
	assert_hashes_filtered(
		"x-imapbase: 1 2\n  3\nX-Statusx: k\nContent-Length: 4\n\nabcd",
		"X-Statusx: k\r\n\r\n",
		"x-imapbase: 1 2\r\n  3\r\nX-Statusx: k\r\nContent-Length: 4\r\n"
		"\r\n");
	/* A continuation of a kept field stays; a line without a colon
	 * stays. */
	assert_hashes_filtered(
		"Subject: a\n b\nX-Keywords: $x\n\tmore\nno colon here\n\n",
		"Subject: a\r\n b\r\nno colon here\r\n\r\n",
		"Subject: a\r\n b\r\nX-Keywords: $x\r\n\tmore\r\nno colon here"
		"\r\n\r\n");
	/* A long field name is never mistaken for a short one. */
	assert_hashes_filtered(
		"X-A-Very-Long-Field-Name-Indeed: v\nLines: 3\n\n",
		"X-A-Very-Long-Field-Name-Indeed: v\r\n\r\n",
		"X-A-Very-Long-Field-Name-Indeed: v\r\nLines: 3\r\n\r\n");
}

Test(fingerprint, header_block)
{
	const char *hdr = "From: a@example.com\r\nSubject: hi\r\n\r\n";

	assert_hashes_as("From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
			 "\r\nmore\r\n", hdr);
	assert_hashes_as("From: a@example.com\nSubject: hi\n\nbody\n", hdr);
	assert_hashes_as("From: a@example.com\nSubject: hi\n\r\nbody\n", hdr);
	assert_hashes_as("From: a@example.com\r\nSubject: hi\r\n\nbody", hdr);
	assert_hashes_as("From: a@example.com\nSubject: hi\r\n\r\n", hdr);
	assert_hashes_as("From: a@example.com\r\nSubject: hi\r\n\r\nother "
			 "body\r\n", hdr);
}

Test(fingerprint, edges)
{
	/* No empty line: everything fed, normalised. */
	assert_hashes_as("From: a\r\nSubject: b", "From: a\r\nSubject: b");
	assert_hashes_as("From: a\nSubject: b\n", "From: a\r\nSubject: b\r\n");
	/* An empty header block. */
	assert_hashes_as("\r\nbody\r\n\r\n", "\r\n");
	assert_hashes_as("\nbody", "\r\n");
	assert_hashes_as("", "");
	/* A lone CR is an ordinary byte. */
	assert_hashes_as("A\rB\n\nbody", "A\rB\r\n\r\n");
	assert_hashes_as("A\r\r\n\r\nbody", "A\r\r\n\r\n");
	assert_hashes_as("A: b\n\r \r\n\r\nbody", "A: b\r\n\r \r\n\r\n");
	assert_hashes_as("A\r", "A\r");
	assert_hashes_as("A\n\r", "A\r\n\r");
}

Test(fingerprint, without_version_1)
{
	static const char msg[] = "From: a\r\nStatus: RO\r\n\r\nbody";
	struct uidmap_hasher *both = uidmap_hasher_new(true);
	struct uidmap_hasher *one = uidmap_hasher_new(false);
	uint8_t a[UIDMAP_FP_LEN], b[UIDMAP_FP_LEN], old[UIDMAP_FP_LEN];
	static const uint8_t zero[UIDMAP_FP_LEN];

	cr_assert_not_null(both);
	cr_assert_not_null(one);
	fp_whole(both, msg, strlen(msg), a);
	uidmap_hasher_reset(one);
	uidmap_hasher_feed(one, msg, strlen(msg));
	uidmap_hasher_final(one, b, old);
	/* The fingerprint is the same; version 1's is not computed. */
	cr_assert_arr_eq(a, b, UIDMAP_FP_LEN);
	cr_assert_arr_eq(old, zero, UIDMAP_FP_LEN);
	uidmap_hasher_free(&both);
	uidmap_hasher_free(&one);
}

Test(fingerprint, distinguishes_headers)
{
	struct uidmap_hasher *h = uidmap_hasher_new(true);
	uint8_t a[UIDMAP_FP_LEN], b[UIDMAP_FP_LEN], c[UIDMAP_FP_LEN];
	const char *m1 = "Message-ID: <1@x>\r\n\r\nbody";
	const char *m2 = "Message-ID: <2@x>\r\n\r\nbody";

	cr_assert_not_null(h);
	fp_whole(h, m1, strlen(m1), a);
	fp_whole(h, m2, strlen(m2), b);
	fp_whole(h, m1, strlen(m1), c);
	cr_assert(memcmp(a, b, UIDMAP_FP_LEN) != 0);
	cr_assert_arr_eq(a, c, UIDMAP_FP_LEN);
	uidmap_hasher_free(&h);
}

Test(fingerprint, oid_hash)
{
	static const char id[] = "M6d99ac3275bb4e";
	uint8_t want[UIDMAP_FP_LEN], got[UIDMAP_FP_LEN], other[UIDMAP_FP_LEN];
	uint8_t untouched[UIDMAP_FP_LEN];

	sha16(id, strlen(id), want);
	cr_assert_eq(uidmap_oid_hash(id, strlen(id), got), 0);
	cr_assert_arr_eq(got, want, UIDMAP_FP_LEN);
	cr_assert_eq(uidmap_oid_hash(id, strlen(id) - 1, other), 0);
	cr_assert(memcmp(got, other, UIDMAP_FP_LEN) != 0);
	/* An empty id is no id, and leaves the key alone. */
	memset(untouched, 0xa5, sizeof(untouched));
	memcpy(got, untouched, sizeof(got));
	cr_assert_eq(uidmap_oid_hash("", 0, got), -EINVAL);
	cr_assert_arr_eq(got, untouched, UIDMAP_FP_LEN);
}
