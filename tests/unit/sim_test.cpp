// sim/: the discrete-event simulation against closed forms, its invariants and determinism.

#include <catch2/catch.hpp>

#include "racksim/common/error.hpp"
#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/energy_model.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/sim/engine.hpp"
#include "racksim/sim/requests.hpp"
#include "racksim/sim/scenario.hpp"
#include "racksim/sim/simulation.hpp"
#include "racksim/sim/step_estimate.hpp"
#include "racksim/sim/step_prediction.hpp"
#include "racksim/sim/step_timer.hpp"
#include "racksim/workloads/model_catalog.hpp"
#include "test_support.hpp"

using namespace racksim;

namespace {

std::string small_scenario(const std::string& workload, const std::string& serving_extra = "", const std::string& system = "dgx-b200") {
  return "name: small\nsystem: " + system +
         "\nmodel: llama2-70b\nprecision: {weights: nvfp4, activations: nvfp4, kv_cache: fp8}\n"
         "deployment: {tensor_parallel: 1, pipeline_parallel: 1, replicas: 1}\n"
         "serving:\n  max_batch_size: 8\n  max_num_tokens: 8192\n" +
         serving_extra + "workload:\n" + workload + "seed: 7\n";
}

Scenario load_text(const std::string& name, const std::string& text, const std::vector<std::string>& sets = {}) {
  return load_scenario(test::write_temp(name, text), sets);
}

/// 8x B200 (8 replicas of TP1) Offline at full batch (2,048 sequences, 3,584-token budget) on the
/// MLPerf Llama-2-70B lengths, `requests` of them, with `sets` on top: compute bound.
Scenario b200_offline_full_batch(const std::string& name, int requests, std::vector<std::string> sets = {}) {
  const std::string w = "  scenario: offline\n  requests: " + std::to_string(requests) +
                        "\n  input_tokens: {distribution: dataset, name: mlperf-llama2-70b}\n"
                        "  output_tokens: {distribution: dataset, name: mlperf-llama2-70b, mean: 273}\n";
  sets.insert(sets.begin(), "deployment.replicas=8");
  return load_text(name, small_scenario(w, "  max_batch_size: 2048\n  max_num_tokens: 3584\n"), sets);
}

const std::string kFixed100x10 =
    "  scenario: offline\n  requests: 4\n  input_tokens: {distribution: fixed, value: 100}\n"
    "  output_tokens: {distribution: fixed, value: 10}\n";

}  // namespace

TEST_CASE("engine orders events by time, priority, then insertion", "[sim][engine]") {
  std::vector<std::uint32_t> order;
  Engine e([&](const Event& ev) { order.push_back(ev.target); });
  e.schedule(SimTime::ps(5), 1, 0, 1);
  e.schedule(SimTime::ps(5), 0, 0, 2);
  e.schedule(SimTime::ps(3), 9, 0, 3);
  e.schedule(SimTime::ps(5), 0, 0, 4);
  CHECK(e.run() == 4);
  CHECK(order == std::vector<std::uint32_t>{3, 2, 4, 1});
  CHECK(e.now() == SimTime::ps(5));
  CHECK(SimTime::seconds(1.5e-6).ps() == 1'500'000);
}

TEST_CASE("a fixed step time gives closed-form throughput and latencies", "[sim][closed-form]") {
  // 4 requests of 100 prompt + 10 output tokens, one replica, batch up to 8, step time 10 ms.
  // Iteration 0 prefills all four (400 tokens <= 8192): first tokens at 10 ms. Iterations 1..9
  // decode one token each: every request finishes at 100 ms.
  // TTFT = 10 ms, TPOT = (100 - 10) / 9 = 10 ms, E2E = 100 ms, 40 tokens / 0.1 s = 400 tokens/s.
  const Scenario s = load_text("fixed.yaml", small_scenario(kFixed100x10, "  fixed_step_time: 10ms\n"));
  const SimResult r = simulate(s);
  CHECK(r.requests_completed == 4);
  CHECK(r.output_tokens == 40);
  CHECK(r.iterations == 10);
  CHECK(r.duration_s == Approx(0.100));
  CHECK(r.output_tokens_per_s == Approx(400));
  CHECK(r.ttft_ms.p99 == Approx(10));
  CHECK(r.tpot_ms.mean == Approx(10));
  CHECK(r.e2e_ms.p50 == Approx(100));
}

TEST_CASE("max_batch_size makes requests wait in waves", "[sim][closed-form]") {
  // Same, but 2 sequences at a time: requests 0,1 run iterations 0..9 (finish at 100 ms);
  // requests 2,3 are admitted at iteration 10, first token at 110 ms, finish at 200 ms.
  // TTFT: 10, 10, 110, 110 -> mean 60; percentiles as loadgen: sorted[floor(n p)], so p50 =
  // sorted[2] = 110 and p99 = sorted[3] = 110.
  const Scenario s = load_text("waves.yaml", small_scenario(kFixed100x10, "  fixed_step_time: 10ms\n"), {"serving.max_batch_size=2"});
  const SimResult r = simulate(s);
  CHECK(r.iterations == 20);
  CHECK(r.duration_s == Approx(0.200));
  CHECK(r.ttft_ms.mean == Approx(60));
  CHECK(r.ttft_ms.p50 == Approx(110));
  CHECK(r.ttft_ms.p99 == Approx(110));
  CHECK(r.tpot_ms.p99 == Approx(10));
  CHECK(r.e2e_ms.mean == Approx(150));
}

