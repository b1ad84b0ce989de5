#!/bin/sh
# damon-tiering.sh start|stop|status [FAST_NODE SLOW_NODE]: DAMON-based memory tiering
# (DAMOS migrate_hot / migrate_cold) as a peer to compare tierd with (issue 5), set up
# through the DAMON sysfs interface the way SK hynix's HMSDK does it: two kdamonds with
# the physical-address ('paddr') operations, one per node:
#   - over FAST_NODE's physical range: migrate_cold -> SLOW_NODE for regions with no
#     access (nr_accesses 0..0), young pages rejected by a filter;
#   - over SLOW_NODE's physical range: migrate_hot -> FAST_NODE for regions accessed in
#     >= 5% of samples, only young pages (a filter rejects non-young ones).
# Sources:
#   - HMSDK tools/gen_config.py (https://github.com/skhynix/hmsdk/blob/main/tools/gen_config.py):
#     "--monitoring_intervals 100ms 2s 20s" (sample / aggregate / update),
#     "--monitoring_nr_regions_range 100 10000", "--damos_sz_region 4096 max"; its
#     memcg filter (only PIDs under the 'hmsdk' cgroup) is left out: we tier globally,
#     as its -g option does.
#   - damo's two-tier example (damonitor/damo, scripts for 'mtier'): migrate_cold with
#     "--damos_access_rate 0% 0%" and "--damos_filter reject young"; migrate_hot with
#     "--damos_access_rate 5% max"; "--damos_apply_interval 1s"; quota 200 MB per 1 s.
#     Its node_mem_{free,used}_bp quota goals need kernel >= 6.16 and are not set here.
# On 6.12 a filter with matching=Y excludes the pages it matches; kernels >= 6.14 add
# an 'allow' file whose default (N, reject) keeps that meaning, so it is not written.
# Physical ranges: the nodeN/memoryM blocks (block size from
# /sys/devices/system/memory/block_size_bytes), one DAMON region per contiguous run.
# Runs under busybox sh (the test VM).
set -eu

admin=/sys/kernel/mm/damon/admin/kdamonds
state_dir=${TIERD_BENCH_STATE:-/run/tierd-bench}
owned=$state_dir/damon-tiering.kdamonds

# HMSDK intervals, in microseconds.
sample_us=100000
aggr_us=2000000
update_us=20000000
# 5% of the samples per aggregation interval (2 s / 100 ms = 20 samples) = 1.
hot_min_accesses=$(((aggr_us * 5 / sample_us + 99) / 100))
apply_us=1000000
quota_bytes=209715200
quota_reset_ms=1000
# The kernel's ULONG_MAX / UINT_MAX spelled for sysfs.
ulong_max=18446744073709551615
uint_max=4294967295

die() {
	echo "damon-tiering.sh: $*" >&2
	exit 1
}

w() { # w VALUE FILE: write, naming the file on failure
	echo "$1" >"$2" || die "cannot write '$1' to $2"
}

# node_runs NODE: "START END" lines, one per contiguous run of the node's memory blocks.
node_runs() {
	bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
	for m in /sys/devices/system/node/node"$1"/memory[0-9]*; do
		[ -e "$m" ] && echo "${m##*/memory}"
	done | sort -n | awk -v bs="$bs" '
		NR == 1 { s = $1; p = $1; next }
		$1 == p + 1 { p = $1; next }
		{ printf "%.0f %.0f\n", s * bs, (p + 1) * bs; s = $1; p = $1 }
		END { if (NR) printf "%.0f %.0f\n", s * bs, (p + 1) * bs }'
}

