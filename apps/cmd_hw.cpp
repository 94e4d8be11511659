// racksim hw list | hw show ID [--json FILE]

#include <iostream>

#include <fmt/format.h>

#include "calibration_json.hpp"
#include "cli.hpp"
#include "racksim/common/output.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/hwmodels/hardware.hpp"

namespace racksim::cli {
namespace {

nlohmann::json figure_json(const Figure& f) {
  nlohmann::json j = {{"value", f.raw}, {"unit", f.unit}, {"source", f.source}};
  if (f.placeholder) j["placeholder"] = true;
  if (!f.note.empty()) j["note"] = f.note;
  return j;
}

std::string figure_text(const Figure& f) {
  return fmt::format("{:g} {}{}", f.raw, f.unit, f.placeholder ? " (placeholder)" : "");
}

void print_figures(const std::vector<std::pair<std::string, const Figure*>>& figs) {
  for (const auto& [key, f] : figs) fmt::print("  {:<22} {:<26} {}\n", key, figure_text(*f), f->source);
}

}  // namespace

int cmd_hw(const Args& args) {
  po::options_description desc("hw options");
  std::string action, id, json;
  desc.add_options()("action", po::value(&action)->required(), "list | show")("id", po::value(&id), "GPU or system id (show)")(
      "json", po::value(&json), "also write JSON to FILE ('-' for stdout, then no table)");
  po::positional_options_description pos;
  pos.add("action", 1).add("id", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm, "racksim hw list|show [ID] [--json FILE]")) return 0;
  if (!json.empty()) check_output_path(json, "--json");
  const bool table = json != "-";

  if (action == "list") {
    nlohmann::json j = {{"gpus", nlohmann::json::array()}, {"systems", nlohmann::json::array()}};
    if (table) fmt::print("GPUs\n  {:<10} {:<16} {:>10} {:>10} {:>10} {:>9} {:>7}\n", "id", "architecture", "bf16 TF/s",
                          "fp4 TF/s", "HBM GiB", "HBM TB/s", "TDP W");
    for (const auto& g : gpu_catalog()) {
      const Figure* fp4 = g.peak(DType::nvfp4);
      if (table)
        fmt::print("  {:<10} {:<16} {:>10.0f} {:>10} {:>10.0f} {:>9.2f} {:>7.0f}\n", g.id, g.architecture, g.peak(DType::bf16)->value / 1e12,
                   fp4 ? fmt::format("{:.0f}", fp4->value / 1e12) : "-", g.hbm_capacity.value / 1073741824.0,
                   g.hbm_bandwidth.value / 1e12, g.power_limit.value);
      j["gpus"].push_back({{"id", g.id}, {"name", g.name}, {"architecture", g.architecture}});
    }
    if (table) fmt::print("\nSystems\n  {:<12} {:<10} {:>5} {:>13}  {}\n", "id", "gpu", "GPUs", "NVLink domain", "name");
    for (const auto& s : system_catalog()) {
      if (table) fmt::print("  {:<12} {:<10} {:>5} {:>13}  {}\n", s.id, s.gpu.id, s.gpus(), s.domain_size(), s.name);
      j["systems"].push_back({{"id", s.id}, {"name", s.name}, {"gpu", s.gpu.id}, {"gpus", s.gpus()}});
    }
    if (!json.empty()) write_json(json, j);
    return 0;
  }
  if (action != "show") throw InputError(fmt::format("racksim hw: '{}' is not one of list, show", action));
  if (id.empty()) throw InputError("racksim hw show: missing ID (racksim hw list shows them)");

  for (const auto& g : gpu_catalog()) {
    if (g.id != id) continue;
    nlohmann::json j = {{"id", g.id}, {"kind", "gpu"}, {"name", g.name}, {"architecture", g.architecture},
                        {"compute_capability", g.compute_capability},
                        {"family", {{"name", g.family.name}, {"nvlink_generation", g.family.nvlink_generation}, {"source", g.family.source}}}};
    for (const auto& [key, f] : g.figures()) {
      auto dot = key.find('.');
      if (dot == std::string::npos) j[key] = figure_json(*f);
      else j[key.substr(0, dot)][key.substr(dot + 1)] = figure_json(*f);
    }
    const auto sources = calibration_summary(g);
    j["calibration"] = calibration_json(sources);
    if (table) {
      fmt::print("{} ({}): {}, compute capability {}\n", g.id, g.name, g.architecture, g.compute_capability);
      print_figures(g.figures());
      fmt::print("  {:<22} {} (NVLink {}): {}\n", "family", g.family.name, g.family.nvlink_generation, g.family.source);
      fmt::print("calibrated factors (own: fitted on {}; carried: from a GPU of its family or another format; seed: not fitted)\n", g.id);
      for (const auto& s : sources) fmt::print("  {:<22} {}\n", s.factor, s.text());
    }
    if (!json.empty()) write_json(json, j);
    return 0;
  }
  for (const auto& s : system_catalog()) {
    if (s.id != id) continue;
    nlohmann::json j = {{"id", s.id}, {"kind", "system"}, {"name", s.name}, {"gpu", s.gpu.id},
                        {"cpu_model", s.cpu.model}, {"nvswitch_model", s.nvswitch.model}, {"nic_model", s.nic.model}};
    for (const auto& [key, f] : s.figures()) {
      auto dot = key.find('.');
      if (dot == std::string::npos) j[key] = figure_json(*f);
      else j[key.substr(0, dot)][key.substr(dot + 1)] = figure_json(*f);
    }
    if (table) {
      fmt::print("{} ({}): {} x {}; CPUs {}; switches {}; NICs {}\n", s.id, s.name, s.gpus(), s.gpu.id, s.cpu.model,
                 s.nvswitch.model, s.nic.model);
      print_figures(s.figures());
    }
    if (!json.empty()) write_json(json, j);
    return 0;
  }
  std::vector<std::string> ids;
  for (const auto& g : gpu_catalog()) ids.push_back(g.id);
  for (const auto& s : system_catalog()) ids.push_back(s.id);
  throw InputError(fmt::format("racksim hw show: '{}' is not a catalog GPU or system; allowed: {}", id, join(ids)));
}

}  // namespace racksim::cli
