#include "racksim/exec/cpu_reference.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <span>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cpu_ops.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/tensor_parallel.hpp"

namespace racksim::exec {

namespace {

using I = std::int64_t;

std::size_t z(I v) { return static_cast<std::size_t>(v); }

/// SplitMix64 (Steele, Lea, Flood 2014): a fixed, portable stream, unlike std:: distributions.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t x = (s_ += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  }
  /// Uniform in [-1, 1) with 53 random bits.
  double symmetric() { return static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0; }

 private:
  std::uint64_t s_;
};

std::vector<float> bf16_uniform(SplitMix64& rng, I count, double center, double half_width) {
  std::vector<float> v(z(count));
  for (auto& x : v) x = act::round_bf16(static_cast<float>(center + half_width * rng.symmetric()));
  return v;
}

LinearWeight make_linear(SplitMix64& rng, I out, I in, DType format) {
  LinearWeight w;
  w.out = out;
  w.in = in;
  std::vector<float> master(z(out * in));
  const double a = std::sqrt(3.0 / static_cast<double>(in));
  for (auto& x : master) x = static_cast<float>(a * rng.symmetric());
  if (format == DType::bf16) {
    for (auto& x : master) x = act::round_bf16(x);
    w.values = std::move(master);
  } else {
    w.packed = quantize_fp4(format, master, out, in);
    w.values = dequantize(w.packed);
  }
  return w;
}

/// y[r, n] = sum_k x[r, k] w[n, k] for r < rows: FP32, accumulated in k order.
void matmul(const float* x, I rows, I k, const float* w, I n, float* y) {
  for (I r = 0; r < rows; ++r)
    for (I j = 0; j < n; ++j) {
      float acc = 0.0f;
      const float* xr = x + r * k;
      const float* wj = w + j * k;
      for (I i = 0; i < k; ++i) acc += xr[i] * wj[i];
      y[r * n + j] = acc;
    }
}

/// y = x W^T; with `nvfp4_input` x is first rounded to BF16 and quantized to NVFP4 under the
/// static activation encode scale, as the CUDA executor's native Blackwell path does.
void linear(const std::vector<float>& x, I rows, const LinearWeight& w, std::vector<float>& y, bool nvfp4_input) {
  RACKSIM_ASSERT(x.size() >= z(rows * w.in), "linear input holds rows x in values");
  y.assign(z(rows * w.out), 0.0f);
  if (!nvfp4_input) return matmul(x.data(), rows, w.in, w.values.data(), w.out, y.data());
  std::vector<float> in(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(rows * w.in));
  for (auto& v : in) v = act::round_bf16(v);
  const std::vector<float> q = dequantize(quantize_nvfp4_static(in, rows, w.in, kActivationNvfp4EncodeScale));
  matmul(q.data(), rows, w.in, w.values.data(), w.out, y.data());
}

/// cpu_ops' rmsnorm into `y`, resized to rows x n.
void rmsnorm_rows(const std::vector<float>& x, I rows, I n, const std::vector<float>& weight, float eps, std::vector<float>& y) {
  y.assign(z(rows * n), 0.0f);
  rmsnorm(x, rows, n, weight, eps, y);
}


[[noreturn]] void unsupported(const Op& op) {
  throw InputError(fmt::format("CPU reference cannot execute op '{}' ({})", op.name, to_string(op.kind)));
}

}  // namespace

