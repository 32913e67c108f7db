/* The [accounts] and [account NAME] sections of daemon/config: views,
 * inheritance from [upstream] and [maildrop], errors, printing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_fixture.h"
#include "daemon/config.h"

Test(config_accounts, none_by_default)
{
	struct config *cfg = load_ok("[upstream]\nhost = imap.example.org\n");

	cr_assert_eq(cfg->accounts.n, 0);
	cr_assert_eq(cfg->accounts.unknown_users, UNKNOWN_USERS_PASSTHROUGH);
	cr_assert_null(cfg->parent);
	cr_assert_null(cfg->account.name);
	cr_assert_null(config_account_find(cfg, "x", 1));
	cr_assert_eq(config_root(cfg), cfg);
	config_free(&cfg);
}

Test(config_accounts, unknown_users)
{
	struct config *cfg = load_ok("[accounts]\nunknown_users = refuse\n");

	cr_assert_eq(cfg->accounts.unknown_users, UNKNOWN_USERS_REFUSE);
	config_free(&cfg);
	cr_assert_str_eq(load_bad("[accounts]\nunknown_users = maybe\n"),
			 "t.ini:2: [accounts] unknown_users: bad value "
			 "\"maybe\" (expected passthrough or refuse)");
}

/* [upstream] and [maildrop] may come after the section: a view is built
 * once the whole file is read. */
Test(config_accounts, inherits_upstream_and_maildrop)
{
	struct config *cfg = load_ok(
		"[account office-scanner]\n"
		"pop3_user = scanner\n"
		"upstream_user = office@example.com\n"
		"[upstream]\n"
		"host = imap.example.org\n"
		"port = 1993\n"
		"tls = starttls\n"
		"ca_file = /etc/ca.pem\n"
		"verify = no\n"
		"timeout = 7\n"
		"[maildrop]\n"
		"folders = INBOX, Junk\n"
		"on_delete = keep\n"
		"mark_seen = yes\n");
	const struct config *v;

	cr_assert_eq(cfg->accounts.n, 1);
	v = cfg->accounts.list[0];
	cr_assert_eq(v->parent, cfg);
	cr_assert_eq(config_root(v), cfg);
	cr_assert_str_eq(v->account.name, "office-scanner");
	cr_assert_str_eq(v->account.pop3_user, "scanner");
	cr_assert_str_eq(v->account.upstream_user, "office@example.com");
	cr_assert_eq(v->account.auth, ACCOUNT_AUTH_PASSWORD);
	cr_assert_not(v->account.own_upstream);
	cr_assert_eq(v->account.line, 1);
	cr_assert_str_eq(v->upstream.host, "imap.example.org");
	cr_assert_eq(v->upstream.port, 1993);
	cr_assert_eq(v->upstream.tls, UPSTREAM_TLS_STARTTLS);
	cr_assert_str_eq(v->upstream.ca_file, "/etc/ca.pem");
	cr_assert_not(v->upstream.verify);
	cr_assert_eq(v->upstream.timeout, 7);
	cr_assert_eq(v->maildrop.n_folders, 2);
	cr_assert_str_eq(v->maildrop.folders[1], "Junk");
	cr_assert_eq(v->maildrop.on_delete, ON_DELETE_KEEP);
	cr_assert(v->maildrop.mark_seen);
	/* The rest is the file's, strings and all. */
	cr_assert_eq(v->state.dir, cfg->state.dir);
	cr_assert_eq(v->limits.auth_fail_delay, cfg->limits.auth_fail_delay);
	cr_assert_eq(v->accounts.n, 0);
	cr_assert_null(v->runtime);
	config_free(&cfg);
}

/* An account with its own upstream takes no connection setting of
 * [upstream]'s: the private CA and verify = no stay with that server. */
