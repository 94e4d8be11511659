#include "racksim/hwmodels/cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim {

std::string_view to_string(Bound b) noexcept {
  switch (b) {
    case Bound::compute: return "compute";
    case Bound::memory: return "memory";
    case Bound::network: return "network";
    case Bound::launch: return "launch";
  }
  return "?";
}

std::string_view to_string(CollectiveAlgorithm a) noexcept {
  switch (a) {
    case CollectiveAlgorithm::none: return "";
    case CollectiveAlgorithm::ring: return "ring";
    case CollectiveAlgorithm::tree: return "tree";
    case CollectiveAlgorithm::nvls: return "nvls";
    case CollectiveAlgorithm::direct: return "direct";
    case CollectiveAlgorithm::measured: return "nccl";
    case CollectiveAlgorithm::one_shot: return "one_shot";
  }
  return "?";
}

const Registry<CostModelFactory>& cost_model_registry() {
  static const Registry<CostModelFactory> registry = [] {
    Registry<CostModelFactory> r("cost model");
    r.add("roofline", "max(FLOPs / (peak x efficiency), bytes / (HBM bandwidth x efficiency)) + launch; alpha-beta collectives",
          [](const SystemSpec& s, const CostModelOptions& o) {
            return std::make_unique<RooflineCostModel>(s, o.calibrated, o.all_reduce);
          });
    return r;
  }();
  return registry;
}

RooflineCostModel::RooflineCostModel(const SystemSpec& system, bool use_calibrated, AllReduceImpl all_reduce)
    : RooflineCostModel(system, use_calibrated ? GpuCalibration(system.gpu) : GpuCalibration(), all_reduce) {}

RooflineCostModel::RooflineCostModel(const SystemSpec& system, GpuCalibration calibration, AllReduceImpl all_reduce)
    : system_(system), eff_(efficiency_for(system.gpu.id)), cal_(std::move(calibration)), all_reduce_(all_reduce) {}

OpCost RooflineCostModel::calibrated_gemm(const Op& op, const GemmFactor& f) const {
  // docs/calibration.md: the fitted latency model replaces roofline + launch for GEMMs; its t0
  // is the measured fixed time of one call (launch included). A format carried from another
  // (mxfp4 <- nvfp4, fp16 <- bf16), or a fit carried from a GPU of the same family, keeps the
  // fitted efficiencies and uses this GPU's own peak, HBM bandwidth and SM count.
  const GemmLatencyModel& model = f.model;
  const GpuSpec& gpu = system_.gpu;
  const double peak = gpu.peak(op.in_dtype)->value;
  auto t = model.time(static_cast<double>(op.m), static_cast<double>(op.n), static_cast<double>(op.k), op.bytes(), peak,
                        gpu.hbm_bandwidth.value);
  if (op.input_prequantized) {
    // The measured torch_flow call of an FP8 or NVFP4 GEMM quantizes A first, in kernels of its
    // own: their per-element work is the fitted a_element term, and their launches sit in t0
    // (the same tables' smallest shapes, m <= 16 at 1024 x 1024, take 13-14 us in FP8 with its
    // dynamic per-tensor scale, an amax pass and a quantize pass, 7.6 us in NVFP4, one quantize
    // pass, against 3.8-4.0 us in BF16 on H100, B200 and GB200; aic_kernels/gemm_trtllm_...csv).
    // A served graph fuses the quantize into the producer (the norm or the activation writes A
    // in the GEMM's format) and replays the step from a CUDA graph, so both go: the per-element
    // term, and the part of t0 above the same GPU's BF16 t0, the GEMM kernel's own launch and
    // prologue measured in the same table (docs/calibration.md, "Fused activation quantize").
    // Both t0 must be one GPU's (its own, or the same donor's); otherwise t0 stays whole.
    const double quantize_s = static_cast<double>(op.m) * static_cast<double>(op.k) * model.a_element_s;
    double quantize_launch_s = 0;
    if (op.in_dtype != DType::bf16)
      if (const GemmFactor* bf16 = cal_.gemm(DType::bf16); bf16 && bf16->from_format == DType::bf16 && bf16->from_gpu == f.from_gpu)
        quantize_launch_s = std::max(0.0, model.fixed_latency_s - bf16->model.fixed_latency_s);
    t.fixed_s -= quantize_s + quantize_launch_s;
    t.total_s -= quantize_s + quantize_launch_s;
  }
  OpCost c;
  c.compute_s = t.compute_s;
  c.memory_s = t.memory_s;
  c.launch_s = t.fixed_s;
  c.time_s = t.total_s;
  if (t.fixed_s > std::max(t.compute_s, t.memory_s)) c.bound = Bound::launch;
  else c.bound = t.compute_s >= t.memory_s ? Bound::compute : Bound::memory;
  c.compute_efficiency = t.compute_s > 0 ? op.flops / (peak * t.compute_s) : model.compute_efficiency;
  c.memory_efficiency = model.memory_efficiency;
  if (f.from_gpu != gpu.id) c.carried_from = f.from_gpu;
  c.carried = f.from_format != op.in_dtype || !c.carried_from.empty();
  c.provenance = c.carried ? "carried" : "calibrated";
  return c;
}

