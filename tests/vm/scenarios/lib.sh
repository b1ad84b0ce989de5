# Helpers for VM scenarios (busybox sh in the guest). Source it first:
#   . /tierd/scenarios/lib.sh
# It turns on "set -eu" and pipefail. Exit status is the verdict: 0 pass, anything else
# fail, 77 "could not run" (also a failure, with the reason shown by the host).
# shellcheck shell=sh

set -eu
# shellcheck disable=SC3040 # busybox ash has pipefail
set -o pipefail

# fail MSG...: the scenario failed.
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# cannot_run MSG...: something the scenario needs is missing; run.sh prints MSG.
cannot_run() {
	echo "CANNOT-RUN: $*"
	exit 77
}

# check_eq WHAT EXPECTED ACTUAL
check_eq() {
	[ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
	echo "ok: $1 = $3"
}

# check_ge WHAT MIN ACTUAL (integers)
check_ge() {
	[ "$3" -ge "$2" ] || fail "$1: expected >= $2, got $3"
	echo "ok: $1 = $3 (>= $2)"
}

# result KEY VALUE: a benchmark figure, collected by run.sh into results.txt.
result() {
	echo "RESULT $1=$2"
}

# wait_until TIMEOUT_S WHAT COMMAND...: runs COMMAND every 0.1 s until it succeeds;
# fails the scenario with "WHAT within TIMEOUT_S s" if it has not after TIMEOUT_S s.
wait_until() {
	_wu_s=$1 _wu_left=$(($1 * 10)) _wu_what=$2
	shift 2
	until "$@"; do
		[ "$_wu_left" -gt 0 ] || fail "$_wu_what within ${_wu_s} s"
		_wu_left=$((_wu_left - 1))
		sleep 0.1
	done
}

# wait_for_socket PATH [TIMEOUT_S]: waits until PATH is a unix socket (default 30 s).
wait_for_socket() {
	wait_until "${2:-30}" "socket $1 did not appear" test -S "$1"
}

# numa_maps_bytes PID: one line "<node> <bytes>" per node holding pages of PID, from
# /proc/PID/numa_maps (N<node>= page counts times each mapping's kernelpagesize_kB).
numa_maps_bytes() {
	awk '{
		kb = 4
		for (i = 1; i <= NF; i++) if ($i ~ /^kernelpagesize_kB=/) kb = substr($i, 19)
		for (i = 1; i <= NF; i++) if ($i ~ /^N[0-9]+=/) {
			split(substr($i, 2), f, "=")
			bytes[f[1]] += f[2] * kb * 1024
		}
	} END { for (n in bytes) printf "%d %.0f\n", n, bytes[n] }' "/proc/$1/numa_maps" | sort -n
}

# node_bytes PID NODE: bytes of PID's memory on NODE (0 if none).
node_bytes() {
	numa_maps_bytes "$1" | awk -v n="$2" '$1 == n { b = $2 } END { printf "%.0f\n", b }'
}

# tier_of_node NODE: the N of the memory_tierN whose nodelist holds NODE (larger = slower).
tier_of_node() {
	for _t in /sys/devices/virtual/memory_tiering/memory_tier*; do
		if awk -v n="$1" '{
			c = split($0, r, ",")
			for (i = 1; i <= c; i++) {
				split(r[i], b, "-"); if (b[2] == "") b[2] = b[1]
				if (n >= b[1] && n <= b[2]) found = 1
			}
		} END { exit !found }' "$_t/nodelist"; then
			echo "${_t##*memory_tier}"
			return 0
		fi
	done
	fail "node $1 is in no memory tier"
}

# basenames PATH...: the last components of the PATHs that exist, space-separated
# (for printing a glob's matches without ls).
basenames() {
	_sep=
	for _p in "$@"; do
		[ -e "$_p" ] || continue
		printf '%s%s' "$_sep" "${_p##*/}"
		_sep=' '
	done
}

# node_free_kb NODE: MemFree of NODE in kB.
node_free_kb() {
	awk '$3 == "MemFree:" { print $4 }' "/sys/devices/system/node/node$1/meminfo"
}

