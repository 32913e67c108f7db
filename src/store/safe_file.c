/* Crash-safe whole-file reads and replacements in one directory (temporary
 * file, fsync, rename, fsync of the directory), and removal of the
 * temporary files a crash left behind; see store/safe_file.h. */
#include "store/safe_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"

/* Random bytes in a temporary file's name (twice as many hex digits). */
#define TMP_RANDOM 8
#define TMP_MARK ".tmp-"
/* Attempts at a fresh random temporary file name. */
#define TMP_TRIES 8
#define TMP_NAME_MAX 320
/* A file's path as messages show it (truncated beyond that). */
#define SHOW_MAX 4352

static const char hexdigits[] = "0123456789abcdef";

/* dir/name for a message. */
static const char *
show(const char *dir, const char *name, char buf[SHOW_MAX])
{
	size_t dl = strlen(dir);
	bool slash = dl > 0 && dir[dl - 1] == '/';

	snprintf(buf, SHOW_MAX, "%s%s%s", dir, slash ? "" : "/", name);
	return buf;
}

static bool
plain_name(const char *name)
{
	return name[0] != '\0' && strchr(name, '/') == NULL &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int
safe_file_open_dir(struct safe_file_dir *d, const char *path, char *err,
		   size_t errlen)
{
	int e;

	d->path = path;
	d->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->fd >= 0)
		return 0;
	e = errno;
	if (e == ENOENT)
		err_set(err, errlen, "directory %s does not exist", path);
	else
		err_set(err, errlen, "cannot open directory %s: %s", path,
			strerror(e));
	return -e;
}

int
safe_file_close_dir(struct safe_file_dir *d, char *err, size_t errlen)
{
	int e;

	if (d->fd < 0)
		return 0;
	e = close(d->fd) < 0 ? errno : 0;
	d->fd = -1;
	if (e == 0)
		return 0;
	err_set(err, errlen, "cannot close %s: %s", d->path, strerror(e));
	return -e;
}

/* ---- reading ---- */

