#!/bin/sh
# Issue 5's moving hot window, side by side: 640 MiB all first on node1, a 128 MiB
# window read and written continuously, moving every 10 s, 40 s; the fraction of time
# the window sits on node0 under (a) the kernel's tiering, (b) DAMON tiering, (c) tierd,
# after a baseline with no mover at all (bench/peers/{arm,mover}.sh;
# bench/src/bin/hotwindow.rs).
# Needs: run.sh --extra-file bench/peers:/tierd/peers
# tierd-timeout: 480
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
for arm in ${TIERD_BENCH_ARMS:-none kernel damon tierd}; do
	echo "=== hotwindow: $arm (node0 free $(node_free_kb 0) kB)"
	sh /tierd/peers/arm.sh "$arm" hotwindow --mb 640 --hot-mb 128 --move-s 10 --seconds 40
done
