// [cuda] The step ops (cuda_ops.hpp) against the CPU math they replace (cpu_ops.hpp), on seeded
// random BF16-valued inputs: the CPU runs the same inputs in FP32, the device rounds its output to
// BF16. Tolerances, per output element, follow from that:
// - one BF16 rounding of the device's FP32 value v: |bf16(v) - v| <= 2^-8 |v| (8 significant
//   bits, round to nearest), written 2^-8 |ref| plus the FP32 differences below;
// - the FP32 differences between two implementations of the same formula (summation order, FMA
//   contraction, exp2f/expf/sincosf at <= 2 ulp per the CUDA C++ Programming Guide's accuracy
//   tables), bounded per op below;
// - where host and device do the same single rounding (BF16 add, E4M3 quantization, copies), the
//   results must be equal.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cpu_ops.hpp"
#include "racksim/exec/cuda_ops.hpp"
#include "racksim/exec/paged_kv.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

using I = std::int64_t;

std::size_t z(I v) { return static_cast<std::size_t>(v); }

const double kBf16Rel = std::ldexp(1.0, -8);  // half a BF16 ulp, relative
const double kF32Ulp = std::ldexp(1.0, -24);  // half an FP32 ulp, relative

/// `n` BF16 values uniform in [lo, hi).
std::vector<float> bf16_uniform(std::mt19937& rng, std::size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = act::round_bf16(u(rng));
  return v;
}

}  // namespace

TEST_CASE("RMSNorm and the fused residual add + RMSNorm match cpu_ops", "[cuda][exec]") {
  // Widths 8192 (Llama-2-70B's hidden: the 16-byte path) and 100 (not a multiple of 8: the
  // 2-byte path); 5 rows, x in +-2, weight 1 +- 0.1. Both sides compute x * (1 / sqrt(mean(x^2)
  // + eps)) * w in FP32; they differ in the order of the n-term sum of squares, each within
  // (n/2 + 4) 2^-24 relative of the exact value, so |v - ref| <= (n + 8) 2^-24 |ref|; then one
  // BF16 rounding: |got - ref| <= (2^-8 + 2 (n + 8) 2^-24) |ref|.
  // The fused op stores bf16(hidden + branch): one FP32 add and one rounding on both sides, equal.
  std::mt19937 rng(11);
  for (I width : {I{8192}, I{100}}) {
    const I rows = 5;
    const auto x = bf16_uniform(rng, z(rows * width), -2, 2), b = bf16_uniform(rng, z(rows * width), -1, 1);
    const auto w = bf16_uniform(rng, z(width), 0.9f, 1.1f);
    const float eps = 1e-5f;
    const double tol = kBf16Rel + 2.0 * static_cast<double>(width + 8) * kF32Ulp;
    std::vector<float> ref(x.size());
    rmsnorm(x, rows, width, w, eps, ref);
    const std::vector<float> got = cuda_rmsnorm(x, rows, w, eps);
    REQUIRE(got.size() == ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      INFO("width " << width << " element " << i);
      REQUIRE(std::fabs(got[i] - ref[i]) <= tol * std::fabs(ref[i]));
    }
    std::vector<float> hidden = x;
    residual_add(hidden, b);
    for (auto& v : hidden) v = act::round_bf16(v);
    rmsnorm(hidden, rows, width, w, eps, ref);
    const ResidualNorm fused = cuda_residual_add_rmsnorm(x, b, rows, w, eps);
    REQUIRE(fused.hidden == hidden);
    for (std::size_t i = 0; i < ref.size(); ++i) {
      INFO("fused, width " << width << " element " << i);
      REQUIRE(std::fabs(fused.normed[i] - ref[i]) <= tol * std::fabs(ref[i]));
    }
  }
}

TEST_CASE("residual add, SwiGLU and embedding match cpu_ops", "[cuda][exec]") {
  std::mt19937 rng(12);
  // Residual add: one FP32 add of two BF16 values, one rounding, on both sides: equal. 4096
  // values (16-byte path) and 1001 (2-byte path).
  for (std::size_t n : {std::size_t{4096}, std::size_t{1001}}) {
    const auto h = bf16_uniform(rng, n, -4, 4), b = bf16_uniform(rng, n, -4, 4);
    std::vector<float> ref = h;
    residual_add(ref, b);
    for (auto& v : ref) v = act::round_bf16(v);
    CHECK(cuda_residual_add(h, b) == ref);
  }
  // SwiGLU, ffn 256 (16-byte path) and 37: g / (1 + exp(-g)) * u in FP32 on both sides; expf
  // (<= 2 ulp), the add, the division and the product leave |v - ref| <= 2^-20 |ref|, then one
  // BF16 rounding: |got - ref| <= (2^-8 + 2^-19) |ref|. Gates in +-8 reach silu's both tails.
  for (I ffn : {I{256}, I{37}}) {
    const I rows = 3;
    const auto gu = bf16_uniform(rng, z(rows * 2 * ffn), -8, 8);
    std::vector<float> ref(z(rows * ffn));
    swiglu(gu, rows, ffn, ref);
    const std::vector<float> got = cuda_swiglu(gu, rows, ffn);
    REQUIRE(got.size() == ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      INFO("ffn " << ffn << " element " << i);
      REQUIRE(std::fabs(got[i] - ref[i]) <= (kBf16Rel + std::ldexp(1.0, -19)) * std::fabs(ref[i]));
    }
  }
  // Embedding: a copy of BF16 rows, equal. The tiny model's table (97 x 64) and a width of 20.
  for (I width : {I{64}, I{20}}) {
    const I vocab = 97;
    const auto table = bf16_uniform(rng, z(vocab * width), -1, 1);
    const std::vector<std::int32_t> ids = {0, 96, 5, 5, 42};
    std::vector<float> ref(ids.size() * z(width));
    embedding(table, width, ids, ref);
    CHECK(cuda_embedding(table, width, ids) == ref);
  }
}

