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
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "store/uidmap.h"
#include "store/uidmap_file.h"

#define N_PERF 100000

static char dir[64];
static char name[33];
static char path[128];
static char err[512];

/* Removes everything under the directory fd refers to, then closes it. */
static void
rm_under(int dfd)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int sub;

	cr_assert_not_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dfd, de->d_name, 0) == 0)
			continue;
		cr_assert(errno == EISDIR || errno == EPERM);
		sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY);
		cr_assert(sub >= 0);
		rm_under(sub);
		cr_assert_eq(unlinkat(dfd, de->d_name, AT_REMOVEDIR), 0);
	}
	closedir(d);
}

/* Every test has its own directory, removed afterwards. */
static void
setup(void)
{
	strcpy(dir, "/tmp/uidmap-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	uidmap_file_name("imap.example.com", 993, "alice", 5, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
}

static void
teardown(void)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);

	if (dfd < 0)
		return;
	rm_under(dfd);
	rmdir(dir);
}

TestSuite(uidmap, .init = setup, .fini = teardown);

/* Wall clock and this process's CPU time, in seconds. */
struct stamp {
	double wall, cpu;
};

static double
seconds(clockid_t clock)
{
	struct timespec ts;

	cr_assert_eq(clock_gettime(clock, &ts), 0);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct stamp
now(void)
{
	return (struct stamp){ seconds(CLOCK_MONOTONIC),
			       seconds(CLOCK_PROCESS_CPUTIME_ID) };
}

static struct stamp
since(struct stamp t0)
{
	struct stamp t = now();

	return (struct stamp){ t.wall - t0.wall, t.cpu - t0.cpu };
}

/*
 * Prints a measurement and bounds its CPU time (wall time also counts
 * fsync and other processes on a busy machine).
 */
static void
report(const char *what, struct stamp t)
{
	fprintf(stderr, "uidmap 100k %-8s %7.1f ms wall %7.1f ms cpu\n", what,
		t.wall * 1e3, t.cpu * 1e3);
	cr_assert(t.cpu < 1.0, "%s took %.3f s of CPU", what, t.cpu);
}

/* A deterministic pseudo-random sequence; the state is the caller's. */
static uint32_t
rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 33);
}

