/* Base64 (RFC 4648) for SASL exchanges. */
#include "util/base64.h"
#include "util/error.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int
base64_encode(struct buf *out, const void *p, size_t n)
{
	const unsigned char *in = p;
	uint32_t v;
	size_t i, len;
	char *w;
	int r;

	if (n == 0)
		return 0;
	if (n / 3 >= SIZE_MAX / 4)
		return -ENOBUFS;
	len = (n + 2) / 3 * 4;
	r = buf_reserve(out, len);
	if (r < 0)
		return r;
	w = out->data + out->len;
	for (i = 0; i < n; i += 3) {
		v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		*w++ = alphabet[v >> 18];
		*w++ = alphabet[(v >> 12) & 63];
		*w++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		*w++ = i + 2 < n ? alphabet[v & 63] : '=';
	}
	out->len += len;
	return 0;
}

static int
decode_char(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -EBADMSG;
}

/* Decodes one group of four; "xx==" and "xxx=" only as the last one. The
 * bits padding leaves over must be zero (RFC 4648 §3.5), so every byte
 * string has exactly one accepted encoding. Returns the bytes, or -1. */
static int
decode_quad(const char *s, bool last, unsigned char *w)
{
	int d, i, pad = 0;
	uint32_t v = 0;

	if (last)
		pad = s[3] != '=' ? 0 : s[2] != '=' ? 1 : 2;
	for (i = 0; i < 4 - pad; i++) {
		d = decode_char(s[i]);
		if (d < 0)
			return -EBADMSG;
		v = v << 6 | (uint32_t)d;
	}
	v <<= 6 * pad;
	if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff)))
		return -EBADMSG;
	for (i = 0; i < 3 - pad; i++)
		w[i] = (unsigned char)(v >> (16 - 8 * i));
	return 3 - pad;
}

int
base64_decode(struct buf *out, const char *s, size_t n)
{
	size_t i, len = 0, pad;
	unsigned char *w;
	int k, r;

	if (n % 4 != 0)
		return -EINVAL;
	if (n == 0)
		return 0;
	/* Exactly what a valid input yields, so a bound is not hit early. */
	pad = (s[n - 1] == '=') + (s[n - 1] == '=' && s[n - 2] == '=');
	r = buf_reserve(out, n / 4 * 3 - pad);
	if (r < 0)
		return r;
	/* Written past len and committed only on success, so a bad input
	 * leaves out as it was. */
	w = (unsigned char *)out->data + out->len;
	for (i = 0; i < n; i += 4) {
		k = decode_quad(s + i, i + 4 == n, w + len);
		if (k < 0)
			return -EINVAL;
		len += (size_t)k;
	}
	out->len += len;
	return 0;
}
