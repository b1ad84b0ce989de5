#!/bin/sh
# Policy smoke benchmark: the moving hot window (640 MB, 128 MB window moving every
# 10 s, all pages starting on node1) under tierd's default tpp policy. The side-by-side
# comparison with the kernel and DAMON lives in the bench-tiering group; this scenario
# asserts that tierd alone keeps the window on the fast node most of the time.
# tierd-timeout: 200
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh
# One mover: the kernel's NUMA balancing off, as docs/policy.md tells operators.
echo 0 >/proc/sys/kernel/numa_balancing
RUST_LOG=tierd=debug start_tierd

hotwindow --go /tmp/go --tag tierd >/tmp/hw.out 2>&1 &
hw=$!
sleep 1
tierctl manage --pid $hw
touch /tmp/go
for _ in 1 2 3 4 5 6 7 8; do
	sleep 5
	tierctl status | tail -n 2
done
wait $hw || fail "hotwindow failed"
cat /tmp/hw.out
tierctl status --json >/tmp/s.json 2>/dev/null || true
frac=$(sed -n 's/^RESULT tierd.hot_fast_fraction=//p' /tmp/hw.out)
[ -n "$frac" ] || fail "no hot_fast_fraction"
awk -v f="$frac" 'BEGIN { exit !(f >= 0.80) }' || fail "hot window on fast only $frac of the time"
