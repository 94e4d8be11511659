#pragma once
// The native NVFP4 path's activation quantizer on host arrays (compiled only with RACKSIM_CUDA;
// the kernel is in lt_plan.cu). Plain C++ interface so that host code never includes CUDA headers.

#include <cstdint>

namespace racksim::exec::cuda {

/// `x` [rows x cols] BF16 bit patterns quantized on device 0 under encode scale `s_in`: `packed`
/// rows x cols/2 bytes, `scales` fp4::cublaslt_scale_bytes(rows, cols/16) bytes in cuBLASLt's
/// layout, padding zero. cols % 16 == 0.
void quantize_bf16_nvfp4_host(const std::uint16_t* x, std::int64_t rows, std::int64_t cols, float s_in, std::uint8_t* packed,
                              std::uint8_t* scales);

}  // namespace racksim::exec::cuda
