#pragma once
/// Number formats of weights, activations and the KV cache, and what they cost in bytes.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace racksim {

/// Storage and compute formats. nvfp4 and mxfp4 are block-scaled E2M1 (executor.md).
enum class DType : std::uint8_t { fp32, bf16, fp16, fp8, nvfp4, mxfp4 };

/// Lower-case name as used in scenario files ("bf16", "nvfp4", ...).
[[nodiscard]] std::string_view to_string(DType t) noexcept;
/// Parses a name; nullopt if it is not one of the formats.
[[nodiscard]] std::optional<DType> parse_dtype(std::string_view name) noexcept;
/// All formats, in the order error messages list them.
[[nodiscard]] std::span<const DType> all_dtypes() noexcept;

/// The format whose tensor-core path `t` runs on, with another element encoding: mxfp4 -> nvfp4
/// (the same FP4 MMA with other block scales), fp16 -> bf16 (the same 16-bit MMA, equal
/// datasheet peaks); every other format is its own. Fitted factors carry along it.
[[nodiscard]] DType tensor_core_path(DType t) noexcept;

/// Bits of one element without block scales (fp4 = 4).
[[nodiscard]] unsigned element_bits(DType t) noexcept;
/// Elements that share one block scale (NVFP4 16, MXFP4 32), or 0 for unscaled formats.
[[nodiscard]] unsigned scale_block(DType t) noexcept;
/// Bytes of one block scale (NVFP4: UE4M3, MXFP4: UE8M0: one byte each).
[[nodiscard]] unsigned scale_bytes(DType t) noexcept;

/// Bytes to store `count` values along blocks of the scale axis:
/// count*bits/8 plus one scale byte per block (NVFP4 4.5 bits/value, MXFP4 4.25; executor.md).
/// Per-tensor FP32 scales (4 bytes a tensor) are left out: under 1 KB for a 70B model.
[[nodiscard]] double storage_bytes(DType t, double count) noexcept;
/// storage_bytes(t, 1): bytes per value, block scales included.
[[nodiscard]] double bytes_per_value(DType t) noexcept;

}  // namespace racksim
