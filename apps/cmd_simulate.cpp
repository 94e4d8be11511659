// racksim simulate SCENARIO.yaml [--set KEY=VALUE]... [--json FILE] [--csv FILE] [--trace FILE] [--find-max-qps]

#include <chrono>
#include <cmath>
#include <iostream>

#include <fmt/format.h>

#include "calibration_json.hpp"
#include "cli.hpp"
#include "scenario_factors.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/sim/simulation.hpp"

namespace racksim::cli {

nlohmann::json latency_json(const LatencySummary& l) {
  return {{"mean", l.mean}, {"p50", l.p50}, {"p90", l.p90}, {"p99", l.p99}};
}

std::string requests_csv(const std::vector<RequestRecord>& requests) {
  std::string out = "request,replica,arrival_s,first_token_s,finish_s,input_tokens,output_tokens\n";
  for (const auto& q : requests)
    out += fmt::format("{},{},{:.9f},{:.9f},{:.9f},{},{}\n", q.id, q.replica, q.arrival.to_seconds(), q.first_token.to_seconds(),
                       q.finish.to_seconds(), q.input, q.output);
  return out;
}

std::string iterations_trace(const std::string& name, const std::vector<std::string>& processes,
                             const std::vector<IterationRecord>& iterations) {
  // Chrome / Perfetto trace event format: one complete ("X") event per iteration, a process per
  // replica (`processes`, by IterationRecord::replica) and a thread per pipeline lane; times in microseconds.
  nlohmann::json events = nlohmann::json::array();
  for (std::size_t p = 0; p < processes.size(); ++p)
    events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", p}, {"args", {{"name", processes[p]}}}});
  for (const auto& it : iterations)
    events.push_back({{"name", it.prefill_tokens > 0 ? "prefill+decode" : "decode"},
                      {"ph", "X"},
                      {"pid", it.replica},
                      {"tid", it.lane},
                      {"ts", static_cast<double>(it.start.ps()) * 1e-6},
                      {"dur", static_cast<double>((it.end - it.start).ps()) * 1e-6},
                      {"args", {{"decode", it.decode}, {"prefill_tokens", it.prefill_tokens}, {"power_capped", it.capped}}}});
  nlohmann::json j = {{"traceEvents", events}, {"displayTimeUnit", "ms"}, {"otherData", {{"scenario", name}}}};
  return j.dump() + "\n";
}

namespace {

/// GPUs the replicas occupy (the system may hold more: `deployment.replicas` below auto).
int gpus_used(const Scenario& s, const SimResult& r) { return r.replicas * s.deployment.gpus_per_replica(); }

nlohmann::json result_json(const Scenario& s, const SimResult& r, double wall_s) {
  nlohmann::json slo = {{"ttft_p99_ms", r.ttft_limit_ms > 0 ? nlohmann::json(r.ttft_limit_ms) : nlohmann::json()},
                        {"tpot_p99_ms", r.tpot_limit_ms > 0 ? nlohmann::json(r.tpot_limit_ms) : nlohmann::json()},
                        {"met", r.slo_met}};
  nlohmann::json j = {{"scenario", s.name},
                      {"system", s.system.id},
                      {"model", s.model.id},
                      {"workload", s.workload.scenario},
                      {"gpus", r.gpus},
                      {"replicas", r.replicas},
                      {"requests_completed", r.requests_completed},
                      {"input_tokens", r.input_tokens},
                      {"output_tokens", r.output_tokens},
                      {"duration_s", r.duration_s},
                      {"output_tokens_per_s", r.output_tokens_per_s},
                      {"output_tokens_per_s_per_gpu", r.output_tokens_per_s / gpus_used(s, r)},
                      {"gpus_used", gpus_used(s, r)},
                      {"requests_per_s", r.requests_per_s},
                      {"ttft_ms", latency_json(r.ttft_ms)},
                      {"tpot_ms", latency_json(r.tpot_ms)},
                      {"e2e_ms", latency_json(r.e2e_ms)},
                      {"slo", slo},
                      {"power",
                       {{"gpu_avg_w", r.gpu_avg_w},
                        {"system_avg_w", r.system_avg_w},
                        {"energy_j", r.energy_j},
                        {"output_tokens_per_joule", r.output_tokens_per_joule},
                        {"gpu_power_limit_w", s.gpu_power_limit_w},
                        {"capped_iteration_share", r.power_capped_share}}},
                      {"memory",
                       {{"weights_gib_per_gpu", r.weights_gib_per_gpu},
                        {"kv_capacity_tokens_per_replica", r.kv_capacity_tokens_per_replica},
                        {"kv_peak_utilization", r.kv_peak_utilization}}},
                      {"sim", {{"events", r.events}, {"iterations", r.iterations}, {"preemptions", r.preemptions}, {"wall_s", wall_s}}},
                      {"seed", s.seed},
                      {"calibration", calibration_json(calibration_sources(s))}};
  if (r.qps > 0) j["qps"] = r.qps;
  if (s.workload.concurrency > 0) j["concurrency"] = s.workload.concurrency;
  return j;
}

void print_table(const Scenario& s, const SimResult& r) {
  fmt::print("{}: {} on {} ({} GPUs, {} replicas of TP{} x PP{}), {} {}\n", s.name, s.model.id, s.system.id, r.gpus, r.replicas,
             s.deployment.tensor_parallel, s.deployment.pipeline_parallel, s.workload.scenario,
             r.qps > 0                     ? fmt::format("at {:.2f} queries/s", r.qps)
             : s.workload.concurrency > 0  ? fmt::format("of {} clients", s.workload.concurrency)
                                           : "");
  fmt::print("  requests {}, input tokens {}, output tokens {}, duration {:.3f} s\n", r.requests_completed, r.input_tokens,
             r.output_tokens, r.duration_s);
  fmt::print("  throughput {:.1f} output tokens/s ({:.1f} per GPU in use), {:.2f} requests/s\n", r.output_tokens_per_s,
             r.output_tokens_per_s / gpus_used(s, r), r.requests_per_s);
  fmt::print("  {:<6} {:>10} {:>10} {:>10} {:>10}   (ms)\n", "", "mean", "p50", "p90", "p99");
  for (const auto& [name, l] : {std::pair{"TTFT", r.ttft_ms}, std::pair{"TPOT", r.tpot_ms}, std::pair{"E2E", r.e2e_ms}})
    fmt::print("  {:<6} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f}\n", name, l.mean, l.p50, l.p90, l.p99);
  if (r.ttft_limit_ms > 0 || r.tpot_limit_ms > 0) {
    std::string limits;
    if (r.ttft_limit_ms > 0) limits += fmt::format("TTFT <= {:g} ms", r.ttft_limit_ms);
    if (r.tpot_limit_ms > 0) limits += fmt::format("{}TPOT <= {:g} ms", limits.empty() ? "" : ", ", r.tpot_limit_ms);
    fmt::print("  SLO p99 {}: {}\n", limits, r.slo_met ? "met" : "NOT met");
  }
  fmt::print("  power: GPU {:.0f} W average (limit {:.0f} W, {:.1f}% of iterations capped), system {:.0f} W, {:.3g} J, {:.3f} tokens/J\n",
             r.gpu_avg_w, s.gpu_power_limit_w, 100 * r.power_capped_share, r.system_avg_w, r.energy_j,
             r.output_tokens_per_joule);
  fmt::print("  memory: weights {:.1f} GiB per GPU, KV capacity {} tokens per replica, peak KV use {:.1f}%\n", r.weights_gib_per_gpu,
             r.kv_capacity_tokens_per_replica, 100 * r.kv_peak_utilization);
  fmt::print("  {} iterations, {} preemptions\n", r.iterations, r.preemptions);
}

}  // namespace

int cmd_simulate(const Args& args) {
  po::options_description desc("simulate options");
  std::string scenario_path, json, csv, trace;
  std::vector<std::string> sets;
  bool find_max = false;
  desc.add_options()("scenario", po::value(&scenario_path)->required(), "scenario YAML")(
      "set", po::value(&sets)->composing(), "override a scenario key: --set serving.max_batch_size=1024")(
      "json", po::value(&json), "write the summary as JSON to FILE ('-' for stdout, then no table)")(
      "csv", po::value(&csv), "write one row per request to FILE")("trace", po::value(&trace), "write a Chrome/Perfetto trace to FILE")(
      "find-max-qps", po::bool_switch(&find_max), "server/interactive: search the highest qps that meets the p99 limits");
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm,
             "racksim simulate SCENARIO.yaml [--set KEY=VALUE]... [--json FILE] [--csv FILE] [--trace FILE] [--find-max-qps]"))
    return 0;
  for (const auto& [opt, path] : {std::pair{"--json", json}, std::pair{"--csv", csv}, std::pair{"--trace", trace}})
    if (!path.empty()) check_output_path(path, opt);
  const Scenario s = load_scenario(scenario_path, sets);

  SimOptions opt;
  opt.keep_requests = !csv.empty();
  opt.keep_iterations = !trace.empty();
  const auto t0 = std::chrono::steady_clock::now();
  const SimResult r = find_max ? find_max_qps(s, opt) : simulate(s, opt);
  if (find_max) fmt::print(stderr, "find-max-qps: {:.3f} queries/s is the highest rate that meets the p99 limits\n", r.qps);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (json != "-") print_table(s, r);
  if (!json.empty()) write_json(json, result_json(s, r, wall));
  if (!csv.empty()) write_output(csv, requests_csv(r.request_records));
  if (!trace.empty()) {
    std::vector<std::string> replicas;
    for (int rep = 0; rep < r.replicas; ++rep) replicas.push_back(fmt::format("replica {}", rep));
    write_output(trace, iterations_trace(s.name, replicas, r.iteration_records));
  }
  return 0;
}

}  // namespace racksim::cli
