/* Growable byte buffers with a hard size cap; secret ones are wiped. */
#include "util/buf.h"
#include "util/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* The first allocation; later ones double, so appends stay amortized O(1). */
#define BUF_MIN_CAP 256

void
buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
	b->secret = 0;
}

void
buf_init_secret(struct buf *b, size_t max)
{
	buf_init(b, max);
	b->secret = 1;
}

/* realloc may leave the old block behind unwiped: move secrets by hand. */
static char *
grow_secret(struct buf *b, size_t cap)
{
	char *p = malloc(cap);

	if (p == NULL)
		return NULL;
	if (b->data != NULL) {
		memcpy(p, b->data, b->len);
		OPENSSL_cleanse(b->data, b->cap);
		free(b->data);
	}
	return p;
}

int
buf_reserve(struct buf *b, size_t more)
{
	size_t need, cap;
	char *p;

	if (more > b->max || b->len > b->max - more)
		return -ENOBUFS;
	need = b->len + more;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > b->max)
		cap = b->max;
	p = b->secret ? grow_secret(b, cap) : realloc(b->data, cap);
	if (p == NULL)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	int r;

	if (n == 0)
		return 0;
	r = buf_reserve(b, n);
	if (r < 0)
		return r;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int
buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	/* One more for the NUL vsnprintf writes; it is not counted in len. */
	r = buf_reserve(b, (size_t)n + 1);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *
buf_put_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

char *
buf_put_hex(char *w, const void *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < n; i++) {
		*w++ = digits[s[i] >> 4];
		*w++ = digits[s[i] & 15];
	}
	return w;
}

void
buf_truncate(struct buf *b, size_t len)
{
	if (len >= b->len)
		return;
	OPENSSL_cleanse(b->data + len, b->len - len);
	b->len = len;
}

int
buf_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0, d;
	size_t i;

	if (n == 0)
		return -EBADMSG;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
		d = (uint64_t)(s[i] - '0');
		if (v > (max - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	*v_r = v;
	return 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
}

void
buf_wipe(struct buf *b)
{
	if (b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	b->len = 0;
}

void
buf_free(struct buf *b)
{
	if (b->secret)
		buf_wipe(b);
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}
