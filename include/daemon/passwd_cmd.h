#ifndef POPBRIDGE_PASSWD_CMD_H
#define POPBRIDGE_PASSWD_CMD_H

/*
 * popbridge [-c FILE] passwd ACCOUNT [--device LABEL] [--revoke]
 *                                    [--upstream] [--generate] [--list]
 *
 * Adds, changes and revokes an account's device passwords and stores its
 * upstream secret, in the account's file under [state] dir
 * (accounts/account_file.h), while the daemon runs or not: the file is
 * replaced whole (safe_file), so a daemon reading it, or a crash, sees
 * the old file or the new one; two passwd commands at once take turns
 * (a lock on the state directory).
 *
 * Secrets come one per line, the line end (LF or CRLF) stripped and
 * nothing else, from standard input; on a terminal they are prompted for
 * without echo, and a new device password is asked twice. Without
 * --device the label is "default". The exit status is 0, 1 with a
 * one-line reason on standard error, 2 for a usage error. Messages go to
 * standard error; standard output carries only what was asked for (the
 * --generate password, the --list lines).
 *
 * config_path is the -c given before "passwd"; argv[0] is "passwd".
 */
int passwd_cmd(const char *config_path, int argc, char **argv);

#endif
