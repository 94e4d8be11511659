#pragma once
/// Evidence for carrying calibrated factors between GPUs of a family: a donor's fitted factors,
/// put on the recipient's datasheet (peak, HBM bandwidth, SM count, NVLink bandwidth), predict
/// every shape the recipient measured. docs/calibration.md, "Transfer between GPUs of a family".

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "racksim/calibrate/fit.hpp"
#include "racksim/hwmodels/calibrated.hpp"

namespace racksim::calibrate {

/// Every measured point of one calibration, by table, sorted as the fits saw them.
struct MeasuredTables {
  std::map<std::pair<std::string, DType>, std::vector<GemmPoint>> gemm;  ///< (gpu, format)
  /// (gpu, op, ranks), the element type kept in the factors (fp16 for the published tables).
  std::map<std::tuple<std::string, std::string, int>, std::vector<CollectivePoint>> collectives;
};

/// One donor's factors on one recipient's measured table.
struct TransferResult {
  std::string donor, recipient;
  std::string family;               ///< "gemm nvfp4", "all_reduce x4"
  std::size_t points = 0;           ///< every measured shape of the recipient (none seen by the donor's fit)
  double median = 0, worst = 0;     ///< |carried / measured - 1|, efficiency carried (the rule)
  std::string worst_identity;
  double worst_measured_s = 0, worst_carried_s = 0;
  double time_carried_median = 0;   ///< the donor's predicted time used as is (its own peak, HBM, SMs, NVLink)
  double own_holdout_median = 0;    ///< the recipient's own fit on its held-out shapes
  double own_holdout_worst = 0;
};

/// For every GPU in `fitted` and every other fitted GPU of its family (family_donors order):
/// the donor's GEMM models per shared format and collective curves per shared (op, GPU count)
/// of the same NVLink generation, on all the recipient's measured points.
[[nodiscard]] std::vector<TransferResult> evaluate_transfer(const std::vector<CalibratedFactors>& fitted, const MeasuredTables& measured);

/// The transfer table in Markdown (a section of residuals.md).
[[nodiscard]] std::string transfer_markdown(const std::vector<TransferResult>& t);

}  // namespace racksim::calibrate
