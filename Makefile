# popbridge — a POP3 server whose maildrop is an IMAP mailbox.
#
#   make            build build/popbridge
#   make demo       install what is missing, build, run a demo Dovecot with
#                   popbridge in front of it
#   make check      install what is missing, build with ASan+UBSan, run the
#                   unit tests and the integration tests
#   make bench      benchmarks (not part of check)

CC      ?= cc
PKGS    := libuv openssl inih libcurl jansson
OPT     ?= -O2 -g
CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -luv -lssl -lcrypto -linih -lcurl -ljansson)
ALL_CFLAGS = $(CSTD) $(WARN) $(OPT) -Iinclude $(PKG_CFLAGS) $(CFLAGS)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# One folder per stage of the flow (see README's layout table).
SRCS    := $(wildcard src/*.c src/*/*.c)
LIBSRCS := $(filter-out src/main.c,$(SRCS))
TESTS   := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

OBJS      := $(patsubst src/%.c,build/obj/%.o,$(SRCS))
LIBOBJS   := $(patsubst src/%.c,build/obj/%.o,$(LIBSRCS))
SANOBJS   := $(patsubst src/%.c,build/asan/obj/%.o,$(SRCS))
SANLIB    := $(patsubst src/%.c,build/asan/obj/%.o,$(LIBSRCS))
DS_VARIANTS := build/asan/test_dotstuff_avx2 build/asan/test_dotstuff_sse2 \
	build/asan/test_dotstuff_scalar
SANTESTS  := $(patsubst %,build/asan/%,$(TESTS)) $(DS_VARIANTS)

PREFIX  ?= /usr/local
DESTDIR ?=

.PHONY: all deps check unit integration demo bench clean asan valgrind
all: build/popbridge

# V=1 shows the full commands.
Q := $(if $(V),,@)

# -MMD -MP: each object's .d file names the headers it includes, so a
# header change rebuilds only what uses it.
DEPFLAGS := -MMD -MP

build/obj/%.o: src/%.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

build/asan/obj/%.o: src/%.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) $(DEPFLAGS) -c -o $@ $<

