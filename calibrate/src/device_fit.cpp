#include "racksim/calibrate/device_fit.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "racksim/common/error.hpp"

namespace racksim::calibrate {
namespace {

double median_of(std::vector<double> v) {
  RACKSIM_ASSERT(!v.empty(), "median of no values");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// Solves the n x n system a x = b in place (Gaussian elimination, partial pivoting); false if a
/// pivot is below `tiny` relative to the largest entry of its column (rank deficient).
bool solve(std::vector<std::vector<double>> a, std::vector<double> b, std::vector<double>& x) {
  const std::size_t n = b.size();
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t p = c;
    double scale = 0;
    for (std::size_t r = 0; r < n; ++r) scale = std::max(scale, std::fabs(a[r][c]));
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::fabs(a[r][c]) > std::fabs(a[p][c])) p = r;
    if (!(std::fabs(a[p][c]) > 1e-12 * scale) || scale == 0) return false;
    std::swap(a[p], a[c]);
    std::swap(b[p], b[c]);
    for (std::size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (std::size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  x.assign(n, 0);
  for (std::size_t c = n; c-- > 0;) {
    double s = b[c];
    for (std::size_t k = c + 1; k < n; ++k) s -= a[c][k] * x[k];
    x[c] = s / a[c][c];
  }
  return true;
}

/// Least squares: minimises sum_i (rows[i] . x - y[i])^2 through the normal equations.
bool least_squares(const std::vector<std::vector<double>>& rows, const std::vector<double>& y, std::vector<double>& x) {
  const std::size_t n = rows.front().size();
  if (rows.size() < n) return false;
  std::vector<std::vector<double>> ata(n, std::vector<double>(n, 0));
  std::vector<double> aty(n, 0);
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::size_t r = 0; r < n; ++r) {
      aty[r] += rows[i][r] * y[i];
      for (std::size_t c = 0; c < n; ++c) ata[r][c] += rows[i][r] * rows[i][c];
    }
  return solve(ata, aty, x);
}

/// (size, time) of one measured point of a straight-line fit.
struct Line {
  double size, time;
};

/// (t0, c) minimising sum ((t0 + c size) / time - 1)^2, t0 clamped at 0 (a negative intercept
/// is noise); nullopt with fewer than two distinct sizes.
std::optional<std::pair<double, double>> relative_line(const std::vector<Line>& pts) {
  std::vector<std::vector<double>> rows;
  std::vector<double> y;
  for (const auto& p : pts) {
    rows.push_back({1.0 / p.time, p.size / p.time});
    y.push_back(1.0);
  }
  std::vector<double> x;
  if (rows.size() < 2 || !least_squares(rows, y, x)) return std::nullopt;
  return std::make_pair(std::max(0.0, x[0]), x[1]);
}

/// The relative line of the training points (held-out ones left out: the residual report's fit)
/// and of every point (the shipped factors), `pts` in hold-out order; nullopt as relative_line.
struct ReportAndShipped {
  std::optional<std::pair<double, double>> report, shipped;
  std::size_t training = 0;  ///< training points
};
ReportAndShipped report_and_shipped_lines(const std::vector<Line>& pts) {
  std::vector<Line> train;
  for (std::size_t i = 0; i < pts.size(); ++i)
    if (!is_held_out(i)) train.push_back(pts[i]);
  return {relative_line(train), relative_line(pts), train.size()};
}

std::string size_bucket(double bytes) {
  if (bytes < 1 << 20) return "< 1 MiB";
  if (bytes < 256.0 * (1 << 20)) return "1 MiB - 256 MiB";
  return ">= 256 MiB";
}

std::string flops_bucket(double flops) {
  if (flops < 1e9) return "< 1 GFLOP";
  if (flops < 1e12) return "1 GFLOP - 1 TFLOP";
  return ">= 1 TFLOP";
}

/// Sorts attention points by (size, identity): the order the hold-out counts in.
void sort_points(std::vector<AttentionPoint>& pts) {
  std::sort(pts.begin(), pts.end(), [](const AttentionPoint& a, const AttentionPoint& b) {
    return a.size != b.size ? a.size < b.size : a.identity < b.identity;
  });
}

/// (size, efficiency) pairs with equal sizes averaged, sizes ascending (the input is sorted).
std::vector<std::pair<double, double>> merged_curve(const std::vector<std::pair<double, double>>& sorted) {
  std::vector<std::pair<double, double>> out;
  std::vector<int> count;
  for (const auto& [x, e] : sorted) {
    if (!out.empty() && out.back().first == x) {
      out.back().second += e;
      ++count.back();
    } else {
      out.emplace_back(x, e);
      count.push_back(1);
    }
  }
  for (std::size_t i = 0; i < out.size(); ++i) out[i].second /= count[i];
  return out;
}

/// Measured board power of a power record: energy / time where the energy counter was read,
/// else the sampled mean.
std::optional<double> measured_power(const MeasurementRecord& r) {
  if (r.energy_j && r.time_median_s > 0) return *r.energy_j / r.time_median_s;
  return r.power_w;
}

}  // namespace

MemoryFit fit_memory(const std::vector<MeasurementRecord>& records, const std::string& variant, double hbm_bandwidth,
                     const std::string& gpu, const std::string& source, std::vector<Residual>* residuals) {
  struct Point {
    double moved, time;
    std::string identity;
  };
  std::vector<Point> pts;
  for (const auto& r : records)
    if (r.op.kind == "memcpy" && r.op.variant == variant && r.time_median_s > 0)
      pts.push_back({r.bytes_moved ? *r.bytes_moved : r.op.bytes, r.time_median_s, r.op.identity()});
  std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.moved < b.moved; });
  // Relative least squares in (t0, c): minimise sum ((t0 + c x) / t - 1)^2; on the training
  // sizes for the residual report, on every size for the shipped factors.
  std::vector<Line> line_pts;
  for (const auto& p : pts) line_pts.push_back({p.moved, p.time});
  const ReportAndShipped l = report_and_shipped_lines(line_pts);
  if (!l.report || !l.shipped)
    throw InputError(fmt::format("{}: memcpy {} on {}: {} training sizes; the bandwidth fit needs at least two distinct sizes",
                                 source, variant, gpu, l.training));
  if (!(l.report->second > 0) || !(l.shipped->second > 0))
    throw InputError(fmt::format("{}: memcpy {} on {}: time does not grow with size; no bandwidth to fit", source, variant, gpu));
  const auto [t0_train, c_train] = *l.report;
  const auto [t0, c] = *l.shipped;
  MemoryFit f;
  f.variant = variant;
  f.fixed_latency_s = t0;
  f.efficiency = 1.0 / (c * hbm_bandwidth);
  f.fitted_points = static_cast<int>(pts.size());
  for (std::size_t i = 0; i < pts.size(); ++i) {
    const auto& p = pts[i];
    f.points.emplace_back(p.moved, p.moved / (hbm_bandwidth * p.time));
    if (residuals)
      residuals->push_back(Residual{gpu, p.identity, "memcpy " + variant, size_bucket(p.moved), p.moved, p.time,
                                    t0_train + c_train * p.moved, is_held_out(i)});
  }
  return f;
}

