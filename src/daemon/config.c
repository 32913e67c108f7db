/* The configuration file (inih): sections and keys into an immutable,
 * reference-counted struct config; errors name the line; provider presets. */
#include "daemon/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <openssl/crypto.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "oauth/http.h"
#include "oauth/preset.h"
#include "util/buf.h"
#include "util/error.h"

/* A configuration file is a few hundred bytes; anything near this is a
 * mistake (a log file or a binary named by -c), not a configuration. */
#define CONFIG_FILE_MAX (1024 * 1024)
/* Room for the "what is wrong" part of one error message. */
#define CONFIG_WHY_MAX 256

#define OFF(field) offsetof(struct config, field)
#define FIELD(cfg, k, type) ((type *)(void *)((char *)(cfg) + (k)->offset))
#define CFIELD(cfg, k, type) \
	((const type *)(const void *)((const char *)(cfg) + (k)->offset))

/* The enum fields are written through int pointers by the enum type. */
_Static_assert(sizeof(enum plaintext_auth) == sizeof(int), "enum size");
_Static_assert(sizeof(enum upstream_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum on_delete) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum unknown_users) == sizeof(int), "enum size");
_Static_assert(sizeof(enum account_auth) == sizeof(int), "enum size");

struct key_def;

struct key_type {
	/* Returns 0, or -1 with a reason in why[0..CONFIG_WHY_MAX). */
	int (*parse)(struct config *cfg, const struct key_def *k,
		     const char *value, char *why);
	/* Prints the value only, without "key = ". */
	void (*print)(const struct config *cfg, const struct key_def *k,
		      FILE *out);
};

struct enum_name {
	const char *name;
	int value;
};

struct key_def {
	const char *section;
	const char *name;
	const struct key_type *type;
	size_t offset;
	size_t aux;		/* lists: offset of the count; numbers: minimum */
	const struct enum_name *names;
	const char *expect;
	bool secret;		/* config_print leaves the value out */
};

struct parse_ctx {
	struct config *cfg;
	const char *name;	/* the file name in messages */
	const char *pos;	/* what the reader has not handed to inih yet */
	size_t left;
	int lineno;		/* the line inih is working on */
	int err_line;		/* line of the first error; 0 = none yet */
	char *err;
	size_t errlen;
	int key_line[48];	/* where each key of the table was set */
	/* The [account NAME] sections seen so far (struct acct_node). */
	struct config **accounts;
	size_t n_accounts;
};

static const char *const sections[] = {
	"listen", "upstream", "maildrop", "state", "limits", "log", "process",
	"accounts",
};
#define SECTIONS_EXPECT \
	"listen, upstream, maildrop, state, limits, log, process, accounts " \
	"or account NAME"

static const struct enum_name tls_min_names[] = {
	{ "1.0", 10 }, { "1.1", 11 }, { "1.2", 12 }, { "1.3", 13 }, { NULL, 0 },
};
static const struct enum_name plaintext_names[] = {
	{ "loopback", PLAINTEXT_AUTH_LOOPBACK },
	{ "always", PLAINTEXT_AUTH_ALWAYS },
	{ "never", PLAINTEXT_AUTH_NEVER },
	{ NULL, 0 },
};
static const struct enum_name upstream_tls_names[] = {
	{ "implicit", UPSTREAM_TLS_IMPLICIT },
	{ "starttls", UPSTREAM_TLS_STARTTLS },
	{ "none", UPSTREAM_TLS_NONE },
	{ NULL, 0 },
};
static const struct enum_name on_delete_names[] = {
	{ "expunge", ON_DELETE_EXPUNGE },
	{ "trash", ON_DELETE_TRASH },
	{ "seen", ON_DELETE_SEEN },
	{ "keep", ON_DELETE_KEEP },
	{ NULL, 0 },
};
static const struct enum_name unknown_users_names[] = {
	{ "passthrough", UNKNOWN_USERS_PASSTHROUGH },
	{ "refuse", UNKNOWN_USERS_REFUSE },
	{ NULL, 0 },
};
static const struct enum_name account_auth_names[] = {
	{ "password", ACCOUNT_AUTH_PASSWORD },
	{ "oauth2", ACCOUNT_AUTH_OAUTH2 },
	{ NULL, 0 },
};
static const struct enum_name level_names[] = {
	{ "error", LOG_ERROR },
	{ "warn", LOG_WARN },
	{ "info", LOG_INFO },
	{ "debug", LOG_DEBUG },
	{ NULL, 0 },
};
/* Provider presets for [upstream]: what each one's IMAP service expects.
 * Their quirks (app passwords, Gmail's archive-on-expunge) are documented
 * in popbridge.ini(5) and etc/popbridge.ini. */
struct provider {
	const char *name;
	const char *host;
	uint16_t port;
	enum upstream_tls tls;
};

static const struct provider providers[] = {
	{ "gmail", "imap.gmail.com", 993, UPSTREAM_TLS_IMPLICIT },
	{ "outlook", "outlook.office365.com", 993, UPSTREAM_TLS_IMPLICIT },
	{ "yahoo", "imap.mail.yahoo.com", 993, UPSTREAM_TLS_IMPLICIT },
	{ "icloud", "imap.mail.me.com", 993, UPSTREAM_TLS_IMPLICIT },
	{ "fastmail", "imap.fastmail.com", 993, UPSTREAM_TLS_IMPLICIT },
	{ "zoho", "imap.zoho.com", 993, UPSTREAM_TLS_IMPLICIT },
	{ "zoho-pro", "imappro.zoho.com", 993, UPSTREAM_TLS_IMPLICIT },
};
#define PROVIDERS_EXPECT \
	"gmail, outlook, yahoo, icloud, fastmail, zoho, zoho-pro or empty"

static const struct enum_name bool_names[] = {
	{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 },
	{ "on", 1 }, { "off", 0 }, { "1", 1 }, { "0", 0 }, { NULL, 0 },
};

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool
is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* Parses decimal digits only: no sign, no blanks, nothing after. */
static int
parse_decimal(const char *s, size_t len, unsigned long long max,
	      unsigned long long *v_r)
{
	uint64_t v;

	if (buf_parse_u64(s, len, max, &v) < 0)
		return -EINVAL;
	*v_r = v;
	return 0;
}

/*
 * Hands out the next item of a comma list, blanks trimmed; an item may be
 * empty ("a,,b", "a,"). Start with *p at the value, or NULL for an empty
 * value (a list of no items), and stop when it returns false.
 */
static bool
list_next(const char **p, const char **item_r, size_t *len_r)
{
	const char *s = *p, *end;

	if (s == NULL)
		return false;
	end = strchr(s, ',');
	*p = end != NULL ? end + 1 : NULL;
	if (end == NULL)
		end = s + strlen(s);
	while (s < end && is_blank(*s))
		s++;
	while (end > s && is_blank(end[-1]))
		end--;
	*item_r = s;
	*len_r = (size_t)(end - s);
	return true;
}

static int
set_string(char **field, const char *value)
{
	char *copy = strdup(value);

	if (copy == NULL)
		return -EINVAL;
	free(*field);
	*field = copy;
	return 0;
}

/* Every reason a folder name cannot be sent as an IMAP quoted string. */
static const char *
folder_check(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return "empty folder name";
	for (i = 0; i < len; i++) {
		if (is_ctl((unsigned char)s[i]))
			return "control character in folder name";
		if (s[i] == '"')
			return "'\"' in folder name";
	}
	return NULL;
}

/* IMAP reserves INBOX in any case (RFC 9051 §5.1); other names are exact. */
static bool
folder_same(const char *a, const char *b)
{
	if (strcasecmp(a, "INBOX") == 0)
		return strcasecmp(b, "INBOX") == 0;
	return strcmp(a, b) == 0;
}

static int
oom(char *why)
{
	snprintf(why, CONFIG_WHY_MAX, "out of memory");
	return -EINVAL;
}

/* --- listen addresses --- */

static int
addr_parse_port(const char *s, size_t len, uint16_t *port_r)
{
	unsigned long long v;

	if (parse_decimal(s, len, 65535, &v) < 0 || v == 0)
		return -EINVAL;
	*port_r = (uint16_t)v;
	return 0;
}

