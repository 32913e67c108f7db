/* daemon/authorize_cmd: which flow popbridge authorize runs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "daemon/authorize_cmd.h"
#include "oauth/preset.h"

static struct oauth_client
preset(const char *name)
{
	return oauth_preset_client(oauth_preset_find(name),
				   &(struct oauth_client){ .client_id = "id" });
}

static struct oauth_client
custom(const char *device_url, const char *auth_url)
{
	return (struct oauth_client){
		.token_url = "https://idp.example/token",
		.device_url = device_url,
		.auth_url = auth_url,
		.client_id = "id",
		.scope = "imap offline_access",
	};
}

Test(authorize_flow, presets_default_to_theirs)
{
	struct oauth_client m = preset("microsoft"), g = preset("google");
	const char *why;

	cr_expect_eq(authorize_flow_pick("microsoft", &m,
					 AUTHORIZE_FLOW_DEFAULT, &why),
		     AUTHORIZE_FLOW_DEVICE);
	cr_expect_null(why);
	cr_expect_eq(authorize_flow_pick("google", &g, AUTHORIZE_FLOW_DEFAULT,
					 &why),
		     AUTHORIZE_FLOW_LOOPBACK);
	/* Google's device grant does not allow the Gmail scope: a device
	 * URL written in the file is used only when asked for. */
	g.device_url = "https://oauth2.googleapis.com/device/code";
	cr_expect_eq(authorize_flow_pick("Google", &g, AUTHORIZE_FLOW_DEFAULT,
					 &why),
		     AUTHORIZE_FLOW_LOOPBACK);
	cr_expect_eq(authorize_flow_pick("google", &g, AUTHORIZE_FLOW_DEVICE,
					 &why),
		     AUTHORIZE_FLOW_DEVICE);
	cr_expect_eq(authorize_flow_pick("microsoft", &m,
					 AUTHORIZE_FLOW_LOOPBACK, &why),
		     AUTHORIZE_FLOW_LOOPBACK);
}

Test(authorize_flow, custom_prefers_the_device_grant)
{
	struct oauth_client both = custom("https://idp.example/device",
					  "https://idp.example/auth");
	struct oauth_client dev = custom("https://idp.example/device", NULL);
	struct oauth_client web = custom(NULL, "https://idp.example/auth");
	const char *why;

	cr_expect_eq(authorize_flow_pick("custom", &both,
					 AUTHORIZE_FLOW_DEFAULT, &why),
		     AUTHORIZE_FLOW_DEVICE);
	cr_expect_eq(authorize_flow_pick("custom", &dev,
					 AUTHORIZE_FLOW_DEFAULT, &why),
		     AUTHORIZE_FLOW_DEVICE);
	cr_expect_eq(authorize_flow_pick("custom", &web,
					 AUTHORIZE_FLOW_DEFAULT, &why),
		     AUTHORIZE_FLOW_LOOPBACK);
	cr_expect_eq(authorize_flow_pick("custom", &both,
					 AUTHORIZE_FLOW_LOOPBACK, &why),
		     AUTHORIZE_FLOW_LOOPBACK);
	cr_expect_eq(authorize_flow_pick(NULL, &web, AUTHORIZE_FLOW_DEFAULT,
					 &why),
		     AUTHORIZE_FLOW_LOOPBACK);
}

Test(authorize_flow, a_flow_without_its_endpoint_is_refused)
{
	struct oauth_client dev = custom("https://idp.example/device", NULL);
	struct oauth_client web = custom(NULL, "");
	struct oauth_client none = custom(NULL, NULL);
	const char *why;

	web.auth_url = "https://idp.example/auth";
	cr_expect_eq(authorize_flow_pick("custom", &web, AUTHORIZE_FLOW_DEVICE,
					 &why),
		     -EINVAL);
	cr_assert_not_null(why);
	cr_expect(strstr(why, "oauth_device_url") != NULL, "%s", why);
	cr_expect_eq(authorize_flow_pick("custom", &dev,
					 AUTHORIZE_FLOW_LOOPBACK, &why),
		     -EINVAL);
	cr_assert_not_null(why);
	cr_expect(strstr(why, "oauth_authorization_url") != NULL, "%s", why);
	/* An empty URL is none. */
	dev.auth_url = "";
	cr_expect_eq(authorize_flow_pick("custom", &dev,
					 AUTHORIZE_FLOW_LOOPBACK, &why),
		     -EINVAL);
	cr_expect_eq(authorize_flow_pick("custom", &none,
					 AUTHORIZE_FLOW_DEFAULT, &why),
		     -EINVAL);
	cr_assert_not_null(why);
	/* A preset's flow falls back to the other one when the file's
	 * overrides leave only that. */
	none.auth_url = "https://idp.example/auth";
	cr_expect_eq(authorize_flow_pick("microsoft", &none,
					 AUTHORIZE_FLOW_DEFAULT, &why),
		     AUTHORIZE_FLOW_LOOPBACK);
}
