# tools/exec_targets.py on the committed H200 session (exec/measurements/h200-sxm-2026-11-30):
# the speed-target figures docs/executor.md quotes, each derived by hand from the files:
#   copy bandwidth: the 4 GiB copy moves 8,589,934,592 B (read + write) in a median 1,999.82 us
#     (memory.json) = 4,295 GB/s;
#   fused FP4 GEMM, M = 1, o_proj 8192 x 8192 (gemm-nvfp4.json): 29.0 us median, 30% of copy;
#   Llama-2-70B decode at batch 1: floor = (80 x 855,638,016 x 0.5625 B NVFP4 linears
#     + 32,000 x 8,192 x 2 B lm_head + 1,024 x 80 x 8 x 128 x 2 x 1 B FP8 KV) / 4,295 GB/s
#     = 39,195,770,880 B / 4,295 GB/s = 9.13 ms; the CUDA-graph step 23.12 ms = 2.53x.
# Inputs: PYTHON, SOURCE.
execute_process(COMMAND "${PYTHON}" tools/exec_targets.py exec/measurements/h200-sxm-2026-11-30 WORKING_DIRECTORY "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tools/exec_targets.py: exit ${rc}\n${err}")
endif()
foreach(want
    "| copy bandwidth | device-to-device copy of 4 GiB (read + write counted) | 4295 GB/s |"
    "| FP4 GEMM, M <= 16 | M=1 N=8192 K=8192 | 29.0 us, 1304 GB/s | 30% of copy | no |"
    "| Llama-2-70B decode step | batch 1 ctx 1024 (80 layers) | 23.12 ms (graph), eager 27.79 ms | 2.53x of 9.13 ms | no |")
  string(FIND "${out}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "tools/exec_targets.py does not print\n  ${want}\nIt printed:\n${out}")
  endif()
endforeach()
message("tools/exec_targets.py: the three hand-checked figures are there")
