// Hopper's FP8 large-M variant (RACKSIM_FP4_LARGE_M=fp8) on the CPU: the per-tensor power-of-two
// scale, the NVFP4 -> E4M3 weight codes over every code pair, and the GEMM operands the device
// computes, against an FP64 GEMM of the NVFP4 values within the bound of two E4M3 roundings.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/fp4_matrix.hpp"

using namespace racksim;
using namespace racksim::exec;

TEST_CASE("e4m3_pow2_scale: the least power of two that keeps amax within 448", "[exec][fp8]") {
  // By hand: 448 = 1.75 x 2^8 fits at s = 1 and not at 1/2 (896); 449 needs 2; 1 = 2^0 -> 2^-8
  // (256; 2^-9 would give 512); 1.75 -> 2^-8 (exactly 448); the next float above 1.75 -> 2^-7.
  CHECK(act::e4m3_pow2_scale(448.0f) == 1.0f);
  CHECK(act::e4m3_pow2_scale(449.0f) == 2.0f);
  CHECK(act::e4m3_pow2_scale(1.0f) == std::ldexp(1.0f, -8));
  CHECK(act::e4m3_pow2_scale(1.75f) == std::ldexp(1.0f, -8));
  CHECK(act::e4m3_pow2_scale(std::nextafter(1.75f, 2.0f)) == std::ldexp(1.0f, -7));
  // Nothing to scale: 1. Inf: NaN, so every code is NaN and the output shows it. Below 2^-100:
  // as 2^-100, s = 2^-108 (a normal float).
  CHECK(act::e4m3_pow2_scale(0.0f) == 1.0f);
  CHECK(act::e4m3_pow2_scale(std::numeric_limits<float>::quiet_NaN()) == 1.0f);
  CHECK(std::isnan(act::e4m3_pow2_scale(std::numeric_limits<float>::infinity())));
  CHECK(act::e4m3_code(1.0f / act::e4m3_pow2_scale(std::numeric_limits<float>::infinity())) == 0x7F);
  CHECK(act::e4m3_pow2_scale(1e-35f) == std::ldexp(1.0f, -108));
  // Over 20,000 magnitudes from 2^-90 to 2^100: a power of two, amax / s <= 448 and amax / (s / 2) > 448.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> e(-90.0f, 100.0f);
  int bad = 0;
  for (int i = 0; i < 20000; ++i) {
    const float amax = std::exp2(e(rng));
    const float s = act::e4m3_pow2_scale(amax);
    int ex = 0;
    const bool pow2 = std::frexp(s, &ex) == 0.5f;
    bad += !(pow2 && amax / s <= 448.0f && amax / (s / 2) > 448.0f);
  }
  CHECK(bad == 0);
}

TEST_CASE("NVFP4 weights to E4M3: no code pair saturates, one rounding within E4M3's step", "[exec][fp8]") {
  // By hand: E2M1 1.0 (code 2) x UE4M3 1.0 (0x38) / 8 = 2^-3, E4M3 exponent field -3 + 7 = 4: 0x20.
  CHECK(act::nvfp4_e4m3_weight_code(0x2, 0x38) == 0x20);
  // The largest, 6 x 448 / 8 = 336 = 1.0101b x 2^8, halfway between 320 (1.010b) and 352
  // (1.011b): ties to the even mantissa, 320 (code 0 1111 010 = 0x7A); -6 (code 0xF) gives 0xFA.
  CHECK(act::nvfp4_e4m3_weight_code(0x7, 0x7E) == 0x7A);
  CHECK(act::nvfp4_e4m3_weight_code(0xF, 0x7E) == 0xFA);
  // Every pair of the 16 E2M1 codes and the 127 finite UE4M3 codes: |q| <= 320 (never E4M3's 448),
  // the sign kept, and |q - v| <= 2^-4 |v| for |v| >= 2^-6 (normal), else <= 2^-10 (subnormal step / 2).
  int bad = 0, inexact = 0;
  for (unsigned c = 0; c < 16; ++c)
    for (unsigned s = 0; s < 0x7F; ++s) {
      const double v = static_cast<double>(fp4::decode_e2m1(static_cast<std::uint8_t>(c))) * fp4::decode_ue4m3(static_cast<std::uint8_t>(s)) / 8;
      const double q = act::e4m3_value(act::nvfp4_e4m3_weight_code(static_cast<std::uint8_t>(c), static_cast<std::uint8_t>(s)));
      const double bound = std::fabs(v) >= 0x1p-6 ? std::fabs(v) * 0x1p-4 : 0x1p-10;
      bad += !(std::fabs(q) <= 320 && std::fabs(q - v) <= bound && !(q * v < 0));
      inexact += q != v;
    }
  CHECK(bad == 0);
  // E2M1 x UE4M3 has up to 2 + 4 = 6 significant bits against E4M3's 4: some products round.
  CHECK(inexact > 0);
}

