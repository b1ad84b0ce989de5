#!/bin/sh
# kill -9 of tierd mid-migration and mid-hint-stream, then a restart (issue 18, "Crash
# and restart"). tierd runs with policy.kernel_numa_balancing = 0 (it changes the knob)
# and the damon backend (it starts a kdamond); memhold is managed with tierctl and being
# migrated to node1, hintloop (a protocol client) streams ACCESS hints. After the kill:
# the knob is still tierd's, the kdamond still runs, the client knows it is
# disconnected. After the restart: the orphan kdamond was stopped and tierd's own
# started (no EBUSY), memhold is managed again with its policy and priority, hintloop
# reconnected and registered again and tierd applies its hints, both checksums are
# intact. The restarted tierd is killed too and a third one started, which stops
# cleanly: numa_balancing ends at the value it had before the FIRST start, the kdamond
# is off, no knob or kdamond record is left.
# tierd-timeout: 420
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

nb=/proc/sys/kernel/numa_balancing
admin=/sys/kernel/mm/damon/admin/kdamonds
record=/run/tierd/persist/knobs/proc/sys/kernel/numa_balancing
[ -e $admin/nr_kdamonds ] || cannot_run "no DAMON sysfs interface"
[ -w $nb ] || cannot_run "$nb not writable"

kdamond_running() { [ -n "$(kdamond_pid)" ]; }
# A kdamond other than $1 runs.
new_kdamond() { _k=$(kdamond_pid); [ -n "$_k" ] && [ "$_k" != "$1" ]; }
answers() { tierctl status >/dev/null 2>&1; }
# start N: tierd instance N, log in /out/tierd-20-crash-restart-N.log; returns once it
# answers (a killed tierd leaves its socket file behind, so the file proves nothing).
start() {
	TIERD_SCENARIO=20-crash-restart-$1
	start_tierd --config /tmp/crash.toml
	LOG=/out/tierd-$TIERD_SCENARIO.log
	wait_until 30 "tierd $1 answers" answers
}
# crash: SIGKILL, and wait until the process is gone.
crash() {
	kill -9 "$TIERD_PID"
	wait_until 10 "killed tierd gone" tierd_gone
}
# managed_as PID POLICY PRIORITY: tierctl status lists PID with that policy and priority.
managed_as() {
	tierctl --json status >/tmp/st.json || return 1
	_n=$(jget managed </tmp/st.json)
	_i=0
	while [ "$_i" -lt "$_n" ]; do
		if [ "$(jget managed.$_i.pid </tmp/st.json)" = "$1" ]; then
			[ "$(jget managed.$_i.policy </tmp/st.json)" = "$2" ] &&
				[ "$(jget managed.$_i.priority </tmp/st.json)" = "$3" ]
			return
		fi
		_i=$((_i + 1))
	done
	return 1
}
hl_line() { grep -q "$1" /tmp/hl.out; }
# lines_ge FILE PATTERN N: FILE has at least N lines matching PATTERN (a function, so
# wait_until re-reads the file each time).
lines_ge() { [ "$(grep -c "$2" "$1")" -ge "$3" ]; }
# on_node1 PID: some of PID's memory is on node1.
on_node1() { [ "$(node_bytes "$1" 1)" -gt 0 ]; }
# checksum_after PID OUT N: signals PID (SIGUSR1) and prints the Nth checksum line.
checksum_after() {
	kill -USR1 "$1"
	wait_until 60 "$1 did not re-checksum" lines_ge "$2" '^checksum=' "$3"
	sed -n 's/^checksum=\([0-9a-f]*\).*/\1/p' "$2" | sed -n "${3}p"
}
# Keep the client's output with the logs, whatever happens.
trap 'cp /tmp/hl.out /tmp/memhold.out /out/ 2>/dev/null || true' EXIT

echo 1 >$nb
cat >/tmp/crash.toml <<'TOML'
[policy]
kernel_numa_balancing = 0
[sampling]
backends = ["damon"]
TOML

# Earlier scenarios' tierds stopped cleanly: each removed its kdamond directory.
check_eq "kdamond directories left by clean stops" 0 "$(cat $admin/nr_kdamonds)"

