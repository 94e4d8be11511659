# racksim calibrate --steps: an exec file's step records checked against the power fit of the
# committed H200 power.json (hwmodels/data/calibrated/h200-sxm.yaml: idle 122.227 W, 0.713931 pJ
# per BF16 FLOP, 100.746 pJ per HBM byte); its op records not fitted, each skip said; with every
# committed calibration input, the step time the simulator predicts with the fresh factors equals
# `racksim graph`'s with the committed ones (calibrate.factors_up_to_date: the same factors); a
# file without steps refused. Inputs: RACKSIM, SOURCE (the repository), OUT (a scratch directory).
set(power "${SOURCE}/exec/measurements/h200-sxm-2026-11-30b/power.json")
set(steps "${SOURCE}/tests/cli/data/calibrate-steps/exec-h200.json")
file(REMOVE_RECURSE "${OUT}")
execute_process(COMMAND "${RACKSIM}" calibrate --measurements "${power}" --steps "${steps}" --out "${OUT}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "racksim calibrate --steps: exit ${rc}\n${stdout}\n${stderr}")
endif()
# The fixture's decode step: the step graph's 140,131,383,808 FLOP and 39,250,995,208 B in
# 8.0 J / 400 W = 20 ms per step, i.e. 7.00657 TFLOP/s and 1.96255 TB/s:
# 122.227 + 0.713931 x 7.00657 + 100.746 x 1.96255 = 324.95 W; over 400 W measured, -18.76%.
# The prefill step has no power window; the gemm and attention records are not fitted (2).
foreach(want
    "step power h200-sxm step decode model=llama2-70b seqs=1 tokens=1 context=1024 layers=80 gpus=1 a=bf16 w=nvfp4 kv=fp8: measured 400 W, predicted 325 W (calibrated): -18.8%"
    "skipped 1 records: ${steps}: step without energy_j and power_w above 0"
    "skipped 2 records: ${steps}: given with --steps (its op records are not fitted; only its steps are checked)")
  string(FIND "${stdout}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "racksim calibrate --steps: output lacks\n  ${want}\n--- output:\n${stdout}")
  endif()
endforeach()
file(READ "${OUT}/residuals.json" js)
string(JSON n LENGTH "${js}" step_power)
string(JSON err GET "${js}" step_power 0 error)
if(NOT n EQUAL 1 OR NOT err MATCHES "^-0\\.1876")
  message(FATAL_ERROR "residuals.json: step_power has ${n} entries (want 1), the first's error ${err} (want -0.1876...)")
endif()
file(READ "${OUT}/residuals.md" md)
string(FIND "${md}" "| h200-sxm | step decode model=llama2-70b seqs=1 tokens=1 context=1024 layers=80 gpus=1 a=bf16 w=nvfp4 kv=fp8 | calibrated | 1 | 20.000 ms | 400 W | 325 W | -18.8% |" at)
if(at EQUAL -1)
  message(FATAL_ERROR "residuals.md: no step power row for the fixture's decode step")
endif()
# Every committed calibration input (the command of calibrated_up_to_date.cmake): the fixture's
# decode step (Llama-2-70B, 80 layers, batch 1 at context 1024, NVFP4 weights, BF16 activations,
# FP8 KV, TP 1 on an H200) predicted on hgx-h200 with the fresh factors, as `racksim graph` prints
# the same step with the committed factors.
execute_process(COMMAND "${RACKSIM}" graph examples/mlperf-llama2-70b-offline-dgx-h100.yaml --set system=hgx-h200
                        --set precision.weights=nvfp4 --set precision.activations=bf16 --set precision.kv_cache=fp8
                        --set deployment.tensor_parallel=1 --set deployment.pipeline_parallel=1 --phase decode --batch 1 --context 1024
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE graph_out ERROR_VARIABLE stderr)
if(NOT rc EQUAL 0 OR NOT graph_out MATCHES "step time ([0-9]+)\\.([0-9][0-9][0-9][0-9]) ms")
  message(FATAL_ERROR "racksim graph: exit ${rc}, no step time:\n${graph_out}\n${stderr}")
endif()
set(graph_tenth_us "${CMAKE_MATCH_1}${CMAKE_MATCH_2}")  # 13.7548 ms -> 137548 (units of 0.1 us)
file(REMOVE_RECURSE "${OUT}")
execute_process(COMMAND "${RACKSIM}" calibrate --measurements ../shared/reference/aic_kernels/gemm_trtllm_1.3.0rc20_subset.csv
                        ../shared/reference/aic_kernels/nccl_2.29.2.csv exec/measurements/h200-sxm-2026-11-30b/memory.json
                        exec/measurements/h200-sxm-2026-11-30b/launch.json exec/measurements/h200-sxm-2026-11-30b/power.json
                        --steps "${steps}" --out "${OUT}"
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
set(want "step time h200-sxm step decode model=llama2-70b seqs=1 tokens=1 context=1024 layers=80 gpus=1 a=bf16 w=nvfp4 kv=fp8: measured 19.900 ms (graph), predicted ")
string(FIND "${stdout}" "${want}" at)
if(NOT rc EQUAL 0 OR at EQUAL -1)
  message(FATAL_ERROR "racksim calibrate (every committed input) --steps: exit ${rc}; output lacks\n  ${want}\n--- output:\n${stdout}\n${stderr}")
endif()
string(SUBSTRING "${stdout}" ${at} 400 line)
if(NOT line MATCHES "predicted ([0-9]+)\\.([0-9][0-9][0-9]) ms on hgx-h200:")
  message(FATAL_ERROR "racksim calibrate --steps: no predicted time on hgx-h200 in\n  ${line}")
endif()
# The step timer's time (what calibrate, exec --predict-on and the simulator use) and graph's sum
# of the op times agree within 1 us below the power cap (a decode step of 325 W is far below 700 W).
math(EXPR diff "${graph_tenth_us} - ${CMAKE_MATCH_1}${CMAKE_MATCH_2} * 10")
if(diff GREATER 10 OR diff LESS -10)
  message(FATAL_ERROR "step time with the fresh factors ${CMAKE_MATCH_1}.${CMAKE_MATCH_2} ms, racksim graph's with the committed ones "
                      "${graph_tenth_us} x 0.1 us: more than 1 us apart")
endif()
message("step time of the fixture's decode step with the fresh factors: ${CMAKE_MATCH_1}.${CMAKE_MATCH_2} ms, racksim graph's ${graph_tenth_us} x 0.1 us")

# A file with no step record given with --steps: refused, naming it (exit 2), nothing written.
file(REMOVE_RECURSE "${OUT}")
execute_process(COMMAND "${RACKSIM}" calibrate --measurements "${power}" --steps "${power}" --out "${OUT}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 2 OR NOT stderr MATCHES "--steps: [^\n]*power.json: holds no step record" OR EXISTS "${OUT}")
  message(FATAL_ERROR "racksim calibrate --steps power.json: exit ${rc} (want 2), stderr: ${stderr}, ${OUT} exists: want not")
endif()
