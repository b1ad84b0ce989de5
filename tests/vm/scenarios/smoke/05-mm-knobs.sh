#!/bin/sh
# The kernel memory-management knobs and DAMON interfaces tierd reads or competes with.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

echo "numa_balancing: $(cat /proc/sys/kernel/numa_balancing)"
echo "demotion_enabled: $(cat /sys/kernel/mm/numa/demotion_enabled)"
echo "transparent_hugepage: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
[ -d /sys/kernel/mm/damon/admin/kdamonds ] || fail "no DAMON sysfs (/sys/kernel/mm/damon/admin/kdamonds)"
echo "kdamonds: nr_kdamonds=$(cat /sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds)" \
	"[$(basenames /sys/kernel/mm/damon/admin/kdamonds/*)]"
ev=/sys/kernel/tracing/events/damon/damon_aggregated
[ -d "$ev" ] || fail "$ev does not exist"
echo "ok: $ev exists"
