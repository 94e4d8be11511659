#pragma once
/// Activation and KV-cache number formats shared by the CPU side and the CUDA step ops: BF16
/// (round to nearest even, as __float2bfloat16_rn) and FP8 E4M3 "fn" (OCP FP8: bias 7, max 448,
/// no Inf, code 0x7F NaN; satfinite, as __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)).
/// Host+device like fp4.hpp, so the kernels and the tests quantize with the same arithmetic.

#include <cstdint>

#include "racksim/exec/fp4.hpp"

namespace racksim::exec::act {

/// Largest finite E4M3 magnitude (1.75 x 2^8; OCP 8-bit Floating Point Specification, Table 1).
inline constexpr float kE4M3Max = 448.0f;

/// BF16 bit pattern of x: the top 16 bits of its FP32 bits rounded to nearest, ties to even;
/// NaN stays a (quiet) NaN.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint16_t bf16_bits(float x) noexcept {
  const std::uint32_t u = fp4::float_bits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/// The value of a BF16 bit pattern (exact in FP32).
[[nodiscard]] RACKSIM_HOST_DEVICE inline float bf16_value(std::uint16_t bits) noexcept {
  return fp4::bits_float(static_cast<std::uint32_t>(bits) << 16);
}

/// x rounded to the nearest BF16 value, ties to even.
[[nodiscard]] RACKSIM_HOST_DEVICE inline float round_bf16(float x) noexcept { return bf16_value(bf16_bits(x)); }

/// E4M3 code of x: sign in bit 7, magnitude rounded to nearest even (subnormals m x 2^-9),
/// saturating at +-448 (Inf too); NaN gives 0x7F. A negative value that rounds to zero keeps
/// its sign (code 0x80).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t e4m3_code(float x) noexcept {
  const std::uint32_t u = fp4::float_bits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7Fu;
  return static_cast<std::uint8_t>(((u >> 31) << 7) | fp4::round_to_minifloat(x, 3, -6, 0x7Eu));
}

/// The value of an E4M3 code (exact in FP32, FP16 and BF16); 0x7F and 0xFF are NaN.
[[nodiscard]] RACKSIM_HOST_DEVICE inline float e4m3_value(std::uint8_t code) noexcept {
  const float mag = fp4::decode_ue4m3(static_cast<std::uint8_t>(code & 0x7Fu));
  return (code & 0x80u) ? -mag : mag;
}

/// Hopper's FP8 large-M variant (RACKSIM_FP4_LARGE_M=fp8, fp4_gemm_path.hpp) stores an NVFP4
/// weight e2m1 x ue4m3 x tensor_scale as the E4M3 code of e2m1 x ue4m3 / 8 and moves
/// tensor_scale x 8 into the GEMM's alpha. |e2m1 x ue4m3| <= 6 x 448 = 2,688 (the largest E2M1
/// and UE4M3 magnitudes), so the quotient is at most 336 < 448: no block saturates, whatever the
/// quantizer chose; 8 is a power of two, so the quotient is exact in FP32 and E4M3's rounding is
/// the only one (relative 2^-4 for results >= 2^-6, absolute 2^-10 below: E4M3's subnormal step).
inline constexpr float kNvfp4E4m3WeightDivisor = 8.0f;

/// The E4M3 code the FP8 variant stores for the NVFP4 weight (e2m1 code, ue4m3 scale code).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t nvfp4_e4m3_weight_code(std::uint8_t e2m1, std::uint8_t ue4m3) noexcept {
  return e4m3_code(fp4::decode_e2m1(e2m1) * fp4::decode_ue4m3(ue4m3) / kNvfp4E4m3WeightDivisor);
}

/// The per-tensor scale s of an E4M3 tensor whose largest magnitude is `amax`: the least power
/// of two with amax / s <= 448, so nothing saturates and x / s is exact in FP32. With amax =
/// f x 2^E (1 <= f < 2): 2^(E-8) when f <= 1.75 (448 = 1.75 x 2^8), else 2^(E-7). 1 for amax 0 or
/// NaN; NaN for amax Inf (no scale holds it: x / NaN makes every code NaN, so an Inf in x shows in
/// the GEMM's output as the BF16 path's would, instead of saturating to 448 unseen); amax below
/// 2^-100 counts as 2^-100 (s = 2^-108, still a normal float, so 1 / s is exact).
[[nodiscard]] RACKSIM_HOST_DEVICE inline float e4m3_pow2_scale(float amax) noexcept {
  if (amax > 3.4028234663852886e38f) return fp4::bits_float(0x7FC00000u);
  if (!(amax > 0.0f)) return 1.0f;
  const std::uint32_t u = fp4::float_bits(amax < 0x1p-100f ? 0x1p-100f : amax);
  const int e = static_cast<int>((u >> 23) & 0xFFu) - 127 - ((u & 0x7FFFFFu) <= 0x600000u ? 8 : 7);
  return fp4::bits_float(static_cast<std::uint32_t>(e + 127) << 23);
}

}  // namespace racksim::exec::act
