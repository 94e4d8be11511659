// racksim validate [CASES.yaml] [--set KEY=VALUE]... [--threshold PCT] [--markdown FILE] [--json FILE]
// Runs the calibration-set scenarios and prints predicted, published and error for each; --set
// overrides a key in every case's scenario (a what-if over the whole set, docs/validation.md).

#include <cmath>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "racksim/sim/simulation.hpp"

namespace racksim::cli {
namespace {

struct Case {
  std::string name, scenario, metric, source;
  std::vector<std::string> sets;  ///< the case's own overrides ("key=value"), after --set
  std::int64_t requests = 0;
  bool find_max = false;
  double published = 0;
  double tolerance_pct = 0;  ///< > 0: this case's own guard, replacing --threshold
};

double metric_of(const SimResult& r, const std::string& m) {
  if (m == "output_tokens_per_s") return r.output_tokens_per_s;
  if (m == "system_avg_w") return r.system_avg_w;
  if (m == "ttft_p99_ms") return r.ttft_ms.p99;
  if (m == "tpot_p99_ms") return r.tpot_ms.p99;
  return NAN;
}

}  // namespace

int cmd_validate(const Args& args) {
  po::options_description desc("validate options");
  std::string cases_path = "examples/validation/calibration-set.yaml", markdown, json;
  double threshold = 0;
  std::vector<std::string> overrides;
  desc.add_options()("cases", po::value(&cases_path), "case list (default examples/validation/calibration-set.yaml)")(
      "set", po::value(&overrides)->composing(), "override a key in every case's scenario: --set serving.capacity_policy=max_utilization")(
      "threshold", po::value(&threshold), "exit 4 if any |error| exceeds this many percent")(
      "markdown", po::value(&markdown), "write the table as Markdown to FILE")("json", po::value(&json), "write JSON to FILE ('-' for stdout)");
  po::positional_options_description pos;
  pos.add("cases", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm, "racksim validate [CASES.yaml] [--set KEY=VALUE]... [--threshold PCT] [--markdown FILE] [--json FILE]")) return 0;
  if (!markdown.empty()) check_output_path(markdown, "--markdown");
  if (!json.empty()) check_output_path(json, "--json");

  auto src = std::make_shared<YamlSource>();
  src->file = cases_path;
  YamlMap root = YamlMap::root(load_yaml_file(cases_path), src);
  std::vector<Case> cases;
  static constexpr std::string_view kMetrics[] = {"output_tokens_per_s", "system_avg_w", "ttft_p99_ms", "tpot_p99_ms"};
  for (const YamlMap& c : root.map_list("cases")) {
    Case k;
    k.name = c.string("name");
    k.scenario = (std::filesystem::path(cases_path).parent_path() / c.string("scenario")).lexically_normal().string();
    k.requests = c.has("requests") ? c.integer("requests", 1, std::int64_t{1} << 40) : 0;
    k.find_max = c.has("find_max_qps") && c.boolean("find_max_qps");
    k.metric = c.choice("metric", kMetrics);
    k.published = c.number("published", 1e-9, 1e15);
    k.source = c.string("source");
    if (c.has("tolerance_pct")) k.tolerance_pct = c.number("tolerance_pct", 0, 1e6);
    if (auto set = c.optional_map("set")) {
      for (const std::string& key : set->keys()) k.sets.push_back(fmt::format("{}={}", key, set->string(key)));
      set->finish();
    }
    c.finish();
    cases.push_back(k);
  }
  root.finish();

  // Every case's scenario is loaded (and its overrides checked) before anything runs or prints;
  // cases sharing a scenario, overrides, request count and search then run once.
  std::vector<std::string> keys;
  std::map<std::string, Scenario> scenarios;
  for (const auto& c : cases) {
    keys.push_back(fmt::format("{}|{}|{}|{}", c.scenario, c.requests, c.find_max, fmt::join(c.sets, ",")));
    if (scenarios.count(keys.back())) continue;
    std::vector<std::string> sets = overrides;
    if (c.requests) sets.push_back(fmt::format("workload.requests={}", c.requests));
    sets.insert(sets.end(), c.sets.begin(), c.sets.end());
    try {
      scenarios.emplace(keys.back(), load_scenario(c.scenario, sets));
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: case '{}': {}", cases_path, c.name, e.what()));
    }
  }
  std::map<std::string, SimResult> runs;
  nlohmann::json rows = nlohmann::json::array();
  std::string md = "| case | metric | predicted | published | error | source |\n|---|---|---|---|---|---|\n";
  bool failed = false;
  if (json != "-") fmt::print("{:<36} {:<20} {:>12} {:>12} {:>8}\n", "case", "metric", "predicted", "published", "error");
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string& key = keys[i];
    if (!runs.count(key)) runs[key] = c.find_max ? find_max_qps(scenarios.at(key)) : simulate(scenarios.at(key));
    const double predicted = metric_of(runs[key], c.metric);
    const double err = 100.0 * (predicted - c.published) / c.published;
    const double guard = c.tolerance_pct > 0 ? c.tolerance_pct : threshold;
    const bool over = guard > 0 && std::fabs(err) > guard;
    failed = failed || over;
    if (json != "-")
      fmt::print("{:<36} {:<20} {:>12.1f} {:>12.1f} {:>+7.1f}%{}\n", c.name, c.metric, predicted, c.published, err,
                 over ? fmt::format("  OVER {:g}%", guard) : "");
    md += fmt::format("| {} | {} | {:.1f} | {:.1f} | {:+.1f}% | {} |\n", c.name, c.metric, predicted, c.published, err, c.source);
    rows.push_back({{"case", c.name}, {"metric", c.metric}, {"predicted", predicted}, {"published", c.published},
                    {"error_pct", err}, {"guard_pct", guard}, {"scenario", c.scenario}, {"requests", c.requests}, {"find_max_qps", c.find_max}, {"set", c.sets}});
  }
  if (!markdown.empty()) write_output(markdown, md);
  if (!json.empty()) write_json(json, {{"cases", rows}, {"threshold_pct", threshold}, {"overrides", overrides}});
  if (failed) {
    fmt::print(stderr, "error: at least one case is off by more than its guard (--threshold {}% or its tolerance_pct)\n", threshold);
    return 4;
  }
  return 0;
}

}  // namespace racksim::cli
