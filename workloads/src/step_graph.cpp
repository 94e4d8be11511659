#include "racksim/workloads/step_graph.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <numeric>

#include <boost/graph/topological_sort.hpp>
#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim {

std::int64_t StepBatch::prefill_tokens() const noexcept {
  std::int64_t t = 0;
  for (const auto& c : prefill) t += c.tokens;
  return t;
}

std::int64_t StepBatch::sampled_sequences() const noexcept {
  std::int64_t s = static_cast<std::int64_t>(decode_contexts.size());
  for (const auto& c : prefill) s += c.last ? 1 : 0;
  return s;
}

StepBatch StepBatch::decode(std::int64_t batch, std::int64_t context) {
  StepBatch b;
  b.decode_contexts.assign(static_cast<std::size_t>(batch), context);
  return b;
}

StepBatch StepBatch::prefill_only(std::int64_t batch, std::int64_t tokens, std::int64_t cached) {
  StepBatch b;
  b.prefill.assign(static_cast<std::size_t>(batch), PrefillChunk{tokens, cached, true});
  return b;
}

BatchShape BatchShape::of(const StepBatch& b) {
  BatchShape s;
  for (const auto& c : b.prefill) {
    const double q = static_cast<double>(c.tokens), cached = static_cast<double>(c.cached);
    s.prefill_tokens += c.tokens;
    s.prefill_seqs += 1;
    // Causal: query i of the chunk (0-based) sees the cached tokens and chunk tokens 0..i.
    s.prefill_pairs += q * cached + q * (q + 1) / 2.0;
    s.prefill_cached += cached;
  }
  for (std::int64_t c : b.decode_contexts) {
    s.decode_seqs += 1;
    s.decode_pairs += static_cast<double>(c + 1);  // the new token attends to its c cached tokens and itself
    s.decode_cached += static_cast<double>(c);
  }
  s.sampled = b.sampled_sequences();
  return s;
}

StepWork step_work(const StepGraph& graph) {
  StepWork w;
  for (std::size_t v = 0; v < graph.size(); ++v) {
    const Op& op = graph.op(v);
    if (is_communication(op.kind)) continue;
    w.flops += op.flops;
    w.bytes += op.bytes();
  }
  return w;
}

std::vector<int> layers_per_stage(int layers, int stages) {
  std::vector<int> out(static_cast<std::size_t>(stages), layers / stages);
  for (int i = 0; i < layers % stages; ++i) ++out[static_cast<std::size_t>(i)];
  return out;
}

namespace {

using Vertex = OpGraph::vertex_descriptor;
using I = std::int64_t;

double d(I v) { return static_cast<double>(v); }

/// Builds the per-GPU op chain of one step. Elementwise FLOP counts (documented in
/// docs/models.md): RMSNorm 4 per element (square, accumulate, scale, weight), residual 1,
/// SwiGLU 4 plus one exponential (sigmoid), RoPE 3 per rotated element (2 multiplies, 1 add).
class Builder {
 public:
  Builder(const ModelConfig& m, const BatchShape& b, const Deployment& dep, const Precision& p, OpGraph& g)
      : m_(m), b_(b), dep_(dep), p_(p), g_(g) {
    tp_ = dep.tensor_parallel;
    T_ = b.tokens();
    heads_ = m.heads / tp_;
    // With more GPUs than KV heads, each GPU keeps one KV head (replicated), as TRT-LLM does.
    kv_heads_ = std::max(1, m.kv_heads / tp_);
    act_ = p.activations;
    in_fmt_ = p.gemm_input_format();
  }

  void build() {
    const auto stage_layers = layers_per_stage(m_.layers, dep_.pipeline_parallel);
    int layer = 0;
    for (int s = 0; s < dep_.pipeline_parallel; ++s) {
      stage_ = s;
      if (s == 0) embedding();
      else send_recv(fmt::format("stage{}.recv", s));
      for (int i = 0; i < stage_layers[static_cast<std::size_t>(s)]; ++i) transformer_layer(layer++);
      if (s + 1 == dep_.pipeline_parallel) head();
    }
  }

 private:
  Vertex add(Op op, std::initializer_list<Vertex> deps) {
    op.stage = stage_;
    Vertex v = boost::add_vertex(std::move(op), g_);
    for (Vertex u : deps) boost::add_edge(u, v, g_);
    return v;
  }

  /// Bytes of `count` activation values in format `t`.
  static double act_bytes(DType t, double count) { return storage_bytes(t, count); }

