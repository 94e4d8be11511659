// [cuda] The Hopper FP4-weight GEMMs (small-M, fused, large-M in BF16 and FP8) against the CPU
// reference's math: the same NVFP4 weights dequantized on the host (fp4_matrix.hpp) and a
// float64 matmul.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cuda_ops.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/fp4_matrix.hpp"

using namespace racksim;
using namespace racksim::exec;

TEST_CASE("FP4-weight small-M GEMM matches the CPU reference", "[cuda][exec]") {
  // Shapes: M = 1, 7, 16 (decode batches); N = 200 (not a multiple of the CTA's 8 columns);
  // K = 1072 (two 512-element chunks plus a partial one) and 4096. Metric, per output element:
  // |y - y_ref| <= (K + 2) 2^-24 sum_k |x_k w_k|, the worst-case FP32 bound for a K-term dot
  // product in any summation order (Higham gamma_K) plus two roundings of each weight
  // (block scale x tensor scale, then x E2M1) that the kernel may do differently from the host.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (std::int64_t k : {std::int64_t{1072}, std::int64_t{4096}})
    for (std::int64_t m : {std::int64_t{1}, std::int64_t{7}, std::int64_t{16}}) {
      const std::int64_t n = 200;
      std::vector<float> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(n * k));
      for (auto& v : x) v = u(rng);
      for (auto& v : w) v = u(rng) * std::exp2(4.0f * u(rng));  // block amplitudes over 2^-4..2^4
      const Fp4Matrix q = quantize_fp4(DType::nvfp4, w, n, k);
      const std::vector<float> wd = dequantize(q);
      const std::vector<float> y = cuda_fp4_gemm_small_m(x, m, q);
      REQUIRE(y.size() == static_cast<std::size_t>(m * n));
      for (std::int64_t r = 0; r < m; ++r)
        for (std::int64_t c = 0; c < n; ++c) {
          double ref = 0, mag = 0;
          for (std::int64_t i = 0; i < k; ++i) {
            const double p = static_cast<double>(x[static_cast<std::size_t>(r * k + i)]) * wd[static_cast<std::size_t>(c * k + i)];
            ref += p;
            mag += std::fabs(p);
          }
          const double got = y[static_cast<std::size_t>(r * n + c)];
          INFO("m " << m << " k " << k << " row " << r << " col " << c);
          REQUIRE(std::fabs(got - ref) <= static_cast<double>(k + 2) * std::ldexp(1.0, -24) * mag);
        }
    }
}

