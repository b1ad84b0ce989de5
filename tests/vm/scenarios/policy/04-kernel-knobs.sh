#!/bin/sh
# tierd leaves the kernel's NUMA balancing as it found it (and says in status that the
# kernel may move a managed process's pages too); with policy.kernel_numa_balancing it
# sets the knob while it runs and restores the old value on exit.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

nb=/proc/sys/kernel/numa_balancing
echo 1 >$nb
start_tierd
sleep 1000 &
sp=$!
tierctl manage --pid $sp
check_eq "numa_balancing untouched" 1 "$(cat $nb)"
tierctl status --json >/tmp/s.json
check_eq "status kernel.numa_balancing" 1 "$(jget kernel.numa_balancing </tmp/s.json)"
check_eq "kernel tiering flagged on the managed process" true "$(jget managed.0.kernel_tiering_active </tmp/s.json)"
stop_tierd
check_eq "numa_balancing after exit" 1 "$(cat $nb)"

printf '[policy]\nkernel_numa_balancing = 0\n' >/tmp/nb.toml
start_tierd --config /tmp/nb.toml
check_eq "numa_balancing while tierd runs" 0 "$(cat $nb)"
tierctl manage --pid $sp
tierctl status --json >/tmp/s.json
check_eq "kernel tiering no longer flagged" false "$(jget managed.0.kernel_tiering_active </tmp/s.json)"
stop_tierd
check_eq "numa_balancing restored" 1 "$(cat $nb)"
kill $sp
