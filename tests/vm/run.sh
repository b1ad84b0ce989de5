#!/usr/bin/env bash
# Boots the two-tier test VM once for one scenario group and reports per scenario.
#
#   tests/vm/run.sh --group NAME [--mem0 512M] [--mem1 1536M] [--smp 2] [--timeout SEC]
#                   [--no-hmat] [--extra-bin PATH ...] [--extra-file HOST:GUEST ...]
#                   [--only NAME[,NAME...]]
#
# Builds an initramfs (busybox, guest-init.sh as /init, the release binaries and
# lib*.so of target/release, numactl, the static helpers of tests/vm/helpers, the group's
# scenarios), boots it under QEMU/TCG with node0 = CPUs + fast RAM and node1 = CPU-less
# slower RAM (HMAT; --no-hmat: a plain q35 without HMAT, so the kernel puts both nodes
# in one memory tier, as on firmware without HMAT/CDAT), then parses the serial log.
# Prints "PASS|FAIL <group>/<name> (N s)" per scenario, its RESULT lines, and finally "vm-<group>: N passed, N failed". Exits 1 if
# any scenario failed or never reported, or if the VM did not boot, timed out or could
# not send /out back; 2 on usage errors. Needs tests/vm/setup.sh to have run.
#
# Artefacts, in ${TIERD_VM_OUT:-target/vm-out}/<group>/: console.log (serial console),
# qemu.log, results.txt ("<group>/<name> key=value"), and the files scenarios left in
# the guest's /out. Other knobs: TIERD_VM_CACHE (setup.sh's cache), TIERD_VM_KERNEL (boot
# another kernel: bzImage or PVH vmlinux), TIERD_VM_APPEND (extra kernel arguments), TIERD_VM_TCG_THREAD
# (single|multi, see below), TIERD_VM_TLBTICK_US (see below), CARGO_TARGET_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

# HMAT figures for initiator node0 (QEMU units: ns, bytes/s with M/G suffix). node1 is 3x
# the latency and 1/5 the bandwidth of node0; the kernel's abstract distance is DRAM's
# 576 scaled by both ratios (576 * 3 * 5 = 8640), so node0 lands in memory_tier4
# (576 >> 7) and node1 in memory_tier67 (8640 >> 7) on 6.12.
hmat_latency_ns=(10 30)
hmat_bandwidth=(10G 2G)
# Seconds the VM gets on top of the scenarios' own timeouts (boot, /out transfer).
boot_margin_s=120
# Must match default_timeout_s in guest-init.sh.
default_scenario_timeout_s=120

die() {
  echo "run.sh: $*" >&2
  exit 2
}

usage() {
  sed -n '3,6p' "${BASH_SOURCE[0]}" | sed 's/^# *//'
}

