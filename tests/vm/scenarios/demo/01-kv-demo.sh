#!/bin/sh
# The README's main job, for a newcomer: one KV-cache workload run twice on the two-tier
# VM, first managed by tierd on its embedded defaults, then with no page mover at all.
# Lines starting "DEMO| " are what tests/vm/demo.sh shows on the terminal: the tiers as
# tierd sees them, the share of the workload's pool on the fast node every 5 s in both
# runs, and the figures that matter (block reads served from the fast node, against a
# placement that knew the future; what tierd moved and the CPU it used). The full
# `tierctl status`, `placement` and `heat` at about 10, 20 and 30 s of tierd's run, and
# every RESULT line, go to the console log only.
#
# The workload is kvreplay (bench/src/bin/kvreplay.rs): a host KV cache of 256 KiB
# blocks, all first on the slow node, serving the Mooncake conversation trace at 2x
# speed with a decode step every 25 ms that reads every block of every running request.
# tierd-timeout: 360
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

trace=/tierd/traces/mooncake.jsonl
pool_mb=768
seconds=40
every_s=5
[ -r "$trace" ] || cannot_run "no $trace (tests/vm/demo.sh passes the trace in)"
# tierd is the only mover; numa_balancing's default mode would promote pages too.
echo 0 >/proc/sys/kernel/numa_balancing

# say TEXT...: a line for the newcomer's terminal (demo.sh keeps only these).
say() { echo "DEMO| $*"; }

# uptime_cs: time since boot in hundredths of a second.
uptime_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }

# pool_share PID START END: "<percent> <MiB>" of PID's pages in [START, END) (hex
# addresses) that are on node0, from numa_maps; "? 0" when none is found.
pool_share() {
	awk -v s="$2" -v e="$3" '
		{
			a = ("0x" $1) + 0
			if (a < s + 0 || a >= e + 0) next
			kb = 4
			for (i = 2; i <= NF; i++) if ($i ~ /^kernelpagesize_kB=/) kb = substr($i, 19)
			for (i = 2; i <= NF; i++) if ($i ~ /^N[0-9]+=/) {
				split(substr($i, 2), f, "=")
				all += f[2] * kb
				if (f[1] == 0) fast += f[2] * kb
			}
		}
		END {
			if (all == 0) print "? 0"
			else printf "%d %d\n", fast * 100 / all + 0.5, fast / 1024
		}' "/proc/$1/numa_maps"
}

# cpu_ticks PID: user + system time of PID's threads, in clock ticks (1/100 s).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# figure TAG KEY: the value of kvreplay's RESULT TAG.KEY.
figure() { sed -n "s/^RESULT $1\.$2=//p" "/tmp/kv-$1.out"; }

# dump_tierctl PID: tierd's own views of PID for the console log (not the terminal),
# at about 10, 20 and 30 s; run in the background so the samples keep their times.
dump_tierctl() {
	for _d in 10 20 30; do
		sleep 10
		kill -0 "$1" 2>/dev/null || return 0
		echo "== about t=${_d}s: tierctl status"
		tierctl status || true
		echo "== tierctl placement --pid $1"
		tierctl placement --pid "$1" || true
		echo "== tierctl heat --pid $1 --top 8MiB"
		tierctl heat --pid "$1" --top 8MiB || true
	done
}

