#include "racksim/exec/paged_kv.hpp"

#include <algorithm>
#include <string_view>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/env_knob.hpp"

namespace racksim::exec {

namespace {

using I = std::int64_t;

std::size_t z(I v) { return static_cast<std::size_t>(v); }

I ceil_div(I a, I b) { return (a + b - 1) / b; }

float element(const std::vector<std::uint8_t>& bytes, const PagedKvLayout& l, I index, float scale) {
  if (l.dtype == DType::fp8) return act::e4m3_value(bytes[z(index)]) * scale;
  const auto bits = static_cast<std::uint16_t>(bytes[z(2 * index)] | (bytes[z(2 * index + 1)] << 8));
  return act::bf16_value(bits);
}

void put(std::vector<std::uint8_t>& bytes, const PagedKvLayout& l, I index, float x, float scale) {
  if (l.dtype == DType::fp8) {
    bytes[z(index)] = act::e4m3_code(x / scale);
  } else {
    const std::uint16_t bits = act::bf16_bits(x);
    bytes[z(2 * index)] = static_cast<std::uint8_t>(bits & 0xFFu);
    bytes[z(2 * index + 1)] = static_cast<std::uint8_t>(bits >> 8);
  }
}

}  // namespace

void PagedKvLayout::check() const {
  if (blocks < 1 || block_tokens < 1 || kv_heads < 1 || head_dim < 8 || head_dim % 8 != 0 ||
      (dtype != DType::bf16 && dtype != DType::fp8))
    throw InputError(fmt::format("paged KV cache: {} blocks of {} tokens, {} kv heads of head_dim {}, {}: need sizes >= 1, head_dim "
                                 "a multiple of 8 and dtype bf16 or fp8",
                                 blocks, block_tokens, kv_heads, head_dim, to_string(dtype)));
  if (elements() > (I{1} << 40)) throw InputError(fmt::format("paged KV cache: {} elements is beyond 2^40", elements()));
}

std::int32_t kv_slot(std::span<const std::int32_t> block_table, I block_tokens, I position) {
  if (block_tokens < 1 || position < 0 || position / block_tokens >= static_cast<I>(block_table.size()))
    throw InputError(fmt::format("kv_slot: position {} with {} tokens per block is past a block table of {} blocks", position,
                                 block_tokens, block_table.size()));
  const std::int32_t block = block_table[z(position / block_tokens)];
  if (block < 0) throw InputError(fmt::format("kv_slot: block id {} for position {} is negative", block, position));
  const I slot = I{block} * block_tokens + position % block_tokens;
  if (slot > I{INT32_MAX}) throw InputError(fmt::format("kv_slot: slot {} does not fit int32", slot));
  return static_cast<std::int32_t>(slot);
}

HostPagedKv::HostPagedKv(const PagedKvLayout& l, float ks, float vs) : layout(l), k_scale(ks), v_scale(vs) {
  layout.check();
  if (!(ks > 0.0f) || !(vs > 0.0f)) throw InputError(fmt::format("paged KV cache: scales {} and {} must be positive", ks, vs));
  k.assign(z(layout.bytes()), 0);
  v.assign(z(layout.bytes()), 0);
}

float HostPagedKv::k_value(I block, I head, I row, I dim) const { return element(k, layout, layout.index(block, head, row, dim), k_scale); }

float HostPagedKv::v_value(I block, I head, I row, I dim) const { return element(v, layout, layout.index(block, head, row, dim), v_scale); }

void HostPagedKv::store(std::int32_t slot, std::span<const float> k_row, std::span<const float> v_row) {
  const I width = layout.kv_heads * layout.head_dim;
  if (slot < 0 || slot >= layout.blocks * layout.block_tokens || static_cast<I>(k_row.size()) != width ||
      static_cast<I>(v_row.size()) != width)
    throw InputError(fmt::format("paged KV store: slot {} of {} or rows of {} and {} values (need {})", slot,
                                 layout.blocks * layout.block_tokens, k_row.size(), v_row.size(), width));
  const I block = slot / layout.block_tokens, row = slot % layout.block_tokens;
  for (I h = 0; h < layout.kv_heads; ++h)
    for (I d = 0; d < layout.head_dim; ++d) {
      const I idx = layout.index(block, h, row, d);
      put(k, layout, idx, k_row[z(h * layout.head_dim + d)], k_scale);
      put(v, layout, idx, v_row[z(h * layout.head_dim + d)], v_scale);
    }
}

void HostPagedKv::gather(std::span<const std::int32_t> block_table, I tokens, std::vector<float>& k_out, std::vector<float>& v_out) const {
  const I width = layout.kv_heads * layout.head_dim;
  k_out.assign(z(tokens * width), 0.0f);
  v_out.assign(z(tokens * width), 0.0f);
  for (I t = 0; t < tokens; ++t) {
    const std::int32_t slot = kv_slot(block_table, layout.block_tokens, t);
    const I block = slot / layout.block_tokens, row = slot % layout.block_tokens;
    if (block >= layout.blocks) throw InputError(fmt::format("paged KV gather: block {} of a cache of {}", block, layout.blocks));
    for (I h = 0; h < layout.kv_heads; ++h)
      for (I d = 0; d < layout.head_dim; ++d) {
        k_out[z(t * width + h * layout.head_dim + d)] = k_value(block, h, row, d);
        v_out[z(t * width + h * layout.head_dim + d)] = v_value(block, h, row, d);
      }
  }
}

I decode_partition_tokens(I batch, I kv_heads, I max_context, int sm_count) {
  if (batch < 1 || kv_heads < 1 || max_context < 1 || sm_count < 1)
    throw InputError(fmt::format("decode_partition_tokens: batch {}, kv heads {}, context {}, SMs {}: all must be >= 1", batch, kv_heads,
                                 max_context, sm_count));
  const I whole = ceil_div(max_context, kAttentionKeyTile) * kAttentionKeyTile;
  const I ctas = batch * kv_heads, want = kDecodeCtasPerSm * I{sm_count};
  if (ctas >= want) return whole;
  const I partitions = ceil_div(want, ctas);
  return std::min(whole, std::max(kDecodeMinPartition, ceil_div(ceil_div(max_context, partitions), kAttentionKeyTile) * kAttentionKeyTile));
}

bool attention_decode_keys_as_m(const char* value) {
  return env_choice("RACKSIM_ATTENTION_DECODE", value, {"keys", "rows"}).value_or(0) == 0;
}

bool attention_fp8_single_p(const char* value) {
  return env_choice("RACKSIM_ATTENTION_FP8_P", value, {"split", "single"}).value_or(0) == 1;
}

I decode_partitions(I context, I partition_tokens) {
  if (context < 1 || partition_tokens < 1)
    throw InputError(fmt::format("decode_partitions: context {} and partition {} must be >= 1", context, partition_tokens));
  return ceil_div(context, partition_tokens);
}

I decode_workspace_bytes(I batch, I heads, I head_dim, I max_context, I partition_tokens) {
  const I parts = decode_partitions(max_context, partition_tokens);
  if (parts == 1) return 0;
  return batch * heads * parts * (head_dim + 2) * I{sizeof(float)};
}

}  // namespace racksim::exec
