#pragma once
// Checks of host-side CUDA calls that keep the statement text, file and line (as NCCL's
// checks.h and ggml do): a failure throws racksim::Error with all three and the CUDA message.

#include <cuda_runtime.h>

#include <string>

#include "racksim/common/error.hpp"

namespace racksim::exec::cuda {

/// Throws Error(internal) naming the failed statement, where it is and what CUDA said.
[[noreturn]] inline void cuda_failed(cudaError_t err, const char* stmt, const char* file, int line) {
  throw Error(ExitCode::internal, std::string("CUDA error '") + cudaGetErrorString(err) + "' (" + cudaGetErrorName(err) +
                                      ") in `" + stmt + "` at " + file + ":" + std::to_string(line));
}

}  // namespace racksim::exec::cuda

/// Checks a CUDA runtime call; on failure throws with the statement, file and line.
#define RACKSIM_CUDA_CHECK(stmt)                                                                       \
  do {                                                                                                 \
    const cudaError_t racksim_cuda_err_ = (stmt);                                                      \
    if (racksim_cuda_err_ != cudaSuccess) ::racksim::exec::cuda::cuda_failed(racksim_cuda_err_, #stmt, __FILE__, __LINE__); \
  } while (false)
