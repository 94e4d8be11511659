// exec/tensor_parallel: the executor's Megatron layout (which rows and columns each rank holds,
// by hand for Llama-2-70B), weight shards, and the CPU reference's ranks as threads computing the
// same logits and tokens as one rank.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/cpu_reference.hpp"
#include "racksim/exec/executor.hpp"
#include "racksim/exec/step_backend.hpp"
#include "racksim/exec/tensor_parallel.hpp"
#include "racksim/workloads/model_catalog.hpp"
#include "tiny_models.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

/// tiny_llama with a vocabulary that 2 and 4 divide (lm_head is split by vocabulary).
ModelConfig tiny96() {
  ModelConfig m = test::tiny_llama();
  m.vocab = 96;
  return m;
}

using Ranges = std::vector<std::pair<std::int64_t, std::int64_t>>;

/// The CPU reference's ranks 0..tp-1 of `m` (seed 17) on `group`.
std::vector<std::unique_ptr<CpuReference>> rank_references(const ModelConfig& m, ThreadTpGroup& group, int tp) {
  std::vector<std::unique_ptr<CpuReference>> ranks;
  for (int r = 0; r < tp; ++r) ranks.push_back(std::make_unique<CpuReference>(m, DType::nvfp4, 17, &group.rank(r)));
  return ranks;
}

/// A prefill of two whole prompts, 6 and 3 tokens (sequences 1 and 2).
StepBatch two_prompts() {
  StepBatch b;
  b.prefill = {{6, 0, true}, {3, 0, true}};
  return b;
}
StepTokens two_prompt_tokens() {
  StepTokens t;
  t.prefill = {{1, {5, 9, 33, 70, 2, 41}}, {2, {88, 13, 60}}};
  return t;
}

/// max over the sampled rows of max |a - b| / max(1, max |a|) of their logits.
double worst_rel_diff(const StepOutput& a, const StepOutput& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.logits.size(); ++i) {
    double scale = 1;
    for (float v : a.logits[i]) scale = std::max(scale, std::fabs(static_cast<double>(v)));
    for (std::size_t j = 0; j < a.logits[i].size(); ++j)
      worst = std::max(worst, std::fabs(static_cast<double>(a.logits[i][j]) - b.logits[i][j]) / scale);
  }
  return worst;
}

/// One step on every rank of `ranks` (threads), rank 0's output.
StepOutput run_ranks(std::vector<std::unique_ptr<CpuReference>>& ranks, const StepGraph& g, const StepTokens& t) {
  std::vector<StepOutput> out(ranks.size());
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < ranks.size(); ++r) threads.emplace_back([&, r] { out[r] = ranks[r]->run(g, t); });
  for (auto& th : threads) th.join();
  for (std::size_t r = 1; r < ranks.size(); ++r) {
    CHECK(out[r].next_tokens == out[0].next_tokens);
    CHECK(out[r].logits == out[0].logits);  // the all-gather gives every rank the same bits
  }
  return out[0];
}

/// A TP group of `tp` CPU reference ranks of `m` (seed 17, NVFP4, threads) beside the one-rank
/// reference it is compared with, and the deployment of its graphs.
struct TpRun {
  TpRun(const ModelConfig& m, int tp) : one(m, DType::nvfp4, 17), group(tp), ranks(rank_references(m, group, tp)) {
    d.tensor_parallel = tp;
  }
  CpuReference one;
  ThreadTpGroup group;
  std::vector<std::unique_ptr<CpuReference>> ranks;
  Deployment d;
};

}  // namespace