static char *
read_whole(const char *p, size_t *len_r)
{
	FILE *f = fopen(p, "rb");
	char *data;
	long n;

	cr_assert_not_null(f);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	cr_assert(n >= 0);
	rewind(f);
	data = malloc((size_t)n + 1);
	cr_assert_not_null(data);
	cr_assert_eq(fread(data, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	data[n] = '\0';
	*len_r = (size_t)n;
	return data;
}

static void
write_whole(const char *p, const void *data, size_t len)
{
	FILE *f = fopen(p, "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static struct uidmap *
load_ok(void)
{
	struct uidmap *m = NULL;

	cr_assert_eq(uidmap_load(dir, name, &m, err, sizeof(err)), 0,
		     "load: %s", err);
	cr_assert_not_null(m);
	return m;
}

static void
save_ok(struct uidmap *m)
{
	cr_assert_eq(uidmap_save(m, err, sizeof(err)), 0, "save: %s", err);
	cr_assert(!m->dirty);
}

/* The map file holds data; loading it must fail, saying "corrupt". */
static void
expect_corrupt(const void *data, size_t len)
{
	struct uidmap *m = (struct uidmap *)1;

	write_whole(path, data, len);
	err[0] = '\0';
	cr_assert_eq(uidmap_load(dir, name, &m, err, sizeof(err)), -EBADMSG,
		     "loaded a damaged map of %zu bytes", len);
	cr_assert_null(m);
	cr_assert_not_null(strstr(err, "corrupt"), "reason: %s", err);
}

/* The magic line, body and a correct end line for n entries. */
static char *
with_end(const char *version, const char *body, unsigned n)
{
	unsigned char md[32];
	size_t len, i;
	char *s;

	len = strlen(version) + strlen(body) + 128;
	s = malloc(len);
	cr_assert_not_null(s);
	snprintf(s, len, "popbridge-uidmap %s\n%s", version, body);
	cr_assert_eq(EVP_Digest(s, strlen(s), md, NULL, EVP_sha256(), NULL),
		     1);
	snprintf(s + strlen(s), len - strlen(s), "end %u ", n);
	for (i = 0; i < 32; i++)
		snprintf(s + strlen(s), len - strlen(s), "%02x", md[i]);
	snprintf(s + strlen(s), len - strlen(s), "\n");
	return s;
}

static void
expect_body_corrupt(const char *body, unsigned n)
{
	char *s = with_end("1", body, n);

	expect_corrupt(s, strlen(s));
	free(s);
}

static void
fp_of(uint8_t out[UIDMAP_FP_LEN], uint32_t seed)
{
	uint64_t s = seed;
	size_t i;

	for (i = 0; i < UIDMAP_FP_LEN; i++)
		out[i] = (uint8_t)rnd(&s);
}

/* ---- file names ---- */

Test(uidmap, file_name_stable_and_distinct)
{
	char a[33], b[33];
	size_t i;

	uidmap_file_name("imap.example.com", 993, "alice", 5, a);
	cr_assert_str_eq(a, "9168a50dd4de627395361c5b5ac84689");
	for (i = 0; i < 32; i++)
		cr_assert(strchr("0123456789abcdef", a[i]) != NULL);
	uidmap_file_name("imap.example.com", 993, "alice", 5, b);
	cr_assert_str_eq(a, b);
	uidmap_file_name("imap.example.com", 993, "Alice", 5, b);
	cr_assert_str_neq(a, b);
	uidmap_file_name("imap.example.com", 143, "alice", 5, b);
	cr_assert_str_neq(a, b);
	uidmap_file_name("IMAP.example.com", 993, "alice", 5, b);
	cr_assert_str_neq(a, b);
	uidmap_file_name("imap.example.com", 993, "alice\0x", 7, b);
	cr_assert_str_neq(a, b);
	/* The separators keep field boundaries apart. */
	uidmap_file_name("a", 1, "1b", 2, a);
	uidmap_file_name("a1", 1, "b", 1, b);
	cr_assert_str_neq(a, b);
	uidmap_file_name("h", 99, "3", 1, a);
	uidmap_file_name("h", 993, "", 0, b);
	cr_assert_str_neq(a, b);
}

/* ---- load, save ---- */

Test(uidmap, load_missing_is_empty)
{
	struct uidmap *m = load_ok();
	struct stat st;

	cr_assert_eq(m->n_folders, 0);
	cr_assert(!m->dirty);
	cr_assert_str_eq(m->path, path);
	cr_assert_null(uidmap_folder(m, "INBOX", false));
	/* Nothing changed, nothing written. */
	save_ok(m);
	cr_assert_eq(stat(path, &st), -1);
	uidmap_free(&m);
	cr_assert_null(m);
	uidmap_free(&m);
}

Test(uidmap, missing_directory)
{
	struct uidmap *m = NULL;
	char gone[128];

	snprintf(gone, sizeof(gone), "%s/nonexistent", dir);
	cr_assert_eq(uidmap_load(gone, name, &m, err, sizeof(err)), -EIO);
	cr_assert_null(m);
	cr_assert_not_null(strstr(err, "does not exist"), "%s", err);
	cr_assert_null(strstr(err, "corrupt"));
	cr_assert_eq(uidmap_load(dir, "", &m, err, sizeof(err)), -EIO);
	cr_assert_eq(uidmap_load(dir, "../x", &m, err, sizeof(err)), -EIO);

	/* The directory vanishes before a save. */
	cr_assert_eq(mkdir(gone, 0700), 0);
	cr_assert_eq(uidmap_load(gone, name, &m, err, sizeof(err)), 0);
	cr_assert_not_null(uidmap_folder(m, "INBOX", true));
	cr_assert(m->dirty);
	cr_assert_eq(rmdir(gone), 0);
	cr_assert_eq(uidmap_save(m, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, "does not exist"), "%s", err);
	cr_assert(m->dirty);
	uidmap_free(&m);
}

static const char *odd_names[] = {
	"INBOX", "My Folder", "say \"hi\"", "100% pure", "-", "",
	"Entw\xc3\xbc rfe/\xff\x01\t\r\n end", "%41%", "a/b.c",
};
#define N_ODD (sizeof(odd_names) / sizeof(odd_names[0]))

static struct uidmap *
sample_map(void)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f;
	uint32_t uids[9];
	size_t i, k;

	for (i = 0; i < N_ODD; i++) {
		f = uidmap_folder(m, odd_names[i], true);
		cr_assert_not_null(f);
		f->uidvalidity = (uint32_t)(1000 + i);
		if (i % 2 == 0)
			uidmap_set_baseline(m, f, (uint32_t)(999 + i),
					    (uint32_t)(i * 7));
		for (k = 0; k < 9 && i > 0; k++)
			uids[k] = (uint32_t)(k * 3 + i);
		if (i == 1)
			uids[8] = UINT32_MAX;
		cr_assert_eq(uidmap_sync(m, f, uids, i > 0 ? 9 : 0), 0);
		for (k = 0; k < f->count; k++) {
			struct uidmap_entry *e = &f->entries[k];

			e->flags = (uint8_t)(k & 7);
			e->size = k == 8 ? UINT64_MAX : k * 1000 + i;
			e->uidl_validity = (uint32_t)(k * 11);
			e->uidl_uid = (uint32_t)(k == 7 ? UINT32_MAX : k);
			if (e->flags & UIDMAP_HAS_FP)
				fp_of(e->fp, (uint32_t)(k * 100 + i));
			/* Every version 2 field in some combination. */
			if (k % 3 == 0)
				e->flags |= UIDMAP_RETRIEVED;
			if ((e->flags & UIDMAP_HAS_FP) && k % 2 == 0)
				e->flags |= UIDMAP_OLD_FP;
			if (k % 4 == 1) {
				e->flags |= UIDMAP_HAS_OID;
				fp_of(e->oid, (uint32_t)(k * 300 + i));
			}
			e->listed = k == 5 ? UINT64_MAX : k * 7;
		}
	}
	uidmap_folder(m, "INBOX", false)->baseline_uidnext = UINT32_MAX;
	m->dirty = true;
	return m;
}

static void
assert_same(const struct uidmap *a, const struct uidmap *b)
{
	const struct uidmap_folder *x, *y;
	const struct uidmap_entry *e, *g;
	size_t i, k;

	cr_assert_eq(a->n_folders, b->n_folders);
	for (i = 0; i < a->n_folders; i++) {
		x = &a->folders[i];
		y = &b->folders[i];
		cr_assert_str_eq(x->name, y->name);
		cr_assert_eq(x->uidvalidity, y->uidvalidity);
		cr_assert_eq(x->has_baseline, y->has_baseline);
		cr_assert_eq(x->baseline_validity, y->baseline_validity);
		cr_assert_eq(x->baseline_uidnext, y->baseline_uidnext);
		cr_assert_eq(x->count, y->count);
		for (k = 0; k < x->count; k++) {
			e = &x->entries[k];
			g = &y->entries[k];
			cr_assert_eq(e->uid, g->uid);
			cr_assert_eq(e->uidl_validity, g->uidl_validity);
			cr_assert_eq(e->uidl_uid, g->uidl_uid);
			cr_assert_eq(e->flags, g->flags);
			cr_assert_eq(e->size, g->size);
			cr_assert_eq(e->listed, g->listed);
			if (e->flags & UIDMAP_HAS_FP)
				cr_assert_arr_eq(e->fp, g->fp, UIDMAP_FP_LEN);
			if (e->flags & UIDMAP_HAS_OID)
				cr_assert_arr_eq(e->oid, g->oid, UIDMAP_FP_LEN);
		}
	}
}

Test(uidmap, round_trip)
{
	struct uidmap *m = sample_map(), *l;
	char *first, *second;
	size_t len1, len2;
	struct stat st;

	save_ok(m);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	l = load_ok();
	cr_assert(!l->dirty);
	assert_same(m, l);
	cr_assert_str_eq(l->folders[6].name, odd_names[6]);
	cr_assert_eq(uidmap_folder(l, "My Folder", false)->count, 9);
	cr_assert_eq(uidmap_folder(l, "", false)->count, 9);
	cr_assert_eq(uidmap_folder(l, "INBOX", false)->count, 0);

	/* The format is canonical: saving what was loaded gives the same. */
	first = read_whole(path, &len1);
	l->dirty = true;
	save_ok(l);
	second = read_whole(path, &len2);
	cr_assert_eq(len1, len2);
	cr_assert_eq(memcmp(first, second, len1), 0);
	cr_assert_eq(strncmp(first, "popbridge-uidmap 2\n", 19), 0);
	cr_assert_not_null(strstr(first, "folder \"My%20Folder\" "));
	cr_assert_not_null(strstr(first, "folder \"say%20%22hi%22\" "));
	free(first);
	free(second);
	uidmap_free(&m);
	uidmap_free(&l);
}

/* The format without files: what is rendered parses to the same map, and
 * renders to the same bytes again. */
Test(uidmap, parse_render_in_memory)
{
	struct uidmap *m = sample_map(), *l;
	char *first, *second;
	size_t len1, len2;

	cr_assert_eq(uidmap_file_render(m, &first, &len1, err, sizeof(err)), 0,
		     "%s", err);
	l = uidmap_new(dir, name);
	cr_assert_not_null(l);
	cr_assert(!l->dirty);
	cr_assert_str_eq(l->path, path);
	cr_assert_eq(uidmap_file_parse(l, first, len1, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert(!l->dirty);
	assert_same(m, l);
	cr_assert_eq(uidmap_file_render(l, &second, &len2, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(len1, len2);
	cr_assert_eq(memcmp(first, second, len1), 0);
	uidmap_free(&l);
	/* Nothing, or one byte less, is damage. */
	l = uidmap_new(dir, name);
	cr_assert_eq(uidmap_file_parse(l, first, 0, err, sizeof(err)),
		     -EBADMSG);
	cr_assert_not_null(strstr(err, "corrupt: empty"), "%s", err);
	uidmap_free(&l);
	l = uidmap_new(dir, name);
	cr_assert_eq(uidmap_file_parse(l, first, len1 - 1, err, sizeof(err)),
		     -EBADMSG);
	uidmap_free(&l);
	free(first);
	free(second);
	uidmap_free(&m);
	cr_assert_eq(access(path, F_OK), -1, "a file was written");
}

Test(uidmap, save_only_when_dirty)
{
	struct uidmap *m = sample_map();
	struct uidmap_folder *f;
	struct stat a, b;
	uint32_t uids[9];
	size_t i;

	save_ok(m);
	cr_assert_eq(stat(path, &a), 0);
	uidmap_free(&m);
	m = load_ok();
	save_ok(m);
	/* Changes that change nothing. */
	f = uidmap_folder(m, "My Folder", true);
	for (i = 0; i < f->count; i++)
		uids[i] = f->entries[i].uid;
	cr_assert_eq(uidmap_sync(m, f, uids, f->count), 0);
	uidmap_set_hidden(m, &f->entries[1]);
	uidmap_set_size(m, &f->entries[2], f->entries[2].size,
			f->entries[2].listed);
	uidmap_set_fp(m, &f->entries[5], f->entries[5].fp);
	uidmap_set_retrieved(m, &f->entries[3]);
	uidmap_set_baseline(m, uidmap_folder(m, "INBOX", false), 999,
			    UINT32_MAX);
	cr_assert(!m->dirty);
	save_ok(m);
	cr_assert_eq(stat(path, &b), 0);
	cr_assert_eq(a.st_ino, b.st_ino);
	cr_assert_eq(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
	cr_assert_eq(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
	/* A real change is written, as a new file renamed over the old. */
	uidmap_set_hidden(m, &f->entries[0]);
	cr_assert(m->dirty);
	save_ok(m);
	cr_assert_eq(stat(path, &b), 0);
	cr_assert_neq(a.st_ino, b.st_ino);
	uidmap_free(&m);
}

/* ---- damage ---- */

Test(uidmap, truncated_at_every_length)
{
	struct uidmap *m = sample_map();
	char *data;
	size_t len, cut;

	save_ok(m);
	uidmap_free(&m);
	data = read_whole(path, &len);
	for (cut = 0; cut < len; cut++)
		expect_corrupt(data, cut);
	/* Trailing garbage after the end line. */
	data = realloc(data, len + 2);
	cr_assert_not_null(data);
	memcpy(data + len, "x\n", 2);
	expect_corrupt(data, len + 2);
	write_whole(path, data, len);
	m = load_ok();
	uidmap_free(&m);
	free(data);
}

Test(uidmap, truncated_large)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t *uids = malloc(5000 * sizeof(*uids));
	char *data;
	size_t len, k;

	cr_assert_not_null(uids);
	for (k = 0; k < 5000; k++)
		uids[k] = (uint32_t)(k * 2 + 1);
	cr_assert_eq(uidmap_sync(m, f, uids, 5000), 0);
	save_ok(m);
	uidmap_free(&m);
	free(uids);
	data = read_whole(path, &len);
	for (k = 0; k < 20; k++)
		expect_corrupt(data, len * k / 20);
	expect_corrupt(data, len - 1);
	free(data);
}

Test(uidmap, flipped_bits)
{
	static const uint8_t masks[] = { 0x01, 0x02, 0x20, 0x80 };
	struct uidmap *m = sample_map();
	char *data;
	size_t len, i, k;

	save_ok(m);
	uidmap_free(&m);
	data = read_whole(path, &len);
	for (i = 0; i < len; i++) {
		for (k = 0; k < sizeof(masks); k++) {
			data[i] ^= (char)masks[k];
			expect_corrupt(data, len);
			data[i] ^= (char)masks[k];
		}
	}
	free(data);
}

Test(uidmap, missing_end_line)
{
	struct uidmap *m = sample_map();
	char *data, *last;
	size_t len;

	save_ok(m);
	uidmap_free(&m);
	data = read_whole(path, &len);
	data[len - 1] = '\0';
	last = strrchr(data, '\n');
	cr_assert_not_null(last);
	expect_corrupt(data, (size_t)(last + 1 - data));
	cr_assert_not_null(strstr(err, "end line"), "%s", err);
	free(data);
}

Test(uidmap, versions)
{
	struct uidmap *m = (struct uidmap *)1;
	char *s;

	s = with_end("3", "", 0);
	write_whole(path, s, strlen(s));
	cr_assert_eq(uidmap_load(dir, name, &m, err, sizeof(err)),
		     -EPROTONOSUPPORT);
	cr_assert_null(m);
	cr_assert_not_null(strstr(err, "unsupported map version 3"), "%s",
			   err);
	/* A newer map is not "corrupt": it must not be replaced. */
	cr_assert_null(strstr(err, "corrupt"), "%s", err);
	free(s);
	s = with_end("1", "", 0);
	s[17] = '2';		/* the checksum no longer matches */
	expect_corrupt(s, strlen(s));
	free(s);
	expect_body_corrupt("", 1);
	s = with_end("18446744073709551616", "", 0);
	expect_corrupt(s, strlen(s));
	free(s);
	s = with_end("01", "", 0);
	expect_corrupt(s, strlen(s));
	free(s);
	expect_corrupt("garbage\n", 8);
	expect_corrupt("", 0);
	s = with_end("1", "", 0);
	write_whole(path, s, strlen(s));
	m = load_ok();
	cr_assert_eq(m->n_folders, 0);
	uidmap_free(&m);
	free(s);
}

#define FOLDER_LINE "folder \"INBOX\" uidvalidity 7 baseline - entries "

Test(uidmap, hand_written)
{
	struct uidmap *m;
	struct uidmap_folder *f;
	char *s;

	s = with_end("1", FOLDER_LINE "2\n"
		     "1 7 1 18446744073709551615 he 000102030405060708090a0b0c0d0e0f\n"
		     "4294967295 0 0 0 - -\n"
		     "folder \"a%22%25b%20c%FF\" uidvalidity 0 baseline 4294967295 0 entries 0\n",
		     2);
	write_whole(path, s, strlen(s));
	free(s);
	m = load_ok();
	f = uidmap_folder(m, "INBOX", false);
	cr_assert_not_null(f);
	cr_assert_eq(f->count, 2);
	cr_assert_eq(f->entries[0].size, UINT64_MAX);
	/* Version 1 fingerprints hashed every header line. */
	cr_assert_eq(f->entries[0].flags, UIDMAP_HIDDEN | UIDMAP_EXACT |
		     UIDMAP_HAS_FP | UIDMAP_OLD_FP | UIDMAP_RETRIEVED);
	cr_assert_eq(f->entries[0].listed, 0);
	cr_assert_eq(f->entries[0].fp[15], 15);
	cr_assert_eq(f->entries[1].uid, UINT32_MAX);
	cr_assert_eq(f->entries[1].flags, 0);
	f = uidmap_folder(m, "a\"%b c\xff", false);
	cr_assert_not_null(f);
	cr_assert(f->has_baseline);
	cr_assert_eq(f->baseline_validity, UINT32_MAX);
	uidmap_free(&m);
}

Test(uidmap, hand_written_damage)
{
	char body[64 * 80 + 200];
	size_t i;

	expect_body_corrupt(FOLDER_LINE "2\n2 7 2 0 - -\n1 7 1 0 - -\n", 2);
	cr_assert_not_null(strstr(err, "line 4: UIDs not ascending"), "%s",
			   err);
	expect_body_corrupt(FOLDER_LINE "2\n1 7 1 0 - -\n1 7 1 0 - -\n", 2);
	expect_body_corrupt(FOLDER_LINE "1\n4294967296 7 1 0 - -\n", 1);
	cr_assert_not_null(strstr(err, "out of range"), "%s", err);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 1 18446744073709551616 - -\n",
			    1);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 01 0 - -\n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n1 -7 1 0 - -\n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 1 0 eh -\n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 1 0 x -\n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 1 0 - "
			    "000102030405060708090A0B0C0D0E0F\n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 1 0 - 0001\n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 1 0 - - \n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 1 0 - -\r\n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n1  7 1 0 - -\n", 1);
	expect_body_corrupt(FOLDER_LINE "1\n", 1);
	expect_body_corrupt(FOLDER_LINE "0\n1 7 1 0 - -\n", 1);
	expect_body_corrupt(FOLDER_LINE "2\n1 7 1 0 - -\n", 2);
	expect_body_corrupt(FOLDER_LINE "1\n1 7 1 0 - -\n", 2);
	expect_body_corrupt(FOLDER_LINE "99999999\n1 7 1 0 - -\n", 1);
	cr_assert_not_null(strstr(err, "larger than the file"), "%s", err);
	expect_body_corrupt(FOLDER_LINE "0\n" FOLDER_LINE "0\n", 0);
	cr_assert_not_null(strstr(err, "twice"), "%s", err);
	expect_body_corrupt("folder \"a%00b\" uidvalidity 1 baseline - "
			    "entries 0\n", 0);
	expect_body_corrupt("folder \"a b\" uidvalidity 1 baseline - "
			    "entries 0\n", 0);
	expect_body_corrupt("folder \"a%4\" uidvalidity 1 baseline - "
			    "entries 0\n", 0);
	expect_body_corrupt("folder \"a uidvalidity 1 baseline - "
			    "entries 0\n", 0);
	expect_body_corrupt("folder \"a\" uidvalidity 1 baseline 1 entries 0\n",
			    0);
	expect_body_corrupt("hello\n", 0);
	expect_body_corrupt("\n", 0);
	/* Too many folders. */
	body[0] = '\0';
	for (i = 0; i <= UIDMAP_FOLDERS_MAX; i++)
		snprintf(body + strlen(body), sizeof(body) - strlen(body),
			 "folder \"f%zu\" uidvalidity 1 baseline - entries 0\n",
			 i);
	expect_body_corrupt(body, 0);
	cr_assert_not_null(strstr(err, "too many folders"), "%s", err);
}

Test(uidmap, stale_temp_files)
{
	struct uidmap *m;
	char stale[160], other[160], *data;
	size_t len;

	snprintf(stale, sizeof(stale), "%s/.%s.tmp-0123456789abcdef", dir,
		 name);
	snprintf(other, sizeof(other), "%s/%s.tmp", dir, name);
	write_whole(stale, "popbridge-uidmap 1\nhalf a ", 26);
	write_whole(other, "junk", 4);
	m = load_ok();
	cr_assert_eq(m->n_folders, 0);
	uidmap_free(&m);
	m = sample_map();
	save_ok(m);
	uidmap_free(&m);
	m = load_ok();
	cr_assert_eq(m->n_folders, N_ODD);
	uidmap_free(&m);
	data = read_whole(stale, &len);
	cr_assert_eq(len, 26);
	free(data);
	data = read_whole(other, &len);
	cr_assert_eq(len, 4);
	free(data);
}

static size_t
count_files(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	cr_assert_not_null(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.' || (de->d_name[1] != '\0' &&
			strcmp(de->d_name, "..") != 0);
	closedir(d);
	return n;
}

Test(uidmap, failed_rename_leaves_no_temp)
{
	struct uidmap *m = sample_map();
	char inner[160];

	/* A directory in the map's place: the rename fails. */
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(inner, sizeof(inner), "%s/x", path);
	write_whole(inner, "x", 1);
	cr_assert_eq(uidmap_save(m, err, sizeof(err)), -EISDIR);
	cr_assert_not_null(strstr(err, "rename"), "%s", err);
	cr_assert(m->dirty);
	cr_assert_eq(count_files(), 1);
	uidmap_free(&m);
	/* Not a file: refused, but not as corrupt (it is not replaced). */
	cr_assert_eq(uidmap_load(dir, name, &m, err, sizeof(err)), -EIO);
	cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);
	cr_assert_null(strstr(err, "corrupt"));
}

Test(uidmap, failed_write_keeps_old_map)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	struct rlimit rl, small;
	uint32_t uids[1000];
	char *before, *after;
	size_t k, len1, len2;

	cr_assert_eq(uidmap_sync(m, f, uids, 0), 0);
	save_ok(m);
	before = read_whole(path, &len1);
	for (k = 0; k < 1000; k++)
		uids[k] = (uint32_t)k + 1;
	cr_assert_eq(uidmap_sync(m, f, uids, 1000), 0);
	/* The new map is larger than the process may write. */
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	small = (struct rlimit){ .rlim_cur = 4096, .rlim_max = rl.rlim_max };
	cr_assert_neq(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
	cr_assert_eq(uidmap_save(m, err, sizeof(err)), -EFBIG);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	cr_assert_not_null(strstr(err, "write"), "%s", err);
	cr_assert(m->dirty);
	after = read_whole(path, &len2);
	cr_assert_eq(len1, len2);
	cr_assert_eq(memcmp(before, after, len1), 0);
	cr_assert_eq(count_files(), 1);
	/* And the next save succeeds. */
	save_ok(m);
	uidmap_free(&m);
	m = load_ok();
	cr_assert_eq(uidmap_folder(m, "INBOX", false)->count, 1000);
	uidmap_free(&m);
	free(before);
	free(after);
}

/* ---- folders, find, setters ---- */

Test(uidmap, folders)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *first, *f;
	char fname[16];
	size_t i;

	first = uidmap_folder(m, "INBOX", true);
	cr_assert_not_null(first);
	cr_assert_str_eq(first->name, "INBOX");
	cr_assert_eq(first->uidvalidity, 0);
	cr_assert_eq(first->count, 0);
	cr_assert(m->dirty);
	cr_assert_eq(uidmap_folder(m, "INBOX", true), first);
	cr_assert_null(uidmap_folder(m, "inbox", false));
	for (i = 1; i < UIDMAP_FOLDERS_MAX; i++) {
		snprintf(fname, sizeof(fname), "f%zu", i);
		cr_assert_not_null(uidmap_folder(m, fname, true));
	}
	cr_assert_null(uidmap_folder(m, "one too many", true));
	cr_assert_eq(m->n_folders, UIDMAP_FOLDERS_MAX);
	/* Folder pointers stay valid while folders are added. */
	cr_assert_eq(uidmap_folder(m, "INBOX", false), first);
	f = uidmap_folder(m, "f63", false);
	cr_assert_not_null(f);
	cr_assert_str_eq(f->name, "f63");
	uidmap_free(&m);
}

Test(uidmap, find)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t uids[] = { 2, 3, 5, 8, 13, 21, 4000000000u };
	size_t i;

	cr_assert_null(uidmap_find(f, 1));
	cr_assert_eq(uidmap_sync(m, f, uids, 7), 0);
	for (i = 0; i < 7; i++)
		cr_assert_eq(uidmap_find(f, uids[i]), &f->entries[i]);
	cr_assert_null(uidmap_find(f, 0));
	cr_assert_null(uidmap_find(f, 4));
	cr_assert_null(uidmap_find(f, 22));
	cr_assert_null(uidmap_find(f, UINT32_MAX));
	uidmap_free(&m);
}

Test(uidmap, setters_dirty_only_on_change)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t uid = 9;
	uint8_t fp[UIDMAP_FP_LEN];
	struct uidmap_entry *e;

	cr_assert_eq(uidmap_sync(m, f, &uid, 1), 0);
	e = &f->entries[0];
	m->dirty = false;
	/* Size 0 is already the value, but not yet exact. */
	uidmap_set_size(m, e, 0, 0);
	cr_assert(m->dirty);
	cr_assert_eq(e->flags, UIDMAP_EXACT);
	m->dirty = false;
	uidmap_set_size(m, e, 0, 0);
	cr_assert(!m->dirty);
	uidmap_set_size(m, e, 77, 0);
	cr_assert(m->dirty);
	cr_assert_eq(e->size, 77);

	memset(fp, 0, sizeof(fp));
	m->dirty = false;
	uidmap_set_fp(m, e, fp);
	cr_assert(m->dirty);
	cr_assert(e->flags & UIDMAP_HAS_FP);
	m->dirty = false;
	uidmap_set_fp(m, e, fp);
	cr_assert(!m->dirty);
	fp[3] = 1;
	uidmap_set_fp(m, e, fp);
	cr_assert(m->dirty);
	cr_assert_eq(e->fp[3], 1);

	m->dirty = false;
	uidmap_set_hidden(m, e);
	cr_assert(m->dirty);
	m->dirty = false;
	uidmap_set_hidden(m, e);
	cr_assert(!m->dirty);
	cr_assert_eq(e->flags, UIDMAP_EXACT | UIDMAP_HAS_FP | UIDMAP_HIDDEN);

	uidmap_set_baseline(m, f, 0, 0);
	cr_assert(m->dirty);
	cr_assert(f->has_baseline);
	m->dirty = false;
	uidmap_set_baseline(m, f, 0, 0);
	cr_assert(!m->dirty);
	uidmap_set_baseline(m, f, 0, 1);
	cr_assert(m->dirty);
	cr_assert_eq(f->baseline_uidnext, 1);
	uidmap_free(&m);
}

/* ---- sync ---- */

static void
decorate(struct uidmap_folder *f)
{
	size_t i;

	for (i = 0; i < f->count; i++) {
		struct uidmap_entry *e = &f->entries[i];

		e->uidl_validity = 1;
		e->uidl_uid = e->uid + 1000;
		e->flags = UIDMAP_EXACT | UIDMAP_HAS_FP |
			   (e->uid % 2 ? UIDMAP_HIDDEN : 0);
		e->size = e->uid * 10;
		fp_of(e->fp, e->uid);
	}
}

static void
assert_decorated(const struct uidmap_entry *e)
{
	uint8_t fp[UIDMAP_FP_LEN];

	fp_of(fp, e->uid);
	cr_assert_eq(e->uidl_validity, 1);
	cr_assert_eq(e->uidl_uid, e->uid + 1000);
	cr_assert_eq(e->size, e->uid * 10);
	cr_assert_eq(e->flags, UIDMAP_EXACT | UIDMAP_HAS_FP |
		     (e->uid % 2 ? UIDMAP_HIDDEN : 0));
	cr_assert_arr_eq(e->fp, fp, UIDMAP_FP_LEN);
}

static void
assert_fresh(const struct uidmap_entry *e, uint32_t validity)
{
	cr_assert_eq(e->uidl_validity, validity);
	cr_assert_eq(e->uidl_uid, e->uid);
	cr_assert_eq(e->flags, 0);
	cr_assert_eq(e->size, 0);
}

Test(uidmap, sync_cases)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t all[10], some[] = { 2, 4, 6 }, more[] = { 1, 2, 3, 4, 6, 7 };
	uint32_t mixed[] = { 3, 4, 8, 9 }, bad[] = { 3, 3 };
	size_t i;

	f->uidvalidity = 5;
	for (i = 0; i < 10; i++)
		all[i] = (uint32_t)i + 1;
	cr_assert_eq(uidmap_sync(m, f, all, 10), 0);
	cr_assert_eq(f->count, 10);
	for (i = 0; i < 10; i++) {
		cr_assert_eq(f->entries[i].uid, i + 1);
		assert_fresh(&f->entries[i], 5);
	}
	decorate(f);

	/* Nothing changed. */
	m->dirty = false;
	cr_assert_eq(uidmap_sync(m, f, all, 10), 0);
	cr_assert(!m->dirty);

	/* Prune only. */
	cr_assert_eq(uidmap_sync(m, f, some, 3), 0);
	cr_assert(m->dirty);
	cr_assert_eq(f->count, 3);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(f->entries[i].uid, some[i]);
		assert_decorated(&f->entries[i]);
	}

	/* Add only. */
	f->uidvalidity = 6;
	m->dirty = false;
	cr_assert_eq(uidmap_sync(m, f, more, 6), 0);
	cr_assert(m->dirty);
	cr_assert_eq(f->count, 6);
	for (i = 0; i < 6; i++) {
		cr_assert_eq(f->entries[i].uid, more[i]);
		if (more[i] % 2 == 0)
			assert_decorated(&f->entries[i]);
		else
			assert_fresh(&f->entries[i], 6);
	}

	/* Both. */
	cr_assert_eq(uidmap_sync(m, f, mixed, 4), 0);
	cr_assert_eq(f->count, 4);
	assert_fresh(&f->entries[0], 6);
	assert_decorated(&f->entries[1]);
	assert_fresh(&f->entries[2], 6);
	assert_fresh(&f->entries[3], 6);

	/* Not ascending: refused, nothing changed. */
	m->dirty = false;
	cr_assert_eq(uidmap_sync(m, f, bad, 2), -EINVAL);
	cr_assert_eq(f->count, 4);
	cr_assert(!m->dirty);

	/* Empty listing. */
	cr_assert_eq(uidmap_sync(m, f, NULL, 0), 0);
	cr_assert_eq(f->count, 0);
	cr_assert(m->dirty);
	uidmap_free(&m);
}

