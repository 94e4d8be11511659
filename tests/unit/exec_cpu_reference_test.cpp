// exec/: the CPU reference backend runs step graphs of a tiny Llama and a tiny MoE with NVFP4 and
// MXFP4 weights. Its FP32 logits are compared with a float64 forward pass written plainly below
// (whole-sequence causal attention, no KV cache, its own FP4 decoder; it shares only the weights'
// packed bytes with the backend), and prefill-then-decode is compared with one longer prefill.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/cpu_reference.hpp"
#include "racksim/workloads/step_graph.hpp"
#include "tiny_models.hpp"

using namespace racksim;
using namespace racksim::exec;
using racksim::test::tiny_llama;
using racksim::test::tiny_moe;
using racksim::test::tiny_qwen3;
using racksim::test::tiny_qwen3_moe;
using racksim::test::tiny_minimax;

namespace {



// ---- The float64 reference: plain loops over whole sequences, written from the model's equations.

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;  // [rows][cols]

// E2M1 by code, UE4M3 and UE8M0 from their definitions (not the backend's fp4.hpp).
double e2m1(unsigned c) {
  static const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return (c & 8 ? -1.0 : 1.0) * mag[c & 7];
}
double ue4m3(unsigned c) {
  const unsigned e = (c >> 3) & 15, m = c & 7;
  return e == 0 ? std::ldexp(m, -9) : std::ldexp(1.0 + m / 8.0, static_cast<int>(e) - 7);
}

// A linear layer's [out][in] values decoded from its packed bytes.
Mat decode(const LinearWeight& w) {
  Mat out(static_cast<std::size_t>(w.out), Vec(static_cast<std::size_t>(w.in)));
  const Fp4Matrix& p = w.packed;
  const bool nv = p.format == DType::nvfp4;
  const std::int64_t bs = nv ? 16 : 32, blocks = (w.in + bs - 1) / bs, row_bytes = (w.in + 1) / 2;
  for (std::int64_t r = 0; r < w.out; ++r)
    for (std::int64_t c = 0; c < w.in; ++c) {
      const unsigned byte = p.packed[static_cast<std::size_t>(r * row_bytes + c / 2)];
      const unsigned code = c % 2 == 0 ? byte & 15 : byte >> 4;  // element 0 in the low nibble
      const unsigned s = p.scales[static_cast<std::size_t>(r * blocks + c / bs)];
      const double scale = nv ? ue4m3(s) * p.tensor_scale : std::ldexp(1.0, static_cast<int>(s) - 127);
      out[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] = e2m1(code) * scale;
    }
  return out;
}

// The index of the entry of ascending `table` nearest to a, ties to the even index (the codes'
// round-to-nearest-even), the last one above the range (saturation).
unsigned nearest_code(double a, const Vec& table) {
  unsigned best = 0;
  for (unsigned c = 1; c < table.size(); ++c) {
    const double d = std::fabs(table[c] - a), db = std::fabs(table[best] - a);
    if (d < db || (d == db && c % 2 == 0)) best = c;
  }
  return best;
}

// x rounded to BF16 (8 significant bits, nearest even) and then to NVFP4 with encode scale 1, per
// block of 16 from the definitions: scale = UE4M3 nearest to amax / 6, element = E2M1 nearest to
// x times the scale's FP32 reciprocal, in FP32 (as quantizers do it, TensorRT-LLM's included:
// BF16 values over short-mantissa scales land exactly on E2M1 midpoints often, and there x / s
// and x * (1/s) round differently); what the native Blackwell path feeds its FP4 GEMMs.
Vec nvfp4_input(const Vec& x) {
  static const Vec e2m1_mag = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  static const Vec ue4m3_val = [] {
    Vec v;
    for (unsigned c = 0; c < 0x7F; ++c) v.push_back(ue4m3(c));  // 0x7F is NaN
    return v;
  }();
  Vec b(x.size()), out(x.size(), 0.0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    int e = 0;
    const double m = std::frexp(x[i], &e);
    b[i] = x[i] == 0 ? 0.0 : std::ldexp(std::nearbyint(m * 256.0), e - 8);
  }
  for (std::size_t k0 = 0; k0 < x.size(); k0 += 16) {
    double amax = 0;
    for (std::size_t i = k0; i < k0 + 16; ++i) amax = std::max(amax, std::fabs(b[i]));
    const double scale = ue4m3_val[nearest_code(amax / 6.0, ue4m3_val)];
    if (scale == 0) continue;
    for (std::size_t i = k0; i < k0 + 16; ++i)
      out[i] = (b[i] < 0 ? -1.0 : 1.0) *
               e2m1_mag[nearest_code(static_cast<float>(std::fabs(b[i])) * (1.0f / static_cast<float>(scale)), e2m1_mag)] * scale;
  }
  return out;
}

Mat reshape(const std::vector<float>& v, std::int64_t rows, std::int64_t cols) {
  Mat out(static_cast<std::size_t>(rows), Vec(static_cast<std::size_t>(cols)));
  for (std::size_t r = 0; r < out.size(); ++r)
    for (std::size_t c = 0; c < out[r].size(); ++c) out[r][c] = v[r * static_cast<std::size_t>(cols) + c];
  return out;
}

Vec matvec(const Mat& w, const Vec& x) {
  Vec y(w.size(), 0.0);
  for (std::size_t n = 0; n < w.size(); ++n)
    for (std::size_t k = 0; k < x.size(); ++k) y[n] += w[n][k] * x[k];
  return y;
}

Vec rmsnorm(const Vec& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  Vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

double silu(double g) { return g / (1.0 + std::exp(-g)); }

// SwiGLU MLP with gate rows [0, f) and up rows [f, 2f) of gate_up.
// `a4`: both linears' inputs through nvfp4_input (W4A4).
Vec mlp(const Mat& gate_up, const Mat& down, const Vec& x, bool a4 = false) {
  const Vec gu = matvec(gate_up, a4 ? nvfp4_input(x) : x);
  const std::size_t f = gu.size() / 2;
  Vec a(f);
  for (std::size_t i = 0; i < f; ++i) a[i] = silu(gu[i]) * gu[f + i];
  return matvec(down, a4 ? nvfp4_input(a) : a);
}

// Logits at every position of `tokens` (causal), in float64; `a4`: the NVFP4 linears' inputs (experts too)
// quantized (nvfp4_input), lm_head's not.
// `routing_changed`, when given, counts the (token, layer) pairs whose experts MiniMax-M2's bias changed.
Mat forward64(const ModelConfig& m, const ModelWeights& w, const std::vector<std::int32_t>& tokens, bool a4 = false,
              int* routing_changed = nullptr) {
  const auto in = [a4](const Vec& x) { return a4 ? nvfp4_input(x) : x; };
  const std::size_t T = tokens.size(), H = static_cast<std::size_t>(m.hidden), hd = static_cast<std::size_t>(m.head_dim);
  const std::size_t nq = static_cast<std::size_t>(m.heads), nkv = static_cast<std::size_t>(m.kv_heads);
  Mat x(T, Vec(H));
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t i = 0; i < H; ++i) x[t][i] = w.embed_tokens[static_cast<std::size_t>(tokens[t]) * H + i];
  for (const LayerWeights& L : w.layers) {
    const Mat wqkv = decode(L.qkv_proj), wo = decode(L.o_proj);
    // q, k, v per position, RoPE (rotate halves, angle t * theta^(-2i/hd)) on q and k.
    Mat q(T), k(T), v(T);
    for (std::size_t t = 0; t < T; ++t) {
      Vec y = matvec(wqkv, in(rmsnorm(x[t], L.input_norm, m.norm_eps)));
      if (m.qk_norm_per_layer()) {
        // MiniMax-M2: all q values of the layer normed at once (q_norm), then all k values (k_norm).
        const Vec qs(y.begin(), y.begin() + static_cast<std::ptrdiff_t>(nq * hd));
        const Vec ks(y.begin() + static_cast<std::ptrdiff_t>(nq * hd), y.begin() + static_cast<std::ptrdiff_t>((nq + nkv) * hd));
        const Vec qn = rmsnorm(qs, L.q_norm, m.norm_eps), kn = rmsnorm(ks, L.k_norm, m.norm_eps);
        std::copy(qn.begin(), qn.end(), y.begin());
        std::copy(kn.begin(), kn.end(), y.begin() + static_cast<std::ptrdiff_t>(nq * hd));
      } else if (m.qk_norm()) {
        // Qwen3: every q and k head RMS-normed over its head_dim values (q_norm, k_norm), before RoPE.
        for (std::size_t h = 0; h < nq + nkv; ++h) {
          const Vec head(y.begin() + static_cast<std::ptrdiff_t>(h * hd), y.begin() + static_cast<std::ptrdiff_t>((h + 1) * hd));
          const Vec normed = rmsnorm(head, h < nq ? L.q_norm : L.k_norm, m.norm_eps);
          std::copy(normed.begin(), normed.end(), y.begin() + static_cast<std::ptrdiff_t>(h * hd));
        }
      }
      // RoPE on each head's first rd values (partial RoPE: rd = rotary_dim < hd), pairs (i, i + rd/2).
      const std::size_t rd = static_cast<std::size_t>(m.rope_dim());
      for (std::size_t h = 0; h < nq + nkv; ++h)
        for (std::size_t i = 0; i < rd / 2; ++i) {
          const double ang = static_cast<double>(t) * std::pow(m.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(rd));
          const double a = y[h * hd + i], b = y[h * hd + i + rd / 2];
          y[h * hd + i] = a * std::cos(ang) - b * std::sin(ang);
          y[h * hd + i + rd / 2] = b * std::cos(ang) + a * std::sin(ang);
        }
      q[t].assign(y.begin(), y.begin() + static_cast<std::ptrdiff_t>(nq * hd));
      k[t].assign(y.begin() + static_cast<std::ptrdiff_t>(nq * hd), y.begin() + static_cast<std::ptrdiff_t>((nq + nkv) * hd));
      v[t].assign(y.begin() + static_cast<std::ptrdiff_t>((nq + nkv) * hd), y.end());
    }
    for (std::size_t t = 0; t < T; ++t) {
      Vec o(nq * hd, 0.0);
      for (std::size_t h = 0; h < nq; ++h) {
        const std::size_t g = h / (nq / nkv);
        Vec s(t + 1);
        for (std::size_t j = 0; j <= t; ++j) {
          for (std::size_t i = 0; i < hd; ++i) s[j] += q[t][h * hd + i] * k[j][g * hd + i];
          s[j] /= std::sqrt(static_cast<double>(hd));
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (std::size_t j = 0; j <= t; ++j)
          for (std::size_t i = 0; i < hd; ++i) o[h * hd + i] += s[j] / sum * v[j][g * hd + i];
      }
      const Vec proj = matvec(wo, in(o));
      for (std::size_t i = 0; i < H; ++i) x[t][i] += proj[i];
    }
    for (std::size_t t = 0; t < T; ++t) {
      const Vec n = rmsnorm(x[t], L.post_attn_norm, m.norm_eps);
      Vec y(H, 0.0);
      if (!m.is_moe()) {
        y = mlp(decode(L.gate_up_proj), decode(L.down_proj), n, a4);
      } else {
        // Mixtral: top-k router logits, softmax over the chosen k. MiniMax-M2: top-k of
        // sigmoid(logit) + bias, weights sigmoid(logit) over their sum.
        const Vec lg = matvec(reshape(L.router, m.moe.experts, m.hidden), n);
        const bool sig = m.moe_sigmoid_routing();
        Vec key(lg.size()), score(lg.size());
        for (std::size_t e = 0; e < lg.size(); ++e) {
          score[e] = sig ? 1.0 / (1.0 + std::exp(-lg[e])) : lg[e];
          key[e] = sig ? score[e] + L.router_bias[e] : lg[e];
        }
        std::vector<std::size_t> order(lg.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key[a] > key[b]; });
        const auto kk = static_cast<std::size_t>(m.moe.experts_per_token);
        // The comparison is meaningful only if FP32 picks the same experts: the k-th and (k+1)-th
        // keys must be apart by far more than the FP32 error (1e-4 against ~1e-6).
        if (kk < order.size()) REQUIRE(key[order[kk - 1]] - key[order[kk]] > (sig ? 1e-4 : 1e-3));
        Vec weight(kk);
        double sum = 0;
        for (std::size_t j = 0; j < kk; ++j) sum += (weight[j] = sig ? score[order[j]] : std::exp(lg[order[j]] - lg[order[0]]));
        for (std::size_t j = 0; j < kk; ++j) {
          const std::size_t e = order[j];
          const Vec ye = mlp(decode(L.expert_gate_up[e]), decode(L.expert_down[e]), n, a4);
          for (std::size_t i = 0; i < H; ++i) y[i] += weight[j] / sum * ye[i];
        }
        if (routing_changed && sig) {
          // Did the bias change this token's experts? (The test asks that it does for some.)
          std::vector<std::size_t> plain = order;
          std::stable_sort(plain.begin(), plain.end(), [&](std::size_t a, std::size_t b) { return lg[a] > lg[b]; });
          std::vector<std::size_t> a(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kk)),
              b(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(kk));
          std::sort(a.begin(), a.end());
          std::sort(b.begin(), b.end());
          if (a != b) ++*routing_changed;
        }
      }
      for (std::size_t i = 0; i < H; ++i) x[t][i] += y[i];
    }
  }
  const Mat lm = reshape(w.lm_head, m.vocab, m.hidden);
  Mat logits(T);
  for (std::size_t t = 0; t < T; ++t) logits[t] = matvec(lm, rmsnorm(x[t], w.final_norm, m.norm_eps));
  return logits;
}

