#pragma once
/// The paged KV cache the CUDA attention kernels read (cuda_ops.hpp), described in plain C++ so
/// that the CPU side can lay it out, fill a host copy bit-identically and plan the kernels'
/// launches: its geometry, cache slots, prefill segments and the split-K plan of decode.

#include <cstdint>
#include <span>
#include <vector>

#include "racksim/common/dtype.hpp"

namespace racksim::exec {

/// Keys per tile of the attention kernels (exec/cuda/attention.cu); a decode partition holds a
/// whole number of tiles.
inline constexpr std::int64_t kAttentionKeyTile = 64;

/// Geometry of one layer's paged KV cache: K and V each hold `blocks` blocks of
/// [kv_heads][block_tokens][head_dim] elements (one head's rows of a block are contiguous: what
/// one attention CTA streams). Elements are bf16, or fp8 (E4M3, value = code x a per-tensor FP32
/// scale). A sequence's token t lives in block block_table[t / block_tokens], row t % block_tokens.
struct PagedKvLayout {
  std::int64_t blocks = 0;
  std::int64_t block_tokens = 32;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;
  DType dtype = DType::bf16;  ///< bf16 or fp8

  /// InputError unless every size is >= 1, head_dim is a multiple of 8 (16-byte rows of BF16)
  /// and dtype is bf16 or fp8.
  void check() const;
  /// Bytes of one element: 2 (bf16) or 1 (fp8).
  [[nodiscard]] std::int64_t element_bytes() const noexcept { return dtype == DType::fp8 ? 1 : 2; }
  /// Elements of K (V has as many).
  [[nodiscard]] std::int64_t elements() const noexcept { return blocks * kv_heads * block_tokens * head_dim; }
  /// Bytes of K (V has as many).
  [[nodiscard]] std::int64_t bytes() const noexcept { return elements() * element_bytes(); }
  /// Element index of (block, kv head, row within the block, dim).
  [[nodiscard]] std::int64_t index(std::int64_t block, std::int64_t head, std::int64_t row, std::int64_t dim) const noexcept {
    return ((block * kv_heads + head) * block_tokens + row) * head_dim + dim;
  }
};

/// Cache slot of token `position` of a sequence: block x block_tokens + row, with block =
/// block_table[position / block_tokens]. InputError past the table or for a negative block id.
[[nodiscard]] std::int32_t kv_slot(std::span<const std::int32_t> block_table, std::int64_t block_tokens, std::int64_t position);

/// A host copy of one layer's paged K and V caches: what the CUDA host wrappers upload and
/// return, and what tests read back. store() quantizes exactly as the append kernel does.
struct HostPagedKv {
  PagedKvLayout layout;
  std::vector<std::uint8_t> k, v;  ///< layout.bytes() each; BF16 bit patterns little-endian, or E4M3 codes
  float k_scale = 1.0f;            ///< fp8: K value = code x k_scale (1 for bf16)
  float v_scale = 1.0f;