group='' mem0=512M mem1=1536M smp=2 timeout_s='' hmat=1 only=''
extra_bins=() extra_files=()
while (($#)); do
  case $1 in
    --group | --mem0 | --mem1 | --smp | --timeout | --extra-file | --only)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --group) group=$2 ;;
        --mem0) mem0=$2 ;;
        --mem1) mem1=$2 ;;
        --smp) smp=$2 ;;
        --timeout) timeout_s=$2 ;;
        --extra-file) extra_files+=("$2") ;;
        --only) only=$2 ;;
      esac
      shift 2
      ;;
    --no-hmat)
      hmat=0
      shift
      ;;
    --extra-bin)
      shift
      if ((!$#)) || [[ $1 == --* ]]; then die "--extra-bin needs at least one path"; fi
      while (($#)) && [[ $1 != --* ]]; do
        extra_bins+=("$1")
        shift
      done
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
done

[[ $group =~ ^[A-Za-z0-9_-]+$ ]] || die "--group NAME is required (letters, digits, _ and -)"
[[ $smp =~ ^[1-9][0-9]*$ ]] || die "--smp wants a positive integer, not '$smp'"
[[ -z $timeout_s || $timeout_s =~ ^[1-9][0-9]*$ ]] || die "--timeout wants seconds, not '$timeout_s'"

to_mib() { # to_mib 512M|2G|1024 -> MiB
  [[ $1 =~ ^([1-9][0-9]*)([MmGg]?)$ ]] || die "memory size '$1' is not NUM[M|G]"
  case ${BASH_REMATCH[2]} in
    G | g) echo $((BASH_REMATCH[1] * 1024)) ;;
    *) echo "${BASH_REMATCH[1]}" ;;
  esac
}
mem0_mib=$(to_mib "$mem0")
mem1_mib=$(to_mib "$mem1")

scenario_dir=$here/scenarios/$group
scenarios=()
for f in "$scenario_dir"/*.sh; do # globs sort by the locale; the guest's ash uses C order
  [[ -e $f ]] && scenarios+=("$(basename "$f" .sh)")
done
mapfile -t scenarios < <(printf '%s\n' "${scenarios[@]}" | LC_ALL=C sort)
# --only: a subset of the group's scenarios (by name, e.g. 30-permissions), for working
# on one scenario without booting through the others.
if [[ -n $only ]]; then
  wanted=()
  IFS=, read -ra names <<<"$only"
  for n in "${names[@]}"; do
    [[ -e $scenario_dir/$n.sh ]] || die "--only: no scenario $scenario_dir/$n.sh"
    wanted+=("$n")
  done
  scenarios=("${wanted[@]}")
fi
[[ -n ${scenarios[0]:-} ]] || die "no scenarios in $scenario_dir/*.sh"

cache=${TIERD_VM_CACHE:-/var/cache/tierd-vm}
kernel=${TIERD_VM_KERNEL:-}
if [[ -z $kernel ]]; then
  kernel=$cache/current/vmlinuz
  # The uncompressed ELF boots ~4 s faster (PVH entry, see setup.sh).
  [[ ! -r $cache/current/vmlinux ]] || kernel=$cache/current/vmlinux
fi
release_dir=${CARGO_TARGET_DIR:-$root/target}/release
build=$root/target/vm-build/$group
out=${TIERD_VM_OUT:-$root/target/vm-out}/$group
[[ $out != *,* && $build != *,* ]] || die "QEMU cannot take paths with commas: $out, $build"

passed=0 failed=0
finish() { # finish [ERROR...]: prints the closing line and exits
  local rc=0
  if (($#)); then
    echo "vm-$group: ERROR: $*"
    rc=1
  fi
  ((failed == 0)) || rc=1
  echo "vm-$group: $passed passed, $failed failed"
  exit "$rc"
}
if [[ ! -r $kernel ]]; then
  failed=${#scenarios[@]}
  finish "no VM kernel at $kernel (run tests/vm/setup.sh)"
fi

rm -rf "$build" "$out"
mkdir -p "$build/stage" "$out"
stage=$build/stage

# --- initramfs --------------------------------------------------------------------

# add_libs FILE: copies FILE's shared libraries and ELF interpreter (per ldd) into the
# stage at their host paths. Static binaries and scripts have none.
add_libs() {
  local deps lib
  # The workspace's own shared libraries (libtierd.so) resolve from target/release and
  # go to /tierd/lib (on the guest's LD_LIBRARY_PATH) instead.
  deps=$(LD_LIBRARY_PATH=$release_dir ldd "$1" 2>/dev/null) || return 0
  if grep -q 'not found' <<<"$deps"; then
    echo "$deps" >&2
    die "$1 needs shared libraries this host does not have"
  fi
  while read -r lib; do
    [[ $lib == "$release_dir"/* || -e $stage$lib ]] || cp -L --parents "$lib" "$stage"
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$deps")
}

# add_bin FILE DIR: installs FILE into DIR of the guest, debug info stripped (symbols
# stay for backtraces), with its libraries.
add_bin() {
  local dest=$stage$2/${1##*/}
  mkdir -p "$stage$2"
  strip --strip-debug -o "$dest" "$1" 2>/dev/null || cp -L "$1" "$dest"
  chmod 755 "$dest"
  add_libs "$1"
}

