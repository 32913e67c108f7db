#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_fixture.h"
#include "daemon/config.h"

static void
assert_prefix(const char *s, const char *prefix)
{
	cr_assert(strncmp(s, prefix, strlen(prefix)) == 0,
		  "\"%s\" does not start with \"%s\"", s, prefix);
}

static void
assert_contains(const char *s, const char *part)
{
	cr_assert(strstr(s, part) != NULL, "\"%s\" lacks \"%s\"", s, part);
}

static void
assert_defaults(const struct config *cfg)
{
	cr_assert_eq(cfg->listen.n_pop3, 1);
	cr_assert_str_eq(cfg->listen.pop3[0].host, "127.0.0.1");
	cr_assert_eq(cfg->listen.pop3[0].port, 1110);
	cr_assert_eq(cfg->listen.n_pop3s, 0);
	cr_assert_eq(cfg->listen.pop3s_set, false);
	cr_assert_null(cfg->listen.cert);
	cr_assert_null(cfg->listen.key);
	cr_assert_eq(cfg->listen.tls_min, 12);
	cr_assert_eq(cfg->listen.allow_plaintext_auth,
		     PLAINTEXT_AUTH_LOOPBACK);
	cr_assert_str_eq(cfg->upstream.host, "imap.example.com");
	cr_assert_eq(cfg->upstream.port, 993);
	cr_assert_eq(cfg->upstream.tls, UPSTREAM_TLS_IMPLICIT);
	cr_assert_null(cfg->upstream.ca_file);
	cr_assert_eq(cfg->upstream.verify, true);
	cr_assert_eq(cfg->upstream.timeout, 30);
	cr_assert_eq(cfg->upstream.read_ahead, 4);
	cr_assert_eq(cfg->maildrop.n_folders, 1);
	cr_assert_str_eq(cfg->maildrop.folders[0], "INBOX");
	cr_assert_eq(cfg->maildrop.since, SINCE_ALL);
	cr_assert_eq(cfg->maildrop.on_delete, ON_DELETE_EXPUNGE);
	cr_assert_str_eq(cfg->maildrop.trash, "Trash");
	cr_assert_eq(cfg->maildrop.mark_seen, false);
	cr_assert_str_eq(cfg->state.dir, "/var/lib/popbridge");
	cr_assert_eq(cfg->limits.max_sessions, 1000);
	cr_assert_eq(cfg->limits.max_per_ip, 20);
	cr_assert_eq(cfg->limits.idle_timeout, 600);
	cr_assert_eq(cfg->limits.auth_fail_delay, 2);
	cr_assert_eq(cfg->limits.shutdown_grace, 30);
	cr_assert_eq(cfg->log.level, LOG_INFO);
}

Test(config, defaults_from_empty_text)
{
	struct config *cfg = load_ok("");

	assert_defaults(cfg);
	cr_assert_str_eq(cfg->path, "t.ini");
	config_free(&cfg);
	cr_assert_null(cfg);
	config_free(&cfg);
}

Test(config, defaults_from_comments_and_empty_sections)
{
	struct config *cfg = load_ok("; nothing\n# still nothing\n\n[listen]\n"
				     "[upstream]\n[maildrop]\n[state]\n"
				     "[limits]\n[log]\n");

	assert_defaults(cfg);
	config_free(&cfg);
}

Test(config, sample_file_in_etc_loads_with_the_defaults)
{
	const char *path = access("etc/popbridge.ini", R_OK) == 0
				   ? "etc/popbridge.ini"
				   : "../etc/popbridge.ini";
	struct config *cfg = NULL, *def;
	char err[CONFIG_ERR_MAX] = "";
	char *a, *b;

	cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), 0, "%s", err);
	assert_defaults(cfg);
	def = load_ok("");
	a = print_to_string(cfg);
	b = print_to_string(def);
	cr_assert_str_eq(body(a), body(b));
	free(a);
	free(b);
	config_free(&cfg);
	config_free(&def);
}