TEST_CASE("chunked prefill splits prompts over the token budget", "[sim][closed-form]") {
  // 4 x 100-token prompts, budget 150 tokens per iteration, 10 ms steps, 2 output tokens:
  // it0: r0 100 + r1 50 (r0's first token at 10 ms); it1: r0 decodes (finishes at 20 ms),
  // r1's last 50, r2 99 (r1 first token at 20 ms); it2: r1 decodes (done 30 ms), r2 1, r3 100
  // (r2, r3 first tokens at 30 ms); it3: r2, r3 decode: done at 40 ms.
  const std::string w = "  scenario: offline\n  requests: 4\n  input_tokens: {distribution: fixed, value: 100}\n"
                        "  output_tokens: {distribution: fixed, value: 2}\n";
  const Scenario s = load_text("chunk.yaml", small_scenario(w, "  fixed_step_time: 10ms\n"), {"serving.max_num_tokens=150"});
  const SimResult r = simulate(s);
  CHECK(r.iterations == 4);
  CHECK(r.duration_s == Approx(0.040));
  CHECK(r.ttft_ms.mean == Approx((10 + 20 + 30 + 30) / 4.0));
  CHECK(r.e2e_ms.mean == Approx((20 + 30 + 40 + 40) / 4.0));
  // Without chunking a 100-token prompt never splits: it0 r0 only (r1 does not fit in 50).
  const Scenario nc = load_text("nochunk.yaml", small_scenario(w, "  fixed_step_time: 10ms\n  chunked_prefill: false\n"),
                                {"serving.max_num_tokens=150"});
  const SimResult rn = simulate(nc);
  CHECK(rn.ttft_ms.p99 > r.ttft_ms.p99);
}

TEST_CASE("unmixed batches run prefill alone while the decodes wait (SGLang's default)", "[sim][closed-form]") {
  // The chunked-prefill case above with serving.mixed_batches false: 4 x 100-token prompts,
  // budget 150, 10 ms steps, 2 output tokens. it0: prefill r0 100 + r1 50 (r0 first token at
  // 10 ms); it1: prefill r1's last 50 + r2 100 (r1, r2 at 20 ms), r0's decode waits; it2: prefill
  // r3 100 (30 ms); it3: the four decode their second token and finish at 40 ms. TTFT mean
  // (10 + 20 + 20 + 30) / 4 = 20 ms (mixed: 22.5), E2E 40 ms each (mixed: mean 32.5).
  const std::string w = "  scenario: offline\n  requests: 4\n  input_tokens: {distribution: fixed, value: 100}\n"
                        "  output_tokens: {distribution: fixed, value: 2}\n";
  const Scenario s = load_text("unmixed.yaml", small_scenario(w, "  fixed_step_time: 10ms\n  mixed_batches: false\n"),
                               {"serving.max_num_tokens=150"});
  CHECK_FALSE(s.serving.mixed_batches);
  SimOptions opt;
  opt.keep_iterations = true;
  const SimResult r = simulate(s, opt);
  CHECK(r.iterations == 4);
  CHECK(r.duration_s == Approx(0.040));
  CHECK(r.ttft_ms.mean == Approx(20));
  CHECK(r.e2e_ms.mean == Approx(40));
  CHECK(r.e2e_ms.p50 == Approx(40));
  REQUIRE(r.iteration_records.size() == 4);
  const std::int64_t decodes[] = {0, 0, 0, 4}, prompt[] = {150, 150, 100, 0};
  for (std::size_t i = 0; i < 4; ++i) {
    INFO("iteration " << i);
    CHECK(r.iteration_records[i].decode == decodes[i]);
    CHECK(r.iteration_records[i].prefill_tokens == prompt[i]);
  }
  // Two requests of 100 + 10 tokens, budget 100: r0 prefills (10 ms), r1 prefills alone while r0
  // waits (20 ms), then 9 iterations decode both: both finish at 110 ms. r0's TPOT (110 - 10) / 9,
  // r1's (110 - 20) / 9. Mixed, r1's prompt shares iterations with r0's decodes: 99 + 1 tokens,
  // first token at 30 ms, r0 done at 100 ms, r1 at 120 ms.
  const std::string w2 = "  scenario: offline\n  requests: 2\n  input_tokens: {distribution: fixed, value: 100}\n"
                         "  output_tokens: {distribution: fixed, value: 10}\n";
  const SimResult u = simulate(load_text("unmixed2.yaml", small_scenario(w2, "  fixed_step_time: 10ms\n  mixed_batches: false\n"),
                                         {"serving.max_num_tokens=100"}));
  CHECK(u.iterations == 11);
  CHECK(u.duration_s == Approx(0.110));
  CHECK(u.ttft_ms.mean == Approx(15));
  CHECK(u.tpot_ms.mean == Approx((100.0 / 9 + 90.0 / 9) / 2));
  const SimResult m = simulate(load_text("mixed2.yaml", small_scenario(w2, "  fixed_step_time: 10ms\n"), {"serving.max_num_tokens=100"}));
  CHECK(m.iterations == 12);
  CHECK(m.duration_s == Approx(0.120));
  CHECK(m.ttft_ms.mean == Approx(20));
}

