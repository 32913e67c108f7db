/* Account files (accounts/account_file.h), their keys
 * (accounts/account_keys.h) and the primitives under them
 * (accounts/account_crypto.h): known vectors, the format's round trip,
 * every kind of damage refused with its reason, wrap and unwrap,
 * revocation. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accounts/account_crypto.h"
#include "accounts/account_file.h"
#include "accounts/account_keys.h"
#include "util/base64.h"
#include "util/log.h"

/* Cheap costs for tests that run scrypt many times; the file format
 * accepts nothing cheaper than log N 10. */
static const struct account_kdf cheap = { 10, 8, 1 };

static size_t
unhex(const char *hex, uint8_t *out)
{
	size_t n = 0;

	for (; hex[0] != '\0' && hex[1] != '\0'; hex += 2) {
		unsigned v;

		cr_assert_eq(sscanf(hex, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
	}
	return n;
}

static void
assert_hex(const uint8_t *got, size_t n, const char *hex)
{
	uint8_t want[256];

	cr_assert_eq(unhex(hex, want), n);
	cr_assert(memcmp(got, want, n) == 0, "bytes differ from %s", hex);
}

/* --- primitives: known vectors --- */

/* RFC 7914 §12 (the fourth vector needs 1 GiB: beyond our bound). */
Test(account_crypto, scrypt_rfc7914_vectors)
{
	static const struct {
		const char *pass, *salt;
		struct account_kdf kdf;
		const char *hex;
	} v[] = {
		{ "", "", { 4, 1, 1 },
		  "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede2"
		  "1442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c"
		  "38d18906" },
		{ "password", "NaCl", { 10, 8, 16 },
		  "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b37"
		  "31622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdf"
		  "a2cc0640" },
		{ "pleaseletmein", "SodiumChloride", { 14, 8, 1 },
		  "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545d"
		  "a1f2d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b"
		  "45575887" },
	};
	uint8_t out[64];
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		cr_assert_eq(account_scrypt(v[i].pass, strlen(v[i].pass),
					    v[i].salt, strlen(v[i].salt),
					    &v[i].kdf, out, sizeof(out)),
			     0, "vector %zu", i + 1);
		assert_hex(out, sizeof(out), v[i].hex);
	}
}

Test(account_crypto, scrypt_cost_bounds)
{
	struct account_kdf k;
	uint8_t out[32];

	k = (struct account_kdf){ 23, 1, 1 };
	cr_assert_eq(account_scrypt("a", 1, "b", 1, &k, out, 32), -EINVAL);
	k = (struct account_kdf){ 20, 8, 1 };	/* 1 GiB */
	cr_assert_eq(account_kdf_check(&k), -EINVAL);
	cr_assert_eq(account_scrypt("a", 1, "b", 1, &k, out, 32), -EINVAL);
	k = (struct account_kdf){ 18, 8, 1 };	/* 256 MiB: the bound */
	cr_assert_eq(account_kdf_check(&k), 0);
	k = (struct account_kdf){ 10, 0, 1 };
	cr_assert_eq(account_kdf_check(&k), -EINVAL);
	k = (struct account_kdf){ 10, 1, 0 };
	cr_assert_eq(account_kdf_check(&k), -EINVAL);
	k = (struct account_kdf){ 10, 1, 17 };
	cr_assert_eq(account_kdf_check(&k), -EINVAL);
	k = (struct account_kdf)ACCOUNT_KDF_DEFAULT;
	cr_assert_eq(account_kdf_check(&k), 0);
}

/* RFC 5869 A.1. */
Test(account_crypto, hkdf_rfc5869_vector)
{
	uint8_t ikm[22], salt[13], info[10], out[42];
	size_t i;

	memset(ikm, 0x0b, sizeof(ikm));
	for (i = 0; i < sizeof(salt); i++)
		salt[i] = (uint8_t)i;
	for (i = 0; i < sizeof(info); i++)
		info[i] = (uint8_t)(0xf0 + i);
	cr_assert_eq(account_hkdf(ikm, sizeof(ikm), salt, sizeof(salt), info,
				  sizeof(info), out, sizeof(out)), 0);
	assert_hex(out, sizeof(out),
		   "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ec"
		   "c4c5bf34007208d5b887185865");
}

/* The GCM specification's test case 16 (AES-256, 60 bytes, 20 of AAD). */
Test(account_crypto, aes_256_gcm_vector)
{
	uint8_t key[32], iv[12], pt[60], aad[20], ct[76], back[60];

	unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f946730"
	      "8308", key);
	unhex("cafebabefacedbaddecaf888", iv);
	unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a31"
	      "8a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
	      pt);
	unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad);
	cr_assert_eq(account_seal(key, iv, aad, sizeof(aad), pt, sizeof(pt),
				  ct), 0);
	assert_hex(ct, sizeof(ct),
		   "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd25"
		   "55d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9"
		   "f662"
		   "76fc6ece0f4e1768cddf8853bb2d551b");
	cr_assert_eq(account_open(key, iv, aad, sizeof(aad), ct, sizeof(ct),
				  back), 0);
	cr_assert(memcmp(back, pt, sizeof(pt)) == 0);
}

