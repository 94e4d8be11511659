#include "racksim/exec/tensor_parallel.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/fp4.hpp"

namespace racksim::exec {

namespace {

using I = std::int64_t;

std::size_t z(I v) { return static_cast<std::size_t>(v); }

}  // namespace

std::vector<std::pair<I, I>> TpLayout::qkv_rows(const ModelConfig& m) const {
  const I hd = m.head_dim, q0 = I{rank} * q_heads * hd, k_base = I{m.heads} * hd, v_base = k_base + I{m.kv_heads} * hd;
  return {{q0, q0 + q_heads * hd},
          {k_base + kv_first * hd, k_base + (kv_first + kv_heads) * hd},
          {v_base + kv_first * hd, v_base + (kv_first + kv_heads) * hd}};
}

std::vector<std::pair<I, I>> TpLayout::gate_up_rows(const ModelConfig& m) const {
  const I g0 = I{rank} * ffn;
  return {{g0, g0 + ffn}, {m.ffn + g0, m.ffn + g0 + ffn}};
}

TpLayout tp_layout(const ModelConfig& m, int rank, int size, DType weights) {
  if (size < 1 || rank < 0 || rank >= size) throw InputError(fmt::format("tensor parallel rank {} of {}: need 0 <= rank < size", rank, size));
  if (size == 1) return TpLayout{0, 1, m.heads, m.kv_heads, 0, m.ffn, m.vocab};  // nothing split
  const I block = weights == DType::mxfp4 ? fp4::kMxfp4Block : weights == DType::nvfp4 ? fp4::kNvfp4Block : 1;
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) throw InputError(fmt::format("tensor_parallel {} does not split model '{}': {}", size, m.id, what));
  };
  need(m.heads % size == 0, fmt::format("heads {} is not a multiple of {}", m.heads, size));
  need(m.ffn % size == 0, fmt::format("ffn {} is not a multiple of {}", m.ffn, size));
  need(m.vocab % size == 0, fmt::format("vocab {} is not a multiple of {} (lm_head is split by vocabulary)", m.vocab, size));
  need(m.kv_heads % size == 0 || size % m.kv_heads == 0,
       fmt::format("kv_heads {} and {} do not divide one another (KV heads are split, or replicated)", m.kv_heads, size));
  TpLayout t;
  t.rank = rank;
  t.size = size;
  t.q_heads = m.heads / size;
  t.kv_heads = m.kv_heads >= size ? m.kv_heads / size : 1;
  t.kv_first = m.kv_heads >= size ? I{rank} * t.kv_heads : I{rank} / (size / m.kv_heads);
  t.ffn = m.ffn / size;
  t.vocab = m.vocab / size;
  need(t.q_heads * m.head_dim % block == 0 && t.ffn % block == 0,
       fmt::format("a rank's o_proj and down_proj inputs ({} and {}) must be whole {}-value blocks", t.q_heads * m.head_dim, t.ffn, block));
  return t;
}

LinearWeight take_rows(const LinearWeight& w, std::span<const std::pair<I, I>> ranges) {
  LinearWeight s;
  s.in = w.in;
  const bool packed = !w.packed.packed.empty();
  if (packed) {
    s.packed.format = w.packed.format;
    s.packed.cols = w.packed.cols;
    s.packed.tensor_scale = w.packed.tensor_scale;
  }
  for (const auto& [r0, r1] : ranges) {
    RACKSIM_ASSERT(0 <= r0 && r0 <= r1 && r1 <= w.out, "row range inside the weight");
    s.out += r1 - r0;
    s.values.insert(s.values.end(), w.values.begin() + static_cast<std::ptrdiff_t>(r0 * w.in),
                    w.values.begin() + static_cast<std::ptrdiff_t>(r1 * w.in));
    if (packed) {
      const I rb = w.packed.row_bytes(), sb = w.packed.blocks_per_row();
      s.packed.packed.insert(s.packed.packed.end(), w.packed.packed.begin() + static_cast<std::ptrdiff_t>(r0 * rb),
                             w.packed.packed.begin() + static_cast<std::ptrdiff_t>(r1 * rb));
      s.packed.scales.insert(s.packed.scales.end(), w.packed.scales.begin() + static_cast<std::ptrdiff_t>(r0 * sb),
                             w.packed.scales.begin() + static_cast<std::ptrdiff_t>(r1 * sb));
    }
  }
  s.packed.rows = packed ? s.out : 0;
  return s;
}

