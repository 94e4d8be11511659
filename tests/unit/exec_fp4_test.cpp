// exec/: FP4 formats (E2M1, UE4M3, UE8M0), NVFP4/MXFP4 block quantization, the cuBLASLt
// scale-factor layout and the Hopper E2M1 -> FP16 bit trick, against values worked out by hand
// and against independent decoders written here from the format definitions.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_matrix.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

// E2M1 magnitudes by code (OCP MX v1.0 Table 5 / executor.md).
constexpr double kE2M1[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};

// UE4M3 from its definition: bias 7, 3 mantissa bits, subnormals m x 2^-9.
double ue4m3_value(int c) {
  const int e = c >> 3, m = c & 7;
  return e == 0 ? m * std::ldexp(1.0, -9) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
}

// FP16 bits to double, from IEEE-754 binary16's definition.
double fp16_value(std::uint32_t h) {
  const int s = (h >> 15) & 1, e = (h >> 10) & 31, m = h & 1023;
  const double mag = e == 0 ? m * std::ldexp(1.0, -24) : (1.0 + m / 1024.0) * std::ldexp(1.0, e - 15);
  return s ? -mag : mag;
}

}  // namespace

TEST_CASE("E2M1: all 16 codes decode to the table and round-trip", "[exec][fp4]") {
  // Codes 0-7 are +0, 0.5, 1, 1.5, 2, 3, 4, 6; codes 8-15 the same with the sign bit (bit 3).
  for (int c = 0; c < 16; ++c) {
    const double want = (c & 8 ? -1 : 1) * kE2M1[c & 7];
    const float got = fp4::decode_e2m1(static_cast<std::uint8_t>(c));
    CHECK(got == want);
    CHECK(std::signbit(got) == ((c & 8) != 0));  // -0 (code 8) keeps its sign
    CHECK(fp4::encode_e2m1(got) == c);
  }
}

TEST_CASE("E2M1: round to nearest, ties to even, saturating", "[exec][fp4]") {
  // Midpoints between neighbours go to the code with mantissa bit 0 (even code):
  // 0.25 -> 0, 0.75 -> 1.0, 1.25 -> 1.0, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4.
  struct Tie {
    float mid, below, above, tie;
  };
  const Tie ties[] = {{0.25f, 0, 0.5f, 0},  {0.75f, 0.5f, 1, 1}, {1.25f, 1, 1.5f, 1}, {1.75f, 1.5f, 2, 2},
                      {2.5f, 2, 3, 2},      {3.5f, 3, 4, 4},     {5.0f, 4, 6, 4}};
  for (const Tie& t : ties) {
    INFO("midpoint " << t.mid);
    CHECK(fp4::decode_e2m1(fp4::encode_e2m1(t.mid)) == t.tie);
    CHECK(fp4::decode_e2m1(fp4::encode_e2m1(-t.mid)) == -t.tie);
    // A hair either side of a midpoint goes to the nearer neighbour.
    CHECK(fp4::decode_e2m1(fp4::encode_e2m1(std::nextafter(t.mid, 0.0f))) == t.below);
    CHECK(fp4::decode_e2m1(fp4::encode_e2m1(std::nextafter(t.mid, 10.0f))) == t.above);
  }
  // Saturation: everything beyond 6 (Inf included) is +-6; NaN is +6 (E2M1 has no NaN).
  CHECK(fp4::decode_e2m1(fp4::encode_e2m1(7.0f)) == 6.0f);
  CHECK(fp4::decode_e2m1(fp4::encode_e2m1(-1e30f)) == -6.0f);
  CHECK(fp4::decode_e2m1(fp4::encode_e2m1(std::numeric_limits<float>::infinity())) == 6.0f);
  CHECK(fp4::encode_e2m1(std::numeric_limits<float>::quiet_NaN()) == 7);
  CHECK(fp4::encode_e2m1(1e-30f) == 0);
  CHECK(fp4::encode_e2m1(-1e-30f) == 8);  // rounds to -0
  // Exhaustive against brute force: on a 1/64 grid over [-8, 8] the code is the nearest table
  // value, ties to the even code.
  for (int i = -512; i <= 512; ++i) {
    const double x = i / 64.0, a = std::fabs(x);
    int best = 0;
    for (int c = 1; c < 8; ++c) {
      const double d = std::fabs(kE2M1[c] - a), db = std::fabs(kE2M1[best] - a);
      if (d < db || (d == db && c % 2 == 0)) best = c;
    }
    INFO("x = " << x);
    CHECK((fp4::encode_e2m1(static_cast<float>(x)) & 7) == best);
  }
}

