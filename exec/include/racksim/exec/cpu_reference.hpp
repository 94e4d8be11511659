#pragma once
/// The CPU reference backend: executes a StepGraph of a small model in FP32, op by op in the
/// graph's topological order, with seeded weights stored NVFP4- or MXFP4-packed and dequantized
/// for the math, and one KV cache per sequence. Every CUDA op is checked against it.

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "racksim/common/dtype.hpp"
#include "racksim/exec/fp4_matrix.hpp"
#include "racksim/workloads/model.hpp"
#include "racksim/exec/tp_layout.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim::exec {

/// A linear layer's weight [out x in] (y = x W^T, blocks along `in`), packed and dequantized.
struct LinearWeight {
  Fp4Matrix packed;           ///< the stored form (NVFP4 / MXFP4); empty for bf16
  std::vector<float> values;  ///< row-major [out x in] values the math uses (dequantized)
  std::int64_t out = 0;       ///< output features (rows)
  std::int64_t in = 0;        ///< input features (columns, the reduction axis)
};

/// One transformer layer's weights. Linear layers are in the weight format; norms and the MoE
/// router stay BF16 (ModelOpt's default recipe, see ParamCounts).
struct LayerWeights {
  std::vector<float> input_norm;             ///< [hidden]
  std::vector<float> post_attn_norm;         ///< [hidden]
  LinearWeight qkv_proj;                     ///< [(heads + 2 kv_heads) head_dim x hidden]: q, k, v
  LinearWeight o_proj;                       ///< [hidden x heads head_dim]
  std::vector<float> q_norm;                 ///< QK-norm: Qwen3 [head_dim], MiniMax-M2 [heads x head_dim]; BF16 values; else empty
  std::vector<float> k_norm;                 ///< QK-norm: Qwen3 [head_dim], MiniMax-M2 [kv_heads x head_dim]; BF16 values; else empty
  LinearWeight gate_up_proj;                 ///< dense: [2 ffn x hidden], gate rows then up rows
  LinearWeight down_proj;                    ///< dense: [hidden x ffn]
  std::vector<float> router;                 ///< MoE: [experts x hidden], BF16 values
  std::vector<float> router_bias;            ///< MiniMax-M2's e_score_correction_bias: FP32 [experts]; else empty
  std::vector<LinearWeight> expert_gate_up;  ///< MoE: per expert [2 ffn x hidden]
  std::vector<LinearWeight> expert_down;     ///< MoE: per expert [hidden x ffn]
};

/// All weights of a model, generated from a seed.
struct ModelWeights {
  std::vector<float> embed_tokens;  ///< [vocab x hidden], BF16 values
  std::vector<float> lm_head;       ///< [vocab x hidden], BF16 values (a copy of embed_tokens if tied)
  std::vector<float> final_norm;    ///< [hidden]
  std::vector<LayerWeights> layers;
};

/// Generates a model's weights from `seed`: linear layers uniform in +-sqrt(3/in) (unit-variance
/// outputs for unit-variance inputs) quantized to `format` (nvfp4, mxfp4 or bf16), embedding and
/// lm_head uniform in +-1 and +-sqrt(3/hidden), norm weights 1 +- 0.1; BF16-rounded where BF16.
[[nodiscard]] ModelWeights generate_weights(const ModelConfig& model, DType format, std::uint64_t seed);

/// The token ids of a step, in the order of its StepBatch: one entry per prefill chunk and one
/// per decode sequence, each naming the sequence whose KV cache it extends.
struct StepTokens {
  /// A prefill chunk's sequence and its tokens (as many as the chunk's `tokens`).
  struct Chunk {
    std::int64_t sequence = 0;
    std::vector<std::int32_t> tokens;
  };
  /// A decode sequence and its one new token.
  struct Decode {
    std::int64_t sequence = 0;
    std::int32_t token = 0;
  };
  std::vector<Chunk> prefill;   ///< matches StepBatch::prefill
  std::vector<Decode> decode;   ///< matches StepBatch::decode_contexts
};

/// What a step produced for each sampled sequence: last-chunk prefills first, then decodes.
struct StepOutput {
  std::vector<std::int64_t> sequences;       ///< sequence of each sampled row
  std::vector<std::vector<float>> logits;    ///< [vocab] FP32 logits per sampled row
  std::vector<std::int32_t> next_tokens;     ///< greedy choice (lowest id among equal maxima)
};