// ---- Driving the backend.

StepOutput step(CpuReference& ref, StepBatch batch, StepTokens tokens, Deployment dep = {}) {
  const StepGraph g(ref.model(), std::move(batch), dep, Precision{ref.format(), DType::bf16, DType::bf16});
  return ref.run(g, tokens);
}

// Largest |a - b| over a row, and the largest |b| (the scale the tolerance is relative to).
double max_diff(const std::vector<float>& a, const Vec& b) {
  double d = 0;
  for (std::size_t i = 0; i < b.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}
double max_abs(const Vec& b) {
  double d = 0;
  for (double v : b) d = std::max(d, std::fabs(v));
  return d;
}

// Tolerance of FP32 logits against float64, relative to the largest |logit| (floor 1):
// FP32 rounds each op to u = 2^-24 = 6e-8; a K-term dot product errs by at most ~K u of the sum
// of |terms| (Higham's gamma_K: 128 x 6e-8 = 8e-6), softmax, RMSNorm and the residual stream
// add a few u each, and two layers plus the head chain ~10 such steps, some amplifying by the
// O(1-10) gains of the normalizations: a worst case near 1e-4. Observed errors are ~1e-6 (errors
// add like a random walk, sqrt(K) u), so 1e-4 has a margin of ~100 and still catches any real
// mistake (a wrong RoPE angle, GQA group or scale changes logits by O(0.1)).
constexpr double kTolerance = 1e-4;

// Two sequences: a 5-token and a 3-token prompt prefilled in one step, then 4 batched decode
// steps with fixed (teacher-forced) tokens; every sampled row's logits against forward64 over
// that sequence's prefix, and the greedy token against the float64 argmax.
void check_against_float64(const ModelConfig& m, DType format, bool a4 = false) {
  CpuReference ref(m, format, 2024);
  ref.set_nvfp4_linear_inputs(a4);
  std::vector<std::int32_t> a = {3, 17, 42, 96, 0}, b = {55, 8, 71};
  const std::vector<std::int32_t> a_next = {12, 90, 33, 5}, b_next = {64, 1, 77, 29};
  StepBatch prefill;
  prefill.prefill = {{5, 0, true}, {3, 0, true}};
  StepOutput out = step(ref, prefill, StepTokens{{{100, a}, {200, b}}, {}});
  REQUIRE(out.sequences == std::vector<std::int64_t>{100, 200});
  double worst = 0;
  auto compare = [&](const StepOutput& o, std::size_t i, const std::vector<std::int32_t>& seq) {
    const Vec want = forward64(m, ref.weights(), seq, a4).back();
    const double scale = std::max(1.0, max_abs(want));
    const double diff = max_diff(o.logits[i], want);
    worst = std::max(worst, diff / scale);  // ~6e-7 observed for all four model/format pairs
    INFO("sequence " << o.sequences[i] << " length " << seq.size() << ": max |logit diff| " << diff << " (scale " << scale << ")");
    CHECK(diff <= kTolerance * scale);
    // Greedy sampling picks the float64 argmax whenever the top two are apart by more than the tolerance.
    Vec sorted = want;
    std::sort(sorted.rbegin(), sorted.rend());
    if (sorted[0] - sorted[1] > 2 * kTolerance * scale)
      CHECK(o.next_tokens[i] == std::max_element(want.begin(), want.end()) - want.begin());
  };
  compare(out, 0, a);
  compare(out, 1, b);
  for (std::size_t s = 0; s < a_next.size(); ++s) {
    StepBatch dec;
    dec.decode_contexts = {static_cast<std::int64_t>(a.size()), static_cast<std::int64_t>(b.size())};
    out = step(ref, dec, StepTokens{{}, {{100, a_next[s]}, {200, b_next[s]}}});
    a.push_back(a_next[s]);
    b.push_back(b_next[s]);
    compare(out, 0, a);
    compare(out, 1, b);
  }
  CHECK(ref.cached_tokens(100) == 9);
  CHECK(ref.cached_tokens(200) == 7);
  CHECK(worst > 0);  // FP32 really differs from float64: the comparison is not vacuous
}

}  // namespace

