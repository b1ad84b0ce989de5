#!/usr/bin/env bash
# Builds on the host what tests/vm/scenarios/bench-pinned/02-nonroot-engine.sh runs in the
# VM as an unprivileged engine (issue 16's second must-show). The VM is a busybox
# initramfs without a compiler, pkg-config or Python, so the builds happen here, into one
# directory that run.sh copies to the same path in the guest (the example's rpath and the
# venv name that path):
#   OUT/prefix       `make install PREFIX=OUT/prefix`, kept: libtierd.so.N, tierd.h, tierd.pc
#   OUT/bin/kvcache  clients/c/examples/kvcache.c built with
#                    `pkg-config --cflags --libs tierd` from that tree (rpath into it)
#   OUT/venv         a fresh venv of Debian's python3.11 with
#                    `pip install --no-index clients/python` (the wheel carries libtierd.so)
#   OUT.pylib        python3.11's standard library without its tests and static library,
#                    to be the guest's /usr/lib/python3.11
#   OUT/examples     the Python examples (basic.py, offload_connector.py)
#   OUT/deb          the .deb of `make deb` (target/debian/, rebuilt) unpacked with
#                    `dpkg-deb -x`: the guest starts tierd from the package's binary,
#                    default config and unit command line (it has no dpkg)
# Prints the run.sh arguments that carry all of it in (plus util-linux setpriv: busybox's
# cannot change uid). Needs the release build, gcc, pkg-config, python3.11 with venv.
# Usage: tests/vm/nonroot-inputs.sh [OUT]   (default: target/nonroot, an absolute path)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out=$(realpath -m "${1:-target/nonroot}")
py=/usr/bin/python3.11
[[ -x $py ]] || {
  echo "nonroot-inputs: $py is needed (Debian's python3.11)" >&2
  exit 2
}
# The release build the VM groups use (--workspace): make's own default package list
# unifies dependency features differently and would rebuild the binaries.
export CARGO_PACKAGES=--workspace
rm -rf "$out" "$out.pylib"
mkdir -p "$out/bin" "$out/examples"
make --no-print-directory install PREFIX="$out/prefix" SYSCONFDIR="$out/prefix/etc" >"$out/install.log"
export PKG_CONFIG_PATH=$out/prefix/lib/pkgconfig
# shellcheck disable=SC2046 # pkg-config's output is a word list
gcc -std=c11 -Wall -Wextra -Werror -O2 clients/c/examples/kvcache.c -o "$out/bin/kvcache" \
  $(pkg-config --cflags --libs tierd) -Wl,-rpath,"$out/prefix/lib"
echo "pkg-config --cflags --libs tierd: $(pkg-config --cflags --libs tierd | xargs)" >"$out/build.txt"
# The guest needs the library, header and .pc of the tree, not tierd's own binaries,
# man pages, unit or the 25 MB static library.
rm -rf "$out/prefix/bin" "$out/prefix/share" "$out/prefix/etc" "$out/prefix/lib/systemd" \
  "$out/prefix/lib/libtierd.a"
"$py" -m venv "$out/venv"
"$out/venv/bin/python" -m pip install -q --no-index --disable-pip-version-check clients/python \
  >"$out/pip.log" 2>&1 || {
  cat "$out/pip.log"
  exit 1
}
stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
mkdir -p "$out.pylib"
(cd "$stdlib" && tar --exclude=./test --exclude='./config-*' --exclude=./idlelib \
  --exclude=./tkinter --exclude=./lib2to3 -cf - .) | tar -C "$out.pylib" -xf -
cp clients/python/examples/basic.py clients/python/examples/offload_connector.py "$out/examples/"
# Always rebuilt, so the package is this tree's (cargo and cargo-deb skip what is done).
make --no-print-directory deb >"$out/deb.log" 2>&1 || {
  cat "$out/deb.log"
  exit 1
}
debs=(target/debian/tierd_*_amd64.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || {
  echo "nonroot-inputs: expected one package in target/debian, found: ${debs[*]}" >&2
  exit 1
}
dpkg-deb -x "${debs[0]}" "$out/deb"
# Only what starting the daemon needs.
rm -rf "$out/deb/usr/share" "$out/deb/usr/include" "$out/deb/usr/lib"
echo "$(basename "${debs[0]}") ($(stat -c %y "${debs[0]}" | cut -d. -f1))" >"$out/deb.txt"
chmod -R a+rX "$out" "$out.pylib"
echo "--extra-file $out:$out --extra-file $out.pylib:$stdlib" \
  "--extra-file /usr/lib/x86_64-linux-gnu/libffi.so.8:/usr/lib/x86_64-linux-gnu/libffi.so.8" \
  "--extra-file $out/env:/tierd/nonroot.env --extra-bin /usr/bin/setpriv $py" >"$out/run-args"
printf 'NONROOT=%s\nDEB=%s\n' "$out" "$out/deb" >"$out/env"
cat "$out/run-args"
