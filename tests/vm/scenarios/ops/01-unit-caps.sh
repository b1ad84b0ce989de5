#!/bin/sh
# The unit's ExecStart, run the way systemd would run it: the default config installed
# as /etc/tierd/tierd.toml, /run/tierd created (RuntimeDirectory=), NOTIFY_SOCKET set,
# the bounding set cut to the unit's CapabilityBoundingSet (util-linux setpriv) and
# no_new_privs. Then: READY=1 arrives; tierd has exactly those capabilities; it
# migrates a process on request and its policy loop moves it on its own; the state
# tree agrees with tierctl --json; metrics scrape; SIGHUP applies a changed watermark
# (RELOADING=1, READY=1); a broken config is refused by SIGHUP and by tierctl reload and
# the old one stays with the managed process; SIGTERM sends STOPPING=1.
# Run with: tests/vm/run.sh --group ops --extra-bin /usr/bin/setpriv /usr/bin/socat
#   /usr/bin/tmux --extra-file systemd/tierd.service:/tierd/etc/tierd.service
#   --extra-file config/tierd.toml:/tierd/etc/tierd.toml
# tierd-timeout: 420
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

unit=/tierd/etc/tierd.service
if [ ! -r $unit ] || [ ! -r /tierd/etc/tierd.toml ]; then
	cannot_run "unit/config missing: run.sh --extra-file systemd/tierd.service:/tierd/etc/tierd.service --extra-file config/tierd.toml:/tierd/etc/tierd.toml"
fi
/tierd/bin/setpriv --help 2>&1 | grep -q -- --bounding-set || cannot_run "util-linux setpriv missing (--extra-bin /usr/bin/setpriv)"
command -v socat >/dev/null || cannot_run "socat missing (--extra-bin /usr/bin/socat)"

# CAP_SYS_NICE CAP_BPF ... -> +sys_nice,+bpf,... and the CapEff mask they make.
caps=$(sed -n 's/^CapabilityBoundingSet=//p' $unit)
bset=$(echo "$caps" | tr ' ' '\n' | awk 'NF { sub(/^CAP_/, ""); printf "%s+%s", s, tolower($0); s = "," }')
capnum() {
	case $1 in
	CAP_SETGID) echo 6 ;; CAP_SETUID) echo 7 ;;
	CAP_SYS_PTRACE) echo 19 ;; CAP_SYS_ADMIN) echo 21 ;; CAP_SYS_NICE) echo 23 ;;
	CAP_PERFMON) echo 38 ;; CAP_BPF) echo 39 ;; *) fail "no number for $1" ;;
	esac
}
mask=0
for c in $caps; do mask=$((mask | (1 << $(capnum "$c")))); done
want_eff=$(printf '%016x' "$mask")
exec_start=$(sed -n 's/^ExecStart=//p' $unit | sed 's|/usr/local/bin/|/tierd/bin/|')
check_pre=$(sed -n 's/^ExecStartPre=//p' $unit | sed 's|/usr/local/bin/|/tierd/bin/|')
echo "unit caps: $caps -> setpriv --bounding-set -all,$bset (CapEff $want_eff)"
echo "ExecStartPre: $check_pre"
echo "ExecStart: $exec_start"

# The metrics endpoint listens on loopback; the guest's init leaves lo down.
ip link set lo up
mkdir -p /etc/tierd /run/tierd
cp /tierd/etc/tierd.toml /etc/tierd/tierd.toml
$check_pre

socat -u UNIX-RECV:/run/notify.sock,unlink-early OPEN:/tmp/notify.log,creat,append &
notify_pid=$!
i=0
while [ ! -S /run/notify.sock ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "no notify socket"; sleep 0.1; done
# shellcheck disable=SC2086 # ExecStart is a command line
NOTIFY_SOCKET=/run/notify.sock RUST_LOG=info /tierd/bin/setpriv --no-new-privs --bounding-set "-all,$bset" \
	$exec_start >/out/tierd-ops.log 2>&1 &
TIERD_PID=$!
wait_notify() { # wait_notify LINE
	i=0
	until grep -q "^$1\$" /tmp/notify.log 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 300 ] || { cat /tmp/notify.log; fail "no $1 from tierd"; }
		kill -0 $TIERD_PID 2>/dev/null || { tail /out/tierd-ops.log; fail "tierd died"; }
		sleep 0.1
	done
	echo "ok: notify $1"
}
wait_notify READY=1
[ -S /run/tierd/tierd.sock ] || fail "READY=1 before the control socket"
grep '^STATUS=' /tmp/notify.log | head -n 1
check_eq "tierd CapEff" "$want_eff" "$(awk '$1 == "CapEff:" { print $2 }' /proc/$TIERD_PID/status)"
check_eq "tierd CapBnd" "$want_eff" "$(awk '$1 == "CapBnd:" { print $2 }' /proc/$TIERD_PID/status)"
check_eq "tierd NoNewPrivs" 1 "$(awk '$1 == "NoNewPrivs:" { print $2 }' /proc/$TIERD_PID/status)"

tierctl status --json >/tmp/s.json
check_eq mode tiering "$(jget mode </tmp/s.json)"
tierctl status

# A process with 128 MiB on node0, managed; moved to node1 by request.
start_memhold /tmp/memhold.out --mb 128
mpid=$MEMHOLD_PID range=$MEMHOLD_RANGE
need=$(((128 << 20) * 99 / 100))
tierctl manage --pid $mpid --policy off --json
tierctl migrate --pid $mpid --to 1 --range "$range" --json >/tmp/m.json
cat /tmp/m.json
check_ge "moved pages to node1" $((32768 * 99 / 100)) "$(jget moved_pages </tmp/m.json)"
check_ge "numa_maps node1 bytes" "$need" "$(node_bytes $mpid 1)"