TEST_CASE("CPU reference weights decode to the packed bytes' values", "[exec][cpu]") {
  // The backend's dequantized weights (the values its math uses) equal an independent float64
  // decode of the packed nibbles and scales: exactly for MXFP4 (E2M1 x 2^e is an FP32 value);
  // for NVFP4 within 2 FP32 roundings (e2m1 x (ue4m3 x tensor scale)): 2^-23 relative.
  for (DType f : {DType::nvfp4, DType::mxfp4}) {
    const ModelWeights w = generate_weights(tiny_llama(), f, 7);
    const LinearWeight& lw = w.layers[1].gate_up_proj;
    CHECK(lw.packed.format == f);
    CHECK(lw.packed.packed.size() == static_cast<std::size_t>(256 * 64 / 2));
    const Mat d = decode(lw);
    for (std::size_t r = 0; r < d.size(); ++r)
      for (std::size_t c = 0; c < d[r].size(); ++c) {
        const double v = lw.values[r * d[r].size() + c];
        if (f == DType::mxfp4) REQUIRE(v == d[r][c]);
        else REQUIRE(std::fabs(v - d[r][c]) <= std::ldexp(std::fabs(d[r][c]), -23));
      }
  }
}

TEST_CASE("CPU reference matches float64: tiny Llama, NVFP4", "[exec][cpu]") {
  // 2 layers, hidden 64, 4 heads / 2 KV heads of 16, ffn 128, vocab 97; tolerance kTolerance.
  check_against_float64(tiny_llama(), DType::nvfp4);
}

