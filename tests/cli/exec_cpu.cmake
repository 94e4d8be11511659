# racksim exec on the CPU reference, end to end: the tiny example's steps, an 8-request offline
# loop, the summary JSON and the measurement file. Times vary run to run, so this checks structure
# and the counts a hand calculation gives rather than a golden text.
# Reads a measurement file's records: the op kinds (in order) into `kinds_var`, and the samples
# (reps) of the 1,024-byte all-reduce into `reps_var` ("" if there is none).
# The op kinds of a measurement file, and the reps of its all-reduce of `bytes` bytes.
# racksim_run(LABEL ARGS...): racksim ARGS from the source tree; a non-zero exit fails the test with
# LABEL and both outputs; stdout in RUN_STDOUT.
function(racksim_run label)
  execute_process(COMMAND "${RACKSIM}" ${ARGN} WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${label}: exit ${rc}\n${out}\n${err}")
  endif()
  set(RUN_STDOUT "${out}" PARENT_SCOPE)
endfunction()

function(scan_records meas kinds_var reps_var bytes_want)
  file(READ "${meas}" text)
  string(JSON n LENGTH "${text}" records)
  math(EXPR last "${n} - 1")
  set(kinds "")
  set(reps "")
  foreach(i RANGE ${last})
    string(JSON kind GET "${text}" records ${i} op kind)
    list(APPEND kinds "${kind}")
    if(kind STREQUAL "all_reduce")
      string(JSON bytes GET "${text}" records ${i} op bytes)
      if(bytes EQUAL bytes_want)
        string(JSON reps GET "${text}" records ${i} reps)
      endif()
    endif()
  endforeach()
  set(${kinds_var} "${kinds}" PARENT_SCOPE)
  set(${reps_var} "${reps}" PARENT_SCOPE)
endfunction()

# Runs `model` (a path under examples/) through the serving loop at TP 1 and TP 2 (decode 2 x 16
# timed, 2 reps, 8 requests served), fails unless both serve the same number of output tokens,
# and returns that count and TP 2's measurement file (the caller removes it).
function(tp_pair model tokens_var meas_var)
  get_filename_component(name "${model}" NAME_WE)
  foreach(tp 1 2)
    set(json${tp} "${WORKDIR}/exec_cpu_${name}_tp${tp}.json")
    set(meas${tp} "${WORKDIR}/exec_cpu_${name}_tp${tp}_measurements.json")
    execute_process(COMMAND "${RACKSIM}" exec examples/exec-tiny-llama-cpu.yaml --set model=${model}
                            --set deployment.tensor_parallel=${tp} --shape decode:2x16 --warmup 0 --reps 2 --serve 8
                            --json "${json${tp}}" --out "${meas${tp}}"
                    WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${name} TP ${tp}: exit ${rc}\n${stdout}\n${stderr}")
    endif()
  endforeach()
  file(READ "${json1}" j1)
  file(READ "${json2}" j2)
  string(JSON tokens1 GET "${j1}" serve output_tokens)
  string(JSON tokens2 GET "${j2}" serve output_tokens)
  if(NOT tokens1 EQUAL tokens2)
    message(FATAL_ERROR "${name}: TP 2 served ${tokens2} output tokens, TP 1 ${tokens1}")
  endif()
  file(REMOVE "${json1}" "${meas1}" "${json2}")
  set(${tokens_var} "${tokens1}" PARENT_SCOPE)
  set(${meas_var} "${meas2}" PARENT_SCOPE)
endfunction()

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
# Op time by kind: the tiny Llama's decode step has 8 op kinds (embedding, rmsnorm, gemm, rope,
# attention_decode, residual_add, swiglu, sampling; the KV append is inside the attention op), and
# the GEMMs take most of a CPU step: examples/models/tiny-llama.yaml's linears are 256 x 384 +
# 256 x 256 + 256 x 1,024 + 512 x 256 = 557,056 multiply-adds per token per layer against
# attention's 8 heads x 17 keys x 32 x 2 = 8,704 (GEMMs 95% of the op time measured here).
string(JSON kinds LENGTH "${j}" steps 0 op_time_by_kind)
string(JSON top GET "${j}" steps 0 op_time_by_kind 0 kind)
if(NOT kinds EQUAL 8 OR NOT top STREQUAL "gemm")
  message(FATAL_ERROR "steps[0].op_time_by_kind: ${kinds} kinds, the largest '${top}'; expected 8 and gemm")
endif()
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
# output-token count (that TP computes the same model is exec_tp_test's check), the device naming
# the ranks, and the collectives as records: per layer an attention and an MLP all-reduce of the
# decode step's 2 rows x 256 BF16 (1,024 B), 4 layers x 2 x 2 reps = 16 samples.
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
scan_records("${meas_tp}" kinds reduce_reps 1024)
if(NOT reduce_reps EQUAL 16)
  message(FATAL_ERROR "TP 2: the 1,024 B all-reduce has '${reduce_reps}' samples, expected 16")
endif()
# The timed step as the file's last record (kind step): the 2 x 16 decode over the group's 2 GPUs,
# timed eagerly (the CPU captures no graph) and without a power window (the CPU has no counter).
file(READ "${meas_tp}" mt)
string(JSON n_tp LENGTH "${mt}" records)
math(EXPR last_tp "${n_tp} - 1")
string(JSON step_op GET "${mt}" records ${last_tp} op)
string(JSON step_timing GET "${mt}" records ${last_tp} timing)
string(JSON step_energy ERROR_VARIABLE no_energy GET "${mt}" records ${last_tp} energy_j)
if(NOT step_op MATCHES "\"kind\" *: *\"step\"" OR NOT step_op MATCHES "\"ranks\" *: *2[,\n ]" OR NOT step_op MATCHES "\"n\" *: *16[,\n ]"
   OR NOT step_timing STREQUAL "eager" OR NOT no_energy)
  message(FATAL_ERROR "TP 2: the last record is not the eager 2 x 16 decode step over 2 GPUs without energy: ${step_op}, timing "
                      "${step_timing}, energy '${step_energy}'")
endif()
message("exec on the CPU, TP 2: ${tp_tokens} tokens as TP 1, all-reduce of 1,024 B x 16, the step record over 2 GPUs")
file(REMOVE "${json_tp}" "${meas_tp}")

# A Qwen3-MoE-shaped model (examples/models/tiny-qwen3-moe.yaml: per-head QK-norm, 4 experts,
# top-2) at TP 1 and TP 2 (each expert split between the ranks, the router whole): both run the
# whole loop to the same output-token count (set by the requests' lengths; that TP gives TP 1's
# logits is exec_tp_test's check), the MoE ops are records, and per layer the attention's and the
# MoE's all-reduce of 2 rows x 256 BF16 (1,024 B): 4 layers x 2 x 2 reps = 16 samples.
tp_pair(models/tiny-qwen3-moe.yaml tokens1 meas_m2)
scan_records("${meas_m2}" kinds reduce_reps 1024)
foreach(want moe_router_topk moe_permute moe_gemm moe_finalize)
  list(FIND kinds "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "tiny-qwen3-moe TP 2: no ${want} record (kinds: ${kinds})")
  endif()
endforeach()
if(NOT reduce_reps EQUAL 16)
  message(FATAL_ERROR "tiny-qwen3-moe TP 2: the 1,024 B all-reduce has '${reduce_reps}' samples, expected 16")
endif()
message("exec on the CPU, tiny-qwen3-moe: TP 1 and TP 2 loops of ${tokens1} tokens; MoE ops recorded; all-reduce of 1,024 B x 16")
file(REMOVE "${meas_m2}")

# A MiniMax-M2-shaped model (examples/models/tiny-minimax.yaml: the QK-norm over the layer,
# partial RoPE, biased sigmoid routing) at TP 1 and TP 2: the same output-token count, and under
# TP 2 the QK-norm's all-reduce of each row's two FP32 sums: 2 rows x 8 B = 16 B, once per layer,
# 4 layers x 2 reps = 8 samples.
tp_pair(models/tiny-minimax.yaml tokens1 meas_x2)
scan_records("${meas_x2}" kinds qk_reps 16)
if(NOT qk_reps EQUAL 8)
  message(FATAL_ERROR "tiny-minimax TP 2: the QK-norm's 16 B all-reduce has '${qk_reps}' samples, expected 8")
endif()
message("exec on the CPU, tiny-minimax: TP 1 and TP 2 loops of ${tokens1} tokens; QK-norm all-reduce of 16 B x 8")
file(REMOVE "${meas_x2}")

# --predict-on: each step as the simulator costs it on a catalog system, beside the measurement.
# The tiny model's decode 2 x 16 and prefill 1 x 8 predicted on hgx-h200 must be what `racksim
# graph` costs for the same steps there (the same ops through the same cost model; the tiny model
# draws far below the 700 W cap), and with the default (auto) the CPU reference, which is no
# catalog GPU, gets no prediction.
set(pjson "${WORKDIR}/exec_cpu_predict.json")
execute_process(COMMAND "${RACKSIM}" exec examples/exec-tiny-llama-cpu.yaml --shape decode:2x16 --shape prefill:1x8 --warmup 0 --reps 1
                        --predict-on hgx-h200 --json "${pjson}"
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "exec --predict-on hgx-h200: exit ${rc}\n${stdout}\n${stderr}")
endif()
file(READ "${pjson}" text)
foreach(case "0;decode;2;16" "1;prefill;1;8")
  list(GET case 0 i)
  list(GET case 1 phase)
  list(GET case 2 batch)
  list(GET case 3 len)
  string(JSON predicted GET "${text}" steps ${i} predicted time_s)
  string(JSON system GET "${text}" steps ${i} predicted system)
  execute_process(COMMAND "${RACKSIM}" graph examples/exec-tiny-llama-cpu.yaml --set system=hgx-h200 --phase ${phase} --batch ${batch}
                          --context ${len} --json -
                  WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE gjson ERROR_VARIABLE stderr)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "graph ${phase}: exit ${rc}\n${stderr}")
  endif()
  string(JSON graph_time GET "${gjson}" totals time_s)
  # The same to 12 characters of their JSON numbers (CMake has no floating point): ~1e-9 relative.
  string(SUBSTRING "${predicted}" 0 12 a)
  string(SUBSTRING "${graph_time}" 0 12 b)
  if(NOT system STREQUAL "hgx-h200" OR NOT a STREQUAL b)
    message(FATAL_ERROR "${phase}: exec predicted ${predicted} s on '${system}', racksim graph costs ${graph_time} s on hgx-h200")
  endif()
endforeach()
execute_process(COMMAND "${RACKSIM}" exec examples/exec-tiny-llama-cpu.yaml --shape decode:2x16 --warmup 0 --reps 1 --json "${pjson}"
                         --power-seconds 2
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
file(READ "${pjson}" text)
string(JSON kind TYPE "${text}" steps 0 predicted)
string(JSON power TYPE "${text}" steps 0 power)
if(NOT rc EQUAL 0 OR NOT kind STREQUAL "NULL" OR NOT power STREQUAL "NULL")
  message(FATAL_ERROR "exec on the CPU with --predict-on auto: exit ${rc}, predicted is ${kind}, power ${power}, expected null")
endif()
# --power-seconds asked on the CPU: stated, not silently dropped.
string(FIND "${text}" "--power-seconds 2: the CPU reference has no power counter" at)
if(at EQUAL -1)
  message(FATAL_ERROR "exec on the CPU with --power-seconds 2: no note saying the CPU has no power counter\n${text}")
endif()
file(REMOVE "${pjson}")
message("exec --predict-on hgx-h200: the steps' times are racksim graph's; auto on the CPU predicts nothing")

# --predict-on SYSTEM prices the step as the executor runs it: its tensor-parallel all-reduces
# through NCCL, whatever serving.all_reduce says (the tiny example's 'auto' would price the engines'
# one-shot kernel, which on gb300-nvl72 makes the TP 2 decode 2 x 16 step about 25 us faster).
# The prediction must be racksim graph's step with serving.all_reduce nccl, and not auto's.
set(json_pred "${WORKDIR}/exec_cpu_predict.json")
execute_process(COMMAND "${RACKSIM}" exec examples/exec-tiny-llama-cpu.yaml --set deployment.tensor_parallel=2 --shape decode:2x16
                        --warmup 0 --reps 1 --predict-on gb300-nvl72 --json "${json_pred}"
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "exec --predict-on gb300-nvl72: exit ${rc}\n${stdout}\n${stderr}")
endif()
file(READ "${json_pred}" jp)
string(JSON predicted GET "${jp}" steps 0 predicted time_s)
foreach(ar auto nccl)
  execute_process(COMMAND "${RACKSIM}" graph examples/exec-tiny-llama-cpu.yaml --set system=gb300-nvl72 --set deployment.tensor_parallel=2
                          --set serving.all_reduce=${ar} --phase decode --batch 2 --context 16 --json -
                  WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE gj ERROR_VARIABLE stderr)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "graph with serving.all_reduce ${ar}: exit ${rc}\n${stderr}")
  endif()
  string(JSON graph_${ar} GET "${gj}" totals time_s)
  string(SUBSTRING "${graph_${ar}}" 0 12 graph_${ar}_12)  # 9 significant digits of "0.000190346..."
endforeach()
string(SUBSTRING "${predicted}" 0 12 predicted_12)
if(NOT predicted_12 STREQUAL graph_nccl_12 OR predicted_12 STREQUAL graph_auto_12)
  message(FATAL_ERROR "exec --predict-on gb300-nvl72 at TP 2: ${predicted} s; racksim graph: ${graph_nccl} s with NCCL's all-reduce "
                      "(want this), ${graph_auto} s with auto's")
endif()
message("exec --predict-on gb300-nvl72, TP 2: ${predicted} s, graph's with NCCL all-reduces (auto's: ${graph_auto} s)")
file(REMOVE "${json_pred}")

# --predict-on with --serve: the serving loop's requests served by the simulator on the catalog
# system, one replica of the run's tensor-parallel group with NCCL's all-reduces. The prediction
# must be what `racksim simulate` gives for the same requests on such a replica (the same output
# tokens/s to 12 characters of JSON), and both the simulator and the executor's loop, which builds
# its iterations by the simulator's rules (batch limit, token budget, chunked prefill), must take
# the same number of iterations: offline, and as a closed loop of 4 clients.
set(json_serve "${WORKDIR}/exec_cpu_serve_predict.json")
foreach(loop "offline" "concurrency")
  set(extra "")
  if(loop STREQUAL "concurrency")
    set(extra --set workload.scenario=concurrency --set workload.concurrency=4)
  endif()
  # replicas auto (4 of TP 2 on the scenario's dgx-h100): the executor and its prediction are one replica.
  execute_process(COMMAND "${RACKSIM}" exec examples/exec-tiny-llama-cpu.yaml --set deployment.tensor_parallel=2 ${extra}
                          --set deployment.replicas=auto --shape decode:1x8 --warmup 0 --reps 1 --serve 16 --predict-on gb300-nvl72 --json "${json_serve}"
                  WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "exec --serve 16 --predict-on gb300-nvl72 (${loop}): exit ${rc}\n${stdout}\n${stderr}")
  endif()
  file(READ "${json_serve}" js)
  string(JSON exec_iterations GET "${js}" serve iterations)
  string(JSON pred_iterations GET "${js}" serve predicted iterations)
  string(JSON pred_tps GET "${js}" serve predicted output_tokens_per_s)
  string(JSON pred_gpus GET "${js}" serve predicted gpus)
  string(JSON pred_system GET "${js}" serve predicted system)
  string(FIND "${js}" "deployment.replicas 4: the executor runs one replica" replicas_note)
  execute_process(COMMAND "${RACKSIM}" simulate examples/exec-tiny-llama-cpu.yaml --set system=gb300-nvl72 --set deployment.tensor_parallel=2
                          --set deployment.replicas=1 --set serving.all_reduce=nccl --set workload.requests=16 ${extra} --json -
                  WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE sj ERROR_VARIABLE stderr)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "simulate (${loop}): exit ${rc}\n${stderr}")
  endif()
  string(JSON sim_tps GET "${sj}" output_tokens_per_s)
  string(JSON sim_iterations GET "${sj}" sim iterations)
  string(SUBSTRING "${pred_tps}" 0 12 a)
  string(SUBSTRING "${sim_tps}" 0 12 b)
  if(NOT a STREQUAL b OR NOT pred_iterations EQUAL sim_iterations OR NOT exec_iterations EQUAL sim_iterations
     OR NOT pred_gpus EQUAL 2 OR NOT pred_system STREQUAL "gb300-nvl72" OR replicas_note EQUAL -1)
    message(FATAL_ERROR "exec --serve 16 --predict-on gb300-nvl72 (${loop}): predicted ${pred_tps} tokens/s in ${pred_iterations} "
                        "iterations on ${pred_gpus} GPUs of '${pred_system}'; racksim simulate: ${sim_tps} tokens/s in ${sim_iterations} "
                        "iterations; the executor's loop: ${exec_iterations} iterations; replicas note at ${replicas_note}")
  endif()
  message("exec --serve 16 (${loop}) predicted on gb300-nvl72 TP 2: ${pred_tps} tokens/s as racksim simulate, "
          "${sim_iterations} iterations in both the simulator and the executor's loop")
endforeach()
file(REMOVE "${json_serve}")

# Timed arrivals: a trace's first 3 rows (tests/data/exec-trace.csv: at 0.5, 0.55 and 0.8 s, of
# 40 + 30 + 100 prompt and 8 + 6 + 10 output tokens) arrive at 0, 0.05 and 0.3 s of the loop, so
# its wall time is at least 0.3 s however fast the CPU is. The prediction must be racksim
# simulate's of the same 3 rows (workload.requests on a trace: its first rows).
set(json_trace "${WORKDIR}/exec_cpu_trace.json")
set(csv_trace "${WORKDIR}/exec_cpu_trace.csv")
set(perfetto_trace "${WORKDIR}/exec_cpu_trace.trace.json")
racksim_run("exec trace --serve 3" exec tests/data/exec-trace.yaml --shape decode:1x8 --warmup 0 --reps 1 --serve 3 --predict-on hgx-h200
            --json "${json_trace}" --csv "${csv_trace}" --trace "${perfetto_trace}")
file(READ "${json_trace}" jt)
string(JSON t_scenario GET "${jt}" serve scenario)
string(JSON t_in GET "${jt}" serve input_tokens)
string(JSON t_out GET "${jt}" serve output_tokens)
string(JSON t_wall GET "${jt}" serve wall_s)
string(JSON t_pred_tps GET "${jt}" serve predicted output_tokens_per_s)
string(JSON t_idle GET "${jt}" serve idle_s)
racksim_run("simulate trace (3 rows)" simulate tests/data/exec-trace.yaml --set system=hgx-h200 --set serving.all_reduce=nccl
            --set workload.requests=3 --json -)
set(sj "${RUN_STDOUT}")
string(JSON s_tps GET "${sj}" output_tokens_per_s)
string(JSON s_requests GET "${sj}" requests_completed)
string(SUBSTRING "${t_pred_tps}" 0 12 a)
string(SUBSTRING "${s_tps}" 0 12 b)
# Counted from the first arrival (0.5 s into the trace), the loop idles less than the 0.3 s the
# arrivals span; counted from the trace's 0 it would idle at least 0.5 s first.
if(NOT t_scenario STREQUAL "trace" OR NOT t_in EQUAL 170 OR NOT t_out EQUAL 24 OR t_wall LESS 0.3 OR NOT a STREQUAL b OR NOT s_requests EQUAL 3
   OR t_idle GREATER 0.3)
  message(FATAL_ERROR "exec trace --serve 3: scenario '${t_scenario}', ${t_in} + ${t_out} tokens, wall ${t_wall} s (>= 0.3 expected), idle ${t_idle} s, "
                      "predicted ${t_pred_tps} tokens/s; racksim simulate of the trace's first ${s_requests} rows: ${s_tps}")
endif()
message("exec trace --serve 3: arrivals kept (wall ${t_wall} s >= 0.3 s); predicted ${t_pred_tps} tokens/s as racksim simulate")

# --csv: racksim simulate's columns, one row per request: the arrivals (counted from the first) and
# lengths are the trace's; --trace: one Perfetto event per iteration, the loop's as process 0 and
# the prediction's as process 1.
file(STRINGS "${csv_trace}" rows)
list(LENGTH rows n_rows)
list(GET rows 0 header)
set(want_rows "0,0,0.000000000,*,40,8" "1,0,0.050000000,*,30,6" "2,0,0.300000000,*,100,10")
if(NOT n_rows EQUAL 4 OR NOT header STREQUAL "request,replica,arrival_s,first_token_s,finish_s,input_tokens,output_tokens")
  message(FATAL_ERROR "exec --csv: ${n_rows} lines, header '${header}'")
endif()
foreach(i 1 2 3)
  list(GET rows ${i} row)
  math(EXPR k "${i} - 1")
  list(GET want_rows ${k} want)
  string(REGEX REPLACE "^([0-9]+),([0-9]+),([0-9.]+),[0-9.]+,[0-9.]+,([0-9]+),([0-9]+)$" "\\1,\\2,\\3,*,\\4,\\5" got "${row}")
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "exec --csv row ${i}: '${row}' (want ${want}, first token and finish any)")
  endif()
