#!/bin/sh
# Issue 6's KV replay comparison, side by side in one VM boot: the mooncake
# conversation trace replayed as in bench-tiering/02 (1 GiB pool of 256 KiB blocks
# first on node1, trace time compressed 2x, 25 ms decode steps, 40 s), under
#   none      no mover at all,
#   sampling  tierd managing the process from sampling alone (no hints),
#   hints     tierd with the replay acting as an integrated engine (kvreplay --hints:
#             registers the pool, PREFETCH / ACCESS / FREE per step, recycles the
#             blocks it refills so new KV is allocated on the fast tier),
#   hints_norecycle  the same hints without recycling (every new block is promoted),
# each arm also printing the Belady oracle on its own block-read sequence
# (kv_oracle_belady; kv_fast_hit_vs_belady = hits / oracle hits, target >= 0.95 with
# hints). Trace: run.sh --extra-file
#   /work/shared/traces/mooncake_conversation_trace.jsonl:/tierd/traces/mooncake.jsonl
# Needs: run.sh --extra-file bench/peers:/tierd/peers
# tierd-timeout: 480
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
[ -r /tierd/traces/mooncake.jsonl ] || cannot_run "no /tierd/traces/mooncake.jsonl (run.sh --extra-file .../mooncake_conversation_trace.jsonl:/tierd/traces/mooncake.jsonl)"
kv() {
	tag=$1
	arm=$2
	shift 2
	echo "=== kvreplay mooncake: $tag (node0 free $(node_free_kb 0) kB)"
	sh /tierd/peers/arm.sh --tag "$tag" "$arm" kvreplay --trace /tierd/traces/mooncake.jsonl \
		--pool-mb 1024 --block-kib 256 --compress 2 --step-ms 25 --seconds 40 --oracle "$@"
}
kv none none
kv sampling tierd
kv hints tierd --hints
kv hints_norecycle tierd --hints --no-recycle
