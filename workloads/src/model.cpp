#include "racksim/workloads/model.hpp"

namespace racksim {

ParamCounts count_params(const ModelConfig& m) {
  using I = std::int64_t;
  const I h = m.hidden, L = m.layers, d = m.head_dim;
  ParamCounts p;
  p.embedding = I{m.vocab} * h;
  p.lm_head = m.tied_embeddings ? 0 : I{m.vocab} * h;
  // q: h x heads*d, k and v: h x kv_heads*d each, o: heads*d x h.
  p.attention = L * (2 * h * I{m.heads} * d + 2 * h * I{m.kv_heads} * d);
  const I experts = m.is_moe() ? m.moe.experts : 1;
  p.mlp = L * experts * 3 * h * I{m.ffn};  // gate, up, down
  p.router = m.is_moe() ? L * h * I{m.moe.experts} : 0;
  p.routing_bias = m.is_moe() && m.moe_sigmoid_routing() ? L * I{m.moe.experts} : 0;
  // + q_norm, k_norm: head_dim each (per head), or one weight per q and k element (per layer).
  const I qk_norm = !m.qk_norm() ? 0 : m.qk_norm_per_layer() ? (I{m.heads} + m.kv_heads) * d : 2 * d;
  p.norms = L * 2 * h + h + L * qk_norm;
  return p;
}

double weight_bytes(const ModelConfig& m, DType weights) {
  ParamCounts p = count_params(m);
  // MiniMax-M2's routing bias is FP32 in its checkpoint (e_score_correction_bias, float32 in the
  // Hugging Face MiniMaxM2SparseMoeBlock); the rest of the non-linear weights BF16.
  const double rest = static_cast<double>(p.total() - p.linear() - p.routing_bias);
  return weight_storage_bytes(weights, static_cast<double>(p.linear())) + storage_bytes(DType::bf16, rest) +
         4.0 * static_cast<double>(p.routing_bias);
}

double kv_bytes_per_token(const ModelConfig& m, DType kv) {
  return storage_bytes(kv, 2.0 * m.layers * m.kv_heads * m.head_dim);
}

std::int64_t gemm_params_per_token(const ModelConfig& m) {
  ParamCounts p = count_params(m);
  const std::int64_t lm_head = p.lm_head ? p.lm_head : p.embedding;
  if (!m.is_moe()) return p.linear() + lm_head;
  // MoE: only experts_per_token of the experts run per token (plus the router).
  const std::int64_t expert_params = p.mlp / m.moe.experts;
  return p.attention + expert_params * m.moe.experts_per_token + p.router + lm_head;
}

}  // namespace racksim