static int
read_all(int fd, char *p, size_t n)
{
	ssize_t r;

	while (n > 0) {
		r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;	/* the file shrank */
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The open file's size, checked against max. */
static int
checked_size(int fd, const char *path, size_t max, size_t *len_r, char *err,
	     size_t errlen)
{
	struct stat st;
	int e;

	if (fstat(fd, &st) < 0) {
		e = errno;
		err_set(err, errlen, "cannot stat %s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, errlen, "%s is not a regular file", path);
		return -EINVAL;
	}
	/* The second test leaves room for the NUL on 32-bit systems. */
	if ((uint64_t)st.st_size > max || (uint64_t)st.st_size >= SIZE_MAX) {
		err_set(err, errlen, "%s is larger than %zu bytes", path, max);
		return -EFBIG;
	}
	*len_r = (size_t)st.st_size;
	return 0;
}

int
safe_file_read(const struct safe_file_dir *d, const char *name, size_t max,
	       char **data_r, size_t *len_r, char *err, size_t errlen)
{
	char path[SHOW_MAX], *data = NULL;
	size_t len = 0;
	int fd, r, e;

	*data_r = NULL;
	*len_r = 0;
	show(d->path, name, path);
	if (!plain_name(name)) {
		err_set(err, errlen, "bad file name \"%s\"", name);
		return -EINVAL;
	}
	/* O_NONBLOCK: a FIFO planted in its place must not hang the daemon
	 * (checked_size refuses anything but a regular file). */
	fd = openat(d->fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		e = errno;
		if (e == ENOENT)
			err_set(err, errlen, "%s does not exist", path);
		else
			err_set(err, errlen, "cannot open %s: %s", path,
				strerror(e));
		return -e;
	}
	r = checked_size(fd, path, max, &len, err, errlen);
	if (r == 0) {
		/* The NUL makes text parsing safe. */
		data = malloc(len + 1);
		if (data == NULL) {
			err_set(err, errlen, "%s: out of memory", path);
			r = -ENOMEM;
		}
	}
	if (r == 0) {
		r = read_all(fd, data, len);
		if (r < 0)
			err_set(err, errlen, "cannot read %s: %s", path,
				err_text(r));
	}
	if (close(fd) < 0 && r == 0) {
		r = -errno;
		err_set(err, errlen, "cannot close %s: %s", path, err_text(r));
	}
	if (r < 0) {
		free(data);
		return r;
	}
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

/* ---- writing ---- */

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t r;

	while (n > 0) {
		r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Creates a temporary file next to name, with a name nobody uses: the
 * descriptor, or a negative code. */
static int
create_temp(int dfd, const char *name, char tmp[TMP_NAME_MAX])
{
	uint8_t rnd[TMP_RANDOM];
	char hexr[2 * TMP_RANDOM + 1];
	int i, fd, n;

	for (i = 0; i < TMP_TRIES; i++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return -EIO;
		*buf_put_hex(hexr, rnd, sizeof(rnd)) = '\0';
		n = snprintf(tmp, TMP_NAME_MAX, ".%s" TMP_MARK "%s", name,
			     hexr);
		if (n < 0 || n >= TMP_NAME_MAX)
			return -ENAMETOOLONG;
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
			    O_NOCTTY, 0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

/* Writes, flushes and closes the temporary file; *what_r names the step
 * that failed. */
static int
fill_temp(int fd, const char *data, size_t len, const char **what_r)
{
	int r;

	*what_r = "write";
	r = write_all(fd, data, len);
	if (r == 0 && fsync(fd) < 0) {
		*what_r = "fsync";
		r = -errno;
	}
	if (close(fd) < 0 && r == 0) {
		*what_r = "close";
		r = -errno;
	}
	return r;
}

/* The temporary file, then the rename; the directory is not synced. */
static int
replace(const struct safe_file_dir *d, const char *name, const char *path,
	const char *data, size_t len, char *err, size_t errlen)
{
	char tmp[TMP_NAME_MAX];
	const char *what;
	int fd, r;

	fd = create_temp(d->fd, name, tmp);
	if (fd < 0) {
		err_set(err, errlen, "cannot create a temporary file for %s: "
			"%s", path, err_text(fd));
		return fd;
	}
	r = fill_temp(fd, data, len, &what);
	if (r == 0) {
		what = "rename";
		if (renameat(d->fd, tmp, d->fd, name) == 0)
			return 0;
		r = -errno;
	}
	/* The old file stays; a failed unlink only leaves a stale one. */
	if (unlinkat(d->fd, tmp, 0) < 0)
		err_set(err, errlen, "cannot %s the new %s: %s (and %s stays: "
			"%s)", what, path, err_text(r), tmp, strerror(errno));
	else
		err_set(err, errlen, "cannot %s the new %s: %s", what, path,
			err_text(r));
	return r;
}

int
safe_file_write(const struct safe_file_dir *d, const char *name,
		const void *data, size_t len, char *err, size_t errlen)
{
	char path[SHOW_MAX];
	int r;

	show(d->path, name, path);
	if (!plain_name(name)) {
		err_set(err, errlen, "bad file name \"%s\"", name);
		return -EINVAL;
	}
	r = replace(d, name, path, data, len, err, errlen);
	if (r < 0)
		return r;
	/* Makes the rename itself durable. */
	if (fsync(d->fd) < 0) {
		r = -errno;
		err_set(err, errlen, "cannot fsync %s: %s", d->path,
			err_text(r));
		return r;
	}
	return 0;
}

/* ---- stale temporary files ---- */

/* Whether name is one create_temp makes: ".<name>.tmp-<hex>". */
static bool
temp_name(const char *name)
{
	size_t n = strlen(name), tail = strlen(TMP_MARK) + 2 * TMP_RANDOM;
	size_t i;

	if (name[0] != '.' || n < 2 + tail)
		return false;
	if (memcmp(name + n - tail, TMP_MARK, strlen(TMP_MARK)) != 0)
		return false;
	for (i = n - 2 * TMP_RANDOM; i < n; i++) {
		if (strchr(hexdigits, name[i]) == NULL)
			return false;
	}
	return true;
}

int
safe_file_clean_stale(const char *dir, time_t min_age)
{
	char path[SHOW_MAX];
	struct dirent *de;
	struct stat st;
	time_t now = time(NULL);
	int removed = 0;
	DIR *d;

	d = opendir(dir);
	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (!temp_name(de->d_name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || now - st.st_mtime < min_age)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			log_warn("cannot remove %s, left by an interrupted "
				 "save: %s", show(dir, de->d_name, path),
				 strerror(errno));
			continue;
		}
		removed++;
		log_info("removed %s, left by an interrupted save",
			 show(dir, de->d_name, path));
	}
	closedir(d);
	return removed;
}
