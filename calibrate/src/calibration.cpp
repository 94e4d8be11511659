#include "racksim/calibrate/calibration.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/hwmodels/hardware.hpp"

namespace racksim::calibrate {
namespace {

Provenance provenance_of(const MeasurementRun& run, const std::string& fitted_by) {
  Provenance p;
  p.source = run.source;
  p.device = run.device;
  p.software = run.software;
  p.driver = run.driver.empty() && run.cuda.empty() ? "" : fmt::format("driver {}, CUDA {}", run.driver, run.cuda);
  std::vector<std::string> clocks;
  if (run.sm_clock_mhz) clocks.push_back(fmt::format("SM {:g} MHz", *run.sm_clock_mhz));
  if (run.memory_clock_mhz) clocks.push_back(fmt::format("memory {:g} MHz", *run.memory_clock_mhz));
  if (run.power_limit_w) clocks.push_back(fmt::format("power limit {:g} W", *run.power_limit_w));
  p.clocks = join(std::span<const std::string>(clocks));
  p.date = run.date;
  p.commit = run.commit;
  p.fitted_by = fitted_by;
  return p;
}

// Collective element types in the order the cost model prefers them (activations are BF16).
int dtype_rank(const std::string& d) {
  static const std::string kOrder[] = {"bf16", "fp16", "fp32", "fp8", "int8"};
  for (int i = 0; i < 5; ++i)
    if (kOrder[i] == d) return i;
  return 5;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string fmt_time(double s) {
  if (s < 1e-3) return fmt::format("{:.2f} us", s * 1e6);
  return fmt::format("{:.3f} ms", s * 1e3);
}

}  // namespace

CalibrationResult run_calibration(const std::vector<MeasurementFile>& files, const std::string& fitted_by) {
  CalibrationResult out;
  struct GemmGroup {
    std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, GemmPoint> points;
    const MeasurementRun* run = nullptr;
  };
  struct CollGroup {
    std::map<double, CollectivePoint> points;
    const MeasurementRun* run = nullptr;
  };
  std::map<std::pair<std::string, DType>, GemmGroup> gemms;
  std::map<std::tuple<std::string, std::string, int, std::string>, CollGroup> colls;
  for (const auto& f : files) {
    if (f.run.gpu.empty()) {
      out.skipped[fmt::format("{}: run.gpu is empty (device '{}' not in the catalog)", f.path, f.run.device)] += f.records.size();
      continue;
    }
    (void)find_gpu(f.run.gpu, f.path, "run.gpu");
    for (const auto& rec : f.records) {
      const MeasuredOp& op = rec.op;
      if (op.kind == "gemm") {
        const DType a = *parse_dtype(op.a_dtype), w = *parse_dtype(op.w_dtype), c = *parse_dtype(op.c_dtype);
        auto& g = gemms[{f.run.gpu, a}];
        if (!g.run) g.run = &f.run;
        const double m = static_cast<double>(op.m), n = static_cast<double>(op.n), k = static_cast<double>(op.k);
        GemmPoint p{m, n, k, storage_bytes(a, m * k) + storage_bytes(w, n * k) + storage_bytes(c, m * n), rec.time_median_s, op.identity()};
        // A shape measured twice (two files) keeps its first measurement.
        g.points.emplace(std::make_tuple(op.m, op.n, op.k), p);
      } else if (is_collective_kind(op.kind) && op.kind != "send_recv" && op.ranks >= 2) {
        auto& g = colls[{f.run.gpu, op.kind, op.ranks, op.dtype}];
        if (!g.run) g.run = &f.run;
        g.points.emplace(op.bytes, CollectivePoint{op.bytes, rec.time_median_s, op.identity()});
      } else {
        ++out.skipped[fmt::format("{}: kind {} (no fit for it yet)", f.path, op.kind)];
      }
    }
  }
  std::map<std::string, CalibratedFactors> by_gpu;
  for (auto& [key, g] : gemms) {
    const auto& [gpu_id, t] = key;
    const GpuSpec& gpu = find_gpu(gpu_id);
    std::vector<GemmPoint> pts;
    for (auto& [shape, p] : g.points) pts.push_back(p);
    if (!gpu.peak(t)) {
      out.skipped[fmt::format("{} gemm {}: no dense {} peak in the catalog", gpu_id, to_string(t), to_string(t))] += pts.size();
      continue;
    }
    std::vector<Residual> res;
    CalibratedGemm c = fit_gemm(gpu, t, pts, &res);
    c.provenance = provenance_of(*g.run, fitted_by);
    for (auto& r : res) r.gpu = gpu_id;
    out.residuals.insert(out.residuals.end(), res.begin(), res.end());
    by_gpu[gpu_id].gpu = gpu_id;
    by_gpu[gpu_id].gemm[t] = std::move(c);
  }
  std::map<std::tuple<std::string, std::string, int>, std::string> chosen_dtype;
  for (const auto& [key, g] : colls) {
    const auto& [gpu_id, op, ranks, dtype] = key;
    auto& best = chosen_dtype[{gpu_id, op, ranks}];
    if (best.empty() || dtype_rank(dtype) < dtype_rank(best)) best = dtype;
  }
  for (auto& [key, g] : colls) {
    const auto& [gpu_id, op, ranks, dtype] = key;
    const GpuSpec& gpu = find_gpu(gpu_id);
    std::vector<CollectivePoint> pts;
    for (auto& [b, p] : g.points) pts.push_back(p);
    if (pts.size() < 2) {
      out.skipped[fmt::format("{} {} x{} {}: fewer than 2 sizes", gpu_id, op, ranks, dtype)] += pts.size();
      continue;
    }
    std::vector<Residual> res;
    // aic_kernels measures within one NVLink domain (README: 2/4/8 GPUs, one tray on GB200/GB300).
    CalibratedCollective c = fit_collective(op, ranks, dtype, gpu.nvlink_bandwidth.value, pts, &res);
    c.provenance = provenance_of(*g.run, fitted_by);
    c.provenance.software += fmt::format(", dtype {}", dtype);
    for (auto& r : res) r.gpu = gpu_id;
    out.residuals.insert(out.residuals.end(), res.begin(), res.end());
    by_gpu[gpu_id].gpu = gpu_id;
    if (chosen_dtype[{gpu_id, op, ranks}] == dtype) by_gpu[gpu_id].collectives.push_back(std::move(c));
  }
  for (auto& [id, f] : by_gpu) out.gpus.push_back(std::move(f));
  return out;
}

std::string residual_markdown(const CalibrationResult& r) {
  std::string md;
  md += "| GPU | family | size bucket | points | measured (median) | fitted (median) | median err | worst err | held-out | held-out median | held-out worst |\n";
  md += "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<const Residual*>> groups;
  std::vector<std::tuple<std::string, std::string, std::string>> order;
  for (const auto& x : r.residuals) {
    auto key = std::make_tuple(x.gpu, x.family, x.bucket);
    auto& g = groups[key];
    if (g.empty()) order.push_back(key);
    g.push_back(&x);
  }
  std::stable_sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) < std::get<0>(b);
    if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) < std::get<1>(b);
    return groups[a].front()->size < groups[b].front()->size;
  });
  for (const auto& key : order) {
    const auto& g = groups[key];
    std::vector<const Residual*> held;
    std::vector<double> meas, fit;
    for (const Residual* x : g) {
      if (x->held_out) held.push_back(x);
      meas.push_back(x->measured_s);
      fit.push_back(x->fitted_s);
    }
    const ErrorSummary all = summarise(g), h = summarise(held);
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {:.1f}% | {:.1f}% | {} | {} | {} |\n", std::get<0>(key), std::get<1>(key),
                      std::get<2>(key), all.count, fmt_time(median_of(meas)), fmt_time(median_of(fit)), all.median * 100,
                      all.worst * 100, h.count, h.count ? fmt::format("{:.1f}%", h.median * 100) : "-",
                      h.count ? fmt::format("{:.1f}%", h.worst * 100) : "-");
  }
  // Per GPU and family: the held-out summary and its worst point, the acceptance figures.
  md += "\n| GPU | family | held-out points | held-out median err | held-out worst err | worst held-out point |\n";
  md += "| --- | --- | ---: | ---: | ---: | --- |\n";
  std::map<std::pair<std::string, std::string>, std::vector<const Residual*>> fam;
  for (const auto& x : r.residuals)
    if (x.held_out) fam[{x.gpu, x.family}].push_back(&x);
  for (const auto& [key, g] : fam) {
    const ErrorSummary h = summarise(g);
    const Residual* w = nullptr;
    for (const Residual* x : g)
      if (x->identity == h.worst_identity) w = x;
    md += fmt::format("| {} | {} | {} | {:.1f}% | {:.1f}% | {} ({} measured, {} fitted) |\n", key.first, key.second, h.count,
                      h.median * 100, h.worst * 100, h.worst_identity, w ? fmt_time(w->measured_s) : "", w ? fmt_time(w->fitted_s) : "");
  }
  return md;
}

