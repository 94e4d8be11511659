#pragma once
/// FP4 number formats shared by the CPU reference and the CUDA kernels: E2M1 elements, UE4M3
/// (NVFP4) and UE8M0 (MXFP4) block scales, nibble packing, the cuBLASLt scale-factor layout and
/// the Hopper E2M1 -> FP16 bit trick. Every function is host+device and compiles as plain inline
/// C++ without nvcc, so the CPU build tests the very math the kernels run (executor.md).

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
/// Marks a function callable from host and device code under nvcc; empty in a plain C++ build.
#define RACKSIM_HOST_DEVICE __host__ __device__
#else
/// Marks a function callable from host and device code under nvcc; empty in a plain C++ build.
#define RACKSIM_HOST_DEVICE
#endif

namespace racksim::exec::fp4 {

/// Largest E2M1 magnitude (1.5 x 2^2).
inline constexpr float kE2M1Max = 6.0f;
/// Largest UE4M3 value (1.75 x 2^8; code 0x7F is NaN in E4M3 "fn").
inline constexpr float kUE4M3Max = 448.0f;
/// Elements per NVFP4 block scale.
inline constexpr int kNvfp4Block = 16;
/// Elements per MXFP4 block scale (OCP MX v1.0).
inline constexpr int kMxfp4Block = 32;
/// Exponent of the largest E2M1 normal (emax_elem in OCP MX v1.0, Table 1).
inline constexpr int kE2M1Emax = 2;
/// UE8M0 exponent bias; code 0xFF is NaN.
inline constexpr int kUE8M0Bias = 127;

/// The IEEE-754 bits of a float.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint32_t float_bits(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

/// The float with IEEE-754 bits `u`.
[[nodiscard]] RACKSIM_HOST_DEVICE inline float bits_float(std::uint32_t u) noexcept {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

/// Rounds |x| (sign ignored) to the nearest value of an unsigned minifloat with `mant_bits`
/// mantissa bits and smallest normal exponent `emin` (subnormals below it), ties to even,
/// saturating at `max_code`; returns the code. NaN saturates too. Exact: integer arithmetic on
/// the float's bits, so host and device agree bit for bit.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint32_t round_to_minifloat(float x, int mant_bits, int emin,
                                                                          std::uint32_t max_code) noexcept {
  const std::uint32_t u = float_bits(x) & 0x7FFFFFFFu;
  if (u >= 0x7F800000u) return max_code;  // Inf, NaN
  const int ef = static_cast<int>(u >> 23);
  if (ef == 0) return 0;  // FP32 subnormals (< 2^-126) are far below every quantum used here
  const int e = ef - 127;
  // Saturate early so that the code arithmetic below cannot overflow.
  if (e > emin + 40) return max_code;
  const std::uint32_t sig = (u & 0x7FFFFFu) | 0x800000u;  // value = sig * 2^(e-23)
  const int q_exp = (e > emin ? e : emin) - mant_bits;       // exponent of one quantum (ulp)
  const int shift = q_exp - (e - 23);                        // >= 23 - mant_bits > 0
  if (shift >= 25) return 0;                                 // value < quantum/2
  const std::uint32_t n0 = sig >> shift;
  const std::uint32_t rem = sig & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1);
  const std::uint32_t n = n0 + ((rem > half || (rem == half && (n0 & 1u))) ? 1u : 0u);
  // n quanta at exponent max(e, emin): n < 2^mant_bits is subnormal, n = 2^(mant_bits+1) has
  // carried into the next binade; in every case the code is the exponent field shifted plus n.
  const std::uint32_t code = (static_cast<std::uint32_t>((e > emin ? e : emin) - emin) << mant_bits) + n;
  return code > max_code ? max_code : code;
}

/// E2M1 code (sign in bit 3) nearest to x, ties to even, saturating at +-6; NaN gives +6.
/// Negative values that round to zero keep their sign (code 0x8).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t encode_e2m1(float x) noexcept {
  const std::uint32_t u = float_bits(x);
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  const std::uint32_t mag = round_to_minifloat(x, 1, 0, 7u);
  const std::uint32_t sign = (!nan && (u >> 31)) ? 0x8u : 0u;
  return static_cast<std::uint8_t>(sign | mag);
}

