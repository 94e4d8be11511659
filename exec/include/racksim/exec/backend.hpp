#pragma once
/// Executor backends, registered by name in one table. The CUDA backend is compiled only with
/// RACKSIM_CUDA (exec/cuda/); backend_registry.cpp is the one file that tests RACKSIM_HAVE_CUDA.

#include <functional>
#include <string>

#include "racksim/common/registry.hpp"

namespace racksim::exec {

/// Reports a backend's build and device status in one line ("2 devices: NVIDIA H100 ...").
using BackendStatus = std::function<std::string()>;

/// Every backend built into this binary, by name.
[[nodiscard]] const Registry<BackendStatus>& backend_registry();

/// Number of CUDA devices visible, 0 without a CUDA build, a driver or a device.
[[nodiscard]] int cuda_device_count();

}  // namespace racksim::exec
