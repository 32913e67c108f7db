#ifndef POPBRIDGE_CONFIG_H
#define POPBRIDGE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "oauth/token.h"
#include "util/log.h"

/* How many addresses one listen key may name, and folders one maildrop. */
#define CONFIG_MAX_ADDRS 8
#define CONFIG_MAX_FOLDERS 16
/* Longest IP literal we accept in a listen address, with room for NUL. */
#define CONFIG_HOST_MAX 64
/* Trusted PROXY protocol senders (addresses or CIDR blocks). */
#define CONFIG_MAX_PROXIES 16
/* Room for one error message: "FILE:LINE: [section] key: reason". */
#define CONFIG_ERR_MAX 512
/* [account NAME] sections at most. */
#define CONFIG_MAX_ACCOUNTS 64
/* An account's name: it names the account's file under [state] dir and
 * must fit inih's section buffer (50) after "account ". */
#define CONFIG_ACCOUNT_NAME_MAX 32
/* A pop3_user: what a device sends as USER. */
#define CONFIG_POP3_USER_MAX 128

enum upstream_tls {
	UPSTREAM_TLS_IMPLICIT = 0,
	UPSTREAM_TLS_STARTTLS,
	UPSTREAM_TLS_NONE,
};

enum plaintext_auth {
	PLAINTEXT_AUTH_LOOPBACK = 0,
	PLAINTEXT_AUTH_ALWAYS,
	PLAINTEXT_AUTH_NEVER,
};

enum on_delete {
	ON_DELETE_EXPUNGE = 0,
	ON_DELETE_TRASH,
	ON_DELETE_SEEN,
	ON_DELETE_KEEP,
};

enum since_mode {
	SINCE_ALL = 0,
	SINCE_NOW,
	SINCE_DATE,
};

/* [accounts] unknown_users: what a POP3 name that matches no account
 * gets. */
enum unknown_users {
	UNKNOWN_USERS_PASSTHROUGH = 0,	/* its own credentials, upstream */
	UNKNOWN_USERS_REFUSE,		/* -ERR [AUTH] at PASS */
};

/* How popbridge logs in upstream for an account. */
enum account_auth {
	ACCOUNT_AUTH_PASSWORD = 0,	/* the stored upstream secret */
	ACCOUNT_AUTH_OAUTH2,		/* a bearer token from the refresh
					 * token stored (oauth/) */
};

/* An account's OAuth2 settings (auth = oauth2): a preset ("microsoft",
 * "google") or "custom", and the keys that override or complete it. NULL
 * means not set. */
struct config_oauth {
	char *preset;		/* "microsoft", "google" or "custom" */
	char *client_id;
	char *client_secret;	/* never printed */
	char *auth_url;		/* oauth_authorization_url */
	char *device_url;
	char *token_url;
	char *scope;
	char *ca_file;		/* the token endpoints' CA; NULL: system */
};

/* An IP literal and a port, as written in a listen key ("127.0.0.1:1110",
 * "[::1]:1110"). host holds the literal without brackets ("::1"), ready
 * for uv_ip4_addr/uv_ip6_addr; an IPv6 host is one that contains ':'. */
struct config_addr {
	char host[CONFIG_HOST_MAX];
	uint16_t port;
};

/* An address block: af (AF_INET or AF_INET6), the address in network
 * order (first 4 or 16 bytes) and the prefix length. */
struct config_cidr {
	int af;
	unsigned char addr[16];
	unsigned prefix;
};

/*
 * The effective configuration: defaults from SPEC §1 overlaid with the file.
 * Immutable once config_load() returns; strings are owned by the struct and
 * released by config_free().
 *
 * Each [account NAME] section becomes a view: a struct config of its own
 * whose [upstream] and [maildrop] are the account's and whose other
 * sections are the file's (the same values and strings), with account set
 * and parent naming the configuration it belongs to. A view lives exactly
 * as long as its parent: config_ref and config_unref on a view count on
 * the parent, so code that reads cfg->upstream and cfg->maildrop serves an
 * account when handed its view.
 */
struct config {
	char *path;
	unsigned refs;		/* config_ref, config_free: the one mutable
				 * field (besides runtime, below) */
	/* A view's configuration (see above); NULL in the file's own. */
	const struct config *parent;

	struct {
		struct config_addr pop3[CONFIG_MAX_ADDRS];
		size_t n_pop3;
		struct config_addr pop3s[CONFIG_MAX_ADDRS];
		size_t n_pop3s;
		bool pop3s_set;		/* pop3s was written in the file */
		char *cert;		/* NULL when unset */
		char *key;		/* NULL when unset */
		int tls_min;		/* 10, 11, 12 or 13 */
		enum plaintext_auth allow_plaintext_auth;
		bool proxy_protocol;	/* expect PROXY v1/v2 headers */
		struct config_cidr trusted_proxies[CONFIG_MAX_PROXIES];
		size_t n_trusted_proxies;
	} listen;

