#!/bin/sh
# Functional check of the tpp policy end to end (DAMON sampling → heat → policy →
# move_pages): a 256 MiB process, all first on node1, whose 48 MiB hot window moves
# every 15 s. tierd must bring the window to node0 for most of the time and demote what
# went cold. This is not the speed benchmark (bench-tiering measures tierd against the
# kernel and DAMON side by side); the 0.5 bar only says "it works at all": with no mover
# the window stays on node1 (fraction 0).
# tierd-timeout: 200
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

echo 0 >/proc/sys/kernel/numa_balancing # one mover: tierd
start_tierd
hotwindow --mb 256 --hot-mb 48 --move-s 15 --seconds 45 --fast-cap-mb 96 --go /tmp/go --tag tierd >/tmp/hw.out 2>&1 &
hw=$!
i=0
until grep -q '^ready ' /tmp/hw.out; do
	i=$((i + 1)); [ $i -lt 1200 ] || fail "hotwindow not ready"; sleep 0.1
done
grep '^ready ' /tmp/hw.out
tierctl manage --pid $hw
touch /tmp/go
sleep 20
tierctl status
tierctl heat --pid $hw --top 50331648
wait $hw || fail "hotwindow failed"
cat /tmp/hw.out
frac=$(sed -n 's/^RESULT tierd.hot_fast_fraction=//p' /tmp/hw.out)
[ -n "$frac" ] || fail "no hot_fast_fraction"
awk -v f="$frac" 'BEGIN { exit !(f >= 0.5) }' || fail "hot window on fast only $frac of the time"
