#!/bin/sh
# arm.sh [--tag TAG] ARM COMMAND [ARGS...]: runs one arm of a side-by-side benchmark.
# Starts `COMMAND ARGS --tag TAG --go FILE` (TAG defaults to ARM), a tierd-bench
# workload that places its memory, prints "ready pid=..." and waits for FILE; turns on
# ARM's mover for that pid (mover.sh), releases the workload, waits for it, turns the
# mover off and prints the workload's output (its RESULT lines); for tierd, snapshots
# `tierctl --json status` every 10 s into /out/status-TAG-N.json. While the workload
# runs, `fastshare` samples where the range its ready line names (range= or pool=)
# sits, every TIERD_BENCH_SERIES_MS ms (default 1000; 0 = off), into
# /out/series-SCENARIO-TAG.txt (SCENARIO: guest-init.sh's TIERD_SCENARIO) for the
# report's plots. With TIERD_BENCH_MOVER_CPU=1 it also prints "RESULT TAG.mover_cpu_s=S"
# (and a line "arm.sh: TAG: mover CPU by thread: NAME=Ss ..."):
# the CPU time (user + system) the movers' own threads spent while the workload ran
# (tierd's process, when ARM is tierd, plus every kdamond kthread; the kernel's NUMA
# hint faults run in the workload's threads and are not in it). Exit status: the
# workload's. Busybox sh.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tag=
if [ "${1:-}" = --tag ]; then
	tag=$2
	shift 2
fi
arm=$1
tag=${tag:-$arm}
shift
log=/tmp/arm-$arm-$$.log
go=/tmp/arm-$arm-$$.go
rm -f "$go"
"$@" --tag "$tag" --go "$go" >"$log" 2>&1 &
pid=$!
i=0
until grep -q '^ready ' "$log"; do
	if ! kill -0 "$pid" 2>/dev/null; then
		cat "$log"
		echo "arm.sh: $arm: the workload exited before it was ready" >&2
		exit 1
	fi
	[ "$i" -lt 3000 ] || {
		echo "arm.sh: $arm: workload not ready within 300 s" >&2
		exit 1
	}
	sleep 0.1
	i=$((i + 1))
done
echo "arm.sh: $arm: $(grep '^ready ' "$log")"
# The workload's memory, for fastshare below: range= (hotwindow) or pool= (kvreplay).
range=$(awk '/^ready / { for (i = 1; i <= NF; i++) if ($i ~ /^(range|pool)=0x/) { sub(/^[a-z]+=/, "", $i); print $i } }' "$log")
sh "$here/mover.sh" "$arm" start "$pid"
# Clock ticks (user + system) of the movers, one line "name tid ticks" each: tierd's
# process as "tierd-process" (its stat also counts the threads that have ended), each
# of tierd's threads, and every kdamond kthread. Keyed by tid, so a kdamond that
# restarts during the arm (tierd restarts its own when its targets change) counts as a
# new thread from 0. A thread that ends before the arm does (a vaddr kdamond stops
# when its target exits) is read every second while the workload runs, so it keeps
# all but its last second.
mover_ticks() {
	tp=
	[ "$arm" != tierd ] || tp=$(cat "${TIERD_BENCH_STATE:-/run/tierd-bench}/tierd.pid" 2>/dev/null || true)
	awk -v tp="${tp:-none}" '{
		c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) [^)]*$/, "", c)
		r = $0; sub(/.*\) /, "", r); split(r, f, " ")
		n = split(FILENAME, p, "/")
		if (FILENAME == "/proc/" tp "/stat") print "tierd-process", tp, f[12] + f[13]
		else if (n == 6 && (p[3] == tp || c ~ /^kdamond/)) print c, p[5], f[12] + f[13]
	}' "/proc/${tp:-self}/stat" /proc/[0-9]*/task/[0-9]*/stat 2>/dev/null || true
}
ticker=
if [ "${TIERD_BENCH_MOVER_CPU:-0}" = 1 ]; then
	mover_ticks >"/tmp/arm-ticks-$tag.0"
	: >"/tmp/arm-ticks-$tag.1"
	(while kill -0 "$pid" 2>/dev/null; do
		mover_ticks >>"/tmp/arm-ticks-$tag.1"
		sleep 1
	done) &
	ticker=$!
fi
touch "$go"
series=
every=${TIERD_BENCH_SERIES_MS:-1000}
if [ "$every" != 0 ] && [ -n "$range" ]; then
	mkdir -p /out
	fastshare --pid "$pid" --range "$range" --every-ms "$every" \
		--out "/out/series-${TIERD_SCENARIO:-arm}-$tag.txt" &
	series=$!
fi
snap=
if [ "$arm" = tierd ]; then
	# tierd's view while it works (its status after the run has no managed process).
	mkdir -p /out
	(
		i=0
		while kill -0 "$pid" 2>/dev/null; do
			sleep 10
			i=$((i + 1))
			tierctl --json status >"/out/status-$tag-$i.json" 2>/dev/null || true
		done
	) &
	snap=$!
fi
rc=0
wait "$pid" || rc=$?
if [ "${TIERD_BENCH_MOVER_CPU:-0}" = 1 ]; then
	hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
	wait "$ticker" 2>/dev/null || true
	mover_ticks >>"/tmp/arm-ticks-$tag.1"
	# Ticks over the arm per "name tid": the last (highest) reading less the one at the
	# start (a thread born during the arm from 0); then the total (tierd's process and
	# the kdamonds) and the CPU seconds per thread name.
	awk 'NR == FNR { b[$1 " " $2] = $3; next }
		{ k = $1 " " $2; if (!(k in m) || $3 > m[k]) m[k] = $3 }
		END { for (k in m) { split(k, n, " "); print n[1], m[k] - b[k] } }' \
		"/tmp/arm-ticks-$tag.0" "/tmp/arm-ticks-$tag.1" >"/tmp/arm-ticks-$tag.d"
	mover_cpu="RESULT $tag.mover_cpu_s=$(awk -v hz="$hz" '$1 == "tierd-process" || $1 ~ /^kdamond/ { t += $2 }
		END { printf "%.2f", t / hz }' "/tmp/arm-ticks-$tag.d")"
	# Where it went: CPU seconds per thread name over the arm, busiest first.
	by_thread=$(awk -v hz="$hz" '$1 != "tierd-process" { a[$1] += $2 }
		END { for (n in a) if (a[n] > 0) printf "%s=%.1fs\n", n, a[n] / hz }' \
		"/tmp/arm-ticks-$tag.d" | sort -t= -k2 -nr | tr '\n' ' ')
	rm -f "/tmp/arm-ticks-$tag.0" "/tmp/arm-ticks-$tag.1" "/tmp/arm-ticks-$tag.d"
fi
[ -z "$snap" ] || kill "$snap" 2>/dev/null || true
[ -z "$series" ] || wait "$series" || true
sh "$here/mover.sh" "$arm" stop
cat "$log"
[ -z "${mover_cpu:-}" ] || echo "$mover_cpu"
[ -z "${by_thread:-}" ] || echo "arm.sh: $tag: mover CPU by thread: $by_thread"
rm -f "$log" "$go"
exit "$rc"
