#pragma once
/// The cost of one serving iteration: every op of its step graph through a cost model.

#include <vector>

#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim {

/// Per-op costs in topological order and the step's totals.
struct StepEstimate {
  std::vector<std::size_t> order;  ///< vertex ids, launch order
  std::vector<OpCost> costs;       ///< costs[i] belongs to order[i]
  double time_s = 0;               ///< ops run back to back on each GPU's stream; stages in sequence
  double flops = 0;
  double bytes = 0;
  double comm_bytes = 0;
};

/// Costs a step. With pipeline_parallel > 1 the time is that of one micro-batch through all
/// stages (stage overlap across micro-batches is the simulator's business).
[[nodiscard]] StepEstimate estimate_step(const StepGraph& graph, const CostModel& model);

}  // namespace racksim
