#include "racksim/hwmodels/hardware.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/hwmodels/embedded_data.hpp"

namespace racksim {

const Figure* GpuSpec::peak(DType t) const {
  auto it = dense_peak.find(t);
  // Block-scaled FP8 runs on the FP8 tensor cores (the scales multiply partial sums outside the
  // MMA): its datasheet peak is FP8's; its measured efficiency is its own (calibrated gemm).
  if (it == dense_peak.end() && t == DType::fp8_block) it = dense_peak.find(DType::fp8);
  return it == dense_peak.end() ? nullptr : &it->second;
}

std::vector<DType> gemm_formats(const GpuSpec& gpu) {
  std::vector<DType> out;
  for (DType t : all_dtypes())
    if (gpu.peak(t)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, const Figure*>> GpuSpec::figures() const {
  std::vector<std::pair<std::string, const Figure*>> out;
  for (const auto& [t, f] : dense_peak) out.emplace_back(fmt::format("dense_peak.{}", to_string(t)), &f);
  out.emplace_back("hbm_capacity", &hbm_capacity);
  out.emplace_back("hbm_bandwidth", &hbm_bandwidth);
  out.emplace_back("l2_cache", &l2_cache);
  out.emplace_back("sm_count", &sm_count);
  out.emplace_back("boost_clock", &boost_clock);
  out.emplace_back("exp_throughput", &exp_throughput);
  out.emplace_back("nvlink_bandwidth", &nvlink_bandwidth);
  out.emplace_back("host_link_bandwidth", &host_link_bandwidth);
  out.emplace_back("nic_bandwidth", &nic_bandwidth);
  out.emplace_back("power_limit", &power_limit);
  out.emplace_back("idle_power", &idle_power);
  out.emplace_back("launch_overhead", &launch_overhead);
  return out;
}

std::vector<std::pair<std::string, const Figure*>> SystemSpec::figures() const {
  return {{"gpu_count", &gpu_count},
          {"nvlink_domain_size", &nvlink_domain_size},
          {"nvlink_sharp", &nvlink_sharp},
          {"cpu.count", &cpu.count},
          {"cpu.power", &cpu.power},
          {"nvswitch.count", &nvswitch.count},
          {"nvswitch.power", &nvswitch.power},
          {"nic.count", &nic.count},
          {"nic.bandwidth", &nic.bandwidth},
          {"nic.power", &nic.power},
          {"other_power", &other_power},
          {"psu_efficiency", &psu_efficiency},
          {"max_power", &max_power}};
}

namespace {

Component read_component(const YamlMap& parent, std::string_view key, bool nic) {
  YamlMap y = parent.map(key);
  Component c;
  c.model = y.string("model");
  c.count = read_figure(y, "count", Dimension::count);
  c.power = read_figure(y, "power", Dimension::watts);
  if (nic) c.bandwidth = read_figure(y, "bandwidth", Dimension::bytes_per_s);
  y.finish();
  return c;
}

std::string read_file(const std::string& path, const std::string& origin, const std::string& key) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: {}: '{}': file not found", origin, key, path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

GpuSpec parse_gpu_yaml(std::string_view text, const std::string& name) {
  YamlMap y = YamlMap::from_text(text, name);
  GpuSpec g;
  g.id = y.string("id");
  g.name = y.string("name");
  static constexpr std::array<std::string_view, 3> kArch = {"hopper", "blackwell", "blackwell-ultra"};
  g.architecture = y.choice("architecture", kArch);
  g.compute_capability = y.string("compute_capability");
  {
    YamlMap f = y.map("family");
    static constexpr std::array<std::string_view, 3> kFamilies = {"hopper", "blackwell", "blackwell-ultra"};
    g.family.name = f.choice("name", kFamilies);
    g.family.nvlink_generation = static_cast<int>(f.integer("nvlink_generation", 1, 99));
    g.family.source = f.string("source");
    if (g.family.source.empty()) f.fail_plain("source", "must name why the GPU belongs to the family (die, compute capability)");
    f.finish();
  }
  YamlMap peaks = y.map("dense_peak");
  for (const auto& key : peaks.keys()) {
    auto t = parse_dtype(key);
    if (!t || *t == DType::fp32 || *t == DType::fp8_block)
      peaks.fail_plain(key, "is not a tensor-core format with a peak of its own; allowed: bf16, fp16, fp8, nvfp4, mxfp4 (fp8_block runs at fp8's)");
    g.dense_peak[*t] = read_figure(peaks, key, Dimension::flops_per_s);
  }
  peaks.finish();
  if (!g.peak(DType::bf16)) y.fail_plain("dense_peak", "needs at least bf16");
  g.hbm_capacity = read_figure(y, "hbm_capacity", Dimension::bytes);
  g.hbm_bandwidth = read_figure(y, "hbm_bandwidth", Dimension::bytes_per_s);
  g.l2_cache = read_figure(y, "l2_cache", Dimension::bytes);
  g.sm_count = read_figure(y, "sm_count", Dimension::count);
  g.boost_clock = read_figure(y, "boost_clock", Dimension::hertz);
  g.exp_throughput = read_figure(y, "exp_throughput", Dimension::ops_per_s);
  g.nvlink_bandwidth = read_figure(y, "nvlink_bandwidth", Dimension::bytes_per_s);
  g.host_link_bandwidth = read_figure(y, "host_link_bandwidth", Dimension::bytes_per_s);
  g.nic_bandwidth = read_figure(y, "nic_bandwidth", Dimension::bytes_per_s);
  g.power_limit = read_figure(y, "power_limit", Dimension::watts);
  g.idle_power = read_figure(y, "idle_power", Dimension::watts);
  g.launch_overhead = read_figure(y, "launch_overhead", Dimension::seconds);
  y.finish();
  return g;
}

SystemSpec parse_system_yaml(std::string_view text, const std::string& name) {
  YamlMap y = YamlMap::from_text(text, name);
  SystemSpec s;
  s.id = y.string("id");
  s.name = y.string("name");
  s.gpu = find_gpu(y.string("gpu"), name, y.key_path("gpu"));
  s.gpu_count = read_figure(y, "gpu_count", Dimension::count);
  s.nvlink_domain_size = read_figure(y, "nvlink_domain_size", Dimension::count);
  s.nvlink_sharp = read_figure(y, "nvlink_sharp", Dimension::count);
  s.cpu = read_component(y, "cpu", false);
  s.nvswitch = read_component(y, "nvswitch", false);
  s.nic = read_component(y, "nic", true);
  s.other_power = read_figure(y, "other_power", Dimension::watts);
  s.psu_efficiency = read_figure(y, "psu_efficiency", Dimension::fraction);
  s.max_power = read_figure(y, "max_power", Dimension::watts);
  y.finish();
  if (s.gpus() < 1 || s.domain_size() < 1 || s.gpus() % s.domain_size() != 0)
    throw InputError(fmt::format("{}: nvlink_domain_size: {} must divide gpu_count {}", name, s.domain_size(), s.gpus()));
  if (s.psu_efficiency.value <= 0 || s.psu_efficiency.value > 1)
    throw InputError(fmt::format("{}: psu_efficiency: {} must be in (0, 1]", name, s.psu_efficiency.raw));
  return s;
}

const std::vector<GpuSpec>& gpu_catalog() {
  static const std::vector<GpuSpec> catalog = [] {
    std::vector<GpuSpec> out;
    for (const auto& f : embedded::hwmodels_data())
      if (f.path.starts_with("gpus/")) out.push_back(parse_gpu_yaml(f.contents, "hwmodels/data/" + std::string(f.path)));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return out;
  }();
  return catalog;
}

const std::vector<SystemSpec>& system_catalog() {
  static const std::vector<SystemSpec> catalog = [] {
    std::vector<SystemSpec> out;
    for (const auto& f : embedded::hwmodels_data())
      if (f.path.starts_with("systems/"))
        out.push_back(parse_system_yaml(f.contents, "hwmodels/data/" + std::string(f.path)));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return out;
  }();
  return catalog;
}

const GpuSpec& find_gpu(const std::string& id, const std::string& origin, const std::string& key) {
  std::vector<std::string> ids;
  for (const auto& g : gpu_catalog()) {
    if (g.id == id) return g;
    ids.push_back(g.id);
  }
  throw InputError(fmt::format("{}: {}: '{}' is not a catalog GPU; allowed: {}", origin, key, id, join(ids)));
}

SystemSpec find_system(const std::string& id_or_path, const std::string& origin, const std::string& key) {
  if (id_or_path.find('/') != std::string::npos || id_or_path.ends_with(".yaml"))
    return parse_system_yaml(read_file(id_or_path, origin, key), id_or_path);
  std::vector<std::string> ids;
  for (const auto& s : system_catalog()) {
    if (s.id == id_or_path) return s;
    ids.push_back(s.id);
  }
  throw InputError(fmt::format("{}: {}: '{}' is not a catalog system; allowed: {}, or a path to a system YAML",
                               origin, key, id_or_path, join(ids)));
}

}  // namespace racksim
