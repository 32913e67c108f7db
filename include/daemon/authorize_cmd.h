#ifndef POPBRIDGE_AUTHORIZE_CMD_H
#define POPBRIDGE_AUTHORIZE_CMD_H

#include "oauth/token.h"

/*
 * popbridge [-c FILE] authorize ACCOUNT [--flow device|loopback]
 *                                       [--device LABEL]
 *
 * Obtains an OAuth2 grant for an account with auth = oauth2 and stores
 * its refresh token, sealed under the account key, as the account's
 * upstream secret (accounts/account_file.h), while the daemon runs or
 * not: it reads the file again at its next login.
 *
 * Before anything goes to the network it reads one line from standard
 * input (or prompts for it without echo on a terminal): when the account
 * has no device yet, the password of its first device (label "default",
 * or --device's; asked twice on a terminal), which it then gets; else an
 * existing device's password, checked at once. Then the flow
 * (authorize_flow_pick), each request bounded by [upstream] timeout and
 * verified against oauth_ca_file (or the system store):
 *   device    the verification URL and the user code, each on a line of
 *             its own, are all standard output carries; the token
 *             endpoint is polled as the server says (RFC 8628);
 *   loopback  the authorization URL alone on a line of standard output;
 *             the browser's redirect to a listener on 127.0.0.1 ends it,
 *             or the URL the browser ended at, pasted as a line of
 *             standard input (wrong ones are refused, and it waits on).
 * Explanations, progress and errors go to standard error; no token,
 * code, verifier or client secret is ever printed. Once the grant comes,
 * the state directory is locked, the file read again and unlocked again
 * with the same password (it may have changed meanwhile), the token
 * sealed and the file replaced (safe_file).
 *
 * The exit status is 0 once the token is stored, 1 with a one-line
 * reason on standard error (not an oauth2 account, a wrong device
 * password, the user or the server said no, the endpoints unreachable,
 * ...), 2 for a usage error (a flow the account has no endpoint for).
 *
 * config_path is the -c given before "authorize"; argv[0] is
 * "authorize".
 */
int authorize_cmd(const char *config_path, int argc, char **argv);

enum authorize_flow {
	AUTHORIZE_FLOW_DEFAULT = 0,	/* what the provider suits best */
	AUTHORIZE_FLOW_DEVICE,		/* RFC 8628 device grant */
	AUTHORIZE_FLOW_LOOPBACK,	/* code grant, PKCE, loopback redirect */
};

/*
 * The flow for an account with oauth = preset ("microsoft", "google",
 * "custom") whose effective client is cl (oauth_preset_client): want,
 * or, for AUTHORIZE_FLOW_DEFAULT, the preset's (microsoft: device;
 * google: loopback, since Google's device grant does not allow the Gmail
 * scope; custom: device when cl has a device URL, else loopback), the
 * other one when cl lacks the endpoint of that. Returns the flow, or
 * -EINVAL with *why_r saying which key is missing.
 */
int authorize_flow_pick(const char *preset, const struct oauth_client *cl,
			enum authorize_flow want, const char **why_r);

#endif