Test(config, every_key_set)
{
	struct config *cfg = load_ok(
		"[listen]\n"
		"pop3 = 0.0.0.0:110, [::]:110 , [::1]:1110\n"
		"pop3s = 192.0.2.1:995,[2001:db8::1]:995\n"
		"cert = /etc/ssl/fullchain.pem\n"
		"key = /etc/ssl/privkey.pem\n"
		"tls_min = 1.0\n"
		"allow_plaintext_auth = always\n"
		"[upstream]\n"
		"host = mail.example.org\n"
		"port = 143\n"
		"tls = starttls\n"
		"ca_file = /etc/ssl/ca.pem\n"
		"verify = no\n"
		"timeout = 5\n"
		"read_ahead = 0\n"
		"[maildrop]\n"
		"folders = INBOX, Junk ,Archive/2024\n"
		"since = 2024-02-29\n"
		"on_delete = trash\n"
		"trash = Deleted Items\n"
		"mark_seen = yes\n"
		"[state]\n"
		"dir = /srv/popbridge\n"
		"[limits]\n"
		"max_sessions = 1\n"
		"max_per_ip = 1\n"
		"idle_timeout = 1\n"
		"auth_fail_delay = 0\n"
		"shutdown_grace = 0\n"
		"[log]\n"
		"level = debug\n");

	cr_assert_eq(cfg->listen.n_pop3, 3);
	cr_assert_str_eq(cfg->listen.pop3[0].host, "0.0.0.0");
	cr_assert_eq(cfg->listen.pop3[0].port, 110);
	cr_assert_str_eq(cfg->listen.pop3[1].host, "::");
	cr_assert_str_eq(cfg->listen.pop3[2].host, "::1");
	cr_assert_eq(cfg->listen.pop3[2].port, 1110);
	cr_assert_eq(cfg->listen.n_pop3s, 2);
	cr_assert_eq(cfg->listen.pop3s_set, true);
	cr_assert_str_eq(cfg->listen.pop3s[1].host, "2001:db8::1");
	cr_assert_str_eq(cfg->listen.cert, "/etc/ssl/fullchain.pem");
	cr_assert_str_eq(cfg->listen.key, "/etc/ssl/privkey.pem");
	cr_assert_eq(cfg->listen.tls_min, 10);
	cr_assert_eq(cfg->listen.allow_plaintext_auth, PLAINTEXT_AUTH_ALWAYS);
	cr_assert_str_eq(cfg->upstream.host, "mail.example.org");
	cr_assert_eq(cfg->upstream.port, 143);
	cr_assert_eq(cfg->upstream.tls, UPSTREAM_TLS_STARTTLS);
	cr_assert_str_eq(cfg->upstream.ca_file, "/etc/ssl/ca.pem");
	cr_assert_eq(cfg->upstream.verify, false);
	cr_assert_eq(cfg->upstream.timeout, 5);
	cr_assert_eq(cfg->upstream.read_ahead, 0);
	cr_assert_eq(cfg->maildrop.n_folders, 3);
	cr_assert_str_eq(cfg->maildrop.folders[0], "INBOX");
	cr_assert_str_eq(cfg->maildrop.folders[1], "Junk");
	cr_assert_str_eq(cfg->maildrop.folders[2], "Archive/2024");
	cr_assert_eq(cfg->maildrop.since, SINCE_DATE);
	cr_assert_str_eq(cfg->maildrop.since_date, "2024-02-29");
	cr_assert_eq(cfg->maildrop.on_delete, ON_DELETE_TRASH);
	cr_assert_str_eq(cfg->maildrop.trash, "Deleted Items");
	cr_assert_eq(cfg->maildrop.mark_seen, true);
	cr_assert_str_eq(cfg->state.dir, "/srv/popbridge");
	cr_assert_eq(cfg->limits.max_sessions, 1);
	cr_assert_eq(cfg->limits.max_per_ip, 1);
	cr_assert_eq(cfg->limits.idle_timeout, 1);
	cr_assert_eq(cfg->limits.auth_fail_delay, 0);
	cr_assert_eq(cfg->limits.shutdown_grace, 0);
	cr_assert_eq(cfg->log.level, LOG_DEBUG);
	config_free(&cfg);
}

struct good_case {
	const char *text;
	size_t offset;		/* of an int-sized field in struct config */
	int want;
};

#define GOOD(text, field, want) \
	{ text, offsetof(struct config, field), (int)(want) }

static const struct good_case enum_cases[] = {
	GOOD("[listen]\ntls_min = 1.1", listen.tls_min, 11),
	GOOD("[listen]\ntls_min = 1.2", listen.tls_min, 12),
	GOOD("[listen]\ntls_min = 1.3", listen.tls_min, 13),
	GOOD("[listen]\nallow_plaintext_auth = never",
	     listen.allow_plaintext_auth, PLAINTEXT_AUTH_NEVER),
	GOOD("[listen]\nallow_plaintext_auth = LOOPBACK",
	     listen.allow_plaintext_auth, PLAINTEXT_AUTH_LOOPBACK),
	GOOD("[upstream]\ntls = none", upstream.tls, UPSTREAM_TLS_NONE),
	GOOD("[upstream]\ntls = Implicit", upstream.tls,
	     UPSTREAM_TLS_IMPLICIT),
	GOOD("[maildrop]\non_delete = seen", maildrop.on_delete,
	     ON_DELETE_SEEN),
	GOOD("[maildrop]\non_delete = keep", maildrop.on_delete,
	     ON_DELETE_KEEP),
	GOOD("[maildrop]\nsince = now", maildrop.since, SINCE_NOW),
	GOOD("[maildrop]\nsince = ALL", maildrop.since, SINCE_ALL),
	GOOD("[log]\nlevel = error", log.level, LOG_ERROR),
	GOOD("[log]\nlevel = warn", log.level, LOG_WARN),
	GOOD("[log]\nlevel = info", log.level, LOG_INFO),
	GOOD("[log]\nlevel = DEBUG", log.level, LOG_DEBUG),
};

Test(config, enum_values)
{
	size_t i;

	for (i = 0; i < sizeof(enum_cases) / sizeof(enum_cases[0]); i++) {
		struct config *cfg = load_ok(enum_cases[i].text);
		int got;

		memcpy(&got, (char *)cfg + enum_cases[i].offset, sizeof(got));
		cr_assert_eq(got, enum_cases[i].want, "%s: got %d",
			     enum_cases[i].text, got);
		config_free(&cfg);
	}
}

Test(config, booleans)
{
	static const char *const yes[] = { "yes", "true", "1", "on", "YES",
					   "True" };
	static const char *const no[] = { "no", "false", "0", "off", "No" };
	char text[128];
	struct config *cfg;
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		snprintf(text, sizeof(text),
			 "[upstream]\nverify = %s\n[maildrop]\nmark_seen = %s\n",
			 no[i % 5], yes[i]);
		cfg = load_ok(text);
		cr_assert_eq(cfg->upstream.verify, false, "%s", text);
		cr_assert_eq(cfg->maildrop.mark_seen, true, "%s", text);
		config_free(&cfg);
	}
}

