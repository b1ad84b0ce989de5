#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine (what .ci/run calls):
# installs what it needs, checks formatting and lints, runs the unit and host
# integration tests, then boots the two-tier VM once per scenario group.
# Prints how long each phase and VM group took ("tierd-suite: ... took N s") and ends
# with one line "tierd-suite: N passed, N failed in N s" (groups that passed/failed).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

bash tests/install-deps.sh
mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true

# timed LABEL CMD...: runs CMD and prints how long it took (CI shows where the time goes).
timed() {
  local label=$1 t0=$SECONDS
  shift
  "$@"
  echo "tierd-suite: $label took $((SECONDS - t0)) s"
}
timed fmt cargo fmt --all -- --check
timed clippy cargo clippy --workspace --all-targets -- -D warnings
timed "host tests" cargo test --workspace
timed "release build" cargo build --release --workspace

passed=0; failed=0
# The installable pieces on the host (about a minute): make install + pkg-config, the
# wheel in a fresh venv, a non-root engine via socket_group, the .deb built, listed and
# installed into a throwaway overlay root. Counted like a VM group.
t0=$SECONDS
if CARGO_PACKAGES=--workspace bash tests/packaging.sh --deb; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "tierd-suite: packaging took $((SECONDS - t0)) s"

bash tests/vm/setup.sh
# Each group is one VM boot; a group that cannot boot or run fails.
group() { # group NAME [run.sh args...]
  local t0=$SECONDS
  if bash tests/vm/run.sh --group "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  echo "tierd-suite: group $1 took $((SECONDS - t0)) s"
}
group smoke
group foundation
group sampling
group policy
group protocol
group reliability --extra-bin /usr/bin/setpriv /usr/bin/socat
group ops --extra-bin /usr/bin/setpriv /usr/bin/socat /usr/bin/tmux \
  --extra-file systemd/tierd.service:/tierd/etc/tierd.service \
  --extra-file config/tierd.toml:/tierd/etc/tierd.toml \
  --extra-file /lib/terminfo:/lib/terminfo \
  --extra-file /usr/lib/locale/C.utf8:/usr/lib/locale/C.utf8
echo "tierd-suite: $passed passed, $failed failed in $SECONDS s"
[ "$failed" -eq 0 ]
