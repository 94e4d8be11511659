# tools/kernel_resources.py on a saved cuobjdump resource dump (DUMP): every line of WANT (a list)
# must be in what it prints on stdout and stderr together; the figures by hand are beside the
# add_test call in tests/CMakeLists.txt. Inputs: PYTHON, SOURCE, DUMP, WANT.
execute_process(COMMAND "${PYTHON}" tools/kernel_resources.py --dump "${DUMP}" --threads 128 --filter fp4_mma_kernel
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tools/kernel_resources.py --dump ${DUMP}: exit ${rc}\n${err}")
endif()
foreach(want IN LISTS WANT)
  string(FIND "${out}${err}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "tools/kernel_resources.py --dump ${DUMP} does not print\n  ${want}\nIt printed:\n${out}${err}")
  endif()
endforeach()
message("tools/kernel_resources.py: the hand-checked figures are there")
