#!/bin/sh
# PID 1 of the test VM (busybox ash), copied to /init by tests/vm/run.sh.
# Mounts the pseudo filesystems, runs every scenario of the group baked into
# /tierd/group in lexical order, each under a watchdog, ships /out back to the host
# as a tar stream over the virtio-serial port "tierd.out", then powers off.
# Console protocol (parsed by run.sh; keep in sync):
#   TIERD-INIT-READY <group> kernel=<release> uptime_s=<seconds>
#   TIERD-SCENARIO-BEGIN <group>/<name>
#   TIERD-SCENARIO-TIMEOUT <group>/<name> after_s=<seconds>   (only on timeout)
#   TIERD-SCENARIO-END <group>/<name> rc=<N>
#   TIERD-OUT-SENT files=<N> | TIERD-OUT-MISSING <why>
#   TIERD-GROUP-DONE <group>
# No "set -e": PID 1 must reach poweroff whatever fails, or the kernel panics.

export PATH=/tierd/bin:/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/tierd/lib
export HOME=/root TERM=dumb

# Scenarios get this many seconds unless they say "# tierd-timeout: N" in their header.
default_timeout_s=120

mnt() { # mnt TYPE DIR [OPTIONS]
	mkdir -p "$2"
	mount -t "$1" ${3:+-o "$3"} "$1" "$2" || echo "TIERD-INIT-WARN cannot mount $1 on $2"
}
mnt proc /proc
mnt sysfs /sys
mnt devtmpfs /dev
mnt devpts /dev/pts
mnt tmpfs /dev/shm mode=1777
mnt tmpfs /tmp mode=1777
mnt tmpfs /run mode=755
mnt tracefs /sys/kernel/tracing
mnt debugfs /sys/kernel/debug
mnt bpf /sys/fs/bpf
mnt cgroup2 /sys/fs/cgroup
mkdir -p /out
hostname tierd-vm

# True while a process other than us is alive (kernel threads have an empty cmdline).
# Shell builtins only: a forked helper would count itself.
user_processes_left() {
	for p in /proc/[0-9]*; do
		[ "$p" = /proc/1 ] && continue
		c=
		{ read -r c <"$p/cmdline"; } 2>/dev/null
		[ -n "$c" ] && return 0
	done
	return 1
}

group=$(cat /tierd/group)
case $group in
bench-*)
	# Benchmark VMs run multi-threaded TCG (run.sh), where QEMU 7.2 sometimes runs
	# stale code right after the kernel patches its text, which it does whenever a
	# static key flips: a tracepoint gaining its first user (tierd attaching BPF to
	# exceptions:page_fault_user or damon:damon_aggregated) or numa_balancing changing.
	# Seen as "Oops: int3" in exc_page_fault when tierd started beside a running
	# workload. Flip those keys once, now, while nothing else runs: the two events stay
	# enabled (into a stopped ring buffer, so they record nothing) and numa_balancing
	# starts at 0, the value every arm but the kernel's uses.
	echo 0 >/sys/kernel/tracing/tracing_on
	for ev in exceptions/page_fault_user damon/damon_aggregated; do
		[ ! -e "/sys/kernel/tracing/events/$ev/enable" ] || echo 1 >"/sys/kernel/tracing/events/$ev/enable"
	done
	echo 0 >/proc/sys/kernel/numa_balancing
	;;
esac
echo "TIERD-INIT-READY $group kernel=$(uname -r) uptime_s=$(cut -d' ' -f1 /proc/uptime)"

for script in /tierd/scenarios/"$group"/*.sh; do
	[ -e "$script" ] || continue
	name=${script##*/}
	name=${name%.sh}
	id="$group/$name"
	timeout_s=$(sed -n 's/^# tierd-timeout: *\([0-9][0-9]*\).*/\1/p' "$script" | head -n 1)
	timeout_s=${timeout_s:-$default_timeout_s}
	mkdir -p "/tmp/$name"
	echo "TIERD-SCENARIO-BEGIN $id"
	began_s=$(cut -d' ' -f1 /proc/uptime)
	# tlbtick (run.sh, tlbtick.c): one per vCPU, beside the scenario; kill -1 below ends it.
	tlbtick_us=$(cat /tierd/tlbtick_us 2>/dev/null || echo 0)
	if [ "$tlbtick_us" -gt 0 ]; then
		for c in /sys/devices/system/cpu/cpu[0-9]*; do
			tlbtick "$tlbtick_us" "${c##*cpu}" </dev/null >/dev/console 2>&1 &
		done
	fi
	(cd "/tmp/$name" && TIERD_GROUP=$group TIERD_SCENARIO=$name exec sh "$script") </dev/null 2>&1 &
	pid=$!
	(
		sleep "$timeout_s"
		echo "TIERD-SCENARIO-TIMEOUT $id after_s=$timeout_s"
		kill -TERM "$pid"
		sleep 5
		kill -KILL "$pid"
	) </dev/null >/dev/console 2>&1 &
	watchdog=$!
	wait "$pid"
	rc=$?
	kill "$watchdog" 2>/dev/null
	# Whatever the scenario left running (daemons, workloads, the watchdog's sleep) goes,
	# so the next scenario starts from a clean VM. kill -1 spares PID 1, i.e. us.
	kill -TERM -1 2>/dev/null
	grace=10
	while [ "$grace" -gt 0 ] && user_processes_left; do
		sleep 0.1
		grace=$((grace - 1))
	done
	kill -KILL -1 2>/dev/null
	echo "TIERD-SCENARIO-TIME $id s=$(awk -v b="$began_s" '{ printf "%.0f", $1 - b }' /proc/uptime)"
	echo "TIERD-SCENARIO-END $id rc=$rc"
done

port=
for p in /sys/class/virtio-ports/*; do
	[ "$(cat "$p/name" 2>/dev/null)" = tierd.out ] && port=/dev/${p##*/}
done
if [ -z "$port" ]; then
	echo "TIERD-OUT-MISSING no virtio-serial port named tierd.out"
elif [ ! -c "$port" ]; then
	echo "TIERD-OUT-MISSING $port is not a character device"
elif (cd /out && tar -cf - .) >"$port"; then
	echo "TIERD-OUT-SENT files=$(find /out -type f | wc -l)"
else
	echo "TIERD-OUT-MISSING writing $port failed"
fi

echo "TIERD-GROUP-DONE $group"
# The console is a tty: give it a moment to drain before the power goes.
sleep 1
poweroff -f
