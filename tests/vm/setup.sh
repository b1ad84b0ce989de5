#!/usr/bin/env bash
# Prepares this host for tests/vm/run.sh: the Debian packages the harness uses and the
# VM kernel, unpacked into a cache dir. Idempotent: with everything present it only asks
# dpkg and apt-cache (local, no network) and returns.
#
# Cache layout (${TIERD_VM_CACHE:-/var/cache/tierd-vm}):
#   <uname -r>_<deb version>/vmlinuz, config   one dir per kernel package version
#   <uname -r>_<deb version>/vmlinux           the same kernel, uncompressed ELF
#   current -> <that dir>                      what run.sh boots
# run.sh boots vmlinux when it exists: QEMU enters its PVH entry point directly, which
# skips the bzImage's real-mode setup and self-decompression, ~4 s under TCG.
# No kernel modules are extracted: everything the harness needs (virtio-pci,
# virtio-console, 8250, NUMA, HMAT, BPF, DAMON) is built into the cloud kernel.
set -euo pipefail

cache=${TIERD_VM_CACHE:-/var/cache/tierd-vm}
# The meta package tracks the newest 6.12 cloud kernel; we resolve it to the versioned one.
meta_pkg=${TIERD_VM_KERNEL_PKG:-linux-image-6.12-cloud-amd64}

pkgs=(
  qemu-system-x86            # qemu-system-x86_64 (TCG)
  busybox-static             # the guest userland
  cpio zstd                  # initramfs packing
  numactl                    # numactl/migratepages in the guest, numastat on the host
  gcc libc6-dev binutils     # static guest helpers (tests/vm/helpers/*.c), strip
)

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() {
  if ((apt_updated == 0)); then
    apt-get update -qq
    apt_updated=1
  fi
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt_update
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Prints "<versioned package> <deb version>" for the meta package, or nothing. The meta
# package pins its dependency with "(= version)", so one (slow: ~1 s) apt-cache call does.
resolve_kernel() {
  apt-cache show --no-all-versions "$meta_pkg" 2>/dev/null | awk '
    $1 == "Depends:" && match($0, /linux-image-[^ ,]+ \(= [^)]+\)/) {
      split(substr($0, RSTART, RLENGTH), f, /[ ()=]+/); print f[1], f[2]; exit
    }'
}

resolved=$(resolve_kernel)
if [[ -z $resolved ]]; then
  apt_update
  resolved=$(resolve_kernel)
fi
if [[ -z $resolved ]]; then
  if [[ -e $cache/current/vmlinuz ]]; then
    echo "setup: apt cannot resolve $meta_pkg; keeping cached kernel $(readlink "$cache/current")" >&2
    exit 0
  fi
  echo "setup: cannot resolve $meta_pkg to a versioned kernel package" >&2
  exit 1
fi
read -r kpkg kver <<<"$resolved"
kdir="${kpkg#linux-image-}_${kver}"

if [[ ! -e $cache/$kdir/vmlinuz ]]; then
  echo "setup: fetching $kpkg $kver into $cache"
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/.fetch.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # apt-get download drops to the _apt user and warns unless it can write here.
  if id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
  (cd "$work" && apt-get download -qq "$kpkg=$kver")
  dpkg -x "$work"/*.deb "$work/x"
  mkdir "$work/out"
  cp "$work/x/boot/vmlinuz-"* "$work/out/vmlinuz"
  cp "$work/x/boot/config-"* "$work/out/config"
  rm -rf "${cache:?}/$kdir"
  mv "$work/out" "$cache/$kdir"
fi
# extract_vmlinux BZIMAGE OUT: the ELF inside a zstd-compressed bzImage (Debian's);
# fails if there is none. zstd complains about the size trailer the kernel appends.
extract_vmlinux() {
  local off
  while read -r off; do
    tail -c "+$((off + 1))" "$1" | zstd -dq 2>/dev/null >"$2.tmp" || true
    if [[ $(head -c 4 "$2.tmp" | od -An -c | tr -d ' ') == '177ELF' ]]; then
      mv "$2.tmp" "$2"
      return 0
    fi
  done < <(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$1" | cut -d: -f1)
  rm -f "$2.tmp"
  return 1
}
if [[ ! -e $cache/$kdir/vmlinux ]]; then
  extract_vmlinux "$cache/$kdir/vmlinuz" "$cache/$kdir/vmlinux" ||
    echo "setup: no zstd ELF inside vmlinuz; run.sh will boot the bzImage (slower)" >&2
fi

if [[ $(readlink "$cache/current" 2>/dev/null) != "$kdir" ]]; then
  ln -sfn "$kdir" "$cache/current"
fi
echo "setup: VM kernel $cache/current -> $kdir"
