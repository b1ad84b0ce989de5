#!/bin/sh
# The two-tier topology run.sh asks QEMU for: node0 with the CPUs, node1 CPU-less, and
# node1 (slower per HMAT) in a higher-numbered, i.e. lower, memory tier than node0.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

nodes=$(cat /sys/devices/system/node/online)
check_eq "online nodes" "0-1" "$nodes"
check_eq "nodes with CPUs" "0" "$(cat /sys/devices/system/node/has_cpu)"
check_eq "node1 cpulist" "" "$(cat /sys/devices/system/node/node1/cpulist)"
check_eq "nodes with memory" "0-1" "$(cat /sys/devices/system/node/has_memory)"

echo "node distances: node0 [$(cat /sys/devices/system/node/node0/distance)]" \
	"node1 [$(cat /sys/devices/system/node/node1/distance)]"

# HMAT as the kernel read it (ns and MB/s), for initiator node0.
for n in 0 1; do
	d=/sys/devices/system/node/node$n/access0/initiators
	[ -d "$d" ] || fail "node$n has no HMAT access0 attributes ($d)"
	echo "node$n access0 from [$(basenames "$d"/node*)]:" \
		"read_latency=$(cat "$d/read_latency") write_latency=$(cat "$d/write_latency")" \
		"read_bandwidth=$(cat "$d/read_bandwidth") write_bandwidth=$(cat "$d/write_bandwidth")"
done
lat0=$(cat /sys/devices/system/node/node0/access0/initiators/read_latency)
lat1=$(cat /sys/devices/system/node/node1/access0/initiators/read_latency)
[ "$lat1" -gt "$lat0" ] || fail "node1 read latency $lat1 is not above node0's $lat0"

for t in /sys/devices/virtual/memory_tiering/memory_tier*; do
	echo "${t##*/}: nodelist=$(cat "$t/nodelist")"
done
tier0=$(tier_of_node 0)
tier1=$(tier_of_node 1)
[ "$tier1" -gt "$tier0" ] || fail "node1 tier $tier1 is not below node0 tier $tier0"
echo "ok: node0 in memory_tier$tier0, node1 in memory_tier$tier1 (larger = slower)"
# A snapshot for whoever reads the run's artefacts (target/vm-out/smoke/topology.txt).
for f in /sys/devices/system/node/node*/meminfo /sys/devices/virtual/memory_tiering/memory_tier*/nodelist \
	/sys/devices/system/node/node*/access0/initiators/*_*; do
	echo "$f: $(head -n 5 "$f" | tr -s ' \n' ' ')"
done >/out/topology.txt
result memory_tier_node0 "$tier0"
result memory_tier_node1 "$tier1"
result node0_free_kb "$(node_free_kb 0)"
result node1_free_kb "$(node_free_kb 1)"
