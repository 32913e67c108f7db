#include <criterion/criterion.h>
#include <string.h>

#include "util/error.h"

Test(error, own_meanings) {
	cr_assert_str_eq(err_text(-EBADMSG), "malformed data");
	cr_assert_str_eq(err_text(-EPROTO), "protocol error");
	cr_assert_str_eq(err_text(-EPROTONOSUPPORT),
			 "unsupported format version");
}

Test(error, errno_text_either_sign) {
	cr_assert_str_eq(err_text(-ENOMEM), strerror(ENOMEM));
	cr_assert_str_eq(err_text(ENOENT), strerror(ENOENT));
	cr_assert_str_eq(err_text(0), "success");
}

Test(error, unknown_code_has_text) {
	const char *t = err_text(-100000);

	cr_assert_not_null(t);
	cr_assert_gt(strlen(t), 0);
}

Test(error, err_set_formats_or_stays_silent)
{
	char e[8];

	err_set(e, sizeof(e), "%s %d", "code", 12345);
	cr_assert_str_eq(e, "code 12");
	err_set(NULL, 0, "%s", "nothing written");
}