endforeach()
file(READ "${perfetto_trace}" pt)
string(JSON n_events LENGTH "${pt}" traceEvents)
string(JSON t_iterations GET "${jt}" serve iterations)
string(JSON t_pred_iterations GET "${jt}" serve predicted iterations)
set(measured 0)
set(predicted 0)
math(EXPR last_event "${n_events} - 1")
foreach(e RANGE ${last_event})
  string(JSON ph GET "${pt}" traceEvents ${e} ph)
  string(JSON pid GET "${pt}" traceEvents ${e} pid)
  if(ph STREQUAL "X" AND pid EQUAL 0)
    math(EXPR measured "${measured} + 1")
  elseif(ph STREQUAL "X" AND pid EQUAL 1)
    math(EXPR predicted "${predicted} + 1")
  endif()
endforeach()
string(JSON name1 GET "${pt}" traceEvents 1 args name)
if(NOT measured EQUAL t_iterations OR NOT predicted EQUAL t_pred_iterations OR NOT name1 STREQUAL "predicted on hgx-h200 (calibrated)")
  message(FATAL_ERROR "exec --trace: ${measured} measured and ${predicted} predicted iteration events; the loop ran ${t_iterations}, "
                      "the prediction ${t_pred_iterations}; process 1 '${name1}'")
