// racksim validate [CASES.yaml] [--set KEY=VALUE]... [--threshold PCT] [--markdown FILE] [--groups-markdown FILE] [--json FILE]
// Runs the calibration-set scenarios and prints, per case, predicted, published, error, the guard
// the error is held to and where the hardware-model factors came from; --set overrides a key in
// every case's scenario (a what-if over the whole set). Guards and columns: docs/validation.md.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "calibration_json.hpp"
#include "cli.hpp"
#include "scenario_factors.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/common/percentile.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "racksim/sim/simulation.hpp"

namespace racksim::cli {
namespace {

struct Case {
  std::string name, scenario, metric, source;
  std::string group;              ///< optional: cases summarised together (median |error| per group and metric)
  std::vector<std::string> sets;  ///< the case's own overrides ("key=value"), after --set
  std::int64_t requests = 0;
  bool find_max = false;
  double published = 0;
  double tolerance_pct = 0;  ///< > 0: this case's own guard, used instead of --threshold (tighter or looser)
};

/// The bound one case's |error| is held to. A case's tolerance_pct is its author's statement of
/// the accuracy expected of that case (tighter than the threshold for a well-modelled one, looser
/// for a documented gap), so it replaces --threshold for that case alone; every row shows which
/// guard it got, so a loose one is never silent.
struct Guard {
  double pct = 0;    ///< 0: unguarded (no --threshold, no tolerance_pct)
  bool own = false;  ///< the case's own tolerance_pct
  [[nodiscard]] std::string text() const { return pct <= 0 ? "-" : fmt::format("{:g}%{}", pct, own ? " case" : ""); }
};

double metric_of(const SimResult& r, const std::string& m) {
  if (m == "output_tokens_per_s") return r.output_tokens_per_s;
  if (m == "system_avg_w") return r.system_avg_w;
  if (m == "ttft_p99_ms") return r.ttft_ms.p99;
  if (m == "tpot_p99_ms") return r.tpot_ms.p99;
  if (m == "ttft_p50_ms") return r.ttft_ms.p50;
  if (m == "tpot_p50_ms") return r.tpot_ms.p50;
  if (m == "ttft_mean_ms") return r.ttft_ms.mean;
  if (m == "tpot_mean_ms") return r.tpot_ms.mean;
  return NAN;
}

/// "own: gemm bf16, gemm nvfp4; carried: gemm fp8 from b200 fp8; seed: memory, launch, power,
/// attention": the factor families in calibration_summary's order, grouped by source.
std::string factors_compact(const std::vector<FactorSource>& sources) {
  std::vector<std::string> groups;
  for (const std::string_view kind : {"own", "carried", "seed"}) {
    std::vector<std::string> names;
    for (const auto& s : sources)
      if (s.source == kind) names.push_back(s.from.empty() ? s.factor : fmt::format("{} from {}", s.factor, s.from));
    if (!names.empty()) groups.push_back(fmt::format("{}: {}", kind, fmt::join(names, ", ")));
  }
  return fmt::format("{}", fmt::join(groups, "; "));
}

}  // namespace

int cmd_validate(const Args& args) {
  po::options_description desc("validate options");
  std::string cases_path = "examples/validation/calibration-set.yaml", markdown, groups_markdown, json;
  double threshold = 0;
  std::vector<std::string> overrides;
  desc.add_options()("cases", po::value(&cases_path)->value_name("CASES.yaml"), "case list (default examples/validation/calibration-set.yaml)")(
      "set", po::value(&overrides)->value_name("KEY=VALUE")->composing(),
      "override a key in every case's scenario: --set serving.capacity_policy=max_utilization")(
      "threshold", po::value(&threshold)->value_name("PCT"),
      "exit 4 if any case's |error| exceeds PCT percent. A case's own tolerance_pct replaces PCT for that case "
      "(tighter or looser; its guard column reads 'N% case') and guards it even without --threshold")(
      "markdown", po::value(&markdown)->value_name("FILE"), "write the table and the guard summary as Markdown to FILE")(
      "groups-markdown", po::value(&groups_markdown)->value_name("FILE"),
      "write only the per-group summary (cases with a 'group' key) and the guard summary as Markdown to FILE")(
      "json", po::value(&json)->value_name("FILE"), "write JSON to FILE ('-' for stdout)");
  po::positional_options_description pos;
  pos.add("cases", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm,
             "racksim validate [CASES.yaml] [--set KEY=VALUE]... [--threshold PCT] [--markdown FILE] [--groups-markdown FILE] [--json FILE]"))
    return 0;
  if (!(threshold >= 0)) throw InputError(fmt::format("racksim validate: --threshold {}: a percentage >= 0 is expected", threshold));
  if (!markdown.empty()) check_output_path(markdown, "--markdown");
  if (!groups_markdown.empty()) check_output_path(groups_markdown, "--groups-markdown");
  if (!json.empty()) check_output_path(json, "--json");

