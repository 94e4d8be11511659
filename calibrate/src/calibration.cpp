#include "racksim/calibrate/calibration.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/calibrate/device_fit.hpp"
#include "racksim/hwmodels/energy_model.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/sim/step_prediction.hpp"
#include "racksim/workloads/model_catalog.hpp"

namespace racksim::calibrate {
namespace {

Provenance provenance_of(const MeasurementRun& run, const std::string& fitted_by) {
  Provenance p;
  p.source = run.source;
  p.device = run.device;
  p.software = run.software;
  // What the source does not record is said so, not left blank (the published kernel tables
  // give neither driver nor clocks: aic_kernels/README.md).
  const std::string unrecorded = "not recorded in the source";
  std::vector<std::string> driver;
  if (!run.driver.empty()) driver.push_back(fmt::format("driver {}", run.driver));
  if (!run.cuda.empty()) driver.push_back(fmt::format("CUDA {}", run.cuda));
  p.driver = driver.empty() ? unrecorded : join(std::span<const std::string>(driver));
  std::vector<std::string> clocks;
  if (run.sm_clock_mhz) clocks.push_back(fmt::format("SM {:g} MHz", *run.sm_clock_mhz));
  if (run.memory_clock_mhz) clocks.push_back(fmt::format("memory {:g} MHz", *run.memory_clock_mhz));
  if (run.power_limit_w) clocks.push_back(fmt::format("power limit {:g} W", *run.power_limit_w));
  p.clocks = clocks.empty() ? unrecorded : join(std::span<const std::string>(clocks));
  p.date = run.date;
  p.commit = run.commit;
  p.fitted_by = fitted_by;
  return p;
}

// Collective element types in the order the cost model prefers them (activations are BF16).
int dtype_rank(const std::string& d) {
  static const std::string kOrder[] = {"bf16", "fp16", "fp32", "fp8", "int8"};
  for (int i = 0; i < 5; ++i)
    if (kOrder[i] == d) return i;
  return 5;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string fmt_time(double s) {
  if (s < 1e-3) return fmt::format("{:.2f} us", s * 1e6);
  return fmt::format("{:.3f} ms", s * 1e3);
}

// A power GEMM runs in a sustained loop at the clocks the power limit allows, so its time is not
// the latency bench's: it feeds the power fit only.
bool is_attention_record(const MeasurementRecord& r) { return r.op.kind == "attention_decode" || r.op.kind == "attention_prefill"; }

// Records the device-level fits read (device_fit.hpp): memcpy and launch of a known variant,
// idle power, GEMMs with a power reading, and attention.
bool is_device_record(const MeasurementRecord& r) {
  const std::string& k = r.op.kind;
  if (is_attention_record(r)) return true;
  if (k == "memcpy") return r.op.variant == "read" || r.op.variant == "copy";
  if (k == "launch" || k == "idle") return true;
  return k == "gemm" && (r.energy_j || r.power_w);
}

Provenance device_provenance(const MeasurementFile& f, const std::string& fitted_by) {
  Provenance p = provenance_of(f.run, fitted_by);
  if (!f.path.empty() && f.path != f.run.source) p.source = fmt::format("{} ({})", f.path, f.run.source);
  return p;
}

// Attention per KV-cache format from one file's records (docs/calibration.md, "Attention from
// the executor's files"): decode as a KV-stream bandwidth fit on bytes moved, prefill as a
// tensor-efficiency curve on FLOPs. A format with fewer than two training points is skipped.
void fit_attention_records(const MeasurementFile& f, const GpuSpec& gpu, const std::string& fitted_by,
                           std::map<std::string, CalibratedFactors>& by_gpu, CalibrationResult& out) {
  std::map<std::pair<std::string, DType>, std::vector<AttentionPoint>> groups;  // (kind, KV format)
  for (const auto& r : f.records) {
    if (!is_attention_record(r)) continue;
    const MeasuredOp& op = r.op;
    const DType kv = *parse_dtype(op.w_dtype);  // the measurement reader allows DType names only
    if (op.kind == "attention_decode") {
      // The KV bytes depend on the KV head count, which the record does not carry: the bench's
      // bytes_moved is the size.
      if (!r.bytes_moved) {
        ++out.skipped[fmt::format("{}: attention_decode without bytes_moved (the KV bytes need the KV head count)", f.path)];
        continue;
      }
      groups[{op.kind, kv}].push_back({*r.bytes_moved, r.time_median_s, op.identity()});
    } else {
      // QK^T and PV: 2 x head_dim FLOPs each per (query, key, head), as the bench and the step
      // graph count them.
      const double flops = r.flops ? *r.flops : 4.0 * static_cast<double>(op.n) * static_cast<double>(op.k) * op.pairs;
      groups[{op.kind, kv}].push_back({flops, r.time_median_s, op.identity()});
    }
  }
  CalibratedAttention c;
  c.hbm_bandwidth = gpu.hbm_bandwidth.value;
  for (auto& [key, pts] : groups) {
    const auto& [kind, kv] = key;
    const std::size_t n = pts.size();
    std::vector<Residual> res;
    std::string why;
    if (kind == "attention_decode") {
      if (auto d = fit_attention_decode(std::move(pts), kv, gpu.hbm_bandwidth.value, gpu.id, f.path, &res, &why)) c.decode[kv] = std::move(*d);
    } else {
      // The cost model's rule (cost_model.cpp): FP8 tensor-core math with an FP8 KV cache on a
      // GPU that has FP8, else BF16.
      const DType math = kv == DType::fp8 && gpu.peak(DType::fp8) ? DType::fp8 : DType::bf16;
      if (!gpu.peak(math)) {
        out.skipped[fmt::format("{}: attention_prefill on {}: no dense {} peak in the catalog", f.path, gpu.id, to_string(math))] += n;
        continue;
      }
      if (auto p = fit_attention_prefill(std::move(pts), kv, math, gpu.peak(math)->value, gpu.id, f.path, &res, &why))
        c.prefill[kv] = std::move(*p);
    }
    if (!why.empty()) out.skipped[why] += n;
    out.residuals.insert(out.residuals.end(), res.begin(), res.end());
  }
  if (c.decode.empty() && c.prefill.empty()) return;
  c.provenance = device_provenance(f, fitted_by);
  by_gpu[gpu.id].attention = std::move(c);
}

// Memory curve, launch latency, power coefficients and attention from one file's records, into
// the file's GPU (docs/calibration.md, "Memory, launch and power from the executor's files",
// "Attention from the executor's files").
template <class Claim>
void fit_device_records(const MeasurementFile& f, const GpuSpec& gpu, const std::string& fitted_by, Claim& claim,
                        std::map<std::string, CalibratedFactors>& by_gpu, CalibrationResult& out) {
  std::set<std::string> memcpy_variants;
  bool launch = false, power = false;
  for (const auto& r : f.records) {
    if (r.op.kind == "memcpy" && is_device_record(r)) memcpy_variants.insert(r.op.variant);
    launch = launch || r.op.kind == "launch";
    power = power || r.op.kind == "idle" || (r.op.kind == "gemm" && is_device_record(r));
  }
  const std::string& id = gpu.id;
  if (!memcpy_variants.empty()) {
    claim(id, "memory", f);
    // Both variants are fitted and reported; the factors keep "read" when measured, since the
    // cost model's memory-bound ops (norms, elementwise, decode attention's KV stream) mostly
    // stream reads; "copy" (read + write in one pass) otherwise.
    const std::string keep = memcpy_variants.contains("read") ? "read" : "copy";
    for (const auto& variant : memcpy_variants) {
      std::vector<Residual> res;
      const MemoryFit m = fit_memory(f.records, variant, gpu.hbm_bandwidth.value, id, f.path, &res);
      out.residuals.insert(out.residuals.end(), res.begin(), res.end());
      if (variant != keep) continue;
      CalibratedMemory c;
      c.variant = variant;
      c.efficiency = m.efficiency;
      c.fixed_latency_s = m.fixed_latency_s;
      c.hbm_bandwidth = gpu.hbm_bandwidth.value;
      c.curve = m.points;
      c.points = m.fitted_points;
      set_holdout_errors(c, res);
      c.provenance = device_provenance(f, fitted_by);
      by_gpu[id].memory = std::move(c);
    }
  }
  if (launch) {
    claim(id, "launch", f);
    const LaunchFit l = fit_launch(f.records);
    CalibratedLaunch c;
    for (const auto& [variant, t] : l.latency_s) {
      if (variant == "kernel") c.kernel_s = t;
      else if (variant == "graph_node") c.graph_node_s = t;
      else ++out.skipped[fmt::format("{}: launch variant '{}' (kernel and graph_node are fitted)", f.path, variant)];
    }
    c.points = l.points;
    c.provenance = device_provenance(f, fitted_by);
    if (c.kernel_s || c.graph_node_s) by_gpu[id].launch = std::move(c);
  }
  if (std::any_of(f.records.begin(), f.records.end(), is_attention_record)) {
    claim(id, "attention", f);
    fit_attention_records(f, gpu, fitted_by, by_gpu, out);
  }
  if (power) {
    claim(id, "power", f);
    const PowerFit p = fit_power(f.records, kSeedJoulesPerHbmByte * 1e12, f.path);
    CalibratedPower c;
    c.idle_w = p.idle_w;
    for (const auto& [fmt_name, pj] : p.pj_per_flop) c.pj_per_flop[*parse_dtype(fmt_name)] = pj;
    c.pj_per_byte = p.pj_per_byte;
    c.pj_per_byte_fitted = p.pj_per_byte_fitted;
    c.points = p.points;
    c.median_error = p.median_error;
    c.worst_error = p.worst_error;
    c.provenance = device_provenance(f, fitted_by);
    by_gpu[id].power = std::move(c);
  }
}

// Every step record with a power window against the power its GPU's calibration (own, or carried
// from a GPU of these files) predicts (StepPowerCheck).
void check_step_power(const std::vector<std::pair<const MeasurementFile*, const MeasurementRecord*>>& steps, CalibrationResult& out) {
  std::vector<const CalibratedFactors*> tables;
  for (const auto& g : out.gpus) tables.push_back(&g);
  for (const auto& [f, rec] : steps) {
    const GpuSpec& gpu = find_gpu(f->run.gpu);
    if (!rec->energy_j || !rec->power_w || !(*rec->energy_j > 0) || !(*rec->power_w > 0)) {
      ++out.skipped[fmt::format("{}: step without energy_j and power_w above 0 (no power window: racksim exec --power-seconds 0, or no NVML)",
                                f->path)];
      continue;
    }
    if (!rec->flops) {
      ++out.skipped[fmt::format("{}: step without flops (the power check needs the step's work)", f->path)];
      continue;
    }
    const EnergyModel e = energy_model_for(gpu, GpuCalibration(gpu, tables));
    if (e.joules_per_flop.empty()) {
      ++out.skipped[fmt::format("{}: step on {}: no power fit in these files for it or a GPU it carries from (add the GPU's "
                                "racksim bench --suite power file)", f->path, gpu.id)];
      continue;
    }
    // The step's work as one op of the activations' format (the energy model's per-format
    // energy per FLOP; HBM bytes at its per-byte energy), over the window's time per step.
    Op work;
    work.kind = OpKind::gemm;
    work.in_dtype = *parse_dtype(rec->op.a_dtype);
    work.flops = *rec->flops;
    work.weight_bytes = rec->bytes_moved.value_or(0.0);
    StepPowerCheck c;
    c.gpu = gpu.id;
    c.identity = rec->op.identity();
    c.file = f->path;
    c.power = e.provenance == "carried" ? fmt::format("carried from {}", e.carried_from) : e.provenance;
    c.gpus = rec->op.ranks;
    c.step_s = *rec->energy_j / *rec->power_w;
    c.measured_w = *rec->power_w;
    const CappedWork w = apply_power_limit(e, c.step_s, op_energy_j(e, work, 0.0));
    c.predicted_w = w.power_w * c.gpus;
    c.capped = w.capped;
    out.step_power.push_back(std::move(c));
  }
}

// Every step record of a catalog model against the simulator's time for it with the factors these
// files give (StepTimeCheck).
void check_step_time(const std::vector<std::pair<const MeasurementFile*, const MeasurementRecord*>>& steps, CalibrationResult& out) {
  std::vector<const CalibratedFactors*> tables;
  for (const auto& g : out.gpus) tables.push_back(&g);
  for (const auto& [f, rec] : steps) {
    const MeasuredOp& op = rec->op;
    const auto& models = model_catalog();
    const auto model_it = std::find_if(models.begin(), models.end(), [&](const ModelConfig& m) { return m.id == op.model; });
    if (model_it == models.end()) {
      ++out.skipped[fmt::format("{}: step of model '{}': not in the model catalog, no step time predicted", f->path, op.model)];
      continue;
    }
    const std::optional<std::string> system_id = system_for_gpu(f->run.gpu, op.ranks);
    if (!system_id) {
      ++out.skipped[fmt::format("{}: step over {} GPUs: no catalog system of {} GPUs holds them, no step time predicted", f->path, op.ranks,
                                f->run.gpu)];
      continue;
    }
    ModelConfig model = *model_it;
    if (op.k > model.layers) {
      ++out.skipped[fmt::format("{}: step of {} layers: {} has {}, no step time predicted", f->path, op.k, model.id, model.layers)];
      continue;
    }
    model.layers = static_cast<int>(op.k);  // the executor may run fewer than the model's
    // What the step graph requires (workloads/src/step_graph.cpp), which racksim exec met.
    if (model.heads % op.ranks != 0 || model.ffn % op.ranks != 0) {
      ++out.skipped[fmt::format("{}: {}: tensor parallel {} does not divide {}'s {} heads and FFN {}, no step time predicted", f->path,
                                op.identity(), op.ranks, model.id, model.heads, model.ffn)];
      continue;
    }
    if (op.variant == "prefill" && op.n < 1) {
      ++out.skipped[fmt::format("{}: {}: a prefill of no prompt tokens, no step time predicted", f->path, op.identity())];
      continue;
    }
    const SystemSpec system = find_system(*system_id);
    Deployment dep;
    dep.tensor_parallel = op.ranks;
    Precision precision;
    precision.weights = *parse_dtype(op.w_dtype);
    precision.activations = *parse_dtype(op.a_dtype);
    precision.kv_cache = *parse_dtype(op.dtype);
    const StepBatch batch = op.variant == "decode" ? StepBatch::decode(op.sequences, op.n) : StepBatch::prefill_only(op.sequences, op.n);
    // The record's FLOPs are its graph's as exec built it: a model file that reuses a catalog id
    // with other dimensions would otherwise be priced as the catalog's model.
    if (rec->flops) {
      const double flops = step_work(StepGraph(model, batch, dep, precision)).flops;
      if (std::fabs(flops - *rec->flops) > 1e-6 * flops) {
        ++out.skipped[fmt::format("{}: {}: its FLOPs per GPU ({:.6g}) are not those of catalog model {} at that shape ({:.6g}), no "
                                  "step time predicted", f->path, op.identity(), *rec->flops, model.id, flops)];
        continue;
      }
    }
    StepPrediction p;
    try {
      // racksim exec's tensor parallelism all-reduces through NCCL (apps/cmd_exec.cpp), not the
      // serving engines' one-shot kernel the simulator's automatic choice prices for small messages.
      p = predict_step_with(system, GpuCalibration(system.gpu, tables), model, dep, precision, batch, f->run.power_limit_w.value_or(0.0),
                            AllReduceImpl::nccl);
    } catch (const Error& e) {  // e.g. a format the GPU has no path for (nvfp4 activations on Hopper)
      ++out.skipped[fmt::format("{}: {}: no step time predicted: {}", f->path, op.identity(), e.what())];
      continue;
    }
    StepTimeCheck c;
    c.gpu = f->run.gpu;
    c.identity = op.identity();
    c.file = f->path;
    c.system = p.system;
    c.gpus = op.ranks;
    c.timing = rec->timing;
    c.measured_s = rec->time_median_s;
    c.predicted_s = p.time_s;
    out.step_time.push_back(std::move(c));
  }
}

}  // namespace

CalibrationResult run_calibration(const std::vector<MeasurementFile>& files, const std::string& fitted_by) {
  CalibrationResult out;
  struct GemmGroup {
    std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, GemmPoint> points;
    const MeasurementRun* run = nullptr;
  };
  struct CollGroup {
    std::map<double, CollectivePoint> points;
    const MeasurementRun* run = nullptr;
  };
  std::map<std::pair<std::string, DType>, GemmGroup> gemms;
  std::map<std::tuple<std::string, std::string, int, std::string>, CollGroup> colls;
  std::map<std::string, CalibratedFactors> by_gpu;
  std::vector<std::pair<const MeasurementFile*, const MeasurementRecord*>> steps;  // racksim exec's steps, checked at the end
  // Which file gave each device-level section of each GPU: a second file for the same section
  // is an error naming both (one run per section, so its provenance is one run header).
  std::map<std::pair<std::string, std::string>, std::string> device_section_file;
  auto claim = [&](const std::string& gpu_id, const std::string& section, const MeasurementFile& f) {
    auto [it, fresh] = device_section_file.emplace(std::make_pair(gpu_id, section), f.path);
    if (!fresh)
      throw InputError(fmt::format("{}: {} of {} is measured in two files ({} and {}); calibrate one run per section",
                                   f.path, section, gpu_id, it->second, f.path));
    by_gpu[gpu_id].gpu = gpu_id;
  };
  for (const auto& f : files) {
    // Back-to-back graph timings (racksim bench --timing graph) leave out each call's own launch
    // and ramp, which the fits' curves include and the cost model adds a launch to: pooled with
    // them they would count the launch once too few. They are a cross-check (docs/calibration.md).
    if (f.run.timing == "graph")
      throw InputError(fmt::format("{}: run.timing: 'graph' (calls timed back to back in a CUDA graph) is a cross-check, not a calibration "
                                   "input; allowed: call (racksim bench without --timing graph)", f.path));
    if (f.run.gpu.empty()) {
      out.skipped[fmt::format("{}: run.gpu is empty (device '{}' not in the catalog)", f.path, f.run.device)] += f.records.size();
      continue;
    }
    const GpuSpec& file_gpu = find_gpu(f.run.gpu, f.path, "run.gpu");
    fit_device_records(f, file_gpu, fitted_by, claim, by_gpu, out);
    for (const auto& rec : f.records) {
      const MeasuredOp& op = rec.op;
      if (is_device_record(rec)) continue;  // fitted above
      if (op.kind == "gemm") {
        const DType a = *parse_dtype(op.a_dtype), w = *parse_dtype(op.w_dtype), c = *parse_dtype(op.c_dtype);
        // The cost model's GEMM factors are per compute format with weights in that format; a
        // mixed GEMM (FP4 weights dequantized to BF16 or FP8 on Hopper) is another kernel, and
        // pooled with the format's own GEMMs it would bend their fit.
        if (a != w) {
          ++out.skipped[fmt::format("{}: gemm a={} w={} (mixed-format GEMMs are not fitted: the GEMM factors are per format, "
                                    "weights in the same format)", f.path, op.a_dtype, op.w_dtype)];
          continue;
        }
        auto& g = gemms[{f.run.gpu, a}];
        if (!g.run) g.run = &f.run;
        const double m = static_cast<double>(op.m), n = static_cast<double>(op.n), k = static_cast<double>(op.k);
        GemmPoint p{m, n, k, storage_bytes(a, m * k) + weight_storage_bytes(w, n * k) + storage_bytes(c, m * n), rec.time_median_s, op.identity()};
        // A shape measured twice (in two files, or twice in one) keeps its first measurement.
        if (!g.points.emplace(std::make_tuple(op.m, op.n, op.k), p).second)
          ++out.skipped[fmt::format("{}: {} gemm {}: a shape measured again (the first measurement is kept)", f.path, f.run.gpu, op.a_dtype)];
      } else if (is_collective_kind(op.kind) && op.kind != "send_recv" && op.ranks >= 2) {
        // The cost model prices NCCL's own algorithm choice (records with algorithm "", which
        // it reports as algorithm "nccl"); a forced algorithm's curve is another one and would
        // overwrite sizes of the library's.
        if (!op.algorithm.empty()) {
          ++out.skipped[fmt::format("{}: {} {} x{} {} with algorithm '{}' forced (only the library's own choice, algorithm \"\", "
                                    "is fitted)", f.path, f.run.gpu, op.kind, op.ranks, op.dtype, op.algorithm)];
          continue;
        }
        auto& g = colls[{f.run.gpu, op.kind, op.ranks, op.dtype}];
        if (!g.run) g.run = &f.run;
        if (!g.points.emplace(op.bytes, CollectivePoint{op.bytes, rec.time_median_s, op.identity()}).second)
          ++out.skipped[fmt::format("{}: {} {} x{} {}: a size measured again (the first measurement is kept)", f.path, f.run.gpu, op.kind,
                                    op.ranks, op.dtype)];
      } else if (op.kind == "step") {
        steps.push_back({&f, &rec});
      } else if (op.kind == "memcpy") {
        ++out.skipped[fmt::format("{}: memcpy variant '{}' (read and copy are fitted)", f.path, op.variant)];
      } else {
        ++out.skipped[fmt::format("{}: kind {} (no fit for it yet)", f.path, op.kind)];
      }
    }
  }
  for (auto& [key, g] : gemms) {
    const auto& [gpu_id, t] = key;
    const GpuSpec& gpu = find_gpu(gpu_id);
    std::vector<GemmPoint> pts;
    for (auto& [shape, p] : g.points) pts.push_back(p);
    if (!gpu.peak(t)) {
      out.skipped[fmt::format("{} gemm {}: no dense {} peak in the catalog", gpu_id, to_string(t), to_string(t))] += pts.size();
      continue;
    }
    std::vector<Residual> res;
    CalibratedGemm c = fit_gemm(gpu, t, pts, &res);
    c.provenance = provenance_of(*g.run, fitted_by);
    for (auto& r : res) r.gpu = gpu_id;
    out.residuals.insert(out.residuals.end(), res.begin(), res.end());
    by_gpu[gpu_id].gpu = gpu_id;
    by_gpu[gpu_id].gemm[t] = std::move(c);
    out.measured.gemm[{gpu_id, t}] = std::move(pts);
  }
  std::map<std::tuple<std::string, std::string, int>, std::string> chosen_dtype;
  for (const auto& [key, g] : colls) {
    const auto& [gpu_id, op, ranks, dtype] = key;
    auto& best = chosen_dtype[{gpu_id, op, ranks}];
    if (best.empty() || dtype_rank(dtype) < dtype_rank(best)) best = dtype;
  }
  for (auto& [key, g] : colls) {
    const auto& [gpu_id, op, ranks, dtype] = key;
    const GpuSpec& gpu = find_gpu(gpu_id);
    std::vector<CollectivePoint> pts;
    for (auto& [b, p] : g.points) pts.push_back(p);
    if (pts.size() < 2) {
      out.skipped[fmt::format("{} {} x{} {}: fewer than 2 sizes", gpu_id, op, ranks, dtype)] += pts.size();
      continue;
    }
    std::vector<Residual> res;
    // aic_kernels measures within one NVLink domain (README: 2/4/8 GPUs, one tray on GB200/GB300).
    CalibratedCollective c = fit_collective(op, ranks, dtype, gpu.nvlink_bandwidth.value, pts, &res);
    c.provenance = provenance_of(*g.run, fitted_by);
    c.provenance.software += fmt::format(", dtype {}", dtype);
    for (auto& r : res) r.gpu = gpu_id;
    out.residuals.insert(out.residuals.end(), res.begin(), res.end());
    by_gpu[gpu_id].gpu = gpu_id;
    if (chosen_dtype[{gpu_id, op, ranks}] == dtype) {
      by_gpu[gpu_id].collectives.push_back(std::move(c));
      out.measured.collectives[{gpu_id, op, ranks}] = std::move(pts);
    }
  }
  for (auto& [id, f] : by_gpu) out.gpus.push_back(std::move(f));
  out.transfer = evaluate_transfer(out.gpus, out.measured);
  check_step_power(steps, out);
  check_step_time(steps, out);
  return out;
}

std::string residual_markdown(const CalibrationResult& r) {
  std::string md;
  md += "| GPU | family | size bucket | points | measured (median) | fitted (median) | median err | worst err | held-out | held-out median | held-out worst |\n";
  md += "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<const Residual*>> groups;
  std::vector<std::tuple<std::string, std::string, std::string>> order;
  for (const auto& x : r.residuals) {
    auto key = std::make_tuple(x.gpu, x.family, x.bucket);
    auto& g = groups[key];
    if (g.empty()) order.push_back(key);
    g.push_back(&x);
  }
  std::stable_sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) < std::get<0>(b);
    if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) < std::get<1>(b);
    return groups[a].front()->size < groups[b].front()->size;
  });
  for (const auto& key : order) {
    const auto& g = groups[key];
    std::vector<const Residual*> held;
    std::vector<double> meas, fit;
    for (const Residual* x : g) {
      if (x->held_out) held.push_back(x);
      meas.push_back(x->measured_s);
      fit.push_back(x->fitted_s);
    }
    const ErrorSummary all = summarise(g), h = summarise(held);
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {:.1f}% | {:.1f}% | {} | {} | {} |\n", std::get<0>(key), std::get<1>(key),
                      std::get<2>(key), all.count, fmt_time(median_of(meas)), fmt_time(median_of(fit)), all.median * 100,
                      all.worst * 100, h.count, h.count ? fmt::format("{:.1f}%", h.median * 100) : "-",
                      h.count ? fmt::format("{:.1f}%", h.worst * 100) : "-");
  }
  // Per GPU and family: the held-out summary and its worst point, the acceptance figures.
  md += "\n| GPU | family | held-out points | held-out median err | held-out worst err | worst held-out point |\n";
  md += "| --- | --- | ---: | ---: | ---: | --- |\n";
  std::map<std::pair<std::string, std::string>, std::vector<const Residual*>> fam;
  for (const auto& x : r.residuals)
    if (x.held_out) fam[{x.gpu, x.family}].push_back(&x);
  for (const auto& [key, g] : fam) {
    const ErrorSummary h = summarise(g);
    const Residual* w = nullptr;
    for (const Residual* x : g)
      if (x->identity == h.worst_identity) w = x;
    md += fmt::format("| {} | {} | {} | {:.1f}% | {:.1f}% | {} ({} measured, {} fitted) |\n", key.first, key.second, h.count,
                      h.median * 100, h.worst * 100, h.worst_identity, w ? fmt_time(w->measured_s) : "", w ? fmt_time(w->fitted_s) : "");
  }
  return md;
}

