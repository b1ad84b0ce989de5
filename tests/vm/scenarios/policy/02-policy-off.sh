#!/bin/sh
# `--policy off` observes only: heat is collected but no page moves.
# tierd-timeout: 120
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

echo 0 >/proc/sys/kernel/numa_balancing
start_tierd
hotwindow --mb 128 --hot-mb 32 --move-s 5 --seconds 15 --go /tmp/go --tag off >/tmp/hw.out 2>&1 &
hw=$!
i=0
until grep -q '^ready ' /tmp/hw.out; do
	i=$((i + 1)); [ $i -lt 1200 ] || fail "hotwindow not ready"; sleep 0.1
done
tierctl manage --pid $hw --policy off --json
touch /tmp/go
sleep 6
tierctl heat --pid $hw --top 33554432 --json >/tmp/heat.json
regions=$(jget regions </tmp/heat.json)
check_ge "heat regions seen while observing" 1 "$regions"
wait $hw || fail "hotwindow failed"
cat /tmp/hw.out
tierctl status --json >/tmp/s.json
check_eq "promoted pages" 0 "$(jget managed.0.promoted_pages </tmp/s.json 2>/dev/null || echo 0)"
frac=$(sed -n 's/^RESULT off.hot_fast_fraction=//p' /tmp/hw.out)
awk -v f="$frac" 'BEGIN { exit !(f < 0.05) }' || fail "pages moved under policy off: $frac"