Test(config_accounts, own_upstream_by_provider_or_host)
{
	struct config *cfg = load_ok(
		"[upstream]\n"
		"host = office.example.org\n"
		"port = 143\n"
		"tls = starttls\n"
		"ca_file = /etc/office-ca.pem\n"
		"verify = no\n"
		"timeout = 9\n"
		"[account home]\n"
		"upstream_user = me@gmail.com\n"
		"provider = gmail\n"
		"[account other]\n"
		"upstream_user = u\n"
		"host = imap.other.example\n"
		"[account port-only]\n"
		"upstream_user = p\n"
		"port = 10993\n"
		"[account preset-port]\n"
		"upstream_user = q\n"
		"provider = fastmail\n"
		"port = 1143\n"
		"tls = none\n");
	const struct config *home, *other, *port_only, *preset;

	cr_assert_eq(cfg->accounts.n, 4);
	home = config_account_named(cfg, "home");
	other = config_account_named(cfg, "OTHER");
	port_only = config_account_named(cfg, "port-only");
	preset = config_account_named(cfg, "preset-port");
	cr_assert(home && other && port_only && preset);
	cr_assert(home->account.own_upstream);
	cr_assert_str_eq(home->upstream.host, "imap.gmail.com");
	cr_assert_str_eq(home->upstream.provider, "gmail");
	cr_assert_eq(home->upstream.port, 993);
	cr_assert_eq(home->upstream.tls, UPSTREAM_TLS_IMPLICIT);
	cr_assert_null(home->upstream.ca_file);
	cr_assert(home->upstream.verify);
	cr_assert_eq(home->upstream.timeout, 9);

	cr_assert_str_eq(other->upstream.host, "imap.other.example");
	cr_assert_null(other->upstream.provider);
	cr_assert_eq(other->upstream.port, 993);
	cr_assert_eq(other->upstream.tls, UPSTREAM_TLS_IMPLICIT);
	cr_assert_null(other->upstream.ca_file);
	cr_assert(other->upstream.verify);

	cr_assert_not(port_only->account.own_upstream);
	cr_assert_str_eq(port_only->upstream.host, "office.example.org");
	cr_assert_eq(port_only->upstream.port, 10993);
	cr_assert_eq(port_only->upstream.tls, UPSTREAM_TLS_STARTTLS);
	cr_assert_str_eq(port_only->upstream.ca_file, "/etc/office-ca.pem");

	cr_assert_str_eq(preset->upstream.host, "imap.fastmail.com");
	cr_assert_eq(preset->upstream.port, 1143);
	cr_assert_eq(preset->upstream.tls, UPSTREAM_TLS_NONE);
	/* The file's own [upstream] is untouched. */
	cr_assert_str_eq(cfg->upstream.host, "office.example.org");
	cr_assert_null(cfg->upstream.provider);
	config_free(&cfg);
}

Test(config_accounts, maildrop_overrides_one_by_one)
{
	struct config *cfg = load_ok(
		"[maildrop]\n"
		"folders = INBOX\n"
		"on_delete = trash\n"
		"trash = Bin\n"
		"[account a]\n"
		"upstream_user = a\n"
		"folders = INBOX, Spam\n"
		"since = now\n"
		"[account b]\n"
		"upstream_user = b\n"
		"since = 2025-12-31\n"
		"on_delete = seen\n"
		"trash = Deleted\n"
		"mark_seen = on\n");
	const struct config *a = cfg->accounts.list[0];
	const struct config *b = cfg->accounts.list[1];

	cr_assert_eq(a->maildrop.n_folders, 2);
	cr_assert_str_eq(a->maildrop.folders[1], "Spam");
	cr_assert_eq(a->maildrop.since, SINCE_NOW);
	cr_assert_eq(a->maildrop.on_delete, ON_DELETE_TRASH);
	cr_assert_str_eq(a->maildrop.trash, "Bin");
	cr_assert_not(a->maildrop.mark_seen);
	cr_assert_eq(b->maildrop.n_folders, 1);
	cr_assert_eq(b->maildrop.since, SINCE_DATE);
	cr_assert_str_eq(b->maildrop.since_date, "2025-12-31");
	cr_assert_eq(b->maildrop.on_delete, ON_DELETE_SEEN);
	cr_assert_str_eq(b->maildrop.trash, "Deleted");
	cr_assert(b->maildrop.mark_seen);
	cr_assert_eq(cfg->maildrop.since, SINCE_ALL);
	cr_assert_eq(cfg->maildrop.n_folders, 1);
	config_free(&cfg);
}

