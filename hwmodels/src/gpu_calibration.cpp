#include "racksim/hwmodels/gpu_calibration.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <tuple>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "racksim/hwmodels/efficiency.hpp"

namespace racksim {
namespace {

std::vector<const CalibratedFactors*> catalog_tables() {
  std::vector<const CalibratedFactors*> out;
  for (const auto& t : calibrated_catalog()) out.push_back(&t);
  return out;
}

}  // namespace

std::vector<std::string> family_donors(const GpuSpec& gpu, const std::vector<std::string>& candidates) {
  std::vector<const GpuSpec*> same;
  for (const auto& id : candidates) {
    if (id == gpu.id) continue;
    const GpuSpec& d = find_gpu(id);
    if (d.family.name == gpu.family.name) same.push_back(&d);
  }
  std::sort(same.begin(), same.end(), [&](const GpuSpec* a, const GpuSpec* b) {
    const double da = std::abs(a->sm_count.value - gpu.sm_count.value), db = std::abs(b->sm_count.value - gpu.sm_count.value);
    if (da != db) return da < db;
    return a->id < b->id;
  });
  std::vector<std::string> out;
  for (const GpuSpec* d : same) out.push_back(d->id);
  return out;
}

GpuCalibration::GpuCalibration(const GpuSpec& gpu) : GpuCalibration(gpu, catalog_tables()) {}

GpuCalibration::GpuCalibration(const GpuSpec& gpu, const std::vector<const CalibratedFactors*>& tables) : gpu_(gpu.id), enabled_(true) {
  std::map<std::string, const CalibratedFactors*> by_id;
  std::vector<std::string> ids;
  for (const CalibratedFactors* t : tables) {
    RACKSIM_ASSERT(t != nullptr, "null calibrated table");
    if (t->gpu == gpu.id) own_ = t;
    else ids.push_back(t->gpu);
    by_id[t->gpu] = t;
  }
  donors_ = family_donors(gpu, ids);

  // GEMMs: efficiencies, tile, k_ramp and blend travel; peak, HBM bandwidth (at use) and the SM
  // count (here) are this GPU's datasheet values, so time follows from its own hardware.
  auto use_gemm = [&](DType t, const CalibratedFactors* from, DType format) {
    auto it = from->gemm.find(format);
    if (it == from->gemm.end()) return false;
    GemmFactor f;
    f.model = it->second.model;
    f.model.sm_count = gpu.sm_count.value;
    f.fit = &it->second;
    f.from_gpu = from->gpu;
    f.from_format = format;
    gemm_[t] = std::move(f);
    return true;
  };
  for (DType t : gemm_formats(gpu)) {
    const DType alt = tensor_core_path(t);
    if (own_ && use_gemm(t, own_, t)) continue;
    if (own_ && alt != t && use_gemm(t, own_, alt)) continue;
    bool found = false;
    for (const auto& d : donors_)
      if ((found = use_gemm(t, by_id.at(d), t))) break;
    if (found || alt == t) continue;
    for (const auto& d : donors_)
      if (use_gemm(t, by_id.at(d), alt)) break;
  }

  // Collectives: NCCL's measured choice at each size depends on the fabric, so a curve carries
  // only between GPUs of the same NVLink generation, at the same GPU count. The busbw
  // efficiency travels; the bandwidth it multiplies is this GPU's NVLink figure.
  if (own_)
    for (const auto& c : own_->collectives) collectives_.push_back({c, own_->gpu});
  for (const auto& d : donors_) {
    if (find_gpu(d).family.nvlink_generation != gpu.family.nvlink_generation) continue;
    for (const auto& c : by_id.at(d)->collectives) {
      if (collective(c.op, c.ranks)) continue;
      CollectiveFactor f{c, d};
      f.curve.link_bandwidth = gpu.nvlink_bandwidth.value;
      collectives_.push_back(std::move(f));
    }
  }
  std::sort(collectives_.begin(), collectives_.end(), [](const auto& a, const auto& b) {
    return std::tie(a.curve.op, a.curve.ranks) < std::tie(b.curve.op, b.curve.ranks);
  });

  // Device-level fits (docs/calibration.md, "Memory, launch and power from the executor's
  // files"): own first, then the donors in order. The memory curve is an efficiency and
  // multiplies this GPU's own HBM bandwidth at use; launch latency is the same driver and
  // front end on one die. Power per FLOP follows the clocks the power limit sustains, so it
  // carries only between GPUs with the same datasheet limit.
  auto resolve = [&](auto member, auto& out, bool (*accept)(const GpuSpec&, const GpuSpec&)) {
    if (own_ && (own_->*member)) {
      out = {&*(own_->*member), own_->gpu};
      return;
    }
    for (const auto& d : donors_) {
      const CalibratedFactors* t = by_id.at(d);
      if ((t->*member) && accept(find_gpu(d), gpu)) {
        out = {&*(t->*member), d};
        return;
      }
    }
  };
  auto any = [](const GpuSpec&, const GpuSpec&) { return true; };
  auto same_limit = [](const GpuSpec& d, const GpuSpec& r) { return d.power_limit.value == r.power_limit.value; };
  resolve(&CalibratedFactors::memory, memory_, +any);
  resolve(&CalibratedFactors::launch, launch_, +any);
  resolve(&CalibratedFactors::power, power_, +same_limit);
  // Attention kernels are one design on one die: their achieved fraction of HBM bandwidth and
  // tensor peak travels like the memory curve.
  resolve(&CalibratedFactors::attention, attention_, +any);
}

const GemmFactor* GpuCalibration::gemm(DType t) const {
  auto it = gemm_.find(t);
  return it == gemm_.end() ? nullptr : &it->second;
}

const CollectiveFactor* GpuCalibration::collective(std::string_view op, int ranks) const {
  for (const auto& c : collectives_)
    if (c.curve.op == op && c.curve.ranks == ranks) return &c;
  return nullptr;
}

std::string FactorSource::text() const {
  std::string s = source == "carried" ? fmt::format("carried from {}", from) : source;
  return note.empty() ? s : fmt::format("{} ({})", s, note);
}

void FactorUse::add(const Op& op) {
  if (op.kind == OpKind::gemm || op.kind == OpKind::moe_gemm) gemm_formats.insert(op.in_dtype);
  else if (is_communication(op.kind) && op.participants > 1) collectives.emplace(std::string(to_string(op.kind)), op.participants);
}

namespace {

// Why a family is seed: `why` (nothing fitted), or that calibration is off (a default-constructed
// GpuCalibration: scenario key `calibration: datasheet`), whatever is fitted.
std::string unfitted(const GpuCalibration& cal, std::string why) {
  return cal.enabled() ? why : std::string("calibration: datasheet (calibrated factors not used)");
}

FactorSource gemm_source(const std::string& gpu, DType t, const GpuCalibration& cal, const EfficiencyTable& eff) {
  FactorSource s;
  s.factor = fmt::format("gemm {}", to_string(t));
  if (const GemmFactor* f = cal.gemm(t)) {
    const bool own = f->from_gpu == gpu && f->from_format == t;
    s.source = own ? "own" : "carried";
    if (!own) s.from = fmt::format("{} {}", f->from_gpu, to_string(f->from_format));
    s.note = fmt::format("held-out median {:.1f}% on {} {}", f->fit->holdout_median_error * 100, f->from_gpu, to_string(f->from_format));
    if (f->from_gpu != gpu) s.note += fmt::format("; efficiency carried, time from {}'s peak, HBM and SMs", gpu);
    return s;
  }
  const EfficiencyCurve curve = eff.gemm_curve(t);
  s.source = "seed";
  s.note = fmt::format("{}; seed curve{}: {}", unfitted(cal, fmt::format("no {} fit on {} or its family", to_string(t), gpu)),
                       curve.carried ? " (carried)" : "", curve.source);
  return s;
}

// "own" or "carried" (from, and a note that names the GPU measured) for a device-level fit.
template <class Fit>
FactorSource device_source(const std::string& factor, const std::string& gpu, const DeviceFactor<Fit>& f, std::string note) {
  FactorSource s{factor, f.from_gpu == gpu ? "own" : "carried", f.from_gpu == gpu ? "" : f.from_gpu, std::move(note)};
  return s;
}

void append_device_and_attention(std::vector<FactorSource>& out, const std::string& gpu, const GpuCalibration& cal,
                                 const EfficiencyTable& eff) {
  // Memory, launch and power come from the executor's files when measured (docs/calibration.md,
  // "Memory, launch and power from the executor's files"); otherwise the seed curves, which may
  // themselves be carried from another GPU (their source says which). Attention comes from the
  // executor's attention bench when measured (docs/calibration.md, "Attention from the executor's
  // files"), per KV format; formats it did not measure keep the seed efficiency.
  if (const auto* m = cal.memory()) {
    std::string note = fmt::format("memcpy {} on {}: asymptotic efficiency {:.3f}, held-out median {:.1f}%", m->fit->variant,
                                   m->from_gpu, m->fit->efficiency, m->fit->holdout_median_error * 100);
    if (m->from_gpu != gpu) note += fmt::format("; efficiency carried over {}'s HBM bandwidth", gpu);
    out.push_back(device_source("memory", gpu, *m, std::move(note)));
  } else {
    out.push_back({"memory", "seed", "", fmt::format("seed curve{}: {}", eff.memory.carried ? " (carried)" : "", eff.memory.source)});
  }
  if (const auto* l = cal.launch(); l && l->fit->graph_node_s) {
    out.push_back(device_source("launch", gpu, *l,
                                fmt::format("CUDA-graph node {:.2f} us measured on {}", *l->fit->graph_node_s * 1e6, l->from_gpu)));
  } else {
    out.push_back({"launch", "seed", "",
                   l ? fmt::format("no graph-node launch measured on {} (kernel launch only): datasheet launch_overhead", l->from_gpu)
                     : fmt::format("{}: datasheet launch_overhead", unfitted(cal, fmt::format("no launch measured on {} or its family", gpu)))});
  }
  if (const auto* p = cal.power()) {
    out.push_back(device_source("power", gpu, *p,
                                fmt::format("idle {:.0f} W, {:.1f} pJ/B{}, power error median {:.1f}% on {}", p->fit->idle_w,
                                            p->fit->pj_per_byte, p->fit->pj_per_byte_fitted ? "" : " (seed)",
                                            p->fit->median_error * 100, p->from_gpu)));
  } else {
    out.push_back({"power", "seed", "",
                   fmt::format("{}: seed energy model", unfitted(cal, fmt::format("no power fit on {} or a family member with its power limit", gpu)))});
  }
  if (const auto* a = cal.attention()) {
    std::vector<std::string> parts;
    for (const auto& [kv, d] : a->fit->decode)
      parts.push_back(fmt::format("decode kv {} held-out median {:.1f}%", to_string(kv), d.holdout_median_error * 100));
    for (const auto& [kv, p] : a->fit->prefill)
      parts.push_back(fmt::format("prefill kv {} held-out median {:.1f}%", to_string(kv), p.holdout_median_error * 100));
    std::string note = fmt::format("{} on {}; other KV formats: seed efficiency {:.2f}", join(std::span<const std::string>(parts)),
                                   a->from_gpu, eff.attention_prefill);
    if (a->from_gpu != gpu) note += fmt::format("; efficiency carried over {}'s HBM bandwidth and peak", gpu);
    out.push_back(device_source("attention", gpu, *a, std::move(note)));
  } else {
    out.push_back({"attention", "seed", "",
                   fmt::format("seed efficiency{}: {}", eff.attention_carried ? " (carried)" : "", eff.attention_source)});
  }
}

FactorSource collective_source(const std::string& gpu, const std::string& op, int ranks, const GpuCalibration& cal) {
  FactorSource s;
  s.factor = fmt::format("{} x{}", op, ranks);
  const CollectiveFactor* f = op == "send_recv" ? nullptr : cal.collective(op, ranks);
  if (!f) {
    s.source = "seed";
    s.note = op == "send_recv" ? "no send/recv fit: seed alpha-beta model"
                               : fmt::format("{}: seed alpha-beta model", unfitted(cal, fmt::format("no x{} fit on {} or its family", ranks, gpu)));
    return s;
  }
  s.source = f->from_gpu == gpu ? "own" : "carried";
  if (f->from_gpu != gpu) s.from = f->from_gpu;
  s.note = fmt::format("held-out median {:.1f}% on {}", f->curve.holdout_median_error * 100, f->from_gpu);
  if (f->from_gpu != gpu) s.note += fmt::format("; busbw efficiency carried over {}'s NVLink bandwidth", gpu);
  return s;
}

}  // namespace

std::vector<FactorSource> calibration_summary(const SystemSpec& system, const FactorUse& use, const GpuCalibration& cal) {
  const EfficiencyTable& eff = efficiency_for(system.gpu.id);
  std::vector<FactorSource> out;
  for (DType t : use.gemm_formats)
    if (system.gpu.peak(t)) out.push_back(gemm_source(system.gpu.id, t, cal, eff));
  for (const auto& [op, n] : use.collectives) {
    if (n > system.domain_size()) {
      out.push_back({fmt::format("{} x{}", op, n), "seed", "",
                     fmt::format("{} GPUs leave the {}-GPU NVLink domain: seed alpha-beta model over the NIC", n, system.domain_size())});
      continue;
    }
    out.push_back(collective_source(system.gpu.id, op, n, cal));
  }
  if (use.one_shot_all_reduce) {
    const OneShotAllReduceParams& o = eff.one_shot_all_reduce;
    out.push_back({"one_shot all_reduce", "seed", "",
                   fmt::format("where faster than NCCL (serving.all_reduce: auto); seed{}: {}", o.carried ? " (carried)" : "", o.source)});
  }
  append_device_and_attention(out, system.gpu.id, cal, eff);
  return out;
}

std::vector<FactorSource> calibration_summary(const SystemSpec& system, const FactorUse& use) {
  return calibration_summary(system, use, GpuCalibration(system.gpu));
}

std::vector<FactorSource> calibration_summary(const GpuSpec& gpu) {
  const GpuCalibration cal(gpu);
  const EfficiencyTable& eff = efficiency_for(gpu.id);
  std::vector<FactorSource> out;
  for (DType t : gemm_formats(gpu)) out.push_back(gemm_source(gpu.id, t, cal, eff));
  for (const auto& c : cal.collectives()) out.push_back(collective_source(gpu.id, c.curve.op, c.curve.ranks, cal));
  append_device_and_attention(out, gpu.id, cal, eff);
  return out;
}

}  // namespace racksim
