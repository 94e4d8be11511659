# Checks that DOC (docs/validation.md) holds, between its validate-table markers, exactly the
# Markdown table TABLE that `racksim validate --threshold 20 --markdown` wrote in this test run
# (cli.validate_calibration_set, the fixture that sets it up). With -DUPDATE=1 it writes the table
# into DOC instead (tools/update-golden.sh). TABLE is removed either way, so a later run never
# checks a stale one.
# MARKER names the marker pair (default validate-table; the held-out silicon summary uses
# silicon-table, written by cli.validate_silicon_heldout with --groups-markdown).
if(NOT MARKER)
  set(MARKER validate-table)
endif()
set(begin_marker "<!-- ${MARKER} begin")
set(end_marker "<!-- ${MARKER} end -->")
if(NOT EXISTS "${TABLE}")
  message(FATAL_ERROR "${TABLE} was not written: run this test with its fixture (ctest -R validate_doc_table runs cli.validate_calibration_set first)")
endif()
file(READ "${TABLE}" table)
file(REMOVE "${TABLE}")
file(READ "${DOC}" doc)
string(FIND "${doc}" "${begin_marker}" b)
string(FIND "${doc}" "${end_marker}" e)
if(b LESS 0 OR e LESS b)
  message(FATAL_ERROR "${DOC}: no '${begin_marker} ... -->' line followed by '${end_marker}' around the validation table")
endif()
# The table starts on the line after the begin marker and ends where the end marker starts.
string(SUBSTRING "${doc}" ${b} -1 from_begin)
string(FIND "${from_begin}" "\n" nl)
math(EXPR start "${b} + ${nl} + 1")
math(EXPR length "${e} - ${start}")
string(SUBSTRING "${doc}" ${start} ${length} current)
if(current STREQUAL table)
  return()
endif()
if(UPDATE)
  string(SUBSTRING "${doc}" 0 ${start} head)
  string(SUBSTRING "${doc}" ${e} -1 tail)
  file(WRITE "${DOC}" "${head}${table}${tail}")
  return()
endif()
file(WRITE "${TABLE}.doc" "${current}")
file(WRITE "${TABLE}.new" "${table}")
execute_process(COMMAND diff -u "${TABLE}.doc" "${TABLE}.new")
file(REMOVE "${TABLE}.doc" "${TABLE}.new")
message(FATAL_ERROR "${DOC}: the validation table differs from what racksim validate writes now (diff above, "
                    "- the document, + fresh). Refresh it: tools/update-golden.sh, or paste "
                    "the output of the racksim validate command the ${MARKER} begin marker names between the ${MARKER} markers")