Test(config, numbers_at_their_bounds)
{
	struct config *cfg = load_ok("[upstream]\nport = 65535\n"
				     "timeout = 4294967295\n[limits]\n"
				     "max_sessions = 007\n"
				     "idle_timeout = 10\n");

	cr_assert_eq(cfg->upstream.port, 65535);
	cr_assert_eq(cfg->upstream.timeout, 4294967295u);
	cr_assert_eq(cfg->limits.max_sessions, 7);
	cr_assert_eq(cfg->limits.idle_timeout, 10);
	config_free(&cfg);
	cfg = load_ok("[upstream]\nport = 1\n");
	cr_assert_eq(cfg->upstream.port, 1);
	config_free(&cfg);
}

Test(config, inline_comments)
{
	struct config *cfg = load_ok(
		"[listen] ; the listeners\n"
		"pop3 = 127.0.0.1:1110 ; comment\n"
		"[upstream]\n"
		"host = imap.example.net\t; tab before the comment\n"
		"ca_file = /a;b\n"
		"[maildrop]\n"
		"folders = INBOX # not a comment\n");

	cr_assert_eq(cfg->listen.n_pop3, 1);
	cr_assert_eq(cfg->listen.pop3[0].port, 1110);
	cr_assert_str_eq(cfg->upstream.host, "imap.example.net");
	cr_assert_str_eq(cfg->upstream.ca_file, "/a;b");
	cr_assert_str_eq(cfg->maildrop.folders[0], "INBOX # not a comment");
	config_free(&cfg);
}

Test(config, layout_tolerance)
{
	/* BOM, CRLF line ends, indentation, case of names, no final LF. */
	struct config *cfg = load_ok("\xef\xbb\xbf[Listen]\r\n"
				     "  POP3 = 127.0.0.1:2110\r\n"
				     "\tTLS_min=1.3\r\n"
				     "[upstream]\r\n"
				     "    port: 1993");

	cr_assert_eq(cfg->listen.pop3[0].port, 2110);
	cr_assert_eq(cfg->listen.tls_min, 13);
	cr_assert_eq(cfg->upstream.port, 1993);
	config_free(&cfg);
}

Test(config, empty_listener_lists)
{
	struct config *cfg = load_ok("[listen]\npop3 =\npop3s =\n");

	cr_assert_eq(cfg->listen.n_pop3, 0);
	cr_assert_eq(cfg->listen.n_pop3s, 0);
	cr_assert_eq(cfg->listen.pop3s_set, true);
	config_free(&cfg);
}

Test(config, max_addresses)
{
	struct config *cfg = load_ok(
		"[listen]\npop3 = 127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, "
		"127.0.0.1:4, 127.0.0.1:5, 127.0.0.1:6, 127.0.0.1:7, "
		"127.0.0.1:8\n");

	cr_assert_eq(cfg->listen.n_pop3, CONFIG_MAX_ADDRS);
	cr_assert_eq(cfg->listen.pop3[7].port, 8);
	config_free(&cfg);
	assert_prefix(load_bad("[listen]\npop3 = 127.0.0.1:1, 127.0.0.1:2, "
			       "127.0.0.1:3, 127.0.0.1:4, 127.0.0.1:5, "
			       "127.0.0.1:6, 127.0.0.1:7, 127.0.0.1:8, "
			       "127.0.0.1:9\n"),
		      "t.ini:2: [listen] pop3: more than 8 addresses");
}

Test(config, pop3s_default_needs_cert_and_key)
{
	struct config *cfg = load_ok("[listen]\ncert = /c.pem\nkey = /k.pem\n");

	cr_assert_eq(cfg->listen.pop3s_set, false);
	cr_assert_eq(cfg->listen.n_pop3s, 1);
	cr_assert_str_eq(cfg->listen.pop3s[0].host, "127.0.0.1");
	cr_assert_eq(cfg->listen.pop3s[0].port, 1995);
	config_free(&cfg);

	cfg = load_ok("[listen]\ncert = /c.pem\nkey = /k.pem\npop3s =\n");
	cr_assert_eq(cfg->listen.n_pop3s, 0);
	config_free(&cfg);

	cfg = load_ok("[listen]\ncert =\nkey =\n");
	cr_assert_eq(cfg->listen.n_pop3s, 0);
	cr_assert_null(cfg->listen.cert);
	config_free(&cfg);
}

Test(config, tls_pairing_errors_name_the_line)
{
	cr_assert_str_eq(
		load_bad("[listen]\n\npop3s = 127.0.0.1:995\n"),
		"t.ini:3: [listen] pop3s: implicit TLS needs a certificate "
		"(expected cert and key in [listen], or pop3s empty)");
	cr_assert_str_eq(load_bad("[listen]\ncert = /c.pem\n"),
			 "t.ini:2: [listen] cert: set without key (expected a "
			 "PEM file path, or empty)");
	cr_assert_str_eq(load_bad("[listen]\npop3 =\n\nkey = /k.pem\n"),
			 "t.ini:4: [listen] key: set without cert (expected a "
			 "PEM file path, or empty)");
	/* A syntax error earlier in the file wins over the pairing rule. */
	assert_prefix(load_bad("[listen]\ncert = /c.pem\nnonsense\n"),
		      "t.ini:3: syntax error");
}

