#include "racksim/sim/simulation.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <queue>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/common/percentile.hpp"
#include "racksim/common/units.hpp"
#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/energy_model.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/sim/requests.hpp"
#include "racksim/sim/step_timer.hpp"

namespace racksim {
namespace {

using I = std::int64_t;

enum EventKind : std::uint32_t { kIterationEnd = 0, kArrival = 1, kLaneStart = 2 };
// At equal times: finish iterations first (their tokens and freed blocks count), then
// arrivals, then starts, so a start sees everything that happened at its instant.
constexpr int kPriority[] = {0, 1, 2};

enum class ReqState : std::uint8_t { pending, waiting, prefill, decode, done };

/// Per-request state, structure of arrays (11 million requests fit in well under 1 GiB).
struct Requests {
  RequestSet set;
  std::vector<SimTime> first_token;
  std::vector<std::int64_t> k0;            ///< lane iteration of the first decode step
  std::vector<std::uint32_t> prefill_len;  ///< tokens prefilled (prompt, plus emitted tokens after a preemption)
  std::vector<std::uint32_t> generated;
  std::vector<std::uint16_t> epoch;        ///< bumps on preemption; stale heap entries are skipped
  std::vector<ReqState> state;
  std::vector<float> ttft_ms, tpot_ms, e2e_ms;
};

struct DecodeEntry {
  I finish_iter;
  std::uint32_t req;
  std::uint16_t epoch;
};

/// Decodes by the lane iteration of their last token: a calendar of kSlots buckets indexed by
/// iteration mod kSlots. Pushing is O(1); iteration k visits one bucket and keeps the entries
/// that finish kSlots or more iterations later. (A binary heap here spent half the run time in
/// cache misses at 11 million requests.)
class FinishCalendar {
 public:
  static constexpr I kSlots = 1024;
  FinishCalendar() : slots_(static_cast<std::size_t>(kSlots)) {}
  void push(const DecodeEntry& e) { slots_[slot(e.finish_iter)].push_back(e); }
  /// Calls f for each entry finishing at iteration k, in insertion order, and removes them.
  template <class F>
  void pop(I k, F&& f) {
    auto& b = slots_[slot(k)];
    std::size_t keep = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
      if (b[i].finish_iter == k) f(b[i]);
      else b[keep++] = b[i];
    }
    b.resize(keep);
  }

