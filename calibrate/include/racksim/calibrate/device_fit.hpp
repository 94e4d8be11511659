#pragma once
/// Fits of the device-level factors from the executor's own measurement files (`racksim bench
/// memory|launch|power`, `racksim bench --suite attention`, docs/executor.md): HBM bandwidth
/// efficiency by transfer size, launch latency, the power model's idle power and energy per FLOP
/// and per HBM byte, and attention's KV-stream and tensor efficiencies. Every fifth point (sorted
/// by size) is held out of the memory and attention fits whose residuals are reported; the
/// shipped factors are fitted on every point, as for GEMMs (fit.hpp).

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "racksim/calibrate/fit.hpp"
#include "racksim/common/measurement.hpp"

namespace racksim::calibrate {

/// t(bytes) = fixed_latency_s + bytes_moved / (efficiency x datasheet HBM bandwidth), fitted
/// on relative error; `points` keeps each measured size's own efficiency (bytes / (bw x t)),
/// the curve the cost model interpolates on log size.
struct MemoryFit {
  std::string variant;            ///< "copy" (read + write) or "read"
  double efficiency = 0;          ///< asymptotic fraction of the datasheet HBM bandwidth
  double fixed_latency_s = 0;     ///< per-call time at zero size (launch included)
  std::vector<std::pair<double, double>> points;  ///< (bytes moved, measured efficiency), by size
  int fitted_points = 0;          ///< sizes the shipped (t0, efficiency) are fitted on: all of them
};

/// Fits `records` of kind memcpy and the given variant; InputError naming `source` if fewer than
/// two training sizes remain. Residuals (family "memcpy <variant>") are appended.
[[nodiscard]] MemoryFit fit_memory(const std::vector<MeasurementRecord>& records, const std::string& variant,
                                   double hbm_bandwidth, const std::string& gpu, const std::string& source,
                                   std::vector<Residual>* residuals);

/// Launch latency per variant ("kernel", "graph_node"): the median over the records' medians.
struct LaunchFit {
  std::map<std::string, double> latency_s;
  int points = 0;
};
[[nodiscard]] LaunchFit fit_launch(const std::vector<MeasurementRecord>& records);

/// Board power = idle_w + sum over formats of pj_per_flop[fmt] x FLOP/s + pj_per_byte x HBM B/s,
/// by linear least squares over the sustained-GEMM power records (energy per call / time per
/// call when the energy counter was read, else the sampled mean power). With fewer independent
/// records than unknowns the per-byte term is held at `seed_pj_per_byte` (said in
/// `pj_per_byte_fitted`). Coefficients are kept non-negative.
struct PowerFit {
  double idle_w = 0;
  std::map<std::string, double> pj_per_flop;  ///< by GEMM compute format (a_dtype)
  double pj_per_byte = 0;
  bool pj_per_byte_fitted = false;
  int points = 0;
  double median_error = 0, worst_error = 0;   ///< |fitted / measured power - 1| over the records
};
/// InputError naming `source` if there is no idle record or no GEMM power record.
[[nodiscard]] PowerFit fit_power(const std::vector<MeasurementRecord>& records, double seed_pj_per_byte, const std::string& source);

/// One attention record as the attention fits read it.
struct AttentionPoint {
  double size = 0;     ///< decode: bytes moved; prefill: FLOPs
  double time_s = 0;   ///< measured median
  std::string identity;
};

/// Decode attention of one KV-cache format, the KV stream as a memory fit:
///   t(bytes) = fixed_latency_s + bytes / (hbm_bandwidth x efficiency)     (relative least squares)
/// and the curve of every measured size's bytes / (hbm_bandwidth x t). Points sort by (bytes,
/// identity); every fifth is held out of the fit whose residuals (family "attention_decode <kv>")
/// are appended; the returned (t0, efficiency) are fitted on every point.
/// std::nullopt with `why` set (naming `source`) when fewer than two training sizes remain;
/// InputError naming `source` when time does not grow with bytes.
[[nodiscard]] std::optional<AttentionDecodeFit> fit_attention_decode(std::vector<AttentionPoint> points, DType kv, double hbm_bandwidth,
                                                                     const std::string& gpu, const std::string& source,
                                                                     std::vector<Residual>* residuals, std::string* why);

/// Prefill attention of one KV-cache format: each point's tensor efficiency
///   eff = flops / (peak_flops x t)
/// on a curve read on log FLOPs (clamped; points of equal FLOPs averaged). The residuals (family
/// "attention_prefill <kv>", appended) read the training points' curve, held-out points (every
/// fifth by (FLOPs, identity)) predicted from it, t = flops / (peak_flops x eff(flops)); the
/// returned curve passes through every point. std::nullopt with `why` set when
/// fewer than two training points remain.
[[nodiscard]] std::optional<AttentionPrefillFit> fit_attention_prefill(std::vector<AttentionPoint> points, DType kv, DType math,
                                                                       double peak_flops, const std::string& gpu, const std::string& source,
                                                                       std::vector<Residual>* residuals, std::string* why);

}  // namespace racksim::calibrate
