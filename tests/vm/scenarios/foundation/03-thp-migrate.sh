#!/bin/sh
# THP-backed memory moves as huge pages (one unit per 2 MiB), data intact.
# tierd-timeout: 300
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh
start_tierd

thp=/sys/kernel/mm/transparent_hugepage/enabled
cat $thp
: >/tmp/thp.out
memhold --mb 64 --huge >/tmp/thp.out &
pid=$!
i=0
while ! grep -q checksum /tmp/thp.out; do
	i=$((i + 1)); [ $i -lt 600 ] || fail "memhold did not start"; sleep 0.1
done
range=$(sed -n 's/^range=\([^ ]*\).*/\1/p' /tmp/thp.out)
grep AnonHugePages /proc/$pid/smaps_rollup
huge_kb=$(awk '/AnonHugePages/ { print $2 }' /proc/$pid/smaps_rollup)
check_ge "AnonHugePages kB" 16384 "$huge_kb"
tierctl migrate --pid $pid --to 1 --range "$range" --json >/tmp/t.json
cat /tmp/t.json
check_ge "huge pages moved" 8 "$(jget huge_pages </tmp/t.json)"
moved=$(jget moved_pages </tmp/t.json)
check_ge "moved pages" $((16384 * 99 / 100)) "$moved"
ebusy=$(jget failed_pages.EBUSY </tmp/t.json || echo 0)
check_eq "EBUSY pages (tail pages must not be passed separately)" 0 "$ebusy"
kill $pid