Test(account_crypto, gcm_refuses_any_change)
{
	uint8_t key[32] = { 1 }, nonce[12] = { 2 }, ct[16 + 5], back[5];
	uint8_t bad[16 + 5], zero[5] = { 0 };
	size_t i;

	cr_assert_eq(account_seal(key, nonce, "aad", 3, "hello", 5, ct), 0);
	for (i = 0; i < sizeof(ct) * 8; i++) {
		memcpy(bad, ct, sizeof(ct));
		bad[i / 8] ^= (uint8_t)(1 << (i % 8));
		memset(back, 0xaa, sizeof(back));
		cr_assert_eq(account_open(key, nonce, "aad", 3, bad,
					  sizeof(bad), back), -EBADMSG,
			     "bit %zu", i);
		cr_assert(memcmp(back, zero, sizeof(back)) == 0,
			  "plaintext not wiped");
	}
	cr_assert_eq(account_open(key, nonce, "aae", 3, ct, sizeof(ct), back),
		     -EBADMSG);
	cr_assert_eq(account_open(key, nonce, "aa", 2, ct, sizeof(ct), back),
		     -EBADMSG);
	key[31] ^= 1;
	cr_assert_eq(account_open(key, nonce, "aad", 3, ct, sizeof(ct), back),
		     -EBADMSG);
	key[31] ^= 1;
	nonce[11] ^= 1;
	cr_assert_eq(account_open(key, nonce, "aad", 3, ct, sizeof(ct), back),
		     -EBADMSG);
	cr_assert_eq(account_open(key, nonce, "aad", 3, ct, 15, back),
		     -EINVAL);
}

Test(account_crypto, random_differs)
{
	uint8_t a[32], b[32];

	cr_assert_eq(account_random(a, sizeof(a)), 0);
	cr_assert_eq(account_random(b, sizeof(b)), 0);
	cr_assert(memcmp(a, b, sizeof(a)) != 0);
}

/* --- keys: wrap, unwrap, revoke --- */

static void
make_account(struct account_file *f, uint8_t key[32])
{
	account_file_init(f, "office-scanner");
	cr_assert_eq(account_keys_new(key), 0);
	cr_assert_eq(account_keys_set_device(f, "scanner", "scan-pw-1", 9, key,
					     &cheap, 1767225600), 0);
	cr_assert_eq(account_keys_set_device(f, "printer", "print pw \"2\"", 12,
					     key, &cheap, 1767225601), 0);
	cr_assert_eq(account_keys_seal_secret(f, key, "app-password", 12), 0);
}

static void
assert_unlocks(const struct account_file *f, const char *pw,
	       const uint8_t key[32], size_t device)
{
	uint8_t got[32];
	size_t dev = 99;

	cr_assert_eq(account_keys_unlock(f, pw, strlen(pw), got, &dev), 0,
		     "password \"%s\"", pw);
	cr_assert(memcmp(got, key, 32) == 0);
	cr_assert_eq(dev, device);
}

static void
assert_secret(const struct account_file *f, const char *pw, const char *want)
{
	uint8_t key[32];
	struct buf s;

	buf_init_secret(&s, ACCOUNT_SECRET_MAX);
	cr_assert_eq(account_keys_unlock(f, pw, strlen(pw), key, NULL), 0);
	cr_assert_eq(account_keys_open_secret(f, key, &s), 0);
	cr_assert_eq(s.len, strlen(want));
	cr_assert(memcmp(s.data, want, s.len) == 0);
	buf_free(&s);
}

