#!/bin/sh
# Shared prefix pools and the ownership rule on the two-node VM (hintbench phases
# pool,security): a pool is created once on the slow node (client.pool_tier = "slow",
# the default) and a second connection maps the same memory; registering memory mapped
# only in another process is refused with EFAULT.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

start_tierd
wait_for_socket /run/tierd/client.sock 30
hintbench --tag protocol --phases pool,security >/tmp/ps.out 2>&1 || { cat /tmp/ps.out; fail "pool/security checks failed"; }
cat /tmp/ps.out
check_eq foreign_register_refused 1 "$(sed -n 's/^RESULT protocol.foreign_register_refused=//p' /tmp/ps.out)"
check_eq pool_shared 1 "$(sed -n 's/^RESULT protocol.pool_shared=//p' /tmp/ps.out)"
check_eq pool_node 1 "$(sed -n 's/^RESULT protocol.pool_node=//p' /tmp/ps.out)"
stop_tierd