static int
addr_parse_one(const char *s, size_t len, struct config_addr *a, char *why)
{
	const char *host = s, *port, *bracket;
	size_t hlen;
	int af;
	unsigned char bin[16];

	if (len > 0 && s[0] == '[') {
		bracket = memchr(s, ']', len);
		if (bracket == NULL || bracket + 1 == s + len ||
		    bracket[1] != ':')
			goto bad;
		host = s + 1;
		hlen = (size_t)(bracket - host);
		port = bracket + 2;
		af = AF_INET6;
	} else {
		/* After the last ':', so that "::1:110" fails as a host. */
		port = s + len;
		while (port > s && port[-1] != ':')
			port--;
		if (port == s)
			goto bad;
		hlen = (size_t)(port - 1 - s);
		af = AF_INET;
	}
	if (hlen == 0 || hlen >= sizeof(a->host))
		goto bad;
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	if (inet_pton(af, a->host, bin) != 1) {
		snprintf(why, CONFIG_WHY_MAX, "\"%.*s\" is not an %s address",
			 (int)hlen, host, af == AF_INET ? "IPv4" : "IPv6");
		return -EINVAL;
	}
	if (addr_parse_port(port, (size_t)(s + len - port), &a->port) < 0) {
		snprintf(why, CONFIG_WHY_MAX, "bad port in \"%.*s\"", (int)len,
			 s);
		return -EINVAL;
	}
	return 0;
bad:
	snprintf(why, CONFIG_WHY_MAX, "bad address \"%.*s\"", (int)len, s);
	return -EINVAL;
}

/* Compares the binary forms, so "::1" and "0::1" are the same address. */
static bool
addr_same(const struct config_addr *a, const struct config_addr *b)
{
	unsigned char ba[16] = { 0 }, bb[16] = { 0 };
	int af_a = strchr(a->host, ':') ? AF_INET6 : AF_INET;
	int af_b = strchr(b->host, ':') ? AF_INET6 : AF_INET;

	if (af_a != af_b || a->port != b->port)
		return false;
	inet_pton(af_a, a->host, ba);
	inet_pton(af_b, b->host, bb);
	return memcmp(ba, bb, sizeof(ba)) == 0;
}

static int
addrs_parse(struct config *cfg, const struct key_def *k, const char *value,
	    char *why)
{
	struct config_addr *addrs = FIELD(cfg, k, struct config_addr);
	size_t *n = (size_t *)(void *)((char *)cfg + k->aux);
	const char *item;
	size_t len, i;

	*n = 0;
	value = value[0] != '\0' ? value : NULL;
	while (list_next(&value, &item, &len)) {
		if (len == 0) {
			snprintf(why, CONFIG_WHY_MAX, "empty item in list");
			return -EINVAL;
		}
		if (*n == CONFIG_MAX_ADDRS) {
			snprintf(why, CONFIG_WHY_MAX,
				 "more than %d addresses", CONFIG_MAX_ADDRS);
			return -EINVAL;
		}
		if (addr_parse_one(item, len, &addrs[*n], why) < 0)
			return -EINVAL;
		for (i = 0; i < *n; i++) {
			if (addr_same(&addrs[i], &addrs[*n])) {
				snprintf(why, CONFIG_WHY_MAX,
					 "\"%.*s\" listed twice", (int)len,
					 item);
				return -EINVAL;
			}
		}
		(*n)++;
	}
	return 0;
}

static void
addrs_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	const struct config_addr *addrs = CFIELD(cfg, k, struct config_addr);
	const size_t *n = (const size_t *)(const void *)((const char *)cfg +
							  k->aux);
	size_t i;

	for (i = 0; i < *n; i++) {
		bool v6 = strchr(addrs[i].host, ':') != NULL;

		fprintf(out, "%s%s%s%s:%u", i ? ", " : " ", v6 ? "[" : "",
			addrs[i].host, v6 ? "]" : "", (unsigned)addrs[i].port);
	}
}

static const struct key_type type_addrs = { addrs_parse, addrs_print };

/* --- address blocks (trusted_proxies) --- */

static int
cidr_parse_one(const char *s, size_t len, struct config_cidr *c, char *why)
{
	char text[CONFIG_HOST_MAX + 8];
	const char *slash;
	unsigned long long prefix;
	unsigned max;

	if (len >= sizeof(text))
		goto bad;
	memcpy(text, s, len);
	text[len] = '\0';
	slash = strchr(text, '/');
	if (slash != NULL)
		text[slash - text] = '\0';
	c->af = strchr(text, ':') != NULL ? AF_INET6 : AF_INET;
	memset(c->addr, 0, sizeof(c->addr));
	if (inet_pton(c->af, text, c->addr) != 1)
		goto bad;
	max = c->af == AF_INET ? 32 : 128;
	c->prefix = max;
	if (slash != NULL) {
		if (parse_decimal(slash + 1, strlen(slash + 1), max, &prefix) < 0)
			goto bad;
		c->prefix = (unsigned)prefix;
	}
	return 0;
bad:
	snprintf(why, CONFIG_WHY_MAX, "bad address or block \"%.*s\"",
		 (int)len, s);
	return -EINVAL;
}

static int
cidrs_parse(struct config *cfg, const struct key_def *k, const char *value,
	    char *why)
{
	const char *item;
	size_t len;

	(void)k;
	cfg->listen.n_trusted_proxies = 0;
	value = value[0] != '\0' ? value : NULL;
	while (list_next(&value, &item, &len)) {
		if (len == 0) {
			snprintf(why, CONFIG_WHY_MAX, "empty item in list");
			return -EINVAL;
		}
		if (cfg->listen.n_trusted_proxies == CONFIG_MAX_PROXIES) {
			snprintf(why, CONFIG_WHY_MAX, "more than %d entries",
				 CONFIG_MAX_PROXIES);
			return -EINVAL;
		}
		if (cidr_parse_one(item, len, &cfg->listen.trusted_proxies[
				   cfg->listen.n_trusted_proxies], why) < 0)
			return -EINVAL;
		cfg->listen.n_trusted_proxies++;
	}
	return 0;
}

static void
cidrs_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	char text[INET6_ADDRSTRLEN];
	size_t i;

	(void)k;
	for (i = 0; i < cfg->listen.n_trusted_proxies; i++) {
		const struct config_cidr *c = &cfg->listen.trusted_proxies[i];

		inet_ntop(c->af, c->addr, text, sizeof(text));
		fprintf(out, "%s%s/%u", i ? ", " : " ", text, c->prefix);
	}
}

static const struct key_type type_cidrs = { cidrs_parse, cidrs_print };

static bool
prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ b[full]) & (0xff << (8 - rest))) == 0;
}

bool
config_cidr_match(const struct config_cidr *blocks, size_t n, int af,
		  const unsigned char *addr)
{
	static const unsigned char mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
	};
	size_t i;

	if (af == AF_INET6 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
		af = AF_INET;
		addr += sizeof(mapped);
	}
	for (i = 0; i < n; i++) {
		if (blocks[i].af == af &&
		    prefix_equal(blocks[i].addr, addr, blocks[i].prefix))
			return true;
	}
	return false;
}

/* --- strings --- */

/* Prints a value so that inih reads it back unchanged: inih takes " ;" as
 * the start of a comment, so a value starting with ';' follows '=' at once. */
static void
value_print(const char *s, FILE *out)
{
	fprintf(out, "%s%s", s[0] == ';' ? "" : " ", s);
}

/* A file path; empty means unset (NULL). */
static int
path_parse(struct config *cfg, const struct key_def *k, const char *value,
	   char *why)
{
	char **field = FIELD(cfg, k, char *);
	size_t i;

	for (i = 0; value[i] != '\0'; i++) {
		if (is_ctl((unsigned char)value[i])) {
			snprintf(why, CONFIG_WHY_MAX, "control character");
			return -EINVAL;
		}
	}
	if (value[0] == '\0') {
		free(*field);
		*field = NULL;
		return 0;
	}
	return set_string(field, value) < 0 ? oom(why) : 0;
}

static void
string_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	const char *s = *CFIELD(cfg, k, char *);

	if (s != NULL)
		value_print(s, out);
}

static const struct key_type type_path = { path_parse, string_print };

/* A user name to switch to: checked against the password database when
 * the daemon starts, here only for shape. */
static int
user_parse(struct config *cfg, const struct key_def *k, const char *value,
	   char *why)
{
	size_t i;

	for (i = 0; value[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)value[i];

		if (ch <= ' ' || ch >= 0x7f || ch == ':' || ch == '/') {
			snprintf(why, CONFIG_WHY_MAX,
				 "not a user name (no spaces, ':' or '/')");
			return -EINVAL;
		}
	}
	return path_parse(cfg, k, value, why);
}

static const struct key_type type_user = { user_parse, string_print };

/* A path that must be set. */
static int
dir_parse(struct config *cfg, const struct key_def *k, const char *value,
	  char *why)
{
	if (value[0] == '\0') {
		snprintf(why, CONFIG_WHY_MAX, "empty");
		return -EINVAL;
	}
	return path_parse(cfg, k, value, why);
}

static const struct key_type type_dir = { dir_parse, string_print };