Test(account_keys, each_device_unlocks_the_same_key)
{
	struct account_file f;
	uint8_t key[32], got[32];

	make_account(&f, key);
	cr_assert_eq(f.n_devices, 2);
	assert_unlocks(&f, "scan-pw-1", key, 0);
	assert_unlocks(&f, "print pw \"2\"", key, 1);
	assert_secret(&f, "scan-pw-1", "app-password");
	assert_secret(&f, "print pw \"2\"", "app-password");
	cr_assert_eq(account_keys_unlock(&f, "scan-pw-2", 9, got, NULL),
		     -EACCES);
	cr_assert_eq(account_keys_unlock(&f, "scan-pw-1", 8, got, NULL),
		     -EACCES);
	cr_assert_eq(account_keys_unlock(&f, "", 0, got, NULL), -EACCES);
	/* The salts differ: the same password gives another verifier. */
	cr_assert(memcmp(f.devices[0].salt, f.devices[1].salt, 16) != 0);
}

Test(account_keys, a_password_change_keeps_the_others)
{
	struct account_file f;
	uint8_t key[32], got[32];

	make_account(&f, key);
	cr_assert_eq(account_keys_set_device(&f, "SCANNER", "new-scan-pw", 11,
					     key, &cheap, 1767300000), 0);
	cr_assert_eq(f.n_devices, 2);
	cr_assert_str_eq(f.devices[0].label, "SCANNER");
	cr_assert_eq(f.devices[0].created, 1767300000);
	cr_assert_eq(account_keys_unlock(&f, "scan-pw-1", 9, got, NULL),
		     -EACCES);
	assert_unlocks(&f, "new-scan-pw", key, 0);
	assert_secret(&f, "print pw \"2\"", "app-password");
}

Test(account_keys, revoking_one_device_leaves_the_others)
{
	struct account_file f;
	uint8_t key[32], got[32];

	make_account(&f, key);
	cr_assert_eq(account_keys_revoke(&f, "Scanner"), 0);
	cr_assert_eq(f.n_devices, 1);
	cr_assert_str_eq(f.devices[0].label, "printer");
	cr_assert_eq(account_keys_unlock(&f, "scan-pw-1", 9, got, NULL),
		     -EACCES);
	assert_secret(&f, "print pw \"2\"", "app-password");
	cr_assert_eq(account_keys_revoke(&f, "scanner"), -ENOENT);
	/* The last one takes the account key, and so the secret, along. */
	cr_assert_eq(account_keys_revoke(&f, "printer"), 1);
	cr_assert_eq(f.n_devices, 0);
	cr_assert_not(f.has_upstream);
	cr_assert_eq(account_keys_unlock(&f, "print pw \"2\"", 12, got, NULL),
		     -EACCES);
	cr_assert_eq(account_keys_open_secret(&f, key, NULL), -ENOENT);
}

/* A wrapped key is bound to its device and account: moved, it does not
 * open, though the verifier (which binds nothing) still matches. */
Test(account_keys, wrapped_keys_and_secrets_are_bound)
{
	struct account_file f, g;
	uint8_t key[32], got[32];
	struct buf s;

	make_account(&f, key);
	g = f;
	snprintf(g.devices[0].label, sizeof(g.devices[0].label), "copier");
	cr_assert_eq(account_keys_unlock(&g, "scan-pw-1", 9, got, NULL),
		     -EBADMSG);
	g = f;
	snprintf(g.name, sizeof(g.name), "other");
	cr_assert_eq(account_keys_unlock(&g, "scan-pw-1", 9, got, NULL),
		     -EBADMSG);
	/* Case does not count, in names as in labels. */
	g = f;
	snprintf(g.name, sizeof(g.name), "Office-Scanner");
	assert_unlocks(&g, "scan-pw-1", key, 0);
	/* The secret is sealed for this account. */
	buf_init_secret(&s, ACCOUNT_SECRET_MAX);
	g = f;
	snprintf(g.name, sizeof(g.name), "other");
	cr_assert_eq(account_keys_open_secret(&g, key, &s), -EBADMSG);
	key[0] ^= 1;
	cr_assert_eq(account_keys_open_secret(&f, key, &s), -EBADMSG);
	cr_assert_eq(s.len, 0);
	buf_free(&s);
}

