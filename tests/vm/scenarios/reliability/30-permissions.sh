#!/bin/sh
# The permission matrix as non-root users (docs/security.md): callers (user A, user B,
# root, and A running with set-uid-root credentials) send every control request that
# names a pid (placement, migrate, heat, manage, unmanage), as JSON lines on one control
# connection per caller (sockline), for targets
# of every kind (root's process, A's, B's, A's non-dumpable one, A's set-uid one, A's
# one that dropped root's privileges). Each
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

# The command prefix that runs a command with a caller's credentials (exec'd, so a
# background job's $! is the command's own pid).
AS_a="$SETPRIV --reuid $A --regid $A --clear-groups"
AS_b="$SETPRIV --reuid $B --regid $B --clear-groups"
# A set-uid-root program run by A: real uid A, effective and saved 0.
AS_a_setuid="$SETPRIV --ruid $A --rgid $A --clear-groups"
# as WHO CMD...: CMD with WHO's credentials (WHO: root, a, b, a-setuid).
as() {
	_who=$1
	shift
	# shellcheck disable=SC2086 # command prefixes, split on purpose
	case $_who in
	root) "$@" ;;
	a) $AS_a "$@" ;;
	b) $AS_b "$@" ;;
	a-setuid) $AS_a_setuid "$@" ;;
	*) fail "no caller $_who" ;;
	esac
}

# shellcheck disable=SC2012 # one /proc file, its owner uid
owner() { ls -ln "$1" | awk '{ print $3 }'; }

# Targets.
sleep 600 &
T_root=$!
# shellcheck disable=SC2086 # command prefixes, split on purpose
$AS_a sleep 600 &
T_a=$!
# shellcheck disable=SC2086
$AS_b sleep 600 &
T_b=$!
# Non-dumpable: one of A's processes that made itself so (set-uid programs are too).
# shellcheck disable=SC2086
$AS_a mayaccess --hold-nondumpable &
T_a_nodump=$!
# A set-uid-root program run by A (real uid A, effective and saved 0; the kernel makes
# it not dumpable). Not a busybox applet: those drop such privileges at start, which
# makes the next target: A's process that dropped root's privileges (not dumpable).
# shellcheck disable=SC2086
$AS_a_setuid mayaccess --hold &
T_a_setuid=$!
# shellcheck disable=SC2086
$AS_a_setuid sleep 600 &
T_a_dropped=$!
sleep 1
# pid_of TARGET: its pid.
pid_of() { eval "echo \$T_$1"; }
for t in root a b a_nodump a_setuid a_dropped; do
	pid=$(pid_of "$t")
	echo "target $t: pid $pid $(awk '/^Uid:/ { print "uids", $2, $3, $4 }' "/proc/$pid/status")," \
		"/proc/$pid/status owner $(owner "/proc/$pid/status")"
done
check_eq "A's target runs as A" "$A" "$(owner "/proc/$T_a/status")"
check_eq "non-dumpable target's /proc owner (root: not dumpable)" 0 "$(owner "/proc/$T_a_nodump/status")"
check_eq "set-uid target's effective uid" 0 "$(awk '/^Uid:/ { print $3 }' "/proc/$T_a_setuid/status")"

# Each caller sends its 30 requests (6 targets x 5 kinds, in that order) as JSON lines on
# one control connection with sockline: one exec per caller, not one tierctl per
# request (a process start costs about a second under TCG). The replies come back one
# line each, in order; a refusal names ptrace_may_access.
REQS="placement migrate heat manage unmanage"
TARGETS="root a b a_nodump a_setuid a_dropped"
unauthorized=0 refused=0 cases=0
for c in a b root a-setuid; do
	: >/tmp/manage.req
	: >/tmp/req.in
	for t in $TARGETS; do
		pid=$(pid_of "$t")
		echo "{\"cmd\":\"manage\",\"pid\":$pid,\"policy\":\"off\"}" >>/tmp/manage.req
		for req in $REQS; do
			case $req in
			placement) echo "{\"cmd\":\"placement\",\"pid\":$pid}" ;;
			migrate) echo "{\"cmd\":\"migrate\",\"pid\":$pid,\"to\":1}" ;;
			heat) echo "{\"cmd\":\"heat\",\"pid\":$pid}" ;;
			manage) echo "{\"cmd\":\"manage\",\"pid\":$pid,\"policy\":\"off\"}" ;;
			unmanage) echo "{\"cmd\":\"unmanage\",\"pid\":$pid}" ;;
			esac >>/tmp/req.in
		done
	done
	# Root manages every target first, so that each request has something to act on.
	sockline /run/tierd/tierd.sock </tmp/manage.req >/tmp/manage.out
	check_eq "root's manage replies" 6 "$(grep -c '"ok":true' /tmp/manage.out)"
	as "$c" sockline /run/tierd/tierd.sock </tmp/req.in >/tmp/req.out 2>&1 || true
	check_eq "$c: replies" 30 "$(wc -l </tmp/req.out)"
	i=0
	for t in $TARGETS; do
		pid=$(pid_of "$t")
		if as "$c" mayaccess "$pid" >/dev/null; then kernel=yes; else kernel=no; fi
		row=$(printf '%9s -> %-9s kernel %-3s' "$c" "$t" "$kernel")
		for req in $REQS; do
			i=$((i + 1))
			reply=$(sed -n "${i}p" /tmp/req.out)
			case $reply in
			*ptrace_may_access*) got=no ;;
			# Served, or refused for another reason (e.g. nothing to unmanage): allowed.
			*'"ok":true'* | *'"ok":false'*) got=yes ;;
			*) fail "$c $req $t: no reply line $i: $reply" ;;
			esac
			cases=$((cases + 1))
			row="$row $req:$got"
			if [ $got = yes ] && [ $kernel = no ]; then
				unauthorized=$((unauthorized + 1))
				echo "UNAUTHORIZED: $c $req $t: $reply"
			fi
			if [ $got = no ] && [ $kernel = yes ]; then
				refused=$((refused + 1))
				echo "REFUSED: $c $req $t: $reply"
			fi
		done
		echo "$row"
	done
done
result permission_cases "$cases"
result unauthorized_allowed "$unauthorized"
result authorized_refused "$refused"
check_eq "requests cases" 120 "$cases"
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
# shellcheck disable=SC2086
$AS_a memhold --mb 64 >/tmp/mh.out &
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

kill "$T_root" "$T_a" "$T_b" "$T_a_nodump" "$T_a_setuid" "$T_a_dropped" 2>/dev/null || true
stop_tierd
