#include "racksim/exec/fp4_matrix.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/fp4.hpp"

namespace racksim::exec {

namespace {

std::size_t z(std::int64_t v) { return static_cast<std::size_t>(v); }

}  // namespace

int Fp4Matrix::block() const noexcept { return format == DType::mxfp4 ? fp4::kMxfp4Block : fp4::kNvfp4Block; }

std::int64_t Fp4Matrix::blocks_per_row() const noexcept { return (cols + block() - 1) / block(); }

std::uint8_t Fp4Matrix::code(std::int64_t r, std::int64_t c) const {
  return fp4::unpack_e2m1(packed[z(r * row_bytes() + c / 2)], static_cast<int>(c % 2));
}

float Fp4Matrix::scale(std::int64_t r, std::int64_t kb) const {
  const std::uint8_t s = scales[z(r * blocks_per_row() + kb)];
  return format == DType::mxfp4 ? fp4::decode_ue8m0(s) : fp4::decode_ue4m3(s) * tensor_scale;
}

float Fp4Matrix::value(std::int64_t r, std::int64_t c) const { return fp4::decode_e2m1(code(r, c)) * scale(r, c / block()); }

namespace {

/// quantize_fp4's body; NVFP4 with encode scale `s_in` (MXFP4 ignores it).
Fp4Matrix quantize_with(DType format, std::span<const float> values, std::int64_t rows, std::int64_t cols, float s_in) {
  RACKSIM_ASSERT(rows >= 0 && cols >= 0 && values.size() == z(rows * cols), "values hold rows x cols floats");
  Fp4Matrix m;
  m.format = format;
  m.rows = rows;
  m.cols = cols;
  m.packed.assign(z(rows * m.row_bytes()), 0);
  m.scales.assign(z(rows * m.blocks_per_row()), 0);
  if (format == DType::nvfp4) m.tensor_scale = 1.0f / s_in;
  const int bs = m.block();
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = values.data() + r * cols;
    for (std::int64_t kb = 0; kb < m.blocks_per_row(); ++kb) {
      const std::int64_t c0 = kb * bs, c1 = std::min(cols, c0 + bs);
      std::uint8_t codes[fp4::kMxfp4Block] = {};
      std::uint8_t s = 0;
      if (format == DType::nvfp4) {
        // The kernels' block routine on the block, a partial last block zero padded (zeros do
        // not change its amax, and their codes are not stored).
        float block[fp4::kNvfp4Block] = {};
        std::copy(row + c0, row + c1, block);
        std::uint32_t words[2];
        s = fp4::nvfp4_quantize_block16(block, s_in, words);
        for (int i = 0; i < fp4::kNvfp4Block; ++i) codes[i] = static_cast<std::uint8_t>((words[i / 8] >> (4 * (i % 8))) & 0xFu);
      } else {
        float amax = 0.0f;
        for (std::int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(row[c]));
        s = fp4::mxfp4_block_scale(amax);
        for (std::int64_t c = c0; c < c1; ++c) codes[c - c0] = fp4::mxfp4_encode_element(row[c], s);
      }
      m.scales[z(r * m.blocks_per_row() + kb)] = s;
      for (std::int64_t c = c0; c < c1; ++c) {
        auto& byte = m.packed[z(r * m.row_bytes() + c / 2)];
        byte = static_cast<std::uint8_t>(byte | (codes[c - c0] << (4 * (c % 2))));
      }
    }
  }
  return m;
}

}  // namespace

Fp4Matrix quantize_fp4(DType format, std::span<const float> values, std::int64_t rows, std::int64_t cols) {
  if (format != DType::nvfp4 && format != DType::mxfp4)
    throw InputError(fmt::format("cannot quantize to '{}' as FP4; valid: nvfp4, mxfp4", to_string(format)));
  float s_in = 1.0f;
  if (format == DType::nvfp4) {
    float amax = 0.0f;
    for (float v : values) amax = std::max(amax, std::fabs(v));
    s_in = fp4::nvfp4_encode_scale(amax);
  }
  return quantize_with(format, values, rows, cols, s_in);
}

Fp4Matrix quantize_nvfp4_static(std::span<const float> values, std::int64_t rows, std::int64_t cols, float encode_scale) {
  if (!(encode_scale > 0.0f) || !std::isfinite(encode_scale))
    throw InputError(fmt::format("NVFP4 static encode scale {} must be finite and > 0", encode_scale));
  return quantize_with(DType::nvfp4, values, rows, cols, encode_scale);
}

std::vector<float> dequantize(const Fp4Matrix& m) {
  std::vector<float> out(z(m.rows * m.cols));
  for (std::int64_t r = 0; r < m.rows; ++r)
    for (std::int64_t c = 0; c < m.cols; ++c) out[z(r * m.cols + c)] = m.value(r, c);
  return out;
}

std::vector<std::uint8_t> swizzle_scales_cublaslt(std::span<const std::uint8_t> scales, std::int64_t rows,
                                                  std::int64_t kblocks) {
  RACKSIM_ASSERT(scales.size() == z(rows * kblocks), "scales hold rows x kblocks bytes");
  std::vector<std::uint8_t> out(z(fp4::cublaslt_scale_bytes(rows, kblocks)), 0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t kb = 0; kb < kblocks; ++kb)
      out[z(fp4::cublaslt_scale_offset(r, kb, kblocks))] = scales[z(r * kblocks + kb)];
  return out;
}

std::vector<std::uint8_t> unswizzle_scales_cublaslt(std::span<const std::uint8_t> swizzled, std::int64_t rows,
                                                    std::int64_t kblocks) {
  RACKSIM_ASSERT(swizzled.size() == z(fp4::cublaslt_scale_bytes(rows, kblocks)), "buffer has the padded size");
  std::vector<std::uint8_t> out(z(rows * kblocks));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t kb = 0; kb < kblocks; ++kb)
      out[z(r * kblocks + kb)] = swizzled[z(fp4::cublaslt_scale_offset(r, kb, kblocks))];
  return out;
}

}  // namespace racksim::exec
