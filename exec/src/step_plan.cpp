#include "racksim/exec/step_plan.hpp"

#include <algorithm>
#include <functional>
#include <string_view>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/env_knob.hpp"

namespace racksim::exec {

namespace {

using I = std::int64_t;

std::size_t z(I v) { return static_cast<std::size_t>(v); }

I ceil_div(I a, I b) { return (a + b - 1) / b; }

}  // namespace

BlockPool::BlockPool(I blocks, I block_tokens) : blocks_(blocks), block_tokens_(block_tokens) {
  if (blocks < 1 || block_tokens < 1 || blocks > INT32_MAX / block_tokens)
    throw InputError(fmt::format("KV block pool: {} blocks of {} tokens is not a usable size", blocks, block_tokens));
  free_.reserve(z(blocks));
  for (I b = 0; b < blocks; ++b) free_.push_back(static_cast<std::int32_t>(b));
  std::make_heap(free_.begin(), free_.end(), std::greater<>());
}

void BlockPool::reserve(I sequence, I tokens) {
  Entry& e = seqs_[sequence];
  const I need = ceil_div(tokens, block_tokens_) - static_cast<I>(e.table.size());
  if (need > free_blocks())
    throw InfeasibleError(fmt::format("KV cache full: sequence {} needs {} more blocks of {} tokens, {} of {} are free", sequence, need,
                                      block_tokens_, free_blocks(), blocks_));
  for (I i = 0; i < need; ++i) {
    std::pop_heap(free_.begin(), free_.end(), std::greater<>());
    e.table.push_back(free_.back());
    free_.pop_back();
  }
}

I BlockPool::tokens(I sequence) const {
  const auto it = seqs_.find(sequence);
  return it == seqs_.end() ? 0 : it->second.tokens;
}

void BlockPool::set_tokens(I sequence, I tokens) {
  Entry& e = seqs_.at(sequence);
  RACKSIM_ASSERT(tokens <= static_cast<I>(e.table.size()) * block_tokens_, "tokens written fit the reserved blocks");
  e.tokens = tokens;
}

void BlockPool::truncate(I sequence, I tokens, bool keep_blocks) {
  const I held = this->tokens(sequence);
  if (tokens < 0 || tokens > held)
    throw InputError(fmt::format("cannot truncate sequence {} to {} tokens: its KV cache holds {}", sequence, tokens, held));
  if (held == 0) return;
  Entry& e = seqs_.at(sequence);
  const I keep = keep_blocks ? static_cast<I>(e.table.size()) : ceil_div(tokens, block_tokens_);
  while (static_cast<I>(e.table.size()) > keep) {
    free_.push_back(e.table.back());
    std::push_heap(free_.begin(), free_.end(), std::greater<>());
    e.table.pop_back();
  }
  e.tokens = tokens;
}

void BlockPool::release(I sequence) {
  const auto it = seqs_.find(sequence);
  if (it == seqs_.end()) return;
  for (std::int32_t b : it->second.table) {
    free_.push_back(b);
    std::push_heap(free_.begin(), free_.end(), std::greater<>());
  }
  seqs_.erase(it);
}

const std::vector<std::int32_t>& BlockPool::table(I sequence) const {
  static const std::vector<std::int32_t> kEmpty;
  const auto it = seqs_.find(sequence);
  return it == seqs_.end() ? kEmpty : it->second.table;
}

StepPlan plan_step(const StepBatch& batch, const StepTokens& tokens, I vocab, BlockPool& pool) {
  // Every check first (CpuReference's), so a refused step reserves nothing.
  const StepRows layout = step_rows(batch, tokens, vocab, [&](I seq) { return pool.tokens(seq); });
  StepPlan p;
  for (std::size_t c = 0; c < batch.prefill.size(); ++c) {
    const PrefillChunk& chunk = batch.prefill[c];
    pool.reserve(tokens.prefill[c].sequence, chunk.cached + chunk.tokens);
    p.segments.push_back({static_cast<std::int32_t>(p.prefill_rows), static_cast<std::int32_t>(chunk.tokens),
                          static_cast<std::int32_t>(chunk.cached)});
    p.prefill_rows += chunk.tokens;
    p.max_segment_tokens = std::max(p.max_segment_tokens, chunk.tokens);
  }
  for (std::size_t d = 0; d < batch.decode_contexts.size(); ++d) {
    const I ctx = batch.decode_contexts[d];
    pool.reserve(tokens.decode[d].sequence, ctx + 1);
    p.context_lens.push_back(static_cast<std::int32_t>(ctx + 1));
    p.max_context = std::max(p.max_context, ctx + 1);
  }
  for (const auto& r : layout.rows) {
    p.tokens.push_back(r.token);
    p.positions.push_back(static_cast<std::int32_t>(r.position));
    p.slots.push_back(kv_slot(pool.table(r.sequence), pool.block_tokens(), r.position));
  }
  p.rows = static_cast<I>(layout.rows.size());
  for (I row : layout.sampled) {
    p.sampled.push_back(static_cast<std::int32_t>(row));
    p.sampled_sequences.push_back(layout.rows[z(row)].sequence);
  }
  p.decodes = static_cast<I>(batch.decode_contexts.size());
  // Block tables padded with -1 to the longest one.
  auto tables = [&](auto sequence_of, std::size_t count, I& stride, std::vector<std::int32_t>& out) {
    stride = 1;
    for (std::size_t i = 0; i < count; ++i) stride = std::max<I>(stride, static_cast<I>(pool.table(sequence_of(i)).size()));
    out.assign(count * z(stride), -1);
    for (std::size_t i = 0; i < count; ++i) {
      const auto& t = pool.table(sequence_of(i));
      std::copy(t.begin(), t.end(), out.begin() + static_cast<std::ptrdiff_t>(i * z(stride)));
    }
  };
  tables([&](std::size_t i) { return tokens.decode[i].sequence; }, tokens.decode.size(), p.decode_table_stride, p.decode_tables);
  tables([&](std::size_t i) { return tokens.prefill[i].sequence; }, tokens.prefill.size(), p.prefill_table_stride, p.prefill_tables);
  return p;
}

void commit_step(const StepBatch& batch, const StepTokens& tokens, BlockPool& pool) {
  for (std::size_t c = 0; c < batch.prefill.size(); ++c)
    pool.set_tokens(tokens.prefill[c].sequence, batch.prefill[c].cached + batch.prefill[c].tokens);
  for (std::size_t d = 0; d < batch.decode_contexts.size(); ++d) pool.set_tokens(tokens.decode[d].sequence, batch.decode_contexts[d] + 1);
}

bool fuse_norm_knob(const char* value) { return env_choice("RACKSIM_FUSE_NORM", value, {"off", "on"}).value_or(0) == 1; }

bool pdl_knob(const char* value) { return env_choice("RACKSIM_PDL", value, {"off", "on"}).value_or(0) == 1; }

bool fuse_swiglu_knob(const char* value) { return env_choice("RACKSIM_FUSE_SWIGLU", value, {"off", "on"}).value_or(0) == 1; }

std::vector<bool> gate_up_swiglu_pairs(const std::vector<Op>& ops) {
  std::vector<bool> out(ops.size(), false);
  for (std::size_t i = 0; i + 1 < ops.size(); ++i) {
    const Op& a = ops[i];
    const Op& b = ops[i + 1];
    out[i] = a.kind == OpKind::gemm && a.role() == "gate_up_proj" && b.kind == OpKind::swiglu && b.role() == "swiglu" && a.m == b.m;
  }
  return out;
}

std::vector<bool> residual_norm_pairs(const std::vector<Op>& ops) {
  std::vector<bool> out(ops.size(), false);
  for (std::size_t i = 0; i + 1 < ops.size(); ++i) {
    const Op& a = ops[i];
    const Op& b = ops[i + 1];
    const std::string_view role = b.role();
    out[i] = a.kind == OpKind::residual_add && b.kind == OpKind::rmsnorm && a.m == b.m &&
             (role == "input_norm" || role == "post_attn_norm" || role == "final_norm");
  }
  return out;
}

}  // namespace racksim::exec