/// Value of an E2M1 code (low 4 bits): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives.
[[nodiscard]] RACKSIM_HOST_DEVICE inline float decode_e2m1(std::uint8_t code) noexcept {
  const std::uint32_t e = (code >> 1) & 3u, m = code & 1u;
  // Subnormal (e = 0): m x 0.5. Normal: 2^(e-1) x (1 + m/2) = (2 + m) x 2^(e-2).
  const float mag = e == 0 ? 0.5f * static_cast<float>(m)
                           : static_cast<float>(2u + m) * static_cast<float>(1u << e) * 0.25f;
  return (code & 0x8u) ? -mag : mag;
}

/// UE4M3 code (E4M3 "fn" without its sign: bias 7, subnormals down to 2^-9, max 448) nearest to
/// |x|, ties to even, saturating at 448 (code 0x7E); NaN saturates.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t encode_ue4m3(float x) noexcept {
  return static_cast<std::uint8_t>(round_to_minifloat(x, 3, -6, 0x7Eu));
}

/// Value of a UE4M3 code (bit 7 ignored); code 0x7F is NaN.
[[nodiscard]] RACKSIM_HOST_DEVICE inline float decode_ue4m3(std::uint8_t code) noexcept {
  const std::uint32_t c = code & 0x7Fu;
  if (c == 0x7Fu) return bits_float(0x7FC00000u);
  const std::uint32_t e = c >> 3, m = c & 7u;
  // Subnormal: m x 2^-9. Normal: (8 + m) x 2^(e-10), built as FP32 bits (always normal there).
  if (e == 0) return static_cast<float>(m) * (1.0f / 512.0f);
  return bits_float(((e - 7u + 127u) << 23) | (m << 20));
}

/// UE8M0 code of 2^exponent, clamped to the representable exponents -127..127.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t ue8m0_from_exponent(int exponent) noexcept {
  const int c = exponent + kUE8M0Bias;
  return static_cast<std::uint8_t>(c < 0 ? 0 : (c > 254 ? 254 : c));
}

/// floor(log2(|x|)) for finite nonzero x, exact (FP32 subnormals included); -127 for zero.
[[nodiscard]] RACKSIM_HOST_DEVICE inline int floor_log2(float x) noexcept {
  const std::uint32_t u = float_bits(x) & 0x7FFFFFFFu;
  const int ef = static_cast<int>(u >> 23);
  if (ef != 0) return ef - 127;
  if (u == 0) return -127;
  int e = -127;  // subnormal: 2^-149 x mantissa; find its top bit
  for (std::uint32_t m = u; m < 0x400000u; m <<= 1) --e;
  return e;
}

/// UE8M0 code of the largest power of two <= |x| (rounding toward zero), clamped to 2^-127..2^127.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t encode_ue8m0(float x) noexcept {
  return ue8m0_from_exponent(floor_log2(x));
}

/// Value of a UE8M0 code: 2^(code-127); 0xFF is NaN.
[[nodiscard]] RACKSIM_HOST_DEVICE inline float decode_ue8m0(std::uint8_t code) noexcept {
  if (code == 0xFFu) return bits_float(0x7FC00000u);
  if (code == 0) return bits_float(0x00400000u);  // 2^-127 is an FP32 subnormal
  return bits_float(static_cast<std::uint32_t>(code) << 23);
}

/// One byte holding two E2M1 codes, element 0 in the LOW nibble (as cuda_fp4.hpp packs them).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t pack_e2m1x2(std::uint8_t element0, std::uint8_t element1) noexcept {
  return static_cast<std::uint8_t>(((element1 & 0xFu) << 4) | (element0 & 0xFu));
}

/// E2M1 code of element `i` (0 or 1) of a packed byte.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t unpack_e2m1(std::uint8_t byte, int i) noexcept {
  return static_cast<std::uint8_t>((byte >> (4 * i)) & 0xFu);
}

/// NVFP4 per-tensor encode scale s_in = 6 x 448 / amax(tensor), so the largest block scale is
/// 448 (cuBLAS "1D Block Quantization"); 1 for an all-zero tensor. The decode scale is 1/s_in.
[[nodiscard]] RACKSIM_HOST_DEVICE inline float nvfp4_encode_scale(float tensor_amax) noexcept {
  return tensor_amax > 0.0f ? kE2M1Max * kUE4M3Max / tensor_amax : 1.0f;
}

/// NVFP4 block scale code e4m3(amax_block / 6 x s_in).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t nvfp4_block_scale(float block_amax, float s_in) noexcept {
  return encode_ue4m3(block_amax / kE2M1Max * s_in);
}