# start_tierd [ARGS...]: starts tierd in the background with ARGS (under
# `taskset $TIERD_TASKSET` when that is set, e.g. "-c 1"; log in
# /out/tierd-<scenario>.log), waits for its control socket (TIERD_SOCKET, default
# /run/tierd/tierd.sock) and sets TIERD_PID. Every scenario starts its own: run.sh
# kills what a scenario leaves running.
# shellcheck disable=SC2120 # arguments are optional
start_tierd() {
	mkdir -p /out
	# A socket left by a tierd that did not stop would satisfy wait_for_socket at once.
	rm -f "${TIERD_SOCKET:-/run/tierd/tierd.sock}"
	# shellcheck disable=SC2086 # TIERD_TASKSET is taskset's arguments, split on purpose
	RUST_LOG=${RUST_LOG:-info} ${TIERD_TASKSET:+taskset $TIERD_TASKSET} tierd "$@" \
		>"/out/tierd-${TIERD_SCENARIO:-scenario}.log" 2>&1 &
	TIERD_PID=$!
	wait_for_socket "${TIERD_SOCKET:-/run/tierd/tierd.sock}" 30
}

# stop_tierd: SIGTERM, then waits up to 10 s for a clean exit; fails otherwise, after
# printing where each of tierd's threads is (state, wchan, kernel stack), the end of its
# log and of the kernel's, and killing it so the next scenario starts clean.
stop_tierd() {
	kill -TERM "$TIERD_PID"
	_st_left=100
	until tierd_gone; do
		if [ "$_st_left" -le 0 ]; then
			tierd_where "$TIERD_PID" >&2
			kill -KILL "$TIERD_PID" 2>/dev/null
			fail "tierd did not stop within 10 s of SIGTERM"
		fi
		_st_left=$((_st_left - 1))
		sleep 0.1
	done
}
tierd_gone() { ! kill -0 "$TIERD_PID" 2>/dev/null; }

# tierd_where PID: the state of every thread of PID (comm, state, wchan, kernel stack),
# the last lines of tierd's log and of the kernel log: what a hang report needs.
tierd_where() {
	echo "--- threads of $1"
	for _t in /proc/"$1"/task/*; do
		[ -e "$_t/comm" ] || continue
		# One line per thread: tid, name, state, wchan, then its kernel stack innermost first.
		echo "${_t##*/} $(cat "$_t/comm" 2>/dev/null) $(awk '{ print $3 }' "$_t/stat" 2>/dev/null)" \
			"wchan=$(cat "$_t/wchan" 2>/dev/null) stack: $(sed 's/^\[<[0-9a-f]*>\] //; s/+0x.*//' "$_t/stack" 2>/dev/null | head -n 8 | tr '\n' ' ')"
	done
	echo "--- last lines of the tierd logs in /out"
	# shellcheck disable=SC2012 # newest first; the names are tierd-<scenario>.log
	for _l in $(ls -t /out/tierd-*.log 2>/dev/null | head -n 1); do
		echo "$_l:"
		tail -n 12 "$_l" | sed "s/$(printf '\033')\[[0-9;]*m//g"
	done
	echo "--- dmesg"
	dmesg | tail -n 8
}

# wait_backends: the tiering thread publishes sampling status once every backend
# has tried to load (BPF verification takes seconds under TCG).
wait_backends() {
	wait_until 120 "sampling backends not reported" backends_reported
}
backends_reported() { [ "$(tierctl --json status | jget sampling.backends)" = 3 ]; }

# hintbench_run TAG ARGS...: runs hintbench with RESULT keys prefixed TAG., keeps its
# output in /tmp/hb-TAG.out and prints it; fails the scenario if hintbench fails.
hintbench_run() {
	_tag=$1
	shift
	hintbench --tag "$_tag" "$@" >"/tmp/hb-$_tag.out" 2>&1 ||
		{ cat "/tmp/hb-$_tag.out"; fail "hintbench ($_tag) failed"; }
	cat "/tmp/hb-$_tag.out"
}

# hintbench_figure TAG KEY: the value of RESULT TAG.KEY from hintbench_run's output.
hintbench_figure() {
	sed -n "s/^RESULT $1\.$2=//p" /tmp/hb-"$1".out
}

