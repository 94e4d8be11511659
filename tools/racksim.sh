#!/usr/bin/env bash
# The README's two commands.
#   tools/racksim.sh example   install what is missing, build, run the headline example
#   tools/racksim.sh test      install what is missing, build with warnings as errors, run every
#                              test; then again under AddressSanitizer + UndefinedBehaviorSanitizer
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
tools/install-deps.sh

case "${1:-}" in
  example)
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j "$jobs"
    # The headline case: one GB300 NVL72 rack, Llama-2-70B NVFP4, MLPerf Offline, simulated for
    # as many requests as a 2,400 s record run sends; then the calibration-set check.
    ./build/racksim simulate examples/mlperf-llama2-70b-offline-gb300-nvl72.yaml --set workload.requests=11400000
    echo
    ./build/racksim validate
    ;;
  test)
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRACKSIM_WERROR=ON >/dev/null
    cmake --build build -j "$jobs"
    ctest --test-dir build --output-on-failure -j "$jobs"
    # Sanitizers: the CPU code only (the CUDA target is compiled and linked by the build above);
    # the whole calibration-set runs (label "slow") ran above and are skipped here.
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRACKSIM_WERROR=ON -DRACKSIM_SANITIZE=ON -DRACKSIM_CUDA=OFF >/dev/null
    cmake --build build-asan -j "$jobs"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir build-asan --output-on-failure -j "$jobs" --label-exclude slow
    ;;
  *)
    echo "usage: tools/racksim.sh example|test" >&2
    exit 2
    ;;
esac