# --- First tierd: set up, then kill it mid-migration and mid-hint-stream.
start 1
check_eq "numa_balancing while tierd runs" 0 "$(cat $nb)"
check_eq "original recorded before the change" 1 "$(cat $record)"
start_memhold /tmp/memhold.out --mb 128
mh=$MEMHOLD_PID
sum_mh=$(sed -n 's/.*checksum=\([0-9a-f]*\).*/\1/p' /tmp/memhold.out | head -n 1)
tierctl manage --pid $mh --policy lru-tiered --priority 5
wait_for_socket /run/tierd/client.sock 30
hintloop --mb 32 >/tmp/hl.out &
hl=$!
wait_until 60 "hintloop registered" hl_line '^range='
sum_hl=$(sed -n 's/.*checksum=\([0-9a-f]*\).*/\1/p' /tmp/hl.out | head -n 1)
wait_until 180 "tierd's kdamond running" kdamond_running
kd1=$(kdamond_pid)
echo "kdamond kthread $kd1, nr_kdamonds=$(cat $admin/nr_kdamonds)"
tierctl migrate --pid $mh --to 1 --range "$MEMHOLD_RANGE" >/tmp/mig.out 2>&1 &
mig=$!
wait_until 60 "migration under way" on_node1 $mh
kill -0 $mig 2>/dev/null || fail "the migration finished before the kill (memhold too small?)"
crash
echo "killed mid-migration: memhold node0 $(node_bytes $mh 0) B, node1 $(node_bytes $mh 1) B"
wait $mig 2>/dev/null && fail "tierctl migrate succeeded although tierd was killed"

check_eq "numa_balancing left at tierd's value" 0 "$(cat $nb)"
check_eq "the killed tierd's kdamond still runs" "$kd1" "$(kdamond_pid)"
wait_until 20 "hintloop noticed" hl_line '^connected=0 '
echo "hintloop: $(grep '^connected=0' /tmp/hl.out | head -n 1)"

# --- Second tierd: undoes the first one's leftovers, adopts, gets the client back.
start 2
grep -q "kernel knob restored: a previous tierd" "$LOG" || fail "no knob restore logged"
grep -q "stopped the kdamond a previous tierd left running" "$LOG" || fail "orphan kdamond not stopped"
check_eq "numa_balancing while tierd runs again" 0 "$(cat $nb)"
check_eq "the record still holds the first original" 1 "$(cat $record)"
wait_until 180 "tierd's own kdamond running" new_kdamond "$kd1"
kd2=$(kdamond_pid)
if [ -d "/proc/$kd1" ] && grep -q kdamond "/proc/$kd1/comm" 2>/dev/null; then
	fail "the orphan kdamond $kd1 still runs"
fi
echo "kdamond kthread $kd2 (was $kd1), nr_kdamonds=$(cat $admin/nr_kdamonds)"
check_eq "nr_kdamonds (directory reused)" 1 "$(cat $admin/nr_kdamonds)"
if grep -q "another DAMON user runs a kdamond" "$LOG"; then fail "EBUSY at the restart"; fi
wait_until 10 "memhold managed again" managed_as $mh lru-tiered 5
echo "ok: memhold $mh managed again (lru-tiered, priority 5)"
wait_until 60 "hintloop reconnected" hl_line '^connected=1 reconnects=1 live=1'
check_eq "clients" 1 "$(tierctl --json status | jget clients)"
grep -q "client region registered" "$LOG" || fail "no region registered on the new tierd"
# The new tierd applies the stream (its counter of the new region), asked until > 0.
applied() { sed -n 's/.* applied=\([0-9]*\)$/\1/p' /tmp/hl.out | tail -n 1; }
n=0
until [ "$(applied)" -gt 0 ] 2>/dev/null; do
	n=$((n + 1))
	[ $n -le 30 ] || fail "the new tierd applied none of hintloop's hints"
	checksum_after $hl /tmp/hl.out $n >/dev/null
	sleep 1
done
check_ge "hinted blocks the new tierd applied" 1 "$(applied)"
check_eq "memhold data after the crash" "$sum_mh" "$(checksum_after $mh /tmp/memhold.out 1)"
check_eq "hintloop data after the crash" "$sum_hl" "$(checksum_after $hl /tmp/hl.out $((n + 1)))"

# --- Killed again (right after recovering), then a clean stop of a third tierd.
crash
check_eq "numa_balancing left at tierd's value again" 0 "$(cat $nb)"
start 3
wait_until 10 "memhold managed by the third tierd" managed_as $mh lru-tiered 5
wait_until 60 "hintloop reconnected twice" hl_line '^connected=1 reconnects=2 live=1'
stop_tierd
check_eq "numa_balancing after a clean stop: the value before the first start" 1 "$(cat $nb)"
[ -e $record ] && fail "knob record left after a clean stop"
[ -e /run/tierd/persist/kdamonds.json ] && fail "kdamond record left after a clean stop"
kdamond_running && fail "a kdamond still runs after a clean stop"
echo "ok: no knob or kdamond record, no kdamond after the clean stop"
wait_until 20 "hintloop noticed the stop" lines_ge /tmp/hl.out '^connected=0' 3
check_eq "memhold data at the end" "$sum_mh" "$(checksum_after $mh /tmp/memhold.out 2)"
result crash_restarts 2
result orphan_kdamonds_stopped 1
result client_reconnects "$(sed -n 's/^connected=1 reconnects=\([0-9]*\).*/\1/p' /tmp/hl.out | tail -n 1)"
kill $hl $mh
