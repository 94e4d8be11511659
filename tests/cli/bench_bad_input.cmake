# racksim bench with a bad suite or device: exit 2, one line naming the option, the value and
# what is allowed, and no file written. Needs no GPU: the inputs are checked before any device.
set(out "${WORKDIR}/bench_bad_input.json")
file(REMOVE "${out}")
function(expect_refused pattern)
  execute_process(COMMAND "${RACKSIM}" bench ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  string(REPLACE ";" " " args "${ARGN}")
  if(NOT rc EQUAL 2)
    message(FATAL_ERROR "racksim bench ${args}: exit ${rc}, expected 2\nstdout: ${stdout}\nstderr: ${stderr}")
  endif()
  if(NOT stderr MATCHES "^error: [^\n]+\n$")
    message(FATAL_ERROR "racksim bench ${args}: stderr is not one 'error: ...' line:\n${stderr}")
  endif()
  if(NOT stderr MATCHES "${pattern}")
    message(FATAL_ERROR "racksim bench ${args}: stderr does not match '${pattern}':\n${stderr}")
  endif()
  if(EXISTS "${out}")
    message(FATAL_ERROR "racksim bench ${args}: wrote ${out} although it failed")
  endif()
  message("racksim bench ${args}: exit 2, ${stderr}")
endfunction()

# A suite that does not exist: the message lists every suite (no --out needed to learn that).
expect_refused("--suite: 'nonsense' is not one of gemm, memory, launch, power, attention, elementwise, collectives, all" --suite nonsense)
expect_refused("suite: 'nonsense' is not one of gemm, memory, launch, power, attention, elementwise, collectives, all" nonsense --out "${out}")
# --device takes cuda:N only.
expect_refused("--device: 'cpu' is not allowed; use cuda:N" --suite gemm --device cpu --out "${out}")
expect_refused("--device: 'cuda:x' is not allowed; use cuda:N" --suite memory --device cuda:x --out "${out}")
expect_refused("--device: 'cuda:-1' is not allowed; use cuda:N" launch --device cuda:-1 --out "${out}")
# Collectives' own names.
expect_refused("--ops: 'broadcast' is not one of all_reduce, all_gather, reduce_scatter" --suite collectives --ops broadcast --out "${out}")
expect_refused("--dtypes: 'nvfp4' is not a collectives element type; allowed: fp32, bf16, fp16, int8" --suite collectives --dtypes nvfp4 --out "${out}")
expect_refused("--gpus 0: need at least 1" --suite collectives --gpus 0 --out "${out}")
# The attention suite's KV formats.
expect_refused("--dtypes: 'nvfp4' is not a KV-cache format of the attention suite; allowed: bf16, fp8" --suite attention --dtypes nvfp4 --out "${out}")
# The suite twice, differently; and no --out.
expect_refused("the suite is given twice" gemm --suite memory --out "${out}")
expect_refused("--out FILE is required" --suite launch)
# --timing: its two names; graph only where the bench rotates operand copies (gemm, memory,
# attention, elementwise; launch measures graph nodes itself), and
# not with --no-flush (graph never flushes).
expect_refused("--timing: 'stream' is not one of call, graph" --suite gemm --timing stream --out "${out}")
expect_refused("--timing graph: the launch suite has no graph timing; --timing graph applies to gemm, memory, attention and elementwise only" --suite launch --timing graph --out "${out}")
expect_refused("--timing graph: --suite all runs power, which has no graph timing" --suite all --timing graph --out "${out}")
expect_refused("--no-flush: --timing graph never flushes the L2" --suite memory --timing graph --no-flush --out "${out}")
