#!/usr/bin/env bash
# Runs every cargo-fuzz target for a given number of executions, one after the other,
# as a benchmark-style job (not part of the test suite):
#
#   fuzz/run.sh [RUNS] [TARGET...]     RUNS default 10000000, TARGETs default all
#
# Each target runs as one libFuzzer process (no -jobs/-workers) under `nice -n 19`, so
# other work on the machine wins, with its corpus in fuzz/corpus/<target> (kept between
# runs, git-ignored), fuzz/seeds/<target> as extra inputs and fuzz/dict/<target>.dict
# when present. Prints per target:
#   RESULT fuzz.<target>.execs=N            libFuzzer's number_of_executed_units
#   RESULT fuzz.<target>.execs_per_s=N      its average_exec_per_sec
#   RESULT fuzz.<target>.seconds=N          wall time, build excluded
#   RESULT fuzz.<target>.crashes=N          0, or the run stopped at a crash: its input
#                                           is in fuzz/artifacts/<target>/
# Toolchain: `cargo +nightly fuzz` when a nightly toolchain is installed, else the
# stable one with RUSTC_BOOTSTRAP=1 (the sanitizer flags are nightly-only);
# FUZZ_TOOLCHAIN=stable|nightly forces one. Builds are cargo-fuzz's default (release,
# debug assertions and overflow checks on). Sanitizer: AddressSanitizer for the targets
# whose code under test has `unsafe` (decode, ring, shm), none for the serde ones
# (control, config: safe code, 3-5x faster without it); FUZZ_SANITIZER=address|none
# forces one for all (fuzz/README.md). Exit status: 1 if any target crashed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

runs=${1:-10000000}
[[ $runs =~ ^[1-9][0-9]*$ ]] || {
  echo "fuzz/run.sh: RUNS must be a positive integer, not '$runs'" >&2
  exit 2
}
(($# == 0)) || shift
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -vx tierd-fuzz)
fi

command -v cargo-fuzz >/dev/null || {
  echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
}
toolchain=${FUZZ_TOOLCHAIN:-}
if [[ -z $toolchain ]]; then
  if rustup run nightly rustc --version >/dev/null 2>&1; then toolchain=nightly; else toolchain=stable; fi
fi
fuzz=(cargo "+$toolchain" fuzz)
[[ $toolchain == nightly ]] || export RUSTC_BOOTSTRAP=1
echo "fuzz/run.sh: toolchain $toolchain ($(rustup run "$toolchain" rustc --version)), $runs runs per target: ${targets[*]}"

crashed=0
for t in "${targets[@]}"; do
  case ${FUZZ_SANITIZER:-} in
    address | none) san=$FUZZ_SANITIZER ;;
    '') case $t in control | config) san=none ;; *) san=address ;; esac ;;
    *) echo "fuzz/run.sh: FUZZ_SANITIZER must be address or none" >&2 && exit 2 ;;
  esac
  # A target directory of its own without the sanitizer: switching flags in one
  # directory would rebuild everything each time.
  sanitizer=(--sanitizer "$san")
  [[ $san == address ]] || sanitizer+=(--target-dir target/nosan)
  nice -n 19 "${fuzz[@]}" build "${sanitizer[@]}" "$t"
  mkdir -p "corpus/$t" "artifacts/$t"
  [[ $t != config ]] || cp ../config/tierd.toml "corpus/$t/seed-tierd.toml"
  inputs=("corpus/$t")
  [[ ! -d seeds/$t ]] || inputs+=("seeds/$t")
  # AddressSanitizer's allocator keeps freed memory (its quarantine, per size class):
  # a target's RSS grows to ~0.5 GB in the first million inputs; 4 GiB instead of
  # libFuzzer's 2 GiB default keeps that from being reported as a leak-sized crash.
  opts=(-runs="$runs" -print_final_stats=1 -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-4096}")
  [[ ! -f dict/$t.dict ]] || opts+=(-dict="dict/$t.dict")
  log=artifacts/$t/last-run.log
  started=$SECONDS
  rc=0
  nice -n 19 "${fuzz[@]}" run "${sanitizer[@]}" "$t" "${inputs[@]}" -- "${opts[@]}" >"$log" 2>&1 || rc=$?
  secs=$((SECONDS - started))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  crashes=0
  if ((rc != 0)); then
    crashes=1
    crashed=1
    grep -E 'panicked|ERROR: (AddressSanitizer|libFuzzer)|Test unit written' "$log" | head -n 5 >&2 || true
    tail -n 20 "$log" >&2
  fi
  echo "fuzz/run.sh: $t (sanitizer $san): rc $rc, log $log"
  echo "RESULT fuzz.$t.execs=${execs:-0}"
  echo "RESULT fuzz.$t.execs_per_s=${rate:-0}"
  echo "RESULT fuzz.$t.seconds=$secs"
  echo "RESULT fuzz.$t.crashes=$crashes"
done
exit "$crashed"
