/* Dropping root to [process] user/group after the listeners are bound. */
#include "daemon/privs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/log.h"

static int
state_dir_private(const struct config *cfg)
{
	struct stat st;

	if (stat(cfg->state.dir, &st) < 0) {
		log_error("[state] dir %s: %s", cfg->state.dir, strerror(errno));
		return -EIO;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		log_error("refusing to run as root: [state] dir %s is writable "
			  "by group or others (chmod go-w it)", cfg->state.dir);
		return -EPERM;
	}
	return 0;
}

/* Maps written while popbridge still ran as root stay readable after a
 * switch to [process] user: root-owned regular files directly in the
 * directory change hands too (links are not followed). */
static int
hand_over_files(const char *dir, const struct passwd *pw)
{
	struct dirent *de;
	struct stat st;
	int fd, r = 0;
	DIR *d;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		log_error("[state] dir %s: %s", dir, strerror(errno));
		return -EIO;
	}
	while ((de = readdir(d)) != NULL) {
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || st.st_uid != 0)
			continue;
		if (fchownat(fd, de->d_name, pw->pw_uid, pw->pw_gid,
			     AT_SYMLINK_NOFOLLOW) < 0) {
			log_error("cannot give %s/%s to %s: %s", dir,
				  de->d_name, pw->pw_name, strerror(errno));
			r = -1;
		}
	}
	closedir(d);
	return r;
}

/* The state directory is the new user's to write; hand over a root-owned
 * one (created by us or by the package) so the UID maps can be saved. */
static int
state_dir_hand_over(const struct config *cfg, const struct passwd *pw)
{
	struct stat st;

	if (stat(cfg->state.dir, &st) < 0) {
		log_error("[state] dir %s: %s", cfg->state.dir, strerror(errno));
		return -EIO;
	}
	if (st.st_uid == 0 &&
	    chown(cfg->state.dir, pw->pw_uid, pw->pw_gid) < 0) {
		log_error("cannot give [state] dir %s to %s: %s",
			  cfg->state.dir, pw->pw_name, strerror(errno));
		return -EIO;
	}
	return hand_over_files(cfg->state.dir, pw);
}

int
privs_check_reload(const struct config *old, const struct config *cfg)
{
	const char *a = old->process.user, *b = cfg->process.user;

	if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0))
		log_warn("[process] user changes only on restart");
	if (geteuid() == 0)
		return state_dir_private(cfg);
	return 0;
}

int
privs_drop(const struct config *cfg)
{
	const char *user = cfg->process.user;
	struct passwd *pw;
	int r;

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
		return -EPERM;
	}
	if (pw->pw_uid == 0)
		return state_dir_private(cfg);
	r = state_dir_hand_over(cfg, pw);
	if (r < 0)
		return r;
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error("cannot switch to user %s: %s", user, strerror(errno));
		return -EPERM;
	}
	if (setuid(0) == 0) {
		log_error("still able to regain root after switching to %s",
			  user);
		return -EPERM;
	}
	if (access(cfg->state.dir, W_OK | X_OK) < 0) {
		log_error("[state] dir %s is not writable by user %s: %s",
			  cfg->state.dir, user, strerror(errno));
		return -EACCES;
	}
	log_info("running as user %s (uid %u)", user, (unsigned)pw->pw_uid);
	return 0;
}