static size_t
random_set(uint64_t *s, uint32_t *out, uint32_t range, uint32_t keep_in)
{
	uint32_t uid;
	size_t n = 0;

	for (uid = 1; uid <= range; uid++) {
		if (rnd(s) % keep_in == 0)
			out[n++] = uid;
	}
	return n;
}

Test(uidmap, sync_random_against_model)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t a[300], b[300];
	uint64_t s = 42;
	size_t na, nb, i, k, round;

	for (round = 0; round < 300; round++) {
		na = random_set(&s, a, 300, 1 + round % 5);
		f->uidvalidity = 1;
		cr_assert_eq(uidmap_sync(m, f, a, na), 0);
		decorate(f);
		nb = random_set(&s, b, 300, 1 + rnd(&s) % 7);
		f->uidvalidity = 2;
		m->dirty = false;
		cr_assert_eq(uidmap_sync(m, f, b, nb), 0);
		cr_assert_eq(f->count, nb);
		cr_assert_eq(m->dirty, !(na == nb &&
			     memcmp(a, b, na * sizeof(*a)) == 0));
		/* Every uid in both sets was kept, every other is fresh. */
		for (i = 0, k = 0; i < nb; i++) {
			cr_assert_eq(f->entries[i].uid, b[i]);
			while (k < na && a[k] < b[i])
				k++;
			if (k < na && a[k] == b[i])
				assert_decorated(&f->entries[i]);
			else
				assert_fresh(&f->entries[i], 2);
		}
	}
	uidmap_free(&m);
}