TEST_CASE("CPU reference matches float64: tiny Llama, MXFP4", "[exec][cpu]") {
  check_against_float64(tiny_llama(), DType::mxfp4);
}

TEST_CASE("CPU reference matches float64: tiny Llama, NVFP4 weights and NVFP4 linear inputs (W4A4)", "[exec][cpu]") {
  // The native Blackwell path's numerics (fp4_gemm_path.hpp), against nvfp4_input written from
  // the definitions above. The quantizer is discontinuous: an FP32 and a float64 pre-activation
  // that round to different BF16 values (about 1 in 2^15 elements) may take different E2M1 codes,
  // which would show as an error near 1e-2, not within 1e-4. The run is deterministic, and at this
  // seed every code agrees; a change of weights or seed that trips this says so here. The quantization is really applied: the W4A4 logits of the first
  // prompt differ from the W4A16 ones by far more than the FP32 tolerance (E2M1 keeps 1 mantissa
  // bit: per-element errors up to 1/6 of a block's maximum).
  check_against_float64(tiny_llama(), DType::nvfp4, true);
  const ModelWeights w = generate_weights(tiny_llama(), DType::nvfp4, 2024);
  const std::vector<std::int32_t> a = {3, 17, 42, 96, 0};
  const Vec w4a4 = forward64(tiny_llama(), w, a, true).back(), w4a16 = forward64(tiny_llama(), w, a, false).back();
  double diff = 0;
  for (std::size_t i = 0; i < w4a4.size(); ++i) diff = std::max(diff, std::fabs(w4a4[i] - w4a16[i]));
  CHECK(diff > 100 * kTolerance * std::max(1.0, max_abs(w4a16)));
  CpuReference bf16(tiny_llama(), DType::bf16, 1);
  CHECK_THROWS_AS(bf16.set_nvfp4_linear_inputs(true), InputError);
}