TEST_CASE("Qwen3's per-head QK-norm matches cpu_ops rmsnorm on each head, in place", "[cuda][exec]") {
  // Per head as the RMSNorm case above with n = head_dim: |got - ref| <= (2^-8 + 2 (n + 8) 2^-24)
  // |ref|. Rows of Llama-like qkv (4 q, 2 k, 2 v heads of 128, and of 16): v heads untouched.
  std::mt19937 rng(44);
  for (I hd : {I{128}, I{16}}) {
    const I rows = 7, qh = 4, kvh = 2, width = (qh + 2 * kvh) * hd;
    const auto qkv = bf16_uniform(rng, z(rows * width), -3, 3);
    const auto qw = bf16_uniform(rng, z(hd), 0.9f, 1.1f), kw = bf16_uniform(rng, z(hd), 0.9f, 1.1f);
    const float eps = 1e-6f;
    std::vector<float> ref = qkv;
    for (I r = 0; r < rows; ++r) {
      const std::span<float> q = std::span<float>(ref).subspan(z(r * width), z(qh * hd)), k = std::span<float>(ref).subspan(z(r * width + qh * hd), z(kvh * hd));
      rmsnorm(q, qh, hd, qw, eps, q);
      rmsnorm(k, kvh, hd, kw, eps, k);
    }
    const std::vector<float> got = cuda_head_rmsnorm(qkv, rows, width, qh, kvh, qw, kw, eps);
    REQUIRE(got.size() == ref.size());
    const double tol = kBf16Rel + 2.0 * static_cast<double>(hd + 8) * kF32Ulp;
    for (I r = 0; r < rows; ++r)
      for (I i = 0; i < width; ++i) {
        INFO("head_dim " << hd << " row " << r << " column " << i);
        const std::size_t at = z(r * width + i);
        if (i < (qh + kvh) * hd) REQUIRE(std::fabs(got[at] - ref[at]) <= tol * std::fabs(ref[at]));
        else REQUIRE(got[at] == qkv[at]);  // v heads
      }
  }
  CHECK_THROWS_AS(cuda_head_rmsnorm(std::vector<float>(16, 1.0f), 1, 16, 1, 1, std::vector<float>(16, 1.0f), std::vector<float>(16, 1.0f), 1e-6f),
                  InputError);  // two heads of 16 do not fit a row of 16
}

TEST_CASE("MiniMax-M2's layer-wide QK-norm matches cpu_ops: sums of squares, then the norm with own or all-reduced sums", "[cuda][exec]") {
  // Rows of 6 q heads and 2 k heads of 128 (q width 768, k width 256), then 2 v heads; x in +-3.
  // Sums of squares: n positive terms in another order: the CPU's sequential sum within (n - 1)
  // 2^-24 relative of the exact one, the device's (n/256 terms per thread, then a tree of 8
  // levels) within (n/256 + 8) 2^-24: |got - want| <= 2 (n + 8) 2^-24 want. The norm with the row's own sums: as
  // RMSNorm with n = the width, |got - ref| <= (2^-8 + 2 (n + 8) 2^-24) |ref|. With sums given (a
  // TP rank: here the CPU's sums of a whole layer twice as wide, counts 1,536 and 512): the same
  // FP32 operations in the same order on both sides (IEEE division and sqrt, two products), so
  // after one BF16 rounding each the values are equal.
  std::mt19937 rng(45);
  const I rows = 5, hd = 128, qw = 6 * hd, kw = 2 * hd, width = qw + 2 * kw;
  const auto qkv = bf16_uniform(rng, z(rows * width), -3, 3);
  const auto q_weight = bf16_uniform(rng, z(qw), 0.9f, 1.1f), k_weight = bf16_uniform(rng, z(kw), 0.9f, 1.1f);
  const float eps = 1e-6f;
  std::vector<float> sums(z(2 * rows));
  qk_sum_squares(qkv, rows, width, qw, kw, sums);
  const std::vector<float> got_sums = cuda_qk_sum_squares(qkv, rows, width, qw, kw);
  REQUIRE(got_sums.size() == sums.size());
  for (std::size_t i = 0; i < sums.size(); ++i) {
    const double n = static_cast<double>(i % 2 == 0 ? qw : kw);
    REQUIRE(std::fabs(got_sums[i] - sums[i]) <= 2 * (n + 8) * kF32Ulp * sums[i]);
  }
  std::vector<float> ref = qkv;
  qk_layer_norm(ref, rows, width, qw, kw, sums, qw, kw, q_weight, k_weight, eps);
  const std::vector<float> got = cuda_qk_layer_norm(qkv, rows, width, qw, kw, {}, qw, kw, q_weight, k_weight, eps);
  for (I r = 0; r < rows; ++r)
    for (I c = 0; c < width; ++c) {
      const std::size_t i = z(r * width + c);
      INFO("own sums, row " << r << " column " << c);
      if (c >= qw + kw) {
        REQUIRE(got[i] == qkv[i]);  // v heads
        continue;
      }
      const double tol = kBf16Rel + 2.0 * static_cast<double>((c < qw ? qw : kw) + 8) * kF32Ulp;
      REQUIRE(std::fabs(got[i] - ref[i]) <= tol * std::fabs(ref[i]));
    }
  std::vector<float> wide = sums;  // a layer of twice the heads: the other rank's sums added
  for (auto& v : wide) v *= 2.25f;
  std::vector<float> ref_tp = qkv;
  qk_layer_norm(ref_tp, rows, width, qw, kw, wide, 2 * qw, 2 * kw, q_weight, k_weight, eps);
  for (auto& v : ref_tp) v = act::round_bf16(v);
  CHECK(cuda_qk_layer_norm(qkv, rows, width, qw, kw, wide, 2 * qw, 2 * kw, q_weight, k_weight, eps) == ref_tp);
  // Two TP ranks with the KV heads replicated (TP above kv_heads): rank r holds q heads 3r..3r+2
  // and both k heads. Each rank's device sums, added on the host as the all-reduce would, count the
  // k squares twice, and so do the counts (2 x 384 for q, 2 x 256 for k): each rank's norm then
  // equals the one-GPU norm of its values (the sums differ only in order: the bound above).
  const I lq = 3 * hd, lwidth = lq + kw;
  std::vector<float> rank_rows[2], rank_sums[2];
  for (int r = 0; r < 2; ++r) {
    for (I row = 0; row < rows; ++row) {
      const auto* src = &qkv[z(row * width)];
      rank_rows[r].insert(rank_rows[r].end(), src + r * lq, src + (r + 1) * lq);
      rank_rows[r].insert(rank_rows[r].end(), src + qw, src + qw + kw);
    }
    rank_sums[r] = cuda_qk_sum_squares(rank_rows[r], rows, lwidth, lq, kw);
  }
  std::vector<float> reduced(z(2 * rows));
  for (std::size_t i = 0; i < reduced.size(); ++i) reduced[i] = rank_sums[0][i] + rank_sums[1][i];
  for (int r = 0; r < 2; ++r) {
    const std::vector<float> qs(q_weight.begin() + r * lq, q_weight.begin() + (r + 1) * lq);
    const std::vector<float> normed = cuda_qk_layer_norm(rank_rows[r], rows, lwidth, lq, kw, reduced, 2 * lq, 2 * kw, qs, k_weight, eps);
    for (I row = 0; row < rows; ++row)
      for (I c = 0; c < lwidth; ++c) {
        INFO("rank " << r << " row " << row << " column " << c);
        const float want = ref[z(row * width + (c < lq ? r * lq + c : qw + c - lq))];
        const double tol = kBf16Rel + 2.0 * static_cast<double>((c < lq ? qw : kw) + 8) * kF32Ulp;
        REQUIRE(std::fabs(normed[z(row * lwidth + c)] - want) <= tol * std::fabs(want));
      }
  }
  // Own sums need the counts to be the widths; q and k must fit the row.
  CHECK_THROWS_AS(cuda_qk_layer_norm(qkv, rows, width, qw, kw, {}, 2 * qw, kw, q_weight, k_weight, eps), InputError);
  CHECK_THROWS_AS(cuda_qk_sum_squares(qkv, rows, width, width, kw), InputError);
}