Test(account_keys, limits)
{
	struct account_file f;
	uint8_t key[32] = { 7 };
	char label[8], big[ACCOUNT_SECRET_MAX + 1];
	int i;

	account_file_init(&f, "a");
	for (i = 0; i < ACCOUNT_DEVICES_MAX; i++) {
		snprintf(label, sizeof(label), "d%d", i);
		cr_assert_eq(account_keys_set_device(&f, label, "pw", 2, key,
						     &cheap, 1), 0);
	}
	cr_assert_eq(account_keys_set_device(&f, "one-more", "pw", 2, key,
					     &cheap, 1), -ENOSPC);
	/* Replacing one is still fine when full. */
	cr_assert_eq(account_keys_set_device(&f, "d3", "pw2", 3, key, &cheap,
					     2), 0);
	cr_assert_eq(account_keys_set_device(&f, "bad/label", "pw", 2, key,
					     &cheap, 1), -EINVAL);
	cr_assert_eq(account_keys_set_device(&f, "d0", "", 0, key, &cheap, 1),
		     -EINVAL);
	memset(big, 'x', sizeof(big));
	cr_assert_eq(account_keys_seal_secret(&f, key, big, sizeof(big)),
		     -EINVAL);
	cr_assert_eq(account_keys_seal_secret(&f, key, big, 0), -EINVAL);
	cr_assert_eq(account_keys_seal_secret(&f, key, big, sizeof(big) - 1),
		     0);
	cr_assert_eq(f.up_len, ACCOUNT_SECRET_MAX + ACCOUNT_TAG_LEN);
}

Test(account_keys, dummy_fails)
{
	cr_assert_eq(account_keys_dummy("x", 1), -EACCES);
}

/* --- the file format --- */

static char *
render(const struct account_file *f)
{
	struct buf b;
	char *s;

	buf_init(&b, ACCOUNT_FILE_MAX);
	cr_assert_eq(account_file_render(f, &b), 0);
	s = strndup(b.data, b.len);
	buf_free(&b);
	return s;
}

static int
parse(const char *text, struct account_file *f, char *why)
{
	return account_file_parse(text, strlen(text), "office-scanner", f, why,
				  ACCOUNT_WHY_MAX);
}

Test(account_file, render_parse_round_trip)
{
	struct account_file f, g;
	uint8_t key[32];
	char why[ACCOUNT_WHY_MAX] = "";
	char *a, *b;

	make_account(&f, key);
	a = render(&f);
	cr_assert_eq(parse(a, &g, why), 0, "%s\n%s", why, a);
	cr_assert(memcmp(&f, &g, sizeof(f)) == 0);
	b = render(&g);
	cr_assert_str_eq(a, b);
	cr_assert(strncmp(a, "popbridge-account 1\naccount office-scanner\n"
			     "device scanner 1767225600 scrypt 10 8 1 ",
			  strlen("popbridge-account 1\naccount office-scanner\n"
				 "device scanner 1767225600 scrypt 10 8 1 ")) ==
		  0, "%s", a);
	cr_assert(strstr(a, "\nupstream ") != NULL);
	/* Nothing in it reads as the secret or a password. */
	cr_assert_null(strstr(a, "app-password"));
	cr_assert_null(strstr(a, "scan-pw"));
	assert_unlocks(&g, "scan-pw-1", key, 0);
	assert_secret(&g, "print pw \"2\"", "app-password");
	free(a);
	free(b);

	/* No device, no secret: two lines. */
	account_file_init(&f, "office-scanner");
	a = render(&f);
	cr_assert_str_eq(a, "popbridge-account 1\naccount office-scanner\n");
	cr_assert_eq(parse(a, &g, why), 0, "%s", why);
	cr_assert_eq(g.n_devices, 0);
	free(a);
}

