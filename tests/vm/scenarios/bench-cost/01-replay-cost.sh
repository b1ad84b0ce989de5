#!/bin/sh
# Where the Mooncake KV replay's steps go beside tierd (issue 15: "the replays lose
# 20-30 % of their steps beside tierd"). The replay of bench-tiering (1 GiB pool of
# 256 KiB blocks on node1, 25 ms steps, 40 s) under tierd with parts of it switched
# off, one part more per arm, alternating in rounds so drift hits every arm:
#   none          no tierd
#   tierd-scan    tierd managing the replay, no sampling, policy off: the placement
#                 scans (and the threads' idle cost) only
#   tierd-sample  + sampling (DAMON and the fault tracepoint), policy still off
#   tierd         + the policy's moves: the embedded defaults
# Each arm prints the replay's steps_done and block-read share, tierd's CPU by thread
# (TIERD_BENCH_MOVER_CPU) and, in tierd's log, the tiering loop's time per phase.
#   run.sh --group bench-cost --extra-file bench/peers:/tierd/peers \
#     --extra-file /work/shared/traces/mooncake_conversation_trace.jsonl:/tierd/traces/mooncake.jsonl
# TIERD_COST_ROUNDS (default 2) rounds.
# tierd-timeout: 1200
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
[ -r /tierd/traces/mooncake.jsonl ] || cannot_run "no /tierd/traces/mooncake.jsonl"

export TIERD_BENCH_MOVER_CPU=1
export RUST_LOG=info,tierd::tiering::costs=debug
printf '[sampling]\nbackends = []\n[policy]\ndefault_policy = "off"\n' >/tmp/cost-scan.toml
printf '[policy]\ndefault_policy = "off"\n' >/tmp/cost-sample.toml

kv() { # kv TAG MOVER [TIERD_CONFIG]
	if [ -n "${3:-}" ]; then export TIERD_BENCH_CONFIG="$3"; else unset TIERD_BENCH_CONFIG; fi
	sh /tierd/peers/arm.sh --tag "$1" "$2" kvreplay --trace /tierd/traces/mooncake.jsonl \
		--pool-mb 1024 --block-kib 256 --compress 2 --step-ms 25 --seconds 40
	unset TIERD_BENCH_CONFIG
}
r=1
while [ "$r" -le "${TIERD_COST_ROUNDS:-2}" ]; do
	echo "=== round $r"
	kv "none-$r" none
	kv "tierd-scan-$r" tierd /tmp/cost-scan.toml
	kv "tierd-sample-$r" tierd /tmp/cost-sample.toml
	kv "tierd-$r" tierd
	r=$((r + 1))
done
