#pragma once
// The CUDA step executor (compiled only with RACKSIM_CUDA): plain C++ interface, routed by
// exec/src/step_backend.cpp.

#include <memory>

#include "racksim/exec/step_backend.hpp"

namespace racksim::exec::cuda {

[[nodiscard]] std::unique_ptr<StepBackend> make_cuda_step(const ModelConfig& model, const Precision& precision, const CudaStepOptions& options);
[[nodiscard]] DeviceMemoryInfo device_memory(int device);

}  // namespace racksim::exec::cuda