/* A file written by hand from the format's description reads. */
Test(account_file, golden)
{
	static const char text[] =
		"popbridge-account 1\n"
		"account Office-Scanner\n"
		"device scanner 0 scrypt 15 8 1 AAAAAAAAAAAAAAAAAAAAAA== "
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= AAAAAAAAAAAAAAAA "
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		"AAAA\n"
		"upstream AAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAAAAAAAAA=\n";
	struct account_file f;
	char why[ACCOUNT_WHY_MAX] = "";

	cr_assert_eq(parse(text, &f, why), 0, "%s", why);
	cr_assert_str_eq(f.name, "Office-Scanner");
	cr_assert_eq(f.n_devices, 1);
	cr_assert_str_eq(f.devices[0].label, "scanner");
	cr_assert_eq(f.devices[0].kdf.log_n, 15);
	cr_assert(f.has_upstream);
	cr_assert_eq(f.up_len, 17);
	cr_assert_not_null(account_file_device(&f, "SCANNER"));
	cr_assert_null(account_file_device(&f, "scan"));
}

/* Replaces the first occurrence of from in text by to (a new string). */
static char *
edit(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	char *out;

	cr_assert_not_null(at, "\"%s\" not in the file", from);
	out = malloc(strlen(text) - strlen(from) + strlen(to) + 1);
	memcpy(out, text, (size_t)(at - text));
	strcpy(out + (at - text), to);
	strcat(out, at + strlen(from));
	return out;
}

/* The text of the device line of f's first device, without "device ". */
static const char *
fields_of(const char *text, int n)
{
	const char *p = strstr(text, "\ndevice ");
	int i;

	cr_assert_not_null(p);
	p += 8;
	for (i = 0; i < n; i++)
		p = strchr(p, ' ') + 1;
	return p;
}

static char *
field_copy(const char *p)
{
	return strndup(p, strcspn(p, " \n"));
}

struct damage {
	char *text;
	int code;
	const char *why;
};

