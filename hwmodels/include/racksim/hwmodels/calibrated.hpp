#pragma once
/// Calibrated factors: fitted by `racksim calibrate` from measurement files and stored beside
/// the datasheet values (hwmodels/data/calibrated/<gpu>.yaml), never over them. Each factor
/// carries its provenance. Equations: docs/calibration.md.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "racksim/common/dtype.hpp"

namespace racksim {

/// Where a calibrated factor came from.
struct Provenance {
  std::string source;    ///< measurement file or data set
  std::string device;    ///< device name in the run header
  std::string software;  ///< kernel library / NCCL version
  std::string driver;    ///< driver, CUDA version ("" if the source does not say)
  std::string clocks;    ///< clocks and power limit ("" if the source does not say)
  std::string date;      ///< date of the measurement or of the data snapshot
  std::string commit;    ///< commit of the source data or of racksim that measured it
  std::string fitted_by; ///< command and racksim commit that fitted the factor
};

/// GEMM latency of one compute format, fitted on this GPU:
///   tiles = ceil(m/tile_m) ceil(n/tile_n),  waves = ceil(tiles / sm_count)
///   split = split_k && tiles < sm_count ? floor(sm_count / tiles) : 1
///   t_c = waves sm_count tile_m tile_n 2 (k / split) / (peak x eff_c) x (1 + k_ramp / k)
///   t_m = (A + B + C bytes) / (hbm_bandwidth x eff_m)
///   t   = (t_c^p + t_m^p)^(1/p) + t0 + m k a_element_s
struct GemmLatencyModel {
  double tile_m = 128;
  double tile_n = 128;
  double sm_count = 132;              ///< tiles that run at once (the datasheet SM count)
  double compute_efficiency = 0.7;    ///< eff_c: achieved / dense peak on whole waves of long-K tiles
  double k_ramp = 0;                  ///< K at which pipeline fill halves the efficiency
  double memory_efficiency = 0.8;     ///< eff_m: achieved / datasheet HBM bandwidth
  double fixed_latency_s = 0;         ///< t0: launch and prologue/epilogue of one call
  double blend = 2;                   ///< p: how sharply compute and memory time overlap (p -> inf: max)
  bool split_k = false;               ///< too few tiles for one wave: K is split over the idle SMs
  double a_element_s = 0;             ///< per A element: an activation quantize pass inside the timed call
  std::string form;                   ///< "wave" (tile and wave quantized) or "flat"

  /// Parts of one call's time.
  struct Time {
    double compute_s = 0, memory_s = 0, fixed_s = 0, total_s = 0;
  };
  /// Time of C[m,n] = A[m,k] B[k,n] with the given peak FLOP/s and HBM bytes/s, moving `bytes`.
  [[nodiscard]] Time time(double m, double n, double k, double bytes, double peak_flops, double hbm_bytes_per_s) const;
};

/// One fitted GEMM format with its fit quality.
struct CalibratedGemm {
  GemmLatencyModel model;
  double holdout_median_error = 0;  ///< |fit/measured - 1| on held-out shapes
  double holdout_worst_error = 0;
  int points = 0;                   ///< shapes the shipped factors are fitted on (held-out ones too)
  Provenance provenance;
};

/// One collective (op, GPU count) fitted on this GPU:
///   t = alpha + bus_factor x bytes / (link_bandwidth x eff(bytes)),
///   bus_factor = 2(n-1)/n for all_reduce, (n-1)/n for all_gather, reduce_scatter, all_to_all
///   (nccl-tests busbw convention), eff piecewise linear in log(bytes), clamped at the ends.
struct CalibratedCollective {
  std::string op;       ///< all_reduce | all_gather | reduce_scatter | all_to_all
  int ranks = 0;
  double alpha_s = 0;   ///< fixed latency
  double link_bandwidth = 0;  ///< bytes/s per direction the efficiencies refer to (datasheet NVLink)
  std::vector<std::pair<double, double>> efficiency;  ///< (bytes, busbw / link_bandwidth), bytes ascending
  double holdout_median_error = 0;
  double holdout_worst_error = 0;
  Provenance provenance;

  /// nccl-tests bus factor of `op` over `ranks`.
  [[nodiscard]] static double bus_factor(const std::string& op, int ranks);
  /// Time of one call with `bytes` per rank (nccl-tests "size").
  [[nodiscard]] double time(double bytes) const;
  /// eff(bytes).
  [[nodiscard]] double efficiency_at(double bytes) const;
};

/// HBM bandwidth efficiency by transfer size, fitted on this GPU from the executor's memcpy
/// records (`racksim bench memory`):
///   t(bytes) = fixed_latency_s + bytes / (hbm_bandwidth x efficiency)
/// `curve` keeps each measured size's own efficiency, bytes / (hbm_bandwidth x t(bytes)), which
/// the cost model reads on log size (interpolate_log_size) as it reads the seed memory curve.
struct CalibratedMemory {
  std::string variant;          ///< the memcpy variant fitted: "read" (preferred) or "copy" (read + write)
  double efficiency = 0;        ///< asymptotic fraction of the datasheet HBM bandwidth
  double fixed_latency_s = 0;   ///< per-call time at zero size (launch included)
  double hbm_bandwidth = 0;     ///< bytes/s the efficiencies refer to (datasheet HBM)
  std::vector<std::pair<double, double>> curve;  ///< (bytes moved, efficiency), bytes ascending
  int points = 0;               ///< sizes fitted (held-out ones too; they are held out of the report's fit only)
  double holdout_median_error = 0;
  double holdout_worst_error = 0;
  Provenance provenance;