is_elf() { [[ $(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ') == '177ELF' ]]; }

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,dev,proc,sys,tmp,run,out,root,etc,mnt}
mkdir -p "$stage/tierd/bin" "$stage/tierd/lib" "$stage/tierd/scenarios/$group"
cp /bin/busybox "$stage/bin/busybox"
while read -r applet; do
  [[ -e $stage/$applet ]] || ln -s /bin/busybox "$stage/$applet"
done < <(/bin/busybox --list-full)
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"
# The kernel opens /dev/console for /init before devtmpfs is mounted.
mknod -m 600 "$stage/dev/console" c 5 1

cp "$here/guest-init.sh" "$stage/init"
chmod 755 "$stage/init"
echo "$group" >"$stage/tierd/group"
# Benchmark groups run tests/vm/helpers/tlbtick on every vCPU (guest-init.sh starts one
# per CPU beside each scenario, for every arm alike): it empties the vCPU's software TLB
# every TIERD_VM_TLBTICK_US (default 10000 µs; 0 = off), so accessed bits come back as
# on hardware with a real TLB's reach instead of never (see tlbtick.c). Test groups:
# off unless set.
if [[ $group == bench-* ]]; then
  tlbtick_us=${TIERD_VM_TLBTICK_US:-10000}
else
  tlbtick_us=${TIERD_VM_TLBTICK_US:-0}
fi
[[ $tlbtick_us =~ ^[0-9]+$ ]] || die "TIERD_VM_TLBTICK_US must be a number of microseconds, got '$tlbtick_us'"
echo "$tlbtick_us" >"$stage/tierd/tlbtick_us"
cp "$here/scenarios/lib.sh" "$stage/tierd/scenarios/lib.sh"
for s in "${scenarios[@]}"; do
  cp "$scenario_dir/$s.sh" "$stage/tierd/scenarios/$group/"
done

for tool in numactl migratepages numastat; do
  add_bin "/usr/bin/$tool" /usr/local/bin
done
mkdir -p "$root/target/vm-build/helpers"
for src in "$here"/helpers/*.c; do
  [[ -e $src ]] || continue
  bin=$root/target/vm-build/helpers/$(basename "$src" .c)
  if [[ ! -x $bin || $src -nt $bin ]]; then
    # Other groups may be building at the same time: never expose a half-written file.
    gcc -static -O2 -Wall -Wextra -Werror -o "$bin.$$" "$src"
    mv -f "$bin.$$" "$bin"
  fi
  add_bin "$bin" /usr/local/bin
done

release_bins=()
for f in "$release_dir"/*; do
  # Top-level executables without a dot are the workspace's binaries; build scripts
  # live in build/, libraries and dep-info files have extensions.
  if [[ ! -f $f || ! -x $f || ${f##*/} == *.* ]] || ! is_elf "$f"; then continue; fi
  add_bin "$f" /tierd/bin
  release_bins+=("${f##*/}")
done
for f in "$release_dir"/lib*.so; do
  [[ ! -f $f ]] || add_bin "$f" /tierd/lib
done
for f in "${extra_bins[@]}"; do
  [[ -f $f ]] || die "--extra-bin $f: no such file"
  add_bin "$f" /tierd/bin