TEST_CASE("CPU reference matches float64: tiny MoE (4 experts, top 2), NVFP4 and MXFP4", "[exec][cpu]") {
  check_against_float64(tiny_moe(), DType::nvfp4);
  check_against_float64(tiny_moe(), DType::mxfp4);
  // W4A4: the experts' inputs quantized too (the native Blackwell path's numerics); as for the
  // dense W4A4 case, every E2M1 code agrees at this seed.
  check_against_float64(tiny_moe(), DType::nvfp4, true);
}

TEST_CASE("CPU reference matches float64: Qwen3's per-head QK-norm, dense and MoE", "[exec][cpu]") {
  // tiny_qwen3 (tiny_llama with q_norm and k_norm over each head's 16 values before RoPE) and
  // tiny_qwen3_moe; forward64 norms each head on its own, in float64.
  check_against_float64(tiny_qwen3(), DType::nvfp4);
  check_against_float64(tiny_qwen3_moe(), DType::nvfp4);
  // The norms are really applied: the same weights without them (a llama) give other logits.
  const ModelWeights w = generate_weights(tiny_qwen3(), DType::nvfp4, 2024);
  REQUIRE(w.layers[0].q_norm.size() == 16);
  ModelConfig plain = tiny_qwen3();
  plain.architecture = "llama";
  const std::vector<std::int32_t> a = {3, 17, 42, 96, 0};
  const Vec with = forward64(tiny_qwen3(), w, a).back(), without = forward64(plain, w, a).back();
  double diff = 0;
  for (std::size_t i = 0; i < with.size(); ++i) diff = std::max(diff, std::fabs(with[i] - without[i]));
  CHECK(diff > 100 * kTolerance * std::max(1.0, max_abs(with)));
}