  Op gemm(std::string name, int layer, I m, I n, I k, DType a, DType w, DType c, std::string weight) {
    Op op;
    op.name = std::move(name);
    op.kind = OpKind::gemm;
    op.layer = layer;
    op.m = m;
    op.n = n;
    op.k = k;
    op.in_dtype = a;
    op.weight_dtype = w;
    op.out_dtype = c;
    op.weight = std::move(weight);
    // Every GEMM input in this graph is written in its GEMM's format by its producer, unless the
    // scenario says the quantize runs as kernels of its own (precision.activation_quantize), or
    // the format is fp8_block (Precision::gemm_input_prequantized).
    op.input_prequantized = a == p_.activations && p_.gemm_input_prequantized();
    op.flops = 2.0 * d(m) * d(n) * d(k);
    op.weight_bytes = weight_storage_bytes(w, d(n) * d(k));
    op.act_bytes_read = act_bytes(a, d(m) * d(k));
    op.bytes_written = act_bytes(c, d(m) * d(n));
    return op;
  }

  Op elementwise(std::string name, OpKind kind, int layer, I rows, I width, DType in, DType out, double flops_per_elem,
                 double reads_per_elem) {
    Op op;
    op.name = std::move(name);
    op.kind = kind;
    op.layer = layer;
    op.m = rows;
    op.n = width;
    op.in_dtype = in;
    op.weight_dtype = in;
    op.out_dtype = out;
    const double elems = d(rows) * d(width);
    op.flops = flops_per_elem * elems;
    op.act_bytes_read = reads_per_elem * act_bytes(in, elems);
    op.bytes_written = act_bytes(out, elems);
    return op;
  }

  Op collective(std::string name, OpKind kind, int layer, double bytes, int ranks) {
    Op op;
    op.name = std::move(name);
    op.kind = kind;
    op.layer = layer;
    op.comm_bytes = bytes;
    op.participants = ranks;
    return op;
  }

  void embedding() {
    // Gathers T rows of the BF16 table (embedding stays BF16: see ParamCounts).
    Op op = elementwise("embedding", OpKind::embedding, -1, T_, m_.hidden, DType::bf16, DType::bf16, 0, 1);
    op.weight = "embed_tokens";
    op.weight_bytes = op.act_bytes_read;  // the rows read are weights
    op.act_bytes_read = 4.0 * d(T_);      // int32 token ids
    hidden_ = add(std::move(op), {});
  }

  void send_recv(std::string name) {
    // BF16 hidden states of every token cross the stage boundary.
    Op op = collective(std::move(name), OpKind::send_recv, -1, act_bytes(DType::bf16, d(T_) * m_.hidden), 2);
    hidden_ = add(std::move(op), {hidden_});
  }

  void all_reduce(std::string name, int layer, Vertex& v) {
    if (tp_ == 1) return;
    v = add(collective(std::move(name), OpKind::all_reduce, layer, act_bytes(DType::bf16, d(T_) * m_.hidden), tp_), {v});
  }