/* ---- rematch ---- */

static void
set_old(struct uidmap_entry *e, uint32_t fpseed, uint64_t size, uint8_t flags)
{
	e->uidl_validity = 100;
	e->uidl_uid = e->uid + 500;
	e->size = size;
	e->flags = flags;
	if (flags & UIDMAP_HAS_FP)
		fp_of(e->fp, fpseed);
}

static struct uidmap_current
current(uint32_t uid, uint32_t fpseed, uint64_t size)
{
	struct uidmap_current c = { .uid = uid, .size = size };

	if (fpseed != 0) {
		c.has_fp = true;
		fp_of(c.fp, fpseed);
	}
	return c;
}

Test(uidmap, rematch_basic)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t uids[] = { 1, 2, 3, 4, 5, 6 };
	struct uidmap_current cur[7];
	const uint8_t fp = UIDMAP_HAS_FP;
	size_t matched = 99;
	struct uidmap_entry *e;

	f->uidvalidity = 100;
	cr_assert_eq(uidmap_sync(m, f, uids, 6), 0);
	set_old(&f->entries[0], 11, 1000, fp | UIDMAP_EXACT);
	set_old(&f->entries[1], 12, 2000, fp | UIDMAP_HIDDEN);
	set_old(&f->entries[2], 13, 3000, fp);
	set_old(&f->entries[3], 14, 4000, fp);		/* gone */
	set_old(&f->entries[4], 15, 5000, fp | UIDMAP_EXACT | UIDMAP_HIDDEN);
	set_old(&f->entries[5], 16, 6000, 0);		/* no fingerprint */
	cur[0] = current(101, 12, 2100);
	cur[1] = current(102, 11, 1100);
	cur[2] = current(103, 77, 7000);		/* new */
	cur[3] = current(104, 15, 5000);
	cur[4] = current(105, 0, 8000);			/* no fingerprint */
	cur[5] = current(106, 13, 3000);
	cur[6] = current(107, 16, 6000);
	m->dirty = false;
	cr_assert_eq(uidmap_rematch(m, f, 200, cur, 7, &matched), 0);
	cr_assert_eq(matched, 4);
	cr_assert(m->dirty);
	cr_assert_eq(f->uidvalidity, 200);
	cr_assert_eq(f->count, 7);
	e = f->entries;
	cr_assert_eq(e[0].uid, 101);
	cr_assert_eq(e[0].uidl_uid, 502);
	cr_assert_eq(e[0].uidl_validity, 100);
	cr_assert_eq(e[0].flags, fp | UIDMAP_HIDDEN);
	cr_assert_eq(e[0].size, 2100);		/* not exact: listed now */
	cr_assert_eq(e[1].uidl_uid, 501);
	cr_assert_eq(e[1].flags, fp | UIDMAP_EXACT);
	cr_assert_eq(e[1].size, 1000);		/* exact: kept */
	cr_assert_eq(e[2].uidl_validity, 200);
	cr_assert_eq(e[2].uidl_uid, 103);
	cr_assert_eq(e[2].flags, fp);
	cr_assert_eq(e[2].size, 7000);
	cr_assert_arr_eq(e[2].fp, cur[2].fp, UIDMAP_FP_LEN);
	cr_assert_eq(e[3].uidl_uid, 505);
	cr_assert_eq(e[3].flags, fp | UIDMAP_EXACT | UIDMAP_HIDDEN);
	cr_assert_eq(e[4].uidl_validity, 200);
	cr_assert_eq(e[4].uidl_uid, 105);
	cr_assert_eq(e[4].flags, 0);
	cr_assert_eq(e[5].uidl_uid, 503);
	cr_assert_eq(e[6].uidl_validity, 200);
	cr_assert_eq(e[6].uidl_uid, 107);
	cr_assert_eq(uidmap_find(f, 104), &e[3]);
	uidmap_free(&m);
}

