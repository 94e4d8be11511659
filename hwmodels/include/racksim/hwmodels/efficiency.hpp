#pragma once
/// Achieved-over-peak efficiencies: data with sources (hwmodels/data/efficiency/), seeded from
/// published kernel measurements by tools/seed_efficiency.py; the calibration issue fits them.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "racksim/common/dtype.hpp"

namespace racksim {

/// Piecewise-linear interpolation in log(size) over (size, value) points with ascending sizes,
/// clamped at the ends: how every efficiency curve in racksim reads between measured sizes.
[[nodiscard]] double interpolate_log_size(const std::vector<std::pair<double, double>>& points, double size);

/// Efficiency as a function of problem size: piecewise linear in log(size), clamped at the ends.
struct EfficiencyCurve {
  std::vector<std::pair<double, double>> points;  ///< (size, efficiency), size ascending
  std::string source;
  bool carried = false;  ///< taken from another GPU or format, not measured on this one
  [[nodiscard]] double at(double size) const;
};

/// Collective-communication parameters of one GPU's scale-up fabric.
struct CollectiveParams {
  double base_latency_s = 0;  ///< fixed cost of one collective call
  double step_latency_s = 0;  ///< added per algorithm step (ring: 2(n-1) for all-reduce)
  double ring_efficiency = 0;  ///< achieved / link bandwidth, ring
  double tree_efficiency = 0;
  double nvls_efficiency = 0;  ///< NVLink SHARP all-reduce: algbw / link bandwidth
  std::string source;
};

/// A serving engine's own one-shot all-reduce for small tensor-parallel messages (vLLM's and
/// SGLang's custom all-reduce, TensorRT-LLM's ONESHOT strategy): each rank reads the (n-1) peers'
/// buffers over NVLink and sums them in one kernel, t = latency + (n-1) x bytes / (nvlink x efficiency).
struct OneShotAllReduceParams {
  double latency_s = 0;   ///< fixed cost of one call
  double efficiency = 0;  ///< achieved / nvlink_bandwidth on the (n-1) x bytes each rank reads
  bool carried = false;   ///< fitted on another GPU (only H100 is measured)
  std::string source;
};

/// All efficiencies of one GPU.
struct EfficiencyTable {
  std::string gpu;
  std::map<DType, EfficiencyCurve> gemm;  ///< by compute format, over GEMM FLOPs per call
  EfficiencyCurve memory;                 ///< over bytes moved by one op
  double attention_prefill = 0;           ///< attention tensor-core FLOPs / dense peak
  std::string attention_source;
  bool attention_carried = false;
  CollectiveParams collectives;
  OneShotAllReduceParams one_shot_all_reduce;

  /// The GEMM curve of a format; if that format was not measured, the nearest measured one
  /// (nvfp4 <- fp8 <- bf16 order), returned with carried = true.
  [[nodiscard]] EfficiencyCurve gemm_curve(DType t) const;
};

/// The table of a catalog GPU id; InputError if none exists.
[[nodiscard]] const EfficiencyTable& efficiency_for(const std::string& gpu_id);
/// Parses one efficiency YAML (strict).
[[nodiscard]] EfficiencyTable parse_efficiency_yaml(std::string_view text, const std::string& name);

}  // namespace racksim
