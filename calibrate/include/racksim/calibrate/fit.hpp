#pragma once
/// Fits of hardware-model factors to measurements: GEMM latency per GPU and format, collective
/// latency and bandwidth efficiency per op and GPU count. Every fifth shape is held out of a
/// first fit, whose errors there are the residual report's (the method's out-of-sample
/// accuracy); the shipped factors are then fitted on every point.

#include <functional>
#include <string>
#include <vector>

#include "racksim/hwmodels/calibrated.hpp"
#include "racksim/hwmodels/hardware.hpp"

namespace racksim::calibrate {

/// One measured point against its fit.
struct Residual {
  std::string gpu;        ///< catalog GPU id
  std::string identity;   ///< MeasuredOp::identity()
  std::string family;     ///< "gemm bf16", "all_reduce x8 fp16"
  std::string bucket;     ///< size bucket ("m 1-16", "1 KB-64 KB", ...)
  double size = 0;        ///< m for GEMMs, bytes for collectives (sorting)
  double measured_s = 0;
  double fitted_s = 0;
  bool held_out = false;
  /// fitted / measured - 1.
  [[nodiscard]] double error() const { return fitted_s / measured_s - 1.0; }
};

/// A GEMM shape and its measured time.
struct GemmPoint {
  double m = 0, n = 0, k = 0;
  double bytes = 0;  ///< A + B + C bytes of one call
  double time_s = 0;
  std::string identity;
};

/// True for the points held out of the report's fit: the fifth, tenth, ... of the sorted shapes.
[[nodiscard]] inline bool is_held_out(std::size_t index_in_sorted_order) { return index_in_sorted_order % 5 == 4; }

/// Minimises f from x0 (Nelder-Mead, deterministic); returns the best point.
[[nodiscard]] std::vector<double> minimise(const std::function<double(const std::vector<double>&)>& f, std::vector<double> x0,
                                           double step, int iterations);

/// Fits GemmLatencyModel to `points` (sorted by shape) on `gpu` for format `t`: candidate forms
/// and tiles, each minimising the sum of squared log errors over the training points; the form
/// and tile with the least training error win, and every point's residual against that fit is
/// appended. The returned factors are the winner refit on every point, held-out ones too.
[[nodiscard]] CalibratedGemm fit_gemm(const GpuSpec& gpu, DType t, const std::vector<GemmPoint>& points,
                                      std::vector<Residual>* residuals);

/// (bytes per rank, time) of one collective at one GPU count, sorted by bytes.
struct CollectivePoint {
  double bytes = 0, time_s = 0;
  std::string identity;
};

/// Fits alpha (the small-message plateau: least measured time) and the busbw efficiency at
/// each size. Residuals are appended from the training sizes' curve (held-out sizes
/// interpolated); the returned curve passes through every measured size.
[[nodiscard]] CalibratedCollective fit_collective(const std::string& op, int ranks, const std::string& dtype, double link_bandwidth,
                                                  const std::vector<CollectivePoint>& points, std::vector<Residual>* residuals);

/// Median and worst |error| of residuals, held-out only or all.
struct ErrorSummary {
  std::size_t count = 0;
  double median = 0, worst = 0;
  std::string worst_identity;
};
[[nodiscard]] ErrorSummary summarise(const std::vector<const Residual*>& residuals);
/// The summary of the held-out residuals alone (count 0, errors 0 when none is held out).
[[nodiscard]] ErrorSummary summarise_held_out(const std::vector<Residual>& residuals);
/// Sets a fit's held-out figures (holdout_median_error, holdout_worst_error) from its residuals.
template <class Fit>
void set_holdout_errors(Fit& fit, const std::vector<Residual>& residuals) {
  const ErrorSummary h = summarise_held_out(residuals);
  fit.holdout_median_error = h.median;
  fit.holdout_worst_error = h.worst;
}

}  // namespace racksim::calibrate