Test(uidmap, rematch_duplicates)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t uids[] = { 1, 2, 3 };
	struct uidmap_current cur[4];
	const uint8_t fp = UIDMAP_HAS_FP;
	size_t matched;

	cr_assert_eq(uidmap_sync(m, f, uids, 3), 0);
	set_old(&f->entries[0], 5, 100, fp);
	set_old(&f->entries[1], 5, 200, fp);
	set_old(&f->entries[2], 5, 100, fp | UIDMAP_HIDDEN);
	/* Equal sizes first, then UID order. */
	cur[0] = current(10, 5, 300);
	cur[1] = current(11, 5, 200);
	cur[2] = current(12, 5, 100);
	cur[3] = current(13, 5, 100);
	cr_assert_eq(uidmap_rematch(m, f, 9, cur, 4, &matched), 0);
	cr_assert_eq(matched, 3);
	cr_assert_eq(f->entries[0].uidl_validity, 9);	/* none left */
	cr_assert_eq(f->entries[0].uidl_uid, 10);
	cr_assert_eq(f->entries[1].uidl_uid, 502);
	cr_assert_eq(f->entries[2].uidl_uid, 501);
	cr_assert_eq(f->entries[3].uidl_uid, 503);
	cr_assert(f->entries[3].flags & UIDMAP_HIDDEN);

	/* Size breaks the tie even against UID order. */
	cr_assert_eq(uidmap_sync(m, f, uids, 0), 0);
	cr_assert_eq(uidmap_sync(m, f, uids, 2), 0);
	set_old(&f->entries[0], 5, 100, fp);
	set_old(&f->entries[1], 5, 200, fp);
	cur[0] = current(20, 5, 300);
	cur[1] = current(21, 5, 100);
	cr_assert_eq(uidmap_rematch(m, f, 10, cur, 2, NULL), 0);
	cr_assert_eq(f->entries[0].uidl_uid, 502);
	cr_assert_eq(f->entries[1].uidl_uid, 501);

	/* Two messages with one old entry: only one matches. */
	cr_assert_eq(uidmap_sync(m, f, uids, 0), 0);
	cr_assert_eq(uidmap_sync(m, f, uids, 1), 0);
	set_old(&f->entries[0], 6, 100, fp);
	cur[0] = current(30, 6, 100);
	cur[1] = current(31, 6, 100);
	cr_assert_eq(uidmap_rematch(m, f, 11, cur, 2, &matched), 0);
	cr_assert_eq(matched, 1);
	cr_assert_eq(f->entries[0].uidl_uid, 501);
	cr_assert_eq(f->entries[1].uidl_validity, 11);
	cr_assert_eq(f->entries[1].uidl_uid, 31);
	uidmap_free(&m);
}

