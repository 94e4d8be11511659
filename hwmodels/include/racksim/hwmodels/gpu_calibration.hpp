#pragma once
/// Which calibrated factors one GPU uses and where each came from: its own fit, a fit carried
/// from another GPU of its family (efficiency, not time), or none (the seed curves).
/// The rule and its measured accuracy: docs/calibration.md, "Transfer between GPUs of a family".

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "racksim/common/dtype.hpp"
#include "racksim/hwmodels/calibrated.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/workloads/op.hpp"

namespace racksim {

/// A fitted GEMM latency model as one GPU uses it.
struct GemmFactor {
  GemmLatencyModel model;               ///< the fit's efficiencies, tile, k_ramp, blend; sm_count = this GPU's
  const CalibratedGemm* fit = nullptr;  ///< the table it came from (held-out error, provenance)
  std::string from_gpu;                 ///< GPU the fit was measured on
  DType from_format = DType::bf16;      ///< format the fit was measured in
};

/// A fitted collective curve as one GPU uses it.
struct CollectiveFactor {
  CalibratedCollective curve;  ///< the fit's alpha and busbw efficiencies; link_bandwidth = this GPU's NVLink
  std::string from_gpu;        ///< GPU the curve was measured on
};

/// A device-level fit (memory curve, launch latency, power coefficients or attention) as one GPU uses it.
template <class Fit>
struct DeviceFactor {
  const Fit* fit = nullptr;  ///< the section it came from (its GPU's CalibratedFactors)
  std::string from_gpu;      ///< GPU it was measured on
};

/// The calibrated factors of one GPU, resolved once:
///   GEMM format t: own fit of t, own fit of the same tensor-core path (fp16 <- bf16,
///   mxfp4 <- nvfp4), a donor's fit of t, a donor's fit of that path; else none (seed curves).
///   Collective (op, n): own fit, else a donor's of the same NVLink generation; else none.
///   Memory curve and launch latency: own, else the first donor's that has one (the memory
///   efficiency travels and multiplies this GPU's HBM bandwidth); else none.
///   Power: own, else the first donor's with the same datasheet power limit (dynamic power
///   per FLOP is set by clocks, and those by the limit); else none.
///   Attention: own, else the first donor's that has one (its decode efficiencies multiply this
///   GPU's HBM bandwidth, its prefill efficiencies this GPU's peak); else none (seed efficiency).
/// Donors are the other calibrated GPUs of the same family, nearest SM count first, then by id.
class GpuCalibration {
 public:
  /// Calibration off (scenario key `calibration: datasheet`): the seed curves only, and the
  /// factor notes say why.
  GpuCalibration() = default;
  /// Resolves against every calibrated GPU of the catalog (hwmodels/data/calibrated/).
  explicit GpuCalibration(const GpuSpec& gpu);
  /// Resolves against `tables` only (e.g. the catalog's without this GPU's own file, to test a
  /// GPU that has no measurements). Every table's GPU must be in the catalog.
  GpuCalibration(const GpuSpec& gpu, const std::vector<const CalibratedFactors*>& tables);

