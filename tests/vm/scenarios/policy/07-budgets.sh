#!/bin/sh
# Tier budgets (issue 17.2): two cgroup scopes with 25 % / 75 % fast-tier budgets, both
# with hot sets larger than that, all on the slow node at start: the fast bytes each
# holds (numa_maps) settle within +-5 % of its budget (two samples in a row) within 90 s
# and stay there over the next four samples (~20 s), whatever their priorities (the 25 %
# scope has the higher one).
# tierd-timeout: 200
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

echo 0 >/proc/sys/kernel/numa_balancing
cg=/sys/fs/cgroup
echo +memory >$cg/cgroup.subtree_control 2>/dev/null || true
mkdir -p $cg/tierd-a $cg/tierd-b
# Half of node0 kept as headroom (as 03-priority does): the fast memory shared out is
# then ~170 MiB, so the hot sets that exceed it stay small enough to place and migrate
# under TCG within the scenario's time.
cat >/tmp/budget.toml <<'TOML'
[policy]
demote_watermark = "50%"
promote_watermark = "45%"
[daemon]
scopes_file = "/tmp/scopes-b.json"
[[scope]]
name = "a"
cgroup = "/tierd-a"
priority = 10
fast_budget = "25%"
[[scope]]
name = "b"
cgroup = "/tierd-b"
fast_budget = "75%"
TOML
start_tierd --config /tmp/budget.toml
free0=$(($(node_free_kb 0) / 1024))
total0=$(($(awk '$3 == "MemTotal:" { print $4 }' /sys/devices/system/node/node0/meminfo) / 1024))
cap=$((free0 - total0 / 2))
# Hot sets: a 45 %, b 95 % of the fast memory shared out (both over budget; together
# more than it holds).
a_mb=$((cap * 45 / 100)) b_mb=$((cap * 95 / 100))
echo "node0 free ${free0} MiB, shared out ~${cap} MiB; hot sets a ${a_mb} MiB, b ${b_mb} MiB"
for t in a b; do
	eval "mb=\$${t}_mb"
	# shellcheck disable=SC2154 # mb is set by the eval
	sh -c "echo \$\$ >$cg/tierd-$t/cgroup.procs; exec hotwindow --mb $mb --hot-mb $mb --move-s 1000 --seconds 200 --tag $t" >"/tmp/$t.out" 2>&1 &
	echo $! >"/tmp/$t.pid"
done
for t in a b; do
	wait_until 120 "$t not ready" grep -q '^ready ' "/tmp/$t.out"
done
pa=$(cat /tmp/a.pid) pb=$(cat /tmp/b.pid)
# sample: each scope's budget, fast bytes (numa_maps) and deviation in % (ba bb fa fb da
# db); prints them.
sample() {
	tierctl --json status >/tmp/s.json
	ba=$(jget scopes.0.fast_budget_bytes </tmp/s.json) bb=$(jget scopes.1.fast_budget_bytes </tmp/s.json)
	fa=$(node_bytes "$pa" 0) fb=$(node_bytes "$pb" 0)
	da=$(awk -v f="$fa" -v b="$ba" 'BEGIN { printf "%.1f", (f - b) * 100 / b }')
	db=$(awk -v f="$fb" -v b="$bb" 'BEGIN { printf "%.1f", (f - b) * 100 / b }')
	echo "${1:-sample}: a fast $((fa >> 20)) MiB of budget $((ba >> 20)) MiB (${da} %), b fast $((fb >> 20)) MiB of budget $((bb >> 20)) MiB (${db} %)"
}
# Settle: migration under TCG moves a few tens of MB/s, so this takes tens of seconds.
within5() {
	awk -v a="$da" -v b="$db" 'function abs(x) { return x < 0 ? -x : x }
		BEGIN { exit !(abs(a) <= 5 && abs(b) <= 5) }'
}
now_s() { awk '{ printf "%d\n", $1 }' /proc/uptime; }
# Settled: two samples in a row within 5 % (one in-band sample may be a swing through).
t0=$(now_s) inband=0
while [ "$inband" -lt 2 ]; do
	[ $(($(now_s) - t0)) -lt 90 ] || fail "fast bytes not within 5 % of their budgets twice in a row after 90 s"
	sleep 2
	if sample settling && within5; then inband=$((inband + 1)); else inband=0; fi
done
result budget_settle_s "$(($(now_s) - t0))"
# Then they stay there (a sample takes seconds under TCG: numa_maps and tierctl).
worst=0
for i in 1 2 3 4; do
	sample "sample $i"
	worst=$(awk -v w="$worst" -v a="$da" -v b="$db" 'function abs(x) { return x < 0 ? -x : x }
		BEGIN { m = w; if (abs(a) > m) m = abs(a); if (abs(b) > m) m = abs(b); print m }')
done
tierctl status
# The kernel's count for each cgroup (memory.numa_stat, as status reports it) agrees with
# the processes' numa_maps: the scope's memory is its one process's, plus a few MiB of
# file pages its cgroup was charged.
for t in a b; do
	case $t in a) f=$fa i=0 ;; *) f=$fb i=1 ;; esac
	cg=$(jget "scopes.$i.cgroup_fast_bytes" </tmp/s.json)
	echo "$t: fast bytes by numa_maps $((f >> 20)) MiB, by the cgroup's memory.numa_stat $((cg >> 20)) MiB"
	result "budget_${t}_cgroup_fast_bytes" "$cg"
	awk -v f="$f" -v c="$cg" 'BEGIN { d = c - f; if (d < 0) d = -d; exit !(d <= f / 10 + 4194304) }' ||
		fail "$t: the cgroup's fast bytes ($cg) and its process's ($f) differ by more than 10 % + 4 MiB"
done
node0_total=$(($(awk '$3 == "MemTotal:" { print $4 }' /sys/devices/system/node/node0/meminfo) * 1024))
result budget_a_fast_bytes "$fa"
result budget_b_fast_bytes "$fb"
result budget_a_budget_bytes "$ba"
result budget_b_budget_bytes "$bb"
result budget_a_share_of_node0 "$(awk -v f="$fa" -v t="$node0_total" 'BEGIN { printf "%.3f", f / t }')"
result budget_b_share_of_node0 "$(awk -v f="$fb" -v t="$node0_total" 'BEGIN { printf "%.3f", f / t }')"
result budget_worst_deviation_pct "$worst"
kill "$pa" "$pb" 2>/dev/null || true
awk -v w="$worst" 'BEGIN { exit !(w <= 5) }' || fail "fast bytes off their budgets by up to ${worst} %"
echo "ok: budgets held within ${worst} %"
