#include "racksim/hwmodels/energy_model.hpp"

#include <algorithm>

namespace racksim {

EnergyModel energy_model_for(const GpuSpec& g) {
  EnergyModel e;
  e.idle_w = g.idle_power.value;
  e.limit_w = g.power_limit.value;
  // Compute: while tensor cores (or CUDA cores) are the bound, a GPU draws close to its limit;
  // kCompute of the dynamic range (limit - idle) is a placeholder until NVML measurements fit it
  // (issue 4). The memory energy of the same op comes on top, so compute-bound work with heavy
  // traffic reaches the cap.
  constexpr double kCompute = 0.8;
  e.compute_active_w = kCompute * (e.limit_w - e.idle_w);
  // HBM: ML.ENERGY measured ~300 W for batch-1 decode on H100 (executor.md), a stream at about
  // 2.97 TB/s (hardware.md): (300 W - 70 W idle) / 2.97e12 B/s = 77 pJ per byte moved, DRAM and
  // on-chip data movement together. Carried to every GPU (placeholder).
  e.joules_per_hbm_byte = (300.0 - 70.0) / 2.97e12;
  // NVLink / NIC: SerDes plus switch traversal, taken as 10 pJ/byte (placeholder).
  e.joules_per_link_byte = 10e-12;
  e.source =
      "placeholders: compute 0.8 x (power_limit - idle_power) while compute runs; HBM 77 pJ/B from ML.ENERGY H100 "
      "batch-1 decode (~300 W at 2.97 TB/s); link 10 pJ/B";
  return e;
}

double op_energy_j(const EnergyModel& e, const Op& op, double compute_s) {
  if (is_communication(op.kind)) return op.comm_bytes * e.joules_per_link_byte;
  return e.compute_active_w * compute_s + op.bytes() * e.joules_per_hbm_byte;
}

CappedWork apply_power_limit(const EnergyModel& e, double time_s, double dynamic_j) {
  CappedWork w{time_s, e.idle_w + (time_s > 0 ? dynamic_j / time_s : 0), false};
  if (w.power_w > e.limit_w && e.limit_w > e.idle_w) {
    w.time_s = dynamic_j / (e.limit_w - e.idle_w);
    w.power_w = e.limit_w;
    w.capped = true;
  }
  return w;
}

}  // namespace racksim