# run_arm TAG: runs the workload with tag TAG (kvreplay's RESULT prefix); with tierd
# running (TIERD_PID set), tierd manages it. Samples the pool's share on node0 about
# every every_s seconds into /tmp/share-TAG (one "<seconds>s:<percent>%" word per
# sample, at its measured time) and says each sample.
run_arm() {
	_tag=$1 _go=/tmp/go-$1 _out=/tmp/kv-$1.out
	rm -f "$_go"
	: >"$_out"
	_oracle=
	[ -z "${TIERD_PID:-}" ] || _oracle=--oracle
	# shellcheck disable=SC2086 # $_oracle is one flag or none
	kvreplay --trace "$trace" --pool-mb "$pool_mb" --block-kib 256 --compress 2 --step-ms 25 \
		--seconds "$seconds" $_oracle --go "$_go" --tag "$_tag" >"$_out" 2>&1 &
	_kv=$!
	_i=0
	until grep -q '^ready ' "$_out"; do
		kill -0 $_kv 2>/dev/null || { cat "$_out"; fail "kvreplay exited before it was ready"; }
		_i=$((_i + 1))
		[ $_i -lt 3000 ] || fail "kvreplay not ready within 300 s"
		sleep 0.1
	done
	_pool=$(sed -n 's/^ready .* pool=\(0x[0-9a-f]*-0x[0-9a-f]*\) .*/\1/p' "$_out")
	[ -n "$_pool" ] || fail "no pool range in kvreplay's ready line: $(grep '^ready ' "$_out")"
	_start=${_pool%-*} _end=${_pool#*-}
	_dumper=
	if [ -n "${TIERD_PID:-}" ]; then
		tierctl manage --pid $_kv
		_cpu0=$(cpu_ticks "$TIERD_PID")
		dump_tierctl $_kv &
		_dumper=$!
	fi
	: >"/tmp/share-$_tag"
	_t0=$(uptime_cs)
	touch "$_go"
	_k=1
	while [ $((_k * every_s)) -lt "$seconds" ]; do
		_wait=$((_t0 + _k * every_s * 100 - $(uptime_cs)))
		[ $_wait -le 0 ] || sleep "$((_wait / 100)).$(printf %02d $((_wait % 100)))"
		kill -0 $_kv 2>/dev/null || break
		_at=$((($(uptime_cs) - _t0 + 50) / 100))
		# Two words, percent and MiB; "? 0" if the process went away meanwhile.
		# shellcheck disable=SC2046
		set -- $(pool_share $_kv "$_start" "$_end" 2>/dev/null || true) "?" 0
		printf ' %ss:%s%%' "$_at" "$1" >>"/tmp/share-$_tag"
		_line=$(printf '%4d s   %3s%% of the pool on node0 (%d MiB)' "$_at" "$1" "$2")
		if [ -n "${TIERD_PID:-}" ]; then
			tierctl --json status >/tmp/status.json 2>/dev/null || true
			_up=$(jget managed.0.promoted_pages </tmp/status.json 2>/dev/null || echo '?')
			_down=$(jget managed.0.demoted_pages </tmp/status.json 2>/dev/null || echo '?')
			# 4 KiB pages (the VM's), 256 to the MiB.
			[ "$_up" = '?' ] || _up=$((_up / 256))
			[ "$_down" = '?' ] || _down=$((_down / 256))
			_line="$_line   tierd so far: $_up MiB up, $_down MiB down"
		fi
		say "$_line"
		_k=$((_k + 1))
	done
	wait $_kv || { cat "$_out"; fail "kvreplay ($_tag) failed"; }
	if [ -n "${TIERD_PID:-}" ]; then
		TIERD_CPU_S=$(echo "$_cpu0 $(cpu_ticks "$TIERD_PID")" | awk '{ printf "%.1f", ($2 - $1) / 100 }')
		# Everything tierd moved since it started (this run only), both directions.
		TIERD_MOVED_MIB=$(tierctl metrics |
			awk '$1 == "tierd_migrated_bytes_total" { printf "%d", $2 / 1048576 }' || true)
	fi
	[ -z "$_dumper" ] || wait "$_dumper" || true
	cat "$_out"
	[ -n "$(figure "$_tag" kv_fast_hit_fraction)" ] || fail "kvreplay ($_tag) printed no hit fraction"
}

start_tierd
wait_backends
say "The VM's memory, as tierd sees it (tierctl tiers): node0 is fast and has the CPUs,"
say "node1 is slower memory without CPUs, in a lower tier, the way Linux shows CXL memory."
tierctl tiers | sed 's/^/DEMO|   /'
say ""
say "Workload: kvreplay, a host KV cache of ${pool_mb} MiB (256 KiB blocks, all first on node1)"
say "serving the Mooncake conversation trace: a decode step every 25 ms reads every block of"
say "every running request, for ${seconds} s. Run 1 of 2: tierd manages it (tierctl manage --pid)."
run_arm demo
stop_tierd
TIERD_PID=
say ""
say "Run 2 of 2: the same workload with no page mover (tierd stopped, numa_balancing 0)."
run_arm demo_none

steps() { echo "$(figure "$1" steps_done) of $(figure "$1" steps_planned)"; }
pct() { echo "$1" | awk '{ printf "%.0f%%", $1 * 100 }'; }
say ""
# timeline TAG: the samples of /tmp/share-TAG as "  <s>s <percent>" columns.
timeline() { awk '{ for (i = 1; i <= NF; i++) { split($i, f, ":"); printf "  %3s %4s", f[1], f[2] } }' "/tmp/share-$1"; }
say "Share of the pool on the fast node0 over time (seconds since the workload started):"
say "$(printf '  %-9s' tierd)$(timeline demo)"
say "$(printf '  %-9s' 'no mover')$(timeline demo_none)"
say "Block reads served from node0: tierd $(pct "$(figure demo kv_fast_hit_fraction)")," \
	"no mover $(pct "$(figure demo_none kv_fast_hit_fraction)");"
say "  a placement that knew the future (Belady's MIN on tierd's reads, same room):" \
	"$(pct "$(figure demo kv_oracle_belady)")."
say "Decode steps run in the ${seconds} s: tierd $(steps demo), no mover $(steps demo_none)."
say "In run 1 tierd moved ${TIERD_MOVED_MIB:-?} MiB (up and down) and used ${TIERD_CPU_S} s of the VM's (emulated) CPU."
