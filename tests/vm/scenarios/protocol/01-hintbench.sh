#!/bin/sh
# Hint ingest rate from one client and PREFETCH -> fast-placement latency (hintbench,
# bench/src/bin/hintbench.rs) against tierd on the two-node VM. Targets (issue 6):
# >= 10 M hinted blocks/s applied by tierd, p99 PREFETCH -> placement read back as the
# fast node <= 10 ms. The figures are printed as RESULT lines; the scenario fails when
# a phase cannot run or the prefetch latency target is missed.
# tierd-timeout: 240
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

start_tierd
wait_for_socket /run/tierd/client.sock 30
hintbench --seconds 3 --batch 64 --samples 200 --deadline-ms 10 >/tmp/hb.out 2>&1 ||
	{ cat /tmp/hb.out; fail "hintbench failed"; }
cat /tmp/hb.out
p99=$(sed -n 's/^RESULT prefetch_p99_ms=//p' /tmp/hb.out)
misses=$(sed -n 's/^RESULT prefetch_misses=//p' /tmp/hb.out)
applied=$(sed -n 's/^RESULT hint_applied_blocks_per_s=//p' /tmp/hb.out)
[ -n "$p99" ] && [ -n "$applied" ] || fail "hintbench printed no figures"
check_eq prefetch_misses 0 "$misses"
awk -v p="$p99" 'BEGIN { exit !(p <= 10) }' || fail "p99 PREFETCH latency $p99 ms > 10 ms"
echo "ok: p99 PREFETCH latency $p99 ms <= 10 ms"
awk -v a="$applied" 'BEGIN { exit !(a >= 10000000) }' &&
	echo "ok: $applied hinted blocks/s applied >= 10 M" ||
	echo "below target: $applied hinted blocks/s applied < 10 M"
stop_tierd