namespace {

// Hopper's decode-batch GEMM (exec/cuda/fp4_gemm_mma.cu). Shapes: M = 1, 5, 16, 17, 32 (one,
// two and four 8-token MMA tiles; 5 and 17 leave tiles partly empty), 45 and 64 (8 tiles; two
// passes under RACKSIM_FP4_MMA_TILES=4: rows 0-31, then 13 or 32 rows, each writing its own rows
// of y), 100 and 128 (launches of 64 rows: 64 + 36, 64 + 64, the second at x and y offset by
// 64 rows, sharing the workspace); N = 200 (two 128-row CTAs, the second mostly past N); K = 96
// (one span of three 32-value pieces), 1088 (8.5 spans) and 4096 (32 spans: at M = 1 the plan
// splits K into 32 CTAs and the FP32 partials are summed by the reduce kernel; at M = 32, 8
// splits). At N = 200 a split has one or two spans, so M = 1, 3, 5, 6 and 8 also run N = 4,096
// (32 row blocks), K = 16,384 (128 spans): 19 whole-wave splits of 7 spans on 132 SMs, where
// RACKSIM_FP4_MMA_X=split stages 7 spans of x at once: 2,240, 6,720, 11,200 and 13,440 B (the
// last above the ring's 11,264, so with the ring M = 6 takes the per-span staging), and M = 8's
// 17,920 B take it in either case. The kernel's output is BF16, so per element: |y - y_ref| <= 2^-8 |y_ref|
// (BF16 rounding, twice the half-ulp bound) + (K + 2) 2^-22 sum_k |x_k w_k| (FP32 accumulation
// in any order, with 4x slack for the tensor cores' accumulation) + 2^-24 sum_k |w_k| (BF16 x
// values below 2^-14 become FP16 subnormals, 2^-25 absolute error each). y_ref: float64 over the
// BF16-rounded x and the host-dequantized W.
/// One shape's inputs and float64 reference, made once and run under as many knob sets as asked.
struct FusedCase {
  std::int64_t m = 0, n = 0, k = 0;
  std::vector<float> x;
  Fp4Matrix q;
  std::vector<double> ref, mag, wabs;  // per output; wabs per weight row
};

FusedCase fused_case(std::mt19937& rng, std::int64_t m, std::int64_t n, std::int64_t k) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  FusedCase c{m, n, k, std::vector<float>(static_cast<std::size_t>(m * k)), {}, {}, {}, {}};
  std::vector<float> w(static_cast<std::size_t>(n * k));
  for (auto& v : c.x) v = act::round_bf16(u(rng));
  for (auto& v : w) v = u(rng) * std::exp2(4.0f * u(rng));
  c.q = quantize_fp4(DType::nvfp4, w, n, k);
  const std::vector<float> wd = dequantize(c.q);
  c.ref.assign(static_cast<std::size_t>(m * n), 0.0);
  c.mag.assign(static_cast<std::size_t>(m * n), 0.0);
  c.wabs.assign(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t col = 0; col < n; ++col)
    for (std::int64_t i = 0; i < k; ++i) c.wabs[static_cast<std::size_t>(col)] += std::fabs(static_cast<double>(wd[static_cast<std::size_t>(col * k + i)]));
  for (std::int64_t r = 0; r < m; ++r)
    for (std::int64_t col = 0; col < n; ++col) {
      double ref = 0, mag = 0;
      for (std::int64_t i = 0; i < k; ++i) {
        const double p = static_cast<double>(c.x[static_cast<std::size_t>(r * k + i)]) * wd[static_cast<std::size_t>(col * k + i)];
        ref += p;
        mag += std::fabs(p);
      }
      c.ref[static_cast<std::size_t>(r * n + col)] = ref;
      c.mag[static_cast<std::size_t>(r * n + col)] = mag;
    }
  return c;
}

/// Returns the elements outside that bound (each of the first five WARNed), under `knobs` when
/// not null (a variant, as the tuner runs it).
std::size_t fused_gemm_errors(const FusedCase& c, const Fp4MmaKnobs* knobs = nullptr) {
  const std::vector<float> y = cuda_fp4_gemm_mma(c.x, c.m, c.q, false, nullptr, knobs);
  REQUIRE(y.size() == static_cast<std::size_t>(c.m * c.n));
  std::size_t bad = 0;
  for (std::int64_t r = 0; r < c.m; ++r)
    for (std::int64_t col = 0; col < c.n; ++col) {
      const auto i = static_cast<std::size_t>(r * c.n + col);
      const double ref = c.ref[i], got = y[i];
      const double bound = std::ldexp(1.0, -8) * std::fabs(ref) + static_cast<double>(c.k + 2) * std::ldexp(1.0, -22) * c.mag[i] +
                           std::ldexp(1.0, -24) * c.wabs[static_cast<std::size_t>(col)];
      if (!(std::fabs(got - ref) <= bound)) {  // NaN (an unwritten, poisoned output) fails too
        if (bad++ < 5)
          WARN("m " << c.m << " n " << c.n << " k " << c.k << " token " << r << " row " << col << ": got " << got << ", want " << ref << " +- "
                    << bound);
      }
    }
  return bad;
}

std::size_t fused_gemm_errors(std::mt19937& rng, std::int64_t m, std::int64_t n, std::int64_t k) {
  return fused_gemm_errors(fused_case(rng, m, n, k));
}

}  // namespace

