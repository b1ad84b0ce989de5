#!/bin/sh
# Issue 16's first must-show: the Mooncake KV replay (bench-hints/01's pool of 4096
# 256 KiB blocks, trace time compressed 2x, 25 ms decode steps, here 30 s an arm) with
# its pool pinned like a GPU engine's: io_uring fixed buffers (the stand-in for
# cudaHostRegister) over 224 MiB of fast-node slots then one slow-node slot per block,
# blocks reached through a block table (kvreplay --pinned, bench/src/kv/pinned.rs).
# Arms, one boot, tierd with its default config unless said:
#   pinned_oracle  no tierd: the replay moves blocks itself knowing every future read,
#   pinned_hints   registered with REGISTER_PINNED, hinted each step; blocks move only
#                  when tierd asks (relocation requests: copy or shadow re-point,
#                  MOVED / DECLINED),
#   plain_hints    the same replay with the pool not pinned (kvreplay --hints),
#   pinned_hints_h5  pinned_hints under a tierd with client.pinned_headroom_percent = 5
#                  (5 % of the fast slots kept free for new blocks by early demotions).
# Figures: share of block reads from the fast node (kernel's answer per read), its
# ratio to the pinned oracle (targets with hints: >= 0.95 and >= 0.95x), move_pages
# calls asking to move the replay's pages (syscall tracepoint filtered on its pid and
# a node list: an upper bound on calls on the pinned region; target 0), bytes copied
# and copies avoided by shadows. Trace: /work/shared/traces/mooncake_conversation_trace.jsonl
# (Apache-2.0, kvcache-ai/Mooncake; see its README), passed in with
#   run.sh --group bench-pinned --extra-file \
#     /work/shared/traces/mooncake_conversation_trace.jsonl:/tierd/traces/mooncake.jsonl
# tierd-timeout: 480
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

trace=/tierd/traces/mooncake.jsonl
[ -r "$trace" ] || cannot_run "no $trace (run.sh --extra-file .../mooncake_conversation_trace.jsonl:$trace)"
start_tierd
wait_for_socket /run/tierd/client.sock 30
metric() { tierctl metrics | awk -v k="$1" '$1 == k { printf "%.0f\n", $2 }'; }
kv() {
	tag=$1
	shift
	echo "=== kvreplay mooncake: $tag (node0 free $(node_free_kb 0) kB)"
	kvreplay --trace "$trace" --pool-mb 1024 --block-kib 256 --compress 2 --step-ms 25 \
		--seconds 30 --oracle --count-move-pages --tag "$tag" "$@" >"/tmp/$tag.out" 2>&1 ||
		{ cat "/tmp/$tag.out"; fail "kvreplay $tag failed"; }
	cat "/tmp/$tag.out"
}
fig() { sed -n "s/^RESULT $1\.$2=//p" "/tmp/$1.out"; }

kv pinned_oracle --pinned oracle --pinned-fast-mb 224
kv pinned_hints --pinned hints --pinned-fast-mb 224
result pinned_hints.tierd_pinned_skipped_pages "$(metric tierd_pinned_skipped_pages_total)"
result pinned_hints.tierd_copied_bytes "$(metric tierd_relocation_copied_bytes_total)"
result pinned_hints.tierd_avoided_bytes "$(metric tierd_relocation_avoided_bytes_total)"
kv plain_hints --hints
stop_tierd
printf '[client]\npinned_headroom_percent = 5\n' >/tmp/h5.toml
start_tierd --config /tmp/h5.toml
wait_for_socket /run/tierd/client.sock 30
kv pinned_hints_h5 --pinned hints --pinned-fast-mb 224
stop_tierd

oracle=$(fig pinned_oracle kv_fast_hit_fraction)
for t in pinned_hints pinned_hints_h5 plain_hints; do
	share=$(fig $t kv_fast_hit_fraction)
	if [ -z "$share" ] || [ -z "$oracle" ]; then fail "$t: missing figures"; fi
	ratio=$(awk -v s="$share" -v o="$oracle" 'BEGIN { printf "%.3f\n", (o > 0) ? s / o : 0 }')
	result "$t.vs_pinned_oracle" "$ratio"
	met=$(awk -v s="$share" -v r="$ratio" 'BEGIN { print (s >= 0.95 && r >= 0.95) ? 1 : 0 }')
	echo "$t: $share of block reads from node0, $ratio x the pinned oracle ($oracle) (targets >= 0.95, >= 0.95x: met=$met)"
	result "$t.target_met" "$met"
done
for t in pinned_oracle pinned_hints pinned_hints_h5; do
	check_eq "$t pages_changed_node" 0 "$(fig $t pages_changed_node)"
	check_eq "$t table vs kernel" "$(fig $t table_fast_fraction)" "$(fig $t kv_fast_hit_fraction)"
done
for t in pinned_hints pinned_hints_h5; do
	check_eq "$t move_pages calls" 0 "$(fig $t move_pages_calls)"
done
