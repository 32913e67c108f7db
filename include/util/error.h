#ifndef POPBRIDGE_ERROR_H
#define POPBRIDGE_ERROR_H

#include <errno.h>
#include <stddef.h>

/*
 * One error convention for every module: a function that can fail returns
 * 0 (or a count, or a pointer) on success and a negative errno code on
 * failure, the same codes libuv returns (UV_E* == -E* on Unix). Callers
 * switch on the code; text for a log line comes from err_text, or from an
 * err/why string the function documents next to the code, never the other
 * way round. The codes with a meaning of their own here:
 *
 *   -ENOMEM           out of memory
 *   -EINVAL           bad argument or configuration value
 *   -EBADMSG          input that does not parse (a damaged file, a bad line)
 *   -EPROTO           a peer broke its protocol (IMAP, PROXY, TLS)
 *   -EPROTONOSUPPORT  a format version this build does not know
 *   -EIO              a file or socket operation failed (errno was logged)
 *   -ENOENT           not there (a file, a message)
 *   -EAGAIN           more input is needed (incremental parsers)
 */

/* Text for a negative code (or a positive errno); never NULL. */
const char *err_text(int code);

/* Formats a reason into err[0..errlen) for the caller that asked for one;
 * nothing when errlen is 0 (err may be NULL then). */
void err_set(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
