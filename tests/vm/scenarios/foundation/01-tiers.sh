#!/bin/sh
# tierctl tiers --json: node0 is tier 0 with the CPUs, node1 tier 1 with none, and the
# kernel tier names match sysfs.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh
start_tierd

tierctl tiers
tierctl tiers --json >/tmp/tiers.json
cat /tmp/tiers.json
check_eq "node count" 2 "$(jget nodes </tmp/tiers.json)"
check_eq "nodes.0.node" 0 "$(jget nodes.0.node </tmp/tiers.json)"
check_eq "nodes.0.tier" 0 "$(jget nodes.0.tier </tmp/tiers.json)"
check_eq "nodes.0 cpus" 2 "$(jget nodes.0.cpus </tmp/tiers.json)"
check_eq "nodes.1.tier" 1 "$(jget nodes.1.tier </tmp/tiers.json)"
check_eq "nodes.1 cpus" 0 "$(jget nodes.1.cpus </tmp/tiers.json)"
check_eq "nodes.0.memory_tier" "memory_tier$(tier_of_node 0)" "$(jget nodes.0.memory_tier </tmp/tiers.json)"
check_eq "nodes.1.memory_tier" "memory_tier$(tier_of_node 1)" "$(jget nodes.1.memory_tier </tmp/tiers.json)"
lat=$(jget nodes.1.read_latency_ns </tmp/tiers.json)
[ "$lat" != null ] || fail "node1 has no HMAT read latency"
check_ge "node1 total_bytes" $((1000 << 20)) "$(jget nodes.1.total_bytes </tmp/tiers.json)"