  void transformer_layer(int l) {
    const std::string pre = fmt::format("layers.{}.", l);
    const I hd = m_.head_dim;
    // Attention block.
    Vertex norm = add(elementwise(pre + "input_norm", OpKind::rmsnorm, l, T_, m_.hidden, DType::bf16, in_fmt_, 4, 1), {hidden_});
    const I qkv_n = (heads_ + 2 * kv_heads_) * hd;
    Vertex qkv = add(gemm(pre + "qkv_proj", l, T_, qkv_n, m_.hidden, act_, p_.weights, DType::bf16, pre + "qkv_proj"), {norm});
    // Qwen3: q and k RMS-normalised per head (one kernel over the rank's q and k heads).
    // MiniMax-M2: over all heads of the layer at once, so under TP the ranks first sum their
    // shares of each token's q and k sums of squares: an all-reduce of 2 FP32 values per token
    // (vLLM's MiniMaxText01RMSNormTP all-reduces the variance; SGLang's likewise).
    Vertex pre_rope = qkv;
    if (m_.qk_norm_per_layer() && tp_ > 1)
      pre_rope = add(collective(pre + "qk_norm_all_reduce", OpKind::all_reduce, l, 8.0 * d(T_), tp_), {pre_rope});
    if (m_.qk_norm())
      pre_rope = add(elementwise(pre + "qk_norm", OpKind::rmsnorm, l, T_, (heads_ + kv_heads_) * hd, DType::bf16, DType::bf16, 4, 1), {pre_rope});
    // RoPE rotates rotary_dim of each q and k head of every token (all of it but for partial RoPE).
    Vertex rope = add(elementwise(pre + "rope", OpKind::rope, l, T_, (heads_ + kv_heads_) * m_.rope_dim(), DType::bf16, DType::bf16, 3, 1), {pre_rope});
    Vertex attn = rope;
    if (b_.prefill_seqs > 0) {
      Op a = make_attention_prefill(m_, dep_, p_, b_, l);
      a.name = pre + "attention_prefill";
      attn = add(std::move(a), {attn});
    }
    if (b_.decode_seqs > 0) {
      Op a = make_attention_decode(m_, dep_, p_, b_, l);
      a.name = pre + "attention_decode";
      attn = add(std::move(a), {attn});
    }
    Vertex o = add(gemm(pre + "o_proj", l, T_, m_.hidden, heads_ * hd, act_, p_.weights, DType::bf16, pre + "o_proj"), {attn});
    all_reduce(pre + "attn_all_reduce", l, o);
    Vertex res1 = add(elementwise(pre + "attn_residual", OpKind::residual_add, l, T_, m_.hidden, DType::bf16, DType::bf16, 1, 2), {o, hidden_});
    // MLP block.
    // A MoE block's input stays BF16: the router reads it in BF16 and the permute quantizes.
    const DType norm2_out = m_.is_moe() ? DType::bf16 : in_fmt_;
    Vertex norm2 = add(elementwise(pre + "post_attn_norm", OpKind::rmsnorm, l, T_, m_.hidden, DType::bf16, norm2_out, 4, 1), {res1});
    Vertex mlp_out = m_.is_moe() ? moe_block(pre, l, norm2) : dense_mlp(pre, l, norm2);
    hidden_ = add(elementwise(pre + "mlp_residual", OpKind::residual_add, l, T_, m_.hidden, DType::bf16, DType::bf16, 1, 2), {mlp_out, res1});
  }

  Vertex dense_mlp(const std::string& pre, int l, Vertex in) {
    const I f = m_.ffn / tp_;
    Vertex gu = add(gemm(pre + "gate_up_proj", l, T_, 2 * f, m_.hidden, act_, p_.weights, DType::bf16, pre + "gate_up_proj"), {in});
    Op act = elementwise(pre + "swiglu", OpKind::swiglu, l, T_, f, DType::bf16, in_fmt_, 4, 2);
    act.exp_ops = d(T_) * d(f);
    Vertex sw = add(std::move(act), {gu});
    Vertex down = add(gemm(pre + "down_proj", l, T_, m_.hidden, f, act_, p_.weights, DType::bf16, pre + "down_proj"), {sw});
    all_reduce(pre + "mlp_all_reduce", l, down);
    return down;
  }

