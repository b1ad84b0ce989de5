#!/usr/bin/env bash
# Builds the llama.cpp harness (issue 15) into target/llama/ and prints nothing else
# on success but the paths it made. Called by bench/llama/run.sh; safe to run alone.
#
#   bench/llama/build.sh [--force]
#
#   1. a venv (target/llama/venv) with cmake and gguf from PyPI;
#   2. the llama-cpp-python sdist (it vendors llama.cpp's sources) fetched with
#      `pip download` into target/llama/src, version $LLAMA_CPP_PYTHON_VERSION;
#   3. libllama + ggml as static libraries, CPU only, GGML_NATIVE=OFF (the VM's TCG
#      CPU is not the host's), no OpenMP (ggml's own thread pool; one less runtime
#      library to copy into the VM), under nice -n 10 with -j2;
#   4. bench/llama/driver.cpp linked against them and libtierd.a (its --hints; built
#      with cargo if missing) -> target/llama/llama-kvdriver;
#   5. the random-weight model (bench/llama/make_model.py) -> target/llama/model.gguf.
# Every step is skipped when its output is newer than its inputs, so a second run is
# a few seconds. --force rebuilds the driver and the model.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${TIERD_LLAMA_DIR:-$root/target/llama}
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
force=''
[[ ${1:-} != --force ]] || force=1
mkdir -p "$out/src"
log=$out/build.log

step() { echo "llama/build.sh: $*" >&2; }

if [[ ! -x $out/venv/bin/cmake || ! -e $out/venv/.gguf ]]; then
  step "venv with cmake and gguf (PyPI)"
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q cmake 'gguf==0.19.*' numpy
  touch "$out/venv/.gguf"
fi

sdist=$out/src/llama_cpp_python-$version.tar.gz
srcdir=$out/src/llama_cpp_python-$version
if [[ ! -s $sdist ]]; then
  step "pip download llama-cpp-python==$version (sdist)"
  # --no-binary only for this package: its build dependencies may come as wheels
  # (--no-binary :all: would compile cmake itself from source).
  "$out/venv/bin/pip" download -q --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$out/src"
fi
if [[ ! -e $srcdir/vendor/llama.cpp/include/llama.h ]]; then
  tar -xzf "$sdist" -C "$out/src"
fi
llama=$srcdir/vendor/llama.cpp

build=$out/build
if [[ ! -e $build/src/libllama.a ]]; then
  step "building libllama (static, CPU only; ~6 min on 2 cores; log $log)"
  nice -n 10 "$out/venv/bin/cmake" -S "$llama" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_COMMON=OFF >"$log" 2>&1
  nice -n 10 "$out/venv/bin/cmake" --build "$build" --target llama -j2 >>"$log" 2>&1
fi

driver=$out/llama-kvdriver
release=${CARGO_TARGET_DIR:-$root/target}/release
if [[ ! -e $release/libtierd.a ]]; then
  step "libtierd.a (cargo build --release -p tierd-c) for the driver's --hints"
  (cd "$root" && nice -n 10 cargo build --release -p tierd-c)
fi
if [[ -n $force || ! -x $driver || $here/driver.cpp -nt $driver || $release/libtierd.a -nt $driver ]]; then
  step "driver: $driver"
  mapfile -t libs < <(find "$build" -name 'libllama.a' -o -name 'libggml*.a' | sort -r)
  # Dynamic against glibc and libstdc++ (tests/vm/run.sh --extra-bin copies them into
  # the VM), static against llama.cpp and libtierd.
  nice -n 10 g++ -std=c++17 -O2 -Wall -Wextra -DTIERD_HINTS -o "$driver.$$" "$here/driver.cpp" \
    -I"$llama/include" -I"$llama/ggml/include" -I"$root/clients/c/include" \
    -Wl,--start-group "${libs[@]}" "$release/libtierd.a" -Wl,--end-group -lpthread -ldl -lm
  mv -f "$driver.$$" "$driver"
fi

model=$out/model.gguf
if [[ -n $force || ! -s $model || $here/make_model.py -nt $model ]]; then
  step "model: $model"
  "$out/venv/bin/python" "$here/make_model.py" --out "$model.tmp"
  mv -f "$model.tmp" "$model"
fi
echo "driver=$driver"
echo "model=$model"
