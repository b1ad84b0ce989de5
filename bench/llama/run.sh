#!/usr/bin/env bash
# The llama.cpp harness (issue 15): builds llama.cpp and its driver, makes the model and
# the schedule, boots the two-tier VM once and runs one arm after another on the same
# requests, then prints every figure as "RESULT <arm>.<figure>=<value>".
#
#   bench/llama/run.sh [--trace PATH] [--seconds N] [--arms "none kernel ..."]
#                      [--time-scale X] [--token-scale X] [--output-scale X]
#                      [--max-output N] [--out DIR] [--tierd-config FILE] [--no-build]
#
#   --trace PATH       Mooncake .jsonl or Azure .csv (default: $TIERD_TRACES, else
#                      ../shared/traces beside the checkout, mooncake_conversation_trace.jsonl)
#   --seconds N        length of each arm (default 120)
#   --arms LIST        default "none kernel damon tierd tierd-hints oracle all-fast";
#                      also tierd-config: tierd sampling only with --tierd-config's file
#   --time-scale X     trace milliseconds x X = wall milliseconds (default 20: the VM
#                      runs llama.cpp under TCG, far slower than a server)
#   --token-scale X    trace prompt/context token counts / X (default 64), see schedule.py
#   --output-scale X   trace output token counts / X (default 4), capped at
#   --max-output N     (default 48) tokens decoded per turn
#   --out DIR          results (default target/llama-run): console.log, results.txt, ...
#   --tierd-config F   tierd's config file for the tierd-config arm (e.g. a
#                      [policy] kernel_* setting next to the defaults of the tierd arm)
#   --no-build         use what target/ has (bench/llama/build.sh, cargo --release)
#
# Sizes (environment): LLAMA_SLOTS (96 sequences), LLAMA_CTX (3072 cells each),
# LLAMA_WARM (2816 cells of KV already in every slot at the start: a server that has
# been up; computed once on the host into target/llama/warm-*.state and loaded),
# LLAMA_ORACLE_MIB (300: what the oracle keeps on node0), LLAMA_FAST_SLOTS (20:
# all-fast's cache, small enough for node0), LLAMA_PREFILL (8: prompt tokens computed
# per turn, the rest of the prompt's KV arrives by transfer, see driver.cpp). With the
# model of make_model.py a cell is 4 KiB over all layers: 96 x 3072 cells = 1152 MiB of
# KV, 1056 MiB of it live at the start, next to a 512 MiB fast node. The VM: tests/vm/run.sh's two nodes (node0 512 MiB + 2 CPUs,
# node1 1536 MiB CPU-less, HMAT 3x latency / 1/5 bandwidth), one boot, under the host's
# VM lock ($TIERD_VM_LOCK, default /tmp/tierd-vm.lock).
# Exit status: 1 if the boot or an arm failed, 2 on usage errors.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

die() {
  echo "bench/llama/run.sh: $*" >&2
  exit 2
}

traces=${TIERD_TRACES:-$root/../shared/traces}
trace=$traces/mooncake_conversation_trace.jsonl
seconds=120 time_scale=20 token_scale=64 output_scale=4 max_output=48 build=1
arms="none kernel damon tierd tierd-hints oracle all-fast"
tierd_config=
out=$root/target/llama-run
while (($#)); do
  case $1 in
    --trace | --seconds | --arms | --time-scale | --token-scale | --output-scale | --max-output | --out | --tierd-config)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --trace) trace=$2 ;;
        --seconds) seconds=$2 ;;
        --arms) arms=$2 ;;
        --time-scale) time_scale=$2 ;;
        --token-scale) token_scale=$2 ;;
        --output-scale) output_scale=$2 ;;
        --max-output) max_output=$2 ;;
        --out) out=$2 ;;
        --tierd-config) tierd_config=$2 ;;
      esac
      shift 2
      ;;
    --no-build) build='' && shift ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "--seconds wants a positive integer, not '$seconds'"
for a in $arms; do
  case $a in
    none | kernel | damon | tierd | tierd-hints | oracle | all-fast) ;;
    tierd-config) [[ -s $tierd_config ]] || die "the tierd-config arm needs --tierd-config FILE" ;;
    *) die "--arms: unknown arm '$a'" ;;
  esac
