#pragma once
// Checks of NCCL calls that keep the statement text, file and line (NCCL's checks.h, nccl-tests'
// NCCLCHECK): a failure throws racksim::Error with all three, NCCL's error name and its last
// error message (ncclGetLastError, which often says which peer or transport failed).

#include <nccl.h>

#include <string>

#include "racksim/common/error.hpp"

namespace racksim::exec::cuda {

/// Throws Error(internal) naming the failed NCCL statement, where it is and what NCCL said.
[[noreturn]] inline void nccl_failed(ncclResult_t r, const char* stmt, const char* file, int line) {
  const char* last = ncclGetLastError(nullptr);  // the comm argument is unused (NCCL docs)
  throw Error(ExitCode::internal, std::string("NCCL error '") + ncclGetErrorString(r) + "' in `" + stmt + "` at " + file + ":" +
                                      std::to_string(line) + (last && *last ? std::string(": ") + last : std::string()));
}

}  // namespace racksim::exec::cuda

/// Checks an NCCL call; on failure throws with the statement, file and line.
#define RACKSIM_NCCL_CHECK(stmt)                                                                      \
  do {                                                                                                \
    const ncclResult_t racksim_nccl_st_ = (stmt);                                                     \
    if (racksim_nccl_st_ != ncclSuccess) ::racksim::exec::cuda::nccl_failed(racksim_nccl_st_, #stmt, __FILE__, __LINE__); \
  } while (false)
