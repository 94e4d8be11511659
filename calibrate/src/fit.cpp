#include "racksim/calibrate/fit.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <numeric>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim::calibrate {
namespace {

double logistic(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double logit(double p) { return std::log(p / (1.0 - p)); }

std::string gemm_bucket(double m) {
  // Decode batches (m <= 16), small prefill / large decode (17-256), the tile-quantization
  // sweep (257-4353) and large square-ish GEMMs (>= 8192): the regimes the data samples.
  if (m <= 16) return "m 1-16";
  if (m <= 256) return "m 17-256";
  if (m <= 4353) return "m 257-4353";
  return "m >= 8192";
}

std::string bytes_bucket(double b) {
  if (b < 64.0 * 1024) return "< 64 KiB";
  if (b < 8.0 * 1024 * 1024) return "64 KiB - 8 MiB";
  return ">= 8 MiB";
}

}  // namespace

std::vector<double> minimise(const std::function<double(const std::vector<double>&)>& f, std::vector<double> x0, double step,
                             int iterations) {
  const std::size_t n = x0.size();
  std::vector<std::vector<double>> p(n + 1, x0);
  for (std::size_t i = 0; i < n; ++i) p[i + 1][i] += step;
  std::vector<double> v(n + 1);
  for (std::size_t i = 0; i <= n; ++i) v[i] = f(p[i]);
  std::vector<std::size_t> order(n + 1);
  for (int it = 0; it < iterations; ++it) {
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
    const std::size_t best = order.front(), worst = order.back(), second = order[n - 1];
    std::vector<double> c(n, 0.0);
    for (std::size_t i : order)
      if (i != worst)
        for (std::size_t j = 0; j < n; ++j) c[j] += p[i][j] / static_cast<double>(n);
    auto along = [&](double t) {
      std::vector<double> x(n);
      for (std::size_t j = 0; j < n; ++j) x[j] = c[j] + t * (p[worst][j] - c[j]);
      return x;
    };
    auto xr = along(-1.0);
    const double fr = f(xr);
    if (fr < v[best]) {
      auto xe = along(-2.0);
      const double fe = f(xe);
      if (fe < fr) p[worst] = xe, v[worst] = fe;
      else p[worst] = xr, v[worst] = fr;
    } else if (fr < v[second]) {
      p[worst] = xr, v[worst] = fr;
    } else {
      auto xc = along(0.5);
      const double fc = f(xc);
      if (fc < v[worst]) p[worst] = xc, v[worst] = fc;
      else
        for (std::size_t i = 0; i <= n; ++i)
          if (i != best) {
            for (std::size_t j = 0; j < n; ++j) p[i][j] = p[best][j] + 0.5 * (p[i][j] - p[best][j]);
            v[i] = f(p[i]);
          }
    }
  }
  const auto it = std::min_element(v.begin(), v.end());
  return p[static_cast<std::size_t>(it - v.begin())];
}

CalibratedGemm fit_gemm(const GpuSpec& gpu, DType t, const std::vector<GemmPoint>& points, std::vector<Residual>* residuals) {
  const Figure* peak_fig = gpu.peak(t);
  if (!peak_fig) throw InputError(fmt::format("{} has no dense {} peak in the catalog to fit GEMM efficiency against", gpu.id, to_string(t)));
  const double peak = peak_fig->value, bw = gpu.hbm_bandwidth.value, sms = gpu.sm_count.value;
  std::vector<const GemmPoint*> train;
  for (std::size_t i = 0; i < points.size(); ++i)
    if (!is_held_out(i)) train.push_back(&points[i]);
  if (train.size() < 8) throw InputError(fmt::format("{} {}: {} GEMM shapes; need at least 10 to fit", gpu.id, to_string(t), points.size()));

  // Parameters are unconstrained: eff_c, eff_m through a logistic (0..1); t0, k_ramp, p-1 and
  // the per-A-element time through exp.
  struct Candidate {
    std::string form;
    double tm, tn;
    bool split_k;
  };
  auto make = [&](const std::vector<double>& x, const Candidate& cand) {
    GemmLatencyModel m;
    m.form = cand.form;
    m.tile_m = cand.tm;
    m.tile_n = cand.tn;
    m.split_k = cand.split_k;
    m.sm_count = sms;
    m.compute_efficiency = logistic(x[0]);
    m.memory_efficiency = logistic(x[1]);
    m.fixed_latency_s = std::exp(x[2]);
    m.k_ramp = std::exp(x[3]);
    m.blend = 1.0 + std::exp(x[4]);
    m.a_element_s = std::exp(x[5]);
    return m;
  };
  std::vector<Candidate> candidates = {{"flat", 128, 128, false}};
  // Tile shapes CUTLASS/cuBLAS kernels use on Hopper and Blackwell (64..256 per side), with
  // and without split-K for grids smaller than one wave.
  for (bool split : {false, true})
    for (double tm : {64.0, 128.0, 256.0})
      for (double tn : {64.0, 128.0, 256.0}) candidates.push_back({"wave", tm, tn, split});

  auto loss_over = [&](const Candidate& cand, const std::vector<const GemmPoint*>& set, std::size_t stride) {
    return [&, stride](const std::vector<double>& x) {
      const GemmLatencyModel m = make(x, cand);
      double s = 0;
      for (std::size_t i = 0; i < set.size(); i += stride) {
        const GemmPoint* p = set[i];
        const double e = std::log(m.time(p->m, p->n, p->k, p->bytes, peak, bw).total_s / p->time_s);
        s += e * e;
      }
      return s;
    };
  };
  const std::vector<double> x0 = {logit(0.6), logit(0.8), std::log(5e-6), std::log(64.0), 0.0, std::log(1e-14)};
  // Choose the form and tile on every fourth training point (cheap), then refine the winner
  // on all of them; restarts from the best point so far reset Nelder-Mead's simplex.
  std::size_t best_i = 0;
  double best_loss = std::numeric_limits<double>::infinity();
  std::vector<double> best_x;
  for (std::size_t ci = 0; ci < candidates.size(); ++ci) {
    auto loss = loss_over(candidates[ci], train, 4);
    std::vector<double> x = minimise(loss, x0, 1.0, 250);
    x = minimise(loss, x, 0.3, 150);
    const double l = loss(x);
    if (l < best_loss) best_loss = l, best_i = ci, best_x = x;
  }
  auto loss = loss_over(candidates[best_i], train, 1);
  for (double step : {0.5, 0.2, 0.05}) best_x = minimise(loss, best_x, step, 300);
  // `best` never saw the held-out points: its errors there are the method's out-of-sample
  // accuracy, and its residuals are the report's.
  const GemmLatencyModel best = make(best_x, candidates[best_i]);

  // The shipped factors: the same form and tile, refit from there on every point, held-out
  // ones too (the hold-out validates the method; the factors use all the data there is).
  std::vector<const GemmPoint*> all;
  for (const auto& p : points) all.push_back(&p);
  auto loss_all = loss_over(candidates[best_i], all, 1);
  std::vector<double> shipped_x = best_x;
  for (double step : {0.2, 0.05}) shipped_x = minimise(loss_all, shipped_x, step, 300);

  CalibratedGemm c;
  c.model = make(shipped_x, candidates[best_i]);
  c.points = static_cast<int>(points.size());
  std::vector<Residual> rs;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const GemmPoint& p = points[i];
    Residual r;
    r.identity = p.identity;
    r.family = fmt::format("gemm {}", to_string(t));
    r.bucket = gemm_bucket(p.m);
    r.size = p.m;
    r.measured_s = p.time_s;
    r.fitted_s = best.time(p.m, p.n, p.k, p.bytes, peak, bw).total_s;
    r.held_out = is_held_out(i);
    rs.push_back(std::move(r));
  }
  set_holdout_errors(c, rs);
  if (residuals) std::move(rs.begin(), rs.end(), std::back_inserter(*residuals));
  return c;
}

