# A Python tool of tools/ (SCRIPT, run with ARGS, a list, from SOURCE) must exit 0 and print every
# line of WANT (a list) on stdout or stderr; the figures and their derivations by hand are beside
# the add_test calls in tests/CMakeLists.txt. Inputs: PYTHON, SOURCE, SCRIPT, ARGS, WANT.
execute_process(COMMAND "${PYTHON}" "${SCRIPT}" ${ARGS} WORKING_DIRECTORY "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${SCRIPT} ${ARGS}: exit ${rc}\n${err}")
endif()
foreach(want IN LISTS WANT)
  string(FIND "${out}${err}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${SCRIPT} ${ARGS} does not print\n  ${want}\nIt printed:\n${out}${err}")
  endif()
endforeach()
message("${SCRIPT} ${ARGS}: the hand-checked figures are there")