 private:
  static std::size_t slot(I k) { return static_cast<std::size_t>(k & (kSlots - 1)); }
  std::vector<std::vector<DecodeEntry>> slots_;
};

struct Prefilling {
  std::uint32_t req;
  std::uint32_t done;    ///< tokens of prefill_len already processed
};

/// One in-flight-batching scheduler: a replica, or one micro-batch lane of a pipelined replica.
struct Lane {
  std::uint32_t replica = 0;
  std::uint32_t index = 0;  ///< lane within its replica
  std::deque<std::uint32_t> waiting;
  std::deque<Prefilling> prefilling;
  FinishCalendar finishing;
  std::vector<std::uint32_t> decode_order;  ///< admission order, newest last (preemption victims)
  I n_decode = 0;
  double sum_prefill_minus_k0 = 0;  ///< sum over decodes of prefill_len - k0: contexts sum to this + n k
  std::vector<I> residue;           ///< decodes by (prefill_len - k0) mod block: who needs a block when
  I iter = 0;
  bool busy = false;
  bool start_pending = false;
  I blocks_total = 0, blocks_used = 0, blocks_reserved = 0;
  I peak_blocks = 0;
  I max_seqs = 0;  ///< its share of serving.max_batch_size (the replica's sequences in flight)
  // The iteration in flight.
  std::vector<std::uint32_t> completing;  ///< prefills that end their prompt this iteration
  I step_decodes = 0;
  /// serving.mixed_batches false: this iteration runs prefill chunks only and the decodes wait;
  /// it is not a decode iteration, so `iter` (which counts decode iterations) stays.
  bool prefill_only = false;
};

I ceil_div(I a, I b) { return (a + b - 1) / b; }

/// The longest simulated run: int64 picoseconds hold 106 days; keep well inside them.
constexpr double kMaxSimSeconds = 1e6;

/// The datasheet energy model under the scenario's power cap.
EnergyModel capped(EnergyModel e, double limit_w) {
  e.limit_w = limit_w;
  return e;
}

class Simulation {
 public:
  Simulation(const Scenario& s, const SimOptions& opt)
      : s_(s),
        opt_(opt),
        cost_model_(cost_model_registry().get("roofline").factory(s.system, cost_model_options(s))),
        // calibration: datasheet keeps the power fit out too (the seed energy model).
        energy_(capped(energy_model_for(s.system.gpu, s.calibrated ? GpuCalibration(s.system.gpu) : GpuCalibration()),
                       s.gpu_power_limit_w)),
        timer_(s.model, s.deployment, s.precision, *cost_model_, energy_),
        engine_([this](const Event& e) { dispatch(e); }) {
    mem_ = plan_memory(s);
    block_ = s.serving.kv_block_tokens;
    pp_ = s.deployment.pipeline_parallel;
    const I lane_blocks = mem_.kv_tokens_per_replica / block_ / pp_;
    lanes_.resize(static_cast<std::size_t>(s.replicas * pp_));
    for (std::size_t i = 0; i < lanes_.size(); ++i) {
      Lane& l = lanes_[i];
      l.replica = static_cast<std::uint32_t>(i / static_cast<std::size_t>(pp_));
      l.index = static_cast<std::uint32_t>(i % static_cast<std::size_t>(pp_));
      l.blocks_total = lane_blocks;
      // max_batch_size counts the replica's sequences in flight (spec): its pipeline lanes
      // share it: 1,024 over PP2 = 512 + 512 (mlperf.md: H100 v5.0, 1,024 in flight per TP1 x PP2 copy).
      l.max_seqs = (s.serving.max_batch_size + static_cast<I>(l.index)) / pp_;
      l.residue.assign(static_cast<std::size_t>(block_), 0);
    }
    stage_free_.assign(static_cast<std::size_t>(s.replicas * pp_), SimTime{});
    replica_load_.assign(static_cast<std::size_t>(s.replicas), 0.0);
    replica_next_lane_.assign(static_cast<std::size_t>(s.replicas), 0);
    max_tokens_ = s.serving.max_num_tokens;
    guaranteed_ = s.serving.capacity_policy == "guaranteed_no_evict";
    closed_loop_ = s.workload.scenario == "concurrency";
    iteration_started_.connect([this](const IterationRecord& it) {
      dynamic_j_ += it.dynamic_j;
      capped_iterations_ += it.capped ? 1 : 0;
    });
    if (opt_.keep_iterations)
      iteration_started_.connect([this](const IterationRecord& it) { result_.iteration_records.push_back(it); });
    if (opt_.keep_requests)
      request_finished_.connect([this](const RequestRecord& r) { result_.request_records.push_back(r); });
  }

  SimResult run() {
    const double qps = opt_.qps > 0 ? opt_.qps : s_.workload.qps;
    load_requests(qps);
    if (closed_loop_) {
      // One arrival per client at t = 0; each finish issues the next request (finish_request).
      next_issue_ = std::min<std::size_t>(static_cast<std::size_t>(s_.workload.concurrency), r_.set.size());
      for (std::size_t i = 0; i < next_issue_; ++i) engine_.schedule(SimTime{}, kPriority[kArrival], kArrival, static_cast<std::uint32_t>(i));
    } else {
      // Arrivals are sorted: keep one pending arrival event at a time (the handler schedules the
      // next), so the event queue stays small however many requests there are.
      engine_.schedule(r_.set.arrival[0], kPriority[kArrival], kArrival, 0);
    }
    result_.events = engine_.run();
    return summarize(qps);
  }

