#!/usr/bin/env bash
# A device session of the CUDA executor, as one script (docs/executor.md, "A device
# session: what to run"). Writes everything under $OUT (default ./device-out): measurement files
# gemm.json, gemm-nvfp4.json, memory.json, launch.json, power.json, exec-70b.json, session.log, and logs.tar.gz
# (per-phase logs, nvidia-smi -q before and after, calibrate's output, the pack's manifest).
#
#   bash tools/device-session.sh            on the GPU machine: run the pack that
#                                           tools/device-pack.sh made here (.devicepkg, carried),
#                                           else build (Release, CUDA ON, sm_90a only); then the
#                                           [cuda] tests and the benches
#   bash tools/device-session.sh --smoke    same, with a tiny sweep (about a minute), to try it
#   bash tools/device-session.sh --build    ignore the pack and build on the device
#   bash tools/device-session.sh --focus    the [cuda] tests, then only the executor's own kernels:
#                                           the FP4 GEMM sweep and its variant knobs, attention, the
#                                           Llama-2-70B decode steps (about 45 s with the pack)
#   bash tools/device-session.sh --dry-run [--focus]   HERE, without a GPU, before spending device
#                                           time: every phase's command is checked instead of run, with
#                                           the build's binaries (BUILD_DRY, default build): racksim exec and
#                                           bench must get past their options, scenario and knobs to the
#                                           device (exit 3, "no CUDA device"), other racksim commands
#                                           must succeed, and each comma-separated part of every [cuda]
#                                           test spec must match a test. Test tools.device_session_dry_run.
#
# Environment: OUT (where results go), PKG (default .devicepkg), BUILD (fallback build folder,
# default build-device), BUDGET_S (seconds the whole script may take, default 420: run it under
# a 480 s device call, so that a call plus the machine's start stays near 9 minutes of the 15). Every phase runs under its own `timeout`, capped by what is left of
# BUDGET_S, so one hang costs that phase and not the call; a phase with under 10 s left is
# skipped. Each measurement file is copied to $OUT as soon as it is written and session.log is
# written there directly, so the device tool's own time limit loses at most logs.tar.gz.
#
# Measured on an H200 (2026-11-30, docs/executor.md): 76 s of work with the pack (cuda tests 11 s,
# power 11 s, the Llama-2-70B exec 36 s, the rest a few seconds each; since 2026-12-02 each exec
# adds a 1 s power window per shape, about 20 s in all), so BUDGET_S=240 under a
# 270 s call leaves room; building on the device adds 3-5 minutes (then BUDGET_S=540 under 600 s).
# Leaves the card's clocks, power limit and modes alone (METHOD.md).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
FINAL=${OUT:-$PWD/device-out}
mkdir -p "$FINAL"
FINAL=$(cd "$FINAL" && pwd)
# The device tool returns at most 8 files from $OUT: logs go to a staging folder that becomes one
# archive; $OUT gets the six measurement files, session.log and logs.tar.gz (8).
STAGE=$(mktemp -d /tmp/racksim-session.XXXXXX)
PKG=${PKG:-.devicepkg}
BUILD=${BUILD:-build-device}
BUDGET_S=${BUDGET_S:-420}
SMOKE=0 FORCE_BUILD=0 FOCUS=0 DRY=0
for a in "$@"; do
  case $a in
    --smoke) SMOKE=1 ;;
    --build) FORCE_BUILD=1 ;;
    --focus) FOCUS=1 ;;
    --dry-run) DRY=1 ;;
    *) echo "usage: $0 [--smoke] [--build] [--focus] [--dry-run]"; exit 2 ;;
  esac
done
if [[ $DRY == 1 ]]; then
  BUILD=${BUILD_DRY:-build}
  BUDGET_S=1000000  # nothing is timed: no phase is skipped for time
  export CUDA_VISIBLE_DEVICES=-1  # on a machine with a GPU too: check, never run
fi
LOG="$FINAL/session.log"
: > "$LOG"
exec 3>&1 4>&2
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
t_start=$SECONDS
status=0
PHASES=()
step() { echo; echo "=== $* (t=$((SECONDS - t_start)) s)"; }
left() { echo $((BUDGET_S - (SECONDS - t_start))); }

finish() {
  trap - EXIT
  [[ $DRY == 1 ]] || timeout 20 nvidia-smi -q > "$STAGE/nvidia-smi-after.txt" 2>&1
  [[ $DRY == 1 ]] && echo "dry run: $DRY_CHECKED phases checked, $DRY_FAILED failed"
  step "done: exit $status in $((SECONDS - t_start)) s"
  printf '%s\n' "${PHASES[@]}" | tee "$STAGE/phases.txt"
  ls -la "$STAGE" "$FINAL"
  exec 1>&3 2>&4
  for _ in $(seq 50); do kill -0 "$TEE_PID" 2>/dev/null || break; sleep 0.1; done  # tee's last lines
  tar -czf "$FINAL/logs.tar.gz" -C "$STAGE" . 2>/dev/null && rm -rf "$STAGE"
  exit $status
}
trap finish EXIT