Test(uidmap, rematch_edges)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t uids[] = { 1, 2 };
	struct uidmap_current cur[2];
	size_t matched = 99;

	cr_assert_eq(uidmap_sync(m, f, uids, 2), 0);
	/* An all-zero fingerprint (a failed hash) never matches. */
	set_old(&f->entries[0], 0, 1, UIDMAP_HAS_FP);
	memset(f->entries[0].fp, 0, UIDMAP_FP_LEN);
	cur[0] = (struct uidmap_current){ .uid = 5, .has_fp = true };
	cur[1] = current(5, 1, 1);
	cr_assert_eq(uidmap_rematch(m, f, 3, cur, 2, &matched), -EINVAL);
	cr_assert_eq(f->count, 2);
	cr_assert_eq(uidmap_rematch(m, f, 3, cur, 1, &matched), 0);
	cr_assert_eq(matched, 0);
	cr_assert_eq(f->entries[0].flags, 0);
	/* Nothing current: everything dropped. */
	cr_assert_eq(uidmap_rematch(m, f, 4, NULL, 0, &matched), 0);
	cr_assert_eq(f->count, 0);
	cr_assert_eq(f->uidvalidity, 4);
	/* Nothing old. */
	cur[0] = current(8, 2, 9);
	cr_assert_eq(uidmap_rematch(m, f, 5, cur, 1, &matched), 0);
	cr_assert_eq(matched, 0);
	cr_assert_eq(f->count, 1);
	cr_assert_eq(f->entries[0].flags, UIDMAP_HAS_FP);
	uidmap_free(&m);
}