LinearWeight take_cols(const LinearWeight& w, I c0, I c1) {
  const bool packed = !w.packed.packed.empty();
  const I bs = packed ? w.packed.block() : 1;
  RACKSIM_ASSERT(0 <= c0 && c0 < c1 && c1 <= w.in && c0 % bs == 0 && (c1 % bs == 0 || c1 == w.in), "column range on block boundaries");
  LinearWeight s;
  s.out = w.out;
  s.in = c1 - c0;
  s.values.reserve(z(s.out * s.in));
  for (I r = 0; r < w.out; ++r)
    s.values.insert(s.values.end(), w.values.begin() + static_cast<std::ptrdiff_t>(r * w.in + c0),
                    w.values.begin() + static_cast<std::ptrdiff_t>(r * w.in + c1));
  if (packed) {
    s.packed.format = w.packed.format;
    s.packed.rows = w.out;
    s.packed.cols = s.in;
    s.packed.tensor_scale = w.packed.tensor_scale;
    const I rb = w.packed.row_bytes(), sb = w.packed.blocks_per_row();
    for (I r = 0; r < w.out; ++r) {
      const auto p = w.packed.packed.begin() + static_cast<std::ptrdiff_t>(r * rb);
      s.packed.packed.insert(s.packed.packed.end(), p + c0 / 2, p + (c1 + 1) / 2);
      const auto q = w.packed.scales.begin() + static_cast<std::ptrdiff_t>(r * sb);
      s.packed.scales.insert(s.packed.scales.end(), q + c0 / bs, q + (c1 + bs - 1) / bs);
    }
  }
  return s;
}

ModelWeights shard_weights(const ModelWeights& w, const ModelConfig& m, const TpLayout& t) {
  ModelWeights s;
  s.embed_tokens = w.embed_tokens;
  s.final_norm = w.final_norm;
  const I H = m.hidden;
  s.lm_head.assign(w.lm_head.begin() + static_cast<std::ptrdiff_t>(I{t.rank} * t.vocab * H),
                   w.lm_head.begin() + static_cast<std::ptrdiff_t>((I{t.rank} + 1) * t.vocab * H));
  const I attn0 = I{t.rank} * t.q_heads * m.head_dim, attn1 = attn0 + t.q_heads * m.head_dim;
  const I f0 = I{t.rank} * t.ffn;
  for (const LayerWeights& l : w.layers) {
    LayerWeights r;
    r.input_norm = l.input_norm;
    r.post_attn_norm = l.post_attn_norm;
    if (m.qk_norm_per_layer()) {
      // MiniMax-M2: one weight per q and k element of the layer; the rank's heads' slices.
      const I kv0 = t.kv_first * m.head_dim;
      r.q_norm.assign(l.q_norm.begin() + static_cast<std::ptrdiff_t>(attn0), l.q_norm.begin() + static_cast<std::ptrdiff_t>(attn1));
      r.k_norm.assign(l.k_norm.begin() + static_cast<std::ptrdiff_t>(kv0),
                      l.k_norm.begin() + static_cast<std::ptrdiff_t>(kv0 + t.kv_heads * m.head_dim));
    } else {
      r.q_norm = l.q_norm;  // per-head norms: every rank's heads use the same weights
      r.k_norm = l.k_norm;
    }
    r.qkv_proj = take_rows(l.qkv_proj, t.qkv_rows(m));
    r.o_proj = take_cols(l.o_proj, attn0, attn1);
    if (m.is_moe()) {
      // Every expert split as a dense MLP is (its gate and up rows, its down columns: the graph's
      // moe_tp = tp with expert_parallel 1); the router whole on every rank, so every rank routes
      // every token alike, and moe_all_reduce sums the ranks' partial expert outputs.
      r.router = l.router;
      r.router_bias = l.router_bias;
      for (const LinearWeight& e : l.expert_gate_up) r.expert_gate_up.push_back(take_rows(e, t.gate_up_rows(m)));
      for (const LinearWeight& e : l.expert_down) r.expert_down.push_back(take_cols(e, f0, f0 + t.ffn));
    } else {
      r.gate_up_proj = take_rows(l.gate_up_proj, t.gate_up_rows(m));
      r.down_proj = take_cols(l.down_proj, f0, f0 + t.ffn);
    }
    s.layers.push_back(std::move(r));
  }
  return s;
}

// ---- ThreadTpGroup ----------------------------------------------------------------------------

