#!/usr/bin/env bash
# Builds libtierd and the C example against the shared and the static library, starts
# a tierd on a temp socket and runs both. Exit 0 only if both print "kvcache: ok".
#   clients/c/test.sh        (from anywhere; uses target/release)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}/release
cd "$root"
cargo build --release -p tierd -p tierd-c
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
inc=clients/c/include
# The library's SONAME is libtierd.so.N; cargo leaves only libtierd.so, so the example
# finds its SONAME through a link in the temp dir (what `make install` lays out).
soname=$(objdump -p "$target/libtierd.so" | awk '$1 == "SONAME" { print $2 }')
ln -s "$target/libtierd.so" "$tmp/$soname"
gcc -std=c11 -Wall -Wextra -Werror -O2 -I"$inc" clients/c/examples/kvcache.c \
  -L"$target" -ltierd -Wl,-rpath,"$tmp" -o "$tmp/kvcache-shared"
gcc -std=c11 -Wall -Wextra -Werror -O2 -I"$inc" clients/c/examples/kvcache.c \
  "$target/libtierd.a" -lpthread -ldl -lm -o "$tmp/kvcache-static"
cat >"$tmp/tierd.toml" <<TOML
[daemon]
socket = "$tmp/tierd.sock"
state_dir = "$tmp/state"
[client]
socket = "$tmp/client.sock"
[metrics]
enabled = false
TOML
"$target/tierd" --config "$tmp/tierd.toml" 2>"$tmp/tierd.log" &
pid=$!
for _ in $(seq 100); do [[ -S $tmp/client.sock ]] && break; sleep 0.1; done
[[ -S $tmp/client.sock ]] || { cat "$tmp/tierd.log"; echo "tierd did not start"; exit 1; }
"$tmp/kvcache-shared" "$tmp/client.sock"
"$tmp/kvcache-static" "$tmp/client.sock"
