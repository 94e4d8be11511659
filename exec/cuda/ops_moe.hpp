#pragma once
// The MoE routing ops (compiled only with RACKSIM_CUDA): router top-k, the expert-order permute
// and the finalize. Plain C++ interface, routed by backend_registry.cpp to cuda_ops.hpp, which
// checks the arguments first; every launch is asynchronous on `stream`.

#include <cstdint>

namespace racksim::exec::cuda {

/// The most experts and the largest top-k the kernels take (checked by cuda_ops).
inline constexpr int kMoeMaxExperts = 1024;
inline constexpr int kMoeMaxTopK = 32;

/// bias null: softmax over the top-k logits; given ([experts] FP32): MiniMax-M2's biased sigmoid top-k.
void moe_topk_launch(const float* logits, const float* bias, std::int64_t rows, int experts, int k, std::int32_t* expert_ids, float* weights,
                     void* stream);
void moe_permute_launch(const std::int32_t* expert_ids, std::int64_t assignments, int experts, int k, std::int32_t* offsets,
                        std::int32_t* position, std::int32_t* order, std::int32_t* source_rows, std::int32_t* active, void* stream);
void moe_finalize_launch(const std::uint16_t* expert_rows, const std::int32_t* position, const float* weights, std::int64_t rows, int k,
                         std::int64_t width, std::uint16_t* y, void* stream);

}  // namespace racksim::exec::cuda
