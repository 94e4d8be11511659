#include "racksim/exec/executor.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/common/percentile.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/cuda_bench.hpp"
#include "racksim/exec/cpu_reference.hpp"
#include "racksim/exec/step_backend.hpp"
#include "racksim/exec/step_plan.hpp"
#include "racksim/exec/tensor_parallel.hpp"

namespace racksim::exec {

namespace {

using I = std::int64_t;
std::size_t z(int v) { return static_cast<std::size_t>(v); }
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// bench's statistics of the samples. A sample under the clock's resolution (CUDA events: about
/// 0.5 us) can read 0; it counts as 1 ns, since the schema needs times > 0.
TimingStats stats_of(std::vector<double> v) {
  for (double& x : v) x = std::max(x, 1e-9);
  return timing_stats(v);
}

I parse_positive(const std::string& s, const std::string& option, const std::string& text, bool allow_zero) {
  std::size_t used = 0;
  long long v = -1;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || v < (allow_zero ? 0 : 1))
    throw InputError(fmt::format("{}: '{}' is not a valid shape: '{}' must be an integer >= {} (allowed: prefill:L, prefill:BxL, "
                                 "decode:BxC)",
                                 option, text, s, allow_zero ? 0 : 1));
  return v;
}

/// The per-op samples of one identity over every layer and rep.
struct OpSamples {
  Op op;
  std::vector<double> times;
};

MeasuredOp measured_op(const Op& op) {
  MeasuredOp m;
  m.kind = std::string(to_string(op.kind));
  m.m = op.m;
  m.n = op.n;
  m.k = op.k;
  m.a_dtype = std::string(to_string(op.in_dtype));
  m.w_dtype = std::string(to_string(op.weight_dtype));
  m.c_dtype = std::string(to_string(op.out_dtype));
  if (op.kind == OpKind::attention_prefill || op.kind == OpKind::attention_decode) {
    m.sequences = op.sequences;
    m.pairs = op.attended_pairs;
  }
  if (is_communication(op.kind)) {
    // The step graph's collectives (workloads/src/step_graph.cpp): the TP all-reduces of BF16
    // activations and the FP32 logits' all-gather, `bytes` per rank as nccl-tests counts them.
    m = MeasuredOp{};
    m.kind = std::string(to_string(op.kind));
    m.ranks = op.participants;
    m.bytes = op.comm_bytes;
    m.dtype = op.kind == OpKind::all_gather ? "fp32" : "bf16";
  }
  return m;
}

/// A timed step as a measurement record (kind "step"): its time as the simulator's ops run
/// (StepTiming::measured_s: graph replays, else the eager reps with their min and max), one
/// GPU's FLOPs and HBM bytes per step, and the power window's energy per step and mean power
/// over all the step's GPUs where one ran.
MeasurementRecord step_record(const StepTiming& st, const ModelConfig& model, int gpus, const Precision& precision) {
  MeasuredOp op;
  op.kind = "step";
  op.model = model.id;
  const bool decode = st.shape.kind == ExecShape::Kind::decode;
  op.variant = decode ? "decode" : "prefill";
  op.sequences = st.shape.batch;
  op.m = st.tokens;
  op.n = decode ? st.shape.context : st.shape.tokens;
  op.k = model.layers;
  op.ranks = gpus;
  op.a_dtype = std::string(to_string(precision.activations));
  op.w_dtype = std::string(to_string(precision.weights));
  op.dtype = std::string(to_string(precision.kv_cache));
  MeasurementRecord r;
  r.op = std::move(op);
  r.time_median_s = st.measured_s();
  if (!st.replayed()) {
    r.time_min_s = st.min_s;
    r.time_max_s = st.max_s;
  }
  r.reps = st.replayed() ? st.graph_reps : st.reps;
  r.timing = st.measured_timing();
  if (st.work.flops > 0) r.flops = st.work.flops;
  if (st.work.bytes > 0) r.bytes_moved = st.work.bytes;
  if (st.power.steps > 0) {
    RACKSIM_ASSERT(st.power.gpus == gpus, "a step's power window sums every GPU of its group");
    r.energy_j = st.power.energy_per_step_j();
    r.power_w = st.power.power_w;
    if (st.power.sm_clock_mhz > 0) r.sm_clock_mhz = st.power.sm_clock_mhz;
    r.clock_events = clock_event_names(st.power.clock_events);
  }
  return r;
}

/// The ranks' power windows summed over their GPUs (StepPower::add_gpus), `steps` replays each;
/// none where any rank has none, `why` its reason naming the rank.
std::optional<StepPower> sum_over_ranks(const std::vector<std::optional<StepPower>>& p, const std::vector<std::string>& whys,
                                        std::int64_t steps, std::string* why) {
  StepPower sum;
  sum.steps = steps;
  for (std::size_t r = 0; r < p.size(); ++r) {
    if (!p[r]) {
      if (why) *why = fmt::format("{} (rank {})", whys[r], r);
      return std::nullopt;
    }
    sum.add_gpus(*p[r]);
  }
  return sum;
}

/// Random prompt tokens: mt19937_64's sequence is fixed by the standard; the modulo's bias
/// (vocab / 2^64) is immaterial and the same everywhere.
class TokenSource {
 public:
  TokenSource(std::uint64_t seed, I vocab) : gen_(seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL), vocab_(vocab) {}
  std::vector<std::int32_t> draw(I n) {
    std::vector<std::int32_t> t(static_cast<std::size_t>(n));
    for (auto& x : t) x = static_cast<std::int32_t>(gen_() % static_cast<std::uint64_t>(vocab_));
    return t;
  }

 private:
  std::mt19937_64 gen_;
  I vocab_;
};

/// The CPU reference as a StepBackend.
class CpuBackend final : public StepBackend {
 public:
  CpuBackend(const ModelConfig& model, DType weights, std::uint64_t seed) : ref_(model, weights, seed) {}
  CpuBackend(const ModelConfig& model, DType weights, HostTpComm* tp, ModelWeights rank_weights)
      : ref_(model, weights, tp, std::move(rank_weights)) {}
  StepOutput run(const StepGraph& graph, const StepTokens& tokens, const OpObserver& observer) override {
    return ref_.run(graph, tokens, observer);
  }
  [[nodiscard]] std::int64_t cached_tokens(std::int64_t sequence) const override { return ref_.cached_tokens(sequence); }
  void release(std::int64_t sequence) override { ref_.release(sequence); }
  void truncate(std::int64_t sequence, std::int64_t tokens) override { ref_.truncate(sequence, tokens); }
  [[nodiscard]] std::string describe() const override { return "cpu (racksim CPU reference, one thread)"; }

