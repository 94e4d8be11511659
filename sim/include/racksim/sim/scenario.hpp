#pragma once
/// A serving scenario (spec: "Scenario file"), loaded strictly: unknown keys, bad values and
/// missing files are InputError (exit 2); a deployment that cannot hold the model is
/// InfeasibleError (exit 3) with the numbers.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/hardware.hpp"
#include "racksim/workloads/model.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim {

/// A request-length distribution (spec: fixed, uniform, lognormal, dataset).
struct LengthDistribution {
  std::string kind;     ///< fixed | uniform | lognormal | dataset
  std::int64_t value = 0;   ///< fixed
  std::int64_t min = 0;     ///< uniform
  std::int64_t max = 0;     ///< uniform, lognormal
  double mean = 0;          ///< lognormal; dataset (optional rescale of output lengths), 0 = none
  std::string name;         ///< dataset
};

/// Per-replica serving settings, named as TensorRT-LLM / vLLM users know them.
struct ServingConfig {
  std::int64_t max_batch_size = 0;
  std::int64_t max_num_tokens = 0;
  bool chunked_prefill = true;
  /// true (TensorRT-LLM, vLLM V1): an iteration holds every decode plus prefill chunks. false
  /// (SGLang's default; its --enable-mixed-chunk turns mixing on): an iteration that can run
  /// prefill runs prefill only, with the whole max_num_tokens budget, while the decodes wait.
  bool mixed_batches = true;
  std::int64_t kv_block_tokens = 0;
  double kv_memory_fraction = 0;
  /// KV admission: guaranteed_no_evict reserves prompt + output blocks up front (TensorRT-LLM's
  /// GUARANTEED_NO_EVICT); max_utilization admits on current need and preempts the newest
  /// sequence, to be recomputed, when the cache runs out (MAX_UTILIZATION / vLLM recompute).
  std::string capacity_policy = "guaranteed_no_evict";
  /// How requests are spread over replicas: input_balanced (fewest input tokens so far, NVIDIA's
  /// isl_load_balancing), least_loaded (fewest tokens outstanding), round_robin.
  std::string router = "input_balanced";
  /// Tensor-parallel all-reduce: auto (the engine's one-shot kernel where it beats NCCL, as
  /// TensorRT-LLM, vLLM and SGLang do by default) or nccl (AllReduceImpl).
  AllReduceImpl all_reduce = AllReduceImpl::automatic;
  /// > 0: every iteration takes this long whatever it holds, instead of the cost model's time
  /// (closed-form checks and what-if studies).
  double fixed_step_time_s = 0;
};

/// The requests and their arrival.
struct WorkloadConfig {
  std::string scenario;  ///< offline | server | interactive | trace | concurrency
  std::int64_t requests = 0;
  /// concurrency: clients in a closed loop; each issues its next request the moment its last
  /// one finished (no think time), so at most this many are in flight. Requests 0..N-1 arrive
  /// at t = 0.
  std::int64_t concurrency = 0;
  LengthDistribution input_tokens;
  LengthDistribution output_tokens;
  double qps = 0;
  std::string trace;
  double ttft_p99_ms = 0;
  double tpot_p99_ms = 0;
};

/// A whole scenario, resolved against the catalogs.
struct Scenario {
  std::string file;  ///< as the user named it
  std::string name;
  SystemSpec system;
  ModelConfig model;
  Precision precision;
  Deployment deployment;
  int replicas = 0;  ///< resolved ("auto" = as many as the system's GPUs hold)
  ServingConfig serving;
  WorkloadConfig workload;
  std::uint64_t seed = 0;
  double gpu_power_limit_w = 0;  ///< the cap in force: the datasheet limit or system.gpu_power_limit_w
  /// `calibration: calibrated` (default): the hardware models use `racksim calibrate`'s factors
  /// where a GPU (or its family) has them; `datasheet`: datasheet figures and seed efficiencies
  /// only, to see what calibration does to a prediction (docs/validation.md).
  bool calibrated = true;
};

/// The cost-model options a scenario asks for (calibration, serving.all_reduce).
[[nodiscard]] inline CostModelOptions cost_model_options(const Scenario& s) {
  return CostModelOptions{.calibrated = s.calibrated, .all_reduce = s.serving.all_reduce};
}

/// Per-GPU memory plan of one deployment (bytes).
struct MemoryPlan {
  double weights_per_gpu = 0;     ///< the fullest pipeline stage's share
  double activations_per_gpu = 0; ///< activation and workspace reserve
  double hbm_per_gpu = 0;
  double kv_bytes_per_gpu = 0;    ///< (hbm - weights - activations) x kv_memory_fraction
  std::int64_t kv_tokens_per_replica = 0;  ///< KV capacity in tokens, whole blocks only
};

/// Loads and validates a scenario; `overrides` are `--set KEY=VALUE` assignments.
[[nodiscard]] Scenario load_scenario(const std::string& path, const std::vector<std::string>& overrides = {});

/// Weights per GPU, activation reserve and KV capacity; InfeasibleError if the weights do not fit.
[[nodiscard]] MemoryPlan plan_memory(const Scenario& s);

}  // namespace racksim
