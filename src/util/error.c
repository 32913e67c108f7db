/* err_text: words for the negative error codes of util/error.h. */
#include "util/error.h"

#include <string.h>

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