TEST_CASE("greedy argmax matches cpu_ops, lowest id among equal maxima", "[cuda][exec]") {
  // Exact: both pick an existing logit. Rows over Llama-2's 32,000 ids: random; the maximum
  // planted at ids 31,999 and 5 (-> 5); all equal (-> 0); the maximum last (-> 31,999); all
  // -inf but one; all -inf (-> 0).
  const I vocab = 32000, rows = 6;
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> u(-10, 10);
  std::vector<float> logits(z(rows * vocab));
  for (auto& v : logits) v = u(rng);
  float* r = logits.data();
  r[vocab + 31999] = r[vocab + 5] = 50;
  std::fill(r + 2 * vocab, r + 3 * vocab, 1.5f);
  r[3 * vocab + vocab - 1] = 99;
  const float inf = std::numeric_limits<float>::infinity();
  std::fill(r + 4 * vocab, r + 6 * vocab, -inf);
  r[4 * vocab + 1234] = -3;
  const std::vector<std::int32_t> got = cuda_argmax(logits, rows);
  REQUIRE(got.size() == z(rows));
  for (I i = 0; i < rows; ++i) {
    INFO("row " << i);
    CHECK(got[z(i)] == argmax_token(std::span<const float>(logits).subspan(z(i * vocab), z(vocab))));
  }
  CHECK(got[1] == 5);
  CHECK(got[2] == 0);
  CHECK(got[3] == 31999);
  CHECK(got[4] == 1234);
  CHECK(got[5] == 0);
}

TEST_CASE("MoE top-k matches cpu_ops moe_top_k: the same experts, weights within the exp error", "[cuda][exec]") {
  // The experts are the same picks (a comparison of the same FP32 logits on both sides, ties to
  // the lower id). The weights e^(l_j - l_0) / sum: expf is within 2 ulp on the device (CUDA C++
  // Programming Guide, accuracy tables) and std::exp within 1 on the host, so each term is within
  // 3 ulp, the k-term sum (same order) within (3 + k) ulp and the quotient one more rounding:
  // |got - want| <= (4 + k + 3) 2^-24 x 2 relative, written (8 + k) 2^-23. Logits are multiples of
  // 1/4 in +-4 so equal logits (ties) are frequent: 33 values over up to 1,000 experts.
  std::mt19937 rng(41);
  std::uniform_int_distribution<int> q(-16, 16);
  struct Case {
    int experts, k;
    I rows;
  };
  for (const Case c : {Case{8, 2, 300}, Case{4, 4, 7}, Case{128, 8, 257}, Case{1000, 32, 33}, Case{40, 1, 65}, Case{8, 2, 0}}) {
    std::vector<float> logits(z(c.rows * c.experts));
    for (auto& v : logits) v = static_cast<float>(q(rng)) / 4.0f;
    const std::vector<ExpertWeight> got = cuda_moe_topk(logits, c.rows, c.experts, c.k);
    REQUIRE(got.size() == z(c.rows * c.k));
    for (I r = 0; r < c.rows; ++r) {
      const auto want = moe_top_k(std::span<const float>(logits).subspan(z(r * c.experts), z(c.experts)), c.k);
      for (int j = 0; j < c.k; ++j) {
        INFO("experts " << c.experts << " k " << c.k << " row " << r << " rank " << j);
        const ExpertWeight& g = got[z(r * c.k + j)];
        REQUIRE(g.expert == want[z(j)].expert);
        REQUIRE(std::fabs(g.weight - want[z(j)].weight) <= (8 + c.k) * std::ldexp(1.0, -23) * want[z(j)].weight);
      }
    }
  }
  // By hand: logits [1, 3, 3, 0], k 2: experts 1 and 2 (the tie in id order), 1/2 each.
  const auto hand = cuda_moe_topk(std::vector<float>{1, 3, 3, 0}, 1, 4, 2);
  CHECK(hand[0].expert == 1);
  CHECK(hand[1].expert == 2);
  CHECK(hand[0].weight == 0.5f);
  CHECK_THROWS_AS(cuda_moe_topk(std::vector<float>{1, 2}, 1, 2, 3), InputError);
  CHECK_THROWS_AS(cuda_moe_topk(std::vector<float>(1025, 0.0f), 1, 1025, 2), InputError);
}