done
[[ ! -d $here/data ]] || cp -r "$here/data" "$stage/tierd/data"
for spec in "${extra_files[@]}"; do
  host=${spec%%:*} guest=${spec#*:}
  [[ $spec == *:* && -e $host && $guest == /* ]] || die "--extra-file wants HOST:/GUEST with an existing HOST, not '$spec'"
  mkdir -p "$(dirname "$stage$guest")"
  cp -rL "$host" "$stage$guest"
done

initrd=$build/initramfs.cpio.zst
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) |
  zstd -q -3 -T0 >"$initrd" # the guest frees it once unpacked; level 10 is 2 s slower
unpacked_kib=$(du -sk "$stage" | cut -f1)
echo "vm-$group: initramfs $(($(stat -c %s "$initrd") / 1024)) KiB (${unpacked_kib} KiB unpacked)," \
  "release binaries: [${release_bins[*]}]"

# --- boot -------------------------------------------------------------------------

if [[ -z $timeout_s ]]; then
  timeout_s=$boot_margin_s
  for s in "${scenarios[@]}"; do
    t=$(sed -n 's/^# tierd-timeout: *\([0-9][0-9]*\).*/\1/p' "$scenario_dir/$s.sh" | head -n 1)
    timeout_s=$((timeout_s + ${t:-$default_scenario_timeout_s} + 2))
  done
fi

# Test groups run both vCPUs on one host thread (thread=single): with multi-threaded
# TCG, QEMU 7.2 occasionally runs stale code after the kernel patches its text (jump
# labels, text_poke_bp), seen here as "Oops: int3" in enqueue_timer during boot (1 in
# ~60 boots), and single-threaded is as fast for them. Benchmark groups (bench-*) run
# one host thread per vCPU (thread=multi): a mover (tierd, kdamond, the kernel's
# migration) then works in parallel with the workload, as on a real machine, instead
# of taking turns with it on one host thread, which caps every mover at a share of one
# core. A benchmark VM that does not boot is reported as such; run it again.
# TIERD_VM_TCG_THREAD overrides both.
if [[ $group == bench-* ]]; then
  tcg_thread=${TIERD_VM_TCG_THREAD:-multi}
else
  tcg_thread=${TIERD_VM_TCG_THREAD:-single}
fi
if ((hmat)); then
  machine=q35,hmat=on initiator=,initiator=0
else
  machine=q35 initiator=''
fi
# shellcheck disable=SC2054 # commas are QEMU's option syntax
qemu=(
  qemu-system-x86_64
  -machine "$machine" -accel "tcg,thread=$tcg_thread" -cpu max -smp "$smp"
  -m "$((mem0_mib + mem1_mib))M"
  -object "memory-backend-ram,id=m0,size=${mem0_mib}M"
  -object "memory-backend-ram,id=m1,size=${mem1_mib}M"
  -numa "node,nodeid=0,cpus=0-$((smp - 1)),memdev=m0$initiator"
  -numa "node,nodeid=1,memdev=m1$initiator"
)
for target in 0 1; do
  ((hmat)) || break
  # shellcheck disable=SC2054
  qemu+=(
    -numa "hmat-lb,initiator=0,target=$target,hierarchy=memory,data-type=access-latency,latency=${hmat_latency_ns[target]}"
    -numa "hmat-lb,initiator=0,target=$target,hierarchy=memory,data-type=access-bandwidth,bandwidth=${hmat_bandwidth[target]}"
  )
done
# shellcheck disable=SC2054
qemu+=(
  -kernel "$kernel" -initrd "$initrd"
  # mitigations=off: page-table isolation and friends cost a lot under TCG.
  -append "console=ttyS0 quiet panic=-1 mitigations=off rdinit=/init ${TIERD_VM_APPEND:-}"
  -nodefaults -nographic -no-reboot
  -serial "file:$out/console.log"
  # /out comes back as a tar stream on a virtio-serial port (virtio-console is built
  # into the kernel; virtio-blk and 9p are not).
  -device virtio-serial-pci,id=vser0
  -chardev "file,id=tierdout,path=$build/out.tar"
  -device virtserialport,bus=vser0.0,chardev=tierdout,name=tierd.out
)

echo "vm-$group: booting ${#scenarios[@]} scenarios, node0 ${mem0_mib}M + ${smp} CPUs," \
  "node1 ${mem1_mib}M CPU-less, $( ((hmat)) && echo HMAT || echo 'no HMAT'), TCG thread=$tcg_thread, tlbtick ${tlbtick_us} us, timeout ${timeout_s}s; log: $out/console.log"
started=$SECONDS
qemu_rc=0
timeout --kill-after=10 "$timeout_s" "${qemu[@]}" </dev/null >"$out/qemu.log" 2>&1 || qemu_rc=$?
wall_s=$((SECONDS - started))

# --- report -----------------------------------------------------------------------

declare -A began=() rc=() reason=() timed_out=() output=() results=() secs=()
ready='' done_seen='' out_sent='' current=''
while IFS= read -r line; do
  line=${line//$'\r'/}
  case $line in
    *"TIERD-INIT-READY $group "*) ready=${line#*TIERD-INIT-READY } ;;
    *"TIERD-SCENARIO-BEGIN $group/"*)
      current=${line##*"TIERD-SCENARIO-BEGIN $group/"}
      began[$current]=1
      ;;
    *"TIERD-SCENARIO-TIMEOUT $group/"*)
      t=${line##*"TIERD-SCENARIO-TIMEOUT $group/"}
      timed_out[${t%% *}]=${t##*after_s=}
      ;;
    *"TIERD-SCENARIO-TIME $group/"*" s="*)
      t=${line##*"TIERD-SCENARIO-TIME $group/"}
      secs[${t%% s=*}]=${t##* s=}
      ;;
    *"TIERD-SCENARIO-END $group/"*" rc="*)
      t=${line##*"TIERD-SCENARIO-END $group/"}
      rc[${t%% rc=*}]=${t##* rc=}
      current=
      ;;
    *"TIERD-OUT-SENT"* | *"TIERD-OUT-MISSING"*) out_sent=${line#*TIERD-OUT-} ;;
    *"TIERD-GROUP-DONE $group"*) done_seen=1 ;;
    *)
      [[ -n $current ]] || continue
      output[$current]+="$line"$'\n'
      if [[ $line =~ ^RESULT\ ([A-Za-z0-9_.:/-]+=.*)$ ]]; then
        results[$current]+="${BASH_REMATCH[1]}"$'\n'
      elif [[ $line == CANNOT-RUN:* ]]; then
        reason[$current]=${line#CANNOT-RUN: }
      fi
      ;;
  esac
done <"$out/console.log" 2>/dev/null || true

: >"$out/results.txt"
for s in "${scenarios[@]}"; do
  id=$group/$s
  if [[ ${rc[$s]:-} == 0 ]]; then
    echo "PASS $id${secs[$s]:+ (${secs[$s]} s)}"
    passed=$((passed + 1))
  else
    if [[ -z ${began[$s]:-} ]]; then
      why="never started"
    elif [[ -z ${rc[$s]:-} ]]; then
      why="no END line: the VM stopped before it finished"
    elif [[ -n ${timed_out[$s]:-} ]]; then
      why="rc=${rc[$s]}, timed out after ${timed_out[$s]}s"
    elif [[ ${rc[$s]} == 77 ]]; then
      why="rc=77, could not run: ${reason[$s]:-no reason given}"
    else
      why="rc=${rc[$s]}"
    fi
    echo "FAIL $id ($why${secs[$s]:+, ${secs[$s]} s})"
    failed=$((failed + 1))
    if [[ -n ${output[$s]:-} ]]; then
      printf '%s' "${output[$s]}" | tail -n 60 | sed 's/^/    | /'
    fi
  fi
  if [[ -n ${results[$s]:-} ]]; then
    while IFS= read -r r; do
      echo "RESULT $r"
      echo "$id $r" >>"$out/results.txt"
    done <<<"${results[$s]%$'\n'}"
  fi
done

if [[ -z $ready ]]; then
  echo "vm-$group: the VM did not boot to /init (qemu rc=$qemu_rc); last console lines:"
  tail -n 30 "$out/console.log" 2>/dev/null | sed 's/^/    | /'
  sed 's/^/    qemu: /' "$out/qemu.log"
  finish "VM did not boot"
fi
echo "vm-$group: booted to /init at guest uptime ${ready##*uptime_s=}s, whole run ${wall_s}s wall"
((qemu_rc != 124 && qemu_rc != 137)) || finish "VM timed out after ${timeout_s}s"
[[ -n $done_seen ]] || finish "VM stopped before TIERD-GROUP-DONE (qemu rc=$qemu_rc)"
[[ $out_sent == SENT* ]] || finish "guest /out was not sent back: ${out_sent:-no report}"
tar -xf "$build/out.tar" -C "$out" --skip-old-files --no-same-owner ||
  finish "cannot unpack the guest's /out ($build/out.tar)"
finish
