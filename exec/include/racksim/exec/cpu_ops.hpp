#pragma once
/// The FP32 math of each non-GEMM op of a transformer step, one function per op: what the CPU
/// reference (cpu_reference.hpp) runs and what the CUDA step ops (cuda_ops.hpp) are tested
/// against. Row-major arrays; every size is checked (InputError naming the op and the sizes).

#include <cstdint>
#include <span>
#include <vector>

namespace racksim::exec {

/// y = x / sqrt(mean(x^2) + eps) * weight for each of `rows` rows of `width` values; the sum
/// of squares accumulates in FP32 in index order. x and y hold rows x width, weight width.
void rmsnorm(std::span<const float> x, std::int64_t rows, std::int64_t width, std::span<const float> weight, float eps,
             std::span<float> y);

/// hidden[i] += branch[i] for every i of hidden (branch holds at least as many values).
void residual_add(std::span<float> hidden, std::span<const float> branch);

/// Rotate-half RoPE in place on the first `rotated_heads` heads of each of `rows` rows of `qkv`
/// (row stride `row_width`, heads of `head_dim` values): with d = rotary_dim (even, <= head_dim;
/// 0: head_dim), each pair (x_i, x_{i+d/2}), i < d/2, of a head's first d values turns by angle
/// positions[row] x theta^(-2i/d), the angle and its cosine and sine in float64 and then rounded
/// to FP32 (Llama's rotary embedding, "rotate_half"); values d..head_dim-1 pass unchanged
/// (partial RoPE: MiniMax-M2's rotary_dim 64 of 128, Hugging Face's apply_rotary_pos_emb on
/// q[..., :rotary_dim] with partial_rotary_factor = rotary_dim / head_dim).
void rope_rotate_half(std::span<float> qkv, std::int64_t rows, std::int64_t row_width, std::int64_t rotated_heads,
                      std::int64_t head_dim, std::span<const std::int64_t> positions, double theta, std::int64_t rotary_dim = 0);

/// MiniMax-M2's QK-norm over a whole layer, first half: for each of `rows` rows of `qkv` (stride
/// row_width), sums[2 r] = the sum of squares of its first q_width values (the q heads) and
/// sums[2 r + 1] of the next k_width (the k heads), FP32 in index order. Under tensor parallelism
/// each rank sums its own heads and the ranks all-reduce the sums (vLLM's MiniMaxText01RMSNormTP).
void qk_sum_squares(std::span<const float> qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                    std::span<float> sums);

/// Second half, in place: each row's q values x = x / sqrt(sums[2 r] / q_count + eps) x
/// q_weight[i], its k values likewise with sums[2 r + 1], k_count and k_weight (rmsnorm's
/// formula). q_count and k_count are the values the sums cover: the layer's heads x head_dim
/// (under TP with replicated KV heads, the k sum counts each replica, and so does k_count).
void qk_layer_norm(std::span<float> qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                   std::span<const float> sums, std::int64_t q_count, std::int64_t k_count, std::span<const float> q_weight,
                   std::span<const float> k_weight, float eps);

/// silu(g) = g / (1 + exp(-g)) in FP32.
[[nodiscard]] float silu(float g) noexcept;

/// y[r, i] = silu(gate_up[r, i]) x gate_up[r, ffn + i]: each of `rows` rows of gate_up holds the
/// ffn gate values, then the ffn up values; y is rows x ffn.
void swiglu(std::span<const float> gate_up, std::int64_t rows, std::int64_t ffn, std::span<float> y);

/// y[r] = table row tokens[r] (rows of `width` values). InputError for an id outside the table.
void embedding(std::span<const float> table, std::int64_t width, std::span<const std::int32_t> tokens, std::span<float> y);

/// The id of the largest logit, the lowest id among equal maxima (std::max_element). Greedy sampling.
[[nodiscard]] std::int32_t argmax_token(std::span<const float> logits);

/// Softmax attention of one query token over keys 0..n_keys-1, every query head:
/// out[h] = sum_j softmax_j(q[h] . k[j, g] / sqrt(head_dim)) v[j, g] with g = h / (heads / kv_heads)
/// (GQA). q and out hold heads x head_dim; k and v hold at least n_keys tokens of
/// kv_heads x head_dim. FP32, max-subtracted exponentials, keys in order.
void attention_one_query(std::span<const float> q, std::span<const float> k, std::span<const float> v, std::int64_t n_keys,
                         std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim, std::span<float> out);

/// One routed expert of a token and its weight.
struct ExpertWeight {
  int expert = 0;
  float weight = 0;
};

/// Mixtral routing of one token: the k largest router logits (ties: the lower expert id; NaN
/// ranks below every number, -inf included), their softmax over those k. In order of decreasing logit.
[[nodiscard]] std::vector<ExpertWeight> moe_top_k(std::span<const float> router_logits, int k);

/// MiniMax-M2 routing of one token: scores s_e = 1 / (1 + exp(-logit_e)) (FP32); the k experts
/// of largest s_e + bias[e] (ties: the lower expert id; NaN below every number), each weighted
/// s_e / max(sum of the k chosen s in rank order, 1e-12). In rank order. bias holds one value per expert.
[[nodiscard]] std::vector<ExpertWeight> moe_top_k_sigmoid(std::span<const float> router_logits, std::span<const float> bias, int k);

/// The expert order of a step's MoE assignments (the permute of TensorRT-LLM's fused MoE, vLLM's
/// moe_align_block_size): assignment a = token x k + j (the token's j-th expert, as moe_top_k
/// ranks them) goes to row position[a] of the expert-ordered rows. Experts in id order, and within
/// an expert the assignments in increasing a (a stable counting sort), so each expert's rows are
/// one contiguous block: rows offsets[e] .. offsets[e + 1] - 1.
struct MoeOrder {
  std::vector<std::int32_t> offsets;      ///< [experts + 1]: expert e's first row; offsets[experts] = assignments
  std::vector<std::int32_t> position;     ///< [assignments]: the row of assignment a
  std::vector<std::int32_t> order;        ///< [assignments]: the assignment at row p (position's inverse)
  std::vector<std::int32_t> source_rows;  ///< [assignments]: the token row at row p (order[p] / k)
  /// [moe_active_slots(experts, assignments)]: the experts that got rows, in id order, then -1.
  /// A grouped expert GEMM launches one slice of CTAs per slot instead of one per expert: at
  /// decode most experts get no row (MiniMax-M2 at one token: 8 of 256).
  std::vector<std::int32_t> active;
};

/// Slots of MoeOrder::active: min(experts, assignments), the most experts that can get a row.
[[nodiscard]] constexpr std::int64_t moe_active_slots(std::int64_t experts, std::int64_t assignments) {
  return experts < assignments ? experts : assignments;
}

/// MoeOrder of `expert_ids` (one per assignment, token-major, k per token). InputError unless
/// experts >= 1, k >= 1, the ids are a whole number of tokens and every id is in 0..experts-1.
[[nodiscard]] MoeOrder moe_expert_order(std::span<const std::int32_t> expert_ids, int experts, int k);

}  // namespace racksim::exec
