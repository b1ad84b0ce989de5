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

r=1
while [ "$r" -le "${TIERD_COST_ROUNDS:-2}" ]; do
	echo "=== round $r"
	mooncake_replay_arm "none-$r" none
	mooncake_replay_arm "tierd-scan-$r" tierd /tmp/cost-scan.toml
	mooncake_replay_arm "tierd-sample-$r" tierd /tmp/cost-sample.toml
	mooncake_replay_arm "tierd-$r" tierd
	r=$((r + 1))
done