TEST_CASE("fused FP4-weight tensor-core GEMM matches the CPU reference", "[cuda][exec]") {
  // The shapes and the bound: fused_gemm_errors above.
  std::mt19937 rng(11);
  const auto check = [&](std::int64_t m, std::int64_t n, std::int64_t k) {
    INFO("m " << m << " n " << n << " k " << k);
    CHECK(fused_gemm_errors(rng, m, n, k) == 0);
  };
  for (std::int64_t k : {std::int64_t{96}, std::int64_t{1088}, std::int64_t{4096}})
    for (std::int64_t m : {std::int64_t{1}, std::int64_t{5}, std::int64_t{16}, std::int64_t{17}, std::int64_t{32}, std::int64_t{45},
                           std::int64_t{64}, std::int64_t{100}, std::int64_t{128}})
      check(m, 200, k);
  for (std::int64_t m : {std::int64_t{1}, std::int64_t{3}, std::int64_t{5}, std::int64_t{6}, std::int64_t{8}}) check(m, 4096, 16384);
}

TEST_CASE("the fused GEMM's occupancy: 6 CTAs per SM for the M <= 8 GEMV on Hopper, and RACKSIM_FP4_MMA_CTAS's cap", "[cuda][exec]") {
  // ptxas (sm_90a, 2026-12-02): the 1-tile depth-1 kernel takes 78 registers, launch bounds 6 x
  // 128 threads, so 6 CTAs per SM where registers decide (Hopper; other devices' own count is
  // printed). The cap pads shared memory (fp4_mma_ctas_pad_bytes) so that the occupancy API says
  // the cap, or the registers' own count where that is lower; the GEMM stays right under it.
  const Fp4MmaKnobs def = fp4_mma_knobs(nullptr, nullptr, nullptr);
  const int natural = cuda_fp4_mma_resident_per_sm(1, 1, def);
  INFO("1-tile depth-1 CTAs per SM: " << natural);
  if (cuda_fp4_mma_wgmma_available()) CHECK(natural == 6);
  for (const char* cap : {"4", "5", "6"}) {
    const Fp4MmaKnobs kn = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, cap);
    for (const int tiles : {1, 2, 4, 8})
      for (const int depth : {1, 2}) {
        const int plain = cuda_fp4_mma_resident_per_sm(tiles, depth, def);
        INFO("cap " << cap << " tiles " << tiles << " depth " << depth << " uncapped " << plain);
        CHECK(cuda_fp4_mma_resident_per_sm(tiles, depth, kn) == std::min(plain, kn.ctas));
      }
  }
  // The padded launches: one tile (M = 4) under caps 4 and 5; two tiles at depth 1 (M = 12, the
  // 2-tile kernel's 39,424 B of padding at cap 4) and depth 2 (the default there).
  std::mt19937 rng(29);
  const FusedCase c = fused_case(rng, 4, 4096, 16384);
  for (const char* cap : {"4", "5"}) {
    const Fp4MmaKnobs kn = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, cap);
    INFO("RACKSIM_FP4_MMA_CTAS=" << cap);
    CHECK(fused_gemm_errors(c, &kn) == 0);
  }
  const FusedCase c12 = fused_case(rng, 12, 1024, 4096);
  for (const char* depth : {"1", "2"}) {
    const Fp4MmaKnobs kn = fp4_mma_knobs(nullptr, nullptr, depth, nullptr, nullptr, nullptr, nullptr, "4");
    INFO("M = 12, RACKSIM_FP4_MMA_DEPTH=" << depth << " RACKSIM_FP4_MMA_CTAS=4");
    CHECK(fused_gemm_errors(c12, &kn) == 0);
  }
}

