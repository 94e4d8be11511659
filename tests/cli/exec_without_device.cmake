# racksim exec --device cuda:0 on a machine without a usable GPU: exit 3 and one line, "error: no
# CUDA device: ..." (CUDA built in) or "error: built without CUDA: ...", no file written. Where
# `racksim version` shows a device this prints SKIP (the test's SKIP_REGULAR_EXPRESSION).
execute_process(COMMAND "${RACKSIM}" version OUTPUT_VARIABLE version)
if(NOT version MATCHES "backend cuda: (not built|[^\n]*no CUDA device visible)")
  message("SKIP: a CUDA device is visible; the no-device path cannot be exercised here")
  return()
endif()
string(RANDOM LENGTH 8 tag)
set(out "${CMAKE_CURRENT_BINARY_DIR}/exec_without_device_${tag}.json")
execute_process(COMMAND "${RACKSIM}" exec examples/exec-tiny-llama-cpu.yaml --device cuda:0 --out "${out}"
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 3)
  message(FATAL_ERROR "exit ${rc}, expected 3\nstdout: ${stdout}\nstderr: ${stderr}")
endif()
if(NOT stderr MATCHES "^error: (no CUDA device|built without CUDA): [^\n]+\n$")
  message(FATAL_ERROR "stderr is not one 'error: no CUDA device: ...' / 'error: built without CUDA: ...' line:\n${stderr}")
endif()
if(EXISTS "${out}")
  message(FATAL_ERROR "wrote ${out} although it failed")
endif()
message("exec without a device: exit 3, ${stderr}")