TEST_CASE("unmixed batches keep the invariants under preemption and a closed loop", "[sim][invariants]") {
  // The squeezed-cache run of the invariants test, unmixed: the run's own asserts (tokens
  // conserved, KV within capacity, caches drained) must hold; no iteration both decodes and
  // prefills; a closed loop still never exceeds its clients.
  const std::string w = "  scenario: offline\n  requests: 200\n  input_tokens: {distribution: uniform, min: 20, max: 300}\n"
                        "  output_tokens: {distribution: uniform, min: 1, max: 200}\n";
  for (const char* policy : {"max_utilization", "guaranteed_no_evict"}) {
    const Scenario s = load_text("unmixed-pre.yaml", small_scenario(w, "  max_batch_size: 64\n  mixed_batches: false\n"),
                                 {std::string("serving.capacity_policy=") + policy, "deployment.replicas=2",
                                  "serving.kv_memory_fraction=0.0008"});
    SimOptions opt;
    opt.keep_iterations = true;
    const SimResult r = simulate(s, opt);
    INFO(policy);
    CHECK(r.requests_completed == 200);
    if (std::string(policy) == "max_utilization") CHECK(r.preemptions > 0);
    for (const IterationRecord& it : r.iteration_records) CHECK((it.decode == 0 || it.prefill_tokens == 0));
  }
  const std::string c = "  scenario: concurrency\n  concurrency: 6\n  requests: 60\n"
                        "  input_tokens: {distribution: uniform, min: 20, max: 2000}\n"
                        "  output_tokens: {distribution: uniform, min: 1, max: 300}\n";
  SimOptions keep;
  keep.keep_requests = true;
  const SimResult r = simulate(load_text("unmixed-closed.yaml", small_scenario(c, "  mixed_batches: false\n")), keep);
  REQUIRE(r.request_records.size() == 60);
  for (const auto& q : r.request_records) {
    int in_flight = 0;
    for (const auto& o : r.request_records) in_flight += o.arrival <= q.arrival && q.arrival < o.finish ? 1 : 0;
    CHECK(in_flight <= 6);
  }
  // Pipeline parallelism (two lanes per replica) and one-token outputs (a request that finishes
  // in its prefill-only iteration): every request completes, the run repeats byte for byte.
  const std::string one = "  scenario: concurrency\n  concurrency: 6\n  requests: 60\n"
                          "  input_tokens: {distribution: uniform, min: 20, max: 2000}\n"
                          "  output_tokens: {distribution: uniform, min: 1, max: 3}\n";
  for (const std::string& wl : {c, one}) {
    const Scenario pp = load_text("unmixed-pp.yaml", small_scenario(wl, "  mixed_batches: false\n"),
                                  {"deployment.tensor_parallel=2", "deployment.pipeline_parallel=2", "deployment.replicas=1"});
    const SimResult a = simulate(pp), b = simulate(pp);
    CHECK(a.requests_completed == 60);
    CHECK(a.duration_s == b.duration_s);
    CHECK(a.ttft_ms.mean == b.ttft_ms.mean);
    CHECK(a.iterations == b.iterations);
  }
}

TEST_CASE("a closed loop of clients sends each next request when one finishes", "[sim][closed-form][concurrency]") {
  // 2 clients, 3 requests of 100 + 10 tokens, 10 ms steps. Requests 0 and 1 arrive at 0,
  // prefill together (first tokens at 10 ms) and finish at 100 ms; request 2 arrives then
  // (the client of request 0), first token at 110 ms, done at 200 ms. Every request: TTFT 10 ms,
  // TPOT 10 ms, E2E 100 ms. 30 tokens / 0.2 s = 150 tokens/s; an open offline run of the same
  // three requests holds all three at once: 30 tokens / 0.1 s.
  const std::string w = "  scenario: concurrency\n  concurrency: 2\n  requests: 3\n  input_tokens: {distribution: fixed, value: 100}\n"
                        "  output_tokens: {distribution: fixed, value: 10}\n";
  const Scenario s = load_text("closed.yaml", small_scenario(w, "  fixed_step_time: 10ms\n"));
  SimOptions keep;
  keep.keep_requests = true;
  const SimResult r = simulate(s, keep);
  CHECK(r.iterations == 20);
  CHECK(r.duration_s == Approx(0.200));
  CHECK(r.output_tokens_per_s == Approx(150));
  CHECK(r.ttft_ms.mean == Approx(10));
  CHECK(r.ttft_ms.p99 == Approx(10));
  CHECK(r.tpot_ms.mean == Approx(10));
  CHECK(r.e2e_ms.p99 == Approx(100));
  CHECK(r.qps == 0);
  REQUIRE(r.request_records.size() == 3);
  CHECK(r.request_records[0].arrival.to_seconds() == Approx(0));
  CHECK(r.request_records[1].arrival.to_seconds() == Approx(0));
  CHECK(r.request_records[2].arrival.to_seconds() == Approx(0.100));
  CHECK(r.request_records[2].finish.to_seconds() == Approx(0.200));
  // At least as many clients as requests: the offline run.
  const SimResult open = simulate(load_text("open.yaml", small_scenario(w, "  fixed_step_time: 10ms\n"), {"workload.concurrency=3"}));
  CHECK(open.duration_s == Approx(0.100));
}

TEST_CASE("a closed loop never has more requests in flight than clients", "[sim][invariants][concurrency]") {
  // Mixed lengths, the cost model's step times, 2 replicas: whatever the order of finishes, at
  // each arrival at most `concurrency` requests are in flight (arrived, not finished), and every
  // request after the first `concurrency` arrives exactly when an earlier one finishes.
  const std::string w = "  scenario: concurrency\n  concurrency: 5\n  requests: 60\n"
                        "  input_tokens: {distribution: uniform, min: 20, max: 2000}\n"
                        "  output_tokens: {distribution: uniform, min: 1, max: 300}\n";
  const Scenario s = load_text("closed-mix.yaml", small_scenario(w), {"deployment.replicas=2"});
  SimOptions keep;
  keep.keep_requests = true;
  const SimResult r = simulate(s, keep);
  REQUIRE(r.request_records.size() == 60);
  std::vector<SimTime> finishes;
  for (const auto& q : r.request_records) finishes.push_back(q.finish);
  for (const auto& q : r.request_records) {
    int in_flight = 0;
    for (const auto& o : r.request_records) in_flight += o.arrival <= q.arrival && q.arrival < o.finish ? 1 : 0;
    INFO("request " << q.id);
    CHECK(in_flight <= 5);
    if (q.id >= 5) CHECK(std::count(finishes.begin(), finishes.end(), q.arrival) >= 1);
    else CHECK(q.arrival == SimTime{});
  }
  // More clients, more throughput and longer waits (the same requests).
  const SimResult more = simulate(load_text("closed-more.yaml", small_scenario(w), {"deployment.replicas=2", "workload.concurrency=20"}));
  CHECK(more.output_tokens_per_s > r.output_tokens_per_s);
  CHECK(more.tpot_ms.mean > r.tpot_ms.mean);
}