LaunchFit fit_launch(const std::vector<MeasurementRecord>& records) {
  std::map<std::string, std::vector<double>> by;
  LaunchFit f;
  for (const auto& r : records)
    if (r.op.kind == "launch" && r.time_median_s > 0) {
      by[r.op.variant.empty() ? "kernel" : r.op.variant].push_back(r.time_median_s);
      ++f.points;
    }
  for (auto& [variant, times] : by) f.latency_s[variant] = median_of(times);
  return f;
}

PowerFit fit_power(const std::vector<MeasurementRecord>& records, double seed_pj_per_byte, const std::string& source) {
  std::vector<double> idle;
  struct Point {
    std::string fmt;
    double flop_rate, byte_rate, power;
  };
  std::vector<Point> pts;
  for (const auto& r : records) {
    const auto p = measured_power(r);
    if (!p) continue;
    if (r.op.kind == "idle") idle.push_back(*p);
    else if (r.op.kind == "gemm" && r.flops && r.time_median_s > 0)
      pts.push_back({r.op.a_dtype, *r.flops / r.time_median_s, (r.bytes_moved ? *r.bytes_moved : 0) / r.time_median_s, *p});
  }
  if (idle.empty()) throw InputError(fmt::format("{}: no idle power record (kind idle with power_w or energy_j): no power fit", source));
  if (pts.empty()) throw InputError(fmt::format("{}: no GEMM record with power_w or energy_j: no power fit", source));
  PowerFit f;
  f.idle_w = median_of(idle);
  f.points = static_cast<int>(pts.size());
  std::vector<std::string> fmts;
  for (const auto& p : pts)
    if (std::find(fmts.begin(), fmts.end(), p.fmt) == fmts.end()) fmts.push_back(p.fmt);
  std::sort(fmts.begin(), fmts.end());
  // Unknowns: pJ/FLOP per format, then (optionally) pJ/byte. One row per record, in watts
  // (pJ/FLOP x FLOP/s x 1e-12 = W), divided by the record's power so each counts alike.
  const auto fit = [&](bool with_bytes, const std::vector<std::string>& zeroed, std::vector<double>& x) {
    std::vector<std::vector<double>> rows;
    std::vector<double> y;
    for (const auto& p : pts) {
      std::vector<double> row;
      for (const auto& fm : fmts)
        if (std::find(zeroed.begin(), zeroed.end(), fm) == zeroed.end()) row.push_back(fm == p.fmt ? p.flop_rate * 1e-12 / p.power : 0);
      double target = p.power - f.idle_w;
      if (with_bytes) row.push_back(p.byte_rate * 1e-12 / p.power);
      else target -= seed_pj_per_byte * p.byte_rate * 1e-12;
      rows.push_back(row);
      y.push_back(target / p.power);
    }
    return !rows.front().empty() && least_squares(rows, y, x);
  };
  std::vector<double> x;
  std::vector<std::string> zeroed;
  bool with_bytes = fit(true, zeroed, x) && x.back() >= 0;
  if (!with_bytes && !fit(false, zeroed, x))
    throw InputError(fmt::format("{}: the power records do not determine a per-FLOP energy for {}", source, fmt::join(fmts, ", ")));
  // A negative per-FLOP energy is unphysical: fix that format at zero and refit the rest.
  for (;;) {
    std::size_t i = 0;
    std::string neg;
    for (const auto& fm : fmts)
      if (std::find(zeroed.begin(), zeroed.end(), fm) == zeroed.end()) {
        if (x[i] < 0 && neg.empty()) neg = fm;
        ++i;
      }
    if (neg.empty()) break;
    zeroed.push_back(neg);
    if (zeroed.size() == fmts.size() || !fit(with_bytes, zeroed, x)) {
      x.assign(fmts.size() - zeroed.size() + (with_bytes ? 1 : 0), 0);
      break;
    }
  }
  std::size_t i = 0;
  for (const auto& fm : fmts) f.pj_per_flop[fm] = std::find(zeroed.begin(), zeroed.end(), fm) == zeroed.end() ? x[i++] : 0.0;
  f.pj_per_byte_fitted = with_bytes;
  f.pj_per_byte = with_bytes ? x.back() : seed_pj_per_byte;
  std::vector<double> errs;
  for (const auto& p : pts) {
    const double fitted = f.idle_w + (f.pj_per_flop[p.fmt] * p.flop_rate + f.pj_per_byte * p.byte_rate) * 1e-12;
    errs.push_back(std::fabs(fitted / p.power - 1));
  }
  f.median_error = median_of(errs);
  f.worst_error = *std::max_element(errs.begin(), errs.end());
  return f;
}

