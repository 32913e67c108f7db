/*
 * libFuzzer target for include/config.h: config_load_string on the input
 * (as a C string), then config_print and config_free on success. An error
 * must come with a message that names the file. One input in 16 (by its
 * size) is also written to a file for config_load, which sees the NUL
 * bytes config_load_string cannot; without a NUL both must agree, message
 * and all.
 *
 * config_print promises INI that reads back to the same settings, so the
 * printed text is loaded again and printed again: the two printouts must
 * match. inih caps lines at 197 characters and config_print may write a
 * longer line than it read ("a,b" comes out as " a, b"), so a printout with
 * such a line is not reloaded.
 */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "fuzz_common.h"

#define NAME "fuzz.ini"
/* inih's line buffer (200) less what config.c's reader keeps back. */
#define LINE_MAX_READ 197

static FILE *devnull;
/* An unlinked temporary file, opened by config_load through /proc. */
static int file_fd = -1;
static char file_path[64];

static void
setup(void)
{
	char tmpl[] = "/tmp/fuzz_config.XXXXXX";

	devnull = fopen("/dev/null", "w");
	CHECK(devnull != NULL);
	file_fd = mkstemp(tmpl);
	CHECK(file_fd >= 0);
	CHECK(unlink(tmpl) == 0);
	snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);
}

static void
check_error(int r, const struct config *cfg, const char *err,
	    const char *name)
{
	CHECK(r == -EINVAL || r == -EIO || r == -ENOMEM);
	CHECK(cfg == NULL);
	CHECK(memchr(err, '\0', CONFIG_ERR_MAX) != NULL);
	CHECK(strncmp(err, name, strlen(name)) == 0 &&
	      err[strlen(name)] == ':');
	CHECK(strchr(err, '\n') == NULL);
}

/* Loads the same bytes from a file; returns what config_load said. */
static int
load_file(const uint8_t *data, size_t size, char *err, size_t errlen)
{
	struct config *cfg = (struct config *)1;
	int r;

	CHECK(ftruncate(file_fd, 0) == 0);
	CHECK(pwrite(file_fd, data, size, 0) == (ssize_t)size);
	err[0] = '\0';
	r = config_load(file_path, &cfg, err, errlen);
	if (r == 0) {
		CHECK(cfg != NULL);
		config_print(cfg, devnull);
		config_free(&cfg);
	} else {
		check_error(r, cfg, err, file_path);
	}
	return r;
}

static char *
print_to_string(const struct config *cfg, size_t *len_r)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len_r);

	CHECK(f != NULL);
	config_print(cfg, f);
	CHECK(fclose(f) == 0);
	return text;
}

static int
lines_fit(const char *s)
{
	const char *nl;

	for (; *s != '\0'; s = nl + 1) {
		nl = strchr(s, '\n');
		if (nl == NULL)
			return strlen(s) <= LINE_MAX_READ;
		if ((size_t)(nl - s) > LINE_MAX_READ)
			return 0;
	}
	return 1;
}

/* The first line names the file the settings came from; skip it. */
static const char *
body(const char *s)
{
	const char *nl = strchr(s, '\n');

	CHECK(nl != NULL);
	return nl + 1;
}

/* A secret is printed as "; KEY = (secret, not shown)", so the printout
 * loads back without it and its second printout says "KEY =": the first
 * is compared in that form. Rewrites s in place (it only shrinks). */
static void
unmask_secrets(char *s)
{
	static const char mark[] = " = (secret, not shown)\n";
	char *out = s, *line = s, *nl, *m;

	while (*line != '\0') {
		nl = strchr(line, '\n');
		if (nl == NULL)
			nl = line + strlen(line) - 1;
		m = strstr(line, mark);
		if (line[0] == ';' && line[1] == ' ' && m != NULL && m < nl) {
			size_t klen = (size_t)(m - line - 2);

			memmove(out, line + 2, klen);
			memcpy(out + klen, " =\n", 3);
			out += klen + 3;
		} else {
			size_t n = (size_t)(nl - line) + 1;

			memmove(out, line, n);
			out += n;
		}
		line = nl + 1;
	}
	*out = '\0';
}

static void
round_trip(const struct config *cfg)
{
	struct config *again = NULL;
	char err[CONFIG_ERR_MAX];
	char *first, *second;
	size_t len1, len2;

	first = print_to_string(cfg, &len1);
	CHECK(strlen(first) == len1);
	if (lines_fit(first)) {
		err[0] = '\0';
		if (config_load_string(first, NAME, &again, err,
				       sizeof(err)) != 0) {
			fprintf(stderr, "printout does not load: %s\n---\n%s",
				err, first);
			abort();
		}
		second = print_to_string(again, &len2);
		unmask_secrets(first);
		if (strcmp(body(first), body(second)) != 0) {
			fprintf(stderr, "printouts differ\n---\n%s---\n%s",
				first, second);
			abort();
		}
		free(second);
		config_free(&again);
		CHECK(again == NULL);
	}
	free(first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = (struct config *)1;
	char err[CONFIG_ERR_MAX], ferr[CONFIG_ERR_MAX];
	char *text;
	int r, fr;

	if (devnull == NULL)
		setup();
	text = malloc(size + 1);
	CHECK(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	err[0] = '\0';
	r = config_load_string(text, NAME, &cfg, err, sizeof(err));
	if (r == 0) {
		CHECK(cfg != NULL);
		CHECK(err[0] == '\0');
		config_print(cfg, devnull);
		round_trip(cfg);
		config_free(&cfg);
		CHECK(cfg == NULL);
	} else {
		check_error(r, cfg, err, NAME);
	}

	/* config_load reads into a fresh 1 MB buffer, which ASan maps and
	 * unmaps each time: only one input in 16 takes the file path. */
	if (size % 16 == 3) {
		fr = load_file(data, size, ferr, sizeof(ferr));
		/* Without a NUL it is the same text under another name: the
		 * same verdict, and the same message after the name (unless
		 * one was cut short). */
		if (memchr(data, '\0', size) == NULL) {
			CHECK(fr == r);
			if (r != 0 && strlen(err) < sizeof(err) - 1 &&
			    strlen(ferr) < sizeof(ferr) - 1)
				CHECK(strcmp(ferr + strlen(file_path),
					     err + strlen(NAME)) == 0);
		}
	}
	free(text);
	return 0;
}