TEST_CASE("CPU reference matches float64: MiniMax-M2's layer-wide QK-norm, partial RoPE and sigmoid routing", "[exec][cpu]") {
  // tiny_minimax: q_norm over all 4 x 16 q values, k_norm over all 2 x 16 k values, RoPE on 8 of
  // each head's 16 dims, routing by sigmoid(logit) + bias; forward64 writes each from the Hugging
  // Face definitions (MiniMaxM2Attention, apply_rotary_pos_emb_partial, MiniMaxM2SparseMoeBlock).
  check_against_float64(tiny_minimax(), DType::nvfp4);
  check_against_float64(tiny_minimax(), DType::mxfp4);
  const ModelWeights w = generate_weights(tiny_minimax(), DType::nvfp4, 2024);
  REQUIRE(w.layers[0].q_norm.size() == 64);
  REQUIRE(w.layers[0].k_norm.size() == 32);
  REQUIRE(w.layers[0].router_bias.size() == 4);
  // Each of the three is really applied: without it (forward64 of the same weights under a model
  // that lacks it) the logits move by far more than the tolerance.
  const std::vector<std::int32_t> a = {3, 17, 42, 96, 0, 12, 90, 33, 5};
  int changed = 0;
  const Vec with = forward64(tiny_minimax(), w, a, false, &changed).back();
  // The bias changes the experts of some (token, layer) pairs of the 9 x 2 (seen: counted here).
  CHECK(changed > 0);
  auto moved = [&](const ModelConfig& other) {
    const Vec without = forward64(other, w, a).back();
    double diff = 0;
    for (std::size_t i = 0; i < with.size(); ++i) diff = std::max(diff, std::fabs(with[i] - without[i]));
    return diff / std::max(1.0, max_abs(with));
  };
  ModelConfig full_rope = tiny_minimax();
  full_rope.rotary_dim = 0;
  CHECK(moved(full_rope) > 100 * kTolerance);
  ModelConfig no_norm = tiny_minimax();  // mixtral: no QK-norm, softmax routing
  no_norm.architecture = "mixtral";
  CHECK(moved(no_norm) > 100 * kTolerance);
}

TEST_CASE("CPU reference: partial RoPE on a dense Llama", "[exec][cpu]") {
  // tiny_llama with rotary_dim 8 of 16 (a catalog Llama may set rotary_dim).
  ModelConfig partial = tiny_llama();
  partial.rotary_dim = 8;
  check_against_float64(partial, DType::nvfp4);
}

