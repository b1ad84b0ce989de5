#!/bin/sh
# PSI backoff (migrate.psi_threshold_pct): a memory hog raises /proc/pressure/memory and
# tierd's migration rate must drop, then recover once the hog is gone. The rate is
# measured on explicit moves of an 8 MiB process between the nodes (tierctl migrate:
# bytes / seconds of each reply, the same shared bucket as the tiering moves). The hog
# is memhold in a cgroup whose memory.high is far below what it allocates: the kernel
# throttles it (reclaim that fails without swap, then penalty sleeps), which PSI counts
# as memory stall, for as long as it runs.
# tierd-timeout: 200
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

cat >/tmp/tierd.toml <<'TOML'
[topology]
node_tier = { 0 = 0, 1 = 1 }
[migrate]
psi_threshold_pct = 10.0
psi_min_rate_pct = 25.0
TOML
start_tierd --config /tmp/tierd.toml
start_memhold /tmp/mh.out --mb 8
to=1
# rate N: moves the 8 MiB N times between the nodes, prints MB/s over them.
rate() {
	_b=0 _s=0 _i=0
	while [ $_i -lt "$1" ]; do
		_i=$((_i + 1))
		tierctl --json migrate --pid "$MEMHOLD_PID" --to $to >/tmp/mig.json || fail "tierctl migrate"
		_b=$((_b + $(jget bytes </tmp/mig.json)))
		_s=$(awk -v a="$_s" -v b="$(jget seconds </tmp/mig.json)" 'BEGIN { print a + b }')
		to=$((1 - to))
	done
	awk -v b="$_b" -v s="$_s" 'BEGIN { printf "%.1f\n", b / 1e6 / s }'
}
psi() { tierctl --json status | jget "psi.$1"; }
factor_at_most() { awk -v f="$(psi rate_factor)" -v m="$1" 'BEGIN { exit !(f <= m) }'; }
factor_full() { awk -v f="$(psi rate_factor)" 'BEGIN { exit !(f >= 1) }'; }

before=$(rate 4)
echo "before: $before MB/s, pressure $(psi memory_some_avg10_pct)%, factor $(psi rate_factor)"

mkdir -p /sys/fs/cgroup/hog
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
echo 8M >/sys/fs/cgroup/hog/memory.high
# shellcheck disable=SC2016 # $$ is the inner shell's pid, on purpose
sh -c 'echo $$ >/sys/fs/cgroup/hog/cgroup.procs && exec memhold --mb 256' >/tmp/hog.out 2>&1 &
hog=$!
wait_until 40 "the PSI backoff did not reach its floor" factor_at_most 0.25
pressure=$(psi memory_some_avg10_pct)
during=$(rate 2)
echo "during: $during MB/s, pressure $pressure%, factor $(psi rate_factor), cap $(psi rate_limit_mbps) MB/s"
tierctl status | grep '^migration:'

kill -9 "$hog"
wait "$hog" 2>/dev/null || true
wait_until 60 "the PSI backoff did not recover (factor back to 1)" factor_full
after=$(rate 4)
echo "after: $after MB/s, pressure $(psi memory_some_avg10_pct)%, factor $(psi rate_factor)"
tierctl metrics | grep -E '^tierd_(memory_pressure|migration_rate)'

result psi.rate_before_mbps "$before"
result psi.pressure_during_pct "$pressure"
result psi.rate_during_mbps "$during"
result psi.rate_after_mbps "$after"
awk -v a="$before" -v b="$during" 'BEGIN { exit !(b < a / 2) }' || fail "rate did not drop: $before -> $during MB/s"
awk -v b="$during" -v c="$after" 'BEGIN { exit !(c > 2 * b) }' || fail "rate did not recover: $during -> $after MB/s"
echo "ok: $before -> $during -> $after MB/s"
