#pragma once
// CUDA device and library discovery (compiled only with RACKSIM_CUDA). Plain C++ interface so
// that host code never includes CUDA headers.

#include <string>

namespace racksim::exec::cuda {

/// Visible devices; 0 when there is no driver or no device (never throws).
int device_count();
/// One line: runtime, driver, cuBLASLt and NCCL versions, the build's SM targets, and each device.
std::string device_summary();

}  // namespace racksim::exec::cuda