  HostPagedKv() = default;
  /// A zero-filled cache of `layout` (checked) with the given FP8 scales.
  explicit HostPagedKv(const PagedKvLayout& layout, float k_scale = 1.0f, float v_scale = 1.0f);
  /// Value of one element of K or V.
  [[nodiscard]] float k_value(std::int64_t block, std::int64_t head, std::int64_t row, std::int64_t dim) const;
  [[nodiscard]] float v_value(std::int64_t block, std::int64_t head, std::int64_t row, std::int64_t dim) const;
  /// Stores one token's K and V (kv_heads x head_dim values each) at `slot`: bf16 rounds to
  /// nearest even; fp8 stores e4m3_code(x / scale) (activation_formats.hpp).
  void store(std::int32_t slot, std::span<const float> k_row, std::span<const float> v_row);
  /// The first `tokens` tokens of a sequence as dense FP32 [tokens x kv_heads x head_dim] K and V
  /// (what attention_one_query reads), scales applied.
  void gather(std::span<const std::int32_t> block_table, std::int64_t tokens, std::vector<float>& k_out, std::vector<float>& v_out) const;
};

/// A prefill chunk as the prefill attention kernel sees it: `tokens` query rows starting at row
/// `q_row` of the q and output arrays, after `cached` tokens of the same sequence already in the
/// cache (the chunk's own K/V appended too); its token i attends to keys 0..cached + i. Its
/// sequence's block table is the segment's row of the block-table array.
struct PrefillSegment {
  std::int32_t q_row = 0;
  std::int32_t tokens = 0;
  std::int32_t cached = 0;
};

/// Whether decode attention runs with the keys as the MMA's M for GQA <= 8 (exec/cuda/attention.cu),
/// from RACKSIM_ATTENTION_DECODE's value: unset or "keys": yes; "rows": the rows-as-M kernel for
/// every group (the same-session A/B). Anything else: InputError naming the variable and value.
[[nodiscard]] bool attention_decode_keys_as_m(const char* value);

/// Whether attention over an FP8 KV cache multiplies V by P rounded once to FP16
/// (exec/cuda/attention.cu), from RACKSIM_ATTENTION_FP8_P's value: "single": yes; unset or
/// "split" (the default): P as hi + lo FP16 halves, two MMAs per P V tile, as BF16 K/V always run.
/// One FP16 P errs by at most 2^-11 p (2^-25 below FP16's normal range), so the output by at most
/// (2^-11 + n 2^-25) vmax over n keys: far below E4M3's own 2^-4 on V, and more exact than
/// FlashInfer's FP8 attention, which rounds P to the KV's own FP8 format. It halves the P V MMAs,
/// which bound FP8 decode attention at batch 64 (67% of copy bandwidth against BF16's 92%, H200,
/// 2026-11-30). Anything else: InputError naming the variable and value.
[[nodiscard]] bool attention_fp8_single_p(const char* value);

/// CTAs per SM that decode_partition_tokens aims for, and the shortest partition it makes (two
/// 16-key steps for each of a CTA's 4 warps). H200, context 4,096, Llama-2-70B heads (2026-11-30,
/// the third and fourth focused runs): at 2 per SM, FP8 at batch 64 x 8 KV heads was one
/// partition, 512 CTAs, 1.3 waves of the keys-as-M kernel's 3 x 132 slots (205 us, 61% of copy);
/// at 8 per SM, 3 partitions (184 us, 68%), but batch 1 (64 partitions of 64 keys) went 18.6 ->
/// 25.6 us and batch 8 FP8 36.6 -> 45.1 us. 4 per SM with >= 128-key partitions keeps batch 1's
/// 32 x 128 and gives batch 64 two partitions.
inline constexpr std::int64_t kDecodeCtasPerSm = 4;
inline constexpr std::int64_t kDecodeMinPartition = 128;

/// Keys per partition of split-K decode attention: enough partitions that batch x kv_heads x
/// partitions CTAs reach kDecodeCtasPerSm per SM (executor.md "Attention": FlashDecoding / vLLM
/// paged_attention_v2), each a multiple of kAttentionKeyTile and at least kDecodeMinPartition
/// (or the whole context, if shorter); one partition of the whole context when batch x kv_heads
/// alone reaches it.
[[nodiscard]] std::int64_t decode_partition_tokens(std::int64_t batch, std::int64_t kv_heads, std::int64_t max_context, int sm_count);

/// Partitions of a context under `partition_tokens`: ceil(context / partition_tokens).
[[nodiscard]] std::int64_t decode_partitions(std::int64_t context, std::int64_t partition_tokens);

/// Bytes of the decode workspace: per (sequence, query head, partition) head_dim partial
/// outputs plus the running max and sum, FP32; 0 when every context fits one partition.
[[nodiscard]] std::int64_t decode_workspace_bytes(std::int64_t batch, std::int64_t heads, std::int64_t head_dim, std::int64_t max_context,
                                                  std::int64_t partition_tokens);

}  // namespace racksim::exec
