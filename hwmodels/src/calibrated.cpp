#include "racksim/hwmodels/calibrated.hpp"
#include "racksim/hwmodels/efficiency.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "racksim/hwmodels/embedded_data.hpp"

namespace racksim {

GemmLatencyModel::Time GemmLatencyModel::time(double m, double n, double k, double bytes, double peak_flops,
                                              double hbm_bytes_per_s) const {
  Time t;
  double flops = 2.0 * m * n * k;
  if (form == "wave") {
    // Whole tiles, whole waves: a GEMM one row past a tile multiple pays for a new tile row,
    // and one tile past a wave pays for a new wave (CUTLASS "tile/wave quantization").
    const double tiles = std::ceil(m / tile_m) * std::ceil(n / tile_n);
    const double waves = std::ceil(tiles / sm_count);
    const double split = split_k && tiles < sm_count ? std::floor(sm_count / tiles) : 1.0;
    flops = waves * sm_count * tile_m * tile_n * 2.0 * k / split;
  }
  t.compute_s = flops / (peak_flops * compute_efficiency) * (1.0 + k_ramp / std::max(k, 1.0));
  t.memory_s = bytes / (hbm_bytes_per_s * memory_efficiency);
  t.fixed_s = fixed_latency_s + m * k * a_element_s;
  t.total_s = std::pow(std::pow(t.compute_s, blend) + std::pow(t.memory_s, blend), 1.0 / blend) + t.fixed_s;
  return t;
}

double CalibratedCollective::bus_factor(const std::string& op, int ranks) {
  const double n = ranks;
  if (op == "all_reduce") return 2.0 * (n - 1) / n;
  if (op == "send_recv") return 1.0;
  return (n - 1) / n;  // all_gather, reduce_scatter, all_to_all (nccl-tests PERFORMANCE.md)
}

double CalibratedCollective::efficiency_at(double bytes) const { return interpolate_log_size(efficiency, bytes); }

double CalibratedCollective::time(double bytes) const {
  return alpha_s + bus_factor(op, ranks) * bytes / (link_bandwidth * efficiency_at(bytes));
}

double CalibratedMemory::efficiency_at(double bytes) const { return interpolate_log_size(curve, bytes); }

double AttentionDecodeFit::efficiency_at(double bytes) const { return interpolate_log_size(curve, bytes); }

double AttentionPrefillFit::efficiency_at(double flops) const { return interpolate_log_size(curve, flops); }

const AttentionDecodeFit* CalibratedAttention::decode_fit(DType kv) const {
  auto it = decode.find(kv);
  return it == decode.end() ? nullptr : &it->second;
}

const AttentionPrefillFit* CalibratedAttention::prefill_fit(DType kv) const {
  auto it = prefill.find(kv);
  return it == prefill.end() ? nullptr : &it->second;
}

const CalibratedCollective* CalibratedFactors::collective(const std::string& op, int ranks) const {
  for (const auto& c : collectives)
    if (c.op == op && c.ranks == ranks) return &c;
  return nullptr;
}

namespace {

Provenance read_provenance(const YamlMap& y) {
  Provenance p;
  p.source = y.string("source");
  p.device = y.string("device");
  p.software = y.string("software");
  p.driver = y.string("driver");
  p.clocks = y.string("clocks");
  p.date = y.string("date");
  p.commit = y.string("commit");
  p.fitted_by = y.string("fitted_by");
  y.finish();
  return p;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string provenance_yaml(const Provenance& p, const std::string& indent) {
  return fmt::format("{0}provenance:\n{0}  source: {1}\n{0}  device: {2}\n{0}  software: {3}\n{0}  driver: {4}\n"
                     "{0}  clocks: {5}\n{0}  date: {6}\n{0}  commit: {7}\n{0}  fitted_by: {8}\n",
                     indent, quote(p.source), quote(p.device), quote(p.software), quote(p.driver), quote(p.clocks),
                     quote(p.date), quote(p.commit), quote(p.fitted_by));
}

// (bytes, value) points: a non-empty list of [bytes, value], bytes > 0 and ascending, value in (0, max_value].
std::vector<std::pair<double, double>> read_size_curve(const YamlMap& e, std::string_view key, double max_value) {
  std::vector<std::pair<double, double>> out;
  YAML::Node pts = e.node(key);
  if (!pts.IsSequence() || pts.size() == 0) e.fail_plain(key, "must be a non-empty list of [bytes, efficiency]");
  for (std::size_t i = 0; i < pts.size(); ++i) {
    const YAML::Node& p = pts[i];
    if (!p.IsSequence() || p.size() != 2) e.fail_plain(key, fmt::format("element {} must be [bytes, efficiency]", i));
    const double b = p[0].as<double>(), eff = p[1].as<double>();
    if (!(b > 0) || !(eff > 0 && eff <= max_value))
      e.fail_plain(key, fmt::format("element {}: bytes must be > 0 and efficiency in (0, {:g}]", i, max_value));
    if (!out.empty() && b <= out.back().first) e.fail_plain(key, "bytes must ascend");
    out.emplace_back(b, eff);
  }
  return out;
}

/// The `fit:` block every section carries: points fitted (where the section records them) and
/// the median / worst error, named `<prefix>median_error` and `<prefix>worst_error`.
struct FitQuality {
  int points = 0;
  double median = 0, worst = 0;
};
FitQuality read_fit(const YamlMap& section, bool with_points, std::string_view prefix) {
  YamlMap q = section.map("fit");
  FitQuality f;
  if (with_points) f.points = static_cast<int>(q.integer("points", 0, 1 << 30));
  f.median = q.number(fmt::format("{}median_error", prefix), 0, 1e3);
  f.worst = q.number(fmt::format("{}worst_error", prefix), 0, 1e3);
  q.finish();
  return f;
}

/// A fitted section's `fit` map into its points and held-out median / worst error fields.
template <class T>
void read_holdout_fit(const YamlMap& section, T& out) {
  const FitQuality q = read_fit(section, true, "holdout_");
  out.points = q.points;
  out.holdout_median_error = q.median;
  out.holdout_worst_error = q.worst;
}

CalibratedMemory read_memory(const YamlMap& e) {
  CalibratedMemory m;
  static constexpr std::string_view kVariants[] = {"read", "copy"};
  m.variant = e.choice("variant", kVariants);
  m.efficiency = e.number("efficiency", 1e-3, 1.5);
  m.fixed_latency_s = e.number("fixed_latency_us", 0, 1e6) * 1e-6;
  m.hbm_bandwidth = e.number("hbm_bandwidth_gb_per_s", 1e-3, 1e6) * 1e9;
  // A small transfer that stays in L2 can beat the HBM figure; 10x bounds a typo, not physics.
  m.curve = read_size_curve(e, "curve", 10);
  read_holdout_fit(e, m);
  m.provenance = read_provenance(e.map("provenance"));
  e.finish();
  return m;
}

CalibratedLaunch read_launch(const YamlMap& e) {
  CalibratedLaunch l;
  if (e.has("kernel_us")) l.kernel_s = e.number("kernel_us", 0, 1e6) * 1e-6;
  if (e.has("graph_node_us")) l.graph_node_s = e.number("graph_node_us", 0, 1e6) * 1e-6;
  if (!l.kernel_s && !l.graph_node_s) e.fail_plain("kernel_us", "missing: launch needs kernel_us, graph_node_us or both");
  l.points = static_cast<int>(e.integer("points", 0, 1 << 30));
  l.provenance = read_provenance(e.map("provenance"));
  e.finish();
  return l;
}

CalibratedPower read_power(const YamlMap& e) {
  CalibratedPower p;
  p.idle_w = e.number("idle_w", 0, 1e5);
  YamlMap f = e.map("pj_per_flop");
  for (const auto& key : f.keys()) {
    auto dt = parse_dtype(key);
    if (!dt) f.fail_plain(key, "is not a format; allowed: bf16, fp16, fp8, nvfp4, mxfp4");
    p.pj_per_flop[*dt] = f.number(key, 0, 1e6);
  }
  f.finish();
  p.pj_per_byte = e.number("pj_per_byte", 0, 1e6);
  p.pj_per_byte_fitted = e.boolean("pj_per_byte_fitted");
  const FitQuality q = read_fit(e, true, "");
  p.points = q.points;
  p.median_error = q.median;
  p.worst_error = q.worst;
  p.provenance = read_provenance(e.map("provenance"));
  e.finish();
  return p;
}

// A map keyed by format names (bf16, fp8, ...) whose entries `read` parses.
template <class T, class Read>
std::map<DType, T> read_by_format(const YamlMap& parent, std::string_view key, Read read) {
  std::map<DType, T> out;
  YamlMap m = parent.map(key);
  for (const auto& k : m.keys()) {
    auto dt = parse_dtype(k);
    if (!dt) m.fail_plain(k, "is not a format; allowed: bf16, fp16, fp8, nvfp4, mxfp4");
    out[*dt] = read(m.map(k));
  }
  m.finish();
  return out;
}

CalibratedAttention read_attention(const YamlMap& e) {
  CalibratedAttention a;
  a.hbm_bandwidth = e.number("hbm_bandwidth_gb_per_s", 1e-3, 1e6) * 1e9;
  if (e.has("decode"))
    a.decode = read_by_format<AttentionDecodeFit>(e, "decode", [](const YamlMap& d) {
      AttentionDecodeFit f;
      f.efficiency = d.number("efficiency", 1e-3, 1.5);
      f.fixed_latency_s = d.number("fixed_latency_us", 0, 1e6) * 1e-6;
      // As the memory curve: a small KV stream that stays in L2 can beat the HBM figure.
      f.curve = read_size_curve(d, "curve", 10);
      read_holdout_fit(d, f);
      d.finish();
      return f;
    });
  if (e.has("prefill"))
    a.prefill = read_by_format<AttentionPrefillFit>(e, "prefill", [](const YamlMap& p) {
      AttentionPrefillFit f;
      static constexpr std::string_view kMath[] = {"bf16", "fp8"};
      f.math = *parse_dtype(p.choice("math", kMath));
      f.peak_flops = p.number("peak_tflop_per_s", 1e-3, 1e6) * 1e12;
      f.curve = read_size_curve(p, "curve", 1.5);
      read_holdout_fit(p, f);
      p.finish();
      return f;
    });
  if (a.decode.empty() && a.prefill.empty()) e.fail_plain("decode", "missing: attention needs decode, prefill or both, each with a format");
  a.provenance = read_provenance(e.map("provenance"));
  e.finish();
  return a;
}

}  // namespace

CalibratedFactors parse_calibrated_yaml(std::string_view text, const std::string& name) {
  YamlMap y = YamlMap::from_text(text, name);
  CalibratedFactors f;
  f.gpu = y.string("gpu");
  if (auto g = y.optional_map("gemm")) {
    for (const auto& key : g->keys()) {
      auto dt = parse_dtype(key);
      if (!dt) g->fail_plain(key, "is not a format; allowed: bf16, fp16, fp8, nvfp4, mxfp4");
      YamlMap e = g->map(key);
      CalibratedGemm c;
      GemmLatencyModel& m = c.model;
      static constexpr std::string_view kForms[] = {"wave", "flat"};
      m.form = e.choice("form", kForms);
      m.tile_m = e.number("tile_m", 1, 4096);
      m.tile_n = e.number("tile_n", 1, 4096);
      m.sm_count = e.number("sm_count", 1, 4096);
      m.compute_efficiency = e.number("compute_efficiency", 1e-3, 1.5);
      m.k_ramp = e.number("k_ramp", 0, 1e7);
      m.memory_efficiency = e.number("memory_efficiency", 1e-3, 1.5);
      m.fixed_latency_s = e.number("fixed_latency_us", 0, 1e6) * 1e-6;
      m.blend = e.number("blend", 1, 64);
      m.split_k = e.boolean("split_k");
      m.a_element_s = e.number("a_element_ps", 0, 1e9) * 1e-12;
      read_holdout_fit(e, c);
      c.provenance = read_provenance(e.map("provenance"));
      e.finish();
      f.gemm[*dt] = std::move(c);
    }
    g->finish();
  }
  for (const YamlMap& e : y.has("collectives") ? y.map_list("collectives") : std::vector<YamlMap>{}) {
    CalibratedCollective c;
    static constexpr std::string_view kOps[] = {"all_reduce", "all_gather", "reduce_scatter", "all_to_all"};
    c.op = e.choice("op", kOps);
    c.ranks = static_cast<int>(e.integer("ranks", 2, 1 << 20));
    c.alpha_s = e.number("alpha_us", 0, 1e6) * 1e-6;
    c.link_bandwidth = e.number("link_bandwidth_gb_per_s", 1e-3, 1e6) * 1e9;
    c.efficiency = read_size_curve(e, "efficiency", 1.5);
    const FitQuality q = read_fit(e, false, "holdout_");
    c.holdout_median_error = q.median;
    c.holdout_worst_error = q.worst;
    c.provenance = read_provenance(e.map("provenance"));
    e.finish();
    f.collectives.push_back(std::move(c));
  }
  if (auto m = y.optional_map("memory")) f.memory = read_memory(*m);
  if (auto l = y.optional_map("launch")) f.launch = read_launch(*l);
  if (auto p = y.optional_map("power")) f.power = read_power(*p);
  if (auto a = y.optional_map("attention")) f.attention = read_attention(*a);
  y.finish();
  return f;
}

std::string format_calibrated_yaml(const CalibratedFactors& f, const std::string& header_comment) {
  std::string out;
  std::string comment = header_comment;
  for (std::size_t pos = 0; (pos = comment.find('\n', pos)) != std::string::npos; pos += 3) comment.replace(pos, 1, "\n# ");
  out += "# " + comment + "\n";
  out += fmt::format("gpu: {}\n", f.gpu);
  if (!f.gemm.empty()) {
    out += "gemm:  # GemmLatencyModel (hwmodels/calibrated.hpp; docs/calibration.md)\n";
    for (const auto& [t, c] : f.gemm) {
      const GemmLatencyModel& m = c.model;
      out += fmt::format("  {}:\n    form: {}\n    tile_m: {:g}\n    tile_n: {:g}\n    sm_count: {:g}\n", to_string(t), m.form,
                         m.tile_m, m.tile_n, m.sm_count);
      out += fmt::format("    compute_efficiency: {:.4f}  # of the datasheet dense peak\n    k_ramp: {:.1f}\n", m.compute_efficiency,
                         m.k_ramp);
      out += fmt::format("    memory_efficiency: {:.4f}  # of the datasheet HBM bandwidth\n    fixed_latency_us: {:.3f}\n    blend: {:.3f}\n",
                         m.memory_efficiency, m.fixed_latency_s * 1e6, m.blend);
      out += fmt::format("    split_k: {}\n    a_element_ps: {:.5f}  # per A element (m x k)\n", m.split_k ? "true" : "false",
                         m.a_element_s * 1e12);
      out += fmt::format("    fit: {{points: {}, holdout_median_error: {:.4f}, holdout_worst_error: {:.4f}}}\n", c.points,
                         c.holdout_median_error, c.holdout_worst_error);
      out += provenance_yaml(c.provenance, "    ");
    }
  }
  if (!f.collectives.empty()) {
    out += "collectives:  # t = alpha + bus_factor x bytes / (link x efficiency(bytes))\n";
    for (const auto& c : f.collectives) {
      out += fmt::format("  - op: {}\n    ranks: {}\n    alpha_us: {:.3f}\n    link_bandwidth_gb_per_s: {:g}  # datasheet NVLink, per direction\n",
                         c.op, c.ranks, c.alpha_s * 1e6, c.link_bandwidth / 1e9);
      out += "    efficiency:  # [bytes per rank, busbw / link]\n";
      for (const auto& [b, e] : c.efficiency) out += fmt::format("      - [{:.0f}, {:.6g}]\n", b, e);
      out += fmt::format("    fit: {{holdout_median_error: {:.4f}, holdout_worst_error: {:.4f}}}\n", c.holdout_median_error,
                         c.holdout_worst_error);
      out += provenance_yaml(c.provenance, "    ");
    }
  }
  // The device-level sections (docs/calibration.md, "Memory, launch and power from the
  // executor's files"); absent unless the executor's files were calibrated.
  if (const auto& m = f.memory) {
    out += "memory:  # t = fixed_latency + bytes / (hbm_bandwidth x efficiency); curve: each size's bytes / (hbm_bandwidth x t)\n";
    out += fmt::format("  variant: {}\n  efficiency: {:.6g}  # asymptotic, of the datasheet HBM bandwidth\n  fixed_latency_us: {:.6g}\n",
                       m->variant, m->efficiency, m->fixed_latency_s * 1e6);
    out += fmt::format("  hbm_bandwidth_gb_per_s: {:g}  # datasheet\n  curve:  # [bytes moved, efficiency]\n", m->hbm_bandwidth / 1e9);
    for (const auto& [b, e] : m->curve) out += fmt::format("    - [{:.0f}, {:.6g}]\n", b, e);
    out += fmt::format("  fit: {{points: {}, holdout_median_error: {:.4f}, holdout_worst_error: {:.4f}}}\n", m->points,
                       m->holdout_median_error, m->holdout_worst_error);
    out += provenance_yaml(m->provenance, "  ");
  }
  if (const auto& l = f.launch) {
    out += "launch:  # median launch latency per variant\n";
    if (l->kernel_s) out += fmt::format("  kernel_us: {:.6g}\n", *l->kernel_s * 1e6);
    if (l->graph_node_s) out += fmt::format("  graph_node_us: {:.6g}\n", *l->graph_node_s * 1e6);
    out += fmt::format("  points: {}\n", l->points);
    out += provenance_yaml(l->provenance, "  ");
  }
  if (const auto& p = f.power) {
    out += "power:  # board power = idle + sum pJ/FLOP x FLOP/s + pJ/byte x HBM bytes/s\n";
    out += fmt::format("  idle_w: {:.6g}\n  pj_per_flop: {{", p->idle_w);
    std::string sep;
    for (const auto& [t, e] : p->pj_per_flop) out += fmt::format("{}{}: {:.6g}", std::exchange(sep, ", "), to_string(t), e);
    out += fmt::format("}}\n  pj_per_byte: {:.6g}\n  pj_per_byte_fitted: {}{}\n", p->pj_per_byte, p->pj_per_byte_fitted ? "true" : "false",
                       p->pj_per_byte_fitted ? "" : "  # too few records to separate it: the energy model's seed");
    out += fmt::format("  fit: {{points: {}, median_error: {:.4f}, worst_error: {:.4f}}}\n", p->points, p->median_error, p->worst_error);
    out += provenance_yaml(p->provenance, "  ");
  }
  if (const auto& a = f.attention) {
    out += "attention:  # per KV-cache format; decode: t = fixed_latency + bytes / (hbm_bandwidth x efficiency); "
           "prefill: efficiency = FLOPs / (peak(math) x t)\n";
    out += fmt::format("  hbm_bandwidth_gb_per_s: {:g}  # datasheet\n", a->hbm_bandwidth / 1e9);
    if (!a->decode.empty()) {
      out += "  decode:\n";
      for (const auto& [kv, d] : a->decode) {
        out += fmt::format("    {}:\n      efficiency: {:.6g}  # asymptotic, of the datasheet HBM bandwidth\n      fixed_latency_us: {:.6g}\n",
                           to_string(kv), d.efficiency, d.fixed_latency_s * 1e6);
        out += "      curve:  # [bytes moved, efficiency]\n";
        for (const auto& [b, e] : d.curve) out += fmt::format("        - [{:.0f}, {:.6g}]\n", b, e);
        out += fmt::format("      fit: {{points: {}, holdout_median_error: {:.4f}, holdout_worst_error: {:.4f}}}\n", d.points,
                           d.holdout_median_error, d.holdout_worst_error);
      }
    }
    if (!a->prefill.empty()) {
      out += "  prefill:\n";
      for (const auto& [kv, p] : a->prefill) {
        out += fmt::format("    {}:\n      math: {}\n      peak_tflop_per_s: {:g}  # datasheet dense peak of the math format\n",
                           to_string(kv), to_string(p.math), p.peak_flops / 1e12);
        out += "      curve:  # [FLOPs, efficiency]\n";
        for (const auto& [x, e] : p.curve) out += fmt::format("        - [{:.0f}, {:.6g}]\n", x, e);
        out += fmt::format("      fit: {{points: {}, holdout_median_error: {:.4f}, holdout_worst_error: {:.4f}}}\n", p.points,
                           p.holdout_median_error, p.holdout_worst_error);
      }
    }
    out += provenance_yaml(a->provenance, "  ");
  }
  return out;
}

const std::vector<CalibratedFactors>& calibrated_catalog() {
  static const std::vector<CalibratedFactors> tables = [] {
    std::vector<CalibratedFactors> out;
    for (const auto& f : embedded::hwmodels_data())
      if (f.path.starts_with("calibrated/") && f.path.ends_with(".yaml"))
        out.push_back(parse_calibrated_yaml(f.contents, "hwmodels/data/" + std::string(f.path)));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.gpu < b.gpu; });
    return out;
  }();
  return tables;
}

const CalibratedFactors* calibrated_for(const std::string& gpu_id) {
  for (const auto& t : calibrated_catalog())
    if (t.gpu == gpu_id) return &t;
  return nullptr;
}

}  // namespace racksim
