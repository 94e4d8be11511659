// racksim exec SCENARIO.yaml [--device cpu|cuda:N] [--shape S]... [--serve N] [--out FILE] [--json FILE] [--csv FILE] [--trace FILE]:
// runs real steps of the scenario's model, times every op of the graph the simulator costs, and a serving loop. docs/executor.md.

#include <cmath>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "cli.hpp"
#include "mpi_rank.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/exec/env_knob.hpp"
#include "racksim/exec/executor.hpp"
#include "racksim/exec/process_group.hpp"
#include "racksim/exec/tensor_parallel.hpp"
#include "racksim/sim/requests.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/sim/scenario.hpp"
#include "racksim/sim/simulation.hpp"
#include "racksim/sim/step_prediction.hpp"

namespace racksim::cli {

namespace {

/// What the run does not take from the scenario, each said once (a key is never silently ignored).
std::vector<std::string> scenario_notes(const Scenario& s, bool cuda) {
  std::vector<std::string> n;
  const Deployment& d = s.deployment;
  // TP runs as ranks (CPU threads, or one GPU each in this process); PP and EP do not.
  if (d.pipeline_parallel != 1 || d.expert_parallel != 1)
    n.push_back(fmt::format("deployment TP{} PP{} EP{} runs as TP{} PP1 EP1", d.tensor_parallel, d.pipeline_parallel, d.expert_parallel,
                            d.tensor_parallel));
  n.push_back(fmt::format("system '{}' is what the simulator models; exec measures the device it runs on", s.system.id));
  if (s.replicas != 1) n.push_back(fmt::format("deployment.replicas {}: the executor runs one replica", s.replicas));
  if (s.replicas != 1 && (s.workload.scenario == "server" || s.workload.scenario == "interactive"))
    n.push_back(fmt::format("workload.qps {:g} is the rate of all {} replicas: the executor's one replica gets its share, {:g} queries/s "
                            "(and so does its prediction)",
                            s.workload.qps, s.replicas, s.workload.qps / s.replicas));
  if (cuda)
    n.push_back("serving.kv_memory_fraction and capacity_policy do not apply: the KV pool is sized to the shapes and the loop asked for");
  else
    n.push_back("serving.kv_block_tokens, kv_memory_fraction and capacity_policy do not apply: the CPU reference keeps whole "
                "per-sequence caches without a capacity limit");
  // Tensor-parallel all-reduces run through NCCL (CUDA) or the CPU threads' own sum; the engines'
  // one-shot kernel that serving.all_reduce: auto models is not part of the executor.
  if (d.tensor_parallel > 1 && s.serving.all_reduce == AllReduceImpl::automatic)
    n.push_back(cuda ? "serving.all_reduce 'auto' (the engines' one-shot kernel for small messages): all-reduces run through NCCL"
                     : "serving.all_reduce 'auto' (the engines' one-shot kernel for small messages): the CPU ranks' all-reduce is a plain sum");
  if (!s.precision.fused_quantize)
    n.push_back("precision.activation_quantize 'separate' is a cost-model setting: the executor runs its own quantize kernels");
  if (s.serving.fixed_step_time_s > 0)
    n.push_back(fmt::format("serving.fixed_step_time {:g} s is a simulator what-if: the executor's iterations take what they take, "
                            "and its predictions use the cost model's step times",
                            s.serving.fixed_step_time_s));
  if (s.gpu_power_limit_w != s.system.gpu.power_limit.value)
    n.push_back(fmt::format("system.gpu_power_limit_w {:g} W is a simulator setting: exec runs at the device's own limit (racksim does "
                            "not change it), and its predictions cap at that limit",
                            s.gpu_power_limit_w));
  if (!s.serving.mixed_batches)
    n.push_back("serving.mixed_batches false (prefill batches alone): the serving loop mixes prefill chunks and decodes in each "
                "iteration, as mixed_batches true");
  return n;
}

/// The scenario's p99 latency limits (workload.latency_limits) against the loop's measured p99s;
/// none without limits. The simulator's SimResult::slo_met is the same test of its own p99s.
std::optional<bool> slo_met(const Scenario& s, const exec::ServeResult& r) {
  const double ttft = s.workload.ttft_p99_ms, tpot = s.workload.tpot_p99_ms;
  if (ttft <= 0 && tpot <= 0) return std::nullopt;
  return (ttft <= 0 || r.ttft.p99_s * 1e3 <= ttft) && (tpot <= 0 || r.tpot.p99_s * 1e3 <= tpot);
}

/// "TTFT <= 2000 ms, TPOT <= 200 ms" (those set).
std::string slo_limits(const Scenario& s) {
  std::string limits;
  if (s.workload.ttft_p99_ms > 0) limits += fmt::format("TTFT <= {:g} ms", s.workload.ttft_p99_ms);
  if (s.workload.tpot_p99_ms > 0) limits += fmt::format("{}TPOT <= {:g} ms", limits.empty() ? "" : ", ", s.workload.tpot_p99_ms);
  return limits;
}

/// Server and interactive: the arrival rate the executor's one replica gets, its share of the
/// system's workload.qps (executor_serving_scenario predicts at the same); 0 otherwise.
double replica_qps(const Scenario& s) {
  const bool poisson = s.workload.scenario == "server" || s.workload.scenario == "interactive";
  return poisson ? s.workload.qps / s.replicas : 0.0;
}

/// How the serving loop's requests arrived, in words.
std::string serve_label(const Scenario& s, const exec::ServeResult& r) {
  if (r.concurrency > 0) return fmt::format("closed loop, {} clients", r.concurrency);
  if (!r.timed) return "offline";
  const std::string idle = fmt::format("idle {:.3f} s", r.idle_s);
  if (replica_qps(s) > 0) return fmt::format("{}, {:g} queries/s arriving, {}", s.workload.scenario, replica_qps(s), idle);
  return fmt::format("trace arrivals, {}", idle);
}

/// The simulator's prediction of each timed step and of the serving loop (--predict-on), beside
/// what was measured.
struct Predictions {
  std::vector<StepPrediction> steps;  ///< one per ExecReport::steps, or empty
  std::string note;                   ///< why there is none, or ""
  std::string system;                 ///< the catalog system predicted on, where there is one
  int gpus = 0;                       ///< its GPUs the run's replica takes (the tensor-parallel group)
  std::optional<SimResult> serve;     ///< the serving loop's requests served by the simulator (executor_serving_scenario)
  SimTime first_arrival;              ///< its first request's arrival (the simulator's times count from 0, the loop's from it)
  std::string serve_note;             ///< why the serving loop has no prediction, or ""
};

/// `predict_on`: a catalog system id; "auto": the system of the GPU the run recorded (a CUDA run's
/// `run.gpu`, the fewest-GPU system holding the tensor-parallel group), none on the CPU; "none".
Predictions predict(const Scenario& s, const exec::ExecReport& r, const std::string& predict_on, int tensor_parallel,
                    bool keep_iterations) {
  Predictions p;
  if (predict_on == "none") return p;
  std::string id = predict_on;
  if (predict_on == "auto") {
    const std::string& gpu = r.measurements.run.gpu;
    if (gpu.empty()) return p;  // the CPU reference, or a device not in the catalog: nothing to predict on
    const auto sys = system_for_gpu(gpu, tensor_parallel);
    if (!sys) {
      p.note = fmt::format("no prediction: no catalog system of {} holds {} GPUs", gpu, tensor_parallel);
      return p;
    }
    id = *sys;
  }
  // A prediction never costs the run its files: what fails here becomes the note.
  try {
    const SystemSpec system = find_system(id, "racksim exec", "--predict-on");
    if (system.gpus() < tensor_parallel) {
      p.note = fmt::format("no prediction: {} has {} GPUs, the run's tensor-parallel group {}", system.id, system.gpus(), tensor_parallel);
      return p;
    }
    const double limit = r.measurements.run.power_limit_w.value_or(0.0);  // the device's enforced limit, where NVML gave it
    // The scenario's calibration setting, but the all-reduces the executor runs: NCCL's (above),
    // whatever serving.all_reduce says.
    const auto factors = [&] { return s.calibrated ? GpuCalibration(system.gpu) : GpuCalibration(); };
    Deployment dep;
    dep.tensor_parallel = tensor_parallel;
    for (const auto& st : r.steps) {
      const StepBatch b = st.shape.kind == exec::ExecShape::Kind::prefill ? StepBatch::prefill_only(st.shape.batch, st.shape.tokens)
                                                                           : StepBatch::decode(st.shape.batch, st.shape.context);
      p.steps.push_back(predict_step_with(system, factors(), r.model, dep, s.precision, b, limit, AllReduceImpl::nccl));
    }
    p.system = system.id;
    p.gpus = tensor_parallel;
    if (r.served) {
      try {
        const Scenario served = executor_serving_scenario(s, system, r.model, tensor_parallel, r.serve.requests, limit);
        p.serve = simulate(served, SimOptions{.keep_iterations = keep_iterations});
        if (keep_iterations) p.first_arrival = generate_requests(served, served.workload.qps).arrival.front();
      } catch (const std::exception& e) {
        p.serve_note = fmt::format("no serving prediction on {}: {}", system.id, e.what());
      }
    }
  } catch (const std::exception& e) {
    p.steps.clear();
    p.note = fmt::format("no prediction: {}", e.what());
  }
  return p;
}

/// measured / predicted, 0 where nothing was predicted (a simulated duration of 0).
double ratio(double measured, double predicted) { return predicted > 0 ? measured / predicted : 0.0; }

/// A step's prediction and the measured over the predicted: time (the graph replay's where there
/// is one, as the simulator's ops run back to back; else the eager median) and power.
nlohmann::json prediction_json(const exec::StepTiming& st, const StepPrediction& p) {
  const double measured = st.measured_s();
  nlohmann::json j = {{"system", p.system},
                      {"calibrated", p.calibrated},
                      {"gpus", p.gpus},
                      {"time_s", p.time_s},
                      {"power_w", p.power_w},
                      {"energy_per_step_j", p.energy_j},
                      {"power_capped", p.capped},
                      {"measured", st.measured_timing()},
                      {"measured_over_predicted_time", measured / p.time_s}};
  if (st.power.steps > 0) j["measured_over_predicted_power"] = st.power.power_w / p.power_w;
  return j;
}

/// A decode step's power window (StepTiming::power), null with the reason where none ran.
nlohmann::json power_json(const exec::StepTiming& st) {
  if (st.power.steps == 0) return st.power_note.empty() ? nlohmann::json() : nlohmann::json{{"unavailable", st.power_note}};
  const exec::StepPower& p = st.power;
  return {{"window_s", p.seconds},
          {"timing", st.power_timing},
          {"steps", p.steps},
          {"gpus", p.gpus},
          {"energy_per_step_j", p.energy_per_step_j()},
          {"energy_per_token_j", p.energy_per_step_j() / static_cast<double>(st.tokens)},
          {"power_w", p.power_w},
          {"sm_clock_mhz", p.sm_clock_mhz > 0 ? nlohmann::json(p.sm_clock_mhz) : nlohmann::json()},
          {"clock_events", clock_event_names(p.clock_events)}};
}

nlohmann::json report_json(const Scenario& s, const exec::ExecReport& r, const Predictions& pred) {
  nlohmann::json steps = nlohmann::json::array();
  for (std::size_t i = 0; i < r.steps.size(); ++i) {
    const auto& st = r.steps[i];
    nlohmann::json by_kind = nlohmann::json::array();
    for (const auto& [kind, sec] : st.op_time_by_kind) by_kind.push_back({{"kind", kind}, {"time_s", sec}});
    steps.push_back({{"shape", st.shape.label()},
                     {"kind", st.shape.kind == exec::ExecShape::Kind::prefill ? "prefill" : "decode"},
                     {"batch", st.shape.batch},
                     {"prompt_tokens", st.shape.tokens},
                     {"context", st.shape.context},
                     {"tokens", st.tokens},
                     {"time_median_s", st.median_s},
                     {"time_min_s", st.min_s},
                     {"time_max_s", st.max_s},
                     {"reps", st.reps},
                     {"graph_time_median_s", st.replayed() ? nlohmann::json(st.graph_median_s) : nlohmann::json()},
                     {"tokens_per_s", st.tokens_per_s()},
                     {"op_time_s", st.op_time_s()},
                     {"op_time_by_kind", by_kind},
                     {"power", power_json(st)},
                     {"predicted", pred.steps.empty() ? nlohmann::json() : prediction_json(st, pred.steps[i])}});
  }
  nlohmann::json j = {{"scenario", s.name},
                      {"model", s.model.id},
                      {"device", r.device},
                      {"layers_run", r.model.layers},
                      {"layers_total", r.layers_total},
                      {"precision",
                       {{"weights", to_string(r.precision.weights)},
                        {"activations", to_string(r.precision.activations)},
                        {"kv_cache", to_string(r.precision.kv_cache)}}},
                      {"notes", r.notes},
                      {"steps", steps},
                      {"ops", r.measurements.records.size()}};
  if (!pred.note.empty()) j["prediction_note"] = pred.note;
  if (r.served) {
    auto latency = [](const exec::ServeLatency& l) {
      return nlohmann::json{{"mean", l.mean_s * 1e3}, {"p50", l.p50_s * 1e3}, {"p90", l.p90_s * 1e3}, {"p99", l.p99_s * 1e3}};
    };
    j["serve"] = {{"requests", r.serve.requests},         {"input_tokens", r.serve.input_tokens},
                  {"output_tokens", r.serve.output_tokens}, {"iterations", r.serve.iterations},
                  {"max_in_flight", r.serve.max_in_flight}, {"wall_s", r.serve.wall_s},
                  {"output_tokens_per_s", r.serve.output_tokens_per_s()},
                  {"ttft_ms", latency(r.serve.ttft)},       {"tpot_ms", latency(r.serve.tpot)},
                  {"e2e_ms", latency(r.serve.e2e)}};
    j["serve"]["scenario"] = r.serve.concurrency > 0 ? "concurrency" : r.serve.timed ? s.workload.scenario : "offline";
    if (r.serve.concurrency > 0) j["serve"]["concurrency"] = r.serve.concurrency;
    if (r.serve.timed) {
      if (replica_qps(s) > 0) j["serve"]["qps"] = replica_qps(s);
      j["serve"]["idle_s"] = r.serve.idle_s;
    }
    if (r.serve.power) {
      const exec::StepPower& p = *r.serve.power;
      j["serve"]["power"] = {{"window_s", p.seconds},
                             {"gpus", p.gpus},
                             {"energy_j", p.energy_j},
                             {"power_w", p.power_w},
                             {"energy_per_output_token_j", p.energy_j / static_cast<double>(r.serve.output_tokens)},
                             {"sm_clock_mhz", p.sm_clock_mhz > 0 ? nlohmann::json(p.sm_clock_mhz) : nlohmann::json()},
                             {"clock_events", clock_event_names(p.clock_events)}};
    } else if (!r.serve.power_note.empty()) {
      j["serve"]["power"] = {{"unavailable", r.serve.power_note}};
    }
    if (const auto met = slo_met(s, r.serve)) {
      auto limit = [](double v) { return v > 0 ? nlohmann::json(v) : nlohmann::json(); };
      j["serve"]["slo"] = {{"ttft_p99_ms", limit(s.workload.ttft_p99_ms)}, {"tpot_p99_ms", limit(s.workload.tpot_p99_ms)}, {"met", *met}};
      if (pred.serve) j["serve"]["slo"]["predicted_met"] = pred.serve->slo_met;
    }
    if (pred.serve) {
      const SimResult& q = *pred.serve;
      j["serve"]["predicted"] = {{"system", pred.system},
                                 {"calibrated", s.calibrated},
                                 {"gpus", pred.gpus},
                                 {"requests", q.requests_completed},
                                 {"output_tokens", q.output_tokens},
                                 {"iterations", q.iterations},
                                 {"duration_s", q.duration_s},
                                 {"output_tokens_per_s", q.output_tokens_per_s},
                                 {"ttft_ms", latency_json(q.ttft_ms)},
                                 {"tpot_ms", latency_json(q.tpot_ms)},
                                 {"e2e_ms", latency_json(q.e2e_ms)},
                                 {"power_w", q.replicas_gpu_w},
                                 {"kv_peak_utilization", q.kv_peak_utilization},
                                 {"preemptions", q.preemptions},
                                 {"measured_over_predicted_output_tokens_per_s", ratio(r.serve.output_tokens_per_s(), q.output_tokens_per_s)}};
      if (r.serve.power) j["serve"]["predicted"]["measured_over_predicted_power"] = ratio(r.serve.power->power_w, q.replicas_gpu_w);
    } else if (!pred.serve_note.empty()) {
      j["serve"]["prediction_note"] = pred.serve_note;
    }
  }
  return j;
}

void print_report(const Scenario& s, const exec::ExecReport& r, const Predictions& pred) {
  fmt::print("{}: {} on {}, {} of {} layers, weights {}\n", s.name, s.model.id, r.device, r.model.layers, r.layers_total,
             to_string(r.precision.weights));
  for (const auto& note : r.notes) fmt::print("  note: {}\n", note);
  if (!r.steps.empty()) {
    fmt::print("  {:<20} {:>8} {:>12} {:>12} {:>12} {:>14} {:>12}\n", "step", "tokens", "median ms", "min ms", "max ms", "tokens/s",
               "graph ms");
    for (const auto& st : r.steps)
      fmt::print("  {:<20} {:>8} {:>12.3f} {:>12.3f} {:>12.3f} {:>14.1f} {:>12}\n", st.shape.label(), st.tokens, st.median_s * 1e3,
                 st.min_s * 1e3, st.max_s * 1e3, st.tokens_per_s(), st.replayed() ? fmt::format("{:.3f}", st.graph_median_s * 1e3) : "-");
    // Where each step's time goes: its op times by kind, as shares of their sum (the rest of the
    // wall time is the host's between ops), the four largest named.
    fmt::print("  op time by kind (mean per step over the reps, eager):\n");
    for (const auto& st : r.steps) {
      const double sum = st.op_time_s();
      std::string parts;
      for (std::size_t i = 0; i < st.op_time_by_kind.size() && i < 4; ++i)
        parts += fmt::format("{}{} {:.1f}%", i ? ", " : "", st.op_time_by_kind[i].first, sum > 0 ? 100 * st.op_time_by_kind[i].second / sum : 0.0);
      if (st.op_time_by_kind.size() > 4) parts += fmt::format(", {} more kinds", st.op_time_by_kind.size() - 4);
      fmt::print("    {:<20} {:.3f} ms of ops: {}\n", st.shape.label(), sum * 1e3, parts);
    }
  }
  // Each decode step's power window (--power-seconds): what the GPUs drew while it ran back to back.
  for (const auto& st : r.steps) {
    if (st.power.steps > 0)
      fmt::print("  power {:<14} {:.0f} W over {} GPU{}, {:.4g} J per step, {:.4g} J per token ({} {} in {:.2f} s)\n",
                 st.shape.label(), st.power.power_w, st.power.gpus, st.power.gpus == 1 ? "" : "s", st.power.energy_per_step_j(),
                 st.power.energy_per_step_j() / static_cast<double>(st.tokens), st.power.steps,
                 st.power_timing == "graph" ? "graph replays" : "eager runs", st.power.seconds);
    else if (!st.power_note.empty())
      fmt::print("  power {:<14} {}\n", st.shape.label(), st.power_note);
  }
  // The simulator's prediction of each step on the catalog system (--predict-on), measured over predicted.
  if (!pred.note.empty()) fmt::print("  {}\n", pred.note);
  for (std::size_t i = 0; i < pred.steps.size(); ++i) {
    const auto& st = r.steps[i];
    const StepPrediction& p = pred.steps[i];
    const double measured = st.measured_s();
    std::string power = fmt::format("{:.0f} W", p.power_w);
    if (st.power.steps > 0) power += fmt::format(" (measured {:.0f} W: {:.2f}x)", st.power.power_w, st.power.power_w / p.power_w);
    fmt::print("  predicted on {} ({}) {:<14} {:.3f} ms (measured {} {:.3f} ms: {:.2f}x), {}{}\n", p.system,
               p.calibrated ? "calibrated" : "datasheet", st.shape.label(), p.time_s * 1e3, st.measured_timing(),
               measured * 1e3, measured / p.time_s, power, p.capped ? ", power-capped" : "");
  }
  if (r.served) {
    fmt::print("  serving loop ({}): {} requests, {} input + {} output tokens, {} iterations, up to {} in flight, {:.3f} s: "
               "{:.1f} output tokens/s\n",
               serve_label(s, r.serve), r.serve.requests,
               r.serve.input_tokens, r.serve.output_tokens, r.serve.iterations, r.serve.max_in_flight, r.serve.wall_s,
               r.serve.output_tokens_per_s());
    for (const auto& [name, l] : {std::pair{"TTFT", r.serve.ttft}, std::pair{"TPOT", r.serve.tpot}, std::pair{"E2E", r.serve.e2e}})
      if (l.count > 0)
        fmt::print("    {} ms: mean {:.3f}, p50 {:.3f}, p90 {:.3f}, p99 {:.3f} ({} requests)\n", name, l.mean_s * 1e3, l.p50_s * 1e3,
                   l.p90_s * 1e3, l.p99_s * 1e3, l.count);
    if (const auto met = slo_met(s, r.serve))
      fmt::print("    SLO p99 {}: {}{}\n", slo_limits(s), *met ? "met" : "NOT met",
                 pred.serve ? fmt::format(" (predicted on {}: {})", pred.system, pred.serve->slo_met ? "met" : "NOT met") : "");
    if (r.serve.power)
      fmt::print("    power {:.0f} W over {} GPU{}, {:.4g} J per output token ({:.2f} s)\n", r.serve.power->power_w, r.serve.power->gpus,
                 r.serve.power->gpus == 1 ? "" : "s", r.serve.power->energy_j / static_cast<double>(r.serve.output_tokens),
                 r.serve.power->seconds);
    else if (!r.serve.power_note.empty())
      fmt::print("    {}\n", r.serve.power_note);
    // The same requests served by the simulator on the catalog system (one replica of the run's GPUs).
    if (pred.serve) {
      const SimResult& q = *pred.serve;
      std::string power = fmt::format("{:.0f} W", q.replicas_gpu_w);
      if (r.serve.power) power += fmt::format(" (measured over predicted {:.2f}x)", ratio(r.serve.power->power_w, q.replicas_gpu_w));
      fmt::print("    predicted on {} ({}, {} GPU{}): {} iterations, {:.6g} s: {:.1f} output tokens/s (measured over predicted {:.2f}x); "
                 "TTFT p50 {:.3f} ms, TPOT p50 {:.3f} ms; {}\n",
                 pred.system, s.calibrated ? "calibrated" : "datasheet", pred.gpus, pred.gpus == 1 ? "" : "s",
                 q.iterations, q.duration_s, q.output_tokens_per_s, ratio(r.serve.output_tokens_per_s(), q.output_tokens_per_s), q.ttft_ms.p50,
                 q.tpot_ms.p50, power);
      if (q.iterations != r.serve.iterations)
        fmt::print("    note: the simulator served them in {} iterations, the executor's loop in {}{}\n", q.iterations, r.serve.iterations,
                   q.preemptions > 0 || q.kv_peak_utilization >= 0.99 ? " (the simulated KV cache was full)"
                   : r.serve.timed ? " (timed arrivals: which requests share an iteration follows each side's step times)"
                                   : "");
    } else if (!pred.serve_note.empty()) {
      fmt::print("    {}\n", pred.serve_note);
    }
  }
  fmt::print("  {} op identities measured\n", r.measurements.records.size());
}

/// Where a run writes (each "" = not asked for).
struct ExecOutputs {
  std::string out;    ///< --out: the per-op measurement file
  std::string json;   ///< --json: the summary ("-": stdout, then no table)
  std::string csv;    ///< --csv: the serving loop's requests, one row each
  std::string trace;  ///< --trace: the serving loop's iterations, measured and predicted, for Perfetto
};

/// The serving loop's requests as `racksim simulate --csv` writes its own (replica 0).
std::vector<RequestRecord> serve_requests(const exec::ServeResult& r, const std::vector<std::uint32_t>& input) {
  std::vector<RequestRecord> rows;
  for (std::size_t i = 0; i < r.arrival_s.size(); ++i)
    rows.push_back({static_cast<std::uint32_t>(i), 0, SimTime::seconds(r.arrival_s[i]), SimTime::seconds(r.first_token_s[i]),
                    SimTime::seconds(r.finish_s[i]), input.at(i), static_cast<std::uint32_t>(r.outputs[i].size())});
  return rows;
}

/// The loop's iterations as process 0 and, where there is one, the prediction's as process 1.
std::string serve_trace(const Scenario& s, const exec::ExecReport& r, const Predictions& pred) {
  std::vector<std::string> processes = {fmt::format("measured: {}", r.device)};
  std::vector<IterationRecord> its;
  for (const auto& it : r.serve.iteration_log) {
    IterationRecord rec;
    rec.start = SimTime::seconds(it.start_s);
    rec.end = SimTime::seconds(it.end_s);
    rec.decode = it.decode;
    rec.prefill_tokens = it.prefill_tokens;
    its.push_back(rec);
  }
  if (pred.serve) {
    processes.push_back(fmt::format("predicted on {} ({})", pred.system, s.calibrated ? "calibrated" : "datasheet"));
    // The simulator's times count from its first arrival, the loop's from its own start (the first arrival).
    const SimTime first = pred.serve->iteration_records.empty() ? SimTime{} : pred.first_arrival;
    for (IterationRecord it : pred.serve->iteration_records) {
      it.replica = 1;
      it.start = it.start - first;
      it.end = it.end - first;
      its.push_back(it);
    }
  }
  return iterations_trace(s.name, processes, its);
}

/// The report, the measurement file and the JSON summary of a finished run.
void finish(const Scenario& s, exec::ExecReport& r, const ExecOutputs& to, const exec::ExecOptions& o, const std::string& predict_on) {
  auto notes = scenario_notes(s, r.device.rfind("cpu", 0) != 0);
  r.notes.insert(r.notes.end(), notes.begin(), notes.end());
  const Predictions pred = predict(s, r, predict_on, o.tensor_parallel, !to.trace.empty());
  if (to.json != "-") print_report(s, r, pred);
  if (!to.out.empty()) write_measurements(to.out, r.measurements);
  if (!to.json.empty()) write_json(to.json, report_json(s, r, pred));
  if (!to.csv.empty()) write_output(to.csv, requests_csv(serve_requests(r.serve, o.serve_input)));
  if (!to.trace.empty()) write_output(to.trace, serve_trace(s, r, pred));
}

/// One process per GPU (mpirun / srun), each one tensor-parallel rank; rank 0 prints and writes.
int run_mpi(const Scenario& s, exec::ExecOptions o, const ExecOutputs& to, const std::string& predict_on, const std::string& how) {
  if (o.device == "cpu")
    throw InputError(fmt::format("racksim exec: {}: one process per rank runs GPUs (--device cuda:0); the CPU reference runs its "
                                 "tensor-parallel ranks as threads of one process",
                                 how));
  const std::unique_ptr<exec::ProcessGroup> group = exec::mpi_group();
  return abort_all_on_failure(*group, [&] {
    const MpiGpuRank me = join_mpi_gpu_run(*group);
    const exec::RankPlacement& placement = me.placement;
    const auto comm = exec::make_device_tp_comm(std::span<const std::byte>(me.id.data(), me.id.size()), placement.rank, placement.ranks,
                                                me.device);
    o.device = fmt::format("cuda:{}", me.device);
    o.rank_comm = comm.get();
    o.agree_layers = [&group](int fit) { return exec::fewest_over_ranks(*group, fit); };
    o.agree_power_steps = [&group](int n) { return exec::fewest_over_ranks(*group, n); };
    o.combine_power = [&group](const std::optional<exec::StepPower>& p) { return exec::power_over_ranks(*group, p); };
    o.agree_replay = [&group](bool can) { return exec::all_ranks(*group, can); };
    o.agree_arrived = [&group](int arrived) { return exec::fewest_over_ranks(*group, arrived); };
    exec::ExecReport r = exec::run_exec(s.model, s.precision, o);
    if (group->rank() != 0) return 0;
    r.notes.push_back(fmt::format("tensor parallel {}: one process per GPU on {} node{} (MPI; local rank from {}); op times are rank 0's",
                                  placement.ranks, placement.nodes, placement.nodes == 1 ? "" : "s", placement.local_rank_from));
    finish(s, r, to, o, predict_on);
    return 0;
  });
}

}  // namespace

int cmd_exec(const Args& args) {
  po::options_description desc("exec options");
  std::string scenario_path, device = "cpu", fp4_gemm = "auto", predict_on = "auto";
  ExecOutputs to;
  std::vector<std::string> sets, shapes;
  exec::ExecOptions o;
  long long serve = 0;
  double memory_gib = 8;
  long long seed = -1;
  desc.add_options()("scenario", po::value(&scenario_path)->required(), "scenario YAML")(
      "set", po::value(&sets)->composing(), "override a scenario key: --set serving.max_batch_size=64")(
      "device", po::value(&device), "cpu (the CPU reference; default) or cuda:N (the CUDA step executor)")(
      "shape", po::value(&shapes)->composing(),
      "a step to time: prefill:L, prefill:BxL (B prompts of L tokens) or decode:BxC (B sequences after C cached tokens); "
      "repeatable; default prefill:128 decode:1x128 decode:8x128")(
      "serve", po::value(&serve),
      "run a serving loop over the first N of the scenario's requests (0 = none): offline, a closed loop of "
      "workload.concurrency clients under workload.scenario concurrency, or arriving at their times under server, "
      "interactive (workload.qps) and trace")(
      "layers", po::value(&o.layers), "layers to run (0 = as many as --memory-gib holds)")(
      "memory-gib", po::value(&memory_gib), "host memory the CPU reference's weights may take (default 8; cuda: free device memory)")(
      "fp4-gemm", po::value(&fp4_gemm),
      "cuda: the FP4 linear kernels: auto (native NVFP4 cuBLASLt on sm_100/sm_103, else Hopper's; default), native, hopper")(
      "warmup", po::value(&o.warmup), "untimed runs of each shape (default 1)")("reps", po::value(&o.reps), "timed runs of each shape (default 3)")(
      "predict-on", po::value(&predict_on),
      "the catalog system the simulator predicts each step and the serving loop on, beside the measurement: auto (the system of "
      "the device's GPU; "
      "none on the CPU; default), none, or a system id")(
      "power-seconds", po::value(&o.power_seconds),
      "cuda: seconds of back-to-back graph replays of each decode step for its energy and mean power through NVML "
      "(default 1; 0 = none)")(
      "seed", po::value(&seed), "seed of weights and tokens (default: the scenario's)")(
      "out", po::value(&to.out), "write the per-op measurement file (racksim-measurements/1) to FILE")(
      "json", po::value(&to.json), "write the summary as JSON to FILE ('-' for stdout, then no table)")(
      "csv", po::value(&to.csv), "with --serve: write one row per request of the loop to FILE (racksim simulate --csv's columns)")(
      "trace", po::value(&to.trace),
      "with --serve: write a Chrome/Perfetto trace of the loop's iterations to FILE, and of the prediction's under --predict-on");
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm,
             "racksim exec SCENARIO.yaml [--device cpu|cuda:N] [--fp4-gemm auto|native|hopper] [--shape S]... [--serve N] [--layers N] "
             "[--out FILE] [--json FILE] [--csv FILE] [--trace FILE]"))
    return 0;
  exec::check_executor_environment(exec::environment_names(), exec::process_env());  // a bad knob: exit 2 now, not after the weights
  for (const auto& [opt, path] : {std::pair{"--json", to.json}, std::pair{"--out", to.out}, std::pair{"--csv", to.csv}, std::pair{"--trace", to.trace}})
    if (!path.empty()) check_output_path(path, opt);
  if (serve < 0) throw InputError(fmt::format("racksim exec: --serve {} must be >= 0", serve));
  for (const auto& [opt, path] : {std::pair{"--csv", to.csv}, std::pair{"--trace", to.trace}})
    if (!path.empty() && serve == 0)
      throw InputError(fmt::format("racksim exec: {} {}: needs --serve N (its rows are the serving loop's)", opt, path));
  if (!(o.power_seconds >= 0 && o.power_seconds <= 600))
    throw InputError(fmt::format("racksim exec: --power-seconds {} must be 0 (none) to 600", o.power_seconds));
  if (!(memory_gib > 0) || !std::isfinite(memory_gib)) throw InputError(fmt::format("racksim exec: --memory-gib {} must be > 0", memory_gib));
  Scenario s = load_scenario(scenario_path, sets);
  if (predict_on != "auto" && predict_on != "none") (void)find_system(predict_on, "racksim exec", "--predict-on");  // before any work

  o.device = device;
  o.tensor_parallel = s.deployment.tensor_parallel;
  const auto mode = exec::parse_fp4_gemm_mode(fp4_gemm);
  if (!mode) throw InputError(fmt::format("racksim exec: --fp4-gemm: '{}' is not one of auto, native, hopper", fp4_gemm));
  o.fp4_gemm = *mode;
  if (shapes.empty()) shapes = {"prefill:128", "decode:1x128", "decode:8x128"};
  for (const auto& text : shapes) o.shapes.push_back(exec::ExecShape::parse(text, "--shape"));
  o.memory_budget_bytes = memory_gib * (1ull << 30);
  o.serving = {s.serving.max_batch_size, s.serving.max_num_tokens, s.serving.chunked_prefill, s.serving.kv_block_tokens};
  o.seed = seed >= 0 ? static_cast<std::uint64_t>(seed) : s.seed;
  o.command_line = exec::executor_knobs_prefix(exec::process_env()) + "racksim exec " + scenario_path;
  for (const auto& a : args.argv)
    if (a != scenario_path) o.command_line += " " + a;
  if (serve > 0) {
    RequestSet reqs;
    if (s.workload.scenario == "trace") {
      // The trace's rows, or its first workload.requests (generate_requests checks those against
      // the trace); --serve takes the first N of them.
      reqs = generate_requests(s, 0);
      if (static_cast<std::size_t>(serve) > reqs.size())
        throw InputError(fmt::format("racksim exec: --serve {} is more than the {} requests of the trace {}{}", serve, reqs.size(),
                                     s.workload.trace, s.workload.requests > 0 ? " (its first workload.requests)" : ""));
      for (auto* v : {&reqs.input, &reqs.output}) v->resize(static_cast<std::size_t>(serve));
      reqs.arrival.resize(static_cast<std::size_t>(serve));
    } else {
      if (serve > s.workload.requests)
        throw InputError(fmt::format("racksim exec: --serve {} is more than the scenario's workload.requests ({})", serve, s.workload.requests));
      Scenario first = s;
      first.workload.requests = serve;
      reqs = generate_requests(first, replica_qps(s));  // server, interactive: one replica's share of the rate
    }
    o.serve_input = reqs.input;
    o.serve_output = reqs.output;
    o.serve_concurrency = s.workload.concurrency;  // 0 unless workload.scenario is concurrency
    // Server, interactive and trace: the requests arrive at their times, counted from the first
    // (the simulator measures from the first arrival too).
    if (s.workload.scenario == "server" || s.workload.scenario == "interactive" || s.workload.scenario == "trace")
      for (const SimTime a : reqs.arrival) o.serve_arrival_s.push_back((a - reqs.arrival.front()).to_seconds());
  }

  // Under mpirun / srun (more than one process started) each process is one tensor-parallel rank.
  std::string launcher_var;
  const int launched = exec::launcher_world_size(exec::process_env(), &launcher_var);
  if (launched > 1) return run_mpi(s, o, to, predict_on, fmt::format("{} processes ({}={})", launched, launcher_var, launched));

  exec::ExecReport r = exec::run_exec(s.model, s.precision, o);
  if (o.device == "cpu" && vm.count("power-seconds") && o.power_seconds > 0)  // asked for, and not silently dropped
    r.notes.push_back(fmt::format("--power-seconds {:g}: the CPU reference has no power counter; power windows run on --device cuda:N",
                                  o.power_seconds));
  finish(s, r, to, o, predict_on);
  return 0;
}

}  // namespace racksim::cli