TEST_CASE("tensor-parallel layout of Llama-2-70B by hand", "[exec][tp]") {
  const ModelConfig m = find_model("llama2-70b");
  // TP8: 64 / 8 = 8 query heads, 8 KV heads / 8 = 1 each (rank r holds KV head r), FFN 28,672 / 8
  // = 3,584, vocabulary 32,000 / 8 = 4,000. qkv rows are q (64 x 128 = 8,192), k (1,024), v
  // (1,024): rank 3 holds q rows 3,072..4,096, k rows 8,192 + 384..512, v rows 9,216 + 384..512.
  const TpLayout t = tp_layout(m, 3, 8);
  CHECK(t.q_heads == 8);
  CHECK(t.kv_heads == 1);
  CHECK(t.kv_first == 3);
  CHECK(t.ffn == 3584);
  CHECK(t.vocab == 4000);
  CHECK(t.qkv_rows(m) == Ranges{{3072, 4096}, {8576, 8704}, {9600, 9728}});
  // gate rows 3 x 3,584 = 10,752..14,336 and up rows 28,672 + the same.
  CHECK(t.gate_up_rows(m) == Ranges{{10752, 14336}, {39424, 43008}});
  // TP16 has more ranks than KV heads: pairs of ranks share (replicate) one: rank 5 holds head 2.
  const TpLayout u = tp_layout(m, 5, 16);
  CHECK(u.kv_heads == 1);
  CHECK(u.kv_first == 2);
  CHECK(u.q_heads == 4);
}

TEST_CASE("tensor-parallel layouts that do not split are refused, naming the dimension", "[exec][tp]") {
  const ModelConfig tiny = test::tiny_llama();  // heads 4, kv 2, ffn 128, vocab 97
  CHECK_THROWS_WITH(tp_layout(tiny, 0, 2), Catch::Contains("vocab 97 is not a multiple of 2"));
  CHECK_THROWS_WITH(tp_layout(tiny96(), 0, 3), Catch::Contains("heads 4 is not a multiple of 3"));
  ModelConfig kv3 = tiny96();
  kv3.heads = 12;
  kv3.kv_heads = 3;
  CHECK_THROWS_WITH(tp_layout(kv3, 0, 2), Catch::Contains("kv_heads 3 and 2 do not divide one another"));
  // TP8 of the tiny model leaves o_proj 4 / 8 heads: heads 4 is not a multiple of 8.
  CHECK_THROWS_WITH(tp_layout(tiny96(), 0, 8), Catch::Contains("heads 4 is not a multiple of 8"));
  // A rank's o_proj input must be whole NVFP4 blocks: 8 heads of 16 over TP8 gives 16 (fine); of 8 gives 8.
  ModelConfig narrow = tiny96();
  narrow.heads = 8;
  narrow.kv_heads = 8;
  narrow.head_dim = 8;
  CHECK_THROWS_WITH(tp_layout(narrow, 0, 8), Catch::Contains("whole 16-value blocks"));
  // A MoE splits each expert as a dense MLP (tiny_moe: ffn 64 over 2 ranks, 32 each), vocabulary 97 aside.
  ModelConfig moe96 = test::tiny_moe();
  moe96.vocab = 96;
  CHECK(tp_layout(moe96, 1, 2).ffn == 32);
  // One rank splits nothing: the whole model, MoE or not, vocabulary 97 included.
  const TpLayout whole = tp_layout(test::tiny_moe(), 0, 1);
  CHECK((whole.q_heads == 4 && whole.kv_heads == 2 && whole.kv_first == 0 && whole.ffn == 64 && whole.vocab == 97));
  CHECK_THROWS_AS(tp_layout(tiny96(), 2, 2), InputError);
}

TEST_CASE("weight shards keep the packed codes, scales and values of their rows and columns", "[exec][tp]") {
  const ModelConfig m = tiny96();
  const ModelWeights w = generate_weights(m, DType::nvfp4, 3);
  const LinearWeight& gu = w.layers[0].gate_up_proj;  // [256 x 64]
  const LinearWeight rows = take_rows(gu, Ranges{{32, 64}, {160, 192}});
  REQUIRE(rows.out == 64);
  CHECK(rows.packed.rows == 64);
  for (std::int64_t c = 0; c < 64; ++c) {
    CHECK(rows.values[static_cast<std::size_t>(c)] == gu.values[static_cast<std::size_t>(32 * 64 + c)]);
    CHECK(rows.values[static_cast<std::size_t>(32 * 64 + c)] == gu.values[static_cast<std::size_t>(160 * 64 + c)]);
  }
  CHECK(dequantize(rows.packed) == rows.values);  // codes and scales moved with their values
  const LinearWeight& down = w.layers[0].down_proj;  // [64 x 128]
  const LinearWeight cols = take_cols(down, 32, 96);
  REQUIRE(cols.in == 64);
  CHECK(cols.values[static_cast<std::size_t>(5 * 64 + 7)] == down.values[static_cast<std::size_t>(5 * 128 + 32 + 7)]);
  CHECK(dequantize(cols.packed) == cols.values);
}

