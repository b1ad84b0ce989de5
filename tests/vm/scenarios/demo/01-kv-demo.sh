#!/bin/sh
# The README's main job: tierd on its embedded defaults on the two-tier VM, managing a
# host-KV-cache replay of the Mooncake conversation trace (blocks start on the slow
# node, decode steps paced at 25 ms), with tiers, status, heat and placement shown as it
# runs and the replay's fast-hit fraction at the end.
# tierd-timeout: 300
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

trace=/tierd/traces/mooncake.jsonl
[ -r "$trace" ] || cannot_run "no $trace (tests/vm/demo.sh passes the trace in)"
echo 0 >/proc/sys/kernel/numa_balancing # tierd is the one mover
start_tierd
echo "== tierctl tiers"
tierctl tiers
kvreplay --trace "$trace" --pool-mb 768 --block-kib 256 --compress 2 --step-ms 25 --seconds 40 \
	--go /tmp/go --tag demo >/tmp/kv.out 2>&1 &
kv=$!
i=0
until grep -q '^ready ' /tmp/kv.out; do
	kill -0 $kv 2>/dev/null || { cat /tmp/kv.out; fail "kvreplay exited"; }
	i=$((i + 1)); [ $i -lt 3000 ] || fail "kvreplay not ready"; sleep 0.1
done
grep '^ready ' /tmp/kv.out
tierctl manage --pid $kv
touch /tmp/go
t=0
while kill -0 $kv 2>/dev/null && [ $t -lt 30 ]; do
	sleep 10
	t=$((t + 10))
	echo "== t=${t}s: tierctl status"
	tierctl status || true
	echo "== tierctl placement --pid $kv"
	tierctl placement --pid $kv || true
	echo "== tierctl heat --pid $kv --top 8MiB"
	tierctl heat --pid $kv --top 8MiB || true
done
wait $kv || fail "kvreplay failed"
cat /tmp/kv.out
grep -q '^RESULT demo.kv_fast_hit_fraction=' /tmp/kv.out || fail "no hit fraction"
