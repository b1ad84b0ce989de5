#!/bin/sh
# tierd-timeout: 600
# Overhead and cost: one hotset process (32 MiB hot of 512 MiB, moving every 4 s) runs
# throughout on vCPU 0; tierd runs on vCPU 1 (as a deployment confines it to
# housekeeping CPUs, systemd CPUAffinity=; its kdamond follows tierd's affinity), and so
# does this script. The scenario alternates 1 s windows with sampling off (hotset not
# managed: no kdamond, nothing tracked) and on (managed, kdamond running), the
# transitions left out of every window. Throughput comes from hotset's --progress
# counter and its timestamp, read at each window's edges. This host's speed changes in steps of 20-30 %
# that last ~10 s (measured with no tierd at all), so each "on" window is compared with
# the mean of the "off" windows on either side; the overhead ratio is the mean of those
# local ratios (target >= 0.98), printed with its standard error, its median, the
# pooled ratio, and the same statistic for "off" windows against their neighbours (the
# noise floor: 1.0 expected). Cost: tierd's CPU time from manage to unmanage and its
# kdamond's over the "on" windows, and the heat table's memory, per managed GiB.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

admin=/sys/kernel/mm/damon/admin/kdamonds
pairs=60 win_s=1
[ -e $admin/nr_kdamonds ] || cannot_run "no DAMON sysfs interface"
[ "$(nproc)" -ge 2 ] || cannot_run "needs 2 vCPUs (workload and tierd apart)"
grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts || mount -t tracefs tracefs /sys/kernel/tracing
mkdir -p /run/tierd
# This script's own processes (sleep, od, tierctl) stay off the workload's vCPU.
taskset -p -c 1 $$ >/dev/null
# The inference-client protocol is not under test: its threads stay off.
printf '[daemon]\nmonitor_only = true\n[client]\nenabled = false\n' >/tmp/tierd.toml

uptime_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# hotset's --progress file: "BYTES NS" (its byte total and when it reached it).
progress() { od -An -tu8 /tmp/hotset.progress | awk '{ n = n " " $1 " " $2 } END { print n }'; }
# window KIND: hotset's throughput over the next win_s seconds, appended to /tmp/windows
# as "KIND MiB/s".
window() {
	_p0=$(progress)
	_t0=$(uptime_cs)
	sleep $win_s
	_p1=$(progress)
	_t1=$(uptime_cs)
	echo "$_p0 $_p1" | awk -v k="$1" '{ printf "%s %.1f\n", k, ($3 - $1) / (($4 - $2) / 1e9) / 1048576 }' >>/tmp/windows
}

TIERD_TASKSET="-c 1" start_tierd --config /tmp/tierd.toml
td=$TIERD_PID
wait_backends
HOTSET_TASKSET="-c 0" start_hotset 4 /out/hotset-overhead.out --progress /tmp/hotset.progress
hs=$HOTSET_PID