TEST_CASE("CPU reference ranks as threads compute one rank's logits (TP 2 and 4)", "[exec][tp]") {
  // The shards hold the same dequantized values, so only FP32 summation order differs: o_proj and
  // down_proj sum per-rank partial dot products, then the all-reduce adds them (K = 64 and 128
  // terms: ~K x 2^-24 of the terms' magnitude per dot product, ~1e-6 after two layers).
  // TP 4 has more ranks than the 2 KV heads: KV heads replicated across pairs of ranks.
  const ModelConfig m = tiny96();
  const Precision p{DType::nvfp4, DType::bf16, DType::bf16};
  for (int tp : {2, 4}) {
    TpRun run(m, tp);
    CpuReference& one = run.one;
    auto& ranks = run.ranks;
    const Deployment& d = run.d;
    const StepBatch pre = two_prompts();
    const StepTokens tp_tokens = two_prompt_tokens();
    StepOutput a = one.run(StepGraph(m, pre, Deployment{}, p), tp_tokens);
    StepOutput b = run_ranks(ranks, StepGraph(m, pre, d, p), tp_tokens);
    double worst = 0;
    for (int step = 0; step < 4; ++step) {
      REQUIRE(a.sequences == b.sequences);
      worst = std::max(worst, worst_rel_diff(a, b));
      CHECK(a.next_tokens == b.next_tokens);
      StepBatch dec;
      dec.decode_contexts = {one.cached_tokens(1), one.cached_tokens(2)};
      StepTokens t;
      t.decode = {{1, a.next_tokens[0]}, {2, a.next_tokens[1]}};
      a = one.run(StepGraph(m, dec, Deployment{}, p), t);
      b = run_ranks(ranks, StepGraph(m, dec, d, p), t);
    }
    INFO("TP " << tp << ": worst |logit difference| / max |logit| = " << worst);
    CHECK(worst <= 1e-5);
    CHECK(worst > 0);  // the partial sums really are added in another order: the comparison is not vacuous
    for (auto& r : ranks) CHECK(r->cached_tokens(1) == 10);
    // A rank refuses a graph of another tensor-parallel size.
    CHECK_THROWS_WITH(ranks[0]->run(StepGraph(m, pre, Deployment{}, p), tp_tokens), Catch::Contains("tensor parallel"));
  }
}

TEST_CASE("CPU reference ranks of a MoE (each expert split, the router whole) compute TP 1's logits", "[exec][tp]") {
  // tiny_moe (4 experts of FFN 64, top-2) with vocabulary 96, TP 2 and 4 (16 FFN columns per rank:
  // one NVFP4 block). Each rank routes every token alike (the same router, the same normed rows),
  // runs its slice of each chosen expert, and moe_all_reduce sums the slices: as the dense MLP,
  // only FP32 summation order differs from TP 1 (~1e-6). A routing that differed from TP 1's
  // (a near-tie of router logits within ~1e-6) would show as a difference of O(0.1) instead.
  // tiny_minimax as well: its layer-wide QK-norm sums each rank's q and k squares and all-reduces
  // the sums (qk_norm_all_reduce); at TP 4 each of the 2 KV heads is on two ranks, and the k sum
  // and its count both count each replica twice, so the mean is TP 1's.
  for (ModelConfig m : {test::tiny_moe(), test::tiny_minimax()}) {
    m.vocab = 96;
    INFO(m.id);
    const Precision p{DType::nvfp4, DType::bf16, DType::bf16};
    const ModelWeights w = generate_weights(m, DType::nvfp4, 17);
    const ModelWeights s = shard_weights(w, m, tp_layout(m, 1, 2));
    REQUIRE(s.layers[0].expert_gate_up.size() == 4);
    CHECK(s.layers[0].expert_gate_up[2].out == 64);  // gate 32 + up 32 rows
    CHECK(s.layers[0].expert_down[2].in == 32);
    CHECK(s.layers[0].router == w.layers[0].router);
    CHECK(s.layers[0].router_bias == w.layers[0].router_bias);
    if (m.qk_norm_per_layer()) {
      // Rank 1 of 2: q heads 2, 3 (values 32..63) and KV head 1 (16..31); rank 3 of 4: q head 3, KV head 1.
      CHECK(s.layers[0].q_norm == std::vector<float>(w.layers[0].q_norm.begin() + 32, w.layers[0].q_norm.end()));
      CHECK(s.layers[0].k_norm == std::vector<float>(w.layers[0].k_norm.begin() + 16, w.layers[0].k_norm.end()));
      const ModelWeights s4 = shard_weights(w, m, tp_layout(m, 3, 4));
      CHECK(s4.layers[1].q_norm == std::vector<float>(w.layers[1].q_norm.begin() + 48, w.layers[1].q_norm.end()));
      CHECK(s4.layers[1].k_norm == std::vector<float>(w.layers[1].k_norm.begin() + 16, w.layers[1].k_norm.end()));
    }
    for (int tp : {2, 4}) {
      TpRun run(m, tp);
      const StepBatch pre = two_prompts();
      const StepTokens t = two_prompt_tokens();
      const StepGraph g1(m, pre, Deployment{}, p), gt(m, pre, run.d, p);
      REQUIRE(gt.size() > g1.size());  // the moe_all_reduce (and attention's) per layer
      const StepOutput a = run.one.run(g1, t), b = run_ranks(run.ranks, gt, t);
      REQUIRE(a.sequences == b.sequences);
      const double worst = worst_rel_diff(a, b);
      INFO("TP " << tp << ": worst |logit difference| / max |logit| = " << worst);
      CHECK(worst <= 1e-5);
      CHECK(worst > 0);
      CHECK(a.next_tokens == b.next_tokens);
    }
  }
}

