#pragma once
// The step executor's cuBLASLt descriptors read back on the host (compiled only with
// RACKSIM_CUDA; lt_plan.cu). Plain C++ interface.

#include "racksim/exec/fp4_gemm_path.hpp"

namespace racksim::exec::cuda {

[[nodiscard]] LtGemmSetup describe_gemm(LtGemm kind, std::int64_t m, std::int64_t n, std::int64_t k);
[[nodiscard]] std::size_t cublaslt_version() noexcept;

}  // namespace racksim::exec::cuda
