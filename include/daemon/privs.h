#ifndef POPBRIDGE_PRIVS_H
#define POPBRIDGE_PRIVS_H

#include "daemon/config.h"

/*
 * After the listening sockets are bound: a daemon started as root switches
 * to [process] user (its groups too) and makes sure it cannot switch back;
 * one that stays root refuses a state directory that others can write (a
 * planted UID map could make clients download or lose track of mail).
 * Returns 0, or -EIO, -EPERM or -EACCES after logging why.
 */
int privs_drop(const struct config *cfg);

/* For a configuration about to replace old on SIGHUP: the same refusal of
 * a state directory others can write while still root. 0 or a negative
 * code. */
int privs_check_reload(const struct config *old, const struct config *cfg);

#endif
