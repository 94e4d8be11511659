# Runs racksim with ARGS ('|'-separated) in WORKDIR and compares exit code, stdout and stderr
# with the golden file GOLDEN. With -DUPDATE=1 it rewrites the golden file instead
# (tools/update-golden.sh). A change of prediction then shows up in review as a diff of numbers.
string(REPLACE "|" ";" argv "${ARGS}")
execute_process(COMMAND "${RACKSIM}" ${argv} WORKING_DIRECTORY "${WORKDIR}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(actual "exit ${rc}\n--- stdout\n${out}--- stderr\n${err}")
if(UPDATE)
  file(WRITE "${GOLDEN}" "${actual}")
  return()
endif()
if(NOT EXISTS "${GOLDEN}")
  message(FATAL_ERROR "golden file ${GOLDEN} is missing; run tools/update-golden.sh\n${actual}")
endif()
file(READ "${GOLDEN}" expected)
if(NOT actual STREQUAL expected)
  file(WRITE "${GOLDEN}.actual" "${actual}")
  execute_process(COMMAND diff -u "${GOLDEN}" "${GOLDEN}.actual")
  message(FATAL_ERROR "output differs from ${GOLDEN} (actual kept in ${GOLDEN}.actual)")
endif()