CalibratedCollective fit_collective(const std::string& op, int ranks, const std::string& dtype, double link_bandwidth,
                                    const std::vector<CollectivePoint>& points, std::vector<Residual>* residuals) {
  CalibratedCollective c;
  c.op = op;
  c.ranks = ranks;
  c.link_bandwidth = link_bandwidth;
  RACKSIM_ASSERT(!points.empty(), "collective fit without points");
  const double bus = CalibratedCollective::bus_factor(op, ranks);
  // alpha and the efficiency at each size of `set`: alpha is the small-message plateau, where
  // time no longer depends on size (nccl-tests' latency), the least measured time.
  auto curve_of = [&](const std::vector<const CollectivePoint*>& set) {
    CalibratedCollective f = c;
    f.alpha_s = set.front()->time_s;
    for (const auto* p : set) f.alpha_s = std::min(f.alpha_s, p->time_s);
    for (const auto* p : set) {
      const double wire_s = p->time_s - f.alpha_s;
      // On the plateau the size term is below the measurement noise: cap the efficiency at 1.5
      // (the largest the catalog accepts), which predicts alpha plus a negligible term.
      double eff = wire_s > 0 ? bus * p->bytes / (link_bandwidth * wire_s) : 1.5;
      eff = std::min(eff, 1.5);
      f.efficiency.emplace_back(p->bytes, eff);
    }
    return f;
  };
  std::vector<const CollectivePoint*> train, all;
  for (std::size_t i = 0; i < points.size(); ++i) {
    all.push_back(&points[i]);
    if (!is_held_out(i)) train.push_back(&points[i]);
  }
  // `validated` never saw the held-out sizes (its interpolation there is the report's held-out
  // error); the shipped curve passes through every measured size, held-out ones too.
  const CalibratedCollective validated = curve_of(train);
  c = curve_of(all);
  std::vector<Residual> rs;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const CollectivePoint& p = points[i];
    Residual r;
    r.identity = p.identity;
    r.family = fmt::format("{} x{} {}", op, ranks, dtype);
    r.bucket = bytes_bucket(p.bytes);
    r.size = p.bytes;
    r.measured_s = p.time_s;
    r.fitted_s = validated.time(p.bytes);
    r.held_out = is_held_out(i);
    rs.push_back(std::move(r));
  }
  set_holdout_errors(c, rs);
  if (residuals) std::move(rs.begin(), rs.end(), std::back_inserter(*residuals));
  return c;
}

ErrorSummary summarise(const std::vector<const Residual*>& residuals) {
  ErrorSummary s;
  std::vector<double> e;
  for (const Residual* r : residuals) {
    const double a = std::abs(r->error());
    e.push_back(a);
    if (a >= s.worst) s.worst = a, s.worst_identity = r->identity;
  }
  s.count = e.size();
  if (!e.empty()) {
    std::sort(e.begin(), e.end());
    s.median = e[e.size() / 2];
  }
  return s;
}

ErrorSummary summarise_held_out(const std::vector<Residual>& residuals) {
  std::vector<const Residual*> held;
  for (const Residual& r : residuals)
    if (r.held_out) held.push_back(&r);
  return summarise(held);
}

}  // namespace racksim::calibrate
