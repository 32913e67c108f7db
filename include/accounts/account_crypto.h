#ifndef POPBRIDGE_ACCOUNT_CRYPTO_H
#define POPBRIDGE_ACCOUNT_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/*
 * The primitives of the account files, all OpenSSL 3 (EVP_KDF, EVP_CIPHER,
 * RAND_bytes), none written here: scrypt (RFC 7914) for device passwords,
 * HKDF-SHA256 (RFC 5869) to split its output, AES-256-GCM for the wrapped
 * account keys and the upstream secret. Safe to call from any thread (the
 * daemon runs scrypt on the libuv threadpool). Every function returns 0 or
 * a negative errno code (util/error.h); outputs are unspecified on failure
 * and callers wipe them either way.
 */

#define ACCOUNT_KEY_LEN 32	/* AES-256 keys: account keys, KEKs */
#define ACCOUNT_NONCE_LEN 12	/* GCM's 96-bit nonce (random) */
#define ACCOUNT_TAG_LEN 16	/* GCM's full tag */

/* scrypt's cost: N = 2^log_n, r, p. */
struct account_kdf {
	unsigned log_n, r, p;
};

/*
 * The cost new device passwords get: N = 2^15, r = 8, p = 1 takes about
 * 100 ms and 32 MiB here, once per device tried at each login, which a
 * printer polling every minute does not notice and which makes a guess
 * cost an attacker as much.
 */
#define ACCOUNT_KDF_DEFAULT { 15, 8, 1 }
/* What scrypt may use at most (128 * r * N bytes, and p times the
 * time): files asking for more are refused before any work is done. */
#define ACCOUNT_KDF_MEM_MAX (256u * 1024 * 1024)
#define ACCOUNT_KDF_LOG_N_MAX 22
#define ACCOUNT_KDF_R_MAX 32
#define ACCOUNT_KDF_P_MAX 16

/* Whether kdf is within the bounds above (log_n >= 1, r >= 1, p >= 1). */
int account_kdf_check(const struct account_kdf *kdf);

/* scrypt(pass, salt, kdf) into out[0..out_len). -EINVAL for a cost out of
 * bounds, -ENOMEM, -EIO when OpenSSL fails. */
int account_scrypt(const void *pass, size_t pass_len, const void *salt,
		   size_t salt_len, const struct account_kdf *kdf, void *out,
		   size_t out_len);

/* HKDF-SHA256 (extract and expand) of ikm with salt (may be empty) and
 * info into out[0..out_len). -EIO when OpenSSL fails. */
int account_hkdf(const void *ikm, size_t ikm_len, const void *salt,
		 size_t salt_len, const void *info, size_t info_len, void *out,
		 size_t out_len);

/* AES-256-GCM: encrypts pt[0..len) into ct[0..len) followed by the tag
 * (ct holds len + ACCOUNT_TAG_LEN), with aad authenticated. The nonce
 * must never repeat under one key: callers take it from
 * account_random. */
int account_seal(const uint8_t key[ACCOUNT_KEY_LEN],
		 const uint8_t nonce[ACCOUNT_NONCE_LEN], const void *aad,
		 size_t aad_len, const void *pt, size_t len, void *ct);

/* The reverse: ct[0..ct_len) is ciphertext and tag, pt gets ct_len -
 * ACCOUNT_TAG_LEN bytes. -EBADMSG when the tag does not verify (wrong key,
 * other aad, damaged data; pt is wiped then), -EINVAL when ct_len is
 * shorter than a tag. */
int account_open(const uint8_t key[ACCOUNT_KEY_LEN],
		 const uint8_t nonce[ACCOUNT_NONCE_LEN], const void *aad,
		 size_t aad_len, const void *ct, size_t ct_len, void *pt);

/* n random bytes from OpenSSL's CSPRNG; -EIO when it has none. */
int account_random(void *p, size_t n);

#endif