# The policy loop brings it back on its own: static pins to tier 0.
tierctl manage --pid $mpid --policy static --json
i=0
while [ "$(node_bytes $mpid 0)" -lt "$need" ]; do
	i=$((i + 1)); [ $i -lt 120 ] || fail "policy did not promote: node0 $(node_bytes $mpid 0) bytes"
	sleep 1
done
echo "ok: static policy moved memhold back to node0 in ~${i}s"
result policy_promote_128mb_s "$i"
sleep 2

# State tree vs tierctl --json.
tierctl tiers --json >/tmp/t.json
n=$(jget nodes </tmp/t.json)
j=0
while [ $j -lt "$n" ]; do
	node=$(jget nodes.$j.node </tmp/t.json)
	check_eq "node$node tier" "$(jget nodes.$j.tier </tmp/t.json)" "$(cat /run/tierd/nodes/"$node"/tier)"
	check_eq "node$node total_bytes" "$(jget nodes.$j.total_bytes </tmp/t.json)" "$(cat /run/tierd/nodes/"$node"/total_bytes)"
	j=$((j + 1))
done
check_eq "tier0 nodes" 0 "$(cat /run/tierd/tiers/0/nodes)"
check_eq "tier1 nodes" 1 "$(cat /run/tierd/tiers/1/nodes)"
check_eq "node0 cpus" 0-1 "$(cat /run/tierd/nodes/0/cpus)"
check_eq "node1 cpus" "" "$(cat /run/tierd/nodes/1/cpus)"
tierctl status --json >/tmp/s.json
check_eq "mode file" "$(jget mode </tmp/s.json)" "$(cat /run/tierd/mode)"
check_eq "procs policy" static "$(cat /run/tierd/procs/$mpid/policy)"
check_eq "procs promoted" "$(jget managed.0.promoted_pages </tmp/s.json)" "$(cat /run/tierd/procs/$mpid/promoted)"
check_ge "procs promoted" 1 "$(cat /run/tierd/procs/$mpid/promoted)"
check_eq "procs fast_bytes" "$(jget managed.0.fast_bytes </tmp/s.json)" "$(cat /run/tierd/procs/$mpid/fast_bytes)"
check_eq "clients/count" 0 "$(cat /run/tierd/clients/count)"
for f in $(find /run/tierd -type f | sort); do printf '%s = %s\n' "$f" "$(cat "$f")"; done

# Metrics over HTTP (busybox wget) and over the socket.
wget -q -O /tmp/metrics.txt "http://$(cat /run/tierd/metrics_address)/metrics"
grep -E "^tierd_(mode|tier_free_bytes|process_promoted_pages_total|migrated_pages_total|process_fast_share_ratio)" /tmp/metrics.txt
prom=$(awk -v p="pid=\"$mpid\"" '/^tierd_process_promoted_pages_total/ && index($0, p) { print $2 }' /tmp/metrics.txt)
check_eq "metric promoted pages = procs/PID/promoted" "$(cat /run/tierd/procs/$mpid/promoted)" "${prom:-0}"
tail -n 1 /tmp/metrics.txt | grep -q '^# EOF' || fail "metrics text does not end with # EOF"
tierctl metrics | grep -q '^tierd_mode{mode="tiering"} 1' || fail "tierctl metrics lacks tierd_mode"

# SIGHUP with a changed watermark.
sed -i 's/^demote_watermark = .*/demote_watermark = "8%"/' /etc/tierd/tierd.toml
: >/tmp/notify.log
kill -HUP $TIERD_PID
wait_notify RELOADING=1
wait_notify READY=1
tierctl config show | grep -q '^demote_watermark = "8%"' || fail "SIGHUP: new watermark not applied"
echo "ok: demote_watermark 8% applied by SIGHUP"
sleep 2 # the state tree is rewritten once a second
check_eq config_generation 1 "$(cat /run/tierd/config_generation)"

# A broken config: refused by SIGHUP and by tierctl reload; the old one stays.
printf '[policy]\ndemote_watermark = "9%%"\nbogus = 1\n' >/etc/tierd/tierd.toml
kill -HUP $TIERD_PID
rc=0
tierctl reload 2>/tmp/reload.err || rc=$?
cat /tmp/reload.err
check_eq "tierctl reload exit code" 2 "$rc"
grep -q "tierd.toml:3" /tmp/reload.err || fail "refusal does not name file:line"
sleep 1
grep -q "bad config refused" /out/tierd-ops.log || fail "SIGHUP refusal not logged"
tierctl config show | grep -q '^demote_watermark = "8%"' || fail "old config lost"
tierctl status --json >/tmp/s.json
check_eq "managed after bad reload" "$mpid" "$(jget managed.0.pid </tmp/s.json)"
kill -0 $TIERD_PID || fail "tierd died"

kill $mpid
kill -TERM $TIERD_PID
i=0
while kill -0 $TIERD_PID 2>/dev/null; do i=$((i + 1)); [ $i -lt 100 ] || fail "tierd did not stop"; sleep 0.1; done
grep -q '^STOPPING=1$' /tmp/notify.log || fail "no STOPPING=1"
echo "ok: STOPPING=1, stopped"
[ ! -e /run/tierd/mode ] || fail "state tree left behind"
kill $notify_pid 2>/dev/null || true
rm -f /etc/tierd/tierd.toml
