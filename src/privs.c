#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static int
state_dir_private(const struct config *cfg)
{
	struct stat st;

	if (stat(cfg->state.dir, &st) < 0) {
		log_error("[state] dir %s: %s", cfg->state.dir, strerror(errno));
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		log_error("refusing to run as root: [state] dir %s is writable "
			  "by group or others (chmod go-w it)", cfg->state.dir);
		return -1;
	}
	return 0;
}

/* The state directory is the new user's to write; hand over a root-owned
 * one (created by us or by the package) so the UID maps can be saved. */
static int
state_dir_hand_over(const struct config *cfg, const struct passwd *pw)
{
	struct stat st;

	if (stat(cfg->state.dir, &st) < 0) {
		log_error("[state] dir %s: %s", cfg->state.dir, strerror(errno));
		return -1;
	}
	if (st.st_uid == 0 &&
	    chown(cfg->state.dir, pw->pw_uid, pw->pw_gid) < 0) {
		log_error("cannot give [state] dir %s to %s: %s",
			  cfg->state.dir, pw->pw_name, strerror(errno));
		return -1;
	}
	return 0;
}

int
privs_drop(const struct config *cfg)
{
	const char *user = cfg->process.user;
	struct passwd *pw;

	if (geteuid() != 0) {
		if (user != NULL)
			log_warn("[process] user = %s ignored: not started as "
				 "root", user);
		return 0;
	}
	if (user == NULL) {
		log_warn("running as root; set [process] user to drop "
			 "privileges after binding");
		return state_dir_private(cfg);
	}
	pw = getpwnam(user);
	if (pw == NULL) {
		log_error("[process] user: no such user \"%s\"", user);
		return -1;
	}
	if (pw->pw_uid == 0)
		return state_dir_private(cfg);
	if (state_dir_hand_over(cfg, pw) < 0)
		return -1;
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error("cannot switch to user %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		log_error("still able to regain root after switching to %s",
			  user);
		return -1;
	}
	log_info("running as user %s (uid %u)", user, (unsigned)pw->pw_uid);
	return 0;
}
