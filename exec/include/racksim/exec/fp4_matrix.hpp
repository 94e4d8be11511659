#pragma once
/// Block-scaled FP4 matrices (NVFP4, MXFP4) on the host: quantize a row-major float matrix with
/// blocks along its rows (the GEMM's K), dequantize it, and lay its scales out for cuBLASLt.

#include <cstdint>
#include <span>
#include <vector>

#include "racksim/common/dtype.hpp"

namespace racksim::exec {

/// A [rows x cols] matrix of E2M1 codes with one block scale per `block()` elements of a row.
struct Fp4Matrix {
  DType format = DType::nvfp4;         ///< nvfp4 (UE4M3 scales, 16) or mxfp4 (UE8M0 scales, 32)
  std::int64_t rows = 0;               ///< rows (the GEMM's N for weights)
  std::int64_t cols = 0;               ///< columns: the reduction axis K, along which blocks run
  std::vector<std::uint8_t> packed;    ///< rows x ceil(cols/2) bytes, element 2j in the low nibble
  std::vector<std::uint8_t> scales;    ///< rows x blocks_per_row() scale codes, row-major
  float tensor_scale = 1.0f;           ///< FP32 decode scale: NVFP4 amax/(6*448); MXFP4 1

  /// Elements per block scale: 16 (NVFP4) or 32 (MXFP4).
  [[nodiscard]] int block() const noexcept;
  /// Block scales per row: ceil(cols / block()); a partial last block is zero padded.
  [[nodiscard]] std::int64_t blocks_per_row() const noexcept;
  /// Bytes of one packed row.
  [[nodiscard]] std::int64_t row_bytes() const noexcept { return (cols + 1) / 2; }
  /// E2M1 code of element (r, c).
  [[nodiscard]] std::uint8_t code(std::int64_t r, std::int64_t c) const;
  /// Decoded block scale times tensor scale for block `kb` of row `r`: x = e2m1 * this.
  [[nodiscard]] float scale(std::int64_t r, std::int64_t kb) const;
  /// Value of element (r, c): e2m1 x block scale x tensor scale.
  [[nodiscard]] float value(std::int64_t r, std::int64_t c) const;
};

/// Quantizes a row-major [rows x cols] matrix to `format` (nvfp4 or mxfp4; anything else is an
/// InputError): NVFP4 per executor.md (tensor scale from the whole matrix's amax), MXFP4 per OCP
/// MX v1.0. NaN and Inf are not expected in weights and saturate.
[[nodiscard]] Fp4Matrix quantize_fp4(DType format, std::span<const float> values, std::int64_t rows, std::int64_t cols);

/// NVFP4 with a fixed encode scale s_in (tensor_scale = 1/s_in) instead of the matrix's amax:
/// how activations are quantized, with a scale calibrated ahead of time (TensorRT-LLM's static
/// input scales), since a GEMM input is not known before it is computed. InputError unless
/// encode_scale is finite and > 0.
[[nodiscard]] Fp4Matrix quantize_nvfp4_static(std::span<const float> values, std::int64_t rows, std::int64_t cols, float encode_scale);

/// The matrix's values, row-major [rows x cols], in FP32 (exact: every value is representable).
[[nodiscard]] std::vector<float> dequantize(const Fp4Matrix& m);

/// Reorders row-major [rows x kblocks] UE4M3 scales into cuBLASLt's VEC16_UE4M3 layout
/// (fp4::cublaslt_scale_offset), zero padded to fp4::cublaslt_scale_bytes(rows, kblocks).
[[nodiscard]] std::vector<std::uint8_t> swizzle_scales_cublaslt(std::span<const std::uint8_t> scales, std::int64_t rows,
                                                                std::int64_t kblocks);

/// The inverse of swizzle_scales_cublaslt: the row-major [rows x kblocks] scales.
[[nodiscard]] std::vector<std::uint8_t> unswizzle_scales_cublaslt(std::span<const std::uint8_t> swizzled, std::int64_t rows,
                                                                  std::int64_t kblocks);

}  // namespace racksim::exec
