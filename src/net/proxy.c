/* PROXY protocol v1 and v2 headers from a trusted load balancer. */
#include "net/proxy.h"
#include "util/error.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
	0x55, 0x49, 0x54, 0x0a,
};

static int
fail(const char **why_r, const char *why)
{
	*why_r = why;
	return -EPROTO;
}

/* A prefix of the v2 signature or of "PROXY " may still become one. */
static bool
could_be(const unsigned char *data, size_t len, const void *sig, size_t n)
{
	return memcmp(data, sig, len < n ? len : n) == 0;
}

static int
parse_port(const char *s, uint16_t *port_r)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9' || strlen(s) > 5)
		return -EBADMSG;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v > 65535)
		return -EBADMSG;
	*port_r = (uint16_t)v;
	return 0;
}

static int
parse_v1(const unsigned char *data, size_t len, size_t *used_r,
	 struct proxy_info *info, const char **why_r)
{
	char line[PROXY_V1_MAX + 1], *f[6], *save = NULL, *p;
	unsigned char bin[16];
	const unsigned char *lf;
	size_t n, i;
	uint16_t dport;
	int af;

	lf = memchr(data, '\n', len < PROXY_V1_MAX ? len : PROXY_V1_MAX);
	if (lf == NULL)
		return len >= PROXY_V1_MAX ?
		       fail(why_r, "PROXY v1 line too long") : 0;
	n = (size_t)(lf - data) + 1;
	if (n < 2 || data[n - 2] != '\r')
		return fail(why_r, "PROXY v1 line without CRLF");
	memcpy(line, data, n - 2);
	line[n - 2] = '\0';
	*used_r = n;
	for (i = 0, p = line; i < 6; i++, p = NULL) {
		f[i] = strtok_r(p, " ", &save);
		if (f[i] == NULL)
			break;
	}
	if (i >= 2 && strcmp(f[1], "UNKNOWN") == 0) {
		info->local = true;
		return 1;
	}
	if (i != 6 || strtok_r(NULL, " ", &save) != NULL)
		return fail(why_r, "PROXY v1 header malformed");
	if (strcmp(f[1], "TCP4") == 0)
		af = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		af = AF_INET6;
	else
		return fail(why_r, "PROXY v1 unknown protocol");
	/* The destination is checked and dropped: we know where we are. */
	if (inet_pton(af, f[3], bin) != 1 || parse_port(f[5], &dport) < 0 ||
	    inet_pton(af, f[2], bin) != 1 || parse_port(f[4], &info->port) < 0)
		return fail(why_r, "PROXY v1 bad address or port");
	inet_ntop(af, bin, info->addr, sizeof(info->addr));
	info->local = false;
	return 1;
}

static int
parse_v2(const unsigned char *data, size_t len, size_t *used_r,
	 struct proxy_info *info, const char **why_r)
{
	size_t body;
	unsigned char cmd, fam;

	if (len < 16)
		return 0;
	if ((data[12] & 0xf0) != 0x20)
		return fail(why_r, "PROXY v2 unknown version");
	cmd = data[12] & 0x0f;
	fam = data[13];
	body = ((size_t)data[14] << 8) | data[15];
	if (16 + body > PROXY_V2_MAX)
		return fail(why_r, "PROXY v2 header too long");
	if (len < 16 + body)
		return 0;
	*used_r = 16 + body;
	if (cmd == 0x0) {
		info->local = true;
		return 1;
	}
	if (cmd != 0x1)
		return fail(why_r, "PROXY v2 unknown command");
	info->local = false;
	switch (fam) {
	case 0x11:	/* TCP over IPv4 */
		if (body < 12)
			return fail(why_r, "PROXY v2 short IPv4 block");
		inet_ntop(AF_INET, data + 16, info->addr, sizeof(info->addr));
		info->port = (uint16_t)((data[24] << 8) | data[25]);
		return 1;
	case 0x21:	/* TCP over IPv6 */
		if (body < 36)
			return fail(why_r, "PROXY v2 short IPv6 block");
		inet_ntop(AF_INET6, data + 16, info->addr, sizeof(info->addr));
		info->port = (uint16_t)((data[48] << 8) | data[49]);
		return 1;
	case 0x00:	/* UNSPEC: keep the connection's own address */
		info->local = true;
		return 1;
	default:
		return fail(why_r, "PROXY v2 unsupported address family");
	}
}

int
proxy_parse(const unsigned char *data, size_t len, size_t *used_r,
	    struct proxy_info *info_r, const char **why_r)
{
	memset(info_r, 0, sizeof(*info_r));
	*used_r = 0;
	*why_r = NULL;
	if (len == 0)
		return 0;
	if (could_be(data, len, v2_sig, sizeof(v2_sig))) {
		if (len < sizeof(v2_sig))
			return 0;
		return parse_v2(data, len, used_r, info_r, why_r);
	}
	if (could_be(data, len, "PROXY ", 6)) {
		if (len < 6)
			return 0;
		return parse_v1(data, len, used_r, info_r, why_r);
	}
	return fail(why_r, "no PROXY header from a trusted proxy");
}
