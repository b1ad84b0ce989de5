#!/bin/sh
# Data integrity under migration (issue 18, item 5). memcheck (bench/src/bin/memcheck)
# fills its memory with words that encode (index, 4 KiB block generation), verifies a
# moving hot window on every pass and all of it every 2 s, and rewrites random blocks all
# the time, so its writes race with the moves. Meanwhile tierd, configured to migrate
# aggressively (no rate cap, small batches, watermarks that keep node0 churning),
# promotes and demotes it, and this script moves the whole process node1 <-> node0 with
# `tierctl migrate` in a loop (concurrently with the policy's own moves). Three runs:
# THP advised, THP forbidden, a MAP_SHARED memfd (as a shared pool is mapped); each runs
# until the engine has moved its share during it or its time passed (tierd_migrated_bytes_total,
# which counts policy, prefetch and tierctl moves); 0 mismatches in every run are required,
# and in all >= 384 MiB migrated in the test suite (`reliability` group: 96 MiB of memcheck,
# 192 MiB or 20 s a run) or >= 2 GiB as the benchmark of issue 18's must-show
# (`bench-reliability` group, the same file: 160 MiB, 704 MiB or 55 s a run). A fourth
# run pins 8 MiB with io_uring fixed buffers (a long-term pin, rewritten by the kernel
# through the pin): move_pages must leave those pages in place and their data intact
# while the rest of the process moves.
# tierd-timeout: 300
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

# Centiseconds since boot (busybox date has no %N).
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
# Bytes the migration engine has moved since tierd started.
moved_bytes() { tierctl metrics | awk '$1 == "tierd_migrated_bytes_total" { printf "%.0f\n", $2 }'; }
# utime + stime of tierd, clock ticks (USER_HZ = 100, so centiseconds).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$TIERD_PID/stat"; }
# mc_result TAG KEY: a RESULT figure of memcheck run TAG.
mc_result() { sed -n "s/^RESULT $1\.$2=//p" "/tmp/mc-$1.out"; }

cat >/tmp/aggressive.toml <<'EOF'
[migrate]
batch_pages = 256
rate_limit_mbps = 0

[policy]
demote_watermark = "60%"
promote_watermark = "55%"
idle_demote_watermark = "70%"
hot_threshold_ms = 20
cold_age_ms = 1000
min_residency_ms = 100
hysteresis = 1.0
EOF
# Movers: tierd's policy and tierctl migrate, concurrently. The kernel's NUMA balancing
# would be a third, but its scanning costs the VM's scarce CPU (it is off in the policy
# scenarios for the same reason).
numa_balancing=$(cat /proc/sys/kernel/numa_balancing)
trap 'echo "$numa_balancing" >/proc/sys/kernel/numa_balancing' EXIT
echo 0 >/proc/sys/kernel/numa_balancing
RUST_LOG=info,tierd::tiering=debug start_tierd --config /tmp/aggressive.toml
wait_backends

mib=$((1 << 20))
# The suite's run is shorter than the benchmark's (see the header).
if [ "${TIERD_GROUP:-}" = bench-reliability ]; then
	mc_mb=160 target=$((704 * mib)) run_s=55 need=$((2048 * mib))
else
	mc_mb=96 target=$((192 * mib)) run_s=20 need=$((384 * mib))
fi
total=0

# start_memcheck TAG ARGS...: memcheck in the background, ready and managed; MC_PID.
start_memcheck() {
	_tag=$1
	shift
	memcheck --tag "$_tag" --full-s 2 --hot-mb 16 --pause-ms 20 "$@" >"/tmp/mc-$_tag.out" 2>&1 &
	MC_PID=$!
	wait_until 60 "memcheck $_tag did not start" grep -q '^ready' "/tmp/mc-$_tag.out"
	tierctl manage --pid "$MC_PID" >/dev/null
}