  Vertex moe_block(const std::string& pre, int l, Vertex in) {
    const int E = m_.moe.experts, k = m_.moe.experts_per_token, ep = dep_.expert_parallel;
    const int moe_tp = tp_ / ep;
    const I f = m_.ffn / moe_tp;
    const int local_experts = E / ep;
    // Router: BF16 GEMM to E logits (not quantized), then softmax + top-k.
    Vertex router = add(gemm(pre + "router", l, T_, E, m_.hidden, DType::bf16, DType::bf16, DType::fp32, pre + "router"), {in});
    Op topk = elementwise(pre + "router_topk", OpKind::moe_router_topk, l, T_, E, DType::fp32, DType::fp32, 4, 1);
    topk.exp_ops = d(T_) * E;
    Vertex sel = add(std::move(topk), {router});
    // Uniform routing assumption: each of the T*k assignments picks an expert uniformly, so this
    // GPU serves T*k*local/E rows, and an expert is touched with probability 1-(1-1/E)^(T*k).
    const double assignments = d(T_) * k;
    const I rows = static_cast<I>(std::ceil(assignments * local_experts / E));
    const double touched = local_experts * (1.0 - std::pow(1.0 - 1.0 / E, assignments));
    // Attention is tensor-parallel (racksim has no attention data parallelism), so after the
    // attention all-reduce every GPU of the replica holds every token: dispatch to the local
    // experts is local, and the experts' partial outputs are summed by the all-reduce below.
    // No all-to-all: TensorRT-LLM enables one only with attention DP (fused_moe's
    // enable_alltoall needs mapping.enable_attention_dp), as do vLLM and SGLang.
    // The engines then gather each token's rows into expert order: TensorRT-LLM's fused MoE
    // builds its expert maps and runs expandInputRowsKernel (quantizing on the way when fused),
    // vLLM and SGLang's fused_moe moe_align_block_size; costed as one kernel reading the T x h
    // input and writing rows x h in the format the expert GEMM reads.
    Op permute = elementwise(pre + "experts.permute", OpKind::moe_permute, l, rows, m_.hidden, DType::bf16, in_fmt_, 0, 0);
    permute.act_bytes_read = act_bytes(DType::bf16, d(T_) * m_.hidden) + 4.0 * assignments;  // input rows; expert ids
    Vertex x = add(std::move(permute), {sel, in});
    auto expert_gemm = [&](std::string name, I n, I kk) {
      Op op = gemm(pre + name, l, rows, n, kk, act_, p_.weights, DType::bf16, pre + name);
      op.kind = OpKind::moe_gemm;
      op.weight_bytes = touched * weight_storage_bytes(p_.weights, d(n) * d(kk));
      return op;
    };
    Vertex gu = add(expert_gemm("experts.gate_up_proj", 2 * f, m_.hidden), {x});
    Op act = elementwise(pre + "experts.swiglu", OpKind::swiglu, l, rows, f, DType::bf16, in_fmt_, 4, 2);
    act.exp_ops = d(rows) * d(f);
    Vertex sw = add(std::move(act), {gu});
    Vertex down = add(expert_gemm("experts.down_proj", m_.hidden, f), {sw});
    // ...and back: each expert row scaled by its routing weight and a token's rows summed
    // (TensorRT-LLM's finalizeMoeRoutingKernel, vLLM's moe_sum): reads rows x h BF16 and the
    // weights, writes T x h BF16, 2 FLOPs per row element.
    Op finalize = elementwise(pre + "experts.finalize", OpKind::moe_finalize, l, rows, m_.hidden, DType::bf16, DType::bf16, 2, 1);
    finalize.act_bytes_read += 4.0 * assignments;
    finalize.bytes_written = act_bytes(DType::bf16, d(T_) * m_.hidden);
    down = add(std::move(finalize), {down});
    all_reduce(pre + "moe_all_reduce", l, down);
    return down;
  }

  void head() {
    const I S = b_.sampled;
    Vertex norm = add(elementwise("final_norm", OpKind::rmsnorm, -1, T_, m_.hidden, DType::bf16, DType::bf16, 4, 1), {hidden_});
    if (S == 0) return;  // a step of only non-final prefill chunks samples nothing
    // lm_head stays BF16 (see ParamCounts); column-parallel over TP, FP32 logits.
    const I v = m_.vocab / tp_;
    Vertex lm = add(gemm("lm_head", -1, S, v, m_.hidden, DType::bf16, DType::bf16, DType::fp32, m_.tied_embeddings ? "embed_tokens" : "lm_head"), {norm});
    if (tp_ > 1) lm = add(collective("logits_all_gather", OpKind::all_gather, -1, storage_bytes(DType::fp32, d(S) * m_.vocab), tp_), {lm});
    Op sample = elementwise("sampling", OpKind::sampling, -1, S, m_.vocab, DType::fp32, DType::fp32, 2, 1);
    sample.bytes_written = 4.0 * d(S);  // one int32 token id per sequence
    add(std::move(sample), {lm});
  }

  const ModelConfig& m_;
  const BatchShape& b_;
  const Deployment& dep_;
  const Precision& p_;
  OpGraph& g_;
  int tp_ = 1;
  I T_ = 0;
  I heads_ = 0;
  I kv_heads_ = 0;
  DType act_ = DType::bf16;     ///< GEMM compute format (precision.activations)
  DType in_fmt_ = DType::bf16;  ///< what GEMM-input producers write (Precision::gemm_input_format)
  int stage_ = 0;
  Vertex hidden_{};
};

}  // namespace

bool Precision::gemm_input_prequantized() const noexcept {
  // TensorRT-LLM's FP8BlockScalesLinearMethod calls fp8_quantize_1x128 before
  // fp8_block_scaling_gemm, vLLM per_token_group_quant_fp8; the measured fp8_block calls include it.
  return element_bits(activations) < 16 && fused_quantize && activations != DType::fp8_block;
}

