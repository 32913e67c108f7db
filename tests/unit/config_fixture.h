/*
 * Shared by the configuration unit tests: loading INI text that must
 * load, or must fail with one line naming the error.
 */
#ifndef POPBRIDGE_TEST_CONFIG_FIXTURE_H
#define POPBRIDGE_TEST_CONFIG_FIXTURE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/config.h"

static inline struct config *
load_ok(const char *text)
{
	struct config *cfg = NULL;
	char err[CONFIG_ERR_MAX] = "";

	cr_assert_eq(config_load_string(text, "t.ini", &cfg, err, sizeof(err)),
		     0, "unexpected error: %s\n--- input:\n%s", err, text);
	cr_assert_not_null(cfg);
	return cfg;
}

/* Loads text that must fail; returns the message for further checks. */
static inline const char *
load_bad(const char *text)
{
	static char err[CONFIG_ERR_MAX];
	struct config *cfg = (struct config *)&err;

	err[0] = '\0';
	cr_assert_eq(config_load_string(text, "t.ini", &cfg, err, sizeof(err)),
		     -EINVAL, "accepted:\n%s", text);
	cr_assert_null(cfg);
	cr_assert(strchr(err, '\n') == NULL, "not one line: %s", err);
	return err;
}

/* Prints cfg into a string the caller frees. */
static inline char *
print_to_string(const struct config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cr_assert_not_null(f);
	config_print(cfg, f);
	cr_assert_eq(fclose(f), 0);
	return text;
}

/* The text after the first line, which names the source file. */
static inline const char *
body(const char *printed)
{
	const char *nl = strchr(printed, '\n');

	cr_assert_not_null(nl);
	return nl + 1;
}

#endif
