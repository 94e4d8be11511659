// racksim graph SCENARIO.yaml [--phase prefill|decode] [--batch N] [--context N] [--json FILE]

#include <map>

#include <fmt/format.h>

#include "cli.hpp"
#include "racksim/common/output.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/units.hpp"
#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/sim/scenario.hpp"
#include "racksim/sim/step_estimate.hpp"

namespace racksim::cli {

int cmd_graph(const Args& args) {
  po::options_description desc("graph options");
  std::string scenario_path, phase = "decode", json, cost_model = "roofline";
  long long batch = 1, context = 1024, cached = 0;
  std::vector<std::string> sets;
  bool summary_only = false;
  desc.add_options()("scenario", po::value(&scenario_path)->required(), "scenario YAML")(
      "phase", po::value(&phase)->default_value("decode"), "prefill | decode")(
      "batch", po::value(&batch)->default_value(1), "sequences in the step")(
      "context", po::value(&context)->default_value(1024),
      "decode: tokens already in each sequence's KV cache; prefill: prompt tokens of each sequence")(
      "cached", po::value(&cached)->default_value(0), "prefill only: tokens of each prompt already cached (chunked prefill)")(
      "set", po::value(&sets)->composing(), "override a scenario key: --set serving.max_batch_size=1024")(
      "cost-model", po::value(&cost_model)->default_value("roofline"), "cost model by name")(
      "summary", po::bool_switch(&summary_only), "print per-kind totals only, not every op")(
      "json", po::value(&json), "also write JSON to FILE ('-' for stdout, then no table)");
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm,
             "racksim graph SCENARIO.yaml [--phase prefill|decode] [--batch N] [--context N] [--set KEY=VALUE]... [--json FILE]"))
    return 0;
  if (phase != "prefill" && phase != "decode")
    throw InputError(fmt::format("racksim graph: --phase: '{}' is not one of prefill, decode", phase));
  if (batch < 1 || batch > (1LL << 24)) throw InputError(fmt::format("racksim graph: --batch: '{}' is not in 1 to {}", batch, 1LL << 24));
  if (context < (phase == "prefill" ? 1 : 0) || context > (1LL << 24))
    throw InputError(fmt::format("racksim graph: --context: '{}' is not in {} to {}", context, phase == "prefill" ? 1 : 0, 1LL << 24));
  if (cached < 0 || (cached > 0 && phase != "prefill"))
    throw InputError(fmt::format("racksim graph: --cached: '{}' applies to --phase prefill only and must be >= 0", cached));

  if (!json.empty()) check_output_path(json, "--json");
  const Scenario s = load_scenario(scenario_path, sets);
  if (context + cached + (phase == "decode" ? 1 : 0) > s.model.max_position)
    throw InputError(fmt::format("racksim graph: --context: '{}' exceeds {}'s {} positions", context, s.model.id, s.model.max_position));
  const MemoryPlan mem = plan_memory(s);
  StepBatch b = phase == "decode" ? StepBatch::decode(batch, context) : StepBatch::prefill_only(batch, context, cached);
  const StepGraph g(s.model, b, s.deployment, s.precision);
  const auto model = cost_model_registry().get(cost_model).factory(s.system, cost_model_options(s));
  const StepEstimate e = estimate_step(g, *model);

  const bool table = json != "-";
  struct KindTotal {
    int ops = 0;
    double flops = 0, bytes = 0, comm = 0, time = 0;
    std::map<std::string, int> bounds;
  };
  std::map<std::string, KindTotal> kinds;
  nlohmann::json ops = nlohmann::json::array();
  if (table) {
    fmt::print("{}: {} on {}, {} / {} / {} (weights / GEMM / KV), TP{} PP{}{}, {} replicas\n", s.name, s.model.id, s.system.id,
               to_string(s.precision.weights), to_string(s.precision.activations), to_string(s.precision.kv_cache),
               s.deployment.tensor_parallel, s.deployment.pipeline_parallel,
               s.deployment.expert_parallel > 1 ? fmt::format(" EP{}", s.deployment.expert_parallel) : "", s.replicas);
    fmt::print("step: {} x {} {}{}, {} tokens; cost model {}; per GPU of the replica\n", batch,
               phase == "decode" ? "decode, context" : "prefill, prompt", context,
               cached ? fmt::format(" after {} cached", cached) : "", b.tokens(), model->name());
    if (!summary_only)
      fmt::print("\n{:<34} {:<18} {:>12} {:>12} {:>12} {:>10} {:>10}  {}\n", "op", "kind", "GFLOP", "MB read", "MB written",
                 "comm MB", "time us", "bound");
  }
  for (std::size_t i = 0; i < e.order.size(); ++i) {
    const Op& op = g.op(e.order[i]);
    const OpCost& c = e.costs[i];
    auto& k = kinds[std::string(to_string(op.kind))];
    ++k.ops;
    k.flops += op.flops;
    k.bytes += op.bytes();
    k.comm += op.comm_bytes;
    k.time += c.time_s;
    ++k.bounds[std::string(to_string(c.bound))];
    nlohmann::json o = {{"name", op.name},
                        {"kind", to_string(op.kind)},
                        {"layer", op.layer},
                        {"stage", op.stage},
                        {"identity", op.identity()},
                        {"flops", op.flops},
                        {"bytes_read", op.bytes_read()},
                        {"bytes_written", op.bytes_written},
                        {"comm_bytes", op.comm_bytes},
                        {"time_s", c.time_s},
                        {"compute_s", c.compute_s},
                        {"memory_s", c.memory_s},
                        {"network_s", c.network_s},
                        {"launch_s", c.launch_s},
                        {"bound", to_string(c.bound)}};
    if (c.algorithm != CollectiveAlgorithm::none) o["algorithm"] = to_string(c.algorithm);
    ops.push_back(std::move(o));
    if (table && !summary_only)
      fmt::print("{:<34} {:<18} {:>12.3f} {:>12.3f} {:>12.3f} {:>10.3f} {:>10.2f}  {}{}\n", op.name, to_string(op.kind), op.flops / 1e9,
                 op.bytes_read() / 1e6, op.bytes_written / 1e6, op.comm_bytes / 1e6, c.time_s * 1e6, to_string(c.bound),
                 c.algorithm != CollectiveAlgorithm::none ? fmt::format(" ({})", to_string(c.algorithm)) : "");
  }
  const double tokens = static_cast<double>(b.tokens());
  if (table) {
    fmt::print("\n{:<18} {:>5} {:>14} {:>12} {:>10} {:>12} {:>7}  {}\n", "kind", "ops", "GFLOP", "GB", "comm GB", "time ms", "share", "bounds");
    for (const auto& [name, k] : kinds) {
      std::string bounds;
      for (const auto& [bn, n] : k.bounds) bounds += fmt::format("{}{} {}", bounds.empty() ? "" : ", ", bn, n);
      fmt::print("{:<18} {:>5} {:>14.2f} {:>12.4f} {:>10.4f} {:>12.4f} {:>6.1f}%  {}\n", name, k.ops, k.flops / 1e9, k.bytes / 1e9,
                 k.comm / 1e9, k.time * 1e3, 100 * k.time / e.time_s, bounds);
    }
    fmt::print("{:<18} {:>5} {:>14.2f} {:>12.4f} {:>10.4f} {:>12.4f}\n", "total", e.order.size(), e.flops / 1e9, e.bytes / 1e9,
               e.comm_bytes / 1e9, e.time_s * 1e3);
    fmt::print("\nstep time {:.4f} ms: {:.0f} tokens/s per replica ({} tokens/step), {:.0f} tokens/s for {} replicas\n", e.time_s * 1e3,
               tokens / e.time_s, b.tokens(), tokens / e.time_s * s.replicas, s.replicas);
    fmt::print("memory per GPU: weights {}, activations {}, KV cache {} ({} tokens per replica) of {} HBM\n",
               format_gib(mem.weights_per_gpu), format_gib(mem.activations_per_gpu), format_gib(mem.kv_bytes_per_gpu),
               format_count(mem.kv_tokens_per_replica), format_gib(mem.hbm_per_gpu));
    const double kv_needed = static_cast<double>(batch) * static_cast<double>(context + cached + 1);
    if (kv_needed > static_cast<double>(mem.kv_tokens_per_replica))
      fmt::print("note: this batch holds {:.0f} KV tokens, more than the replica's capacity of {}\n", kv_needed,
                 format_count(mem.kv_tokens_per_replica));
  }
  if (!json.empty()) {
    nlohmann::json j = {{"scenario", s.name},
                        {"system", s.system.id},
                        {"model", s.model.id},
                        {"phase", phase},
                        {"batch", batch},
                        {"context", context},
                        {"tokens", b.tokens()},
                        {"cost_model", model->name()},
                        {"ops", std::move(ops)},
                        {"totals", {{"flops", e.flops}, {"bytes", e.bytes}, {"comm_bytes", e.comm_bytes}, {"time_s", e.time_s}}},
                        {"memory",
                         {{"weights_bytes_per_gpu", mem.weights_per_gpu},
                          {"activation_bytes_per_gpu", mem.activations_per_gpu},
                          {"kv_bytes_per_gpu", mem.kv_bytes_per_gpu},
                          {"kv_capacity_tokens_per_replica", mem.kv_tokens_per_replica}}}};
    write_json(json, j);
  }
  return 0;
}

}  // namespace racksim::cli