class ThreadTpGroup::Rank final : public HostTpComm {
 public:
  Rank(ThreadTpGroup& g, int r) : g_(g), r_(r) {}
  [[nodiscard]] int rank() const override { return r_; }
  [[nodiscard]] int size() const override { return g_.size_; }
  void all_reduce_sum(std::span<float> data) override {
    g_.reduce_slots_[z(r_)] = data;
    g_.barrier_.arrive_and_wait();
    std::vector<float> sum(data.size(), 0.0f);
    for (const auto& slot : g_.reduce_slots_) {
      RACKSIM_ASSERT(slot.size() == data.size(), "every rank reduces the same count");
      for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += slot[i];
    }
    g_.barrier_.arrive_and_wait();  // every rank has read every slot before any is overwritten
    std::copy(sum.begin(), sum.end(), data.begin());
  }
  void all_gather(std::span<const float> mine, std::span<float> all) override {
    RACKSIM_ASSERT(all.size() == mine.size() * z(g_.size_), "all holds size x mine");
    g_.gather_slots_[z(r_)] = mine;
    g_.barrier_.arrive_and_wait();
    for (std::size_t r = 0; r < g_.gather_slots_.size(); ++r) std::copy(g_.gather_slots_[r].begin(), g_.gather_slots_[r].end(), all.begin() + static_cast<std::ptrdiff_t>(r * mine.size()));
    g_.barrier_.arrive_and_wait();
  }

 private:
  ThreadTpGroup& g_;
  int r_;
};

RankThreads::RankThreads(int size) : errors_(z(size)) {
  RACKSIM_ASSERT(size >= 1, "at least one rank");
  threads_.reserve(z(size - 1));
  try {
    for (int r = 1; r < size; ++r) threads_.emplace_back([this, r] { loop(r); });
  } catch (...) {
    stop();  // the threads already started, else their std::thread would terminate the process
    throw;
  }
}

RankThreads::~RankThreads() { stop(); }

void RankThreads::stop() noexcept {
  {
    const std::lock_guard lock(m_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

std::thread::id RankThreads::thread_of(int r) const {
  RACKSIM_ASSERT(r >= 1 && r < size(), "a worker rank");
  return threads_[z(r - 1)].get_id();
}

void RankThreads::guarded(int r) noexcept {
  try {
    (*work_)(r);
  } catch (...) {
    errors_[z(r)] = std::current_exception();
    bool first = false;
    {
      const std::lock_guard lock(m_);
      first = first_failure_ < 0;
      if (first) first_failure_ = r;
    }
    if (first && on_error_ && *on_error_) (*on_error_)();
  }
}

void RankThreads::loop(int r) {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(m_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    guarded(r);
    {
      const std::lock_guard lock(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void RankThreads::run(const std::function<void(int)>& work, const std::function<void()>& on_error) {
  {
    const std::lock_guard lock(m_);
    work_ = &work;
    on_error_ = &on_error;
    first_failure_ = -1;
    std::fill(errors_.begin(), errors_.end(), nullptr);
    pending_ = size() - 1;
    ++generation_;
  }
  start_.notify_all();
  guarded(0);
  {
    std::unique_lock lock(m_);
    done_.wait(lock, [&] { return pending_ == 0; });
    work_ = nullptr;
    on_error_ = nullptr;
  }
  if (first_failure_ >= 0) std::rethrow_exception(errors_[z(first_failure_)]);
}

void ThreadTpGroup::Barrier::arrive_and_wait() {
  std::unique_lock lock(m_);
  const auto aborted = [] { return Error(ExitCode::internal, "tensor-parallel collective abandoned: another rank failed"); };
  if (aborted_) throw aborted();
  const std::uint64_t phase = phase_;
  if (++arrived_ == n_) {
    arrived_ = 0;
    ++phase_;
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [&] { return phase_ != phase || aborted_; });
  if (phase_ == phase) throw aborted();
}

void ThreadTpGroup::Barrier::abort() noexcept {
  const std::lock_guard lock(m_);
  aborted_ = true;
  cv_.notify_all();
}

void ThreadTpGroup::abort() noexcept { barrier_.abort(); }

ThreadTpGroup::ThreadTpGroup(int size)
    : size_(size), barrier_(size), reduce_slots_(z(size)), gather_slots_(z(size)) {
  RACKSIM_ASSERT(size >= 1, "a group has at least one rank");
  for (int r = 0; r < size; ++r) ranks_.push_back(std::make_unique<Rank>(*this, r));
}

ThreadTpGroup::~ThreadTpGroup() = default;

HostTpComm& ThreadTpGroup::rank(int r) {
  RACKSIM_ASSERT(r >= 0 && r < size_, "rank inside the group");
  return *ranks_[z(r)];
}

}  // namespace racksim::exec