/* The name goes to getaddrinfo and to certificate host name checks. */
static int
host_parse(struct config *cfg, const struct key_def *k, const char *value,
	   char *why)
{
	size_t i;

	if (value[0] == '\0') {
		snprintf(why, CONFIG_WHY_MAX, "empty");
		return -EINVAL;
	}
	for (i = 0; value[i] != '\0'; i++) {
		unsigned char c = (unsigned char)value[i];

		if (is_ctl(c) || c == ' ' || c == '[' || c == ']' || c == '/') {
			snprintf(why, CONFIG_WHY_MAX,
				 "bad character in \"%s\"", value);
			return -EINVAL;
		}
	}
	return set_string(FIELD(cfg, k, char *), value) < 0 ? oom(why) : 0;
}

static const struct key_type type_host = { host_parse, string_print };

static int
folder_parse(struct config *cfg, const struct key_def *k, const char *value,
	     char *why)
{
	const char *bad = folder_check(value, strlen(value));

	if (bad != NULL) {
		snprintf(why, CONFIG_WHY_MAX, "%s", bad);
		return -EINVAL;
	}
	return set_string(FIELD(cfg, k, char *), value) < 0 ? oom(why) : 0;
}

static const struct key_type type_folder = { folder_parse, string_print };

/* The [upstream] provider preset called name, or NULL (also for NULL). */
static const struct provider *
provider_find(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < sizeof(providers) / sizeof(providers[0]);
	     i++) {
		if (strcasecmp(providers[i].name, name) == 0)
			return &providers[i];
	}
	return NULL;
}

/* Only the name is kept here; the preset is applied once the whole file
 * has been read (provider_apply), so that host, port and tls written in
 * the file win wherever they stand. Empty means no preset. */
static int
provider_parse(struct config *cfg, const struct key_def *k,
	       const char *value, char *why)
{
	char **field = FIELD(cfg, k, char *);
	const struct provider *p;

	if (value[0] == '\0') {
		free(*field);
		*field = NULL;
		return 0;
	}
	p = provider_find(value);
	if (p == NULL) {
		snprintf(why, CONFIG_WHY_MAX, "unknown provider \"%s\"", value);
		return -EINVAL;
	}
	return set_string(field, p->name) < 0 ? oom(why) : 0;
}

static const struct key_type type_provider = { provider_parse, string_print };

/* --- folders --- */

static void
folders_clear(struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->maildrop.n_folders; i++) {
		free(cfg->maildrop.folders[i]);
		cfg->maildrop.folders[i] = NULL;
	}
	cfg->maildrop.n_folders = 0;
}

static int
folders_add(struct config *cfg, const char *item, size_t len, char *why)
{
	const char *bad = folder_check(item, len);
	char *name;
	size_t i;

	if (bad != NULL) {
		snprintf(why, CONFIG_WHY_MAX, "%s", bad);
		return -EINVAL;
	}
	if (cfg->maildrop.n_folders == CONFIG_MAX_FOLDERS) {
		snprintf(why, CONFIG_WHY_MAX, "more than %d folders",
			 CONFIG_MAX_FOLDERS);
		return -EINVAL;
	}
	name = strndup(item, len);
	if (name == NULL)
		return oom(why);
	for (i = 0; i < cfg->maildrop.n_folders; i++) {
		if (folder_same(cfg->maildrop.folders[i], name)) {
			snprintf(why, CONFIG_WHY_MAX,
				 "folder \"%s\" listed twice", name);
			free(name);
			return -EINVAL;
		}
	}
	cfg->maildrop.folders[cfg->maildrop.n_folders++] = name;
	return 0;
}

static int
folders_parse(struct config *cfg, const struct key_def *k, const char *value,
	      char *why)
{
	const char *item;
	size_t len;

	(void)k;
	folders_clear(cfg);
	value = value[0] != '\0' ? value : NULL;
	while (list_next(&value, &item, &len)) {
		if (folders_add(cfg, item, len, why) < 0)
			return -EINVAL;
	}
	if (cfg->maildrop.n_folders == 0) {
		snprintf(why, CONFIG_WHY_MAX, "no folder");
		return -EINVAL;
	}
	return 0;
}

static void
folders_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	size_t i;

	(void)k;
	for (i = 0; i < cfg->maildrop.n_folders; i++) {
		const char *name = cfg->maildrop.folders[i];

		if (i > 0)
			fputc(',', out);
		value_print(name, out);
	}
}

static const struct key_type type_folders = { folders_parse, folders_print };

/* --- since --- */

static bool
date_valid(unsigned y, unsigned m, unsigned d)
{
	static const unsigned char mdays[] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31,
	};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	if (y == 0 || m < 1 || m > 12 || d < 1)
		return false;
	return d <= mdays[m - 1] + (m == 2 && leap ? 1u : 0u);
}

static int
since_parse(struct config *cfg, const struct key_def *k, const char *value,
	    char *why)
{
	unsigned long long y, m, d;

	(void)k;
	if (strcasecmp(value, "all") == 0 || strcasecmp(value, "now") == 0) {
		cfg->maildrop.since = strcasecmp(value, "all") == 0 ? SINCE_ALL
								    : SINCE_NOW;
		cfg->maildrop.since_date[0] = '\0';
		return 0;
	}
	if (strlen(value) != 10 || value[4] != '-' || value[7] != '-' ||
	    parse_decimal(value, 4, 9999, &y) < 0 ||
	    parse_decimal(value + 5, 2, 99, &m) < 0 ||
	    parse_decimal(value + 8, 2, 99, &d) < 0) {
		snprintf(why, CONFIG_WHY_MAX, "bad value \"%s\"", value);
		return -EINVAL;
	}
	if (!date_valid((unsigned)y, (unsigned)m, (unsigned)d)) {
		snprintf(why, CONFIG_WHY_MAX, "no such date \"%s\"", value);
		return -EINVAL;
	}
	cfg->maildrop.since = SINCE_DATE;
	memcpy(cfg->maildrop.since_date, value, 11);
	return 0;
}

static void
since_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	(void)k;
	switch (cfg->maildrop.since) {
	case SINCE_ALL:
		fputs(" all", out);
		break;
	case SINCE_NOW:
		fputs(" now", out);
		break;
	case SINCE_DATE:
		fprintf(out, " %s", cfg->maildrop.since_date);
		break;
	}
}

static const struct key_type type_since = { since_parse, since_print };

/* --- enums, booleans, numbers --- */

static int
enum_parse(struct config *cfg, const struct key_def *k, const char *value,
	   char *why)
{
	const struct enum_name *e;

	for (e = k->names; e->name != NULL; e++) {
		if (strcasecmp(value, e->name) == 0) {
			*FIELD(cfg, k, int) = e->value;
			return 0;
		}
	}
	snprintf(why, CONFIG_WHY_MAX, "bad value \"%s\"", value);
	return -EINVAL;
}

static void
enum_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	const struct enum_name *e;
	int v = *CFIELD(cfg, k, int);

	for (e = k->names; e->name != NULL; e++) {
		if (e->value == v) {
			fprintf(out, " %s", e->name);
			return;
		}
	}
}

static const struct key_type type_enum = { enum_parse, enum_print };

static int
bool_parse(struct config *cfg, const struct key_def *k, const char *value,
	   char *why)
{
	const struct enum_name *e;

	for (e = bool_names; e->name != NULL; e++) {
		if (strcasecmp(value, e->name) == 0) {
			*FIELD(cfg, k, bool) = e->value != 0;
			return 0;
		}
	}
	snprintf(why, CONFIG_WHY_MAX, "bad value \"%s\"", value);
	return -EINVAL;
}

static void
bool_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	fputs(*CFIELD(cfg, k, bool) ? " yes" : " no", out);
}

static const struct key_type type_bool = { bool_parse, bool_print };

static int
port_parse(struct config *cfg, const struct key_def *k, const char *value,
	   char *why)
{
	if (addr_parse_port(value, strlen(value), FIELD(cfg, k, uint16_t)) < 0) {
		snprintf(why, CONFIG_WHY_MAX, "bad port \"%s\"", value);
		return -EINVAL;
	}
	return 0;
}

static void
port_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	fprintf(out, " %u", (unsigned)*CFIELD(cfg, k, uint16_t));
}

static const struct key_type type_port = { port_parse, port_print };

static int
uint_parse(struct config *cfg, const struct key_def *k, const char *value,
	   char *why)
{
	unsigned long long v;

	if (parse_decimal(value, strlen(value), UINT_MAX, &v) < 0) {
		snprintf(why, CONFIG_WHY_MAX,
			 "\"%s\" is not a whole number up to %u", value,
			 UINT_MAX);
		return -EINVAL;
	}
	if (v < k->aux) {
		snprintf(why, CONFIG_WHY_MAX, "must be at least %zu", k->aux);
		return -EINVAL;
	}
	*FIELD(cfg, k, unsigned) = (unsigned)v;
	return 0;
}