TEST_CASE("CPU reference: prefill then decode equals one longer prefill (KV cache)", "[exec][cpu]") {
  // The same 9 tokens three ways: prefill 5 + 4 decodes; prefill 4 (not last, samples nothing)
  // then a chunk of 5 after 4 cached; one prefill of 9. The last logits must agree to FP32
  // reassociation level (1e-5 relative; the implementation happens to be bit-identical).
  for (const ModelConfig& m : {tiny_llama(), tiny_moe()}) {
    const std::vector<std::int32_t> t = {3, 17, 42, 96, 0, 12, 90, 33, 5};
    CpuReference r1(m, DType::nvfp4, 11), r2(m, DType::nvfp4, 11), r3(m, DType::nvfp4, 11);
    StepOutput o1 = step(r1, StepBatch::prefill_only(1, 5), StepTokens{{{1, {t.begin(), t.begin() + 5}}}, {}});
    for (std::size_t i = 5; i < t.size(); ++i) o1 = step(r1, StepBatch::decode(1, static_cast<std::int64_t>(i)), StepTokens{{}, {{1, t[i]}}});
    StepBatch first;
    first.prefill = {{4, 0, false}};
    const StepOutput none = step(r2, first, StepTokens{{{1, {t.begin(), t.begin() + 4}}}, {}});
    CHECK(none.logits.empty());
    CHECK(r2.cached_tokens(1) == 4);
    const StepOutput o2 = step(r2, StepBatch::prefill_only(1, 5, 4), StepTokens{{{1, {t.begin() + 4, t.end()}}}, {}});
    const StepOutput o3 = step(r3, StepBatch::prefill_only(1, 9), StepTokens{{{1, t}}, {}});
    REQUIRE(o1.logits.size() == 1);
    REQUIRE(o2.logits.size() == 1);
    REQUIRE(o3.logits.size() == 1);
    const Vec ref(o3.logits[0].begin(), o3.logits[0].end());
    const double scale = std::max(1.0, max_abs(ref));
    CHECK(max_diff(o1.logits[0], ref) <= 1e-5 * scale);
    CHECK(max_diff(o2.logits[0], ref) <= 1e-5 * scale);
    CHECK(o1.next_tokens == o3.next_tokens);
    CHECK(r1.cached_tokens(1) == 9);
    CHECK(r3.cached_tokens(1) == 9);
    r1.release(1);
    CHECK(r1.cached_tokens(1) == 0);
  }
}

TEST_CASE("CPU reference rejects steps it cannot run", "[exec][cpu]") {
  // Wrong cached length, a repeated sequence, a wrong token count, TP 2, a different weight
  // format, an out-of-range token: InputError naming the problem; the registry lists "cpu".
  CpuReference ref(tiny_llama(), DType::nvfp4, 1);
  CHECK_THROWS_AS(step(ref, StepBatch::decode(1, 3), StepTokens{{}, {{1, 5}}}), InputError);
  StepBatch two = StepBatch::decode(2, 0);
  CHECK_THROWS_AS(step(ref, two, StepTokens{{}, {{1, 5}, {1, 6}}}), InputError);
  CHECK_THROWS_AS(step(ref, StepBatch::prefill_only(1, 3), StepTokens{{{1, {1, 2}}}, {}}), InputError);
  CHECK_THROWS_AS(step(ref, StepBatch::prefill_only(1, 2), StepTokens{{{1, {1, 2}}}, {}}, Deployment{2, 1, 1}), InputError);
  CHECK_THROWS_AS(step(ref, StepBatch::prefill_only(1, 1), StepTokens{{{1, {97}}}, {}}), InputError);
  const StepGraph mx(tiny_llama(), StepBatch::prefill_only(1, 1), Deployment{}, Precision{DType::mxfp4, DType::bf16, DType::bf16});
  CHECK_THROWS_AS(ref.run(mx, StepTokens{{{1, {1}}}, {}}), InputError);
  // A graph of a model with the same dimensions but another architecture or rotary width: the
  // QK-norm, routing or RoPE it would skip or misplace is refused, not run (tiny_minimax is
  // tiny_moe with the layer-wide QK-norm, sigmoid routing and rotary_dim 8).
  CpuReference mini(tiny_minimax(), DType::nvfp4, 1);
  const Precision p4{DType::nvfp4, DType::bf16, DType::bf16};
  CHECK_THROWS_WITH(mini.run(StepGraph(tiny_moe(), StepBatch::prefill_only(1, 1), Deployment{}, p4), StepTokens{{{1, {1}}}, {}}),
                    Catch::Contains("does not match"));
  ModelConfig whole_rope = tiny_minimax();
  whole_rope.rotary_dim = 0;
  CHECK_THROWS_WITH(mini.run(StepGraph(whole_rope, StepBatch::prefill_only(1, 1), Deployment{}, p4), StepTokens{{{1, {1}}}, {}}),
                    Catch::Contains("does not match"));
  CHECK(ref.cached_tokens(1) == 0);  // nothing was appended by the rejected steps
  CHECK_THROWS_AS(CpuReference(tiny_llama(), DType::fp8, 1), InputError);
  CHECK(backend_registry().get("cpu").factory().find("built") != std::string::npos);
}
