# tools/device-session.sh --dry-run [MODE] on this machine (no GPU): every phase's command checked
# with the build's binaries. Inputs: SOURCE, BUILD (the build folder: racksim, tests/racksim_cuda_tests),
# WORKDIR, MODE ("--focus" or "" for the full session), MIN (the least phases the mode checks),
# BAD_ENV (optional "NAME=VALUE": then the run must fail, each racksim phase refused).
set(out "${WORKDIR}/device-session-dry${MODE}${BAD_ENV}")
file(REMOVE_RECURSE "${out}")
set(envs "OUT=${out}" "BUILD_DRY=${BUILD}")
if(BAD_ENV)
  list(APPEND envs "${BAD_ENV}")
endif()
set(mode_args)
if(MODE)
  set(mode_args "${MODE}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E env ${envs} bash tools/device-session.sh --dry-run ${mode_args}
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE err)
string(REGEX MATCH "dry run: ([0-9]+) phases checked, ([0-9]+) failed" counts "${log}")
if(NOT counts)
  message(FATAL_ERROR "device-session.sh --dry-run ${MODE}: no count line (exit ${rc})\n${log}\n${err}")
endif()
set(checked "${CMAKE_MATCH_1}")
set(failed "${CMAKE_MATCH_2}")
if(BAD_ENV)
  # The phases that run racksim without setting the knob themselves are refused (exit 2): the check can fail.
  if(rc EQUAL 0 OR failed LESS MIN)
    message(FATAL_ERROR "device-session.sh --dry-run ${MODE} under ${BAD_ENV}: exit ${rc}, ${failed} of ${checked} failed; want >= ${MIN} failed\n${log}")
  endif()
  message("under ${BAD_ENV}: ${failed} of ${checked} phases refused, as they should be")
else()
  if(NOT rc EQUAL 0 OR NOT failed EQUAL 0 OR checked LESS MIN)
    message(FATAL_ERROR "device-session.sh --dry-run ${MODE}: exit ${rc}, ${checked} checked (want >= ${MIN}), ${failed} failed\n${log}")
  endif()
  message("device-session.sh --dry-run ${MODE}: ${checked} phases checked, none failed")
endif()
