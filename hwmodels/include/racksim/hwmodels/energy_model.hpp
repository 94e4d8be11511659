#pragma once
/// GPU power: idle power, plus a compute power while the math units are busy, plus energy per
/// HBM byte and per NVLink byte, capped at the power limit (utilization-driven, as Vidur-Energy;
/// executor.md). Coefficients and their derivation: docs/models.md "Power".

#include <map>
#include <string>

#include "racksim/common/dtype.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/workloads/op.hpp"

namespace racksim {

/// Seed HBM energy: ML.ENERGY measured ~300 W for batch-1 decode on H100 (executor.md), a stream
/// at about 2.97 TB/s (hardware.md): (300 W - 70 W idle) / 2.97e12 B/s = 77 pJ per byte moved,
/// DRAM and on-chip data movement together. Carried to every GPU (placeholder); the power fit
/// holds its per-byte term here when its records cannot separate it.
inline constexpr double kSeedJoulesPerHbmByte = (300.0 - 70.0) / 2.97e12;

/// Dynamic-energy coefficients of one GPU.
struct EnergyModel {
  double idle_w = 0;
  double limit_w = 0;
  double compute_active_w = 0;              ///< seed: dynamic power above idle while compute-bound work runs
  double joules_per_hbm_byte = 0;
  double joules_per_link_byte = 0;          ///< NVLink / NIC bytes sent
  /// Calibrated (CalibratedPower): energy per FLOP by compute format, replacing the seed
  /// compute_active_w x compute time; empty for the seed model.
  std::map<DType, double> joules_per_flop;
  std::string provenance = "seed";          ///< "seed", "calibrated" (own power fit) or "carried"
  std::string carried_from;                 ///< the GPU whose power fit was carried, or ""
  std::string source;                       ///< how the coefficients were derived
};

/// Coefficients for a catalog GPU: its calibrated power fit (own, or carried from a family
/// member with the same power limit; GpuCalibration) where one exists, else the placeholders.
[[nodiscard]] EnergyModel energy_model_for(const GpuSpec& gpu);
/// The same with the power fit `cal` resolves (tests: injected factors).
[[nodiscard]] EnergyModel energy_model_for(const GpuSpec& gpu, const GpuCalibration& cal);

/// Dynamic energy of one op on one GPU, joules (link bytes x their energy for collectives):
///   seed:       compute_active_w x compute_s (FLOPs over achievable throughput, from the cost
///               model) + HBM bytes x joules_per_hbm_byte
///   calibrated: joules_per_flop[format] x FLOPs + HBM bytes x joules_per_hbm_byte (a tensor-core
///               format the fit lacks: energy_model_for fills it from its tensor-core path's or
///               BF16's, scaled by the two peaks), format = the
///               GEMM's compute format, attention's math format (fp8 with an FP8 KV cache), else
///               bf16 (CUDA-core FLOPs have no fit of their own; those ops are memory bound).
[[nodiscard]] double op_energy_j(const EnergyModel& e, const Op& op, double compute_s);

/// Time and average power of work taking `time_s` with `dynamic_j` of dynamic energy: above the
/// limit, clocks drop and the work stretches until idle + dynamic / time = limit.
struct CappedWork {
  double time_s = 0;
  double power_w = 0;
  bool capped = false;
};
[[nodiscard]] CappedWork apply_power_limit(const EnergyModel& e, double time_s, double dynamic_j);

}  // namespace racksim
