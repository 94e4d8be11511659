# The committed factors (hwmodels/data/calibrated/) are what `racksim calibrate` makes of the
# committed measurement files, byte for byte: a changed measurement file or fit cannot land
# without the changed factors (and so the changed predictions and goldens) in the same diff.
# Inputs: RACKSIM (the binary), SOURCE (the repository, run there: the factors name their source
# files as given, ../shared/reference/...), OUT (a scratch directory).
set(committed "${SOURCE}/hwmodels/data/calibrated")
set(inputs ../shared/reference/aic_kernels/gemm_trtllm_1.3.0rc20_subset.csv ../shared/reference/aic_kernels/nccl_2.29.2.csv
    exec/measurements/h200-sxm-2026-11-30b/memory.json exec/measurements/h200-sxm-2026-11-30b/launch.json
    exec/measurements/h200-sxm-2026-11-30b/power.json)
string(JOIN " " inputs_text ${inputs})
file(REMOVE_RECURSE "${OUT}")
execute_process(COMMAND "${RACKSIM}" calibrate --measurements ${inputs} --out "${OUT}" WORKING_DIRECTORY "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "racksim calibrate: exit ${rc}\n${stderr}")
endif()
file(GLOB made RELATIVE "${OUT}" "${OUT}/*")
file(GLOB have RELATIVE "${committed}" "${committed}/*")
list(SORT made)
list(SORT have)
set(regen "racksim calibrate --measurements ${inputs_text} --out hwmodels/data/calibrated, then rebuild and review the diff")
if(NOT made STREQUAL have)
  message(FATAL_ERROR "hwmodels/data/calibrated holds [${have}], racksim calibrate writes [${made}]: run ${regen}")
endif()
foreach(f IN LISTS made)
  execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${OUT}/${f}" "${committed}/${f}" RESULT_VARIABLE differ)
  if(NOT differ EQUAL 0)
    message(FATAL_ERROR "hwmodels/data/calibrated/${f} is not what racksim calibrate makes of the committed measurements "
                        "(diff ${OUT}/${f} ${committed}/${f}): run ${regen}")
  endif()
endforeach()
list(LENGTH made n)
message("hwmodels/data/calibrated: ${n} files, each equal to a fresh racksim calibrate")
