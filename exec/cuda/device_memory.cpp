// Device memory, streams and device queries behind cuda_ops.hpp's DeviceMemory: plain host C++
// over the CUDA runtime.

#include "device_memory.hpp"

#include <cuda_runtime.h>

#include "cuda_check.hpp"

namespace racksim::exec::cuda {

void* device_alloc(std::size_t bytes) {
  void* p = nullptr;
  RACKSIM_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void device_free(void* ptr) noexcept {
  if (ptr) cudaFree(ptr);
}

void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  RACKSIM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  RACKSIM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void device_zero(void* ptr, std::size_t bytes) { RACKSIM_CUDA_CHECK(cudaMemset(ptr, 0, bytes)); }

void stream_synchronize(void* stream) {
  RACKSIM_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

int sm_count() {
  int device = 0, count = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&device));
  RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

}  // namespace racksim::exec::cuda
