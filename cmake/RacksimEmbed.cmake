# racksim_embed_files(TARGET <lib> NAMESPACE <c++ function name> BASE <dir> FILES <files...>)
# Compiles data files (the YAML catalogs, length tables) into a static library so the binary
# needs no data directory at run time. The generated function returns the files as
# {relative path, contents} pairs; regenerated whenever a listed file changes.
function(racksim_embed_files)
  cmake_parse_arguments(E "" "TARGET;FUNCTION;BASE" "FILES" ${ARGN})
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${E_TARGET}_embedded.cpp")
  string(REPLACE ";" "|" files_arg "${E_FILES}")
  set(abs_files "")
  foreach(f IN LISTS E_FILES)
    list(APPEND abs_files "${E_BASE}/${f}")
  endforeach()
  add_custom_command(
    OUTPUT "${out}"
    COMMAND "${CMAKE_COMMAND}" -DOUT=${out} -DFUNCTION=${E_FUNCTION} -DBASE=${E_BASE}
            "-DFILES=${files_arg}" -P "${PROJECT_SOURCE_DIR}/cmake/RacksimEmbedGenerate.cmake"
    DEPENDS ${abs_files} "${PROJECT_SOURCE_DIR}/cmake/RacksimEmbedGenerate.cmake"
    COMMENT "Embedding ${E_TARGET} data files"
    VERBATIM)
  add_library(${E_TARGET} STATIC "${out}")
  target_link_libraries(${E_TARGET} PUBLIC racksim_common)
endfunction()
