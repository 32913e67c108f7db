/* posix_openpt, grantpt, unlockpt and ptsname for the terminal case. */
#define _XOPEN_SOURCE 700

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "util/log.h"

struct capture {
	int saved;	/* the real stderr */
	int rd;		/* what log_msg wrote */
};

/* Points stderr at a new pipe (or at fd, when fd >= 0). */
static void
capture_start(struct capture *c, int fd)
{
	int p[2] = { -1, -1 };

	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	cr_assert(c->saved >= 0);
	if (fd < 0) {
		cr_assert_eq(pipe(p), 0);
		fd = p[1];
	}
	cr_assert(dup2(fd, STDERR_FILENO) >= 0);
	if (p[1] >= 0)
		close(p[1]);
	c->rd = p[0];
}

/* Restores stderr; returns what was written (the caller frees it), or
 * NULL when stderr was not a pipe of ours. */
static char *
capture_end(struct capture *c)
{
	char *text = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;

	cr_assert(dup2(c->saved, STDERR_FILENO) >= 0);
	close(c->saved);
	if (c->rd < 0)
		return NULL;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap * 2 + 8192;
			text = realloc(text, cap);
			cr_assert_not_null(text);
		}
		n = read(c->rd, text + len, cap - len - 1);
		cr_assert(n >= 0);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	text[len] = '\0';
	close(c->rd);
	return text;
}

static void
setup(void)
{
	log_set_level(LOG_INFO);
	log_set_style(LOG_STYLE_AUTO);
}

TestSuite(log, .init = setup);

Test(log, syslog_prefixes_when_not_a_terminal)
{
	struct capture c;
	char *out;

	log_set_level(LOG_DEBUG);
	capture_start(&c, -1);
	log_error("e %d", 1);
	log_warn("w");
	log_info("i");
	log_debug("d");
	out = capture_end(&c);
	cr_assert_str_eq(out, "<3>e 1\n<4>w\n<6>i\n<7>d\n");
	free(out);
}

Test(log, level_filters)
{
	struct capture c;
	char *out;

	log_set_level(LOG_WARN);
	capture_start(&c, -1);
	log_debug("d");
	log_info("i");
	log_warn("w");
	log_error("e");
	out = capture_end(&c);
	cr_assert_str_eq(out, "<4>w\n<3>e\n");
	free(out);
}

Test(log, control_bytes_cannot_forge_lines)
{
	struct capture c;
	char *out;

	capture_start(&c, -1);
	log_info("user %s failed", "x\r\n<3>popbridge: forged\n");
	log_info("%s", "tab\there esc\x1b[2J del\x7f bell\a");
	log_info("%s", "8-bit: M\xc3\xbcll \xe2\x82\xac \xf0\x9f\x93\xa7");
	log_info("%s", "bad: \xff \xc3 \xc0\xaf \xed\xa0\x80 c1:\xc2\x9b.");
	log_info("a%cb", 0);
	log_info("\\x0a stays as typed, \\ too");
	out = capture_end(&c);
	cr_assert_str_eq(out,
		"<6>user x\\x0d\\x0a<3>popbridge: forged\\x0a failed\n"
		"<6>tab\\x09here esc\\x1b[2J del\\x7f bell\\x07\n"
		"<6>8-bit: M\xc3\xbcll \xe2\x82\xac \xf0\x9f\x93\xa7\n"
		"<6>bad: \\xff \\xc3 \\xc0\\xaf \\xed\\xa0\\x80 c1:\\xc2\\x9b.\n"
		"<6>a\n"
		"<6>\\x0a stays as typed, \\ too\n");
	free(out);
}

static void
assert_one_cut_line(const char *out, const char *prefix)
{
	size_t len = strlen(out);

	cr_assert(len <= LOG_LINE_MAX, "line of %zu bytes", len);
	cr_assert(len > LOG_LINE_MAX - 8, "line of only %zu bytes", len);
	cr_assert_eq(strchr(out, '\n'), out + len - 1);
	cr_assert(strncmp(out, prefix, strlen(prefix)) == 0);
	cr_assert(strcmp(out + len - 4, "...\n") == 0, "%s", out + len - 16);
}

Test(log, long_messages_are_cut_on_one_line)
{
	static char big[3 * LOG_LINE_MAX];
	struct capture c;
	char *out, *p;

	memset(big, 'a', sizeof(big) - 1);
	capture_start(&c, -1);
	log_warn("%s", big);
	out = capture_end(&c);
	assert_one_cut_line(out, "<4>aaaa");
	free(out);

	/* Escapes are never cut in half. */
	memset(big, '\n', sizeof(big) - 1);
	capture_start(&c, -1);
	log_warn("%s", big);
	out = capture_end(&c);
	assert_one_cut_line(out, "<4>\\x0a\\x0a");
	for (p = out + 3; *p != '.'; p += 4)
		cr_assert(strncmp(p, "\\x0a", 4) == 0, "at %td", p - out);
	free(out);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ popbridge LEVEL: " */
static void
assert_human(const char *line, const char *rest)
{
	static const char shape[] = "####-##-##T##:##:##.###Z popbridge ";
	size_t i;

	for (i = 0; shape[i] != '\0'; i++) {
		if (shape[i] == '#')
			cr_assert(line[i] >= '0' && line[i] <= '9', "%s", line);
		else
			cr_assert_eq(line[i], shape[i], "%s", line);
	}
	cr_assert_str_eq(line + i, rest);
}

Test(log, human_style_when_asked)
{
	struct capture c;
	char *out;

	log_set_style(LOG_STYLE_HUMAN);
	capture_start(&c, -1);
	log_warn("hi\nthere");
	out = capture_end(&c);
	assert_human(out, "warn: hi\\x0athere\n");
	free(out);
}

Test(log, human_style_on_a_terminal)
{
	char buf[512];
	struct capture c;
	struct termios t;
	ssize_t n;
	size_t len = 0;
	int master, slave;

	master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
		cr_skip_test("no pseudo-terminal here");
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	cr_assert(slave >= 0);
	cr_assert_eq(tcgetattr(slave, &t), 0);
	cfmakeraw(&t);
	cr_assert_eq(tcsetattr(slave, TCSANOW, &t), 0);
	capture_start(&c, slave);
	log_error("on a tty");
	log_set_style(LOG_STYLE_SYSLOG);
	log_error("forced");
	cr_assert_null(capture_end(&c));
	close(slave);
	while (len == 0 || buf[len - 1] != '\n' || strchr(buf, '<') == NULL) {
		n = read(master, buf + len, sizeof(buf) - 1 - len);
		cr_assert(n > 0);
		len += (size_t)n;
		buf[len] = '\0';
	}
	close(master);
	cr_assert_not_null(strstr(buf, "\n<3>forced\n"), "%s", buf);
	*strstr(buf, "<3>forced") = '\0';
	assert_human(buf, "error: on a tty\n");
}
