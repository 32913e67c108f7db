/* Device password checks on libuv's threadpool, a few at a time. */
#include "accounts/account_login.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "accounts/account_keys.h"

struct account_login {
	uv_work_t req;
	struct account_login *next;	/* in the queue while waiting */
	struct account_queue *q;
	uv_loop_t *loop;
	uint64_t start_ms;
	bool dummy;
	bool started;
	bool cancelled;
	struct buf pass;
	struct buf secret;
	uint8_t key[ACCOUNT_KEY_LEN];	/* UNLOCKED and NO_SECRET only */
	enum account_verdict verdict;
	account_login_done_fn *done;
	void *ctx;
	struct account_file file;	/* a copy: the cache may change */
};

static void
job_free(struct account_login *j)
{
	buf_free(&j->pass);
	buf_free(&j->secret);
	OPENSSL_cleanse(j->key, sizeof(j->key));
	OPENSSL_cleanse(&j->file, sizeof(j->file));
	free(j);
}

/* The check itself, on a pool thread: touches nothing but the job. */
static void
check(struct account_login *j)
{
	int r;

	if (j->dummy) {
		account_keys_dummy(j->pass.data, j->pass.len);
		j->verdict = ACCOUNT_NO_DEVICE;
		buf_wipe(&j->pass);
		return;
	}
	r = account_keys_unlock(&j->file, j->pass.data, j->pass.len, j->key,
				NULL);
	buf_wipe(&j->pass);
	if (r == 0) {
		r = account_keys_open_secret(&j->file, j->key, &j->secret);
		j->verdict = r == 0	     ? ACCOUNT_UNLOCKED
			     : r == -ENOENT  ? ACCOUNT_NO_SECRET
			     : r == -EBADMSG ? ACCOUNT_DAMAGED
					     : ACCOUNT_FAILED;
		return;
	}
	j->verdict = r == -EACCES    ? ACCOUNT_DENIED
		     : r == -EBADMSG ? ACCOUNT_DAMAGED
				     : ACCOUNT_FAILED;
}

/* OpenSSL keeps state per thread (its error queue) that it frees only
 * when told: libuv's threads outlive OpenSSL's cleanup at exit, so each
 * job gives it back. */
static void
work(uv_work_t *req)
{
	check(req->data);
	OPENSSL_thread_stop();
}

static void after_work(uv_work_t *req, int status);

/* Starts waiting checks while there is room. */
static void
pump(struct account_queue *q)
{
	struct account_login *j;

	while (q->head != NULL && q->running < ACCOUNT_LOGIN_PARALLEL) {
		j = q->head;
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
		j->next = NULL;
		j->started = true;
		q->running++;
		/* Fails only for a NULL work function. */
		(void)uv_queue_work(j->loop, &j->req, work, after_work);
	}
}

static void
after_work(uv_work_t *req, int status)
{
	struct account_login *j = req->data;
	struct account_queue *q = j->q;

	q->running--;
	if (status < 0 && !j->cancelled)
		j->verdict = ACCOUNT_FAILED;
	if (!j->cancelled)
		j->done(j->ctx, j->verdict, &j->secret,
			j->verdict == ACCOUNT_UNLOCKED ||
					j->verdict == ACCOUNT_NO_SECRET
				? j->key : NULL,
			uv_now(j->loop) - j->start_ms);
	job_free(j);
	pump(q);
}

int
account_login_start(struct account_queue *q, uv_loop_t *loop,
		    const struct account_file *f, const char *pass,
		    size_t pass_len, account_login_done_fn *done, void *ctx,
		    struct account_login **job_r)
{
	struct account_login *j;

	*job_r = NULL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->req.data = j;
	j->q = q;
	j->loop = loop;
	j->start_ms = uv_now(loop);
	j->done = done;
	j->ctx = ctx;
	j->dummy = f == NULL;
	if (f != NULL)
		j->file = *f;
	buf_init_secret(&j->pass, pass_len + 1);
	buf_init_secret(&j->secret, ACCOUNT_SECRET_MAX + 1);
	if (buf_append(&j->pass, pass, pass_len) < 0) {
		job_free(j);
		return -ENOMEM;
	}
	/* The queue needs no bound of its own: one job per session at most,
	 * and max_sessions bounds those. */
	if (q->tail != NULL)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	/* uv_queue_work calls nothing back before the loop runs again. */
	pump(q);
	*job_r = j;
	return 0;
}

void
account_login_cancel(struct account_login **jobp)
{
	struct account_login *j = *jobp, **pp;
	struct account_queue *q;

	if (j == NULL)
		return;
	*jobp = NULL;
	if (j->started) {
		j->cancelled = true;	/* after_work frees it */
		return;
	}
	q = j->q;
	for (pp = &q->head; *pp != NULL; pp = &(*pp)->next) {
		if (*pp != j)
			continue;
		*pp = j->next;
		if (q->tail == j) {
			struct account_login *t = q->head;

			while (t != NULL && t->next != NULL)
				t = t->next;
			q->tail = t;
		}
		break;
	}
	job_free(j);
}