 private:
  void load_requests(double qps) {
    r_.set = generate_requests(s_, qps);
    const std::size_t n = r_.set.size();
    RACKSIM_ASSERT(n < (std::size_t{1} << 32), "fewer than 2^32 requests");
    r_.first_token.assign(n, SimTime{});
    r_.k0.assign(n, 0);
    r_.prefill_len.assign(n, 0);
    r_.generated.assign(n, 0);
    r_.epoch.assign(n, 0);
    r_.state.assign(n, ReqState::pending);
    r_.ttft_ms.assign(n, 0);
    r_.tpot_ms.assign(n, 0);
    r_.e2e_ms.assign(n, 0);
    // Simulated time is int64 picoseconds (106 days); keep well inside it.
    if (r_.set.arrival.back().to_seconds() > kMaxSimSeconds || r_.set.arrival.back() < SimTime{})
      throw InputError(fmt::format("the last request arrives at {:.6g} s; racksim simulates up to {:g} s (raise qps or shorten the trace)",
                                   r_.set.arrival.back().to_seconds(), kMaxSimSeconds));
    // Requests that can never run are the scenario's error, not a silent hang.
    const I lane_tokens = lanes_.front().blocks_total * block_;
    for (std::size_t i = 0; i < n; ++i) {
      const I in = r_.set.input[i], out = r_.set.output[i];
      if (in + out > s_.model.max_position)
        throw InfeasibleError(fmt::format("request {} needs {} + {} tokens; {} has {} positions", i, in, out, s_.model.id,
                                          s_.model.max_position));
      // Without chunking a prompt runs whole; under max_utilization a recompute prefills the
      // prompt plus all but the last emitted token.
      const I longest = guaranteed_ ? in : in + out - 1;
      if (!s_.serving.chunked_prefill && longest > max_tokens_)
        throw InfeasibleError(fmt::format("request {} needs a {}-token prefill{} but max_num_tokens is {} and chunked_prefill is off", i,
                                          longest, guaranteed_ ? "" : " (prompt + output - 1, on recompute)", max_tokens_));
      if (ceil_div(in + out, block_) > lanes_.front().blocks_total)
        throw InfeasibleError(fmt::format("request {} needs {} KV tokens; a {} holds {}", i, in + out,
                                          pp_ > 1 ? "pipeline lane" : "replica", lane_tokens));
    }
    if (opt_.keep_requests) result_.request_records.reserve(n);
  }

  void dispatch(const Event& e) {
    switch (e.kind) {
      case kArrival: {
        if (closed_loop_) {  // one event per issued request
          arrive(e.target);
          break;
        }
        // Every request arriving at this instant, in order (offline: all of them at t = 0).
        std::size_t i = e.target;
        const std::size_t n = r_.set.size();
        for (; i < n && r_.set.arrival[i] == e.time; ++i) arrive(static_cast<std::uint32_t>(i));
        if (i < n) engine_.schedule(r_.set.arrival[i], kPriority[kArrival], kArrival, static_cast<std::uint32_t>(i));
        break;
      }
      case kIterationEnd: end_iteration(lanes_[e.target], e.target); break;
      case kLaneStart: {
        Lane& l = lanes_[e.target];
        l.start_pending = false;
        try_start(l, e.target);
        break;
      }
      default: RACKSIM_ASSERT(false, "unknown event");
    }
  }

  /// The router: pick a replica, then the replica's lanes in turn.
  void arrive(std::uint32_t req) {
    const double in = r_.set.input[req], out = r_.set.output[req];
    std::uint32_t rep = 0;
    const auto R = static_cast<std::uint32_t>(s_.replicas);
    if (s_.serving.router == "round_robin") {
      rep = static_cast<std::uint32_t>(next_rr_++ % R);
    } else if (s_.serving.router == "input_balanced") {
      // Fewest input tokens so far (loads only grow: a heap; lowest index wins ties).
      if (balance_.empty())
        for (std::uint32_t i = 0; i < R; ++i) balance_.push({0.0, i});
      rep = balance_.top().second;
      const double load = balance_.top().first + in;
      balance_.pop();
      balance_.push({load, rep});
    } else {
      // least_loaded: fewest tokens outstanding. Lowest index wins ties, so the choice is deterministic.
      rep = 0;
      for (std::uint32_t i = 1; i < R; ++i)
        if (replica_load_[i] < replica_load_[rep]) rep = i;
      replica_load_[rep] += in + out;
    }
    const std::uint32_t lane_id = rep * static_cast<std::uint32_t>(pp_) + replica_next_lane_[rep];
    replica_next_lane_[rep] = (replica_next_lane_[rep] + 1) % static_cast<std::uint32_t>(pp_);
    Lane& l = lanes_[lane_id];
    r_.state[req] = ReqState::waiting;
    r_.prefill_len[req] = r_.set.input[req];
    l.waiting.push_back(req);
    request_start(l, lane_id);
  }

  /// Asks a lane to start its next iteration now (once the engine reaches its start event).
  void request_start(Lane& l, std::uint32_t id) {
    if (l.busy || l.start_pending) return;
    l.start_pending = true;
    SimTime at = engine_.now();
    const SimTime free = stage_free(l.replica, 0);
    if (free > at) at = free;
    engine_.schedule(at, kPriority[kLaneStart], kLaneStart, id);
  }

  [[nodiscard]] bool has_work(const Lane& l) const { return l.n_decode > 0 || !l.prefilling.empty() || !l.waiting.empty(); }