 private:
  CpuReference ref_;
};

/// Ends the ranks' collectives after one failed (TpThreads).
struct NoComms {};  // tp_rank_threads: the ranks own whatever they meet in
void abort_comms(NoComms&) noexcept {}
void abort_comms(std::unique_ptr<ThreadTpGroup>& g) noexcept { g->abort(); }
void abort_comms(std::vector<std::unique_ptr<DeviceTpComm>>& comms) noexcept {
  for (auto& c : comms) c->abort();
}

/// Tensor-parallel ranks (tensor_parallel.hpp) as threads of this process, each rank a backend
/// of its own (a CPU reference rank, or a CUDA step executor on its GPU): every step runs on all
/// ranks at once, meeting in the collectives; rank 0's op times are the observer's and its
/// outputs the step's. `Comms` owns what the ranks' communicators live in (declared first, so
/// the ranks go before it).
template <class Comms>
class TpThreads final : public StepBackend {
 public:
  TpThreads(Comms comms, std::vector<std::unique_ptr<StepBackend>> ranks, std::string describe)
      : comms_(std::move(comms)), ranks_(std::move(ranks)), describe_(std::move(describe)) {}
  StepOutput run(const StepGraph& graph, const StepTokens& tokens, const OpObserver& observer) override {
    std::vector<StepOutput> out(ranks_.size());
    on_all_ranks([&](int r) { out[z(r)] = ranks_[z(r)]->run(graph, tokens, r == 0 ? observer : OpObserver{}); });
    for (std::size_t r = 1; r < out.size(); ++r)
      RACKSIM_ASSERT(out[r].next_tokens == out[0].next_tokens, "tensor-parallel ranks sample the same tokens");
    return std::move(out[0]);
  }
  std::optional<double> replay_last_step() override {
    // All ranks or none: a rank that replays alone would wait in its captured all-reduces for
    // ranks that do not (GPUs of different kinds may take different MoE paths, one not capturable).
    if (!can_replay_last_step()) return std::nullopt;
    std::vector<std::optional<double>> t(ranks_.size());
    on_all_ranks([&](int r) { t[z(r)] = ranks_[z(r)]->replay_last_step(); });
    return t[0];
  }
  [[nodiscard]] bool can_replay_last_step() const override {
    return std::all_of(ranks_.begin(), ranks_.end(), [](const auto& r) { return r->can_replay_last_step(); });
  }
  /// Every rank's window at once (their captured collectives meet), summed over the GPUs; the
  /// window is the longest rank's. Any rank without power: none (its `why`, naming the rank).
  std::optional<StepPower> power_last_step(std::int64_t steps, std::string* why) override {
    if (!can_replay_last_step()) {
      if (why) *why = "power unavailable: a rank cannot replay its step";
      return std::nullopt;
    }
    std::vector<std::optional<StepPower>> p(ranks_.size());
    std::vector<std::string> whys(ranks_.size());
    on_all_ranks([&](int r) { p[z(r)] = ranks_[z(r)]->power_last_step(steps, &whys[z(r)]); });
    return sum_over_ranks(p, whys, steps, why);
  }
  [[nodiscard]] bool measures_power() const override {
    return std::all_of(ranks_.begin(), ranks_.end(), [](const auto& r) { return r->measures_power(); });
  }
  /// Every rank's meter, summed at stop() as power_last_step sums (no rank thread needed: the
  /// meters read NVML on the host).
  [[nodiscard]] std::unique_ptr<PowerMeter> power_meter() override {
    if (!measures_power()) return nullptr;
    struct Group final : PowerMeter {
      std::vector<std::unique_ptr<PowerMeter>> meters;
      std::optional<StepPower> stop(std::string* why) override {
        std::vector<std::optional<StepPower>> p(meters.size());
        std::vector<std::string> whys(meters.size());
        for (std::size_t r = 0; r < meters.size(); ++r) p[r] = meters[r]->stop(&whys[r]);
        return sum_over_ranks(p, whys, 0, why);
      }
    };
    auto g = std::make_unique<Group>();
    for (auto& r : ranks_) g->meters.push_back(r->power_meter());
    return g;
  }
  [[nodiscard]] std::int64_t cached_tokens(std::int64_t sequence) const override { return ranks_[0]->cached_tokens(sequence); }
  void release(std::int64_t sequence) override {
    for (auto& r : ranks_) r->release(sequence);
  }
  void truncate(std::int64_t sequence, std::int64_t tokens) override {
    for (auto& r : ranks_) r->truncate(sequence, tokens);
  }
  [[nodiscard]] std::string describe() const override { return describe_; }
  /// Rank 0's; where the ranks' tuners (RACKSIM_FP4_MMA_TUNE=on: each GPU times itself) picked
  /// differently, each rank's picks after it. The times in it are rank 0's.
  [[nodiscard]] std::string linear_path() const override {
    const std::string first = ranks_[0]->linear_path(), picks = ranks_[0]->tuned_picks();
    std::string each;
    bool differ = false;
    for (std::size_t r = 0; r < ranks_.size(); ++r) {
      const std::string p = ranks_[r]->tuned_picks();
      differ = differ || p != picks;
      each += fmt::format("{}rank {}: {}", r == 0 ? "" : " | ", r, p);
    }
    if (picks.empty() && !differ) return first;
    return differ ? fmt::format("{} (rank 0's times; the ranks picked differently: {})", first, each)
                  : fmt::format("{} (rank 0's times; every rank picked the same)", first);
  }
  [[nodiscard]] std::string linear_padding_note() const override { return ranks_[0]->linear_padding_note(); }

