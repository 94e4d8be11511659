#include "racksim/calibrate/transfer.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/hwmodels/hardware.hpp"

namespace racksim::calibrate {
namespace {

struct Errors {
  std::vector<double> abs;
  double worst = -1, worst_measured = 0, worst_predicted = 0;
  std::string worst_identity;
  void add(double predicted, double measured, const std::string& identity) {
    const double e = std::abs(predicted / measured - 1.0);
    abs.push_back(e);
    if (e > worst) worst = e, worst_measured = measured, worst_predicted = predicted, worst_identity = identity;
  }
  // Upper middle for an even count, as every report in calibrate/ (docs/calibration.md).
  [[nodiscard]] double median() const {
    std::vector<double> v = abs;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
};

std::string fmt_time(double s) { return s < 1e-3 ? fmt::format("{:.2f} us", s * 1e6) : fmt::format("{:.3f} ms", s * 1e3); }

}  // namespace

std::vector<TransferResult> evaluate_transfer(const std::vector<CalibratedFactors>& fitted, const MeasuredTables& measured) {
  std::vector<std::string> ids;
  for (const auto& f : fitted) ids.push_back(f.gpu);
  auto factors_of = [&](const std::string& id) -> const CalibratedFactors& {
    return *std::find_if(fitted.begin(), fitted.end(), [&](const auto& f) { return f.gpu == id; });
  };
  std::vector<TransferResult> out;
  for (const auto& rec : fitted) {
    const GpuSpec& r = find_gpu(rec.gpu);
    for (const auto& donor_id : family_donors(r, ids)) {
      const GpuSpec& d = find_gpu(donor_id);
      const CalibratedFactors& don = factors_of(donor_id);
      for (const auto& [t, own] : rec.gemm) {
        auto dg = don.gemm.find(t);
        auto pts = measured.gemm.find({rec.gpu, t});
        if (dg == don.gemm.end() || pts == measured.gemm.end() || !r.peak(t) || !d.peak(t)) continue;
        // The rule (GpuCalibration): the donor's efficiencies, tile, k_ramp and blend; the
        // recipient's peak, HBM bandwidth and SM count.
        GemmLatencyModel carried = dg->second.model;
        carried.sm_count = r.sm_count.value;
        Errors eff, time;
        for (const GemmPoint& p : pts->second) {
          eff.add(carried.time(p.m, p.n, p.k, p.bytes, r.peak(t)->value, r.hbm_bandwidth.value).total_s, p.time_s, p.identity);
          time.add(dg->second.model.time(p.m, p.n, p.k, p.bytes, d.peak(t)->value, d.hbm_bandwidth.value).total_s, p.time_s,
                   p.identity);
        }
        out.push_back({donor_id, rec.gpu, fmt::format("gemm {}", to_string(t)), eff.abs.size(), eff.median(), eff.worst,
                       eff.worst_identity, eff.worst_measured, eff.worst_predicted, time.median(), own.holdout_median_error,
                       own.holdout_worst_error});
      }
      if (d.family.nvlink_generation != r.family.nvlink_generation) continue;
      for (const auto& own : rec.collectives) {
        const CalibratedCollective* dc = don.collective(own.op, own.ranks);
        auto pts = measured.collectives.find({rec.gpu, own.op, own.ranks});
        if (!dc || pts == measured.collectives.end()) continue;
        CalibratedCollective carried = *dc;
        carried.link_bandwidth = r.nvlink_bandwidth.value;
        Errors eff, time;
        for (const CollectivePoint& p : pts->second) {
          eff.add(carried.time(p.bytes), p.time_s, p.identity);
          time.add(dc->time(p.bytes), p.time_s, p.identity);
        }
        out.push_back({donor_id, rec.gpu, fmt::format("{} x{}", own.op, own.ranks), eff.abs.size(), eff.median(), eff.worst,
                       eff.worst_identity, eff.worst_measured, eff.worst_predicted, time.median(), own.holdout_median_error,
                       own.holdout_worst_error});
      }
    }
  }
  return out;
}

std::string transfer_markdown(const std::vector<TransferResult>& t) {
  std::string md;
  md += "| donor -> recipient | family | points | carried median err | carried worst err | worst point | time carried median err | "
        "recipient's own held-out median | own held-out worst |\n";
  md += "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n";
  for (const auto& x : t)
    md += fmt::format("| {} -> {} | {} | {} | {:.1f}% | {:.1f}% | {} ({} measured, {} carried) | {:.1f}% | {:.1f}% | {:.1f}% |\n", x.donor,
                      x.recipient, x.family, x.points, x.median * 100, x.worst * 100, x.worst_identity, fmt_time(x.worst_measured_s),
                      fmt_time(x.worst_carried_s), x.time_carried_median * 100, x.own_holdout_median * 100, x.own_holdout_worst * 100);
  return md;
}

}  // namespace racksim::calibrate
