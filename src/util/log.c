/* Leveled log lines to stderr, one write(2) each: a timestamp on a
 * terminal, the sd-daemon priority prefix elsewhere, control bytes escaped. */
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The formatted message before escaping; what does not fit is cut. */
#define LOG_MSG_MAX LOG_LINE_MAX
/* Marks a message that was cut. */
#define LOG_CUT "..."

_Static_assert(LOG_LINE_MAX <= PIPE_BUF, "a log line must be atomic");

/* Set once from the configuration (and again on reload); read everywhere. */
static enum log_level current_level = LOG_INFO;
static enum log_style current_style = LOG_STYLE_AUTO;
/* What LOG_STYLE_AUTO found; AUTO until the first message looks. */
static enum log_style detected_style = LOG_STYLE_AUTO;

static const char *const level_names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARN] = "warn",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

/* sd-daemon(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const char *const level_prio[] = {
	[LOG_ERROR] = "<3>",
	[LOG_WARN] = "<4>",
	[LOG_INFO] = "<6>",
	[LOG_DEBUG] = "<7>",
};

void
log_set_level(enum log_level level)
{
	current_level = level;
}

void
log_set_style(enum log_style style)
{
	current_style = style;
	detected_style = LOG_STYLE_AUTO;
}

int
log_enabled(enum log_level level)
{
	return level <= current_level;
}

static enum log_style
style_now(void)
{
	if (current_style != LOG_STYLE_AUTO)
		return current_style;
	if (detected_style == LOG_STYLE_AUTO)
		detected_style = isatty(STDERR_FILENO) ? LOG_STYLE_HUMAN
						       : LOG_STYLE_SYSLOG;
	return detected_style;
}

/*
 * Length of the UTF-8 sequence at s[0..n) if it is well formed and not a
 * C1 control (U+0080..U+009F, which some terminals obey), else 0.
 */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned cp;
	size_t len, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1fu;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0fu;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0)
		return 0;
	return len;
}

/*
 * Appends msg[0..len) to out[*pos..max), escaping what could end the line
 * or drive a terminal. Stops before an item that does not fit whole;
 * returns false when it had to stop.
 */
static bool
escape(char *out, size_t *pos, size_t max, const char *msg, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)msg;
	size_t i = 0, n;

	while (i < len) {
		if (s[i] >= 0x20 && s[i] < 0x7f) {
			n = 1;
		} else {
			n = utf8_len(s + i, len - i);
			if (n == 0) {
				if (*pos + 4 > max)
					return false;
				out[(*pos)++] = '\\';
				out[(*pos)++] = 'x';
				out[(*pos)++] = hex[s[i] >> 4];
				out[(*pos)++] = hex[s[i] & 0xf];
				i++;
				continue;
			}
		}
		if (*pos + n > max)
			return false;
		memcpy(out + *pos, s + i, n);
		*pos += n;
		i += n;
	}
	return true;
}

static void
write_all(const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(STDERR_FILENO, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;		/* nowhere to report it */
		p += n;
		len -= (size_t)n;
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char msg[LOG_MSG_MAX], line[LOG_LINE_MAX];
	size_t pos = 0, len, max;
	bool cut;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	if (style_now() == LOG_STYLE_HUMAN) {
		char stamp[32];
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line, sizeof(line), "%s.%03ldZ popbridge %s: ",
			     stamp, ts.tv_nsec / 1000000, level_names[level]);
	} else {
		n = snprintf(line, sizeof(line), "%s", level_prio[level]);
	}
	pos = n > 0 ? (size_t)n : 0;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = snprintf(msg, sizeof(msg), "(bad log format \"%s\")", fmt);
	len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
	/* A NUL from a %c ends the message as it would end a %s. */
	len = strnlen(msg, len);
	max = sizeof(line) - 1 - (sizeof(LOG_CUT) - 1);
	cut = !escape(line, &pos, max, msg, len) || (size_t)n >= sizeof(msg);
	if (cut) {
		memcpy(line + pos, LOG_CUT, sizeof(LOG_CUT) - 1);
		pos += sizeof(LOG_CUT) - 1;
	}
	line[pos++] = '\n';
	write_all(line, pos);
}