# phase NAME MAX_S LOGFILE CMD...: CMD under `timeout`, at most MAX_S and no more than what is left
# of the budget less 30 s for the end; its output in $STAGE/LOGFILE, its last lines on screen.
# Sets $rc: the command's exit status, 124 or 137 on a timeout, 125 when skipped.
phase() {
  local name=$1 max=$2 logf=$3; shift 3
  local t=$(( $(left) - 30 )); (( t > max )) && t=$max
  step "$name (timeout $t s)"
  if (( t < 10 )); then
    echo "skipped: $(left) s left of the $BUDGET_S s budget"; rc=125
    PHASES+=("$(printf '%-34s skipped (no time left)' "$name")"); status=1; return
  fi
  local t0=$SECONDS
  if [[ $DRY == 1 ]]; then
    dry_check "$@" > "$STAGE/$logf" 2>&1
    rc=$?
    (( rc == 0 )) || { echo "DRY RUN FAILED: $*"; DRY_FAILED=$((DRY_FAILED + 1)); }
    DRY_CHECKED=$((DRY_CHECKED + 1))
  else
    timeout -k 5 "$t" "$@" > "$STAGE/$logf" 2>&1
    rc=$?
  fi
  tail -4 "$STAGE/$logf"
  local what="exit $rc"; [[ $rc == 124 || $rc == 137 ]] && what="TIMED OUT after $t s"
  echo "$name: $what in $((SECONDS - t0)) s"
  PHASES+=("$(printf '%-34s %4d s  %s' "$name" $((SECONDS - t0)) "$what")")
  [[ $rc -ne 0 ]] && status=1
  return 0
}

