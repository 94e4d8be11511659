#include "racksim/exec/cuda_ops_bench.hpp"

#include <algorithm>
#include <array>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim::exec {

namespace {

using I = std::int64_t;

double d(I v) { return static_cast<double>(v); }

void check_geometry(std::string_view what, const AttentionGeometry& g, DType kv) {
  if (g.heads < 1 || g.kv_heads < 1 || g.heads % g.kv_heads != 0 || g.head_dim < 1 || g.block_tokens < 1 ||
      (kv != DType::bf16 && kv != DType::fp8))
    throw InputError(fmt::format("{}: {} heads, {} kv heads, head_dim {}, {}-token blocks, kv {}: need kv heads dividing heads and "
                                 "a bf16 or fp8 cache",
                                 what, g.heads, g.kv_heads, g.head_dim, g.block_tokens, to_string(kv)));
}

/// An attention record: identity as Op::identity spells it, FLOPs 4 x heads x head_dim x pairs
/// (workloads/src/step_graph.cpp attention_op), bytes K/V of `kv_tokens` plus q and the output.
MeasurementRecord attention_record(std::string kind, I q_tokens, I seqs, double pairs, double kv_tokens, DType kv,
                                   const AttentionGeometry& g, const TimingStats& t) {
  MeasuredOp op;
  op.kind = std::move(kind);
  op.m = q_tokens;
  op.n = g.heads;
  op.k = g.head_dim;
  op.a_dtype = "bf16";
  op.w_dtype = std::string(to_string(kv));
  op.c_dtype = "bf16";
  op.sequences = seqs;
  op.pairs = pairs;
  MeasurementRecord r = timed_record(std::move(op), t);
  r.flops = 4.0 * d(g.heads) * d(g.head_dim) * pairs;
  r.bytes_moved = kv_tokens * storage_bytes(kv, 2.0 * d(g.kv_heads * g.head_dim)) + 2.0 * storage_bytes(DType::bf16, d(q_tokens * g.heads * g.head_dim));
  return r;
}

}  // namespace

MeasurementRecord attention_decode_record(const AttentionDecodeCase& c, const TimingStats& t) {
  check_geometry("attention_decode_record", c.geometry, c.kv);
  if (c.batch < 1 || c.context < 0)
    throw InputError(fmt::format("attention_decode_record: batch {} and context {} must be >= 1 and >= 0", c.batch, c.context));
  const double keys = d(c.batch) * d(c.context + 1);  // the new token attends to its context and itself
  return attention_record("attention_decode", c.batch, c.batch, keys, keys, c.kv, c.geometry, t);
}

MeasurementRecord attention_prefill_record(const AttentionPrefillCase& c, const TimingStats& t) {
  check_geometry("attention_prefill_record", c.geometry, c.kv);
  if (c.batch < 1 || c.seq_len < 1)
    throw InputError(fmt::format("attention_prefill_record: batch {} and seq_len {} must be >= 1", c.batch, c.seq_len));
  const double pairs = d(c.batch) * d(c.seq_len) * d(c.seq_len + 1) / 2.0;  // causal: token i sees i + 1 keys
  return attention_record("attention_prefill", c.batch * c.seq_len, c.batch, pairs, d(c.batch * c.seq_len), c.kv, c.geometry, t);
}

