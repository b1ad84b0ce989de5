#!/bin/sh
# tierd's move accounting reconciles with the kernel's: over a run where only tierd
# moves pages (NUMA balancing and reclaim demotion off), the base pages tierd counted
# (the sum of status.moves) and the growth of /proc/vmstat's pgmigrate_success agree
# within 1 %. Movers: tierctl migrate round trips of a THP-backed process (a huge page
# counts 512 on both sides), then the tpp policy promoting a moving hot window of 4 KiB
# pages. Also checks the causes (migrate, sampling) and tierd's own vmstat delta.
# tierd-timeout: 150
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

echo 0 >/proc/sys/kernel/numa_balancing # one mover: tierd
if [ -e /sys/kernel/mm/numa/demotion_enabled ]; then
	echo false >/sys/kernel/mm/numa/demotion_enabled
fi
vm() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
# tierd_pages: the pages of every status.moves entry, summed.
tierd_pages() {
	tierctl --json status >/tmp/s.json
	_n=$(jget moves </tmp/s.json) _sum=0 _i=0
	while [ "$_i" -lt "$_n" ]; do
		_sum=$((_sum + $(jget moves.$_i.pages </tmp/s.json)))
		_i=$((_i + 1))
	done
	echo "$_sum"
}
# cause_pages CAUSE: pages of status.moves entries with that cause (from /tmp/s.json).
cause_pages() {
	_n=$(jget moves </tmp/s.json) _sum=0 _i=0
	while [ "$_i" -lt "$_n" ]; do
		[ "$(jget moves.$_i.cause </tmp/s.json)" = "$1" ] &&
			_sum=$((_sum + $(jget moves.$_i.pages </tmp/s.json)))
		_i=$((_i + 1))
	done
	echo "$_sum"
}

v0=$(vm pgmigrate_success) f0=$(vm pgmigrate_fail) t0=$(vm thp_migration_success)
c0=$(vm compact_isolated)
start_tierd

# 1. tierctl migrate: 32 MiB of THP-backed memory to node1 and back, twice.
start_memhold /tmp/memhold.out --mb 32 --huge
pid=$MEMHOLD_PID range=$MEMHOLD_RANGE
grep AnonHugePages /proc/$pid/smaps_rollup
for to in 1 0 1 0; do
	tierctl migrate --pid $pid --to $to --range "$range" --json >/tmp/m.json
	cat /tmp/m.json
done
kill $pid

# 2. The tpp policy: a 64 MiB process on node1 whose 16 MiB hot window moves every 4 s.
hotwindow --mb 64 --hot-mb 16 --move-s 4 --seconds 10 --go /tmp/go --tag acct >/tmp/hw.out 2>&1 &
hw=$!
wait_until 120 "hotwindow not ready" grep -q '^ready ' /tmp/hw.out
grep '^ready ' /tmp/hw.out
tierctl manage --pid $hw
touch /tmp/go
wait $hw || { cat /tmp/hw.out; fail "hotwindow failed"; }

# Settle: the last plan may still run for a moment after the process exits.
prev=-1 cur=$(tierd_pages) i=0
while [ "$cur" != "$prev" ]; do
	i=$((i + 1)); [ $i -lt 20 ] || fail "tierd's count does not settle"
	sleep 1
	prev=$cur cur=$(tierd_pages)
done
v1=$(vm pgmigrate_success) f1=$(vm pgmigrate_fail) t1=$(vm thp_migration_success)
c1=$(vm compact_isolated)
tierctl status
kernel=$((v1 - v0))
result tierd_moved_pages "$cur"
result kernel_pgmigrate_success "$kernel"
result kernel_pgmigrate_fail "$((f1 - f0))"
result kernel_thp_migration_success "$((t1 - t0))"
result kernel_compact_isolated "$((c1 - c0))"
result tierd_migrate_pages "$(cause_pages migrate)"
result tierd_sampling_pages "$(cause_pages sampling)"
result tierd_kernel_vmstat_pgmigrate_success "$(jget kernel_vmstat.pgmigrate_success </tmp/s.json)"
check_ge "pages moved by tierctl migrate (4 x 32 MiB)" $((4 * 8192 * 99 / 100)) "$(cause_pages migrate)"
check_ge "pages promoted for sampled heat" 1 "$(cause_pages sampling)"
check_ge "huge pages the kernel migrated" 16 "$((t1 - t0))"
diff=$((kernel - cur))
[ $diff -ge 0 ] || diff=$((-diff))
result accounting_diff_pages "$diff"
ratio=$(awk -v d="$diff" -v k="$kernel" 'BEGIN { printf "%.5f", (k > 0 ? d / k : 1) }')
result accounting_diff_ratio "$ratio"
[ $((diff * 100)) -le "$kernel" ] || fail "tierd counted $cur pages, the kernel migrated $kernel (more than 1 % apart)"
echo "ok: tierd $cur pages, kernel $kernel pages"
# tierd's own delta is the same counter from its start (before this scenario's v0 by a
# moment in which nothing moved).
k_tierd=$(jget kernel_vmstat.pgmigrate_success </tmp/s.json)
d2=$((k_tierd - kernel))
[ $d2 -ge 0 ] || d2=$((-d2))
[ $((d2 * 100)) -le "$kernel" ] || fail "tierd's kernel_vmstat.pgmigrate_success $k_tierd, the scenario's $kernel"
