#!/usr/bin/env bash
# The installable pieces on the host, as an engine's developer meets them (issue 16.6 and
# the host half of 16.5), in about a minute once the release build exists:
#   1. `make install PREFIX=<tmp>` puts libtierd.so.N (SONAME libtierd.so.N, .so links),
#      libtierd.a, tierd.h and tierd.pc in place; the C example builds with
#      `pkg-config --cflags --libs tierd` (and --static) from that tree and records
#      libtierd.so.N as NEEDED; `make uninstall` removes all of it.
#   2. `pip install --no-index clients/python` in a fresh venv (offline: the build
#      backend needs nothing) gives a package that carries libtierd.so and loads it
#      from its own directory; the Python tests pass from the venv.
#   3. A tierd with client.socket_group set: a non-root user in the group runs the C
#      example and the Python example; a user outside the group is refused with EACCES
#      and an error naming the socket group.
#   4. With --deb: `make deb`, its listing and conffiles, tests/deb-install.sh (dpkg -i in
#      a throwaway overlay root, tierd started from the unit's command line); with
#      --lintian also lintian (slow: not in tests/run-all.sh).
# Needs root (setpriv to the scratch uids), gcc, pkg-config, python3 with venv.
# Ends with "packaging: N passed, N failed".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
rel=$target/release
with_deb=0 with_lintian=0
for arg in "$@"; do
  case $arg in
  --deb) with_deb=1 ;;
  --lintian) with_deb=1 with_lintian=1 ;;
  *)
    echo "usage: tests/packaging.sh [--deb] [--lintian]" >&2
    exit 2
    ;;
  esac
done
# Scratch credentials: the engine user is in GID, the outsider is not.
GID=40011 ENGINE=40012 OUTSIDER=40013

passed=0 failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # check NAME CMD...: runs CMD, counts it
  local name=$1
  shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}

# $CARGO_PACKAGES: what to build (and what make builds); tests/run-all.sh sets
# --workspace so nothing is rebuilt after its own workspace build.
export CARGO_PACKAGES=${CARGO_PACKAGES:--p tierd -p tierctl -p tierd-c}
# shellcheck disable=SC2086 # a list of cargo arguments
nice -n 10 cargo build --release -q $CARGO_PACKAGES
tmp=$(mktemp -d /tmp/tierd-packaging.XXXXXX)
chmod 0755 "$tmp" # the scratch users reach the sockets, the example and the venv
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
soversion=$(sed -n 's/^#define TIERD_SOVERSION \([0-9]*\).*/\1/p' clients/c/include/tierd.h)
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)

# --- 1. make install: libtierd, header, pkg-config -------------------------------------
prefix=$tmp/prefix
make --no-print-directory install PREFIX="$prefix" SYSCONFDIR="$prefix/etc" >"$tmp/install.log"
lib=$prefix/lib
check "libtierd.so.$version has SONAME libtierd.so.$soversion" \
  bash -c "readelf -d '$lib/libtierd.so.$version' | grep -q 'SONAME.*\[libtierd.so.$soversion\]'"
check "libtierd.so -> libtierd.so.$soversion -> libtierd.so.$version" \
  bash -c "[[ \$(readlink '$lib/libtierd.so') == libtierd.so.$soversion && \
    \$(readlink '$lib/libtierd.so.$soversion') == libtierd.so.$version ]]"
check "libtierd.a, tierd.h, tierd.pc installed" \
  test -f "$lib/libtierd.a" -a -f "$prefix/include/tierd.h" -a -f "$lib/pkgconfig/tierd.pc"
export PKG_CONFIG_PATH=$lib/pkgconfig
check "pkg-config: version $version, -I/-L under the prefix" \
  bash -c "[[ \$(pkg-config --modversion tierd) == '$version' && \
    \$(pkg-config --cflags --libs tierd | xargs) == '-I$prefix/include -L$lib -ltierd' ]]"
mkdir -p "$tmp/bin"
cp clients/c/examples/kvcache.c "$tmp/kvcache.c"
# shellcheck disable=SC2046 # pkg-config's output is a word list
check "C example builds with pkg-config --cflags --libs tierd" \
  gcc -std=c11 -Wall -Wextra -Werror -O2 "$tmp/kvcache.c" -o "$tmp/bin/kvcache" \
  $(pkg-config --cflags --libs tierd) -Wl,-rpath,"$lib"
check "the example needs libtierd.so.$soversion (not libtierd.so)" \
  bash -c "readelf -d '$tmp/bin/kvcache' | grep -q 'NEEDED.*\[libtierd.so.$soversion\]'"
# shellcheck disable=SC2046
check "C example builds with pkg-config --static (libtierd.a)" \
  gcc -std=c11 -Wall -Wextra -Werror -O2 "$tmp/kvcache.c" -o "$tmp/bin/kvcache-static" \
  -I"$prefix/include" "$lib/libtierd.a" $(pkg-config --static --libs-only-l tierd | sed 's/-ltierd//')
unset PKG_CONFIG_PATH

# --- 2. the wheel in a fresh venv ------------------------------------------------------
python3 -m venv "$tmp/venv"
py=$tmp/venv/bin/python
check "pip install --no-index clients/python (fresh venv, offline)" \
  bash -c "'$py' -m pip install -q --no-index --disable-pip-version-check clients/python \
    >'$tmp/pip.log' 2>&1 || { cat '$tmp/pip.log'; exit 1; }"
