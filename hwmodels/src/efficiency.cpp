#include "racksim/hwmodels/efficiency.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "racksim/hwmodels/embedded_data.hpp"

namespace racksim {

double interpolate_log_size(const std::vector<std::pair<double, double>>& points, double size) {
  RACKSIM_ASSERT(!points.empty(), "efficiency curve without points");
  if (size <= points.front().first) return points.front().second;
  if (size >= points.back().first) return points.back().second;
  for (std::size_t i = 1; i < points.size(); ++i) {
    const auto& [x1, y1] = points[i];
    if (size <= x1) {
      const auto& [x0, y0] = points[i - 1];
      const double t = (std::log(size) - std::log(x0)) / (std::log(x1) - std::log(x0));
      return y0 + t * (y1 - y0);
    }
  }
  return points.back().second;
}

double EfficiencyCurve::at(double size) const { return interpolate_log_size(points, size); }

EfficiencyCurve EfficiencyTable::gemm_curve(DType t) const {
  if (auto it = gemm.find(t); it != gemm.end()) return it->second;
  // mxfp4 runs on the same FP4 tensor cores as nvfp4; fp16 on the bf16 path.
  static const std::map<DType, std::vector<DType>> kFallback = {
      {DType::mxfp4, {DType::nvfp4, DType::fp8, DType::bf16}}, {DType::nvfp4, {DType::fp8, DType::bf16}},
      {DType::fp16, {DType::bf16}}, {DType::fp8, {DType::bf16}}, {DType::fp8_block, {DType::fp8, DType::bf16}},
      {DType::fp32, {DType::bf16}}};
  if (auto fb = kFallback.find(t); fb != kFallback.end())
    for (DType alt : fb->second)
      if (auto it = gemm.find(alt); it != gemm.end()) {
        EfficiencyCurve c = it->second;
        c.carried = true;
        c.source = fmt::format("carried from {} ({})", to_string(alt), c.source);
        return c;
      }
  throw InputError(fmt::format("efficiency table of {} has no GEMM curve for {} or a related format", gpu, to_string(t)));
}

namespace {

EfficiencyCurve read_curve(const YamlMap& y, std::string_view size_name) {
  EfficiencyCurve c;
  c.source = y.string("source");
  if (y.has("carried")) c.carried = y.boolean("carried");
  YAML::Node pts = y.node("points");
  if (!pts.IsSequence() || pts.size() == 0) y.fail_plain("points", fmt::format("must be a non-empty list of [{}, efficiency]", size_name));
  for (std::size_t i = 0; i < pts.size(); ++i) {
    const YAML::Node& p = pts[i];
    if (!p.IsSequence() || p.size() != 2) y.fail_plain("points", fmt::format("element {} must be [{}, efficiency]", i, size_name));
    const double size = p[0].as<double>(), eff = p[1].as<double>();
    if (!(size > 0) || !(eff > 0 && eff <= 1.5))
      y.fail_plain("points", fmt::format("element {}: size must be > 0 and efficiency in (0, 1.5]", i));
    if (!c.points.empty() && size <= c.points.back().first) y.fail_plain("points", "sizes must ascend");
    c.points.emplace_back(size, eff);
  }
  y.finish();
  return c;
}

}  // namespace

EfficiencyTable parse_efficiency_yaml(std::string_view text, const std::string& name) {
  YamlMap y = YamlMap::from_text(text, name);
  EfficiencyTable t;
  t.gpu = y.string("gpu");
  YamlMap g = y.map("gemm");
  for (const auto& key : g.keys()) {
    auto dt = parse_dtype(key);
    if (!dt) g.fail_plain(key, "is not a format; allowed: bf16, fp16, fp8, nvfp4, mxfp4");
    t.gemm[*dt] = read_curve(g.map(key), "flops");
  }
  g.finish();
  t.memory = read_curve(y.map("memory"), "bytes");
  YamlMap a = y.map("attention_prefill");
  t.attention_source = a.string("source");
  t.attention_carried = a.boolean("carried");
  t.attention_prefill = a.number("efficiency", 0.01, 1.0);
  a.finish();
  YamlMap c = y.map("collectives");
  t.collectives.source = c.string("source");
  t.collectives.base_latency_s = c.number("base_latency_us", 0, 1e6) * 1e-6;
  t.collectives.step_latency_s = c.number("step_latency_us", 0, 1e6) * 1e-6;
  t.collectives.ring_efficiency = c.number("ring_bandwidth_efficiency", 0.01, 1.5);
  t.collectives.tree_efficiency = c.number("tree_bandwidth_efficiency", 0.01, 1.5);
  t.collectives.nvls_efficiency = c.number("nvls_bandwidth_efficiency", 0.01, 1.5);
  c.finish();
  YamlMap o = y.map("one_shot_all_reduce");
  t.one_shot_all_reduce.source = o.string("source");
  t.one_shot_all_reduce.carried = o.boolean("carried");
  t.one_shot_all_reduce.latency_s = o.number("latency_us", 0, 1e6) * 1e-6;
  t.one_shot_all_reduce.efficiency = o.number("bandwidth_efficiency", 0.01, 1.5);
  o.finish();
  y.finish();
  return t;
}

const EfficiencyTable& efficiency_for(const std::string& gpu_id) {
  static const std::vector<EfficiencyTable> tables = [] {
    std::vector<EfficiencyTable> out;
    for (const auto& f : embedded::hwmodels_data())
      if (f.path.starts_with("efficiency/"))
        out.push_back(parse_efficiency_yaml(f.contents, "hwmodels/data/" + std::string(f.path)));
    return out;
  }();
  for (const auto& t : tables)
    if (t.gpu == gpu_id) return t;
  throw InputError(fmt::format("no efficiency table for GPU '{}' in hwmodels/data/efficiency/", gpu_id));
}

}  // namespace racksim
