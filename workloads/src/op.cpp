#include "racksim/workloads/op.hpp"

#include <fmt/format.h>

namespace racksim {

std::string_view to_string(OpKind k) noexcept {
  switch (k) {
    case OpKind::embedding: return "embedding";
    case OpKind::rmsnorm: return "rmsnorm";
    case OpKind::gemm: return "gemm";
    case OpKind::moe_gemm: return "moe_gemm";
    case OpKind::rope: return "rope";
    case OpKind::attention_prefill: return "attention_prefill";
    case OpKind::attention_decode: return "attention_decode";
    case OpKind::swiglu: return "swiglu";
    case OpKind::residual_add: return "residual_add";
    case OpKind::moe_router_topk: return "moe_router_topk";
    case OpKind::moe_permute: return "moe_permute";
    case OpKind::moe_finalize: return "moe_finalize";
    case OpKind::sampling: return "sampling";
    case OpKind::all_reduce: return "all_reduce";
    case OpKind::all_gather: return "all_gather";
    case OpKind::all_to_all: return "all_to_all";
    case OpKind::send_recv: return "send_recv";
  }
  return "?";
}

std::span<const OpKind> all_op_kinds() noexcept {
  static constexpr OpKind kAll[] = {OpKind::embedding,       OpKind::rmsnorm,          OpKind::gemm,         OpKind::moe_gemm,
                                    OpKind::rope,            OpKind::attention_prefill, OpKind::attention_decode, OpKind::swiglu,
                                    OpKind::residual_add,    OpKind::moe_router_topk,  OpKind::moe_permute,  OpKind::moe_finalize,
                                    OpKind::sampling,        OpKind::all_reduce,       OpKind::all_gather,   OpKind::all_to_all,
                                    OpKind::send_recv};
  static_assert(std::size(kAll) == static_cast<std::size_t>(OpKind::send_recv) + 1, "every OpKind, send_recv last");
  return kAll;
}

bool is_communication(OpKind k) noexcept {
  return k == OpKind::all_reduce || k == OpKind::all_gather || k == OpKind::all_to_all || k == OpKind::send_recv;
}

std::string Op::identity() const {
  if (is_communication(kind))
    return fmt::format("{} bytes={:.0f} ranks={}", to_string(kind), comm_bytes, participants);
  if (kind == OpKind::attention_prefill || kind == OpKind::attention_decode)
    return fmt::format("{} tokens={} heads={} head_dim={} seqs={} pairs={:.0f} q={} kv={}", to_string(kind), m, n, k,
                       sequences, attended_pairs, to_string(in_dtype), to_string(weight_dtype));
  return fmt::format("{} m={} n={} k={} a={} w={} c={}", to_string(kind), m, n, k, to_string(in_dtype),
                     to_string(weight_dtype), to_string(out_dtype));
}

std::string_view Op::role() const noexcept {
  std::string_view r = name;
  if (layer >= 0 && r.starts_with("layers.")) {
    r.remove_prefix(7);
    const auto dot = r.find('.');
    if (dot != std::string_view::npos) r.remove_prefix(dot + 1);
  }
  return r;
}

}  // namespace racksim