/// E2M1 code of element x of an NVFP4 block with scale code `scale` under encode scale s_in:
/// x / (decode(scale) / s_in), rounded; zero when the block scale underflowed to zero.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t nvfp4_encode_element(float x, std::uint8_t scale, float s_in) noexcept {
  const float block = decode_ue4m3(scale);
  return block > 0.0f ? encode_e2m1(x * (s_in / block)) : static_cast<std::uint8_t>(0);
}

/// Quantizes one NVFP4 block of 16 values under encode scale s_in: returns the block scale code
/// and writes the 16 E2M1 codes packed in two words (element j in bits 4(j%8).. of word j/8, the
/// byte order of the packed rows). The one routine the CPU quantizer (quantize_fp4) and the
/// activation-quantize kernel (exec/cuda/nvfp4_quantize.cu) both run.
RACKSIM_HOST_DEVICE inline std::uint8_t nvfp4_quantize_block16(const float* x, float s_in, std::uint32_t* words) noexcept {
  float amax = 0.0f;
  for (int i = 0; i < kNvfp4Block; ++i) {
    const float a = x[i] < 0.0f ? -x[i] : x[i];
    amax = a > amax ? a : amax;
  }
  const std::uint8_t s = nvfp4_block_scale(amax, s_in);
  words[0] = words[1] = 0;
  for (int i = 0; i < kNvfp4Block; ++i)
    words[i / 8] |= static_cast<std::uint32_t>(nvfp4_encode_element(x[i], s, s_in)) << (4 * (i % 8));
  return s;
}

/// MXFP4 shared exponent floor(log2(amax_block)) - emax_elem (OCP MX v1.0, section 6.3),
/// as a UE8M0 code; an all-zero block gets code 0 (2^-127).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t mxfp4_block_scale(float block_amax) noexcept {
  return block_amax > 0.0f ? ue8m0_from_exponent(floor_log2(block_amax) - kE2M1Emax) : static_cast<std::uint8_t>(0);
}

/// E2M1 code of element x of an MXFP4 block with UE8M0 scale `scale`: x / 2^(scale-127), rounded
/// and clamped to +-6 (the MX spec's saturation of values above the element format's maximum).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::uint8_t mxfp4_encode_element(float x, std::uint8_t scale) noexcept {
  // Dividing by a power of two is exact unless the quotient leaves FP32's range; multiply by
  // 2^-e split in two factors so that neither overflows for e in -127..127.
  const int e = static_cast<int>(scale) - kUE8M0Bias;
  const int e1 = e / 2, e2 = e - e1;
  const float f1 = bits_float(static_cast<std::uint32_t>(127 - e1) << 23);
  const float f2 = bits_float(static_cast<std::uint32_t>(127 - e2) << 23);
  return encode_e2m1(x * f1 * f2);
}

/// Byte offset of the scale of (row, kblock) in cuBLASLt's VEC16_UE4M3 scale-factor layout
/// ("1D Block Scaling Factors Layout"): 128-row x 4-block tiles of 512 bytes, tiles row-major,
/// inside a tile (row%32)*16 + (row%128/32)*4 + kblock%4. `kblocks` is the matrix's K/16.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::int64_t cublaslt_scale_offset(std::int64_t row, std::int64_t kblock,
                                                                            std::int64_t kblocks) noexcept {
  const std::int64_t tiles_per_row = (kblocks + 3) / 4;
  const std::int64_t tile = (row / 128) * tiles_per_row + kblock / 4;
  const std::int64_t r = row % 128;
  return tile * 512 + (r % 32) * 16 + (r / 32) * 4 + kblock % 4;
}

/// Bytes of the cuBLASLt scale-factor buffer: roundup(rows, 128) x roundup(kblocks, 4).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::int64_t cublaslt_scale_bytes(std::int64_t rows, std::int64_t kblocks) noexcept {
  return (rows + 127) / 128 * 128 * ((kblocks + 3) / 4 * 4);
}

/// Eight FP16 bit patterns, two per word: word i holds element i (low half) and i+4 (high half).
struct Fp16x8 {
  std::uint32_t pairs[4];  ///< FP16 bits of elements (i, i+4) in word i
};

/// Converts 8 packed E2M1 codes (element j in bits 4j..4j+3) into FP16 bit patterns of the
/// values x 2^-14, with two masks and a shift per pair (vLLM marlin `dequant.h`): sign to bit 15,
/// exponent and mantissa to bits 9..11. FP16's bias 15 against E2M1's 1 leaves the factor 2^-14,
/// which the caller folds into the block scale. No convert instruction: Hopper has none for FP4.
[[nodiscard]] RACKSIM_HOST_DEVICE inline Fp16x8 e2m1x8_to_fp16x8_scaled(std::uint32_t q) noexcept {
  Fp16x8 out{};
  for (int i = 0; i < 4; ++i) {
    // Bring element i to bits 12..15 and element i+4 to bits 28..31.
    const std::uint32_t t = q << (4 * (3 - i));
    out.pairs[i] = (t & 0x80008000u) | ((t & 0x70007000u) >> 3);
  }
  return out;
}

