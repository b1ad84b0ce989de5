#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the VM testbed need, after
# checking the one thing it does not install: a Rust toolchain (cargo, rustc) at least as
# new as the workspace's `rust-version` (Cargo.toml). Missing or too old, it says what to
# run and exits 1 before touching apt. clippy and rustfmt are only noted when missing
# (tests/run-all.sh needs them, tests/vm/demo.sh does not).
# Idempotent: does nothing when everything is present.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- Rust --------------------------------------------------------------------------
need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)
[[ -n $need ]] || {
  echo "install-deps: no rust-version in $root/Cargo.toml" >&2
  exit 1
}
rust_help="  Install Rust $need or newer with rustup (https://rustup.rs; Debian's own rustc package is too old):
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --component clippy,rustfmt
    . \"\$HOME/.cargo/env\"
  With rustup already installed: rustup update stable"
# version_ge HAVE NEED: HAVE >= NEED, numerically per dotted part.
version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1) == "$2" ]]; }
if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  printf 'install-deps: no Rust toolchain: cargo and rustc are not on PATH (%s).\n%s\n' "$PATH" "$rust_help" >&2
  exit 1
fi
have=$(rustc --version 2>/dev/null | awk '{ print $2 }')
have=${have%%-*} # 1.90.0-nightly -> 1.90.0
if [[ ! $have =~ ^[0-9]+\.[0-9]+ ]]; then
  printf 'install-deps: "rustc --version" did not work (%s).\n%s\n' "$(command -v rustc)" "$rust_help" >&2
  exit 1
fi
if ! version_ge "$have" "$need"; then
  printf 'install-deps: rustc %s (%s) is older than the workspace needs (rust-version %s).\n%s\n' \
    "$have" "$(command -v rustc)" "$need" "$rust_help" >&2
  exit 1
fi
lints=()
cargo clippy --version >/dev/null 2>&1 || lints+=(clippy)
cargo fmt --version >/dev/null 2>&1 || lints+=(rustfmt)
if ((${#lints[@]})); then
  echo "install-deps: note: no ${lints[*]}: tests/run-all.sh needs them (rustup component add ${lints[*]}); the demo does not" >&2
fi

# --- Debian packages ---------------------------------------------------------------
pkgs=(
  clang-16 llvm-16 libbpf-dev          # BPF programs (ebpf/*.bpf.c)
  libhwloc-dev libudev-dev pkg-config  # hwloc topology cross-check
  qemu-system-x86 busybox-static cpio zstd kmod  # the two-tier VM testbed
  util-linux socat                     # setpriv, sd_notify receiver (ops tests)
  systemd                              # systemd-analyze verify (unit check)
  numactl gcc libc6-dev binutils       # VM helpers (migratepages, static test tools)
  tmux                                 # tierctl top capture
  dpkg-dev python3-venv                # make deb (dpkg-shlibdeps), the wheel's fresh-venv test
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if ((EUID != 0)); then
    echo "install-deps: missing Debian packages, and only root can install them: ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
