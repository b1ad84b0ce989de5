#!/bin/sh
# Two managed processes whose hot sets do not both fit on node0: the one with the higher
# priority keeps (most of) its hot set on fast memory.
# tierd-timeout: 260
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

echo 0 >/proc/sys/kernel/numa_balancing
# Keep half of node0 as headroom so the fast capacity left to the two processes is
# ~150 MiB: 96 MiB hot sets each cannot both fit, and little has to migrate (TCG
# migrates at a few tens of MB/s).
printf '[policy]\ndemote_watermark = "55%%"\npromote_watermark = "50%%"\n' >/tmp/prio.toml
start_tierd --config /tmp/prio.toml
hot=96
echo "node0 free $(($(node_free_kb 0) / 1024)) MiB, hot set ${hot} MiB each"
for t in low high; do
	hotwindow --mb "$hot" --hot-mb "$hot" --move-s 1000 --seconds 70 --go /tmp/go --tag "$t" >"/tmp/$t.out" 2>&1 &
	echo $! >"/tmp/$t.pid"
done
for t in low high; do
	i=0
	until grep -q '^ready ' "/tmp/$t.out"; do
		i=$((i + 1)); [ $i -lt 1200 ] || fail "$t not ready"; sleep 0.1
	done
done
tierctl manage --pid "$(cat /tmp/low.pid)" --priority 0
tierctl manage --pid "$(cat /tmp/high.pid)" --priority 10
touch /tmp/go
sleep 60
# Where the policy converged: each process's fast share near the end of the run (first
# thing after the sleep: the workloads end 10 s later and leave the managed list).
tierctl status --json >/tmp/s.json
tierctl status
echo "managed pids: $(jget managed.0.pid </tmp/s.json) $(jget managed.1.pid </tmp/s.json)"
share() { # share PID: fast_share of that managed process
	for i in 0 1; do
		if [ "$(jget managed.$i.pid </tmp/s.json)" = "$1" ]; then
			jget managed.$i.fast_share </tmp/s.json
			return 0
		fi
	done
	fail "process $1 not in tierctl status"
}
lo_end=$(share "$(cat /tmp/low.pid)")
hi_end=$(share "$(cat /tmp/high.pid)")
result priority_low_fast_share_end "$lo_end"
result priority_high_fast_share_end "$hi_end"
for t in low high; do wait "$(cat /tmp/$t.pid)" || fail "$t failed"; done
cat /tmp/low.out /tmp/high.out
lo=$(sed -n 's/^RESULT low.hot_fast_fraction=//p' /tmp/low.out)
hi=$(sed -n 's/^RESULT high.hot_fast_fraction=//p' /tmp/high.out)
result priority_low_fraction "$lo"
result priority_high_fraction "$hi"
# Functional, not a speed bar: migration under TCG is slow, so the swap may still be
# under way at the end; the higher priority must hold clearly more of the fast tier.
awk -v h="$hi_end" -v l="$lo_end" 'BEGIN { exit !(h >= 0.8 && h > l + 0.2) }' ||
	fail "high priority holds $hi_end of its memory on fast at the end, low $lo_end"