StepRows step_rows(const StepBatch& batch, const StepTokens& tokens, I vocab, const std::function<I(I)>& cached) {
  if (tokens.prefill.size() != batch.prefill.size() || tokens.decode.size() != batch.decode_contexts.size())
    throw InputError(fmt::format("step tokens give {} chunks and {} decodes; the graph has {} and {}", tokens.prefill.size(),
                                 tokens.decode.size(), batch.prefill.size(), batch.decode_contexts.size()));
  StepRows out;
  std::set<I> seen;
  auto check_sequence = [&](I seq, I expected_cached, std::string_view what) {
    if (!seen.insert(seq).second) throw InputError(fmt::format("sequence {} appears twice in one step", seq));
    if (cached(seq) != expected_cached)
      throw InputError(fmt::format("{} of sequence {} expects {} cached tokens; its KV cache holds {}", what, seq, expected_cached,
                                   cached(seq)));
    out.sequences.push_back(seq);
  };
  for (std::size_t c = 0; c < batch.prefill.size(); ++c) {
    const PrefillChunk& chunk = batch.prefill[c];
    const auto& t = tokens.prefill[c];
    if (static_cast<I>(t.tokens.size()) != chunk.tokens)
      throw InputError(fmt::format("prefill chunk {} has {} tokens; the graph says {}", c, t.tokens.size(), chunk.tokens));
    check_sequence(t.sequence, chunk.cached, "prefill chunk");
    for (I i = 0; i < chunk.tokens; ++i) out.rows.push_back({t.sequence, chunk.cached + i, t.tokens[z(i)]});
    if (chunk.last) out.sampled.push_back(static_cast<I>(out.rows.size()) - 1);
  }
  for (std::size_t d = 0; d < batch.decode_contexts.size(); ++d) {
    check_sequence(tokens.decode[d].sequence, batch.decode_contexts[d], "decode");
    out.sampled.push_back(static_cast<I>(out.rows.size()));
    out.rows.push_back({tokens.decode[d].sequence, batch.decode_contexts[d], tokens.decode[d].token});
  }
  for (const auto& r : out.rows)
    if (r.token < 0 || r.token >= vocab) throw InputError(fmt::format("token id {} outside the vocabulary 0..{}", r.token, vocab - 1));
  return out;
}

