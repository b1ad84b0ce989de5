# tierd: build and install.
#
#   make                      release build of tierd, tierctl and libtierd
#   make install              binaries, systemd unit, default config (only if absent),
#                             man pages, shell completions, and libtierd for C engines:
#                             libtierd.so.N (SONAME) with its .so links, libtierd.a,
#                             tierd.h and tierd.pc (pkg-config)
#   make install DESTDIR=/tmp/pkg PREFIX=/usr     staged install for packaging
#   make uninstall            removes what install put in place, except the config
#   make verify-unit          systemd-analyze verify on a staged install
#   make deb                  target/debian/tierd_<version>_<arch>.deb (packaging/deb/build.sh)
#   make bench                the benchmark report (bench/run.sh: builds, boots the VM,
#                             rewrites docs/bench/ and the tables of docs/benchmarks.md)
#
# The unit's paths follow PREFIX and SYSCONFDIR. The config is never overwritten: an
# edited /etc/tierd/tierd.toml survives upgrades (compare with config/tierd.toml).

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man/man1
UNITDIR    ?= $(PREFIX)/lib/systemd/system
BASHDIR    ?= $(PREFIX)/share/bash-completion/completions
ZSHDIR     ?= $(PREFIX)/share/zsh/site-functions
FISHDIR    ?= $(PREFIX)/share/fish/vendor_completions.d
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CARGO      ?= cargo
# What `build` compiles. tests/run-all.sh passes --workspace: after its workspace build,
# a narrower set would resolve other dependency features and rebuild tierd.
CARGO_PACKAGES ?= -p tierd -p tierctl -p tierd-c
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
REL        := $(TARGET_DIR)/release
TIERCTL    := $(REL)/tierctl
STAGE      := $(TARGET_DIR)/install-stage
# libtierd.so.$(SOVERSION) is the SONAME (clients/c/build.rs reads the same define);
# the file itself is libtierd.so.$(VERSION), the crate version.
SOVERSION  := $(shell sed -n 's/^\#define TIERD_SOVERSION \([0-9]*\).*/\1/p' clients/c/include/tierd.h)
VERSION    := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
# In tierd.pc, a libdir or includedir under PREFIX is written relative to ${prefix}, so
# pkg-config --define-prefix can relocate a staged tree.
PC_LIBDIR  := $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCDIR  := $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))

.PHONY: all build install install-bin install-unit install-config install-man \
	install-completions install-lib uninstall verify-unit deb

all: build

build:
	$(CARGO) build --release $(CARGO_PACKAGES)

install: build install-bin install-unit install-config install-man install-completions \
	install-lib

install-bin:
	install -D -m 0755 $(REL)/tierd $(DESTDIR)$(BINDIR)/tierd
	install -D -m 0755 $(REL)/tierctl $(DESTDIR)$(BINDIR)/tierctl

install-unit:
	mkdir -p $(STAGE)
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/tierd/|$(SYSCONFDIR)/tierd/|g' \
		systemd/tierd.service >$(STAGE)/tierd.service
	install -D -m 0644 $(STAGE)/tierd.service $(DESTDIR)$(UNITDIR)/tierd.service

install-config:
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tierd/tierd.toml ]; then \
		echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/tierd/tierd.toml"; \
	else \
		install -D -m 0644 config/tierd.toml $(DESTDIR)$(SYSCONFDIR)/tierd/tierd.toml; \
	fi

install-man:
	$(TIERCTL) man --out $(DESTDIR)$(MANDIR)

install-completions:
	mkdir -p $(DESTDIR)$(BASHDIR) $(DESTDIR)$(ZSHDIR) $(DESTDIR)$(FISHDIR)
	for p in tierd tierctl; do \
		$(TIERCTL) completions bash --for $$p >$(DESTDIR)$(BASHDIR)/$$p && \
		$(TIERCTL) completions zsh --for $$p >$(DESTDIR)$(ZSHDIR)/_$$p && \
		$(TIERCTL) completions fish --for $$p >$(DESTDIR)$(FISHDIR)/$$p.fish || exit 1; \
	done

# ldconfig only for a real install or uninstall (no DESTDIR) as root: it refreshes the
# cache and the libtierd.so.N link; a package runs it from its own trigger.
install-lib:
	@test -n "$(SOVERSION)" || { echo "no TIERD_SOVERSION in clients/c/include/tierd.h"; exit 1; }
	install -D -m 0755 $(REL)/libtierd.so $(DESTDIR)$(LIBDIR)/libtierd.so.$(VERSION)
	ln -sf libtierd.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libtierd.so.$(SOVERSION)
	ln -sf libtierd.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libtierd.so
	install -D -m 0644 $(REL)/libtierd.a $(DESTDIR)$(LIBDIR)/libtierd.a
	install -D -m 0644 clients/c/include/tierd.h $(DESTDIR)$(INCLUDEDIR)/tierd.h
	mkdir -p $(STAGE)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(PC_LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(PC_INCDIR)|' -e 's|@VERSION@|$(VERSION)|' \
		clients/c/tierd.pc.in >$(STAGE)/tierd.pc
	install -D -m 0644 $(STAGE)/tierd.pc $(DESTDIR)$(PKGCONFIGDIR)/tierd.pc
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
		ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libtierd.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libtierd.so.$(SOVERSION)
	rm -f $(DESTDIR)$(LIBDIR)/libtierd.so $(DESTDIR)$(LIBDIR)/libtierd.a
	rm -f $(DESTDIR)$(INCLUDEDIR)/tierd.h $(DESTDIR)$(PKGCONFIGDIR)/tierd.pc
	rm -f $(DESTDIR)$(BINDIR)/tierd $(DESTDIR)$(BINDIR)/tierctl
	rm -f $(DESTDIR)$(UNITDIR)/tierd.service
	rm -f $(DESTDIR)$(MANDIR)/tierd.1 $(DESTDIR)$(MANDIR)/tierctl.1 $(DESTDIR)$(MANDIR)/tierctl-*.1
	for p in tierd tierctl; do \
		rm -f $(DESTDIR)$(BASHDIR)/$$p $(DESTDIR)$(ZSHDIR)/_$$p $(DESTDIR)$(FISHDIR)/$$p.fish; \
	done
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
		ldconfig; fi
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/tierd/tierd.toml"

# Installs into a scratch prefix (the unit's paths pointing there) and verifies the
# unit, its Documentation= man pages included. Needs systemd-analyze, not a running
# systemd.
verify-unit: build
	rm -rf $(STAGE)/root
	$(MAKE) --no-print-directory install-bin install-unit install-config install-man \
		DESTDIR= PREFIX=$(abspath $(STAGE)/root) SYSCONFDIR=$(abspath $(STAGE)/root/etc)
	MANPATH=$(abspath $(STAGE)/root/share/man) systemd-analyze verify \
		$(abspath $(STAGE)/root/lib/systemd/system/tierd.service)
	@echo "verify-unit: systemd-analyze verify passed"

# target/debian/tierd_<version>_<arch>.deb: everything install puts in place, from a
# staged install (packaging/deb/build.sh; it says why not cargo-deb). Needs dpkg-deb and
# dpkg-shlibdeps (dpkg-dev); no fakeroot: dpkg-deb --root-owner-group sets the owners.
deb: build
	bash packaging/deb/build.sh

# About 20-30 minutes on 2 cores; needs the traces (bench/run.sh --help).
.PHONY: bench
bench:
	bash bench/run.sh
