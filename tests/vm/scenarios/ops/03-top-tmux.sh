#!/bin/sh
# `tierctl top` in a real terminal (a detached tmux session) against a live tiering
# daemon while its policy promotes a process: captures the pane twice (saved to
# /out/top-*.txt, printed here; docs/operations.md shows one), checks the frame shows
# both tiers, the process and a non-zero promotion rate, and that `q` quits.
# Needs --extra-bin /usr/bin/tmux --extra-file /lib/terminfo:/lib/terminfo
# --extra-file /usr/lib/locale/C.utf8:/usr/lib/locale/C.utf8.
# tierd-timeout: 240
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh
command -v tmux >/dev/null || cannot_run "tmux missing (--extra-bin /usr/bin/tmux --extra-file /lib/terminfo:/lib/terminfo)"
# busybox sh has no locale; tmux wants a UTF-8 one.
export TERM=xterm LC_ALL=C.UTF-8
rm -f /etc/tierd/tierd.toml # 01 may leave a broken one behind
start_tierd

start_memhold /tmp/memhold.out --mb 128
mpid=$MEMHOLD_PID range=$MEMHOLD_RANGE
tierctl manage --pid $mpid --policy off
tierctl migrate --pid $mpid --to 1 --range "$range"

tmux -f /dev/null new-session -d -s top -x 100 -y 24 "tierctl top"
sleep 2
tmux capture-pane -p -t top >/out/top-1.txt
# The policy now pulls the process back to tier 0 while top watches; capture every 2 s
# until a frame shows the promotions (the worker counts a batch when it completes).
tierctl manage --pid $mpid --policy static
i=0
while :; do
	sleep 2
	tmux capture-pane -p -t top >/out/top-2.txt
	grep -qE 'promotions [1-9][0-9]* pages/s' /out/top-2.txt && break
	i=$((i + 1))
	[ $i -lt 45 ] || { cat /out/top-2.txt; fail "no promotion rate seen in 90 s"; }
done
cat /out/top-1.txt
echo ----
cat /out/top-2.txt
grep -q '^TIER' /out/top-1.txt || fail "no tier table"
grep -qE '^0 +0 ' /out/top-1.txt || fail "no tier 0 row"
grep -qE '^1 +1 ' /out/top-1.txt || fail "no tier 1 row"
grep -qE "^$mpid +memhold +static" /out/top-2.txt || fail "memhold not listed"
tmux send-keys -t top q
i=0
while tmux has-session -t top 2>/dev/null; do i=$((i + 1)); [ $i -lt 50 ] || fail "top did not quit on q"; sleep 0.1; done
echo "ok: q quit tierctl top"
kill $mpid
stop_tierd
