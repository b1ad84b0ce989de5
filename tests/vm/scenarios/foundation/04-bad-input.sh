#!/bin/sh
# Bad input gets a clear error and a documented exit code; the daemon keeps running.
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh
start_tierd

expect() { # expect CODE CMD...: runs CMD, checks its exit code, shows its message
	want=$1; shift
	set +e
	out=$("$@" 2>&1); rc=$?
	set -e
	echo "\$ $* -> rc=$rc: $out"
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want"
}

sleep 1000 &
sp=$!
expect 4 tierctl placement --pid 999999
expect 4 tierctl migrate --pid 999999 --to 1
expect 4 tierctl migrate --pid $sp --to 7
expect 4 tierctl migrate --pid $sp --to 1 --range 0x1000-0x2000
expect 2 tierctl migrate --pid $sp --to 1 --range 0x2000-0x1000
expect 2 tierctl placement --pid $sp --range nonsense
expect 2 tierctl manage --pid $sp --policy bogus
expect 4 tierctl unmanage --pid $sp
expect 4 tierctl heat --pid $sp
expect 3 tierctl --socket /tmp/nope.sock status
# A malformed line and an oversized one on the raw socket: error replies, then the
# daemon still answers.
printf 'not json\n' | sockline /run/tierd/tierd.sock >/tmp/bad.out 2>&1 || true
cat /tmp/bad.out
grep -q '"kind":"bad_request"' /tmp/bad.out || fail "malformed line got no bad_request reply"
head -c 70000 /dev/zero | tr '\0' 'x' | sockline /run/tierd/tierd.sock >/tmp/big.out 2>&1 || true
grep -q 'longer than' /tmp/big.out || fail "oversized line got no error"
tierctl status >/dev/null || fail "daemon stopped answering"
kill $sp