TEST_CASE("every variant the fused GEMM's tuner times matches the CPU reference", "[cuda][exec]") {
  // RACKSIM_FP4_MMA_TUNE=on runs whichever variant is fastest per shape, so each must be right:
  // every candidate fp4_mma_tune_candidates gives from the environment's knobs, as the tuner
  // takes them (fp4_mma_knobs_from_env; wgmma where this device and build have it), at M = 1, 4
  // and 5 (one tile; x split fits: spans_per_split x m x 320 B), 16 (two tiles: depth, ring,
  // wgmma), 17 and 32 (four), 45 and 64 (eight; two passes, and those under the wave split), 100
  // (launches of 64 + 36), at N = 4,096, K = 16,384 (128 spans: whole-wave splits of 7) for M <= 5
  // and N = 1,024, K = 4,096 above; one shape's inputs and reference made once for all its
  // candidates; the bound of fused_gemm_errors.
  std::mt19937 rng(23);
  const Fp4MmaKnobs base = fp4_mma_knobs_from_env();
  const bool wg = cuda_fp4_mma_wgmma_available();
  for (const std::int64_t m : {1, 4, 5, 16, 17, 32, 45, 64, 100}) {
    const std::int64_t n = m <= 5 ? 4096 : 1024, k = m <= 5 ? 16384 : 4096;
    const FusedCase c = fused_case(rng, m, n, k);
    for (const Fp4MmaKnobs& kn : fp4_mma_tune_candidates(base, m, wg)) {
      INFO("m " << m << " n " << n << " k " << k << " under " << fp4_mma_knobs_words(kn));
      CHECK(fused_gemm_errors(c, &kn) == 0);
    }
  }
}

TEST_CASE("the fused GEMM with the SwiGLU (RACKSIM_FUSE_SWIGLU) gives the GEMM's then the SwiGLU kernel's bits", "[cuda][exec]") {
  // A gate_up weight of 2 x ffn rows; the fused launch's act must equal, bit for bit, the device's
  // SwiGLU kernel over the GEMM's own BF16 output. Where the launch is one and splits K (N = 2 x
  // 1,024 = 16 row blocks, K = 4,096: on 132 SMs 32, 16, 8 and 4 splits at M = 1, 5, 16 and 32;
  // M = 3 at ffn 1,004, where gate and up meet inside a 128-row CTA and the SwiGLU kernel takes
  // its one-value path) the reduce writes act, computing both sums in the same order with the same
  // formula; where it does not (M = 48 at 2 x 64 rows, K = 96: one split; M = 100: launches of 64
  // and 36 rows) the GEMM writes y and the caller runs the SwiGLU kernel. `fused` says which ran.
  // Exact equality, so any difference in order, rounding or indexing fails.
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  struct Case {
    std::int64_t m, ffn, k;
    bool fused;
  };
  for (const Case& c : {Case{1, 1024, 4096, true}, Case{5, 1024, 4096, true}, Case{16, 1024, 4096, true}, Case{32, 1024, 4096, true},
                        Case{3, 1004, 4096, true}, Case{48, 64, 96, false}, Case{100, 1024, 4096, false}, Case{100, 64, 96, false}}) {
    const auto [m, ffn, k, should_fuse] = c;
    std::vector<float> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(2 * ffn * k));
    for (auto& v : x) v = act::round_bf16(u(rng));
    for (auto& v : w) v = u(rng) * std::exp2(4.0f * u(rng));
    const Fp4Matrix q = quantize_fp4(DType::nvfp4, w, 2 * ffn, k);
    const std::vector<float> gate_up = cuda_fp4_gemm_mma(x, m, q);
    const std::vector<float> want = cuda_swiglu(gate_up, m, ffn);
    bool fused = !should_fuse;
    const std::vector<float> got = cuda_fp4_gemm_mma(x, m, q, true, &fused);
    INFO("m " << m << " ffn " << ffn << " k " << k);
    CHECK(fused == should_fuse);
    REQUIRE(got.size() == want.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0 && bad++ < 5) WARN("m " << m << " element " << i << ": " << got[i] << " vs " << want[i]);
    CHECK(bad == 0);
  }
}

