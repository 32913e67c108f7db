#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/log.h"
#include "store/mapstore.h"

/* A state directory whose path says "corrupt", so that no decision can
 * rest on the words of an error message. */
static char base[64];
static char dir[128];
static char name[33];
static char path[256];
static char err[512];

static void
setup(void)
{
	strcpy(base, "/tmp/mapstore-test-XXXXXX");
	cr_assert_not_null(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/corrupt-test", base);
	cr_assert_eq(mkdir(dir, 0700), 0);
	uidmap_file_name("imap.example.com", 993, "alice", 5, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	log_set_level(LOG_ERROR);
}

static void
teardown(void)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(mapstore, .init = setup, .fini = teardown);

/* Files in dir whose names start with prefix. */
static int
count_prefix(const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	cr_assert_not_null(d);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

static void
write_file(const char *data)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fputs(data, f) >= 0, 1);
	cr_assert_eq(fclose(f), 0);
}

Test(mapstore, unreadable_map_is_kept)
{
	struct mapstore ms = { 0 };
	struct uidmap *m;

	/* Not a regular file: the error text names the directory, which
	 * contains "corrupt"; the map must stay where it is. */
	cr_assert_eq(mkdir(path, 0700), 0);
	m = mapstore_get(&ms, dir, "imap.example.com", 993, "alice", 5, err,
			 sizeof(err));
	cr_assert_null(m);
	cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);
	cr_assert_eq(count_prefix(name), 1);
	cr_assert_eq(access(path, F_OK), 0, "the map was moved away");
	mapstore_free(&ms);
}

Test(mapstore, newer_map_is_kept)
{
	static const char head[] = "popbridge-uidmap 99\n";
	struct mapstore ms = { 0 };
	struct uidmap *m;
	unsigned char md[32];
	char data[160], *w;
	size_t i;

	/* A whole map from a later version: refused, and left alone so that
	 * a downgrade loses nothing. */
	cr_assert_eq(EVP_Digest(head, strlen(head), md, NULL, EVP_sha256(),
				NULL), 1);
	w = data + sprintf(data, "%send 0 ", head);
	for (i = 0; i < sizeof(md); i++)
		w += sprintf(w, "%02x", md[i]);
	strcpy(w, "\n");
	write_file(data);
	m = mapstore_get(&ms, dir, "imap.example.com", 993, "alice", 5, err,
			 sizeof(err));
	cr_assert_null(m);
	cr_assert_not_null(strstr(err, "unsupported map version"), "%s", err);
	cr_assert_eq(count_prefix(name), 1);
	cr_assert_eq(access(path, F_OK), 0, "the map was moved away");
	mapstore_free(&ms);
}

Test(mapstore, damaged_map_is_moved_aside)
{
	struct mapstore ms = { 0 };
	struct uidmap *m;
	char aside[64];

	write_file("garbage\n");
	m = mapstore_get(&ms, dir, "imap.example.com", 993, "alice", 5, err,
			 sizeof(err));
	cr_assert_not_null(m, "%s", err);
	snprintf(aside, sizeof(aside), "%s.corrupt-", name);
	cr_assert_eq(count_prefix(aside), 1);
	mapstore_put(&ms, &m);
	mapstore_free(&ms);
}