Test(config_accounts, pop3_user_lookup)
{
	struct config *cfg = load_ok(
		"[account office-scanner]\n"
		"pop3_user = Scanner\n"
		"upstream_user = office@example.com\n"
		"[account printer]\n"
		"upstream_user = print@example.com\n");
	const struct config *v;

	v = config_account_find(cfg, "scanner", 7);
	cr_assert_not_null(v);
	cr_assert_str_eq(v->account.name, "office-scanner");
	cr_assert_eq(config_account_find(cfg, "SCANNER", 7), v);
	/* A view finds through its root. */
	cr_assert_eq(config_account_find(v, "printer", 7), cfg->accounts.list[1]);
	cr_assert_str_eq(cfg->accounts.list[1]->account.pop3_user, "printer");
	cr_assert_null(config_account_find(cfg, "scanne", 6));
	cr_assert_null(config_account_find(cfg, "scanner2", 8));
	cr_assert_null(config_account_find(cfg, "office-scanner", 14));
	cr_assert_null(config_account_named(cfg, "scanner"));
	config_free(&cfg);
}

/* A view counts on its parent: the configuration lives while any
 * session holds it or one of its views. */
Test(config_accounts, views_share_the_parents_references)
{
	struct config *cfg = load_ok("[account a]\nupstream_user = a\n");
	const struct config *v = cfg->accounts.list[0], *held, *root;

	held = config_ref(v);
	cr_assert_eq(held, v);
	cr_assert_eq(cfg->refs, 2);
	root = config_ref(cfg);
	cr_assert_eq(cfg->refs, 3);
	config_free(&cfg);
	cr_assert_null(cfg);
	cr_assert_str_eq(held->account.upstream_user, "a");
	config_unref(&root);
	cr_assert_eq(held->parent->refs, 1);
	config_unref(&held);
	cr_assert_null(held);
}

static int runtime_freed;

static void
runtime_free(void *p)
{
	cr_assert_eq(p, &runtime_freed);
	runtime_freed++;
}

Test(config_accounts, runtime_released_with_the_last_reference)
{
	struct config *cfg = load_ok("[account a]\nupstream_user = a\n");
	const struct config *v;

	cfg->runtime = &runtime_freed;
	cfg->runtime_free = runtime_free;
	v = config_ref(cfg->accounts.list[0]);
	config_free(&cfg);
	cr_assert_eq(runtime_freed, 0);
	config_unref(&v);
	cr_assert_eq(runtime_freed, 1);
}

Test(config_accounts, errors_name_the_line)
{
	cr_assert_str_eq(load_bad("[log]\nlevel = info\n[account a]\n"
				  "pop3_user = x\n"),
			 "t.ini:3: [account a]: no upstream_user (expected "
			 "upstream_user = the IMAP login name)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "auth = oauth2\n"),
			 "t.ini:1: [account a]: auth = oauth2 without oauth "
			 "(expected oauth = microsoft, google or custom)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "auth = kerberos\n"),
			 "t.ini:3: [account a] auth: bad value \"kerberos\" "
			 "(expected password or oauth2)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "timeout = 3\n"),
			 "t.ini:3: [account a] timeout: unknown key (expected "
			 "pop3_user, upstream_user, auth, oauth, "
			 "oauth_client_id, oauth_client_secret, "
			 "oauth_authorization_url, oauth_device_url, "
			 "oauth_token_url, oauth_scope, oauth_ca_file, "
			 "provider, host, port, tls, ca_file, verify, folders, "
			 "since, on_delete, trash or mark_seen)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "upstream_user = b\n"),
			 "t.ini:3: [account a] upstream_user: set twice, "
			 "first on line 2 (expected each key once)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "port = 0\n"),
			 "t.ini:3: [account a] port: bad port \"0\" (expected "
			 "a port 1-65535)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "provider = aol\n"),
			 "t.ini:3: [account a] provider: unknown provider "
			 "\"aol\" (expected gmail, outlook, yahoo, icloud, "
			 "fastmail, zoho, zoho-pro or empty)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "pop3_user = two words\n"),
			 "t.ini:3: [account a] pop3_user: blank, control or "
			 "8-bit character (expected the user name the device "
			 "sends: printable, no blanks, at most 128 "
			 "characters)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = \x01x\n"),
			 "t.ini:2: [account a] upstream_user: control "
			 "character (expected the IMAP login name)");
}

