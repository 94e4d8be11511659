#!/usr/bin/env bash
# Nsight Compute on the device machine (Firecracker runtime: ncu reads the counters there; KINDS.md),
# with the pack tools/device-pack.sh made: one launch of the fused FP4 GEMM per case, the sections
# that say where its time goes. Clocks left alone (--clock-control none; METHOD.md).
#   bash tools/device-profile.sh          writes $OUT/ncu-<case>.txt (default ./device-out)
#   bash tools/device-profile.sh --dry-run   here, without a GPU: each case's racksim command must get
#                                         past its options and knobs to the device (exit 3, "no CUDA
#                                         device"), with build/racksim (BUILD_DRY); exit 1 if one does not
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
DRY=0
case ${1:-} in
  --dry-run) DRY=1; export CUDA_VISIBLE_DEVICES=-1 ;;  # on a machine with a GPU too: check, never run
  "") ;;
  *) echo "usage: $0 [--dry-run]"; exit 2 ;;
esac
OUT=${OUT:-$PWD/device-out}; mkdir -p "$OUT"
if [[ $DRY == 0 ]]; then
  source tools/device-libs.sh  # nvidia_lib_dirs
  path="$PWD/.devicepkg/lib"
  while read -r d; do path+=":$d"; done < <(nvidia_lib_dirs)
  export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  [[ -x "$NCU" ]] || { echo "no ncu"; exit 1; }
fi
checked=0 failed=0
SECTIONS=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats
          --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section InstructionStats)
prof() {  # NAME KERNEL_REGEX SKIP CMD...
  local name=$1 k=$2 skip=$3; shift 3
  if [[ $DRY == 1 ]]; then
    local cmd=$1 out code
    shift
    [[ $cmd == .devicepkg/racksim ]] && cmd=${BUILD_DRY:-build}/racksim
    out=$("$cmd" "$@" 2>&1)
    code=$?
    checked=$((checked + 1))
    if [[ $code == 3 ]] && grep -qE "no CUDA device|built without CUDA" <<< "$out"; then echo "$name: ok"
    else echo "$name: DRY RUN FAILED (exit $code): $out"; failed=$((failed + 1)); fi
    return
  fi
  timeout 150 "$NCU" --clock-control none -k "regex:$k" -s "$skip" -c 1 "${SECTIONS[@]}" "$@" > "$OUT/ncu-$name.txt" 2>&1
  echo "$name: exit $?"; grep -E "Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Issue Slots Busy|No Eligible|Executed Ipc A|Warp Cycles Per Issued|Theoretical Occupancy" "$OUT/ncu-$name.txt" | head -14
}
# The bench checks the kernel at m = 8, 64, 128 and 256 before timing: one launch of the fused kernel at 8
# and 64, two at 128 (launches of 64 rows), the large-M path at 256: skip four.
prof gemv-m1-o_proj fp4_mma_kernel 4 .devicepkg/racksim bench gemm --dtypes nvfp4 --m 1 --shapes o_proj --warmup 1 --max-reps 3 --min-reps 1 --out /tmp/p1.json
prof gemv-m16-o_proj fp4_mma_kernel 4 .devicepkg/racksim bench gemm --dtypes nvfp4 --m 16 --shapes o_proj --warmup 1 --max-reps 3 --min-reps 1 --out /tmp/p2.json
prof gemv-m1-gate_up fp4_mma_kernel 4 .devicepkg/racksim bench gemm --dtypes nvfp4 --m 1 --shapes gate_up_proj --warmup 1 --max-reps 3 --min-reps 1 --out /tmp/p3.json
# M = 64 (8 tiles, 2 CTAs per SM): latency, issue or the mma.sync pipe (docs/executor.md, "Without a
# device"); the tensor pipe's share is in ComputeWorkloadAnalysis.
prof gemm-m64-gate_up fp4_mma_kernel 4 .devicepkg/racksim bench gemm --dtypes nvfp4 --m 64 --shapes gate_up_proj --warmup 1 --max-reps 3 --min-reps 1 --out /tmp/p5.json
# The large-M path's dequantize at M = 256, o_proj (the large-M target's hardest M): BF16 (the
# default) and E4M3 (RACKSIM_FP4_LARGE_M=fp8, with x's amax pass in the same launch). Its DRAM
# throughput against copy is what the tenth session's estimate turns on (docs/executor.md). The
# bench's check at m = 256 launches the dequantize once first: skip 1.
prof dequant-bf16-m256-o_proj fp4_mma_dequant_kernel 1 .devicepkg/racksim bench gemm --dtypes nvfp4 --m 256 --shapes o_proj --warmup 1 --max-reps 3 --min-reps 1 --out /tmp/p6.json
RACKSIM_FP4_LARGE_M=fp8 prof dequant-e4m3-m256-o_proj fp4_mma_dequant_kernel 1 .devicepkg/racksim bench gemm --dtypes nvfp4 --m 256 --shapes o_proj --warmup 1 --max-reps 3 --min-reps 1 --out /tmp/p7.json
# Decode attention: the suite's 4th case (batch 8 x 1024 context, BF16 KV) after 3 smaller ones.
prof attn-decode "attention_decode_t?_kernel" 40 .devicepkg/racksim bench --suite attention --out /tmp/p4.json
if [[ $DRY == 1 ]]; then
  echo "dry run: $checked cases checked, $failed failed"
  (( failed == 0 ))
  exit
fi
ls -la "$OUT"