  /// The curve's efficiency at `bytes` moved (log-size interpolation, clamped at the ends).
  [[nodiscard]] double efficiency_at(double bytes) const;
};

/// Launch latency measured on this GPU (`racksim bench launch`): the median per variant.
struct CalibratedLaunch {
  std::optional<double> kernel_s;      ///< an empty kernel launched on a stream
  std::optional<double> graph_node_s;  ///< one node of a replayed CUDA graph
  int points = 0;
  Provenance provenance;
};

/// Power coefficients fitted on this GPU (`racksim bench power`):
///   board power = idle_w + sum_fmt pj_per_flop[fmt] x FLOP/s + pj_per_byte x HBM bytes/s
struct CalibratedPower {
  double idle_w = 0;
  std::map<DType, double> pj_per_flop;  ///< by GEMM compute format
  double pj_per_byte = 0;               ///< per HBM byte moved
  bool pj_per_byte_fitted = false;      ///< false: held at the energy model's seed (too few records)
  int points = 0;                       ///< GEMM power records fitted
  double median_error = 0;              ///< |fitted / measured power - 1| over the records
  double worst_error = 0;
  Provenance provenance;
};

/// One KV-cache format's attention decode fit (`racksim bench --suite attention`, records
/// attention_decode): the KV stream as a memory fit,
///   t(bytes) = fixed_latency_s + bytes / (hbm_bandwidth x efficiency)
/// `curve` keeps each measured size's bytes / (hbm_bandwidth x t), read on log size.
struct AttentionDecodeFit {
  double efficiency = 0;        ///< asymptotic fraction of the datasheet HBM bandwidth
  double fixed_latency_s = 0;   ///< per-call time at zero bytes (launch included)
  std::vector<std::pair<double, double>> curve;  ///< (bytes moved, efficiency), bytes ascending
  int points = 0;               ///< sizes fitted (held-out ones too; they are held out of the report's fit only)
  double holdout_median_error = 0;
  double holdout_worst_error = 0;
  /// The curve's efficiency at `bytes` moved (log-size interpolation, clamped at the ends).
  [[nodiscard]] double efficiency_at(double bytes) const;
};

/// One KV-cache format's attention prefill fit (records attention_prefill): tensor efficiency
///   efficiency(flops) = flops / (peak(math) x t)
/// at each measured size, read on log FLOPs and clamped at the ends. math = fp8 when the KV
/// cache is fp8 and the GPU has an FP8 peak, else bf16 (the cost model's rule).
struct AttentionPrefillFit {
  DType math = DType::bf16;     ///< the tensor-core format whose peak the efficiencies divide
  double peak_flops = 0;        ///< FLOP/s the efficiencies refer to (datasheet dense peak of `math`)
  std::vector<std::pair<double, double>> curve;  ///< (FLOPs, efficiency), FLOPs ascending, every measured size
  int points = 0;               ///< sizes fitted (held-out ones too; they are held out of the report's fit only)
  double holdout_median_error = 0;
  double holdout_worst_error = 0;
  /// The curve's efficiency at `flops` (log-FLOPs interpolation, clamped at the ends).
  [[nodiscard]] double efficiency_at(double flops) const;
};

/// Attention measured on this GPU, per KV-cache format (docs/calibration.md, "Attention from the
/// executor's files"): decode as a KV-stream bandwidth curve, prefill as a tensor-efficiency curve.
struct CalibratedAttention {
  double hbm_bandwidth = 0;                    ///< bytes/s the decode efficiencies refer to (datasheet HBM)
  std::map<DType, AttentionDecodeFit> decode;  ///< by KV-cache format
  std::map<DType, AttentionPrefillFit> prefill;  ///< by KV-cache format
  Provenance provenance;

  /// The decode fit of KV format `kv`, or nullptr.
  [[nodiscard]] const AttentionDecodeFit* decode_fit(DType kv) const;
  /// The prefill fit of KV format `kv`, or nullptr.
  [[nodiscard]] const AttentionPrefillFit* prefill_fit(DType kv) const;
};

/// Every calibrated factor of one GPU.
struct CalibratedFactors {
  std::string gpu;
  std::map<DType, CalibratedGemm> gemm;
  std::vector<CalibratedCollective> collectives;
  std::optional<CalibratedMemory> memory;
  std::optional<CalibratedLaunch> launch;
  std::optional<CalibratedPower> power;
  std::optional<CalibratedAttention> attention;

  /// The collective fitted for (op, ranks), or nullptr.
  [[nodiscard]] const CalibratedCollective* collective(const std::string& op, int ranks) const;
};

/// Every GPU's calibrated factors (hwmodels/data/calibrated/<gpu>.yaml), sorted by GPU id.
[[nodiscard]] const std::vector<CalibratedFactors>& calibrated_catalog();
/// The calibrated factors of a catalog GPU, or nullptr if none were fitted (its own only; a
/// family donor's are resolved by GpuCalibration, gpu_calibration.hpp).
[[nodiscard]] const CalibratedFactors* calibrated_for(const std::string& gpu_id);
/// Parses one calibrated-factors YAML (strict).
[[nodiscard]] CalibratedFactors parse_calibrated_yaml(std::string_view text, const std::string& name);
/// Writes the YAML that parse_calibrated_yaml reads, with a header comment.
[[nodiscard]] std::string format_calibrated_yaml(const CalibratedFactors& f, const std::string& header_comment);

}  // namespace racksim