Test(config_accounts, account_keys_only_in_account_sections)
{
	cr_assert_str_eq(load_bad("[upstream]\npop3_user = x\n"),
			 "t.ini:2: [upstream] pop3_user: unknown key (expected "
			 "provider, host, port, tls, ca_file, verify, timeout or "
			 "read_ahead)");
	cr_assert_str_eq(load_bad("[accounts]\nupstream_user = x\n"),
			 "t.ini:2: [accounts] upstream_user: unknown key "
			 "(expected unknown_users)");
	cr_assert_str_eq(load_bad("[account]\nupstream_user = x\n"),
			 "t.ini:1: [account]: unknown section (expected "
			 "listen, upstream, maildrop, state, limits, log, "
			 "process, accounts or account NAME)");
}

Test(config_accounts, section_names)
{
	struct config *cfg = load_ok(
		"[Account  A.b_c-9]\nupstream_user = a\n"
		"[account 0123456789abcdef0123456789ABCDEF]\n"
		"upstream_user = b\n");

	cr_assert_str_eq(cfg->accounts.list[0]->account.name, "A.b_c-9");
	cr_assert_str_eq(cfg->accounts.list[0]->account.pop3_user, "A.b_c-9");
	cr_assert_str_eq(cfg->accounts.list[1]->account.name,
			 "0123456789abcdef0123456789ABCDEF");
	config_free(&cfg);
	cr_assert_str_eq(load_bad("[account a/b]\nupstream_user = a\n"),
			 "t.ini:1: [account a/b]: bad account name (expected "
			 "1-32 letters, digits, '.', '_' or '-', starting with "
			 "a letter or digit)");
	cr_assert_str_eq(load_bad("[account .a]\n"),
			 "t.ini:1: [account .a]: bad account name (expected "
			 "1-32 letters, digits, '.', '_' or '-', starting with "
			 "a letter or digit)");
	cr_assert_str_eq(load_bad("[account 0123456789abcdef0123456789ABCDEFx]\n"),
			 "t.ini:1: [account 0123456789abcdef0123456789ABCDEFx]: "
			 "account name too long (expected 1-32 letters, "
			 "digits, '.', '_' or '-', starting with a letter or "
			 "digit)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n\n"
				  "[account A]\nupstream_user = b\n"),
			 "t.ini:4: [account A]: defined twice, first on line 1 "
			 "(expected each account once)");
}

Test(config_accounts, pop3_users_are_unique_in_any_case)
{
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "pop3_user = Dev\n"
				  "[account b]\nupstream_user = b\n"
				  "pop3_user = dEV\n"),
			 "t.ini:6: [account b] pop3_user: \"dEV\" is account "
			 "a's already (expected each pop3_user once, in any "
			 "case)");
	/* The default, the section's name, counts too. */
	cr_assert_str_eq(load_bad("[account scanner]\nupstream_user = a\n"
				  "[account b]\nupstream_user = b\n"
				  "pop3_user = scanner\n"),
			 "t.ini:5: [account b] pop3_user: \"scanner\" is "
			 "account scanner's already (expected each pop3_user "
			 "once, in any case)");
}

Test(config_accounts, trash_rule_per_account)
{
	struct config *cfg;

	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "on_delete = trash\ntrash = INBOX\n"),
			 "t.ini:3: [account a] on_delete: trash is one of the "
			 "folders, so deleted mail would come back (expected "
			 "trash outside the folders)");
	cr_assert_str_eq(load_bad("[maildrop]\non_delete = trash\n"
				  "[account a]\nupstream_user = a\n"
				  "folders = INBOX, Trash\n"),
			 "t.ini:5: [account a] on_delete: trash is one of the "
			 "folders, so deleted mail would come back (expected "
			 "trash outside the folders)");
	/* The file's rule is not the account's. */
	cfg = load_ok("[maildrop]\nfolders = INBOX, Trash\n"
		      "[account a]\nupstream_user = a\nfolders = INBOX\n"
		      "on_delete = trash\n");
	config_free(&cfg);
}

Test(config_accounts, at_most_64)
{
	char text[64 * 48 + 64];
	size_t len = 0;
	int i;

	for (i = 0; i < CONFIG_MAX_ACCOUNTS; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"[account a%d]\nupstream_user = u\n", i);
	{
		struct config *cfg = load_ok(text);

		cr_assert_eq(cfg->accounts.n, CONFIG_MAX_ACCOUNTS);
		config_free(&cfg);
	}
	snprintf(text + len, sizeof(text) - len, "[account z]\n");
	cr_assert_str_eq(load_bad(text),
			 "t.ini:129: [account z]: more than 64 accounts");
}