TEST_CASE("UE4M3: every code, rounding, subnormals and saturation", "[exec][fp4]") {
  // 127 finite codes: 0, subnormals m x 2^-9 (m = 1..7), normals (1 + m/8) 2^(e-7) up to 448;
  // code 0x7F is NaN and bit 7 (the sign of E4M3) is ignored.
  CHECK(fp4::decode_ue4m3(0x7E) == 448.0f);
  CHECK(fp4::decode_ue4m3(0x01) == std::ldexp(1.0f, -9));
  CHECK(fp4::decode_ue4m3(0x08) == std::ldexp(1.0f, -6));
  CHECK(std::isnan(fp4::decode_ue4m3(0x7F)));
  CHECK(fp4::decode_ue4m3(0x80 | 0x38) == 1.0f);
  for (int c = 0; c < 0x7F; ++c) {
    const double v = ue4m3_value(c);
    INFO("code " << c);
    CHECK(fp4::decode_ue4m3(static_cast<std::uint8_t>(c)) == v);
    CHECK(fp4::encode_ue4m3(static_cast<float>(v)) == c);
    if (c + 1 < 0x7F) {
      // The midpoint to the next code ties to the even code; a hair either side goes to the nearer.
      const double mid = (v + ue4m3_value(c + 1)) / 2;  // exact in float (<= 5 significant bits)
      const float midf = static_cast<float>(mid);
      REQUIRE(midf == mid);
      CHECK(fp4::encode_ue4m3(midf) == (c % 2 == 0 ? c : c + 1));
      CHECK(fp4::encode_ue4m3(std::nextafter(midf, 0.0f)) == c);
      CHECK(fp4::encode_ue4m3(std::nextafter(midf, 1000.0f)) == c + 1);
    }
  }
  // Below half the smallest subnormal (2^-10) rounds to 0; 2^-10 itself ties to 0 (even).
  CHECK(fp4::encode_ue4m3(std::ldexp(1.0f, -10)) == 0);
  CHECK(fp4::encode_ue4m3(std::ldexp(1.5f, -10)) == 1);
  CHECK(fp4::encode_ue4m3(1e-30f) == 0);
  // Saturation at 448: 464 is the midpoint to the (absent) 480 and 1e9 is far beyond.
  CHECK(fp4::encode_ue4m3(464.0f) == 0x7E);
  CHECK(fp4::encode_ue4m3(1e9f) == 0x7E);
  CHECK(fp4::encode_ue4m3(std::numeric_limits<float>::infinity()) == 0x7E);
  CHECK(fp4::encode_ue4m3(-2.0f) == fp4::encode_ue4m3(2.0f));  // sign ignored
}

TEST_CASE("UE8M0: every code is a power of two, encoding rounds toward zero", "[exec][fp4]") {
  // Code c is 2^(c-127) for c = 0..254 (2^-127 is an FP32 subnormal); 0xFF is NaN.
  for (int c = 0; c < 255; ++c) {
    const float v = fp4::decode_ue8m0(static_cast<std::uint8_t>(c));
    INFO("code " << c);
    CHECK(v == std::ldexp(1.0f, c - 127));
    CHECK(fp4::encode_ue8m0(v) == c);
    if (c < 254) CHECK(fp4::encode_ue8m0(v * 1.999f) == c);  // floor(log2)
  }
  CHECK(std::isnan(fp4::decode_ue8m0(0xFF)));
  CHECK(fp4::encode_ue8m0(std::ldexp(1.0f, -140)) == 0);  // clamps at 2^-127
  CHECK(fp4::encode_ue8m0(std::numeric_limits<float>::max()) == 254);
  CHECK(fp4::floor_log2(std::ldexp(1.0f, -149)) == -149);  // smallest FP32 subnormal
  CHECK(fp4::floor_log2(std::ldexp(1.5f, -140)) == -140);
}

