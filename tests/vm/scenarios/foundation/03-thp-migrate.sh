#!/bin/sh
# THP-backed memory moves as huge pages (one unit per 2 MiB), data intact.
# tierd-timeout: 300
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh
start_tierd

thp=/sys/kernel/mm/transparent_hugepage/enabled
cat $thp
start_memhold /tmp/thp.out --mb 64 --huge
pid=$MEMHOLD_PID range=$MEMHOLD_RANGE
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
