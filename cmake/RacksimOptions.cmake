# Build options. RACKSIM_CUDA is a tristate: AUTO builds the CUDA backend when a toolkit is
# found, ON requires one (configure error otherwise), OFF never looks.
set(RACKSIM_CUDA "AUTO" CACHE STRING "Build the CUDA executor backend: AUTO, ON or OFF")
set_property(CACHE RACKSIM_CUDA PROPERTY STRINGS AUTO ON OFF)
if(NOT RACKSIM_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "RACKSIM_CUDA='${RACKSIM_CUDA}' is not one of AUTO, ON, OFF")
endif()
# RACKSIM_MPI, the same tristate: AUTO builds the multi-process path of `racksim bench collectives`
# (one process per GPU under mpirun or srun) when find_package(MPI) finds an MPI, ON requires one
# (configure error otherwise), OFF never looks.
set(RACKSIM_MPI "AUTO" CACHE STRING "Build the MPI bootstrap of the NCCL collectives bench: AUTO, ON or OFF")
set_property(CACHE RACKSIM_MPI PROPERTY STRINGS AUTO ON OFF)
if(NOT RACKSIM_MPI MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "RACKSIM_MPI='${RACKSIM_MPI}' is not one of AUTO, ON, OFF")
endif()
option(RACKSIM_WERROR "Treat compiler warnings as errors" OFF)
option(RACKSIM_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(RACKSIM_BUILD_TESTS "Build the tests" ON)

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()

# Warnings for every racksim C++ target (not for nvcc device code, which has its own flags).
add_library(racksim_warnings INTERFACE)
target_compile_options(racksim_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
   -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual -Wimplicit-fallthrough>
  # GCC 12 reports false -Wrestrict on std::string concatenation at -O2 (GCC bug 105329).
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>>:-Wno-restrict>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${RACKSIM_WERROR}>>:-Werror>)

# Same input, same bits on every host: no contraction of a*b+c into a fused multiply-add, which
# GCC does by default wherever the target has FMA (aarch64, as on Grace; x86 with -march=native).
# Outputs, goldens and the committed calibrated factors then do not depend on the build machine.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off>)

if(RACKSIM_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=all>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=address,undefined)
endif()