  /// The GEMM model for compute format `t`, or nullptr (seed curve).
  [[nodiscard]] const GemmFactor* gemm(DType t) const;
  /// The curve for `op` over `ranks` GPUs, or nullptr (seed alpha-beta model).
  [[nodiscard]] const CollectiveFactor* collective(std::string_view op, int ranks) const;
  /// The HBM efficiency curve, or nullptr (seed memory curve).
  [[nodiscard]] const DeviceFactor<CalibratedMemory>* memory() const noexcept { return memory_.fit ? &memory_ : nullptr; }
  /// The launch latencies, or nullptr (datasheet launch_overhead).
  [[nodiscard]] const DeviceFactor<CalibratedLaunch>* launch() const noexcept { return launch_.fit ? &launch_ : nullptr; }
  /// The power coefficients, or nullptr (seed energy model).
  [[nodiscard]] const DeviceFactor<CalibratedPower>* power() const noexcept { return power_.fit ? &power_ : nullptr; }
  /// The attention fits (decode and prefill, per KV format), or nullptr (seed attention efficiency).
  [[nodiscard]] const DeviceFactor<CalibratedAttention>* attention() const noexcept { return attention_.fit ? &attention_ : nullptr; }
  /// Every resolved collective, own and carried.
  [[nodiscard]] const std::vector<CollectiveFactor>& collectives() const noexcept { return collectives_; }
  /// This GPU's own calibrated factors, or nullptr.
  [[nodiscard]] const CalibratedFactors* own() const noexcept { return own_; }
  /// Calibrated GPUs of the same family, in the order they donate.
  [[nodiscard]] const std::vector<std::string>& donors() const noexcept { return donors_; }
  /// The GPU these factors are for ("" when default-constructed).
  [[nodiscard]] const std::string& gpu() const noexcept { return gpu_; }
  /// False for a default-constructed (calibration off) object; true once resolved for a GPU,
  /// even where no table fits it.
  [[nodiscard]] bool enabled() const noexcept { return enabled_; }

 private:
  std::string gpu_;
  bool enabled_ = false;
  const CalibratedFactors* own_ = nullptr;
  std::vector<std::string> donors_;
  std::map<DType, GemmFactor> gemm_;
  std::vector<CollectiveFactor> collectives_;
  DeviceFactor<CalibratedMemory> memory_;
  DeviceFactor<CalibratedLaunch> launch_;
  DeviceFactor<CalibratedPower> power_;
  DeviceFactor<CalibratedAttention> attention_;
};

/// The donor order for `gpu` among `candidates` (catalog GPU ids): same family, not `gpu`
/// itself, nearest SM count first (wave quantization depends on it), then by id.
[[nodiscard]] std::vector<std::string> family_donors(const GpuSpec& gpu, const std::vector<std::string>& candidates);

/// Where one factor family of a prediction came from.
struct FactorSource {
  std::string factor;  ///< "gemm nvfp4", "all_reduce x8", "memory", "launch", "power", "attention"
  std::string source;  ///< "own" (fitted on this GPU), "carried" (another GPU or format), "seed"
  std::string from;    ///< carried: the GPU (and for GEMMs the format) measured, "b200 nvfp4"; else ""
  std::string note;    ///< one line: the fit's held-out error, or why the seed curve
  /// One line for tables: "carried from b200 nvfp4 (...)".
  [[nodiscard]] std::string text() const;
};

/// The factor families a prediction uses: GEMM compute formats and collectives (op, GPU count).
struct FactorUse {
  std::set<DType> gemm_formats;
  std::set<std::pair<std::string, int>> collectives;
  /// All-reduces may run as the engines' one-shot kernel (serving.all_reduce: auto and an
  /// all-reduce it applies to); the summary then names its seed (OneShotAllReduceParams).
  bool one_shot_all_reduce = false;
  /// Records what `op` needs.
  void add(const Op& op);
};

/// Every factor family of `use` on `system` with its source, as RooflineCostModel resolves it
/// with `cal` (collectives beyond the NVLink domain and send/recv: seed), then memory, launch,
/// power and attention.
[[nodiscard]] std::vector<FactorSource> calibration_summary(const SystemSpec& system, const FactorUse& use, const GpuCalibration& cal);
/// The same with the catalog's factors (GpuCalibration(system.gpu)).
[[nodiscard]] std::vector<FactorSource> calibration_summary(const SystemSpec& system, const FactorUse& use);
/// For a GPU alone (racksim hw show): every format it has a peak for, every collective fitted
/// on it or its family, memory, launch, power and attention.
[[nodiscard]] std::vector<FactorSource> calibration_summary(const GpuSpec& gpu);

}  // namespace racksim