TEST_CASE("concurrency and qps are read only by the scenarios that use them", "[sim][errors][concurrency]") {
  const std::string w = "  scenario: concurrency\n  concurrency: 2\n  requests: 3\n  input_tokens: {distribution: fixed, value: 100}\n"
                        "  output_tokens: {distribution: fixed, value: 10}\n";
  const std::string text = small_scenario(w);
  CHECK_THROWS_WITH(load_text("c0.yaml", text, {"workload.concurrency=0"}), Catch::Contains("workload.concurrency") && Catch::Contains("'0'"));
  CHECK_THROWS_WITH(load_text("c1.yaml", text, {"workload.scenario=offline"}),
                    Catch::Contains("workload.concurrency: is read with scenario concurrency, not offline"));
  CHECK_THROWS_WITH(load_text("c2.yaml", text, {"workload.qps=5"}),
                    Catch::Contains("workload.qps: is read with scenario server or interactive, not concurrency"));
  const std::string missing = small_scenario("  scenario: concurrency\n  requests: 3\n  input_tokens: {distribution: fixed, value: 100}\n"
                                             "  output_tokens: {distribution: fixed, value: 10}\n");
  CHECK_THROWS_WITH(load_text("c3.yaml", missing), Catch::Contains("workload.concurrency"));
  // One client, 1,000 requests of 10 steps of 10,000 s: 1e8 s, past the 1e6 s racksim simulates
  // (int64 picoseconds hold 106 days). The closed loop's arrivals are all 0 when loaded, so the
  // run itself must stop at the bound (iteration 101: 100 x 10,000 s = 1e6 s), exit 3, not overflow.
  const Scenario long_run = load_text("c4.yaml", small_scenario(w, "  fixed_step_time: 10000s\n"),
                                      {"workload.concurrency=1", "workload.requests=1000"});
  CHECK_THROWS_AS(simulate(long_run), InfeasibleError);
  CHECK_THROWS_WITH(simulate(long_run), Catch::Contains("iteration 101 of replica 0") && Catch::Contains("simulates up to 1e+06 s"));
}

TEST_CASE("step costs from batch sums equal the full graph's", "[sim][step-timer]") {
  // The simulator's memoized decomposition must agree with estimate_step() on the whole graph.
  const SystemSpec sys = find_system("dgx-h100");
  const RooflineCostModel cost(sys);
  const EnergyModel energy = energy_model_for(sys.gpu);
  struct Case {
    std::string model;
    Deployment dep;
    Precision prec;
  };
  const Case cases[] = {{"llama2-70b", {1, 1, 1}, {DType::fp8, DType::fp8, DType::fp8}},
                        {"llama2-70b", {8, 1, 1}, {DType::fp8, DType::fp8, DType::fp8}},
                        {"llama2-70b", {2, 2, 1}, {DType::bf16, DType::bf16, DType::bf16}},
                        {"mixtral-8x7b", {4, 1, 2}, {DType::fp8, DType::fp8, DType::fp8}},
                        {"qwen3-32b", {4, 2, 1}, {DType::fp8, DType::fp8, DType::fp8}}};
  for (const auto& c : cases) {
    const ModelConfig m = find_model(c.model);
    StepTimer timer(m, c.dep, c.prec, cost, energy);
    StepBatch b = StepBatch::decode(37, 900);
    b.decode_contexts[3] = 17;
    b.prefill.push_back({300, 0, true});
    b.prefill.push_back({128, 512, false});
    const StepGraph g(m, b, c.dep, c.prec);
    const StepEstimate full = estimate_step(g, cost);
    const StepCost fast = timer.cost(BatchShape::of(b));
    INFO(c.model << " tp" << c.dep.tensor_parallel << " pp" << c.dep.pipeline_parallel);
    CHECK(fast.uncapped_s == Approx(full.time_s).epsilon(1e-9));
    CHECK(fast.flops * c.dep.pipeline_parallel == Approx(full.flops).epsilon(1e-9));
  }
}

TEST_CASE("simulation invariants hold under preemption and every router", "[sim][invariants]") {
  // A KV cache squeezed to a few blocks forces max_utilization to preempt and recompute; the
  // run's internal asserts (exact output tokens per request, KV within capacity, TTFT <= E2E,
  // time never goes back, tokens conserved) abort on any violation.
  const std::string w = "  scenario: offline\n  requests: 200\n  input_tokens: {distribution: uniform, min: 20, max: 300}\n"
                        "  output_tokens: {distribution: uniform, min: 1, max: 200}\n";
  for (const char* router : {"input_balanced", "least_loaded", "round_robin"}) {
    const Scenario s = load_text("pre.yaml", small_scenario(w, "  capacity_policy: max_utilization\n  max_batch_size: 64\n"),
                                 {std::string("serving.router=") + router, "deployment.replicas=2", "serving.kv_memory_fraction=0.0008"});
    const SimResult r = simulate(s);
    INFO(router);
    CHECK(r.requests_completed == 200);
    CHECK(r.preemptions > 0);
    CHECK(r.kv_peak_utilization <= 1.0);
    CHECK(r.ttft_ms.p99 <= r.e2e_ms.p99);
  }
  // guaranteed_no_evict never preempts.
  const Scenario g = load_text("nopre.yaml", small_scenario(w, "  max_batch_size: 64\n"), {"serving.kv_memory_fraction=0.0008"});
  CHECK(simulate(g).preemptions == 0);
}

