#include "racksim/hwmodels/energy_model.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace racksim {

EnergyModel energy_model_for(const GpuSpec& g) { return energy_model_for(g, GpuCalibration(g)); }

EnergyModel energy_model_for(const GpuSpec& g, const GpuCalibration& cal) {
  EnergyModel e;
  e.idle_w = g.idle_power.value;
  e.limit_w = g.power_limit.value;
  // Compute: while tensor cores (or CUDA cores) are the bound, a GPU draws close to its limit;
  // kCompute of the dynamic range (limit - idle) is a placeholder until NVML measurements fit it
  // (issue 4). The memory energy of the same op comes on top, so compute-bound work with heavy
  // traffic reaches the cap.
  constexpr double kCompute = 0.8;
  e.compute_active_w = kCompute * (e.limit_w - e.idle_w);
  e.joules_per_hbm_byte = kSeedJoulesPerHbmByte;
  // NVLink / NIC: SerDes plus switch traversal, taken as 10 pJ/byte (placeholder).
  e.joules_per_link_byte = 10e-12;
  e.source =
      "placeholders: compute 0.8 x (power_limit - idle_power) while compute runs; HBM 77 pJ/B from ML.ENERGY H100 "
      "batch-1 decode (~300 W at 2.97 TB/s); link 10 pJ/B";
  if (const auto* p = cal.power()) {
    // Fitted board power = idle + pJ/FLOP x FLOP/s + pJ/B x HBM B/s (docs/calibration.md): its
    // idle, per-FLOP and per-byte terms replace the placeholders; the link term and the power
    // limit stay the datasheet's.
    e.idle_w = p->fit->idle_w;
    for (const auto& [t, pj] : p->fit->pj_per_flop) e.joules_per_flop[t] = pj * 1e-12;
    // A tensor-core format without a fit of its own takes a fitted format's energy per FLOP (its
    // tensor-core path's, else BF16's) times that format's peak over its own: the seed model's
    // assumption that compute-bound work draws the same power at every format's peak. Taking
    // BF16's per-FLOP energy unscaled would charge FP8 work twice its power (an H200 fit from BF16
    // GEMMs alone power-capped 8x H200 Llama-2-70B Offline to half its throughput; docs/calibration.md).
    for (const DType t : gemm_formats(g)) {
      if (e.joules_per_flop.contains(t)) continue;
      for (const DType donor : {tensor_core_path(t), DType::bf16}) {
        const auto it = e.joules_per_flop.find(donor);
        const Figure *own = g.peak(t), *theirs = g.peak(donor);
        if (it == e.joules_per_flop.end() || !own || !theirs || own->value <= 0) continue;
        e.joules_per_flop[t] = it->second * theirs->value / own->value;
        break;
      }
    }
    e.joules_per_hbm_byte = p->fit->pj_per_byte * 1e-12;
    e.provenance = p->from_gpu == g.id ? "calibrated" : "carried";
    if (p->from_gpu != g.id) e.carried_from = p->from_gpu;
    e.source = fmt::format("power fit on {} ({}): idle {:.0f} W, {:.1f} pJ/B{}; link 10 pJ/B", p->from_gpu,
                           p->fit->provenance.source, p->fit->idle_w, p->fit->pj_per_byte, p->fit->pj_per_byte_fitted ? "" : " (seed)");
  }
  return e;
}

namespace {

// The fitted energy per FLOP of the format `op` computes in: the format itself, the same
// tensor-core path (fp16 <- bf16, mxfp4 <- nvfp4), else bf16; nullptr if none was fitted.
const double* joules_per_flop(const EnergyModel& e, const Op& op) {
  DType t = DType::bf16;
  if (op.kind == OpKind::gemm || op.kind == OpKind::moe_gemm) t = op.in_dtype;
  else if ((op.kind == OpKind::attention_prefill || op.kind == OpKind::attention_decode) && op.weight_dtype == DType::fp8) t = DType::fp8;
  for (DType c : {t, tensor_core_path(t), DType::bf16})
    if (auto it = e.joules_per_flop.find(c); it != e.joules_per_flop.end()) return &it->second;
  return nullptr;
}

}  // namespace

double op_energy_j(const EnergyModel& e, const Op& op, double compute_s) {
  if (is_communication(op.kind)) return op.comm_bytes * e.joules_per_link_byte;
  const double* per_flop = e.joules_per_flop.empty() ? nullptr : joules_per_flop(e, op);
  const double compute_j = per_flop ? *per_flop * op.flops : e.compute_active_w * compute_s;
  return compute_j + op.bytes() * e.joules_per_hbm_byte;
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
