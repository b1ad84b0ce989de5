#!/bin/sh
# The permission matrix as non-root users (docs/security.md): callers (user A, user B,
# root, and A running with set-uid-root credentials) send every control request that
# names a pid (placement, migrate, heat, manage, unmanage) through tierctl for targets
# of every kind (root's process, A's, B's, A's non-dumpable one, A's set-uid one). Each
# answer must be the kernel's own verdict for that pair, asked by the `mayaccess`
# helper (move_pages(2) query) under the caller's credentials. Then the per-user
# ceilings: a priority above daemon.max_priority_unprivileged is refused, A's migrate
# runs at migrate.max_rate_mbps_per_uid; and the client socket as user A: a pool of its
# own shared between its connections, another process's memory refused (hintbench).
# Prints the table and RESULT unauthorized_allowed=0 authorized_refused=0.
# Run with: tests/vm/run.sh --group reliability --extra-bin /usr/bin/setpriv /usr/bin/socat
# tierd-timeout: 420
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

SETPRIV=/tierd/bin/setpriv
$SETPRIV --help 2>&1 | grep -q -- --reuid || cannot_run "util-linux setpriv missing (--extra-bin /usr/bin/setpriv)"
command -v mayaccess >/dev/null || cannot_run "mayaccess helper missing (tests/vm/helpers/mayaccess.c)"
A=1000 B=1001
RATE=16 # MB/s per uid for explicit migration

mkdir -p /run/tierd
cat >/tmp/perm.toml <<EOF
[client]
socket_mode = "0666"
[migrate]
max_rate_mbps_per_uid = $RATE
EOF
start_tierd --config /tmp/perm.toml
# In production the socket's group admits users; here the mode admits everyone.
chmod 0755 /run/tierd
chmod 0666 /run/tierd/tierd.sock

# as WHO CMD...: CMD with WHO's credentials.
as() {
	_who=$1
	shift
	case $_who in
	root) "$@" ;;
	a) $SETPRIV --reuid $A --regid $A --clear-groups "$@" ;;
	b) $SETPRIV --reuid $B --regid $B --clear-groups "$@" ;;
	# A set-uid-root program run by A: real uid A, effective and saved 0.
	a-setuid) $SETPRIV --ruid $A --rgid $A --clear-groups "$@" ;;
	*) fail "no caller $_who" ;;
	esac
}

# shellcheck disable=SC2012 # one /proc file, its owner uid
owner() { ls -ln "$1" | awk '{ print $3 }'; }

# Targets.
sleep 600 &
T_root=$!
as a sleep 600 &
T_a=$!
as b sleep 600 &
T_b=$!
# Non-dumpable: A runs a program it may execute but not read (the kernel then marks it
# not dumpable, as it does set-uid programs).
mkdir -p /tmp/nd
cp "$(command -v busybox)" /tmp/nd/sleep
chmod 0711 /tmp/nd/sleep
as a /tmp/nd/sleep 600 &
T_a_nodump=$!
as a-setuid sleep 600 &
T_a_setuid=$!
sleep 1
# pid_of TARGET: its pid.
pid_of() { eval "echo \$T_$1"; }
for t in root a b a_nodump a_setuid; do
	pid=$(pid_of $t)
	echo "target $t: pid $pid $(awk '/^Uid:/ { print "uids", $2, $3, $4 }' "/proc/$pid/status")," \
		"/proc/$pid/status owner $(owner "/proc/$pid/status")"
done
check_eq "non-dumpable target's /proc owner (root: not dumpable)" 0 "$(owner "/proc/$T_a_nodump/status")"