std::optional<AttentionDecodeFit> fit_attention_decode(std::vector<AttentionPoint> pts, DType kv, double hbm_bandwidth,
                                                      const std::string& gpu, const std::string& source, std::vector<Residual>* residuals,
                                                      std::string* why) {
  const std::string family = fmt::format("attention_decode {}", to_string(kv));
  sort_points(pts);
  // Relative least squares in (t0, c), as the memory fit: minimise sum ((t0 + c bytes) / t - 1)^2,
  // on the training sizes for the residual report, on every size for the shipped factors.
  std::vector<Line> line_pts;
  for (const auto& p : pts) line_pts.push_back({p.size, p.time_s});
  const ReportAndShipped l = report_and_shipped_lines(line_pts);
  if (!l.report || !l.shipped) {
    *why = fmt::format("{}: {} on {}: {} training point{}; the fit needs at least two of distinct size", source, family, gpu, l.training,
                       l.training == 1 ? "" : "s");
    return std::nullopt;
  }
  if (!(l.report->second > 0) || !(l.shipped->second > 0))
    throw InputError(fmt::format("{}: {} on {}: time does not grow with bytes moved; no bandwidth to fit", source, family, gpu));
  const auto [t0_train, c_train] = *l.report;
  const auto [t0, c] = *l.shipped;
  AttentionDecodeFit f;
  f.fixed_latency_s = t0;
  f.efficiency = 1.0 / (c * hbm_bandwidth);
  f.points = static_cast<int>(pts.size());
  std::vector<std::pair<double, double>> curve;
  std::vector<Residual> res;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    const auto& p = pts[i];
    const double eff = p.size / (hbm_bandwidth * p.time_s);
    // The calibrated YAML bounds a curve point at 10x the datasheet bandwidth (an L2-resident
    // stream can beat HBM, ten times cannot); above it the record's bytes or time are wrong.
    if (!(eff <= 10))
      throw InputError(fmt::format("{}: {}: bytes_moved {:g} in {:g} s is {:.3g} x the datasheet HBM bandwidth of {}; allowed: at most 10",
                                   source, p.identity, p.size, p.time_s, eff, gpu));
    curve.emplace_back(p.size, eff);
    res.push_back(Residual{gpu, p.identity, family, size_bucket(p.size), p.size, p.time_s, t0_train + c_train * p.size, is_held_out(i)});
  }
  f.curve = merged_curve(curve);
  set_holdout_errors(f, res);
  if (residuals) residuals->insert(residuals->end(), res.begin(), res.end());
  return f;
}