std::string step_power_markdown(const std::vector<StepPowerCheck>& checks) {
  if (checks.empty()) return "No step record with a power window and a power fit for its GPU (racksim exec --device cuda:N writes them).\n";
  std::string md = "| GPU | step | power fit | GPUs | time per step | measured | predicted | error |\n"
                   "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& c : checks)
    md += fmt::format("| {} | {} | {} | {} | {} | {:.0f} W | {:.0f} W{} | {:+.1f}% |\n", c.gpu, c.identity, c.power, c.gpus, fmt_time(c.step_s),
                      c.measured_w, c.predicted_w, c.capped ? " (at the limit)" : "", c.error() * 100);
  return md;
}

std::string step_time_markdown(const std::vector<StepTimeCheck>& checks) {
  if (checks.empty()) return "No step record of a catalog model (racksim exec writes them).\n";
  std::string md = "| GPU | step | predicted on | measured | predicted | error |\n| --- | --- | --- | ---: | ---: | ---: |\n";
  for (const auto& c : checks)
    md += fmt::format("| {} | {} | {} | {} ({}) | {} | {:+.1f}% |\n", c.gpu, c.identity, c.system, fmt_time(c.measured_s), c.timing,
                      fmt_time(c.predicted_s), c.error() * 100);
  return md;
}

