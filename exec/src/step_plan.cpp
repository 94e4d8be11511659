#include "racksim/exec/step_plan.hpp"

#include <algorithm>
#include <functional>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

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
  if (tokens.prefill.size() != batch.prefill.size() || tokens.decode.size() != batch.decode_contexts.size())
    throw InputError(fmt::format("step tokens give {} chunks and {} decodes; the graph has {} and {}", tokens.prefill.size(),
                                 tokens.decode.size(), batch.prefill.size(), batch.decode_contexts.size()));
  std::set<I> seen;
  auto check_sequence = [&](I seq, I expected, std::string_view what) {
    if (!seen.insert(seq).second) throw InputError(fmt::format("sequence {} appears twice in one step", seq));
    if (pool.tokens(seq) != expected)
      throw InputError(fmt::format("{} of sequence {} expects {} cached tokens; its KV cache holds {}", what, seq, expected, pool.tokens(seq)));
  };
  StepPlan p;
  const I bt = pool.block_tokens();
  auto add_row = [&](I seq, I position, std::int32_t token) {
    if (token < 0 || token >= vocab) throw InputError(fmt::format("token id {} outside the vocabulary 0..{}", token, vocab - 1));
    p.tokens.push_back(token);
    p.positions.push_back(static_cast<std::int32_t>(position));
    p.slots.push_back(kv_slot(pool.table(seq), bt, position));
  };
  for (std::size_t c = 0; c < batch.prefill.size(); ++c) {
    const PrefillChunk& chunk = batch.prefill[c];
    const auto& t = tokens.prefill[c];
    if (static_cast<I>(t.tokens.size()) != chunk.tokens)
      throw InputError(fmt::format("prefill chunk {} has {} tokens; the graph says {}", c, t.tokens.size(), chunk.tokens));
    check_sequence(t.sequence, chunk.cached, "prefill chunk");
    pool.reserve(t.sequence, chunk.cached + chunk.tokens);
    p.segments.push_back({static_cast<std::int32_t>(p.rows), static_cast<std::int32_t>(chunk.tokens), static_cast<std::int32_t>(chunk.cached)});
    for (I i = 0; i < chunk.tokens; ++i) add_row(t.sequence, chunk.cached + i, t.tokens[z(i)]);
    p.rows += chunk.tokens;
    p.max_segment_tokens = std::max(p.max_segment_tokens, chunk.tokens);
    if (chunk.last) {
      p.sampled.push_back(static_cast<std::int32_t>(p.rows - 1));
      p.sampled_sequences.push_back(t.sequence);
    }
  }
  p.prefill_rows = p.rows;
  for (std::size_t d = 0; d < batch.decode_contexts.size(); ++d) {
    const I seq = tokens.decode[d].sequence, ctx = batch.decode_contexts[d];
    check_sequence(seq, ctx, "decode");
    pool.reserve(seq, ctx + 1);
    p.sampled.push_back(static_cast<std::int32_t>(p.rows));
    p.sampled_sequences.push_back(seq);
    add_row(seq, ctx, tokens.decode[d].token);
    ++p.rows;
    p.context_lens.push_back(static_cast<std::int32_t>(ctx + 1));
    p.max_context = std::max(p.max_context, ctx + 1);
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

}  // namespace racksim::exec
