#!/usr/bin/env bash
# The one command behind docs/benchmarks.md: builds tierd, boots the two-tier VM for
# the benchmark groups, and regenerates the report's tables and plots from what they
# measured.
#
#   bench/run.sh [--traces DIR] [--groups "bench-tiering bench-hints"] [--out DIR]
#                [--report-only] [--no-deps]
#
#   --traces DIR    holds mooncake_conversation_trace.jsonl and
#                   AzureLLMInferenceTrace_conv.csv (default: $TIERD_TRACES, else
#                   ../shared/traces beside the checkout); they are not in this
#                   repository, see docs/benchmarks.md for where to get them
#   --groups LIST   VM groups to boot (default both); a group left out shows as "not run"
#   --out DIR       the run's results (default target/bench-run; an earlier run there
#                   is replaced, any other non-empty directory refused)
#   --report-only   no build, no boot: regenerate docs/bench/ and the tables of
#                   docs/benchmarks.md from an earlier run in --out
#   --no-deps       do not run tests/install-deps.sh / apt (the machine has them)
#
# Steps: check the traces; install the Debian packages (tests/install-deps.sh, and
# fonts-dejavu-core for the plots' labels); `cargo build --release --workspace`;
# tests/vm/setup.sh (the VM kernel, once per machine); one VM boot per group under the
# host's VM lock ($TIERD_VM_LOCK, default /tmp/tierd-vm.lock: one VM at a time); then
# benchreport writes docs/bench/{tables.md,*.png} and splices the tables into
# docs/benchmarks.md. Every figure is a RESULT line the VM printed; run.sh only adds
# where and when (meta.txt: host, commit, wall time, host load while each group ran).
# Wall time on a 2-core host: bench-tiering ~650 s, bench-hints ~220 s, plus the build.
# Exit status: 1 if a group failed (its tables say so), 2 on usage errors.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

die() {
  echo "bench/run.sh: $*" >&2
  exit 2
}

command="bench/run.sh${*:+ $*}"
traces=${TIERD_TRACES:-$root/../shared/traces}
groups=(bench-tiering bench-hints)
out=${TIERD_BENCH_OUT:-$root/target/bench-run}
report_only='' deps=1
while (($#)); do
  case $1 in
    --traces | --groups | --out)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --traces) traces=$2 ;;
        --groups) read -r -a groups <<<"$2" ;;
        --out) out=$2 ;;
      esac
      shift 2
      ;;
    --report-only) report_only=1 && shift ;;
    --no-deps) deps='' && shift ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
for g in "${groups[@]}"; do
  case $g in
    bench-tiering | bench-hints) ;;
    *) die "--groups: '$g' is not bench-tiering or bench-hints" ;;
  esac
done
[[ $out != *,* ]] || die "--out: QEMU cannot take paths with commas: $out"

report() {
  target/release/benchreport --run "$out" --out docs/bench --splice docs/benchmarks.md
}

if [[ -n $report_only ]]; then
  [[ -d $out ]] || die "--report-only: no run in $out"
  [[ -x target/release/benchreport ]] || cargo build --release -p tierd-bench --bin benchreport
  report
  exit 0
fi

started=$SECONDS
# Only an earlier run's directory (or an empty one) is emptied below.
if [[ -d $out && -n $(ls -A "$out") && ! -e $out/meta.txt ]]; then
  die "--out $out is not empty and holds no earlier run (meta.txt): choose another directory"
fi

# --- inputs first: a missing trace should not cost a build -----------------------
mooncake=$traces/mooncake_conversation_trace.jsonl
azure=$traces/AzureLLMInferenceTrace_conv.csv
trace_help="get them from kvcache-ai/Mooncake (FAST25-release/traces/conversation_trace.jsonl,
Apache-2.0) and Azure/AzurePublicDataset (data/AzureLLMInferenceTrace_conv.csv, CC-BY 4.0),
name them as above and pass --traces DIR (docs/benchmarks.md, \"Workloads and traces\")"
[[ -s $mooncake ]] || die "no Mooncake trace at $mooncake: $trace_help"
[[ -s $azure ]] || die "no Azure trace at $azure: $trace_help"
head -c 4096 "$mooncake" | head -n 1 | grep -q '"hash_ids"' ||
  die "$mooncake does not look like the Mooncake conversation trace (no \"hash_ids\" on its first line)"
head -n 1 "$azure" | grep -q 'TIMESTAMP.*ContextTokens' ||
  die "$azure does not look like the Azure LLM inference trace (header without TIMESTAMP,ContextTokens)"

# --- machine ---------------------------------------------------------------------
if [[ -n $deps ]]; then
  bash tests/install-deps.sh
  if [[ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] && command -v apt-get >/dev/null; then
    echo "bench/run.sh: installing fonts-dejavu-core (labels of the plots)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core >/dev/null
  fi
fi
echo "bench/run.sh: building (cargo build --release --workspace)"
build_started=$SECONDS
cargo build --release --workspace
build_s=$((SECONDS - build_started))
bash tests/vm/setup.sh

rm -rf "$out"
mkdir -p "$out"
meta=$out/meta.txt
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
  echo "version=$(target/release/tierd --version 2>/dev/null | awk '{ print $NF }')"
  echo "host_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
  echo "host_cpus=$(nproc)"
  echo "host_mem_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)"
  echo "host_kernel=$(uname -r)"
  echo "qemu=$(qemu-system-x86_64 --version | head -n 1 | awk '{ print $4 }')"
  echo "command=$command"
  echo "build_s=$build_s"
} >"$meta"

failed=0
lock=${TIERD_VM_LOCK:-/tmp/tierd-vm.lock}
for g in "${groups[@]}"; do
  args=(--extra-file bench/peers:/tierd/peers
    --extra-file "$mooncake:/tierd/traces/mooncake.jsonl")
  case $g in
    bench-tiering) args+=(--extra-file "$azure:/tierd/traces/azure.csv" --timeout 2400) ;;
  esac
  echo "bench/run.sh: $g (waits for the VM lock $lock while another VM runs)"
  load=$out/$g.load
  : >"$load"
  rc=0
  # Once the lock is held: the host's 1-minute load average every 10 s beside the boot
  # (the VM's own two vCPU threads count for about 2 of it).
  TIERD_VM_OUT=$out flock "$lock" bash -c '
    load=$1
    shift
    while :; do cut -d" " -f1 /proc/loadavg >>"$load"; sleep 10; done &
    sampler=$!
    rc=0
    bash tests/vm/run.sh "$@" || rc=$?
    kill "$sampler"
    exit "$rc"' _ "$load" --group "$g" "${args[@]}" 2>&1 | tee "$out/$g.log" || rc=$?
  wall=$(sed -n 's/.*whole run \([0-9]*\)s wall.*/\1/p' "$out/$g.log" | tail -n 1)
  {
    echo "$g.rc=$rc"
    echo "$g.wall_s=${wall:-?}"
    awk -v g="$g" '{ s += $1; if ($1 > m) m = $1 }
      END { if (NR) printf "%s.load_mean=%.1f\n%s.load_max=%.1f\n", g, s / NR, g, m }' "$load"
  } >>"$meta"
  ((rc == 0)) || failed=1
done

echo "total_wall_s=$((SECONDS - started))" >>"$meta"
report
echo "bench/run.sh: done in $((SECONDS - started)) s; results in $out, report in docs/benchmarks.md and docs/bench/"
exit "$failed"