static void
uint_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	fprintf(out, " %u", *CFIELD(cfg, k, unsigned));
}

static const struct key_type type_uint = { uint_parse, uint_print };

/* --- account keys --- */

/* What a device sends as USER: printable ASCII without blanks, as POP3
 * clients can type and send it. */
static int
pop3_user_parse(struct config *cfg, const struct key_def *k,
		const char *value, char *why)
{
	size_t i, len = strlen(value);

	if (len == 0 || len > CONFIG_POP3_USER_MAX) {
		snprintf(why, CONFIG_WHY_MAX, "%s", len ? "too long" : "empty");
		return -EINVAL;
	}
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)value[i];

		if (ch <= ' ' || ch >= 0x7f) {
			snprintf(why, CONFIG_WHY_MAX,
				 "blank, control or 8-bit character");
			return -EINVAL;
		}
	}
	return set_string(FIELD(cfg, k, char *), value) < 0 ? oom(why) : 0;
}

static const struct key_type type_pop3_user = { pop3_user_parse,
						string_print };

/* The IMAP login name: any text the IMAP client can quote (it sends
 * literals where needed), but no control characters. */
static int
login_name_parse(struct config *cfg, const struct key_def *k,
		 const char *value, char *why)
{
	size_t i;

	if (value[0] == '\0') {
		snprintf(why, CONFIG_WHY_MAX, "empty");
		return -EINVAL;
	}
	for (i = 0; value[i] != '\0'; i++) {
		if (is_ctl((unsigned char)value[i])) {
			snprintf(why, CONFIG_WHY_MAX, "control character");
			return -EINVAL;
		}
	}
	return set_string(FIELD(cfg, k, char *), value) < 0 ? oom(why) : 0;
}

static const struct key_type type_login_name = { login_name_parse,
						 string_print };

static const struct key_type type_auth = { enum_parse, enum_print };

/* Text without control characters; empty unsets (client ids, scopes,
 * secrets). */
static const struct key_type type_text = { path_parse, string_print };

static const char *const oauth_kinds[] = { "microsoft", "google", "custom" };

static int
oauth_parse(struct config *cfg, const struct key_def *k, const char *value,
	    char *why)
{
	char **field = FIELD(cfg, k, char *);
	size_t i;

	if (value[0] == '\0') {
		free(*field);
		*field = NULL;
		return 0;
	}
	for (i = 0; i < sizeof(oauth_kinds) / sizeof(oauth_kinds[0]); i++) {
		if (strcasecmp(oauth_kinds[i], value) == 0)
			return set_string(field, oauth_kinds[i]) < 0 ? oom(why)
								      : 0;
	}
	snprintf(why, CONFIG_WHY_MAX, "unknown OAuth2 provider \"%s\"", value);
	return -EINVAL;
}

static const struct key_type type_oauth = { oauth_parse, string_print };

/* An endpoint: https://, or http:// to a loopback host (tests, a local
 * relay); empty unsets. */
static int
url_parse(struct config *cfg, const struct key_def *k, const char *value,
	  char *why)
{
	char **field = FIELD(cfg, k, char *);

	if (value[0] == '\0') {
		free(*field);
		*field = NULL;
		return 0;
	}
	switch (http_url_check(value)) {
	case 0:
		return set_string(field, value) < 0 ? oom(why) : 0;
	case -EPERM:
		snprintf(why, CONFIG_WHY_MAX, "plain http:// to a host that "
			 "is not loopback");
		return -EINVAL;
	case -EPROTONOSUPPORT:
		snprintf(why, CONFIG_WHY_MAX, "not an http(s) URL");
		return -EINVAL;
	default:
		snprintf(why, CONFIG_WHY_MAX, "not a URL (or with a user or "
			 "password in it)");
		return -EINVAL;
	}
}

static const struct key_type type_url = { url_parse, string_print };

/* --- the table --- */

#define KEY(sec, nm, ty, field, ...)                                        \
	{ .section = (sec), .name = (nm), .type = &(ty), .offset = OFF(field), \
	  __VA_ARGS__ }

#define ADDRS_EXPECT "a comma list of IPv4:port or [IPv6]:port, or empty"
#define SECONDS_EXPECT "a whole number of seconds"
#define URL_EXPECT "an https:// URL (http:// only to 127.0.0.1 or ::1)"

static const struct key_def keys[] = {
	KEY("listen", "pop3", type_addrs, listen.pop3,
	    .aux = OFF(listen.n_pop3), .expect = ADDRS_EXPECT),
	KEY("listen", "pop3s", type_addrs, listen.pop3s,
	    .aux = OFF(listen.n_pop3s), .expect = ADDRS_EXPECT),
	KEY("listen", "cert", type_path, listen.cert,
	    .expect = "a PEM file path, or empty"),
	KEY("listen", "key", type_path, listen.key,
	    .expect = "a PEM file path, or empty"),
	KEY("listen", "tls_min", type_enum, listen.tls_min,
	    .names = tls_min_names, .expect = "1.0, 1.1, 1.2 or 1.3"),
	KEY("listen", "allow_plaintext_auth", type_enum,
	    listen.allow_plaintext_auth, .names = plaintext_names,
	    .expect = "loopback, always or never"),
	KEY("listen", "proxy_protocol", type_bool, listen.proxy_protocol,
	    .expect = "yes or no"),
	KEY("listen", "trusted_proxies", type_cidrs, listen.trusted_proxies,
	    .expect = "a comma list of addresses or blocks (10.0.0.0/8)"),
	KEY("upstream", "provider", type_provider, upstream.provider,
	    .expect = PROVIDERS_EXPECT),
	KEY("upstream", "host", type_host, upstream.host,
	    .expect = "a host name or an IP address without brackets"),
	KEY("upstream", "port", type_port, upstream.port,
	    .expect = "a port 1-65535"),
	KEY("upstream", "tls", type_enum, upstream.tls,
	    .names = upstream_tls_names,
	    .expect = "implicit, starttls or none"),
	KEY("upstream", "ca_file", type_path, upstream.ca_file,
	    .expect = "a PEM file path, or empty for the system trust store"),
	KEY("upstream", "verify", type_bool, upstream.verify,
	    .expect = "yes or no"),
	KEY("upstream", "timeout", type_uint, upstream.timeout, .aux = 1,
	    .expect = SECONDS_EXPECT ", at least 1"),
	KEY("upstream", "read_ahead", type_uint, upstream.read_ahead,
	    .expect = "a whole number of MB, 0 for none"),
	KEY("maildrop", "folders", type_folders, maildrop.folders,
	    .expect = "a comma list of IMAP folder names"),
	KEY("maildrop", "since", type_since, maildrop.since,
	    .expect = "all, now or a date YYYY-MM-DD"),
	KEY("maildrop", "on_delete", type_enum, maildrop.on_delete,
	    .names = on_delete_names,
	    .expect = "expunge, trash, seen or keep"),
	KEY("maildrop", "trash", type_folder, maildrop.trash,
	    .expect = "an IMAP folder name"),
	KEY("maildrop", "mark_seen", type_bool, maildrop.mark_seen,
	    .expect = "yes or no"),
	KEY("state", "dir", type_dir, state.dir, .expect = "a directory path"),
	KEY("limits", "max_sessions", type_uint, limits.max_sessions,
	    .aux = 1, .expect = "a whole number, at least 1"),
	KEY("limits", "max_per_ip", type_uint, limits.max_per_ip, .aux = 1,
	    .expect = "a whole number, at least 1"),
	KEY("limits", "idle_timeout", type_uint, limits.idle_timeout,
	    .aux = 1, .expect = SECONDS_EXPECT ", at least 1"),
	KEY("limits", "auth_fail_delay", type_uint, limits.auth_fail_delay,
	    .expect = SECONDS_EXPECT),
	KEY("limits", "shutdown_grace", type_uint, limits.shutdown_grace,
	    .expect = SECONDS_EXPECT),
	KEY("log", "level", type_enum, log.level, .names = level_names,
	    .expect = "error, warn, info or debug"),
	KEY("process", "user", type_user, process.user,
	    .expect = "a user name, or empty to keep the starting user"),
	KEY("accounts", "unknown_users", type_enum, accounts.unknown_users,
	    .names = unknown_users_names, .expect = "passthrough or refuse"),
	/* Only in [account NAME] sections, with account_keys below. */
	KEY("account", "pop3_user", type_pop3_user, account.pop3_user,
	    .expect = "the user name the device sends: printable, no blanks, "
		      "at most 128 characters"),
	KEY("account", "upstream_user", type_login_name,
	    account.upstream_user, .expect = "the IMAP login name"),
	KEY("account", "auth", type_auth, account.auth,
	    .names = account_auth_names, .expect = "password or oauth2"),
	KEY("account", "oauth", type_oauth, account.oauth.preset,
	    .expect = "microsoft, google or custom"),
	KEY("account", "oauth_client_id", type_text, account.oauth.client_id,
	    .expect = "the client (application) ID of your app registration"),
	KEY("account", "oauth_client_secret", type_text,
	    account.oauth.client_secret, .secret = true,
	    .expect = "the client secret of your app registration"),
	KEY("account", "oauth_authorization_url", type_url,
	    account.oauth.auth_url, .expect = URL_EXPECT),
	KEY("account", "oauth_device_url", type_url, account.oauth.device_url,
	    .expect = URL_EXPECT),
	KEY("account", "oauth_token_url", type_url, account.oauth.token_url,
	    .expect = URL_EXPECT),
	KEY("account", "oauth_scope", type_text, account.oauth.scope,
	    .expect = "space-separated scopes"),
	KEY("account", "oauth_ca_file", type_path, account.oauth.ca_file,
	    .expect = "a PEM file path, or empty for the system trust store"),
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(N_KEYS <= sizeof(((struct parse_ctx *)0)->key_line) /
			     sizeof(int), "key_line too small");

/* The keys of an [account NAME] section, in the order config_print
 * writes them: the account's own, then those of [upstream] and
 * [maildrop] it may override. */
static const char *const account_keys[][2] = {
	{ "account", "pop3_user" }, { "account", "upstream_user" },
	{ "account", "auth" },
	{ "account", "oauth" }, { "account", "oauth_client_id" },
	{ "account", "oauth_client_secret" },
	{ "account", "oauth_authorization_url" },
	{ "account", "oauth_device_url" }, { "account", "oauth_token_url" },
	{ "account", "oauth_scope" }, { "account", "oauth_ca_file" },
	{ "upstream", "provider" }, { "upstream", "host" },
	{ "upstream", "port" }, { "upstream", "tls" },
	{ "upstream", "ca_file" }, { "upstream", "verify" },
	{ "maildrop", "folders" }, { "maildrop", "since" },
	{ "maildrop", "on_delete" }, { "maildrop", "trash" },
	{ "maildrop", "mark_seen" },
};
#define N_ACCOUNT_KEYS (sizeof(account_keys) / sizeof(account_keys[0]))
#define ACCOUNT_KEYS_EXPECT \
	"pop3_user, upstream_user, auth, oauth, oauth_client_id, " \
	"oauth_client_secret, oauth_authorization_url, oauth_device_url, " \
	"oauth_token_url, oauth_scope, oauth_ca_file, provider, host, port, " \
	"tls, ca_file, verify, folders, since, on_delete, trash or mark_seen"

/*
 * An [account NAME] section while and after it is read: the keys it set
 * (own, which owns their strings, and key_line), and the view built from
 * them and the rest of the file once the whole file is read. view comes
 * first: the pointers in cfg->accounts.list are nodes.
 */
struct acct_node {
	struct config view;
	struct config own;
	int key_line[N_KEYS];
};

static const struct key_def *
key_find(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < N_KEYS; i++) {
		if (strcasecmp(keys[i].section, section) == 0 &&
		    strcasecmp(keys[i].name, name) == 0)
			return &keys[i];
	}
	return NULL;
}

