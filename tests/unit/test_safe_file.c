/* The crash-safe file writer and reader (store/safe_file.h). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/safe_file.h"
#include "util/log.h"

static char dir[64];
static char err[512];
static struct safe_file_dir d = { .fd = -1 };

static void
setup(void)
{
	strcpy(dir, "/tmp/safe-file-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	/* The mode asserted below is the one asked for, whatever the caller's
	 * umask lets through. */
	umask(022);
	log_set_level(LOG_ERROR);
	cr_assert_eq(safe_file_open_dir(&d, dir, err, sizeof(err)), 0, "%s",
		     err);
}

static void
teardown(void)
{
	char cmd[128];

	safe_file_close_dir(&d, NULL, 0);
	chmod(dir, 0700);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(safe_file, .init = setup, .fini = teardown);

static void
at(char *p, size_t n, const char *name)
{
	snprintf(p, n, "%s/%s", dir, name);
}

/* Names in the directory but . and .., counted; *dots_r: those that
 * start with a dot. */
static int
count_files(int *dots_r)
{
	DIR *dd = opendir(dir);
	struct dirent *de;
	int n = 0, dots = 0;

	cr_assert_not_null(dd);
	while ((de = readdir(dd)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		n++;
		dots += de->d_name[0] == '.';
	}
	closedir(dd);
	if (dots_r != NULL)
		*dots_r = dots;
	return n;
}

static void
put(const char *name, const char *data, mode_t mode)
{
	char p[128];
	FILE *f;

	at(p, sizeof(p), name);
	f = fopen(p, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, strlen(data), f), strlen(data));
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(chmod(p, mode), 0);
}

/* The file holds exactly want. */
static void
expect(const char *name, const char *want)
{
	char *data = (char *)1;
	size_t len = 1;

	cr_assert_eq(safe_file_read(&d, name, 1 << 20, &data, &len, err,
				    sizeof(err)), 0, "%s", err);
	cr_assert_eq(len, strlen(want));
	cr_assert_eq(memcmp(data, want, len), 0);
	cr_assert_eq(data[len], '\0', "no NUL after the data");
	free(data);
}

static void
set_age(const char *name, time_t age)
{
	struct timespec ts[2];
	char p[128];

	at(p, sizeof(p), name);
	cr_assert_eq(clock_gettime(CLOCK_REALTIME, &ts[0]), 0);
	ts[0].tv_sec -= age;
	ts[1] = ts[0];
	cr_assert_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static bool
exists(const char *name)
{
	char p[128];
	struct stat st;

	at(p, sizeof(p), name);
	return lstat(p, &st) == 0;
}

Test(safe_file, write_then_read)
{
	struct stat st;
	char p[128];
	int dots;

	cr_assert_eq(safe_file_write(&d, "f", "hello\n", 6, err, sizeof(err)),
		     0, "%s", err);
	expect("f", "hello\n");
	at(p, sizeof(p), "f");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %04o",
		     (unsigned)(st.st_mode & 07777));
	/* Nothing but the file: no temporary file stays. */
	cr_assert_eq(count_files(&dots), 1);
	cr_assert_eq(dots, 0);

	/* A replacement is a new file: another inode, mode 0600 again. */
	cr_assert_eq(chmod(p, 0644), 0);
	cr_assert_eq(safe_file_write(&d, "f", "", 0, err, sizeof(err)), 0,
		     "%s", err);
	expect("f", "");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(count_files(NULL), 1);
}

Test(safe_file, replaces_atomically)
{
	static char big[1 << 20];
	char *data;
	size_t len, i;
	struct stat before, after;
	char p[128];
	int fd;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	put("f", "old", 0600);
	at(p, sizeof(p), "f");
	cr_assert_eq(stat(p, &before), 0);
	/* A reader that opened the old file keeps reading the old file: the
	 * new one is renamed over it, never written into it. */
	fd = open(p, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(safe_file_write(&d, "f", big, sizeof(big), err,
				     sizeof(err)), 0, "%s", err);
	cr_assert_eq(stat(p, &after), 0);
	cr_assert_neq(before.st_ino, after.st_ino);
	{
		char old[8];

		cr_assert_eq(read(fd, old, sizeof(old)), 3);
		cr_assert_eq(memcmp(old, "old", 3), 0);
	}
	close(fd);
	cr_assert_eq(safe_file_read(&d, "f", sizeof(big), &data, &len, err,
				    sizeof(err)), 0, "%s", err);
	cr_assert_eq(len, sizeof(big));
	cr_assert_eq(memcmp(data, big, len), 0);
	free(data);
	cr_assert_eq(count_files(NULL), 1);
}

Test(safe_file, size_limit)
{
	char *data = (char *)1;
	size_t len = 7;

	put("f", "0123456789", 0600);
	cr_assert_eq(safe_file_read(&d, "f", 9, &data, &len, err, sizeof(err)),
		     -EFBIG);
	cr_assert_null(data);
	cr_assert_eq(len, 0);
	cr_assert_not_null(strstr(err, "larger than 9 bytes"), "%s", err);
	cr_assert_eq(safe_file_read(&d, "f", 10, &data, &len, err,
				    sizeof(err)), 0, "%s", err);
	cr_assert_eq(len, 10);
	free(data);
	/* An empty file is 0 bytes, not an error. */
	put("e", "", 0600);
	cr_assert_eq(safe_file_read(&d, "e", 0, &data, &len, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(len, 0);
	cr_assert_eq(data[0], '\0');
	free(data);
}

Test(safe_file, missing_and_odd_files)
{
	struct safe_file_dir other = { .fd = 5 };
	char *data = (char *)1;
	size_t len;
	char p[128];

	cr_assert_eq(safe_file_read(&d, "nothing", 100, &data, &len, err,
				    sizeof(err)), -ENOENT);
	cr_assert_null(data);
	cr_assert_not_null(strstr(err, "does not exist"), "%s", err);

	/* A directory where a file is expected: neither read nor replaced. */
	at(p, sizeof(p), "sub");
	cr_assert_eq(mkdir(p, 0700), 0);
	put("sub/x", "x", 0600);
	cr_assert_eq(safe_file_read(&d, "sub", 100, &data, &len, err,
				    sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);
	cr_assert_eq(safe_file_write(&d, "sub", "new", 3, err, sizeof(err)),
		     -EISDIR);
	cr_assert_not_null(strstr(err, "rename"), "%s", err);
	cr_assert_eq(count_files(NULL), 1, "a temporary file stayed");
	cr_assert(exists("sub/x"));

	/* Names that are not plain file names. */
	cr_assert_eq(safe_file_read(&d, "", 100, &data, &len, err,
				    sizeof(err)), -EINVAL);
	cr_assert_eq(safe_file_read(&d, "..", 100, &data, &len, err,
				    sizeof(err)), -EINVAL);
	cr_assert_eq(safe_file_read(&d, "sub/x", 100, &data, &len, err,
				    sizeof(err)), -EINVAL);
	cr_assert_eq(safe_file_write(&d, ".", "x", 1, err, sizeof(err)),
		     -EINVAL);
	cr_assert_eq(safe_file_write(&d, "sub/y", "x", 1, NULL, 0), -EINVAL);
	cr_assert_not(exists("sub/y"));

	/* Directories that are not there, or not directories. */
	at(p, sizeof(p), "gone");
	cr_assert_eq(safe_file_open_dir(&other, p, err, sizeof(err)), -ENOENT);
	cr_assert_eq(other.fd, -1);
	cr_assert_not_null(strstr(err, "does not exist"), "%s", err);
	put("plain", "x", 0600);
	at(p, sizeof(p), "plain");
	cr_assert_eq(safe_file_open_dir(&other, p, err, sizeof(err)),
		     -ENOTDIR);
	cr_assert_eq(other.fd, -1);
	cr_assert_eq(safe_file_close_dir(&other, err, sizeof(err)), 0);
	/* Closing twice is harmless. */
	cr_assert_eq(safe_file_close_dir(&d, err, sizeof(err)), 0);
	cr_assert_eq(d.fd, -1);
	cr_assert_eq(safe_file_close_dir(&d, err, sizeof(err)), 0);
}

/* A FIFO where the file should be: refused at once, never waited on
 * (the test would hang without O_NONBLOCK; the timeout makes it fail). */
Test(safe_file, fifo_is_refused_without_blocking, .timeout = 10)
{
	char *data = NULL;
	size_t len;
	char p[128];

	at(p, sizeof(p), "fifo");
	cr_assert_eq(mkfifo(p, 0600), 0);
	cr_assert_eq(safe_file_read(&d, "fifo", 100, &data, &len, err,
				    sizeof(err)), -EINVAL);
	cr_assert_null(data);
	cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);
}

Test(safe_file, failed_write_keeps_old_file)
{
	static char big[8192];
	struct rlimit rl, small;
	int dots;

	put("f", "old content", 0600);
	memset(big, 'x', sizeof(big));
	/* Larger than the process may write. */
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	small = (struct rlimit){ .rlim_cur = 4096, .rlim_max = rl.rlim_max };
	cr_assert_neq(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
	cr_assert_eq(safe_file_write(&d, "f", big, sizeof(big), err,
				     sizeof(err)), -EFBIG);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	cr_assert_not_null(strstr(err, "cannot write the new"), "%s", err);
	expect("f", "old content");
	cr_assert_eq(count_files(&dots), 1);
	cr_assert_eq(dots, 0);
	/* And the next write succeeds. */
	cr_assert_eq(safe_file_write(&d, "f", big, sizeof(big), err,
				     sizeof(err)), 0, "%s", err);
	cr_assert_eq(count_files(NULL), 1);
}

Test(safe_file, read_only_directory_keeps_old_file)
{
	if (geteuid() == 0)
		cr_skip_test("root writes into a directory of mode 0500");
	put("f", "old content", 0600);
	cr_assert_eq(chmod(dir, 0500), 0);
	cr_assert_eq(safe_file_write(&d, "f", "new", 3, err, sizeof(err)),
		     -EACCES);
	cr_assert_not_null(strstr(err, "temporary file"), "%s", err);
	cr_assert_eq(chmod(dir, 0700), 0);
	expect("f", "old content");
	cr_assert_eq(count_files(NULL), 1);
}

Test(safe_file, clean_stale)
{
	char p[128];

	/* What an interrupted write leaves, old and recent. */
	put(".f.tmp-0123456789abcdef", "half", 0600);
	set_age(".f.tmp-0123456789abcdef", SAFE_FILE_STALE_SECONDS + 5);
	put(".g.tmp-fedcba9876543210", "in progress", 0600);
	set_age(".g.tmp-fedcba9876543210", SAFE_FILE_STALE_SECONDS - 60);
	/* Old, but not named as a temporary file, or not a regular file. */
	put("f.tmp-0123456789abcdef", "mine", 0600);
	put(".f.tmp-0123456789abcdeg", "mine", 0600);
	put(".f.tmp-0123456789abcde", "mine", 0600);
	put(".f.tmp-0123456789abcdef.bak", "mine", 0600);
	put("f", "the file", 0600);
	at(p, sizeof(p), ".d.tmp-0123456789abcdef");
	cr_assert_eq(mkdir(p, 0700), 0);
	at(p, sizeof(p), ".l.tmp-0123456789abcdef");
	cr_assert_eq(symlink("f", p), 0);
	set_age("f.tmp-0123456789abcdef", 100000);
	set_age(".f.tmp-0123456789abcdeg", 100000);
	set_age(".f.tmp-0123456789abcde", 100000);
	set_age(".f.tmp-0123456789abcdef.bak", 100000);
	set_age(".d.tmp-0123456789abcdef", 100000);
	set_age(".l.tmp-0123456789abcdef", 100000);
	set_age("f", 100000);

	cr_assert_eq(safe_file_clean_stale(dir, SAFE_FILE_STALE_SECONDS), 1);
	cr_assert_not(exists(".f.tmp-0123456789abcdef"));
	cr_assert(exists(".g.tmp-fedcba9876543210"), "a recent one was taken");
	cr_assert(exists("f.tmp-0123456789abcdef"));
	cr_assert(exists(".f.tmp-0123456789abcdeg"));
	cr_assert(exists(".f.tmp-0123456789abcde"));
	cr_assert(exists(".f.tmp-0123456789abcdef.bak"));
	cr_assert(exists(".d.tmp-0123456789abcdef"));
	cr_assert(exists(".l.tmp-0123456789abcdef"));
	cr_assert(exists("f"));
	cr_assert_eq(safe_file_clean_stale(dir, SAFE_FILE_STALE_SECONDS), 0);
	/* With no minimum age, the recent one goes too. */
	cr_assert_eq(safe_file_clean_stale(dir, 0), 1);
	cr_assert_not(exists(".g.tmp-fedcba9876543210"));

	at(p, sizeof(p), "gone");
	cr_assert_eq(safe_file_clean_stale(p, 0), -ENOENT);
}

Test(safe_file, crash_during_write)
{
	static char big[8192];
	struct rlimit small = { .rlim_cur = 4096, .rlim_max = RLIM_INFINITY };
	char tmp[300] = "", p[128];
	struct dirent *de;
	struct stat st;
	int status, n = 0;
	pid_t pid;
	DIR *dd;

	put("f", "old content", 0600);
	memset(big, 'x', sizeof(big));
	/* A writer killed mid-write (SIGXFSZ past its file size limit). */
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		small.rlim_max = small.rlim_cur;
		signal(SIGXFSZ, SIG_DFL);
		if (setrlimit(RLIMIT_FSIZE, &small) == 0)
			safe_file_write(&d, "f", big, sizeof(big), NULL, 0);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ,
		  "status %d", status);
	/* The old file, and one temporary file as safe_file_write names it. */
	expect("f", "old content");
	dd = opendir(dir);
	cr_assert_not_null(dd);
	while ((de = readdir(dd)) != NULL) {
		if (strncmp(de->d_name, ".f.tmp-", 7) != 0)
			continue;
		n++;
		snprintf(tmp, sizeof(tmp), "%s", de->d_name);
	}
	closedir(dd);
	cr_assert_eq(n, 1);
	cr_assert_eq(strlen(tmp), strlen(".f.tmp-") + 16, "%s", tmp);
	cr_assert_eq(strspn(tmp + 7, "0123456789abcdef"), 16, "%s", tmp);
	at(p, sizeof(p), tmp);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(st.st_size, 4096);
	/* Recent: it might be a save in progress. Old: taken. */
	cr_assert_eq(safe_file_clean_stale(dir, SAFE_FILE_STALE_SECONDS), 0);
	cr_assert(exists(tmp));
	set_age(tmp, SAFE_FILE_STALE_SECONDS);
	cr_assert_eq(safe_file_clean_stale(dir, SAFE_FILE_STALE_SECONDS), 1);
	cr_assert_not(exists(tmp));
	expect("f", "old content");
	cr_assert_eq(count_files(NULL), 1);
}