endif()
message("exec --csv / --trace: the trace's arrivals and lengths per request; ${measured} + ${predicted} iteration events")
file(REMOVE "${csv_trace}" "${perfetto_trace}")

# workload.latency_limits are checked against the loop's p99s (and the prediction's): a TTFT limit
# of 1,000 s is met on any machine; a TPOT limit of 1 ns is met by none (the simulated H200 step
# of the tiny model takes about 0.15 ms).
foreach(case "ttft_p99_ms: 1000000;ON;-" "ttft_p99_ms: 1000000, tpot_p99_ms: 0.000001;OFF;OFF")  # string(JSON) reads booleans as ON / OFF
  list(GET case 0 limits)
  list(GET case 1 want_met)
  list(GET case 2 want_predicted)
  racksim_run("exec trace with latency limits {${limits}}" exec tests/data/exec-trace.yaml --set "workload.latency_limits={${limits}}"
              --shape decode:1x8 --warmup 0 --reps 1 --serve 2 --predict-on hgx-h200 --json "${json_trace}")
  file(READ "${json_trace}" jt)
  string(JSON met GET "${jt}" serve slo met)
  string(JSON predicted_met GET "${jt}" serve slo predicted_met)
  string(JSON ttft_limit GET "${jt}" serve slo ttft_p99_ms)
  if(NOT met STREQUAL want_met OR NOT ttft_limit EQUAL 1000000 OR (NOT want_predicted STREQUAL "-" AND NOT predicted_met STREQUAL want_predicted))
    message(FATAL_ERROR "exec trace with latency limits {${limits}}: met ${met} (want ${want_met}), predicted ${predicted_met}, "
                        "TTFT limit ${ttft_limit}")
  endif()
