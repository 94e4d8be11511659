#pragma once
// Argument checks of cuda_ops.hpp's device launches (cuda_ops.cpp): plain C++, run in every
// build before backend_registry.cpp routes the launch, so a bad shape is an InputError with or
// without CUDA. They check what the host knows (sizes, strides, alignment, null pointers), not
// what device arrays hold.

#include <cstdint>
#include <string_view>

#include "racksim/exec/cuda_ops.hpp"

namespace racksim::exec::detail {

void check_rmsnorm(const void* x, const void* branch, const void* weight, std::int64_t rows, std::int64_t width, float eps, const void* y);
void check_head_rmsnorm(const void* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_heads, std::int64_t kv_heads,
                        std::int64_t head_dim, const void* q_weight, const void* k_weight, float eps);
void check_residual_add(const void* hidden, const void* branch, std::int64_t count);
void check_rope(const void* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t rotated_heads, std::int64_t head_dim,
                std::int64_t rotary_dim, const void* positions, double theta);
void check_qk_layer(std::string_view op, const void* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width,
                    std::int64_t k_width, const void* sums, bool sums_needed);
void check_qk_layer_norm(const void* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                         const void* sums, std::int64_t q_count, std::int64_t k_count, const void* q_weight, const void* k_weight, float eps);
void check_swiglu(const void* gate_up, std::int64_t rows, std::int64_t ffn, const void* y);
void check_embedding(const void* table, std::int64_t vocab, std::int64_t width, const void* tokens, std::int64_t rows, const void* y);
void check_argmax(const void* logits, std::int64_t rows, std::int64_t vocab, const void* tokens);
void check_moe_topk(const void* logits, std::int64_t rows, int experts, int k, const void* expert_ids, const void* weights);
void check_moe_permute(const void* expert_ids, std::int64_t assignments, int experts, int k, const void* offsets, const void* position,
                       const void* order, const void* source_rows, const void* active);
void check_moe_finalize(const void* expert_rows, const void* position, const void* weights, std::int64_t rows, int k, std::int64_t width,
                        const void* y);
void check_kv_append(const DevicePagedKv& cache, const void* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t heads,
                     const void* slots);
void check_attention_decode(const DevicePagedKv& cache, const AttentionDecodeArgs& args);
void check_attention_prefill(const DevicePagedKv& cache, const AttentionPrefillArgs& args);

}  // namespace racksim::exec::detail
