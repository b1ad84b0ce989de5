#!/bin/sh
# Pinned memory placed by relocation (issue 16.1, 16.3): io_uring fixed buffers
# (IORING_REGISTER_BUFFERS, a long-term pin like cudaHostRegister) stand in for a GPU
# engine's pinned KV pool (pinbench, bench/src/bin/pinbench.rs).
# 1. move_pages by the process itself moves none of a pinned buffer's pages to the slow
#    node, and all of an unpinned one's.
# 2. A region of 16 fast + 48 slow 64 KiB slots, pinned and registered with
#    REGISTER_PINNED: tierd asks the client to promote hot set A into fast slots, then
#    to demote A (re-points to shadows: no copy) and promote hot set B; every block's
#    contents survive; no page of the region changes node and no migration of it is
#    attempted (pgmigrate_fail does not grow: hints-only tierd, no other mover).
# tierd-timeout: 180
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

printf '[sampling]\nbackends = []\n' >/tmp/hints-only.toml
start_tierd --config /tmp/hints-only.toml
wait_for_socket /run/tierd/client.sock 30
pinbench --tag pinned --phases movepages,relocate --mib 16 --seconds 30 >/tmp/pin.out 2>&1 ||
	{ cat /tmp/pin.out; fail "pinbench failed"; }
cat /tmp/pin.out
fig() { sed -n "s/^RESULT pinned\.$1=//p" /tmp/pin.out; }
check_eq uring_moved_pages 0 "$(fig uring_moved_pages)"
check_eq plain_moved_pages "$(fig uring_pages)" "$(fig plain_moved_pages)"
check_eq layout_pages_ok "1024/1024" "$(fig layout_pages_ok)"
check_eq hot_a_fast "12/12" "$(fig hot_a_fast)"
check_eq hot_b_fast "12/12" "$(fig hot_b_fast)"
check_eq blocks_intact "40/40" "$(fig blocks_intact)"
check_eq pages_changed_node 0 "$(fig pages_changed_node)"
check_eq pgmigrate_fail 0 "$(fig pgmigrate_fail)"
check_ge copies 12 "$(fig copies)"
check_ge repoints 1 "$(fig repoints)"
# tierd's view of the same moves.
metric() { tierctl metrics | awk -v k="$1" '$1 == k { printf "%.0f\n", $2 }'; }
up=$(tierctl metrics | awk '$1 ~ /^tierd_relocation_requests_blocks_total/ && /promote/ { printf "%.0f\n", $2 }')
down=$(tierctl metrics | awk '$1 ~ /^tierd_relocation_requests_blocks_total/ && /demote/ { printf "%.0f\n", $2 }')
result pinned.tierd_promote_requests "$up"
result pinned.tierd_demote_requests "$down"
result pinned.tierd_copied_bytes "$(metric tierd_relocation_copied_bytes_total)"
result pinned.tierd_avoided_bytes "$(metric tierd_relocation_avoided_bytes_total)"
check_ge tierd_promote_requests 24 "$up"
check_ge tierd_demote_requests 1 "$down"
check_eq tierd_avoided_bytes "$(fig avoided_bytes)" "$(metric tierd_relocation_avoided_bytes_total)"
check_eq tierd_copied_bytes "$(fig copied_bytes)" "$(metric tierd_relocation_copied_bytes_total)"
stop_tierd