# start_hotset MOVE_S OUT [ARGS...]: hotset (32 MiB hot of 512 MiB, moved every MOVE_S
# s; more hotset ARGS if given) in the background (under `taskset $HOTSET_TASKSET` when
# that is set), state in /tmp/hot.state, output in OUT; waits until it runs. Its pid is
# HOTSET_PID.
start_hotset() {
	_move=$1 _out=$2
	shift 2
	# An earlier scenario's state file would pass the wait below at once.
	rm -f /tmp/hot.state
	# shellcheck disable=SC2086 # HOTSET_TASKSET is taskset's arguments, split on purpose
	${HOTSET_TASKSET:+taskset $HOTSET_TASKSET} hotset run --mb 512 --hot-mb 32 --move-s "$_move" \
		--state /tmp/hot.state "$@" >"$_out" &
	# shellcheck disable=SC2034 # read by the scenarios
	HOTSET_PID=$!
	wait_until 120 "hotset did not start" test -e /tmp/hot.state
}

# start_memhold OUT ARGS...: memhold ARGS in the background, output in OUT; waits until
# it has placed and checksummed its memory. Sets MEMHOLD_PID and MEMHOLD_RANGE (its
# START-END, as tierctl --range takes it).
start_memhold() {
	_out=$1
	shift
	: >"$_out"
	memhold "$@" >"$_out" &
	# shellcheck disable=SC2034 # read by the scenarios
	MEMHOLD_PID=$!
	wait_until 60 "memhold did not start" grep -q checksum "$_out"
	# shellcheck disable=SC2034 # read by the scenarios
	MEMHOLD_RANGE=$(sed -n 's/^range=\([^ ]*\).*/\1/p' "$_out")
}

# kdamond_pid: the kthread of the running kdamond with a vaddr context (tierd's), or
# nothing.
kdamond_pid() {
	for d in /sys/kernel/mm/damon/admin/kdamonds/[0-9]*; do
		[ -e "$d/state" ] || continue
		if [ "$(cat "$d/state" 2>/dev/null)" = on ] && [ "$(cat "$d/contexts/0/operations" 2>/dev/null)" = vaddr ]; then
			cat "$d/pid" 2>/dev/null
			return
		fi
	done
}

# thread_ticks: CPU ticks per tierd thread name ("name ticks"), and of the kernel's
# kdamonds, read by one awk (a process per thread would take seconds with tierd's
# connection threads).
thread_ticks() {
	awk '{
		c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) [^)]*$/, "", c)
		r = $0; sub(/.*\) /, "", r); split(r, f, " ")
		if (FILENAME ~ "^/proc/'"$TIERD_PID"'/task/" || c ~ /^kdamond/) print c, f[12] + f[13]
	}' /proc/"$TIERD_PID"/task/*/stat /proc/[0-9]*/stat 2>/dev/null || true
}

# busiest BEFORE AFTER [N]: the N (6) busiest threads between two thread_ticks files.
busiest() {
	awk 'NR == FNR { b[$1] += $2; next } { a[$1] += $2 } END { for (n in a) if (a[n] - b[n] > 0) printf "%s=%d\n", n, a[n] - b[n] }' "$1" "$2" |
		sort -t= -k2 -nr | head -n "${3:-6}" | tr '\n' ' '
}

# mooncake_replay_arm TAG MOVER [TIERD_CONFIG]: bench-tiering's Mooncake KV replay (1 GiB
# pool of 256 KiB blocks, 25 ms steps, 40 s) as one arm.sh arm, tierd started with
# TIERD_CONFIG when given (bench-cost's arms differ only in that file).
mooncake_replay_arm() {
	if [ -n "${3:-}" ]; then export TIERD_BENCH_CONFIG="$3"; else unset TIERD_BENCH_CONFIG; fi
	sh /tierd/peers/arm.sh --tag "$1" "$2" kvreplay --trace /tierd/traces/mooncake.jsonl \
		--pool-mb 1024 --block-kib 256 --compress 2 --step-ms 25 --seconds 40
	unset TIERD_BENCH_CONFIG
}