static const char *
section_find(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		if (strlen(sections[i]) == len &&
		    strncasecmp(sections[i], name, len) == 0)
			return sections[i];
	}
	return NULL;
}

/* Lists the keys of a section for "unknown key" messages: "a, b or c". */
static void
section_keys(const char *section, char *out)
{
	size_t i, n = 0, len = 0, done = 0;

	for (i = 0; i < N_KEYS; i++)
		n += strcasecmp(keys[i].section, section) == 0;
	out[0] = '\0';
	for (i = 0; i < N_KEYS; i++) {
		if (strcasecmp(keys[i].section, section) != 0)
			continue;
		done++;
		len += (size_t)snprintf(out + len, CONFIG_WHY_MAX - len,
					"%s%s",
					done == 1 ? "" : done == n ? " or " : ", ",
					keys[i].name);
		if (len >= CONFIG_WHY_MAX)
			return;
	}
}

static int
key_index(const char *section, const char *name)
{
	return (int)(key_find(section, name) - keys);
}

/* --- errors --- */

/* Records the first error only; later ones are consequences or noise. */
__attribute__((format(printf, 3, 4))) static void
ctx_fail(struct parse_ctx *c, int line, const char *fmt, ...)
{
	char msg[CONFIG_ERR_MAX];
	va_list ap;

	if (c->err_line != 0)
		return;
	c->err_line = line > 0 ? line : -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->err == NULL || c->errlen == 0)
		return;
	if (line > 0)
		snprintf(c->err, c->errlen, "%s:%d: %s", c->name, line, msg);
	else
		snprintf(c->err, c->errlen, "%s: %s", c->name, msg);
}

static void
ctx_fail_key(struct parse_ctx *c, int line, const struct key_def *k,
	     const char *why)
{
	ctx_fail(c, line, "[%s] %s: %s (expected %s)", k->section, k->name,
		 why, k->expect);
}

/* --- account sections --- */

/* Whether a section name is "account NAME" (blanks between the words);
 * NAME, not checked, in *name_r. */
static bool
account_section(const char *s, size_t len, const char **name_r,
		size_t *name_len_r)
{
	size_t i = 7;

	if (len <= i || strncasecmp(s, "account", i) != 0 || !is_blank(s[i]))
		return false;
	while (i < len && is_blank(s[i]))
		i++;
	*name_r = s + i;
	*name_len_r = len - i;
	return true;
}

/* Why NAME cannot name an account, or NULL: it names a file under [state]
 * dir and goes into what binds the secrets to the account. */
static const char *
account_name_check(const char *name, size_t len)
{
	size_t i;

	if (len == 0)
		return "no account name";
	if (len > CONFIG_ACCOUNT_NAME_MAX)
		return "account name too long";
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		bool alnum = (ch >= 'a' && ch <= 'z') ||
			     (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');

		if (!alnum && (i == 0 || (ch != '.' && ch != '_' && ch != '-')))
			return "bad account name";
	}
	return NULL;
}

static struct acct_node *
account_node(const struct parse_ctx *c, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < c->n_accounts; i++) {
		struct acct_node *a = (struct acct_node *)c->accounts[i];

		if (strlen(a->own.account.name) == len &&
		    strncasecmp(a->own.account.name, name, len) == 0)
			return a;
	}
	return NULL;
}

static void
account_begin(struct parse_ctx *c, const char *name, size_t len)
{
	const char *bad = account_name_check(name, len);
	struct acct_node *a;

	if (bad != NULL) {
		ctx_fail(c, c->lineno,
			 "[account %.*s]: %s (expected 1-%d letters, digits, "
			 "'.', '_' or '-', starting with a letter or digit)",
			 (int)len, name, bad, CONFIG_ACCOUNT_NAME_MAX);
		return;
	}
	a = account_node(c, name, len);
	if (a != NULL) {
		ctx_fail(c, c->lineno,
			 "[account %.*s]: defined twice, first on line %d "
			 "(expected each account once)", (int)len, name,
			 a->own.account.line);
		return;
	}
	if (c->n_accounts == CONFIG_MAX_ACCOUNTS) {
		ctx_fail(c, c->lineno,
			 "[account %.*s]: more than %d accounts", (int)len,
			 name, CONFIG_MAX_ACCOUNTS);
		return;
	}
	/* The list belongs to the configuration at once, so that
	 * config_free releases whatever was read before an error. */
	if (c->accounts == NULL) {
		c->accounts = calloc(CONFIG_MAX_ACCOUNTS, sizeof(*c->accounts));
		if (c->accounts == NULL) {
			ctx_fail(c, 0, "out of memory");
			return;
		}
		c->cfg->accounts.list =
			(const struct config *const *)c->accounts;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL || (a->own.account.name = strndup(name, len)) == NULL) {
		free(a);
		ctx_fail(c, 0, "out of memory");
		return;
	}
	a->own.account.line = c->lineno;
	c->accounts[c->n_accounts++] = &a->view;
	c->cfg->accounts.n = c->n_accounts;
}

static const struct key_def *
account_key_find(const char *name)
{
	size_t i;

	for (i = 0; i < N_ACCOUNT_KEYS; i++) {
		if (strcasecmp(account_keys[i][1], name) == 0)
			return key_find(account_keys[i][0], name);
	}
	return NULL;
}

