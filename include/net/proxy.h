#ifndef POPBRIDGE_PROXY_H
#define POPBRIDGE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The PROXY protocol header (HAProxy, versions 1 and 2) that a trusted
 * load balancer sends before the client's first byte, so that logs and
 * per-address limits see the real client. Pure: no I/O.
 */

/* v1: "PROXY TCP6 <45> <45> <5> <5>\r\n" is at most 107 octets. */
#define PROXY_V1_MAX 107
/* v2: 16 octets of header and at most this much address and TLV data. */
#define PROXY_V2_MAX (16 + 512)

struct proxy_info {
	bool local;		/* v2 LOCAL or v1 UNKNOWN: keep the peer */
	char addr[46];		/* the client's address as text */
	uint16_t port;
};

/*
 * Looks for one header at the start of data[0..len).
 * Returns 1 with *info_r filled and *used_r octets to drop; 0 when more
 * input is needed; -EPROTO when the input is not a valid header (a static
 * reason in *why_r).
 */
int proxy_parse(const unsigned char *data, size_t len, size_t *used_r,
		struct proxy_info *info_r, const char **why_r);

#endif