TEST_CASE("E2M1 packing: element 0 in the low nibble", "[exec][fp4]") {
  // cuda_fp4.hpp's __nv_cvt_float2_to_fp4x2 packs fp4(y) << 4 | fp4(x): (x=1, y=-6) -> 0xF2.
  CHECK(fp4::pack_e2m1x2(fp4::encode_e2m1(1.0f), fp4::encode_e2m1(-6.0f)) == 0xF2);
  CHECK(fp4::unpack_e2m1(0xF2, 0) == 0x2);
  CHECK(fp4::unpack_e2m1(0xF2, 1) == 0xF);
}

TEST_CASE("Hopper bit trick: E2M1 -> FP16 with masks and a shift, all 256 byte values", "[exec][fp4]") {
  // Every byte value in every byte position of the word: each FP16 result times 2^14 must equal
  // the E2M1 decode of its nibble (sign of zero included).
  for (int b = 0; b < 256; ++b) {
    for (int pos = 0; pos < 4; ++pos) {
      // The byte at `pos`, the other bytes a fixed pattern so neighbours are exercised too.
      std::uint32_t q = 0xA5C3961Eu;
      q = (q & ~(0xFFu << (8 * pos))) | (static_cast<std::uint32_t>(b) << (8 * pos));
      const fp4::Fp16x8 h = fp4::e2m1x8_to_fp16x8_scaled(q);
      for (int j = 0; j < 8; ++j) {
        const std::uint32_t bits = (h.pairs[j % 4] >> (j < 4 ? 0 : 16)) & 0xFFFFu;
        const auto code = static_cast<std::uint8_t>((q >> (4 * j)) & 0xFu);
        const double got = fp16_value(bits) * fp4::kFp16BitTrickScale;
        INFO("q = " << q << " element " << j);
        CHECK(got == fp4::decode_e2m1(code));
        CHECK(((bits >> 15) & 1u) == ((code >> 3) & 1u));
      }
    }
  }
}

TEST_CASE("the fused GEMM's bit order: a permutation whose 11-instruction decode equals the bit trick on every word", "[exec][fp4]") {
  // Why 32 words prove all 2^32: e2m1x8_to_mma_order moves bits (each output bit is one input bit)
  // and both decodes are shifts, constant masks and ORs of terms with disjoint masks, so all three
  // are linear over GF(2) (OR of disjoint terms is XOR). Two linear maps that agree on the 32 unit
  // words agree everywhere; a bit move that sends the 32 unit words to 32 distinct unit words is a
  // permutation. Random words then check the linearity claim itself.
  std::uint32_t seen = 0;
  for (int b = 0; b < 32; ++b) {
    const std::uint32_t q = 1u << b;
    const std::uint32_t p = fp4::e2m1x8_to_mma_order(q);
    INFO("bit " << b);
    REQUIRE(std::popcount(p) == 1);
    CHECK((seen & p) == 0);
    seen |= p;
    CHECK(fp4::e2m1x8_from_mma_order(p) == q);
    const fp4::Fp16x8 want = fp4::e2m1x8_to_fp16x8_scaled(q), got = fp4::e2m1x8_mma_order_to_fp16x8_scaled(p);
    for (int i = 0; i < 4; ++i) CHECK(got.pairs[i] == want.pairs[i]);
  }
  CHECK(seen == 0xFFFFFFFFu);
  CHECK(fp4::e2m1x8_to_mma_order(0) == 0);
  // By hand: code 0xF (-6) as element 0 lands in pair 0's slot of the low half: eem 7 at bits
  // 9..11, sign at 15 -> 0x8E00; as element 6 (pair 2, high half): eem at 16..18, sign at 29.
  CHECK(fp4::e2m1x8_to_mma_order(0xFu) == 0x8E00u);
  CHECK(fp4::e2m1x8_to_mma_order(0xFu << 24) == ((0x7u << 16) | (1u << 29)));
  std::mt19937 rng(77);
  for (int i = 0; i < 20000; ++i) {
    const std::uint32_t q = static_cast<std::uint32_t>(rng());
    const std::uint32_t p = fp4::e2m1x8_to_mma_order(q);
    CHECK(fp4::e2m1x8_from_mma_order(p) == q);
    const fp4::Fp16x8 want = fp4::e2m1x8_to_fp16x8_scaled(q), got = fp4::e2m1x8_mma_order_to_fp16x8_scaled(p);
    for (int j = 0; j < 4; ++j) CHECK(got.pairs[j] == want.pairs[j]);
  }
}