TEST_CASE("the serial split-K sum (RACKSIM_FP4_MMA_REDUCE=serial) gives the reduce launch's bits, launch after launch", "[cuda][exec]") {
  // The row block's last CTA sums the same partials in the same split order as fp4_mma_reduce, so
  // y must be the reduce launch's bit for bit, under every kernel variant (each has the serial
  // epilogue): from the environment's knobs (fp4_mma_knobs_from_env, as the tuner starts), and
  // that with the cp.async ring, x split, two passes of 4 tiles, depth 2 and wgmma (where this
  // device has it), each compared with the same knobs under the reduce launch (`serial` forced
  // off and on, whatever the environment says). M = 1, 5 (one tile; 4,096 x 16,384: 32 row blocks
  // x 19 whole-wave splits on 132 SMs), 16, 32 (two and four tiles at 1,024 x 4,096: 8 row blocks),
  // 45 (8 tiles, or two passes) and 100 (launches of 64 and 36: the counters the first leaves at 0
  // serve the second), N = 200 (a last row block of 72 rows); each serial launch twice, so a
  // counter not set back to 0 would leave the second launch's y unwritten (NaN: the helper
  // poisons it). Under the SwiGLU, where ffn (N / 2) is a multiple of 128 the last CTA of each
  // gate/up pair of row blocks writes act (`fused`), else the serial launch writes y and the
  // SwiGLU kernel follows (N = 200: ffn 100); either way the bits of the GEMM then the SwiGLU.
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const Fp4MmaKnobs base = fp4_mma_knobs_from_env();
  std::vector<Fp4MmaKnobs> sets{base};
  const auto with = [&](auto change) {
    Fp4MmaKnobs k = base;
    change(k);
    sets.push_back(k);
  };
  with([](Fp4MmaKnobs& k) { k.ring = true, k.depth = 0, k.wgmma = false; });
  with([](Fp4MmaKnobs& k) { k.x_split = true; });
  with([](Fp4MmaKnobs& k) { k.eight_tiles = false; });
  with([](Fp4MmaKnobs& k) { k.ring = false, k.depth = 2; });
  if (cuda_fp4_mma_wgmma_available()) with([](Fp4MmaKnobs& k) { k.ring = false, k.wgmma = true; });
  const auto same_bits = [](const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0 && bad++ < 5) WARN("element " << i << ": " << got[i] << " vs " << want[i]);
    return bad;
  };
  struct Case {
    std::int64_t m, n, k;
  };
  for (const Case& c : {Case{1, 4096, 16384}, Case{5, 4096, 16384}, Case{16, 1024, 4096}, Case{32, 1024, 4096}, Case{45, 1024, 4096},
                        Case{100, 1024, 4096}, Case{1, 200, 4096}}) {
    std::vector<float> x(static_cast<std::size_t>(c.m * c.k)), w(static_cast<std::size_t>(c.n * c.k));
    for (auto& v : x) v = act::round_bf16(u(rng));
    for (auto& v : w) v = u(rng) * std::exp2(4.0f * u(rng));
    const Fp4Matrix q = quantize_fp4(DType::nvfp4, w, c.n, c.k);
    for (const Fp4MmaKnobs& kn : sets) {
      Fp4MmaKnobs reduce = kn, serial = kn;
      reduce.serial = false;
      serial.serial = true;
      const std::vector<float> want = cuda_fp4_gemm_mma(x, c.m, q, false, nullptr, &reduce);
      for (int twice = 0; twice < 2; ++twice) {
        INFO("m " << c.m << " n " << c.n << " k " << c.k << " under " << fp4_mma_knobs_words(serial) << ", launch " << twice);
        CHECK(same_bits(cuda_fp4_gemm_mma(x, c.m, q, false, nullptr, &serial), want) == 0);
      }
      if (c.n % 2 == 0 && c.m <= 64 && &kn == &sets.front()) {
        const std::vector<float> act_want = cuda_swiglu(want, c.m, c.n / 2);
        for (int twice = 0; twice < 2; ++twice) {
          bool fused = false;
          const std::vector<float> act_serial = cuda_fp4_gemm_mma(x, c.m, q, true, &fused, &serial);
          INFO("m " << c.m << " n " << c.n << " k " << c.k << " with the SwiGLU, launch " << twice);
          if (c.m <= 32) CHECK(fused == (c.n / 2 % 128 == 0));  // one launch that splits K under any split rule; M = 45 may run two passes
          CHECK(same_bits(act_serial, act_want) == 0);
        }
      }
    }
  }
}

