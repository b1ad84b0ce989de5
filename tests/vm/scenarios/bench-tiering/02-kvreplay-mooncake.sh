#!/bin/sh
# Issue 5's KV replay of the mooncake conversation trace, side by side: a 1 GiB pool of
# 256 KiB blocks first on node1, trace time compressed 2x, 25 ms decode steps reading
# every block of every running request, 40 s; the share of block reads served from
# node0 under the kernel's tiering, DAMON tiering and tierd, plus the oracles
# (bench/src/bin/kvreplay.rs). Trace: /work/shared/traces/mooncake_conversation_trace.jsonl (see its README for the
# license and attribution), passed in with
#   run.sh --extra-file /work/shared/traces/mooncake_conversation_trace.jsonl:/tierd/traces/mooncake.jsonl
# Needs: run.sh --extra-file bench/peers:/tierd/peers
# tierd-timeout: 480
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
[ -r /tierd/traces/mooncake.jsonl ] || cannot_run "no /tierd/traces/mooncake.jsonl (run.sh --extra-file .../mooncake_conversation_trace.jsonl:/tierd/traces/mooncake.jsonl)"
for arm in ${TIERD_BENCH_ARMS:-kernel damon tierd}; do
	echo "=== kvreplay mooncake: $arm (node0 free $(node_free_kb 0) kB)"
	sh /tierd/peers/arm.sh "$arm" kvreplay --trace /tierd/traces/mooncake.jsonl --pool-mb 1024 --block-kib 256 \
		--compress 2 --step-ms 25 --seconds 40 --oracle
done
