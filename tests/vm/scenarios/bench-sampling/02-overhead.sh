#!/bin/sh
# tierd-timeout: 480
# Overhead and cost: one hotset process (32 MiB hot of 512 MiB, moving every 4 s) runs
# throughout; tierd manages it in alternating pairs of periods (sampling on) and not
# (sampling off: no kdamond, nothing tracked). Throughput on / off is the overhead
# ratio (target >= 0.98). Cost: tierd's CPU time and its kdamond's while sampling, and
# the heat table's memory, per managed GiB.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

admin=/sys/kernel/mm/damon/admin/kdamonds
periods=12
[ -e $admin/nr_kdamonds ] || cannot_run "no DAMON sysfs interface"
grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts || mount -t tracefs tracefs /sys/kernel/tracing
mkdir -p /run/tierd
# The inference-client protocol is not under test: its threads stay off.
printf '[daemon]\nmonitor_only = true\n[client]\nenabled = false\n' >/tmp/tierd.toml

uptime_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
seq_of() { awk '{ print $1 }' /tmp/hot.state 2>/dev/null || echo 0; }
# The kthread of the kdamond running a vaddr context (tierd's).
kdamond_pid() {
	for d in $admin/[0-9]*; do
		if [ "$(cat "$d/state")" = on ] && [ "$(cat "$d/contexts/0/operations")" = vaddr ]; then
			cat "$d/pid"
			return
		fi
	done
}

start_tierd --config /tmp/tierd.toml
td=$TIERD_PID
wait_backends
start_hotset 4 /out/hotset-overhead.out
hs=$HOTSET_PID

: >/tmp/states
on_cs=0 tierd_ticks=0 kd_ticks=0 heat_bytes=0 ovh_sum=0 ovh_n=0
last=$(seq_of)
k=0 state=off
while [ $k -lt $periods ]; do
	i=0
	while [ "$(seq_of)" = "$last" ]; do
		i=$((i + 1))
		[ $i -lt 300 ] || fail "hotset did not move within 30 s"
		sleep 0.05
	done
	last=$(seq_of)
	now=$(uptime_cs)
	if [ "$state" = on ]; then
		# Close the "on" pair: account tierd's and the kdamond's CPU time.
		on_cs=$((on_cs + now - t_on))
		tierd_ticks=$((tierd_ticks + $(ticks $td) - td0))
		[ -z "$kd" ] || kd_ticks=$((kd_ticks + $(ticks "$kd") - kd0))
		st=$(tierctl --json status)
		heat_bytes=$(echo "$st" | jget managed.0.heat_table_bytes)
		ovh_sum=$(awk -v a="$ovh_sum" -v b="$(echo "$st" | jget sampling.overhead_pct)" 'BEGIN { print a + b }')
		ovh_n=$((ovh_n + 1))
	fi
	if [ $(((k / 2) % 2)) -eq 1 ]; then next=on; else next=off; fi
	if [ "$next" = on ] && [ "$state" = off ]; then
		tierctl manage --pid $hs >/dev/null
		t_on=$(uptime_cs)
		td0=$(ticks $td)
		i=0
		kd=
		while [ -z "$kd" ] && [ $i -lt 100 ]; do
			sleep 0.1
			kd=$(kdamond_pid)
			i=$((i + 1))
		done
		[ -n "$kd" ] || fail "no kdamond started for the managed hotset"
		kd0=$(ticks "$kd")
	elif [ "$next" = off ] && [ "$state" = on ]; then
		tierctl unmanage --pid $hs >/dev/null
	fi
	state=$next
	echo "$last $state" >>/tmp/states
	k=$((k + 1))
done
kill -TERM $hs
wait $hs || true
# Where tierd's CPU time went, per thread, over the whole run (USER_HZ ticks).
for t in /proc/$td/task/*; do
	echo "tierd thread $(cat "$t/comm"): $(awk '{ print $14 + $15 }' "$t/stat") ticks"
done
kill -TERM $td
wait $td || true

# Join each period's throughput (hotset prints it when the period ends) with its state.
# The period still running when hotset stopped is partial: not counted.
awk 'NR == FNR { st[$1] = $2; next }
	$1 == "move" {
		split($2, s, "="); split($5, m, "=")
		if (s[1] == "seq" && (s[2] in st) && (s[2] + 1) in st) { sum[st[s[2]]] += m[2]; n[st[s[2]]]++ }
	}
	END { printf "%.1f %d %.1f %d\n", sum["on"] / n["on"], n["on"], sum["off"] / n["off"], n["off"] }' \
	/tmp/states /out/hotset-overhead.out >/tmp/tput
set -- $(cat /tmp/tput)
echo "throughput: sampling on ${1} MiB/s over $2 periods, off ${3} MiB/s over $4 periods"
ratio=$(awk -v on="$1" -v off="$3" 'BEGIN { printf "%.4f\n", on / off }')
result throughput_on_mbps "$1"
result throughput_off_mbps "$3"
result overhead_throughput_ratio "$ratio"

# Cost per managed GiB (hotset: 512 MiB = 0.5 GiB managed). USER_HZ = 100.
gib=0.5
awk -v t="$tierd_ticks" -v k="$kd_ticks" -v cs="$on_cs" -v g=$gib -v hb="$heat_bytes" \
	-v o="$ovh_sum" -v on="$ovh_n" 'BEGIN {
	wall = cs / 100
	printf "RESULT cost_tierd_cpu_pct_per_gib=%.3f\n", 100 * t / 100 / wall / g
	printf "RESULT cost_kdamond_cpu_pct_per_gib=%.3f\n", 100 * k / 100 / wall / g
	printf "RESULT cost_total_cpu_pct_per_gib=%.3f\n", 100 * (t + k) / 100 / wall / g
	printf "RESULT cost_heat_table_bytes_per_gib=%.0f\n", hb / g
	printf "RESULT cost_heat_table_pct_of_managed=%.4f\n", 100 * hb / (g * 1073741824)
	printf "RESULT status_overhead_pct_mean=%.3f\n", (on ? o / on : 0)
	printf "sampling on for %.1f s: tierd %d ticks, kdamond %d ticks\n", wall, t, k
}'
awk -v r="$ratio" 'BEGIN { exit !(r >= 0.98) }' || fail "throughput ratio $ratio below 0.98"
echo "ok: throughput ratio $ratio >= 0.98"
