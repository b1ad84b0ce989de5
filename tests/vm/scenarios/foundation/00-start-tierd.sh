#!/bin/sh
# Starts tierd with its embedded defaults (no /etc/tierd/tierd.toml in the guest) for
# the rest of the group; its log goes to /out/tierd.log.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

mkdir -p /out
RUST_LOG=info tierd >/out/tierd.log 2>&1 &
echo $! >/tmp/tierd.pid
wait_for_socket /run/tierd/tierd.sock 30
tierctl status
tierctl status --json >/tmp/status.json
check_eq mode tiering "$(jget mode </tmp/status.json)"
