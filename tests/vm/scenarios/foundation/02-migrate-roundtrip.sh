#!/bin/sh
# tierctl migrate: a process with 256 MB on node0 goes to node1 and back; >= 99 % of its
# pages move each way (tierctl placement and /proc/PID/numa_maps agree) and the data is
# intact (checksum before/after).
# tierd-timeout: 300
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh
start_tierd

start_memhold /tmp/memhold.out --mb 256
pid=$MEMHOLD_PID range=$MEMHOLD_RANGE
sum0=$(sed -n 's/.*checksum=\([0-9a-f]*\).*/\1/p' /tmp/memhold.out | head -n 1)
echo "memhold pid=$pid range=$range checksum=$sum0"
need=$(((256 << 20) * 99 / 100))
check_ge "node0 bytes before" "$need" "$(node_bytes $pid 0)"

for to in 1 0; do
	tierctl migrate --pid $pid --to $to --range "$range" --json >/tmp/m.json
	cat /tmp/m.json
	req=$(jget requested_pages </tmp/m.json)
	moved=$(jget moved_pages </tmp/m.json)
	check_eq "requested pages" 65536 "$req"
	check_ge "moved pages to node$to" $((req * 99 / 100)) "$moved"
	secs=$(jget seconds </tmp/m.json)
	result "migrate_256mb_to_node${to}_seconds" "$secs"
	tierctl placement --pid $pid --range "$range" --json >/tmp/p.json
	cat /tmp/p.json
	check_ge "placement node$to" "$need" "$(jget nodes.$to </tmp/p.json)"
	check_ge "numa_maps node$to" "$need" "$(node_bytes $pid $to)"
done

kill -USR1 $pid
i=0
while [ "$(grep -c '^checksum=' /tmp/memhold.out)" -lt 1 ]; do
	i=$((i + 1)); [ $i -lt 600 ] || fail "memhold did not re-checksum"; sleep 0.1
done
sum1=$(sed -n 's/^checksum=\([0-9a-f]*\)/\1/p' /tmp/memhold.out | tail -n 1)
check_eq "checksum after two migrations" "$sum0" "$sum1"
kill $pid