  /// max_utilization: frees the blocks of the newest sequence in the batch, a decoding one or a
  /// partial prompt, whichever arrived last (vLLM's recompute preemption takes the last of its
  /// running queue; TensorRT-LLM's MAX_UTILIZATION pauses the newest requests), and queues it
  /// to be prefilled again. False when the lane holds neither.
  bool preempt(Lane& l) {
    while (!l.decode_order.empty() && r_.state[l.decode_order.back()] != ReqState::decode) l.decode_order.pop_back();
    if (!l.prefilling.empty() && (l.decode_order.empty() || l.prefilling.back().req > l.decode_order.back())) {
      evict_prefill(l);
      return true;
    }
    if (l.decode_order.empty()) return false;
    const std::uint32_t v = l.decode_order.back();
    l.decode_order.pop_back();
    const I k0 = r_.k0[v], plen = r_.prefill_len[v];
    const I ctx = plen + (l.iter - k0);  // tokens in its KV cache before this iteration
    l.blocks_used -= ceil_div(ctx, block_);
    l.n_decode -= 1;
    l.sum_prefill_minus_k0 -= static_cast<double>(plen - k0);
    l.residue[static_cast<std::size_t>(((plen - k0) % block_ + block_) % block_)] -= 1;
    r_.generated[v] += static_cast<std::uint32_t>(l.iter - k0);  // decode steps done since k0
    r_.epoch[v] = static_cast<std::uint16_t>(r_.epoch[v] + 1);
    r_.state[v] = ReqState::waiting;
    // Recompute: prefill the prompt and every emitted token but the last, which is fed as the
    // next decode input; the prefill's own output is that next token.
    r_.prefill_len[v] = r_.set.input[v] + r_.generated[v];
    l.waiting.push_front(v);
    ++result_.preemptions;
    return true;
  }

  /// Drops the newest partial prompt's blocks; it starts its prefill again later.
  void evict_prefill(Lane& l) {
    const Prefilling victim = l.prefilling.back();
    l.prefilling.pop_back();
    l.blocks_used -= ceil_div(static_cast<I>(victim.done), block_);
    r_.state[victim.req] = ReqState::waiting;
    l.waiting.push_front(victim.req);
    ++result_.preemptions;
  }

