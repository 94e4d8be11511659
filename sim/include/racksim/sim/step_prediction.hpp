#pragma once
/// The simulator's prediction of one step on a catalog system, for `racksim exec` to print beside
/// what it measured on the device (the executor checking the simulator on the same step).

#include <cstdint>
#include <optional>
#include <string>

#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/sim/scenario.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim {

/// One step as the simulator costs it (StepTimer: the cost model's op times back to back, the
/// energy model's dynamic energy, the power cap).
struct StepPrediction {
  std::string system;     ///< the catalog system it is for
  bool calibrated = true; ///< the scenario's `calibration` (calibrated or datasheet hardware models)
  double time_s = 0;      ///< after the power cap
  double power_w = 0;     ///< every GPU of the replica: gpus x (idle + dynamic energy / time), at most the cap each
  double energy_j = 0;    ///< power_w x time_s
  int gpus = 0;           ///< GPUs of the replica (tensor_parallel x pipeline_parallel)
  bool capped = false;    ///< the power cap slowed it
};

/// The catalog system a device of catalog GPU `gpu` stands for when it runs `gpus` GPUs of one
/// replica: the system of that GPU with the fewest GPUs that holds them (ties: the first id);
/// nullopt when there is none (no such GPU, or no system that large).
/// H200 SXM, 1 GPU: hgx-h200; GB300, 4: gb300-tray; GB300, 8: gb300-nvl72.
[[nodiscard]] std::optional<std::string> system_for_gpu(const std::string& gpu, int gpus);

/// `batch` of `model` (its layer count as given: the executor may run fewer than the scenario's)
/// under `dep` and the scenario's precision and calibration, on `system`, each GPU capped at
/// `limit_w` (0: the system's own limit, as a scenario on it would have).
[[nodiscard]] StepPrediction predict_step(const Scenario& s, const SystemSpec& system, const ModelConfig& model, const Deployment& dep,
                                          const StepBatch& batch, double limit_w = 0);

/// The same with the hardware models' factors given (`calibration`: e.g. what `racksim calibrate`
/// has just fitted, before it is committed; GpuCalibration() for the datasheet models) and the
/// precision and all-reduce choice given instead of a scenario's. `calibrated` in the result is
/// calibration.enabled(). `calibration` may point into tables the caller keeps alive.
[[nodiscard]] StepPrediction predict_step_with(const SystemSpec& system, GpuCalibration calibration, const ModelConfig& model,
                                               const Deployment& dep, const Precision& precision, const StepBatch& batch,
                                               double limit_w = 0, AllReduceImpl all_reduce = AllReduceImpl::automatic);

/// The serving loop `racksim exec --serve` runs, as a scenario the simulator serves on `system`: one
/// replica of `tensor_parallel` GPUs (PP 1, EP 1), `model` as the executor ran it, the first
/// `requests` of the scenario's requests (the same lengths from the same seed), and what the executor
/// runs whatever the scenario says: NCCL's all-reduces, iterations mixing prefill chunks and decodes,
/// the requests arriving as the scenario has them (offline: all at time 0; concurrency: a closed
/// loop; server and interactive: the seeded Poisson arrivals at one replica's share of
/// workload.qps, qps / replicas; trace: its first rows). Each GPU is capped at `limit_w` (0: the system's own limit), never above the
/// datasheet's. InfeasibleError where the replica does not hold the model or one KV block (plan_memory).
[[nodiscard]] Scenario executor_serving_scenario(const Scenario& s, const SystemSpec& system, const ModelConfig& model, int tensor_parallel,
                                                 std::int64_t requests, double limit_w = 0);

}  // namespace racksim
