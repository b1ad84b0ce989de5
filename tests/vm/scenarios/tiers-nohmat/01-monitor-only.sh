#!/bin/sh
# Booted without HMAT (run.sh --no-hmat), the kernel puts node0 and the CPU-less node1 in
# one memory tier. tierd must say it is monitor-only and why (status, log, tiers: FROM
# kernel); a reload adding [topology] node_tier puts it in tiering mode with the
# override's ranks (FROM override); a reload naming a node that does not exist is refused
# and the override in force stays.
# tierd-timeout: 60
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

t0=$(tier_of_node 0) t1=$(tier_of_node 1)
[ "$t0" = "$t1" ] || cannot_run "booted with HMAT? node0 in memory_tier$t0, node1 in memory_tier$t1"
echo "ok: both nodes in memory_tier$t0"

cfg=/tmp/tierd.toml
: >"$cfg"
start_tierd --config "$cfg"
# (Not `tierctl status | head`: tierctl panics on a closed pipe.)
tierctl status >/tmp/status.txt
head -n 1 /tmp/status.txt
tierctl tiers
check_eq mode monitor-only "$(tierctl --json status | jget mode)"
reason=$(tierctl --json status | jget mode_reason)
case $reason in
*"one memory tier"*node_tier*) echo "ok: reason: $reason" ;;
*) fail "monitor-only reason does not say why and how: $reason" ;;
esac
grep -q 'monitor-only mode' "/out/tierd-$TIERD_SCENARIO.log" || fail "no monitor-only line in the log"
check_eq "node1 tier_source" kernel "$(tierctl --json tiers | jget nodes.1.tier_source)"

printf '[topology]\nnode_tier = { 0 = 0, 1 = 1 }\n' >"$cfg"
tierctl reload
check_eq "mode after the override" tiering "$(tierctl --json status | jget mode)"
tierctl status >/tmp/status.txt
head -n 1 /tmp/status.txt
tierctl tiers
check_eq "node1 tier" 1 "$(tierctl --json tiers | jget nodes.1.tier)"
check_eq "node1 tier_source" override "$(tierctl --json tiers | jget nodes.1.tier_source)"
tierctl tiers | grep -q override || fail "tierctl tiers does not show FROM override"

printf '[topology]\nnode_tier = { 0 = 0, 1 = 1, 7 = 1 }\n' >"$cfg"
if tierctl reload 2>/tmp/reload.err; then fail "an override naming node 7 was accepted"; fi
cat /tmp/reload.err
grep -q "node 7 does not exist" /tmp/reload.err || fail "the refusal does not name node 7"
check_eq "mode after the refused reload" tiering "$(tierctl --json status | jget mode)"
stop_tierd