TEST_CASE("NVFP4 quantize-dequantize error is at most one block scale per element", "[exec][fp4]") {
  // Random seeded matrix [24 x 80] (5 blocks of 16 per row) whose blocks span amplitudes 2^-4..1
  // of the tensor amax, so every block scale is a UE4M3 normal (>= 2^-6).
  // Bound: with D = decoded block scale x tensor scale, x/D lies within 6/(1 - 2^-4) = 6.4
  // (UE4M3 rounding of the scale is within half an ulp, 2^-4 relative). The E2M1 grid's widest
  // gap is 2 (between 4 and 6), so rounding errs by at most 1 unit, and saturation of
  // (6, 6.4] by at most 0.4: |x - x^| <= D. Also exactly: x^ / D is a grid value.
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), amp(-4.0f, 0.0f);
  const std::int64_t rows = 24, cols = 80;
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t kb = 0; kb < 5; ++kb) {
      const float a = std::exp2(amp(rng)) * 3.7f;
      for (int i = 0; i < 16; ++i) x[static_cast<std::size_t>(r * cols + kb * 16 + i)] = a * u(rng);
    }
  const Fp4Matrix q = quantize_fp4(DType::nvfp4, x, rows, cols);
  REQUIRE(q.blocks_per_row() == 5);
  REQUIRE(q.packed.size() == static_cast<std::size_t>(rows * cols / 2));
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  CHECK(q.tensor_scale == Approx(amax / (6.0f * 448.0f)).epsilon(1e-6));  // 1/s_in, s_in = 6 x 448 / amax
  const std::vector<float> y = dequantize(q);
  double err2 = 0, ref2 = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto i = static_cast<std::size_t>(r * cols + c);
      const float d = q.scale(r, c / 16);
      REQUIRE(fp4::decode_ue4m3(q.scales[static_cast<std::size_t>(r * 5 + c / 16)]) >= std::ldexp(1.0f, -6));
      CHECK(std::fabs(x[i] - y[i]) <= d);
      err2 += (x[i] - y[i]) * (x[i] - y[i]);
      ref2 += x[i] * x[i];
    }
  // Whole-matrix relative RMS error: uniform data in a block uses the grid roughly evenly, so
  // ~0.1 is typical for FP4; 0.2 flags a broken scale.
  CHECK(std::sqrt(err2 / ref2) < 0.2);
  // The largest block hits the top of the range: its scale is 448 (tensor amax / 6 x s_in).
  bool found_448 = false;
  for (auto s : q.scales) found_448 = found_448 || fp4::decode_ue4m3(s) == 448.0f;
  CHECK(found_448);
}