done
[[ -s $trace ]] || die "no trace at $trace (Mooncake .jsonl or Azure .csv; see docs/benchmarks.md, \"Workloads and traces\")"
[[ $out != *,* ]] || die "--out: QEMU cannot take paths with commas: $out"

slots=${LLAMA_SLOTS:-96} ctx=${LLAMA_CTX:-3072} warm=${LLAMA_WARM:-2816}
oracle_mib=${LLAMA_ORACLE_MIB:-300} fast_slots=${LLAMA_FAST_SLOTS:-20} prefill=${LLAMA_PREFILL:-8}

if [[ -n $build ]]; then
  echo "bench/llama/run.sh: building (cargo build --release --workspace, bench/llama/build.sh)"
  nice -n 10 cargo build --release --workspace
  bash "$here/build.sh" >/dev/null
  bash tests/vm/setup.sh
fi
[[ -x target/llama/llama-kvdriver && -s target/llama/model.gguf ]] || die "no driver or model in target/llama (run without --no-build)"

vm=$root/target/llama/vm
rm -rf "$vm"
mkdir -p "$vm"
cp target/llama/model.gguf "$vm/"
[[ -z $tierd_config ]] || cp "$tierd_config" "$vm/tierd.toml"
# The warm start's KV, computed once on the host (seconds here, minutes under TCG). A
# saved sequence state records the cache's stream count: one file per slot count.
for n in "$slots" "$fast_slots"; do
  state=target/llama/warm-$n-$ctx-$warm.state
  if [[ ! -s $state || $state -ot target/llama/model.gguf || $state -ot target/llama/llama-kvdriver ]]; then
    nice -n 10 target/llama/llama-kvdriver --model target/llama/model.gguf --slots "$n" --ctx-per-seq "$ctx" \
      --warm-cells "$warm" --warm-state "$state" --warm-only
  fi
  cp "$state" "$vm/warm-$n.state"
done
python3 "$here/schedule.py" "$trace" --out "$vm/schedule.txt" \
  --token-scale "$token_scale" --output-scale "$output_scale" --max-output "$max_output" \
  --time-scale "$time_scale" --seconds "$seconds"
common="--slots $slots --ctx-per-seq $ctx --warm-cells $warm --warm-state /tierd/llama/warm-$slots.state --time-scale $time_scale --prefill-tokens $prefill"
cat >"$vm/env" <<ENV
LLAMA_SECONDS=$seconds
LLAMA_ARMS="$arms"
LLAMA_ARGS="$common"
LLAMA_FAST_ARGS="--slots $fast_slots --ctx-per-seq $ctx --warm-cells $warm --warm-state /tierd/llama/warm-$fast_slots.state --time-scale $time_scale --prefill-tokens $prefill"
LLAMA_ORACLE_MIB=$oracle_mib
ENV

narms=$(wc -w <<<"$arms")
# Per arm: the run, the warm start and the KV's first move to node1, the movers' start
# and stop.
timeout_s=$((120 + narms * (seconds + 150)))
rm -rf "$out"
mkdir -p "$out"
lock=${TIERD_VM_LOCK:-/tmp/tierd-vm.lock}
echo "bench/llama/run.sh: arms [$arms], ${seconds}s each, trace $trace, time x$time_scale, tokens /$token_scale," \
  "outputs /$output_scale <= $max_output, $slots slots x $ctx cells ($warm warm), prefill $prefill (waits for the VM lock $lock)"
cp "$vm/schedule.txt" "$out/"
set +e +o pipefail
TIERD_VM_OUT=$out flock "$lock" bash tests/vm/run.sh --group bench-llama --timeout "$timeout_s" \
  --extra-bin target/llama/llama-kvdriver \
  --extra-file bench/peers:/tierd/peers \
  --extra-file "$vm:/tierd/llama" 2>&1 | tee "$out/run.log"
rc=${PIPESTATUS[0]}
set -e -o pipefail
# The figures again, together (the VM's log: $out/bench-llama/console.log).
echo "bench/llama/run.sh: results ($out/run.log)"
grep '^RESULT ' "$out/run.log" || echo "bench/llama/run.sh: no RESULT lines"
((rc == 0)) || exit 1