std::string residual_json(const CalibrationResult& r) {
  nlohmann::json j = {{"points", nlohmann::json::array()}, {"families", nlohmann::json::array()}};
  std::map<std::pair<std::string, std::string>, std::vector<const Residual*>> fam, fam_held;
  for (const auto& x : r.residuals) {
    j["points"].push_back({{"gpu", x.gpu}, {"family", x.family}, {"bucket", x.bucket}, {"identity", x.identity},
                           {"measured_s", x.measured_s}, {"fitted_s", x.fitted_s}, {"error", x.error()}, {"held_out", x.held_out}});
    fam[{x.gpu, x.family}].push_back(&x);
    if (x.held_out) fam_held[{x.gpu, x.family}].push_back(&x);
  }
  for (const auto& [key, g] : fam) {
    const ErrorSummary a = summarise(g), h = summarise(fam_held[key]);
    j["families"].push_back({{"gpu", key.first}, {"family", key.second}, {"points", a.count}, {"median_error", a.median},
                             {"worst_error", a.worst}, {"held_out_points", h.count}, {"held_out_median_error", h.median},
                             {"held_out_worst_error", h.worst}, {"held_out_worst", h.worst_identity}});
  }
  j["transfer"] = nlohmann::json::array();
  for (const auto& x : r.transfer)
    j["transfer"].push_back({{"donor", x.donor}, {"recipient", x.recipient}, {"family", x.family}, {"points", x.points},
                             {"median_error", x.median}, {"worst_error", x.worst}, {"worst", x.worst_identity},
                             {"time_carried_median_error", x.time_carried_median}, {"own_held_out_median_error", x.own_holdout_median},
                             {"own_held_out_worst_error", x.own_holdout_worst}});
  j["step_power"] = nlohmann::json::array();
  for (const auto& c : r.step_power)
    j["step_power"].push_back({{"gpu", c.gpu}, {"identity", c.identity}, {"file", c.file}, {"power", c.power}, {"gpus", c.gpus},
                               {"step_s", c.step_s}, {"measured_w", c.measured_w}, {"predicted_w", c.predicted_w},
                               {"capped", c.capped}, {"error", c.error()}});
  j["step_time"] = nlohmann::json::array();
  for (const auto& c : r.step_time)
    j["step_time"].push_back({{"gpu", c.gpu}, {"identity", c.identity}, {"file", c.file}, {"system", c.system}, {"gpus", c.gpus},
                              {"timing", c.timing}, {"measured_s", c.measured_s}, {"predicted_s", c.predicted_s}, {"error", c.error()}});
  nlohmann::json skipped = nlohmann::json::object();
  for (const auto& [why, n] : r.skipped) skipped[why] = n;
  j["skipped"] = skipped;
  return j.dump(2) + "\n";
}