std::optional<AttentionPrefillFit> fit_attention_prefill(std::vector<AttentionPoint> pts, DType kv, DType math, double peak_flops,
                                                        const std::string& gpu, const std::string& source, std::vector<Residual>* residuals,
                                                        std::string* why) {
  const std::string family = fmt::format("attention_prefill {}", to_string(kv));
  sort_points(pts);
  std::vector<std::pair<double, double>> training, every;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    const auto& p = pts[i];
    const double eff = p.size / (peak_flops * p.time_s);
    // The calibrated YAML bounds a tensor efficiency at 1.5 of the datasheet dense peak.
    if (!(eff > 0 && eff <= 1.5))
      throw InputError(fmt::format("{}: {}: flops {:g} in {:g} s is {:.3g} x the datasheet {} peak of {}; allowed: (0, 1.5]", source,
                                   p.identity, p.size, p.time_s, eff, to_string(math), gpu));
    every.emplace_back(p.size, eff);
    if (!is_held_out(i)) training.emplace_back(p.size, eff);
  }
  if (training.size() < 2) {
    *why = fmt::format("{}: {} on {}: {} training point{}; the fit needs at least two", source, family, gpu, training.size(),
                       training.size() == 1 ? "" : "s");
    return std::nullopt;
  }
  AttentionPrefillFit f;
  f.math = math;
  f.peak_flops = peak_flops;
  // The residual report reads the training curve (held-out sizes interpolated); the shipped
  // curve passes through every measured size.
  AttentionPrefillFit validated = f;
  validated.curve = merged_curve(training);
  f.curve = merged_curve(every);
  f.points = static_cast<int>(every.size());
  std::vector<Residual> res;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    const auto& p = pts[i];
    res.push_back(Residual{gpu, p.identity, family, flops_bucket(p.size), p.size, p.time_s,
                           p.size / (peak_flops * validated.efficiency_at(p.size)), is_held_out(i)});
  }
  set_holdout_errors(f, res);
  if (residuals) residuals->insert(residuals->end(), res.begin(), res.end());
  return f;
}

}  // namespace racksim::calibrate
