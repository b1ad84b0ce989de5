#!/bin/sh
# numactl's migratepages moves another process's memory to node1; the numa_maps
# accounting in lib.sh sees it arrive.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

command -v migratepages >/dev/null || cannot_run "migratepages (numactl) is not in the initramfs"
mb=32
movecheck --hold "$mb" >hold.log &
pid=$!
i=0
until grep -q '^ready' hold.log; do
	i=$((i + 1))
	[ "$i" -le 100 ] || fail "movecheck --hold did not get ready"
	sleep 0.1
done
cat hold.log
want=$((mb * 1024 * 1024))
echo "before:"
numa_maps_bytes "$pid"
check_ge "bytes on node0 before" "$want" "$(node_bytes "$pid" 0)"
migratepages "$pid" 0 1
echo "after migratepages $pid 0 1:"
numa_maps_bytes "$pid"
check_ge "bytes on node1 after" "$want" "$(node_bytes "$pid" 1)"
kill "$pid"