TEST_CASE("MXFP4 quantize-dequantize follows OCP MX v1.0", "[exec][fp4]") {
  // Scale X = 2^(floor(log2(amax_block)) - 2), so amax/X is in [4, 8): elements round to the
  // E2M1 grid and clamp at 6. Bound per element: half the widest gap (1 unit of X) or the clamp
  // (< 8 - 6 = 2 units), so |x - x^| <= 2X (and < X wherever |x| <= 6X).
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), amp(-20.0f, 20.0f);
  const std::int64_t rows = 16, cols = 96;  // 3 blocks of 32 per row
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (std::int64_t b = 0; b < rows * 3; ++b) {
    const float a = std::exp2(amp(rng));
    for (int i = 0; i < 32; ++i) x[static_cast<std::size_t>(b * 32 + i)] = a * u(rng);
  }
  const Fp4Matrix q = quantize_fp4(DType::mxfp4, x, rows, cols);
  REQUIRE(q.blocks_per_row() == 3);
  CHECK(q.tensor_scale == 1.0f);
  const std::vector<float> y = dequantize(q);
  for (std::int64_t b = 0; b < rows * 3; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[static_cast<std::size_t>(b * 32 + i)]));
    const double X = std::ldexp(1.0, static_cast<int>(std::floor(std::log2(amax))) - 2);
    CHECK(fp4::decode_ue8m0(q.scales[static_cast<std::size_t>(b)]) == X);
    for (int i = 0; i < 32; ++i) {
      const auto k = static_cast<std::size_t>(b * 32 + i);
      const double err = std::fabs(x[k] - y[k]);
      CHECK(err <= 2 * X);
      if (std::fabs(x[k]) <= 6 * X) CHECK(err <= X);
    }
  }
  // A partial last block (cols = 40: one block of 32 and one of 8) and an all-zero block.
  std::vector<float> z(40, 0.0f);
  z[35] = 3.0f;  // amax 3: X = 2^(1-2) = 0.5, 3 / 0.5 = 6 exactly
  const Fp4Matrix qz = quantize_fp4(DType::mxfp4, z, 1, 40);
  CHECK(qz.blocks_per_row() == 2);
  CHECK(qz.scales[0] == 0);  // all-zero block: 2^-127
  CHECK(qz.value(0, 35) == 3.0f);
  CHECK(qz.value(0, 0) == 0.0f);
  CHECK_THROWS_AS(quantize_fp4(DType::bf16, z, 1, 40), InputError);
}

TEST_CASE("cuBLASLt VEC16_UE4M3 scale layout: offsets and padding", "[exec][fp4]") {
  // Within a 128 x 4 tile of 512 bytes, offset = (row%32)*16 + (row%128/32)*4 + kblock%4;
  // tiles are row-major. For K = 160 (10 blocks -> 3 tiles across, padded to 12 blocks):
  CHECK(fp4::cublaslt_scale_offset(0, 0, 10) == 0);
  CHECK(fp4::cublaslt_scale_offset(0, 3, 10) == 3);
  CHECK(fp4::cublaslt_scale_offset(1, 0, 10) == 16);
  CHECK(fp4::cublaslt_scale_offset(32, 0, 10) == 4);
  CHECK(fp4::cublaslt_scale_offset(127, 3, 10) == 31 * 16 + 3 * 4 + 3);  // 511: last byte of tile 0
  CHECK(fp4::cublaslt_scale_offset(0, 4, 10) == 512);                     // tile 1
  CHECK(fp4::cublaslt_scale_offset(5, 9, 10) == 2 * 512 + 5 * 16 + 1);    // tile 2, kblock 9 % 4 = 1
  CHECK(fp4::cublaslt_scale_offset(128, 0, 10) == 3 * 512);               // second tile row
  CHECK(fp4::cublaslt_scale_offset(200, 6, 10) == (3 + 1) * 512 + (72 % 32) * 16 + (72 / 32) * 4 + 2);
  // Sizes: roundup(rows, 128) x roundup(kblocks, 4).
  CHECK(fp4::cublaslt_scale_bytes(200, 10) == 256 * 12);
  CHECK(fp4::cublaslt_scale_bytes(128, 4) == 512);
  CHECK(fp4::cublaslt_scale_bytes(1, 1) == 512);
  // Swizzle: a permutation onto distinct offsets, zeros in the padding, and inverted by unswizzle.
  const std::int64_t rows = 200, kb = 10;
  std::vector<std::uint8_t> s(static_cast<std::size_t>(rows * kb));
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<std::uint8_t>(1 + i % 251);  // never 0
  const auto sw = swizzle_scales_cublaslt(s, rows, kb);
  REQUIRE(sw.size() == 256 * 12);
  std::size_t nonzero = 0;
  for (auto v : sw) nonzero += v != 0;
  CHECK(nonzero == s.size());
  CHECK(sw[static_cast<std::size_t>(fp4::cublaslt_scale_offset(200 - 1, 9, kb))] == s[s.size() - 1]);
  CHECK(unswizzle_scales_cublaslt(sw, rows, kb) == s);
}