std::vector<std::string> write_calibration(const CalibrationResult& r, const std::string& dir) {
  namespace fs = std::filesystem;
  // Made if missing (as `mkdir -p`); an existing file of that name is refused.
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) throw InputError(fmt::format("--out: {}: exists and is not a directory", dir));
  if (!fs::exists(dir, ec) && (fs::create_directories(dir, ec), ec))
    throw InputError(fmt::format("--out: {}: cannot create the directory: {}", dir, ec.message()));
  std::vector<std::string> written;
  for (const auto& f : r.gpus) {
    const std::string path = (fs::path(dir) / (f.gpu + ".yaml")).string();
    write_output(path, format_calibrated_yaml(f, fmt::format("Calibrated factors of {}, written by `racksim calibrate`; do not edit by hand.\n"
                                                             "Beside the datasheet (hwmodels/data/gpus/{}.yaml), never over it. docs/calibration.md.",
                                                             f.gpu, f.gpu)));
    written.push_back(path);
  }
  const std::string md = (fs::path(dir) / "residuals.md").string(), js = (fs::path(dir) / "residuals.json").string();
  write_output(md, "# Calibration residuals (written by `racksim calibrate`)\n\nerror = fitted / measured - 1, fitted by the report's fit, "
                   "which never sees the held-out shapes (every fifth in sorted order); the shipped factors are the same form refit "
                   "on every shape (docs/calibration.md, \"Hold-out\").\n\n" + residual_markdown(r) +
                   "\n## Transfer between GPUs of a family\n\nEach donor's fitted factors on every shape the recipient measured "
                   "(none seen by the donor's fit). Carried: the donor's efficiencies, tile, k_ramp and blend with the recipient's "
                   "datasheet peak, HBM bandwidth, SM count and NVLink bandwidth (the cost model's rule). Time carried: the donor's "
                   "predicted time used as is. docs/calibration.md.\n\n" + transfer_markdown(r.transfer) +
                   "\n## Step power against the power fit\n\nEach step racksim exec measured with a power window (its energy counter over "
                   "--power-seconds of back-to-back steps, 1 s by default), against idle + the fitted energy per FLOP (the activations' format) and per HBM byte "
                   "of the step's work over its time per step, capped at the datasheet limit, times its GPUs. Never fitted on "
                   "(docs/calibration.md, \"Step power\").\n\n" + step_power_markdown(r.step_power) +
                   "\n## Step time against the simulator with these factors\n\nEach step racksim exec measured, against the "
                   "simulator's time for it (its model, layers, formats, batch and tensor parallelism on the catalog system of its "
                   "GPU) with the factors fitted here; a factor these files do not give is seed. Never fitted on "
                   "(docs/calibration.md, \"Step time\").\n\n" + step_time_markdown(r.step_time));
  write_output(js, residual_json(r));
  written.push_back(md);
  written.push_back(js);
  return written;
}

}  // namespace racksim::calibrate
