#pragma once
// The Hopper FP4-weight small-M GEMM (compiled only with RACKSIM_CUDA). Plain C++ interface so
// that host code never includes CUDA headers.

#include <cstdint>

namespace racksim::exec::cuda {

/// Largest M the small-M kernel accepts (decode batches; larger M dequantizes and calls cuBLASLt).
inline constexpr std::int64_t kSmallMMax = 16;

/// y[m x n] (FP32) = x[m x k] (FP32) times W^T for an NVFP4 weight W [n x k] given as host arrays:
/// `packed` n x k/2 bytes (element 0 in the low nibble), `scales` n x k/16 UE4M3 codes row-major,
/// `tensor_scale` its FP32 decode scale. Copies to device 0, runs the kernel, copies back.
/// Requires 1 <= m <= kSmallMMax and k % 16 == 0.
void fp4_gemm_small_m(const float* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                      const std::uint8_t* scales, float tensor_scale, float* y);

/// The same kernel on device arrays (same layouts), launched on `stream` (a cudaStream_t, null =
/// the default stream) without copies or synchronization; checks the launch error only.
void fp4_gemm_small_m_launch(const float* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                             const std::uint8_t* scales, float tensor_scale, float* y, void* stream);

/// The same kernel with BF16 activations in and out (bit patterns; FP32 accumulation, one rounding):
/// the step executor's Hopper decode path.
void fp4_gemm_small_m_bf16_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                                  const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, void* stream);

}  // namespace racksim::exec::cuda
