#pragma once
// Device memory, streams and device queries for the plain-C++ API of cuda_ops.hpp (compiled
// only with RACKSIM_CUDA; backend_registry.cpp routes to these).

#include <cstddef>

namespace racksim::exec::cuda {

/// cudaMalloc of `bytes` (> 0) on the current device.
[[nodiscard]] void* device_alloc(std::size_t bytes);
/// cudaFree; errors are ignored (a destructor calls it).
void device_free(void* ptr) noexcept;
/// Synchronous copies and memset (cudaMemcpy / cudaMemset).
void copy_to_device(void* dst, const void* src, std::size_t bytes);
void copy_to_host(void* dst, const void* src, std::size_t bytes);
void device_zero(void* ptr, std::size_t bytes);
/// cudaStreamSynchronize, then the stream's sticky error if any.
void stream_synchronize(void* stream);
/// Multiprocessors of the current device.
[[nodiscard]] int sm_count();

}  // namespace racksim::exec::cuda