 private:
  /// f(rank) on every rank at once (rank 0 on this thread, the others on their own threads,
  /// kept from step to step); the first failure rethrown after all returned. A rank that fails
  /// aborts the communicators at once, so the others are not left waiting in a collective it
  /// never joins (they fail too; the first failure is reported).
  void on_all_ranks(const std::function<void(int)>& f) {
    threads_.run(f, [this] { abort_comms(comms_); });
  }

  Comms comms_;
  std::vector<std::unique_ptr<StepBackend>> ranks_;
  std::string describe_;
  RankThreads threads_{static_cast<int>(ranks_.size())};  // last: joined before the ranks go
};

/// The CPU reference's TP ranks over a ThreadTpGroup.
std::unique_ptr<StepBackend> cpu_tp_backend(const ModelConfig& model, DType weights, std::uint64_t seed, int tp) {
  auto group = std::make_unique<ThreadTpGroup>(tp);
  std::vector<std::unique_ptr<StepBackend>> ranks;
  // The model generated once and sharded: the ranks together hold one model's weights.
  const ModelWeights full = generate_weights(model, weights, seed);
  for (int r = 0; r < tp; ++r)
    ranks.push_back(std::make_unique<CpuBackend>(model, weights, &group->rank(r),
                                                 shard_weights(full, model, tp_layout(model, r, tp, weights))));
  return std::make_unique<TpThreads<std::unique_ptr<ThreadTpGroup>>>(std::move(group), std::move(ranks),
                                                                      fmt::format("cpu (racksim CPU reference, tensor parallel {} as threads)", tp));
}

/// The CUDA step executor's TP ranks on devices first..first+tp-1 of this process, over NCCL.
std::unique_ptr<StepBackend> cuda_tp_backend(const ModelConfig& model, const Precision& precision, CudaStepOptions base, int tp) {
  std::vector<int> devices;
  for (int r = 0; r < tp; ++r) devices.push_back(base.device + r);
  auto comms = make_device_tp_comms(devices);
  std::vector<std::unique_ptr<StepBackend>> ranks;
  for (int r = 0; r < tp; ++r) {
    CudaStepOptions o = base;
    o.device = devices[static_cast<std::size_t>(r)];
    o.tp = comms[static_cast<std::size_t>(r)].get();
    o.tp_size = tp;
    ranks.push_back(make_cuda_step_backend(model, precision, o));
  }
  std::string what = fmt::format("tensor parallel {} over cuda:{}..{} (NCCL): {}", tp, devices.front(), devices.back(), ranks[0]->describe());
  return std::make_unique<TpThreads<std::vector<std::unique_ptr<DeviceTpComm>>>>(std::move(comms), std::move(ranks), std::move(what));
}

/// Runs the step shapes and the serving loop on a backend.
class Runner {
 public:
  Runner(StepBackend& backend, const ModelConfig& model, const Precision& precision, const ExecOptions& o, ExecReport& report)
      : model_(model), precision_(precision), o_(o), report_(report), ref_(backend), tokens_(o.seed, model.vocab) {
    deployment_.tensor_parallel = o.tensor_parallel;
  }