static int
account_handler(struct parse_ctx *c, const char *section, const char *name,
		const char *value)
{
	const char *aname;
	size_t alen;
	struct acct_node *a;
	const struct key_def *k;
	char why[CONFIG_WHY_MAX];
	int i;

	account_section(section, strlen(section), &aname, &alen);
	a = account_node(c, aname, alen);
	if (a == NULL)
		return 0;	/* the reader reported it at the [section] line */
	k = account_key_find(name);
	if (k == NULL) {
		ctx_fail(c, c->lineno,
			 "[account %s] %s: unknown key (expected "
			 ACCOUNT_KEYS_EXPECT ")", a->own.account.name, name);
		return 0;
	}
	i = (int)(k - keys);
	if (a->key_line[i] != 0) {
		ctx_fail(c, c->lineno,
			 "[account %s] %s: set twice, first on line %d "
			 "(expected each key once)", a->own.account.name,
			 k->name, a->key_line[i]);
		return 0;
	}
	a->key_line[i] = c->lineno;
	if (k->type->parse(&a->own, k, value, why) < 0) {
		ctx_fail(c, c->lineno, "[account %s] %s: %s (expected %s)",
			 a->own.account.name, k->name, why, k->expect);
		return 0;
	}
	return 1;
}

/* --- inih callbacks --- */

static void
reader_check_section(struct parse_ctx *c, const char *line, size_t len)
{
	const char *close, *name;
	size_t name_len;

	if (len == 0 || line[0] != '[')
		return;
	close = memchr(line, ']', len);
	if (close == NULL)
		return;		/* inih reports the syntax error */
	if (account_section(line + 1, (size_t)(close - line - 1), &name,
			    &name_len)) {
		if (c->err_line == 0)
			account_begin(c, name, name_len);
		return;
	}
	if (section_find(line + 1, (size_t)(close - line - 1)) == NULL)
		ctx_fail(c, c->lineno,
			 "[%.*s]: unknown section (expected " SECTIONS_EXPECT
			 ")", (int)(close - line - 1), line + 1);
}

/*
 * Feeds inih one line per call so that its line count and ours agree, and
 * catches what inih would get wrong: it splits an over-long line into
 * several, stops a line at a NUL, and takes an indented line for the
 * continuation of the previous value; here indentation is just indentation.
 */
static char *
reader_next(char *str, int num, void *stream)
{
	struct parse_ctx *c = stream;
	const char *line = c->pos, *nl;
	size_t len, max = num > 3 ? (size_t)num - 3 : 0;

	if (c->left == 0)
		return NULL;
	nl = memchr(line, '\n', c->left);
	len = nl != NULL ? (size_t)(nl - line) : c->left;
	c->pos += nl != NULL ? len + 1 : len;
	c->left -= nl != NULL ? len + 1 : len;
	c->lineno++;
	if (c->lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
		line += 3;
		len -= 3;
	}
	while (len > 0 && (is_blank(line[0]) || line[0] == '\r')) {
		line++;
		len--;
	}
	while (len > 0 && (is_blank(line[len - 1]) || line[len - 1] == '\r'))
		len--;
	if (memchr(line, '\0', len) != NULL) {
		ctx_fail(c, c->lineno, "NUL byte in line");
		len = 0;
	} else if (len > max) {
		ctx_fail(c, c->lineno,
			 "line too long (expected at most %zu characters)",
			 max);
		len = 0;
	}
	reader_check_section(c, line, len);
	memcpy(str, line, len);
	str[len] = '\0';
	return str;
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *c = user;
	const struct key_def *k;
	char why[CONFIG_WHY_MAX];
	const char *value_unused;
	size_t len_unused;
	int i;

	if (c->err_line != 0)
		return 0;
	if (section[0] == '\0') {
		ctx_fail(c, c->lineno,
			 "%s: key before any section (expected a [section] "
			 "line first)", name);
		return 0;
	}
	if (account_section(section, strlen(section), &value_unused,
			    &len_unused))
		return account_handler(c, section, name, value);
	if (section_find(section, strlen(section)) == NULL)
		return 0;	/* the reader reported it at the [section] line */
	k = key_find(section, name);
	if (k == NULL) {
		section_keys(section, why);
		ctx_fail(c, c->lineno, "[%s] %s: unknown key (expected %s)",
			 section, name, why);
		return 0;
	}
	i = (int)(k - keys);
	if (c->key_line[i] != 0) {
		ctx_fail(c, c->lineno,
			 "[%s] %s: set twice, first on line %d (expected each "
			 "key once)", k->section, k->name, c->key_line[i]);
		return 0;
	}
	c->key_line[i] = c->lineno;
	if (k->type->parse(c->cfg, k, value, why) < 0) {
		ctx_fail_key(c, c->lineno, k, why);
		return 0;
	}
	return 1;
}

/* --- whole-file rules --- */

static void
check_tls_files(struct parse_ctx *c)
{
	struct config *cfg = c->cfg;
	int cert = key_index("listen", "cert"), key = key_index("listen", "key");

	if (cfg->listen.cert != NULL && cfg->listen.key == NULL)
		ctx_fail_key(c, c->key_line[cert], &keys[cert],
			     "set without key");
	else if (cfg->listen.key != NULL && cfg->listen.cert == NULL)
		ctx_fail_key(c, c->key_line[key], &keys[key],
			     "set without cert");
}

static void
check_pop3s(struct parse_ctx *c)
{
	struct config *cfg = c->cfg;
	int i = key_index("listen", "pop3s");
	bool tls = cfg->listen.cert != NULL && cfg->listen.key != NULL;

	cfg->listen.pop3s_set = c->key_line[i] != 0;
	if (cfg->listen.pop3s_set && cfg->listen.n_pop3s > 0 && !tls) {
		ctx_fail(c, c->key_line[i],
			 "[listen] pop3s: implicit TLS needs a certificate "
			 "(expected cert and key in [listen], or pop3s "
			 "empty)");
	} else if (!cfg->listen.pop3s_set && tls) {
		snprintf(cfg->listen.pop3s[0].host, CONFIG_HOST_MAX,
			 "127.0.0.1");
		cfg->listen.pop3s[0].port = 1995;
		cfg->listen.n_pop3s = 1;
	}
}

static void
check_addrs_distinct(struct parse_ctx *c)
{
	const struct config *cfg = c->cfg;
	int pop3 = key_index("listen", "pop3"),
	    pop3s = key_index("listen", "pop3s");
	int line = c->key_line[pop3s] ? c->key_line[pop3s] : c->key_line[pop3];
	size_t i, j;

	for (i = 0; i < cfg->listen.n_pop3s; i++) {
		for (j = 0; j < cfg->listen.n_pop3; j++) {
			if (addr_same(&cfg->listen.pop3s[i],
				      &cfg->listen.pop3[j]))
				ctx_fail(c, line,
					 "[listen] pop3s: %s port %u is also "
					 "in pop3 (expected distinct "
					 "addresses)",
					 cfg->listen.pop3s[i].host,
					 (unsigned)cfg->listen.pop3s[i].port);
		}
	}
}

/* Moving deleted mail into a folder the maildrop reads would bring it back
 * in the next session. */
static bool
trash_is_read(const struct config *cfg)
{
	size_t j;

	if (cfg->maildrop.on_delete != ON_DELETE_TRASH)
		return false;
	for (j = 0; j < cfg->maildrop.n_folders; j++) {
		if (folder_same(cfg->maildrop.folders[j], cfg->maildrop.trash))
			return true;
	}
	return false;
}

#define TRASH_WHY "trash is one of the folders, so deleted mail would come " \
	"back"

static void
check_trash(struct parse_ctx *c)
{
	int i = key_index("maildrop", "on_delete");

	if (trash_is_read(c->cfg))
		ctx_fail_key(c, c->key_line[i], &keys[i], TRASH_WHY);
}

/* --- account views --- */

static bool
account_set(const struct acct_node *a, const char *section, const char *name)
{
	return a->key_line[key_index(section, name)] != 0;
}

/* The line to blame for the trash rule: the first of the keys involved
 * that the section set, else the section's own line. */
static int
account_trash_line(const struct acct_node *a)
{
	static const char *const involved[] = { "on_delete", "folders",
						"trash" };
	int line = 0, l;
	size_t i;

	for (i = 0; i < sizeof(involved) / sizeof(involved[0]); i++) {
		l = a->key_line[key_index("maildrop", involved[i])];
		if (l != 0 && (line == 0 || l < line))
			line = l;
	}
	return line != 0 ? line : a->own.account.line;
}

/* The line of the first oauth_* key the section set, else its own. */
static int
account_oauth_line(const struct acct_node *a)
{
	size_t i;

	for (i = 0; i < N_ACCOUNT_KEYS; i++) {
		int l = a->key_line[key_index(account_keys[i][0],
					      account_keys[i][1])];

		if (l != 0 && strncmp(account_keys[i][1], "oauth", 5) == 0)
			return l;
	}
	return a->own.account.line;
}