double RooflineCostModel::vector_flops_per_s() const noexcept {
  return system_.gpu.sm_count.value * 128.0 * 2.0 * system_.gpu.boost_clock.value;
}

OpCost RooflineCostModel::finish(OpCost c) const {
  const double busy = std::max({c.compute_s, c.memory_s, c.network_s});
  c.time_s = busy + c.launch_s;
  if (c.launch_s > busy) c.bound = Bound::launch;
  else if (c.network_s >= c.compute_s && c.network_s >= c.memory_s && c.network_s > 0) c.bound = Bound::network;
  else c.bound = c.compute_s >= c.memory_s ? Bound::compute : Bound::memory;
  return c;
}

OpCost RooflineCostModel::one_shot_all_reduce(double bytes, int n) const {
  OpCost c;
  c.launch_s = 0;  // the fitted latency holds the launch
  if (!one_shot_ranks(n, system_.domain_size()) || bytes > kOneShotMaxBytes) return c;
  // Each rank reads the n-1 peers' buffers over its NVLink ports and sums them: one kernel, one
  // flag exchange (docs/models.md, "The engines' one-shot all-reduce"). The latency and efficiency
  // are fitted on 8 H100s; other GPUs carry them with their own NVLink bandwidth; the latency is
  // taken as the same at fewer ranks.
  const OneShotAllReduceParams& p = eff_.one_shot_all_reduce;
  c.network_s = p.latency_s + (n - 1) * bytes / (system_.gpu.nvlink_bandwidth.value * p.efficiency);
  c.algorithm = CollectiveAlgorithm::one_shot;
  c.carried = p.carried;
  c.provenance = p.carried ? "carried" : "seed";
  return finish(c);
}

OpCost RooflineCostModel::collective(OpKind kind, double bytes, int n) const {
  // Under `auto` the engine runs its one-shot kernel where that beats NCCL (TensorRT-LLM's AUTO
  // strategy picks by size and rank count; vLLM's custom all-reduce serves every message it can
  // hold): the faster of the two stands in for that choice.
  OpCost nccl = nccl_collective(kind, bytes, n);
  if (kind == OpKind::all_reduce && all_reduce_ == AllReduceImpl::automatic)
    if (OpCost one_shot = one_shot_all_reduce(bytes, n); one_shot.network_s > 0 && one_shot.time_s < nccl.time_s) return one_shot;
  return nccl;
}

