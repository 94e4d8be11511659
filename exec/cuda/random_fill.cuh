#pragma once
// Random device data for the benches and the step executor (compiled only with RACKSIM_CUDA):
// never zeros (METHOD.md: zeros run faster than real data), reproducible from (seed, index).

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace racksim::exec::cuda {

/// Uniform in [-1, 1) from (seed, index): the SplitMix64 finalizer (Steele, Lea, Flood 2014),
/// top 24 bits.
__device__ inline float uniform_pm1(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t x = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<float>(x >> 40) * 0x1.0p-23f - 1.0f;
}

/// CTAs of 256 for a grid-stride loop over n items (1..4096).
inline unsigned fill_grid(std::size_t n) {
  const std::size_t g = (n + 255) / 256;
  return static_cast<unsigned>(g < 1 ? 1 : (g > 4096 ? 4096 : g));
}

/// BF16 bit patterns of center + half_width x U[-1, 1), asynchronously on `s`.
void fill_bf16(std::uint16_t* p, std::size_t n, std::uint64_t seed, float center, float half_width, cudaStream_t s);
/// FP32 values half_width x U[-1, 1).
void fill_f32(float* p, std::size_t n, std::uint64_t seed, cudaStream_t s, float half_width = 1.0f);
/// Bytes uniform in [lo, lo + span) (packed E2M1 pairs: 0, 256; UE4M3 scales near 1).
void fill_bytes(std::uint8_t* p, std::size_t n, std::uint64_t seed, unsigned lo, unsigned span, cudaStream_t s);

}  // namespace racksim::exec::cuda
