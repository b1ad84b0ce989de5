#!/bin/sh
# Issue 15: a real llama.cpp engine (bench/llama/driver.cpp, a random-weight Llama with
# a non-unified KV cache) serving the conversation turns of /tierd/llama/schedule.txt,
# once per arm, side by side in one boot, each on the same requests:
#   none         no mover; all KV moved to node1 first (DRAM already full)
#   kernel       numa_balancing=2 + demotion (bench/peers/kernel-tiering.sh)
#   damon        DAMON migrate_hot/cold (bench/peers/damon-tiering.sh)
#   tierd        tierctl manage on the engine's pid, default config, sampling only
#   tierd-config tierd as above with /tierd/llama/tierd.toml as its config (run.sh
#                --tierd-config FILE), e.g. the kernel's NUMA hint faults turned on
#   tierd-hints  the same tierd, the engine sending hints (driver --hints: the policy
#                of clients/python/tierd/kvhints.py through libtierd)
#   oracle       no mover; the engine places its own KV (active slices on node0)
#   all-fast     no mover; a smaller cache that fits node0, all KV on node0
# Every arm but all-fast starts with all KV on node1. Per arm: the driver's RESULT
# lines (tokens_per_s, kv_fast_read_share, pages_migrated: pgmigrate_success from the
# driver's release to its end, the set-up move not counted, ...) and arm.sh's
# mover_cpu_s (tierd's and the kdamonds' CPU time over the run). Settings: /tierd/llama/env (written by bench/llama/run.sh):
# LLAMA_SECONDS, LLAMA_ARMS, LLAMA_ARGS (driver sizes), LLAMA_FAST_ARGS (all-fast's),
# LLAMA_ORACLE_MIB.
# Needs: run.sh --extra-bin target/llama/llama-kvdriver --extra-file bench/peers:/tierd/peers
#        --extra-file target/llama/vm:/tierd/llama (model.gguf, schedule.txt, env)
# tierd-timeout: 1800
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
[ -r /tierd/llama/env ] || cannot_run "no /tierd/llama/env (run bench/llama/run.sh)"
command -v llama-kvdriver >/dev/null || cannot_run "no llama-kvdriver (run.sh --extra-bin target/llama/llama-kvdriver)"
# shellcheck disable=SC1091
. /tierd/llama/env

export TIERD_BENCH_MOVER_CPU=1
# tierd's log (saved as tierd-N.log) then shows where the tiering loop's time goes,
# per phase every 10 s ("tiering loop time", daemon/src/tiering/costs.rs).
export RUST_LOG=info,tierd::tiering::costs=debug
failed=

arm() { # arm TAG MOVER [driver args...]
	tag=$1
	mover=$2
	shift 2
	echo "=== llama $tag (node0 free $(node_free_kb 0) kB, node1 free $(node_free_kb 1) kB)"
	sh /tierd/peers/arm.sh --tag "$tag" "$mover" llama-kvdriver --model /tierd/llama/model.gguf \
		--schedule /tierd/llama/schedule.txt --seconds "$LLAMA_SECONDS" "$@" ||
		{
			echo "llama: arm $tag failed"
			failed="$failed $tag"
		}
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# shellcheck disable=SC2086 # LLAMA_ARGS and LLAMA_FAST_ARGS are lists of words
for a in $LLAMA_ARMS; do
	case $a in
	none) arm none none $LLAMA_ARGS --kv-node 1 ;;
	kernel) arm kernel kernel $LLAMA_ARGS --kv-node 1 ;;
	damon) arm damon damon $LLAMA_ARGS --kv-node 1 ;;
	tierd) arm tierd tierd $LLAMA_ARGS --kv-node 1 ;;
	tierd-config)
		export TIERD_BENCH_CONFIG=/tierd/llama/tierd.toml
		arm tierd-config tierd $LLAMA_ARGS --kv-node 1
		unset TIERD_BENCH_CONFIG
		;;
	tierd-hints) arm tierd-hints tierd $LLAMA_ARGS --kv-node 1 --hints ;;
	oracle) arm oracle none $LLAMA_ARGS --kv-node 1 --oracle-fast-mib "$LLAMA_ORACLE_MIB" ;;
	all-fast) arm all-fast none $LLAMA_FAST_ARGS --kv-node 0 ;;
	*) fail "unknown arm '$a'" ;;
	esac
done
# The other arms ran; the scenario (and bench/llama/run.sh) still fails for these.
[ -z "$failed" ] || fail "arm(s) failed:$failed"