endforeach()
message("exec --serve with workload.latency_limits: the loop's p99s checked against them, and the prediction's")
file(REMOVE "${json_trace}")

# Scenario keys the executor cannot apply are said, not dropped: a fixed step time (a simulator
# what-if) and a GPU power limit (exec runs at the device's own).
racksim_run("exec with serving.fixed_step_time and system.gpu_power_limit_w" exec examples/exec-tiny-llama-cpu.yaml
            --set "serving.fixed_step_time=10 ms" --set system.gpu_power_limit_w=500 --shape decode:1x8 --warmup 0 --reps 1)
string(FIND "${RUN_STDOUT}" "note: serving.fixed_step_time 0.01 s is a simulator what-if" fixed_note)
string(FIND "${RUN_STDOUT}" "note: system.gpu_power_limit_w 500 W is a simulator setting" limit_note)
if(fixed_note EQUAL -1 OR limit_note EQUAL -1)
  message(FATAL_ERROR "exec with serving.fixed_step_time and system.gpu_power_limit_w: notes at ${fixed_note} and ${limit_note}\n${RUN_STDOUT}")
endif()
message("exec: serving.fixed_step_time and system.gpu_power_limit_w are noted as the simulator's settings")

# A server's workload.qps is the whole system's rate: with replicas auto (8 of TP 1 on hgx-h200) the
# executor's one replica gets 80 / 8 = 10 queries/s, and its prediction is racksim simulate's of one
# replica at 10 queries/s.
set(json_server "${WORKDIR}/exec_cpu_server.json")
racksim_run("exec server --serve 4" exec examples/exec-tiny-llama-cpu.yaml --set system=hgx-h200 --set deployment.replicas=auto
            --set workload.scenario=server --set workload.qps=80 --shape decode:1x8 --warmup 0 --reps 1 --serve 4
            --predict-on hgx-h200 --json "${json_server}")