TEST_CASE("the fused GEMM's grouped launch (a MoE layer's experts) matches the CPU reference", "[cuda][exec]") {
  // One launch for every expert: expert e's rows offsets[e] .. offsets[e + 1] - 1 times its own
  // weight, tiles and K split of a max_m-row GEMM (at max_m 1 and K 1088 the plan splits K: the
  // partials, times each expert's scale, summed by the reduce). Cases: max_m 1 (one tile; an expert without rows),
  // 32 (four tiles; rows 5, 0, 12, 28) and 64 (eight; rows 64, 0, 1, 35), N = 200, K = 96 and
  // 1088; and max_m 1 over 8 experts of which only 3 and 6 have a row. The grid has one slice per
  // slot of the active experts (min(experts, rows): 2, 4, 4 and 2 slots; the second and third
  // cases' last slot is -1), so the slices must find experts 2 and 3 through it. The bound per
  // element is the fused test's above (one BF16 rounding, FP32 accumulation, FP16 subnormal x).
  // Rows of an expert with no rows do not exist; every other row is written (the output is
  // poisoned with NaN first).
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  struct Case {
    std::int64_t max_m;
    std::vector<std::int32_t> offsets;
  };
  for (std::int64_t k : {std::int64_t{96}, std::int64_t{1088}})
    for (const Case& c : {Case{1, {0, 1, 1, 2}}, Case{32, {0, 5, 5, 17, 45}}, Case{64, {0, 64, 64, 65, 100}},
                          Case{1, {0, 0, 0, 0, 1, 1, 1, 2, 2}}}) {
      const std::int64_t n = 200, rows = c.offsets.back();
      const std::size_t E = c.offsets.size() - 1;
      std::vector<Fp4Matrix> experts;
      std::vector<std::vector<float>> wd;
      for (std::size_t e = 0; e < E; ++e) {
        std::vector<float> w(static_cast<std::size_t>(n * k));
        for (auto& v : w) v = u(rng) * std::exp2(4.0f * u(rng));
        experts.push_back(quantize_fp4(DType::nvfp4, w, n, k));
        wd.push_back(dequantize(experts.back()));
      }
      std::vector<float> x(static_cast<std::size_t>(rows * k));
      for (auto& v : x) v = act::round_bf16(u(rng));
      const std::vector<float> y = cuda_fp4_gemm_mma_grouped(x, c.offsets, c.max_m, experts);
      REQUIRE(y.size() == static_cast<std::size_t>(rows * n));
      std::size_t bad = 0;
      for (std::size_t e = 0; e < E; ++e)
        for (std::int64_t r = c.offsets[e]; r < c.offsets[e + 1]; ++r)
          for (std::int64_t col = 0; col < n; ++col) {
            double ref = 0, mag = 0, wabs = 0;
            for (std::int64_t i = 0; i < k; ++i) {
              const double wi = wd[e][static_cast<std::size_t>(col * k + i)];
              const double p = static_cast<double>(x[static_cast<std::size_t>(r * k + i)]) * wi;
              ref += p;
              mag += std::fabs(p);
              wabs += std::fabs(wi);
            }
            const double got = y[static_cast<std::size_t>(r * n + col)];
            const double bound = std::ldexp(1.0, -8) * std::fabs(ref) + static_cast<double>(k + 2) * std::ldexp(1.0, -22) * mag +
                                 std::ldexp(1.0, -24) * wabs;
            if (!(std::fabs(got - ref) <= bound) && bad++ < 5)
              WARN("max_m " << c.max_m << " k " << k << " expert " << e << " row " << r << " col " << col << ": got " << got << ", want " << ref);
          }
      INFO("max_m " << c.max_m << " k " << k);
      CHECK(bad == 0);
    }
  // An expert with more rows than max_m is refused on the host.
  std::vector<Fp4Matrix> two(2, quantize_fp4(DType::nvfp4, std::vector<float>(64 * 96, 0.5f), 64, 96));
  CHECK_THROWS_AS(cuda_fp4_gemm_mma_grouped(std::vector<float>(3 * 96, 1.0f), std::vector<std::int32_t>{0, 3, 3}, 2, two), InputError);
}

