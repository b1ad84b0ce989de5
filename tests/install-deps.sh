#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the VM testbed need.
# Idempotent: does nothing when everything is present. The Rust toolchain (cargo,
# clippy, rustfmt) is expected from the machine image.
set -euo pipefail
pkgs=(
  clang-16 llvm-16 libbpf-dev          # BPF programs (ebpf/*.bpf.c)
  libhwloc-dev libudev-dev pkg-config  # hwloc topology cross-check
  qemu-system-x86 busybox-static cpio zstd kmod  # the two-tier VM testbed
  util-linux socat                     # setpriv, sd_notify receiver (ops tests)
  systemd                              # systemd-analyze verify (unit check)
  numactl gcc libc6-dev binutils       # VM helpers (migratepages, static test tools)
  tmux                                 # tierctl top capture
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
