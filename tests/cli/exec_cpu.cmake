# racksim exec on the CPU reference, end to end: the tiny example's steps, an 8-request offline
# loop, the summary JSON and the measurement file. Times vary run to run, so this checks structure
# and the counts a hand calculation gives rather than a golden text.
set(json "${WORKDIR}/exec_cpu.json")
set(meas "${WORKDIR}/exec_cpu_measurements.json")
file(REMOVE "${json}" "${meas}")
execute_process(COMMAND "${RACKSIM}" exec examples/exec-tiny-llama-cpu.yaml --shape decode:2x16 --shape prefill:2x32 --warmup 0 --reps 2
                        --serve 8 --json "${json}" --out "${meas}"
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "exit ${rc}\n${stdout}\n${stderr}")
endif()
file(READ "${json}" j)
function(expect key want)
  string(JSON got GET "${j}" ${key})
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "${key}: ${got}, expected ${want}")
  endif()
endfunction()
expect("layers_run" 4)          # examples/models/tiny-llama.yaml: 4 layers, well within 8 GiB
expect("serve;requests" 8)
string(JSON iterations GET "${j}" serve iterations)
string(JSON out_tokens GET "${j}" serve output_tokens)
if(iterations LESS 4 OR out_tokens LESS 32)  # outputs are uniform 4..40 per request: at least 8 x 4
  message(FATAL_ERROR "serve: ${iterations} iterations, ${out_tokens} output tokens")
endif()
expect("steps;0;tokens" 2)      # decode 2x16: one token per sequence
expect("steps;1;tokens" 64)     # prefill 2x32
expect("steps;1;reps" 2)
file(READ "${meas}" m)
string(JSON schema GET "${m}" schema)
string(JSON records LENGTH "${m}" records)
if(NOT schema STREQUAL "racksim-measurements/1" OR records LESS 20)
  message(FATAL_ERROR "measurement file: schema ${schema}, ${records} records")
endif()
string(JSON first GET "${m}" records 0 op kind)
message("exec on the CPU: ${iterations} iterations, ${out_tokens} tokens, ${records} op records (first: ${first})")
file(REMOVE "${json}" "${meas}")

# The same loop with the scenario's tensor parallelism set to 2 (ranks as threads): the same
# greedy tokens (TP computes the same model), the device naming the ranks, and the collectives as
# records: per layer an attention and an MLP all-reduce of the decode step's 2 rows x 256 BF16
# (1,024 B), 4 layers x 2 x 2 reps = 16 samples.
set(json_tp "${WORKDIR}/exec_cpu_tp.json")
set(meas_tp "${WORKDIR}/exec_cpu_tp_measurements.json")
execute_process(COMMAND "${RACKSIM}" exec examples/exec-tiny-llama-cpu.yaml --set deployment.tensor_parallel=2 --shape decode:2x16
                        --warmup 0 --reps 2 --serve 8 --json "${json_tp}" --out "${meas_tp}"
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "TP 2: exit ${rc}\n${stdout}\n${stderr}")
endif()
file(READ "${json_tp}" jt)
string(JSON device GET "${jt}" device)
string(JSON tp_tokens GET "${jt}" serve output_tokens)
if(NOT device STREQUAL "cpu (racksim CPU reference, tensor parallel 2 as threads)" OR NOT tp_tokens EQUAL out_tokens)
  message(FATAL_ERROR "TP 2: device '${device}', ${tp_tokens} output tokens (TP 1: ${out_tokens})")
endif()
file(READ "${meas_tp}" mt)
string(JSON n LENGTH "${mt}" records)
set(reduce_reps "")
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  string(JSON kind GET "${mt}" records ${i} op kind)
  if(kind STREQUAL "all_reduce")
    string(JSON bytes GET "${mt}" records ${i} op bytes)
    if(bytes EQUAL 1024)
      string(JSON reduce_reps GET "${mt}" records ${i} reps)
    endif()
  endif()
endforeach()
if(NOT reduce_reps EQUAL 16)
  message(FATAL_ERROR "TP 2: the 1,024 B all-reduce has '${reduce_reps}' samples, expected 16")
endif()
message("exec on the CPU, TP 2: ${tp_tokens} tokens as TP 1, all-reduce of 1,024 B x 16")
file(REMOVE "${json_tp}" "${meas_tp}")
