#pragma once
/// One operator of a serving step, with everything both backends need: the simulator costs it,
/// the executor launches it, and its identity joins the two.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "racksim/common/dtype.hpp"

namespace racksim {

/// What an op does. Collectives and point-to-point transfers are ops too.
enum class OpKind : std::uint8_t {
  embedding,          ///< token-id lookup
  rmsnorm,            ///< RMSNorm (writes the next GEMM's input format)
  gemm,               ///< dense GEMM C[m,n] = A[m,k] x W[k,n]
  moe_gemm,           ///< grouped expert GEMM over the experts resident on this GPU
  rope,               ///< rotary embedding of q and k
  attention_prefill,  ///< causal attention of prefill chunks over their cached context
  attention_decode,   ///< one query token per sequence over its paged KV cache
  swiglu,             ///< silu(gate) * up
  residual_add,       ///< hidden += branch output
  moe_router_topk,    ///< softmax over router logits and top-k selection
  moe_permute,        ///< a token's rows gathered into expert order (expert maps, row expand)
  moe_finalize,       ///< expert rows scaled by their routing weights, a token's k rows summed
  sampling,           ///< token selection from the logits
  all_reduce,         ///< tensor-parallel sum
  all_gather,         ///< tensor-parallel gather
  all_to_all,         ///< all-to-all (measured by the collectives bench; the step graph's MoE has none: docs/models.md)
  send_recv,          ///< pipeline-parallel activation transfer between stages (keep last: all_op_kinds)
};

[[nodiscard]] std::string_view to_string(OpKind k) noexcept;
/// Every OpKind, in declaration order.
[[nodiscard]] std::span<const OpKind> all_op_kinds() noexcept;
/// True for all_reduce, all_gather, all_to_all and send_recv.
[[nodiscard]] bool is_communication(OpKind k) noexcept;

/// An operator as one GPU of the replica runs it (shapes are per-GPU shards).
struct Op {
  std::string name;   ///< unique within the step: "layers.12.qkv_proj"
  OpKind kind = OpKind::gemm;
  int layer = -1;     ///< transformer layer, -1 outside layers
  int stage = 0;      ///< pipeline stage

  // Shape. GEMMs: m x k times k x n. Elementwise: m rows of width n. Attention: m query tokens,
  // n = query heads on this GPU, k = head_dim.
  std::int64_t m = 0;
  std::int64_t n = 0;
  std::int64_t k = 0;

  DType in_dtype = DType::bf16;      ///< A operand / input activations (GEMM: compute format)
  DType weight_dtype = DType::bf16;  ///< stored weights (GEMM), KV cache (attention)
  DType out_dtype = DType::bf16;     ///< output
  std::string weight;                ///< weight tensor identity ("layers.12.qkv_proj"), or ""
  /// GEMMs: the A operand arrives already in in_dtype, quantized by the op that wrote it (fused
  /// into RMSNorm / SwiGLU / attention, as TensorRT-LLM's FP8 and NVFP4 paths do), so the GEMM
  /// itself does no activation-quantize pass.
  bool input_prequantized = false;

  double flops = 0;            ///< floating-point operations (multiply-add = 2)
  double exp_ops = 0;          ///< exponentials (softmax), for the special-function units
  double weight_bytes = 0;     ///< weights read, block scales included
  double act_bytes_read = 0;   ///< activations read
  double kv_bytes_read = 0;    ///< KV cache read
  double bytes_written = 0;    ///< activations and KV cache written

  // Attention only: sequences and the sum over them of keys attended per query token.
  std::int64_t sequences = 0;
  double attended_pairs = 0;   ///< sum over query tokens of keys attended (per head)

  // Communication only.
  double comm_bytes = 0;       ///< message size per GPU (nccl-tests "size": the buffer each rank holds)
  int participants = 0;        ///< GPUs in the group

  [[nodiscard]] double bytes_read() const noexcept { return weight_bytes + act_bytes_read + kv_bytes_read; }
  [[nodiscard]] double bytes() const noexcept { return bytes_read() + bytes_written; }

  /// Identity of the op for joining predictions to measurements: kind, shape and dtypes,
  /// e.g. "gemm m=2048 n=10240 k=8192 a=nvfp4 w=nvfp4 c=bf16". Same shape => same identity.
  [[nodiscard]] std::string identity() const;
  /// The op's name within its layer ("layers.3.qkv_proj" -> "qkv_proj"); the whole name outside
  /// layers ("lm_head"). What the executors dispatch on.
  [[nodiscard]] std::string_view role() const noexcept;
};

}  // namespace racksim
