#!/bin/sh
# The policy group's moving hot window (policy/01-promote-demote: 256 MiB, a 48 MiB hot
# window moving every 15 s, all first on node1) on the no-HMAT boot, with tierd started
# on a config that ranks the nodes ([topology] node_tier): tiering runs and the window
# must be on the fast node most of the time, as with HMAT (same 0.5 bar; compare
# RESULT nohmat.hot_fast_fraction with policy/01's tierd.hot_fast_fraction).
# tierd-timeout: 200
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

echo 0 >/proc/sys/kernel/numa_balancing # one mover: tierd
printf '[topology]\nnode_tier = { 0 = 0, 1 = 1 }\n' >/tmp/tierd.toml
start_tierd --config /tmp/tierd.toml
check_eq mode tiering "$(tierctl --json status | jget mode)"
hotwindow --mb 256 --hot-mb 48 --move-s 15 --seconds 45 --fast-cap-mb 96 --go /tmp/go --tag nohmat >/tmp/hw.out 2>&1 &
hw=$!
wait_until 120 "hotwindow not ready" grep -q '^ready ' /tmp/hw.out
grep '^ready ' /tmp/hw.out
tierctl manage --pid $hw
touch /tmp/go
sleep 20
tierctl status
wait $hw || fail "hotwindow failed"
cat /tmp/hw.out
frac=$(sed -n 's/^RESULT nohmat.hot_fast_fraction=//p' /tmp/hw.out)
[ -n "$frac" ] || fail "no hot_fast_fraction"
awk -v f="$frac" 'BEGIN { exit !(f >= 0.5) }' || fail "hot window on fast only $frac of the time"
