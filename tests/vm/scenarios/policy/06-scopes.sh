#!/bin/sh
# Scopes (issue 17.1): a process started in a scope's cgroup after tierd is managed
# within 2 s; a unit scope finds its service's cgroup by name; after a tierd restart the config scope and the runtime scope (kept in
# daemon.scopes_file) manage the same processes again without any command. Then a
# cgroup scope under memory pressure (issue 17.3): its own PSI backoff engages while a
# hog in its cgroup is throttled, the other scope's does not; a scope naming a GPU the
# VM does not have is refused.
# tierd-timeout: 150
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

echo 0 >/proc/sys/kernel/numa_balancing
cg=/sys/fs/cgroup
mkdir -p $cg/tierd-cfg $cg/tierd-rt
rm -f /tmp/scopes.json
printf '[daemon]\nscopes_file = "/tmp/scopes.json"\n[migrate]\npsi_threshold_pct = 10.0\n[[scope]]\nname = "cfg"\ncgroup = "/tierd-cfg"\npriority = 2\n' >/tmp/scope.toml
start_tierd --config /tmp/scope.toml

# Bad selectors are refused with a clear error; tierd goes on.
! tierctl manage --cgroup /tierd-none 2>/tmp/err || fail "a missing cgroup was accepted"
grep -q "no cgroup /tierd-none" /tmp/err || fail "unclear error: $(cat /tmp/err)"
! tierctl manage --cgroup /tierd-rt/../x 2>/tmp/err || fail "a path with .. was accepted"
cat /tmp/err
tierctl manage --cgroup /tierd-rt --name rt --priority 3 --policy lru-tiered