TEST_CASE("MiniMax-M2's biased sigmoid top-k matches cpu_ops moe_top_k_sigmoid", "[cuda][exec]") {
  // Keys sigmoid(l) + bias: logits multiples of 1/4 in +-4, biases multiples of 1/8 in +-1/4, so
  // equal (logit, bias) pairs tie exactly on both sides (ties to the lower id), while keys of
  // different pairs are at least 7.0e-5 apart (every pair of the grid, computed in float64: far
  // beyond the few-ulp, ~1e-7, difference of expf and std::exp).
  // Weights s_j / sum: s = 1 / (1 + e) with e within 2 ulp (device expf) and 1 (host): s within
  // 5 ulp, the k-term sum within (5 + k), the quotient one more: (11 + k) 2^-24 x 2 relative.
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> q(-16, 16), b(-2, 2);
  struct Case {
    int experts, k;
    I rows;
  };
  for (const Case c : {Case{256, 8, 130}, Case{4, 2, 9}, Case{4, 4, 5}, Case{1000, 32, 17}, Case{8, 2, 0}}) {
    std::vector<float> logits(z(c.rows * c.experts)), bias(z(c.experts));
    for (auto& v : logits) v = static_cast<float>(q(rng)) / 4.0f;
    for (auto& v : bias) v = static_cast<float>(b(rng)) / 8.0f;
    const std::vector<ExpertWeight> got = cuda_moe_topk(logits, c.rows, c.experts, c.k, bias);
    REQUIRE(got.size() == z(c.rows * c.k));
    for (I r = 0; r < c.rows; ++r) {
      const auto want = moe_top_k_sigmoid(std::span<const float>(logits).subspan(z(r * c.experts), z(c.experts)), bias, c.k);
      for (int j = 0; j < c.k; ++j) {
        INFO("experts " << c.experts << " k " << c.k << " row " << r << " rank " << j);
        const ExpertWeight& g = got[z(r * c.k + j)];
        REQUIRE(g.expert == want[z(j)].expert);
        REQUIRE(std::fabs(g.weight - want[z(j)].weight) <= (12 + c.k) * std::ldexp(1.0, -23) * want[z(j)].weight);
      }
    }
  }
  // By hand: logits all 0 (sigmoid 1/2), bias [0, 0.1, -0.1, 0.1], k 2: experts 1 and 3 (the tie
  // in id order), each 0.5 / (0.5 + 0.5) = 1/2 (the bias picks, it does not weight).
  const auto hand = cuda_moe_topk(std::vector<float>{0, 0, 0, 0}, 1, 4, 2, std::vector<float>{0, 0.1f, -0.1f, 0.1f});
  CHECK(hand[0].expert == 1);
  CHECK(hand[1].expert == 3);
  CHECK(hand[0].weight == 0.5f);
  CHECK_THROWS_AS(cuda_moe_topk(std::vector<float>{0, 0, 0, 0}, 1, 4, 2, std::vector<float>{0, 0}), InputError);  // bias of 2 for 4 experts
}

TEST_CASE("MoE permute matches moe_expert_order exactly (a stable counting sort by expert)", "[cuda][exec]") {
  // Integer results: equal. Uniform ids, ids skewed to a few experts (long runs of one expert
  // across the kernel's 1,024-assignment chunks and 32-lane warps), every assignment on one expert,
  // and no assignments at all. The active experts too: MiniMax-M2's one decode token (top-8 of
  // 256: 8 slots), the same with all 8 picks on one expert (7 slots -1), and 2 tokens of 1,024.
  std::mt19937 rng(42);
  struct Case {
    int experts, k;
    I tokens;
    int skew;  // 0: uniform over the experts; s > 0: over experts 0..s-1
  };
  for (const Case c : {Case{8, 2, 3000, 0}, Case{128, 8, 512, 0}, Case{1000, 8, 300, 0}, Case{64, 4, 700, 3}, Case{8, 2, 1500, 1},
                       Case{4, 4, 5, 0}, Case{8, 2, 0, 0}, Case{256, 8, 1, 0}, Case{256, 8, 1, 1}, Case{1024, 8, 2, 0}}) {
    std::vector<std::int32_t> ids(z(c.tokens * c.k));
    std::uniform_int_distribution<int> e(0, (c.skew > 0 ? c.skew : c.experts) - 1);
    for (auto& v : ids) v = e(rng);
    const MoeOrder want = moe_expert_order(ids, c.experts, c.k);
    const MoeOrder got = cuda_moe_permute(ids, c.experts, c.k);
    INFO("experts " << c.experts << " k " << c.k << " tokens " << c.tokens << " skew " << c.skew);
    CHECK(got.offsets == want.offsets);
    CHECK(got.position == want.position);
    CHECK(got.order == want.order);
    CHECK(got.source_rows == want.source_rows);
    CHECK(got.active == want.active);
  }
  CHECK_THROWS_AS(cuda_moe_permute(std::vector<std::int32_t>{0, 8}, 8, 2), InputError);
  CHECK_THROWS_AS(cuda_moe_permute(std::vector<std::int32_t>{0, 1, 2}, 8, 2), InputError);
}

