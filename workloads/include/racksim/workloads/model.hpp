#pragma once
/// Transformer model configurations (Llama and Mixtral families) and what they weigh.

#include <cstdint>
#include <string>
#include <vector>

#include "racksim/common/dtype.hpp"

namespace racksim {

/// Mixture-of-experts settings; experts == 0 means a dense model.
struct MoeConfig {
  int experts = 0;
  int experts_per_token = 0;
};

/// A model's published config.json values, with their source.
struct ModelConfig {
  std::string id;            ///< catalog id ("llama2-70b")
  std::string name;          ///< display name
  std::string source;        ///< where the values come from
  /// "llama", "mixtral", "qwen3" (llama with per-head QK-norm), "qwen3_moe" (qwen3 with MoE MLPs)
  /// or "minimax_m2" (MoE, with a QK-norm over all heads of a layer at once)
  std::string architecture;
  int layers = 0;
  int hidden = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int rotary_dim = 0;  ///< dims of each q/k head that RoPE rotates (partial RoPE); 0: all (head_dim)
  int ffn = 0;  ///< SwiGLU intermediate size (per expert for MoE)
  int vocab = 0;
  bool tied_embeddings = false;
  double rope_theta = 0;
  int max_position = 0;
  double norm_eps = 0;
  MoeConfig moe;

  [[nodiscard]] bool is_moe() const noexcept { return moe.experts > 0; }
  /// Dims of each q and k head that RoPE rotates.
  [[nodiscard]] int rope_dim() const noexcept { return rotary_dim > 0 ? rotary_dim : head_dim; }

  /// Qwen3 and Qwen3-MoE: q and k are RMS-normalised per head before RoPE (Qwen3 Technical
  /// Report, arXiv 2505.09388, section 2: "QK-Norm"; q_norm/k_norm weights of head_dim each).
  /// MiniMax-M2: over all of a layer's q (and all its k) at once (config.json `qk_norm_type:
  /// per_layer`; weights of heads x head_dim and kv_heads x head_dim).
  [[nodiscard]] bool qk_norm() const noexcept { return architecture == "qwen3" || architecture == "qwen3_moe" || qk_norm_per_layer(); }
  [[nodiscard]] bool qk_norm_per_layer() const noexcept { return architecture == "minimax_m2"; }
  /// MiniMax-M2 routes by sigmoid scores plus a learned per-expert bias: the k experts of largest
  /// sigmoid(logit) + e_score_correction_bias, weighted by their sigmoid scores (without the bias)
  /// over the sum of those k (config.json `scoring_func: sigmoid`, `use_routing_bias: true`; the
  /// Hugging Face MiniMaxM2SparseMoeBlock). Mixtral and Qwen3-MoE: softmax over the top-k logits.
  [[nodiscard]] bool moe_sigmoid_routing() const noexcept { return architecture == "minimax_m2"; }
};

/// Parameter counts by role. "Linear" weights are the ones a quantized checkpoint stores in the
/// weight format (attention and MLP/expert projections); embedding, lm_head, norms and the MoE
/// router stay in BF16, as NVIDIA ModelOpt's default FP8/NVFP4 recipes leave them
/// (its default config disables quantization of "*lm_head*", "*router*" and "*mlp.gate.*").
struct ParamCounts {
  std::int64_t embedding = 0;
  std::int64_t lm_head = 0;         ///< 0 when tied to the embedding
  std::int64_t attention = 0;       ///< q, k, v, o over all layers
  std::int64_t mlp = 0;             ///< gate, up, down over all layers and experts
  std::int64_t router = 0;          ///< MoE gate over all layers
  std::int64_t norms = 0;           ///< two RMSNorm weight vectors per layer plus the final one (+ q/k norms, qwen3)
  std::int64_t routing_bias = 0;    ///< MiniMax-M2's e_score_correction_bias: experts per layer (no GEMM reads it)
  [[nodiscard]] std::int64_t linear() const noexcept { return attention + mlp; }
  [[nodiscard]] std::int64_t total() const noexcept { return embedding + lm_head + attention + mlp + router + norms + routing_bias; }
};

/// Counts every parameter from the config (hand-checkable: Llama-2-70B = 68,976,648,192).
[[nodiscard]] ParamCounts count_params(const ModelConfig& m);

/// Bytes of all weights with linear layers in `weights` (block scales included) and the rest in
/// BF16 but MiniMax-M2's routing bias, FP32; for bf16/fp16 every other parameter is 2 bytes.
[[nodiscard]] double weight_bytes(const ModelConfig& m, DType weights);

/// KV-cache bytes per token over all layers: 2 (K and V) x layers x kv_heads x head_dim values.
[[nodiscard]] double kv_bytes_per_token(const ModelConfig& m, DType kv);

/// Non-embedding parameters touched per generated token (linear + lm_head): GEMM FLOPs per
/// token are twice this.
[[nodiscard]] std::int64_t gemm_params_per_token(const ModelConfig& m);

}  // namespace racksim
