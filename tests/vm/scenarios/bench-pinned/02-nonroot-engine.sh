#!/bin/sh
# Issue 16's second must-show, as far as the VM can show it: an engine running as a
# non-root user in tierd's socket_group. tierd runs from the .deb, unpacked on the host
# (the VM has no dpkg): the package's binary, its default config with the two
# `socket_group` lines uncommented as an operator would (= 40011), checked as the unit's
# ExecStartPre does and started with the unit's ExecStart arguments; uid 40012 (in
# the group) runs the C example built on the host with `pkg-config --cflags --libs
# tierd` from an installed tree (the VM has no compiler) and two Python examples from
# the wheel installed in a fresh venv (basic.py; offload_connector.py: a pinned pool
# registered with REGISTER_PINNED whose relocation requests it serves); uid 40013 (not
# in the group) is refused by both. Inputs: tests/vm/nonroot-inputs.sh prints the run.sh
# arguments. Run it without the trace, so 01 reports that it cannot run: with these
# inputs in the initramfs node0 has too little room left for 01's 224 MiB of pinned
# slots (01 refuses to start rather than meet the OOM killer):
#   bash tests/vm/nonroot-inputs.sh && bash tests/vm/run.sh --group bench-pinned \
#     $(cat target/nonroot/run-args)
# tierd-timeout: 240
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/nonroot.env ] || cannot_run "no /tierd/nonroot.env (run.sh \$(cat target/nonroot/run-args), see tests/vm/nonroot-inputs.sh)"
# shellcheck disable=SC1091 # written by tests/vm/nonroot-inputs.sh
. /tierd/nonroot.env
setpriv=/tierd/bin/setpriv
GID=40011 ENGINE=40012 OUTSIDER=40013
engine() { env -u LD_LIBRARY_PATH HOME=/tmp "$setpriv" --reuid $ENGINE --regid $ENGINE --groups $GID -- "$@"; }
outsider() { env -u LD_LIBRARY_PATH HOME=/tmp "$setpriv" --reuid $OUTSIDER --regid $OUTSIDER --clear-groups -- "$@"; }

[ -x "${DEB:-}/usr/bin/tierd" ] || cannot_run "no unpacked .deb (DEB=${DEB:-}; run tests/vm/nonroot-inputs.sh again)"
echo "package: $(cat "$NONROOT/deb.txt")"
unit=$DEB/lib/systemd/system/tierd.service
sed "s/^# socket_group = \"tierd\" .*/socket_group = \"$GID\"/" "$DEB/etc/tierd/tierd.toml" >/tmp/nonroot.toml
check_eq "socket_group lines set in the package's config" 2 "$(grep -c "^socket_group = \"$GID\"" /tmp/nonroot.toml)"
# The unit's command lines, with the package's paths under $DEB and our copy of its config.
unit_args() { sed -n "s|^$1=/usr/bin/tierd ||p" "$unit" | sed 's|/etc/tierd/tierd.toml|/tmp/nonroot.toml|'; }
pre=$(unit_args ExecStartPre) args=$(unit_args ExecStart)
[ -n "$args" ] || fail "no ExecStart=/usr/bin/tierd in the package's unit"
PATH=$DEB/usr/bin:$PATH
export PATH
check_eq "tierd on PATH" "$DEB/usr/bin/tierd" "$(command -v tierd)"
# shellcheck disable=SC2086 # the unit's arguments, split as systemd splits them
tierd $pre || fail "the package's config with socket_group fails the unit's ExecStartPre"
# shellcheck disable=SC2086 # the unit's arguments, split as systemd splits them
start_tierd $args
wait_for_socket /run/tierd/client.sock 30
chmod 0755 /run/tierd
check_eq "client socket mode and group" "660 $GID" "$(stat -c '%a %g' /run/tierd/client.sock)"
check_eq "control socket mode and group" "660 $GID" "$(stat -c '%a %g' /run/tierd/tierd.sock)"
echo "built on the host with: $(cat "$NONROOT/build.txt")"
echo "libtierd the example loads: $(LD_TRACE_LOADED_OBJECTS=1 env -u LD_LIBRARY_PATH "$NONROOT/bin/kvcache" | grep libtierd)"

engine "$NONROOT/bin/kvcache" >/tmp/kvcache.out 2>&1 || true
cat /tmp/kvcache.out
check_eq "engine uid $ENGINE: C example" "kvcache: ok" "$(tail -n 1 /tmp/kvcache.out)"
py=$NONROOT/venv/bin/python
engine "$py" -c 'import tierd; tierd.load_library(); print(tierd._lib._name)' >/tmp/py.out 2>&1 || true
cat /tmp/py.out
case $(tail -n 1 /tmp/py.out) in
"$NONROOT/venv/"*/site-packages/tierd/libtierd.so) echo "ok: the wheel's libtierd.so" ;;
*) fail "the venv's tierd did not load its own libtierd.so" ;;
esac
engine "$py" "$NONROOT/examples/basic.py" >/tmp/basic.out 2>&1 ||
	{ cat /tmp/basic.out; fail "engine: basic.py failed"; }
cat /tmp/basic.out
echo "ok: engine uid $ENGINE: basic.py"
engine "$py" "$NONROOT/examples/offload_connector.py" --fast-slots 16 --slow-slots 48 --steps 300 \
	>/tmp/offload.out 2>&1 || { cat /tmp/offload.out; fail "engine: offload_connector.py failed"; }
cat /tmp/offload.out
echo "ok: engine uid $ENGINE: offload_connector.py"
up=$(tierctl metrics | awk '$1 ~ /^tierd_relocation_requests_blocks_total/ && /promote/ { printf "%.0f\n", $2 }')
result nonroot.relocation_promote_requests "$up"
check_ge "relocation requests for the non-root engine's pinned pool" 1 "$up"

out=$(outsider "$NONROOT/bin/kvcache" 2>&1 || true)
echo "outsider C: $out"
case $out in *"Permission denied"*) echo "ok: outsider refused (C)" ;; *) fail "outsider not refused (C): $out" ;; esac
out=$(outsider "$py" "$NONROOT/examples/basic.py" 2>&1 | tail -n 1 || true)
echo "outsider Python: $out"
case $out in *"Permission denied"*socket_group*) echo "ok: outsider refused (Python)" ;; *) fail "outsider not refused (Python): $out" ;; esac
stop_tierd