file(READ "${json_server}" js)
string(JSON srv_qps GET "${js}" serve qps)
string(JSON srv_pred GET "${js}" serve predicted output_tokens_per_s)
string(FIND "${js}" "workload.qps 80 is the rate of all 8 replicas: the executor's one replica gets its share, 10 queries/s" share_note)
racksim_run("simulate server, one replica at 10 queries/s" simulate examples/exec-tiny-llama-cpu.yaml --set system=hgx-h200
            --set deployment.replicas=1 --set workload.scenario=server --set workload.qps=10 --set workload.requests=4
            --set serving.all_reduce=nccl --json -)
set(sj "${RUN_STDOUT}")
string(JSON sim_tps GET "${sj}" output_tokens_per_s)
string(SUBSTRING "${srv_pred}" 0 12 a)
string(SUBSTRING "${sim_tps}" 0 12 b)
if(NOT srv_qps EQUAL 10 OR NOT a STREQUAL b OR share_note EQUAL -1)
  message(FATAL_ERROR "exec server, 8 replicas at 80 queries/s: the replica's rate ${srv_qps} (10 expected), predicted ${srv_pred} "
                      "tokens/s against racksim simulate's one replica at 10 queries/s: ${sim_tps}; note at ${share_note}")
endif()
message("exec server: one replica's share of the rate (${srv_qps} queries/s), predicted as racksim simulate's replica (${sim_tps} tokens/s)")
file(REMOVE "${json_server}")
