#pragma once
/// GPU power: idle power, plus a compute power while the math units are busy, plus energy per
/// HBM byte and per NVLink byte, capped at the power limit (utilization-driven, as Vidur-Energy;
/// executor.md). Coefficients and their derivation: docs/models.md "Power".

#include <string>

#include "racksim/common/dtype.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/workloads/op.hpp"

namespace racksim {

/// Dynamic-energy coefficients of one GPU.
struct EnergyModel {
  double idle_w = 0;
  double limit_w = 0;
  double compute_active_w = 0;              ///< dynamic power above idle while compute-bound work runs
  double joules_per_hbm_byte = 0;
  double joules_per_link_byte = 0;          ///< NVLink / NIC bytes sent
  std::string source;                       ///< how the coefficients were derived
};

/// Coefficients for a catalog GPU (placeholders until calibrated from NVML measurements).
[[nodiscard]] EnergyModel energy_model_for(const GpuSpec& gpu);

/// Dynamic energy of one op on one GPU, joules: compute_active_w x its compute time (FLOPs over
/// achievable throughput, from the cost model) + HBM and link bytes x their energies.
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
