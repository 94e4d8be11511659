#pragma once
/// Cost models: the time one op takes on one GPU of a system, and the resource that bounds it.
/// Registered by name (cost_model_registry()); the foundation's model is "roofline".

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "racksim/common/registry.hpp"
#include "racksim/hwmodels/calibrated.hpp"
#include "racksim/hwmodels/efficiency.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/workloads/op.hpp"

namespace racksim {

/// The resource that sets an op's time.
enum class Bound { compute, memory, network, launch };
[[nodiscard]] std::string_view to_string(Bound b) noexcept;

/// Collective algorithms of the interconnect model.
/// `measured`: a calibrated fit of the library's own choice at each size (NCCL's tuner), printed "nccl".
/// `one_shot`: the serving engine's own small-message all-reduce kernel (OneShotAllReduceParams).
enum class CollectiveAlgorithm { none, ring, tree, nvls, direct, measured, one_shot };
[[nodiscard]] std::string_view to_string(CollectiveAlgorithm a) noexcept;

/// An op's predicted time and its parts.
struct OpCost {
  double time_s = 0;
  double compute_s = 0;  ///< FLOPs (and exponentials) over achievable throughput
  double memory_s = 0;   ///< bytes over achievable HBM bandwidth
  double network_s = 0;  ///< collectives: latency + size over achievable link bandwidth
  double launch_s = 0;   ///< fixed per-kernel overhead
  Bound bound = Bound::launch;
  CollectiveAlgorithm algorithm = CollectiveAlgorithm::none;
  double compute_efficiency = 0;  ///< the efficiency used for compute_s
  double memory_efficiency = 0;   ///< the efficiency used for memory_s
  /// Where the op's efficiency factors came from: "calibrated" (fitted on this GPU's own
  /// measurements, hwmodels/data/calibrated/), "seed" (this GPU's seed curves,
  /// hwmodels/data/efficiency/), or "carried" (taken from another GPU or format).
  std::string provenance = "seed";
  bool carried = false;  ///< true when provenance is "carried", or a seed curve is itself carried
  /// The GPU whose calibrated factors were carried (a family donor, docs/calibration.md), or ""
  /// when the factors are this GPU's own (a format carried within this GPU leaves it empty).
  std::string carried_from;
};

/// Turns ops into times on one system.
class CostModel {
 public:
  virtual ~CostModel() = default;
  /// Registry name.
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  /// Time of one op on one GPU (collectives: on each participant).
  [[nodiscard]] virtual OpCost cost(const Op& op) const = 0;
};

/// How tensor-parallel all-reduces run (scenario key `serving.all_reduce`).
/// `auto`: as the serving engines do by default (TensorRT-LLM's AUTO strategy, vLLM's and
/// SGLang's custom all-reduce): their one-shot kernel where it is faster than NCCL, for 2, 4, 6
/// or 8 ranks inside one NVLink domain and messages up to 8 MiB; NCCL otherwise.
/// `nccl`: NCCL always (TensorRT-LLM `allreduce_strategy: NCCL`, vLLM `--disable-custom-all-reduce`).
enum class AllReduceImpl { automatic, nccl };

/// The engine's one-shot all-reduce applies to an even number of ranks up to this many (vLLM
/// custom_all_reduce.py _SUPPORTED_WORLD_SIZES = [2, 4, 6, 8]) ...
inline constexpr int kOneShotMaxRanks = 8;
/// ... and messages up to this size (vLLM CustomAllreduce max_size = 8192 * 1024).
inline constexpr double kOneShotMaxBytes = 8.0 * 1024 * 1024;
/// Whether the engines' one-shot kernel can take an all-reduce over `ranks` GPUs of a system
/// whose NVLink domain holds `domain_size` (any size up to kOneShotMaxBytes).
[[nodiscard]] constexpr bool one_shot_ranks(int ranks, int domain_size) noexcept {
  return ranks >= 2 && ranks % 2 == 0 && ranks <= kOneShotMaxRanks && ranks <= domain_size;
}

/// What a cost model is built with.
struct CostModelOptions {
  /// The calibrated factors (`racksim calibrate`'s, the GPU's own or its family's), or the
  /// datasheet figures and seed efficiencies alone (scenario key `calibration: datasheet`).
  bool calibrated = true;
  AllReduceImpl all_reduce = AllReduceImpl::automatic;
};

/// Builds a cost model for a system: with the calibrated factors (`racksim calibrate`'s, the
/// GPU's own or its family's) when `calibrated`, or the datasheet figures and seed efficiencies
/// alone (scenario key `calibration: datasheet`).
using CostModelFactory = std::function<std::unique_ptr<CostModel>(const SystemSpec&, const CostModelOptions&)>;
/// Every cost model by name ("roofline": max(compute, memory) + launch; collectives alpha-beta).
[[nodiscard]] const Registry<CostModelFactory>& cost_model_registry();

/// Roofline parameters exposed for tests and docs.
class RooflineCostModel final : public CostModel {
 public:
  /// Uses the GPU's calibrated factors, or a family donor's where it has none of its own
  /// (GpuCalibration), when `use_calibrated`; the seed efficiency curves otherwise.
  explicit RooflineCostModel(const SystemSpec& system, bool use_calibrated = true,
                             AllReduceImpl all_reduce = AllReduceImpl::automatic);
  /// Uses `calibration` as resolved by the caller (tests: a GPU whose own file is hidden).
  RooflineCostModel(const SystemSpec& system, GpuCalibration calibration, AllReduceImpl all_reduce = AllReduceImpl::automatic);
  [[nodiscard]] std::string_view name() const noexcept override { return "roofline"; }
  [[nodiscard]] OpCost cost(const Op& op) const override;

  /// Collective time for `bytes` per rank over `ranks` GPUs: NCCL's (measured, or the best seed
  /// algorithm as its tuner picks), or for an all-reduce under AllReduceImpl::automatic the
  /// engine's one-shot kernel where that is faster (one_shot_all_reduce()).
  [[nodiscard]] OpCost collective(OpKind kind, double bytes, int ranks) const;
  /// The engine's one-shot all-reduce of `bytes` over `ranks` GPUs of one NVLink domain, whatever
  /// NCCL would take; network_s = 0 where it does not apply (an odd number of ranks or more than
  /// kOneShotMaxRanks, outside the domain, above kOneShotMaxBytes).
  [[nodiscard]] OpCost one_shot_all_reduce(double bytes, int ranks) const;
  /// FP32 CUDA-core FLOP/s: SMs x 128 lanes x 2 (FMA) x boost clock (CUDA C++ Programming
  /// Guide, arithmetic instruction throughput: 128 FP32 results/clock/SM on cc 9.0 and 10.x).
  [[nodiscard]] double vector_flops_per_s() const noexcept;
  /// This GPU's own calibrated factors in use, or nullptr (carried or seed only).
  [[nodiscard]] const CalibratedFactors* calibrated() const noexcept { return cal_.own(); }
  /// Every calibrated factor in use, own and carried, with its source.
  [[nodiscard]] const GpuCalibration& calibration() const noexcept { return cal_; }

 private:
  [[nodiscard]] OpCost finish(OpCost c) const;
  [[nodiscard]] OpCost nccl_collective(OpKind kind, double bytes, int ranks) const;
  [[nodiscard]] OpCost calibrated_gemm(const Op& op, const GemmFactor& g) const;
  SystemSpec system_;
  const EfficiencyTable& eff_;
  GpuCalibration cal_;
  AllReduceImpl all_reduce_;
};

}  // namespace racksim