/* Each account is printed with every effective setting, inherited ones
 * included, and the printout loads back to the same printout. */
Test(config_accounts, print_round_trip)
{
	struct config *cfg = load_ok(
		"[upstream]\nhost = office.example.org\ntls = none\n"
		"[accounts]\nunknown_users = refuse\n"
		"[account office-scanner]\n"
		"pop3_user = scanner\n"
		"upstream_user = office@example.com\n"
		"on_delete = keep\n"
		"[account home]\n"
		"upstream_user = Me Myself\n"
		"provider = gmail\n"
		"folders = INBOX, [Gmail]/Spam\n"
		"since = now\n");
	struct config *again;
	char *a, *b;

	a = print_to_string(cfg);
	cr_assert(strstr(a, "[accounts]\nunknown_users = refuse\n") != NULL,
		  "%s", a);
	cr_assert(strstr(a, "\n[account office-scanner]\n"
			    "pop3_user = scanner\n"
			    "upstream_user = office@example.com\n"
			    "auth = password\n"
			    "provider =\n"
			    "host = office.example.org\n"
			    "port = 993\n"
			    "tls = none\n"
			    "ca_file =\n"
			    "verify = yes\n"
			    "folders = INBOX\n"
			    "since = all\n"
			    "on_delete = keep\n"
			    "trash = Trash\n"
			    "mark_seen = no\n") != NULL, "%s", a);
	cr_assert(strstr(a, "\n[account home]\n"
			    "pop3_user = home\n"
			    "upstream_user = Me Myself\n"
			    "auth = password\n"
			    "provider = gmail\n"
			    "host = imap.gmail.com\n") != NULL, "%s", a);
	again = load_ok(a);
	b = print_to_string(again);
	cr_assert_str_eq(body(a), body(b));
	cr_assert_eq(again->accounts.n, 2);
	cr_assert_eq(again->accounts.list[0]->upstream.tls, UPSTREAM_TLS_NONE);
	free(a);
	free(b);
	config_free(&again);
	config_free(&cfg);
}

/* --- auth = oauth2 --- */

Test(config_accounts, oauth_preset_brings_its_imap_server)
{
	struct config *cfg = load_ok(
		"[upstream]\nhost = 127.0.0.1\ntls = none\n"
		"[account m]\nupstream_user = a@outlook.com\nauth = oauth2\n"
		"oauth = Microsoft\noauth_client_id = 0000-11\n"
		"[account g]\nupstream_user = b@gmail.com\nauth = oauth2\n"
		"oauth = google\noauth_client_id = x.apps\n"
		"oauth_client_secret = GOCSPX-s3cret\n"
		"[account p]\nupstream_user = c\nauth = oauth2\n"
		"oauth = microsoft\noauth_client_id = y\nprovider = gmail\n");
	const struct config *m = config_account_named(cfg, "m");
	const struct config *g = config_account_named(cfg, "g");
	const struct config *p = config_account_named(cfg, "p");

	cr_assert_eq(m->account.auth, ACCOUNT_AUTH_OAUTH2);
	cr_assert_str_eq(m->account.oauth.preset, "microsoft");
	cr_assert_str_eq(m->upstream.host, "outlook.office365.com");
	cr_assert_eq(m->upstream.port, 993);
	cr_assert_eq(m->upstream.tls, UPSTREAM_TLS_IMPLICIT);
	cr_assert(m->upstream.verify);
	cr_assert_str_eq(g->upstream.host, "imap.gmail.com");
	cr_assert_eq(g->upstream.port, 993);
	cr_assert_eq(g->upstream.tls, UPSTREAM_TLS_IMPLICIT);
	cr_assert_str_eq(g->account.oauth.client_secret, "GOCSPX-s3cret");
	/* The account's own provider wins over the preset's server. */
	cr_assert_str_eq(p->upstream.host, "imap.gmail.com");
	config_free(&cfg);
}