  void time_shape(const ExecShape& s) {
    const StepBatch batch = s.kind == ExecShape::Kind::prefill ? StepBatch::prefill_only(s.batch, s.tokens) : StepBatch::decode(s.batch, s.context);
    const StepGraph graph(model_, batch, deployment_, precision_);
    StepTokens t;
    const I base = next_sequence_;
    next_sequence_ += s.batch;
    if (s.kind == ExecShape::Kind::prefill) {
      for (I b = 0; b < s.batch; ++b) t.prefill.push_back({base + b, tokens_.draw(s.tokens)});
    } else {
      for (I b = 0; b < s.batch; ++b) {
        fill_cache(base + b, s.context);
        t.decode.push_back({base + b, tokens_.draw(1)[0]});
      }
    }
    std::vector<double> times;
    std::map<OpKind, double> by_kind;  // summed over the timed reps (an enum key: no string per op in the timed loop)
    const std::function<void(const Op&, double)> timed_observer = [&](const Op& op, double sec) {
      observer_(op, sec);
      by_kind[op.kind] += sec;
    };
    const auto undo = [&] {  // each rep starts from the same caches
      for (I b = 0; b < s.batch; ++b) {
        if (s.kind == ExecShape::Kind::prefill) ref_.release(base + b);
        else ref_.truncate(base + b, s.context);
      }
    };
    for (int rep = 0; rep < o_.warmup + o_.reps; ++rep) {
      const bool timed = rep >= o_.warmup;
      const auto t0 = Clock::now();
      ref_.run(graph, t, timed ? timed_observer : std::function<void(const Op&, double)>{});
      if (timed) times.push_back(seconds_since(t0));
      undo();
    }
    // Decode steps again as one captured graph each (backends that have graphs): the caches were
    // truncated back to the context, and a replay does not advance them.
    std::vector<double> graph_times;
    const auto every_rank_replays = [&] {
      const bool mine = ref_.can_replay_last_step();
      return o_.agree_replay ? o_.agree_replay(mine) : mine;
    };
    if (s.kind == ExecShape::Kind::decode && every_rank_replays())
      for (int rep = 0; rep < o_.reps; ++rep) {
        const auto replay = ref_.replay_last_step();
        if (!replay) break;
        graph_times.push_back(*replay);
      }
    // The power window: the step back to back for power_seconds (at least once), energy per step
    // and mean power through NVML, before the caches are released: its captured graph replayed
    // where it has one, else run eagerly as the timed reps ran (a prefill; a decode step that
    // cannot be captured), between a power meter's open and stop.
    StepPower power;
    std::string power_note, power_timing;
    const bool by_graph = !graph_times.empty();
    if (o_.power_seconds > 0 && (by_graph || ref_.measures_power())) {
      int n = power_window_steps(o_.power_seconds, by_graph ? stats_of(graph_times).median_s : stats_of(times).median_s);
      if (o_.agree_power_steps) n = o_.agree_power_steps(n);
      std::optional<StepPower> p;
      if (by_graph) {
        p = ref_.power_last_step(n, &power_note);
      } else {
        std::unique_ptr<PowerMeter> meter = ref_.power_meter();
        for (int i = 0; i < n; ++i) {
          ref_.run(graph, t, {});
          undo();
        }
        if (meter) p = meter->stop(&power_note);
        if (p) p->steps = n;
      }
      power_timing = by_graph ? "graph" : "eager";
      if (o_.combine_power) {
        const bool mine = p.has_value();
        p = o_.combine_power(p);
        if (!p && mine) power_note = "power unavailable: another rank of the MPI run has no power counter";
      }
      if (p) power = *p;
    }
    for (I b = 0; b < s.batch; ++b) ref_.release(base + b);
    StepTiming st;
    st.power = power;
    st.power_note = power_note;
    st.power_timing = power_timing;
    st.shape = s;
    st.tokens = batch.tokens();
    st.work = step_work(graph);
    const TimingStats ts = stats_of(times);
    st.median_s = ts.median_s;
    st.min_s = ts.min_s;
    st.max_s = ts.max_s;
    st.reps = o_.reps;
    if (!graph_times.empty()) st.graph_median_s = stats_of(graph_times).median_s;
    st.graph_reps = static_cast<int>(graph_times.size());
    for (const auto& [kind, sum] : by_kind) st.op_time_by_kind.emplace_back(std::string(to_string(kind)), sum / o_.reps);
    std::sort(st.op_time_by_kind.begin(), st.op_time_by_kind.end(),
              [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
    report_.steps.push_back(st);
  }

  /// The serving loop: every request waiting at time 0 (offline), a closed loop of
  /// serve_concurrency clients (each finish releases the next request), or requests arriving at
  /// serve_arrival_s (an iteration admits those arrived by its start; an idle loop waits for the
  /// next, as the simulator's lane starts at an arrival); iterations built by the simulator's
  /// rules (sim/src/simulation.cpp, try_start): each decoding sequence takes one token, then
  /// prompts already started continue in arrival order, then new prompts are admitted while
  /// fewer than max_batch_size sequences are in flight, all within max_num_tokens; without
  /// chunked prefill a prompt runs whole or waits. The KV cache is not limited on the CPU.
  void serve() {
    const auto& in = o_.serve_input;
    const auto& out = o_.serve_output;
    const ExecServing& sv = o_.serving;
    if (sv.max_batch_size < 1 || sv.max_num_tokens < 1)
      throw InputError(fmt::format("racksim exec: serving.max_batch_size ({}) and serving.max_num_tokens ({}) must be >= 1",
                                   sv.max_batch_size, sv.max_num_tokens));
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (in[i] < 1 || out[i] < 1)
        throw InputError(fmt::format("racksim exec: request {} has {} input and {} output tokens; both must be >= 1", i, in[i], out[i]));
      if (!sv.chunked_prefill && static_cast<I>(in[i]) > sv.max_num_tokens)
        throw InfeasibleError(fmt::format("request {} needs a {}-token prefill but max_num_tokens is {} and chunked_prefill is off", i,
                                          in[i], sv.max_num_tokens));
    }
    struct Live {
      std::size_t req;
      I seq;
      I done = 0;        ///< prompt tokens prefilled
      I generated = 0;   ///< output tokens sampled
      std::int32_t last = 0;
      std::vector<std::int32_t> prompt;
    };
    if (o_.serve_concurrency < 0) throw InputError(fmt::format("racksim exec: serve concurrency {} must be >= 0", o_.serve_concurrency));
    const std::vector<double>& arrivals = o_.serve_arrival_s;
    const bool timed = !arrivals.empty();
    RACKSIM_ASSERT(!o_.serve_clock == !o_.serve_wait_until, "a fake serving clock comes with its wait");
    if (timed) {
      // The simulator's horizon (kMaxSimSeconds): a loop that would sleep longer is refused, not left waiting.
      constexpr double kMaxWaitS = 1e6;
      if (arrivals.back() > kMaxWaitS)
        throw InputError(fmt::format("racksim exec: the last of {} requests arrives {:.6g} s after the first; the serving loop waits up "
                                     "to {:g} s (raise workload.qps, or serve fewer requests)",
                                     arrivals.size(), arrivals.back(), kMaxWaitS));
      if (arrivals.size() != in.size() || o_.serve_concurrency > 0 || (o_.agree_arrived && in.size() > (1u << 30)))
        throw InputError(fmt::format("racksim exec: {} arrival times for {} requests{}", arrivals.size(), in.size(),
                                     o_.serve_concurrency > 0 ? " under a closed loop" : ""));
      for (std::size_t i = 0; i < arrivals.size(); ++i)
        if (!(arrivals[i] >= (i ? arrivals[i - 1] : 0.0)) || !std::isfinite(arrivals[i]))
          throw InputError(fmt::format("racksim exec: request {} arrives at {} s, before request {} or not a time", i, arrivals[i],
                                       i ? i - 1 : 0));
    }
    // Offline: every request waits at the start. Closed loop: the first `concurrency` do; each
    // finish releases the next, admitted from the next iteration on (sim/src/simulation.cpp:
    // an arrival at an iteration's end is seen by the next start).
    const std::size_t first_wave = timed                     ? 0
                                   : o_.serve_concurrency > 0 ? std::min(in.size(), static_cast<std::size_t>(o_.serve_concurrency))
                                                              : in.size();
    std::size_t next_release = first_wave;  // closed loop: the next request a finish releases; timed: the next to arrive
    std::deque<std::size_t> waiting;
    for (std::size_t i = 0; i < first_wave; ++i) waiting.push_back(i);
    std::vector<Live> prefilling, decoding;
    ServeResult& r = report_.serve;
    r.concurrency = o_.serve_concurrency;
    r.timed = timed;
    r.requests = static_cast<I>(in.size());
    r.outputs.assign(in.size(), {});
    r.arrival_s.assign(in.size(), 0.0);
    r.first_token_s.assign(in.size(), 0.0);
    r.finish_s.assign(in.size(), 0.0);
    // The loop's energy: a meter over every iteration (null on the CPU reference).
    std::unique_ptr<PowerMeter> meter = ref_.measures_power() ? ref_.power_meter() : nullptr;
    const auto start = Clock::now();
    const auto clock = [&] { return o_.serve_clock ? o_.serve_clock() : seconds_since(start); };
    const double t0 = clock();  // the loop's origin; serve_arrival_s and every time below count from it
    const auto elapsed = [&] { return clock() - t0; };
    double now = 0;
    auto done = [&](const Live& l) {
      r.finish_s[l.req] = now;
      finish(l);
      if (!timed && next_release < in.size()) {
        r.arrival_s[next_release] = now;
        waiting.push_back(next_release++);
      }
    };
    while (!waiting.empty() || !prefilling.empty() || !decoding.empty() || next_release < in.size()) {
      if (timed) {
        // Nothing to run: wait for the next arrival. Then admit everything arrived by now.
        if (waiting.empty() && prefilling.empty() && decoding.empty()) {
          const double idle_from = elapsed();
          if (arrivals[next_release] > idle_from) {
            const double at = t0 + arrivals[next_release];
            if (o_.serve_wait_until) o_.serve_wait_until(at);
            else std::this_thread::sleep_until(start + std::chrono::ceil<Clock::duration>(std::chrono::duration<double>(at)));
          }
          r.idle_s += std::max(0.0, elapsed() - idle_from);
        }
        // After a wait the next request has arrived, whatever a clock's rounding says.
        now = std::max(elapsed(), waiting.empty() && prefilling.empty() && decoding.empty() ? arrivals[next_release] : 0.0);
        std::size_t arrived = next_release;
        while (arrived < in.size() && arrivals[arrived] <= now) ++arrived;
        // Under MPI every rank admits the same requests: the fewest any rank's clock has seen arrive.
        if (o_.agree_arrived) arrived = static_cast<std::size_t>(o_.agree_arrived(static_cast<int>(arrived)));
        for (; next_release < arrived; ++next_release) {
          r.arrival_s[next_release] = arrivals[next_release];
          waiting.push_back(next_release);
        }
        if (waiting.empty() && prefilling.empty() && decoding.empty()) continue;  // a rank's clock behind: ask again
      }
      StepBatch batch;
      StepTokens t;
      I budget = sv.max_num_tokens - static_cast<I>(decoding.size());
      for (const Live& d : decoding) {
        batch.decode_contexts.push_back(static_cast<I>(in[d.req]) + d.generated - 1);
        t.decode.push_back({d.seq, d.last});
      }
      std::vector<std::pair<std::size_t, I>> chunks;  // (index into prefilling, tokens)
      auto add_chunk = [&](std::size_t p) {
        const Live& l = prefilling[p];
        const I rest = static_cast<I>(in[l.req]) - l.done;
        const I chunk = std::min(rest, budget);
        if (chunk <= 0 || (!sv.chunked_prefill && chunk < rest)) return false;
        batch.prefill.push_back({chunk, l.done, chunk == rest});
        t.prefill.push_back({l.seq, std::vector<std::int32_t>(l.prompt.begin() + l.done, l.prompt.begin() + l.done + chunk)});
        chunks.emplace_back(p, chunk);
        budget -= chunk;
        return true;
      };
      for (std::size_t p = 0; p < prefilling.size() && budget > 0; ++p)
        if (!add_chunk(p)) break;
      while (budget > 0 && !waiting.empty() && static_cast<I>(decoding.size() + prefilling.size()) < sv.max_batch_size) {
        const std::size_t req = waiting.front();
        prefilling.push_back(Live{req, next_sequence_, 0, 0, 0, tokens_.draw(in[req])});
        if (!add_chunk(prefilling.size() - 1)) {
          prefilling.pop_back();
          break;
        }
        ++next_sequence_;
        waiting.pop_front();
      }
      RACKSIM_ASSERT(batch.tokens() > 0, "an iteration always has work");
      r.max_in_flight = std::max<I>(r.max_in_flight, static_cast<I>(decoding.size() + prefilling.size()));
      const StepGraph graph(model_, batch, deployment_, precision_);
      const double began = elapsed();
      const StepOutput so = ref_.run(graph, t, {});
      now = elapsed();
      ++r.iterations;
      I prefill_tokens = 0;
      for (const auto& [p, chunk] : chunks) prefill_tokens += chunk;
      r.iteration_log.push_back({began, now, static_cast<I>(decoding.size()), prefill_tokens});
      std::map<I, std::int32_t> next;
      for (std::size_t i = 0; i < so.sequences.size(); ++i) next[so.sequences[i]] = so.next_tokens[i];
      // Decodes emit a token; those on their last one finish.
      std::vector<Live> still;
      for (Live& d : decoding) {
        d.last = next.at(d.seq);
        r.outputs[d.req].push_back(d.last);
        ++d.generated;
        ++r.output_tokens;
        if (d.generated == static_cast<I>(out[d.req])) done(d);
        else still.push_back(std::move(d));
      }
      decoding = std::move(still);
      for (const auto& [p, chunk] : chunks) prefilling[p].done += chunk;
      std::vector<Live> started;
      for (Live& l : prefilling) {
        if (l.done < static_cast<I>(in[l.req])) {
          started.push_back(std::move(l));
          continue;
        }
        l.last = next.at(l.seq);
        r.outputs[l.req].push_back(l.last);
        r.first_token_s[l.req] = now;
        l.generated = 1;
        ++r.output_tokens;
        if (out[l.req] == 1) done(l);
        else decoding.push_back(std::move(l));
      }
      prefilling = std::move(started);
    }
    r.wall_s = elapsed();
    std::optional<StepPower> power;
    if (meter) power = meter->stop(&r.power_note);
    else if (o_.device != "cpu") r.power_note = "power unavailable: no power counter on this device (NVML)";
    if (power) power->steps = r.iterations;
    if (o_.combine_power) {  // collective: every rank, with or without a window
      const bool mine = power.has_value();
      power = o_.combine_power(power);
      if (!power && mine) r.power_note = "power unavailable: another rank of the MPI run has no power counter";
    }
    if (power && power->seconds < 1.0) {
      r.power_note = fmt::format("power: the loop ran {:.3f} s, under the second an energy-counter window needs", power->seconds);
      power.reset();
    }
    r.power = power;
    std::vector<double> ttft, tpot, e2e;
    for (std::size_t i = 0; i < in.size(); ++i) {
      ttft.push_back(r.first_token_s[i] - r.arrival_s[i]);
      e2e.push_back(r.finish_s[i] - r.arrival_s[i]);
      if (out[i] > 1) tpot.push_back((r.finish_s[i] - r.first_token_s[i]) / static_cast<double>(out[i] - 1));
    }
    r.ttft = ServeLatency::of(std::move(ttft));
    r.tpot = ServeLatency::of(std::move(tpot));
    r.e2e = ServeLatency::of(std::move(e2e));
    report_.served = true;
  }

  [[nodiscard]] std::map<std::string, OpSamples>& samples() { return samples_; }

 private:
  /// Prefills `tokens` random prompt tokens of `seq` (untimed), in chunks of max_num_tokens.
  void fill_cache(I seq, I tokens) {
    const I chunk_max = o_.serving.max_num_tokens > 0 ? o_.serving.max_num_tokens : tokens;
    for (I done = 0; done < tokens;) {
      const I chunk = std::min(chunk_max, tokens - done);
      StepBatch b;
      b.prefill.push_back({chunk, done, done + chunk == tokens});
      StepTokens t;
      t.prefill.push_back({seq, tokens_.draw(chunk)});
      (void)ref_.run(StepGraph(model_, b, deployment_, precision_), t, {});
      done += chunk;
    }
  }

  void finish(const auto& l) {
    report_.serve.input_tokens += static_cast<I>(o_.serve_input[l.req]);
    ref_.release(l.seq);
  }

  const ModelConfig& model_;
  const Precision& precision_;
  Deployment deployment_;  ///< tensor_parallel from the options; one pipeline stage, no EP
  const ExecOptions& o_;
  ExecReport& report_;
  StepBackend& ref_;
  TokenSource tokens_;
  I next_sequence_ = 0;
  std::map<std::string, OpSamples> samples_;
  std::function<void(const Op&, double)> observer_ = [this](const Op& op, double s) {
    auto& e = samples_[op.identity()];
    if (e.times.empty()) e.op = op;
    e.times.push_back(s);
  };
};

}  // namespace

std::unique_ptr<StepBackend> tp_rank_threads(std::vector<std::unique_ptr<StepBackend>> ranks, std::string describe) {
  RACKSIM_ASSERT(!ranks.empty(), "tp_rank_threads: at least one rank");
  return std::make_unique<TpThreads<NoComms>>(NoComms{}, std::move(ranks), std::move(describe));
}

double StepTiming::op_time_s() const {
  double s = 0;
  for (const auto& [kind, sec] : op_time_by_kind) s += sec;
  return s;
}

ServeLatency ServeLatency::of(std::vector<double> v) {
  const LoadgenSummary l = loadgen_summary(v);
  return ServeLatency{l.mean, l.p50, l.p90, l.p99, static_cast<std::int64_t>(l.count)};
}

std::string ExecShape::label() const {
  return kind == Kind::prefill ? fmt::format("prefill {}x{}", batch, tokens) : fmt::format("decode {}x{}", batch, context);
}

ExecShape ExecShape::parse(const std::string& text, const std::string& option) {
  const auto colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  if (colon == std::string::npos || (kind != "prefill" && kind != "decode"))
    throw InputError(fmt::format("{}: '{}' is not a shape (allowed: prefill:L, prefill:BxL, decode:BxC)", option, text));
  const std::string rest = text.substr(colon + 1);
  const auto x = rest.find('x');
  ExecShape s;
  s.kind = kind == "prefill" ? Kind::prefill : Kind::decode;
  if (x == std::string::npos) {
    if (s.kind == Kind::decode)
      throw InputError(fmt::format("{}: '{}' is not a shape: decode needs batch x context (decode:BxC)", option, text));
    s.tokens = parse_positive(rest, option, text, false);
    return s;
  }
  s.batch = parse_positive(rest.substr(0, x), option, text, false);
  if (s.kind == Kind::prefill) s.tokens = parse_positive(rest.substr(x + 1), option, text, false);
  else s.context = parse_positive(rest.substr(x + 1), option, text, true);
  return s;
}

CpuWeightBytes cpu_reference_weight_bytes(const ModelConfig& model, DType weights) {
  const ParamCounts p = count_params(model);
  // The CPU reference keeps each linear weight packed and as FP32 values; embedding, lm_head
  // (a copy when tied), norms and router as FP32 values (cpu_reference.hpp).
  // (weight_bytes stores the rest as BF16 but MiniMax-M2's FP32 routing bias.)
  const double other = static_cast<double>(p.total() - p.linear() - p.routing_bias);
  const double packed_per_linear =
      (weight_bytes(model, weights) - 2.0 * other - 4.0 * static_cast<double>(p.routing_bias)) / static_cast<double>(p.linear());
  CpuWeightBytes b;
  b.per_layer = (static_cast<double>(p.linear()) * (4.0 + packed_per_linear) + 4.0 * static_cast<double>(p.router + p.norms + p.routing_bias)) /
                model.layers;
  b.fixed = 4.0 * static_cast<double>(p.embedding + (p.lm_head > 0 ? p.lm_head : p.embedding));
  return b;
}

int layers_within(const ModelConfig& model, DType weights, double budget_bytes) {
  const CpuWeightBytes b = cpu_reference_weight_bytes(model, weights);
  const double fit = std::floor((budget_bytes - b.fixed) / b.per_layer);
  return static_cast<int>(std::clamp(fit, 1.0, static_cast<double>(model.layers)));
}

namespace {

int parse_cuda_device(const std::string& device) {
  const std::string n = device.substr(5);
  std::size_t used = 0;
  int v = -1;
  try {
    v = std::stoi(n, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (n.empty() || used != n.size() || v < 0) throw InputError(fmt::format("racksim exec: --device: '{}' is not one of cpu, cuda:N", device));
  return v;
}

}  // namespace

CudaStepOptions cuda_step_options(const ModelConfig& model, const ExecOptions& o, int device) {
  CudaStepOptions c;
  c.device = device;
  c.seed = o.seed;
  c.fp4_gemm = o.fp4_gemm;
  c.tp_size = o.tensor_parallel;  // the footprint's shard; the executor's communicators come later
  c.block_tokens = o.serving.kv_block_tokens;
  I kv = 1, rows = 1, sampled = 1;
  const I chunk = o.serving.max_num_tokens > 0 ? o.serving.max_num_tokens : 0;
  for (const ExecShape& s : o.shapes) {
    const bool pre = s.kind == ExecShape::Kind::prefill;
    kv = std::max(kv, s.batch * (pre ? s.tokens : s.context + 1));
    rows = std::max(rows, pre ? s.batch * s.tokens : s.batch);
    if (!pre && s.context > 0) rows = std::max(rows, chunk > 0 ? std::min(chunk, s.context) : s.context);  // fill_cache chunks
    sampled = std::max(sampled, s.batch);
  }
  if (!o.serve_input.empty()) {
    I longest = 0, total = 0;
    for (std::size_t i = 0; i < o.serve_input.size(); ++i) {
      longest = std::max<I>(longest, I{o.serve_input[i]} + o.serve_output[i]);
      total += I{o.serve_input[i]} + o.serve_output[i];
    }
    // At most max_batch_size sequences in flight, and no more than the requests, or the clients
    // of a closed loop.
    I in_flight = std::min<I>(o.serving.max_batch_size, static_cast<I>(o.serve_input.size()));
    if (o.serve_concurrency > 0) in_flight = std::min<I>(in_flight, o.serve_concurrency);
    kv = std::max(kv, std::min(total, in_flight * longest));
    rows = std::max(rows, std::max(o.serving.max_num_tokens, in_flight));
    sampled = std::max(sampled, in_flight);
  }
  c.kv_tokens = kv + 2 * c.block_tokens * sampled;  // a partly filled last block per sequence
  c.max_rows = rows;
  c.max_sampled = sampled;
  // The CPU reference's weights when generating them on the host is quick (a tiny model: the
  // two backends then compute the same thing); random codes made on the device otherwise.
  c.reference_weights = count_params(model).linear() <= 64LL << 20;
  return c;
}

int power_window_steps(double seconds, double step_s) {
  constexpr double kMost = 1e6;
  if (!(step_s > 0)) return static_cast<int>(kMost);
  return static_cast<int>(std::clamp(std::ceil(seconds / step_s), 1.0, kMost));
}

ExecReport run_exec(const ModelConfig& model, const Precision& precision, const ExecOptions& o) {
  const bool cuda = o.device.starts_with("cuda:");
  if (o.device != "cpu" && !cuda) throw InputError(fmt::format("racksim exec: --device: '{}' is not one of cpu, cuda:N", o.device));
  const DType w = precision.weights;
  // Block-scaled FP8 (1 x 128, 128 x 128 FP32 scales) has no kernel here yet: the simulator
  // costs it from measured calls (docs/models.md), the executors do not run it.
  if (w == DType::fp8_block)
    throw InputError("racksim exec: precision.weights: 'fp8_block' is costed by the simulator only; the executors run bf16, fp8, "
                     "nvfp4 and mxfp4 weights");
  if (!cuda && w != DType::nvfp4 && w != DType::mxfp4 && w != DType::bf16)
    throw InputError(fmt::format("racksim exec --device cpu: precision.weights: '{}' is not one the CPU reference stores (nvfp4, mxfp4, "
                                 "bf16)",
                                 to_string(w)));
  if (!cuda && o.fp4_gemm != Fp4GemmMode::automatic)
    throw InputError(fmt::format("racksim exec: --fp4-gemm {} applies to --device cuda:N; the CPU reference has one path", to_string(o.fp4_gemm)));
  if (o.reps < 1 || o.warmup < 0) throw InputError(fmt::format("racksim exec: --reps {} must be >= 1 and --warmup {} >= 0", o.reps, o.warmup));
  if (o.tensor_parallel < 1) throw InputError(fmt::format("racksim exec: tensor parallel {} must be >= 1", o.tensor_parallel));
  if (o.rank_comm && !cuda) throw InputError("racksim exec: one process per rank (MPI) runs GPUs; the CPU reference's ranks are threads of one process");
  if (o.layers < 0 || o.layers > model.layers)
    throw InputError(fmt::format("racksim exec: --layers {} is outside 1..{} (0 = as many as fit)", o.layers, model.layers));
  RACKSIM_ASSERT(o.serve_input.size() == o.serve_output.size(), "serve lengths pair up");

  ExecReport report;
  report.layers_total = model.layers;
  report.precision = precision;
  report.model = model;
  std::unique_ptr<StepBackend> backend;
  std::string fit_reason;
  if (cuda) {
    const int device = parse_cuda_device(o.device);
    CudaStepOptions c = cuda_step_options(model, o, device);
    // Layers that fit 90% of the free device memory (the rest: CUDA context, allocator slack);
    // under TP one rank's shard, on the GPU with the least free memory: every rank must run the
    // same layers (the same collectives), so under MPI the ranks agree on the fewest.
    const CudaStepFootprint f = cuda_step_footprint(model, precision, c);
    double free = cuda_device_memory(device).free;
    if (!o.rank_comm)
      for (int r = 1; r < o.tensor_parallel; ++r) free = std::min(free, cuda_device_memory(device + r).free);
    free *= 0.9;
    int fit = static_cast<int>(std::clamp(std::floor((free - f.fixed) / f.per_layer), 1.0, static_cast<double>(model.layers)));
    if (o.agree_layers) fit = o.agree_layers(fit);
    report.model.layers = o.layers > 0 ? o.layers : fit;
    fit_reason = o.layers > 0 ? "--layers"
                              : fmt::format("weights and KV cache within 90% of the {:.1f} GiB free on {}", free / 0.9 / (1ull << 30),
                                            o.tensor_parallel > 1 ? "the fullest rank's GPU" : "the device");
    if (o.rank_comm) {
      // This process is one rank of a multi-process run: its own GPU, its shard.
      if (o.rank_comm->size() != o.tensor_parallel)
        throw InputError(fmt::format("racksim exec: {} processes but deployment.tensor_parallel {}: under MPI each process is one "
                                     "tensor-parallel rank",
                                     o.rank_comm->size(), o.tensor_parallel));
      c.tp = o.rank_comm;
      backend = make_cuda_step_backend(report.model, precision, c);
    } else {
      backend = o.tensor_parallel > 1 ? cuda_tp_backend(report.model, precision, c, o.tensor_parallel)
                                      : make_cuda_step_backend(report.model, precision, c);
    }
    report.notes.push_back(c.reference_weights ? fmt::format("weights: the CPU reference's (seed {}), uploaded", o.seed)
                                               : "weights: random NVFP4 codes generated on the device (speed only; outputs are not meaningful)");
    report.notes.push_back(fmt::format("CUDA: BF16 activations, {} KV cache in {}-token blocks; linears: {}", to_string(precision.kv_cache),
                                       c.block_tokens, backend->linear_path()));
    if (fuse_norm_knob(std::getenv("RACKSIM_FUSE_NORM")))
      report.notes.push_back("RACKSIM_FUSE_NORM=on: each residual add runs fused with the RMSNorm after it (one kernel); that norm's op "
                             "time is near zero, its work is in the residual add's");
    if (fuse_swiglu_knob(std::getenv("RACKSIM_FUSE_SWIGLU")) && !model.is_moe())
      report.notes.push_back("RACKSIM_FUSE_SWIGLU=on: where the fused FP4 kernel runs a gate_up GEMM as one launch that splits K, its "
                             "reduce writes the SwiGLU; that SwiGLU's op time is then near zero, its work in gate_up's");
    if (model.qk_norm_per_layer())
      report.notes.push_back("MiniMax-M2: the QK-norm over the layer's q and k (under TP each rank's sums of squares all-reduced in FP32 "
                             "as qk_norm_all_reduce, whose time includes the sums' kernel); RoPE on rotary_dim of each head; routing by "
                             "sigmoid scores plus the per-expert bias");
    if (model.is_moe())
      report.notes.push_back("MoE: router top-k and the expert-order permute on the device; steps of <= 64 rows on the Hopper kernels (experts "
                             "held tiled: K % 32 == 0) run each MoE GEMM as one grouped launch reading the expert offsets on the device "
                             "(replayed as CUDA graphs); "
                             "larger steps and the native path run each expert's rows as a GEMM of its own M, sized by reading the expert "
                             "counts back to the host inside experts.permute (its time includes that round trip; no graph replay)");
  } else {
    const CpuWeightBytes need = cpu_reference_weight_bytes(model, w);
    if (o.layers == 0 && need.fixed + need.per_layer > o.memory_budget_bytes)
      throw InputError(fmt::format("racksim exec --device cpu: one layer of '{}' takes {:.1f} GiB of host memory as the CPU reference holds "
                                   "it ({} packed and FP32) and its embedding and lm_head {:.1f} GiB more; --memory-gib {:g} holds none: "
                                   "raise --memory-gib, give --layers N, or run it on a GPU (--device cuda:N)",
                                   model.id, need.per_layer / (1ull << 30), to_string(w), need.fixed / (1ull << 30),
                                   o.memory_budget_bytes / (1ull << 30)));
    report.model.layers = o.layers > 0 ? o.layers : layers_within(model, w, o.memory_budget_bytes);
    fit_reason = o.layers > 0 ? "--layers" : fmt::format("weights within --memory-gib {:g}", o.memory_budget_bytes / (1ull << 30));
    if (o.tensor_parallel > 1) backend = cpu_tp_backend(report.model, w, o.seed, o.tensor_parallel);
    else backend = std::make_unique<CpuBackend>(report.model, w, o.seed);
    report.notes.push_back(fmt::format("CPU reference: FP32 math on {}-stored weights; activations ({}) and KV cache ({}) run FP32; op "
                                       "identities are the graph's",
                                       to_string(w), to_string(precision.activations), to_string(precision.kv_cache)));
  }
  if (report.model.layers < model.layers)
    report.notes.insert(report.notes.begin(), fmt::format("runs {} of {} layers ({})", report.model.layers, model.layers, fit_reason));
  report.device = backend->describe();

  if (o.wrap_backend) backend = o.wrap_backend(std::move(backend));
  Runner run(*backend, report.model, precision, o, report);
  for (const ExecShape& s : o.shapes) run.time_shape(s);
  if (!o.serve_input.empty()) run.serve();

  MeasurementFile& f = report.measurements;
  // On a GPU the run block records what the benches' files do (driver, CUDA, catalog GPU id,
  // clocks and power limit through NVML, as read after the steps ran); the fields below are exec's.
  if (cuda) f.run = cuda_measurement_run("", parse_cuda_device(o.device));
  f.run.device = report.device;
  f.run.system = fmt::format("{} layers {} of {}", report.model.id, report.model.layers, model.layers);
  // Known only after the steps ran: the row counts a serving loop meets are not known before.
  const std::string padding = backend->linear_padding_note();
  if (!padding.empty()) report.notes.push_back(padding);
  f.run.software = cuda ? fmt::format("racksim exec (CUDA step executor; linears: {}{})", backend->linear_path(),
                                      padding.empty() ? "" : "; " + padding)
                        : "racksim exec (CPU reference)";
  f.run.source = o.command_line.empty() ? "racksim exec" : o.command_line;
  f.run.date = utc_now_iso8601();
  f.run.commit = build_commit();
  for (auto& [identity, e] : run.samples()) {
    MeasurementRecord rec = timed_record(measured_op(e.op), stats_of(e.times));
    // Collectives are spelled with their element type in the file (nccl-tests' terms), without it in the graph.
    RACKSIM_ASSERT(is_communication(e.op.kind) || rec.op.identity() == identity, "a measured op keeps the graph op's identity");
    if (e.op.flops > 0) rec.flops = e.op.flops;
    if (e.op.bytes() > 0) rec.bytes_moved = e.op.bytes();
    f.records.push_back(std::move(rec));
  }
  for (const StepTiming& st : report.steps) f.records.push_back(step_record(st, report.model, o.tensor_parallel, precision));
  return report;
}

}  // namespace racksim::exec
