/* Device passwords, the wrapped account key and the sealed upstream
 * secret of an account file. */
#include "accounts/account_keys.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

/* What binds each derived key and each sealed value to its purpose. */
#define INFO_VERIFIER "popbridge device verifier v1"
#define INFO_KEK "popbridge device key v1"
#define AAD_WRAP "popbridge account key v1"
#define AAD_SECRET "popbridge upstream secret v1"
/* The longest AAD: a label, two names and two NULs. */
#define AAD_MAX (32 + 2 * CONFIG_ACCOUNT_NAME_MAX + 2)

/* The salt the dummy check uses: any fixed value does. */
static const uint8_t dummy_salt[ACCOUNT_SALT_LEN] = "popbridge-dummy";

int
account_keys_new(uint8_t key_r[ACCOUNT_KEY_LEN])
{
	return account_random(key_r, ACCOUNT_KEY_LEN);
}

/* Appends s in lower case and a NUL: names are compared without regard
 * to case, so their AAD is the same in any case. */
static size_t
aad_name(uint8_t *aad, size_t n, const char *s)
{
	for (; *s != '\0'; s++)
		aad[n++] = (uint8_t)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a'
							    : *s);
	aad[n++] = '\0';
	return n;
}

static size_t
aad_wrap(uint8_t aad[AAD_MAX], const char *account, const char *label)
{
	size_t n = sizeof(AAD_WRAP);

	memcpy(aad, AAD_WRAP, n);
	n = aad_name(aad, n, account);
	return aad_name(aad, n, label);
}

static size_t
aad_secret(uint8_t aad[AAD_MAX], const char *account)
{
	size_t n = sizeof(AAD_SECRET);

	memcpy(aad, AAD_SECRET, n);
	return aad_name(aad, n, account);
}

/* The verifier and the KEK of pass under the device's salt and cost. */
static int
derive(const struct account_device *d, const uint8_t *salt, const char *pass,
       size_t pass_len, uint8_t verifier[ACCOUNT_VERIFIER_LEN],
       uint8_t kek[ACCOUNT_KEY_LEN])
{
	uint8_t master[32];
	int e;

	e = account_scrypt(pass, pass_len, salt, ACCOUNT_SALT_LEN, &d->kdf,
			   master, sizeof(master));
	if (e == 0)
		e = account_hkdf(master, sizeof(master), NULL, 0,
				 INFO_VERIFIER, sizeof(INFO_VERIFIER) - 1,
				 verifier, ACCOUNT_VERIFIER_LEN);
	if (e == 0 && kek != NULL)
		e = account_hkdf(master, sizeof(master), NULL, 0, INFO_KEK,
				 sizeof(INFO_KEK) - 1, kek, ACCOUNT_KEY_LEN);
	OPENSSL_cleanse(master, sizeof(master));
	return e;
}

int
account_keys_set_device(struct account_file *f, const char *label,
			const char *pass, size_t pass_len,
			const uint8_t key[ACCOUNT_KEY_LEN],
			const struct account_kdf *kdf, uint64_t now)
{
	struct account_device d;
	uint8_t kek[ACCOUNT_KEY_LEN], aad[AAD_MAX];
	size_t i;
	int e;

	if (!account_file_name_ok(label) || pass_len == 0)
		return -EINVAL;
	for (i = 0; i < f->n_devices; i++) {
		if (strcasecmp(f->devices[i].label, label) == 0)
			break;
	}
	if (i == ACCOUNT_DEVICES_MAX)
		return -ENOSPC;
	memset(&d, 0, sizeof(d));
	snprintf(d.label, sizeof(d.label), "%s", label);
	d.created = now;
	d.kdf = *kdf;
	e = account_random(d.salt, sizeof(d.salt));
	if (e == 0)
		e = account_random(d.nonce, sizeof(d.nonce));
	if (e == 0)
		e = derive(&d, d.salt, pass, pass_len, d.verifier, kek);
	if (e == 0)
		e = account_seal(kek, d.nonce, aad,
				 aad_wrap(aad, f->name, d.label), key,
				 ACCOUNT_KEY_LEN, d.wrapped);
	OPENSSL_cleanse(kek, sizeof(kek));
	if (e < 0)
		return e;
	f->devices[i] = d;
	if (i == f->n_devices)
		f->n_devices++;
	return 0;
}