TEST_CASE("MoE finalize matches CpuReference's weighted sum of each token's expert rows", "[cuda][exec]") {
  // The same FP32 products and sums in rank order on both sides (the kernel without fused
  // multiply-adds; the host through volatile so it cannot contract either), one BF16 rounding:
  // equal. Widths 4096 (Mixtral's hidden, the 16-byte path) and 36 (the 2-byte path).
  std::mt19937 rng(43);
  for (I width : {I{4096}, I{36}}) {
    const I rows = 37;
    const int k = 3;
    const I A = rows * k;
    const auto expert_rows = bf16_uniform(rng, z(A * width), -3, 3);
    std::vector<std::int32_t> position(z(A));
    std::iota(position.begin(), position.end(), 0);
    std::shuffle(position.begin(), position.end(), rng);
    std::uniform_real_distribution<float> u(0, 1);
    std::vector<float> weights(z(A));
    for (auto& w : weights) w = u(rng);
    std::vector<float> ref(z(rows * width));
    for (I t = 0; t < rows; ++t)
      for (I i = 0; i < width; ++i) {
        float acc = 0.0f;
        for (int j = 0; j < k; ++j) {
          const I a = t * k + j;
          volatile float p = weights[z(a)] * expert_rows[z(position[z(a)] * width + i)];
          volatile float s = acc + p;
          acc = s;
        }
        ref[z(t * width + i)] = act::round_bf16(acc);
      }
    INFO("width " << width);
    CHECK(cuda_moe_finalize(expert_rows, position, weights, rows, k, width) == ref);
  }
  CHECK_THROWS_AS(cuda_moe_finalize(std::vector<float>(8, 1.0f), std::vector<std::int32_t>{0, 2}, std::vector<float>{1, 1}, 1, 2, 4),
                  InputError);  // position 2 past the 2 expert rows
}

TEST_CASE("RoPE rotate-half matches cpu_ops on q and k heads and leaves v untouched", "[cuda][exec]") {
  // Llama-like rows: 8 q heads, 2 kv heads of 128 (rotated: 10 heads), then 2 v heads;
  // positions from 0 to 131,071; theta 10,000 (Llama 2) and 500,000 (Llama 3). Per rotated pair
  // (a, b): the device's cos and sin (float64 angle reduced to [-pi, pi], then sincosf, <= 2 ulp)
  // and the CPU's (float64 cos, sin rounded) differ by <= 2^-21; two products and a sum add
  // 2^-23 (|a| + |b|); so |v - ref| <= 2^-19 (|a| + |b|), and after the BF16 rounding
  // |got - ref| <= 2^-8 |ref| + 2^-18 (|a| + |b|). Position 0 rotates by nothing.
  // Partial RoPE too (rotary_dim 64 of 128, MiniMax-M2's; theta 5e6): pairs (i, i + 32) of each
  // head's first 64 values, the other 64 untouched.
  const I hd = 128, nq = 8, nkv = 2, width = (nq + 2 * nkv) * hd, rotated = nq + nkv;
  const std::vector<std::int32_t> pos = {0, 1, 17, 1000, 4095, 32767, 131071};
  const I rows = static_cast<I>(pos.size());
  std::mt19937 rng(14);
  for (const auto& [theta, rd] : {std::pair{10000.0, I{128}}, std::pair{500000.0, I{128}}, std::pair{5e6, I{64}}}) {
    const auto qkv = bf16_uniform(rng, z(rows * width), -3, 3);
    std::vector<float> ref = qkv;
    rope_rotate_half(ref, rows, width, rotated, hd, std::vector<std::int64_t>(pos.begin(), pos.end()), theta, rd);
    const std::vector<float> got = cuda_rope_rotate_half(qkv, rows, width, rotated, hd, pos, theta, rd);
    REQUIRE(got.size() == ref.size());
    for (I r = 0; r < rows; ++r)
      for (I c = 0; c < width; ++c) {
        const std::size_t i = z(r * width + c);
        const I in_head = c % hd;
        INFO("theta " << theta << " rotary_dim " << rd << " row " << r << " column " << c);
        if (c >= rotated * hd || pos[z(r)] == 0 || in_head >= rd) {
          REQUIRE(got[i] == qkv[i]);  // v heads, position 0, the unrotated part of a head
          continue;
        }
        const I pair = in_head < rd / 2 ? c + rd / 2 : c - rd / 2;
        const double ab = std::fabs(qkv[i]) + std::fabs(qkv[z(r * width + pair)]);
        REQUIRE(std::fabs(got[i] - ref[i]) <= kBf16Rel * std::fabs(ref[i]) + std::ldexp(1.0, -18) * ab);
      }
  }
  CHECK_THROWS_AS(cuda_rope_rotate_half(std::vector<float>(256, 1.0f), 1, 256, 2, 128, std::vector<std::int32_t>{1}, 1e4, 130),
                  InputError);  // rotary_dim above head_dim
  CHECK_THROWS_AS(cuda_rope_rotate_half(std::vector<float>(256, 1.0f), 1, 256, 2, 128, std::vector<std::int32_t>{1}, 1e4, 63),
                  InputError);  // odd rotary_dim
}

