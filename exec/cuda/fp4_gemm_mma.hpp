#pragma once
// Hopper's fused FP4-weight GEMM on tensor cores (compiled only with RACKSIM_CUDA; fp4_gemm_mma.cu).
// Plain C++ interface so that host code never includes CUDA headers. The launch geometry and the
// split over K are decided on the host by fp4_mma_plan (racksim/exec/fp4_gemm_path.hpp), which the
// CPU tests check.

#include <cstdint>

namespace racksim::exec::cuda {

/// y[m x n] (BF16 bits) = x[m x k] (BF16 bits) times W^T for an NVFP4 weight W [n x k] in the step
/// executor's layout: `packed` n x k/2 bytes row-major (element 0 in the low nibble), `scales`
/// n x k/16 UE4M3 codes row-major, `tensor_scale` its FP32 decode scale. x is converted to FP16
/// for the MMA (exact for BF16 values of magnitude 2^-14 .. 65504; larger ones overflow: the
/// decode activations of the models measured are far inside), the products are summed in FP32 and
/// y rounded once to BF16. Requires fp4_mma_supported(m, n, k); `workspace` holds
/// fp4_mma_plan(m, n, k, sms).workspace_bytes (null when that is 0); x, packed and y 16-byte aligned.
/// Launched on `stream` (a cudaStream_t); checks the launch errors only.
void fp4_gemm_mma_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                         const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, float* workspace, int sms, void* stream);

/// The same on host arrays (same layouts) on the current device: copies in, runs with the device's
/// multiprocessor count, copies back, synchronizes (the [cuda] tests).
void fp4_gemm_mma(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                  const std::uint8_t* scales, float tensor_scale, std::uint16_t* y);

}  // namespace racksim::exec::cuda