std::string residual_json(const CalibrationResult& r) {
  nlohmann::json j = {{"points", nlohmann::json::array()}, {"families", nlohmann::json::array()}};
  std::map<std::pair<std::string, std::string>, std::vector<const Residual*>> fam, fam_held;
  for (const auto& x : r.residuals) {
    j["points"].push_back({{"gpu", x.gpu}, {"family", x.family}, {"bucket", x.bucket}, {"identity", x.identity},
                           {"measured_s", x.measured_s}, {"fitted_s", x.fitted_s}, {"error", x.error()}, {"held_out", x.held_out}});
    fam[{x.gpu, x.family}].push_back(&x);
    if (x.held_out) fam_held[{x.gpu, x.family}].push_back(&x);
  }
  for (const auto& [key, g] : fam) {
    const ErrorSummary a = summarise(g), h = summarise(fam_held[key]);
    j["families"].push_back({{"gpu", key.first}, {"family", key.second}, {"points", a.count}, {"median_error", a.median},
                             {"worst_error", a.worst}, {"held_out_points", h.count}, {"held_out_median_error", h.median},
                             {"held_out_worst_error", h.worst}, {"held_out_worst", h.worst_identity}});
  }
  nlohmann::json skipped = nlohmann::json::object();
  for (const auto& [why, n] : r.skipped) skipped[why] = n;
  j["skipped"] = skipped;
  return j.dump(2) + "\n";
}

std::vector<std::string> write_calibration(const CalibrationResult& r, const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw InputError(fmt::format("--out: {}: not a directory", dir));
  std::vector<std::string> written;
  for (const auto& f : r.gpus) {
    const std::string path = (fs::path(dir) / (f.gpu + ".yaml")).string();
    write_output(path, format_calibrated_yaml(f, fmt::format("Calibrated factors of {}, written by `racksim calibrate`; do not edit by hand.\n"
                                                             "Beside the datasheet (hwmodels/data/gpus/{}.yaml), never over it. docs/calibration.md.",
                                                             f.gpu, f.gpu)));
    written.push_back(path);
  }
  const std::string md = (fs::path(dir) / "residuals.md").string(), js = (fs::path(dir) / "residuals.json").string();
  write_output(md, "# Calibration residuals (written by `racksim calibrate`)\n\nerror = fitted / measured - 1; held-out = every fifth shape "
                   "in sorted order, never seen by the fit.\n\n" + residual_markdown(r));
  write_output(js, residual_json(r));
  written.push_back(md);
  written.push_back(js);
  return written;
}

}  // namespace racksim::calibrate