Test(config, pop3_and_pop3s_addresses_must_differ)
{
	assert_prefix(load_bad("[listen]\npop3 = [::1]:995\ncert = /c\n"
			       "key = /k\npop3s = [0::1]:995\n"),
		      "t.ini:5: [listen] pop3s: 0::1 port 995 is also in pop3");
	assert_prefix(load_bad("[listen]\npop3 = 127.0.0.1:1995\ncert = /c\n"
			       "key = /k\n"),
		      "t.ini:2: [listen] pop3s: 127.0.0.1 port 1995");
}

struct bad_case {
	const char *section;
	const char *key;
	const char *value;
	const char *why;	/* part of the message after "key: " */
};

static const struct bad_case bad_values[] = {
	{ "listen", "pop3", "localhost:110", "\"localhost\" is not an IPv4" },
	{ "listen", "pop3", "127.0.0.1", "bad address" },
	{ "listen", "pop3", "127.0.0.1:", "bad port" },
	{ "listen", "pop3", "127.0.0.1:0", "bad port" },
	{ "listen", "pop3", "127.0.0.1:65536", "bad port" },
	{ "listen", "pop3", "127.0.0.1:-1", "bad port" },
	{ "listen", "pop3", "127.0.0.1:+1", "bad port" },
	{ "listen", "pop3", "127.0.0.1:11x", "bad port" },
	{ "listen", "pop3", "127.0.0.1 :110", "is not an IPv4" },
	{ "listen", "pop3", "256.0.0.1:110", "is not an IPv4" },
	{ "listen", "pop3", "::1:110", "\"::1\" is not an IPv4" },
	{ "listen", "pop3", "[::1]110", "bad address" },
	{ "listen", "pop3", "[::1]", "bad address" },
	{ "listen", "pop3", "[127.0.0.1]:110", "is not an IPv6" },
	{ "listen", "pop3", "[]:110", "bad address" },
	{ "listen", "pop3", "[fe80::1%eth0]:110", "is not an IPv6" },
	{ "listen", "pop3", "127.0.0.1:110,", "empty item" },
	{ "listen", "pop3", ",127.0.0.1:110", "empty item" },
	{ "listen", "pop3", "127.0.0.1:110,,127.0.0.1:111", "empty item" },
	{ "listen", "pop3", "127.0.0.1:110, 127.0.0.1:110", "listed twice" },
	{ "listen", "pop3s", "x", "bad address" },
	{ "listen", "cert", "/a\x01", "control character" },
	{ "listen", "tls_min", "1.4", "bad value \"1.4\"" },
	{ "listen", "tls_min", "12", "bad value" },
	{ "listen", "tls_min", "", "bad value" },
	{ "listen", "allow_plaintext_auth", "sometimes", "bad value" },
	{ "upstream", "host", "", "empty" },
	{ "upstream", "host", "[::1]", "bad character" },
	{ "upstream", "host", "a b", "bad character" },
	{ "upstream", "port", "0", "bad port" },
	{ "upstream", "port", "65536", "bad port" },
	{ "upstream", "port", "imaps", "bad port" },
	{ "upstream", "port", "", "bad port" },
	{ "upstream", "tls", "ssl", "bad value" },
	{ "upstream", "verify", "maybe", "bad value" },
	{ "upstream", "verify", "", "bad value" },
	{ "upstream", "timeout", "0", "must be at least 1" },
	{ "upstream", "timeout", "-1", "is not a whole number" },
	{ "upstream", "timeout", "+1", "is not a whole number" },
	{ "upstream", "timeout", "1a", "is not a whole number" },
	{ "upstream", "read_ahead", "16M", "is not a whole number" },
	{ "upstream", "timeout", "1 0", "is not a whole number" },
	{ "upstream", "timeout", "4294967296", "is not a whole number" },
	{ "upstream", "timeout", "99999999999999999999999",
	  "is not a whole number" },
	{ "upstream", "timeout", "", "is not a whole number" },
	{ "maildrop", "folders", "", "no folder" },
	{ "maildrop", "folders", "INBOX,", "empty folder name" },
	{ "maildrop", "folders", "INBOX, , Junk", "empty folder name" },
	{ "maildrop", "folders", "INBOX, Junk, INBOX", "listed twice" },
	{ "maildrop", "folders", "INBOX, inbox", "listed twice" },
	{ "maildrop", "folders", "My \"Mail\"", "'\"' in folder name" },
	{ "maildrop", "folders", "a\tb", "control character" },
	{ "maildrop", "folders",
	  "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16 folders" },
	{ "maildrop", "since", "yesterday", "bad value" },
	{ "maildrop", "since", "2023-02-29", "no such date" },
	{ "maildrop", "since", "2100-02-29", "no such date" },
	{ "maildrop", "since", "2024-13-01", "no such date" },
	{ "maildrop", "since", "2024-04-31", "no such date" },
	{ "maildrop", "since", "2024-00-10", "no such date" },
	{ "maildrop", "since", "2024-01-00", "no such date" },
	{ "maildrop", "since", "0000-01-01", "no such date" },
	{ "maildrop", "since", "2024-1-01", "bad value" },
	{ "maildrop", "since", "2024/01/01", "bad value" },
	{ "maildrop", "since", "2024-01-01x", "bad value" },
	{ "maildrop", "since", "+024-01-01", "bad value" },
	{ "maildrop", "on_delete", "delete", "bad value" },
	{ "maildrop", "trash", "", "empty folder name" },
	{ "maildrop", "trash", "\"", "'\"' in folder name" },
	{ "maildrop", "mark_seen", "2", "bad value" },
	{ "state", "dir", "", "empty" },
	{ "limits", "max_sessions", "0", "must be at least 1" },
	{ "limits", "max_per_ip", "0", "must be at least 1" },
	{ "limits", "idle_timeout", "0", "must be at least 1" },
	{ "limits", "auth_fail_delay", "-2", "is not a whole number" },
	{ "limits", "shutdown_grace", "30s", "is not a whole number" },
	{ "log", "level", "verbose", "bad value" },
	{ "log", "level", "warning", "bad value" },
};