MeasurementRecord elementwise_record(const ElementwiseCase& c, const TimingStats& t) {
  if (c.rows < 1 || c.width < 1)
    throw InputError(fmt::format("elementwise_record: {} rows of width {}: both must be >= 1", c.rows, c.width));
  if (c.sigmoid && c.kind != "moe_router_topk")
    throw InputError(fmt::format("elementwise_record: {} has no sigmoid routing (moe_router_topk only)", c.kind));
  const double elems = d(c.rows) * d(c.width), rows = d(c.rows), width = d(c.width);
  constexpr double kBf16 = 2, kF32 = 4, kId = 4;  // bytes of a BF16 value, an FP32 logit, an int32 id or position
  std::string dtype = "bf16";
  double flops_per = 0, bytes = 0;
  if (c.kind == "rmsnorm") {
    flops_per = 4;
    bytes = 2 * elems * kBf16 + width * kBf16;  // x in, y out, the weight row
  } else if (c.kind == "residual_add") {
    flops_per = 1;
    bytes = 3 * elems * kBf16;  // hidden and branch in, hidden out
  } else if (c.kind == "rope") {
    flops_per = 3;
    bytes = 2 * elems * kBf16 + rows * kId;  // the rotated columns in and out, one position per row
  } else if (c.kind == "swiglu") {
    flops_per = 4;
    bytes = 3 * elems * kBf16;  // gate and up in, the product out
  } else if (c.kind == "embedding") {
    flops_per = 0;
    bytes = 2 * elems * kBf16 + rows * kId;  // table rows in, hidden out, token ids
  } else if (c.kind == "sampling") {
    flops_per = 2;
    dtype = "fp32";
    bytes = elems * kF32 + rows * kId;  // logits in, one id out per row
  } else if (c.kind == "moe_router_topk" || c.kind == "moe_permute" || c.kind == "moe_finalize") {
    const bool topk = c.kind == "moe_router_topk";
    if (c.experts < 1 || c.top_k < 1 || c.top_k > c.experts || (topk && c.width != c.experts) || (!topk && c.rows % c.top_k != 0))
      throw InputError(fmt::format("elementwise_record: {} of {} rows x {} with top-{} of {} experts: need 1 <= top_k <= experts, width = "
                                   "experts (router_topk) or rows a whole number of tokens x top_k (permute, finalize)",
                                   c.kind, c.rows, c.width, c.top_k, c.experts));
    const double k = c.top_k, experts = c.experts;
    if (topk) {
      flops_per = 4;  // the graph's count per logit (softmax or sigmoid)
      dtype = "fp32";
      // The logits in; an expert id and a weight out per assignment; with the sigmoid routing the
      // experts' FP32 bias (every token's warp reads it: from memory once, then from cache).
      bytes = elems * kF32 + rows * k * (kId + kF32) + (c.sigmoid ? experts * kF32 : 0.0);
    } else if (c.kind == "moe_permute") {
      // Per assignment (row): its expert id in, its position, order and source row out, and its
      // token's row gathered (in and out); the experts + 1 offsets and the active experts'
      // min(experts, assignments) slots out.
      bytes = 2 * elems * kBf16 + rows * 4 * kId + (experts + 1 + std::min(experts, rows)) * kId;
    } else {
      flops_per = 2;  // a multiply and an add per expert row element
      // The expert rows in, a position and a weight per row, each token's sum out.
      bytes = elems * kBf16 + rows * (kId + kF32) + rows / k * width * kBf16;
    }
  } else {
    throw InputError(fmt::format("elementwise_record: kind '{}' is not one of rmsnorm, residual_add, rope, swiglu, embedding, sampling, "
                                 "moe_router_topk, moe_permute, moe_finalize",
                                 c.kind));
  }
  MeasuredOp op;
  op.kind = c.kind;
  op.m = c.rows;
  op.n = c.width;
  op.a_dtype = op.w_dtype = op.c_dtype = dtype;  // the step graph's elementwise(): in, in, out
  MeasurementRecord r = timed_record(std::move(op), t);
  r.flops = flops_per * elems;
  r.bytes_moved = bytes;
  return r;
}

std::vector<AttentionDecodeCase> default_attention_decode_cases(std::span<const DType> kv_formats) {
  std::vector<AttentionDecodeCase> out;
  for (DType kv : kv_formats)
    for (I batch : {1, 8, 64, 256})
      for (I context : {128, 1024, 4096}) out.push_back({batch, context, kv, {}});
  return out;
}

std::vector<AttentionPrefillCase> default_attention_prefill_cases(std::span<const DType> kv_formats) {
  std::vector<AttentionPrefillCase> out;
  for (DType kv : kv_formats)
    for (I len : {128, 512, 1024, 2048, 4096}) out.push_back({len, 1, kv, {}});
  return out;
}

std::vector<ElementwiseCase> default_elementwise_cases() {
  // Llama-2-70B (workloads/data/models/llama2-70b.yaml): hidden 8192, ffn 28672, vocab 32000,
  // 64 query + 8 KV heads of 128 rotated.
  constexpr I kHidden = 8192, kFfn = 28672, kVocab = 32000, kRotated = (64 + 8) * 128;
  const std::array<std::pair<const char*, I>, 6> kinds = {{{"rmsnorm", kHidden},
                                                            {"residual_add", kHidden},
                                                            {"rope", kRotated},
                                                            {"swiglu", kFfn},
                                                            {"embedding", kHidden},
                                                            {"sampling", kVocab}}};
  std::vector<ElementwiseCase> out;
  for (const auto& [kind, width] : kinds)
    for (I rows : {1, 16, 256, 4096})
      if (std::string_view(kind) != "sampling" || rows <= 256) out.push_back({kind, rows, width});
  // MoE routing: Mixtral-8x7B (workloads/data/models/mixtral-8x7b.yaml: 8 experts, top-2) and
  // Qwen3-235B-A22B (qwen3-235b-a22b.yaml: 128, top-8), both hidden 4096; MiniMax-M2.5
  // (minimax-m2.5.yaml: 256, top-8, hidden 3072, the biased sigmoid routing).
  struct Moe {
    int experts, k;
    I hidden;
    bool sigmoid;
  };
  for (const Moe& e : {Moe{8, 2, 4096, false}, Moe{128, 8, 4096, false}, Moe{256, 8, 3072, true}})
    for (I tokens : {1, 16, 256, 4096}) {
      out.push_back({"moe_router_topk", tokens, e.experts, e.experts, e.k, e.sigmoid});
      out.push_back({"moe_permute", tokens * e.k, e.hidden, e.experts, e.k});
      out.push_back({"moe_finalize", tokens * e.k, e.hidden, e.experts, e.k});
    }
  return out;
}

}  // namespace racksim::exec