TEST_CASE("max_utilization admits nothing in an iteration that preempted; every preemption is re-admitted once",
          "[sim][invariants]") {
  // Squeezed KV cache, as above. Each request is admitted once, plus once more per preemption
  // (its recompute goes back through the waiting queue), so the admissions over all iterations
  // add up to requests + preemptions; and an iteration that had to preempt (the cache is full)
  // admits nobody, as vLLM's scheduler does.
  const std::string w = "  scenario: offline\n  requests: 200\n  input_tokens: {distribution: uniform, min: 20, max: 300}\n"
                        "  output_tokens: {distribution: uniform, min: 1, max: 200}\n";
  const Scenario s = load_text("pre.yaml", small_scenario(w, "  capacity_policy: max_utilization\n  max_batch_size: 64\n"),
                               {"deployment.replicas=2", "serving.kv_memory_fraction=0.0008"});
  SimOptions opt;
  opt.keep_iterations = true;
  const SimResult r = simulate(s, opt);
  REQUIRE(r.preemptions > 0);
  std::int64_t admitted = 0, preempted = 0, preempting_iterations = 0;
  for (const IterationRecord& it : r.iteration_records) {
    admitted += it.admitted;
    preempted += it.preempted;
    if (it.preempted > 0) {
      ++preempting_iterations;
      CHECK(it.admitted == 0);
    }
  }
  CHECK(preempting_iterations > 0);
  CHECK(preempted == r.preemptions);
  CHECK(admitted == r.requests_completed + r.preemptions);
}

TEST_CASE("max_utilization preempts the newest sequence: a partial prompt before an older decode", "[sim][invariants]") {
  // One replica, 10 ms fixed steps, 16-token KV blocks, a 64-token budget per iteration and a KV
  // cache of C tokens. A (16-token prompt, 200 tokens out) decodes from t = 0; at 1 s, holding
  // 116 tokens, it meets B, whose (C - 64)-token prompt cannot fit beside it. B's partial prompt
  // fills the cache; when A's next token opens a block, the newest sequence, B, is preempted and
  // A goes on. So A is never interrupted: first token at 10 ms, then one token per 10 ms step,
  // TPOT exactly 10 ms. Preempting the decoding A instead would stretch its TPOT.
  const std::string serving = "  capacity_policy: max_utilization\n  kv_block_tokens: 16\n  fixed_step_time: 10ms\n";
  const std::vector<std::string> sets = {"serving.max_num_tokens=64", "serving.kv_memory_fraction=0.0005"};
  const auto run = [&](const std::string& csv, SimOptions opt) {
    const std::string trace = test::write_temp("newest.csv", "arrival_s,input_tokens,output_tokens\n" + csv);
    return simulate(load_text("newest.yaml", small_scenario("  scenario: trace\n  trace: " + trace + "\n", serving), sets), opt);
  };
  const std::int64_t c = run("0.0,16,2\n", {}).kv_capacity_tokens_per_replica;
  REQUIRE(c > 300);
  SimOptions opt;
  opt.keep_requests = true;
  const SimResult r = run("0.0,16,200\n1.0," + std::to_string(c - 64) + ",1\n", opt);
  CHECK(r.requests_completed == 2);
  CHECK(r.preemptions > 0);
  REQUIRE(r.request_records.size() == 2);
  for (const auto& rec : r.request_records)
    if (rec.id == 0) {
      CHECK(rec.first_token.to_seconds() == Approx(0.010));
      CHECK(rec.finish.to_seconds() == Approx(2.000));
    }
}

TEST_CASE("same scenario and seed, same result; another seed, another", "[sim][determinism]") {
  const std::string w = "  scenario: server\n  requests: 300\n  qps: 20\n  input_tokens: {distribution: dataset, name: mlperf-llama2-70b}\n"
                        "  output_tokens: {distribution: lognormal, mean: 150, max: 1000}\n";
  const Scenario s = load_text("det.yaml", small_scenario(w));
  const SimResult a = simulate(s), b = simulate(s);
  CHECK(a.duration_s == b.duration_s);
  CHECK(a.ttft_ms.p99 == b.ttft_ms.p99);
  CHECK(a.output_tokens == b.output_tokens);
  CHECK(a.events == b.events);
  const Scenario s2 = load_text("det2.yaml", small_scenario(w), {"seed=8"});
  CHECK(simulate(s2).output_tokens != a.output_tokens);
}

TEST_CASE("requests follow their distributions", "[sim][requests]") {
  // Data-set inputs: 24,576 requests use every MLPerf sample exactly once (mean 222.33,
  // mlperf.md); outputs rescaled to a generated mean of 273 stay near it after clamping to
  // [1, 1024]; Poisson arrivals at 100/s average 10 ms apart.
  const std::string w = "  scenario: server\n  requests: 24576\n  qps: 100\n"
                        "  input_tokens: {distribution: dataset, name: mlperf-llama2-70b}\n"
                        "  output_tokens: {distribution: dataset, name: mlperf-llama2-70b, mean: 273}\n";
  const Scenario s = load_text("req.yaml", small_scenario(w));
  const RequestSet r = generate_requests(s, 100);
  double in = 0, out = 0;
  for (std::size_t i = 0; i < r.size(); ++i) {
    in += r.input[i];
    out += r.output[i];
    CHECK(r.output[i] >= 1);
    CHECK(r.output[i] <= 1024);
  }
  CHECK(in / 24576 == Approx(222.33).epsilon(1e-3));
  CHECK(out / 24576 == Approx(273).epsilon(0.01));
  CHECK(r.arrival.back().to_seconds() / 24576 == Approx(0.01).epsilon(0.03));
  // Lognormal lengths respect their max and mean.
  const std::string wl = "  scenario: offline\n  requests: 20000\n  input_tokens: {distribution: lognormal, mean: 500, max: 4000}\n"
                         "  output_tokens: {distribution: uniform, min: 10, max: 20}\n";
  const RequestSet l = generate_requests(load_text("ln.yaml", small_scenario(wl)), 0);
  double sum = 0;
  for (auto v : l.input) sum += v;
  CHECK(sum / 20000 == Approx(500).epsilon(0.03));
  CHECK(*std::max_element(l.input.begin(), l.input.end()) <= 4000);
}