ModelWeights generate_weights(const ModelConfig& m, DType format, std::uint64_t seed) {
  if (format != DType::nvfp4 && format != DType::mxfp4 && format != DType::bf16)
    throw InputError(fmt::format("CPU reference weights '{}' not supported; valid: nvfp4, mxfp4, bf16", to_string(format)));
  SplitMix64 rng(seed);
  const I h = m.hidden, hd = m.head_dim, f = m.ffn;
  ModelWeights w;
  w.embed_tokens = bf16_uniform(rng, I{m.vocab} * h, 0.0, 1.0);
  for (int l = 0; l < m.layers; ++l) {
    LayerWeights lw;
    lw.input_norm = bf16_uniform(rng, h, 1.0, 0.1);
    lw.post_attn_norm = bf16_uniform(rng, h, 1.0, 0.1);
    lw.qkv_proj = make_linear(rng, (I{m.heads} + 2 * I{m.kv_heads}) * hd, h, format);
    lw.o_proj = make_linear(rng, h, I{m.heads} * hd, format);
    if (m.qk_norm()) {  // drawn only for these models: the others' weights are as before
      // Per head (Qwen3): head_dim weights each; per layer (MiniMax-M2): one per q and k element.
      const bool layer = m.qk_norm_per_layer();
      lw.q_norm = bf16_uniform(rng, layer ? I{m.heads} * hd : hd, 1.0, 0.1);
      lw.k_norm = bf16_uniform(rng, layer ? I{m.kv_heads} * hd : hd, 1.0, 0.1);
    }
    if (m.is_moe()) {
      lw.router = bf16_uniform(rng, I{m.moe.experts} * h, 0.0, std::sqrt(3.0 / static_cast<double>(h)));
      if (m.moe_sigmoid_routing()) {
        // FP32 uniform in +-0.1: about the spread of the sigmoid scores' gaps between neighbouring
        // experts, so the bias changes which experts some tokens take (checked in the tests).
        lw.router_bias.resize(z(m.moe.experts));
        for (auto& b : lw.router_bias) b = static_cast<float>(0.1 * rng.symmetric());
      }
      for (int e = 0; e < m.moe.experts; ++e) {
        lw.expert_gate_up.push_back(make_linear(rng, 2 * f, h, format));
        lw.expert_down.push_back(make_linear(rng, h, f, format));
      }
    } else {
      lw.gate_up_proj = make_linear(rng, 2 * f, h, format);
      lw.down_proj = make_linear(rng, h, f, format);
    }
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = bf16_uniform(rng, h, 1.0, 0.1);
  w.lm_head = m.tied_embeddings ? w.embed_tokens : bf16_uniform(rng, I{m.vocab} * h, 0.0, std::sqrt(3.0 / static_cast<double>(h)));
  return w;
}

CpuReference::CpuReference(ModelConfig model, DType format, std::uint64_t seed) : CpuReference(std::move(model), format, seed, nullptr) {}

CpuReference::CpuReference(ModelConfig model, DType format, std::uint64_t seed, HostTpComm* tp)
    : CpuReference(model, format, tp, [&] {
        ModelWeights w = generate_weights(model, format, seed);
        return tp && tp->size() > 1 ? shard_weights(w, model, tp_layout(model, tp->rank(), tp->size(), format)) : w;
      }()) {}

CpuReference::CpuReference(ModelConfig model, DType format, HostTpComm* tp, ModelWeights rank_weights)
    : model_(std::move(model)),
      format_(format),
      weights_(std::move(rank_weights)),
      tp_(tp),
      tl_(tp_layout(model_, tp ? tp->rank() : 0, tp ? tp->size() : 1, format)) {
  RACKSIM_ASSERT(weights_.layers.size() == static_cast<std::size_t>(model_.layers) &&
                     (weights_.layers.empty() || weights_.layers[0].qkv_proj.out == (tl_.q_heads + 2 * tl_.kv_heads) * model_.head_dim),
                 "the weights are this rank's shard of the model");
  const auto& m = model_;
  RACKSIM_ASSERT(m.layers > 0 && m.hidden > 0 && m.heads > 0 && m.kv_heads > 0 && m.head_dim > 0 && m.ffn > 0 && m.vocab > 0,
                 "model dimensions are positive");
  RACKSIM_ASSERT(m.heads % m.kv_heads == 0 && m.head_dim % 2 == 0, "GQA groups are whole and head_dim is even");
  RACKSIM_ASSERT(m.rope_dim() >= 2 && m.rope_dim() <= m.head_dim && m.rope_dim() % 2 == 0, "RoPE rotates pairs within a head");
  RACKSIM_ASSERT(!m.is_moe() || (m.moe.experts_per_token >= 1 && m.moe.experts_per_token <= m.moe.experts), "1 <= top-k <= experts");
}

void CpuReference::set_nvfp4_linear_inputs(bool on) {
  if (on && format_ != DType::nvfp4)
    throw InputError(fmt::format("CPU reference: NVFP4 linear inputs need NVFP4 weights; these are {}", to_string(format_)));
  nvfp4_inputs_ = on;
}

std::int64_t CpuReference::cached_tokens(std::int64_t sequence) const {
  const auto it = caches_.find(sequence);
  if (it == caches_.end()) return 0;
  return static_cast<I>(it->second.k[0].size()) / (tl_.kv_heads * model_.head_dim);
}

void CpuReference::release(std::int64_t sequence) { caches_.erase(sequence); }

void CpuReference::truncate(std::int64_t sequence, std::int64_t tokens) {
  const std::int64_t held = cached_tokens(sequence);
  if (tokens < 0 || tokens > held)
    throw InputError(fmt::format("cannot truncate sequence {} to {} tokens: its KV cache holds {}", sequence, tokens, held));
  if (tokens == held) return;
  const auto width = static_cast<std::size_t>(tokens * tl_.kv_heads * model_.head_dim);
  for (auto& per_layer : {&caches_.at(sequence).k, &caches_.at(sequence).v})
    for (auto& rows : *per_layer) rows.resize(std::min(rows.size(), width));
}

StepOutput CpuReference::run(const StepGraph& graph, const StepTokens& tokens, const std::function<void(const Op&, double)>& observer) {
  const ModelConfig& m = model_;
  const ModelConfig& gm = graph.model();
  if (gm.hidden != m.hidden || gm.layers != m.layers || gm.heads != m.heads || gm.kv_heads != m.kv_heads ||
      gm.head_dim != m.head_dim || gm.ffn != m.ffn || gm.vocab != m.vocab || gm.moe.experts != m.moe.experts ||
      gm.moe.experts_per_token != m.moe.experts_per_token || gm.rope_dim() != m.rope_dim() || gm.architecture != m.architecture)
    throw InputError(fmt::format("step graph of model '{}' does not match the CPU reference's model '{}'", gm.id, m.id));
  const Deployment& dep = graph.deployment();
  const int tp = tp_ ? tp_->size() : 1;
  if (dep.tensor_parallel != tp || dep.pipeline_parallel != 1 || dep.expert_parallel != 1)
    throw InputError(fmt::format("CPU reference runs {} rank(s) of tensor parallel {}: the graph's tensor, pipeline and expert parallel "
                                 "must be {}, 1, 1 (got {}, {}, {})",
                                 tp, tp, tp, dep.tensor_parallel, dep.pipeline_parallel, dep.expert_parallel));
  if (graph.precision().weights != format_)
    throw InputError(fmt::format("step graph weights '{}' but the CPU reference holds '{}'", to_string(graph.precision().weights),
                                 to_string(format_)));

  // Rows of the step: prefill chunk tokens in order, then one per decode sequence.
  const StepBatch& batch = graph.batch();
  const StepRows layout = step_rows(batch, tokens, m.vocab, [this](std::int64_t seq) { return cached_tokens(seq); });
  const auto& rows = layout.rows;
  const auto& sampled = layout.sampled;
  for (std::int64_t seq : layout.sequences) {
    KvCache& c = caches_[seq];
    c.k.resize(z(m.layers));
    c.v.resize(z(m.layers));
  }

  const I T = static_cast<I>(rows.size()), S = static_cast<I>(sampled.size());
  const I H = m.hidden, hd = m.head_dim, nq = tl_.q_heads, nkv = tl_.kv_heads, kv_width = nkv * hd;
  const I qkv_width = (nq + 2 * nkv) * hd;
  const float eps = static_cast<float>(m.norm_eps);
  const int topk = m.moe.experts_per_token;

  std::vector<float> hidden, normed, qkv, attn, branch, gate_up, act, router_logits, logits, expert_out, qk_sums;
  struct Assignment {
    I row;
    int expert;
    float weight;
  };
  std::vector<Assignment> assignments;
  StepOutput out;

  // Attention of query row `r` (rope applied) over keys 0..n_keys-1 of its sequence's layer cache.
  auto attend = [&](I r, int layer, I n_keys) {
    const KvCache& c = caches_.at(rows[z(r)].sequence);
    const std::span<const float> K = c.k[z(layer)], V = c.v[z(layer)];
    attention_one_query(std::span<const float>(qkv).subspan(z(r * qkv_width), z(nq * hd)), K.first(z(n_keys * kv_width)),
                        V.first(z(n_keys * kv_width)), n_keys, nq, nkv, hd, std::span<float>(attn).subspan(z(r * nq * hd), z(nq * hd)));
  };
  // Appends rows [r0, r1) (one sequence, consecutive positions) to their layer cache.
  auto append_kv = [&](I r0, I r1, int layer) {
    KvCache& c = caches_.at(rows[z(r0)].sequence);
    for (I r = r0; r < r1; ++r) {
      RACKSIM_ASSERT(static_cast<I>(c.k[z(layer)].size()) == rows[z(r)].position * kv_width, "KV cache in step with positions");
      const float* k = &qkv[z(r * qkv_width + nq * hd)];
      c.k[z(layer)].insert(c.k[z(layer)].end(), k, k + kv_width);
      c.v[z(layer)].insert(c.v[z(layer)].end(), k + kv_width, k + 2 * kv_width);
    }
  };
  auto require_rows = [](const Op& op, I want) {
    if (op.m != want) throw InputError(fmt::format("op '{}' has m = {}; the step has {} rows for it", op.name, op.m, want));
  };

  for (std::size_t v : graph.topological_order()) {
    const Op& op = graph.op(v);
    const auto started = std::chrono::steady_clock::now();
    const std::string_view what = op.role();
    const int l = op.layer;
    const LayerWeights* lw = l >= 0 ? &weights_.layers.at(z(l)) : nullptr;
    switch (op.kind) {
      case OpKind::embedding: {
        require_rows(op, T);
        hidden.assign(z(T * H), 0.0f);
        std::vector<std::int32_t> ids(z(T));
        for (I r = 0; r < T; ++r) ids[z(r)] = rows[z(r)].token;
        embedding(weights_.embed_tokens, H, ids, hidden);
        break;
      }
      case OpKind::rmsnorm:
        require_rows(op, T);
        if (what == "input_norm") rmsnorm_rows(hidden, T, H, lw->input_norm, eps, normed);
        else if (what == "post_attn_norm") rmsnorm_rows(hidden, T, H, lw->post_attn_norm, eps, normed);
        else if (what == "final_norm") rmsnorm_rows(hidden, T, H, weights_.final_norm, eps, normed);
        else if (what == "qk_norm" && m.qk_norm_per_layer()) {
          // MiniMax-M2: all of the layer's q values normed together (q_norm), and all its k
          // values (k_norm). Under TP qk_norm_all_reduce has left the whole layer's sums in
          // qk_sums; without TP they are summed here.
          if (tp == 1) {
            qk_sums.assign(z(2 * T), 0.0f);
            qk_sum_squares(qkv, T, qkv_width, nq * hd, kv_width, qk_sums);
          }
          RACKSIM_ASSERT(qk_sums.size() == z(2 * T), "qk_norm_all_reduce ran before qk_norm");
          qk_layer_norm(qkv, T, qkv_width, nq * hd, kv_width, qk_sums, tp * nq * hd, tp * kv_width, lw->q_norm, lw->k_norm, eps);
          qk_sums.clear();
        } else if (what == "qk_norm" && !lw->q_norm.empty()) {
          // Qwen3: each q head's and k head's head_dim values RMS-normed on their own (q_norm,
          // k_norm), in place, before RoPE.
          for (I r = 0; r < T; ++r) {
            const std::span<float> q = std::span<float>(qkv).subspan(z(r * qkv_width), z(nq * hd));
            const std::span<float> k = std::span<float>(qkv).subspan(z(r * qkv_width + nq * hd), z(nkv * hd));
            rmsnorm(q, nq, hd, lw->q_norm, eps, q);
            rmsnorm(k, nkv, hd, lw->k_norm, eps, k);
          }
        } else unsupported(op);
        break;
      case OpKind::gemm:
        if (what == "lm_head") {
          require_rows(op, S);
          std::vector<float> x(z(S * H));
          for (I s = 0; s < S; ++s) std::copy_n(&normed[z(sampled[z(s)] * H)], H, &x[z(s * H)]);
          logits.assign(z(S * tl_.vocab), 0.0f);  // this rank's vocabulary slice
          matmul(x.data(), S, H, weights_.lm_head.data(), tl_.vocab, logits.data());
          break;
        }
        require_rows(op, T);
        if (what == "qkv_proj") linear(normed, T, lw->qkv_proj, qkv, nvfp4_inputs_);
        else if (what == "o_proj") linear(attn, T, lw->o_proj, branch, nvfp4_inputs_);
        else if (what == "gate_up_proj") linear(normed, T, lw->gate_up_proj, gate_up, nvfp4_inputs_);
        else if (what == "down_proj") linear(act, T, lw->down_proj, branch, nvfp4_inputs_);
        else if (what == "router") {
          router_logits.assign(z(T * m.moe.experts), 0.0f);
          matmul(normed.data(), T, H, lw->router.data(), m.moe.experts, router_logits.data());
        } else unsupported(op);
        break;
      case OpKind::rope: {
        // Rotate-half RoPE on q and k heads: (x_i, x_{i+d/2}) by angle pos x theta^(-2i/d), d the
        // rotary dims (partial RoPE: the rest of each head passes).
        require_rows(op, T);
        std::vector<std::int64_t> positions(z(T));
        for (I r = 0; r < T; ++r) positions[z(r)] = rows[z(r)].position;
        rope_rotate_half(qkv, T, qkv_width, nq + nkv, hd, positions, m.rope_theta, m.rope_dim());
        break;
      }
      case OpKind::attention_prefill: {
        require_rows(op, batch.prefill_tokens());
        attn.resize(z(T * nq * hd), 0.0f);
        I r0 = 0;
        for (const PrefillChunk& chunk : batch.prefill) {
          append_kv(r0, r0 + chunk.tokens, l);
          // Causal: the chunk's token i sees the cached tokens and chunk tokens 0..i.
          for (I i = 0; i < chunk.tokens; ++i) attend(r0 + i, l, chunk.cached + i + 1);
          r0 += chunk.tokens;
        }
        break;
      }
      case OpKind::attention_decode: {
        const I first = batch.prefill_tokens();
        require_rows(op, T - first);
        attn.resize(z(T * nq * hd), 0.0f);
        for (I r = first; r < T; ++r) {
          append_kv(r, r + 1, l);
          attend(r, l, rows[z(r)].position + 1);
        }
        break;
      }
      case OpKind::swiglu: {
        const bool moe = what == "experts.swiglu";
        if (!moe && what != "swiglu") unsupported(op);
        const std::vector<float>& in = moe ? act : gate_up;  // MoE: the expert GEMM left its rows in act
        const I n = tl_.ffn, count = moe ? static_cast<I>(assignments.size()) : T;
        require_rows(op, count);
        std::vector<float> y(z(count * n));
        swiglu(in, count, n, y);
        act = std::move(y);
        break;
      }
      case OpKind::residual_add:
        require_rows(op, T);
        residual_add(hidden, branch);
        break;
      case OpKind::moe_router_topk: {
        // Mixtral: the top-k router logits, softmaxed over those k (ties: lower expert id);
        // MiniMax-M2: the biased sigmoid top-k.
        require_rows(op, T);
        assignments.clear();
        const int E = m.moe.experts;
        for (I r = 0; r < T; ++r) {
          const auto lg = std::span<const float>(router_logits).subspan(z(r * E), z(E));
          for (const ExpertWeight& e : m.moe_sigmoid_routing() ? moe_top_k_sigmoid(lg, lw->router_bias, topk) : moe_top_k(lg, topk))
            assignments.push_back({r, e.expert, e.weight});
        }
        break;
      }
      case OpKind::moe_gemm: {
        const I count = static_cast<I>(assignments.size());
        require_rows(op, count);
        // One row per assignment through its expert's linear (with NVFP4 inputs when they are on:
        // the static quantizer works row by row, so a row alone quantizes as in a batch).
        std::vector<float> x_row, y_row;
        if (what == "experts.gate_up_proj") {
          act.assign(z(count * 2 * tl_.ffn), 0.0f);
          for (I a = 0; a < count; ++a) {
            const LinearWeight& w = lw->expert_gate_up[z(assignments[z(a)].expert)];
            x_row.assign(normed.begin() + static_cast<std::ptrdiff_t>(assignments[z(a)].row * H),
                         normed.begin() + static_cast<std::ptrdiff_t>((assignments[z(a)].row + 1) * H));
            linear(x_row, 1, w, y_row, nvfp4_inputs_);
            std::copy(y_row.begin(), y_row.end(), act.begin() + static_cast<std::ptrdiff_t>(a * w.out));
          }
        } else if (what == "experts.down_proj") {
          // One output row per assignment, in assignment order; experts.finalize sums them.
          expert_out.assign(z(count * H), 0.0f);
          for (I a = 0; a < count; ++a) {
            const LinearWeight& w = lw->expert_down[z(assignments[z(a)].expert)];
            x_row.assign(act.begin() + static_cast<std::ptrdiff_t>(a * tl_.ffn), act.begin() + static_cast<std::ptrdiff_t>((a + 1) * tl_.ffn));
            linear(x_row, 1, w, y_row, nvfp4_inputs_);
            std::copy(y_row.begin(), y_row.end(), expert_out.begin() + static_cast<std::ptrdiff_t>(a * H));
          }
        } else unsupported(op);
        break;
      }
      case OpKind::moe_permute:
        // The expert GEMMs read each assignment's token row by index (assignments), so the
        // gather into expert order is implicit here: nothing to compute.
        if (what != "experts.permute") unsupported(op);
        require_rows(op, static_cast<I>(assignments.size()));
        break;
      case OpKind::moe_finalize: {
        // A token's expert rows, each scaled by its routing weight, summed (in assignment order).
        if (what != "experts.finalize") unsupported(op);
        const I count = static_cast<I>(assignments.size());
        require_rows(op, count);
        branch.assign(z(T * H), 0.0f);
        for (I a = 0; a < count; ++a) {
          const Assignment& as = assignments[z(a)];
          for (I i = 0; i < H; ++i) branch[z(as.row * H + i)] += as.weight * expert_out[z(a * H + i)];
        }
        break;
      }
      case OpKind::all_reduce:
        if (!tp_ || op.participants != tp) unsupported(op);
        if (what == "qk_norm_all_reduce" && m.qk_norm_per_layer()) {
          // MiniMax-M2 under TP: each rank's sums of squares of its q and k heads, summed over the
          // ranks (2 FP32 values per row; the graph's 8 bytes x T).
          qk_sums.assign(z(2 * T), 0.0f);
          qk_sum_squares(qkv, T, qkv_width, nq * hd, kv_width, qk_sums);
          tp_->all_reduce_sum(qk_sums);
          break;
        }
        // Row-parallel o_proj / down_proj: the ranks' partial outputs summed.
        if (what != "attn_all_reduce" && what != "mlp_all_reduce" && what != "moe_all_reduce") unsupported(op);
        tp_->all_reduce_sum(std::span<float>(branch).first(z(T * H)));
        break;
      case OpKind::all_gather: {
        // The ranks' vocabulary slices [S x vocab/tp] into whole rows [S x vocab].
        if (what != "logits_all_gather" || !tp_ || op.participants != tp) unsupported(op);
        std::vector<float> all(z(S * tl_.vocab * tp));
        tp_->all_gather(logits, all);
        logits.assign(z(S * m.vocab), 0.0f);
        for (int r = 0; r < tp; ++r)
          for (I s = 0; s < S; ++s)
            std::copy_n(&all[z((I{r} * S + s) * tl_.vocab)], tl_.vocab, &logits[z(s * m.vocab + I{r} * tl_.vocab)]);
        break;
      }
      case OpKind::sampling:
        require_rows(op, S);
        for (I s = 0; s < S; ++s) {
          const float* lg = &logits[z(s * m.vocab)];
          out.sequences.push_back(rows[z(sampled[z(s)])].sequence);
          out.logits.emplace_back(lg, lg + m.vocab);
          out.next_tokens.push_back(argmax_token(std::span<const float>(lg, z(m.vocab))));
        }
        break;
      default:
        unsupported(op);
    }
    if (observer) observer(op, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  return out;
}

}  // namespace racksim::exec
