#!/bin/sh
# tierd-timeout: 300
# Every sampling backend the VM kernel supports loads and attaches, hw-sample says why
# it is off, DAMON samples reach the heat table, and tierd shares DAMON with a peer:
# while the peer's kdamond runs tierd cannot add its own (reported, retried); once it
# has one it stops only that one at exit and leaves the peer's directory in place. (Adding
# a kdamond recreates every directory: a stopped peer's configuration is lost; that is
# the kernel's interface, documented in docs/sampling.md.)
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

admin=/sys/kernel/mm/damon/admin/kdamonds
sock=/run/tierd/tierd.sock
[ -e $admin/nr_kdamonds ] || cannot_run "no DAMON sysfs interface ($admin)"
grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts || mount -t tracefs tracefs /sys/kernel/tracing
mkdir -p /run/tierd
printf '[daemon]\nmonitor_only = true\n' >/tmp/tierd.toml

hotset run --mb 64 --hot-mb 8 --move-s 1000 >/tmp/hotset.out &
hs=$!

# The peer: a physical-address kdamond, running before tierd starts.
echo 1 >$admin/nr_kdamonds
echo 1 >$admin/0/contexts/nr_contexts
echo paddr >$admin/0/contexts/0/operations
echo 1 >$admin/0/contexts/0/targets/nr_targets
echo on >$admin/0/state
# Whatever happens, the peer must not outlive the scenario (later ones add kdamonds).
trap 'echo off >$admin/0/state 2>/dev/null || true' EXIT
peer=$(cat $admin/0/pid)
echo "ok: peer kdamond 0 runs (kthread $peer)"

tierd --config /tmp/tierd.toml >/out/tierd-backends.log 2>&1 &
td=$!
wait_for_socket $sock 60
wait_backends
tierctl manage --pid $hs >/dev/null

backend() { # backend INDEX FIELD
	tierctl --json status | jget "sampling.backends.$1.$2"
}
check_eq "backend 0" hw-sample "$(backend 0 name)"
check_eq "backend 1" damon "$(backend 1 name)"
check_eq "backend 2" fault "$(backend 2 name)"
check_eq "hw-sample active" false "$(backend 0 active)"
why=$(backend 0 detail)
echo "hw-sample off: $why"
echo "$why" | grep -q "PMU" || fail "hw-sample gives no PMU reason: $why"
check_eq "fault active" true "$(backend 2 active)"
echo "fault: $(backend 2 detail)"

# Peer running: tierd cannot add a kdamond and says so.
i=0
until backend 1 detail | grep -q busy; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "damon does not report the busy interface: $(backend 1 detail)"
	sleep 0.2
done
check_eq "damon active while the peer runs" false "$(backend 1 active)"
echo "damon while the peer runs: $(backend 1 detail)"

# Peer stopped: tierd retries (every 5 s) and adds kdamond 1.
echo off >$admin/0/state
i=0
until [ "$(backend 1 active)" = true ]; do
	i=$((i + 1))
	[ $i -lt 150 ] || fail "damon did not start after the peer stopped: $(backend 1 detail)"
	sleep 0.2
done
check_eq "nr_kdamonds" 2 "$(cat $admin/nr_kdamonds)"
check_eq "tierd's kdamond state" on "$(cat $admin/1/state)"
check_eq "tierd's kdamond target" "$hs" "$(cat $admin/1/contexts/0/targets/0/pid_target)"
echo "damon: $(backend 1 detail)"

# DAMON → BPF map → drain → heat table.
i=0
while [ "$(tierctl --json heat --pid $hs | jget regions)" -eq 0 ]; do
	i=$((i + 1))
	[ $i -lt 150 ] || fail "no heat for pid $hs after 30 s of DAMON monitoring"
	sleep 0.2
done
tierctl heat --pid $hs --top 8MiB
result damon_interval_ms "$(tierctl --json status | jget sampling.interval_ms)"

# Exit: tierd stops its kdamond only.
kill -TERM $td
wait $td || true
check_eq "tierd's kdamond after exit" off "$(cat $admin/1/state)"
check_eq "peer's directory after tierd's exit" 2 "$(cat $admin/nr_kdamonds)"
check_eq "peer's kdamond after tierd's exit" off "$(cat $admin/0/state)"
kill $hs
