#pragma once
/// A whole calibration: measurement files in, calibrated factors per GPU and a residual
/// report out (what `racksim calibrate` runs).

#include <map>
#include <string>
#include <vector>

#include "racksim/calibrate/fit.hpp"
#include "racksim/calibrate/transfer.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/hwmodels/calibrated.hpp"

namespace racksim::calibrate {

/// Factors for every GPU found in the files, and every point's residual.
struct CalibrationResult {
  std::vector<CalibratedFactors> gpus;           ///< sorted by GPU id
  std::vector<Residual> residuals;               ///< all fitted families, fit and held-out points
  std::map<std::string, std::size_t> skipped;    ///< reason -> records not used
  MeasuredTables measured;                       ///< the points of every fitted table
  std::vector<TransferResult> transfer;          ///< same-family donors' factors on each GPU's table
};

/// Fits GEMM models per (GPU, compute format) and collectives per (GPU, op, ranks, dtype), then
/// evaluates carrying them between GPUs of a family (evaluate_transfer).
/// Files without a catalog GPU id are skipped with a count. `fitted_by` goes into provenance.
[[nodiscard]] CalibrationResult run_calibration(const std::vector<MeasurementFile>& files, const std::string& fitted_by);

/// The residual report in Markdown: per GPU, family and size bucket: points, measured and
/// fitted median time, median and worst error, held-out median and worst.
[[nodiscard]] std::string residual_markdown(const CalibrationResult& r);
/// The same report as JSON, with every point and the transfer table.
[[nodiscard]] std::string residual_json(const CalibrationResult& r);
/// Writes <gpu>.yaml per GPU, residuals.md (with a "Transfer between GPUs of a family"
/// section) and residuals.json into `dir` (each file atomically).
/// Returns the paths written.
std::vector<std::string> write_calibration(const CalibrationResult& r, const std::string& dir);

}  // namespace racksim::calibrate
