#!/bin/sh
# Whether the replay's lost steps beside tierd come from how long a `move_pages(2)`
# call holds the pages it moves: the replay reads the blocks tierd promotes while they
# move, and a page under migration blocks its reader until the call has copied it
# (under TCG ~55-100 MB/s, so a 1024-page call holds its pages for tens of ms). The
# replay of 01-replay-cost.sh under tierd with [migrate] batch_pages 1024 (the
# default), 256 and 64, alternating in rounds.
#   run.sh --group bench-cost --only 02-replay-batches --extra-file bench/peers:/tierd/peers \
#     --extra-file /work/shared/traces/mooncake_conversation_trace.jsonl:/tierd/traces/mooncake.jsonl
# TIERD_COST_ROUNDS (default 2) rounds.
# tierd-timeout: 1200
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
[ -r /tierd/traces/mooncake.jsonl ] || cannot_run "no /tierd/traces/mooncake.jsonl"

export TIERD_BENCH_MOVER_CPU=1
for b in 256 64; do
	printf '[migrate]\nbatch_pages = %s\n' "$b" >"/tmp/cost-batch-$b.toml"
done

r=1
while [ "$r" -le "${TIERD_COST_ROUNDS:-2}" ]; do
	echo "=== round $r"
	mooncake_replay_arm "batch1024-$r" tierd
	mooncake_replay_arm "batch256-$r" tierd /tmp/cost-batch-256.toml
	mooncake_replay_arm "batch64-$r" tierd /tmp/cost-batch-64.toml
	r=$((r + 1))
done
