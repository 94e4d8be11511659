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

/// A whole step `racksim exec` measured (a "step" record with its power window) against the
/// power its GPU's calibration predicts: idle plus the energy model's dynamic energy of the
/// step's FLOPs (at the activations' format) and HBM bytes over the window's time per step,
/// capped at the datasheet limit, times the step's GPUs. Never fitted on: a check of the power
/// fit on work it did not see (docs/calibration.md, "Step power").
struct StepPowerCheck {
  std::string gpu;            ///< catalog GPU id of the file
  std::string identity;       ///< the step record's
  std::string file;           ///< the measurement file it came from
  std::string power;          ///< "calibrated" (the GPU's own power fit) or "carried from <gpu>"
  int gpus = 0;               ///< GPUs the step's power sums
  double step_s = 0;          ///< the window's time per step: energy_j / power_w
  double measured_w = 0;      ///< the record's power over all its GPUs
  double predicted_w = 0;     ///< the calibrated energy model's, over all its GPUs
  bool capped = false;        ///< the prediction reached the power limit
  [[nodiscard]] double error() const { return predicted_w / measured_w - 1.0; }
};

/// A whole step `racksim exec` measured (a "step" record) against the simulator's time for it
/// with the factors these files give (predict_step_with: the cost model and step timer on the
/// catalog system of the record's GPU that holds its GPUs, the model of the record's id with its
/// layers, its formats, batch and tensor parallelism; factors the files do not give, own or
/// carried within the family, are seed). Never fitted on: a check of the whole calibration on a
/// step it did not see (docs/calibration.md, "Step time").
struct StepTimeCheck {
  std::string gpu;            ///< catalog GPU id of the file
  std::string identity;       ///< the step record's
  std::string file;           ///< the measurement file it came from
  std::string system;         ///< the catalog system the prediction is for (system_for_gpu)
  int gpus = 0;               ///< GPUs of the step (tensor parallel)
  std::string timing;         ///< the record's: "graph" (replays, as the simulator's ops run back to back) or "eager"
  double measured_s = 0;      ///< the record's time_median_s
  double predicted_s = 0;     ///< the simulator's, after its power cap
  [[nodiscard]] double error() const { return predicted_s / measured_s - 1.0; }
};

/// Factors for every GPU found in the files, and every point's residual.
struct CalibrationResult {
  std::vector<CalibratedFactors> gpus;           ///< sorted by GPU id
  std::vector<Residual> residuals;               ///< all fitted families, fit and held-out points
  std::map<std::string, std::size_t> skipped;    ///< reason -> records not used
  MeasuredTables measured;                       ///< the points of every fitted table
  std::vector<TransferResult> transfer;          ///< same-family donors' factors on each GPU's table
  std::vector<StepPowerCheck> step_power;        ///< every step record with a power window, against the power fit
  std::vector<StepTimeCheck> step_time;          ///< every step record of a catalog model, against the simulator with these factors
};

/// Fits GEMM models per (GPU, compute format) and collectives per (GPU, op, ranks, dtype), then
/// evaluates carrying them between GPUs of a family (evaluate_transfer).
/// Files without a catalog GPU id are skipped with a count. `fitted_by` goes into provenance.
/// Step records (racksim exec) are checked against the power fit (StepPowerCheck), own or
/// carried from a GPU of these files, and against the simulator's time with these files' factors
/// (StepTimeCheck); what cannot be checked (no energy, no FLOPs, no power fit; a model not in the
/// catalog, no catalog system of that GPU and size) is skipped, counted with its reason.
[[nodiscard]] CalibrationResult run_calibration(const std::vector<MeasurementFile>& files, const std::string& fitted_by);

/// The residual report in Markdown: per GPU, family and size bucket: points, measured and
/// fitted median time, median and worst error, held-out median and worst.
[[nodiscard]] std::string residual_markdown(const CalibrationResult& r);
/// The step power checks as a Markdown table (residuals.md's "Step power against the power fit").
[[nodiscard]] std::string step_power_markdown(const std::vector<StepPowerCheck>& checks);
/// The step time checks as a Markdown table (residuals.md's "Step time against the simulator").
[[nodiscard]] std::string step_time_markdown(const std::vector<StepTimeCheck>& checks);
/// The same report as JSON, with every point, the transfer table and the step power checks.
[[nodiscard]] std::string residual_json(const CalibrationResult& r);
/// Writes <gpu>.yaml per GPU, residuals.md (with a "Transfer between GPUs of a family"
/// section) and residuals.json into `dir` (each file atomically).
/// Returns the paths written.
std::vector<std::string> write_calibration(const CalibrationResult& r, const std::string& dir);

}  // namespace racksim::calibrate
