#!/bin/sh
# mover.sh ARM start [PID[:PRIORITY]...] | mover.sh ARM stop
# Turns on (start) or off (stop) the page mover of one benchmark arm, so the arms of a
# comparison differ only in the mover:
#   none    no mover: kernel.numa_balancing=0 (the baseline)
#   kernel  the kernel's tiering (kernel-tiering.sh: numa_balancing=2 + demotion)
#   damon   DAMON tiering (damon-tiering.sh), numa_balancing=0
#   tierd   tierd (started here, log in /out/tierd-<n>.log) managing each PID
#           (`tierctl manage --pid PID [--priority N]`), numa_balancing=0; with its
#           embedded defaults, or `--config $TIERD_BENCH_CONFIG` when that is set
#           (experiments; the published figures use the defaults)
# numa_balancing is set to 0 outside the kernel arm because its default mode (1) also
# promotes slow-node pages toward the CPU's node, a second mover in the other arms.
# The value found at the first start is restored by stop. Busybox sh.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
nb=/proc/sys/kernel/numa_balancing
state_dir=${TIERD_BENCH_STATE:-/run/tierd-bench}
socket=${TIERD_SOCKET:-/run/tierd/tierd.sock}
mkdir -p "$state_dir"

die() {
	echo "mover.sh: $*" >&2
	exit 1
}

save_nb() {
	[ -e "$state_dir/numa_balancing.saved" ] || cat "$nb" >"$state_dir/numa_balancing.saved"
}

restore_nb() {
	if [ -e "$state_dir/numa_balancing.saved" ]; then
		cat "$state_dir/numa_balancing.saved" >"$nb"
		rm -f "$state_dir/numa_balancing.saved"
	fi
}

start_tierd() {
	n=$(($(cat "$state_dir/tierd.runs" 2>/dev/null || echo 0) + 1))
	echo "$n" >"$state_dir/tierd.runs"
	mkdir -p /out
	RUST_LOG=${RUST_LOG:-info} tierd --socket "$socket" ${TIERD_BENCH_CONFIG:+--config "$TIERD_BENCH_CONFIG"} \
		>"/out/tierd-$n.log" 2>&1 &
	echo $! >"$state_dir/tierd.pid"
	i=0
	while [ ! -S "$socket" ]; do
		[ "$i" -lt 600 ] || die "tierd's socket $socket did not appear within 60 s"
		kill -0 "$(cat "$state_dir/tierd.pid")" 2>/dev/null || die "tierd exited: $(tail -n 5 "/out/tierd-$n.log")"
		sleep 0.1
		i=$((i + 1))
	done
}

stop_tierd() {
	[ -e "$state_dir/tierd.pid" ] || return 0
	pid=$(cat "$state_dir/tierd.pid")
	rm -f "$state_dir/tierd.pid"
	n=$(cat "$state_dir/tierd.runs")
	tierctl --socket "$socket" --json status >"/out/tierd-$n-status.json" 2>/dev/null || true
	kill -TERM "$pid" 2>/dev/null || return 0
	i=0
	while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$socket"
}

arm=${1:-}
op=${2:-}
[ $# -ge 2 ] && shift 2
case "$arm:$op" in
none:start | damon:start | tierd:start)
	save_nb
	echo 0 >"$nb"
	;;
kernel:start) sh "$here/kernel-tiering.sh" on ;;
none:stop) restore_nb ;;
kernel:stop) sh "$here/kernel-tiering.sh" off ;;
damon:stop)
	sh "$here/damon-tiering.sh" stop
	restore_nb
	;;
tierd:stop)
	stop_tierd
	restore_nb
	;;
*)
	echo "usage: mover.sh none|kernel|damon|tierd start [PID[:PRIORITY]...] | stop" >&2
	exit 2
	;;
esac
case "$arm:$op" in
damon:start) sh "$here/damon-tiering.sh" start ;;
tierd:start)
	start_tierd
	for p in "$@"; do
		if [ "${p#*:}" != "$p" ]; then
			tierctl --socket "$socket" manage --pid "${p%%:*}" --priority "${p#*:}"
		else
			tierctl --socket "$socket" manage --pid "$p"
		fi
	done
	;;
esac
echo "mover.sh: $arm $op done (numa_balancing=$(cat "$nb"))"
