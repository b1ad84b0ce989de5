#!/bin/sh
# What tierd's eBPF sampler needs from the kernel: BTF, bpffs, the bpf(2) syscall with
# the verifier (tests/vm/helpers/bpfcheck.c), tracefs and kprobes.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -s /sys/kernel/btf/vmlinux ] || fail "/sys/kernel/btf/vmlinux is missing or empty"
echo "ok: BTF $(wc -c </sys/kernel/btf/vmlinux) bytes"
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || fail "bpffs is not mounted on /sys/fs/bpf"
grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts || fail "tracefs is not mounted"
[ -e /sys/kernel/tracing/kprobe_events ] || fail "no kprobe_events in tracefs"
echo "ok: bpffs, tracefs, kprobe_events present"
bpfcheck
