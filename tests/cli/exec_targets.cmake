# tools/exec_targets.py on a committed H200 session folder (FOLDER): every line of WANT (a list)
# must be in what it prints; the figures and their derivations by hand are beside the add_test
# calls in tests/CMakeLists.txt. Inputs: PYTHON, SOURCE, FOLDER, WANT.
execute_process(COMMAND "${PYTHON}" tools/exec_targets.py "${FOLDER}" WORKING_DIRECTORY "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tools/exec_targets.py ${FOLDER}: exit ${rc}\n${err}")
endif()
foreach(want IN LISTS WANT)
  string(FIND "${out}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "tools/exec_targets.py ${FOLDER} does not print\n  ${want}\nIt printed:\n${out}")
  endif()
endforeach()
message("tools/exec_targets.py ${FOLDER}: the hand-checked figures are there")
