/* Device password checks on the threadpool (accounts/account_login.h)
 * and one configuration's accounts at run time
 * (accounts/account_store.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "accounts/account_keys.h"
#include "accounts/account_login.h"
#include "accounts/account_store.h"
#include "daemon/config.h"
#include "util/log.h"

static const struct account_kdf cheap = { 10, 8, 1 };

struct result {
	int calls;
	enum account_verdict v;
	char secret[64];
	bool have_key;
	uint8_t key[ACCOUNT_KEY_LEN];
	uint64_t took_ms;
};

static void
done(void *ctx, enum account_verdict v, struct buf *secret, const uint8_t *key,
     uint64_t took_ms)
{
	struct result *r = ctx;

	r->calls++;
	r->v = v;
	r->have_key = key != NULL;
	if (key != NULL)
		memcpy(r->key, key, ACCOUNT_KEY_LEN);
	r->took_ms = took_ms;
	snprintf(r->secret, sizeof(r->secret), "%.*s", (int)secret->len,
		 secret->data);
}

static void
make_file(struct account_file *f, bool with_secret)
{
	uint8_t key[ACCOUNT_KEY_LEN];

	account_file_init(f, "acct");
	cr_assert_eq(account_keys_new(key), 0);
	cr_assert_eq(account_keys_set_device(f, "one", "device-pw-1", 11, key,
					     &cheap, 1), 0);
	cr_assert_eq(account_keys_set_device(f, "two", "device-pw-2", 11, key,
					     &cheap, 1), 0);
	if (with_secret)
		cr_assert_eq(account_keys_seal_secret(f, key, "app-pw", 6), 0);
}

Test(account_login, verdicts)
{
	uv_loop_t loop;
	struct account_queue q = { 0 };
	struct account_file f, bare;
	struct result r[5] = { { 0 } };
	struct account_login *job;

	log_set_level(LOG_ERROR);
	uv_loop_init(&loop);
	make_file(&f, true);
	make_file(&bare, false);
	cr_assert_eq(account_login_start(&q, &loop, &f, "device-pw-2", 11, done,
					 &r[0], &job), 0);
	cr_assert_not_null(job);
	cr_assert_eq(account_login_start(&q, &loop, &f, "device-pw-3", 11, done,
					 &r[1], &job), 0);
	cr_assert_eq(account_login_start(&q, &loop, NULL, "anything", 8, done,
					 &r[2], &job), 0);
	cr_assert_eq(account_login_start(&q, &loop, &bare, "device-pw-1", 11,
					 done, &r[3], &job), 0);
	f.devices[0].wrapped[0] ^= 1;
	cr_assert_eq(account_login_start(&q, &loop, &f, "device-pw-1", 11, done,
					 &r[4], &job), 0);
	/* Never from inside the call; two at once, the rest in order. */
	cr_assert_eq(r[0].calls + r[1].calls + r[2].calls, 0);
	cr_assert_eq(q.running, 2);
	cr_assert_not_null(q.head);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(q.running, 0);
	cr_assert_null(q.head);
	cr_assert_null(q.tail);
	cr_assert_eq(r[0].calls, 1);
	cr_assert_eq(r[0].v, ACCOUNT_UNLOCKED);
	cr_assert_str_eq(r[0].secret, "app-pw");
	cr_assert_eq(r[1].v, ACCOUNT_DENIED);
	cr_assert_str_eq(r[1].secret, "");
	cr_assert_eq(r[2].v, ACCOUNT_NO_DEVICE);
	cr_assert_eq(r[3].v, ACCOUNT_NO_SECRET);
	cr_assert_eq(r[4].v, ACCOUNT_DAMAGED);
	cr_assert_eq(r[4].calls, 1);
	/* The account key comes with an unlocked account (an OAuth2 login
	 * seals a rotated refresh token under it), and only then. */
	cr_assert(r[0].have_key);
	cr_assert(r[3].have_key);
	cr_assert(!r[1].have_key && !r[2].have_key && !r[4].have_key);
	{
		struct buf out;

		buf_init_secret(&out, 64);
		cr_assert_eq(account_keys_open_secret(&f, r[0].key, &out), 0);
		cr_assert_eq(out.len, 6);
		cr_assert_eq(memcmp(out.data, "app-pw", 6), 0);
		buf_free(&out);
	}
	cr_assert_eq(uv_loop_close(&loop), 0);
}

/* A session that ends cancels its check: waiting, it is dropped; running,
 * it finishes on its thread and is freed without a word. */
Test(account_login, cancel)
{
	uv_loop_t loop;
	struct account_queue q = { 0 };
	struct account_file f;
	struct result r[4] = { { 0 } };
	struct account_login *job[4];
	int i;

	uv_loop_init(&loop);
	make_file(&f, true);
	for (i = 0; i < 4; i++)
		cr_assert_eq(account_login_start(&q, &loop, &f, "device-pw-1",
						 11, done, &r[i], &job[i]), 0);
	account_login_cancel(&job[0]);	/* running */
	account_login_cancel(&job[3]);	/* waiting, the queue's tail */
	cr_assert_null(job[0]);
	cr_assert_null(job[3]);
	account_login_cancel(&job[3]);	/* NULL: nothing */
	cr_assert_eq(q.tail, job[2]);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(r[0].calls, 0);
	cr_assert_eq(r[1].calls, 1);
	cr_assert_eq(r[1].v, ACCOUNT_UNLOCKED);
	cr_assert_eq(r[2].calls, 1);
	cr_assert_eq(r[3].calls, 0);
	/* The head of the queue, cancelled before it started. */
	cr_assert_eq(account_login_start(&q, &loop, &f, "x", 1, done, &r[0],
					 &job[0]), 0);
	cr_assert_eq(account_login_start(&q, &loop, &f, "x", 1, done, &r[0],
					 &job[1]), 0);
	cr_assert_eq(account_login_start(&q, &loop, &f, "x", 1, done, &r[3],
					 &job[2]), 0);
	cr_assert_eq(account_login_start(&q, &loop, &f, "device-pw-2", 11, done,
					 &r[3], &job[3]), 0);
	account_login_cancel(&job[2]);
	cr_assert_eq(q.head, job[3]);
	account_login_cancel(&job[3]);
	cr_assert_null(q.head);
	cr_assert_null(q.tail);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(r[0].calls, 2);
	cr_assert_eq(r[0].v, ACCOUNT_DENIED);
	cr_assert_eq(r[3].calls, 0);
	cr_assert_eq(uv_loop_close(&loop), 0);
}