  YamlMap root = YamlMap::from_file(cases_path);
  std::vector<Case> cases;
  static constexpr std::string_view kMetrics[] = {"output_tokens_per_s", "system_avg_w", "ttft_p99_ms", "tpot_p99_ms",
                                                  "ttft_p50_ms", "tpot_p50_ms", "ttft_mean_ms", "tpot_mean_ms"};
  for (const YamlMap& c : root.map_list("cases")) {
    Case k;
    k.name = c.string("name");
    k.scenario = (std::filesystem::path(cases_path).parent_path() / c.string("scenario")).lexically_normal().string();
    k.requests = c.has("requests") ? c.integer("requests", 1, std::int64_t{1} << 40) : 0;
    k.find_max = c.has("find_max_qps") && c.boolean("find_max_qps");
    k.metric = c.choice("metric", kMetrics);
    k.published = c.number("published", 1e-9, 1e15);
    k.source = c.string("source");
    if (c.has("group")) k.group = c.string("group");
    if (c.has("tolerance_pct")) k.tolerance_pct = c.number("tolerance_pct", 1e-3, 1e6);
    if (auto set = c.optional_map("set")) {
      for (const std::string& key : set->keys()) k.sets.push_back(fmt::format("{}={}", key, set->string(key)));
      set->finish();
    }
    c.finish();
    cases.push_back(k);
  }
  root.finish();
  if (!groups_markdown.empty() && std::none_of(cases.begin(), cases.end(), [](const Case& c) { return !c.group.empty(); }))
    throw InputError(fmt::format("racksim validate: --groups-markdown: no case in {} has a 'group' key", cases_path));