TEST_CASE("the fused GEMM's tiled weight layout and its dequantize match the host", "[cuda][exec]") {
  // 200 x 1088 (7 row tiles, the last 24 rows padding; 9 spans, the last 64 values padding) and
  // 64 x 96 (one span of three pieces): the device's tiling equals fp4_mma_tile byte for byte
  // (padding zero, every byte written over a 0xFF poison), and the large-M path's dequantize from
  // the tiles equals the host's value (E2M1 x UE4M3 x tensor scale, the same FP32 products)
  // rounded once to BF16.
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const auto& [n, k] : {std::pair<std::int64_t, std::int64_t>{200, 1088}, {64, 96}}) {
    std::vector<float> w(static_cast<std::size_t>(n * k));
    for (auto& v : w) v = u(rng) * std::exp2(4.0f * u(rng));
    const Fp4Matrix q = quantize_fp4(DType::nvfp4, w, n, k);
    std::vector<std::uint8_t> codes, scales, want_codes, want_scales, e4m3;
    const std::vector<float> got = cuda_fp4_mma_tile_dequant(q, codes, scales, &e4m3);
    fp4_mma_tile(q.packed, q.scales, n, k, want_codes, want_scales);
    INFO(n << " x " << k);
    CHECK(codes == want_codes);
    CHECK(scales == want_scales);
    const std::vector<float> ref = dequantize(q);
    REQUIRE(got.size() == ref.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) bad += got[i] != act::round_bf16(ref[i]);
    CHECK(bad == 0);
    // The FP8 variant's dequantize from the same tiles (the intrinsic cvt.rn.satfinite.e4m3x2)
    // equals the host routine act::nvfp4_e4m3_weight_code on every element.
    REQUIRE(e4m3.size() == ref.size());
    std::size_t bad8 = 0;
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c < k; ++c)
        bad8 += e4m3[static_cast<std::size_t>(r * k + c)] !=
                act::nvfp4_e4m3_weight_code(q.code(r, c), q.scales[static_cast<std::size_t>(r * q.blocks_per_row() + c / 16)]);
    CHECK(bad8 == 0);
  }
}

