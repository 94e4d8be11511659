#pragma once
// The elementwise step ops (compiled only with RACKSIM_CUDA): plain C++ interface, routed by
// backend_registry.cpp to cuda_ops.hpp, which checks the arguments first. BF16 arrays are
// 16-bit patterns; every launch is asynchronous on `stream` and checks only the launch error.

#include <cstdint>

namespace racksim::exec::cuda {

/// Without `branch`: y = rmsnorm(x). With it: x (= hidden) = bf16(x + branch) stored in place,
/// then y = rmsnorm of the stored rows.
void rmsnorm_launch(std::uint16_t* x, const std::uint16_t* branch, const std::uint16_t* weight, std::int64_t rows, std::int64_t width,
                    float eps, std::uint16_t* y, void* stream);
void head_rmsnorm_launch(std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_heads, std::int64_t kv_heads,
                         std::int64_t head_dim, const std::uint16_t* q_weight, const std::uint16_t* k_weight, float eps, void* stream);
void residual_add_launch(std::uint16_t* hidden, const std::uint16_t* branch, std::int64_t count, void* stream);
void rope_rotate_half_launch(std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t rotated_heads,
                             std::int64_t head_dim, std::int64_t rotary_dim, const std::int32_t* positions, double theta, void* stream);
void qk_sum_squares_launch(const std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                           float* sums, void* stream);
/// sums null: each row's own sums of squares.
void qk_layer_norm_launch(std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                          const float* sums, std::int64_t q_count, std::int64_t k_count, const std::uint16_t* q_weight,
                          const std::uint16_t* k_weight, float eps, void* stream);
void swiglu_launch(const std::uint16_t* gate_up, std::int64_t rows, std::int64_t ffn, std::uint16_t* y, void* stream);
void embedding_launch(const std::uint16_t* table, std::int64_t vocab, std::int64_t width, const std::int32_t* tokens, std::int64_t rows,
                      std::uint16_t* y, void* stream);
void argmax_launch(const float* logits, std::int64_t rows, std::int64_t vocab, std::int32_t* tokens, void* stream);

}  // namespace racksim::exec::cuda
