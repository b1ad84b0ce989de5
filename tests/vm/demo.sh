#!/usr/bin/env bash
# The main job on a fresh Debian machine: installs what it needs, builds tierd, boots the
# two-tier VM and runs tierd (embedded default config) over a KV-cache replay of the
# Mooncake trace from ../shared/traces, printing tiers, status, heat and placement.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bash tests/install-deps.sh
cargo build --release --workspace
bash tests/vm/setup.sh
trace=${TIERD_TRACE:-$root/../shared/traces/mooncake_conversation_trace.jsonl}
[[ -r $trace ]] || { echo "demo: no trace at $trace (set TIERD_TRACE)" >&2; exit 2; }
exec bash tests/vm/run.sh --group demo --timeout 420 --extra-file "$trace:/tierd/traces/mooncake.jsonl"
