#pragma once
/// Which part of a model one tensor-parallel rank holds (tensor_parallel.hpp has the rest: weight
/// shards and the ranks' collectives). Plain arithmetic, shared by the CPU reference, the CUDA
/// step executor and its device-memory footprint.

#include <cstdint>
#include <utility>
#include <vector>

#include "racksim/common/dtype.hpp"
#include "racksim/workloads/model.hpp"

namespace racksim::exec {

/// What rank `rank` of `size` holds of `model`.
struct TpLayout {
  int rank = 0;
  int size = 1;
  std::int64_t q_heads = 0;      ///< heads / size
  std::int64_t kv_heads = 0;     ///< kv_heads / size, or 1 (replicated) when size > kv_heads
  std::int64_t kv_first = 0;     ///< index of this rank's first KV head
  std::int64_t ffn = 0;          ///< ffn / size
  std::int64_t vocab = 0;        ///< vocab / size
  /// Rows of qkv_proj this rank holds, as [begin, end) ranges: its q, k and v heads.
  [[nodiscard]] std::vector<std::pair<std::int64_t, std::int64_t>> qkv_rows(const ModelConfig& m) const;
  /// Rows of gate_up_proj: its gate slice and its up slice.
  [[nodiscard]] std::vector<std::pair<std::int64_t, std::int64_t>> gate_up_rows(const ModelConfig& m) const;
};

/// The layout of `rank` of `size` for weights stored as `weights`. Size 1: the whole model (any
/// model). Above: InputError naming the dimension unless size divides heads,
/// ffn and vocab, size and kv_heads divide one another, and the row-parallel slices (heads x
/// head_dim / size, ffn / size) are whole blocks of the format (16 NVFP4, 32 MXFP4).
[[nodiscard]] TpLayout tp_layout(const ModelConfig& m, int rank, int size, DType weights = DType::nvfp4);

}  // namespace racksim::exec