unauthorized=0 refused=0 cases=0
for c in a b root a-setuid; do
	for t in root a b a_nodump a_setuid; do
		tierctl manage --pid "$(pid_of $t)" --policy off >/dev/null
	done
	for t in root a b a_nodump a_setuid; do
		pid=$(pid_of $t)
		if as "$c" mayaccess "$pid" >/dev/null; then kernel=yes; else kernel=no; fi
		row=$(printf '%9s -> %-9s kernel %-3s' "$c" "$t" "$kernel")
		for req in placement migrate heat manage unmanage; do
			case $req in
			placement) set -- placement --pid "$pid" ;;
			migrate) set -- migrate --pid "$pid" --to 1 ;;
			heat) set -- heat --pid "$pid" ;;
			manage) set -- manage --pid "$pid" --policy off ;;
			unmanage) set -- unmanage --pid "$pid" ;;
			esac
			as "$c" tierctl "$@" >/tmp/req.out 2>&1 || true
			if grep -q "ptrace_may_access" /tmp/req.out; then got=no; else got=yes; fi
			cases=$((cases + 1))
			row="$row $req:$got"
			if [ $got = yes ] && [ $kernel = no ]; then
				unauthorized=$((unauthorized + 1))
				echo "UNAUTHORIZED: $c $req $t: $(cat /tmp/req.out)"
			fi
			if [ $got = no ] && [ $kernel = yes ]; then
				refused=$((refused + 1))
				echo "REFUSED: $c $req $t: $(cat /tmp/req.out)"
			fi
		done
		echo "$row"
	done
done
result permission_cases "$cases"
result unauthorized_allowed "$unauthorized"
result authorized_refused "$refused"
check_eq "requests cases" 100 "$cases"
check_eq "unauthorized requests allowed" 0 "$unauthorized"
check_eq "authorized requests refused" 0 "$refused"
tierctl metrics | grep '^tierd_access_denied_total'

# Priority ceiling (daemon.max_priority_unprivileged = 0): refused to A, not to root.
rc=0
as a tierctl manage --pid "$T_a" --priority 5 >/tmp/prio.out 2>&1 || rc=$?
cat /tmp/prio.out
grep -q max_priority_unprivileged /tmp/prio.out || fail "priority 5 by user A: not refused by the ceiling (rc $rc)"
tierctl manage --pid "$T_a" --priority 5 >/dev/null
result priority_ceiling_refused 1

# Migration budget: A moves its own 64 MiB at RATE MB/s; root moves it back unthrottled.
: >/tmp/mh.out
as a memhold --mb 64 >/tmp/mh.out &
mh=$!
wait_until 60 "memhold did not start" grep -q checksum /tmp/mh.out
as a tierctl migrate --pid "$mh" --to 1 --json >/tmp/mig-a.json
tierctl migrate --pid "$mh" --to 0 --json >/tmp/mig-root.json
secs_a=$(jget seconds </tmp/mig-a.json)
secs_root=$(jget seconds </tmp/mig-root.json)
moved_a=$(jget bytes </tmp/mig-a.json)
echo "user A moved $moved_a bytes in $secs_a s at $RATE MB/s per uid; root moved them back in $secs_root s"
result migrate_user_seconds "$secs_a"
result migrate_root_seconds "$secs_root"
# 64 MiB at 16 MB/s less a quarter second of burst: at least 3.9 s.
awk -v s="$secs_a" 'BEGIN { exit !(s >= 3.5) }' || fail "user A's migrate took $secs_a s: not throttled to $RATE MB/s"
kill "$mh"

# The client socket as user A: its own pool shared between its connections; another
# process's memory refused.
as a hintbench --tag perm --phases pool,security >/tmp/hb-perm.out 2>&1 || { cat /tmp/hb-perm.out; fail "hintbench as user A"; }
cat /tmp/hb-perm.out
check_eq "user A: pool shared between its connections" 1 "$(hintbench_figure perm pool_shared)"
check_eq "user A: another process's memory refused" 1 "$(hintbench_figure perm foreign_register_refused)"

kill "$T_root" "$T_a" "$T_b" "$T_a_nodump" "$T_a_setuid" 2>/dev/null || true
stop_tierd