	struct {
		char *host;
		uint16_t port;
		enum upstream_tls tls;
		char *ca_file;		/* NULL: the system trust store */
		bool verify;
		unsigned timeout;	/* seconds, > 0 */
		/* MB: the largest next message fetched ahead while a client
		 * retrieves in order; 0 = never. */
		unsigned read_ahead;
		/* The preset named by "provider" ("gmail", ...), NULL when
		 * unset. Its host, port and tls are already in the fields
		 * above, except where the file set those keys itself. */
		char *provider;
	} upstream;

	struct {
		/* Folder names (and trash) are non-empty, without control
		 * characters or '"', and may hold 8-bit bytes: the IMAP
		 * client quotes them or sends them as literals. */
		char *folders[CONFIG_MAX_FOLDERS];
		size_t n_folders;	/* >= 1, no duplicates */
		enum since_mode since;
		char since_date[11];	/* YYYY-MM-DD when since == SINCE_DATE */
		enum on_delete on_delete;
		char *trash;
		bool mark_seen;
	} maildrop;

	struct {
		char *dir;
	} state;

	struct {
		unsigned max_sessions;
		unsigned max_per_ip;
		unsigned idle_timeout;
		unsigned auth_fail_delay;
		unsigned shutdown_grace;
	} limits;

	struct {
		enum log_level level;
	} log;

	struct {
		char *user;		/* drop root to this user; NULL: stay */
	} process;

	struct {
		enum unknown_users unknown_users;
		/* The views of the [account NAME] sections, in file order;
		 * none in a view. */
		const struct config *const *list;
		size_t n;
	} accounts;

	/* A view's account; name NULL in the file's own configuration. */
	struct {
		char *name;		/* the section's NAME */
		char *pop3_user;	/* default: name */
		char *upstream_user;
		enum account_auth auth;
		struct config_oauth oauth;	/* with auth = oauth2 */
		/* The section named a provider or a host: host, port, tls, ca_file
		 * and verify did not come from [upstream]. */
		bool own_upstream;
		int line;		/* where the section starts */
	} account;

	/*
	 * What the daemon keeps next to this configuration for as long as it
	 * lives (the accounts' TLS contexts and file caches,
	 * accounts/account_store.h): attached once, right after loading and
	 * before any session holds the configuration, and released by
	 * runtime_free with the last reference. NULL for none; always NULL
	 * in a view (see config_root).
	 */
	void *runtime;
	void (*runtime_free)(void *runtime);
};

/*
 * Reads and validates the INI file at path. Returns 0 and a new config in
 * *cfg_r (free it with config_free), or a negative code (-EINVAL a bad
 * setting, -EIO the file cannot be read, -ENOMEM), *cfg_r NULL, with a one-line
 * reason in err[0..errlen): "FILE:LINE: [section] key: what is wrong
 * (expected ...)" for the first error in the file, "FILE: ..." when no line
 * applies (cannot open). Section and key names are case-insensitive; a key
 * may appear once. Lines are at most 197 characters (inih's buffer).
 * pop3s defaults to 127.0.0.1:1995 only when cert and key are both set.
 * [upstream] provider fills host, port and tls from a preset after the
 * whole file is read, so keys written in the file win wherever they stand.
 */
int config_load(const char *path, struct config **cfg_r, char *err,
		size_t errlen);

/* The same for INI text held in memory; name stands in for the file name. */
int config_load_string(const char *text, const char *name,
		       struct config **cfg_r, char *err, size_t errlen);

/* Prints the effective settings as INI that config_load reads back to the
 * same settings; a secret key is printed as a comment without its value. */
void config_print(const struct config *cfg, FILE *out);

/* Whether addr (binary, af AF_INET/AF_INET6) is in one of the blocks;
 * IPv4-mapped IPv6 addresses match IPv4 blocks. */
bool config_cidr_match(const struct config_cidr *blocks, size_t n, int af,
		       const unsigned char *addr);

/* The configuration a view belongs to, or cfg itself. */
const struct config *config_root(const struct config *cfg);

/* The view of the account whose pop3_user is user (compared without
 * regard to ASCII case), or NULL. cfg may be a view (its root's accounts
 * are searched). */
const struct config *config_account_find(const struct config *cfg,
					 const char *user, size_t user_len);

/* The view of the account named name (the section's NAME, compared
 * without regard to ASCII case), or NULL. */
const struct config *config_account_named(const struct config *cfg,
					  const char *name);

/* The OAuth client of an account with auth = oauth2: its preset's
 * endpoints and scope with its oauth_* keys over them (strings borrowed
 * from the configuration and the preset). */
struct oauth_client config_oauth_client(const struct config *acct);

/* Frees *cfg and sets it to NULL; NULL is allowed. */
void config_free(struct config **cfg);
/* Another reference to cfg, for a session that keeps the configuration it
 * started with across reloads; each is given back with config_free, and
 * the last frees it. Returns cfg. */
const struct config *config_ref(const struct config *cfg);
/* Gives back a reference from config_ref; *cfg becomes NULL. */
void config_unref(const struct config **cfg);

#endif