TEST_CASE("FP8 large-M operands: alpha by hand, and the GEMM within two E4M3 roundings of the NVFP4 one", "[exec][fp8]") {
  // By hand: one row of 16 weights 1.0 (E2M1 code 2, bytes 0x22) with block scale 1.0 (0x38) and
  // tensor scale 0.5; x = 16 x 3.0. amax 3 = 1.5 x 2^1 -> s = 2^-7, x / s = 384 = 1.5 x 2^8:
  // E4M3 0 1111 100 = 0x7C. W codes 0x20 (2^-3). alpha = 0.5 x 8 x 2^-7 = 2^-5, and
  // alpha x 16 x 2^-3 x 384 = 24 = 16 x 0.5 x 3 (the NVFP4 GEMM, exact here).
  Fp4Matrix w;
  w.rows = 1, w.cols = 16, w.packed.assign(8, 0x22), w.scales = {0x38}, w.tensor_scale = 0.5f;
  const std::vector<float> x3(16, 3.0f);
  const Fp8LargeMOperands o = fp4_large_m_fp8_operands(x3, 1, w);
  CHECK(o.x_scale == std::ldexp(1.0f, -7));
  CHECK(o.alpha == std::ldexp(1.0, -5));
  CHECK(o.x == std::vector<std::uint8_t>(16, 0x7C));
  CHECK(o.w == std::vector<std::uint8_t>(16, 0x20));
  double y = 0;
  for (int i = 0; i < 16; ++i) y += act::e4m3_value(o.w[static_cast<std::size_t>(i)]) * act::e4m3_value(o.x[static_cast<std::size_t>(i)]);
  CHECK(o.alpha * y == 24.0);

  // Random 7 x 256 NVFP4 weights (values over 2^-4..2^4) and 5 x 256 activations: each output
  // within sum_k |w| ex + |x| ew + ew ex of the FP64 NVFP4 GEMM, with ew and ex the E4M3
  // rounding bounds above (W in units of tensor_scale x 8, x in units of s).
  const std::int64_t m = 5, n = 7, k = 256;
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> wf(static_cast<std::size_t>(n * k)), x(static_cast<std::size_t>(m * k));
  for (auto& v : wf) v = u(rng) * std::exp2(4.0f * u(rng));
  for (auto& v : x) v = u(rng) * std::exp2(2.0f * u(rng));
  const Fp4Matrix q = quantize_fp4(DType::nvfp4, wf, n, k);
  const Fp8LargeMOperands p = fp4_large_m_fp8_operands(x, m, q);
  const double wunit = static_cast<double>(q.tensor_scale) * act::kNvfp4E4m3WeightDivisor;
  int bad = 0;
  double worst = 0;
  for (std::int64_t r = 0; r < m; ++r)
    for (std::int64_t j = 0; j < n; ++j) {
      double exact = 0, got = 0, bound = 0;
      for (std::int64_t i = 0; i < k; ++i) {
        const double wv = q.value(j, i), xv = x[static_cast<std::size_t>(r * k + i)];
        const double ew = std::max(std::fabs(wv) * 0x1p-4, 0x1p-10 * wunit), ex = std::max(std::fabs(xv) * 0x1p-4, 0x1p-10 * p.x_scale);
        exact += wv * xv;
        got += static_cast<double>(act::e4m3_value(p.w[static_cast<std::size_t>(j * k + i)])) * act::e4m3_value(p.x[static_cast<std::size_t>(r * k + i)]);
        bound += std::fabs(wv) * ex + std::fabs(xv) * ew + ew * ex;
      }
      got *= p.alpha;
      bad += !(std::fabs(got - exact) <= bound);
      worst = std::max(worst, std::fabs(got - exact) / bound);
    }
  CHECK(bad == 0);
  CHECK(worst > 0);  // the E4M3 roundings changed something: the check is not vacuous
  // An Inf in x: every x code is E4M3's NaN (0x7F or 0xFF), so the GEMM's output is NaN, as the
  // BF16 path's would be non-finite, not a finite result with the Inf saturated to 448.
  std::vector<float> xinf = x;
  xinf[3] = std::numeric_limits<float>::infinity();
  const Fp8LargeMOperands pinf = fp4_large_m_fp8_operands(xinf, m, q);
  int finite = 0;
  for (const std::uint8_t c : pinf.x) finite += (c & 0x7Fu) != 0x7Fu;
  CHECK(finite == 0);
  // Errors name what is wrong.
  Fp4Matrix mx = q;
  mx.format = DType::mxfp4;
  CHECK_THROWS_AS(fp4_large_m_fp8_operands(x, m, mx), InputError);
  CHECK_THROWS_AS(fp4_large_m_fp8_operands(x, m + 1, q), InputError);
}

TEST_CASE("RACKSIM_FP4_LARGE_M: bf16 unless fp8, anything else named", "[exec][fp8]") {
  CHECK_FALSE(fp4_large_m_fp8(nullptr));
  CHECK_FALSE(fp4_large_m_fp8("bf16"));
  CHECK(fp4_large_m_fp8("fp8"));
  CHECK_THROWS_WITH(fp4_large_m_fp8("e4m3"), "environment RACKSIM_FP4_LARGE_M: 'e4m3' is not one of bf16, fp8");
}
