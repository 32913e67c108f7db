#ifndef POPBRIDGE_FUZZ_COMMON_H
#define POPBRIDGE_FUZZ_COMMON_H

/* What the libFuzzer targets in tests/fuzz share. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Helpers that only read or hash bytes are left out of the coverage
 * instrumentation: their loops tell the fuzzer nothing about the parser. */
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",   \
				__FILE__, __LINE__, #cond);                \
			abort();                                           \
		}                                                          \
	} while (0)

static inline void *
xmalloc(size_t n)
{
	void *p = malloc(n > 0 ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

/* FNV-1a over p[0..n), continuing from *hash: event sequences are
 * compared between chunkings by their hashes. */
NO_COVERAGE static inline void
fnv1a(uint64_t *hash, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < n; i++) {
		*hash ^= s[i];
		*hash *= 0x100000001b3ull;
	}
}

#endif