TEST_CASE("trace replay reads arrivals and lengths", "[sim][requests]") {
  const std::string trace = test::write_temp("t.csv", "arrival_s,input_tokens,output_tokens\n0.0,10,5\n0.5,20,3\n0.5,30,1\n");
  const Scenario s = load_text("trace.yaml", small_scenario("  scenario: trace\n  trace: " + trace + "\n", "  fixed_step_time: 1ms\n"));
  const SimResult r = simulate(s);
  CHECK(r.requests_completed == 3);
  CHECK(r.output_tokens == 9);
  CHECK(r.input_tokens == 60);
  // CRLF line ends and a blank CRLF line parse; only the literal column names count as a header.
  const RequestSet crlf = read_trace(test::write_temp("crlf.csv", "arrival_s,input_tokens,output_tokens\r\n0.5,10,5\r\n\r\n1.5,20,3\r\n"));
  CHECK(crlf.size() == 2);
  CHECK(crlf.arrival[1] == SimTime::seconds(1.5));
  CHECK_THROWS_AS(read_trace(test::write_temp("hdr.csv", "abc,100,10\n0.0,10,5\n")), InputError);
  const std::string bad = test::write_temp("bad.csv", "0.0,10,5\n0.4,x,3\n");
  CHECK_THROWS_WITH(read_trace(bad), Catch::Contains("bad.csv:2: '0.4,x,3' is not arrival_s,input_tokens,output_tokens"));
  // workload.requests on a trace replays its first rows (racksim exec --serve N's prediction):
  // the first two, 10 + 20 prompt and 5 + 3 output tokens; more rows than the trace holds fail.
  const Scenario two = load_text("trace2.yaml", small_scenario("  scenario: trace\n  trace: " + trace + "\n  requests: 2\n", "  fixed_step_time: 1ms\n"));
  CHECK(two.workload.requests == 2);
  const RequestSet first = generate_requests(two, 0);
  CHECK(first.input == std::vector<std::uint32_t>{10, 20});
  CHECK(first.arrival.back() == SimTime::seconds(0.5));
  const SimResult r2 = simulate(two);
  CHECK(r2.requests_completed == 2);
  CHECK(r2.output_tokens == 8);
  const Scenario four = load_text("trace4.yaml", small_scenario("  scenario: trace\n  trace: " + trace + "\n  requests: 4\n", "  fixed_step_time: 1ms\n"));
  CHECK_THROWS_WITH(generate_requests(four, 0), Catch::Contains("workload.requests 4 is more than the trace's 3 requests"));
}

TEST_CASE("calibration: datasheet runs the seed models, which predict another throughput", "[sim][calibration]") {
  // 8x B200 Offline at full batch: the calibrated NVFP4 GEMM fit (b200.yaml: eff_c 0.70 of the
  // 9 PFLOP/s datasheet peak) and the seed GEMM curve (docs/models.md) differ, so the two
  // predictions must differ; each is deterministic. What the difference is on the calibration
  // set: docs/validation.md, "What calibration does".
  const SimResult cal = simulate(b200_offline_full_batch("c1.yaml", 4000));
  const SimResult seed = simulate(b200_offline_full_batch("c2.yaml", 4000, {"calibration=datasheet"}));
  const SimResult seed2 = simulate(b200_offline_full_batch("c3.yaml", 4000, {"calibration=datasheet"}));
  CHECK(seed.output_tokens_per_s == seed2.output_tokens_per_s);
  CHECK(std::abs(seed.output_tokens_per_s / cal.output_tokens_per_s - 1) > 0.01);
}

TEST_CASE("a power limit makes compute-bound runs slower and cooler", "[sim][power]") {
  // Offline on 8x B200 at full batch is compute bound; capping each GPU at 500 W (under its
  // uncapped draw) stretches the iterations: lower throughput and lower GPU power.
  const SimResult free_run = simulate(b200_offline_full_batch("p1.yaml", 16000));
  const SimResult capped = simulate(b200_offline_full_batch("p2.yaml", 16000, {"system.gpu_power_limit_w=400"}));
  CHECK(free_run.gpu_avg_w > 400);
  CHECK(capped.gpu_avg_w <= 400.0 + 1e-6);
  CHECK(capped.output_tokens_per_s < free_run.output_tokens_per_s);
  CHECK(capped.power_capped_share > 0);
  // System power = (GPUs + CPUs + switches + NICs + other) / PSU efficiency, from the catalog.
  const SystemSpec sys = find_system("dgx-b200");
  const double other = sys.cpu.count.value * sys.cpu.power.value + sys.nvswitch.count.value * sys.nvswitch.power.value +
                       sys.nic.count.value * sys.nic.power.value + sys.other_power.value;
  CHECK(free_run.system_avg_w == Approx((free_run.gpu_avg_w * 8 + other) / sys.psu_efficiency.value));
}

