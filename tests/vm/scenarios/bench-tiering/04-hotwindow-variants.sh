#!/bin/sh
# Issue 5's hot-window variants, tierd arm by default (TIERD_BENCH_VARIANT_ARMS adds
# kernel / damon): THP-backed memory; a footprint twice the fast node (1024 MiB) whose
# eight windows are each hot once (5 s apiece); and two processes with different
# priorities whose hot sets (2 x 256 MiB) do not both fit on node0 — the one with
# priority 10 should keep its window on fast memory, the one with priority 0 not.
# Needs: run.sh --extra-file bench/peers:/tierd/peers
# tierd-timeout: 420
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
echo "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
for arm in ${TIERD_BENCH_VARIANT_ARMS:-tierd}; do
	echo "=== hotwindow THP: $arm"
	sh /tierd/peers/arm.sh --tag "thp_$arm" "$arm" hotwindow --thp --mb 640 --hot-mb 128 --move-s 10 --seconds 40
	echo "=== hotwindow 2x footprint, each window once: $arm"
	sh /tierd/peers/arm.sh --tag "twice_$arm" "$arm" hotwindow --mb 1024 --hot-mb 128 --move-s 5 --seconds 40
done

# Priorities: both workloads wait on one go file, then one mover manages both.
for arm in ${TIERD_BENCH_VARIANT_ARMS:-tierd}; do
	echo "=== hotwindow priorities: $arm"
	rm -f /tmp/prio.go
	for who in hi lo; do
		hotwindow --mb 384 --hot-mb 256 --step-mb 128 --move-s 10 --seconds 40 \
			--tag "prio_${arm}_$who" --go /tmp/prio.go >"/tmp/prio-$who.log" 2>&1 &
		eval "pid_$who=\$!"
	done
	for who in hi lo; do
		i=0
		until grep -q '^ready ' "/tmp/prio-$who.log"; do
			[ "$i" -lt 3000 ] || fail "hotwindow $who not ready within 300 s"
			sleep 0.1
			i=$((i + 1))
		done
	done
	# shellcheck disable=SC2154 # pid_hi / pid_lo are set by eval above
	if [ "$arm" = tierd ]; then
		sh /tierd/peers/mover.sh tierd start "$pid_hi:10" "$pid_lo:0"
	else
		sh /tierd/peers/mover.sh "$arm" start
	fi
	touch /tmp/prio.go
	rc=0
	wait "$pid_hi" || rc=$?
	wait "$pid_lo" || rc=$?
	sh /tierd/peers/mover.sh "$arm" stop
	cat /tmp/prio-hi.log /tmp/prio-lo.log
	[ "$rc" = 0 ] || fail "a hotwindow of the priority run failed (rc=$rc)"
done