Test(account_file, damage_refused_with_its_reason)
{
	struct account_file f, g;
	uint8_t key[32];
	char *good, *salt, *ver, *nonce, *wrapped;
	char why[ACCOUNT_WHY_MAX];
	struct damage cases[64];
	size_t n = 0, i;

	make_account(&f, key);
	good = render(&f);
	salt = field_copy(fields_of(good, 6));
	ver = field_copy(fields_of(good, 7));
	nonce = field_copy(fields_of(good, 8));
	wrapped = field_copy(fields_of(good, 9));
#define CASE(t, c, w) cases[n++] = (struct damage){ (t), (c), (w) }
#define BAD(t, w) CASE((t), -EBADMSG, (w))
	BAD(strdup(""), "empty file");
	BAD(strdup("popbridge-account 1\n"), "no account line");
	BAD(strdup("popbridge-account 1\naccount office-scanner"),
	    "line 2: no line end (expected every line to end with LF: a cut "
	    "file?)");
	BAD(edit(good, "popbridge-account 1", "popbridge-acount 1"),
	    "line 1: not a popbridge account file (expected "
	    "\"popbridge-account 1\")");
	BAD(strdup("#!/bin/sh\n"), "line 1: not a popbridge account file "
	    "(expected \"popbridge-account 1\")");
	CASE(edit(good, "popbridge-account 1", "popbridge-account 2"),
	     -EPROTONOSUPPORT,
	     "line 1: version 2 (this popbridge reads version 1)");
	BAD(edit(good, "popbridge-account 1", "popbridge-account 01"),
	    "line 1: bad version (expected a number up to 4294967295)");
	BAD(edit(good, "popbridge-account 1", "popbridge-account  1"),
	    "line 1: empty field (expected one space between fields)");
	BAD(edit(good, "account office-scanner\n", "account other\n"),
	    "line 2: the file of account \"other\", not \"office-scanner\"");
	BAD(edit(good, "account office-scanner\n", "account o/s\n"),
	    "line 2: bad account name (expected 1-32 letters, digits, '.', "
	    "'_' or '-')");
	BAD(edit(good, "account office-scanner\n", "acount office-scanner\n"),
	    "line 2: expected \"account NAME\"");
	BAD(edit(good, "account office-scanner\n", "account office-scanner\r\n"),
	    "line 2: CR at the end of the line (expected LF only)");
	BAD(edit(good, "\nupstream ", "\nupstream  "),
	    "line 5: empty field (expected one space between fields)");
	BAD(edit(good, "device printer", "devices printer"),
	    "line 4: unknown record \"devices\" (expected device or upstream)");
	BAD(edit(good, "device printer", "device printer printer"),
	    "line 4: device: 12 fields (expected 11: device LABEL CREATED "
	    "scrypt LOG_N R P SALT VERIFIER NONCE WRAPPED)");
	BAD(edit(good, " 1767225601 ", " "),
	    "line 4: device: 10 fields (expected 11: device LABEL CREATED "
	    "scrypt LOG_N R P SALT VERIFIER NONCE WRAPPED)");
	BAD(edit(good, "device printer", "device Scanner"),
	    "line 4: device \"Scanner\" listed twice");
	BAD(edit(good, "device printer", "device -printer"),
	    "line 4: bad device label (expected 1-32 letters, digits, '.', "
	    "'_' or '-')");
	BAD(edit(good, "1767225600", "01767225600"),
	    "line 3: bad creation time (expected a number up to "
	    "253402300799)");
	BAD(edit(good, "1767225600", "253402300800"),
	    "line 3: bad creation time (expected a number up to "
	    "253402300799)");
	BAD(edit(good, "1767225600", "-1"),
	    "line 3: bad creation time (expected a number up to "
	    "253402300799)");
	BAD(edit(good, "scrypt 10 8 1", "argon2id 10 8 1"),
	    "line 3: unknown key derivation \"argon2id\" (expected scrypt)");
	BAD(edit(good, "scrypt 10 8 1", "scrypt 9 8 1"),
	    "line 3: scrypt cost out of bounds (expected log N 10-22 and at "
	    "most 256 MiB)");
	BAD(edit(good, "scrypt 10 8 1", "scrypt 23 8 1"),
	    "line 3: bad scrypt log N (expected a number up to 22)");
	BAD(edit(good, "scrypt 10 8 1", "scrypt 22 8 1"),
	    "line 3: scrypt cost out of bounds (expected log N 10-22 and at "
	    "most 256 MiB)");
	BAD(edit(good, "scrypt 10 8 1", "scrypt 10 0 1"),
	    "line 3: scrypt cost out of bounds (expected log N 10-22 and at "
	    "most 256 MiB)");
	BAD(edit(good, "scrypt 10 8 1", "scrypt 10 8 17"),
	    "line 3: bad scrypt p (expected a number up to 16)");
	BAD(edit(good, salt, "AAAA"),
	    "line 3: bad salt (expected 16 bytes in base64)");
	BAD(edit(good, salt, "!AAAAAAAAAAAAAAAAAAAAA=="),
	    "line 3: bad salt (expected 16 bytes in base64)");
	/* Non-canonical: the last character's unused bits set. */
	BAD(edit(good, salt, "AAAAAAAAAAAAAAAAAAAAAB=="),
	    "line 3: bad salt (expected 16 bytes in base64)");
	BAD(edit(good, salt, "AAAAAAAAAAAAAAAAAAAAAA"),
	    "line 3: bad salt (expected 16 bytes in base64)");
	BAD(edit(good, ver, "AAAA"),
	    "line 3: bad verifier (expected 32 bytes in base64)");
	BAD(edit(good, nonce, "AAAAAAAAAAAAAAAAAAAA"),
	    "line 3: bad nonce (expected 12 bytes in base64)");
	BAD(edit(good, wrapped, "AAAA"),
	    "line 3: bad wrapped key (expected 48 bytes in base64)");
	BAD(edit(good, "\nupstream ", "\nupstream AAAA "),
	    "line 5: upstream: 4 fields (expected 3: upstream NONCE "
	    "CIPHERTEXT)");
	BAD(edit(good, "\nupstream ", "\nupstream AAAA"),
	    "line 5: bad nonce (expected 12 bytes in base64)");
	{
		char *two = malloc(strlen(good) * 2);
		const char *up = strstr(good, "\nupstream ");

		sprintf(two, "%s%s", good, up + 1);
		BAD(two, "line 6: a second upstream line");
	}
	BAD(edit(good, "device scanner", "upstream x"),
	    "line 3: upstream: 11 fields (expected 3: upstream NONCE "
	    "CIPHERTEXT)");
	for (i = 0; i < n; i++) {
		why[0] = '\0';
		cr_assert_eq(parse(cases[i].text, &g, why), cases[i].code,
			     "case %zu accepted or wrong code:\n%s", i,
			     cases[i].text);
		cr_assert_str_eq(why, cases[i].why, "case %zu: got \"%s\"", i,
				 why);
		free(cases[i].text);
	}
	free(salt);
	free(ver);
	free(nonce);
	free(wrapped);
	free(good);
#undef BAD
#undef CASE
}