TEST_CASE("the simulator refuses requests that cannot run", "[sim][errors]") {
  const std::string w = "  scenario: offline\n  requests: 2\n  input_tokens: {distribution: fixed, value: 3000}\n"
                        "  output_tokens: {distribution: fixed, value: 2000}\n";
  // 5,000 positions > Llama-2's 4,096.
  CHECK_THROWS_AS(simulate(load_text("long.yaml", small_scenario(w))), InfeasibleError);
  const std::string w2 = "  scenario: offline\n  requests: 2\n  input_tokens: {distribution: fixed, value: 3000}\n"
                         "  output_tokens: {distribution: fixed, value: 20}\n";
  // Without chunked prefill a 3,000-token prompt cannot pass a 2,048-token budget.
  CHECK_THROWS_AS(simulate(load_text("budget.yaml", small_scenario(w2, "  chunked_prefill: false\n"), {"serving.max_num_tokens=2048"})),
                  InfeasibleError);
}

TEST_CASE("pipeline stages take one micro-batch at a time", "[sim][pipeline]") {
  // H100 TP1 x PP2 (the v5.0 record deployment), varied lengths so step times differ: a
  // micro-batch holds the last stage for [end - stage_time, end); those intervals of one replica
  // never overlap (a short micro-batch behind a long one waits for the stage).
  const std::string w = "  scenario: server\n  qps: 40\n  requests: 600\n  input_tokens: {distribution: uniform, min: 10, max: 900}\n"
                        "  output_tokens: {distribution: uniform, min: 1, max: 60}\n";
  const Scenario s = load_text("pp.yaml", small_scenario(w, "", "dgx-h100"),
                               {"deployment.pipeline_parallel=2", "precision={weights: fp8, activations: fp8, kv_cache: fp8}"});
  SimOptions opt;
  opt.keep_iterations = true;
  const SimResult r = simulate(s, opt);
  std::vector<std::pair<SimTime, SimTime>> last_stage;
  for (const auto& it : r.iteration_records) last_stage.push_back({it.end - it.stage_time, it.end});
  std::sort(last_stage.begin(), last_stage.end());
  REQUIRE(last_stage.size() > 100);
  for (std::size_t i = 1; i < last_stage.size(); ++i) CHECK(last_stage[i].first >= last_stage[i - 1].second);
}

TEST_CASE("a pipelined replica's lanes share max_batch_size", "[sim][pipeline]") {
  // max_batch_size counts the replica's sequences in flight (spec): with PP2 and 5, lane 0 holds
  // at most 2 and lane 1 at most 3 ((5 + lane) / 2), and with 40 requests queued both fill up.
  const std::string w = "  scenario: offline\n  requests: 40\n  input_tokens: {distribution: fixed, value: 64}\n"
                        "  output_tokens: {distribution: fixed, value: 20}\n";
  const Scenario s = load_text("ppb.yaml", small_scenario(w, "", "dgx-h100"),
                               {"deployment.pipeline_parallel=2", "serving.max_batch_size=5",
                                "precision={weights: fp8, activations: fp8, kv_cache: fp8}"});
  SimOptions opt;
  opt.keep_iterations = true;
  const SimResult r = simulate(s, opt);
  CHECK(r.requests_completed == 40);
  std::int64_t most[2] = {0, 0};
  for (const auto& it : r.iteration_records) most[it.lane] = std::max(most[it.lane], it.decode);
  CHECK(most[0] == 2);
  CHECK(most[1] == 3);
  // Fewer sequences than micro-batches cannot fill the pipeline: refused at load, exit 2.
  CHECK_THROWS_WITH(load_text("ppb1.yaml", small_scenario(w, "", "dgx-h100"), {"deployment.pipeline_parallel=2", "serving.max_batch_size=1",
                                                                             "precision={weights: fp8, activations: fp8, kv_cache: fp8}"}),
                    Catch::Contains("max_batch_size") && Catch::Contains("pipeline_parallel (2)"));
}

TEST_CASE("find-max-qps refuses impossible limits and needs a limit", "[sim][errors]") {
  const std::string w = "  scenario: server\n  requests: 200\n  qps: 10\n  input_tokens: {distribution: fixed, value: 100}\n"
                        "  output_tokens: {distribution: fixed, value: 50}\n";
  // TPOT <= 1 ms cannot be met by a 70B model on one B200 at any rate: exit 3, not a hang.
  CHECK_THROWS_AS(find_max_qps(load_text("imp.yaml", small_scenario(w), {"workload.latency_limits={ttft_p99_ms: 450, tpot_p99_ms: 1}"})),
                  InfeasibleError);
  CHECK_THROWS_AS(find_max_qps(load_text("nolim.yaml", small_scenario(w), {"workload.latency_limits={ttft_p99_ms: 0, tpot_p99_ms: 0}"})),
                  InputError);
  // Arrivals beyond the simulated horizon are refused.
  CHECK_THROWS_AS(simulate(load_text("slow.yaml", small_scenario(w), {"workload.qps=1e-5"})), InputError);
}

TEST_CASE("the catalog system a device stands for: that GPU's system with the fewest GPUs holding the group", "[sim][predict]") {
  // hw list: h200-sxm only in hgx-h200 (8); gb300 in gb300-tray (4) and gb300-nvl72 (72).
  CHECK(system_for_gpu("h200-sxm", 1) == std::optional<std::string>("hgx-h200"));
  CHECK(system_for_gpu("h100-sxm", 8) == std::optional<std::string>("dgx-h100"));
  CHECK(system_for_gpu("gb300", 4) == std::optional<std::string>("gb300-tray"));
  CHECK(system_for_gpu("gb300", 5) == std::optional<std::string>("gb300-nvl72"));
  CHECK_FALSE(system_for_gpu("gb300", 73).has_value());
  CHECK_FALSE(system_for_gpu("h100-sxm", 9).has_value());
  CHECK_FALSE(system_for_gpu("", 1).has_value());
}

