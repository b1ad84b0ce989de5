# tierd: build and install.
#
#   make                      release build of tierd and tierctl
#   make install              binaries, systemd unit, default config (only if absent),
#                             man pages, shell completions
#   make install DESTDIR=/tmp/pkg PREFIX=/usr     staged install for packaging
#   make uninstall            removes what install put in place, except the config
#   make verify-unit          systemd-analyze verify on a staged install
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
CARGO      ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
REL        := $(TARGET_DIR)/release
TIERCTL    := $(REL)/tierctl
STAGE      := $(TARGET_DIR)/install-stage

.PHONY: all build install install-bin install-unit install-config install-man \
	install-completions uninstall verify-unit

all: build

build:
	$(CARGO) build --release -p tierd -p tierctl

install: build install-bin install-unit install-config install-man install-completions

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

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tierd $(DESTDIR)$(BINDIR)/tierctl
	rm -f $(DESTDIR)$(UNITDIR)/tierd.service
	rm -f $(DESTDIR)$(MANDIR)/tierd.1 $(DESTDIR)$(MANDIR)/tierctl.1 $(DESTDIR)$(MANDIR)/tierctl-*.1
	for p in tierd tierctl; do \
		rm -f $(DESTDIR)$(BASHDIR)/$$p $(DESTDIR)$(ZSHDIR)/_$$p $(DESTDIR)$(FISHDIR)/$$p.fish; \
	done
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

# About 20-30 minutes on 2 cores; needs the traces (bench/run.sh --help).
.PHONY: bench
bench:
	bash bench/run.sh