/* ---- performance ---- */

Test(uidmap, perf_100k, .timeout = 60)
{
	struct uidmap *m = load_ok(), *l;
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	struct uidmap_current *cur = calloc(N_PERF, sizeof(*cur));
	uint32_t *uids = malloc((N_PERF + 1000) * sizeof(*uids));
	struct stamp t0;
	size_t i, matched;
	uint64_t s = 7;
	struct stat st;

	cr_assert_not_null(cur);
	cr_assert_not_null(uids);
	f->uidvalidity = 1700000000;
	for (i = 0; i < N_PERF; i++)
		uids[i] = (uint32_t)(i * 3 + 1000);
	t0 = now();
	cr_assert_eq(uidmap_sync(m, f, uids, N_PERF), 0);
	report("sync", since(t0));
	for (i = 0; i < N_PERF; i++) {
		uidmap_set_size(m, &f->entries[i], 1000 + rnd(&s) % 10000000, 0);
		fp_of(f->entries[i].fp, (uint32_t)i);
		f->entries[i].flags |= UIDMAP_HAS_FP;
	}
	t0 = now();
	save_ok(m);
	report("save", since(t0));
	cr_assert_eq(stat(path, &st), 0);
	t0 = now();
	l = load_ok();
	report("load", since(t0));
	assert_same(m, l);
	uidmap_free(&l);

	/* Drop the first 1000, add 1000 new at the end. */
	for (i = 0; i < N_PERF; i++)
		uids[i] = (uint32_t)((i + 1000) * 3 + 1000);
	t0 = now();
	cr_assert_eq(uidmap_sync(m, f, uids, N_PERF), 0);
	report("resync", since(t0));
	cr_assert_eq(f->count, N_PERF);
	for (i = N_PERF - 1000; i < N_PERF; i++) {
		uint8_t fp[UIDMAP_FP_LEN];

		fp_of(fp, (uint32_t)(i + 1000));
		uidmap_set_fp(m, &f->entries[i], fp);
	}

	/* Rebuilt: new UIDs in another order, every 10th message new. */
	for (i = 0; i < N_PERF; i++) {
		size_t from = (i * 7919) % N_PERF;

		cur[i].uid = (uint32_t)i + 1;
		cur[i].size = f->entries[from].size;
		cur[i].has_fp = true;
		memcpy(cur[i].fp, f->entries[from].fp, UIDMAP_FP_LEN);
		if (i % 10 == 0)
			fp_of(cur[i].fp, (uint32_t)(i + 5 * N_PERF));
	}
	t0 = now();
	cr_assert_eq(uidmap_rematch(m, f, 1800000000, cur, N_PERF, &matched),
		     0);
	report("rematch", since(t0));
	cr_assert_eq(matched, N_PERF - N_PERF / 10);

	fprintf(stderr, "uidmap 100k file: %lld bytes\n",
		(long long)st.st_size);
	cr_assert((uint64_t)st.st_size < UIDMAP_FILE_MAX / 16);
	free(cur);
	free(uids);
	uidmap_free(&m);
}

