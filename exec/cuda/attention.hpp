#pragma once
// Paged KV append and attention (compiled only with RACKSIM_CUDA): plain C++ interface, routed by
// backend_registry.cpp to cuda_ops.hpp, which checks the arguments first.

#include "racksim/exec/cuda_ops.hpp"

namespace racksim::exec::cuda {

void kv_append_launch(const DevicePagedKv& cache, const std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width,
                      std::int64_t heads, const std::int32_t* slots, void* stream);
void attention_decode_launch(const DevicePagedKv& cache, const AttentionDecodeArgs& args, void* stream);
void attention_prefill_launch(const DevicePagedKv& cache, const AttentionPrefillArgs& args, void* stream);

}  // namespace racksim::exec::cuda
