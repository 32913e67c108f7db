/* The OAuth2 providers popbridge knows (endpoints, scope, IMAP server). */
#include "oauth/preset.h"

#include <stddef.h>
#include <strings.h>

static const struct oauth_preset presets[] = {
	{
		.name = "microsoft",
		.client = {
			.auth_url = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
			.token_url = "https://login.microsoftonline.com/common/oauth2/v2.0/token",
			.device_url = "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
			.scope = "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
		},
		.imap_provider = "outlook",
	},
	{
		.name = "google",
		.client = {
			.auth_url = "https://accounts.google.com/o/oauth2/v2/auth",
			.token_url = "https://oauth2.googleapis.com/token",
			.device_url = NULL,
			.scope = "https://mail.google.com/",
			.auth_extra = "access_type=offline",
		},
		.imap_provider = "gmail",
	},
};

const struct oauth_preset *
oauth_preset_find(const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (strcasecmp(presets[i].name, name) == 0)
			return &presets[i];
	return NULL;
}

const char *
oauth_preset_names(void)
{
	return "microsoft, google";
}

#define OVER(f) (o != NULL && o->f != NULL ? o->f : c.f)

struct oauth_client
oauth_preset_client(const struct oauth_preset *p,
		    const struct oauth_client *o)
{
	struct oauth_client c = { 0 };

	if (p != NULL)
		c = p->client;
	c.token_url = OVER(token_url);
	c.device_url = OVER(device_url);
	c.auth_url = OVER(auth_url);
	c.client_id = OVER(client_id);
	c.client_secret = OVER(client_secret);
	c.scope = OVER(scope);
	c.auth_extra = OVER(auth_extra);
	return c;
}
