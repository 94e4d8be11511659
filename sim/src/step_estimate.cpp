#include "racksim/sim/step_estimate.hpp"

namespace racksim {

StepEstimate estimate_step(const StepGraph& graph, const CostModel& model) {
  StepEstimate e;
  e.order = graph.topological_order();
  e.costs.reserve(e.order.size());
  for (std::size_t v : e.order) {
    const Op& op = graph.op(v);
    OpCost c = model.cost(op);
    e.time_s += c.time_s;
    e.flops += op.flops;
    e.bytes += op.bytes();
    e.comm_bytes += op.comm_bytes;
    e.costs.push_back(c);
  }
  return e;
}

}  // namespace racksim