/// A step's rows in the order every backend uses: each prefill chunk's tokens, then one per
/// decode; and the rows that get logits (prompt-ending chunks' last rows, then the decodes).
struct StepRows {
  struct Row {
    std::int64_t sequence = 0;
    std::int64_t position = 0;  ///< the token's position in its sequence
    std::int32_t token = 0;
  };
  std::vector<Row> rows;
  std::vector<std::int64_t> sampled;  ///< row index of each sampled sequence
  std::vector<std::int64_t> sequences;  ///< every sequence of the step, once, in row order
};

/// Checks `tokens` against `batch` and lays out the rows: counts match, each chunk has its
/// tokens, each chunk's `cached` and each decode's context equal `cached(sequence)`, a sequence
/// appears once, ids are within 0..vocab-1. InputError naming what is wrong otherwise.
[[nodiscard]] StepRows step_rows(const StepBatch& batch, const StepTokens& tokens, std::int64_t vocab,
                                 const std::function<std::int64_t(std::int64_t)>& cached);

/// Executes step graphs of one model on the CPU in FP32 (single GPU: tensor, pipeline and expert
/// parallel 1). Llama conventions: RoPE rotates halves (x_i, x_{i+d/2}) of each head's first
/// d = rotary_dim values with frequencies theta^(-2i/d); GQA maps query head h to KV head
/// h / (heads / kv_heads); MoE routing takes the top-k router logits and softmaxes over them
/// (Mixtral, Qwen3-MoE) or MiniMax-M2's biased sigmoid top-k (moe_top_k_sigmoid); QK-norm per
/// head (Qwen3) or over the layer's q and k (MiniMax-M2). Activations and the KV cache stay FP32
/// whatever the graph's activation and KV formats: the reference is W4A32.
class HostTpComm;

class CpuReference {
 public:
  /// Weights in `format` (nvfp4, mxfp4 or bf16) generated from `seed`.
  CpuReference(ModelConfig model, DType format, std::uint64_t seed);
  /// Rank `tp->rank()` of a tensor-parallel group of `tp->size()` (tensor_parallel.hpp): the
  /// rank's shard of the same weights, its heads and KV heads; it runs graphs of
  /// tensor_parallel = tp->size() (per-rank shapes, all-reduces and the logits all-gather through
  /// `tp`, which must outlive it) and returns the whole vocabulary's logits.
  CpuReference(ModelConfig model, DType format, std::uint64_t seed, HostTpComm* tp);
  /// The same with this rank's weights given (shard_weights of generate_weights(model, format,
  /// seed); the whole model without TP): a process holding every rank generates the model once.
  CpuReference(ModelConfig model, DType format, HostTpComm* tp, ModelWeights rank_weights);

  /// Runs one step. The graph must be of this model and weight format with parallel sizes 1;
  /// `tokens` must match its batch, each chunk's `cached` and each decode's context must equal
  /// its sequence's cached tokens, and a sequence may appear once. InputError otherwise.
  /// `observer`, when given, is called after each op with the op and its wall time in seconds
  /// (steady clock): what `racksim exec --device cpu` records.
  StepOutput run(const StepGraph& graph, const StepTokens& tokens, const std::function<void(const Op&, double)>& observer = {});

  /// Tokens in the KV cache of `sequence` (0 for an unknown one).
  [[nodiscard]] std::int64_t cached_tokens(std::int64_t sequence) const;
  /// Drops the KV cache of `sequence`.
  void release(std::int64_t sequence);
  /// Keeps the first `tokens` cached tokens of `sequence` (a decode step timed again at the same
  /// context); InputError if it holds fewer.
  void truncate(std::int64_t sequence, std::int64_t tokens);

  /// true: the NVFP4 linear layers' inputs (qkv, o, gate_up, down, the experts'; not lm_head or the router) are rounded to
  /// BF16 and quantized to NVFP4 under kActivationNvfp4EncodeScale first (W4A4), as on the CUDA
  /// executor's native Blackwell path (fp4_gemm_path.hpp); NVFP4 weights only (InputError).
  void set_nvfp4_linear_inputs(bool on);

  [[nodiscard]] const ModelConfig& model() const noexcept { return model_; }
  [[nodiscard]] const ModelWeights& weights() const noexcept { return weights_; }
  [[nodiscard]] DType format() const noexcept { return format_; }

 private:
  /// Per layer, FP32 K and V rows [tokens x kv_heads x head_dim] of one sequence.
  struct KvCache {
    std::vector<std::vector<float>> k, v;
  };

  ModelConfig model_;
  DType format_;
  ModelWeights weights_;
  std::map<std::int64_t, KvCache> caches_;
  bool nvfp4_inputs_ = false;
  HostTpComm* tp_ = nullptr;     ///< null: one GPU
  TpLayout tl_;                  ///< this rank's heads, KV heads, FFN and vocabulary (the whole model without TP)
};

}  // namespace racksim::exec