/* What the line checks above leave out: order, counts, sizes, bytes. */
Test(account_file, structure_refused)
{
	struct account_file f, g;
	uint8_t key[32];
	char why[ACCOUNT_WHY_MAX];
	char *good, *t, *up, *dev;
	struct buf b;
	int i;

	make_account(&f, key);
	good = render(&f);
	up = strstr(good, "\nupstream ") + 1;
	dev = strstr(good, "\ndevice printer") + 1;

	/* A device after the upstream line. */
	t = malloc(strlen(good) * 2);
	sprintf(t, "%s%.*s", good, (int)(up - dev), dev);
	cr_assert_eq(parse(t, &g, why), -EBADMSG);
	cr_assert_str_eq(why, "line 6: device after the upstream line");
	/* An upstream line with no device before it. */
	sprintf(t, "popbridge-account 1\naccount office-scanner\n%s", up);
	cr_assert_eq(parse(t, &g, why), -EBADMSG);
	cr_assert_str_eq(why, "line 3: an upstream secret without a device "
			      "(expected device lines first)");
	/* A NUL byte. */
	cr_assert_eq(account_file_parse("popbridge-account 1\naccount o\0\n",
					31, "o", &g, why, sizeof(why)),
		     -EBADMSG);
	cr_assert_str_eq(why, "line 2: NUL byte");
	/* A ciphertext of a tag alone, and one over the maximum. */
	sprintf(t, "%.*supstream AAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAAAAAAAA==\n",
		(int)(up - good), good);
	cr_assert_eq(parse(t, &g, why), -EBADMSG);
	cr_assert_str_eq(why, "line 5: bad ciphertext (expected 17 to 4112 "
			      "bytes in base64)");
	free(t);
	buf_init(&b, ACCOUNT_FILE_MAX);
	buf_appendf(&b, "%.*supstream AAAAAAAAAAAAAAAA ", (int)(up - good),
		    good);
	{
		uint8_t big[ACCOUNT_SECRET_MAX + ACCOUNT_TAG_LEN + 1] = { 0 };

		base64_encode(&b, big, sizeof(big));
	}
	buf_append(&b, "\n", 2);
	cr_assert_eq(parse(b.data, &g, why), -EBADMSG);
	cr_assert_str_eq(why, "line 5: bad ciphertext (expected 17 to 4112 "
			      "bytes in base64)");
	buf_free(&b);
	/* Seventeen devices. */
	buf_init(&b, ACCOUNT_FILE_MAX);
	buf_append_str(&b, "popbridge-account 1\naccount office-scanner\n");
	for (i = 0; i < 17; i++)
		buf_appendf(&b, "device d%d %.*s", i,
			    (int)(strchr(dev, '\n') + 1 - strchr(dev + 7, ' ') - 1),
			    strchr(dev + 7, ' ') + 1);
	buf_append(&b, "", 1);
	cr_assert_eq(parse(b.data, &g, why), -EBADMSG);
	cr_assert_str_eq(why, "line 19: more than 16 devices");
	buf_free(&b);
	free(good);
}

/* Every cut of a good file is refused, except at a line end, where what
 * is read is a good file's beginning: a torn write cannot pass for a
 * whole file (safe_file never leaves one; this is the next line of
 * defence). */
Test(account_file, every_truncation)
{
	struct account_file f, g;
	uint8_t key[32];
	char why[ACCOUNT_WHY_MAX];
	char *good;
	size_t len, i;
	int r;

	make_account(&f, key);
	good = render(&f);
	len = strlen(good);
	for (i = 0; i < len; i++) {
		r = account_file_parse(good, i, "office-scanner", &g, why,
				       sizeof(why));
		if (i >= 2 && good[i - 1] == '\n' &&
		    memchr(good + strlen("popbridge-account 1\n"), '\n',
			   i - strlen("popbridge-account 1\n")) != NULL) {
			cr_assert_eq(r, 0, "cut at %zu: %s", i, why);
			cr_assert(g.n_devices <= f.n_devices);
		} else {
			cr_assert_eq(r, -EBADMSG, "cut at %zu accepted", i);
			cr_assert(why[0] != '\0');
		}
	}
	free(good);
}