TEST_CASE("Hopper's large-M FP4 GEMM (dequantize + cuBLASLt) matches the CPU in BF16 and FP8", "[cuda][exec]") {
  // exec/cuda/fp4_large_m.cuh at M = 3, 100 and 257 (any M; the step executor uses it above 64),
  // N = 200, K = 1088 (held tiled) and K = 48 (row-major: K % 32 != 0).
  // BF16: against the FP64 GEMM of BF16 x and the NVFP4 values; BF16 W is exact, so the error is
  // cuBLASLt's FP32 accumulation and the BF16 output: 2^-8 |y| + (K + 2) 2^-22 sum |x w|.
  // FP8: the device's E4M3 x codes and scale equal fp4_large_m_fp8_operands' bit for bit (the
  // weights' codes are checked in the tiling test above), and y is within the same bound of the
  // FP64 GEMM of those E4M3 operands times alpha, plus 2^-8 sum |x w| for Hopper's FP8 tensor-core
  // accumulation: it aligns each instruction's products to the largest and keeps about 14 bits
  // (DeepSeek-V3 technical report, arXiv 2412.19437, section 3.3.2; cuBLASLt without fast
  // accumulation only promotes the sums to FP32 between instructions), so each of an instruction's
  // 32 products may lose 2^-13 of the largest: 32 x 2^-13 = 2^-8 of its sum |p| at most.
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const bool fp8 : {false, true})
    for (std::int64_t k : {std::int64_t{1088}, std::int64_t{48}})
      for (std::int64_t m : {std::int64_t{3}, std::int64_t{100}, std::int64_t{257}}) {
        const std::int64_t n = 200;
        std::vector<float> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(n * k));
        for (auto& v : x) v = act::round_bf16(u(rng) * std::exp2(2.0f * u(rng)));
        for (auto& v : w) v = u(rng) * std::exp2(4.0f * u(rng));
        const Fp4Matrix q = quantize_fp4(DType::nvfp4, w, n, k);
        std::vector<std::uint8_t> x_codes;
        float x_scale = 0;
        const std::vector<float> y = cuda_fp4_gemm_large_m(x, m, q, fp8, &x_codes, &x_scale);
        REQUIRE(y.size() == static_cast<std::size_t>(m * n));
        std::vector<double> wv(w.size()), xv(x.size());
        double alpha = 1;
        if (fp8) {
          const Fp8LargeMOperands o = fp4_large_m_fp8_operands(x, m, q);
          CHECK(x_codes == o.x);
          CHECK(x_scale == o.x_scale);
          for (std::size_t i = 0; i < wv.size(); ++i) wv[i] = act::e4m3_value(o.w[i]);
          for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = act::e4m3_value(o.x[i]);
          alpha = o.alpha;
        } else {
          const std::vector<float> wd = dequantize(q);
          for (std::size_t i = 0; i < wv.size(); ++i) wv[i] = wd[i];
          for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = x[i];
        }
        std::size_t bad = 0;
        for (std::int64_t r = 0; r < m; ++r)
          for (std::int64_t c = 0; c < n; ++c) {
            double ref = 0, mag = 0;
            for (std::int64_t i = 0; i < k; ++i) {
              const double p = xv[static_cast<std::size_t>(r * k + i)] * wv[static_cast<std::size_t>(c * k + i)] * alpha;
              ref += p;
              mag += std::fabs(p);
            }
            const double got = y[static_cast<std::size_t>(r * n + c)];
            const double bound = std::ldexp(1.0, -8) * std::fabs(ref) + static_cast<double>(k + 2) * std::ldexp(1.0, -22) * mag +
                                 (fp8 ? std::ldexp(1.0, -8) * mag : 0.0);
            if (!(std::fabs(got - ref) <= bound) && bad++ < 5)
              WARN((fp8 ? "fp8" : "bf16") << " m " << m << " k " << k << " token " << r << " row " << c << ": got " << got << ", want " << ref
                                          << " +- " << bound);
          }
        INFO((fp8 ? "fp8" : "bf16") << " m " << m << " k " << k);
        CHECK(bad == 0);
      }
}

TEST_CASE("NVFP4 activation quantize kernel equals the CPU quantizer bit for bit", "[cuda][exec]") {
  // The native Blackwell path's input quantizer (runs on any GPU): 130 rows (two 128-row scale
  // tiles) x 160 columns (10 blocks: the last 4-block tile half padding), BF16 values whose blocks
  // span 2^-10 .. 2^6 in amplitude (subnormal to saturating scales), one all-zero block, and
  // values on E2M1 midpoints. Against quantize_nvfp4_static + swizzle_scales_cublaslt: the same
  // codes and scales, and zeros in every padding byte.
  const std::int64_t rows = 130, cols = 160;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float amp = std::exp2(static_cast<float>(static_cast<int>(i / 16 % 17) - 10));
    x[i] = act::round_bf16(u(rng) * amp);
  }
  for (std::size_t i = 0; i < 16; ++i) x[16 * 7 + i] = 0.0f;                       // row 0, block 7
  for (std::size_t i = 0; i < 16; ++i) x[16 * 20 + i] = 0.25f * static_cast<float>(i % 8);  // 0, .25, .5, ...: ties
  for (float s_in : {1.0f, 4.0f}) {
    const Fp4Matrix q = quantize_nvfp4_static(x, rows, cols, s_in);
    const Nvfp4Activations d = cuda_quantize_nvfp4_activations(x, rows, cols, s_in);
    INFO("encode scale " << s_in);
    CHECK(d.packed == q.packed);
    CHECK(d.scales == swizzle_scales_cublaslt(q.scales, rows, cols / 16));
  }
}