TEST_CASE("racksim exec's prediction of a step is the simulator's: estimate_step's time, idle + dynamic power, the cap", "[sim][predict]") {
  // Llama-2-70B NVFP4 / BF16 / FP8 KV on one H200 (the device session's decode step), run with
  // 80 and with 2 layers: the time is estimate_step()'s over the same graph (the simulator's
  // StepTimer sums the same ops: sim_step_timer test above), the power one GPU's idle plus dynamic
  // energy over that time, and the energy their product.
  const Scenario s = load_scenario(std::string(RACKSIM_SOURCE_DIR) + "/examples/mlperf-llama2-70b-offline-dgx-h100.yaml",
                                   {"precision.weights=nvfp4", "precision.activations=bf16", "precision.kv_cache=fp8"});
  const SystemSpec h200 = find_system("hgx-h200");
  Deployment one;
  for (int layers : {80, 2}) {
    ModelConfig m = s.model;
    m.layers = layers;
    const StepBatch b = StepBatch::decode(64, 1024);
    const StepPrediction p = predict_step(s, h200, m, one, b);
    Scenario on = s;
    on.system = h200;
    const auto cost = cost_model_registry().get("roofline").factory(h200, cost_model_options(on));
    const StepEstimate e = estimate_step(StepGraph(m, b, one, s.precision), *cost);
    INFO("layers " << layers);
    CHECK(p.system == "hgx-h200");
    CHECK(p.gpus == 1);
    CHECK_FALSE(p.capped);
    CHECK(p.time_s == Approx(e.time_s).epsilon(1e-9));
    const EnergyModel em = energy_model_for(h200.gpu, GpuCalibration(h200.gpu));
    CHECK(p.power_w > em.idle_w);
    CHECK(p.power_w < h200.gpu.power_limit.value);
    CHECK(p.energy_j == Approx(p.power_w * p.time_s));
  }
  // Under a 130 W cap (just above the calibrated H200's ~122 W idle) the same step is power-bound:
  // the power is the cap, and the time longer than uncapped.
  ModelConfig m = s.model;
  const StepPrediction free = predict_step(s, h200, m, one, StepBatch::decode(64, 1024));
  const StepPrediction tight = predict_step(s, h200, m, one, StepBatch::decode(64, 1024), 130.0);
  CHECK(tight.capped);
  CHECK(tight.power_w == Approx(130.0));
  CHECK(tight.time_s > free.time_s);
  // TP 2 on the same system: two GPUs' power.
  Deployment two;
  two.tensor_parallel = 2;
  const StepPrediction tp2 = predict_step(s, h200, m, two, StepBatch::decode(64, 1024));
  CHECK(tp2.gpus == 2);
  CHECK(tp2.power_w > 2 * energy_model_for(h200.gpu, GpuCalibration(h200.gpu)).idle_w);
}

TEST_CASE("racksim exec --serve's prediction: one replica of the run's GPUs, whose one-iteration loop is the step prediction", "[sim][predict]") {
  // One request of a 512-token prompt and one output token: the simulator serves it in a single
  // prefill iteration (512 <= max_num_tokens 1,024), so its duration is that step's time and the
  // replica's GPU energy idle + dynamic over it, exactly what predict_step says for prefill 1 x 512.
  // The system's other 7 GPUs idle at the energy model's idle: the power fit's 122 W for the
  // calibrated H200 (hwmodels/data/calibrated/h200-sxm.yaml), not the datasheet's 80 W, which the
  // summary counted before 2026-12-02 while it capped iterations with the fit's.
  const Scenario s = load_scenario(std::string(RACKSIM_SOURCE_DIR) + "/examples/mlperf-llama2-70b-offline-dgx-h100.yaml",
                                   {"precision.weights=nvfp4", "precision.activations=bf16", "precision.kv_cache=fp8",
                                    "workload.input_tokens={distribution: fixed, value: 512}",
                                    "workload.output_tokens={distribution: fixed, value: 1}", "deployment.pipeline_parallel=1"});
  const SystemSpec h200 = find_system("hgx-h200");
  ModelConfig m = s.model;
  m.layers = 2;
  const Scenario served = executor_serving_scenario(s, h200, m, 1, 1);
  CHECK(served.replicas == 1);
  CHECK(served.deployment.pipeline_parallel == 1);
  CHECK(served.workload.requests == 1);
  CHECK(served.serving.all_reduce == AllReduceImpl::nccl);
  CHECK(served.model.layers == 2);
  Scenario fixed = s;
  fixed.serving.fixed_step_time_s = 1.0;  // a what-if's fixed iteration time is no prediction
  CHECK(executor_serving_scenario(fixed, h200, m, 1, 1).serving.fixed_step_time_s == 0);
  const SimResult r = simulate(served);
  REQUIRE(r.iterations == 1);
  Deployment one;
  const StepPrediction p = predict_step_with(h200, GpuCalibration(h200.gpu), m, one, s.precision, StepBatch::prefill_only(1, 512), 0,
                                             AllReduceImpl::nccl);
  CHECK(r.duration_s == Approx(p.time_s).epsilon(1e-6));
  const double idle = energy_model_for(h200.gpu, GpuCalibration(h200.gpu)).idle_w;
  CHECK(idle == Approx(122.227));
  CHECK(r.gpu_avg_w * 8 - 7 * idle == Approx(p.power_w).epsilon(1e-6));
  CHECK(r.replicas_gpu_w == Approx(p.power_w).epsilon(1e-6));
  // A replica of 2 GPUs from a 1-GPU scenario; Llama-3.1-405B's ~228 GB of NVFP4 weights do not fit
  // one 141 GB H200, and the replica says so instead of serving.
  CHECK(executor_serving_scenario(s, h200, m, 2, 1).deployment.tensor_parallel == 2);
  CHECK_THROWS_AS(executor_serving_scenario(s, h200, find_model("llama3.1-405b"), 1, 1), InfeasibleError);
}