  void try_start(Lane& l, std::uint32_t id) {
    if (l.busy || !has_work(l)) return;
    if (stage_free(l.replica, 0) > engine_.now()) {
      request_start(l, id);
      return;
    }
    const I k = l.iter;
    BatchShape shape;
    const std::int64_t preempted_before = result_.preemptions;
    l.completing.clear();
    // serving.mixed_batches false (SGLang's default): an iteration that can run prefill runs
    // only prefill, with the whole token budget, and the decodes wait; otherwise it decodes only.
    const bool mixed = s_.serving.mixed_batches;
    l.prefill_only = !mixed && (!l.prefilling.empty() || !l.waiting.empty());
    I budget = max_tokens_;
    auto decode_all = [&] {
      // 1. Every decoding sequence takes one token; its KV write may open a new block.
      I need = l.residue[static_cast<std::size_t>((block_ - k % block_) % block_)];
      if (!guaranteed_)
        while (l.blocks_total - l.blocks_used < need && preempt(l))
          need = l.residue[static_cast<std::size_t>((block_ - k % block_) % block_)];
      RACKSIM_ASSERT(l.blocks_used + need <= l.blocks_total, "KV blocks over capacity");
      l.blocks_used += need;
      shape.decode_seqs = l.n_decode;
      shape.decode_cached = l.sum_prefill_minus_k0 + static_cast<double>(l.n_decode) * static_cast<double>(k);
      shape.decode_pairs = shape.decode_cached + static_cast<double>(l.n_decode);
      shape.sampled = l.n_decode;
      budget = max_tokens_ - l.n_decode;
    };
    if (!l.prefill_only) decode_all();
    // 2. Prefill: chunks of prompts already started, then new admissions, in arrival order.
    auto add_chunk = [&](Prefilling& p) -> bool {
      const I target = r_.prefill_len[p.req];
      I chunk = std::min<I>(target - p.done, budget);
      if (chunk <= 0) return false;
      if (!s_.serving.chunked_prefill && chunk < target - p.done) return false;
      const I new_blocks = ceil_div(p.done + chunk, block_) - ceil_div(p.done, block_);
      if (!guaranteed_ && l.blocks_total - l.blocks_used < new_blocks) {
        chunk = (l.blocks_total - l.blocks_used) * block_ + (block_ - (p.done % block_)) % block_;
        chunk = std::min<I>(chunk, target - p.done);
        if (chunk <= 0 || (!s_.serving.chunked_prefill && chunk < target - p.done)) return false;
      }
      l.blocks_used += ceil_div(p.done + chunk, block_) - ceil_div(p.done, block_);
      const double q = static_cast<double>(chunk), c = static_cast<double>(p.done);
      shape.prefill_tokens += chunk;
      shape.prefill_seqs += 1;
      shape.prefill_pairs += q * c + q * (q + 1) / 2;
      shape.prefill_cached += c;
      budget -= chunk;
      p.done += static_cast<std::uint32_t>(chunk);
      if (p.done == target) {
        shape.sampled += 1;
        l.completing.push_back(p.req);
      }
      return true;
    };
    for (auto& p : l.prefilling) {
      if (budget <= 0) break;
      if (!add_chunk(p)) break;
    }
    // max_utilization with a cache full of partial prompts and nothing decoding: recompute the
    // newest partial prompt later so the older ones can grow (a lone request always fits: its
    // input + output was checked against the lane's blocks when the requests were loaded).
    while (!guaranteed_ && shape.tokens() == 0 && l.prefilling.size() > 1 && (mixed || l.n_decode == 0)) {
      evict_prefill(l);
      for (auto& p : l.prefilling) {
        if (budget <= 0) break;
        if (!add_chunk(p)) break;
      }
    }
    // No admissions in an iteration that had to preempt (vLLM does the same): the cache is full.
    std::int64_t admitted = 0;
    while (budget > 0 && !l.waiting.empty() && result_.preemptions == preempted_before &&
           l.n_decode + static_cast<I>(l.prefilling.size()) < l.max_seqs) {
      const std::uint32_t req = l.waiting.front();
      if (guaranteed_) {
        const I reserve = ceil_div(static_cast<I>(r_.set.input[req]) + r_.set.output[req], block_);
        if (l.blocks_total - l.blocks_reserved < reserve) break;
        l.blocks_reserved += reserve;
      }
      Prefilling p{req, 0};
      if (!add_chunk(p)) {
        if (guaranteed_) l.blocks_reserved -= ceil_div(static_cast<I>(r_.set.input[req]) + r_.set.output[req], block_);
        break;
      }
      l.waiting.pop_front();
      r_.state[req] = ReqState::prefill;
      l.prefilling.push_back(p);
      ++admitted;
    }
    if (l.prefill_only && shape.tokens() == 0 && l.n_decode > 0) {
      // Unmixed, and no prefill could start or grow (sequence limit, KV blocks): decode instead.
      l.prefill_only = false;
      decode_all();
    }
    if (shape.tokens() == 0) {
      // Nothing fits: only possible when the cache is full of prefills that cannot grow.
      RACKSIM_ASSERT(false, fmt::format("lane {} cannot make progress: {} of {} KV blocks used", id, l.blocks_used, l.blocks_total));
    }
    l.peak_blocks = std::max(l.peak_blocks, guaranteed_ ? l.blocks_reserved : l.blocks_used);
    StepCost c = timer_.cost(shape);
    if (s_.serving.fixed_step_time_s > 0) {
      // A fixed step time keeps the model's average power for this batch (energy rescaled).
      const double scale = s_.serving.fixed_step_time_s / c.time_s;
      c = StepCost{s_.serving.fixed_step_time_s, s_.serving.fixed_step_time_s, c.dynamic_j * scale, c.flops, c.capped};
    }
    // Simulated time is int64 picoseconds (106 days); a run is held to kMaxSimSeconds, however
    // its arrivals were made (a closed loop's all start at 0).
    if (engine_.now().to_seconds() + c.time_s > kMaxSimSeconds)
      throw InfeasibleError(fmt::format("the run passes {:g} s of simulated time (iteration {} of replica {}, {:.6g} s in); racksim "
                                        "simulates up to {:g} s: fewer requests, or a shorter serving.fixed_step_time",
                                        kMaxSimSeconds, result_.iterations + 1, l.replica, engine_.now().to_seconds(), kMaxSimSeconds));
    l.busy = true;
    l.step_decodes = shape.decode_seqs;
    // The micro-batch passes the stages in turn, each for time / pp, waiting for a stage still
    // busy with the previous micro-batch of another lane.
    SimTime t = engine_.now();
    const SimTime per_stage = SimTime::seconds(c.time_s / pp_);
    for (int st = 0; st < pp_; ++st) {
      SimTime& free = stage_free(l.replica, st);
      if (free > t) t = free;
      t = t + per_stage;
      free = t;
    }
    const SimTime dur = t - engine_.now();
    ++result_.iterations;
    // All GPUs of the replica: per-GPU dynamic energy x pp stages x tp ranks.
    iteration_started_.emit(IterationRecord{l.replica, l.index, engine_.now(), engine_.now() + dur, per_stage, shape.decode_seqs,
                                            shape.prefill_tokens, c.capped, c.dynamic_j * pp_ * s_.deployment.tensor_parallel,
                                            admitted, result_.preemptions - preempted_before});
    engine_.schedule(engine_.now() + dur, kPriority[kIterationEnd], kIterationEnd, id);
  }