TEST_CASE("racksim exec on the CPU with TP 2 serves the same tokens as TP 1 and times the collectives", "[exec][tp]") {
  const ModelConfig m = tiny96();
  ExecOptions o;
  o.shapes = {ExecShape::parse("decode:2x8", "s")};
  o.reps = 1;
  o.serving = {4, 16, true, 16};
  o.serve_input = {10, 5, 21};
  o.serve_output = {4, 6, 3};
  const ExecReport one = run_exec(m, Precision{DType::nvfp4, DType::bf16, DType::bf16}, o);
  o.tensor_parallel = 2;
  const ExecReport two = run_exec(m, Precision{DType::nvfp4, DType::bf16, DType::bf16}, o);
  CHECK(two.serve.outputs == one.serve.outputs);
  CHECK(two.device == "cpu (racksim CPU reference, tensor parallel 2 as threads)");
  // Per layer an attention and an MLP all-reduce of 2 rows x 64 BF16 (256 B) in the decode step:
  // one identity, 2 layers x 2 x 1 rep = 4 samples; the logits' all-gather of 2 x 96 FP32 (768 B) once.
  int reduce = 0, gather = 0;
  for (const auto& r : two.measurements.records) {
    if (r.op.identity() == "all_reduce ranks=2 bytes=256 dtype=bf16") reduce = static_cast<int>(r.reps);
    if (r.op.identity() == "all_gather ranks=2 bytes=768 dtype=fp32") gather = static_cast<int>(r.reps);
  }
  CHECK(reduce == 4);
  CHECK(gather == 1);
  // On CUDA the ranks are GPUs cuda:0..1 of this process; without them (or without CUDA): exit 3.
  if (cuda_device_count() < 2) {
    o.device = "cuda:0";
    try {
      (void)run_exec(m, Precision{DType::nvfp4, DType::bf16, DType::bf16}, o);
      FAIL("TP 2 on CUDA ran without two devices");
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::infeasible);
    }
  }
}

