/* The session's maildrop: message numbers, UIDs, sizes, deletion marks,
 * UIDLs, LAST. */
#include "mailbox/maildrop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a: short, stable, and good enough to tell folder names apart. */
static uint32_t
name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static void
set_uidl_prefix(struct maildrop_folder *f)
{
	static const char hex[] = "0123456789abcdef";
	uint32_t h;
	int i;

	if (strcmp(f->name, "INBOX") == 0)
		return;
	h = name_hash(f->name);
	for (i = 0; i < 8; i++)
		f->uidl_prefix[i] = hex[(h >> (4 * (7 - i))) & 0xf];
	f->uidl_prefix[8] = '.';
}

int
maildrop_init(struct maildrop *md, char *const *folders, size_t n)
{
	size_t i;

	memset(md, 0, sizeof(*md));
	md->folders = calloc(n ? n : 1, sizeof(*md->folders));
	if (md->folders == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		md->folders[i].name = strdup(folders[i]);
		if (md->folders[i].name == NULL) {
			md->n_folders = i;
			maildrop_free(md);
			return -ENOMEM;
		}
		set_uidl_prefix(&md->folders[i]);
	}
	md->n_folders = n;
	return 0;
}

void
maildrop_free(struct maildrop *md)
{
	size_t i;

	for (i = 0; i < md->n_folders; i++)
		free(md->folders[i].name);
	free(md->folders);
	free(md->msgs);
	memset(md, 0, sizeof(*md));
}

int
maildrop_add(struct maildrop *md, uint16_t f, uint32_t uid, uint64_t size)
{
	struct maildrop_msg *m;

	if (md->count == md->cap) {
		size_t cap = md->cap ? md->cap * 2 : 64;

		m = realloc(md->msgs, cap * sizeof(*m));
		if (m == NULL)
			return -ENOMEM;
		md->msgs = m;
		md->cap = cap;
	}
	m = &md->msgs[md->count++];
	m->uid = uid;
	m->folder = f;
	m->deleted = false;
	m->retrieved = false;
	m->uidl_validity = md->folders[f].uidvalidity;
	m->uidl_uid = uid;
	m->size = size;
	m->listed = size;
	return 0;
}

static int
cmp_uid(const void *a, const void *b)
{
	const struct maildrop_msg *x = a, *y = b;

	return (x->uid > y->uid) - (x->uid < y->uid);
}

void
maildrop_sort_tail(struct maildrop *md, size_t from)
{
	size_t i, out;

	if (from >= md->count)
		return;
	qsort(md->msgs + from, md->count - from, sizeof(*md->msgs), cmp_uid);
	/* A server may repeat a FETCH for one UID; keep the first. */
	out = from + 1;
	for (i = from + 1; i < md->count; i++) {
		if (md->msgs[i].uid != md->msgs[out - 1].uid)
			md->msgs[out++] = md->msgs[i];
	}
	md->count = out;
}

struct maildrop_msg *
maildrop_get(struct maildrop *md, uint32_t n)
{
	if (n == 0 || n > md->count || md->msgs[n - 1].deleted)
		return NULL;
	return &md->msgs[n - 1];
}

void
maildrop_stat(const struct maildrop *md, size_t *count_r, uint64_t *octets_r)
{
	size_t i, count = 0;
	uint64_t octets = 0;

	for (i = 0; i < md->count; i++) {
		if (md->msgs[i].deleted)
			continue;
		count++;
		octets += md->msgs[i].size;
	}
	*count_r = count;
	*octets_r = octets;
}

int
maildrop_delete(struct maildrop *md, uint32_t n)
{
	struct maildrop_msg *m = maildrop_get(md, n);

	if (m == NULL)
		return -ENOENT;
	m->deleted = true;
	md->n_deleted++;
	return 0;
}

void
maildrop_reset(struct maildrop *md)
{
	size_t i;

	for (i = 0; i < md->count; i++)
		md->msgs[i].deleted = false;
	md->n_deleted = 0;
	md->last_retrieved = 0;
}

void
maildrop_retrieved(struct maildrop *md, uint32_t n)
{
	md->msgs[n - 1].retrieved = true;
	if (n > md->last_retrieved)
		md->last_retrieved = n;
}

uint32_t
maildrop_last(const struct maildrop *md)
{
	return md->last_retrieved > md->last_known ? md->last_retrieved :
	       md->last_known;
}

void
maildrop_uidl(const struct maildrop *md, const struct maildrop_msg *msg,
	      char out[MAILDROP_UIDL_MAX + 1])
{
	const struct maildrop_folder *f = &md->folders[msg->folder];
	size_t k = strlen(f->uidl_prefix);
	char *p = out;

	/* By hand: UIDL listings of large mailboxes format one per message. */
	memcpy(p, f->uidl_prefix, k);
	p = buf_put_u64(p + k, msg->uidl_validity);
	*p++ = '.';
	p = buf_put_u64(p, msg->uidl_uid);
	*p = '\0';
}

static int
append_range(struct buf *out, uint32_t lo, uint32_t hi, size_t max)
{
	char item[32];
	int n;

	if (lo == hi)
		n = snprintf(item, sizeof(item), "%s%u", out->len ? "," : "",
			     (unsigned)lo);
	else
		n = snprintf(item, sizeof(item), "%s%u:%u",
			     out->len ? "," : "", (unsigned)lo, (unsigned)hi);
	if (out->len + (size_t)n > max)
		return -ENOBUFS;
	return buf_append(out, item, (size_t)n);
}

static bool
picked(const struct maildrop_msg *m, enum maildrop_pick pick)
{
	if (pick == MAILDROP_PICK_DELETED)
		return m->deleted;
	return m->retrieved && !m->deleted;
}

size_t
maildrop_uidset(const struct maildrop *md, uint16_t f, enum maildrop_pick pick,
		size_t *pos, size_t max, struct buf *out)
{
	size_t i = *pos, written = 0, run = 0, start_len = out->len;
	uint32_t lo = 0, hi = 0;

	for (; i < md->count; i++) {
		const struct maildrop_msg *m = &md->msgs[i];

		if (m->folder != f || !picked(m, pick))
			continue;
		if (run > 0 && m->uid == hi + 1) {
			hi = m->uid;
			run++;
			continue;
		}
		if (run > 0 && append_range(out, lo, hi, max + start_len) < 0)
			break;
		written += run;
		*pos = i;
		lo = hi = m->uid;
		run = 1;
	}
	if (run > 0 && i == md->count &&
	    append_range(out, lo, hi, max + start_len) == 0) {
		written += run;
		*pos = i;
	}
	return written;
}