namespace {

/// One attention scenario over a paged cache: geometry, KV format and per sequence how many
/// tokens are already cached and how many new ones come (decode: 1).
struct Scenario {
  I heads, kv_heads, head_dim, block_tokens;
  DType kv;
};

/// A cache holding `cached[s]` random tokens of each sequence (stored on the host, quantized
/// as the device does), block tables a shuffled permutation of the blocks, and the BF16 values
/// of every token of every sequence (cached and new), for the references.
struct Filled {
  HostPagedKv cache;
  std::vector<std::int32_t> tables;
  I stride = 0;
  std::vector<std::vector<float>> k, v;  // per sequence [tokens x kv_heads x head_dim]
};

Filled fill_cache(const Scenario& sc, const std::vector<I>& cached, const std::vector<I>& total, std::mt19937& rng) {
  const I kvw = sc.kv_heads * sc.head_dim;
  Filled f;
  I blocks = 0;
  for (I t : total) {
    f.stride = std::max(f.stride, (t + sc.block_tokens - 1) / sc.block_tokens + 1);  // one spare block a row
    f.k.push_back(bf16_uniform(rng, z(t * kvw), -1, 1));
    f.v.push_back(bf16_uniform(rng, z(t * kvw), -1, 1));
  }
  blocks = f.stride * static_cast<I>(total.size());
  // FP8: per-tensor scale amax / 448 (the largest value lands on E4M3's largest).
  float k_amax = 0, v_amax = 0;
  for (std::size_t s = 0; s < total.size(); ++s) {
    for (float x : f.k[s]) k_amax = std::max(k_amax, std::fabs(x));
    for (float x : f.v[s]) v_amax = std::max(v_amax, std::fabs(x));
  }
  const bool fp8 = sc.kv == DType::fp8;
  f.cache = HostPagedKv({blocks, sc.block_tokens, sc.kv_heads, sc.head_dim, sc.kv}, fp8 ? k_amax / act::kE4M3Max : 1.0f,
                        fp8 ? v_amax / act::kE4M3Max : 1.0f);
  std::vector<std::int32_t> ids(z(blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  f.tables = ids;  // row s: ids[s x stride .. (s + 1) x stride)
  for (std::size_t s = 0; s < total.size(); ++s) {
    const std::span<const std::int32_t> table(f.tables.data() + s * z(f.stride), z(f.stride));
    for (I t = 0; t < cached[s]; ++t) {
      const std::span<const float> kr(f.k[s].data() + t * kvw, z(kvw)), vr(f.v[s].data() + t * kvw, z(kvw));
      f.cache.store(kv_slot(table, sc.block_tokens, t), kr, vr);
    }
  }
  return f;
}

/// Tolerance of one output element of attention over keys 0..n-1 computed twice in FP32 (device
/// and cpu_ops on the same cached K/V), the device's rounded to BF16:
/// - scores s_j differ by D <= (2 head_dim + 8) 2^-24 S, S = max_j sum_i |q_i k_ji| / sqrt(head_dim)
///   (two dot products in different orders, the scale and log2(e) roundings, FP8's scale
///   applied to the sum instead of each value); softmax weights then differ by a factor within
///   e^(+-2D), so the outputs by (e^(2D) - 1) vmax;
/// - exp2f against exp (2 ulp: 2^-21 relative) and the n-term sums of p and p v in two orders:
///   (2^-20 + 4 (n + 1) 2^-24) vmax;
/// - one BF16 rounding: 2^-8 |ref| (plus 2^-8 of the above, covered by a factor 2);
/// - FP8 K/V under RACKSIM_ATTENTION_FP8_P=single, P rounded once to FP16 in P V (p <= 1: within
///   2^-11 p, or 2^-25 below FP16's normal 2^-14), the sum of p v moves by <= (2^-11 l + n 2^-25)
///   vmax, l >= 1 (the largest score's p is 1), so the output by (2^-11 + n 2^-25) vmax.
/// vmax = max_j |v_j| over the KV head's values.
double attention_tol(double ref, double s_max, double vmax, I n, I head_dim, bool fp8) {
  const double d = static_cast<double>(2 * head_dim + 8) * kF32Ulp * s_max;
  const double p_single = fp8 && attention_fp8_single_p(std::getenv("RACKSIM_ATTENTION_FP8_P"))
                              ? std::ldexp(1.0, -11) + static_cast<double>(n) * std::ldexp(1.0, -25)
                              : 0.0;
  return kBf16Rel * std::fabs(ref) +
         2.0 * ((std::exp(2 * d) - 1) + std::ldexp(1.0, -20) + 4.0 * static_cast<double>(n + 1) * kF32Ulp + p_single) * vmax;
}

/// S and vmax of query head h (q: its head_dim values) over keys 0..n-1 of KV head g.
void score_bounds(std::span<const float> q, const std::vector<float>& k, const std::vector<float>& v, I n, I g, const Scenario& sc,
                  double& s_max, double& vmax) {
  const I kvw = sc.kv_heads * sc.head_dim;
  s_max = 0;
  vmax = 0;
  for (I j = 0; j < n; ++j) {
    double s = 0;
    for (I i = 0; i < sc.head_dim; ++i) {
      s += std::fabs(q[z(i)] * k[z(j * kvw + g * sc.head_dim + i)]);
      vmax = std::max(vmax, static_cast<double>(std::fabs(v[z(j * kvw + g * sc.head_dim + i)])));
    }
    s_max = std::max(s_max, s / std::sqrt(static_cast<double>(sc.head_dim)));
  }
}

/// Decode: each sequence has contexts[s] keys, its last (the new token) appended by the device.
/// Checks the append (cache bytes equal to the host's quantization) and the attention against
/// cpu_ops on the same cache; for FP8 also against the unquantized BF16 K/V within E4M3's error.
void check_decode(const Scenario& sc, const std::vector<I>& contexts, I partition_tokens, std::mt19937& rng) {
  const I batch = static_cast<I>(contexts.size()), hd = sc.head_dim, kvw = sc.kv_heads * hd;
  const I width = (sc.heads + 2 * sc.kv_heads) * hd;  // qkv rows: q heads, k heads, v heads
  std::vector<I> cached;
  for (I c : contexts) cached.push_back(c - 1);
  Filled f = fill_cache(sc, cached, contexts, rng);
  // The step's qkv rows: random q (in +-2: sharper softmax than +-1), the new token's k and v.
  std::vector<float> qkv = bf16_uniform(rng, z(batch * width), -2, 2);
  std::vector<std::int32_t> slots;
  HostPagedKv expected = f.cache;
  for (I b = 0; b < batch; ++b) {
    const I t = contexts[z(b)] - 1;
    std::copy_n(f.k[z(b)].data() + t * kvw, kvw, qkv.data() + b * width + sc.heads * hd);
    std::copy_n(f.v[z(b)].data() + t * kvw, kvw, qkv.data() + b * width + sc.heads * hd + kvw);
    slots.push_back(kv_slot(std::span<const std::int32_t>(f.tables).subspan(z(b * f.stride), z(f.stride)), sc.block_tokens, t));
    expected.store(slots.back(), std::span<const float>(f.k[z(b)]).subspan(z(t * kvw), z(kvw)),
                   std::span<const float>(f.v[z(b)]).subspan(z(t * kvw), z(kvw)));
  }
  cuda_kv_append(f.cache, qkv, batch, width, sc.heads, slots);
  REQUIRE(f.cache.k == expected.k);  // same BF16 rounding / e4m3_code(x / scale) on both sides
  REQUIRE(f.cache.v == expected.v);

  std::vector<std::int32_t> ctx32(contexts.begin(), contexts.end());
  const std::vector<float> got = cuda_attention_decode(f.cache, qkv, width, batch, sc.heads, f.tables, f.stride, ctx32, partition_tokens);
  REQUIRE(got.size() == z(batch * sc.heads * hd));
  const I group = sc.heads / sc.kv_heads;
  for (I b = 0; b < batch; ++b) {
    const I n = contexts[z(b)];
    std::vector<float> k, v, ref(z(sc.heads * hd));
    f.cache.gather(std::span<const std::int32_t>(f.tables).subspan(z(b * f.stride), z(f.stride)), n, k, v);
    const std::span<const float> q(qkv.data() + b * width, z(sc.heads * hd));
    attention_one_query(q, k, v, n, sc.heads, sc.kv_heads, hd, ref);
    std::vector<float> exact(z(sc.heads * hd));
    if (sc.kv == DType::fp8) attention_one_query(q, f.k[z(b)], f.v[z(b)], n, sc.heads, sc.kv_heads, hd, exact);
    for (I h = 0; h < sc.heads; ++h) {
      double s_max = 0, vmax = 0;
      score_bounds(q.subspan(z(h * hd), z(hd)), k, v, n, h / group, sc, s_max, vmax);
      for (I d = 0; d < hd; ++d) {
        const std::size_t i = z(h * hd + d);
        const double g = got[z(b * sc.heads * hd) + i];
        INFO("kv " << to_string(sc.kv) << " head_dim " << hd << " sequence " << b << " context " << n << " head " << h << " dim " << d);
        REQUIRE(std::fabs(g - ref[i]) <= attention_tol(ref[i], s_max, vmax, n, hd, sc.kv == DType::fp8));
        if (sc.kv == DType::fp8) {
          // Against the unquantized K/V: E4M3 keeps 3 fraction bits, |x - x^| <= 2^-4 |x| +
          // 2^-10 scale (half the subnormal step 2^-9). Scores then move by <= 2^-4 S +
          // 2^-10 k_scale sum_i |q_i| / sqrt(d) =: E, weights by e^(+-2E), and each V by its own
          // error: |got - exact| <= the FP32 tolerance + (e^(2E) - 1) vmax + 2^-4 vmax + 2^-10 v_scale.
          double q1 = 0;
          for (I e = 0; e < hd; ++e) q1 += std::fabs(q[z(h * hd + e)]);
          const double e = std::ldexp(s_max, -4) * (1 + std::ldexp(1.0, -4)) +
                           std::ldexp(1.0, -10) * f.cache.k_scale * q1 / std::sqrt(static_cast<double>(hd));
          const double tol = attention_tol(exact[i], s_max, vmax, n, hd, true) + (std::exp(2 * e) - 1) * vmax * 1.1 +
                             std::ldexp(vmax, -4) * 1.1 + std::ldexp(1.0, -10) * f.cache.v_scale;
          REQUIRE(std::fabs(g - exact[i]) <= tol);
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("decode attention over a paged KV cache matches cpu_ops (BF16 and FP8 KV, GQA, split-K)", "[cuda][exec]") {
  // Llama-2-70B's attention (64 q heads, 8 KV heads: GQA 8:1, head_dim 128) with 32-token
  // blocks; contexts 1, 31, 32, 33, 200 and 300 (not multiples of the block or of the 64-key
  // tile); partitions of 64 keys (300 keys: 5 partitions merged by log-sum-exp) and the device's
  // own plan (0). Tolerances: attention_tol above; FP8 also against unquantized values.
  std::mt19937 rng(15);
  REQUIRE(decode_partitions(300, 64) == 5);
  for (DType kv : {DType::bf16, DType::fp8})
    for (I partition : {I{64}, I{0}}) {
      INFO("partition tokens " << partition);
      check_decode({64, 8, 128, 32, kv}, {1, 31, 32, 33, 200, 300}, partition, rng);
    }
  // The tiny test model's attention (4 heads, 2 KV heads, head_dim 16) with 16-token blocks, and
  // head_dim 64 with 16 query heads on one KV head (the decode kernel's largest group).
  // head_dim 32 (the tiny example model: 8-dim lane loads, one chunk), and 48 query heads on 8
  // KV heads (MiniMax-M2.5's GQA 6:1: rows 6..15 of the warp's 16-row tile are padding).
  for (DType kv : {DType::bf16, DType::fp8}) {
    check_decode({4, 2, 16, 16, kv}, {5, 70, 129}, 64, rng);
    check_decode({16, 1, 64, 32, kv}, {129, 3}, 64, rng);
    check_decode({8, 2, 32, 16, kv}, {1, 17, 100}, 0, rng);
    check_decode({48, 8, 128, 32, kv}, {65, 300}, 64, rng);
  }
}

namespace {

/// Prefill: chunk s has tokens[s] new tokens after cached[s]; all chunks' rows in one q array.
/// The chunks' K/V rows are appended by the device, then the prefill kernel runs; each token i
/// of a chunk is compared with cpu_ops over keys 0..cached + i.
void check_prefill(const Scenario& sc, const std::vector<I>& cached, const std::vector<I>& tokens, std::mt19937& rng) {
  const I hd = sc.head_dim, kvw = sc.kv_heads * hd, width = (sc.heads + 2 * sc.kv_heads) * hd;
  std::vector<I> total;
  for (std::size_t s = 0; s < cached.size(); ++s) total.push_back(cached[s] + tokens[s]);
  Filled f = fill_cache(sc, cached, total, rng);
  const I rows = std::accumulate(tokens.begin(), tokens.end(), I{0});
  std::vector<float> qkv = bf16_uniform(rng, z(rows * width), -2, 2);
  std::vector<std::int32_t> slots;
  std::vector<PrefillSegment> segs;
  I row = 0;
  for (std::size_t s = 0; s < cached.size(); ++s) {
    segs.push_back({static_cast<std::int32_t>(row), static_cast<std::int32_t>(tokens[s]), static_cast<std::int32_t>(cached[s])});
    for (I i = 0; i < tokens[s]; ++i, ++row) {
      const I t = cached[s] + i;
      std::copy_n(f.k[s].data() + t * kvw, kvw, qkv.data() + row * width + sc.heads * hd);
      std::copy_n(f.v[s].data() + t * kvw, kvw, qkv.data() + row * width + sc.heads * hd + kvw);
      slots.push_back(kv_slot(std::span<const std::int32_t>(f.tables).subspan(s * z(f.stride), z(f.stride)), sc.block_tokens, t));
    }
  }
  cuda_kv_append(f.cache, qkv, rows, width, sc.heads, slots);
  const std::vector<float> got = cuda_attention_prefill(f.cache, qkv, width, rows, sc.heads, segs, f.tables, f.stride);
  REQUIRE(got.size() == z(rows * sc.heads * hd));
  const I group = sc.heads / sc.kv_heads;
  for (std::size_t s = 0; s < cached.size(); ++s) {
    std::vector<float> k, v;
    f.cache.gather(std::span<const std::int32_t>(f.tables).subspan(s * z(f.stride), z(f.stride)), total[s], k, v);
    for (I i = 0; i < tokens[s]; ++i) {
      const I r = segs[s].q_row + i, n = cached[s] + i + 1;  // causal: token i sees the cached keys and chunk keys 0..i
      const std::span<const float> q(qkv.data() + r * width, z(sc.heads * hd));
      std::vector<float> ref(z(sc.heads * hd));
      attention_one_query(q, k, v, n, sc.heads, sc.kv_heads, hd, ref);
      for (I h = 0; h < sc.heads; ++h) {
        double s_max = 0, vmax = 0;
        score_bounds(q.subspan(z(h * hd), z(hd)), k, v, n, h / group, sc, s_max, vmax);
        for (I d = 0; d < hd; ++d) {
          INFO("kv " << to_string(sc.kv) << " head_dim " << hd << " chunk " << s << " token " << i << " head " << h << " dim " << d);
          REQUIRE(std::fabs(got[z(r * sc.heads * hd + h * hd + d)] - ref[z(h * hd + d)]) <=
                  attention_tol(ref[z(h * hd + d)], s_max, vmax, n, hd, sc.kv == DType::fp8));
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("prefill attention over a paged KV cache matches cpu_ops (chunks after cached tokens)", "[cuda][exec]") {
  // Three chunks in one launch: 40 tokens after 50 cached (a chunked prefill: 5 query tiles of 8
  // tokens x 8 heads), 7 tokens from scratch, 70 tokens after 3 cached; Llama-2-70B's heads
  // (GQA 8:1, head_dim 128) and the tiny model's (4 / 2 heads of 16: 32-token tiles). Both KV
  // formats; tolerance attention_tol, against cpu_ops on the same cache.
  std::mt19937 rng(16);
  // Also head_dim 32, and GQA 6:1 (48 / 8 heads), whose tokens straddle the warps' 16-row tiles.
  for (DType kv : {DType::bf16, DType::fp8}) {
    check_prefill({64, 8, 128, 32, kv}, {50, 0, 3}, {40, 7, 70}, rng);
    check_prefill({4, 2, 16, 16, kv}, {50, 0, 3}, {40, 7, 70}, rng);
    check_prefill({8, 2, 32, 16, kv}, {0, 20}, {33, 9}, rng);
    check_prefill({48, 8, 128, 32, kv}, {10, 0}, {23, 5}, rng);
  }
}

TEST_CASE("DeviceMemory copies round-trip and zero()", "[cuda][exec]") {
  // 1,000 bytes up and back, a 100-byte window at offset 300, then zero(): byte-for-byte.
  std::vector<std::uint8_t> bytes(1000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7);
  DeviceMemory d(bytes.size());
  d.upload(bytes.data(), bytes.size());
  std::vector<std::uint8_t> back(1000), window(100);
  d.download(back.data(), back.size());
  CHECK(back == bytes);
  d.download(window.data(), window.size(), 300);
  CHECK(std::equal(window.begin(), window.end(), bytes.begin() + 300));
  d.zero();
  d.download(back.data(), back.size());
  CHECK(std::all_of(back.begin(), back.end(), [](std::uint8_t b) { return b == 0; }));
  CHECK_THROWS_AS(d.download(back.data(), 1000, 1), InputError);
}