Test(config, bad_values_name_file_line_section_and_key)
{
	size_t i;

	for (i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
		const struct bad_case *b = &bad_values[i];
		char text[256], prefix[128];
		const char *err;

		/* Lines 1-3 are fine, so the line number is really checked. */
		snprintf(text, sizeof(text),
			 "; test %zu\n[%s]\n\n%s = %s\n[log]\nlevel = info\n", i,
			 b->section, b->key, b->value);
		snprintf(prefix, sizeof(prefix), "t.ini:4: [%s] %s: ",
			 b->section, b->key);
		err = load_bad(text);
		assert_prefix(err, prefix);
		assert_contains(err + strlen(prefix), b->why);
		assert_contains(err, " (expected ");
	}
}

Test(config, exact_message_format)
{
	cr_assert_str_eq(load_bad("[listen]\ntls_min = 1.4\n"),
			 "t.ini:2: [listen] tls_min: bad value \"1.4\" "
			 "(expected 1.0, 1.1, 1.2 or 1.3)");
	cr_assert_str_eq(load_bad("[limits]\n\n\nidle_timeout = 0 ; off?\n"),
			 "t.ini:4: [limits] idle_timeout: must be at least 1 "
			 "(expected a whole number of seconds, at least 1)");
}

Test(config, unknown_sections_and_keys)
{
	cr_assert_str_eq(load_bad("[listen]\n[lisen]\npop3 = 127.0.0.1:1\n"),
			 "t.ini:2: [lisen]: unknown section (expected listen, "
			 "upstream, maildrop, state, limits, log, process, "
			 "accounts or account NAME)");
	/* An unknown section with no keys is still an error. */
	assert_prefix(load_bad("[log]\nlevel = info\n\n[extra]\n"),
		      "t.ini:4: [extra]: unknown section");
	cr_assert_str_eq(load_bad("[listen]\npop3 = 127.0.0.1:1\nport = 1\n"),
			 "t.ini:3: [listen] port: unknown key (expected pop3, "
			 "pop3s, cert, key, tls_min, allow_plaintext_auth, proxy_protocol "
		     "or trusted_proxies)");
	cr_assert_str_eq(load_bad("[log]\nlevel = info\nfile = /x\n"),
			 "t.ini:3: [log] file: unknown key (expected level)");
	assert_prefix(load_bad("pop3 = 127.0.0.1:1\n[listen]\n"),
		      "t.ini:1: pop3: key before any section");
}

Test(config, first_error_wins)
{
	assert_prefix(load_bad("[log]\nlevel = loud\nlevel = quiet\n"
			       "[nowhere]\n"),
		      "t.ini:2: [log] level: bad value \"loud\"");
	assert_prefix(load_bad("[log]\nlevel\n[log]\nlevel = loud\n"),
		      "t.ini:2: syntax error");
	assert_prefix(load_bad("[log]\nlevel = loud\n[log\n"),
		      "t.ini:2: [log] level");
	assert_prefix(load_bad("[upstream\nhost = x\n"),
		      "t.ini:1: syntax error");
}

Test(config, duplicate_keys)
{
	cr_assert_str_eq(load_bad("[log]\nlevel = info\n[listen]\n[log]\n"
				  "level = debug\n"),
			 "t.ini:5: [log] level: set twice, first on line 2 "
			 "(expected each key once)");
}

Test(config, indented_line_is_not_a_continuation)
{
	/* inih would take "  Junk" as more of folders; we do not. */
	assert_prefix(load_bad("[maildrop]\nfolders = INBOX,\n  Junk\n"),
		      "t.ini:2: [maildrop] folders: empty folder name");
	assert_prefix(load_bad("[maildrop]\nfolders = INBOX\n  Junk\n"),
		      "t.ini:3: syntax error");
}

