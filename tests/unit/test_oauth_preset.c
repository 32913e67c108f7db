/* oauth/preset: the microsoft and google presets and overrides. */
#include <criterion/criterion.h>
#include <string.h>

#include "oauth/http.h"
#include "oauth/preset.h"

Test(oauth_preset, microsoft)
{
	const struct oauth_preset *p = oauth_preset_find("Microsoft");

	cr_assert_not_null(p);
	cr_expect_str_eq(p->name, "microsoft");
	/* outlook.office365.com:993: test_config_accounts.c checks the
	 * account's server. */
	cr_expect_str_eq(p->imap_provider, "outlook");
	cr_expect_eq(http_url_check(p->client.token_url), 0);
	cr_expect_eq(http_url_check(p->client.device_url), 0);
	cr_expect_eq(http_url_check(p->client.auth_url), 0);
	cr_expect(strstr(p->client.scope, "IMAP.AccessAsUser.All") != NULL);
	cr_expect(strstr(p->client.scope, "offline_access") != NULL, "a refresh token needs it");
	cr_expect_null(p->client.client_id, "no client ID is built in");
}

Test(oauth_preset, google)
{
	const struct oauth_preset *p = oauth_preset_find("google");

	cr_assert_not_null(p);
	cr_expect_str_eq(p->imap_provider, "gmail");
	cr_expect_eq(http_url_check(p->client.token_url), 0);
	cr_expect_eq(http_url_check(p->client.auth_url), 0);
	cr_expect_null(p->client.device_url, "Google's device grant refuses the Gmail scope");
	cr_expect_str_eq(p->client.scope, "https://mail.google.com/");
	cr_expect_str_eq(p->client.auth_extra, "access_type=offline");
}

Test(oauth_preset, unknown)
{
	cr_expect_null(oauth_preset_find("yahoo"));
	cr_expect_null(oauth_preset_find(""));
	cr_expect_null(oauth_preset_find(NULL));
	cr_expect_str_eq(oauth_preset_names(), "microsoft, google");
}

Test(oauth_preset, overrides)
{
	const struct oauth_client over = {
		.client_id = "my-app",
		.client_secret = "shh",
		.token_url = "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token",
	};
	struct oauth_client c = oauth_preset_client(oauth_preset_find("microsoft"), &over);

	cr_expect_str_eq(c.client_id, "my-app");
	cr_expect_str_eq(c.client_secret, "shh");
	cr_expect_str_eq(c.token_url, over.token_url);
	cr_expect_str_eq(c.auth_url, "https://login.microsoftonline.com/common/oauth2/v2.0/authorize");
	c = oauth_preset_client(NULL, &over);
	cr_expect_null(c.auth_url, "a custom provider is its keys alone");
	cr_expect_str_eq(c.client_id, "my-app");
	c = oauth_preset_client(oauth_preset_find("google"), NULL);
	cr_expect_str_eq(c.token_url, "https://oauth2.googleapis.com/token");
}