# --dry-run: CMD checked instead of run, as far as a machine without a GPU can (the usage above);
# its output to the phase's log. 0 when it passes.
DRY_CHECKED=0 DRY_FAILED=0
dry_check() {
  local envs=()
  if [[ $1 == env ]]; then
    shift
    while [[ $# -gt 0 && $1 == *=* ]]; do envs+=("$1"); shift; done
  fi
  local cmd=$1
  shift
  if [[ $cmd == "$BIN/tests/racksim_cuda_tests" ]]; then
    local spec="" part n bad=0 parts=()
    while [[ $# -gt 0 ]]; do
      case $1 in -w | --durations) shift 2 ;; *) spec=$1; shift ;; esac
    done
    # Catch2 reads an unescaped comma as "or": each part must match on its own.
    spec=${spec//\\,/$'\x01'}
    IFS=',' read -ra parts <<< "${spec:-*}"
    for part in "${parts[@]}"; do
      part=${part//$'\x01'/\\,}
      n=$("$cmd" --list-test-names-only "$part" | grep -c .)
      echo "test spec '$part': $n test case(s)"
      (( n > 0 )) || bad=1
    done
    return $bad
  fi
  if [[ $cmd == "$R" ]]; then
    local out code
    out=$(env "${envs[@]}" "$cmd" "$@" 2>&1)
    code=$?
    printf '%s\n' "$out" | tail -3
    echo "exit $code"
    case $1 in
      exec | bench) [[ $code == 3 ]] && grep -qE "no CUDA device|built without CUDA" <<< "$out" ;;
      *) [[ $code == 0 ]] ;;
    esac
    return
  fi
  echo "dry run: no check for '$cmd'"
  return 1
}

step "device"
if [[ $DRY == 1 ]]; then
  echo "dry run: commands checked, nothing run on a GPU; binaries from $BUILD"
  BIN=$BUILD
  R="$BIN/racksim"
  [[ -x $R && -x $BIN/tests/racksim_cuda_tests ]] || { echo "dry run: no $R or $BIN/tests/racksim_cuda_tests (a CUDA build)"; status=1; exit; }
else  # a real session: the device, then the pack (or a build on the device)
timeout 30 nvidia-smi -q > "$STAGE/nvidia-smi-before.txt" 2>&1 || echo "nvidia-smi -q failed"
timeout 30 nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.limit,temperature.gpu --format=csv || true
echo "host: $(uname -srm); $(grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null); $(ldd --version 2>&1 | head -1)"

# ---- the pack: LD_LIBRARY_PATH = .devicepkg/lib, the pip nvidia wheels' lib folders, the toolkit's
source tools/device-libs.sh  # nvidia_lib_dirs

use_pack() {  # 0 when the pack's binaries start here
  [[ -x "$PKG/racksim" && -x "$PKG/tests/racksim_cuda_tests" ]] || { echo "no pack at $PKG"; return 1; }
  step "pack $PKG"
  [[ -f "$PKG/MANIFEST.txt" ]] && { head -7 "$PKG/MANIFEST.txt"; cp -f "$PKG/MANIFEST.txt" "$STAGE/pack-manifest.txt"; }
  [[ -f "$PKG/kernel-resources.txt" ]] && cp -f "$PKG/kernel-resources.txt" "$STAGE/kernel-resources.txt"
  local dirs=() d
  mapfile -t dirs < <(nvidia_lib_dirs)
  echo "pip nvidia lib folders found: ${#dirs[@]}"
  for d in "${dirs[@]}"; do echo "  $d: $(find "$d" -maxdepth 1 -name '*.so*' -printf '%f\n' | sort | tr '\n' ' ')"; done
  local path
  path="$(cd "$PKG" && pwd)/lib"
  for d in "${dirs[@]}"; do path+=":$d"; done
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [[ -d "$d" ]] && path+=":$d"; done
  export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  local b bad=0
  for b in racksim tests/racksim_cuda_tests; do
    ldd "$PKG/$b" > "$STAGE/ldd-$(basename "$b").txt" 2>&1
    echo "ldd $b: $(grep -E 'libcudart|libcublasLt|libnccl|libstdc|libboost|libyaml|libfmt' "$STAGE/ldd-$(basename "$b").txt" |
                    awk '{print $1 "->" $3}' | tr '\n' ' ')"
    if grep -q 'not found' "$STAGE/ldd-$(basename "$b").txt"; then
      echo "ldd $b: NOT FOUND:"; grep 'not found' "$STAGE/ldd-$(basename "$b").txt"; bad=1
    fi
  done
  timeout 60 "$PKG/racksim" version > "$STAGE/version.txt" 2>&1
  local rc=$?
  cat "$STAGE/version.txt"
  if [[ $rc -ne 0 ]]; then echo "the pack's racksim did not start (exit $rc)"; return 1; fi
  [[ $bad == 0 ]] || echo "ldd reported missing libraries but racksim version ran; going on with the pack"
  return 0
}

BIN=""
if [[ $FORCE_BUILD == 0 ]] && use_pack; then
  BIN=$PKG
  PHASES+=("$(printf '%-34s %4d s  %s' "device info + pack check" $((SECONDS - t_start)) "using $PKG")")
else
  echo "falling back to a build on the device (Boost.Program_options, yaml-cpp, fmt, nlohmann-json and Catch2 must be there)"
  phase "configure (Release, CUDA ON, sm_90a)" 120 configure.log \
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRACKSIM_CUDA=ON -DRACKSIM_CUDA_ARCHITECTURES=90a -DRACKSIM_WERROR=ON
  [[ $rc -ne 0 ]] && { echo "configure failed: see configure.log in logs.tar.gz"; exit; }
  phase "build racksim, racksim_cuda_tests" 420 build.log \
    cmake --build "$BUILD" -j"$(nproc)" --target racksim racksim_cuda_tests
  [[ $rc -ne 0 ]] && { echo "build failed: see build.log in logs.tar.gz"; exit; }
  BIN=$BUILD
  timeout 60 "$BIN/racksim" version | tee "$STAGE/version.txt"
fi
R="$BIN/racksim"
fi  # DRY

phase "cuda tests" 90 cuda-tests.log "$BIN/tests/racksim_cuda_tests" --durations yes
[[ $rc -ne 0 ]] && echo "cuda tests failed (exit $rc; 77: no device visible): see cuda-tests.log; the benches run anyway"

EXEC70=(examples/mlperf-llama2-70b-offline-dgx-h100.yaml --set precision.weights=nvfp4 --set precision.activations=bf16
        --set precision.kv_cache=fp8 --device cuda:0 --warmup 1 --reps 5)
MIXTRAL=(examples/validation/silicon/trtllm-defaults.yaml --set system=dgx-h100 --set model=mixtral-8x7b
         --set precision.weights=nvfp4 --set precision.activations=bf16 --set precision.kv_cache=fp8 --device cuda:0
         --warmup 1 --reps 5 --shape decode:1x1024 --shape decode:16x1024 --shape decode:64x1024 --shape prefill:1x512)
QWEN3=("${MIXTRAL[@]}" --set model=qwen3-32b)  # the later --set wins: Qwen3-32B, QK-norm (about 18 GB)
# MiniMax-M2.5 (2026-12-01, twelfth session): layer-wide QK-norm, partial RoPE, 256 experts top-8
# with the biased sigmoid routing; 8 of its 62 layers (about 2 GB of NVFP4 experts each).
MINIMAX=("${MIXTRAL[@]}" --set model=minimax-m2.5 --set system=hgx-h200 --layers 8)  # 121.5 GiB whole: the scenario must fit an H200
if [[ $FOCUS == 1 ]]; then
  # The default's measurements first (the targets' figures: the FP4 GEMM sweep, attention, the
  # memory and BF16 references, the Llama-2-70B steps), then the variants written without a device
  # in the order of what they may buy, then the MoE models. The A/Bs the H200 settled on
  # 2026-11-30 (two passes at M = 33..64, the fill8 split rule, depth 2, rows-as-M attention) no
  # longer run: their files are in exec/measurements/h200-sxm-2026-11-30c.
  phase "bench gemm nvfp4 -> gemm-nvfp4.json" 60 gemm-nvfp4.log "$R" bench gemm --dtypes nvfp4 --m 1,2,4,8,16,32,33,48,64,128,256 \
    --out "$STAGE/gemm-nvfp4.json"
  [[ -f "$STAGE/gemm-nvfp4.json" ]] && cp -f "$STAGE/gemm-nvfp4.json" "$FINAL/"
  phase "bench --suite attention" 60 attention.log "$R" bench --suite attention --out "$STAGE/attention.json"
  phase "bench memory (the copy reference)" 40 refs-memory.log "$R" bench memory --out "$STAGE/memory.json"
  phase "bench gemm bf16 (the large-M reference)" 40 refs-gemm.log "$R" bench gemm --dtypes bf16 --out "$STAGE/gemm.json"
  phase "exec llama2-70b decode" 90 exec-70b.log "$R" exec "${EXEC70[@]}" --shape prefill:1x512 --shape decode:1x1024 --shape decode:16x1024 \
    --shape decode:64x1024 --out "$STAGE/exec-70b.json" --json "$STAGE/exec-70b-summary.json"
  [[ -f "$STAGE/exec-70b.json" ]] && cp -f "$STAGE/exec-70b.json" "$FINAL/"
  # Each step's measured power against the committed H200 power fit (2026-12-02, twentieth
  # session; docs/calibration.md, "Step power"): seconds on the host, in calibrate-steps.log. Its
  # `step time` lines use only this power file's factors (no GEMM tables here: ../shared is not on
  # the device): the step times against the committed factors are exec's --predict-on lines.
  if [[ -f "$STAGE/exec-70b.json" ]]; then
    phase "calibrate --steps exec-70b.json (step power vs the H200 power fit)" 30 calibrate-steps.log "$R" calibrate \
      --measurements exec/measurements/h200-sxm-2026-11-30b/power.json --steps "$STAGE/exec-70b.json" --out "$STAGE/calibrated-steps"
  fi
  # MoE on the device (2026-12-01): Mixtral-8x7B (32 layers, 8 experts top-2, random NVFP4 codes,
  # about 26 GB), decode steps grouped (one launch per MoE GEMM) and replayed as graphs; the 1x512
  # prefill per expert. Early since 2026-12-02: docs/validation.md's MoE lead (the held-out MoE
  # rows predicted fast at small batches: a per-layer MoE cost missing or undercharged) asks for a
  # measured MoE layer, which this run gives with each step's prediction beside it (--predict-on).
  phase "exec mixtral-8x7b" 60 exec-mixtral.log "$R" exec "${MIXTRAL[@]}" --out "$STAGE/exec-mixtral.json" \
    --json "$STAGE/exec-mixtral-summary.json"
  # The headline model served (2026-12-02, twenty-first session): the first 16 MLPerf Offline
  # requests through the serving loop, its output tokens/s, TTFT, TPOT and GPU power (one meter over
  # the loop) beside the simulator's serving of the same requests on one H200 of hgx-h200
  # (--predict-on auto); tools/exec_targets.py prints the comparison. Output lengths rescaled to a
  # mean of 128 (the data set's shape): the simulator serves them in 447 iterations, 7.1 s, where
  # the data set's own (mean 291) take 1,012 iterations behind one long output. A phase of its own,
  # so that a slow loop costs only itself; serve-70b.json stays out of exec-70b-*-summary.json.
  phase "exec llama2-70b serve 16 (prediction, power)" 60 exec-70b-serve.log "$R" exec "${EXEC70[@]}" --shape decode:1x128 \
    --power-seconds 0 --set workload.output_tokens.mean=128 --serve 16 --json "$STAGE/serve-70b.json"
  # The same GEMMs and the read curve timed back to back in a CUDA graph (racksim bench --timing
  # graph, 2026-12-02): operand copies rotated to keep each call out of L2, no launch gap between
  # calls, as the decode step's graph runs them; then the FP4 GEMMs so under RACKSIM_PDL=on (each
  # kernel's launch overlapping the one before). tools/exec_targets.py prints both against the targets.
  # One phase each, so that a failure or a hang in one (the mode has never run on a GPU) keeps the others.
  phase "bench memory --timing graph" 30 graph-memory.log "$R" bench memory --timing graph --min-bytes 1048576 --out "$STAGE/graph-memory.json"
  phase "bench gemm nvfp4 --timing graph" 40 graph-gemm-nvfp4.log "$R" bench gemm --timing graph --dtypes nvfp4 --m 1,4,16,64,256 \
    --out "$STAGE/graph-gemm-nvfp4.json"
  phase "bench gemm bf16 M=256 --timing graph" 20 graph-gemm.log "$R" bench gemm --timing graph --dtypes bf16 --m 256 --no-check \
    --out "$STAGE/graph-gemm.json"
  phase "bench attention --timing graph" 40 graph-attention.log "$R" bench --suite attention --timing graph --out "$STAGE/graph-attention.json"
  phase "bench elementwise --timing graph" 40 graph-elementwise.log "$R" bench --suite elementwise --timing graph \
    --out "$STAGE/graph-elementwise.json"
  phase "bench gemm nvfp4 --timing graph, RACKSIM_PDL=on" 40 graph-pdl.log env RACKSIM_PDL=on "$R" bench gemm --timing graph \
    --dtypes nvfp4 --m 1,4,16,64 --no-check --out "$STAGE/graph-gemm-nvfp4-pdl.json"
  # The variants, after the default's measurements so a hang costs only its own phases (their
  # steps without the 1 s power window per decode shape that the default's exec above measures): each
  # variant's [cuda] test first, and its bench and steps only if the test passed (a wrong kernel's
  # times mean nothing).
  variant() {  # NAME "KNOB=VALUE [KNOB=VALUE...]" TEST GEMM_MS SHAPE...
    local name=$1 test=$3 ms=$4 knob
    read -ra knob <<< "$2"
    shift 4
    local shapes=() b
    for b in "$@"; do shapes+=(--shape "$b"); done
    phase "[cuda] test, $name" "${TEST_S:-30}" "fp4-test-$name.log" env "${knob[@]}" "$BIN/tests/racksim_cuda_tests" -w NoTests "$test"
    [[ $rc -eq 0 ]] || return
    phase "bench gemm nvfp4, $name" 40 "gemm-nvfp4-$name.log" env "${knob[@]}" "$R" bench gemm --dtypes nvfp4 --m "$ms" \
      --out "$STAGE/gemm-nvfp4-$name.json"
    phase "exec llama2-70b, $name" 60 "exec-70b-$name.log" env "${knob[@]}" "$R" exec "${EXEC70[@]}" "${shapes[@]}" \
      --power-seconds 0 --out "$STAGE/exec-70b-$name.json" --json "$STAGE/exec-70b-$name-summary.json"
  }
  # steps_variant NAME KNOB=VALUE TEST: a knob that changes no GEMM (its test, then the decode steps).
  steps_variant() {  # NAME "KNOB=VALUE [KNOB=VALUE...]" TEST
    local name=$1 test=$3 knob
    read -ra knob <<< "$2"
    phase "[cuda] test, $name" "${TEST_S:-40}" "test-$name.log" env "${knob[@]}" "$BIN/tests/racksim_cuda_tests" -w NoTests "$test"
    [[ $rc -eq 0 ]] || return
    phase "exec llama2-70b, $name" 60 "exec-70b-$name.log" env "${knob[@]}" "$R" exec "${EXEC70[@]}" --shape decode:1x1024 \
      --shape decode:16x1024 --shape decode:64x1024 --power-seconds 0 --out "$STAGE/exec-70b-$name.json" --json "$STAGE/exec-70b-$name-summary.json"
  }
  FUSED_TEST="fused FP4-weight tensor-core GEMM matches the CPU reference"
  # RACKSIM_FP4_MMA_TUNE=on (2026-12-01, fifteenth session) first: every variant below that
  # changes a GEMM, timed per linear shape and row class on this device and the fastest kept (the
  # bench prints each pick, the exec summary's notes list them): its test runs every candidate
  # against the CPU; then the sweep and the decode steps with the picks, against the default's above.
  # (its test builds each shape's inputs and float64 reference once for all candidates, 9 shapes)
  TEST_S=120 variant tune RACKSIM_FP4_MMA_TUNE=on "every variant the fused GEMM's tuner times matches the CPU reference" 1,2,4,8,16,32,33,48,64 \
    decode:1x1024 decode:16x1024 decode:64x1024
  # The M <= 8 GEMV at 5 CTAs per SM (RACKSIM_FP4_MMA_CTAS=5, eighteenth session) and at 6 with
  # the same shared-memory padding (CTAS=6): ctas5 / ctas6 is the occupancy's ratio (78 registers
  # give 6 since 2026-12-02, 5 at 2af6518), ctas6 / default the padding's (a smaller L1). Its test
  # checks the occupancy API's counts under each cap (and 6 on Hopper) and the padded GEMMs.
  variant ctas5 RACKSIM_FP4_MMA_CTAS=5 "the fused GEMM's occupancy*,$FUSED_TEST" 1,2,4,8 decode:1x1024
  variant ctas6 RACKSIM_FP4_MMA_CTAS=6 "$FUSED_TEST" 1,2,4,8 decode:1x1024
  # Depth 1 at M = 9..16 (2 tiles), which spilled 8-16 bytes in every span until 2026-12-02 and
  # lost to depth 2 (the default there since the second session) at 0.90-0.97x: spill-free now, at
  # 5 CTAs per SM against depth 2's 4.
  variant d1 RACKSIM_FP4_MMA_DEPTH=1 "$FUSED_TEST" 9,12,16 decode:16x1024
  # Split K summed by each row block's last CTA, no reduce launch (2026-12-02, sixteenth session):
  # its exactness test against the reduce launch's bits, then the sweep and the steps.
  # Its exactness test runs every kernel variant against the reduce launch; the executor's tests
  # replay the captured decode graph with serial launches in it, then the same under PDL.
  TEST_S=90 variant serial RACKSIM_FP4_MMA_REDUCE=serial "the serial split-K sum*,*CUDA step executor*" 1,2,4,8,16,32,64 decode:1x1024 decode:16x1024 \
    decode:64x1024
  TEST_S=90 steps_variant serialpdl "RACKSIM_FP4_MMA_REDUCE=serial RACKSIM_PDL=on" "the serial split-K sum*,*CUDA step executor*"
  # Splits chosen for whole waves at M <= 16 (sixteenth session): gate_up at M = 1 is the case.
  variant balance RACKSIM_FP4_MMA_SPLITS=balance "$FUSED_TEST" 1,2,4,8,16 decode:1x1024 decode:16x1024
  # RACKSIM_PDL=on (2026-12-01, thirteenth session): the step's kernels launched with programmatic
  # stream serialization, each scheduled while the one before it finishes: the executor, attention
  # and GEMM tests under it, then the decode steps (graph replays) against the default's.
  steps_variant pdl RACKSIM_PDL=on "*CUDA step executor*,*attention*,$FUSED_TEST"
  # The M <= 16 GEMV's cp.async ring (ninth session): the small-M target.
  variant ring RACKSIM_FP4_MMA_PIPE=cpasync "$FUSED_TEST" 1,2,4,8,16 decode:1x1024 decode:16x1024
  # x staged once per K split at M <= 8 (fourteenth session): no barrier in the span loop; alone,
  # then with the ring (each warp an independent stream of 3 spans in flight).
  variant xsplit RACKSIM_FP4_MMA_X=split "$FUSED_TEST" 1,2,4,8 decode:1x1024
  variant ringx "RACKSIM_FP4_MMA_PIPE=cpasync RACKSIM_FP4_MMA_X=split" "$FUSED_TEST" 1,2,4,8 decode:1x1024
  # FP8 K/V's P V with one FP16 P (RACKSIM_ATTENTION_FP8_P=single, thirteenth session: half the
  # P V MMAs): the attention tests (their tolerance widens by the rounding the knob adds), then
  # the FP8 sweep against the default's (the decode-attention target at batch 64).
  phase "attention tests, FP8 P single" 30 attention-test-p1.log env RACKSIM_ATTENTION_FP8_P=single "$BIN/tests/racksim_cuda_tests" \
    -w NoTests "*attention*"
  if [[ $rc -eq 0 ]]; then
    phase "bench attention fp8, FP8 P single" 40 attention-p1.log env RACKSIM_ATTENTION_FP8_P=single "$R" bench --suite attention \
      --dtypes fp8 --out "$STAGE/attention-p1.json"
  fi
  # RACKSIM_FUSE_NORM=on (twelfth session): each residual add fused with the RMSNorm after it
  # (160 fewer launches per Llama-2-70B step).
  # (Catch2 reads a comma in a test spec as "or": escaped, else the spec matches no test and,
  # without -w NoTests, exits 0.)
  steps_variant fuse RACKSIM_FUSE_NORM=on "CUDA step executor matches the CPU reference\\, BF16 KV cache"
  # RACKSIM_FUSE_SWIGLU=on (fourteenth session): the gate_up GEMM's split-K reduce writes the
  # SwiGLU (80 fewer launches per step at batch 1 and 16); its exactness test runs with the others.
  steps_variant swiglu RACKSIM_FUSE_SWIGLU=on "CUDA step executor matches the CPU reference\\, BF16 KV cache,CUDA step executor matches the CPU reference at hidden 256*"
  # The wgmma variant at M > 8 (ninth session) and the large-M FP8 path (tenth session): one test
  # case covers both formats of the latter, its bench is the large-M target's (M >= 256 against
  # gemm.json's BF16) and its exec runs a prefill, whose linears are large-M.
  variant wg RACKSIM_FP4_MMA_MMA=wgmma "$FUSED_TEST" 16,32,33,48,64 decode:16x1024 decode:64x1024
  # Weights two spans ahead at 4 and 8 tiles (2026-12-01, fourteenth session; depth 2 was measured
  # at 1-2 tiles only): the M = 17..64 GEMMs, with 8-12 warps per SM, and the batch-64 step.
  variant d2 RACKSIM_FP4_MMA_DEPTH=2 "$FUSED_TEST" 24,32,33,48,64 decode:64x1024
  variant fp8 RACKSIM_FP4_LARGE_M=fp8 "Hopper's large-M FP4 GEMM (dequantize + cuBLASLt) matches the CPU in BF16 and FP8" \
    128,256,512,1024 prefill:1x512
  phase "bench --suite elementwise (with the MoE routing ops)" 45 elementwise.log "$R" bench --suite elementwise \
    --out "$STAGE/elementwise.json"
  phase "exec qwen3-32b" 60 exec-qwen3.log "$R" exec "${QWEN3[@]}" --out "$STAGE/exec-qwen3.json" --json "$STAGE/exec-qwen3-summary.json"
  phase "exec minimax-m2.5" 60 exec-minimax.log "$R" exec "${MINIMAX[@]}" --out "$STAGE/exec-minimax.json" \
    --json "$STAGE/exec-minimax-summary.json"
  exit
fi

if [[ $SMOKE == 1 ]]; then
  GEMM_ARGS=(--m "1,16,128,4096" --shapes "o_proj,gate_up_proj" --max-reps 10)
  NVFP4_M=1,16,128
  MEM_ARGS=(--max-bytes 268435456)
  POWER_ARGS=(--seconds 1 --idle-seconds 1)
else
  GEMM_ARGS=()
  NVFP4_M=1,2,4,8,16,32,48,64,128,256,512,1024
  MEM_ARGS=()
  POWER_ARGS=()
fi

bench() {  # FILE MAX_S WHAT ARGS...: one bench; its file goes to $OUT at once
  local file=$1 max=$2 what=$3; shift 3
  phase "bench $what -> $file" "$max" "${file%.json}.log" "$R" bench "$what" --out "$STAGE/$file" "$@"
  if [[ -f "$STAGE/$file" ]]; then cp -f "$STAGE/$file" "$FINAL/$file"; fi
}
# In order of value: the GEMMs calibrate needs first (14 M x 4 Llama-2-70B TP1 shapes x bf16, fp8
# = 112 cases), then memory, launch and power, then Hopper's FP4-weight path in its own file (its
# records are not cuBLASLt's and calibrate should take them on purpose).
# bf16 and fp8 in separate runs: on 2026-11-30 cuBLASLt refused FP8 x FP8 -> BF16 on the H200 and
# the combined run lost the BF16 sweep with it. FP8's file travels in logs.tar.gz.
bench gemm.json 150 gemm --dtypes bf16 "${GEMM_ARGS[@]}"
bench memory.json 90 memory "${MEM_ARGS[@]}"
bench launch.json 45 launch
# Power in BF16 and FP8 at M = 1 (HBM-bound), 512 and 4096 (tensor-core-bound; 4096 ran at the
# 700 W cap on the H200): three points per format, so the fit is over-determined and FP8 gets an
# energy per FLOP of its own (docs/calibration.md, "Not yet fitted").
bench power.json 90 power --dtypes bf16,fp8 --m 1,512,4096 "${POWER_ARGS[@]}"
bench gemm-nvfp4.json 120 gemm --dtypes nvfp4 --m "$NVFP4_M"

# racksim exec on the GPU: the tiny example against nothing but itself (its [cuda] test compares
# it with the CPU reference), then a Llama-2-70B-shaped step (80 layers of random NVFP4 codes,
# FP8 KV) at decode batch 1 and 64 after 1,024 cached tokens: eager per-op times and the step
# replayed as a CUDA graph (docs/executor.md, "Speed targets": within 1.3x of bytes / bandwidth).
if [[ $SMOKE == 1 ]]; then EXEC_SHAPES=(--shape decode:1x128 --shape decode:8x128); else EXEC_SHAPES=(--shape decode:1x1024 --shape decode:16x1024 --shape decode:64x1024 --shape prefill:1x1024); fi
# The tiny example (head_dim 32, which the tensor-core attention takes since 2026-11-30) served
# offline on the GPU: 32 requests through continuous batching and chunked prefill.
phase "exec tiny-llama serve 32 (cuda:0)" 30 exec-tiny.log "$R" exec examples/exec-tiny-llama-cpu.yaml --device cuda:0 --serve 32 \
  --out "$STAGE/exec-tiny.json"
phase "exec llama2-70b (cuda:0) -> exec-70b.json" 150 exec-70b.log "$R" exec examples/mlperf-llama2-70b-offline-dgx-h100.yaml \
  --set precision.weights=nvfp4 --set precision.activations=bf16 --set precision.kv_cache=fp8 \
  --device cuda:0 "${EXEC_SHAPES[@]}" --warmup 1 --reps 5 --out "$STAGE/exec-70b.json" --json "$STAGE/exec-70b-summary.json"
if [[ -f "$STAGE/exec-70b.json" ]]; then cp -f "$STAGE/exec-70b.json" "$FINAL/exec-70b.json"; fi
phase "exec mixtral-8x7b (cuda:0)" 60 exec-mixtral.log "$R" exec "${MIXTRAL[@]}" --out "$STAGE/exec-mixtral.json" \
  --json "$STAGE/exec-mixtral-summary.json"
phase "exec qwen3-32b (cuda:0)" 60 exec-qwen3.log "$R" exec "${QWEN3[@]}" --out "$STAGE/exec-qwen3.json" --json "$STAGE/exec-qwen3-summary.json"
phase "exec minimax-m2.5 (cuda:0)" 60 exec-minimax.log "$R" exec "${MINIMAX[@]}" --out "$STAGE/exec-minimax.json" \
  --json "$STAGE/exec-minimax-summary.json"
# A closed loop on the GPU (workload.scenario: concurrency): Llama-3.1-8B-shaped, random NVFP4
# weights (the Hopper dequantize path), 8 clients of 1024 + 128 tokens, 40 requests: measured
# TTFT/TPOT beside the simulator's prediction of the same loop on dgx-h100 and the held-out
# TensorRT-LLM BF16 row of that shape (docs/validation.md: 191 ms / 7.9 ms at c8 1024/128 TP1).
CLOSED=(examples/validation/silicon/trtllm-defaults.yaml --set system=dgx-h100 --set model=llama3.1-8b
        --set precision.weights=nvfp4 --set precision.activations=bf16 --set precision.kv_cache=bf16
        --set workload.concurrency=8 --set workload.requests=40 --set workload.input_tokens.value=1024
        --set workload.output_tokens.value=128)
phase "exec llama3.1-8b closed loop c8 (cuda:0)" 60 exec-8b-closed.log "$R" exec "${CLOSED[@]}" --device cuda:0 --serve 40 \
  --shape decode:8x1024 --json "$STAGE/exec-8b-closed.json"
phase "simulate the same closed loop (host)" 20 sim-8b-closed.log "$R" simulate "${CLOSED[@]}" --json "$STAGE/sim-8b-closed.json"
# MLPerf's Server scenario on the GPU (timed arrivals, 2026-12-02): the same Llama-3.1-8B shape, 40
# Poisson arrivals at 8 queries/s of 1024 + 128 tokens. The simulator predicts 6.38 s from the first
# arrival, TTFT p50 26.7 ms and TPOT p50 3.28 ms on one H200 (hgx-h200, the prediction printed
# beside the loop and in exec-8b-server.json's serve.predicted).
SERVER=(examples/mlperf-llama2-70b-server-dgx-h100.yaml --set system=hgx-h200 --set model=llama3.1-8b
        --set precision.weights=nvfp4 --set precision.activations=bf16 --set precision.kv_cache=bf16
        --set deployment.tensor_parallel=1 --set workload.qps=8 --set workload.requests=40
        --set "workload.input_tokens={distribution: fixed, value: 1024}"
        --set "workload.output_tokens={distribution: fixed, value: 128}")
phase "exec llama3.1-8b server 8 q/s (cuda:0)" 60 exec-8b-server.log "$R" exec "${SERVER[@]}" --device cuda:0 --serve 40 \
  --shape decode:8x1024 --json "$STAGE/exec-8b-server.json"

# The step-op and collective suites: their files travel inside logs.tar.gz (the device tool
# returns at most 8 files; $OUT already holds 8).
staged() {  # FILE MAX_S SUITE ARGS...
  local file=$1 max=$2 suite=$3; shift 3
  phase "bench --suite $suite -> $file (in logs.tar.gz)" "$max" "${file%.json}.log" "$R" bench --suite "$suite" --out "$STAGE/$file" "$@"
}
phase "bench gemm fp8 -> gemm-fp8.json (in logs.tar.gz)" 60 gemm-fp8.log "$R" bench gemm --dtypes fp8 --m 1,16,64,256,1024,4096 \
  --out "$STAGE/gemm-fp8.json"
staged attention.json 60 attention
staged elementwise.json 45 elementwise
staged collectives.json 45 collectives --gpus 1 --max-bytes 268435456

if [[ -f "$STAGE/gemm.json" ]]; then
  phase "calibrate gemm.json (the file loads)" 60 calibrate.log \
    "$R" calibrate --measurements "$STAGE/gemm.json" --out "$STAGE/calibrated"
else
  echo "no gemm.json: calibrate not run"
fi
# finish (the EXIT trap): nvidia-smi -q after, the phase table, logs.tar.gz
