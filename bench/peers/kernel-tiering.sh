#!/bin/sh
# kernel-tiering.sh on|off|status: the Linux kernel's own memory tiering as a peer to
# compare tierd with (issue 5). "on" sets NUMA balancing to memory-tiering mode
# (kernel.numa_balancing=2: hint faults promote hot pages of the slow tier) and turns on
# demotion in reclaim (/sys/kernel/mm/numa/demotion_enabled=true), saving the previous
# values; "off" restores them. Runs under busybox sh (the test VM) and any POSIX sh.
set -eu

nb=/proc/sys/kernel/numa_balancing
de=/sys/kernel/mm/numa/demotion_enabled
state_dir=${TIERD_BENCH_STATE:-/run/tierd-bench}
saved=$state_dir/kernel-tiering.saved

die() {
	echo "kernel-tiering.sh: $*" >&2
	exit 1
}

[ -w "$nb" ] || die "$nb is not writable (root? CONFIG_NUMA_BALANCING?)"
[ -w "$de" ] || die "$de is not writable"

case ${1:-} in
on)
	mkdir -p "$state_dir"
	# Save only the first time: "on" twice must not save our own values.
	[ -e "$saved" ] || printf '%s %s\n' "$(cat "$nb")" "$(cat "$de")" >"$saved"
	echo 2 >"$nb"
	echo true >"$de"
	;;
off)
	if [ -e "$saved" ]; then
		read -r old_nb old_de <"$saved"
		echo "$old_nb" >"$nb"
		echo "$old_de" >"$de"
		rm -f "$saved"
	fi
	;;
status) ;;
*)
	echo "usage: kernel-tiering.sh on|off|status" >&2
	exit 2
	;;
esac
echo "kernel-tiering: numa_balancing=$(cat "$nb") demotion_enabled=$(cat "$de")"
