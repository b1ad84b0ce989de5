#!/bin/sh
# The same figure through a running tierd: `tierctl migrate --pid SELF --to N --range`
# (the daemon's migration engine and its own timing), against memcpy in the same run.
# tierd-timeout: 300
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

nb=$(cat /proc/sys/kernel/numa_balancing)
echo 0 >/proc/sys/kernel/numa_balancing
start_tierd
rc=0
migbench --mb 256 --reps 3 --tierctl tierctl --tag tierctl || rc=$?
stop_tierd
echo "$nb" >/proc/sys/kernel/numa_balancing
exit "$rc"
