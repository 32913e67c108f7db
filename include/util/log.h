#ifndef POPBRIDGE_LOG_H
#define POPBRIDGE_LOG_H

/*
 * Leveled logging to stderr, one line per call, written with a single
 * write(2). On a terminal a line carries a timestamp, "popbridge" and the
 * level; elsewhere (journald, syslog, a pipe) it starts with the
 * sd-daemon(3) priority prefix instead ("<3>" error, "<4>" warn, "<6>" info,
 * "<7>" debug). Control bytes, CR and LF in a message, and bytes that are
 * not UTF-8, are written as \xNN, so no message can start a line of its
 * own. Callers never pass secrets (passwords, AUTH payloads).
 */
enum log_level {
	LOG_ERROR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/* How lines look; LOG_STYLE_AUTO (the default) picks HUMAN when stderr is
 * a terminal and SYSLOG otherwise, looking once, at the first message after
 * start or after log_set_style(LOG_STYLE_AUTO). */
enum log_style {
	LOG_STYLE_AUTO = 0,
	LOG_STYLE_HUMAN,	/* "2024-05-01T12:00:00.000Z popbridge info: ..." */
	LOG_STYLE_SYSLOG,	/* "<6>..." */
};

/* The longest line written, newline included; a longer message is cut and
 * ends in "...". At most PIPE_BUF, so that a write to a pipe is atomic. */
#define LOG_LINE_MAX 4096

void log_set_level(enum log_level level);
void log_set_style(enum log_style style);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
