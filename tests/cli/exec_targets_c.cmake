# tools/exec_targets.py on the committed H200 session of the kernels as they stand
# (exec/measurements/h200-sxm-2026-11-30c, commit 2af6518): the figures docs/executor.md quotes,
# each derived by hand from the files:
#   copy bandwidth: the 4 GiB copy moves 8,589,934,592 B (read + write) in a median 1,996.16 us
#     (memory.json) = 4,303 GB/s;
#   fused FP4 GEMM, M = 1, o_proj 8192 x 8192 (gemm-nvfp4.json): 37,748,736 B of NVFP4 weights
#     + 16,384 B of x + 16,384 B of y = 37,781,504 B in a median 23.14 us = 1,633 GB/s, 38% of copy;
#   Llama-2-70B decode at batch 1: floor = 39,195,770,880 B (as in exec_targets.cmake) /
#     4,303 GB/s = 9.11 ms; the CUDA-graph step 16.90 ms = 1.86x.
# Inputs: PYTHON, SOURCE.
execute_process(COMMAND "${PYTHON}" tools/exec_targets.py exec/measurements/h200-sxm-2026-11-30c WORKING_DIRECTORY "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tools/exec_targets.py: exit ${rc}\n${err}")
endif()
foreach(want
    "| copy bandwidth | device-to-device copy of 4 GiB (read + write counted) | 4303 GB/s |"
    "| FP4 GEMM, M <= 16 | M=1 N=8192 K=8192 | 23.1 us, 1633 GB/s | 38% of copy | no |"
    "| Llama-2-70B decode step | batch 1 ctx 1024 (80 layers) | 16.90 ms (graph), eager 21.60 ms | 1.86x of 9.11 ms | no |")
  string(FIND "${out}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "tools/exec_targets.py does not print\n  ${want}\nIt printed:\n${out}")
  endif()
endforeach()
message("tools/exec_targets.py: the three hand-checked figures of the 2026-11-30c session are there")