/* A change of any byte is refused by the parser, or leaves a file whose
 * password check fails or still gives the right key and secret: never a
 * wrong one. */
Test(account_file, every_byte_changed, .timeout = 120)
{
	struct account_file f, g;
	uint8_t key[32], got[32];
	char why[ACCOUNT_WHY_MAX];
	char *good, *t;
	size_t len, i;
	struct buf s;
	int r;

	log_set_level(LOG_ERROR);
	make_account(&f, key);
	good = render(&f);
	len = strlen(good);
	t = malloc(len + 1);
	buf_init_secret(&s, ACCOUNT_SECRET_MAX);
	for (i = 0; i < len; i++) {
		memcpy(t, good, len + 1);
		t[i] = t[i] == 'A' ? 'B' : 'A';
		r = account_file_parse(t, len, "office-scanner", &g, why,
				       sizeof(why));
		if (r < 0)
			continue;
		r = account_keys_unlock(&g, "scan-pw-1", 9, got, NULL);
		cr_assert(r == 0 || r == -EACCES || r == -EBADMSG,
			  "byte %zu: %d", i, r);
		if (r < 0)
			continue;
		cr_assert(memcmp(got, key, 32) == 0, "byte %zu: other key", i);
		buf_wipe(&s);
		r = account_keys_open_secret(&g, got, &s);
		cr_assert(r == 0 || r == -EBADMSG, "byte %zu", i);
		if (r == 0)
			cr_assert(s.len == 12 &&
				  memcmp(s.data, "app-password", 12) == 0,
				  "byte %zu: other secret", i);
	}
	buf_free(&s);
	free(t);
	free(good);
}

/* --- files on disk --- */

Test(account_file, load_and_save)
{
	char dir[] = "/tmp/account-file-test-XXXXXX", path[128], cmd[160];
	char err[512] = "";
	struct safe_file_dir d = { .fd = -1 };
	struct account_file f, g;
	uint8_t key[32];
	struct stat st;
	FILE *w;

	log_set_level(LOG_ERROR);
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(safe_file_open_dir(&d, dir, err, sizeof(err)), 0);
	cr_assert_eq(account_file_load(&d, "Office-Scanner", &g, err,
				       sizeof(err)), -ENOENT);
	cr_assert_eq(g.n_devices, 0);
	cr_assert_str_eq(g.name, "Office-Scanner");
	make_account(&f, key);
	cr_assert_eq(account_file_save(&d, &f, err, sizeof(err)), 0, "%s", err);
	snprintf(path, sizeof(path), "%s/account-office-scanner", dir);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(account_file_load(&d, "OFFICE-scanner", &g, err,
				       sizeof(err)), 0, "%s", err);
	cr_assert(memcmp(&f, &g, sizeof(f)) == 0);
	/* Damage is named with the file. */
	w = fopen(path, "a");
	fputs("junk\n", w);
	fclose(w);
	cr_assert_eq(account_file_load(&d, "office-scanner", &g, err,
				       sizeof(err)), -EBADMSG);
	snprintf(cmd, sizeof(cmd), "%s/account-office-scanner: line 6: "
		 "unknown record \"junk\" (expected device or upstream)", dir);
	cr_assert_str_eq(err, cmd);
	cr_assert_eq(g.n_devices, 0);
	safe_file_close_dir(&d, NULL, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

Test(account_file, names)
{
	char name[ACCOUNT_FILE_NAME_MAX];

	account_file_name("Office-Scanner", name);
	cr_assert_str_eq(name, "account-office-scanner");
	cr_assert(account_file_name_ok("a"));
	cr_assert(account_file_name_ok("A.b_c-9"));
	cr_assert(account_file_name_ok("0123456789abcdef0123456789ABCDEF"));
	cr_assert_not(account_file_name_ok(""));
	cr_assert_not(account_file_name_ok("0123456789abcdef0123456789ABCDEFx"));
	cr_assert_not(account_file_name_ok(".a"));
	cr_assert_not(account_file_name_ok("a/b"));
	cr_assert_not(account_file_name_ok("a b"));
	cr_assert_not(account_file_name_ok("é"));
}
