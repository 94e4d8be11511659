#include "racksim/common/dtype.hpp"

#include <array>

namespace racksim {
namespace {
constexpr std::array<DType, 7> kAll = {DType::fp32, DType::bf16, DType::fp16, DType::fp8, DType::fp8_block, DType::nvfp4, DType::mxfp4};
// DeepSeek-V3 (arXiv 2412.19437, 3.3.2): activations scaled per 1 x 128 tile, weights per 128 x 128.
constexpr unsigned kFp8BlockGroup = 128;
constexpr double kFp8BlockWeightBlock = 128.0 * 128.0;
}  // namespace

std::string_view to_string(DType t) noexcept {
  switch (t) {
    case DType::fp32: return "fp32";
    case DType::bf16: return "bf16";
    case DType::fp16: return "fp16";
    case DType::fp8: return "fp8";
    case DType::nvfp4: return "nvfp4";
    case DType::mxfp4: return "mxfp4";
    case DType::fp8_block: return "fp8_block";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) noexcept {
  for (DType t : kAll)
    if (to_string(t) == name) return t;
  return std::nullopt;
}

std::span<const DType> all_dtypes() noexcept { return kAll; }

DType tensor_core_path(DType t) noexcept {
  if (t == DType::mxfp4) return DType::nvfp4;
  if (t == DType::fp16) return DType::bf16;
  if (t == DType::fp8_block) return DType::fp8;
  return t;
}

unsigned element_bits(DType t) noexcept {
  switch (t) {
    case DType::fp32: return 32;
    case DType::bf16:
    case DType::fp16: return 16;
    case DType::fp8:
    case DType::fp8_block: return 8;
    case DType::nvfp4:
    case DType::mxfp4: return 4;
  }
  return 0;
}

unsigned scale_block(DType t) noexcept {
  // NVFP4: 16 values share one UE4M3 scale; MXFP4 (OCP MX v1.0): 32 share one UE8M0 (executor.md).
  if (t == DType::nvfp4) return 16;
  if (t == DType::mxfp4) return 32;
  if (t == DType::fp8_block) return kFp8BlockGroup;
  return 0;
}

unsigned scale_bytes(DType t) noexcept {
  if (t == DType::fp8_block) return 4;  // FP32
  return scale_block(t) ? 1U : 0U;
}

double storage_bytes(DType t, double count) noexcept {
  double bytes = count * element_bits(t) / 8.0;
  if (unsigned block = scale_block(t)) bytes += count / block * scale_bytes(t);
  return bytes;
}

double weight_storage_bytes(DType t, double count) noexcept {
  if (t == DType::fp8_block) return count + count / kFp8BlockWeightBlock * scale_bytes(t);
  return storage_bytes(t, count);
}

double bytes_per_value(DType t) noexcept { return storage_bytes(t, 1.0); }

}  // namespace racksim
