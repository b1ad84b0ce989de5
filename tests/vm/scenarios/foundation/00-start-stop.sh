#!/bin/sh
# tierd starts on its embedded defaults (no /etc/tierd/tierd.toml in the guest), finds
# two tiers (tiering mode), and SIGTERM stops it cleanly with its socket removed.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ ! -e /etc/tierd/tierd.toml ] || fail "the guest should have no config file"
start_tierd
tierctl status
tierctl status --json >/tmp/status.json
check_eq mode tiering "$(jget mode </tmp/status.json)"
check_eq tiers 2 "$(jget tiers </tmp/status.json)"
stop_tierd
[ ! -e /run/tierd/tierd.sock ] || fail "socket left behind"
tail -n 3 "/out/tierd-$TIERD_SCENARIO.log"
