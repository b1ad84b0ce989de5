#!/usr/bin/env bash
# Installs the .deb into a throwaway copy of this Debian host and runs tierd from it:
#   bash tests/deb-install.sh target/debian/tierd_<version>_<arch>.deb
# The copy is an overlay of / with a tmpfs upper layer, in a private mount namespace
# (unshare -m), entered with chroot: dpkg writes only to the tmpfs, which goes away with
# the namespace, and the host's own dpkg database, /etc and systemd are never touched.
# /run in the copy is a fresh tmpfs, so postinst sees no running systemd and only records
# the unit's enablement (as in a container).
# Inside: dpkg -i, the unit verified and its ExecStartPre/ExecStart run with
# client.socket_group set in the installed conffile, the C example built with
# `pkg-config --cflags --libs tierd` against the installed /usr and the Python example from
# the wheel in a fresh venv, both run by a non-root user in the group, the C example
# refused for one outside it; then dpkg --purge leaves nothing.
# Needs root and overlayfs. Ends with "deb-install: N passed, N failed".
set -euo pipefail
if [[ ${1:-} != --inside ]]; then
  deb=$(realpath "${1:?usage: tests/deb-install.sh DEB}")
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  work=$(mktemp -d /tmp/tierd-deb-install.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  cp "$deb" "$work/tierd.deb"
  cp "$root/clients/c/examples/kvcache.c" "$root/clients/python/examples/basic.py" "$work/"
  # The Python client as an engine gets it: a wheel (carrying the release libtierd.so).
  TIERD_WHEEL_LIBRARY=$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")/release/libtierd.so \
    python3 -m pip wheel -q --no-index --no-deps --disable-pip-version-check \
    -w "$work/wheel" "$root/clients/python" >"$work/wheel.log" 2>&1 || {
    cat "$work/wheel.log"
    exit 1
  }
  cp "${BASH_SOURCE[0]}" "$work/inside.sh"
  # shellcheck disable=SC2016 # expanded by the inner bash
  unshare -m --propagation private bash -c '
    set -euo pipefail
    w=$1
    mkdir "$w/layers" "$w/merged"
    mount -t tmpfs -o size=1g tmpfs "$w/layers"
    mkdir "$w/layers/upper" "$w/layers/work"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$w/layers/upper,workdir=$w/layers/work" "$w/merged"
    m=$w/merged
    mount -t proc proc "$m/proc"
    mount --rbind /sys "$m/sys"
    mount --rbind /dev "$m/dev"
    mount -t tmpfs tmpfs "$m/run"
    mount -t tmpfs tmpfs "$m/tmp"
    cp "$w/tierd.deb" "$w/kvcache.c" "$w/basic.py" "$w/inside.sh" "$w"/wheel/*.whl "$m/tmp/"
    exec chroot "$m" bash /tmp/inside.sh --inside
  ' bash "$work"
  exit 0 # a failure above exits through set -e; the trap removes $work either way
fi

# --- inside the throwaway root ---------------------------------------------------------
GID=40021 ENGINE=40022 OUTSIDER=40023
pid=
# tierd must not outlive the script: it would keep the throwaway mount namespace alive.
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null' EXIT
passed=0 failed=0
check() {
  local name=$1
  shift
  if "$@"; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    failed=$((failed + 1))
  fi
}
cd /tmp
check "dpkg -i" bash -c 'dpkg -i /tmp/tierd.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 1; }'
check "dpkg -s: installed" bash -c "dpkg -s tierd | grep -q '^Status: install ok installed'"
unit=$(dpkg -L tierd | grep '/systemd/system/tierd.service$')
check "unit enabled by postinst ($unit)" \
  test -L /etc/systemd/system/multi-user.target.wants/tierd.service
check "systemd-analyze verify $unit" \
  bash -c "systemd-analyze verify '$unit' 2>&1 | grep -v 'Failed to .* cgroup\|Cannot .*journal' | { ! grep -q .; }"
check "ldconfig knows libtierd.so.0" bash -c "ldconfig -p | grep -q 'libtierd.so.0 '"
check "man tierd (gzipped page)" test -f /usr/share/man/man1/tierd.1.gz

# The unit's commands, with the conffile given a socket group as an admin would.
sed -i "/^\[client\]/,/^\[/ s/^# *socket_group = .*/socket_group = \"$GID\"/" /etc/tierd/tierd.toml
check "conffile edited: [client] socket_group = $GID" grep -q "^socket_group = \"$GID\"" /etc/tierd/tierd.toml
pre=$(sed -n 's/^ExecStartPre=//p' "$unit")
start=$(sed -n 's/^ExecStart=//p' "$unit")
check "ExecStartPre: $pre" bash -c "$pre >/tmp/check.log 2>&1 || { cat /tmp/check.log; exit 1; }"
mkdir -p /run/tierd # RuntimeDirectory=tierd
# shellcheck disable=SC2086 # the unit's command line
$start 2>/tmp/tierd.log &
pid=$!
sock=/run/tierd/client.sock
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.1; done
check "tierd from the package is up ($sock, $(stat -c '%a %g' $sock 2>/dev/null))" \
  test "$(stat -c '%a %g' $sock 2>/dev/null)" = "660 $GID"
check "tierctl status" bash -c 'tierctl status >/dev/null'

# shellcheck disable=SC2046
check "C example builds with pkg-config --cflags --libs tierd (installed /usr)" \
  gcc -std=c11 -Wall -Wextra -Werror -O2 /tmp/kvcache.c -o /tmp/kvcache $(pkg-config --cflags --libs tierd)
check "engine user in the group: kvcache ok" \
  bash -c "setpriv --reuid $ENGINE --regid $ENGINE --groups $GID -- /tmp/kvcache $sock | tail -n 1 | grep -q 'kvcache: ok'"
check "the wheel in a fresh venv (Debian's python3, offline)" \
  bash -c '/usr/bin/python3 -m venv /tmp/venv && /tmp/venv/bin/pip install -q --no-index \
    --disable-pip-version-check /tmp/tierd-*.whl >/tmp/pip.log 2>&1 || { cat /tmp/pip.log; exit 1; }'
check "engine user in the group: Python example from the venv" \
  bash -c "cd /tmp && HOME=/tmp setpriv --reuid $ENGINE --regid $ENGINE --groups $GID -- \
    /tmp/venv/bin/python /tmp/basic.py $sock >/tmp/basic.log 2>&1 || { cat /tmp/basic.log; exit 1; }"
out=$(setpriv --reuid $OUTSIDER --regid $OUTSIDER --clear-groups -- /tmp/kvcache $sock 2>&1 || true)
check "outsider refused: $out" bash -c "[[ '$out' == *'Permission denied'* ]]"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

check "dpkg --purge" bash -c 'dpkg --purge tierd >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; exit 1; }'
check "purge removed files and the conffile" \
  bash -c '! test -e /usr/bin/tierd && ! test -e /etc/tierd/tierd.toml && ! ldconfig -p | grep -q libtierd'
echo "deb-install: $passed passed, $failed failed"
((failed == 0))