  void finish_request(Lane& l, std::uint32_t req) {
    const SimTime now = engine_.now();
    r_.state[req] = ReqState::done;
    if (guaranteed_) l.blocks_reserved -= ceil_div(static_cast<I>(r_.set.input[req]) + r_.set.output[req], block_);
    const double arrival = r_.set.arrival[req].to_seconds();
    const double first = r_.first_token[req].to_seconds();
    const double fin = now.to_seconds();
    const std::uint32_t out = r_.set.output[req];
    RACKSIM_ASSERT(r_.generated[req] == out, "a request finishes with exactly its output tokens");
    RACKSIM_ASSERT(first >= arrival && fin >= first, "arrival <= first token <= finish");
    r_.ttft_ms[req] = static_cast<float>((first - arrival) * 1e3);
    r_.e2e_ms[req] = static_cast<float>((fin - arrival) * 1e3);
    r_.tpot_ms[req] = out > 1 ? static_cast<float>((fin - first) * 1e3 / (out - 1)) : 0.0F;
    ++result_.requests_completed;
    result_.input_tokens += r_.set.input[req];
    if (!request_finished_.empty())
      request_finished_.emit(RequestRecord{req, l.replica, r_.set.arrival[req], r_.first_token[req], now, r_.set.input[req], out});
    last_finish_ = now;
    // Closed loop: the client whose request finished sends its next one now (no think time). At
    // equal times arrivals run after iteration ends and before lane starts (kPriority), so the
    // lane's next iteration can admit it.
    if (closed_loop_ && next_issue_ < r_.set.size()) {
      r_.set.arrival[next_issue_] = now;
      engine_.schedule(now, kPriority[kArrival], kArrival, static_cast<std::uint32_t>(next_issue_));
      ++next_issue_;
    }
    if (s_.serving.router == "least_loaded")
      replica_load_[l.replica] -= static_cast<double>(r_.set.input[req]) + static_cast<double>(out);
  }

  void end_iteration(Lane& l, std::uint32_t id) {
    const SimTime now = engine_.now();
    const I k = l.iter;
    result_.output_tokens += l.step_decodes;
    // Decodes emit one token each; those on their last token finish (not in a prefill-only
    // iteration: the decodes waited, and `iter` counts decode iterations only).
    if (!l.prefill_only) l.finishing.pop(k, [&](const DecodeEntry& e) {
      if (r_.state[e.req] != ReqState::decode || r_.epoch[e.req] != e.epoch) return;  // preempted
      const I plen = r_.prefill_len[e.req], k0 = r_.k0[e.req];
      l.blocks_used -= ceil_div(plen + (k - k0) + 1, block_);
      l.n_decode -= 1;
      l.sum_prefill_minus_k0 -= static_cast<double>(plen - k0);
      l.residue[static_cast<std::size_t>(((plen - k0) % block_ + block_) % block_)] -= 1;
      r_.generated[e.req] = r_.set.output[e.req];
      finish_request(l, e.req);
    });
    // Prefills that ended their prompt emit a token (the first one, or the next after a recompute).
    // A later prompt can complete while an earlier one waits for blocks (it fits in its last
    // block's free slots), so completions are removed wherever they stand.
    std::erase_if(l.prefilling, [&](const Prefilling& p) { return p.done == r_.prefill_len[p.req]; });
    for (std::uint32_t req : l.completing) {
      if (r_.generated[req] == 0) r_.first_token[req] = now;
      r_.generated[req] += 1;
      result_.output_tokens += 1;
      if (r_.generated[req] == r_.set.output[req]) {
        l.blocks_used -= ceil_div(r_.prefill_len[req], block_);
        finish_request(l, req);
        continue;
      }
      // It decodes from the next decode iteration: k + 1, or k itself after a prefill-only one.
      const I k0 = l.prefill_only ? k : k + 1, plen = r_.prefill_len[req];
      r_.k0[req] = k0;
      r_.state[req] = ReqState::decode;
      l.n_decode += 1;
      l.sum_prefill_minus_k0 += static_cast<double>(plen - k0);
      l.residue[static_cast<std::size_t>(((plen - k0) % block_ + block_) % block_)] += 1;
      l.finishing.push({k0 + static_cast<I>(r_.set.output[req] - r_.generated[req]) - 1, req, r_.epoch[req]});
      l.decode_order.push_back(req);
    }
    if (l.decode_order.size() > 4 * static_cast<std::size_t>(l.n_decode) + 64) {  // drop finished entries
      std::erase_if(l.decode_order, [&](std::uint32_t v) { return r_.state[v] != ReqState::decode; });
    }
    RACKSIM_ASSERT(l.blocks_used >= 0 && l.blocks_used <= l.blocks_total, "KV use within capacity");
    if (!l.prefill_only) l.iter += 1;
    l.busy = false;
    request_start(l, id);
  }

