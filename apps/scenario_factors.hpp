#pragma once
// Where a scenario's hardware-model factors come from (own fit, carried from the GPU's family,
// or seed), shared by `simulate --json` and `validate`.

#include <vector>

#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/sim/scenario.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim::cli {

/// The factor families of one step with a prefill chunk and a decode (every GEMM format and
/// collective the scenario's graph uses), as the cost model resolves them (docs/calibration.md,
/// "Transfer between GPUs of a family"). Under `calibration: datasheet` every family is seed, as
/// the cost model then uses none of the calibrated factors.
inline std::vector<FactorSource> calibration_sources(const Scenario& s) {
  StepBatch b;
  b.prefill.push_back({1, 0, true});
  b.decode_contexts.push_back(1);
  const StepGraph g(s.model, b, s.deployment, s.precision);
  FactorUse use;
  for (std::size_t v = 0; v < g.size(); ++v) use.add(g.op(v));
  // The engines' one-shot kernel may take an all-reduce of 2..8 ranks inside the NVLink domain.
  if (s.serving.all_reduce == AllReduceImpl::automatic)
    for (const auto& [op, n] : use.collectives)
      if (op == "all_reduce" && one_shot_ranks(n, s.system.domain_size())) use.one_shot_all_reduce = true;
  return s.calibrated ? calibration_summary(s.system, use) : calibration_summary(s.system, use, GpuCalibration());
}

}  // namespace racksim::cli