  // Every case's scenario is loaded (and its overrides checked) before anything runs or prints;
  // cases sharing a scenario, overrides, request count and search then run once.
  std::vector<std::string> keys;
  std::map<std::string, Scenario> scenarios;
  std::map<std::string, std::vector<FactorSource>> factors;
  // A deployment the simulator finds infeasible (exit 3 for `simulate`) is a row of its own: a
  // published result that ran is then a prediction the models got wrong, not an input error.
  std::map<std::string, std::string> infeasible;
  for (const auto& c : cases) {
    keys.push_back(fmt::format("{}|{}|{}|{}", c.scenario, c.requests, c.find_max, fmt::join(c.sets, ",")));
    if (scenarios.count(keys.back())) continue;
    std::vector<std::string> sets = overrides;
    if (c.requests) sets.push_back(fmt::format("workload.requests={}", c.requests));
    sets.insert(sets.end(), c.sets.begin(), c.sets.end());
    try {
      const auto& s = scenarios.emplace(keys.back(), load_scenario(c.scenario, sets)).first->second;
      factors.emplace(keys.back(), calibration_sources(s));
    } catch (const InfeasibleError& e) {
      infeasible.emplace(keys.back(), e.what());
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: case '{}': {}", cases_path, c.name, e.what()));
    }
  }
  std::map<std::string, SimResult> runs;
  nlohmann::json rows = nlohmann::json::array();
  std::string md =
      "| case | metric | predicted | published | error | guard | factors | source |\n|---|---|---|---|---|---|---|---|\n";
  int by_threshold = 0, by_tolerance = 0, unguarded = 0, n_infeasible = 0;
  std::vector<std::string> over_cases;
  // Per group and metric, in order of first appearance: the cases' signed errors.
  std::vector<std::pair<std::string, std::string>> group_order;
  std::map<std::pair<std::string, std::string>, std::vector<double>> group_errors;
  std::map<std::pair<std::string, std::string>, int> group_infeasible;
  const bool text = json != "-";
  if (text)
    fmt::print("{:<44} {:<20} {:>11} {:>11} {:>8} {:>10} {:<5} {}\n", "case", "metric", "predicted", "published", "error", "guard",
               "check", "factors");
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string& key = keys[i];
    if (!runs.count(key) && !infeasible.count(key)) {
      try {
        runs[key] = c.find_max ? find_max_qps(scenarios.at(key)) : simulate(scenarios.at(key));
      } catch (const InfeasibleError& e) {
        infeasible.emplace(key, e.what());
      }
    }
    const Guard guard = c.tolerance_pct > 0 ? Guard{c.tolerance_pct, true} : Guard{threshold, false};
    (guard.pct <= 0 ? unguarded : guard.own ? by_tolerance : by_threshold) += 1;
    const std::pair<std::string, std::string> gk{c.group, c.metric};
    if (!c.group.empty() && !group_errors.count(gk) && !group_infeasible.count(gk)) group_order.push_back(gk);
    // The row's JSON (nlohmann sorts keys on output): what every row has, then its outcome.
    nlohmann::json row = {{"case", c.name},
                          {"metric", c.metric},
                          {"published", c.published},
                          {"guard_pct", guard.pct > 0 ? nlohmann::json(guard.pct) : nlohmann::json()},
                          {"guard_from", guard.pct <= 0 ? "none" : guard.own ? "tolerance_pct" : "threshold"},
                          {"scenario", c.scenario},
                          {"requests", c.requests},
                          {"find_max_qps", c.find_max},
                          {"set", c.sets}};
    if (!c.group.empty()) row["group"] = c.group;
    if (auto inf = infeasible.find(key); inf != infeasible.end()) {
      // Guarded: over its guard (the published run exists). Unguarded: shown and counted.
      ++n_infeasible;
      if (!c.group.empty()) ++group_infeasible[gk];
      if (guard.pct > 0) over_cases.push_back(fmt::format("{} (infeasible: {})", c.name, inf->second));
      const std::string check = guard.pct <= 0 ? "-" : "OVER";
      if (text)
        fmt::print("{:<44} {:<20} {:>11} {:>11.1f} {:>8} {:>10} {:<5} {}\n", c.name, c.metric, "infeasible", c.published, "-",
                   guard.text(), check, inf->second);
      md += fmt::format("| {} | {} | infeasible | {:.1f} | - | {}{} | {} | {} |\n", c.name, c.metric, c.published, guard.text(),
                        guard.pct > 0 ? " **OVER**" : "", inf->second, c.source);
      row["predicted"] = nullptr;
      row["infeasible"] = inf->second;
      row["error_pct"] = nullptr;
      row["over"] = guard.pct > 0;
      rows.push_back(std::move(row));
      continue;
    }
    const double predicted = metric_of(runs[key], c.metric);
    const double err = 100.0 * (predicted - c.published) / c.published;
    if (!c.group.empty()) group_errors[gk].push_back(err);
    const bool over = guard.pct > 0 && std::fabs(err) > guard.pct;
    if (over)
      over_cases.push_back(fmt::format("{} ({:+.1f}%, guard {:g}% {})", c.name, err, guard.pct, guard.own ? "tolerance_pct" : "--threshold"));
    const std::string check = guard.pct <= 0 ? "-" : over ? "OVER" : "ok";
    const std::string compact = factors_compact(factors.at(key));
    if (text)
      fmt::print("{:<44} {:<20} {:>11.1f} {:>11.1f} {:>+7.1f}% {:>10} {:<5} {}\n", c.name, c.metric, predicted, c.published, err,
                 guard.text(), check, compact);
    md += fmt::format("| {} | {} | {:.1f} | {:.1f} | {:+.1f}% | {}{} | {} | {} |\n", c.name, c.metric, predicted, c.published, err,
                      guard.text(), over ? " **OVER**" : "", compact, c.source);
    row["predicted"] = predicted;
    row["error_pct"] = err;
    row["over"] = over;
    row["factors"] = compact;
    row["calibration"] = calibration_json(factors.at(key));
    rows.push_back(std::move(row));
  }
  const std::string summary = fmt::format(
      "{} cases: {} guarded by --threshold{}, {} by their own tolerance_pct (guard 'case'), {} unguarded; {} over their guard{}",
      cases.size(), by_threshold, threshold > 0 ? fmt::format(" {:g}%", threshold) : "", by_tolerance, unguarded, over_cases.size(),
      n_infeasible ? fmt::format("; {} infeasible", n_infeasible) : "");
  // Group summaries: how a family of cases fares as a whole (median and 90th percentile of
  // |error|, median signed error: the bias).
  nlohmann::json groups = nlohmann::json::array();
  std::string group_md;
  if (!group_order.empty()) {
    if (text) fmt::print("\n{:<44} {:<14} {:>5} {:>13} {:>13} {:>13} {:>10}\n", "group", "metric", "cases", "median |err|", "p90 |err|",
                         "median err", "infeasible");
    group_md = "| group | metric | cases | median abs error | p90 abs error | median error (bias) | infeasible |\n|---|---|---|---|---|---|---|\n";
    for (const auto& gk : group_order) {
      std::vector<double> errs = group_errors[gk];
      std::vector<double> abs_errs;
      for (double e : errs) abs_errs.push_back(std::fabs(e));
      const int inf = group_infeasible.count(gk) ? group_infeasible.at(gk) : 0;
      const auto at = [](std::vector<double> v, double p) {  // sorted[floor(n p)], as the latency percentiles
        std::sort(v.begin(), v.end());
        return v[loadgen_percentile_index(v.size(), p)];
      };
      // The median of an even count: the mean of the two middle values.
      const auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        const std::size_t n = v.size();
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
      };
      if (errs.empty()) {
        if (text) fmt::print("{:<44} {:<14} {:>5} {:>13} {:>13} {:>13} {:>10}\n", gk.first, gk.second, 0, "-", "-", "-", inf);
        group_md += fmt::format("| {} | {} | 0 | - | - | - | {} |\n", gk.first, gk.second, inf);
        groups.push_back({{"group", gk.first}, {"metric", gk.second}, {"cases", 0}, {"infeasible", inf}});
        continue;
      }
      const double med_abs = median(abs_errs), p90_abs = at(abs_errs, 0.9), med = median(errs);
      if (text)
        fmt::print("{:<44} {:<14} {:>5} {:>12.1f}% {:>12.1f}% {:>+12.1f}% {:>10}\n", gk.first, gk.second, errs.size(), med_abs, p90_abs,
                   med, inf);
      group_md += fmt::format("| {} | {} | {} | {:.1f}% | {:.1f}% | {:+.1f}% | {} |\n", gk.first, gk.second, errs.size(), med_abs, p90_abs,
                              med, inf);
      groups.push_back({{"group", gk.first},
                        {"metric", gk.second},
                        {"cases", errs.size()},
                        {"median_abs_error_pct", med_abs},
                        {"p90_abs_error_pct", p90_abs},
                        {"median_error_pct", med},
                        {"infeasible", inf}});
    }
  }
  if (text) fmt::print("{}\n", summary);
  if (!markdown.empty()) write_output(markdown, md + "\n" + (group_md.empty() ? "" : group_md + "\n") + summary + ".\n");
  if (!groups_markdown.empty()) write_output(groups_markdown, group_md + "\n" + summary + ".\n");
  if (!json.empty()) {
    nlohmann::json out = {{"cases", rows},
                          {"threshold_pct", threshold > 0 ? nlohmann::json(threshold) : nlohmann::json()},
                          {"overrides", overrides},
                          {"summary",
                           {{"cases", cases.size()},
                            {"guarded_by_threshold", by_threshold},
                            {"guarded_by_tolerance_pct", by_tolerance},
                            {"unguarded", unguarded},
                            {"over", over_cases.size()}}}};
    if (!groups.empty()) out["groups"] = groups;
    if (n_infeasible) out["summary"]["infeasible"] = n_infeasible;
    write_json(json, out);
  }
  // Unguarded infeasible cases pass, but never silently: a mistake in a case's overrides (a
  // format the GPU lacks, a prompt longer than the model) reads the same as a model gap.
  std::vector<std::string> unguarded_infeasible;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Guard g = cases[i].tolerance_pct > 0 ? Guard{cases[i].tolerance_pct, true} : Guard{threshold, false};
    if (g.pct <= 0 && infeasible.count(keys[i])) unguarded_infeasible.push_back(cases[i].name);
  }
  if (!unguarded_infeasible.empty())
    fmt::print(stderr, "warning: {} unguarded case{} infeasible (shown as rows, not counted as errors): {}\n", unguarded_infeasible.size(),
               unguarded_infeasible.size() == 1 ? "" : "s", fmt::join(unguarded_infeasible, "; "));
  if (!over_cases.empty()) {
    fmt::print(stderr, "error: {} of {} cases off by more than their guard: {}\n", over_cases.size(), cases.size(),
               fmt::join(over_cases, "; "));
    return 4;
  }
  return 0;
}

}  // namespace racksim::cli