build/popbridge: $(OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(PKG_LIBS) $(LDFLAGS)

build/asan/popbridge: $(SANOBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $^ $(PKG_LIBS) $(LDFLAGS)

build/asan/test_%: tests/unit/test_%.c $(SANLIB) | build/asan/obj
	@echo "  TEST    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) $(DEPFLAGS) -o $@ $< $(SANLIB) $(PKG_LIBS) -lcriterion $(LDFLAGS)

# The dot-stuffer's narrower scanners, which a machine with wider vectors
# never runs otherwise (the SSE2 one only on short tails), held to the same
# tests.
build/asan/test_dotstuff_avx2: DS_FLAGS := -DDOTSTUFF_NO_AVX512
build/asan/test_dotstuff_sse2: DS_FLAGS := -DDOTSTUFF_NO_AVX2
build/asan/test_dotstuff_scalar: DS_FLAGS := -DDOTSTUFF_NO_SIMD
$(DS_VARIANTS): tests/unit/test_dotstuff.c src/pop3/dotstuff.c $(SANLIB) | build/asan/obj
	@echo "  TEST    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) $(DS_FLAGS) $(DEPFLAGS) -o $@ $< src/pop3/dotstuff.c \
		$(filter-out build/asan/obj/pop3/dotstuff.o,$(SANLIB)) $(PKG_LIBS) -lcriterion $(LDFLAGS)

# The OAuth2 test driver for tests/integration/test_oauth.py.
build/asan/oauth-driver: tests/oauth/driver.c $(SANLIB) | build/asan/obj
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) $(DEPFLAGS) -o $@ $< $(SANLIB) $(PKG_LIBS) $(LDFLAGS)

build/obj build/asan/obj:
	mkdir -p $@

-include $(wildcard build/obj/*.d build/obj/*/*.d build/asan/obj/*.d \
	build/asan/obj/*/*.d build/asan/*.d)

asan: build/asan/popbridge $(SANTESTS) build/asan/oauth-driver

deps:
	sh tests/lib/deps.sh
	sh tests/lib/servers-deps.sh

unit: $(SANTESTS)
	@set -e; for t in $(SANTESTS); do echo "== $$t"; $$t --jobs 2; done

integration: build/asan/popbridge build/popbridge
	POPBRIDGE=$(CURDIR)/build/asan/popbridge sh tests/integration/run.sh

# The integration cases again with the release build under valgrind; any
# report (memory error, definite or indirect leak) fails.
valgrind: build/popbridge
	@rm -rf build/valgrind && mkdir -p build/valgrind
	VG_LOG_DIR=$(CURDIR)/build/valgrind POPBRIDGE=$(CURDIR)/tests/lib/valgrind-popbridge.sh \
		ONLY="pop3 delete faults accounts oauth" bash tests/integration/run.sh
	@if [ -n "$$(find build/valgrind -name 'vg.*.log' -size +0)" ]; then \
		cat build/valgrind/vg.*.log; echo "valgrind: reports above"; exit 1; \
	else echo "valgrind: clean ($$(ls build/valgrind | wc -l) processes)"; fi

check: deps
	$(MAKE) asan
	$(MAKE) unit
	$(MAKE) integration
	bash tests/integration/test_install.sh
	$(MAKE) valgrind

demo: deps
	$(MAKE) build/popbridge
	sh tests/lib/demo.sh

bench: deps
	$(MAKE) build/popbridge
	POPBRIDGE=$(CURDIR)/build/popbridge bash tests/bench/run.sh

clean:
	rm -rf build

# Fuzzing (tests/fuzz/): make fuzz [FUZZ_SECONDS=60] installs clang and
# libFuzzer if missing, builds each target with ASan+UBSan into build/fuzz/
# and runs each for FUZZ_SECONDS on a copy of its seed corpus.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-fno-omit-frame-pointer -g -O1 $(CSTD) $(WARN) -Iinclude
FUZZ_TARGETS := fuzz_pop3_parse fuzz_imap_parse fuzz_config fuzz_session

.PHONY: fuzz fuzz-build
# Each target links only the sources it fuzzes (buf.c wipes with OpenSSL).
build/fuzz/fuzz_pop3_parse: src/pop3/pop3_parse.c src/util/buf.c
build/fuzz/fuzz_pop3_parse: FUZZ_LIBS := -lcrypto
build/fuzz/fuzz_imap_parse: src/imap/imap_parse.c src/util/buf.c
build/fuzz/fuzz_imap_parse: FUZZ_LIBS := -lcrypto
build/fuzz/fuzz_config: src/daemon/config.c src/util/buf.c src/oauth/preset.c src/oauth/http.c
build/fuzz/fuzz_config: FUZZ_LIBS = $(PKG_LIBS)
# The whole daemon but main.c, driven over loopback sockets.
build/fuzz/fuzz_session: $(LIBSRCS)
build/fuzz/fuzz_session: FUZZ_LIBS = $(PKG_LIBS)
build/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h $(wildcard include/*/*.h)
	@mkdir -p build/fuzz
	@echo "  FUZZ    $@"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(filter src/%.c,$^) $(FUZZ_LIBS)

fuzz-build: $(addprefix build/fuzz/,$(FUZZ_TARGETS))

fuzz:
	sh tests/fuzz/deps.sh
	$(MAKE) fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(FUZZ_TARGETS)

# Installation. make install [PREFIX=/usr/local] [DESTDIR=] installs the
# program, the man pages and the systemd unit (with the installed paths
# written into it). The configuration is installed only when none exists:
# an existing $(SYSCONFDIR)/popbridge.ini is never touched, and the new
# sample goes next to it as popbridge.ini.sample. Packagers install into an
# empty DESTDIR and so get popbridge.ini itself, for dpkg to manage as a
# conffile. make uninstall leaves the configuration and the state alone.
SYSCONFDIR     ?= /etc
SBINDIR        ?= $(PREFIX)/sbin
MANDIR         ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL        ?= install

.PHONY: install uninstall
# The unit is written again on every install: PREFIX may have changed.
install: build/popbridge
	sed -e 's|/usr/local/sbin/popbridge|$(SBINDIR)/popbridge|g' \
	    -e 's|/etc/popbridge\.ini|$(SYSCONFDIR)/popbridge.ini|g' \
	    etc/popbridge.service > build/popbridge.service
	$(INSTALL) -D -m 0755 build/popbridge $(DESTDIR)$(SBINDIR)/popbridge
	$(INSTALL) -D -m 0644 etc/popbridge.8 $(DESTDIR)$(MANDIR)/man8/popbridge.8
	$(INSTALL) -D -m 0644 etc/popbridge.ini.5 \
		$(DESTDIR)$(MANDIR)/man5/popbridge.ini.5
	$(INSTALL) -D -m 0644 build/popbridge.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/popbridge.service
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/popbridge.ini" ]; then \
		echo "$(INSTALL) -D -m 0644 etc/popbridge.ini $(DESTDIR)$(SYSCONFDIR)/popbridge.ini.sample"; \
		$(INSTALL) -D -m 0644 etc/popbridge.ini \
			$(DESTDIR)$(SYSCONFDIR)/popbridge.ini.sample; \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/popbridge.ini; the new sample is popbridge.ini.sample"; \
	else \
		echo "$(INSTALL) -D -m 0644 etc/popbridge.ini $(DESTDIR)$(SYSCONFDIR)/popbridge.ini"; \
		$(INSTALL) -D -m 0644 etc/popbridge.ini \
			$(DESTDIR)$(SYSCONFDIR)/popbridge.ini; \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/popbridge \
		$(DESTDIR)$(MANDIR)/man8/popbridge.8 \
		$(DESTDIR)$(MANDIR)/man5/popbridge.ini.5 \
		$(DESTDIR)$(SYSTEMDUNITDIR)/popbridge.service \
		$(DESTDIR)$(SYSCONFDIR)/popbridge.ini.sample

# Load test (tests/soak/soak.py), not part of check: a private Dovecot with
# raised limits and SOAK_SESSIONS (default 1000) concurrent sessions of
# SOAK_USERS (default 20) users through the release build; gives up after
# SOAK_DEADLINE (default 300) seconds.
.PHONY: soak
soak: deps
	$(MAKE) build/popbridge
	POPBRIDGE=$(CURDIR)/build/popbridge python3 tests/soak/soak.py