int
account_keys_unlock(const struct account_file *f, const char *pass,
		    size_t pass_len, uint8_t key_r[ACCOUNT_KEY_LEN],
		    size_t *device_r)
{
	uint8_t verifier[ACCOUNT_VERIFIER_LEN], kek[ACCOUNT_KEY_LEN];
	uint8_t aad[AAD_MAX];
	size_t i;
	int e = -EACCES;

	for (i = 0; i < f->n_devices; i++) {
		const struct account_device *d = &f->devices[i];

		e = derive(d, d->salt, pass, pass_len, verifier, kek);
		if (e < 0)
			break;
		if (CRYPTO_memcmp(verifier, d->verifier, sizeof(verifier)) !=
		    0) {
			e = -EACCES;
			continue;
		}
		e = account_open(kek, d->nonce, aad,
				 aad_wrap(aad, f->name, d->label), d->wrapped,
				 sizeof(d->wrapped), key_r);
		if (e == 0 && device_r != NULL)
			*device_r = i;
		break;
	}
	OPENSSL_cleanse(verifier, sizeof(verifier));
	OPENSSL_cleanse(kek, sizeof(kek));
	if (e < 0)
		OPENSSL_cleanse(key_r, ACCOUNT_KEY_LEN);
	return e;
}

int
account_keys_dummy(const char *pass, size_t pass_len)
{
	struct account_device d = { .kdf = ACCOUNT_KDF_DEFAULT };
	uint8_t verifier[ACCOUNT_VERIFIER_LEN], kek[ACCOUNT_KEY_LEN];

	(void)derive(&d, dummy_salt, pass, pass_len, verifier, kek);
	OPENSSL_cleanse(verifier, sizeof(verifier));
	OPENSSL_cleanse(kek, sizeof(kek));
	return -EACCES;
}

int
account_keys_revoke(struct account_file *f, const char *label)
{
	size_t i;

	for (i = 0; i < f->n_devices; i++) {
		if (strcasecmp(f->devices[i].label, label) == 0)
			break;
	}
	if (i == f->n_devices)
		return -ENOENT;
	memmove(&f->devices[i], &f->devices[i + 1],
		(f->n_devices - i - 1) * sizeof(f->devices[0]));
	f->n_devices--;
	memset(&f->devices[f->n_devices], 0, sizeof(f->devices[0]));
	if (f->n_devices > 0)
		return 0;
	/* Nothing can open the secret any more: drop it too. */
	f->has_upstream = false;
	f->up_len = 0;
	memset(f->up_nonce, 0, sizeof(f->up_nonce));
	memset(f->up_ct, 0, sizeof(f->up_ct));
	return 1;
}

int
account_keys_seal_secret(struct account_file *f,
			 const uint8_t key[ACCOUNT_KEY_LEN], const void *secret,
			 size_t len)
{
	uint8_t aad[AAD_MAX], nonce[ACCOUNT_NONCE_LEN];
	int e;

	if (len == 0 || len > ACCOUNT_SECRET_MAX)
		return -EINVAL;
	e = account_random(nonce, sizeof(nonce));
	if (e == 0)
		e = account_seal(key, nonce, aad, aad_secret(aad, f->name),
				 secret, len, f->up_ct);
	if (e < 0)
		return e;
	memcpy(f->up_nonce, nonce, sizeof(nonce));
	f->up_len = len + ACCOUNT_TAG_LEN;
	f->has_upstream = true;
	return 0;
}

int
account_keys_open_secret(const struct account_file *f,
			 const uint8_t key[ACCOUNT_KEY_LEN], struct buf *out)
{
	uint8_t aad[AAD_MAX];
	size_t len;
	int e;

	if (!f->has_upstream)
		return -ENOENT;
	len = f->up_len - ACCOUNT_TAG_LEN;
	e = buf_reserve(out, len);
	if (e < 0)
		return e;
	e = account_open(key, f->up_nonce, aad, aad_secret(aad, f->name),
			 f->up_ct, f->up_len, out->data + out->len);
	if (e == 0)
		out->len += len;
	return e;
}
