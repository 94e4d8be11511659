// step_backend.hpp: the CUDA step executor's entry points in every build (without CUDA they
// throw, exit 3) and its device-memory footprint (plain arithmetic, tested on the CPU).

#include "racksim/exec/step_backend.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/paged_kv.hpp"
#include "racksim/exec/tensor_parallel.hpp"

#ifdef RACKSIM_HAVE_CUDA
#include "cuda/step_executor.hpp"
#include "cuda/tp_nccl.hpp"
#endif

namespace racksim::exec {

std::unique_ptr<StepBackend> make_cuda_step_backend(const ModelConfig& model, const Precision& precision, const CudaStepOptions& options) {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::make_cuda_step(model, precision, options);
#else
  (void)model, (void)precision;
  throw Error(ExitCode::infeasible, fmt::format("built without CUDA: the CUDA step executor (cuda:{}) needs a build with RACKSIM_CUDA",
                                                options.device));
#endif
}

std::vector<std::unique_ptr<DeviceTpComm>> make_device_tp_comms(std::span<const int> devices) {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::nccl_tp_comms(devices);
#else
  throw Error(ExitCode::infeasible, fmt::format("built without CUDA: tensor parallel over {} GPUs needs a build with RACKSIM_CUDA",
                                                devices.size()));
#endif
}

std::unique_ptr<DeviceTpComm> make_device_tp_comm(std::span<const std::byte> nccl_id, int rank, int size, int device) {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::nccl_tp_comm(nccl_id, rank, size, device);
#else
  (void)nccl_id, (void)rank, (void)device;
  throw Error(ExitCode::infeasible, fmt::format("built without CUDA: a tensor-parallel rank of {} needs a build with RACKSIM_CUDA", size));
#endif
}

DeviceMemoryInfo cuda_device_memory(int device) {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::device_memory(device);
#else
  throw Error(ExitCode::infeasible, fmt::format("built without CUDA: no device cuda:{}", device));
#endif
}

CudaStepFootprint cuda_step_footprint(const ModelConfig& m, const Precision& p, const CudaStepOptions& o) {
  using D = double;
  using I = std::int64_t;
  // One rank's shard under tensor parallelism (tensor_parallel.hpp); the embedding stays whole.
  const TpLayout t = tp_layout(m, 0, o.tp_size);
  const D H = m.hidden, hd = m.head_dim, heads = static_cast<D>(t.q_heads), kvh = static_cast<D>(t.kv_heads), ffn = static_cast<D>(t.ffn);
  const D vocab = m.vocab, local_vocab = static_cast<D>(t.vocab);
  const D qkv_w = (heads + 2 * kvh) * hd;
  // Which FP4 paths may run (fp4_gemm_path.hpp): `auto` is decided on the device, so both count
  // (each buffer at the larger of its two layouts, and the larger of the two scratch buffers).
  const bool may_native = o.fp4_gemm != Fp4GemmMode::hopper, may_hopper = o.fp4_gemm != Fp4GemmMode::native;
  const I shapes[4][2] = {{static_cast<I>(qkv_w), m.hidden}, {m.hidden, t.q_heads * m.head_dim}, {2 * t.ffn, m.hidden}, {m.hidden, t.ffn}};
  // NVFP4: 0.5 B per weight + one UE4M3 byte per 16 (executor.md "NVFP4"); cuBLASLt's scale
  // layout pads rows to 128 and blocks to 4 (fp4::cublaslt_scale_bytes), the fused Hopper
  // kernel's tiled layout rows to 32 and values to 128 (fp4_mma_tiling); no padding for Llama-2-70B.
  // MoE (one GPU): gate_up and down once per expert, and the BF16 router [experts x hidden].
  const bool moe = m.is_moe();
  const D experts = moe ? m.moe.experts : 0, topk = moe ? m.moe.experts_per_token : 0;
  D weights = moe ? 2 * experts * H : 0, largest = 0, widest = 0;
  int shape_index = 0;
  for (const auto& [n, k] : shapes) {
    const D copies = moe && shape_index++ >= 2 ? experts : 1;
    const D row_major = static_cast<D>(n * k / 16), swizzled = static_cast<D>(fp4::cublaslt_scale_bytes(n, k / 16));
    const Fp4MmaTiling tiles = fp4_mma_tiling(n, k);
    const D hopper = fp4_mma_supported(1, n, k) ? static_cast<D>(tiles.code_bytes + tiles.scale_bytes) : static_cast<D>(n * k) / 2 + row_major;
    weights += copies * std::max(may_hopper ? hopper : 0.0, may_native ? static_cast<D>(n * k) / 2 + swizzled : 0.0);
    largest = std::max(largest, static_cast<D>(n * k));
    widest = std::max(widest, static_cast<D>(k));
  }
  const D blocks = std::max<D>(1, static_cast<D>((o.kv_tokens + o.block_tokens - 1) / o.block_tokens));
  const D kv_element = p.kv_cache == DType::fp8 ? 1 : 2;
  CudaStepFootprint f;
  // QK-norm weights, BF16: per head (Qwen3) head_dim each for q and k; over the layer (MiniMax-M2)
  // one per q and k value of the rank's heads. MiniMax-M2's routing bias: FP32 per expert.
  const D qk_norm = !m.qk_norm() ? 0 : m.qk_norm_per_layer() ? 2 * (heads + kvh) * hd : 2 * 2 * hd;
  const D routing_bias = moe && m.moe_sigmoid_routing() ? 4 * experts : 0;
  f.per_layer = weights + 2 * 2 * H + qk_norm + routing_bias + 2 * blocks * static_cast<D>(o.block_tokens) * kvh * hd * kv_element;
  const D R = static_cast<D>(o.max_rows), S = static_cast<D>(o.max_sampled);
  // Sampled rows: their hidden states, whole-vocabulary FP32 logits and tokens; under TP also the
  // rank's logits slice and the gathered slices.
  // MoE: the FFN's rows are one per assignment (R x k), plus R on the native path (a padded
  // expert GEMM writes past its block); the expert-ordered inputs and the down GEMMs' rows, FP32
  // router logits, five int32 / FP32 values per assignment (expert id, weight, position, order,
  // source row) and the experts + 1 offsets.
  const D ffn_rows = moe ? R * topk + (may_native ? R : 0) : R;
  // (the offsets, experts + 1, and the active experts' slots, <= experts: 4 B each)
  const D moe_buffers = moe ? 2 * R * topk * H + 2 * ffn_rows * H + 4 * R * experts + 20 * R * topk + 4 * (2 * experts + 1) : 0;
  // MiniMax-M2 under TP: the QK-norm's all-reduced sums, 2 FP32 per row.
  const D qk_sums = m.qk_norm_per_layer() && o.tp_size > 1 ? 8 * R : 0;
  const D activations = 2 * R * (3 * H + qkv_w + heads * hd) + 2 * ffn_rows * 3 * ffn + moe_buffers + qk_sums + S * (2 * H + 4 * vocab + 4) +
                        (o.tp_size > 1 ? S * 4 * (local_vocab + vocab) : 0);
  // Hopper: the fused kernel's K-split partials (fp4_mma_workspace_bound, at kFootprintMaxSms) and,
  // above its M limit or for a K it does not take, the large-M path's scratch
  // (fp4_large_m_scratch_bound: BF16 W, or E4M3 W and x under RACKSIM_FP4_LARGE_M=fp8).
  D mma_ws = 0;
  bool dequantizes = o.max_rows > kFp4MmaMaxM;
  int shape_at = 0;
  for (const auto& [n, k] : shapes) {
    // MoE experts (shapes 2, 3) also run grouped: the partials of all max_rows x top-k rows
    // (fp4_mma_grouped_workspace_bytes <= top-k x the bound).
    const D copies = moe && shape_at++ >= 2 ? topk : 1;
    mma_ws = std::max(mma_ws, copies * static_cast<D>(fp4_mma_workspace_bound(n, k, o.max_rows, static_cast<int>(kFootprintMaxSms))));
    if (!fp4_mma_supported(1, n, k) && o.max_rows > 1) dequantizes = true;
  }
  const D scratch = static_cast<D>(fp4_large_m_scratch_bound(static_cast<I>(largest), o.max_rows, static_cast<I>(widest)));
  const D dequant = may_hopper ? (dequantizes ? scratch : 0) + mma_ws : 0;
  const D fp4_inputs = may_native ? static_cast<D>(native_activation_bytes(o.max_rows, static_cast<I>(widest))) : 0;
  // Split-K decode attention's FP32 partials (decode_workspace_bytes): decode_partition_tokens
  // splits a context into at most ceil(4 SMs / (batch x KV heads)) partitions (kDecodeCtasPerSm),
  // so batch x partitions <= batch + 4 SMs / KV heads; bounded with kFootprintMaxSms.
  const D partials = (S + std::ceil(static_cast<D>(kDecodeCtasPerSm) * kFootprintMaxSms / kvh)) * heads * (hd + 2) * 4;
  f.fixed = 2 * (vocab + local_vocab) * H + 2 * H + activations + std::max(dequant, fp4_inputs) + partials + D(32 << 20);  // + the 32 MiB cuBLASLt workspace
  return f;
}

}  // namespace racksim::exec