Test(uidmap, hand_written_v2)
{
	struct uidmap *m;
	struct uidmap_folder *f;
	char *s;

	s = with_end("2", FOLDER_LINE "3\n"
		     "1 7 1 120 ero 000102030405060708090a0b0c0d0e0f 118 "
		     "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n"
		     "2 7 2 50 r - 0 -\n"
		     "3 7 3 60 - - 0 -\n", 3);
	write_whole(path, s, strlen(s));
	free(s);
	m = load_ok();
	f = uidmap_folder(m, "INBOX", false);
	cr_assert_eq(f->count, 3);
	cr_assert_eq(f->entries[0].flags, UIDMAP_EXACT | UIDMAP_RETRIEVED |
		     UIDMAP_OLD_FP | UIDMAP_HAS_FP | UIDMAP_HAS_OID);
	cr_assert_eq(f->entries[0].listed, 118);
	cr_assert_eq(f->entries[0].oid[0], 0xf0);
	cr_assert_eq(f->entries[1].flags, UIDMAP_RETRIEVED);
	uidmap_free(&m);
	/* Damage only version 2 can have. */
	s = with_end("2", FOLDER_LINE "1\n1 7 1 120 o - 0 -\n", 1);
	expect_corrupt(s, strlen(s));
	free(s);
	s = with_end("2", FOLDER_LINE "1\n1 7 1 120 - -\n", 1);
	expect_corrupt(s, strlen(s));
	free(s);
	s = with_end("2", FOLDER_LINE "1\n1 7 1 120 - - 0 xyz\n", 1);
	expect_corrupt(s, strlen(s));
	free(s);
	/* Version 1 knows no "r". */
	s = with_end("1", FOLDER_LINE "1\n1 7 1 120 r -\n", 1);
	expect_corrupt(s, strlen(s));
	free(s);
}

Test(uidmap, version1_map_upgrades_without_changes)
{
	struct uidmap *m;
	struct uidmap_folder *f;
	char *s, *data;
	size_t len;

	s = with_end("1", FOLDER_LINE "1\n"
		     "5 3 9 120 e 000102030405060708090a0b0c0d0e0f\n", 1);
	write_whole(path, s, strlen(s));
	free(s);
	m = load_ok();
	m->dirty = true;
	save_ok(m);
	uidmap_free(&m);
	data = read_whole(path, &len);
	cr_assert_not_null(strstr(data, "popbridge-uidmap 2\n"));
	cr_assert_not_null(strstr(data, "\n5 3 9 120 ero "
				  "000102030405060708090a0b0c0d0e0f 0 -\n"),
			   "%s", data);
	free(data);
	m = load_ok();
	f = uidmap_folder(m, "INBOX", false);
	/* The UIDL identity is what it was. */
	cr_assert_eq(f->entries[0].uidl_validity, 3);
	cr_assert_eq(f->entries[0].uidl_uid, 9);
	uidmap_free(&m);
}

Test(uidmap, exact_size_follows_the_server_size)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t uid = 4;
	struct uidmap_entry *e;

	cr_assert_eq(uidmap_sync(m, f, &uid, 1), 0);
	e = &f->entries[0];
	uidmap_set_size(m, e, 234, 230);
	m->dirty = false;
	cr_assert(uidmap_check_size(m, e, 230));
	cr_assert(!m->dirty);
	cr_assert_eq(e->size, 234);
	/* An mbox server rewrote the headers: the server's size moved. */
	cr_assert(!uidmap_check_size(m, e, 232));
	cr_assert(m->dirty);
	cr_assert_eq(e->size, 232);
	cr_assert_eq(e->flags & UIDMAP_EXACT, 0);
	/* Learned by version 1 (no server size): adopted once. */
	uidmap_set_size(m, e, 300, 0);
	m->dirty = false;
	cr_assert(uidmap_check_size(m, e, 296));
	cr_assert(m->dirty);
	cr_assert_eq(e->listed, 296);
	cr_assert(!uidmap_check_size(m, e, 297));
	uidmap_free(&m);
}

Test(uidmap, rematch_by_server_id_then_fingerprints)
{
	struct uidmap *m = load_ok();
	struct uidmap_folder *f = uidmap_folder(m, "INBOX", true);
	uint32_t uids[] = { 1, 2, 3, 4 };
	struct uidmap_current cur[4];
	const uint8_t fp = UIDMAP_HAS_FP;
	size_t matched;
	struct uidmap_entry *e;

	f->uidvalidity = 100;
	cr_assert_eq(uidmap_sync(m, f, uids, 4), 0);
	/* 1: known by its EMAILID (and a fingerprint the rebuild changed);
	 * 2: a version 1 fingerprint; 3: a new one; 4: a version 1
	 * fingerprint that only a new-style hash would give. */
	set_old(&f->entries[0], 21, 1000, fp | UIDMAP_HAS_OID |
		UIDMAP_RETRIEVED | UIDMAP_EXACT);
	f->entries[0].listed = 990;
	fp_of(f->entries[0].oid, 900);
	set_old(&f->entries[1], 22, 2000, fp | UIDMAP_OLD_FP);
	set_old(&f->entries[2], 23, 3000, fp);
	set_old(&f->entries[3], 24, 4000, fp | UIDMAP_OLD_FP);
	cur[0] = current(11, 99, 995);
	cur[0].has_oid = true;
	fp_of(cur[0].oid, 900);
	cur[1] = current(12, 55, 2000);
	fp_of(cur[1].old_fp, 22);
	cur[2] = current(13, 23, 3000);
	fp_of(cur[2].old_fp, 77);
	cur[3] = current(14, 24, 4000);		/* new-style equals old seed */
	fp_of(cur[3].old_fp, 78);
	cr_assert_eq(uidmap_rematch(m, f, 200, cur, 4, &matched), 0);
	cr_assert_eq(matched, 3);
	e = f->entries;
	cr_assert_eq(e[0].uidl_uid, 501);
	cr_assert(e[0].flags & UIDMAP_RETRIEVED);
	/* The server's size changed: the exact size no longer holds. */
	cr_assert_eq(e[0].flags & UIDMAP_EXACT, 0);
	cr_assert_eq(e[0].size, 995);
	/* It takes the current fingerprint, new style. */
	cr_assert_arr_eq(e[0].fp, cur[0].fp, UIDMAP_FP_LEN);
	cr_assert_eq(e[1].uidl_uid, 502);
	cr_assert_eq(e[1].flags & UIDMAP_OLD_FP, 0);
	cr_assert_arr_eq(e[1].fp, cur[1].fp, UIDMAP_FP_LEN);
	cr_assert_eq(e[2].uidl_uid, 503);
	/* An old-style fingerprint is compared with old-style hashes only. */
	cr_assert_eq(e[3].uidl_validity, 200);
	cr_assert_eq(e[3].uidl_uid, 14);
	uidmap_free(&m);
}
