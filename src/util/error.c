/* err_text: words for the negative error codes of util/error.h. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
err_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *
err_text(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case 0:
		return "success";
	case EBADMSG:
		return "malformed data";
	case EPROTO:
		return "protocol error";
	case EPROTONOSUPPORT:
		return "unsupported format version";
	default:
		return strerror(code);
	}
}