Test(config, long_lines)
{
	char text[512], err[CONFIG_ERR_MAX];
	struct config *cfg;
	int n;

	/* The longest line inih can hold: 197 characters. */
	n = snprintf(text, sizeof(text), "[state]\ndir = /");
	memset(text + n, 'd', 197 - 7);
	strcpy(text + n + 197 - 7, "\n[log]\nlevel = warn\n");
	cr_assert_eq(config_load_string(text, "t.ini", &cfg, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(strlen(cfg->state.dir), 197 - 6);
	cr_assert_eq(cfg->log.level, LOG_WARN);
	config_free(&cfg);

	/* One more is refused on its own line, and lines after it keep their
	 * numbers. */
	n = snprintf(text, sizeof(text), "[state]\ndir = /");
	memset(text + n, 'd', 197 - 6);
	strcpy(text + n + 197 - 6, "\n[log]\nlevel = warn\n");
	cr_assert_str_eq(load_bad(text), "t.ini:2: line too long (expected "
					 "at most 197 characters)");
	n = snprintf(text, sizeof(text), "; ");
	memset(text + n, 'c', 300);
	strcpy(text + n + 300, "\n[log]\nlevel = loud\n");
	cr_assert_str_eq(load_bad(text), "t.ini:1: line too long (expected "
					 "at most 197 characters)");
}

Test(config, folders_are_trimmed_and_inbox_is_special)
{
	struct config *cfg = load_ok("[maildrop]\nfolders =  Junk ,INBOX,"
				     "\tSpam Folder\t, inbox.sub\n"
				     "on_delete = trash\ntrash = trash\n");

	cr_assert_eq(cfg->maildrop.n_folders, 4);
	cr_assert_str_eq(cfg->maildrop.folders[0], "Junk");
	cr_assert_str_eq(cfg->maildrop.folders[1], "INBOX");
	cr_assert_str_eq(cfg->maildrop.folders[2], "Spam Folder");
	cr_assert_str_eq(cfg->maildrop.folders[3], "inbox.sub");
	config_free(&cfg);
	cfg = load_ok("[maildrop]\nfolders = Entwürfe, Müll\n");
	cr_assert_str_eq(cfg->maildrop.folders[1], "Müll");
	config_free(&cfg);
}

Test(config, trash_inside_the_maildrop_is_refused)
{
	struct config *cfg;

	assert_prefix(load_bad("[maildrop]\nfolders = INBOX, Trash\n"
			       "on_delete = trash\n"),
		      "t.ini:3: [maildrop] on_delete: trash is one of the "
		      "folders");
	assert_prefix(load_bad("[maildrop]\non_delete = trash\n"
			       "trash = inbox\n"),
		      "t.ini:2: [maildrop] on_delete: trash is one of");
	/* Only on_delete = trash uses the trash folder. */
	cfg = load_ok("[maildrop]\nfolders = INBOX, Trash\non_delete = keep\n");
	config_free(&cfg);
}

static void
assert_round_trip(const char *text)
{
	struct config *a = load_ok(text), *b;
	char *pa = print_to_string(a), *pb;

	b = load_ok(pa);
	pb = print_to_string(b);
	cr_assert_str_eq(body(pa), body(pb), "input:\n%s", text);
	cr_assert_eq(a->listen.n_pop3s, b->listen.n_pop3s);
	cr_assert_eq(a->maildrop.n_folders, b->maildrop.n_folders);
	free(pa);
	free(pb);
	config_free(&a);
	config_free(&b);
}

Test(config, print_round_trips)
{
	assert_round_trip("");
	assert_round_trip("[listen]\ncert = /c\nkey = /k\n");
	assert_round_trip("[listen]\npop3 =\ncert = /c\nkey = /k\npop3s =\n");
	assert_round_trip(
		"[listen]\npop3 = 0.0.0.0:110, [::]:110\n"
		"pop3s = [2001:db8::1]:995\ncert =;odd name\nkey = /k k\n"
		"tls_min = 1.3\nallow_plaintext_auth = never\n"
		"[upstream]\nhost = 192.0.2.7\nport = 143\ntls = none\n"
		"ca_file = /ca.pem\nverify = off\ntimeout = 1\n"
		"[maildrop]\nfolders = INBOX,;semi, a b\nsince = now\n"
		"on_delete = seen\ntrash = Bin\nmark_seen = on\n"
		"[state]\ndir = rel/dir\n"
		"[limits]\nmax_sessions = 4294967295\nmax_per_ip = 3\n"
		"idle_timeout = 7\nauth_fail_delay = 0\nshutdown_grace = 0\n"
		"[log]\nlevel = error\n");
	assert_round_trip("[maildrop]\nsince = 2000-02-29\n");
}

Test(config, print_shows_the_effective_values)
{
	struct config *cfg = load_ok("[listen]\ncert = /c.pem\nkey = /k.pem\n"
				     "pop3 = [::1]:110, 127.0.0.1:110\n"
				     "[maildrop]\nfolders = INBOX, Junk\n");
	char *p = print_to_string(cfg);

	assert_contains(p, "[listen]\npop3 = [::1]:110, 127.0.0.1:110\n"
			   "pop3s = 127.0.0.1:1995\ncert = /c.pem\n"
			   "key = /k.pem\ntls_min = 1.2\n");
	assert_contains(p, "\nfolders = INBOX, Junk\n");
	assert_contains(p, "\nverify = yes\n");
	assert_contains(p, "\nca_file =\n");
	assert_contains(p, "\n[log]\nlevel = info\n");
	free(p);
	config_free(&cfg);

	cfg = load_ok("");
	p = print_to_string(cfg);
	assert_contains(p, "\n; pop3s = 127.0.0.1:1995 (the default once cert "
			   "and key are set)\ncert =\n");
	free(p);
	config_free(&cfg);
	cfg = load_ok("[listen]\npop3s =\n");
	p = print_to_string(cfg);
	assert_contains(p, "\npop3s =\ncert =\n");
	free(p);
	config_free(&cfg);
}

static char *
temp_file(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/popbridge-test-XXXXXX");
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

Test(config, load_from_file)
{
	char *path = temp_file("[upstream]\nhost = imap.test ; here\n"
			       "port = 1143\n");
	struct config *cfg = NULL;
	char err[CONFIG_ERR_MAX] = "";

	cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg->path, path);
	cr_assert_str_eq(cfg->upstream.host, "imap.test");
	cr_assert_eq(cfg->upstream.port, 1143);
	config_free(&cfg);
	unlink(path);
}

Test(config, load_from_file_errors)
{
	char *path = temp_file("[upstream]\n\nport = 99999\n");
	struct config *cfg = NULL;
	char err[CONFIG_ERR_MAX], want[CONFIG_ERR_MAX];

	cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	cr_assert_null(cfg);
	snprintf(want, sizeof(want),
		 "%s:3: [upstream] port: bad port \"99999\" (expected a port "
		 "1-65535)", path);
	cr_assert_str_eq(err, want);
	unlink(path);

	cr_assert_eq(config_load("/nonexistent/popbridge.ini", &cfg, err,
				 sizeof(err)), -EIO);
	cr_assert_str_eq(err, "/nonexistent/popbridge.ini: cannot open: No "
			      "such file or directory");
	cr_assert_eq(config_load("/tmp", &cfg, err, sizeof(err)), -EIO);
	cr_assert_str_eq(err, "/tmp: cannot read: Is a directory");
}

Test(config, nul_byte_in_file)
{
	static const char text[] = "[log]\nlevel = info\0x\n";
	char path[] = "/tmp/popbridge-test-XXXXXX";
	struct config *cfg = NULL;
	char err[CONFIG_ERR_MAX], want[CONFIG_ERR_MAX];
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, sizeof(text) - 1),
		     (ssize_t)sizeof(text) - 1);
	close(fd);
	cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
	cr_assert_str_eq(err, want);
	unlink(path);
}