libpath=$("$py" -c 'import tierd; tierd.load_library(); print(tierd._lib._name)' 2>&1 || true)
check "the package loads libtierd.so from its own directory ($libpath)" \
  bash -c "[[ '$libpath' == '$tmp/venv/'*'/site-packages/tierd/libtierd.so' ]]"

# --- 3. a tierd with socket_group, engine and outsider ---------------------------------
d=$tmp/run
mkdir -p "$d"
chmod 0755 "$d"
cat >"$d/tierd.toml" <<TOML
[daemon]
socket = "$d/tierd.sock"
state_dir = "$d/state"
socket_group = "$GID"
[client]
socket = "$d/client.sock"
socket_group = "$GID"
[metrics]
enabled = false
TOML
"$rel/tierd" --config "$d/tierd.toml" 2>"$d/tierd.log" &
pid=$!
for _ in $(seq 100); do [[ -S $d/client.sock ]] && break; sleep 0.1; done
if [[ ! -S $d/client.sock ]]; then
  cat "$d/tierd.log"
  echo "packaging: tierd did not start"
  exit 1
fi
check "client socket is $(stat -c '%a %g' "$d/client.sock") (0660, group $GID)" \
  test "$(stat -c '%a %g' "$d/client.sock")" = "660 $GID"
engine=(setpriv --reuid "$ENGINE" --regid "$ENGINE" --groups "$GID" --)
outsider=(setpriv --reuid "$OUTSIDER" --regid "$OUTSIDER" --clear-groups --)
cp clients/python/examples/basic.py "$tmp/basic.py"
check "engine user (uid $ENGINE, group $GID): C example" \
  bash -c "${engine[*]} '$tmp/bin/kvcache' '$d/client.sock' | tail -n 1 | grep -q 'kvcache: ok'"
check "engine user: static C example" \
  bash -c "${engine[*]} '$tmp/bin/kvcache-static' '$d/client.sock' | tail -n 1 | grep -q 'kvcache: ok'"
check "engine user: Python example from the venv" \
  bash -c "cd '$tmp' && HOME='$tmp' ${engine[*]} '$py' '$tmp/basic.py' '$d/client.sock' >'$tmp/basic.log' 2>&1 || { cat '$tmp/basic.log'; exit 1; }"
out=$("${outsider[@]}" "$tmp/bin/kvcache" "$d/client.sock" 2>&1 || true)
check "outsider: C example refused ($out)" \
  bash -c "[[ '$out' == *'Permission denied'* ]]"
out=$(
  cd "$tmp"
  HOME=$tmp "${outsider[@]}" "$py" "$tmp/basic.py" "$d/client.sock" 2>&1 | tail -n 1
) || true
check "outsider: Python refused ($out)" \
  bash -c "[[ '$out' == *'Permission denied'*'socket_group'* ]]"
# The package's own tests, from the venv (a copy: the source tree's tierd must not shadow it).
mkdir -p "$tmp/pytests/tests"
cp clients/python/tests/test_client.py "$tmp/pytests/tests/"
check "Python tests from the venv" \
  bash -c "cd '$tmp/pytests' && TIERD_CLIENT_SOCKET='$d/client.sock' '$py' -m unittest discover -s tests \
    >'$tmp/unittest.log' 2>&1 || { cat '$tmp/unittest.log'; exit 1; }"

# --- make uninstall -------------------------------------------------------------------
make --no-print-directory uninstall PREFIX="$prefix" SYSCONFDIR="$prefix/etc" >/dev/null
left=$(find "$prefix" -type f -o -type l | grep -v '/etc/tierd/tierd.toml$' || true)
check "make uninstall leaves only the config${left:+ (left: $left)}" test -z "$left"

# --- 4. the Debian package -------------------------------------------------------------
if ((with_deb)); then
  deb=$(make --no-print-directory deb | tail -n 1)
  check "make deb built $deb" test -f "$deb"
  dpkg-deb -c "$deb" | awk '{ print $6 }' >"$tmp/deb.list"
  for f in usr/bin/tierd usr/bin/tierctl '(usr/)?lib/systemd/system/tierd.service' \
    etc/tierd/tierd.toml usr/share/man/man1/tierd.1.gz usr/share/man/man1/tierctl.1.gz \
    usr/share/bash-completion/completions/tierctl usr/share/zsh/site-functions/_tierd \
    "usr/lib/[^/]+/libtierd.so.$soversion" "usr/lib/[^/]+/libtierd.so" \
    "usr/lib/[^/]+/libtierd.a" usr/include/tierd.h "usr/lib/[^/]+/pkgconfig/tierd.pc"; do
    check "deb holds /$f" grep -Eq "^\./$f\$" "$tmp/deb.list"
  done
  check "deb conffiles: /etc/tierd/tierd.toml" \
    bash -c "dpkg-deb -I '$deb' conffiles | grep -qx /etc/tierd/tierd.toml"
  check "deb installs, runs and purges in a throwaway root (tests/deb-install.sh)" \
    bash tests/deb-install.sh "$deb"
  if ((with_lintian)); then # a minute or two: not in tests/run-all.sh
    check "lintian: no errors or warnings" bash -c "lintian --fail-on error,warning '$deb'"
  fi
fi

echo "packaging: $passed passed, $failed failed"
((failed == 0))
