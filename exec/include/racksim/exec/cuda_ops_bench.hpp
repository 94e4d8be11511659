#pragma once
/// Benchmarks of the CUDA step ops (cuda_ops.hpp) on one CUDA device: decode attention over (batch,
/// context, KV format), prefill attention over sequence length, and the elementwise ops over
/// (rows, width), as measurement records (common/measurement.hpp) keyed like the step graph's
/// ops. The cases and records are plain C++ (unit tested); the timing runs on CUDA and, like
/// cuda_bench.hpp, throws InfeasibleError without the CUDA backend or a device
/// (backend_registry.cpp routes it).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "racksim/common/dtype.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/cuda_bench.hpp"

namespace racksim::exec {

/// Attention shape of a case. Default: Llama-2-70B on one GPU (64 query heads, 8 KV heads,
/// head_dim 128: workloads/data/models/llama2-70b.yaml) with 32-token cache blocks.
struct AttentionGeometry {
  std::int64_t heads = 64;
  std::int64_t kv_heads = 8;
  std::int64_t head_dim = 128;
  std::int64_t block_tokens = 32;
};

/// `batch` sequences with `context` cached tokens each, decoding one token: it attends to
/// context + 1 keys (the step graph's decode at that context). KV cache `kv`: bf16 or fp8.
struct AttentionDecodeCase {
  std::int64_t batch = 1;
  std::int64_t context = 0;
  DType kv = DType::bf16;
  AttentionGeometry geometry;
};

/// `batch` prompts of `seq_len` tokens each, no cached tokens: one causal prefill chunk each.
struct AttentionPrefillCase {
  std::int64_t seq_len = 0;
  std::int64_t batch = 1;
  DType kv = DType::bf16;
  AttentionGeometry geometry;
};

/// An elementwise op over `rows` rows of `width`, spelled as the step graph's op (m = rows, n =
/// width): kind one of rmsnorm (width = hidden), residual_add (hidden), rope (width = (heads +
/// kv_heads) x head_dim, the rotated columns; head_dim 128), swiglu (width = ffn, the output),
/// embedding (hidden; a 32,000-row table, Llama-2's vocabulary), sampling (width = vocab, FP32 logits);
/// or a MoE routing op of a model with `experts` experts, `top_k` per token: moe_router_topk (rows
/// = tokens, width = experts, FP32 logits), moe_permute and moe_finalize (rows = assignments =
/// tokens x top_k, width = hidden), as the step graph's moe_block spells them.
struct ElementwiseCase {
  std::string kind;
  std::int64_t rows = 0;
  std::int64_t width = 0;
  int experts = 0;  ///< MoE kinds only
  int top_k = 0;    ///< MoE kinds only
  /// moe_router_topk only: MiniMax-M2's routing (sigmoid scores plus a per-expert FP32 bias, read
  /// once per token) instead of Mixtral's softmax over the top-k logits.
  bool sigmoid = false;
};

/// The record of a timed decode case: kind attention_decode, m = batch query tokens, n = heads,
/// k = head_dim, a = bf16, w = the KV format, sequences = batch, pairs = batch x (context + 1);
/// flops 4 x heads x head_dim x pairs (QK^T and PV); bytes_moved = K and V of every attended key
/// plus q and the output. InputError for a bad case.
[[nodiscard]] MeasurementRecord attention_decode_record(const AttentionDecodeCase& c, const TimingStats& t);
/// The record of a timed prefill case: kind attention_prefill, m = batch x seq_len, pairs =
/// batch x seq_len (seq_len + 1) / 2 (causal); flops as decode; bytes_moved = K and V of every
/// token once plus q and the output (the minimum: the kernel re-reads K/V per query tile from L2).
[[nodiscard]] MeasurementRecord attention_prefill_record(const AttentionPrefillCase& c, const TimingStats& t);
/// The record of a timed elementwise case: FLOPs per element as the step graph counts them
/// (rmsnorm 4, rope 3, swiglu 4, residual_add 1, embedding 0, sampling 2), bytes_moved what the
/// kernel reads and writes. InputError for an unknown kind (naming the valid ones) or shape.
[[nodiscard]] MeasurementRecord elementwise_record(const ElementwiseCase& c, const TimingStats& t);

/// A default decode sweep: batch 1, 8, 64, 256 x context 128, 1024, 4096 x the given KV formats.
[[nodiscard]] std::vector<AttentionDecodeCase> default_attention_decode_cases(std::span<const DType> kv_formats);
/// A default prefill sweep: seq_len 128, 512, 1024, 2048, 4096 (batch 1) x the given KV formats.
[[nodiscard]] std::vector<AttentionPrefillCase> default_attention_prefill_cases(std::span<const DType> kv_formats);
/// A default elementwise sweep for Llama-2-70B on one GPU (hidden 8192, ffn 28672, vocab 32000,
/// 64 + 8 rotated heads of 128): every kind at rows 1, 16, 256, 4096 (sampling: 1, 16, 256); then
/// the MoE routing ops of Mixtral-8x7B (8 experts, top-2) and Qwen3-235B-A22B (128, top-8), both
/// hidden 4096, at 1, 16, 256, 4096 tokens.
[[nodiscard]] std::vector<ElementwiseCase> default_elementwise_cases();

/// Times each case on CUDA device `device`, made current (BenchTiming's warm-up, repetitions and
/// L2 flush; random inputs; block tables a seeded permutation of the cache's blocks).
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_attention_decode(std::span<const AttentionDecodeCase> cases,
                                                                         const BenchTiming& timing, const RecordSink& done, int device = 0);
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_attention_prefill(std::span<const AttentionPrefillCase> cases,
                                                                          const BenchTiming& timing, const RecordSink& done,
                                                                          int device = 0);
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_elementwise(std::span<const ElementwiseCase> cases, const BenchTiming& timing,
                                                                    const RecordSink& done, int device = 0);

}  // namespace racksim::exec