/// 2^14: the factor that turns e2m1x8_to_fp16x8_scaled's FP16 values into E2M1 values.
inline constexpr float kFp16BitTrickScale = 16384.0f;

/// The fused Hopper GEMM's bit order inside a word of 8 E2M1 codes (the tiled layout,
/// fp4_gemm_path.hpp). e2m1x8_to_fp16x8_scaled brings pair i (elements i, i + 4) to the FP16
/// positions with two shifts and two masks each (one shift for pair 3): 15 ALU instructions per
/// word. Stored in this order instead, the same FP16 pairs take 11
/// (e2m1x8_mma_order_to_fp16x8_scaled): in each 16-bit half (element i in the low half, i + 4 in
/// the high), pair 0's exponent-mantissa bits sit at 9..11 and its sign at 15, where FP16 wants
/// them (one mask); pair 1's at 6..8 and 12 (one shift by 3, one mask); pair 2's at 0..2 and 13,
/// pair 3's at 3..5 and 14 (two shifts, two masks each). No layout does better with shifts and
/// masks: an exhaustive search over the 16-bit half's placements of four (3 contiguous + 1) bit
/// groups finds 11 at best (docs/executor.md, "The tiled layout's bit order").
/// Where pair i's element sits in each 16-bit half: its exponent-mantissa bits from bit
/// e2m1_mma_eem_bit(i) (3 bits), its sign at e2m1_mma_sign_bit(i).
[[nodiscard]] RACKSIM_HOST_DEVICE constexpr int e2m1_mma_eem_bit(int i) noexcept { return i == 0 ? 9 : i == 1 ? 6 : i == 2 ? 0 : 3; }
[[nodiscard]] RACKSIM_HOST_DEVICE constexpr int e2m1_mma_sign_bit(int i) noexcept { return i == 0 ? 15 : i == 1 ? 12 : i == 2 ? 13 : 14; }

/// A word of 8 E2M1 codes (element j in bits 4j..4j+3) in the fused GEMM's bit order. A
/// permutation of the 32 bits.
[[nodiscard]] RACKSIM_HOST_DEVICE constexpr std::uint32_t e2m1x8_to_mma_order(std::uint32_t q) noexcept {
  std::uint32_t p = 0;
  for (int j = 0; j < 8; ++j) {
    const std::uint32_t c = (q >> (4 * j)) & 0xFu;
    const int half = j < 4 ? 0 : 16;
    p |= (c & 0x7u) << (e2m1_mma_eem_bit(j % 4) + half);
    p |= (c >> 3) << (e2m1_mma_sign_bit(j % 4) + half);
  }
  return p;
}

/// The inverse of e2m1x8_to_mma_order.
[[nodiscard]] RACKSIM_HOST_DEVICE constexpr std::uint32_t e2m1x8_from_mma_order(std::uint32_t p) noexcept {
  std::uint32_t q = 0;
  for (int j = 0; j < 8; ++j) {
    const int half = j < 4 ? 0 : 16;
    const std::uint32_t c = ((p >> (e2m1_mma_eem_bit(j % 4) + half)) & 0x7u) | (((p >> (e2m1_mma_sign_bit(j % 4) + half)) & 0x1u) << 3);
    q |= c << (4 * j);
  }
  return q;
}

/// e2m1x8_to_fp16x8_scaled of the word whose fused-GEMM order is p, in 11 ALU instructions: the
/// same FP16 bits (values x 2^-14), pair i = elements (i, i + 4).
[[nodiscard]] RACKSIM_HOST_DEVICE inline Fp16x8 e2m1x8_mma_order_to_fp16x8_scaled(std::uint32_t p) noexcept {
  constexpr std::uint32_t kAll = 0x8E008E00u, kEem = 0x0E000E00u, kSign = 0x80008000u;
  Fp16x8 out{};
  out.pairs[0] = p & kAll;
  out.pairs[1] = (p << 3) & kAll;
  out.pairs[2] = ((p << 9) & kEem) | ((p << 2) & kSign);
  out.pairs[3] = ((p << 6) & kEem) | ((p << 1) & kSign);
  return out;
}

}  // namespace racksim::exec::fp4
