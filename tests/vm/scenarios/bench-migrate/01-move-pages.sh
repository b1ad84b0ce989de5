#!/bin/sh
# Issue 3's figure: migration throughput of 256 MiB node0 -> node1 -> node0 with batched
# move_pages(2) (1024 addresses per call, as tierd's engine), as a ratio to memcpy
# between the same nodes in the same run (bench/src/bin/migbench.rs), with 4 KiB pages
# and with THP; data checked by checksum. NUMA balancing is off meanwhile (restored
# after) so the kernel does not move the buffer too.
# tierd-timeout: 420
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

nb=$(cat /proc/sys/kernel/numa_balancing)
echo 0 >/proc/sys/kernel/numa_balancing
echo "node0 free: $(node_free_kb 0) kB, node1 free: $(node_free_kb 1) kB," \
	"THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
rc=0
migbench --mb 256 --reps 3 --tag move_pages || rc=$?
migbench --mb 256 --reps 3 --thp --tag move_pages_thp || rc=$?
echo "$nb" >/proc/sys/kernel/numa_balancing
exit "$rc"
