#ifndef POPBRIDGE_OAUTH_PRESET_H
#define POPBRIDGE_OAUTH_PRESET_H

#include <stdint.h>

#include "oauth/token.h"

/*
 * OAuth2 providers popbridge knows: their endpoints, the scope that grants
 * IMAP with offline access (a refresh token), and their IMAP server. The
 * client ID (and secret) are the administrator's own registration: none is
 * built in. A preset's fields are the defaults an account's oauth_* keys
 * override (oauth_preset_client).
 *
 *   microsoft  login.microsoftonline.com, tenant "common" (work, school and
 *              personal accounts); device and code grants; IMAP
 *              the "outlook" provider (outlook.office365.com), XOAUTH2
 *   google     accounts.google.com / oauth2.googleapis.com; the code grant
 *              only (Google's device grant does not allow the Gmail scope);
 *              access_type=offline; IMAP the "gmail" provider
 *              (imap.gmail.com), XOAUTH2 and OAUTHBEARER
 */

struct oauth_preset {
	const char *name;
	struct oauth_client client;	/* client_id and client_secret NULL */
	/* Its IMAP server: the name of a [upstream] provider preset
	 * (daemon/config), which knows the host, port and TLS. */
	const char *imap_provider;
};

/* The preset called name (case-insensitive), or NULL. */
const struct oauth_preset *oauth_preset_find(const char *name);

/* The presets' names, comma-separated, for error messages. */
const char *oauth_preset_names(void);

/* What a preset says, with every non-NULL field of overrides (an
 * account's oauth_* keys) written over it; p may be NULL (a custom
 * provider: overrides alone). Strings stay borrowed from both. */
struct oauth_client oauth_preset_client(const struct oauth_preset *p,
					const struct oauth_client *overrides);

#endif
