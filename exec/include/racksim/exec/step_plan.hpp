#pragma once
/// What a device backend needs to launch one step's kernels, computed on the host from the step's
/// batch and tokens: the rows in CpuReference's order (prefill chunk tokens, then one per
/// decode), their positions and KV-cache slots, the sampled rows, the decode block tables and
/// context lengths, and the prefill segments. A block pool hands out the paged cache's blocks
/// (paged_kv.hpp) per sequence. Plain C++: tested on the CPU, uploaded by the CUDA backend.

#include <cstdint>
#include <map>
#include <vector>

#include "racksim/exec/cpu_reference.hpp"
#include "racksim/exec/paged_kv.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim::exec {

/// Blocks of a paged KV cache shared by every layer (one table per sequence serves all layers,
/// as in vLLM), handed out lowest id first and returned on release or truncate.
class BlockPool {
 public:
  BlockPool(std::int64_t blocks, std::int64_t block_tokens);

  /// Makes room for `tokens` tokens of `sequence` (allocating blocks); InfeasibleError when the
  /// pool runs out, naming the pool's size.
  void reserve(std::int64_t sequence, std::int64_t tokens);
  /// Tokens the sequence holds (what its KV cache has been written up to).
  [[nodiscard]] std::int64_t tokens(std::int64_t sequence) const;
  /// Marks `tokens` as written (after a step appended them).
  void set_tokens(std::int64_t sequence, std::int64_t tokens);
  /// Keeps the first `tokens` tokens; frees the blocks past them unless `keep_blocks` (a step
  /// run again at the same context then writes the same slots). InputError if it holds fewer.
  void truncate(std::int64_t sequence, std::int64_t tokens, bool keep_blocks = false);
  /// Frees every block of the sequence.
  void release(std::int64_t sequence);

  [[nodiscard]] const std::vector<std::int32_t>& table(std::int64_t sequence) const;
  [[nodiscard]] std::int64_t free_blocks() const noexcept { return static_cast<std::int64_t>(free_.size()); }
  [[nodiscard]] std::int64_t block_tokens() const noexcept { return block_tokens_; }
  [[nodiscard]] std::int64_t blocks() const noexcept { return blocks_; }

 private:
  struct Entry {
    std::vector<std::int32_t> table;
    std::int64_t tokens = 0;
  };
  std::int64_t blocks_;
  std::int64_t block_tokens_;
  std::vector<std::int32_t> free_;  ///< a min-heap of free block ids
  std::map<std::int64_t, Entry> seqs_;
};

/// One step's launch arguments (host copies; the backend uploads them).
struct StepPlan {
  std::int64_t rows = 0;                  ///< T: prefill tokens + decodes
  std::int64_t prefill_rows = 0;          ///< rows of prefill chunks (the decode rows follow)
  std::vector<std::int32_t> tokens;       ///< [T] token ids
  std::vector<std::int32_t> positions;    ///< [T] position of each row in its sequence
  std::vector<std::int32_t> slots;        ///< [T] KV slot each row's K/V is written to
  std::vector<std::int32_t> sampled;      ///< [S] rows that get logits: prompt-ending chunks' last rows, then decodes
  std::vector<std::int64_t> sampled_sequences;  ///< [S] their sequences
  // Decode attention.
  std::int64_t decodes = 0;
  std::int64_t decode_table_stride = 0;
  std::vector<std::int32_t> decode_tables;   ///< [decodes x stride], -1 padded
  std::vector<std::int32_t> context_lens;    ///< [decodes] keys attended: context + 1
  std::int64_t max_context = 0;
  // Prefill attention.
  std::vector<PrefillSegment> segments;      ///< one per chunk
  std::int64_t prefill_table_stride = 0;
  std::vector<std::int32_t> prefill_tables;  ///< [chunks x stride], -1 padded
  std::int64_t max_segment_tokens = 0;
};

/// Plans `batch` with `tokens` against the pool: checks them as CpuReference::run does (counts,
/// each chunk's cached and each decode's context equal to its sequence's tokens, a sequence once,
/// ids within the vocabulary), reserves the blocks the new rows need, and returns the arrays.
/// The pool's token counts are not advanced: call commit() after the step ran.
[[nodiscard]] StepPlan plan_step(const StepBatch& batch, const StepTokens& tokens, std::int64_t vocab, BlockPool& pool);

/// Advances each sequence of `batch`/`tokens` by the rows the step appended.
void commit_step(const StepBatch& batch, const StepTokens& tokens, BlockPool& pool);

/// RACKSIM_FUSE_NORM = off | on (unset: off): whether the CUDA step executor runs each residual
/// add and the RMSNorm right after it as one kernel (vLLM's fused_add_rms_norm; cuda_ops.hpp
/// cuda_residual_add_rmsnorm_launch), the norm's own op then launching nothing. True for on;
/// InputError naming the variable, the value and the allowed values.
[[nodiscard]] bool fuse_norm_knob(const char* value);

/// RACKSIM_PDL = off | on (unset: off): whether the CUDA kernels of a step (the fused FP4 GEMM and
/// its reduce, attention, the elementwise and MoE ops) launch with programmatic stream
/// serialization, so each is scheduled while the one before it finishes (exec/cuda/pdl.cuh).
/// True for on; InputError naming the variable, the value and the allowed values.
[[nodiscard]] bool pdl_knob(const char* value);

/// For each op of `ops` (a step in topological order): true where it is a residual_add directly
/// followed by an RMSNorm of the hidden rows (input_norm, post_attn_norm or final_norm) of the
/// same rows, the pairs the fused kernel can run. Only adjacent ops pair, so the ops' order (the
/// simulator's) is kept.
[[nodiscard]] std::vector<bool> residual_norm_pairs(const std::vector<Op>& ops);

/// RACKSIM_FUSE_SWIGLU = off | on (unset: off): whether the CUDA step executor runs a dense
/// layer's gate_up GEMM and the SwiGLU after it as one GEMM launch whose split-K reduce writes the
/// SwiGLU (exec/cuda/fp4_gemm_mma.hpp fp4_gemm_mma_swiglu_launch; where the Hopper fused kernel
/// runs the GEMM and splits K: M <= 32 for Llama-2-70B on an H200), the SwiGLU op then launching
/// nothing. True for on; InputError naming the variable, the value and the allowed values.
[[nodiscard]] bool fuse_swiglu_knob(const char* value);

/// For each op of `ops`: true where it is the dense gate_up_proj GEMM directly followed by the
/// swiglu of the same rows (not a MoE layer's experts), the pairs fp4_gemm_mma_swiglu_launch runs.
[[nodiscard]] std::vector<bool> gate_up_swiglu_pairs(const std::vector<Op>& ops);

}  // namespace racksim::exec
