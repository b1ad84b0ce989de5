#!/bin/sh
# SIGTERM stops tierd cleanly: exit status 0, socket removed.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

pid=$(cat /tmp/tierd.pid)
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "tierd did not stop within 10 s"; sleep 0.1
done
[ ! -e /run/tierd/tierd.sock ] || fail "socket left behind"
tail -n 5 /out/tierd.log