Test(config_accounts, oauth_custom_inherits_upstream)
{
	struct config *cfg = load_ok(
		"[upstream]\nhost = 127.0.0.1\nport = 1143\ntls = none\n"
		"[account c]\nupstream_user = c\nauth = oauth2\n"
		"oauth = custom\noauth_client_id = id\n"
		"oauth_token_url = http://127.0.0.1:9/token\n"
		"oauth_authorization_url = https://auth.example/auth\n"
		"oauth_scope = imap offline_access\n"
		"oauth_ca_file = /etc/ssl/certs/ca-certificates.crt\n");
	const struct config *c = config_account_named(cfg, "c");

	cr_assert_str_eq(c->upstream.host, "127.0.0.1");
	cr_assert_eq(c->upstream.port, 1143);
	cr_assert_str_eq(c->account.oauth.token_url, "http://127.0.0.1:9/token");
	cr_assert_str_eq(c->account.oauth.auth_url, "https://auth.example/auth");
	cr_assert_null(c->account.oauth.device_url);
	cr_assert_str_eq(c->account.oauth.scope, "imap offline_access");
	cr_assert_str_eq(c->account.oauth.ca_file,
			 "/etc/ssl/certs/ca-certificates.crt");
	config_free(&cfg);
}

Test(config_accounts, oauth_errors)
{
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "auth = oauth2\noauth = yahoo\n"),
			 "t.ini:4: [account a] oauth: unknown OAuth2 provider "
			 "\"yahoo\" (expected microsoft, google or custom)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "auth = oauth2\noauth = microsoft\n"),
			 "t.ini:1: [account a]: oauth = microsoft needs "
			 "oauth_client_id (your app registration's client ID)");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "auth = oauth2\noauth = custom\n"
				  "oauth_client_id = x\n"),
			 "t.ini:1: [account a]: oauth = custom needs "
			 "oauth_token_url");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "auth = oauth2\noauth = custom\n"
				  "oauth_client_id = x\n"
				  "oauth_token_url = https://t.example/t\n"),
			 "t.ini:1: [account a]: oauth = custom needs "
			 "oauth_device_url or oauth_authorization_url");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "auth = oauth2\noauth = custom\n"
				  "oauth_client_id = x\n"
				  "oauth_token_url = https://t.example/t\n"
				  "oauth_device_url = https://t.example/d\n"),
			 "t.ini:1: [account a]: oauth = custom needs "
			 "oauth_scope");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "oauth_token_url = http://example.com/t\n"),
			 "t.ini:3: [account a] oauth_token_url: plain http:// "
			 "to a host that is not loopback (expected an https:// "
			 "URL (http:// only to 127.0.0.1 or ::1))");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "oauth_token_url = ftp://example.com/t\n"),
			 "t.ini:3: [account a] oauth_token_url: not an http(s) "
			 "URL (expected an https:// URL (http:// only to "
			 "127.0.0.1 or ::1))");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "oauth_token_url = https://u:p@t.example/t\n"),
			 "t.ini:3: [account a] oauth_token_url: not a URL (or "
			 "with a user or password in it) (expected an https:// "
			 "URL (http:// only to 127.0.0.1 or ::1))");
	cr_assert_str_eq(load_bad("[account a]\nupstream_user = a\n"
				  "auth = password\noauth = microsoft\n"),
			 "t.ini:4: [account a]: oauth keys without auth = "
			 "oauth2 (expected auth = oauth2, or no oauth keys)");
}

Test(config_accounts, oauth_print_masks_the_secret_and_loads_back)
{
	struct config *cfg = load_ok(
		"[account g]\nupstream_user = b@gmail.com\nauth = oauth2\n"
		"oauth = google\noauth_client_id = x.apps\n"
		"oauth_client_secret = GOCSPX-s3cret\n"
		"[account pw]\nupstream_user = pw\n");
	struct config *again;
	char *text = print_to_string(cfg), err[CONFIG_ERR_MAX] = "";
	cr_assert_null(strstr(text, "GOCSPX-s3cret"));
	cr_assert_not_null(strstr(text, "; oauth_client_secret = (secret, "
					"not shown)"));
	cr_assert_not_null(strstr(text, "oauth = google\n"));
	/* A password account prints no oauth keys. */
	cr_assert_null(strstr(strstr(text, "[account pw]"), "oauth"));
	cr_assert_eq(config_load_string(text, "p.ini", &again, err,
					sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(config_account_named(again, "g")->upstream.host,
			 "imap.gmail.com");
	cr_assert_null(config_account_named(again, "g")->account.oauth
			       .client_secret);
	config_free(&again);
	config_free(&cfg);
	free(text);
}