/*
 * auth = oauth2 needs a provider (a preset, or custom with its
 * endpoints), a client id, a token endpoint and a way to authorize (a
 * device or an authorization endpoint); oauth_* keys without it are a
 * mistake. Returns whether the section is good.
 */
static bool
account_oauth_finish(struct parse_ctx *c, struct acct_node *a)
{
	const struct config_oauth *o = &a->own.account.oauth;
	const char *name = a->own.account.name, *missing = NULL;
	struct oauth_client cl;

	if (a->own.account.auth != ACCOUNT_AUTH_OAUTH2) {
		if (account_oauth_line(a) == a->own.account.line)
			return true;
		ctx_fail(c, account_oauth_line(a),
			 "[account %s]: oauth keys without auth = oauth2 "
			 "(expected auth = oauth2, or no oauth keys)", name);
		return false;
	}
	if (o->preset == NULL) {
		ctx_fail(c, a->own.account.line,
			 "[account %s]: auth = oauth2 without oauth (expected "
			 "oauth = microsoft, google or custom)", name);
		return false;
	}
	cl = config_oauth_client(&a->own);
	if (cl.client_id == NULL)
		missing = "oauth_client_id (your app registration's client ID)";
	else if (cl.token_url == NULL)
		missing = "oauth_token_url";
	else if (cl.device_url == NULL && cl.auth_url == NULL)
		missing = "oauth_device_url or oauth_authorization_url";
	else if (cl.scope == NULL)
		missing = "oauth_scope";
	if (missing != NULL) {
		ctx_fail(c, a->own.account.line,
			 "[account %s]: oauth = %s needs %s", name, o->preset,
			 missing);
		return false;
	}
	return true;
}

/*
 * Builds an account's view from the file's configuration (complete now)
 * and the section's keys. An account with its own upstream (provider or
 * host) takes nothing of [upstream]'s connection (host, port, tls, ca_file,
 * verify): a private CA or verify = no meant for one server must not
 * follow an account to another. timeout and read_ahead are the file's.
 */
static void
account_finish(struct parse_ctx *c, struct acct_node *a)
{
	struct config *v = &a->view, *o = &a->own;
	const struct config *p = c->cfg;
	const struct provider *pre = NULL;
	const struct oauth_preset *oauth_pre;
	const char *name = o->account.name;

	*v = *p;
	v->refs = 0;
	v->parent = p;
	v->accounts.list = NULL;
	v->accounts.n = 0;
	v->runtime = NULL;
	v->runtime_free = NULL;
	v->account = o->account;
	if (v->account.pop3_user == NULL)
		v->account.pop3_user = o->account.name;
	if (v->account.upstream_user == NULL) {
		ctx_fail(c, a->own.account.line,
			 "[account %s]: no upstream_user (expected "
			 "upstream_user = the IMAP login name)", name);
		return;
	}
	if (!account_oauth_finish(c, a))
		return;
	/* "provider =" (empty) names no preset: the account inherits. An
	 * OAuth2 preset brings its IMAP server (implicit TLS). */
	oauth_pre = v->account.auth == ACCOUNT_AUTH_OAUTH2
			    ? oauth_preset_find(o->account.oauth.preset) : NULL;
	v->account.own_upstream = o->upstream.provider != NULL ||
				  account_set(a, "upstream", "host") ||
				  oauth_pre != NULL;
	if (v->account.own_upstream) {
		pre = provider_find(o->upstream.provider != NULL
					    ? o->upstream.provider
				    : oauth_pre != NULL ? oauth_pre->imap_provider
							: NULL);
		if (pre != NULL && !account_set(a, "upstream", "host") &&
		    set_string(&o->upstream.host, pre->host) < 0) {
			ctx_fail(c, 0, "out of memory");
			return;
		}
		v->upstream.provider = o->upstream.provider;
		v->upstream.host = o->upstream.host;
		v->upstream.port = pre != NULL ? pre->port : 993;
		v->upstream.tls = pre != NULL ? pre->tls : UPSTREAM_TLS_IMPLICIT;
		v->upstream.ca_file = NULL;
		v->upstream.verify = true;
	}
	if (account_set(a, "upstream", "port"))
		v->upstream.port = o->upstream.port;
	if (account_set(a, "upstream", "tls"))
		v->upstream.tls = o->upstream.tls;
	if (account_set(a, "upstream", "ca_file"))
		v->upstream.ca_file = o->upstream.ca_file;
	if (account_set(a, "upstream", "verify"))
		v->upstream.verify = o->upstream.verify;
	if (account_set(a, "maildrop", "folders")) {
		memcpy(v->maildrop.folders, o->maildrop.folders,
		       sizeof(v->maildrop.folders));
		v->maildrop.n_folders = o->maildrop.n_folders;
	}
	if (account_set(a, "maildrop", "since")) {
		v->maildrop.since = o->maildrop.since;
		memcpy(v->maildrop.since_date, o->maildrop.since_date,
		       sizeof(v->maildrop.since_date));
	}
	if (account_set(a, "maildrop", "on_delete"))
		v->maildrop.on_delete = o->maildrop.on_delete;
	if (account_set(a, "maildrop", "trash"))
		v->maildrop.trash = o->maildrop.trash;
	if (account_set(a, "maildrop", "mark_seen"))
		v->maildrop.mark_seen = o->maildrop.mark_seen;
	if (trash_is_read(v))
		ctx_fail(c, account_trash_line(a),
			 "[account %s] on_delete: %s (expected trash outside "
			 "the folders)", name, TRASH_WHY);
}

/* Every account's view; two accounts may not share a pop3_user. */
static void
accounts_finish(struct parse_ctx *c)
{
	size_t i, j;

	for (i = 0; i < c->n_accounts && c->err_line == 0; i++)
		account_finish(c, (struct acct_node *)c->accounts[i]);
	for (i = 0; i < c->n_accounts && c->err_line == 0; i++) {
		const struct config *a = c->accounts[i];

		for (j = 0; j < i; j++) {
			const struct config *b = c->accounts[j];
			const struct acct_node *n = (const void *)a;
			int line = n->key_line[key_index("account",
							 "pop3_user")];

			if (strcasecmp(a->account.pop3_user,
				       b->account.pop3_user) != 0)
				continue;
			ctx_fail(c, line ? line : a->account.line,
				 "[account %s] pop3_user: \"%s\" is account "
				 "%s's already (expected each pop3_user once, "
				 "in any case)", a->account.name,
				 a->account.pop3_user, b->account.name);
			break;
		}
	}
}

/* Fills what the preset knows and the file did not say. */
static void
provider_apply(struct parse_ctx *c)
{
	struct config *cfg = c->cfg;
	const struct provider *p;

	if (cfg->upstream.provider == NULL)
		return;
	p = provider_find(cfg->upstream.provider);
	if (c->key_line[key_index("upstream", "host")] == 0 &&
	    set_string(&cfg->upstream.host, p->host) < 0)
		ctx_fail(c, 0, "out of memory");
	if (c->key_line[key_index("upstream", "port")] == 0)
		cfg->upstream.port = p->port;
	if (c->key_line[key_index("upstream", "tls")] == 0)
		cfg->upstream.tls = p->tls;
}

/* --- load, print, free --- */

static int
config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->listen.pop3[0].host, CONFIG_HOST_MAX, "127.0.0.1");
	cfg->listen.pop3[0].port = 1110;
	cfg->listen.n_pop3 = 1;
	cfg->listen.tls_min = 12;
	cfg->listen.allow_plaintext_auth = PLAINTEXT_AUTH_LOOPBACK;
	cfg->upstream.host = strdup("imap.example.com");
	cfg->upstream.port = 993;
	cfg->upstream.tls = UPSTREAM_TLS_IMPLICIT;
	cfg->upstream.verify = true;
	cfg->upstream.timeout = 30;
	cfg->upstream.read_ahead = 4;
	cfg->maildrop.folders[0] = strdup("INBOX");
	cfg->maildrop.n_folders = 1;
	cfg->maildrop.since = SINCE_ALL;
	cfg->maildrop.on_delete = ON_DELETE_EXPUNGE;
	cfg->maildrop.trash = strdup("Trash");
	cfg->maildrop.mark_seen = false;
	cfg->state.dir = strdup("/var/lib/popbridge");
	cfg->limits.max_sessions = 1000;
	cfg->limits.max_per_ip = 20;
	cfg->limits.idle_timeout = 600;
	cfg->limits.auth_fail_delay = 2;
	cfg->limits.shutdown_grace = 30;
	cfg->log.level = LOG_INFO;
	if (cfg->upstream.host == NULL || cfg->maildrop.folders[0] == NULL ||
	    cfg->maildrop.trash == NULL || cfg->state.dir == NULL)
		return -ENOMEM;
	return 0;
}