  /// Mean and percentiles as MLPerf's loadgen reports them (common/percentile.hpp); reorders v.
  static LatencySummary summary(std::vector<float>& v) {
    const LoadgenSummary l = loadgen_summary(v);
    return LatencySummary{l.mean, l.p50, l.p90, l.p99};
  }

  SimResult summarize(double qps) {
    SimResult& out = result_;
    const std::size_t n = r_.set.size();
    RACKSIM_ASSERT(out.requests_completed == static_cast<I>(n), "every request completes");
    I expected_tokens = 0;
    for (std::size_t i = 0; i < n; ++i) expected_tokens += r_.set.output[i];
    RACKSIM_ASSERT(out.output_tokens == expected_tokens, "tokens are conserved: emitted = sum of output lengths");
    for (const Lane& l : lanes_) RACKSIM_ASSERT(l.blocks_used == 0 && l.n_decode == 0, "caches drain at the end");
    out.gpus = s_.system.gpus();
    out.replicas = s_.replicas;
    out.qps = s_.workload.scenario == "server" || s_.workload.scenario == "interactive" ? qps : 0;
    // From the first arrival (MLPerf measures from the first query issued; a trace may start late).
    out.duration_s = (last_finish_ - r_.set.arrival.front()).to_seconds();
    out.arrival_span_s = (r_.set.arrival.back() - r_.set.arrival.front()).to_seconds();
    out.output_tokens_per_s = out.duration_s > 0 ? static_cast<double>(out.output_tokens) / out.duration_s : 0;
    out.requests_per_s = out.duration_s > 0 ? static_cast<double>(n) / out.duration_s : 0;
    // TPOT over requests with more than one output token (TTFT covers the first).
    std::vector<float>& tpot = r_.tpot_ms;  // compacted in place: no second 11-million-entry array
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (r_.set.output[i] > 1) tpot[kept++] = r_.tpot_ms[i];
    tpot.resize(kept);
    out.ttft_ms = summary(r_.ttft_ms);
    out.tpot_ms = summary(tpot);
    out.e2e_ms = summary(r_.e2e_ms);
    out.ttft_limit_ms = s_.workload.ttft_p99_ms;
    out.tpot_limit_ms = s_.workload.tpot_p99_ms;
    out.slo_met = (out.ttft_limit_ms <= 0 || out.ttft_ms.p99 <= out.ttft_limit_ms) &&
                  (out.tpot_limit_ms <= 0 || out.tpot_ms.p99 <= out.tpot_limit_ms);
    // Power: every GPU idles all run long; busy GPUs add their ops' dynamic energy.
    const SystemSpec& sys = s_.system;
    const double t = out.duration_s;
    // Idle as the energy model has it (the power fit's where the GPU has one, else the datasheet's):
    // the idle the power cap was applied with, and the one exec's step predictions add.
    const double gpu_j = energy_.idle_w * sys.gpus() * t + dynamic_j_;  // idle over the measured span
    out.gpu_avg_w = t > 0 ? gpu_j / t / sys.gpus() : 0;
    const int in_use = s_.replicas * s_.deployment.gpus_per_replica();
    out.replicas_gpu_w = t > 0 ? energy_.idle_w * in_use + dynamic_j_ / t : 0;
    const double other_w = sys.cpu.count.value * sys.cpu.power.value + sys.nvswitch.count.value * sys.nvswitch.power.value +
                           sys.nic.count.value * sys.nic.power.value + sys.other_power.value;
    out.system_avg_w = (out.gpu_avg_w * sys.gpus() + other_w) / sys.psu_efficiency.value;
    out.energy_j = out.system_avg_w * t;
    out.output_tokens_per_joule = out.energy_j > 0 ? static_cast<double>(out.output_tokens) / out.energy_j : 0;
    out.power_capped_share = out.iterations ? static_cast<double>(capped_iterations_) / static_cast<double>(out.iterations) : 0;
    out.weights_gib_per_gpu = mem_.weights_per_gpu / 1073741824.0;
    out.kv_capacity_tokens_per_replica = mem_.kv_tokens_per_replica;
    for (const Lane& l : lanes_)
      if (l.blocks_total > 0)
        out.kv_peak_utilization = std::max(out.kv_peak_utilization, static_cast<double>(l.peak_blocks) / static_cast<double>(l.blocks_total));
    if (opt_.keep_requests)
      std::sort(out.request_records.begin(), out.request_records.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return std::move(out);
  }

  const Scenario& s_;
  SimOptions opt_;
  std::unique_ptr<CostModel> cost_model_;
  EnergyModel energy_;
  StepTimer timer_;
  Engine engine_;
  MemoryPlan mem_;
  I block_ = 32;
  int pp_ = 1;
  I max_tokens_ = 0;
  bool guaranteed_ = true;
  bool closed_loop_ = false;   ///< workload.scenario concurrency
  std::size_t next_issue_ = 0; ///< closed loop: the next request a client sends
  std::vector<Lane> lanes_;
  std::vector<SimTime> stage_free_;  ///< per replica and pipeline stage: when it can take the next micro-batch
  SimTime& stage_free(std::uint32_t replica, int stage) {
    return stage_free_[static_cast<std::size_t>(replica) * static_cast<std::size_t>(pp_) + static_cast<std::size_t>(stage)];
  }
  std::vector<double> replica_load_;
  std::priority_queue<std::pair<double, std::uint32_t>, std::vector<std::pair<double, std::uint32_t>>, std::greater<>> balance_;
  std::vector<std::uint32_t> replica_next_lane_;
  std::uint64_t next_rr_ = 0;
  Requests r_;
  SimResult result_;
  SimTime last_finish_;
  // Listeners (engine signals): power accounting always; per-request rows and the trace when asked.
  Signal<const IterationRecord&> iteration_started_;
  Signal<const RequestRecord&> request_finished_;
  double dynamic_j_ = 0;
  I capped_iterations_ = 0;
};

}  // namespace

SimResult simulate(const Scenario& s, const SimOptions& opt) { return Simulation(s, opt).run(); }

SimResult find_max_qps(const Scenario& s, const SimOptions& opt) {
  if (s.workload.scenario != "server" && s.workload.scenario != "interactive")
    throw InputError(fmt::format("--find-max-qps needs workload.scenario server or interactive, not {}", s.workload.scenario));
  if (s.workload.ttft_p99_ms <= 0 && s.workload.tpot_p99_ms <= 0)
    throw InputError("--find-max-qps needs a latency limit (workload.latency_limits); with none every rate passes");
  Scenario off = s;
  off.workload.scenario = "offline";
  const double offline_rps = simulate(off, SimOptions{}).requests_per_s;
  // Each probe sends at least 600 s of arrivals (MLPerf's minimum run, mlperf.md), so that a
  // rate above capacity builds a queue that shows in p99 TTFT instead of draining unseen.
  auto at_rate = [&](double qps) {
    Scenario probe = s;
    probe.workload.requests = std::max<std::int64_t>(s.workload.requests, static_cast<std::int64_t>(std::ceil(qps * 600.0)));
    return probe;
  };
  auto passes = [&](double qps) {
    SimOptions probe;
    probe.qps = qps;
    return simulate(at_rate(qps), probe).slo_met;
  };
  const double floor_qps = std::max(offline_rps * 1e-3, 0.1);
  if (!passes(floor_qps))
    throw InfeasibleError(fmt::format("no arrival rate meets p99 TTFT <= {} ms and TPOT <= {} ms (not even {:.4g} queries/s, "
                                      "a thousandth of the offline rate)", s.workload.ttft_p99_ms, s.workload.tpot_p99_ms, floor_qps));
  double lo = floor_qps, hi = offline_rps;
  for (int i = 0; i < 20 && passes(hi); ++i) {  // a short offline run can underrate capacity
    lo = hi;
    hi *= 1.5;
  }
  while (hi - lo > 1e-4 * hi) {
    const double mid = (lo + hi) / 2;
    (passes(mid) ? lo : hi) = mid;
  }
  SimOptions at = opt;
  at.qps = lo;
  return simulate(at_rate(lo), at);
}

}  // namespace racksim
