# tools/device_ingest.py on a device tool's folder made from the committed H200 files of
# exec/measurements/h200-sxm-2026-11-30c: four files beside the archive as the focus session
# leaves them ($OUT), the rest inside logs.tar.gz (with a subfolder and a phase log the folder does
# not keep). Inputs: PYTHON, SOURCE, WORKDIR.
set(src "${SOURCE}/exec/measurements/h200-sxm-2026-11-30c")
set(work "${WORKDIR}/device-ingest")
file(REMOVE_RECURSE "${work}")
file(MAKE_DIRECTORY "${work}/files_at" "${work}/stage/calibrated" "${work}/root")
foreach(f gemm-nvfp4.json exec-70b.json session.log ncu-gemv-m1-o_proj.txt)
  file(COPY "${src}/${f}" DESTINATION "${work}/files_at")
endforeach()
foreach(f phases.txt cuda-tests.log pack-manifest.txt memory.json gemm.json attention.json exec-70b-summary.json nvidia-smi-before.txt)
  file(COPY "${src}/${f}" DESTINATION "${work}/stage")
endforeach()
file(WRITE "${work}/stage/calibrated/h200-sxm.yaml" "not kept\n")
file(WRITE "${work}/stage/gemm-nvfp4.log" "a phase's log: not kept\n")
# The focus session's calibrate --steps phase log (a line as tests/cli/calibrate_steps.cmake's fixture gives).
file(WRITE "${work}/stage/calibrate-steps.log"
     "gpu        family   points  held-out median  held-out worst\n"
     "step power h200-sxm step decode model=llama2-70b seqs=1 tokens=1 context=1024 layers=80 gpus=1 a=bf16 w=nvfp4 kv=fp8: measured 400 W, predicted 329 W (calibrated): -17.8%\n"
     "wrote calibrated-steps/residuals.md\n")
execute_process(COMMAND "${CMAKE_COMMAND}" -E tar czf "${work}/files_at/logs.tar.gz" .
                WORKING_DIRECTORY "${work}/stage" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cannot make the fixture's logs.tar.gz")
endif()

function(ingest want_rc)
  execute_process(COMMAND "${PYTHON}" tools/device_ingest.py "${work}/files_at" --root "${work}/root" ${ARGN}
                  WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL want_rc)
    message(FATAL_ERROR "device_ingest.py ${ARGN}: exit ${rc}, want ${want_rc}\n${out}\n${err}")
  endif()
  set(out "${out}${err}" PARENT_SCOPE)
endfunction()

ingest(0)
set(dest "${work}/root/h200-sxm-2026-11-30")
# 13 files kept: 5 measurement files, exec-70b-summary.json, session.log, the ncu report and 5
# provenance files (calibrate-steps.log among them); not another phase's log or the calibrated/ subfolder.
foreach(f gemm-nvfp4.json exec-70b.json memory.json gemm.json attention.json exec-70b-summary.json session.log
          ncu-gemv-m1-o_proj.txt phases.txt cuda-tests.log pack-manifest.txt nvidia-smi-before.txt calibrate-steps.log README.md
          targets.txt)
  if(NOT EXISTS "${dest}/${f}")
    message(FATAL_ERROR "${dest}/${f} missing; the tool printed: ${out}")
  endif()
endforeach()
foreach(f gemm-nvfp4.log calibrated h200-sxm.yaml)
  if(EXISTS "${dest}/${f}")
    message(FATAL_ERROR "${dest}/${f} kept: the folder keeps measurement files and provenance only")
  endif()
endforeach()
file(READ "${dest}/README.md" readme)
file(READ "${dest}/targets.txt" targets)
# The run blocks of the six files (device, driver, CUDA, clocks, power limit, commit as the H200
# recorded them; gemm.json's SM clock was read at 1500 MHz, the others' at 1965-1980), the pack's
# first line, the [cuda] tests' last line, and exec_targets.py's o_proj GEMV figure
# (tests/CMakeLists.txt tools.exec_targets_c: 23.1 us, 38% of 4,303 GB/s).
foreach(want
    "# NVIDIA H200 (h200-sxm), h200-sxm-2026-11-30: a device session"
    "driver 580.159.04, CUDA 13.0, NCCL not recorded"
    "SM clock 1980 MHz (attention.json, exec-70b.json, memory.json)"
    "1500 MHz (gemm.json)"
    "1965 MHz (gemm-nvfp4.json), memory clock 3201 MHz"
    "power limit 700 W, temperature not recorded"
    "commit 2af651827586"
    "pack: racksim device pack, made 2026-11-30T18:21:54Z on vm."
    "`[cuda]` tests: All tests passed (2769881 assertions in 22 test cases) (cuda-tests.log)."
    "exec llama2-70b decode               26 s  exit 0"
    "step power h200-sxm step decode model=llama2-70b seqs=1 tokens=1 context=1024 layers=80 gpus=1 a=bf16 w=nvfp4 kv=fp8: measured 400 W, predicted 329 W (calibrated): -17.8%\n```"
    "| gemm-nvfp4.json | 44 | `racksim bench gemm --dtypes nvfp4 --m 1,2,4,8,16,32,33,48,64,128,256 --out ")
  string(FIND "${readme}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "README.md lacks\n  ${want}\nIt is:\n${readme}")
  endif()
endforeach()
string(FIND "${targets}" "| FP4 GEMM, M <= 16 | M=1 N=8192 K=8192 | 23.1 us, 1633 GB/s | 38% of copy (57% of a same-size read) | no |" at)
if(at EQUAL -1)
  message(FATAL_ERROR "targets.txt lacks the o_proj GEMV row:\n${targets}")
endif()
# Never replaced: a second ingest of the same day is refused until it has a suffix.
ingest(2)
if(NOT out MATCHES "error: device_ingest: .*h200-sxm-2026-11-30: exists")
  message(FATAL_ERROR "second ingest: ${out}")
endif()
ingest(0 --suffix b)
if(NOT EXISTS "${work}/root/h200-sxm-2026-11-30b/README.md")
  message(FATAL_ERROR "--suffix b wrote no h200-sxm-2026-11-30b")
endif()
# No measurement file: refused, nothing written.
file(MAKE_DIRECTORY "${work}/empty")
execute_process(COMMAND "${PYTHON}" tools/device_ingest.py "${work}/empty" --root "${work}/root2" WORKING_DIRECTORY "${SOURCE}"
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "no measurement file" OR EXISTS "${work}/root2")
  message(FATAL_ERROR "an empty folder: exit ${rc}: ${err}")
endif()
file(GLOB leftovers "${work}/root/.*")
if(leftovers)
  message(FATAL_ERROR "temporary folders left behind: ${leftovers}")
endif()
message("device_ingest.py: 15 files, the run blocks, the tests' line and the targets in README.md and targets.txt")
