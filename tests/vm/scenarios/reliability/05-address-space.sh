#!/bin/sh
# tierd's cost follows resident memory, not reserved address space: a managed process
# holds a 16 TiB PROT_NONE, MAP_NORESERVE reservation beside 64 MiB of touched memory
# (as GPU runtimes do). For 30 s of management tierd's RSS stays within 64 MiB of what
# it was and the status request answers within 1 s (measured connect-to-reply with the
# connhold helper: a tierctl process alone takes 0.4-1 s to start under TCG, see
# 10-connections; its wall time is reported too); a whole-process migrate (no range)
# requests the resident pages only and moves them; the data is intact.
# Before the fix tierd grew past 1.3 GiB within a minute and the OOM killer ended it.
# tierd-timeout: 240
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
# Centiseconds since boot (busybox date has no %N).
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }

command -v connhold >/dev/null || cannot_run "connhold helper missing (tests/vm/helpers/connhold.c)"
fig() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

start_tierd
wait_backends
start_memhold /tmp/memhold.out --mb 64 --reserve-tb 16
pid=$MEMHOLD_PID
sum0=$(sed -n 's/.*checksum=\([0-9a-f]*\).*/\1/p' /tmp/memhold.out | head -n 1)
before=$(rss_kb "$TIERD_PID")
tierctl manage --pid "$pid" >/dev/null
# 30 s of management: the bare status request (10 per round, connect to reply) and
# tierctl's own wall time, tierd alive and its RSS.
req_worst=0 ctl_worst=0 peak=$before
end=$(($(now_cs) + 3000))
while [ "$(now_cs)" -lt "$end" ]; do
	q=$(connhold ask /run/tierd/tierd.sock 10 '{"cmd":"status"}')
	[ "$(fig failures "$q")" = 0 ] || fail "status request failed: $q"
	m=$(fig max_ms "$q" | cut -d. -f1)
	[ "$m" -gt "$req_worst" ] && req_worst=$m
	t0=$(now_cs)
	tierctl --json status >/tmp/status.json || fail "tierctl status failed"
	dt=$((($(now_cs) - t0) * 10))
	[ "$dt" -gt "$ctl_worst" ] && ctl_worst=$dt
	kill -0 "$TIERD_PID" || fail "tierd died (OOM?)"
	r=$(rss_kb "$TIERD_PID")
	[ "$r" -gt "$peak" ] && peak=$r
	sleep 0.5
done
echo "tierd RSS ${before} kB before, peak ${peak} kB; status request worst ${req_worst} ms, tierctl status worst ${ctl_worst} ms"
result tierd_rss_kb_before "$before"
result tierd_rss_kb_peak "$peak"
result status_request_worst_ms "$req_worst"
result tierctl_status_worst_ms "$ctl_worst"
[ "$req_worst" -lt 1000 ] || fail "the status request took $req_worst ms"
[ "$peak" -lt $((before + 65536)) ] || fail "tierd grew from $before to $peak kB"

# Whole-process migrate: the resident pages only (64 MiB = 16384 pages, plus the
# binary's own few hundred), not 2^32 pages of reservation.
for to in 1 0; do
	tierctl migrate --pid "$pid" --to $to --json >/tmp/m.json || fail "migrate to node$to"
	req=$(jget requested_pages </tmp/m.json)
	moved=$(jget moved_pages </tmp/m.json)
	echo "migrate to node$to: requested $req moved $moved in $(jget seconds </tmp/m.json) s"
	check_ge "requested pages (the touched 64 MiB)" 16384 "$req"
	[ "$req" -lt 20000 ] || fail "migrate requested $req pages: it walked the reservation"
	check_ge "moved to node$to" $((16384 * 99 / 100)) "$moved"
	check_ge "numa_maps node$to" $(((64 << 20) * 99 / 100)) "$(node_bytes "$pid" $to)"
	result "migrate_requested_pages_to_node$to" "$req"
done
kill -USR1 "$pid"
wait_until 60 "memhold did not re-checksum" grep -q '^checksum=' /tmp/memhold.out
sum1=$(sed -n 's/^checksum=\([0-9a-f]*\)/\1/p' /tmp/memhold.out | tail -n 1)
check_eq "checksum after two migrations" "$sum0" "$sum1"
kill "$pid"
stop_tierd
