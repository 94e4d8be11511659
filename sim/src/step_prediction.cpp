#include "racksim/sim/step_prediction.hpp"

#include <algorithm>

#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/energy_model.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/sim/step_timer.hpp"

namespace racksim {

std::optional<std::string> system_for_gpu(const std::string& gpu, int gpus) {
  const SystemSpec* best = nullptr;
  for (const SystemSpec& s : system_catalog())  // sorted by id: the first of the fewest wins ties
    if (s.gpu.id == gpu && s.gpus() >= gpus && (!best || s.gpus() < best->gpus())) best = &s;
  if (!best) return std::nullopt;
  return best->id;
}

StepPrediction predict_step(const Scenario& s, const SystemSpec& system, const ModelConfig& model, const Deployment& dep,
                            const StepBatch& batch, double limit_w) {
  // calibration: datasheet keeps every factor out, the power fit too (simulation.cpp).
  StepPrediction p = predict_step_with(system, s.calibrated ? GpuCalibration(system.gpu) : GpuCalibration(), model, dep, s.precision, batch,
                                       limit_w, s.serving.all_reduce);
  p.calibrated = s.calibrated;
  return p;
}

StepPrediction predict_step_with(const SystemSpec& system, GpuCalibration calibration, const ModelConfig& model, const Deployment& dep,
                                 const Precision& precision, const StepBatch& batch, double limit_w, AllReduceImpl all_reduce) {
  // The cap as a scenario on this system has it by default (simulation.cpp): the GPU's limit, or
  // the one given (the device's enforced limit), never above the datasheet's.
  const double cap = limit_w > 0 ? std::min(limit_w, system.gpu.power_limit.value) : system.gpu.power_limit.value;
  EnergyModel energy = energy_model_for(system.gpu, calibration);
  energy.limit_w = cap;
  const bool calibrated = calibration.enabled();
  const RooflineCostModel cost(system, std::move(calibration), all_reduce);
  StepTimer timer(model, dep, precision, cost, energy);
  const StepCost c = timer.cost(BatchShape::of(batch));
  StepPrediction p;
  p.system = system.id;
  p.calibrated = calibrated;
  p.time_s = c.time_s;
  p.gpus = dep.tensor_parallel * dep.pipeline_parallel;
  p.capped = c.capped;
  const double per_gpu = c.time_s > 0 ? std::min(energy.idle_w + c.dynamic_j / c.time_s, energy.limit_w) : energy.idle_w;
  p.power_w = per_gpu * p.gpus;
  p.energy_j = p.power_w * p.time_s;
  return p;
}

Scenario executor_serving_scenario(const Scenario& s, const SystemSpec& system, const ModelConfig& model, int tensor_parallel,
                                   std::int64_t requests, double limit_w) {
  Scenario out = s;
  out.system = system;
  out.model = model;
  out.deployment = Deployment{.tensor_parallel = tensor_parallel, .pipeline_parallel = 1, .expert_parallel = 1};
  // One replica: a server's Poisson rate is the system's over its replicas, so the replica gets its share.
  if (s.workload.scenario == "server" || s.workload.scenario == "interactive") out.workload.qps = s.workload.qps / s.replicas;
  out.replicas = 1;
  out.serving.all_reduce = AllReduceImpl::nccl;
  out.serving.mixed_batches = true;
  out.serving.fixed_step_time_s = 0;  // the cost model's step times, never a what-if's fixed one
  // The executor's requests: the first `requests` of the scenario's, arriving as they do there
  // (offline at 0, a closed loop's clients, a server's Poisson arrivals, a trace's first rows).
  out.workload.requests = requests;
  out.gpu_power_limit_w = limit_w > 0 ? std::min(limit_w, system.gpu.power_limit.value) : system.gpu.power_limit.value;
  (void)plan_memory(out);
  return out;
}

}  // namespace racksim
