# tools/exec_targets.py refuses a graph-*.json file whose run header does not say timing: graph
# (a one-call file under a graph name would be read as back-to-back times): a copy of FOLDER with
# graph-memory.json's header rewritten to "call"; exit non-zero, naming the file and the value.
# Inputs: PYTHON, SOURCE, FOLDER, WORKDIR.
set(dir "${WORKDIR}/exec-targets-refuses")
file(REMOVE_RECURSE "${dir}")
file(COPY "${SOURCE}/${FOLDER}/" DESTINATION "${dir}")
file(READ "${dir}/graph-memory.json" text)
string(REPLACE "\"timing\": \"graph\"" "\"timing\": \"call\"" edited "${text}")
if(edited STREQUAL text)
  message(FATAL_ERROR "${FOLDER}/graph-memory.json has no \"timing\": \"graph\" to rewrite")
endif()
file(WRITE "${dir}/graph-memory.json" "${edited}")
execute_process(COMMAND "${PYTHON}" "${SOURCE}/tools/exec_targets.py" "${dir}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "tools/exec_targets.py took a graph file timed one call at a time:\n${out}")
endif()
if(NOT err MATCHES "graph-memory.json: run.timing is 'call', not 'graph'")
  message(FATAL_ERROR "tools/exec_targets.py: exit ${rc} but not the expected message:\n${err}")
endif()
message("tools/exec_targets.py refused it: ${err}")
