/* scrypt, HKDF-SHA256 and AES-256-GCM through OpenSSL 3's EVP interfaces,
 * for the account files. */
#include "accounts/account_crypto.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

int
account_kdf_check(const struct account_kdf *kdf)
{
	uint64_t mem;

	if (kdf->log_n < 1 || kdf->log_n > ACCOUNT_KDF_LOG_N_MAX ||
	    kdf->r < 1 || kdf->r > ACCOUNT_KDF_R_MAX || kdf->p < 1 ||
	    kdf->p > ACCOUNT_KDF_P_MAX)
		return -EINVAL;
	mem = 128ull * kdf->r << kdf->log_n;
	return mem <= ACCOUNT_KDF_MEM_MAX ? 0 : -EINVAL;
}

/* Runs the KDF named name with params into out. */
static int
kdf_derive(const char *name, OSSL_PARAM *params, void *out, size_t out_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, name, NULL);
	EVP_KDF_CTX *ctx;
	int ok;

	if (kdf == NULL)
		return -EIO;
	ctx = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);
	if (ctx == NULL)
		return -ENOMEM;
	ok = EVP_KDF_derive(ctx, out, out_len, params);
	EVP_KDF_CTX_free(ctx);
	return ok == 1 ? 0 : -EIO;
}

int
account_scrypt(const void *pass, size_t pass_len, const void *salt,
	       size_t salt_len, const struct account_kdf *kdf, void *out,
	       size_t out_len)
{
	uint64_t n, maxmem = ACCOUNT_KDF_MEM_MAX + (1u << 20);
	uint32_t r, p;
	OSSL_PARAM params[7], *q = params;

	if (account_kdf_check(kdf) < 0)
		return -EINVAL;
	n = (uint64_t)1 << kdf->log_n;
	r = kdf->r;
	p = kdf->p;
	/* OpenSSL reads an empty password or salt as "not set" unless the
	 * pointer is valid; "" stands in for NULL. */
	*q++ = OSSL_PARAM_construct_octet_string(
		OSSL_KDF_PARAM_PASSWORD, pass_len ? (void *)pass : (void *)"",
		pass_len);
	*q++ = OSSL_PARAM_construct_octet_string(
		OSSL_KDF_PARAM_SALT, salt_len ? (void *)salt : (void *)"",
		salt_len);
	*q++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
	*q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
	*q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
	*q++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM,
					   &maxmem);
	*q = OSSL_PARAM_construct_end();
	return kdf_derive("SCRYPT", params, out, out_len);
}

int
account_hkdf(const void *ikm, size_t ikm_len, const void *salt,
	     size_t salt_len, const void *info, size_t info_len, void *out,
	     size_t out_len)
{
	OSSL_PARAM params[5], *q = params;

	*q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						(char *)"SHA256", 0);
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						 (void *)ikm, ikm_len);
	if (salt_len > 0)
		*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
							 (void *)salt,
							 salt_len);
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
						 (void *)info, info_len);
	*q = OSSL_PARAM_construct_end();
	return kdf_derive("HKDF", params, out, out_len);
}

/* EVP's lengths are ints. */
static bool
len_ok(size_t n)
{
	return n <= INT_MAX - ACCOUNT_TAG_LEN;
}

int
account_seal(const uint8_t key[ACCOUNT_KEY_LEN],
	     const uint8_t nonce[ACCOUNT_NONCE_LEN], const void *aad,
	     size_t aad_len, const void *pt, size_t len, void *ct)
{
	EVP_CIPHER_CTX *ctx;
	unsigned char *out = ct;
	int n, ok;

	if (!len_ok(len) || !len_ok(aad_len))
		return -EINVAL;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return -ENOMEM;
	ok = EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), key, nonce, NULL) == 1 &&
	     (aad_len == 0 ||
	      EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1) &&
	     (len == 0 ||
	      EVP_EncryptUpdate(ctx, out, &n, pt, (int)len) == 1) &&
	     EVP_EncryptFinal_ex(ctx, out + len, &n) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ACCOUNT_TAG_LEN,
				 out + len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

int
account_open(const uint8_t key[ACCOUNT_KEY_LEN],
	     const uint8_t nonce[ACCOUNT_NONCE_LEN], const void *aad,
	     size_t aad_len, const void *ct, size_t ct_len, void *pt)
{
	const unsigned char *in = ct;
	unsigned char tag[ACCOUNT_TAG_LEN];
	EVP_CIPHER_CTX *ctx;
	size_t len;
	int n, ok, r;

	if (ct_len < ACCOUNT_TAG_LEN)
		return -EINVAL;
	len = ct_len - ACCOUNT_TAG_LEN;
	if (!len_ok(len) || !len_ok(aad_len))
		return -EINVAL;
	memcpy(tag, in + len, sizeof(tag));
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return -ENOMEM;
	ok = EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), key, nonce, NULL) == 1 &&
	     (aad_len == 0 ||
	      EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1) &&
	     (len == 0 ||
	      EVP_DecryptUpdate(ctx, pt, &n, in, (int)len) == 1) &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ACCOUNT_TAG_LEN,
				 tag) == 1;
	r = ok ? 0 : -EIO;
	/* The final step is where the tag is checked. */
	if (ok && EVP_DecryptFinal_ex(ctx, (unsigned char *)pt + len, &n) != 1)
		r = -EBADMSG;
	EVP_CIPHER_CTX_free(ctx);
	if (r < 0 && len > 0)
		OPENSSL_cleanse(pt, len);
	return r;
}

int
account_random(void *p, size_t n)
{
	if (n > INT_MAX)
		return -EINVAL;
	return RAND_bytes(p, (int)n) == 1 ? 0 : -EIO;
}