/* --- the store --- */

static char dir[64];

__attribute__((format(printf, 1, 2))) static struct config *
load(const char *fmt, ...)
{
	va_list ap;
	char text[1024], err[CONFIG_ERR_MAX];
	struct config *cfg = NULL;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cr_assert_eq(config_load_string(text, "t.ini", &cfg, err, sizeof(err)),
		     0, "%s", err);
	return cfg;
}

Test(account_store, files_read_again_when_replaced)
{
	struct config *cfg;
	const struct config *acct;
	struct account_store *st;
	const struct account_file *f;
	struct safe_file_dir d = { .fd = -1 };
	struct account_file w;
	char err[512], cmd[128];
	uint8_t key[ACCOUNT_KEY_LEN] = { 1 };

	log_set_level(LOG_ERROR);
	strcpy(dir, "/tmp/account-store-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cfg = load("[upstream]\ntls = none\n[state]\ndir = %s\n"
		   "[account Acct]\nupstream_user = u\n", dir);
	acct = cfg->accounts.list[0];
	cr_assert_eq(account_store_attach(cfg, NULL), 0);
	st = account_store_of(acct);
	cr_assert_not_null(st);
	cr_assert_eq(account_store_of(cfg), st);
	cr_assert_null(account_store_tls(st, acct));
	cr_assert_null(account_store_root_tls(st));

	cr_assert_eq(account_store_file(st, acct, &f, err, sizeof(err)),
		     -ENOENT);
	cr_assert_not_null(f);
	cr_assert_eq(f->n_devices, 0);

	cr_assert_eq(safe_file_open_dir(&d, dir, err, sizeof(err)), 0);
	account_file_init(&w, "Acct");
	cr_assert_eq(account_keys_set_device(&w, "one", "pw", 2, key, &cheap,
					     1), 0);
	cr_assert_eq(account_file_save(&d, &w, err, sizeof(err)), 0);
	cr_assert_eq(account_store_file(st, acct, &f, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(f->n_devices, 1);
	/* Unchanged: the same cache. */
	cr_assert_eq(account_store_file(st, acct, &f, err, sizeof(err)), 0);
	cr_assert_eq(f->n_devices, 1);
	/* Replaced, as passwd does. */
	cr_assert_eq(account_keys_set_device(&w, "two", "pw", 2, key, &cheap,
					     1), 0);
	cr_assert_eq(account_file_save(&d, &w, err, sizeof(err)), 0);
	cr_assert_eq(account_store_file(st, acct, &f, err, sizeof(err)), 0);
	cr_assert_eq(f->n_devices, 2);
	/* Damaged: refused with the reason, every time, until repaired. */
	{
		char path[128];
		FILE *o;

		snprintf(path, sizeof(path), "%s/account-acct", dir);
		o = fopen(path, "a");
		fputs("junk\n", o);
		fclose(o);
	}
	cr_assert_eq(account_store_file(st, acct, &f, err, sizeof(err)),
		     -EBADMSG);
	cr_assert_null(f);
	cr_assert(strstr(err, "account-acct: line 5: unknown record") != NULL,
		  "%s", err);
	cr_assert_eq(account_store_file(st, acct, &f, err, sizeof(err)),
		     -EBADMSG);
	cr_assert_eq(account_file_save(&d, &w, err, sizeof(err)), 0);
	cr_assert_eq(account_store_file(st, acct, &f, err, sizeof(err)), 0);
	cr_assert_eq(f->n_devices, 2);
	safe_file_close_dir(&d, NULL, 0);
	config_free(&cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

Test(account_store, map_names)
{
	struct config *cfg;
	char out[128];
	size_t n;

	strcpy(dir, "/tmp/x");
	cfg = load("[state]\ndir = %s\n[account Office.Scanner]\n"
		   "upstream_user = office@example.com\n", dir);
	n = account_store_map_user(cfg->accounts.list[0], out, sizeof(out));
	cr_assert_eq(n, strlen("office@example.com") + 1 +
			   strlen("account office.scanner"));
	cr_assert(memcmp(out, "office@example.com\0account office.scanner",
			 n) == 0);
	cr_assert_eq(account_store_map_user(cfg->accounts.list[0], out, 20), 0);
	config_free(&cfg);
}

/* An account's own CA file must load; one like [upstream]'s shares its
 * context. */
Test(account_store, tls_contexts)
{
	struct config *cfg;

	log_set_level(LOG_ERROR);
	strcpy(dir, "/tmp/x");
	cfg = load("[state]\ndir = %s\n[account a]\nupstream_user = u\n"
		   "[account b]\nupstream_user = u\nhost = h.example\n"
		   "ca_file = /nonexistent/ca.pem\n", dir);
	cr_assert_lt(account_store_attach(cfg, NULL), 0);
	cr_assert_null(cfg->runtime);
	config_free(&cfg);
}