now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
# managed_in PID SCOPE: tierctl status lists PID as managed by SCOPE.
managed_in() {
	tierctl --json status | tr -d ' \n' | grep -q "\"pid\":$1,[^}]*\"scope\":\"$2\""
}
# held PID: tierd holds a pidfd on PID (the registry opens one when it manages a
# process): seen in tierd's fdinfo without a round trip through tierctl, whose start-up
# under TCG would dominate the latency measured.
held() {
	grep -qs "^Pid:[[:space:]]*$1\$" /proc/"$TIERD_PID"/fdinfo/*
}
# spawn_in CGROUP: a sleeper that enters CGROUP before it runs; prints its pid.
spawn_in() {
	sh -c "echo \$\$ >$cg/$1/cgroup.procs; exec sleep 1000" >/dev/null 2>&1 &
	echo $!
}

t0=$(now_ms)
rt=$(spawn_in tierd-rt)
wait_until 5 "process $rt in the runtime scope managed" held "$rt"
rt_ms=$(($(now_ms) - t0))
wait_until 5 "process $rt listed in the runtime scope" managed_in "$rt" rt
t0=$(now_ms)
cf=$(spawn_in tierd-cfg)
wait_until 5 "process $cf in the config scope managed" held "$cf"
cf_ms=$(($(now_ms) - t0))
wait_until 5 "process $cf listed in the config scope" managed_in "$cf" cfg
result scope_adopt_runtime_ms "$rt_ms"
result scope_adopt_config_ms "$cf_ms"
{ [ "$rt_ms" -le 2000 ] && [ "$cf_ms" -le 2000 ]; } || fail "adopted after $rt_ms / $cf_ms ms (> 2 s)"
tierctl status
tierctl --json status >/tmp/s.json
check_eq "runtime scope policy" lru-tiered "$(jget scopes.1.policy </tmp/s.json)"
check_eq "config scope priority" 2 "$(jget scopes.0.priority </tmp/s.json)"
wait_until 3 "state tree shows the scope" test -e "/run/tierd/procs/$rt/scope"
check_eq "state tree scope of $rt" rt "$(cat "/run/tierd/procs/$rt/scope")"
# The tree is rewritten file by file once a second: the scope's list may lag its
# process's file by one rewrite.
wait_until 3 "state tree lists $rt under the scope" grep -qx "$rt" /run/tierd/scopes/rt/pids
check_eq "state tree pids of rt" "$rt" "$(cat /run/tierd/scopes/rt/pids)"

# A unit scope: the VM has no systemd, so the unit's cgroup is laid out as systemd lays
# out a service's (system.slice/NAME.service); `--unit NAME` finds it by name (the
# ".service" suffix implied) and manages what runs in it.
mkdir -p $cg/system.slice/tierd-u.service
un=$(spawn_in system.slice/tierd-u.service)
tierctl manage --unit tierd-u --name unit >/dev/null
wait_until 5 "process $un of the unit scope managed" managed_in "$un" unit
check_eq "unit scope's cgroup" /system.slice/tierd-u.service "$(tierctl --json status | jget scopes.2.cgroup)"
tierctl unmanage --scope unit >/dev/null
kill "$un"

# A process that leaves the scope is dropped.
gone=$(spawn_in tierd-rt)
wait_until 5 "process $gone managed" managed_in "$gone" rt
echo "$gone" >$cg/cgroup.procs
wait_until 5 "process $gone dropped after it left the cgroup" sh -c "! tierctl --json status | tr -d ' \n' | grep -q '\"pid\":$gone,'"
kill "$gone"

# Restart: no command, both scopes manage their processes again.
stop_tierd
t0=$(now_ms)
start_tierd --config /tmp/scope.toml
wait_until 10 "runtime scope adopted again after the restart" managed_in "$rt" rt
wait_until 10 "config scope adopted again after the restart" managed_in "$cf" cfg
result scope_restart_readopt_ms "$(($(now_ms) - t0))"
grep "managed as part of its scope" "/out/tierd-${TIERD_SCENARIO:-scenario}.log" | tail -2

# Unmanaging the runtime scope drops its process and its record.
tierctl unmanage --cgroup /tierd-rt
wait_until 5 "process $rt no longer managed" sh -c "! tierctl --json status | tr -d ' \n' | grep -q '\"pid\":$rt,'"
grep -q '"scopes": \[\]' /tmp/scopes.json || fail "scopes file still lists it: $(cat /tmp/scopes.json)"

# No GPU in the VM: a scope naming one is refused, naming what there is; nothing added.
! tierctl manage --cgroup /tierd-rt --gpu 0 2>/tmp/err || fail "a scope naming a missing GPU was accepted"
grep -q "no GPU #0 (GPUs: none found)" /tmp/err || fail "unclear error: $(cat /tmp/err)"
check_eq "scopes after the refused one" 1 "$(tierctl --json status | jget scopes)"

# Per-scope memory pressure: memhold in a cgroup whose memory.high is far below what it
# allocates is throttled by the kernel (failed reclaim without swap, then penalty
# sleeps), which PSI counts as memory stall in that cgroup (as tiers-nohmat/03 does for
# the machine). The hog scope's factor must halve; the config scope's stays at 1.
mkdir -p $cg/tierd-hog
echo +memory >$cg/cgroup.subtree_control
echo 8M >$cg/tierd-hog/memory.high
tierctl manage --cgroup /tierd-hog --name hog >/dev/null
# shellcheck disable=SC2016 # $$ is the inner shell's pid, on purpose
sh -c 'echo $$ >/sys/fs/cgroup/tierd-hog/cgroup.procs && exec memhold --mb 256' >/tmp/hog.out 2>&1 &
hog=$!
scope_field() { tierctl --json status | jget "scopes.$1.$2"; }
hog_backed_off() { awk -v f="$(scope_field 1 psi_rate_factor)" 'BEGIN { exit !(f <= 0.5) }'; }
t0=$(now_ms)
wait_until 20 "the hog scope's PSI backoff engaged" hog_backed_off
result scope_psi_backoff_ms "$(($(now_ms) - t0))"
result scope_psi_pressure_pct "$(scope_field 1 memory_pressure_some_avg10_pct)"
result scope_psi_rate_factor "$(scope_field 1 psi_rate_factor)"
cfg_factor=$(scope_field 0 psi_rate_factor)
awk -v f="$cfg_factor" 'BEGIN { exit !(f >= 1) }' || fail "the config scope backed off too ($cfg_factor)"
tierctl status | grep -E '^  scope hog:' || fail "status does not show the hog scope's backoff"
tree_backed_off() { awk -v f="$(cat /run/tierd/scopes/hog/psi_rate_factor)" 'BEGIN { exit !(f <= 0.5) }'; }
wait_until 3 "the state tree shows the hog scope's factor" tree_backed_off
kill -9 "$hog"
wait "$hog" 2>/dev/null || true
tierctl unmanage --scope hog >/dev/null
kill "$rt" "$cf"
echo "ok: scopes"
