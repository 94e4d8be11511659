// racksim exec on the CPU reference: step shapes, the per-op measurement file, the offline
// serving loop's batching (hand-traced) and its outputs (batching must not change a greedy
// sequence), and the refusals.

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include <catch2/catch.hpp>

#include "racksim/common/error.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/executor.hpp"
#include "racksim/sim/requests.hpp"
#include "racksim/sim/scenario.hpp"
#include "racksim/sim/simulation.hpp"
#include "racksim/workloads/model_catalog.hpp"
#include "tiny_models.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

ModelConfig tiny() { return test::tiny_llama(); }

Precision nvfp4_bf16() { return Precision{DType::nvfp4, DType::bf16, DType::bf16}; }

const MeasurementRecord& record_of(const ExecReport& r, const std::string& prefix) {
  for (const auto& rec : r.measurements.records)
    if (rec.op.identity().starts_with(prefix)) return rec;
  FAIL("no record starts with " << prefix);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("exec shapes parse, and bad ones are refused naming the option", "[exec][executor]") {
  const auto p = ExecShape::parse("prefill:128", "--shape");
  CHECK((p.kind == ExecShape::Kind::prefill && p.batch == 1 && p.tokens == 128));
  const auto p2 = ExecShape::parse("prefill:4x64", "--shape");
  CHECK((p2.batch == 4 && p2.tokens == 64 && p2.label() == "prefill 4x64"));
  const auto d = ExecShape::parse("decode:8x0", "--shape");
  CHECK((d.kind == ExecShape::Kind::decode && d.batch == 8 && d.context == 0 && d.label() == "decode 8x0"));
  for (const char* bad : {"decode:8", "prefill:0", "decode:0x5", "train:4", "prefill:4x", "decode:ax4", "decode:4x-1", "prefill"})
    REQUIRE_THROWS_WITH(ExecShape::parse(bad, "--shape"), Catch::Contains("--shape") && Catch::Contains(bad));
}

TEST_CASE("layers that fit a memory budget: hand-computed for Llama-2-70B NVFP4", "[exec][executor]") {
  // Llama-2-70B: linear parameters 68,451,041,280 (all 68,976,648,192 minus embedding and lm_head
  // 2 x 32,000 x 8,192 and norms 161 x 8,192), NVFP4 0.5625 B each (4 bits + one UE4M3 per 16);
  // the CPU reference also keeps them as FP32: per layer (68,451,041,280 x 4.5625 + 4 x 1,318,912) / 80
  // = 3,903,914,393.6 B; fixed: embedding and lm_head as FP32 = 2,097,152,000 B.
  const ModelConfig m = find_model("llama2-70b");
  CHECK(layers_within(m, DType::nvfp4, 8.0 * (1ull << 30)) == 1);   // (8 GiB - fixed) / per layer = 1.66
  CHECK(layers_within(m, DType::nvfp4, 16.0 * (1ull << 30)) == 3);  // 3.86
  CHECK(layers_within(m, DType::nvfp4, 2.097152e9 + 10 * 3.9039143936e9 + 1e6) == 10);
  CHECK(layers_within(m, DType::nvfp4, 2.097152e9 + 10 * 3.9039143936e9 - 1e6) == 9);
  CHECK(layers_within(m, DType::nvfp4, 1e15) == 80);
  CHECK(layers_within(m, DType::nvfp4, 1e6) == 1);  // never below one layer
  const CpuWeightBytes b = cpu_reference_weight_bytes(m, DType::nvfp4);
  CHECK(b.per_layer == Approx(3'903'914'393.6).epsilon(1e-9));
  CHECK(b.fixed == 2'097'152'000.0);
  // MiniMax-M2.5: one layer is 256 experts x 3 x 3,072 x 1,536 + attention 44,040,192 =
  // 3,667,918,848 linear parameters at 4.5625 B (16,734,879,744 B) plus its router, norms (the
  // final one spread over the 62 layers: 828,416 / 62) and bias as FP32 (4 x (786,432 + 13,361.5 +
  // 256) = 3,200,200): 16,738,079,944 B, 15.6 GiB, beyond the default 8 GiB: racksim exec refuses
  // it on the CPU unless --layers says how many to run. (Within 1e-9: weight_bytes' FP4 bytes
  // come back through a division.)
  const ModelConfig mm = find_model("minimax-m2.5");
  CHECK(cpu_reference_weight_bytes(mm, DType::nvfp4).per_layer == Approx(16'738'079'944.0).epsilon(1e-9));
  ExecOptions o;
  o.memory_budget_bytes = 8.0 * (1ull << 30);
  REQUIRE_THROWS_WITH(run_exec(mm, Precision{DType::nvfp4, DType::bf16, DType::bf16}, o),
                      Catch::Contains("--memory-gib 8 holds none") && Catch::Contains("15.6 GiB"));
}

TEST_CASE("exec times every op of the step graph, per identity over layers and reps", "[exec][executor]") {
  ExecOptions o;
  o.shapes = {ExecShape::parse("decode:3x5", "s"), ExecShape::parse("prefill:2x6", "s")};
  o.warmup = 1;
  o.reps = 2;
  o.serving = {4, 64, true};
  const ModelConfig m = tiny();
  const ExecReport r = run_exec(m, nvfp4_bf16(), o);
  REQUIRE(r.steps.size() == 2);
  CHECK(r.steps[0].tokens == 3);
  CHECK(r.steps[1].tokens == 12);
  for (const auto& st : r.steps) {
    CHECK(st.reps == 2);
    CHECK((st.min_s <= st.median_s && st.median_s <= st.max_s && st.min_s > 0));
    // The CPU reference replays no graph, so no power window is tried (nor a reason given).
    CHECK(st.graph_median_s == 0);
    CHECK(st.power.steps == 0);
    CHECK(st.power_note.empty());
    // Op time by kind: one entry per op kind of the step's graph, most first; each rep's ops run
    // inside its wall time, so their mean sum is within the slowest rep's.
    const StepGraph g(m, st.shape.kind == ExecShape::Kind::decode ? StepBatch::decode(3, 5) : StepBatch::prefill_only(2, 6), Deployment{},
                      nvfp4_bf16());
    std::set<std::string> want, got;
    for (std::size_t v = 0; v < g.size(); ++v) want.insert(std::string(to_string(g.op(v).kind)));
    for (const auto& [kind, sec] : st.op_time_by_kind) {
      got.insert(kind);
      CHECK(sec > 0);
    }
    CHECK(got == want);
    CHECK(std::is_sorted(st.op_time_by_kind.begin(), st.op_time_by_kind.end(), [](const auto& a, const auto& b) { return a.second > b.second; }));
    CHECK((st.op_time_s() > 0 && st.op_time_s() <= st.max_s));
  }
  CHECK(r.model.layers == 2);
  // Decode 3: qkv_proj m=3, n=(4 + 2 x 2) x 16 = 128, k=64, once per layer per timed rep.
  const auto& qkv = record_of(r, "gemm m=3 n=128 k=64");
  CHECK(qkv.reps == 2 * 2);
  CHECK(*qkv.flops == Approx(2.0 * 3 * 128 * 64));
  // RMSNorm m=3: input and post-attention norms of each layer plus the final norm.
  CHECK(record_of(r, "rmsnorm m=3 n=64").reps == (2 * 2 + 1) * 2);
  CHECK(record_of(r, "embedding m=12").reps == 2);
  // Decode attention: 3 sequences after 5 cached tokens attend 6 keys each: pairs 18.
  const auto& att = record_of(r, "attention_decode tokens=3 heads=4 head_dim=16 seqs=3 pairs=18");
  CHECK(att.reps == 2 * 2);
  // Prefill attention: 2 prompts of 6, causal pairs 2 x (1 + ... + 6) = 42.
  CHECK(record_of(r, "attention_prefill tokens=12 heads=4 head_dim=16 seqs=2 pairs=42").op.sequences == 2);
  // The file reads back and every record keeps the graph's identity.
  const MeasurementFile back = parse_measurements(format_measurements(r.measurements), "exec.json");
  REQUIRE(back.records.size() == r.measurements.records.size());
  for (std::size_t i = 0; i < back.records.size(); ++i) CHECK(back.records[i].op.identity() == r.measurements.records[i].op.identity());
  CHECK(back.run.system == "tiny-llama layers 2 of 2");
}

TEST_CASE("exec on a MoE model writes a file that reads back, its MoE ops included", "[exec][executor]") {
  // The tiny MoE (tests/tiny_models.hpp) runs router, top-k, permute, the two expert GEMMs and
  // finalize per layer; every op kind the graph has must be a kind the measurement reader knows.
  ExecOptions o;
  o.shapes = {ExecShape::parse("decode:2x3", "s")};
  o.reps = 1;
  const ExecReport r = run_exec(test::tiny_moe(), nvfp4_bf16(), o);
  const MeasurementFile back = parse_measurements(format_measurements(r.measurements), "exec-moe.json");
  REQUIRE(back.records.size() == r.measurements.records.size());
  std::set<std::string> kinds;
  for (const auto& rec : back.records) kinds.insert(rec.op.kind);
  CHECK(kinds.count("moe_permute") == 1);
  CHECK(kinds.count("moe_finalize") == 1);
  CHECK(kinds.count("moe_router_topk") == 1);
  // And in general: every OpKind's name is a measurement kind.
  const auto names = measurement_kinds();
  for (OpKind k : all_op_kinds()) {
    INFO(to_string(k));
    CHECK(std::find(names.begin(), names.end(), to_string(k)) != names.end());
  }
}

TEST_CASE("exec's offline loop batches by the simulator's rules (hand-traced)", "[exec][executor]") {
  // Two requests of 10 prompt and 3 output tokens, max_num_tokens 8, max_batch_size 2, chunked:
  // it1: r0 chunk 8 | it2: r0 chunk 2 (first token), r1 chunk 6 | it3: r0 decode, r1 chunk 4
  // (first token) | it4: r0 decode (done), r1 decode | it5: r1 decode (done): 5 iterations.
  ExecOptions o;
  o.serving = {2, 8, true};
  o.serve_input = {10, 10};
  o.serve_output = {3, 3};
  const ExecReport r = run_exec(tiny(), nvfp4_bf16(), o);
  REQUIRE(r.served);
  CHECK(r.serve.iterations == 5);
  CHECK(r.serve.output_tokens == 6);
  CHECK(r.serve.input_tokens == 20);
  CHECK(r.serve.max_in_flight == 2);
  // One at a time: r0 takes 4 iterations (8 + 2 prompt tokens, 2 decodes), then r1 the same.
  o.serving = {1, 8, true};
  const ExecReport alone = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK(alone.serve.iterations == 8);
  CHECK(alone.serve.max_in_flight == 1);
  // Same weights and prompts (one seed): greedy outputs do not depend on what shares the batch.
  REQUIRE(r.serve.outputs.size() == 2);
  CHECK(r.serve.outputs == alone.serve.outputs);
  CHECK(r.serve.outputs[0].size() == 3);
  // Without chunking a prompt runs whole or waits: it1 r0 (10 > 8 refused) is infeasible.
  o.serving = {2, 8, false};
  REQUIRE_THROWS_AS(run_exec(tiny(), nvfp4_bf16(), o), InfeasibleError);
  o.serving = {2, 16, false};
  // it1: r0 whole (10), r1 waits (6 left) | it2: r0 decode, r1 whole | it3: both decode (r0 done) | it4: r1 done.
  CHECK(run_exec(tiny(), nvfp4_bf16(), o).serve.iterations == 4);
}

TEST_CASE("exec's closed loop releases a request when a client's last one finishes (hand-traced)", "[exec][executor][concurrency]") {
  // Three requests of 10 prompt and 3 output tokens, 2 clients, budget 64: it1 r0 + r1 prefill
  // (first tokens) | it2 both decode | it3 both decode and finish, releasing r2 | it4 r2 prefill
  // | it5, it6 r2 decodes: 6 iterations, never more than 2 in flight. Offline, all three share
  // it1-it3. The simulator's closed loop gives the same schedule (sim_test, closed loop).
  ExecOptions o;
  o.serving = {4, 64, true};
  o.serve_input = {10, 10, 10};
  o.serve_output = {3, 3, 3};
  o.serve_concurrency = 2;
  const ExecReport closed = run_exec(tiny(), nvfp4_bf16(), o);
  REQUIRE(closed.served);
  CHECK(closed.serve.concurrency == 2);
  CHECK(closed.serve.iterations == 6);
  CHECK(closed.serve.max_in_flight == 2);
  CHECK(closed.serve.output_tokens == 9);
  REQUIRE(closed.serve.arrival_s.size() == 3);
  CHECK(closed.serve.arrival_s[0] == 0.0);
  CHECK(closed.serve.arrival_s[1] == 0.0);
  // r2 arrives when r0 and r1 finish (the same iteration's end), and after its own arrival come
  // its first and last tokens.
  CHECK(closed.serve.arrival_s[2] == closed.serve.finish_s[0]);
  CHECK(closed.serve.finish_s[0] == closed.serve.finish_s[1]);
  CHECK(closed.serve.first_token_s[2] > closed.serve.arrival_s[2]);
  CHECK(closed.serve.finish_s[2] > closed.serve.first_token_s[2]);
  CHECK(closed.serve.ttft.count == 3);
  CHECK(closed.serve.tpot.count == 3);
  CHECK(closed.serve.ttft.mean_s > 0);
  CHECK(closed.serve.ttft.p99_s >= closed.serve.ttft.p50_s);
  o.serve_concurrency = 0;
  const ExecReport offline = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK(offline.serve.iterations == 3);
  CHECK(offline.serve.max_in_flight == 3);
  CHECK(offline.serve.arrival_s == std::vector<double>{0.0, 0.0, 0.0});
  // Greedy outputs do not depend on the schedule.
  CHECK(closed.serve.outputs == offline.serve.outputs);
  // As many clients as requests is the offline schedule.
  o.serve_concurrency = 3;
  CHECK(run_exec(tiny(), nvfp4_bf16(), o).serve.iterations == 3);
}

TEST_CASE("serve latencies take loadgen's percentiles", "[exec][executor]") {
  // sorted[floor(n p)]: of 1..10, p50 = 6, p90 = 10, p99 = 10; mean 5.5.
  const ServeLatency l = ServeLatency::of({10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  CHECK(l.count == 10);
  CHECK(l.mean_s == Approx(5.5));
  CHECK(l.p50_s == 6);
  CHECK(l.p90_s == 10);
  CHECK(l.p99_s == 10);
  CHECK(ServeLatency::of({}).count == 0);
}

TEST_CASE("a longer loop under chunked prefill gives the outputs of one-at-a-time serving", "[exec][executor]") {
  ExecOptions o;
  o.serve_input = {37, 5, 64, 12, 29, 3};
  o.serve_output = {6, 9, 2, 1, 7, 4};
  o.serving = {4, 24, true};
  const ExecReport batched = run_exec(tiny(), nvfp4_bf16(), o);
  o.serving = {1, 1024, true};
  const ExecReport alone = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK(batched.serve.output_tokens == std::accumulate(o.serve_output.begin(), o.serve_output.end(), std::int64_t{0}));
  CHECK(batched.serve.max_in_flight == 4);
  CHECK(batched.serve.iterations < alone.serve.iterations);
  CHECK(batched.serve.outputs == alone.serve.outputs);
}

TEST_CASE("exec refuses what the CPU reference cannot run, naming it", "[exec][executor]") {
  ExecOptions o;
  o.shapes = {ExecShape::parse("decode:1x1", "s")};
  // Without CUDA built in, or without a device: exit 3 (infeasible), before anything runs.
  if (cuda_device_count() == 0) {
    o.device = "cuda:0";
    try {
      (void)run_exec(tiny(), nvfp4_bf16(), o);
      FAIL("cuda:0 ran without a device");
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::infeasible);
      CHECK_THAT(e.what(), Catch::StartsWith("no CUDA device: ") || Catch::StartsWith("built without CUDA: "));
    }
  }
  o.device = "cuda:x";
  REQUIRE_THROWS_WITH(run_exec(tiny(), nvfp4_bf16(), o), Catch::Contains("'cuda:x' is not one of cpu, cuda:N"));
  o.device = "tpu";
  REQUIRE_THROWS_WITH(run_exec(tiny(), nvfp4_bf16(), o), Catch::Contains("'tpu'") && Catch::Contains("cpu, cuda:N"));
  o.device = "cpu";
  REQUIRE_THROWS_WITH(run_exec(tiny(), Precision{DType::fp8, DType::fp8, DType::bf16}, o), Catch::Contains("precision.weights: 'fp8'"));
  // Block-scaled FP8 is the simulator's only, on either device: refused before anything runs.
  for (const char* dev : {"cpu", "cuda:0"}) {
    o.device = dev;
    REQUIRE_THROWS_WITH(run_exec(tiny(), Precision{DType::fp8_block, DType::fp8_block, DType::bf16}, o),
                        "racksim exec: precision.weights: 'fp8_block' is costed by the simulator only; the executors run bf16, fp8, "
                        "nvfp4 and mxfp4 weights");
  }
  o.device = "cpu";
  o.layers = 3;
  REQUIRE_THROWS_WITH(run_exec(tiny(), nvfp4_bf16(), o), Catch::Contains("--layers 3"));
  o.layers = 1;
  const ExecReport r = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK(r.model.layers == 1);
  REQUIRE(!r.notes.empty());
  CHECK(r.notes.front() == "runs 1 of 2 layers (--layers)");
}

TEST_CASE("the CUDA executor's buffers for exec's shapes and loop, by hand", "[exec][executor]") {
  // prefill:2x100: 200 KV tokens, 200 rows, 2 sampled. decode:4x300: 4 x 301 = 1,204 KV tokens
  // (each decode writes one more), 4 rows, and the cache fill before it runs 256-token chunks
  // (max_num_tokens): 256 rows; 4 sampled. Loop over prompts 50 and 700 with 10 and 20 outputs,
  // max_batch_size 8: at most 2 in flight (the requests), 780 tokens in all (below 2 x 720),
  // rows max(256, 2) = 256, 2 sampled. KV pool 1,204 + 2 x 16 x 4 = 1,332 (two 16-token blocks
  // per sampled sequence for partly filled last blocks; the decode shape's 4 sampled).
  ExecOptions o;
  o.shapes = {ExecShape::parse("prefill:2x100", "s"), ExecShape::parse("decode:4x300", "s")};
  o.serving = {8, 256, true, 16};
  o.serve_input = {50, 700};
  o.serve_output = {10, 20};
  o.seed = 5;
  o.fp4_gemm = Fp4GemmMode::hopper;
  const CudaStepOptions c = cuda_step_options(tiny(), o, 1);
  CHECK(c.kv_tokens == 1332);
  CHECK(c.max_rows == 256);
  CHECK(c.max_sampled == 4);
  CHECK(c.block_tokens == 16);
  CHECK(c.device == 1);
  CHECK(c.seed == 5);
  CHECK(c.fp4_gemm == Fp4GemmMode::hopper);
  CHECK(c.reference_weights);  // the tiny model: the CPU reference's weights, so logits compare
  // Twelve requests of 100 + 20 under max_batch_size 8, offline: 8 in flight, KV min(1,440,
  // 8 x 120 = 960) under the shapes' 1,204; 8 sampled: 1,204 + 2 x 16 x 8 = 1,460. A closed loop
  // of 3 clients: 3 in flight, 4 sampled (the decode shape): 1,332.
  o.serve_input.assign(12, 100);
  o.serve_output.assign(12, 20);
  const CudaStepOptions off = cuda_step_options(tiny(), o, 0);
  CHECK(off.max_sampled == 8);
  CHECK(off.kv_tokens == 1460);
  o.serve_concurrency = 3;
  const CudaStepOptions closed = cuda_step_options(tiny(), o, 0);
  CHECK(closed.max_sampled == 4);
  CHECK(closed.kv_tokens == 1332);
  o.serve_concurrency = 0;
  // Without the loop the shapes alone: KV 1,204 + 2 x 16 x 4 = 1,332; a decode shape without
  // chunking fills its cache in one 300-row step.
  o.serve_input.clear();
  o.serve_output.clear();
  o.serving.max_num_tokens = 0;
  const CudaStepOptions d = cuda_step_options(tiny(), o, 0);
  CHECK(d.kv_tokens == 1332);
  CHECK(d.max_rows == 300);
  CHECK(d.max_sampled == 4);
  // Llama-2-70B (64.4 G linear parameters) gets random weights made on the device.
  CHECK_FALSE(cuda_step_options(find_model("llama2-70b"), o, 0).reference_weights);
}

namespace {

/// The CPU reference with what a GPU backend adds (ExecOptions::wrap_backend): decode steps
/// "replay" in 10 ms each, a replayed power window draws 200 W (2 J per replay), and a power meter
/// over eager runs reports 300 W and 3 J per run it saw. What it counts goes to `seen`, which
/// outlives it (run_exec destroys its backend before returning).
struct MeterCounts {
  int metered_runs = -1;
  std::int64_t replayed = -1;
  int replay_limit = -1;  ///< replays that succeed before one fails (-1: none fails)
};
class MeteredCpu final : public StepBackend {
 public:
  MeteredCpu(std::unique_ptr<StepBackend> inner, MeterCounts& seen) : inner_(std::move(inner)), seen_(seen) {}
  StepOutput run(const StepGraph& g, const StepTokens& t, const OpObserver& o) override {
    ++runs;
    return inner_->run(g, t, o);
  }
  [[nodiscard]] std::int64_t cached_tokens(std::int64_t s) const override { return inner_->cached_tokens(s); }
  void release(std::int64_t s) override { inner_->release(s); }
  void truncate(std::int64_t s, std::int64_t n) override { inner_->truncate(s, n); }
  [[nodiscard]] std::string describe() const override { return inner_->describe(); }
  [[nodiscard]] bool can_replay_last_step() const override { return true; }
  std::optional<double> replay_last_step() override {
    if (seen_.replay_limit >= 0 && replays_++ >= seen_.replay_limit) return std::nullopt;
    return 0.010;
  }
  std::optional<StepPower> power_last_step(std::int64_t steps, std::string*) override {
    seen_.replayed = steps;
    return StepPower{steps, 0.010 * static_cast<double>(steps), 2.0 * static_cast<double>(steps), 200.0, 1, 1980.0, 0};
  }
  [[nodiscard]] bool measures_power() const override { return true; }
  [[nodiscard]] std::unique_ptr<PowerMeter> power_meter() override {
    struct Meter final : PowerMeter {
      MeteredCpu* b;
      int runs_at_open;
      Meter(MeteredCpu* backend) : b(backend), runs_at_open(backend->runs) {}
      std::optional<StepPower> stop(std::string*) override {
        const int seen = b->runs - runs_at_open;
        b->seen_.metered_runs = seen;
        return StepPower{0, 0.1 * seen, 3.0 * seen, 300.0, 1, 1980.0, 0};
      }
    };
    return std::make_unique<Meter>(this);
  }
  int runs = 0;

 private:
  std::unique_ptr<StepBackend> inner_;
  MeterCounts& seen_;
  int replays_ = 0;
};

}  // namespace

TEST_CASE("each step's power window: graph replays for a decode step, eager runs for a prefill, agreed and combined", "[exec][executor]") {
  // power_seconds 0.05 over 10 ms replays: ceil(0.05 / 0.01) = 5 replays, 2 J each, 200 W; the
  // prefill has no graph, so it runs eagerly between a meter's open and stop: as many runs as
  // 0.05 s over its eager median asks (at least 1), 3 J per run seen, 300 W.
  ExecOptions o;
  o.shapes = {ExecShape::parse("decode:2x5", "s"), ExecShape::parse("prefill:1x6", "s")};
  o.warmup = 0;
  o.reps = 2;
  o.power_seconds = 0.05;
  MeterCounts seen;
  o.wrap_backend = [&](std::unique_ptr<StepBackend> inner) { return std::make_unique<MeteredCpu>(std::move(inner), seen); };
  const ExecReport r = run_exec(tiny(), nvfp4_bf16(), o);
  REQUIRE(r.steps.size() == 2);
  const StepTiming& dec = r.steps[0];
  CHECK(dec.graph_median_s == Approx(0.010));
  CHECK(dec.power_timing == "graph");
  CHECK(dec.power.steps == 5);
  CHECK(dec.power.energy_per_step_j() == Approx(2.0));
  CHECK(dec.power.power_w == Approx(200.0));
  const StepTiming& pre = r.steps[1];
  CHECK(pre.graph_median_s == 0);
  CHECK(pre.power_timing == "eager");
  CHECK(pre.power.steps == power_window_steps(0.05, pre.median_s));
  CHECK(pre.power.steps == seen.metered_runs);  // every run inside the window counted, no other
  CHECK(pre.power.energy_per_step_j() == Approx(3.0));
  CHECK(pre.power.power_w == Approx(300.0));

  // The measurement file keeps each step (kind "step"): its time as the simulator's ops run (the
  // decode's replays; the prefill's eager reps with min and max), one GPU's FLOPs and bytes per
  // step, and the window's energy per step and power; it reads back with the same identity.
  // FLOPs of decode 2x5 on tiny-llama (2 layers, hidden 64, 4 heads + 2 KV heads of 16, FFN 128,
  // vocab 97), by hand (workloads/src/step_graph.cpp's counts): per layer qkv 2*2*128*64 = 32,768,
  // o_proj 2*2*64*64 = 16,384, gate_up 2*2*256*64 = 65,536, down 2*2*64*128 = 32,768, attention
  // 4 heads*16*4 flops*12 pairs (2 sequences x 6 keys) = 3,072, norms 2 x 4*2*64, rope 3*2*96,
  // residuals 2 x 2*64, swiglu 4*2*128 = 2,880; twice that, plus lm_head 2*2*97*64 = 24,832,
  // final norm 512 and sampling 2*2*97 = 388: 332,548.
  const MeasurementRecord& dstep = record_of(r, "step decode model=tiny-llama seqs=2 tokens=2 context=5 layers=2 gpus=1 a=bf16 w=nvfp4 kv=bf16");
  CHECK(dstep.timing == "graph");
  CHECK(dstep.time_median_s == Approx(0.010));
  CHECK_FALSE(dstep.time_min_s);
  CHECK(dstep.reps == 2);
  REQUIRE(dstep.flops);
  CHECK(*dstep.flops == Approx(332548.0));
  // At least the weights: 73,728 NVFP4 parameters at 0.5 + 1/16 (an FP8 scale per 16) bytes and
  // the BF16 lm_head, 97 x 64 x 2.
  REQUIRE(dstep.bytes_moved);
  CHECK(*dstep.bytes_moved > 73728 * 0.5625 + 97 * 64 * 2);
  CHECK(dstep.energy_j == Approx(2.0));
  CHECK(dstep.power_w == Approx(200.0));
  CHECK(dstep.sm_clock_mhz == Approx(1980.0));
  const MeasurementRecord& pstep = record_of(r, "step prefill model=tiny-llama seqs=1 tokens=6 context=6 layers=2 gpus=1");
  CHECK(pstep.timing == "eager");
  CHECK(pstep.time_median_s == Approx(pre.median_s));
  CHECK((pstep.time_min_s && *pstep.time_min_s == pre.min_s && pstep.time_max_s && *pstep.time_max_s == pre.max_s));
  CHECK(pstep.energy_j == Approx(3.0));
  // A replay that fails ends the replays: the record counts the one that ran, not the reps asked.
  {
    MeterCounts one;
    one.replay_limit = 1;
    ExecOptions o1 = o;
    o1.shapes = {ExecShape::parse("decode:2x5", "s")};
    o1.wrap_backend = [&](std::unique_ptr<StepBackend> inner) { return std::make_unique<MeteredCpu>(std::move(inner), one); };
    const ExecReport r1 = run_exec(tiny(), nvfp4_bf16(), o1);
    CHECK(r1.steps[0].graph_reps == 1);
    CHECK(record_of(r1, "step decode model=tiny-llama seqs=2").reps == 1);
  }
  const MeasurementFile back = parse_measurements(format_measurements(r.measurements), "exec.json");
  REQUIRE(back.records.size() == r.measurements.records.size());
  for (std::size_t i = back.records.size() - 2; i < back.records.size(); ++i) {
    const MeasurementRecord &a = r.measurements.records[i], &b = back.records[i];
    CHECK(b.op.identity() == a.op.identity());
    CHECK(b.timing == a.timing);
    CHECK(b.time_median_s == a.time_median_s);
    CHECK(b.reps == a.reps);
    CHECK(b.flops == a.flops);
    CHECK(b.bytes_moved == a.bytes_moved);
    CHECK(b.energy_j == a.energy_j);
    CHECK(b.power_w == a.power_w);
    CHECK(b.sm_clock_mhz == a.sm_clock_mhz);
  }

  // Under MPI: the ranks agree on the fewest runs (here: at most 3) and sum their GPUs (a fake
  // combine that adds a second GPU of the same draw: a group of two, as the step records say);
  // with no window (power_seconds 0), none.
  o.tensor_parallel = 2;
  ModelConfig even = tiny();
  even.vocab = 96;  // lm_head splits by vocabulary
  o.agree_power_steps = [](int n) { return std::min(n, 3); };
  o.combine_power = [](const std::optional<StepPower>& p) {
    std::optional<StepPower> two = p;
    if (two) two->energy_j *= 2, two->power_w *= 2, two->gpus = 2;
    return two;
  };
  const ExecReport m = run_exec(even, nvfp4_bf16(), o);
  CHECK(seen.replayed == 3);
  CHECK(m.steps[0].power.steps == 3);
  CHECK(m.steps[0].power.gpus == 2);
  CHECK(m.steps[0].power.power_w == Approx(400.0));
  CHECK(m.steps[1].power.steps == std::min(3, power_window_steps(0.05, m.steps[1].median_s)));
  CHECK(m.steps[1].power.energy_per_step_j() == Approx(6.0));
  CHECK(record_of(m, "step decode model=tiny-llama seqs=2 tokens=2 context=5 layers=2 gpus=2").power_w == Approx(400.0));
  o.combine_power = [](const std::optional<StepPower>&) { return std::optional<StepPower>(); };  // another rank had none
  const ExecReport none = run_exec(even, nvfp4_bf16(), o);
  CHECK(none.steps[0].power.steps == 0);
  CHECK(none.steps[0].power_note == "power unavailable: another rank of the MPI run has no power counter");
  o.combine_power = nullptr;
  o.power_seconds = 0;
  const ExecReport off = run_exec(even, nvfp4_bf16(), o);
  CHECK(off.steps[0].power.steps == 0);
  CHECK(off.steps[1].power.steps == 0);
  CHECK(off.steps[1].power_timing.empty());
}

TEST_CASE("the serving loop's power: one meter over every iteration, summed over ranks, none under a second", "[exec][executor]") {
  // MeteredCpu's meter reports 0.1 s, 3 J and 300 W per run it saw. Three requests of 10 prompt
  // and 3 output tokens served one at a time with max_num_tokens 8 take 4 iterations each (the
  // hand-traced loop above: 8 + 2 prompt tokens, then 2 decodes): 12 runs in the window, 1.2 s,
  // 36 J, 9 output tokens, so 4 J per output token.
  ExecOptions o;
  o.serving = {1, 8, true};
  o.serve_input = {10, 10, 10};
  o.serve_output = {3, 3, 3};
  MeterCounts seen;
  o.wrap_backend = [&](std::unique_ptr<StepBackend> inner) { return std::make_unique<MeteredCpu>(std::move(inner), seen); };
  const ExecReport r = run_exec(tiny(), nvfp4_bf16(), o);
  REQUIRE(r.serve.iterations == 12);
  CHECK(seen.metered_runs == 12);  // every iteration inside the window, no other run
  REQUIRE(r.serve.power);
  CHECK(r.serve.power->steps == 12);
  CHECK(r.serve.power->seconds == Approx(1.2));
  CHECK(r.serve.power->energy_j == Approx(36.0));
  CHECK(r.serve.power->power_w == Approx(300.0));
  CHECK(r.serve.power->energy_j / static_cast<double>(r.serve.output_tokens) == Approx(4.0));
  CHECK(r.serve.power_note.empty());
  // Two ranks under MPI: the group's GPUs summed (a fake combine adding a second GPU's draw).
  o.combine_power = [](const std::optional<StepPower>& p) {
    std::optional<StepPower> two = p;
    if (two) two->energy_j *= 2, two->power_w *= 2, two->gpus = 2;
    return two;
  };
  const ExecReport m = run_exec(tiny(), nvfp4_bf16(), o);
  REQUIRE(m.serve.power);
  CHECK(m.serve.power->gpus == 2);
  CHECK(m.serve.power->power_w == Approx(600.0));
  // A rank without a counter: none anywhere, and why.
  o.combine_power = [](const std::optional<StepPower>&) { return std::optional<StepPower>(); };
  const ExecReport none = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK_FALSE(none.serve.power);
  CHECK(none.serve.power_note == "power unavailable: another rank of the MPI run has no power counter");
  // Two at a time the same requests take 8 iterations (r2 admitted at the 5th, its prompt in 7 + 3
  // tokens, then 2 decodes): 0.8 s, under a second, no power.
  o.combine_power = nullptr;
  o.serving = {2, 8, true};
  const ExecReport shorter = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK(shorter.serve.iterations == 8);
  CHECK_FALSE(shorter.serve.power);
  CHECK(shorter.serve.power_note.find("under the second") != std::string::npos);
  // The CPU reference itself has no meter and says nothing.
  o.wrap_backend = nullptr;
  const ExecReport cpu = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK_FALSE(cpu.serve.power);
  CHECK(cpu.serve.power_note.empty());
}

namespace {

/// A fake clock for the serving loop (ExecOptions::serve_clock, serve_wait_until): each step the
/// backend runs takes exactly `step_s`, a wait jumps to its time. The loop's schedule is then
/// exact, as the simulator's is under serving.fixed_step_time.
struct FakeClock {
  double now = 0;
  double step_s = 0.125;  // a power of two: sums of it are exact in binary
  int waits = 0;
};
class ClockedCpu final : public StepBackend {
 public:
  ClockedCpu(std::unique_ptr<StepBackend> inner, FakeClock& clock) : inner_(std::move(inner)), clock_(clock) {}
  StepOutput run(const StepGraph& g, const StepTokens& t, const OpObserver& o) override {
    clock_.now += clock_.step_s;
    return inner_->run(g, t, o);
  }
  [[nodiscard]] std::int64_t cached_tokens(std::int64_t s) const override { return inner_->cached_tokens(s); }
  void release(std::int64_t s) override { inner_->release(s); }
  void truncate(std::int64_t s, std::int64_t n) override { inner_->truncate(s, n); }
  [[nodiscard]] std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<StepBackend> inner_;
  FakeClock& clock_;
};

void use_fake_clock(ExecOptions& o, FakeClock& clock) {
  o.wrap_backend = [&clock](std::unique_ptr<StepBackend> inner) { return std::make_unique<ClockedCpu>(std::move(inner), clock); };
  o.serve_clock = [&clock] { return clock.now; };
  o.serve_wait_until = [&clock](double t) {
    ++clock.waits;
    clock.now = std::max(clock.now, t);
  };
}

}  // namespace

TEST_CASE("exec's timed arrivals: an iteration admits what arrived by its start, an idle loop waits (hand-traced)", "[exec][executor][arrivals]") {
  // Three requests of 10 prompt + 3 output tokens arriving at 0, 0.25 and 1.0 s; every step takes
  // 0.125 s. it1 [0, .125) r0 prefill | it2 r0 decode | it3 [.25, .375) r0's last decode, and r1,
  // arrived at exactly .25, prefills beside it (the simulator's rule: an arrival at an iteration's
  // start is seen by it) | it4, it5 r1 decodes, done at .625 | idle until 1.0 (.375 s) | it6-it8
  // r2, done at 1.375. Every TTFT is one step (.125 s), every TPOT one step.
  ExecOptions o;
  o.serving = {4, 64, true};
  o.serve_input = {10, 10, 10};
  o.serve_output = {3, 3, 3};
  o.serve_arrival_s = {0.0, 0.25, 1.0};
  FakeClock clock;
  clock.now = 5.0;  // the loop counts from its own start
  use_fake_clock(o, clock);
  const ExecReport r = run_exec(tiny(), nvfp4_bf16(), o);
  REQUIRE(r.served);
  CHECK(r.serve.timed);
  CHECK(r.serve.iterations == 8);
  CHECK(r.serve.max_in_flight == 2);
  CHECK(r.serve.output_tokens == 9);
  CHECK(clock.waits == 1);
  CHECK(r.serve.idle_s == 0.375);
  CHECK(r.serve.wall_s == 1.375);
  CHECK(r.serve.arrival_s == std::vector<double>{0.0, 0.25, 1.0});
  CHECK(r.serve.first_token_s == std::vector<double>{0.125, 0.375, 1.125});
  CHECK(r.serve.finish_s == std::vector<double>{0.375, 0.625, 1.375});
  CHECK(r.serve.ttft.p99_s == 0.125);
  CHECK(r.serve.tpot.p99_s == 0.125);
  CHECK(r.serve.e2e.p99_s == 0.375);  // arrival to finish: three steps each
  CHECK(r.serve.e2e.mean_s == 0.375);
  // Under MPI the ranks admit the fewest arrivals any rank's clock has seen (agree_arrived). Here
  // a rank whose clock runs behind refuses each new arrival once. Idle at 0 and at 1.0 s, the loop
  // asks again at once (r0 and r2 start on time); at it3 r1 waits one iteration: it prefills in
  // it4 [.375, .5) and finishes at .75, so 9 iterations and 9 + 2 asks.
  int asks = 0, increases = 0;  // asks in all; asks whose count rose (every other one refused)
  std::size_t last = 0;
  o.agree_arrived = [&](int arrived) {
    ++asks;
    if (static_cast<std::size_t>(arrived) > last && increases++ % 2 == 0) return static_cast<int>(last);
    last = static_cast<std::size_t>(arrived);
    return arrived;
  };
  clock = FakeClock{};
  const ExecReport agreed = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK(agreed.serve.iterations == 9);
  CHECK(agreed.serve.first_token_s == std::vector<double>{0.125, 0.5, 1.125});
  CHECK(agreed.serve.finish_s == std::vector<double>{0.375, 0.75, 1.375});
  CHECK(increases == 6);  // each of the 3 arrivals refused once, then agreed
  CHECK(asks == 9 + 2);
  o.agree_arrived = nullptr;
  // Greedy outputs do not depend on when requests arrive.
  o.serve_arrival_s.clear();
  o.wrap_backend = nullptr;
  o.serve_clock = nullptr;
  o.serve_wait_until = nullptr;
  const ExecReport offline = run_exec(tiny(), nvfp4_bf16(), o);
  CHECK_FALSE(offline.serve.timed);
  CHECK(offline.serve.outputs == r.serve.outputs);
  // Arrival times must be one per request, sorted, from 0; not beside a closed loop.
  o.serve_arrival_s = {0.0, 0.5, 0.25};
  CHECK_THROWS_AS(run_exec(tiny(), nvfp4_bf16(), o), InputError);
  o.serve_arrival_s = {0.0, 0.5};
  CHECK_THROWS_AS(run_exec(tiny(), nvfp4_bf16(), o), InputError);
  // Nor past the simulator's horizon of 1e6 s: refused, not slept through.
  o.serve_arrival_s = {0.0, 0.5, 2e6};
  CHECK_THROWS_WITH(run_exec(tiny(), nvfp4_bf16(), o), Catch::Contains("the serving loop waits up to 1e+06 s"));
  o.serve_arrival_s = {0.0, 0.25, 1.0};
  o.serve_concurrency = 2;
  CHECK_THROWS_AS(run_exec(tiny(), nvfp4_bf16(), o), InputError);
}

TEST_CASE("exec's server loop under a fixed step time is the simulator's server run under serving.fixed_step_time", "[exec][executor][arrivals]") {
  // MLPerf's Server scenario on the tiny model: 40 Poisson arrivals at 0.5 queries/s (seed 7), each
  // iteration 0.125 s on both sides (the executor's fake clock; the simulator's
  // serving.fixed_step_time). With arrivals, batching and finishes all on one timeline, the
  // executor's loop must take the simulator's iterations and give every request its first token
  // and its finish at the simulator's times (so its TTFT and TPOT percentiles and its duration, from
  // the first arrival as MLPerf counts it). Three serving settings: a 64-token budget with
  // chunked prefill; a batch limit of 2; whole prompts (no chunking) in a 256-token budget. The
  // arrivals are spread enough that each loop both idles and batches (checked), so both rules are
  // exercised.
  const std::vector<std::vector<std::string>> settings = {
      {"serving.max_num_tokens=64"},
      {"serving.max_num_tokens=64", "serving.max_batch_size=2"},
      {"serving.max_num_tokens=256", "serving.chunked_prefill=false"}};
  for (const auto& extra : settings) {
    std::vector<std::string> sets = {"workload.scenario=server", "workload.qps=0.5", "workload.requests=40"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    INFO(extra.back());
    Scenario s = load_scenario(std::string(RACKSIM_SOURCE_DIR) + "/examples/exec-tiny-llama-cpu.yaml", sets);
    s.serving.fixed_step_time_s = 0.125;
    const SimResult sim = simulate(s, SimOptions{.keep_requests = true});
    const RequestSet reqs = generate_requests(s, s.workload.qps);
    ExecOptions o;
    o.serving = {s.serving.max_batch_size, s.serving.max_num_tokens, s.serving.chunked_prefill, s.serving.kv_block_tokens};
    o.serve_input = reqs.input;
    o.serve_output = reqs.output;
    for (const SimTime a : reqs.arrival) o.serve_arrival_s.push_back((a - reqs.arrival.front()).to_seconds());
    o.seed = s.seed;
    FakeClock clock;
    use_fake_clock(o, clock);
    const ExecReport r = run_exec(s.model, s.precision, o);
    REQUIRE(r.served);
    CHECK(sim.preemptions == 0);
    CHECK(r.serve.iterations == sim.iterations);
    CHECK(r.serve.output_tokens == sim.output_tokens);
    CHECK(r.serve.wall_s == Approx(sim.duration_s).epsilon(1e-9));
    REQUIRE(sim.request_records.size() == reqs.size());
    int same = 0;
    for (const RequestRecord& q : sim.request_records) {
      const double first = (q.first_token - reqs.arrival.front()).to_seconds(), fin = (q.finish - reqs.arrival.front()).to_seconds();
      same += std::abs(r.serve.first_token_s[q.id] - first) < 1e-9 && std::abs(r.serve.finish_s[q.id] - fin) < 1e-9;
    }
    CHECK(same == static_cast<int>(reqs.size()));
    CHECK(r.serve.ttft.p99_s * 1e3 == Approx(sim.ttft_ms.p99).epsilon(1e-6));
    CHECK(r.serve.e2e.p50_s * 1e3 == Approx(sim.e2e_ms.p50).epsilon(1e-6));
    CHECK(r.serve.idle_s > 0);          // it waited for arrivals
    CHECK(r.serve.max_in_flight >= 2);  // and batched
    CHECK(clock.waits > 1);
  }
}