: >/tmp/windows
on_cs=0 kd_cs=0 tierd_ticks=0 kd_ticks=0 heat_bytes=0 ovh_sum=0 ovh_n=0 kd_cpus=
k=0
while [ $k -lt $pairs ]; do
	window off
	t_on=$(uptime_cs)
	td0=$(ticks $td)
	tierctl manage --pid $hs >/dev/null
	i=0
	kd=$(kdamond_pid)
	while [ -z "$kd" ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || fail "no kdamond started for the managed hotset"
		sleep 0.05
		kd=$(kdamond_pid)
	done
	kd0=$(ticks "$kd")
	[ -n "$kd_cpus" ] || kd_cpus=$(taskset -p "$kd" | sed 's/.*: *//')
	window on
	kd_cs=$((kd_cs + _t1 - _t0))
	st=$(tierctl --json status)
	heat_bytes=$(echo "$st" | jget managed.0.heat_table_bytes)
	ovh_sum=$(awk -v a="$ovh_sum" -v b="$(echo "$st" | jget sampling.overhead_pct)" 'BEGIN { print a + b }')
	ovh_n=$((ovh_n + 1))
	kd_ticks=$((kd_ticks + $(ticks "$kd") - kd0))
	tierctl unmanage --pid $hs >/dev/null
	i=0
	while [ -n "$(kdamond_pid)" ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || fail "the kdamond did not stop after unmanage"
		sleep 0.05
	done
	tierd_ticks=$((tierd_ticks + $(ticks $td) - td0))
	on_cs=$((on_cs + $(uptime_cs) - t_on))
	k=$((k + 1))
done
window off
kill -TERM $hs
wait $hs || true
echo "kdamond CPU affinity (tierd's, taskset -c 1): $kd_cpus"
# Where tierd's CPU time went, per thread, over the whole run (USER_HZ ticks).
for t in "/proc/$td/task"/*; do
	echo "tierd thread $(cat "$t/comm"): $(awk '{ print $14 + $15 }' "$t/stat") ticks"
done
stop_tierd
cp /tmp/windows /out/overhead-windows.txt

# Local ratios: window i against the mean of windows i-1 and i+1 ("on" windows: the
# overhead; "off" windows: the A/A noise floor, neighbours two apart).
awk 'function root(x, y, i) { if (x <= 0) return 0; y = x; for (i = 0; i < 60; i++) y = (y + x / y) / 2; return y }
	{ kind[NR] = $1; v[NR] = $2 }
	END {
		for (i = 2; i < NR; i++) {
			r = v[i] / ((v[i - 1] + v[i + 1]) / 2)
			if (kind[i] == "on") { n++; s += r; ss += r * r; print "on", r > "/tmp/local" }
			if (kind[i] == "off" && i > 2 && i < NR - 1) {
				a = v[i] / ((v[i - 2] + v[i + 2]) / 2); na++; sa += a; print "aa", a > "/tmp/local"
			}
		}
		for (i = 1; i <= NR; i++) if (kind[i] == "on") { on += v[i]; non++ } else { off += v[i]; noff++ }
		m = s / n
		printf "%.4f %.4f %.1f %.1f %d %d %.4f\n", m, root((ss - n * m * m) / (n - 1) / n), on / non, off / noff, non, noff, sa / na
	}' /tmp/windows >/tmp/ratios
median() { grep "^$1 " /tmp/local | awk '{ print $2 }' | sort -n | awk '{ v[NR] = $1 } END { printf "%.4f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# shellcheck disable=SC2046 # seven numbers
set -- $(cat /tmp/ratios)
ratio=$1
echo "throughput: sampling on $3 MiB/s, off $4 MiB/s (means of $5 / $6 windows of ${win_s} s)"
echo "local ratios: on/off mean $1 (standard error $2, median $(median on)); off/off (noise floor) mean $7, median $(median aa)"
result overhead_ratio_median "$(median on)"
result noise_floor_ratio_mean "$7"
result throughput_on_mbps "$3"
result throughput_off_mbps "$4"
result overhead_pooled_ratio "$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.4f", a / b }')"
result overhead_ratio_stderr "$2"
result overhead_throughput_ratio "$ratio"

# Cost per managed GiB (hotset: 512 MiB = 0.5 GiB managed). USER_HZ = 100.
gib=0.5
awk -v t="$tierd_ticks" -v k="$kd_ticks" -v cs="$on_cs" -v kcs="$kd_cs" -v g=$gib -v hb="$heat_bytes" \
	-v o="$ovh_sum" -v on="$ovh_n" 'BEGIN {
	wall = cs / 100
	printf "RESULT cost_tierd_cpu_pct_per_gib=%.3f\n", 100 * t / 100 / wall / g
	printf "RESULT cost_kdamond_cpu_pct_per_gib=%.3f\n", 100 * k / kcs / g
	printf "RESULT cost_total_cpu_pct_per_gib=%.3f\n", 100 * (t / 100 / wall + k / kcs) / g
	printf "RESULT cost_heat_table_bytes_per_gib=%.0f\n", hb / g
	printf "RESULT cost_heat_table_pct_of_managed=%.4f\n", 100 * hb / (g * 1073741824)
	printf "RESULT status_overhead_pct_mean=%.3f\n", (on ? o / on : 0)
	printf "sampling on for %.1f s: tierd %d ticks, kdamond %d ticks\n", wall, t, k
}'
awk -v r="$ratio" 'BEGIN { exit !(r >= 0.98) }' || fail "throughput ratio $ratio below 0.98"
echo "ok: throughput ratio $ratio >= 0.98"
