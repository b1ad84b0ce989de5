#!/bin/sh
# tierd-timeout: 480
# Accuracy: hotset keeps a 32 MiB hot set in 512 MiB and moves it to a random place
# every 8 s. Within 2 s of each move, the hottest 32 MiB `tierctl heat` reports must
# overlap the true hot set with precision and recall >= 0.9 (tierd in monitor-only
# mode, so nothing moves; sampling config at its defaults; heat half-life 400 ms, so
# the old hot set has cooled below the new one by the time of the query).
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

# wait_backends: the tiering thread publishes sampling status once every backend
# has tried to load (BPF verification takes seconds under TCG).
wait_backends() {
	_i=0
	until [ "$(tierctl --json status | jget sampling.backends)" = 3 ]; do
		_i=$((_i + 1))
		[ $_i -lt 240 ] || fail "sampling backends not reported within 120 s"
		sleep 0.5
	done
}

sock=/run/tierd/tierd.sock
moves=6
[ -e /sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds ] || cannot_run "no DAMON sysfs interface"
grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts || mount -t tracefs tracefs /sys/kernel/tracing
mkdir -p /run/tierd
printf '[daemon]\nmonitor_only = true\n[heat]\nhalf_life_ms = 400\n' >/tmp/tierd.toml

uptime_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
seq_of() { awk '{ print $1 }' /tmp/hot.state 2>/dev/null || echo 0; }

tierd --config /tmp/tierd.toml >/out/tierd-accuracy.log 2>&1 &
td=$!
wait_for_socket $sock 60
wait_backends
hotset run --mb 512 --hot-mb 32 --move-s 8 --state /tmp/hot.state >/out/hotset-accuracy.out &
hs=$!
i=0
until [ -e /tmp/hot.state ]; do
	i=$((i + 1))
	[ $i -lt 1200 ] || fail "hotset did not start within 120 s"
	sleep 0.1
done
tierctl manage --pid $hs >/dev/null
echo "managing hotset pid $hs: $(head -n 1 /out/hotset-accuracy.out)"

: >/tmp/scores
last=$(seq_of)
n=0
while [ $n -lt $moves ]; do
	i=0
	while [ "$(seq_of)" = "$last" ]; do
		i=$((i + 1))
		[ $i -lt 300 ] || fail "hotset did not move within 30 s"
		sleep 0.1
	done
	cp /tmp/hot.state /tmp/truth
	last=$(awk '{ print $1 }' /tmp/truth)
	t_move=$(awk '{ print $4 }' /tmp/truth)
	# Ask 1.0 s after the move: tierctl takes up to ~1 s to answer under TCG.
	wait_cs=$((100 - ($(uptime_cs) - t_move)))
	[ $wait_cs -le 0 ] || sleep "$((wait_cs / 100)).$(printf '%02d' $((wait_cs % 100)))"
	tierctl --json heat --pid $hs --top 33554432 >/out/heat-move$last.json
	t_query=$(uptime_cs)
	s=$(hotset score --truth /tmp/truth --heat /out/heat-move$last.json)
	after_ms=$(((t_query - t_move) * 10))
	echo "move $last: $s answered_after_ms=$after_ms"
	[ $after_ms -le 2000 ] || fail "heat answered ${after_ms} ms after the move (> 2 s)"
	echo "$s" >>/tmp/scores
	n=$((n + 1))
done
tierctl heatmap --pid $hs --out /out/heatmap-accuracy.png || echo "heatmap: failed"
tierctl --json status >/out/status-accuracy.json
echo "sampling: interval_ms=$(jget sampling.interval_ms </out/status-accuracy.json) overhead_pct=$(jget sampling.overhead_pct </out/status-accuracy.json)"

# The first move's picture starts from DAMON's cold start; every move counts.
stats=$(tr ' ' '\n' </tmp/scores | awk -F= '
	$1 == "precision" { p += $2; n++; if (pmin == "" || $2 < pmin) pmin = $2 }
	$1 == "recall" { r += $2; if (rmin == "" || $2 < rmin) rmin = $2 }
	END { printf "%.3f %.3f %.3f %.3f\n", p / n, pmin, r / n, rmin }')
set -- $stats
result accuracy_precision_mean "$1"
result accuracy_precision_min "$2"
result accuracy_recall_mean "$3"
result accuracy_recall_min "$4"
kill $hs
kill -TERM $td
wait $td || true
awk -v p="$2" -v r="$4" 'BEGIN { exit !(p >= 0.9 && r >= 0.9) }' ||
	fail "precision min $2 / recall min $4 below 0.9"
echo "ok: precision and recall >= 0.9 at every move"