# stop_memcheck TAG: SIGTERM (memcheck verifies everything once more), its verdict.
stop_memcheck() {
	kill -TERM "$MC_PID"
	_rc=0
	wait "$MC_PID" || _rc=$?
	grep -v '^progress' "/tmp/mc-$1.out" | tail -n 30
	check_eq "$1: memcheck exit status" 0 "$_rc"
	check_eq "$1: mismatches" 0 "$(mc_result "$1" mismatches)"
}

# round_trips TAG MAX_S: whole-process migrations, alternating node1 and node0, until the
# engine moved $target bytes since the start or MAX_S seconds passed. Sets MOVED.
round_trips() {
	_m0=$(moved_bytes) _to=1 _n=0 _end=$(($(now_cs) + $2 * 100)) _c0=$(cpu_ticks) _t0=$(now_cs)
	while :; do
		kill -0 "$MC_PID" 2>/dev/null || fail "$1: memcheck exited early"
		tierctl --json migrate --pid "$MC_PID" --to $_to >/tmp/m.json || fail "$1: migrate to node$_to"
		echo "$1: to node$_to moved $(jget moved_pages </tmp/m.json) of $(jget requested_pages </tmp/m.json) pages in $(jget seconds </tmp/m.json) s, failed $(jget failed_pages </tmp/m.json)"
		_n=$((_n + 1)) _to=$((1 - _to))
		MOVED=$(($(moved_bytes) - _m0))
		[ "$MOVED" -lt "$target" ] || break
		[ "$(now_cs)" -lt "$_end" ] || break
	done
	echo "$1: $_n whole-process migrations, engine moved $((MOVED / mib)) MiB during the run ($(((MOVED / mib) * 100 / ($(now_cs) - _t0))) MiB/s); tierd cpu $((($(cpu_ticks) - _c0) * 100 / ($(now_cs) - _t0)))% of a vCPU"
}

for run in "thp --huge" "nothp --nohuge" "shared --shared --nohuge"; do
	# shellcheck disable=SC2086 # the run's memcheck arguments, split on purpose
	set -- $run
	tag=$1
	shift
	start_memcheck "$tag" --mb "$mc_mb" "$@"
	round_trips "$tag" "$run_s"
	stop_memcheck "$tag"
	result "$tag.migrated_bytes" "$MOVED"
	total=$((total + MOVED))
done
result migrated_bytes "$total"
result mismatches 0

# Long-term pin: 8 MiB of 64 registered as io_uring fixed buffers.
memcheck --tag pin --mb 64 --nohuge --pin 8 --full-s 2 >/tmp/mc-pin.out 2>&1 &
MC_PID=$!
wait_until 60 "memcheck pin did not start" grep -q -e '^ready' -e '^pin unavailable' /tmp/mc-pin.out
if grep -q '^pin unavailable' /tmp/mc-pin.out; then
	wait "$MC_PID" || true
	echo "SKIPPED the pinned run: $(sed -n 's/^pin unavailable: //p' /tmp/mc-pin.out)"
	result pin.tested 0
else
	tierctl manage --pid "$MC_PID" >/dev/null
	pinned=$(sed -n 's/^pinned=//p' /tmp/mc-pin.out)
	for to in 1 0; do
		before=$(tierctl --json placement --pid "$MC_PID" --range "$pinned")
		tierctl --json migrate --pid "$MC_PID" --to $to >/tmp/m.json || fail "pin: migrate to node$to"
		echo "pin: to node$to moved $(jget moved_pages </tmp/m.json) of $(jget requested_pages </tmp/m.json) pages, failed $(jget failed_pages </tmp/m.json)"
		echo "pin: pinned range before $(echo "$before" | jget nodes), after $(tierctl --json placement --pid "$MC_PID" --range "$pinned" | jget nodes)"
	done
	sleep 3 # a few more passes, with READ_FIXED rewrites, after the last move
	stop_memcheck pin
	check_ge "pin: rewrites through the pin" 1 "$(mc_result pin pinned_rewrites)"
	check_eq "pin: pinned pages moved" 0 "$(mc_result pin pinned_pages_moved)"
	result pin.tested 1
fi
stop_tierd
check_ge "bytes migrated in all" "$need" "$total"