TEST_CASE("a tensor-parallel group aborted by a failed rank releases the ranks waiting in a collective", "[exec][tp]") {
  // Ranks 1 and 2 enter an all-reduce that rank 0 (failed) never joins: without the abort they
  // would wait forever; with it each gets an Error, and so does any later collective.
  ThreadTpGroup group(3);
  std::vector<std::exception_ptr> errors(3);
  std::vector<std::thread> waiting;
  for (int r = 1; r < 3; ++r)
    waiting.emplace_back([&, r] {
      std::vector<float> x(4, 1.0f);
      try {
        group.rank(r).all_reduce_sum(x);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  group.abort();
  for (auto& t : waiting) t.join();
  for (int r = 1; r < 3; ++r) CHECK(errors[static_cast<std::size_t>(r)] != nullptr);
  std::vector<float> y(4, 1.0f), all(12);
  CHECK_THROWS_WITH(group.rank(0).all_gather(y, all), Catch::Contains("another rank failed"));
  // An intact group sums in rank order and gathers rank-major.
  ThreadTpGroup ok(2);
  std::vector<float> a{1, 2}, b{10, 20}, ga(4), gb(4);
  std::thread t1([&] {
    ok.rank(1).all_reduce_sum(b);
    ok.rank(1).all_gather(std::vector<float>{7, 8}, gb);
  });
  ok.rank(0).all_reduce_sum(a);
  ok.rank(0).all_gather(std::vector<float>{5, 6}, ga);
  t1.join();
  CHECK(a == std::vector<float>{11, 22});
  CHECK(b == std::vector<float>{11, 22});
  CHECK(ga == std::vector<float>{5, 6, 7, 8});
  CHECK(gb == ga);
}

TEST_CASE("rank threads persist across steps, one thread per rank, and a failing rank aborts the others' collective", "[exec][tp]") {
  RankThreads threads(3);
  REQUIRE(threads.size() == 3);
  // Each rank runs once per call, rank 0 on the caller, ranks 1 and 2 on their own threads, and
  // the same threads on the next call (no thread started per step).
  std::vector<std::thread::id> seen(3), again(3);
  std::vector<int> runs(3, 0);
  threads.run([&](int r) {
    seen[static_cast<std::size_t>(r)] = std::this_thread::get_id();
    ++runs[static_cast<std::size_t>(r)];
  });
  threads.run([&](int r) {
    again[static_cast<std::size_t>(r)] = std::this_thread::get_id();
    ++runs[static_cast<std::size_t>(r)];
  });
  CHECK(runs == std::vector<int>{2, 2, 2});
  CHECK(seen[0] == std::this_thread::get_id());
  CHECK(seen[1] == threads.thread_of(1));
  CHECK(seen[2] == threads.thread_of(2));
  CHECK(seen[1] != seen[0]);
  CHECK(seen[2] != seen[1]);
  CHECK(again == seen);

  // Rank 2 fails before a collective that ranks 0 and 1 have entered: on_error (once) aborts the
  // group, they are released with "another rank failed", and the call rethrows rank 2's error,
  // the cause, not theirs.
  ThreadTpGroup group(3);
  int aborts = 0;
  CHECK_THROWS_WITH(threads.run(
                        [&](int r) {
                          if (r == 2) throw InputError("rank 2 ran out of memory");
                          std::vector<float> x(4, 1.0f);
                          group.rank(r).all_reduce_sum(x);
                        },
                        [&] {
                          ++aborts;
                          group.abort();
                        }),
                    "rank 2 ran out of memory");
  CHECK(aborts == 1);
  // The threads are still there for the next step.
  std::vector<int> after(3, 0);
  threads.run([&](int r) { after[static_cast<std::size_t>(r)] = r + 1; });
  CHECK(after == std::vector<int>{1, 2, 3});
  // One rank: no thread, the caller runs it.
  RankThreads one(1);
  int ran = 0;
  one.run([&](int r) { ran += r + 1; });
  CHECK(ran == 1);
}

namespace {

/// A rank that counts its replays; it can replay or not (a MoE rank on the per-expert path
/// cannot: its step reads expert counts back to the host).
class ReplayRank final : public StepBackend {
 public:
  ReplayRank(int rank, bool can_replay, std::vector<int>& replays, bool fails = false)
      : rank_(rank), can_(can_replay), fails_(fails), replays_(replays) {}
  StepOutput run(const StepGraph&, const StepTokens&, const OpObserver&) override {
    if (fails_) throw InputError("rank " + std::to_string(rank_) + " ran out of memory");
    StepOutput o;
    o.next_tokens = {7};
    return o;
  }
  [[nodiscard]] std::int64_t cached_tokens(std::int64_t) const override { return 0; }
  void release(std::int64_t) override {}
  void truncate(std::int64_t, std::int64_t) override {}
  std::optional<double> replay_last_step() override {
    if (!can_) return std::nullopt;
    ++replays_[static_cast<std::size_t>(rank_)];
    return 1e-3 * (rank_ + 1);
  }
  /// Rank r: a window of (r + 1) x 10 ms per replay, 100 + 10 r W, 1 J per replay; rank 2 of a
  /// group built with `fails` has no power counter (its replays still run).
  std::optional<StepPower> power_last_step(std::int64_t steps, std::string* why) override {
    replays_[static_cast<std::size_t>(rank_)] += static_cast<int>(steps);
    if (no_power_ && rank_ == 2) {
      *why = "power unavailable: NVML: not loaded";
      return std::nullopt;
    }
    return StepPower{steps, 0.01 * (rank_ + 1) * static_cast<double>(steps), static_cast<double>(steps), 100.0 + 10 * rank_, 1,
                     1500.0 + 100 * rank_, std::uint64_t{1} << rank_};
  }
  bool no_power_ = false;
  [[nodiscard]] bool can_replay_last_step() const override { return can_; }
  [[nodiscard]] std::string describe() const override { return "replay rank"; }

 private:
  int rank_;
  bool can_, fails_;
  std::vector<int>& replays_;
};

/// A rank whose linear path and tuner picks are given (RACKSIM_FP4_MMA_TUNE=on's notes).
class PathRank final : public StepBackend {
 public:
  PathRank(std::string path, std::string picks) : path_(std::move(path)), picks_(std::move(picks)) {}
  StepOutput run(const StepGraph&, const StepTokens&, const OpObserver&) override { return {}; }
  [[nodiscard]] std::int64_t cached_tokens(std::int64_t) const override { return 0; }
  void release(std::int64_t) override {}
  void truncate(std::int64_t, std::int64_t) override {}
  [[nodiscard]] std::string describe() const override { return "path rank"; }
  [[nodiscard]] std::string linear_path() const override { return path_; }
  [[nodiscard]] std::string tuned_picks() const override { return picks_; }

 private:
  std::string path_, picks_;
};

}  // namespace

TEST_CASE("a tensor-parallel group states its ranks' tuner picks: the same, or each rank's", "[exec][tp]") {
  // Each GPU tunes itself, so the times in each rank's linear path differ even where the picks
  // agree: the group compares the picks only. No tuning: rank 0's path as it is.
  const auto group = [](std::vector<std::pair<std::string, std::string>> r) {
    std::vector<std::unique_ptr<StepBackend>> ranks;
    for (auto& [path, picks] : r) ranks.push_back(std::make_unique<PathRank>(path, picks));
    return tp_rank_threads(std::move(ranks), "two ranks");
  };
  CHECK(group({{"fused", ""}, {"fused", ""}})->linear_path() == "fused");
  CHECK(group({{"fused; o_proj 10.1 us", "o_proj M=1: default"}, {"fused; o_proj 10.4 us", "o_proj M=1: default"}})->linear_path() ==
        "fused; o_proj 10.1 us (rank 0's times; every rank picked the same)");
  CHECK(group({{"fused; o_proj 10.1 us", "o_proj M=1: default"}, {"fused; o_proj 9.0 us", "o_proj M=1: RACKSIM_FP4_MMA_X=split"}})
            ->linear_path() ==
        "fused; o_proj 10.1 us (rank 0's times; the ranks picked differently: rank 0: o_proj M=1: default | rank 1: o_proj M=1: "
        "RACKSIM_FP4_MMA_X=split)");
}

TEST_CASE("a tensor-parallel group replays a decode step on all of its ranks or on none", "[exec][tp]") {
  // A rank that replayed while another could not would wait for ever in its captured all-reduces;
  // so one rank that cannot replay keeps every rank from replaying.
  std::vector<int> replays(3, 0);
  const auto group_of = [&](std::vector<bool> can) {
    std::vector<std::unique_ptr<StepBackend>> ranks;
    for (int r = 0; r < 3; ++r) ranks.push_back(std::make_unique<ReplayRank>(r, can[static_cast<std::size_t>(r)], replays));
    return tp_rank_threads(std::move(ranks), "three replay ranks");
  };
  const auto all = group_of({true, true, true});
  CHECK(all->can_replay_last_step());
  const std::optional<double> t = all->replay_last_step();
  REQUIRE(t.has_value());
  CHECK(*t == 1e-3);  // rank 0's time is the group's
  CHECK(replays == std::vector<int>{1, 1, 1});

  const auto mixed = group_of({true, true, false});
  CHECK_FALSE(mixed->can_replay_last_step());
  CHECK_FALSE(mixed->replay_last_step().has_value());
  CHECK(replays == std::vector<int>{1, 1, 1});  // ranks 0 and 1 did not replay alone
  CHECK(mixed->describe() == "three replay ranks");

  // A step that fails on one rank fails the group's step with that rank's error.
  std::vector<std::unique_ptr<StepBackend>> ranks;
  for (int r = 0; r < 3; ++r) ranks.push_back(std::make_unique<ReplayRank>(r, true, replays, r == 2));
  const auto failing = tp_rank_threads(std::move(ranks), "one failing rank");
  const ModelConfig m = test::tiny_llama();
  const StepGraph g(m, StepBatch::decode(1, 4), Deployment{}, Precision{DType::nvfp4, DType::bf16, DType::bf16});
  CHECK_THROWS_WITH(failing->run(g, StepTokens{}, {}), "rank 2 ran out of memory");
}

TEST_CASE("a tensor-parallel group's power window sums its GPUs: energy and power added, the longest window", "[exec][tp]") {
  // Three ranks of ReplayRank: 100, 110, 120 W, 1 J per replay each, windows of 10, 20, 30 ms per
  // replay, SM clocks 1500, 1600, 1700 MHz, clock-event bits 0, 1, 2. 5 replays: 15 J (3 per step), 330 W, 150 ms, 3 GPUs; every rank replayed 5 times.
  std::vector<int> replays(3, 0);
  std::vector<std::unique_ptr<StepBackend>> ranks;
  for (int r = 0; r < 3; ++r) ranks.push_back(std::make_unique<ReplayRank>(r, true, replays));
  auto* third = static_cast<ReplayRank*>(ranks[2].get());
  const auto group = tp_rank_threads(std::move(ranks), "three ranks");
  std::string why;
  const std::optional<StepPower> p = group->power_last_step(5, &why);
  REQUIRE(p.has_value());
  CHECK(p->steps == 5);
  CHECK(p->gpus == 3);
  CHECK(p->energy_j == Approx(15.0));
  CHECK(p->energy_per_step_j() == Approx(3.0));
  CHECK(p->power_w == Approx(330.0));
  CHECK(p->seconds == Approx(0.15));
  CHECK(p->sm_clock_mhz == Approx(1600.0));  // (1500 + 1600 + 1700) / 3
  CHECK(p->clock_events == 0x7);             // each rank's bit
  CHECK(replays == std::vector<int>{5, 5, 5});
  // One rank without a counter: no window for the group, that rank named; the others' replays
  // (whose collectives it meets) still ran.
  third->no_power_ = true;
  CHECK_FALSE(group->power_last_step(2, &why).has_value());
  CHECK(why == "power unavailable: NVML: not loaded (rank 2)");
  CHECK(replays == std::vector<int>{7, 7, 7});
  // A group one of whose ranks cannot replay has no window, and replays nothing.
  std::vector<std::unique_ptr<StepBackend>> mixed;
  for (int r = 0; r < 2; ++r) mixed.push_back(std::make_unique<ReplayRank>(r, r == 0, replays));
  CHECK_FALSE(tp_rank_threads(std::move(mixed), "mixed")->power_last_step(4, &why).has_value());
  CHECK(why == "power unavailable: a rank cannot replay its step");
  CHECK(replays == std::vector<int>{7, 7, 7});
}

TEST_CASE("a decode step's power window holds enough replays for the seconds asked", "[exec]") {
  // The H200's Llama-2-70B batch-1 step replayed in 16.90 ms (-30c/exec-70b-summary.json): one
  // second takes ceil(1 / 0.0169) = 60 replays; a step longer than the window still runs once;
  // a zero time (never measured) asks the most, 1,000,000.
  CHECK(power_window_steps(1.0, 0.0169) == 60);
  CHECK(power_window_steps(1.0, 2.5) == 1);
  CHECK(power_window_steps(0.5, 0.01) == 50);
  CHECK(power_window_steps(1.0, 1e-12) == 1000000);
  CHECK(power_window_steps(1.0, 0.0) == 1000000);
}