OpCost RooflineCostModel::nccl_collective(OpKind kind, double bytes, int n) const {
  OpCost best;
  best.launch_s = 0;  // the collective's base latency already holds its launch
  if (n <= 1) return finish(best);
  const bool in_domain = n <= system_.domain_size();
  if (in_domain && kind != OpKind::send_recv) {
    // Fitted for exactly this op and GPU count, on this GPU or one of its family and NVLink
    // generation: NCCL's own algorithm choice at each size, as measured (docs/calibration.md).
    // Other counts fall back to the seed model.
    if (const CollectiveFactor* cc = cal_.collective(to_string(kind), n)) {
      best.network_s = cc->curve.time(bytes);
      best.algorithm = CollectiveAlgorithm::measured;
      if (cc->from_gpu != system_.gpu.id) best.carried_from = cc->from_gpu, best.carried = true;
      best.provenance = best.carried ? "carried" : "calibrated";
      return finish(best);
    }
  }
  const auto& p = eff_.collectives;
  // Inside an NVLink domain each GPU drives its NVLink ports; across domains its NIC.
  const double link = in_domain ? system_.gpu.nvlink_bandwidth.value : system_.gpu.nic_bandwidth.value;
  const double nn = n;
  // Latency: the reference measures NCCL's small-message time (its best algorithm at that
  // size), fitted as base + 2(n-1) x step for all-reduce; no per-algorithm latencies are
  // published, so every algorithm shares that latency and they differ in bandwidth only.
  auto consider = [&](CollectiveAlgorithm a, double steps, double volume, double eff) {
    const double t = p.base_latency_s + steps * p.step_latency_s + volume * bytes / (link * eff);
    if (best.algorithm == CollectiveAlgorithm::none || t < best.network_s) {
      best.network_s = t;
      best.algorithm = a;
    }
  };
  switch (kind) {
    case OpKind::all_reduce: {
      const double steps = 2 * (nn - 1);
      // Ring: reduce-scatter + all-gather, each rank sends 2(n-1)/n of the buffer.
      consider(CollectiveAlgorithm::ring, steps, 2 * (nn - 1) / nn, p.ring_efficiency);
      // Tree (double binary): the buffer goes up and comes down once each.
      consider(CollectiveAlgorithm::tree, steps, 2.0, p.tree_efficiency);
      // NVLink SHARP: each rank sends its buffer to the switch and receives the sum: one pass.
      if (in_domain && system_.has_nvls() && n > 2) consider(CollectiveAlgorithm::nvls, steps, 1.0, p.nvls_efficiency);
      break;
    }
    case OpKind::all_gather:
      // bytes = the gathered output; each rank receives (n-1)/n of it in n-1 steps.
      consider(CollectiveAlgorithm::ring, nn - 1, (nn - 1) / nn, p.ring_efficiency);
      break;
    case OpKind::all_to_all:
      // bytes = what this rank sends in total; the n-1 transfers run concurrently.
      consider(CollectiveAlgorithm::direct, 1.0, 1.0, p.ring_efficiency);
      break;
    case OpKind::send_recv:
      consider(CollectiveAlgorithm::direct, 1.0, 1.0, p.ring_efficiency);
      break;
    default:
      RACKSIM_ASSERT(false, fmt::format("{} is not a collective", to_string(kind)));
  }
  best.memory_efficiency = 0;
  return finish(best);
}