namespace {
/// K and V bytes of one token on one GPU: its KV heads (one replicated head when tp > kv_heads).
double kv_token_bytes(const ModelConfig& m, const Deployment& dep, const Precision& p) {
  const I kv_heads = std::max(1, m.kv_heads / dep.tensor_parallel);
  return storage_bytes(p.kv_cache, 2.0 * d(kv_heads * m.head_dim));
}

/// One layer's attention op over `seqs` sequences with `q_tokens` query tokens, `pairs` (query,
/// key) pairs and `cached` KV tokens read: prefill and decode differ only in these sums.
Op attention_op(const ModelConfig& m, const Deployment& dep, const Precision& p, OpKind kind, I q_tokens, I seqs, double pairs,
                double cached, int layer) {
  Op op;
  op.kind = kind;
  op.layer = layer;
  op.in_dtype = DType::bf16;
  op.weight_dtype = p.kv_cache;
  op.out_dtype = p.gemm_input_format();  // o_proj's input
  const I heads = m.heads / dep.tensor_parallel, hd = m.head_dim, kv_heads = std::max(1, m.kv_heads / dep.tensor_parallel);
  op.m = q_tokens;
  op.n = heads;
  op.k = hd;
  op.sequences = seqs;
  op.attended_pairs = pairs;
  op.flops = 4.0 * d(heads) * d(hd) * pairs;  // QK^T and PV: 2*hd each per (query, key, head)
  op.exp_ops = d(heads) * pairs;
  const double kv_token = kv_token_bytes(m, dep, p);
  op.kv_bytes_read = cached * kv_token;
  op.act_bytes_read = storage_bytes(DType::bf16, d(q_tokens) * d((heads + 2 * kv_heads) * hd));  // q, new k and v
  op.bytes_written = d(q_tokens) * kv_token + storage_bytes(op.out_dtype, d(q_tokens) * d(heads * hd));  // KV cache + output
  return op;
}
}  // namespace

Op make_attention_prefill(const ModelConfig& m, const Deployment& dep, const Precision& p, const BatchShape& b, int layer) {
  return attention_op(m, dep, p, OpKind::attention_prefill, b.prefill_tokens, b.prefill_seqs, b.prefill_pairs, b.prefill_cached, layer);
}

Op make_attention_decode(const ModelConfig& m, const Deployment& dep, const Precision& p, const BatchShape& b, int layer) {
  return attention_op(m, dep, p, OpKind::attention_decode, b.decode_seqs, b.decode_seqs, b.decode_pairs, b.decode_cached, layer);
}

StepGraph::StepGraph(ModelConfig model, StepBatch batch, Deployment deployment, Precision precision)
    : model_(std::move(model)), batch_(std::move(batch)), deployment_(deployment), precision_(precision) {
  const auto& m = model_;
  const int tp = deployment_.tensor_parallel;
  RACKSIM_ASSERT(tp >= 1 && deployment_.pipeline_parallel >= 1 && deployment_.expert_parallel >= 1, "parallel sizes >= 1");
  RACKSIM_ASSERT(m.heads % tp == 0, fmt::format("tensor_parallel {} must divide heads {}", tp, m.heads));
  RACKSIM_ASSERT(m.ffn % tp == 0, fmt::format("tensor_parallel {} must divide ffn {}", tp, m.ffn));
  RACKSIM_ASSERT(deployment_.pipeline_parallel <= m.layers, "pipeline_parallel <= layers");
  RACKSIM_ASSERT(batch_.tokens() > 0, "a step processes at least one token");
  shape_ = BatchShape::of(batch_);
  Builder(model_, shape_, deployment_, precision_, graph_).build();
}

StepGraph::StepGraph(ModelConfig model, const BatchShape& shape, Deployment deployment, Precision precision)
    : model_(std::move(model)), shape_(shape), deployment_(deployment), precision_(precision) {
  RACKSIM_ASSERT(shape_.tokens() > 0, "a step processes at least one token");
  RACKSIM_ASSERT(model_.heads % deployment_.tensor_parallel == 0 && deployment_.pipeline_parallel <= model_.layers,
                 "deployment must fit the model");
  Builder(model_, shape_, deployment_, precision_, graph_).build();
}

std::vector<std::size_t> StepGraph::topological_order() const {
  std::vector<std::size_t> rev;
  rev.reserve(size());
  boost::topological_sort(graph_, std::back_inserter(rev));
  return {rev.rbegin(), rev.rend()};
}

}  // namespace racksim
