#pragma once
/// Host entry points to the CUDA kernels, callable from plain C++ in every build: without the
/// CUDA backend they throw an Error saying so (backend_registry.cpp routes them).

#include <cstdint>
#include <span>
#include <vector>

#include "racksim/exec/fp4_matrix.hpp"

namespace racksim::exec {

/// y[m x w.rows] = x[m x w.cols] w^T on CUDA device 0 with the Hopper FP4-weight small-M kernel
/// (E2M1 dequantized in registers); w NVFP4 with cols % 16 == 0, 1 <= m <= 16. FP32 in and out.
[[nodiscard]] std::vector<float> cuda_fp4_gemm_small_m(std::span<const float> x, std::int64_t m, const Fp4Matrix& w);

}  // namespace racksim::exec