OpCost RooflineCostModel::cost(const Op& op) const {
  if (is_communication(op.kind)) return collective(op.kind, op.comm_bytes, op.participants);
  const GpuSpec& g = system_.gpu;
  OpCost c;
  // A device-level fit (docs/calibration.md, "Memory, launch and power from the executor's
  // files") marks the op calibrated, or carried when it came from another GPU; a carried seed
  // curve below still marks it carried.
  auto mark = [&](const std::string& from_gpu) {
    if (from_gpu != g.id) {
      c.carried = true;
      c.provenance = "carried";
      if (c.carried_from.empty()) c.carried_from = from_gpu;
    } else if (!c.carried) {
      c.provenance = "calibrated";
    }
  };
  c.launch_s = g.launch_overhead.value;
  // TensorRT-LLM replays CUDA graphs for decode, so an op's launch cost is one graph node's, not
  // a stream launch's; the kernel-launch figure alone is not used.
  if (const auto* l = cal_.launch(); l && l->fit->graph_node_s) {
    c.launch_s = *l->fit->graph_node_s;
    mark(l->from_gpu);
  }
  const double bytes = op.bytes();
  // Attention measured by the executor's attention bench (docs/calibration.md, "Attention from
  // the executor's files"), for this op's KV-cache format: decode's KV stream replaces the
  // generic memory curve, prefill's tensor efficiency the seed one. Efficiencies, so they
  // multiply this GPU's own datasheet HBM bandwidth and peak, own or carried from the family.
  const auto* att = cal_.attention();
  const AttentionDecodeFit* decode_fit =
      att && op.kind == OpKind::attention_decode ? att->fit->decode_fit(op.weight_dtype) : nullptr;
  const AttentionPrefillFit* prefill_fit =
      att && op.kind == OpKind::attention_prefill ? att->fit->prefill_fit(op.weight_dtype) : nullptr;
  if (decode_fit) {
    c.memory_efficiency = decode_fit->efficiency_at(bytes);
    mark(att->from_gpu);
  } else if (const auto* m = cal_.memory()) {
    // The measured memcpy curve (efficiency by bytes moved, log-size interpolation as the seed
    // curve), times this GPU's own datasheet HBM bandwidth.
    c.memory_efficiency = m->fit->efficiency_at(bytes);
    mark(m->from_gpu);
  } else {
    c.memory_efficiency = eff_.memory.at(bytes);
    if (eff_.memory.carried) c.carried = true, c.provenance = "carried";
  }
  c.memory_s = bytes / (g.hbm_bandwidth.value * c.memory_efficiency);
  switch (op.kind) {
    case OpKind::gemm:
    case OpKind::moe_gemm: {
      const Figure* peak = g.peak(op.in_dtype);
      if (const GemmFactor* f = peak ? cal_.gemm(op.in_dtype) : nullptr) return calibrated_gemm(op, *f);
      if (!peak)
        throw InfeasibleError(fmt::format("{} has no {} tensor cores for {} (it has {})", g.id, to_string(op.in_dtype), op.name,
                                          [&] {
                                            std::string s;
                                            for (const auto& [t, f] : g.dense_peak) s += (s.empty() ? "" : ", ") + std::string(to_string(t));
                                            return s;
                                          }()));
      const EfficiencyCurve curve = eff_.gemm_curve(op.in_dtype);
      c.compute_efficiency = curve.at(op.flops);
      if (curve.carried) c.carried = true, c.provenance = "carried";
      c.compute_s = op.flops / (peak->value * c.compute_efficiency);
      break;
    }
    case OpKind::attention_prefill:
    case OpKind::attention_decode: {
      // Tensor-core math in FP8 when the KV cache is FP8 and the GPU has FP8 ("FP8 context
      // attention" in NVIDIA's MLPerf configs, mlperf.md), else BF16; softmax exponentials on
      // the special-function units in parallel: the slower of the two bounds compute.
      const DType math = (op.weight_dtype == DType::fp8 && g.peak(DType::fp8)) ? DType::fp8 : DType::bf16;
      if (prefill_fit) {
        // Read on log FLOPs, clamped at the ends, as the fit's curve was measured.
        c.compute_efficiency = prefill_fit->efficiency_at(op.flops);
        mark(att->from_gpu);
      } else {
        c.compute_efficiency = eff_.attention_prefill;
        if (eff_.attention_carried) c.carried = true, c.provenance = "carried";
      }
      const double tensor_s = op.flops / (g.peak(math)->value * c.compute_efficiency);
      const double exp_s = op.exp_ops / g.exp_throughput.value;
      c.compute_s = std::max(tensor_s, exp_s);
      break;
    }
    default: {
      // Elementwise ops, norms, sampling: FP32 CUDA cores and SFUs; memory bound in practice.
      c.compute_efficiency = 1.0;
      c.compute_s = std::max(op.flops / vector_flops_per_s(), op.exp_ops / g.exp_throughput.value);
      break;
    }
  }
  return finish(c);
}

}  // namespace racksim
