#!/usr/bin/env bash
# The README's main command, on a fresh Debian 12 machine as root:
#
#   bash tests/vm/demo.sh
#
# Checks its inputs first (root, apt, the Mooncake trace: TIERD_TRACE, default
# ../shared/traces/mooncake_conversation_trace.jsonl next to this checkout), then installs
# what it needs (tests/install-deps.sh, which also checks the Rust toolchain), builds tierd,
# fetches the VM kernel (tests/vm/setup.sh) and boots the two-tier VM once for the `demo`
# scenario group (tests/vm/scenarios/demo/). While the VM runs, the terminal shows the
# scenario's "DEMO| " lines as they come: the tiers, the share of the workload's memory on
# the fast node every 5 s under tierd and with no page mover, and the figures that matter.
# Everything else stays in target/vm-out/demo/ (console.log: the whole VM console with
# tierctl status, placement and heat; tierd-01-kv-demo.log: tierd's log; results.txt).
# Exit status: run.sh's (0 when the scenario passed), 2 when an input is missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

say() { printf 'demo: %s\n' "$*"; }
die() {
  printf 'demo: %s\n' "$*" >&2
  exit 2
}

# --- inputs, before anything is installed or built -----------------------------------
((EUID == 0)) || die "run me as root: I install Debian packages and the VM kernel (/var/cache/tierd-vm)"
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  die "I need a Debian-like machine (apt-get, dpkg-query); see tests/install-deps.sh for the packages"
fi
trace=${TIERD_TRACE:-$(dirname "$root")/shared/traces/mooncake_conversation_trace.jsonl}
[[ -e $trace ]] || die "no Mooncake trace at $trace.
  The trace is not part of this repository (Mooncake, Apache-2.0: kvcache-ai/Mooncake,
  FAST25-release/traces/conversation_trace.jsonl). Put it there as
  mooncake_conversation_trace.jsonl, or point TIERD_TRACE at it."
[[ -f $trace && -r $trace && -s $trace ]] || die "$trace is not a readable, non-empty file"
head -c 4096 "$trace" | head -n 1 | grep -q '"hash_ids"' ||
  die "$trace does not look like the Mooncake conversation trace (its first line has no \"hash_ids\")"

# --- install, build, VM kernel ---------------------------------------------------------
bash tests/install-deps.sh
say "building tierd (cargo build --release --workspace; a few minutes the first time)"
cargo build --release --workspace
bash tests/vm/setup.sh

# --- the VM ----------------------------------------------------------------------------
out=${TIERD_VM_OUT:-$root/target/vm-out}/demo
console=$out/console.log
runlog=${TIERD_VM_OUT:-$root/target/vm-out}/demo-run.log
mkdir -p "$(dirname "$runlog")"
# The follower below must not show a previous run's console (run.sh empties $out itself,
# but only once it has started).
rm -f "$console"
# The benchmark groups' VM (tests/vm/README.md, "Quirks"): one host thread per vCPU, so
# tierd works beside the workload as on a real two-core machine instead of taking turns
# with it on one host thread, and tlbtick on every vCPU, so accessed bits come back as on
# hardware. Either can be overridden.
export TIERD_VM_TCG_THREAD=${TIERD_VM_TCG_THREAD:-multi} TIERD_VM_TLBTICK_US=${TIERD_VM_TLBTICK_US:-10000}
say "booting the two-tier VM (QEMU without KVM: about 5 minutes); full console: $console"
echo
started=$SECONDS
rc=0
bash tests/vm/run.sh --group demo --extra-file "$trace:/tierd/traces/mooncake.jsonl" >"$runlog" 2>&1 &
run=$!
# The scenario's "DEMO| " lines, as QEMU writes them (the serial console ends lines with
# CR LF); tail stops once run.sh has exited.
tail -F -n +1 --pid="$run" "$console" 2>/dev/null | sed -u -n 's/\r$//; s/^DEMO| \{0,1\}//p' &
follower=$!
wait "$run" || rc=$?
wait "$follower" || true
echo
if ((rc == 0)); then
  say "done in $((SECONDS - started)) s. More in $out/:"
  say "  console.log (the whole VM console, with tierctl status, placement and heat during run 1),"
  say "  tierd-01-kv-demo.log (tierd's log), results.txt (every figure of both runs)."
else
  say "the VM run failed (run.sh exit $rc, its report: $runlog):"
  grep -v '^RESULT ' "$runlog" | tail -n 40 | sed 's/^/  /'
  say "a VM that did not boot or stopped early can be QEMU's multi-threaded TCG (about 1 boot"
  say "in 60, tests/vm/README.md): run me again, or with TIERD_VM_TCG_THREAD=single."
fi
exit "$rc"