TEST_CASE("NVFP4 block routine (CPU quantizer and activation kernel): worked blocks", "[exec][fp4]") {
  // Encode scale 1. Block {6, 3, -1.5, 0.25, 1.75, 0 ...}: amax 6, scale UE4M3(6 / 6 = 1) = 0x38
  // (exponent field 7 = bias); elements 6 -> 0x7, 3 -> 0x5, -1.5 -> 0xB (sign bit 8 | 0x3),
  // 0.25 is halfway between 0 and 0.5 -> 0 (even), 1.75 halfway between 1.5 (0x3) and 2 (0x4)
  // -> 2 (even code 0x4).
  float x[16] = {6.0f, 3.0f, -1.5f, 0.25f, 1.75f};
  std::uint32_t w[2];
  CHECK(fp4::nvfp4_quantize_block16(x, 1.0f, w) == 0x38);
  CHECK(w[0] == 0x00040B57u);  // element j in bits 4j: 7, 5, B, 0, 4
  CHECK(w[1] == 0u);
  // A block of tiny values: amax 0.01, 0.01 / 6 = 0.00167 lies between the subnormal scales 0 and
  // 2^-9 = 0.00195 and rounds up to 2^-9 (code 0x01); 0.01 / 2^-9 = 5.12 rounds to E2M1 6 (0x7).
  float t[16] = {};
  t[15] = -0.01f;
  CHECK(fp4::nvfp4_quantize_block16(t, 1.0f, w) == 0x01);
  CHECK(w[0] == 0u);
  CHECK(w[1] == 0xF0000000u);  // element 15: sign | 0x7
  // Encode scale 2 doubles the scale code's value: amax 6 -> UE4M3(2) = 0x40.
  CHECK(fp4::nvfp4_quantize_block16(x, 2.0f, w) == 0x40);
  CHECK(w[0] == 0x00040B57u);
}

TEST_CASE("NVFP4 with a static encode scale (activations)", "[exec][fp4]") {
  // Values in +-4: with the dynamic (amax) scale the tensor scale is 4 / (6 x 448); with the static
  // scale 1 it is 1 and the block scales carry the range. Each value is then off by at most half
  // the E2M1 gap at its magnitude (1 unit of the block scale, between 4 and 6), and the block
  // scale is at most 4 / 6 rounded up by half a UE4M3 ulp (1/16): 0.71.
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  std::vector<float> v(3 * 64);
  for (auto& x : v) x = u(rng);
  v[5] = 4.0f;
  const Fp4Matrix d = quantize_fp4(DType::nvfp4, v, 3, 64), s = quantize_nvfp4_static(v, 3, 64, 1.0f);
  CHECK(d.tensor_scale == Approx(4.0 / (6 * 448)).epsilon(1e-6));
  CHECK(s.tensor_scale == 1.0f);
  const auto back = dequantize(s);
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(std::fabs(back[i] - v[i]) <= (4.0 / 6.0) * (1.0 + 1.0 / 16) + 1e-6);
  CHECK_THROWS_AS(quantize_nvfp4_static(v, 3, 64, 0.0f), InputError);
  CHECK_THROWS_AS(quantize_nvfp4_static(v, 3, 64, std::numeric_limits<float>::infinity()), InputError);
}
