#pragma once
/// Number formats of weights, activations and the KV cache, and what they cost in bytes.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace racksim {

/// Storage and compute formats. nvfp4 and mxfp4 are block-scaled E2M1 (executor.md). fp8_block
/// is E4M3 with FP32 scales per 1 x 128 activation group and per 128 x 128 weight block (DeepSeek-V3
/// technical report, arXiv 2412.19437, section 3.3.2; the format of Qwen's and DeepSeek's own FP8
/// checkpoints, `weight_block_size: [128, 128]`); it is appended last so the other values keep
/// their order.
enum class DType : std::uint8_t { fp32, bf16, fp16, fp8, nvfp4, mxfp4, fp8_block };

/// Lower-case name as used in scenario files ("bf16", "nvfp4", ...).
[[nodiscard]] std::string_view to_string(DType t) noexcept;
/// Parses a name; nullopt if it is not one of the formats.
[[nodiscard]] std::optional<DType> parse_dtype(std::string_view name) noexcept;
/// All formats, in the order error messages list them.
[[nodiscard]] std::span<const DType> all_dtypes() noexcept;

/// The format whose tensor-core path `t` runs on, with another element encoding: mxfp4 -> nvfp4
/// (the same FP4 MMA with other block scales), fp16 -> bf16 (the same 16-bit MMA, equal
/// datasheet peaks), fp8_block -> fp8 (the FP8 MMA; the block scales are applied to its partial
/// sums); every other format is its own. Fitted factors carry along it.
[[nodiscard]] DType tensor_core_path(DType t) noexcept;

/// Bits of one element without block scales (fp4 = 4).
[[nodiscard]] unsigned element_bits(DType t) noexcept;
/// Elements that share one block scale along a row (NVFP4 16, MXFP4 32, fp8_block 128), or 0 for
/// unscaled formats.
[[nodiscard]] unsigned scale_block(DType t) noexcept;
/// Bytes of one block scale (NVFP4: UE4M3, MXFP4: UE8M0: one byte each; fp8_block: FP32).
[[nodiscard]] unsigned scale_bytes(DType t) noexcept;

/// Bytes to store `count` activation (or KV) values along blocks of the scale axis:
/// count*bits/8 plus one scale per block (NVFP4 4.5 bits/value, MXFP4 4.25; executor.md;
/// fp8_block 8.25, one FP32 per 1 x 128 group). Per-tensor FP32 scales (4 bytes a tensor) are
/// left out: under 1 KB for a 70B model.
[[nodiscard]] double storage_bytes(DType t, double count) noexcept;
/// Bytes to store `count` weight values: storage_bytes, except that fp8_block weights share one
/// FP32 scale per 128 x 128 block (8.002 bits/value).
[[nodiscard]] double weight_storage_bytes(DType t, double count) noexcept;
/// storage_bytes(t, 1): bytes per value, block scales included.
[[nodiscard]] double bytes_per_value(DType t) noexcept;

}  // namespace racksim