static int
config_parse(const char *text, size_t len, const char *name,
	     struct config **cfg_r, char *err, size_t errlen)
{
	struct parse_ctx c = {
		.name = name, .pos = text, .left = len, .err = err,
		.errlen = errlen,
	};
	int r;

	*cfg_r = NULL;
	c.cfg = malloc(sizeof(*c.cfg));
	if (c.cfg == NULL || config_defaults(c.cfg) < 0 ||
	    (c.cfg->path = strdup(name)) == NULL) {
		config_free(&c.cfg);
		ctx_fail(&c, 0, "out of memory");
		return -ENOMEM;
	}
	r = ini_parse_stream(reader_next, &c, handler, &c);
	if (r > 0 && (c.err_line == 0 || r < c.err_line)) {
		/* inih found a line it cannot parse before our first error. */
		c.err_line = 0;
		ctx_fail(&c, r, "syntax error (expected [section], "
				"key = value or a ; comment)");
	} else if (r < 0) {
		ctx_fail(&c, 0, "out of memory");
	}
	if (c.err_line == 0)
		provider_apply(&c);
	if (c.err_line == 0) {
		check_tls_files(&c);
		check_pop3s(&c);
	}
	if (c.err_line == 0)
		check_addrs_distinct(&c);
	if (c.err_line == 0)
		check_trash(&c);
	if (c.err_line == 0)
		accounts_finish(&c);
	if (c.err_line != 0) {
		config_free(&c.cfg);
		return -EINVAL;
	}
	c.cfg->refs = 1;
	*cfg_r = c.cfg;
	return 0;
}

int
config_load_string(const char *text, const char *name,
		   struct config **cfg_r, char *err, size_t errlen)
{
	return config_parse(text, strlen(text), name, cfg_r, err, errlen);
}

/* Reads the whole file: inih then sees the same bytes config_load_string
 * would, and one reader serves both. */
static char *
file_read(const char *path, size_t *len_r, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *text;
	size_t len;
	int e;

	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
			 strerror(errno));
		return NULL;
	}
	text = malloc(CONFIG_FILE_MAX + 1);
	if (text == NULL) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	e = ferror(f) ? errno : 0;
	fclose(f);
	if (e != 0 || len > CONFIG_FILE_MAX) {
		if (e != 0)
			snprintf(err, errlen, "%s: cannot read: %s", path,
				 strerror(e));
		else
			snprintf(err, errlen,
				 "%s: too large (expected at most %d bytes)",
				 path, CONFIG_FILE_MAX);
		free(text);
		return NULL;
	}
	*len_r = len;
	return text;
}

int
config_load(const char *path, struct config **cfg_r, char *err, size_t errlen)
{
	char scratch[1];
	size_t len;
	char *text;
	int r;

	if (err == NULL || errlen == 0) {
		err = scratch;
		errlen = sizeof(scratch);
	}
	*cfg_r = NULL;
	text = file_read(path, &len, err, errlen);
	if (text == NULL)
		return -EIO;
	r = config_parse(text, len, path, cfg_r, err, errlen);
	free(text);
	return r;
}

static void
key_print(const struct config *cfg, const struct key_def *k, FILE *out)
{
	/* Only string keys are secret. */
	if (k->secret && *CFIELD(cfg, k, char *) != NULL) {
		fprintf(out, "; %s = (secret, not shown)\n", k->name);
		return;
	}
	fprintf(out, "%s =", k->name);
	k->type->print(cfg, k, out);
	fputc('\n', out);
}

/* An account as a section of its own with every effective setting, also
 * those it inherits, so that what is printed loads back the same. */
static void
account_print(const struct config *v, FILE *out)
{
	size_t i;

	fprintf(out, "\n[account %s]\n", v->account.name);
	for (i = 0; i < N_ACCOUNT_KEYS; i++) {
		if (v->account.auth != ACCOUNT_AUTH_OAUTH2 &&
		    strncmp(account_keys[i][1], "oauth", 5) == 0)
			continue;
		key_print(v, key_find(account_keys[i][0], account_keys[i][1]),
			  out);
	}
}

void
config_print(const struct config *cfg, FILE *out)
{
	const char *section = NULL;
	size_t i;

	fprintf(out, "; popbridge effective configuration (from %s)\n",
		cfg->path != NULL ? cfg->path : "defaults");
	for (i = 0; i < N_KEYS; i++) {
		const struct key_def *k = &keys[i];

		if (strcmp(k->section, "account") == 0)
			continue;	/* account_print */
		if (section == NULL || strcmp(section, k->section) != 0) {
			fprintf(out, "%s[%s]\n", section ? "\n" : "",
				k->section);
			section = k->section;
		}
		/* "pop3s =" would switch implicit TLS off for good; left unset
		 * it still follows cert and key if they are added later. */
		if (k->offset == OFF(listen.pop3s) && !cfg->listen.pop3s_set &&
		    cfg->listen.n_pop3s == 0) {
			fputs("; pop3s = 127.0.0.1:1995 (the default once cert "
			      "and key are set)\n", out);
			continue;
		}
		key_print(cfg, k, out);
	}
	for (i = 0; i < cfg->accounts.n; i++)
		account_print(cfg->accounts.list[i], out);
}

struct oauth_client
config_oauth_client(const struct config *acct)
{
	const struct config_oauth *o = &acct->account.oauth;
	const struct oauth_client over = {
		.token_url = o->token_url,
		.device_url = o->device_url,
		.auth_url = o->auth_url,
		.client_id = o->client_id,
		.client_secret = o->client_secret,
		.scope = o->scope,
	};

	return oauth_preset_client(oauth_preset_find(o->preset), &over);
}

const struct config *
config_root(const struct config *cfg)
{
	return cfg->parent != NULL ? cfg->parent : cfg;
}

const struct config *
config_account_find(const struct config *cfg, const char *user,
		    size_t user_len)
{
	const struct config *root = config_root(cfg);
	size_t i;

	for (i = 0; i < root->accounts.n; i++) {
		const struct config *v = root->accounts.list[i];

		if (strlen(v->account.pop3_user) == user_len &&
		    strncasecmp(v->account.pop3_user, user, user_len) == 0)
			return v;
	}
	return NULL;
}

const struct config *
config_account_named(const struct config *cfg, const char *name)
{
	const struct config *root = config_root(cfg);
	size_t i;

	for (i = 0; i < root->accounts.n; i++) {
		if (strcasecmp(root->accounts.list[i]->account.name, name) == 0)
			return root->accounts.list[i];
	}
	return NULL;
}

/* The strings a struct config owns: all of them in the file's own, those
 * a section set in an account's own. */
static void
strings_free(struct config *c)
{
	folders_clear(c);
	free(c->path);
	free(c->listen.cert);
	free(c->listen.key);
	free(c->upstream.host);
	free(c->upstream.ca_file);
	free(c->upstream.provider);
	free(c->maildrop.trash);
	free(c->state.dir);
	free(c->process.user);
	free(c->account.name);
	free(c->account.pop3_user);
	free(c->account.upstream_user);
	free(c->account.oauth.preset);
	free(c->account.oauth.client_id);
	if (c->account.oauth.client_secret != NULL)
		OPENSSL_cleanse(c->account.oauth.client_secret,
				strlen(c->account.oauth.client_secret));
	free(c->account.oauth.client_secret);
	free(c->account.oauth.auth_url);
	free(c->account.oauth.device_url);
	free(c->account.oauth.token_url);
	free(c->account.oauth.scope);
	free(c->account.oauth.ca_file);
}

void
config_free(struct config **cfg)
{
	struct config *c = *cfg;

	size_t i;

	if (c == NULL)
		return;
	*cfg = NULL;
	/* A view's references are its parent's. */
	if (c->parent != NULL)
		c = (struct config *)c->parent;
	if (c->refs > 1) {
		c->refs--;
		return;
	}
	if (c->runtime_free != NULL)
		c->runtime_free(c->runtime);
	for (i = 0; i < c->accounts.n; i++) {
		struct acct_node *a = (struct acct_node *)c->accounts.list[i];

		strings_free(&a->own);
		free(a);
	}
	free((void *)c->accounts.list);
	strings_free(c);
	free(c);
}

const struct config *
config_ref(const struct config *cfg)
{
	/* The count is not configuration: it may change under const. */
	((struct config *)config_root(cfg))->refs++;
	return cfg;
}

void
config_unref(const struct config **cfg)
{
	struct config *c = (struct config *)*cfg;

	*cfg = NULL;
	config_free(&c);
}