Test(config, small_or_missing_error_buffer)
{
	struct config *cfg = NULL;
	char err[12];

	cr_assert_eq(config_load_string("[x]\n", "t.ini", &cfg, err,
					sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.ini:1: [x");
	cr_assert_eq(config_load_string("[x]\n", "t.ini", &cfg, NULL, 0),
		     -EINVAL);
	cr_assert_eq(config_load("/nonexistent", &cfg, NULL, 0), -EIO);
	cr_assert_null(cfg);
}

struct preset_case {
	const char *provider;
	const char *host;
};

static const struct preset_case presets[] = {
	{ "gmail", "imap.gmail.com" },
	{ "outlook", "outlook.office365.com" },
	{ "yahoo", "imap.mail.yahoo.com" },
	{ "icloud", "imap.mail.me.com" },
	{ "fastmail", "imap.fastmail.com" },
	{ "zoho", "imap.zoho.com" },
	{ "zoho-pro", "imappro.zoho.com" },
};

Test(config, provider_presets)
{
	size_t i;

	for (i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
		char text[128], want[256];
		struct config *cfg;
		char *p;

		snprintf(text, sizeof(text), "[upstream]\nprovider = %s\n",
			 presets[i].provider);
		cfg = load_ok(text);
		cr_assert_str_eq(cfg->upstream.provider, presets[i].provider);
		cr_assert_str_eq(cfg->upstream.host, presets[i].host);
		cr_assert_eq(cfg->upstream.port, 993);
		cr_assert_eq(cfg->upstream.tls, UPSTREAM_TLS_IMPLICIT);
		p = print_to_string(cfg);
		snprintf(want, sizeof(want),
			 "\n[upstream]\nprovider = %s\nhost = %s\nport = 993\n"
			 "tls = implicit\n", presets[i].provider,
			 presets[i].host);
		assert_contains(p, want);
		free(p);
		config_free(&cfg);
	}
}

Test(config, provider_name_is_case_insensitive_and_printed_canonical)
{
	struct config *cfg = load_ok("[UPSTREAM]\nProvider = GMail\n");
	char *p;

	cr_assert_str_eq(cfg->upstream.provider, "gmail");
	cr_assert_str_eq(cfg->upstream.host, "imap.gmail.com");
	p = print_to_string(cfg);
	assert_contains(p, "\nprovider = gmail\n");
	free(p);
	config_free(&cfg);
}

Test(config, no_provider_by_default)
{
	struct config *cfg = load_ok("");
	char *p = print_to_string(cfg);

	cr_assert_null(cfg->upstream.provider);
	assert_contains(p, "\n[upstream]\nprovider =\nhost = imap.example.com\n");
	free(p);
	config_free(&cfg);
	cfg = load_ok("[upstream]\nprovider =\n");
	assert_defaults(cfg);
	cr_assert_null(cfg->upstream.provider);
	config_free(&cfg);
}

Test(config, explicit_keys_override_the_preset_wherever_they_stand)
{
	static const char *const texts[] = {
		/* before the provider line */
		"[upstream]\nhost = imap.example.org\nport = 143\n"
		"tls = starttls\nprovider = gmail\n",
		/* after it */
		"[upstream]\nprovider = gmail\nhost = imap.example.org\n"
		"port = 143\ntls = starttls\n",
		/* in another [upstream] block further down */
		"[upstream]\nport = 143\n[log]\nlevel = info\n[upstream]\n"
		"provider = gmail\n[upstream]\ntls = starttls\n"
		"host = imap.example.org\n",
	};
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct config *cfg = load_ok(texts[i]);

		cr_assert_str_eq(cfg->upstream.provider, "gmail");
		cr_assert_str_eq(cfg->upstream.host, "imap.example.org",
				 "case %zu", i);
		cr_assert_eq(cfg->upstream.port, 143, "case %zu", i);
		cr_assert_eq(cfg->upstream.tls, UPSTREAM_TLS_STARTTLS,
			     "case %zu", i);
		config_free(&cfg);
	}
}

Test(config, provider_fills_only_what_the_file_left_out)
{
	struct config *cfg = load_ok("[upstream]\ntls = none\nprovider = "
				     "icloud\nport = 1993\n");

	cr_assert_str_eq(cfg->upstream.host, "imap.mail.me.com");
	cr_assert_eq(cfg->upstream.port, 1993);
	cr_assert_eq(cfg->upstream.tls, UPSTREAM_TLS_NONE);
	config_free(&cfg);
	cfg = load_ok("[upstream]\nhost = 192.0.2.1\nprovider = outlook\n");
	cr_assert_str_eq(cfg->upstream.host, "192.0.2.1");
	cr_assert_eq(cfg->upstream.port, 993);
	cr_assert_eq(cfg->upstream.tls, UPSTREAM_TLS_IMPLICIT);
	config_free(&cfg);
}

Test(config, unknown_provider)
{
	cr_assert_str_eq(load_bad("[log]\nlevel = info\n[upstream]\n\n"
				  "provider = hotmail\n"),
			 "t.ini:5: [upstream] provider: unknown provider "
			 "\"hotmail\" (expected gmail, outlook, yahoo, icloud, "
			 "fastmail, zoho, zoho-pro or empty)");
	assert_prefix(load_bad("[upstream]\nprovider = gmail\nprovider = "
			       "yahoo\n"),
		      "t.ini:3: [upstream] provider: set twice, first on "
		      "line 2");
	assert_prefix(load_bad("[upstream]\nprovider = gmail,yahoo\n"),
		      "t.ini:2: [upstream] provider: unknown provider");
	/* A bad host still fails on its own line with a provider set. */
	assert_prefix(load_bad("[upstream]\nprovider = gmail\nhost = a b\n"),
		      "t.ini:3: [upstream] host: bad character");
}

Test(config, provider_round_trips)
{
	assert_round_trip("[upstream]\nprovider = zoho-pro\n");
	assert_round_trip("[upstream]\nprovider = gmail\nhost = 192.0.2.1\n"
			  "port = 143\ntls = starttls\n[maildrop]\n"
			  "on_delete = trash\ntrash = [Gmail]/Trash\n");
}

Test(config, print_masks_nothing_today_and_shows_every_key)
{
	/* No key holds a secret yet; config_print's masking is for the
	 * first that does. Every key of every section appears once. */
	static const char *const lines[] = {
		"\npop3 =", "\ncert =", "\nkey =", "\ntls_min =",
		"\nallow_plaintext_auth =", "\nprovider =", "\nhost =",
		"\nport =", "\ntls =", "\nca_file =", "\nverify =",
		"\ntimeout =", "\nfolders =", "\nsince =", "\non_delete =",
		"\ntrash =", "\nmark_seen =", "\ndir =", "\nmax_sessions =",
		"\nmax_per_ip =", "\nidle_timeout =", "\nauth_fail_delay =",
		"\nshutdown_grace =", "\nlevel =",
	};
	struct config *cfg = load_ok("[listen]\ncert = /c\nkey = /k\n");
	char *p = print_to_string(cfg);
	size_t i;

	assert_prefix(p, "; popbridge effective configuration (from t.ini)\n");
	assert_contains(p, "\npop3s =");
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		const char *at = strstr(p, lines[i]);

		cr_assert_not_null(at, "%s missing", lines[i] + 1);
		cr_assert_null(strstr(at + 1, lines[i]), "%s twice",
			       lines[i] + 1);
	}
	cr_assert_null(strstr(p, "secret"));
	free(p);
	config_free(&cfg);
}

Test(config, proxy_protocol_and_trusted_blocks)
{
	struct config *cfg = NULL;
	char err[CONFIG_ERR_MAX];
	unsigned char a4[4], a6[16];

	cr_assert_eq(config_load_string("[listen]\nproxy_protocol = yes\n"
					"trusted_proxies = 10.0.0.0/8, 192.0.2.7, "
					"2001:db8::/32\n[process]\nuser = pop\n",
					"t.ini", &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert(cfg->listen.proxy_protocol);
	cr_assert_eq(cfg->listen.n_trusted_proxies, 3);
	cr_assert_str_eq(cfg->process.user, "pop");
	inet_pton(AF_INET, "10.200.1.1", a4);
	cr_assert(config_cidr_match(cfg->listen.trusted_proxies, 3, AF_INET, a4));
	inet_pton(AF_INET, "192.0.2.8", a4);
	cr_assert_not(config_cidr_match(cfg->listen.trusted_proxies, 3, AF_INET, a4));
	inet_pton(AF_INET6, "::ffff:192.0.2.7", a6);
	cr_assert(config_cidr_match(cfg->listen.trusted_proxies, 3, AF_INET6, a6));
	inet_pton(AF_INET6, "2001:db8:ffff::1", a6);
	cr_assert(config_cidr_match(cfg->listen.trusted_proxies, 3, AF_INET6, a6));
	inet_pton(AF_INET6, "2001:db9::1", a6);
	cr_assert_not(config_cidr_match(cfg->listen.trusted_proxies, 3, AF_INET6, a6));
	config_free(&cfg);

	cr_assert_eq(config_load_string("[listen]\ntrusted_proxies = 10.0.0.0/33\n",
					"t.ini", &cfg, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "t.ini:2: [listen] trusted_proxies:") == err, "%s", err);
	cr_assert_eq(config_load_string("[listen]\ntrusted_proxies = host.example\n",
					"t.ini", &cfg, err, sizeof(err)), -EINVAL);
	cr_assert_eq(config_load_string("[process]\nuser = a b\n",
					"t.ini", &cfg, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "t.ini:2: [process] user:") == err, "%s", err);
}