# setup KDAMOND NODE ACTION TARGET_NID MIN_ACC MAX_ACC FILTER_MATCHING
setup() {
	ctx=$admin/$1/contexts/0
	w 1 "$admin/$1/contexts/nr_contexts"
	w paddr "$ctx/operations"
	w "$sample_us" "$ctx/monitoring_attrs/intervals/sample_us"
	w "$aggr_us" "$ctx/monitoring_attrs/intervals/aggr_us"
	w "$update_us" "$ctx/monitoring_attrs/intervals/update_us"
	w 100 "$ctx/monitoring_attrs/nr_regions/min"
	w 10000 "$ctx/monitoring_attrs/nr_regions/max"
	w 1 "$ctx/targets/nr_targets"
	runs=$(node_runs "$2")
	[ -n "$runs" ] || die "node $2 has no memory blocks"
	n=$(echo "$runs" | wc -l)
	w "$n" "$ctx/targets/0/regions/nr_regions"
	i=0
	echo "$runs" | while read -r start end; do
		w "$start" "$ctx/targets/0/regions/$i/start"
		w "$end" "$ctx/targets/0/regions/$i/end"
		i=$((i + 1))
	done
	s=$ctx/schemes/0
	w 1 "$ctx/schemes/nr_schemes"
	w "$3" "$s/action"
	w "$4" "$s/target_nid"
	w "$apply_us" "$s/apply_interval_us"
	w 4096 "$s/access_pattern/sz/min"
	w "$ulong_max" "$s/access_pattern/sz/max"
	w "$5" "$s/access_pattern/nr_accesses/min"
	w "$6" "$s/access_pattern/nr_accesses/max"
	w 0 "$s/access_pattern/age/min"
	w "$uint_max" "$s/access_pattern/age/max"
	w "$quota_bytes" "$s/quotas/bytes"
	w "$quota_reset_ms" "$s/quotas/reset_interval_ms"
	w 1 "$s/filters/nr_filters"
	w young "$s/filters/0/type"
	w "$7" "$s/filters/0/matching"
	echo "damon-tiering: kdamond $1: node$2 $(echo "$runs" | tr '\n' ' ')-> $3 node$4," \
		"nr_accesses $5..$6, young filter matching=$7"
}

start() {
	fast=$1 slow=$2
	[ -d "$admin" ] || die "no DAMON sysfs at $admin"
	[ ! -e "$owned" ] || die "already started (stop first)"
	nr=$(cat "$admin/nr_kdamonds")
	k=0
	while [ "$k" -lt "$nr" ]; do
		[ "$(cat "$admin/$k/state")" = off ] || die "kdamond $k is running; DAMON is in use by someone else"
		k=$((k + 1))
	done
	w $((nr + 2)) "$admin/nr_kdamonds"
	mkdir -p "$state_dir"
	echo "$nr $((nr + 1))" >"$owned"
	# Demote: regions of the fast node not accessed at all; young pages stay.
	setup "$nr" "$fast" migrate_cold "$slow" 0 0 Y
	# Promote: regions of the slow node accessed in >= 5% of samples; only young pages.
	setup $((nr + 1)) "$slow" migrate_hot "$fast" "$hot_min_accesses" "$uint_max" N
	w on "$admin/$nr/state"
	w on "$admin/$((nr + 1))/state"
	echo "damon-tiering: started kdamonds $nr $((nr + 1)) (pids $(cat "$admin/$nr/pid") $(cat "$admin/$((nr + 1))/pid"))"
}

stop() {
	[ -e "$owned" ] || return 0
	read -r k0 k1 <"$owned"
	for k in "$k0" "$k1"; do
		if [ -e "$admin/$k/state" ] && [ "$(cat "$admin/$k/state")" = on ]; then
			w off "$admin/$k/state"
		fi
	done
	first=$(cut -d' ' -f1 "$owned")
	w "$first" "$admin/nr_kdamonds"
	rm -f "$owned"
	echo "damon-tiering: stopped"
}

status() {
	[ -d "$admin" ] || die "no DAMON sysfs at $admin"
	k=0
	nr=$(cat "$admin/nr_kdamonds")
	while [ "$k" -lt "$nr" ]; do
		echo "kdamond $k: $(cat "$admin/$k/state")"
		k=$((k + 1))
	done
}

case ${1:-} in
start) start "${2:-0}" "${3:-1}" ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: damon-tiering.sh start|stop|status [FAST_NODE SLOW_NODE]" >&2
	exit 2
	;;
esac
