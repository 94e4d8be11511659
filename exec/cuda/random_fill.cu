#include "random_fill.cuh"

#include <cuda_bf16.h>

#include "cuda_check.hpp"

namespace racksim::exec::cuda {

namespace {

__global__ void fill_bf16_kernel(__nv_bfloat16* p, std::size_t n, std::uint64_t seed, float center, float half_width) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    p[i] = __float2bfloat16_rn(center + half_width * uniform_pm1(seed, i));
}

__global__ void fill_f32_kernel(float* p, std::size_t n, std::uint64_t seed, float half_width) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    p[i] = half_width * uniform_pm1(seed, i);
}

__global__ void fill_bytes_kernel(std::uint8_t* p, std::size_t n, std::uint64_t seed, unsigned lo, unsigned span) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    p[i] = static_cast<std::uint8_t>(lo + static_cast<unsigned>((uniform_pm1(seed, i) + 1.0f) * 0.5f * static_cast<float>(span)) % span);
}

}  // namespace

void fill_bf16(std::uint16_t* p, std::size_t n, std::uint64_t seed, float center, float half_width, cudaStream_t s) {
  if (n == 0) return;
  fill_bf16_kernel<<<fill_grid(n), 256, 0, s>>>(reinterpret_cast<__nv_bfloat16*>(p), n, seed, center, half_width);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void fill_f32(float* p, std::size_t n, std::uint64_t seed, cudaStream_t s, float half_width) {
  if (n == 0) return;
  fill_f32_kernel<<<fill_grid(n), 256, 0, s>>>(p, n, seed, half_width);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void fill_bytes(std::uint8_t* p, std::size_t n, std::uint64_t seed, unsigned lo, unsigned span, cudaStream_t s) {
  if (n == 0) return;
  fill_bytes_kernel<<<fill_grid(n), 256, 0, s>>>(p, n, seed, lo, span);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace racksim::exec::cuda
