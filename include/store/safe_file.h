#ifndef POPBRIDGE_SAFE_FILE_H
#define POPBRIDGE_SAFE_FILE_H

#include <stddef.h>
#include <time.h>

/*
 * Crash-safe storage of whole files in one directory, for the files this
 * process keeps for itself (the UID maps, store/uidmap.h; the accounts
 * file). It knows nothing of what the files hold.
 *
 * A file is read whole, under a size limit the caller names. It is never
 * edited in place, only replaced: the new content goes to a temporary file
 * in the same directory, ".<name>.tmp-<16 hex digits>", created with
 * O_EXCL and mode 0600, which is written, fsynced and renamed over <name>;
 * then the directory is fsynced, so that the rename itself survives a
 * crash. A crash leaves the old file or the new one, never a torn one, and
 * at worst a temporary file, which safe_file_clean_stale removes later.
 * Two writers of one file each put a whole file in place and the last
 * rename wins; keeping them apart is the caller's business.
 *
 * Every function returns 0 (or a count, or a descriptor) on success and a
 * negative errno code on failure (util/error.h). Those taking err/errlen
 * also write a sentence there naming the file and the step that failed
 * (nothing when errlen is 0).
 */

/* A temporary file at least this old is stale: no write takes that long,
 * so one from another process's save in progress is never touched. */
#define SAFE_FILE_STALE_SECONDS 600

/* An open directory. fd is for the *at calls; path (borrowed, it must
 * outlive the handle) names the directory in messages. */
struct safe_file_dir {
	int fd;
	const char *path;
};

/*
 * Opens the directory path into *d. Returns 0, or a negative code with
 * d->fd = -1: -ENOENT when it does not exist, -ENOTDIR, -EACCES, ...
 * Closed by safe_file_close_dir only.
 */
int safe_file_open_dir(struct safe_file_dir *d, const char *path, char *err,
		       size_t errlen);

/* Closes d (a closed one again is fine: d->fd is -1 afterwards). Returns 0
 * or the negative code of a failed close. */
int safe_file_close_dir(struct safe_file_dir *d, char *err, size_t errlen);

/*
 * Reads d/name whole. Returns 0 with *data_r a new allocation of *len_r
 * bytes plus a NUL (the caller frees it), or a negative code with *data_r
 * NULL: -ENOENT when the file does not exist, -EFBIG when it is larger than
 * max bytes, -EINVAL for a name that is not a plain file name or a file
 * that is not a regular one, -ENOMEM, or the code of the failed open,
 * fstat, read (-EIO when the file shrank meanwhile) or close. An empty file
 * is read as 0 bytes.
 */
int safe_file_read(const struct safe_file_dir *d, const char *name,
		   size_t max, char **data_r, size_t *len_r, char *err,
		   size_t errlen);

/*
 * Replaces d/name with data[0..len) as described above. Returns 0 once the
 * new file and its name are on disk, or a negative code: -EINVAL for a
 * name that is not a plain file name, the code of the failed step
 * otherwise (-ENOSPC, -EFBIG, -EISDIR, ...). On failure the temporary file
 * is removed (should even that fail, err names it, and
 * safe_file_clean_stale takes it later) and d/name is what it was, unless
 * only the final fsync of the directory failed: then the new file is in
 * place but its rename may not survive a crash.
 */
int safe_file_write(const struct safe_file_dir *d, const char *name,
		    const void *data, size_t len, char *err, size_t errlen);

/*
 * Removes the temporary files of interrupted writes from the directory dir:
 * regular files named as safe_file_write names them and last modified at
 * least min_age seconds ago (SAFE_FILE_STALE_SECONDS, unless testing).
 * Each removal is logged. Returns how many were removed, or the negative
 * code of the failed opendir.
 */
int safe_file_clean_stale(const char *dir, time_t min_age);

#endif
